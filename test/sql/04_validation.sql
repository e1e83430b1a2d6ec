--
-- 04_validation: publish.validate_version lists every problem of a version;
-- publish.build_release previews release.json, deterministically, and
-- refuses an invalid version with all its problems.
--
SELECT env, url FROM publish.set_storage_target('val-env', 'file:///srv/publish-regress');
SELECT env, url FROM publish.set_storage_target('val-cdn', 'file:///srv/publish-regress',
                                                '{"public_url": "https://cdn.example.com/maps"}');

-- a valid version -------------------------------------------------------------
INSERT INTO publish.projects (slug, name) VALUES ('val-good', 'Campus "Nord" / Süd');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, n, 'ready' FROM publish.projects, generate_series(1, 2) AS n WHERE slug = 'val-good';
CREATE TEMP VIEW good AS
SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'val-good' AND v.version_number = 1;

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
SELECT id, a.key, a.kind, a.path, a.ctype, a.size, a.sha FROM good,
       (VALUES ('plan', 'image', 'campus/plan.png', 'image/png', 123456, repeat('ab', 32)),
               ('icon', 'file', 'campus/icons/door.svg', 'image/svg+xml', 0, repeat('0', 64)))
       AS a(key, kind, path, ctype, size, sha);
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
SELECT good.id, o.key, o.name, o.type, o.geom::jsonb, o.props::jsonb,
       (SELECT a.id FROM publish.assets a WHERE a.version_id = good.id AND a.key = o.asset)
  FROM good,
       (VALUES
        ('entrance', 'Main entrance', 'marker', '{"type": "Point", "coordinates": [13.4050, 52.5200]}', '{"icon": "door", "floor": 0}', 'icon'),
        ('peak', 'Peak', 'marker', '{"type": "Point", "coordinates": [13.1, 52.1, 120.5]}', '{}', NULL),
        ('hall-label', 'Hall "A"', 'label', '{"type": "Point", "coordinates": [-0.000001, 1e-7]}', '{"text": "Hall \"A\" / Ü\n2nd line"}', NULL),
        ('path', 'Path', 'polyline', '{"type": "LineString", "coordinates": [[0, 0], [1.5, 1.25], [2, 2]]}', '{"width": 3}', NULL),
        ('paths', 'Paths', 'polyline', '{"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}', '{}', NULL),
        ('yard', 'Yard', 'polygon', '{"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [2, 1], [2, 2], [1, 1]]]}', '{"fill": "#00ff00"}', NULL),
        ('blocks', 'Blocks', 'polygon', '{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[5, 5], [6, 5], [6, 6], [5, 5]]]]}', '{}', NULL),
        ('floorplan', 'Floor plan', 'image', '{"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]]}', '{"opacity": 0.75}', 'plan'),
        ('B-upper', 'Upper case key sorts first in C', 'marker', '{"type": "Point", "coordinates": [0, 0]}', '{}', NULL))
       AS o(key, name, type, geom, props, asset);
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom, bounds, source_path)
SELECT id, 'png', 256, 0, 1, '{-180,-85.0511,180,85.0511}', 'campus/tiles/build-1' FROM good;
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
SELECT t.id, z, x, y, 100 + x, repeat('c', 64)
  FROM publish.tilesets t JOIN good ON good.id = t.version_id,
       (VALUES (0, 0, 0), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)) AS m(z, x, y);

SELECT * FROM publish.validate_version('val-good', 1);
SELECT count(*) AS problems FROM publish.validate_version(slug => 'val-good', version => 1);

