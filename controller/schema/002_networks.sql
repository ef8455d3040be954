-- Tenant networks (VXLAN over the mesh), VM interfaces and published ports.

CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    cidr        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    vxlan_id    INTEGER NOT NULL UNIQUE,
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX networks_owner_name ON networks(account_id, name)
    WHERE deleted_at IS NULL;

CREATE TABLE vm_nics (
    vm_id       TEXT NOT NULL REFERENCES vms(id),
    idx         INTEGER NOT NULL,
    network_id  TEXT NOT NULL REFERENCES networks(id),
    mac         TEXT NOT NULL UNIQUE,
    address     TEXT NOT NULL,
    PRIMARY KEY (vm_id, idx)
);
CREATE UNIQUE INDEX vm_nics_address ON vm_nics(network_id, address);

CREATE TABLE ports (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms(id),
    proto       TEXT NOT NULL CHECK (proto IN ('tcp', 'udp')),
    vm_port     INTEGER NOT NULL,
    want_port   INTEGER,
    node_id     TEXT,
    host_port   INTEGER,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX ports_vm ON ports(vm_id, proto, vm_port);
CREATE UNIQUE INDEX ports_node ON ports(node_id, proto, host_port);

ALTER TABLE nodes ADD COLUMN public_ip TEXT;
ALTER TABLE nodes ADD COLUMN wg_port INTEGER NOT NULL DEFAULT 51820;
ALTER TABLE nodes ADD COLUMN port_min INTEGER NOT NULL DEFAULT 20000;
ALTER TABLE nodes ADD COLUMN port_max INTEGER NOT NULL DEFAULT 29999;
