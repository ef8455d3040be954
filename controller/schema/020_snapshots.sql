-- Snapshots of a VM's disk (and memory, when it ran) kept by its node.
-- A row is 'pending' until the node reports the snapshot, 'ready' while
-- it does, 'deleting' once the tenant deleted it (the row goes when the
-- node no longer reports it) and 'lost' when the node stopped holding it
-- otherwise (the VM was placed afresh). consistency is what the node
-- took: 'checkpoint' (memory and disk of a running VM) or 'powered-off'.
-- revert_gen counts reverts asked for (revert_snapshot names the last),
-- revert_done_gen the last one the node reported done.
CREATE TABLE vm_snapshots (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms(id),
    name        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    consistency TEXT,
    created_at  BIGINT NOT NULL,
    taken_at    BIGINT,
    UNIQUE (vm_id, name)
);
ALTER TABLE vms ADD COLUMN revert_gen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN revert_snapshot TEXT;
ALTER TABLE vms ADD COLUMN revert_done_gen BIGINT NOT NULL DEFAULT 0;
