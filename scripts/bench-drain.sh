#!/usr/bin/env bash
# The drain benchmark of SPEC §7 — run by hand, not in CI.
#
#   scripts/bench-drain.sh [ROUNDS]          (default 3 rounds)
#
# Needs: a local RabbitMQ node (127.0.0.1:5672, guest/guest; start one with
# `rabbitmq-server -detached`), `rabbitmqctl` on PATH, and the shovel plugin. This script
# ENABLES the shovel plugin on the local node (`rabbitmq-plugins enable rabbitmq_shovel`)
# if it is not enabled: fine on a development node, ask first on a shared one.
#
# What it measures, each round, on the same machine and broker:
#   1. shovel   — RabbitMQ's own dynamic shovel (ack-mode on-confirm, src-delete-after
#                 queue-length) moving COUNT persistent SIZE-byte messages to another queue;
#   2. dlqd     — `dlqd run --once` (release build) with one forward rule doing the same;
#   3. dlqd1000 — the same with a RULES-rule table whose forward rule is the last one;
#   4. lapin    — the raw-lapin mover (examples/drain_bench.rs `move`): consume, publish
#                 with confirms, ack on confirm, nothing else — what lapin itself allows;
#   5. old      — (only with DLQD_OLD=/path/to/an/older/dlqd, and "old" in KINDS) that
#                 binary doing what dlqd does in 2., to compare two builds in one run;
#   6. dlqd@N   — (any N, e.g. KINDS="shovel dlqd dlqd@1000 dlqd@2000") dlqd as in 2.
#                 with --prefetch N, to compare prefetch settings in one run.
# dlqd's own CPU (user+sys from /usr/bin/time, start-up included) divided by COUNT is
# printed per round as "dlqd CPU µs/msg" (target <= 15); the raw-lapin mover's the same way
# ("raw lapin CPU"), the floor a lapin-based mover sets. The broker's CPU during each move
# (the node's beam.smp, utime+stime from /proc, from the mover's start to the last message
# in) is printed per kind as "broker µs/msg": what each way of moving costs the broker,
# which shares the two cores with the mover.
# The clock (examples/drain_bench.rs `wait`) starts when the source queue first shrinks and
# stops when the target holds every message, so neither mover's start-up is counted. Every
# run checks that all COUNT messages arrived. It prints per-round rates, then medians and
# the ratios dlqd/shovel (target >= 1) and dlqd1000/dlqd (target >= 0.90).
# Finally it drains BIG messages under /usr/bin/time -v and prints dlqd's peak RSS
# ("Maximum resident set size"; target < 64 MiB). BIG=0 skips that part.
#
# Environment: COUNT (100000), SIZE (1024), RULES (1000), BIG (1000000), KINDS (which
# movers: "shovel dlqd lapin dlqd1000", plus "old" with DLQD_OLD), PREFETCH (dlqd's
# default 500 unless set; the raw mover uses the same), DLQD_BENCH_URL (else
# DLQD_TEST_URL, else amqp://guest:guest@127.0.0.1:5672/%2f), QUEUE_TYPE (quorum: the
# source queue, the DLQ, is a quorum queue), PROFILE (release; "profiling" keeps symbols),
# BROKER (4.0 or 4.x: run on that scripts/broker-matrix.sh node instead of the local one;
# it is started, and the shovel plugin enabled on it, as needed).
#
# The 4.x variant with a quorum DLQ:
#   BROKER=4.x QUEUE_TYPE=quorum KINDS="shovel dlqd lapin" BIG=0 scripts/bench-drain.sh 3
# dlqd's logs (the default info level: a progress line every 10 s and the run summary) go
# to a file in the work dir.
set -euo pipefail

ROUNDS=${1:-3}
COUNT=${COUNT:-100000}
SIZE=${SIZE:-1024}
RULES=${RULES:-1000}
BIG=${BIG:-1000000}
KINDS=${KINDS:-shovel dlqd lapin dlqd1000}
PREFETCH=${PREFETCH:-500}
PREFETCH_ARGS=(--prefetch "$PREFETCH")
PROFILE=${PROFILE:-release}
BROKER=${BROKER:-}

cd "$(dirname "$0")/.."
if [[ -n $BROKER ]]; then
    scripts/broker-matrix.sh status "$BROKER" >/dev/null 2>&1 || scripts/broker-matrix.sh start "$BROKER"
    URL=$(scripts/broker-matrix.sh url "$BROKER")
    ctl() { scripts/broker-matrix.sh ctl "$BROKER" "$@"; }
    plugins() { scripts/broker-matrix.sh plugins "$BROKER" "$@"; }
