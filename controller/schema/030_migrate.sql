-- Cold migration of a stopped VM to another node through the hub's backup
-- store: migrate_state is NULL (never migrated), 'backing-up' while its
-- node uploads backup migrate_backup (a vm_backups row of kind
-- 'migrate'), 'moved' once it is placed anew from it, 'failed' with
-- migrate_error (nothing moved). migrate_to pins the target node (an id)
-- or is NULL for the node placement picks; migrate_from is the node it
-- left (or was to leave).
ALTER TABLE vms ADD COLUMN migrate_state TEXT
    CHECK (migrate_state IN ('backing-up', 'moved', 'failed'));
ALTER TABLE vms ADD COLUMN migrate_backup TEXT;
ALTER TABLE vms ADD COLUMN migrate_to TEXT;
ALTER TABLE vms ADD COLUMN migrate_from TEXT;
ALTER TABLE vms ADD COLUMN migrate_error TEXT;
