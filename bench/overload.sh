#!/usr/bin/env bash
# The overload and TLS sitting (network issue's target): capacity measured
# closed loop, then twice that offered open loop (`c360 bench --rate`), for
# GetProfile on L1 hits and on cold reads (in-process cache off, every read
# from PostgreSQL); then GetProfile on L1 hits with and without TLS,
# alternated. Results: docs/performance.md ("Overload" and "TLS").
#
# Needs: a release build (cargo build --release -p c360-server --bins);
# PostgreSQL on 127.0.0.1. Loopback only; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}/release
c360=$target/c360
secs=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-2}
db=c360_overload
url=postgres://root@127.0.0.1/$db
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export C360_JWT_SECRET=bench-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"$c360" seed --tenant demo --profiles 20000 --database-url "$url" --data-dir "$work" > /dev/null 2>&1
psql -h 127.0.0.1 -U root -d "$db" -qc "ANALYZE"

# A CA and a server certificate for the TLS runs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/key.pem" -out "$work/req.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/ext"
openssl x509 -req -in "$work/req.pem" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -CAcreateserial -days 1 \
  -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null

serve() { # extra serve flags...
  C360_LOG=warn "$c360" serve --data-dir "$work" --database-url "$url" --grpc-addr 127.0.0.1:50051 \
    --http-addr 127.0.0.1:18080 "$@" > "$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -skf http://127.0.0.1:18080/healthz > /dev/null && return
    curl -skf https://127.0.0.1:18080/healthz > /dev/null && return
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$work/serve.log" >&2; exit 1
}
stop() { kill -TERM "$server"; wait "$server" || true; }
bench() { # bench args... → JSON line
  "$c360" bench --data-dir "$work" --tenant demo --duration "${secs}s" --warmup 2s --json "$@"
}
summary='import json,sys
r=json.load(sys.stdin); l=r["latency_ms"]
head = ("offered %d/s, answered %.0f/s, client late by %.1f ms p99: " % (r["offered_per_s"], r["answered_per_s"], r["send_lag_p99_ms"])) if r.get("offered_per_s") else ""
print("%s%.0f/s ok, p50 %.2f p99 %.2f ms, errors %s" % (head, r["throughput_per_s"], l["p50"], l["p99"], r["errors"] or "none"))'

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r)"
in_flight=${IN_FLIGHT:-128}
for mode in ${MODES:-cold l1}; do
  flags=(--max-in-flight "$in_flight"); scenario=(--scenario get-profile)
  if [ "$mode" = l1 ]; then scenario+=(--hot-set 1000); else flags+=(--cache-l1-capacity-mb 0); fi
  serve "${flags[@]}"
  echo "== GetProfile ($mode), --max-in-flight $in_flight"
  capacity=$(bench "${scenario[@]}" --concurrency 64)
  echo "capacity, closed loop c=64: $(echo "$capacity" | python3 -c "$summary")"
  rate=$(echo "$capacity" | python3 -c 'import json,sys; print(int(2*json.load(sys.stdin)["throughput_per_s"]))')
  overload=$(bench "${scenario[@]}" --rate "$rate" --connections 8)
  echo "open loop at 2x capacity: $(echo "$overload" | python3 -c "$summary")"
  python3 - "$capacity" "$overload" <<'PY'
import json, sys
cap, over = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ok = set(over["errors"]) <= {"Unavailable", "ResourceExhausted"}
print("admitted %.0f%% of capacity; admitted p99 %.1fx the p99 at capacity; errors only shedding: %s" % (
    100 * over["throughput_per_s"] / cap["throughput_per_s"],
    over["latency_ms"]["p99"] / cap["latency_ms"]["p99"], ok))
PY
  stop
done

[ -n "${NO_TLS:-}" ] && exit 0
echo "== TLS: GetProfile (L1) c=64, plaintext vs TLS, alternated"
for round in $(seq 1 "$rounds"); do
  serve
  echo "plaintext round $round: $(bench --scenario get-profile --hot-set 1000 --concurrency 64 | python3 -c "$summary")"
  stop
  serve --tls-cert-file "$work/cert.pem" --tls-key-file "$work/key.pem"
  echo "TLS       round $round: $(bench --scenario get-profile --hot-set 1000 --concurrency 64 \
    --target https://127.0.0.1:50051 --tls-ca-file "$work/ca.pem" --tls-server-name localhost | python3 -c "$summary")"
  stop
done
