-- What the hub observed of each node, for its reputation (never what the
-- node says): decayed seconds seen reachable and unreachable (times 1000),
-- decayed counts of VM start failures and crashes, of claimed usage that
-- had to be capped (seconds times 1000; capped_seen is nodes.capped_s as
-- last folded in), of wrong benchmark answers and of evictions; the last
-- verified benchmark (score, and percent of the approved vCPUs it backs);
-- the reputation in percent (NULL until observed).
CREATE TABLE node_trust (
    node_id      TEXT PRIMARY KEY REFERENCES nodes(id),
    up_ms        BIGINT NOT NULL DEFAULT 0,
    down_ms      BIGINT NOT NULL DEFAULT 0,
    faults       BIGINT NOT NULL DEFAULT 0,
    capped_ms    BIGINT NOT NULL DEFAULT 0,
    capped_seen  BIGINT NOT NULL DEFAULT 0,
    bench_wrong  BIGINT NOT NULL DEFAULT 0,
    evictions    BIGINT NOT NULL DEFAULT 0,
    bench_score  BIGINT,
    bench_pct    BIGINT,
    bench_at     BIGINT,
    score        BIGINT,
    updated_at   BIGINT NOT NULL
);
