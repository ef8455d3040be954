-- Backups of VM disks kept in the hub's backup store (controller/bstore.h),
-- and what restores and moves a VM from one. A row is 'pending' until its
-- node begins the upload, 'uploading' while it sends, 'ready' once the
-- store committed bytes that hash to sha256, 'failed' with error
-- otherwise. kind: 'manual', 'scheduled', or 'migrate' (taken to move the
-- VM). The blob in the store is named by the row's id and sealed with the
-- VM's backup_key (64 hex, made at its first backup), which only the
-- node hosting the VM ever receives. The row outlives its node; it goes
-- with its VM or when deleted (or pruned by the VM's schedule).
CREATE TABLE vm_backups (
    id         TEXT PRIMARY KEY,
    vm_id      TEXT NOT NULL REFERENCES vms(id),
    node_id    TEXT,
    kind       TEXT NOT NULL DEFAULT 'manual'
               CHECK (kind IN ('manual', 'scheduled', 'migrate')),
    state      TEXT NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'uploading', 'ready', 'failed')),
    error      TEXT,
    size       BIGINT,
    sha256     TEXT,
    created_at BIGINT NOT NULL,
    done_at    BIGINT
);
CREATE INDEX vm_backups_vm ON vm_backups (vm_id, created_at);
ALTER TABLE vms ADD COLUMN backup_key TEXT;
-- A placement that starts the VM from a backup instead of its image:
-- set with the place_gen bump of a restore, migration or evacuation,
-- cleared once the node reports the VM defined at that generation.
ALTER TABLE vms ADD COLUMN restore_backup TEXT;
-- 'none' or 'on-host-failure': restore from the latest ready backup on
-- another node once the VM's node has been unreachable for the hub's
-- evacuate-after.
ALTER TABLE vms ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'none';
-- A schedule per VM: 'daily' or 'hourly' (NULL: none), keeping the
-- newest backup_keep scheduled backups.
ALTER TABLE vms ADD COLUMN backup_schedule TEXT;
ALTER TABLE vms ADD COLUMN backup_keep INTEGER NOT NULL DEFAULT 7;
