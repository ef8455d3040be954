-- Node lifecycle and fencing. A drained node takes no new placements.
-- place_gen counts a VM's placements: bumped each time it is placed on a
-- node, carried in the node's desired document, so a node that comes back
-- never starts a domain of an earlier placement. shutdown_timeout_s is how
-- long an ACPI shutdown may take before the node forces the power off.
ALTER TABLE nodes ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN place_gen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN shutdown_timeout_s INTEGER NOT NULL DEFAULT 60;
