-- The agent contract version each node last spoke (api/agentproto.h
-- AGENT_CONTRACT_HEADER; 1 for agents older than the header), recorded at
-- registration and on every status post: features that need a newer
-- agent are given only to nodes that speak it, and admins see which
-- nodes still run an older agent.
ALTER TABLE nodes ADD COLUMN agent_contract BIGINT NOT NULL DEFAULT 1;
