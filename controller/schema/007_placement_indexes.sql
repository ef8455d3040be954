-- Placement walks schedulable nodes in first-fit order and stops at the
-- first that fits; a node's used capacity is read from an index alone.
-- (deleted_at is a column, not a partial-index condition, so sqlite uses
-- the index as covering.)
CREATE INDEX nodes_sched ON nodes(created_at, id) WHERE approved = 1 AND removed_at IS NULL;
CREATE INDEX vms_node_alloc ON vms(node_id, deleted_at, vcpus, memory_mib, disk_gib);
DROP INDEX vms_node;
