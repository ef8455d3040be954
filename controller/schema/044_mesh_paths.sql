-- The path a node's packets to each of its relayed peers take now, as
-- its agent reports it (api/agentproto.h AGENT_MESH_PATHS): "direct" once
-- a direct try worked, else "relay-udp" or "relay-tcp"; since when (unix
-- seconds, the agent's clock). Shown on the node; events mark changes.
CREATE TABLE node_mesh_paths (
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    peer_id     TEXT NOT NULL REFERENCES nodes(id),
    path        TEXT NOT NULL,
    since       BIGINT NOT NULL,
    PRIMARY KEY (node_id, peer_id)
);
