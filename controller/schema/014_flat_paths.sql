-- Paths that stay flat as the store grows.
-- Tenant addresses as integers, one row per allocated address: the lowest
-- free one is found through the primary key from a per-network cursor
-- (every address below networks.addr_next is taken) instead of loading
-- and comparing every address of the network. vm_nics keeps the text the
-- API and the agent speak. A network's rows from before this migration
-- are filled in from vm_nics by its next allocation (addr_next = 0: not
-- yet filled), under the network's lock, once.
CREATE TABLE net_addrs (
    network_id TEXT NOT NULL REFERENCES networks(id),
    addr       BIGINT NOT NULL,
    vm_id      TEXT NOT NULL,
    PRIMARY KEY (network_id, addr)
);
CREATE INDEX net_addrs_vm ON net_addrs(vm_id);
ALTER TABLE networks ADD COLUMN addr_next BIGINT NOT NULL DEFAULT 0;
-- A tenant's list walks only its own VMs, in page order.
CREATE INDEX vms_owner_list ON vms(account_id, created_at, id);
-- An admin names any tenant's VM.
CREATE INDEX vms_name ON vms(name, created_at, id) WHERE deleted_at IS NULL;
