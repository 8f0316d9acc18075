#!/usr/bin/env bash
# `c360 dedupe` over seeded people: the wall time and peak memory of a dry
# run (read, train, block, score, cluster), and its accuracy against the
# seed's truth file (bench/accuracy.py). On a PostgreSQL database of its own
# (dropped first). Results: docs/identity-resolution.md and
# docs/performance.md ("Matching engine").
#
# Then Splink on an export of the same data (bench/splink.sh), scored the
# same way.
#
# Needs: a release build (cargo build --release -p c360-server --bins),
# PostgreSQL on 127.0.0.1, psql, GNU time; matplotlib for the picture;
# python3-venv and PyPI the first time for Splink.
# Loopback only.
set -euo pipefail
export C360_LOG=${C360_LOG:-warn}
cd "$(dirname "$0")/.."
c360=${CARGO_TARGET_DIR:-target}/release/c360
db=${BENCH_DEDUPE_DATABASE:-c360_bench_dedupe}
url=postgres://root@127.0.0.1/$db
profiles=${BENCH_DEDUPE_PROFILES:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r); $profiles profiles"
"$c360" seed --profiles "$profiles" --events 0 --seed 42 --truth "$work/truth.csv" --database-url "$url" --data-dir "$work"
psql -h 127.0.0.1 -U root -d "$db" -qc "ANALYZE"
/usr/bin/time -f "wall %e s, peak %M KB" "$c360" dedupe --tenant demo --dry-run --export-pairs "$work/pairs.csv" \
  --export-from 0.01 --database-url "$url" --data-dir "$work"
python3 bench/accuracy.py "$work/truth.csv" "$work/pairs.csv" ${BENCH_DEDUPE_PNG:+--png "$BENCH_DEDUPE_PNG"}
# Splink on the same people in the same sitting (BENCH_SPLINK=0 skips it):
# the export is what it reads, held identifiers included.
if [ "${BENCH_SPLINK:-1}" != 0 ]; then
  echo "== splink on the same data"
  "$c360" export --tenant demo --format csv --output "$work/profiles.csv" --database-url "$url" --data-dir "$work"
  bench/splink.sh "$work/profiles.csv" "$work/splink-pairs.csv" --quiet
  python3 bench/accuracy.py "$work/truth.csv" "$work/splink-pairs.csv"
fi
