#!/usr/bin/env bash
# The consent sitting: PostgreSQL's own single-row insert rate (pgbench) and
# c360's SetConsent, back to back, then BatchCheckConsent of 1,000 profiles on
# warm data. Results: docs/performance.md ("Consent").
#
# Needs: a release build (cargo build --release -p c360-server --bins),
# PostgreSQL on 127.0.0.1 and pgbench. Loopback only; every load is bounded
# in time.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

# The raw store: one prepared INSERT per transaction, into a table shaped like
# consent_decisions, with the same synchronous commit.
psql -h 127.0.0.1 -U root -d "$db" -qc "DROP TABLE IF EXISTS bench_inserts" \
  -c "CREATE TABLE bench_inserts (tenant_id varchar(64) NOT NULL, id uuid NOT NULL, profile_id uuid NOT NULL,
      purpose varchar(32) NOT NULL, status varchar(16) NOT NULL, source varchar(100) NOT NULL, evidence text,
      captured_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, id))"
cat > "$work/insert.sql" <<'SQL'
INSERT INTO bench_inserts VALUES ('demo', gen_random_uuid(), gen_random_uuid(), 'EMAIL_MARKETING', 'GRANTED', 'bench', 'benchmark', now());
SQL
pgbench_insert() { # clients
  printf 'pgbench insert c=%s: ' "$1"
  pgbench -h 127.0.0.1 -U root -n -M prepared -f "$work/insert.sql" -c "$1" -j 2 -T "$secs" "$db" 2>&1 | grep -E '^tps' | cut -d' ' -f3
}

# Autovacuum is off on the benchmark host: give the planner current
# statistics before c360 prepares its statements (production relies on
# autovacuum for this).
psql -h 127.0.0.1 -U root -d "$db" -qc "ANALYZE profiles" -c "ANALYZE identities" -c "ANALYZE outbox" \
  -c "ANALYZE consents" -c "ANALYZE consent_decisions" 2>/dev/null || true
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r); synchronous_commit=$(psql -h 127.0.0.1 -U root -d "$db" -qtAc 'SHOW synchronous_commit')"
serve
for c in 64 16; do
  pgbench_insert "$c"
  run "c360 set-consent c=$c" --scenario set-consent --hot-set 20000 --concurrency "$c"
done
pgbench_insert 64
echo "decisions recorded: $(psql -h 127.0.0.1 -U root -d "$db" -qtAc 'SELECT count(*) FROM consent_decisions'), in force: $(psql -h 127.0.0.1 -U root -d "$db" -qtAc 'SELECT count(*) FROM consents')"
# Warm data: the 20,000 profiles just written to, each with its decision,
# vacuumed as autovacuum would have by now (it is off on this host), so the
# liveness index answers without visiting the profile rows the writes locked.
psql -h 127.0.0.1 -U root -d "$db" -qc "VACUUM ANALYZE profiles" -c "VACUUM ANALYZE consents"
for c in 1 4; do
  run "c360 batch-check-consent 1000 profiles c=$c" --scenario batch-check-consent --batch-size 1000 \
    --hot-set 20000 --concurrency "$c"
done
stop
