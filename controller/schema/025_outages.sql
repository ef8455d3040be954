-- Outages the hub observed: a VM that should have run while its node was
-- unreachable, from the node's last report (or the hub's own start, if
-- later) to the hub's first look after the node came back (or after the
-- VM was no longer wanted running there). credit is what was moved from
-- the provider to the tenant for it (nano-tokens; NULL while open), tx_id
-- the ledger transaction that moved it. One open outage per VM.
CREATE TABLE vm_outages (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms(id),
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    deal_id     TEXT NOT NULL REFERENCES deals(id),
    start_s     BIGINT NOT NULL,
    end_s       BIGINT,
    credit      BIGINT,
    tx_id       TEXT
);
CREATE UNIQUE INDEX vm_outages_open ON vm_outages(vm_id) WHERE end_s IS NULL;
CREATE INDEX vm_outages_vm ON vm_outages(vm_id, start_s);
