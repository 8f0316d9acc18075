#!/usr/bin/env bash
# The relay sitting: a private tansu broker (in-memory) on a free port, then
# the bare rdkafka producer, c360's drain of a committed backlog and its
# commit-to-consumer latency, one after the other (server/benches/relay.rs).
# Results: docs/performance.md ("Relay").
#
# Needs: tansu (see README.md) and PostgreSQL on 127.0.0.1. Loopback only;
# every load is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ > /dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; tansu $(tansu --version 2>/dev/null | head -1)"
cargo bench -q -p c360-server --bench relay -- --brokers "127.0.0.1:$port" \
  --admin-url postgres://root@127.0.0.1/postgres --rows "${ROWS:-100000}" --rate "${RATE:-1000}" --seconds "${SECONDS_AT_RATE:-10}"
