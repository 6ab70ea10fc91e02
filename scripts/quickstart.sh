#!/usr/bin/env bash
# dlqd quick start: from a fresh clone, against the local RabbitMQ (127.0.0.1:5672,
# guest/guest, or $DLQD_URL). It builds dlqd, makes real dead letters, looks at them
# without consuming them, dry-runs rules/quickstart.rules on a capture, then lets
# `dlqd run --once` handle the DLQ and shows where every message ended up.
# Re-runnable: it deletes and recreates its demo queues (dlqd.demo.*) each time.
# Start a broker first if none runs: rabbitmq-server -detached
set -euo pipefail
cd "$(dirname "$0")/.."

export DLQD_URL="${DLQD_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
work=target/quickstart
rules=rules/quickstart.rules
mkdir -p "$work"

step() { printf '\n==> %s\n' "$*"; }

step "Building dlqd and the demo producer (examples/quickstart.rs)"
cargo build --quiet --bin dlqd --example quickstart
dlqd=target/debug/dlqd
demo=target/debug/examples/quickstart

step "1. A dead-lettering setup, and dead letters made the real ways"
"$demo" setup

step "2. dlqd inspect --queue dlqd.demo.dlq --messages      (metadata only; consumes nothing)"
"$dlqd" inspect --queue dlqd.demo.dlq --messages

step "3. dlqd capture --queue dlqd.demo.dlq --out $work/dlq.jsonl      (consumes nothing)"
"$dlqd" capture --queue dlqd.demo.dlq --out "$work/dlq.jsonl"
head -c 600 "$work/dlq.jsonl"; printf '...\n'

step "4. dlqd check $rules"
"$dlqd" check "$rules"

step "5. dlqd dry-run --rules $rules $work/dlq.jsonl      (no broker involved)"
"$dlqd" dry-run --rules "$rules" "$work/dlq.jsonl"

step "6. The demo queues before dlqd runs"
"$demo" status "$work/before.txt"

step "7. DLQD_LOG=info,dlqd::daemon=debug dlqd run --once --rules $rules (a line per action)"
DLQD_LOG=info,dlqd::daemon=debug "$dlqd" run --once --rules "$rules"

step "8. The demo queues after"
"$demo" status "$work/after.txt"

step "Where each message went"
"$demo" moves "$work/before.txt" "$work/after.txt"
