-- Edge cases found in review: URLs at the root and in upper case, huge
-- numbers passed through unchanged, non-finite tileset bounds, tiles outside
-- the zoom range.
\set SHOW_CONTEXT never

-- file:/// (the root directory) keeps its slash; upper-case schemes are accepted
SELECT url FROM publish.set_storage_target('edge-root', 'file:///');
SELECT url FROM publish.set_storage_target('edge-root', 'file:////');
SELECT url FROM publish.set_storage_target('edge-upper', 'FILE:///srv/Maps//');

-- a release embeds geometry and properties exactly as PostgreSQL stores them:
-- numbers too large for a double or a 64-bit integer are not clamped
INSERT INTO publish.projects (slug, name) VALUES ('edge', 'Edge cases');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'edge';
CREATE TEMP VIEW edge_v AS
SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'edge' AND v.version_number = 1;
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties)
SELECT id, 'big-numbers', 'marker', '{"type": "Point", "coordinates": [13.404954, 52.520008]}',
       '{"id": 123456789012345678901234567890, "ratio": 0.1, "tiny": 1e-30}' FROM edge_v;
SELECT publish.build_release('edge', 1, 'edge-root', '2026-01-01 00:00:00+00')->'overlays'->0->'properties' AS properties;
INSERT INTO publish.assets (version_id, key, storage_path, byte_size, sha256)
SELECT id, 'photo', 'assets/photo.jpg', 10, repeat('a', 64) FROM edge_v;
SELECT publish.build_release('edge', 1, 'edge-root', '2026-01-01 00:00:00+00')->'assets'->0->>'url' AS asset_url_at_root;
SELECT publish._release_document((SELECT id FROM edge_v), 'edge-root', '2026-01-01 00:00:00+00')::text
       LIKE '%"properties":{"id": 123456789012345678901234567890, "tiny": 0.000000000000000000000000000001, "ratio": 0.1}%'
       AS embedded_verbatim;

-- a coordinate of 1e20 is finite for a double but no map coordinate
UPDATE publish.overlays SET geometry = '{"type": "Point", "coordinates": [1e20, 0]}'
 WHERE key = 'big-numbers' AND version_id = (SELECT id FROM edge_v);
SELECT * FROM publish.validate_version('edge', 1);
UPDATE publish.overlays SET geometry = '{"type": "Point", "coordinates": [13.4, 52.5]}'
 WHERE key = 'big-numbers' AND version_id = (SELECT id FROM edge_v);

-- tileset bounds must be finite; tiles must be inside the zoom range
SELECT regress_try($$INSERT INTO publish.tilesets (version_id, max_zoom, bounds, source_path)
                     SELECT id, 1, '{NaN,0,1,1}', 't' FROM edge_v$$) AS nan_bounds;
SELECT regress_try($$INSERT INTO publish.tilesets (version_id, max_zoom, bounds, source_path)
                     SELECT id, 1, '{0,0,Infinity,1}', 't' FROM edge_v$$) AS infinite_bounds;
INSERT INTO publish.tilesets (version_id, min_zoom, max_zoom, bounds, source_path)
SELECT id, 0, 1, '{0,0,1,1}', 'build..1/tiles' FROM edge_v;
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
SELECT t.id, z, 0, 0, 1, repeat('0', 64) FROM publish.tilesets t, edge_v, generate_series(0, 3) z
 WHERE t.version_id = edge_v.id;
SELECT * FROM publish.validate_version('edge', 1);

-- clean up
DROP VIEW edge_v;
DELETE FROM publish.projects WHERE slug = 'edge';
DELETE FROM publish.storage_targets WHERE env IN ('edge-root', 'edge-upper');
