-- 22_big_release.sql: a release of 20,000 overlays round-trips.  The worker
-- streams release.json overlay by overlay (release_builder.c); the file it
-- uploads must parse, list every overlay once, in key order ("C"
-- collation), each equal to its row, and its bytes must be exactly the text
-- SQL makes of the same rows (strings escaped as to_json does, which is how
-- json-c escapes them; geometry and properties as jsonb's text).
--
-- The content mixes every overlay and geometry type, keys whose order
-- differs between collations, names with quotes, backslashes, control
-- characters and non-ASCII text, numbers of many digits and exponents, and
-- an asset, so that batch boundaries (1,000 rows) and buffer flushes (64 kB)
-- fall in the middle of all of it.

DELETE FROM publish.projects WHERE slug = 'big-rel';

SELECT plan(9);

SELECT :'storage' || '/big' AS root \gset
SELECT publish.set_storage_target('tap-big', 'file://' || :'root') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('big-rel', E'Big "release" \\ ☃') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready') RETURNING id AS vid \gset
INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
VALUES (:'vid', 'plan', 'image', 'assets/plan.png', 'image/png', 4096, repeat('ab', 32))
RETURNING id AS asset_id \gset

INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
SELECT :'vid',
       (ARRAY['A', 'a', 'B', 'z', '0', 'Z_', 'b.'])[1 + i % 7] || '-' || md5(i::text),
       format(E'Név "%s" \\ ☃/\n%s', i, chr(1 + i % 31)),
       t.type,
       CASE t.kind
       WHEN 0 THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y))
       WHEN 1 THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y, 123456789.123456789))
       WHEN 2 THEN jsonb_build_object('type', 'LineString', 'coordinates',
                       jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 1.5e-7, y - 0.25)))
       WHEN 3 THEN jsonb_build_object('type', 'MultiLineString', 'coordinates', jsonb_build_array(
                       jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x, -y)),
                       jsonb_build_array(jsonb_build_array(-x, y), jsonb_build_array(0, 0))))
       WHEN 4 THEN jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(
                       jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 1, y), jsonb_build_array(x + 1, y + 1), jsonb_build_array(x, y)),
                       jsonb_build_array(jsonb_build_array(x + 0.1, y + 0.1), jsonb_build_array(x + 0.2, y + 0.1), jsonb_build_array(x + 0.2, y + 0.2), jsonb_build_array(x + 0.1, y + 0.1))))
       WHEN 5 THEN jsonb_build_object('type', 'MultiPolygon', 'bbox', jsonb_build_array(x, y, x + 1, y + 1), 'coordinates', jsonb_build_array(jsonb_build_array(
                       jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 1, y), jsonb_build_array(x, y + 1), jsonb_build_array(x, y)))))
       ELSE jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(
                       jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 1, y), jsonb_build_array(x, y + 1), jsonb_build_array(x, y))))
       END,
       jsonb_build_object('i', i, 'big', 1e30 + i, 'tiny', -2.5e-12, 'text', format(E'«%s» \\/ "q"\t', i),
                          'list', jsonb_build_array(i % 3 = 0, NULL, jsonb_build_object('deep', jsonb_build_array(i)))),
       CASE WHEN t.type = 'image' THEN :'asset_id'::uuid END
  FROM generate_series(1, 20000) AS i,
       LATERAL (SELECT i % 7 AS kind,
                       (ARRAY['marker', 'label', 'polyline', 'polyline', 'polygon', 'polygon', 'image'])[1 + i % 7] AS type,
                       round((-179.9 + (i % 3599) * 0.1)::numeric, 6) AS x,
                       round((-89.9 + (i / 3599) * 0.01)::numeric, 9) AS y) AS t;

SELECT id AS job FROM publish.publish_version('big-rel', 1, 'tap-big') \gset
SELECT is(status, 'completed', 'a version of 20,000 overlays is published')
  FROM test_helpers.wait_job(:'job', '120 s');

SELECT :'root' || '/tap-big/big-rel/release.json' AS live,
       :'root' || '/tap-big/big-rel/releases/v1.json' AS versioned \gset
CREATE TEMP TABLE big_doc AS
SELECT convert_from(pg_read_binary_file(:'live'), 'UTF8') AS text,
       test_helpers.read_json(:'live') AS doc;

SELECT is(jsonb_array_length(doc->'overlays'), 20000, 'release.json parses and lists 20,000 overlays')
  FROM big_doc;
SELECT is((result->>'overlay_count')::int, 20000, 'the job counted 20,000 overlays')
  FROM publish.jobs WHERE id = :'job';

-- the overlays of the file, by position, against the rows in release order
CREATE TEMP VIEW big_expected AS
SELECT row_number() OVER (ORDER BY o.key COLLATE "C") AS n,
       jsonb_build_object('key', o.key, 'name', o.name, 'type', o.overlay_type, 'geometry', o.geometry,
                          'properties', o.properties, 'asset', a.key) AS overlay,
       format('{"key":%s,"name":%s,"type":%s,"geometry":%s,"properties":%s,"asset":%s}',
              to_json(o.key), to_json(o.name), to_json(o.overlay_type), o.geometry::text,
              o.properties::text, coalesce(to_json(a.key)::text, 'null')) AS text
  FROM publish.overlays o LEFT JOIN publish.assets a ON a.id = o.asset_id
 WHERE o.version_id = :'vid';
CREATE TEMP VIEW big_found AS
SELECT e.n, e.overlay FROM big_doc, jsonb_array_elements(doc->'overlays') WITH ORDINALITY AS e(overlay, n);

SELECT is((SELECT array_agg(f.overlay->>'key' ORDER BY f.n) FROM big_found f),
          (SELECT array_agg(e.overlay->>'key' ORDER BY e.n) FROM big_expected e),
          'the keys are those of the rows, in "C" collation order');
SELECT is(count(*), 0::bigint, 'each overlay equals its row: name, type, geometry, properties, asset')
  FROM big_found f FULL JOIN big_expected e ON e.n = f.n
 WHERE f.overlay IS DISTINCT FROM e.overlay;
SELECT is(count(*), 2857::bigint, '... including the image overlays'' asset key')
  FROM big_found f WHERE f.overlay->>'asset' = 'plan';
SELECT ok(strpos(d.text, '"overlays":[' || (SELECT string_agg(e.text, ',' ORDER BY e.n) FROM big_expected e)
                         || '],"tileset":null}') > 0,
          'the overlays'' bytes are exactly the text SQL makes of the rows')
  FROM big_doc d;
SELECT is(test_helpers.file_sha256(:'live'), j.result->>'release_sha256',
          'the sha256 the job reports is that of the file')
  FROM publish.jobs j WHERE j.id = :'job';
SELECT is(test_helpers.file_sha256(:'versioned'), test_helpers.file_sha256(:'live'),
          'the versioned copy has the same bytes')
  FROM publish.jobs j WHERE j.id = :'job';

DELETE FROM publish.projects WHERE slug = 'big-rel';
DELETE FROM publish.storage_targets WHERE env = 'tap-big';
SELECT * FROM finish();
