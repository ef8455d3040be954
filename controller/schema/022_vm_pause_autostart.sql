-- virsh suspend/resume and autostart. paused: the tenant wants the VM
-- held suspended while it is meant to run (desired_state stays 'running',
-- so billing and quotas treat it as running). autostart: whether the VM
-- starts again when its node reboots (default on).
ALTER TABLE vms ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN autostart INTEGER NOT NULL DEFAULT 1;
