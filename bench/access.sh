#!/usr/bin/env bash
# The access-policy sitting: GetProfile on L1 hits at c=64 with an analyst
# token (every response masked) and an agent token (unmasked, so every
# response is read-audited, coalesced), on this build and on a build from
# before masking and audit, back to back and alternated (old, new, old, new),
# beside the framework ceiling. Results: docs/performance.md ("Access policy").
#
# Needs: a release build of this tree (cargo build --release -p c360-server
# --bins --benches) and OLD_C360 pointing at the release binary of the older
# commit; PostgreSQL on 127.0.0.1. Loopback only; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}/release
new=$target/c360
old=${OLD_C360:?set OLD_C360 to the c360 release binary built before the access policy}
ceiling=$(ls "$target"/deps/ceiling-* | grep -v '\.d$' | head -n 1)
secs=${BENCH_SECONDS:-15}
rounds=${BENCH_ROUNDS:-2}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# Outside the embedded mode a token key must be configured; servers and clients share it.
export C360_JWT_SECRET=bench-jwt-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

run() { # label, bench args... (the client is always this build's: it mints tokens by role)
  local label=$1; shift
  printf '%s: ' "$label"
  "$new" bench --data-dir "$work" "$@" --duration "${secs}s" --warmup 3s --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print("%.0f/s p50 %.3f p99 %.3f ms, errors %s" % (r["throughput_per_s"], l["p50"], l["p99"], r["errors"] or "none"))'
}

# Each build gets its own database (an older build refuses a newer schema),
# seeded alike by the same deterministic generator.
for build in old new; do
  db=c360_access_$build
  psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  bin=$old; [ "$build" = new ] && bin=$new
  "$bin" seed --tenant demo --profiles 20000 --database-url "postgres://root@127.0.0.1/$db" --data-dir "$work" > /dev/null 2>&1
done

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r)"
echo "== framework ceiling (benches/ceiling.rs), GetProfile of a fixed profile"
"$ceiling" --addr 127.0.0.1:50099 > /dev/null & ceiling_pid=$!
sleep 1
run "ceiling c=64" --target http://127.0.0.1:50099 --concurrency 64
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true

for round in $(seq 1 "$rounds"); do
  for build in old new; do
    bin=$old; [ "$build" = new ] && bin=$new
    C360_LOG=warn "$bin" serve --data-dir "$work" --database-url "postgres://root@127.0.0.1/c360_access_$build" \
      --grpc-addr 127.0.0.1:50051 --http-addr 127.0.0.1:18080 > "$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18080/readyz > /dev/null && break; sleep 0.1; done
    for role in analyst agent; do
      run "round $round, $build build, $role, hot set 1,000 (L1 hits), c=64" \
        --scenario get-profile --concurrency 64 --hot-set 1000 --role "$role"
    done
    kill -TERM "$server"; wait "$server" || true
  done
done
