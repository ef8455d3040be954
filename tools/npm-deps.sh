#!/bin/sh
# Installs the npm packages pinned in tools/js/package-lock.json (the
# OpenAPI linter, the response validator, the client generator and the
# TypeScript compiler, the S3 emulator s3rver) into $O/js/node_modules. Idempotent: does nothing
# when that lock is already installed. Tests never download.
set -eu
O=${O:-build}
dst=$O/js
if [ -d "$dst/node_modules" ] &&
   cmp -s tools/js/package-lock.json "$dst/package-lock.json"; then
    exit 0
fi
command -v npm >/dev/null || { echo "npm-deps: npm is not installed" >&2; exit 1; }
mkdir -p "$dst"
cp tools/js/package.json tools/js/package-lock.json "$dst/"
echo "installing npm packages into $dst"
cd "$dst"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
