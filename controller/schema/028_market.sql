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
-- The hub's application pool "verified": admin-verified images (by sha256;
-- name is the digest) and templates (by name, with their image's sha256).
-- A node whose policy names the pool (nodes.policy_pool = 'verified')
-- accepts exactly these, matched by content as its own entries are.
CREATE TABLE pool_members (
    kind      TEXT NOT NULL CHECK (kind IN ('template', 'image')),
    name      TEXT NOT NULL,
    digest    TEXT NOT NULL,
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
ALTER TABLE nodes ADD COLUMN policy_pool TEXT;
