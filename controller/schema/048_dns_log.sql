-- Which VMs' names in a tenant network changed at each of its DNS
-- revisions, so that a controller holding the network's records at
-- revision B reads only the VMs named past B (controller/netrecords.c).
-- networks.dns_rev moves with every such change; each row names one VM
-- whose records in the network may differ since the revision before.
-- Only the last revisions of each network are kept.
ALTER TABLE networks ADD COLUMN dns_rev BIGINT NOT NULL DEFAULT 0;
CREATE TABLE net_dns_log (
    network_id TEXT NOT NULL,
    dns_rev    BIGINT NOT NULL,
    vm_id      TEXT NOT NULL
);
CREATE INDEX net_dns_log_rev ON net_dns_log(network_id, dns_rev);
