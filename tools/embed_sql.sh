#!/bin/sh
# Turn numbered schema files into a C table of migrations compiled into the
# controller: { version, sql } in file order.
set -eu
echo "/* Generated from the controller schema files by tools/embed_sql.sh. */"
echo '#include "controller/schema.h"'
echo 'const struct schema_migration schema_migrations[] = {'
for f in "$@"; do
    v=$(basename "$f" | sed 's/^0*\([0-9][0-9]*\).*/\1/')
    printf '    { %s, "%s",\n' "$v" "$(basename "$f")"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/      "/' -e 's/$/\\n"/' "$f"
    echo '    },'
done
echo '};'
echo 'const unsigned schema_migration_count = sizeof(schema_migrations) / sizeof(schema_migrations[0]);'
