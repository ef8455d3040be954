#!/bin/sh
# Checks every answer recorded in FOG_SPEC_LOG files (the integration
# tests' clients write them; see api/speclog.h) against api/openapi.yaml.
# Usage: sh tests/spec/check_answers.sh LOG...
set -eu
. tests/spec/lib.sh
[ $# -gt 0 ] || { echo "usage: check_answers.sh LOG..."; exit 2; }
for f in "$@"; do
    [ -s "$f" ] || { echo "no answers were recorded in $f"; exit 1; }
done
exec node tools/openapi_check.js api/openapi.yaml "$@"
