-- bench/lib/built_tiles_project.sql: a project ready to publish whose
-- tileset is already built, for the benchmarks of a publish's step 4 (the
-- tiles checked and copied into the release's place: tiles_publish,
-- tiles_peers).  Version 1 (ready) has one marker and a tileset of
-- :'format' tiles of 256 px, zooms 0 to :max_zoom, built at :'source_path'
-- (relative to the environment's target); the caller then fills its
-- manifest (publish.tiles).
-- psql variables: slug, name, format, max_zoom, source_path.
INSERT INTO publish.projects (slug, name) VALUES (:'slug', :'name');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = :'slug';
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry)
SELECT v.id, 'pin', 'Pin', 'marker', '{"type": "Point", "coordinates": [13.4, 52.5]}'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = :'slug';
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom, source_path, built_at)
SELECT v.id, :'format', 256, 0, :max_zoom, :'source_path', now()
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = :'slug';
