# Shared by the benchmark sittings (sourced, not run): the release binaries,
# a seeded PostgreSQL database, and helpers that start c360 and run
# `c360 bench` with a one-line summary.
target=${CARGO_TARGET_DIR:-target}/release
c360=$target/c360
db=${BENCH_DATABASE:-c360_bench}
url=postgres://root@127.0.0.1/$db
work=$(mktemp -d)
secs=${BENCH_SECONDS:-15}
# The keyed hash of identifiers in Redis key names (any 32 bytes will do here).
# Secrets reach c360 by environment or file, never by flag.
# Outside the embedded mode a token key must be configured; servers and clients share it.
export C360_JWT_SECRET=bench-jwt-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export C360_CACHE_KEY=bench-cache-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

psql -h 127.0.0.1 -U root -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql -h 127.0.0.1 -U root -d postgres -qc "CREATE DATABASE $db"
count=$(psql -h 127.0.0.1 -U root -d "$db" -qtAc "SELECT count(*) FROM profiles" 2>/dev/null || echo 0)
if [ "$count" -lt 1000000 ]; then
  echo "== seeding 1,000,000 profiles and 2,000,000 events"
  "$c360" seed --profiles 1000000 --events 2000000 --database-url "$url" --data-dir "$work"
fi

run() { # label, bench args...
  local label=$1; shift
  printf '%s: ' "$label"
  ${client[@]:-"$c360"} bench --data-dir "$work" "$@" --duration "${secs}s" --warmup 3s --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_ms"]; print("%.0f/s p50 %.3f p99 %.3f p99.9 %.3f ms, errors %s" % (r["throughput_per_s"], l["p50"], l["p99"], l["p99_9"], r["errors"] or "none"))'
}
serve() { # extra serve flags...
  C360_LOG=warn ${server_prefix[@]:-} "$c360" serve --data-dir "$work" --database-url "$url" --grpc-addr 127.0.0.1:50051 \
    --http-addr 127.0.0.1:18080 "$@" > "$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18080/readyz > /dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$work/serve.log" >&2; exit 1
}
stop() { kill -TERM "$server"; wait "$server" || true; }

# PostgreSQL's own primary-key select for the cold-read comparisons: pgbench
# needs an integer key, so `bench_profiles` is the seeded profiles table
# copied with one (same rows and width).
pk_table() {
  psql -h 127.0.0.1 -U root -d "$db" -qc "CREATE TABLE IF NOT EXISTS bench_profiles AS SELECT row_number() OVER () AS n, p.* FROM profiles p" \
    -c "DO \$\$ BEGIN ALTER TABLE bench_profiles ADD PRIMARY KEY (n); EXCEPTION WHEN others THEN NULL; END \$\$" \
    -c "VACUUM ANALYZE bench_profiles" -c "VACUUM ANALYZE profiles"
  printf '\\set n random(1, 1000000)\nSELECT * FROM bench_profiles WHERE n = :n;\n' > "$work/pk.sql"
}
pgbench_pk() { # clients; prints tps
  pgbench -h 127.0.0.1 -U root -n -M prepared -f "$work/pk.sql" -c "$1" -j 2 -T "$secs" "$db" 2>&1 | grep -E '^tps' | cut -d' ' -f3
}
