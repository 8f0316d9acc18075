#!/usr/bin/env bash
# `c360 import` of a million rows against `c360 seed`'s rate per profile and
# PostgreSQL's own COPY of the same file, in one sitting, on a database of
# its own (dropped first). Each round seeds 1M profiles into a new tenant,
# exports them as CSV, imports the file into another new tenant, and COPYs
# it into a plain table of text columns. Results: docs/performance.md
# ("Import").
#
# Needs: a release build (cargo build --release -p c360-server --bins),
# PostgreSQL on 127.0.0.1, psql. Loopback only.
set -euo pipefail
export C360_LOG=${C360_LOG:-warn}
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}/release
c360=$target/c360
db=${BENCH_IMPORT_DATABASE:-c360_bench_import}
url=postgres://root@127.0.0.1/$db
rows=${BENCH_IMPORT_ROWS:-1000000}
rounds=${BENCH_IMPORT_ROUNDS:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"$c360" migrate --database-url "$url" --data-dir "$work" > /dev/null
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -r); $rows rows, $rounds round(s)"
rate() { python3 -c 'import sys; print("%.0f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
for round in $(seq 1 "$rounds"); do
  psql -h 127.0.0.1 -U root -d "$db" -qc "CHECKPOINT"
  seeded=$("$c360" seed --tenant "seeded$round" --profiles "$rows" --duplicates 0 --database-url "$url" --data-dir "$work" | tail -1)
  seed_rate=$(echo "$seeded" | sed -E 's/.*\(([0-9]+)\/s\).*/\1/')
  "$c360" export --tenant "seeded$round" --format csv --output "$work/export.csv" --database-url "$url" --data-dir "$work" 2> /dev/null
  psql -h 127.0.0.1 -U root -d "$db" -qc "CHECKPOINT"
  imported=$("$c360" import --tenant "imported$round" --source legacy --file "$work/export.csv" --database-url "$url" --data-dir "$work" | head -1)
  import_rate=$(echo "$imported" | sed -E 's/.*, ([0-9]+) rows\/s\).*/\1/')
  columns=$(head -1 "$work/export.csv" | tr -d '\r' | sed -E 's/([^,]+)/"\1" text/g')
  psql -h 127.0.0.1 -U root -d "$db" -qc "DROP TABLE IF EXISTS bench_copy" -c "CREATE TABLE bench_copy ($columns)" -c "CHECKPOINT"
  started=$(date +%s.%N)
  psql -h 127.0.0.1 -U root -d "$db" -qc "\\copy bench_copy FROM '$work/export.csv' WITH (FORMAT csv, HEADER true)"
  copy_rate=$(rate "$rows" "$(python3 -c "import time,sys; print(time.time() - float(sys.argv[1]))" "$started")")
  echo "round $round: seed ${seed_rate}/s; import ${import_rate}/s ($(python3 -c "import sys; print('%.0f' % (100 * float(sys.argv[1]) / float(sys.argv[2])))" "$import_rate" "$seed_rate")% of seed); COPY ${copy_rate}/s (import at $(python3 -c "import sys; print('%.1f' % (100 * float(sys.argv[1]) / float(sys.argv[2])))" "$import_rate" "$copy_rate")% of COPY)"
  echo "  $imported"
done
