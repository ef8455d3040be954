-- What each change to a node's desired state touched, kept where the
-- change writes anyway, so that a controller holding the node's document
-- at revision B rebuilds only what changed since. nodes.whole_rev is the
-- last revision whose change may have touched anything (read everything
-- when it is past B); vms.desired_rev the revision of its node at the last
-- change of the VM's own part (read the VMs past B, drop those gone from
-- the node). Changes to the members outside the VM list move neither:
-- those members are read with every build.
ALTER TABLE nodes ADD COLUMN whole_rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN desired_rev BIGINT;
