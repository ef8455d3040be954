-- Evictions as the hub saw them: evictions_total counts every VM a node
-- took away from a tenant (the decayed figure feeding the score is
-- node_trust.evictions); running_gen is the VM's start_gen when it was last
-- reported running, so a stop the tenant asked for and a start since
-- (start_gen moved on) never count as an eviction.
ALTER TABLE node_trust ADD COLUMN evictions_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN running_gen BIGINT NOT NULL DEFAULT 0;
UPDATE vms SET running_gen = start_gen WHERE state = 'running';
-- Availability windows (issue 16): the weekly hours during which new VMs
-- may be placed on the node, as canonical text ("mon-fri 19:00-07:00",
-- several joined by "; "; NULL: always), local to a fixed offset in
-- minutes east of UTC. Running VMs are never touched by them.
ALTER TABLE nodes ADD COLUMN avail_windows TEXT;
ALTER TABLE nodes ADD COLUMN avail_tz_min INTEGER NOT NULL DEFAULT 0;
