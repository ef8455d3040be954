-- Web ingress through the hub's edge (controller/ingress.c): HOSTNAME on
-- the edge's port (443: TLS passthrough routed by SNI; 80: HTTP routed by
-- Host) reaches VM vm_id's published TCP port vm_port. A hostname belongs
-- to one account across the hub (checked under its lock); the pair
-- (hostname, port) is one route.
CREATE TABLE ingress_routes (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms(id),
    account_id  TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    port        INTEGER NOT NULL CHECK (port IN (80, 443)),
    vm_port     INTEGER NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX ingress_routes_host ON ingress_routes(hostname, port);
CREATE INDEX ingress_routes_vm ON ingress_routes(vm_id);
