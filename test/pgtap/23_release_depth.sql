-- 23_release_depth.sql: release.json always parses with json-c's default
-- depth.  json-c (JSON_TOKENER_DEFAULT_DEPTH, 32) reads a value nested in at
-- most 31 containers: jsonpath level 31, the document being level 0.
-- release.json holds each overlay's geometry and properties 3 levels down
-- (the document, the "overlays" array, the overlay's object), so nothing in
-- them may be deeper than their own level 28: the constraint
-- overlays_properties_depth refuses properties with anything at level 29,
-- and validation does the same for geometry (and for properties stored
-- before the constraint), as "nested deeper than 29 levels" (their root
-- counted as level 1).
--
-- At the boundary: properties and geometry whose deepest values sit at
-- level 28 are published, and the document's deepest values sit exactly at
-- level 31; one level more is refused (23514) or is a validation problem.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug = 'depth';
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tap_depth_admin') THEN
		DROP OWNED BY tap_depth_admin CASCADE;
		DROP ROLE tap_depth_admin;
	END IF;
END $$;

SELECT plan(11);

CREATE ROLE tap_depth_admin NOLOGIN IN ROLE publish_admin;
SELECT :'storage' || '/depth' AS root \gset
SELECT publish.set_storage_target('tap-depth', 'file://' || :'root') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('depth', 'Depth') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready') RETURNING id AS vid \gset

-- nested(n): {"a": [[...[1]...]]} with n arrays, the 1 at level n + 1
CREATE FUNCTION pg_temp.nested(n int) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT ('{"a":' || repeat('[', n) || '1' || repeat(']', n) || '}')::jsonb $$;
-- a valid Point whose foreign member "x" holds nested(n - 1): the 1 at level n + 1
CREATE FUNCTION pg_temp.deep_point(n int) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4, 52.5),
                                'x', pg_temp.nested(n - 1)) $$;

SELECT ok(jsonb_path_exists(pg_temp.nested(27), 'strict $.**{28}')
          AND NOT jsonb_path_exists(pg_temp.nested(27), 'strict $.**{29 to last}')
          AND jsonb_path_exists(pg_temp.deep_point(27), 'strict $.**{28}')
          AND NOT jsonb_path_exists(pg_temp.deep_point(27), 'strict $.**{29 to last}'),
          'the fixtures: nested(27) and deep_point(27) reach level 28 and no deeper');

SELECT is(test_helpers.sqlstate_as('tap_depth_admin', format($c$
	INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties)
	VALUES (%L, 'deepest', 'marker', pg_temp.deep_point(27), pg_temp.nested(27))$c$, :'vid')), 'ok',
          'properties reaching level 28 are accepted');
SELECT is(test_helpers.sqlstate_as('tap_depth_admin', format($c$
	INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties)
	VALUES (%L, 'deeper', 'marker', '{"type":"Point","coordinates":[1,2]}', pg_temp.nested(28))$c$, :'vid')), '23514',
          'properties reaching level 29 are refused (23514)');
SELECT is(test_helpers.sqlstate_as('tap_depth_admin', format($c$
	UPDATE publish.overlays SET properties = pg_temp.nested(28) WHERE version_id = %L$c$, :'vid')), '23514',
          '... also by an UPDATE');

SELECT is(array(SELECT * FROM publish.validate_version('depth', 1)), '{}'::text[],
          'geometry reaching level 28 passes validation');

SELECT id AS job FROM publish.publish_version('depth', 1, 'tap-depth') \gset
SELECT is(status, 'completed', 'the version at the boundary is published')
  FROM test_helpers.wait_job(:'job');
SELECT test_helpers.read_json(:'root' || '/tap-depth/depth/release.json') AS doc \gset
SELECT ok(jsonb_path_exists(:'doc', 'strict $.**{31}') AND NOT jsonb_path_exists(:'doc', 'strict $.**{32 to last}'),
          'release.json reaches level 31, the deepest json-c reads, and no deeper');
SELECT ok(jsonb_path_exists(:'doc', 'strict $.overlays[0].properties.**{28}')
          AND jsonb_path_exists(:'doc', 'strict $.overlays[0].geometry.**{28}'),
          '... with both the properties and the geometry');

-- one level more in the geometry: a validation problem
UPDATE publish.overlays SET geometry = pg_temp.deep_point(28) WHERE version_id = :'vid';
SELECT is(array(SELECT * FROM publish.validate_version('depth', 1)),
          ARRAY['overlay "deepest": geometry could not be read: geometry is nested deeper than 29 levels'],
          'geometry reaching level 29 is a validation problem');
UPDATE publish.overlays SET geometry = pg_temp.deep_point(27) WHERE version_id = :'vid';

-- properties that reach level 29, stored before the constraint: a
-- validation problem too (the constraint dropped in a transaction rolled back)
BEGIN;
ALTER TABLE publish.overlays DROP CONSTRAINT overlays_properties_depth;
UPDATE publish.overlays SET properties = pg_temp.nested(28) WHERE version_id = :'vid';
SELECT is(array(SELECT * FROM publish.validate_version('depth', 1)),
          ARRAY['overlay "deepest": properties are nested deeper than 29 levels'],
          'properties reaching level 29 that predate the constraint are a validation problem');
ROLLBACK;
SELECT ok(EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'overlays_properties_depth'),
          '(the constraint is back)');

DELETE FROM publish.projects WHERE slug = 'depth';
DROP OWNED BY tap_depth_admin CASCADE;
DROP ROLE tap_depth_admin;
SELECT * FROM finish();
