-- GPUs of each node as its agent reports them (sysfs cross-checked with
-- libvirt), whether the provider offers each, and the one VM holding it:
-- a row has a single vm_id, so a GPU belongs to at most one VM, and the
-- placing transaction takes one only where vm_id IS NULL.
CREATE TABLE gpus (
    node_id      TEXT NOT NULL REFERENCES nodes(id),
    address      TEXT NOT NULL,
    model        TEXT NOT NULL,
    vendor_id    TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    vendor       TEXT NOT NULL DEFAULT '',
    name         TEXT NOT NULL DEFAULT '',
    numa_node    INTEGER NOT NULL DEFAULT -1,
    cpulist      TEXT NOT NULL DEFAULT '',
    iommu_group  INTEGER NOT NULL DEFAULT -1,
    functions    TEXT NOT NULL DEFAULT '[]',
    usable       INTEGER NOT NULL DEFAULT 0,
    reason       TEXT,
    present      INTEGER NOT NULL DEFAULT 1,
    offered      INTEGER NOT NULL DEFAULT 0,
    vm_id        TEXT REFERENCES vms(id),
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (node_id, address)
);
CREATE INDEX gpus_vm ON gpus(vm_id);
CREATE INDEX gpus_model ON gpus(model, node_id);
-- What a VM asks for: COUNT GPUs of MODEL (0: none).
ALTER TABLE vms ADD COLUMN gpu_model TEXT;
ALTER TABLE vms ADD COLUMN gpu_count INTEGER NOT NULL DEFAULT 0;
-- Whether the node's IOMMU is on (GPUs are usable only then).
ALTER TABLE nodes ADD COLUMN iommu INTEGER NOT NULL DEFAULT 0;
