-- What a node's public address probe found (api/probe.h): the NAT class
-- of its WireGuard port ('unknown', 'none', 'endpoint-independent',
-- 'endpoint-dependent'), the UDP mapping the controller's probe port saw
-- ('IP:PORT', NULL when nothing answered) and when it last reported.
-- Peers are given mapped_endpoint as the node's WireGuard endpoint
-- (controller/desired.c).
ALTER TABLE nodes ADD COLUMN nat_class TEXT;
ALTER TABLE nodes ADD COLUMN mapped_endpoint TEXT;
ALTER TABLE nodes ADD COLUMN reach_at BIGINT;
