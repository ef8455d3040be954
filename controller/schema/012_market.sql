-- The market: where a node is and what it offers besides prices (region,
-- labels set by its provider or an admin), what a tenant asks of placement
-- (price cap, region, label selectors, anti-affinity group, minimum
-- reputation), and what placement decided (filter counts while pending,
-- the chosen offer and its price per hour once placed).
ALTER TABLE nodes ADD COLUMN region TEXT NOT NULL DEFAULT '';

CREATE TABLE node_labels (
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (node_id, key)
);

-- max_price: nano-tokens per hour for the whole VM (the hub's default cap
-- when the create named none); labels: JSON array of "key=value";
-- min_reputation: percent, 0 for none.
ALTER TABLE vms ADD COLUMN max_price BIGINT;
ALTER TABLE vms ADD COLUMN region TEXT;
ALTER TABLE vms ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE vms ADD COLUMN anti_affinity TEXT;
ALTER TABLE vms ADD COLUMN min_reputation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN placement TEXT;
ALTER TABLE vms ADD COLUMN price_hour BIGINT;
CREATE INDEX vms_anti_affinity ON vms(account_id, anti_affinity);
