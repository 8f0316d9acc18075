#!/usr/bin/env bash
# Online matching's cost (issue 20's target: CreateProfile throughput with
# matching on at least 50% of without, in one sitting). Two tenants seeded
# alike in the benchmark database: `online` gets a model from a deduplication
# run (so every create is matched), `online0` has none (no create is). Each
# round loads CreateProfile on one, then on the other. Results:
# docs/performance.md ("Online matching").
#
# Needs: a release build (cargo build --release -p c360-server --bins),
# PostgreSQL on 127.0.0.1. Loopback only; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
people=${BENCH_PEOPLE:-100000}
rounds=${BENCH_ROUNDS:-2}

for tenant in online online0; do
  n=$(psql -h 127.0.0.1 -U root -d "$db" -qtAc "SELECT count(*) FROM profiles WHERE tenant_id = '$tenant'")
  if [ "$n" -lt "$people" ]; then
    echo "== seeding $people profiles of tenant $tenant"
    "$c360" seed --tenant "$tenant" --profiles "$people" --events 0 --database-url "$url" --data-dir "$work" > /dev/null
  fi
done
models=$(psql -h 127.0.0.1 -U root -d "$db" -qtAc "SELECT count(*) FROM match_models WHERE tenant_id = 'online'")
if [ "$models" -eq 0 ]; then
  echo "== deduplicating tenant online (estimates its model, counts its values)"
  "$c360" dedupe --tenant online --database-url "$url" --data-dir "$work" | tail -n 3
fi
psql -h 127.0.0.1 -U root -d "$db" -qc "ANALYZE profiles" -c "ANALYZE identities" -c "ANALYZE match_candidates"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r)"
serve
for round in $(seq 1 "$rounds"); do
  run "round $round, without a model (online0) c=16" --scenario create --tenant online0 --concurrency 16 --max-ids 1
  run "round $round, matched (online) c=16" --scenario create --tenant online --concurrency 16 --max-ids 1
done
echo "queued for review in tenant online: $(psql -h 127.0.0.1 -U root -d "$db" -qtAc "SELECT count(*) FROM match_candidates WHERE tenant_id = 'online' AND status = 'PENDING'"); merged by online matching: $(psql -h 127.0.0.1 -U root -d "$db" -qtAc "SELECT count(*) FROM profile_merges WHERE tenant_id = 'online' AND actor = 'system:match'" 2>/dev/null || echo '?')"
stop
