#!/usr/bin/env bash
# RabbitMQ 4.0 (Debian 13 "trixie") and the newest 4.x (Debian testing "forky"), each in
# its own debootstrap chroot under /var/lib/dlqd-brokers/<VERSION>, running beside the
# machine's own 3.10 node (127.0.0.1:5672, epmd 4369), which this script never touches.
#
#   scripts/broker-matrix.sh build  4.0|4.x   create the chroot (idempotent; ~1-2 min, ~400 MB)
#   scripts/broker-matrix.sh start  4.0|4.x   start the node, wait until it takes AMQP (<=120 s)
#   scripts/broker-matrix.sh stop   4.0|4.x   stop the node (and its own epmd)
#   scripts/broker-matrix.sh status 4.0|4.x   print the running server's version (exit 3: not running)
#   scripts/broker-matrix.sh url    4.0|4.x   print its AMQP URL
#   scripts/broker-matrix.sh all              build and start both; print versions and URLs
#   scripts/broker-matrix.sh ctl     4.0|4.x ARGS...  rabbitmqctl -n NODE ARGS... in the chroot
#   scripts/broker-matrix.sh plugins 4.0|4.x ARGS...  rabbitmq-plugins -n NODE ARGS... there
#
#   version  suite   AMQP   dist    epmd  management  node name
#   4.0      trixie  5674   25674   4374  15674       rabbit-4-0@localhost
#   4.x      forky   5675   25675   4375  15675       rabbit-4-x@localhost
#
# Each node has its own epmd (ERL_EPMD_PORT), bound to 127.0.0.1, so stopping one node
# (which also ends its epmd) never affects the other or the host's node. Everything
# listens on 127.0.0.1 only; guest/guest works there (loopback). The one plugin enabled
# is rabbitmq_management (its HTTP API on the port above), for `dlqd check --broker`.
# Needs root. Environment: DLQD_BROKERS_DIR (default /var/lib/dlqd-brokers),
# DLQD_DEBIAN_MIRROR (default: the Debian URI in /etc/apt/sources.list.d/debian.sources).
set -uo pipefail

ROOT="${DLQD_BROKERS_DIR:-/var/lib/dlqd-brokers}"
START_TIMEOUT=120

die() { echo "broker-matrix: error: $*" >&2; exit 1; }
say() { echo "broker-matrix: $*" >&2; }

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Sets SUITE PORT DIST EPMD NODE DIR for a VERSION.
select_version() {
    case "${1:-}" in
        4.0) SUITE=trixie PORT=5674 DIST=25674 EPMD=4374 MGMT=15674 NODE=rabbit-4-0@localhost ;;
        4.x) SUITE=forky  PORT=5675 DIST=25675 EPMD=4375 MGMT=15675 NODE=rabbit-4-x@localhost ;;
        "") die "missing VERSION (4.0 or 4.x)" ;;
        *) die "unknown VERSION '$1' (expected 4.0 or 4.x)" ;;
    esac
    VERSION=$1
    DIR="$ROOT/$VERSION"
    LOG="$ROOT/$VERSION.log"
    PIDFILE="$ROOT/$VERSION.pid"
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"; }

lock() {
    mkdir -p "$ROOT" || die "cannot create $ROOT"
    exec 9>"$ROOT/$VERSION.lock" || die "cannot open $ROOT/$VERSION.lock"
    flock -w 600 9 || die "another broker-matrix.sh holds $ROOT/$VERSION.lock"
}

# Runs a command inside the chroot with a clean environment (nothing of the caller's
# RABBITMQ_* / ERL_* leaks in) and this node's epmd port.
in_chroot() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/rabbitmq LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        ERL_EPMD_PORT="$EPMD" ERL_EPMD_ADDRESS=127.0.0.1 \
        chroot "$DIR" "$@"
}
ctl() { in_chroot rabbitmqctl -n "$NODE" "$@"; }

built() { [ -x "$DIR/usr/sbin/rabbitmq-server" ] && [ -x "$DIR/usr/lib/rabbitmq/bin/rabbitmq-server" ]; }

mirror() {
    if [ -n "${DLQD_DEBIAN_MIRROR:-}" ]; then echo "$DLQD_DEBIAN_MIRROR"; return; fi
    local m=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources (set DLQD_DEBIAN_MIRROR)"
    echo "$m"
}

