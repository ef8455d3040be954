-- Values the controller allocates are unique in the database itself, so
-- that replicas sharing one PostgreSQL database can never hand one out
-- twice (addresses, MACs, host ports and VXLAN ids already are).
-- Replicas racing before this could give two nodes one mesh address: the
-- older keeps it, the newer loses it (it must register again to get one).
UPDATE nodes SET mesh_ip = NULL WHERE mesh_ip IS NOT NULL AND EXISTS (
    SELECT 1 FROM nodes o WHERE o.mesh_ip = nodes.mesh_ip AND
    (o.created_at < nodes.created_at OR
     (o.created_at = nodes.created_at AND o.id < nodes.id)));
CREATE UNIQUE INDEX nodes_mesh_ip ON nodes(mesh_ip);
