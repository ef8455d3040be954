-- virsh dumpxml and domiflist: the domain XML the node last reported for
-- a VM (untrusted text, shown only to the VM's tenant, never parsed
-- here) and the interfaces the node read from it (a JSON array of
-- {target, type, source, model, mac}). NULL until the node reports them.
ALTER TABLE vms ADD COLUMN domain_xml TEXT;
ALTER TABLE vms ADD COLUMN interfaces TEXT;
