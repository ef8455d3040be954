-- Incremental backups: a backup is 'full' (the whole disk) or
-- 'incremental' (the clusters changed since parent_id, a ready backup of
-- the same VM). parent_id is set when the backup is asked for (the VM's
-- last ready backup taken on its node, while its chain is shorter than
-- the hub's full-every) and cleared when the node took a full one
-- instead, whose reason is full_reason, or when it failed. A backup
-- named as parent_id by another is never deleted alone (409 naming
-- them) nor pruned by retention before them.
ALTER TABLE vm_backups ADD COLUMN mode TEXT NOT NULL DEFAULT 'full'
    CHECK (mode IN ('full', 'incremental'));
ALTER TABLE vm_backups ADD COLUMN parent_id TEXT;
ALTER TABLE vm_backups ADD COLUMN full_reason TEXT;
CREATE INDEX vm_backups_parent ON vm_backups (parent_id);
