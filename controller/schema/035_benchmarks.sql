-- Benchmark challenges (controller/benchmark.c, api/agentproto.h
-- AGENT_BENCH): one row per challenge issued to a node, with its nonce
-- (64 hex) and size, when it was issued (ms) and must be answered by
-- (unix s), and what became of it: 'open', 'passed' (score: steps a
-- second per lane, as the hub timed it; pct: the share of one approved
-- vCPU that score backs), 'failed', 'late' or 'expired' (reason says
-- why). answer_sha256 lets a retried post of the same answer be told
-- from a replay.
CREATE TABLE node_benchmarks (
    id            TEXT PRIMARY KEY,
    node_id       TEXT NOT NULL REFERENCES nodes(id),
    nonce         TEXT NOT NULL,
    memory_mib    BIGINT NOT NULL,
    rounds        BIGINT NOT NULL,
    lanes         BIGINT NOT NULL,
    segments      BIGINT NOT NULL,
    issued_ms     BIGINT NOT NULL,
    deadline      BIGINT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open',
    answered_ms   BIGINT,
    score         BIGINT,
    pct           BIGINT,
    reason        TEXT,
    answer_sha256 TEXT
);
CREATE INDEX node_benchmarks_node ON node_benchmarks (node_id, issued_ms);
CREATE INDEX node_benchmarks_open ON node_benchmarks (state, deadline);
