# Sourced by the OpenAPI checks: finds the npm packages that
# tools/npm-deps.sh installed (under $O/js, else build/js) and sets
# NODE_PATH and JS_BIN; exits 77 (skip) saying why when they are missing.
# Nothing is downloaded here.
O=${O:-build}
JS_DIR=""
for d in "$O/js" build/js; do
    if [ -d "$d/node_modules/ajv" ]; then JS_DIR=$d; break; fi
done
if [ -z "$JS_DIR" ] || ! command -v node >/dev/null; then
    echo "node or the npm packages are missing: run sh tools/npm-deps.sh"
    exit 77
fi
NODE_PATH=$(cd "$JS_DIR/node_modules" && pwd); export NODE_PATH
JS_BIN=$NODE_PATH/.bin
# The linter would otherwise phone home and look for updates.
REDOCLY_TELEMETRY=off; export REDOCLY_TELEMETRY
REDOCLY_SUPPRESS_UPDATE_NOTICE=true; export REDOCLY_SUPPRESS_UPDATE_NOTICE