else
    URL=${DLQD_BENCH_URL:-${DLQD_TEST_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}}
    ctl() { rabbitmqctl "$@"; }
    plugins() { rabbitmq-plugins "$@"; }
fi
WORK=$(mktemp -d -t dlqd-bench.XXXXXX)
PREFIX="bench.$$.$RANDOM"

die() { echo "bench-drain: $*" >&2; exit 1; }

cleanup() {
    ctl clear_parameter shovel "$PREFIX-shovel" >/dev/null 2>&1 || true
    local left
    left=$(ctl -q list_queues name 2>/dev/null | grep -F "$PREFIX." || true)
    if [[ -n $left && -x ${BQ:-} ]]; then
        # shellcheck disable=SC2086
        "$BQ" delete "$URL" $left >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

[[ -n $BROKER ]] || command -v rabbitmqctl >/dev/null || die "rabbitmqctl not found (apt-get install rabbitmq-server)"
ctl -q await_startup --timeout 5 >/dev/null 2>&1 ||
    die "no RabbitMQ node running: start one with 'rabbitmq-server -detached'"
if ! plugins -q list -e 2>/dev/null | grep -q 'rabbitmq_shovel '; then
    echo "enabling the shovel plugin on the node (rabbitmq-plugins enable rabbitmq_shovel)"
    plugins -q enable rabbitmq_shovel >/dev/null
fi

echo "building ($PROFILE): dlqd and examples/drain_bench"
cargo build -q --profile "$PROFILE" --bin dlqd --example drain_bench
TARGET=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
DLQD=$TARGET/$PROFILE/dlqd
BQ=$TARGET/$PROFILE/examples/drain_bench
echo "broker: $(ctl -q status 2>/dev/null | sed -n 's/^RabbitMQ version: *//p' | head -n1) at $(sed 's/:[^:@]*@/:***@/' <<<"$URL"); source queue type: ${QUEUE_TYPE:-classic}; dlqd $(du -h "$DLQD" | cut -f1)"

# A rules table of RULES rules whose last one forwards to the queue given as $1.
make_rules() {
    local file=$1 dst=$2 i
    {
        echo "* $RULES rules; only the last one matches the benchmark's messages"
        for ((i = 1; i < RULES; i++)); do
            case $((i % 4)) in
                0) echo "MSGID(nomatch.$i.*) ACTION(DISCARD)" ;;
                1) echo "APPID(app-$i) ACTION(FWD) FWDQ(parked.$i)" ;;
                2) echo "HDR(x-tenant=t$i) REASON(rejected) ACTION(RETRY) RETRY(3) DELAY(1s)" ;;
                3) echo "TYPE(/^type$i\$/) ACTION(IGNORE)" ;;
            esac
        done
        echo "ACTION(FWD) FWDQ($dst)"
    } >"$file"
}

