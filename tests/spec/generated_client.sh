#!/bin/sh
# Generates a TypeScript client from api/openapi.yaml with openapi-typescript,
# compiles tests/spec/generated_client.mts against it with tsc --strict and
# runs it with node against the controller at FOG_URL (as FOG_KEY, trusting
# FOG_CA). Exit 77 when node or the npm packages are missing.
set -eu
. tests/spec/lib.sh
: "${FOG_URL:?}" "${FOG_KEY:?}" "${FOG_CA:?}"
work=$(mktemp -d "${TMPDIR:-/tmp}/fog-as-client-XXXXXX")
trap 'rm -rf "$work"' EXIT
ln -s "$NODE_PATH" "$work/node_modules"
"$JS_BIN/openapi-typescript" api/openapi.yaml -o "$work/api.d.ts" 2>&1
cp tests/spec/generated_client.mts "$work/"
"$JS_BIN/tsc" --strict --target es2022 --module nodenext \
    --moduleResolution nodenext --skipLibCheck --types node --typeRoots "$NODE_PATH/@types" \
    --outDir "$work/out" "$work/generated_client.mts"
ln -s "$NODE_PATH" "$work/out/node_modules"
NODE_EXTRA_CA_CERTS=$FOG_CA node "$work/out/generated_client.mjs"
