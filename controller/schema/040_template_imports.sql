-- A public image the hub imported by itself for a template that names its
-- image by URL and digest (controller/catalog.c catalog_template_image):
-- one row per import, shared by every create from that template; a
-- failed import is retired (deleted_at) so nothing is left in the catalog
-- and the next create tries again.
ALTER TABLE images ADD COLUMN template_import INTEGER NOT NULL DEFAULT 0;
