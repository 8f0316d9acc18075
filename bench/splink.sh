#!/usr/bin/env bash
# Splink, the reference implementation of the model c360 dedupe estimates,
# on the people of a `c360 export`: bench/splink.py under GNU time (wall
# time and peak memory), writing the pairs it scores in the columns
# bench/accuracy.py reads, for a side-by-side with `c360 dedupe`
# (docs/identity-resolution.md).
#
#   c360 export --tenant demo --format csv --output profiles.csv ...
#   bench/splink.sh profiles.csv splink-pairs.csv [--threshold 0.01] [--max-pairs-u 1e6]
#   bench/accuracy.py truth.csv splink-pairs.csv
#
# Needs: python3 with venv (Debian: python3-venv), GNU time, PyPI the first
# time: Splink and DuckDB go into a virtualenv outside the repository,
# ${SPLINK_VENV:-~/.cache/c360-splink-venv}, installed only when the pinned
# versions are not there yet. Reads and writes local files only.
set -euo pipefail
# The versions the script was tried with: Splink's API changed at 5.0, and
# it leaves its SQL to sqlglot and DuckDB, so those are held still too.
pins=(splink==4.0.17 duckdb==2.0.1 sqlglot==30.31.0 pandas==3.1.1)
venv=${SPLINK_VENV:-$HOME/.cache/c360-splink-venv}
here=$(cd "$(dirname "$0")" && pwd)
python=$venv/bin/python
installed() {
  "$python" - "${pins[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(name) != want for name, want in (pin.split("==") for pin in sys.argv[1:])))
EOF
}
if ! [ -x "$python" ] || ! installed; then
  echo "== installing ${pins[*]} into $venv" >&2
  [ -x "$python" ] || python3 -m venv "$venv"
  "$python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
fi
/usr/bin/time -f "splink wall %e s, peak %M KB" "$python" "$here/splink.py" "$@"
