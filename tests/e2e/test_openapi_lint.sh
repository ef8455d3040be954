#!/bin/bash
# api/openapi.yaml passes redocly's linter (its recommended rules, see
# tools/js/redocly.yaml) with no error, and the answer checker rejects a
# recorded answer that breaks the spec (so a passing check means something).
set -eu
. tests/spec/lib.sh
"$JS_BIN/redocly" lint --config tools/js/redocly.yaml --format stylish \
    api/openapi.yaml
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fog-as-lint-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A node state outside the enum, an undocumented status, a 405 without
# Allow and an accepted agent status post whose VM state is outside the
# contract must each fail the checker.
cat >"$tmp/bad.jsonl" <<'LOG'
{"method":"GET","path":"/v1/nodes/n1","status":200,"content_type":"application/json","body":"{\"id\":\"68efcba4-9e28-4cfb-ba58-612e97b7a7df\",\"name\":\"n1\",\"account_id\":\"68efcba4-9e28-4cfb-ba58-612e97b7a7df\",\"state\":\"ready\",\"approved\":true,\"kvm\":false,\"drained\":false,\"capacity\":{\"vcpus\":1,\"memory_mib\":1,\"disk_gib\":1},\"used\":{\"vcpus\":0,\"memory_mib\":0,\"disk_gib\":0},\"vm_count\":0,\"last_seen\":null,\"created_at\":\"2026-12-03T14:13:38Z\"}"}
{"method":"GET","path":"/v1/vms","status":418,"content_type":"application/problem+json","body":"{\"type\":\"x\",\"title\":\"x\",\"status\":418}"}
{"method":"PUT","path":"/v1/vms","status":405,"content_type":"application/problem+json","body":"{\"type\":\"x\",\"title\":\"x\",\"status\":405}"}
{"method":"POST","path":"/v1/agent/status","status":200,"content_type":"application/json","body":"{\"ok\":true}","request":"{\"vms\":[{\"id\":\"68efcba4-9e28-4cfb-ba58-612e97b7a7df\",\"state\":\"sleeping\"}]}"}
LOG
out=$(node tools/openapi_check.js api/openapi.yaml "$tmp/bad.jsonl") && {
    echo "the checker passed a log that breaks the spec:"; echo "$out"; exit 1; }
echo "$out"
for want in 'body/state must be equal to one of the allowed values' \
            'status 418 not documented' '405 Allow ""' \
            'request/vms/0/state must be equal to one of the allowed values'; do
    grep -qF "$want" <<<"$out" || { echo "checker missed: $want"; exit 1; }
done
echo "lint: 0 errors; checker rejects bad answers and bad accepted requests"
