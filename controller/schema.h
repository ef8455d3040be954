/* Numbered schema migrations compiled in from controller/schema/NNN_*.sql. */
#pragma once

struct schema_migration {
    unsigned version;
    const char *name;
    const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const unsigned schema_migration_count;
