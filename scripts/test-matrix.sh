#!/usr/bin/env bash
# The test suite on every RabbitMQ dlqd supports, from one build:
#
#   3.10  the machine's own node, 127.0.0.1:5672: every test (`cargo test --locked`),
#         the three-node 4.x cluster test included (tests/cluster.rs);
#   4.0   RabbitMQ 4.0 (Debian 13), and
#   4.x   the newest 4.x (Debian testing), each from scripts/broker-matrix.sh: every
#         broker test binary again, with DLQD_TEST_URL naming that node and
#         DLQD_TEST_RABBITMQ_ROOT its chroot (the private nodes the fault, permission,
#         frame-size and TLS tests crash and restart run that version too).
#
# Pure tests (no broker) run once, on the 3.10 pass. A version that cannot be built or
# started fails the run with broker-matrix.sh's message; nothing is skipped. At the
# end: one line per version with its test count. Exit 0 only when every pass passed.
#
#   scripts/test-matrix.sh            all three versions
#   scripts/test-matrix.sh 4.x        only the broker tests on one 4.x version
#
# Needs root (the 4.x nodes run in chroots) and the 3.10 node running (see README).
set -uo pipefail
cd "$(dirname "$0")/.."

# Test binaries that need no broker: run once, with the 3.10 pass.
PURE="check_diagnostics dry_run_cli fuzz_regressions poison_facts report_escaping rules_examples rules_meaning rules_proptest"
# Runs once, with the 3.10 pass: it starts its own three 4.x nodes.
ONCE="cluster"

VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.10 4.0 4.x)

LOGDIR=$(mktemp -d /tmp/dlqd-test-matrix.XXXXXX)
declare -A PASSED FAILED SECONDS_TAKEN SERVER
status=0

say() { echo "test-matrix: $*" >&2; }

# Sum "test result: ... N passed; M failed" lines of a cargo test log.
count() {
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
         END { printf "%d %d\n", p, f }' "$1"
}

broker_tests() {
    local t n out=""
    for t in tests/*.rs; do
        n=$(basename "$t" .rs)
        case " $PURE $ONCE " in *" $n "*) continue ;; esac
        out="$out --test $n"
    done
    echo "$out"
}

# The chroots first: the 3.10 pass runs the cluster test, which needs the 4.x one.
need_chroots=""
for v in "${VERSIONS[@]}"; do
    case "$v" in
        3.10) need_chroots="$need_chroots 4.x" ;;
        4.0|4.x) need_chroots="$need_chroots $v" ;;
    esac
done
for v in $(echo "$need_chroots" | tr ' ' '\n' | sort -u); do
    if ! bash scripts/broker-matrix.sh build "$v"; then
        say "cannot build the RabbitMQ $v chroot (see above): failing, not skipping"
        exit 1
    fi
done

say "building the tests once"
cargo test --locked --no-run >"$LOGDIR/build.log" 2>&1 || { tail -n 40 "$LOGDIR/build.log" >&2; say "build failed"; exit 1; }

for v in "${VERSIONS[@]}"; do
    log="$LOGDIR/$v.log"
    t0=$SECONDS
    case "$v" in
        3.10)
            SERVER[$v]=$(rabbitmqctl -q version 2>/dev/null || echo "?")
            say "RabbitMQ ${SERVER[$v]} (127.0.0.1:5672): cargo test --locked (log: $log)"
            cargo test --locked --no-fail-fast >"$log" 2>&1
            rc=$?
            ;;
        4.0|4.x)
            if ! bash scripts/broker-matrix.sh build "$v" || ! bash scripts/broker-matrix.sh start "$v"; then
                say "RabbitMQ $v cannot be started (see above): failing, not skipping"
                PASSED[$v]=0 FAILED[$v]=1 SECONDS_TAKEN[$v]=$((SECONDS - t0)) SERVER[$v]="$v (not started)"
                status=1
                continue
            fi
            SERVER[$v]=$(bash scripts/broker-matrix.sh status "$v" | sed -n 's/^[^:]*: RabbitMQ \([^ ]*\) running.*/\1/p')
            url=$(bash scripts/broker-matrix.sh url "$v")
            root=${DLQD_BROKERS_DIR:-/var/lib/dlqd-brokers}/$v
            say "RabbitMQ ${SERVER[$v]} ($url): the broker tests (log: $log)"
            # shellcheck disable=SC2046 # one --test per binary
            DLQD_TEST_URL="$url" DLQD_TEST_RABBITMQ_ROOT="$root" \
                cargo test --locked --no-fail-fast $(broker_tests) >"$log" 2>&1
            rc=$?
            ;;
        *) say "unknown version '$v' (3.10, 4.0 or 4.x)"; exit 2 ;;
    esac
    read -r p f < <(count "$log")
    PASSED[$v]=$p FAILED[$v]=$f SECONDS_TAKEN[$v]=$((SECONDS - t0))
    if [ "$rc" -ne 0 ] || [ "$p" -eq 0 ]; then
        status=1
        grep -E '^(test .* FAILED|failures:|---- )|panicked at' "$log" | head -n 40 >&2
        say "RabbitMQ ${SERVER[$v]}: FAILED (exit $rc; full log: $log)"
    fi
done

echo
echo "test matrix (logs in $LOGDIR):"
for v in "${VERSIONS[@]}"; do
    printf '  RabbitMQ %-8s %4d passed  %2d failed  %4d s\n' \
        "${SERVER[$v]}" "${PASSED[$v]}" "${FAILED[$v]}" "${SECONDS_TAKEN[$v]}"
done
exit $status
