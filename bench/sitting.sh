#!/usr/bin/env bash
# One benchmark sitting: the raw stores and c360, back to back on this
# machine, so every c360 figure can be stated as a ratio to a store figure
# taken minutes apart (the machine is shared and noisy; absolute numbers are
# not comparable across sittings). Results: docs/performance.md.
#
# Needs: a release build (cargo build --release -p c360-server --bins --benches),
# PostgreSQL and Redis on 127.0.0.1, redis-benchmark and pgbench. Loopback only;
# every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ceiling=$(ls "$target"/deps/ceiling-* | grep -v '\.d$' | head -n 1)
pk_table

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r)"
echo "== raw Redis: redis-benchmark -t get -d 1024 -n 400000"
for c in 64 16; do
  printf 'redis GET c=%s: ' "$c"
  redis-benchmark -h 127.0.0.1 -p 6379 -t get -c "$c" -d 1024 -n 400000 | grep -E 'throughput summary' | awk '{print $3 "/s"}'
done
echo "== raw PostgreSQL: pgbench -M prepared primary-key select on a copy of profiles"
for c in 64 16 1; do
  printf 'pgbench c=%s: ' "$c"; pgbench_pk "$c"
done

# Latency runs give the server and the load generator one core each (with
# one runtime thread each), so neither preempts the other: the p99 at c=16 is
# otherwise the scheduler's time slice, even for the bare ceiling.
pinned_server=(taskset -c 0)
pinned_client=(taskset -c 1 "$c360" --worker-threads 1)


echo "== framework ceiling (benches/ceiling.rs), GetProfile of a fixed profile"
"$ceiling" --addr 127.0.0.1:50099 > /dev/null & ceiling_pid=$!
sleep 1
for c in 64 16; do run "ceiling c=$c" --target http://127.0.0.1:50099 --scenario get-profile --concurrency "$c"; done
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true
TOKIO_WORKER_THREADS=1 "${pinned_server[@]}" "$ceiling" --addr 127.0.0.1:50099 > /dev/null & ceiling_pid=$!
sleep 1
client=("${pinned_client[@]}")
run "ceiling c=16, one core each" --target http://127.0.0.1:50099 --scenario get-profile --concurrency 16
unset client
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true

echo "== c360 on PostgreSQL + Redis"
serve --redis-url redis://127.0.0.1:6379 --cache-prefix "bench-$RANDOM"
for c in 64 16; do run "c360 get-profile hot set 1000 (L1) c=$c" --scenario get-profile --hot-set 1000 --concurrency "$c"; done
run "c360 mixed hot set 1000 c=64" --scenario mixed --hot-set 1000 --concurrency 64
stop
server_prefix=("${pinned_server[@]}") client=("${pinned_client[@]}")
serve --worker-threads 1 --redis-url redis://127.0.0.1:6379 --cache-prefix "bench-$RANDOM"
run "c360 get-profile hot set 1000 (L1) c=16, one core each" --scenario get-profile --hot-set 1000 --concurrency 16
stop
unset server_prefix client
serve --redis-url redis://127.0.0.1:6379 --cache-prefix "bench-$RANDOM" --cache-l1-capacity-mb 0
run "c360 get-profile hot set 1000, L1 off (Redis hit) c=64" --scenario get-profile --hot-set 1000 --concurrency 64
stop
serve --redis-url redis://127.0.0.1:6379 --cache-prefix "bench-$RANDOM" --database-max-connections 8
# pgbench right before and after the cold run: the host's database speed swings widely.
printf 'pgbench c=64 (before): '; pgbench_pk 64
run "c360 get-profile uniform over 1M, cold caches c=64" --scenario get-profile --concurrency 64
printf 'pgbench c=64 (after): '; pgbench_pk 64
run "c360 get-profile uniform over 1M, cold caches c=1" --scenario get-profile --concurrency 1 --max-ids 1000000
echo "L1 after the uniform runs: $(curl -s http://127.0.0.1:18080/metrics | grep -E '^c360_(cache_l1_(bytes|entries)|cache_database_loads_total|database_profile_queries_total)' | tr '\n' ' ')"
echo "server RSS: $(grep VmRSS /proc/$server/status | awk '{print $2/1024 " MiB"}') (L1 bound 256 MiB)"
stop
serve --database-max-connections 8
run "c360 get-profile uniform over 1M, cold caches, no Redis c=64" --scenario get-profile --concurrency 64
stop
printf 'pgbench c=64 (last): '; pgbench_pk 64

# Cold reads by the protocol of docs/performance.md ("Cold reads"): three
# alternated pairs of pgbench and c360 on fresh caches, the median ratio.
echo "== cold reads: alternated pairs (bench/cold.sh)"
bench/cold.sh
