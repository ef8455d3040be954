-- Start generation: bumped by every start request, so a node can tell a
-- new "start" from the running desire it already acted on (a VM its guest
-- shut down stays down until the tenant starts it again).
ALTER TABLE vms ADD COLUMN start_gen BIGINT NOT NULL DEFAULT 0;
