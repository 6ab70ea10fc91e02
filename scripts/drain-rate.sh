#!/usr/bin/env bash
# Drain rate of `dlqd run --once` with one forward rule over N persistent SIZE-byte
# messages, and of RabbitMQ's shovel moving the same queue, in the same run.
# Needs RabbitMQ on 127.0.0.1:5672 (`rabbitmq-server -detached`); the shovel part needs
# `rabbitmq-plugins enable rabbitmq_shovel` (skipped with a note when it is not enabled).
#   N=100000 SIZE=1024 PREFETCH=2000 scripts/drain-rate.sh   (NO_BUILD=1: use the last release build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
SIZE=${SIZE:-1024}
PREFETCH=${PREFETCH:-500}
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin dlqd --example bench_queue
BIN=target/release
Q=dlqd-bench.dlq.$$
T=dlqd-bench.target.$$
trap '$BIN/examples/bench_queue delete "$Q" "$T" >/dev/null 2>&1 || true' EXIT

$BIN/examples/bench_queue delete "$Q" "$T"
echo "filling $Q with $N persistent ${SIZE}-byte messages ..."
$BIN/examples/bench_queue fill "$Q" "$N" "$SIZE"
$BIN/examples/bench_queue fill "$T" 0 0
start=$(date +%s.%N)
$BIN/dlqd run --once --prefetch "$PREFETCH" --queue "$Q" --rule "ACTION(FWD) FWDQ($T)" 2>/tmp/dlqd-drain-rate.log
end=$(date +%s.%N)
moved=$($BIN/examples/bench_queue count "$T")
left=$($BIN/examples/bench_queue count "$Q")
[ "$moved" = "$N" ] && [ "$left" = 0 ] || { echo "moved $moved, left $left of $N" >&2; exit 1; }
secs=$(echo "$end - $start" | bc -l)
printf 'dlqd run --once --prefetch %d: %d msgs in %.2f s = %.0f msgs/s (includes connect and the WAIT(NO) check)\n' \
  "$PREFETCH" "$N" "$secs" "$(echo "$N / $secs" | bc -l)"

if rabbitmq-plugins list -e 2>/dev/null | grep -q rabbitmq_shovel; then
  $BIN/examples/bench_queue delete "$T"
  $BIN/examples/bench_queue fill "$T" 0 0
  URI=amqp://guest:guest@127.0.0.1:5672/%2f
  # The queue is full again: fill, then shovel it across with confirms, as dlqd does.
  $BIN/examples/bench_queue fill "$Q" "$N" "$SIZE"
  rabbitmqctl set_parameter shovel "dlqd-bench-$$" \
    "{\"src-uri\":\"$URI\",\"src-queue\":\"$Q\",\"dest-uri\":\"$URI\",\"dest-queue\":\"$T\",\"ack-mode\":\"on-confirm\",\"src-delete-after\":\"queue-length\"}" >/dev/null
  secs=$($BIN/examples/bench_queue wait "$T" "$N")
  rabbitmqctl clear_parameter shovel "dlqd-bench-$$" >/dev/null 2>&1 || true
  printf 'shovel (on-confirm): %d msgs in %.2f s = %.0f msgs/s\n' "$N" "$secs" "$(echo "$N / $secs" | bc -l)"
else
  echo "shovel: rabbitmq_shovel not enabled (rabbitmq-plugins enable rabbitmq_shovel); not compared"
fi
