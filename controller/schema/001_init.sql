-- fogfabric controller schema, migration 1.
-- Portable between sqlite3 and PostgreSQL: TEXT ids (UUIDs), BIGINT unix
-- times and amounts, INTEGER booleans (0/1), no engine-specific syntax.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'tenant', 'provider')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    salt         TEXT NOT NULL,
    hash         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE join_tokens (
    hash        TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    node_id     TEXT
);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    cred_id           TEXT NOT NULL UNIQUE,
    cred_salt         TEXT NOT NULL,
    cred_hash         TEXT NOT NULL,
    approved          INTEGER NOT NULL DEFAULT 0,
    kvm               INTEGER NOT NULL DEFAULT 0,
    arch              TEXT NOT NULL DEFAULT '',
    cpu_model         TEXT NOT NULL DEFAULT '',
    vcpus             INTEGER NOT NULL DEFAULT 0,
    memory_mib        BIGINT NOT NULL DEFAULT 0,
    disk_gib          BIGINT NOT NULL DEFAULT 0,
    mesh_ip           TEXT,
    wg_public_key     TEXT,
    endpoint          TEXT,
    observed_endpoint TEXT,
    revision          BIGINT NOT NULL DEFAULT 1,
    last_seen         BIGINT,
    created_at        BIGINT NOT NULL,
    removed_at        BIGINT
);
CREATE UNIQUE INDEX nodes_owner_name ON nodes(account_id, name)
    WHERE removed_at IS NULL;

CREATE TABLE vms (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT NOT NULL,
    vcpus         INTEGER NOT NULL,
    memory_mib    BIGINT NOT NULL,
    disk_gib      BIGINT NOT NULL,
    image         TEXT NOT NULL,
    allow_tcg     INTEGER NOT NULL DEFAULT 0,
    user_data     TEXT NOT NULL DEFAULT '',
    desired_state TEXT NOT NULL
        CHECK (desired_state IN ('running', 'stopped', 'deleted')),
    stop_force    INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL,
    state_reason  TEXT,
    node_id       TEXT REFERENCES nodes(id),
    reboot_gen    BIGINT NOT NULL DEFAULT 0,
    addresses     TEXT NOT NULL DEFAULT '[]',
    console       TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE UNIQUE INDEX vms_owner_name ON vms(account_id, name)
    WHERE deleted_at IS NULL;
CREATE INDEX vms_node ON vms(node_id);
CREATE INDEX vms_list ON vms(created_at, id);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    time_ms     BIGINT NOT NULL,
    account_id  TEXT,
    actor       TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    status      INTEGER NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_list ON events(time_ms, id);

CREATE TABLE idempotency (
    account_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);