# move_with KIND ROUND: fill a fresh queue, move it with KIND, print the rate (msg/s).
move_with() {
    local kind=$1 round=$2 src dst out status
    src="$PREFIX.$kind.$round.src"
    dst="$PREFIX.$kind.$round.dst"
    DLQD_BENCH_QUEUE_TYPE=${QUEUE_TYPE:-classic} "$BQ" fill "$URL" "$src" "$COUNT" "$SIZE" 2>>"$WORK/fill.log"
    "$BQ" declare "$URL" "$dst"
    "$BQ" wait "$URL" "$src" "$dst" "$COUNT" 1800 >"$WORK/wait.out" &
    local waiter=$!
    sleep 0.2
    local beam0; beam0=$(beam_ticks)
    case $kind in
        shovel)
            ctl -q set_parameter shovel "$PREFIX-shovel" \
                "{\"src-protocol\":\"amqp091\",\"src-uri\":\"amqp://\",\"src-queue\":\"$src\",\"src-delete-after\":\"queue-length\",\"dest-protocol\":\"amqp091\",\"dest-uri\":\"amqp://\",\"dest-queue\":\"$dst\",\"ack-mode\":\"on-confirm\"}" >/dev/null
            ;;
        dlqd)
            status=0
            /usr/bin/time -f "%U %S" -o "$WORK/cpu.$round" \
                "$DLQD" run --url "$URL" --once --queue "$src" "${PREFETCH_ARGS[@]}" \
                --rule "ACTION(FWD) FWDQ($dst)" 2>"$WORK/dlqd.$round.log" || status=$?
            ((status == 0)) || die "dlqd exited $status; log: $WORK/dlqd.$round.log"
            ;;
        lapin)
            /usr/bin/time -f "%U %S" -o "$WORK/lapincpu.$round" \
                "$BQ" move "$URL" "$src" "$dst" "$COUNT" "$PREFETCH" || die "the raw-lapin mover failed"
            ;;
        old)
            [[ -x ${DLQD_OLD:-} ]] || die "kind 'old' needs DLQD_OLD=/path/to/dlqd"
            status=0
            "$DLQD_OLD" run --url "$URL" --once --queue "$src" "${PREFETCH_ARGS[@]}" \
                --rule "ACTION(FWD) FWDQ($dst)" 2>"$WORK/old.$round.log" || status=$?
            ((status == 0)) || die "old dlqd exited $status; log: $WORK/old.$round.log"
            ;;
        dlqd@*)
            status=0
            /usr/bin/time -f "%U %S" -o "$WORK/cpu.$kind.$round" \
                "$DLQD" run --url "$URL" --once --queue "$src" --prefetch "${kind#dlqd@}" \
                --rule "ACTION(FWD) FWDQ($dst)" 2>"$WORK/$kind.$round.log" || status=$?
            ((status == 0)) || die "dlqd exited $status; log: $WORK/$kind.$round.log"
            ;;
        dlqd1000)
            make_rules "$WORK/rules.$round" "$dst"
            status=0
            "$DLQD" run --url "$URL" --once --queue "$src" "${PREFETCH_ARGS[@]}" \
                --rules "$WORK/rules.$round" 2>"$WORK/dlqd1000.$round.log" || status=$?
            ((status == 0)) || die "dlqd exited $status; log: $WORK/dlqd1000.$round.log"
            ;;
    esac
    wait "$waiter" || die "$kind round $round: not every message arrived (see above)"
    awk -v a="$beam0" -v b="$(beam_ticks)" -v t="$TICK" -v n="$COUNT" \
        'BEGIN {printf "%.1f", (b - a) * 1e6 / t / n}' >"$WORK/beam.$kind.$round"
    out=$(cat "$WORK/wait.out")
    "$BQ" delete "$URL" "$src" "$dst"
    ctl clear_parameter shovel "$PREFIX-shovel" >/dev/null 2>&1 || true
    # "moved N in S s: R msg/s" -> R
    awk '{print $(NF-1)}' <<<"$out"
}

# The broker node's OS process (beam.smp) and its CPU time so far, in clock ticks.
BEAM=$(ctl eval 'os:getpid().' 2>/dev/null | tr -dc '0-9')
[[ -n $BEAM && -r /proc/$BEAM/stat ]] || die "cannot find the broker's OS process (rabbitmqctl eval 'os:getpid().')"
TICK=$(getconf CLK_TCK)
beam_ticks() { awk '{print $14 + $15}' "/proc/$BEAM/stat"; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

label() {
    case $1 in
        shovel) echo "shovel" ;;
        dlqd) echo "dlqd (1 rule)" ;;
        dlqd1000) echo "dlqd ($RULES rules)" ;;
        lapin) echo "raw lapin" ;;
        old) echo "old dlqd (1 rule)" ;;
        dlqd@*) echo "dlqd (prefetch ${1#dlqd@})" ;;
    esac
}