SELECT jsonb_pretty(publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')::jsonb);
-- build_release returns json: the document's text as it is, which is
-- _release_document's, the bytes the worker writes
SELECT pg_typeof(publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')) AS returns,
       publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')::text
     = publish._release_document((SELECT id FROM good), 'val-env', '2026-01-01 00:00:00+00')::text AS same_text;
-- the same content gives the same document, byte for byte
SELECT publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')::text
     = publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')::text AS same_document;
SELECT publish._release_document((SELECT id FROM good), 'val-env', '2026-01-01 00:00:00+00')::text
     = publish._release_document((SELECT id FROM good), 'val-env', '2026-01-01 00:00:00+00')::text AS same_bytes;
-- release.json is valid JSON that starts with the schema version, written
-- without spaces
SELECT left(publish._release_document((SELECT id FROM good), 'val-env', '2026-01-01 00:00:00+00')::text, 40) AS release_json_start;
-- text survives the round trip: quotes, slashes, non-ASCII, newlines
SELECT d->'project'->>'name' = 'Campus "Nord" / Süd' AS name_kept,
       jsonb_path_query_first(d, '$.overlays[*] ? (@.key == "hall-label").properties.text') #>> '{}'
         = E'Hall "A" / Ü\n2nd line' AS text_kept,
       jsonb_path_query(d, '$.overlays[*].key') AS overlay_keys_in_order
  FROM (SELECT publish.build_release('val-good', 1, 'val-env', '2026-01-01 00:00:00+00')::jsonb AS d) AS r;
-- published_at is written in UTC, whatever the session's time zone
SET TimeZone = 'Asia/Tokyo';
SELECT publish.build_release('val-good', 1, 'val-env', '2026-01-01 09:00:00+09')->>'published_at' AS published_at,
       publish.build_release('val-good', 1, 'val-env', '2025-12-31 23:59:59.123456-02')->>'published_at' AS with_microseconds;
RESET TimeZone;
-- public_url replaces the URL of the target in the document's URLs
SELECT d->>'environment' AS environment, d->'assets'->0->>'url' AS asset_url,
       d->'tileset'->>'url_template' AS url_template
  FROM publish.build_release('val-good', 1, 'val-cdn', '2026-01-01 00:00:00+00') AS d;
-- build_release is a preview: nothing changed, no job
SELECT v.status, v.published_at, (SELECT count(*) FROM publish.job_queue) AS jobs
  FROM publish.project_versions v WHERE v.id = (SELECT id FROM good);

-- build_release argument errors
SELECT regress_try_full($$SELECT publish.build_release('val-good', 1, 'val-env', NULL)$$);
SELECT regress_try_full($$SELECT publish.build_release('val-good', 1, 'val-env', 'infinity')$$);
SELECT regress_try_full($$SELECT publish.build_release('val-good', 1, 'val-nowhere')$$);
SELECT regress_try_full($$SELECT publish.build_release('val-good', 9, 'val-env')$$);
SELECT regress_try_full($$SELECT publish.build_release(NULL, 1, 'val-env')$$);
SELECT regress_try_full($$SELECT publish.validate_version('val-nowhere', 1)$$);
SELECT regress_try_full($$SELECT publish.validate_version('val-good', NULL)$$);
SELECT regress_try_full($$SELECT publish.validate_version('val-good', 0)$$);

-- a version with no overlays ------------------------------------------------
SELECT * FROM publish.validate_version('val-good', 2);
SELECT regress_try_full($$SELECT publish.build_release('val-good', 2, 'val-env', '2026-01-01 00:00:00+00')$$);

-- a version with many problems: every one is listed ---------------------------
INSERT INTO publish.projects (slug, name) VALUES ('val-bad', 'Broken');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, n, 'draft' FROM publish.projects, generate_series(1, 4) AS n WHERE slug = 'val-bad';
CREATE TEMP VIEW bad AS
SELECT v.id, v.version_number FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'val-bad';

INSERT INTO publish.assets (version_id, key, storage_path, byte_size, sha256)
SELECT id, a.key, a.key || '.bin', a.size, a.sha FROM bad,
       (VALUES ('no-size', NULL, repeat('a', 64)),
               ('no-sha', 10, NULL),
               ('nothing', NULL, NULL),
               ('fine', 10, repeat('b', 64))) AS a(key, size, sha)
 WHERE bad.version_number = 1;
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
SELECT bad.id, o.key, o.type, o.geom::jsonb,
       (SELECT a.id FROM publish.assets a WHERE a.version_id = bad.id AND a.key = o.asset)
  FROM bad,
       (VALUES
        ('a-wrong-type', 'marker', '{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}', NULL),
        ('b-short-line', 'polyline', '{"type": "LineString", "coordinates": [[0, 0]]}', NULL),
        ('c-unclosed-ring', 'polygon', '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}', NULL),
        ('d-short-ring', 'polygon', '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}', NULL),
        ('e-infinite', 'marker', '{"type": "Point", "coordinates": [1e400, 0]}', NULL),
        ('f-string-coordinate', 'marker', '{"type": "Point", "coordinates": ["1", 0]}', NULL),
        ('g-one-number', 'marker', '{"type": "Point", "coordinates": [1]}', NULL),
        ('h-image-without-asset', 'image', '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}', NULL),
        ('i-bad-multipolygon-part', 'polygon', '{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[0, 0], [1, 1]]]]}', NULL),
        ('j-no-coordinates', 'marker', '{"type": "Point"}', NULL),
        ('k-no-type', 'marker', '{"coordinates": [0, 0]}', NULL),
        ('l-not-an-object', 'marker', '[0, 0]', NULL),
        ('m-four-numbers', 'label', '{"type": "Point", "coordinates": [1, 2, 3, 4]}', NULL),
        ('n-no-rings', 'polygon', '{"type": "Polygon", "coordinates": []}', NULL),
        ('o-no-parts', 'polyline', '{"type": "MultiLineString", "coordinates": []}', NULL),
        ('p-image-multipolygon', 'image', '{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]}', 'fine'),
        ('q-type-not-a-string', 'marker', '{"type": 1, "coordinates": [0, 0]}', NULL),
        ('r-null-coordinates', 'marker', '{"type": "Point", "coordinates": null}', NULL),
        ('s-unclosed-hole', 'polygon', '{"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]], [[1, 1], [2, 1], [2, 2], [1, 2]]]}', NULL),
        ('t-3d-ring-not-closed', 'polygon', '{"type": "Polygon", "coordinates": [[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]]]}', NULL),
        ('u-bad-position-in-line', 'polyline', '{"type": "LineString", "coordinates": [[0, 0], [1, true], [2, 2]]}', NULL),
        ('v-line-not-array', 'polyline', '{"type": "LineString", "coordinates": {"x": 1}}', NULL),
        ('w-feature', 'marker', '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}}', NULL),
        ('x-valid', 'marker', '{"type": "Point", "coordinates": [0, 0]}', NULL))
       AS o(key, type, geom, asset)
 WHERE bad.version_number = 1;
-- a tileset that was never built and has no tiles
INSERT INTO publish.tilesets (version_id, min_zoom, max_zoom)
SELECT id, 0, 3 FROM bad WHERE version_number = 1;

SELECT * FROM publish.validate_version('val-bad', 1);
SELECT regress_try_full($$SELECT publish.build_release('val-bad', 1, 'val-env', '2026-01-01 00:00:00+00')$$);

-- an overlay whose asset is not an asset of its version (the foreign key
-- prevents this; bypass it as a restore with triggers disabled could)
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
SELECT id, 'ok', 'marker', '{"type": "Point", "coordinates": [0, 0]}' FROM bad WHERE version_number IN (2, 3);
SET session_replication_role = replica;
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
SELECT id, 'plan', 'image', '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}',
       '00000000-0000-0000-0000-000000000000'
  FROM bad WHERE version_number = 2;
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, asset_id)
SELECT bad.id, 'plan', 'image', '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}', a.id
  FROM bad, publish.assets a
 WHERE bad.version_number = 3 AND a.key = 'fine' AND a.version_id = (SELECT id FROM bad WHERE version_number = 1);
RESET session_replication_role;
SELECT * FROM publish.validate_version('val-bad', 2);
SELECT * FROM publish.validate_version('val-bad', 3);
SELECT regress_try_full($$SELECT publish.build_release('val-bad', 2, 'val-env', '2026-01-01 00:00:00+00')$$);

-- more than 100 problems: the detail lists 100 and counts the rest
INSERT INTO publish.overlays (version_id, key, overlay_type, geometry)
SELECT bad.id, 'm' || lpad(n::text, 3, '0'), 'marker', '{"type": "Point", "coordinates": []}'
  FROM bad, generate_series(1, 103) AS n WHERE bad.version_number = 4;
SELECT count(*) AS problems FROM publish.validate_version('val-bad', 4);
SELECT split_part(e, E'\n', 1) AS message,
       array_length(string_to_array(e, E'\n'), 1) AS lines,
       (string_to_array(e, E'\n'))[2] AS first_detail,
       (string_to_array(e, E'\n'))[101] AS last_problem,
       (string_to_array(e, E'\n'))[102] AS more,
       (string_to_array(e, E'\n'))[103] AS hint
  FROM regress_try_full($$SELECT publish.build_release('val-bad', 4, 'val-env', '2026-01-01 00:00:00+00')$$) AS e;

-- clean up
DROP VIEW good, bad;
DELETE FROM publish.projects WHERE slug IN ('val-good', 'val-bad');
DELETE FROM publish.storage_targets WHERE env IN ('val-env', 'val-cdn');
SELECT (SELECT count(*) FROM publish.projects) AS projects,
       (SELECT count(*) FROM publish.storage_targets) AS targets,
       (SELECT count(*) FROM publish.job_queue) AS jobs;
