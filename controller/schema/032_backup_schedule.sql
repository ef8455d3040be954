-- When VM's next scheduled backup is due (vms.backup_schedule 'hourly',
-- 'daily' or 'weekly'; NULL when it has none): the leader starts it once
-- this has passed (controller/bsched.c), then moves it to the next slot.
-- Each VM's slot sits at its own offset into the period, so VMs due at
-- the same hour do not all start in the same second.
ALTER TABLE vms ADD COLUMN backup_next_at BIGINT;
CREATE INDEX vms_backup_next ON vms (backup_next_at);
-- Retention never prunes a backup a placement restores from or a
-- migration moves through: looked up by backup id.
CREATE INDEX vms_restore_backup ON vms (restore_backup);
CREATE INDEX vms_migrate_backup ON vms (migrate_backup);
