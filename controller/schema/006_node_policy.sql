-- What a provider's node accepts: named templates and images. A node with
-- no rows accepts every VM; with rows, only VMs made from one of the named
-- templates or using one of the named images (catalog name or id).
CREATE TABLE node_policy (
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    kind        TEXT NOT NULL CHECK (kind IN ('template', 'image')),
    name        TEXT NOT NULL,
    PRIMARY KEY (node_id, kind, name)
);
