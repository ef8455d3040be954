-- Values the controller allocates are unique in the database itself, so
-- that replicas sharing one PostgreSQL database can never hand one out
-- twice (addresses, MACs, host ports and VXLAN ids already are).
CREATE UNIQUE INDEX nodes_mesh_ip ON nodes(mesh_ip);
