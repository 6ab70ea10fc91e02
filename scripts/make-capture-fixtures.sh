#!/usr/bin/env bash
# Regenerates fixtures/captures/*.jsonl from real dead letters on the local RabbitMQ
# (127.0.0.1:5672, guest/guest; start one with `rabbitmq-server -detached`).
# Works in a fresh vhost with a random name, deleted afterwards, so the fixtures can use
# the plain queue names of the SPEC's example rules without touching anyone's queues.
set -euo pipefail
cd "$(dirname "$0")/.."
vhost="dlqd-fixtures-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
rabbitmqctl -q add_vhost "$vhost"
trap 'rabbitmqctl -q delete_vhost "$vhost"' EXIT
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
mkdir -p fixtures/captures
cargo run -q --example make_capture_fixtures -- "amqp://guest:guest@127.0.0.1:5672/$vhost" fixtures/captures