echo "drain: $COUNT persistent messages of $SIZE B, $ROUNDS rounds ($KINDS); work dir $WORK"
declare -A RATES MEDIAN BEAMS
CPU=""
LAPINCPU=""
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for kind in $KINDS; do
        rate=$(move_with "$kind" "$r")
        RATES[$kind]+="$rate "
        beam=$(cat "$WORK/beam.$kind.$r")
        BEAMS[$kind]+="$beam "
        line+=" $(label "$kind") $rate msg/s (broker $beam µs/msg),"
        if [[ $kind == dlqd ]]; then
            cpu=$(awk -v n="$COUNT" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$WORK/cpu.$r")
            CPU+="$cpu "
            line+=" dlqd CPU $cpu µs/msg,"
        fi
        if [[ $kind == dlqd@* ]]; then
            cpu=$(awk -v n="$COUNT" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$WORK/cpu.$kind.$r")
            line+=" CPU $cpu µs/msg,"
        fi
        if [[ $kind == lapin ]]; then
            cpu=$(awk -v n="$COUNT" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$WORK/lapincpu.$r")
            LAPINCPU+="$cpu "
            line+=" raw lapin CPU $cpu µs/msg,"
        fi
    done
    echo "${line%,}"
done
line="median:"
for kind in $KINDS; do
    # shellcheck disable=SC2086
    MEDIAN[$kind]=$(printf '%s\n' ${RATES[$kind]} | median)
    line+=" $(label "$kind") ${MEDIAN[$kind]} msg/s,"
done
echo "${line%,}"
line="broker CPU per message moved (median):"
for kind in $KINDS; do
    # shellcheck disable=SC2086
    line+=" $(label "$kind") $(printf '%s\n' ${BEAMS[$kind]} | median) µs,"
done
echo "${line%,}"
if [[ -n ${MEDIAN[shovel]:-} && -n ${MEDIAN[dlqd]:-} ]]; then
    awk -v d="${MEDIAN[dlqd]}" -v s="${MEDIAN[shovel]}" 'BEGIN {r = d / s; printf "ratio dlqd/shovel: %.2f (target >= 1.00: %s)\n", r, (r >= 1 ? "met" : "NOT met")}'
fi
if [[ -n ${MEDIAN[lapin]:-} && -n ${MEDIAN[shovel]:-} ]]; then
    awk -v l="${MEDIAN[lapin]}" -v s="${MEDIAN[shovel]}" -v d="${MEDIAN[dlqd]:-0}" 'BEGIN {printf "ratio raw lapin/shovel: %.2f; dlqd/raw lapin: %.2f\n", l / s, d / l}'
fi
if [[ -n $CPU ]]; then
    # shellcheck disable=SC2086
    printf '%s\n' $CPU | median | awk '{printf "dlqd CPU per message (user+sys / messages, median): %.1f µs (target <= 15: %s)\n", $1, ($1 <= 15 ? "met" : "NOT met")}'
fi
if [[ -n $LAPINCPU ]]; then
    # shellcheck disable=SC2086
    printf '%s\n' $LAPINCPU | median | awk '{printf "raw lapin mover CPU per message (median): %.1f µs (the floor lapin itself sets)\n", $1}'
fi
for kind in $KINDS; do
    if [[ $kind == dlqd@* && -n ${MEDIAN[shovel]:-} ]]; then
        awk -v d="${MEDIAN[$kind]}" -v s="${MEDIAN[shovel]}" -v k="$(label "$kind")" 'BEGIN {printf "ratio %s/shovel: %.2f\n", k, d / s}'
    fi
done
if [[ -n ${MEDIAN[old]:-} && -n ${MEDIAN[dlqd]:-} ]]; then
    awk -v d="${MEDIAN[dlqd]}" -v o="${MEDIAN[old]}" 'BEGIN {printf "ratio dlqd/old dlqd: %.2f\n", d / o}'
fi
if [[ -n ${MEDIAN[dlqd1000]:-} && -n ${MEDIAN[dlqd]:-} ]]; then
    awk -v k="${MEDIAN[dlqd1000]}" -v d="${MEDIAN[dlqd]}" -v n="$RULES" 'BEGIN {r = k / d; printf "ratio dlqd %d rules / 1 rule: %.2f (target >= 0.90: %s)\n", n, r, (r >= 0.9 ? "met" : "NOT met")}'
fi

if ((BIG > 0)); then
    src="$PREFIX.big.src"
    dst="$PREFIX.big.dst"
    echo "memory: filling $src with $BIG messages of $SIZE B"
    "$BQ" fill "$URL" "$src" "$BIG" "$SIZE" 2>>"$WORK/fill.log"
    "$BQ" declare "$URL" "$dst"
    status=0
    /usr/bin/time -v -o "$WORK/time.big" "$DLQD" run --url "$URL" --once --queue "$src" \
        "${PREFETCH_ARGS[@]}" --rule "ACTION(FWD) FWDQ($dst)" 2>"$WORK/dlqd.big.log" || status=$?
    ((status == 0)) || die "dlqd exited $status; log: $WORK/dlqd.big.log"
    "$BQ" wait "$URL" "$src" "$dst" "$BIG" 60 >/dev/null ||
        die "memory run: not every message arrived"
    KIB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.big")
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.big")
    awk -v k="$KIB" -v n="$BIG" -v w="$WALL" 'BEGIN {m = k / 1024; printf "peak RSS draining %d messages: %.1f MiB (wall %s; target < 64 MiB: %s)\n", n, m, w, (m < 64 ? "met" : "NOT met")}'
    "$BQ" delete "$URL" "$src" "$dst"
fi
rm -rf "$WORK"
