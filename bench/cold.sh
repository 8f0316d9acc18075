#!/usr/bin/env bash
# Cold reads against PostgreSQL's own primary-key select: three alternated
# pairs of runs in one sitting (pgbench, then c360 on fresh caches: a new
# instance with an empty L1 and a new Redis prefix), and the median of the
# three ratios. GetProfile uniform over the 1M seeded profiles, c=64,
# PostgreSQL + Redis. Results: docs/performance.md ("Cold reads").
#
# Needs: a release build (cargo build --release -p c360-server --bins),
# PostgreSQL and Redis on 127.0.0.1, pgbench. Loopback only; every load is
# bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
pk_table
# A checkpoint now, not in the middle of a pgbench run (seeding and the copy
# above leave gigabytes of dirty pages): it once cut pgbench to 691 tps.
psql -h 127.0.0.1 -U root -d "$db" -qc "CHECKPOINT"
pairs=${BENCH_PAIRS:-3}
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r); $pairs pairs, ${secs}s each"
ratios=()
for pair in $(seq 1 "$pairs"); do
  pg=$(pgbench_pk 64)
  serve --redis-url redis://127.0.0.1:6379 --cache-prefix "bench-cold-$RANDOM-$pair" --database-max-connections 8
  report=$("$c360" bench --data-dir "$work" --scenario get-profile --concurrency 64 --duration "${secs}s" --warmup 3s --json)
  stop
  ratio=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.1f" % (100 * r["throughput_per_s"] / float(sys.argv[2])))' "$report" "$pg")
  echo "pair $pair: pgbench c=64 $pg tps; c360 $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency_ms"]; print("%.0f/s p50 %.2f p99 %.2f ms, errors %s" % (r["throughput_per_s"], l["p50"], l["p99"], r["errors"] or "none"))' "$report"); ratio ${ratio}%"
  ratios+=("$ratio")
done
echo "median ratio: $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')%"
