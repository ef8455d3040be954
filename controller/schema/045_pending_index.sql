-- The scheduler's pass reads the oldest unplaced VMs in order: this index
-- gives them in that order, where vms_node_alloc left every unplaced VM to
-- be sorted on each pass (50 ms at 100,000 of them).
CREATE INDEX vms_pending ON vms(node_id, deleted_at, created_at, id);