# Unmounts everything mounted at or below $1 (deepest first). Fails if any stays mounted.
umount_below() {
    local d=$1 m
    for m in $(awk -v d="$d" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || return 1
    done
    ! awk -v d="$d" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

# PIDs of processes whose root is the chroot.
chroot_pids() {
    local p r real
    real=$(readlink -f "$DIR")
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [ "$r" = "$real" ] && echo "${p#/proc/}"
    done
}

configure() {
    cp /etc/hosts "$DIR/etc/hosts" || die "cannot copy /etc/hosts into $DIR"
    grep -qE '^127\.0\.0\.1[[:space:]].*\blocalhost\b' "$DIR/etc/hosts" \
        || echo "127.0.0.1 localhost" >>"$DIR/etc/hosts"
    mkdir -p "$DIR/etc/rabbitmq" || die "cannot create $DIR/etc/rabbitmq"
    cat >"$DIR/etc/rabbitmq/rabbitmq-env.conf" <<EOF || die "cannot write rabbitmq-env.conf"
# Written by dlqd scripts/broker-matrix.sh: RabbitMQ $VERSION beside the host's node.
NODENAME=$NODE
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$PORT
DIST_PORT=$DIST
export ERL_EPMD_PORT=$EPMD
export ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
    # The management API (dlqd check --broker reads the topology there), on its own port.
    echo "[rabbitmq_management]." >"$DIR/etc/rabbitmq/enabled_plugins" || die "cannot write enabled_plugins"
    cat >"$DIR/etc/rabbitmq/rabbitmq.conf" <<EOF || die "cannot write rabbitmq.conf"
# Written by dlqd scripts/broker-matrix.sh.
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT
EOF
    chroot "$DIR" chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins 2>/dev/null || true
}

mount_proc() {
    mountpoint -q "$DIR/proc" || mount -t proc proc "$DIR/proc" || die "cannot mount proc on $DIR/proc"
}

cmd_build() {
    select_version "$1"; need_root; lock
    local t0=$SECONDS
    if built; then
        configure
        say "$VERSION: already built in $DIR ($(in_chroot dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null)); nothing to do"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install -y debootstrap"
    local scripts=/usr/share/debootstrap/scripts
    if [ ! -e "$scripts/$SUITE" ]; then
        [ -e "$scripts/sid" ] || die "debootstrap has no script for $SUITE nor sid in $scripts"
        ln -s sid "$scripts/$SUITE" || die "cannot create $scripts/$SUITE -> sid"
    fi
    [ -d "$DIR" ] && { say "$VERSION: $DIR exists but has no rabbitmq-server; rebuilding it"; }
    local m tmp="$DIR.partial"
    m=$(mirror) || exit 1
    for d in "$tmp" "$DIR"; do
        if [ -e "$d" ]; then
            umount_below "$d" || die "cannot unmount everything below $d; remove it by hand"
            rm -rf --one-file-system "$d" || die "cannot remove $d"
        fi
    done
    say "$VERSION: debootstrap $SUITE from $m into $DIR (log: $ROOT/$VERSION.build.log)"
    if ! debootstrap --variant=minbase --include=rabbitmq-server "$SUITE" "$tmp" "$m" \
            >"$ROOT/$VERSION.build.log" 2>&1; then
        tail -n 20 "$ROOT/$VERSION.build.log" >&2
        umount_below "$tmp" >/dev/null 2>&1
        die "$VERSION: debootstrap $SUITE failed (full log: $ROOT/$VERSION.build.log)"
    fi
    umount_below "$tmp" || die "$VERSION: cannot unmount what debootstrap left mounted below $tmp"
    mv "$tmp" "$DIR" || die "cannot move $tmp to $DIR"
    built || die "$VERSION: debootstrap finished but $DIR has no rabbitmq-server"
    local stray; stray=$(chroot_pids)
    [ -z "$stray" ] || die "$VERSION: processes left running in the fresh chroot: $stray"
    configure
    say "$VERSION: built rabbitmq-server $(in_chroot dpkg-query -W -f='${Version}' rabbitmq-server) in $((SECONDS - t0)) s"
}

# True if something answers an AMQP 0-9-1 header on PORT with a Connection.Start frame.
amqp_ok() {
    local port=$1
    timeout 10 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$port"' || exit 1
        printf "AMQP\000\000\011\001" >&3
        # Frame: type 1 (method), channel 0, size (4), class 10 method 10 = Connection.Start
        head -c 11 <&3 | od -An -tx1 | tr -d " \n"
    ' 2>/dev/null | grep -q '^010000........000a000a'
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

node_running() { ctl -q ping >/dev/null 2>&1; }

server_version() {
    local v
    v=$(ctl -q status 2>/dev/null | sed -n 's/^RabbitMQ version: *//p' | head -n1)
    [ -n "$v" ] || v=$(in_chroot rabbitmq-diagnostics -n "$NODE" -q server_version 2>/dev/null | tail -n1)
    [ -n "$v" ] || return 1
    echo "$v"
}

cmd_start() {
    select_version "$1"; need_root
    built || die "$VERSION: not built: run '$0 build $VERSION' first"
    lock
    local t0=$SECONDS
    configure
    mount_proc
    if node_running && amqp_ok "$PORT"; then
        say "$VERSION: already running ($NODE, $(url))"
        return 0
    fi
    local p
    for p in "$PORT" "$DIST" "$MGMT"; do
        port_busy "$p" && die "$VERSION: port $p is already in use by: $(ss -Hltnp "sport = :$p" | tr -s ' ')"
    done
    # The chroot's own epmd (left from an earlier run) may stay; another program on it may not.
    if port_busy "$EPMD" && [ -z "$(chroot_pids)" ]; then
        die "$VERSION: epmd port $EPMD is in use by something outside $DIR: $(ss -Hltnp "sport = :$EPMD" | tr -s ' ')"
    fi
    say "$VERSION: starting $NODE on 127.0.0.1:$PORT (log: $LOG)"
    # setsid: its own session, so a caller's Ctrl-C or exiting shell does not take it down.
    setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/rabbitmq LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        ERL_EPMD_PORT="$EPMD" ERL_EPMD_ADDRESS=127.0.0.1 \
        chroot "$DIR" /bin/sh -c 'cd /var/lib/rabbitmq && exec rabbitmq-server' \
        >"$LOG" 2>&1 </dev/null 9>&- &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    local deadline=$((SECONDS + START_TIMEOUT)) left
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG" >&2
            tail -n 30 "$DIR/var/log/rabbitmq/startup_err" "$DIR/var/log/rabbitmq/$NODE.log" 2>/dev/null | tail -n 40 >&2
            die "$VERSION: rabbitmq-server exited during startup (log: $LOG, $DIR/var/log/rabbitmq/)"
        fi
        left=$((deadline - SECONDS))
        [ "$left" -gt 0 ] || break
        if ctl -q await_startup --timeout "$left" >/dev/null 2>&1 && amqp_ok "$PORT"; then
            say "$VERSION: RabbitMQ $(server_version || echo '?') up in $((SECONDS - t0)) s: $(url)"
            return 0
        fi
        sleep 2
    done
    tail -n 30 "$LOG" >&2
    die "$VERSION: node did not accept AMQP on 127.0.0.1:$PORT within $START_TIMEOUT s (it is left running; '$0 stop $VERSION' ends it)"
}

cmd_stop() {
    select_version "$1"; need_root
    built || die "$VERSION: not built ($DIR)"
    lock
    if node_running; then
        ctl stop >/dev/null 2>&1 || die "$VERSION: 'rabbitmqctl -n $NODE stop' failed"
    else
        say "$VERSION: $NODE was not running"
    fi
    local pid="" i
    [ -r "$PIDFILE" ] && pid=$(cat "$PIDFILE")
    for i in $(seq 60); do
        { [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && ! port_busy "$PORT" && break
        sleep 0.5
    done
    port_busy "$PORT" && die "$VERSION: port $PORT still in use after stopping $NODE"
    # Its own epmd: end it so nothing of this version lingers (the host's epmd is on 4369).
    in_chroot epmd -kill >/dev/null 2>&1 || true
    for i in $(seq 20); do port_busy "$EPMD" || break; sleep 0.5; done
    port_busy "$EPMD" && say "$VERSION: warning: its epmd still listens on 127.0.0.1:$EPMD"
    rm -f "$PIDFILE"
    for i in $(seq 20); do [ -z "$(chroot_pids)" ] && break; sleep 0.5; done
    if [ -z "$(chroot_pids)" ]; then
        umount_below "$DIR/proc" || say "$VERSION: warning: could not unmount $DIR/proc"
    else
        say "$VERSION: warning: processes still running in $DIR: $(chroot_pids | tr '\n' ' ')"
    fi
    say "$VERSION: stopped"
}

cmd_status() {
    select_version "$1"
    built || die "$VERSION: not built ($DIR)"
    local v
    if ! node_running; then
        echo "$VERSION: not running ($NODE, port $PORT)"
        exit 3
    fi
    v=$(server_version) || die "$VERSION: $NODE answers but its version could not be read"
    if amqp_ok "$PORT"; then
        echo "$VERSION: RabbitMQ $v running ($NODE, $(url))"
    else
        echo "$VERSION: RabbitMQ $v running ($NODE) but not accepting AMQP on 127.0.0.1:$PORT"
        exit 4
    fi
}

url() { echo "amqp://guest:guest@127.0.0.1:$PORT/%2f"; }
cmd_url() { select_version "$1"; url; }

cmd_all() {
    local v failed=""
    for v in 4.0 4.x; do
        ( cmd_build "$v" ) || failed="$failed $v(build)"
    done
    for v in 4.0 4.x; do
        case "$failed" in *"$v("*) continue ;; esac
        ( cmd_start "$v" ) || failed="$failed $v(start)"
    done
    for v in 4.0 4.x; do
        case "$failed" in *"$v("*) continue ;; esac
        ( cmd_status "$v" ) || failed="$failed $v(status)"
    done
    [ -z "$failed" ] || die "failed:$failed"
}

case "${1:-}" in
    build|start|stop|status|url)
        [ $# -eq 2 ] || die "usage: $0 $1 4.0|4.x"
        "cmd_$1" "$2" ;;
    all) [ $# -eq 1 ] || die "usage: $0 all"; cmd_all ;;
    ctl|plugins)
        [ $# -ge 2 ] || die "usage: $0 $1 4.0|4.x ARGS..."
        tool=rabbitmqctl
        [ "$1" = plugins ] && tool=rabbitmq-plugins
        select_version "$2"
        shift 2
        in_chroot "$tool" -n "$NODE" "$@" ;;
    -h|--help|help) usage ;;
    "") usage ;;
    *) die "unknown command '$1' (build, start, stop, status, url, all, ctl, plugins)" ;;
esac
