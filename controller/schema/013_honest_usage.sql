-- Usage a node claimed that was never billed (the tenant did not want the
-- VM running, the controller did not see it running, or the claim lay in
-- the future or before the VM existed), per VM and summed per node, so a
-- node's honesty can be judged from what the controller observed.
ALTER TABLE vm_usage ADD COLUMN capped_s BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN capped_s BIGINT NOT NULL DEFAULT 0;
-- Node policies match content: an image entry the sha256 of the catalog
-- image it named when the policy was set (digest), a template entry its
-- name and the digest of the template's image; an entry that named no
-- catalog image matches only VMs of that node-local image (local_image).
ALTER TABLE node_policy ADD COLUMN digest TEXT;
ALTER TABLE node_policy ADD COLUMN local_image TEXT;
UPDATE node_policy SET digest = (SELECT MIN(i.sha256) FROM images i WHERE
    i.deleted_at IS NULL AND i.state = 'ready' AND (i.id = node_policy.name
    OR (i.visibility = 'public' AND i.name = node_policy.name)))
    WHERE kind = 'image';
UPDATE node_policy SET local_image = name WHERE kind = 'image' AND
    digest IS NULL;
-- A VM made from a template whose image or user data the request replaced
-- is no longer that template: it keeps the template's name here only.
ALTER TABLE vms ADD COLUMN based_on TEXT;
