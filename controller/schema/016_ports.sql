-- Well-known host ports a provider permits on its node beyond its range
-- (80, 443, 25565, 27015, ...), as the agent reports them.
CREATE TABLE node_permit_ports (
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    port        INTEGER NOT NULL,
    PRIMARY KEY (node_id, port)
);
