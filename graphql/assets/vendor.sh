#!/usr/bin/env bash
# Fetches GraphiQL and React from the npm registry and stores the files the
# facade serves, gzip-compressed (`c360` serves them as stored, with
# Content-Encoding: gzip; browsers behind firewalls reach no CDN).
# Run from anywhere: bash graphql/assets/vendor.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent graphiql@3.8.3 react@18.3.1 react-dom@18.3.1 >/dev/null
for archive in *.tgz; do
  mkdir "${archive%.tgz}" && tar xzf "$archive" -C "${archive%.tgz}"
done
store() { gzip -9 -n -c "$1" >"$here/$2.gz"; }
store graphiql-3.8.3/package/graphiql.min.js graphiql.min.js
store graphiql-3.8.3/package/graphiql.min.css graphiql.min.css
store react-18.3.1/package/umd/react.production.min.js react.production.min.js
store react-dom-18.3.1/package/umd/react-dom.production.min.js react-dom.production.min.js
cp graphiql-3.8.3/package/LICENSE "$here/LICENSE.graphiql"
cp react-18.3.1/package/LICENSE "$here/LICENSE.react"
echo "stored in $here:"
ls -l "$here"/*.gz
