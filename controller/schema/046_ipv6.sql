-- IPv6 next to IPv4: every tenant network gets a ULA /64 (RFC 4193) out of
-- one controller-wide /48, kept in settings ('ula48', made once at random
-- by the controller: SQL has no portable random source). A network's
-- subnet id (1..65535) is unique among live networks; its /64 and gateway
-- (prefix::1) are kept as text, like cidr and gateway. Networks created
-- before this migration get theirs when the controller next starts
-- (netalloc_v6_backfill), before it serves requests. A node's public IPv6
-- address (reported by its agent, optional) is where published ports
-- answer over IPv6.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE networks ADD COLUMN subnet6 INTEGER;
ALTER TABLE networks ADD COLUMN cidr6 TEXT;
ALTER TABLE networks ADD COLUMN gateway6 TEXT;
CREATE UNIQUE INDEX networks_subnet6 ON networks(subnet6)
    WHERE deleted_at IS NULL;
ALTER TABLE nodes ADD COLUMN public_ip6 TEXT;
-- A VM's IPv6 addresses (JSON array, one per NIC, as `addresses` is for
-- IPv4): the controller's, derived from its IPv4 host numbers.
ALTER TABLE vms ADD COLUMN addresses6 TEXT;
