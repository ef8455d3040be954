-- Tenant quotas set by an admin for one account (the defaults are
-- controller settings), and the capacity an admin approved for each node:
-- a node's later reports never raise what the scheduler uses above it.
CREATE TABLE account_quotas (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    kind        TEXT NOT NULL,
    max_count   BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);
ALTER TABLE nodes ADD COLUMN cap_vcpus INTEGER;
ALTER TABLE nodes ADD COLUMN cap_memory_mib BIGINT;
ALTER TABLE nodes ADD COLUMN cap_disk_gib BIGINT;
ALTER TABLE nodes ADD COLUMN reported_vcpus INTEGER;
ALTER TABLE nodes ADD COLUMN reported_memory_mib BIGINT;
ALTER TABLE nodes ADD COLUMN reported_disk_gib BIGINT;
-- Nodes approved before capacity was recorded keep what they had.
UPDATE nodes SET cap_vcpus = vcpus, cap_memory_mib = memory_mib,
    cap_disk_gib = disk_gib WHERE approved = 1;
