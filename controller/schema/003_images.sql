-- Image catalog, SSH keys of accounts, and the image a VM was made from.

CREATE TABLE images (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT NOT NULL,
    version       TEXT NOT NULL DEFAULT '1',
    visibility    TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    source        TEXT NOT NULL,
    state         TEXT NOT NULL,
    state_reason  TEXT,
    format        TEXT,
    size          BIGINT,
    virtual_size  BIGINT,
    sha256        TEXT,
    min_disk_gib  BIGINT NOT NULL DEFAULT 1,
    os_type       TEXT,
    os_distro     TEXT,
    os_version    TEXT,
    os_arch       TEXT,
    inspection    TEXT NOT NULL DEFAULT 'pending',
    created_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE UNIQUE INDEX images_owner_name ON images(account_id, name)
    WHERE deleted_at IS NULL;

CREATE TABLE ssh_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX ssh_keys_owner_name ON ssh_keys(account_id, name);

ALTER TABLE vms ADD COLUMN image_id TEXT REFERENCES images(id);
ALTER TABLE vms ADD COLUMN template TEXT;
ALTER TABLE nodes ADD COLUMN allowed_images TEXT;
ALTER TABLE nodes ADD COLUMN allowed_templates TEXT;
