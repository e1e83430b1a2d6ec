-- 42_tile_plans.sql: a publish_admin controls every figure of a tile build
-- (the source image's size, the tileset's tile size and zooms), so none may
-- reach undefined arithmetic: every plan is made, or refused with 22023 or
-- PT413 before the cut, and no build ends the worker's process.  A SIGFPE
-- that does reach a job fails that job and leaves the signal deliverable.
-- A damaged source fails its build.
--
--   - publish._tile_plan (the worker's plan code, granted to no one) for
--     every zoom range 0-30 of sources 1 x 1 to 8192 x 8192, tiles of 256 and
--     512 px, checked against the arithmetic of docs/tiles.md, "Which tiles exist"
--     done here in numeric;
--   - a SIGFPE sent to a worker between two storage attempts;
--   - real builds of the ranges that used to divide by zero, three rounds;
--   - a truncated PNG source;
--   - the server log of this file has no process ended by a signal, and the
--     workers are the ones it started with.
--
-- Environments tap-plan under :storage/plan, tap-plan-fpe on the fault
-- server.  Projects plan-*.

DELETE FROM publish.projects WHERE slug LIKE 'plan-%';

SELECT plan(37);

SELECT :'storage' || '/plan' AS root \gset
SELECT publish.set_storage_target('tap-plan', 'file://' || :'root') \g /dev/null
SELECT (pg_stat_file(:'server_log')).size AS log_start \gset
SELECT array_agg(pid ORDER BY pid) AS workers FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker' \gset

-- ---------------------------------------------------------------------------
-- publish._tile_plan: internal, and its input checked.
-- ---------------------------------------------------------------------------

SELECT ok(NOT has_function_privilege(r, 'publish._tile_plan(integer, integer, integer, integer, integer)', 'EXECUTE'),
          format('%s cannot call publish._tile_plan', r))
  FROM unnest(ARRAY['public', 'publish_viewer', 'publish_admin']) AS r;

SELECT throws_ok($$SELECT publish._tile_plan(0, 5, 256, 0, 1)$$, '22023',
                 'the source image of a plan is 0 x 5 pixels, which cannot be cut into tiles',
                 'a side of 0 pixels is 22023');
SELECT throws_ok($$SELECT publish._tile_plan(10000001, 5, 256, 0, 1)$$, '22023', NULL,
                 'a side over 10,000,000 pixels is 22023');
SELECT throws_ok($$SELECT publish._tile_plan(5, 5, 300, 0, 1)$$, '22023',
                 'the tiles of a plan cannot be 300 px: the tile size must be 256 or 512',
                 'a tile size other than 256 or 512 is 22023');
SELECT throws_ok(format('SELECT publish._tile_plan(5, 5, 256, %s, %s)', lo, hi), '22023', NULL,
                 format('zooms %s to %s are 22023', lo, hi))
  FROM (VALUES (-1, 3), (0, 31), (4, 3), (0, -2)) AS z(lo, hi);
SELECT is(publish._tile_plan(5, 5, 256, 0, -1), '[[0, 1, 1, 1]]',
          'max_zoom -1 is the image''s own (a 5 x 5 image: zoom 0, one tile)');
SELECT is(publish._tile_plan(1000, 600, 256, 1, 2), '[[1, 2, 2, 4], [2, 4, 3, 12]]',
          'the levels are [zoom, columns, rows, tiles], from min_zoom to max_zoom');
SELECT throws_ok($$SELECT publish._tile_plan(1, 1, 256, 0, 24)$$, 'PT413',
                 'the tiles of a plan would be 375299968947541, over publish.max_tiles (1000000)',
                 'a 1 x 1 image up to zoom 24: 4^z tiles at each zoom z, 3.75e14 in all, are PT413');
SELECT throws_ok($$SELECT publish._tile_plan(3000, 1, 256, 16, 16)$$, '22023',
                 'the tiles of a plan cannot be cut up to zoom 16: the source image of 3000 x 1 pixels would be scaled up to 12288000 x 4096, over 10000000 pixels a side',
                 'zoom 16 of a 3000 x 1 image has few tiles (768,000) but a top level libvips cannot make: 22023');
SELECT throws_ok($$SELECT publish._tile_plan(40000, 1, 256, 0, 15)$$, 'PT413',
                 'the tiles of a plan cannot be cut up to zoom 15: a strip of the top level would be 5120000 x 256 pixels, over publish.max_source_pixels (256 megapixels)',
                 'zoom 15 of a 40000 x 1 image: 40,000 tiles, but libvips would hold a strip of 1.3 gigapixels: PT413');
SELECT is(jsonb_array_length(publish._tile_plan(40000, 1, 256, 0, 11)), 12,
          '... zoom 11 of it, a strip of 82 megapixels, is a plan');

-- ---------------------------------------------------------------------------
-- Every plan: zooms lo-hi for 0 <= lo <= hi <= 30, ten source sizes, both
-- tile sizes; at publish.max_tiles 1000000 and at its maximum, where plans
-- of billions of tiles and top levels of 10,000,000 pixels are made.
-- ---------------------------------------------------------------------------

CREATE TEMP TABLE combos AS
SELECT w, h, t, lo, hi
  FROM (VALUES (1, 1), (1, 2), (7, 13), (255, 257), (300, 200), (1000, 600), (3000, 1),
               (1, 8192), (4097, 4095), (8192, 8192)) AS s(w, h),
       (VALUES (256), (512)) AS ts(t),
       generate_series(0, 30) AS lo, generate_series(0, 30) AS hi
 WHERE lo <= hi;

-- What docs/tiles.md says, in numeric: the image is scaled up by the smallest 2^s
-- that takes its own zoom (the smallest z whose 2^z tiles cover its larger
-- side m) to hi, that is m * 2^s > t * 2^(hi-1); the top level is at its
-- own zoom; level z has ceil(W / (t * 2^(top-z))) columns, as many rows of
-- the height.  Too many tiles: PT413; a side over 10,000,000 pixels: 22023.
CREATE TEMP TABLE reference AS
WITH scaled AS MATERIALIZED (
	SELECT c.*, (SELECT min(s) FROM generate_series(0, 45) AS s
	              WHERE c.hi = 0 OR greatest(c.w, c.h) * 2::numeric ^ s > c.t * 2::numeric ^ (c.hi - 1)) AS s
	  FROM combos c
), top AS MATERIALIZED (
	SELECT sc.*, sc.w * 2::numeric ^ sc.s AS sw, sc.h * 2::numeric ^ sc.s AS sh,
	       (SELECT min(z) FROM generate_series(0, 45) AS z
	         WHERE sc.t * 2::numeric ^ z >= greatest(sc.w, sc.h) * 2::numeric ^ sc.s) AS top
	  FROM scaled sc
), levels AS (
	SELECT tp.*, z, ceil(tp.sw / (tp.t * 2::numeric ^ (tp.top - z)))::bigint AS cols,
	       ceil(tp.sh / (tp.t * 2::numeric ^ (tp.top - z)))::bigint AS rws
	  FROM top tp, generate_series(tp.lo, tp.hi) AS z
)
SELECT w, h, t, lo, hi, sum(cols * rws) AS total, max(greatest(sw, sh)) AS side,
       jsonb_agg(jsonb_build_array(z, cols, rws, cols * rws) ORDER BY z) AS levels
  FROM levels GROUP BY w, h, t, lo, hi;

CREATE TEMP TABLE got (max_tiles int, w int, h int, t int, lo int, hi int, state text, levels jsonb);
CREATE FUNCTION pg_temp.run_plans() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	c record;
	lv jsonb;
BEGIN
	FOR c IN SELECT * FROM combos LOOP
		BEGIN
			lv := publish._tile_plan(c.w, c.h, c.t, c.lo, c.hi);
			INSERT INTO got VALUES (current_setting('publish.max_tiles')::int, c.w, c.h, c.t, c.lo, c.hi, 'ok', lv);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO got VALUES (current_setting('publish.max_tiles')::int, c.w, c.h, c.t, c.lo, c.hi,
			                        SQLSTATE, to_jsonb(SQLERRM));
		END;
	END LOOP;
END
$$;
-- (the strip's bound, publish.max_source_pixels, at its highest: it never
-- binds below 10,000,000 pixels a side)
SET publish.max_source_pixels = 1000000;
SET publish.max_tiles = 1000000;
SELECT pg_temp.run_plans();
SET publish.max_tiles = 2147483647;
SELECT pg_temp.run_plans();
RESET publish.max_tiles;
RESET publish.max_source_pixels;

CREATE TEMP VIEW compared AS
SELECT g.*, CASE WHEN r.total > g.max_tiles THEN 'PT413' WHEN r.side > 10000000 THEN '22023' ELSE 'ok' END AS want,
       r.levels AS want_levels
  FROM got g JOIN reference r USING (w, h, t, lo, hi);

SELECT is((SELECT count(*) FROM got), 2 * (SELECT count(*) FROM combos),
          'every plan was asked for at both limits (9,920 each)');
SELECT is(array_agg(DISTINCT state ORDER BY state), ARRAY['22023', 'PT413', 'ok'],
          'each ends in a plan, 22023 or PT413: no other error (no floating-point exception)')
  FROM got;
SELECT is((SELECT array_agg(format('%s x %s, %s px, zooms %s-%s at %s: %s %s, %s expected',
                                   w, h, t, lo, hi, max_tiles, state, levels, want))
             FROM (SELECT * FROM compared
                    WHERE state <> want OR (state = 'ok' AND levels <> want_levels) LIMIT 5) AS bad),
          NULL, 'every plan has the levels the documented arithmetic gives, and every refusal the reason it gives');
SELECT ok(count(*) FILTER (WHERE state = 'ok' AND max_tiles = 2147483647 AND (levels->-1->>3)::bigint > 1000000000) > 0
          AND count(*) FILTER (WHERE state = '22023' AND max_tiles = 1000000) > 0,
          'some plans have over a billion tiles, and some too large a top level under the default limit (the test reaches every branch)')
  FROM got;

-- ---------------------------------------------------------------------------
-- A SIGFPE that reaches a job fails that job, and the worker's error
-- recovery unblocks SIGFPE again (the signal handler blocked it, and no
-- transaction was open whose abort would have restored the mask): the next
-- one must be an error again, not the end of the process.  Sent here while
-- the worker waits, outside any transaction, to retry a storage request the
-- fault server answered with 503 (retry delay raised to 15-30 s for this).
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('plan-fpe', 1) \g /dev/null
SELECT publish.set_storage_target('tap-plan-fpe', :'fault_url' || '/fail503-5/tplanfpe') \g /dev/null
\set ON_ERROR_STOP off
ALTER SYSTEM SET publish.storage_retry_delay = '30s';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT id AS fjob FROM publish.publish_version('plan-fpe', 1, 'tap-plan-fpe') \gset
SELECT ok(test_helpers.wait_until($$EXISTS (SELECT 1 FROM pg_stat_activity
                                             WHERE datname = current_database() AND application_name = 'publish worker'
                                               AND query = 'publish: retrying a storage request'
                                               AND wait_event_type = 'Extension' AND xact_start IS NULL)$$, '20 s'),
          'a worker waits to retry a storage request, outside any transaction');
SELECT pid AS fpid FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = 'publish worker'
   AND query = 'publish: retrying a storage request' \gset
SELECT test_helpers.run(format('kill -FPE %s && echo sent', :fpid)) \g /dev/null
CREATE TEMP TABLE fpe AS SELECT * FROM test_helpers.wait_job(:'fjob', '60 s');
ALTER SYSTEM RESET publish.storage_retry_delay;
SELECT pg_reload_conf() \g /dev/null
\set ON_ERROR_STOP on
SELECT is(status || ': ' || split_part(error, E'\n', 1), 'failed: floating-point exception',
          'the SIGFPE fails the job it interrupts') FROM fpe;
SELECT is(('x' || lpad(test_helpers.run(format('awk ''/^SigBlk:/ {print $2}'' /proc/%s/status', :fpid)), 16, '0'))::bit(64)::bigint & 128,
          0::bigint, 'the worker that caught it does not block SIGFPE afterwards');
SELECT is(count(*), 1::bigint, '... and is still running') FROM pg_stat_activity WHERE pid = :fpid;

-- ---------------------------------------------------------------------------
-- Real builds of the ranges that divided by zero (the top level of a tiny
-- image could not reach max_zoom), three times each, two workers at it.
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_image(:'root' || '/assets/plan/1x1.png', 1, 1) \g /dev/null
SELECT test_helpers.make_image(:'root' || '/assets/plan/300x200.png', 300, 200) \g /dev/null
CREATE TEMP TABLE extremes (slug text, file text, tile_size int, lo int, hi int);
INSERT INTO extremes VALUES ('plan-1x1-z24', '1x1', 256, 0, 24), ('plan-1x1-z30', '1x1', 256, 0, 30),
                            ('plan-300-z23', '300x200', 256, 0, 23), ('plan-300-512-z23', '300x200', 512, 0, 23),
                            ('plan-1x1-z2', '1x1', 256, 0, 2);
SELECT test_helpers.make_project(slug, 1) FROM extremes \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'root', format('assets/plan/%s.png', e.file))
  FROM extremes e JOIN publish.projects p ON p.slug = e.slug
  JOIN publish.project_versions v ON v.project_id = p.id \g /dev/null
INSERT INTO publish.tilesets (version_id, tile_size, min_zoom, max_zoom)
SELECT v.id, e.tile_size, e.lo, e.hi FROM extremes e JOIN publish.projects p ON p.slug = e.slug
  JOIN publish.project_versions v ON v.project_id = p.id;

-- each round: the four builds queued in one commit, then waited for
CREATE TEMP TABLE runs (round int, slug text, job uuid);
SELECT format($q$INSERT INTO runs SELECT %s, slug, (publish.build_tiles(slug, 1, 'tap-plan')).id
                   FROM extremes WHERE slug <> 'plan-1x1-z2'$q$, r),
       format($q$SELECT count(test_helpers.wait_job(job, '60 s')) FROM runs WHERE round = %s$q$, r)
  FROM generate_series(1, 3) AS r \gexec

SELECT is(count(*), 12::bigint, 'twelve builds ran') FROM runs;
SELECT is(array_agg(r.slug || ' ' || j.status || ': ' || j.error) FILTER
              (WHERE j.status <> 'failed'
                  OR j.error !~ format('^the tiles of version 1 of project "%s" would be [0-9]+, over publish\.max_tiles', r.slug)),
          NULL, 'each failed: its tiles would be over publish.max_tiles (PT413), found before the cut')
  FROM runs r JOIN publish.jobs j ON j.id = r.job;
SELECT ok(bool_and(j.error ~ E'\nZooms 0 to (23|24|30) of a source image of (1 x 1|300 x 200) pixels make that many tiles of (256|512) px\\.'),
          '... with the zooms and the image in the detail')
  FROM runs r JOIN publish.jobs j ON j.id = r.job;

-- a 1 x 1 image scaled up to zoom 2: built as the plan says
SELECT id AS okjob FROM publish.build_tiles('plan-1x1-z2', 1, 'tap-plan') \gset
CREATE TEMP TABLE okb AS SELECT * FROM test_helpers.wait_job(:'okjob', '60 s');
SELECT is(status, 'completed', 'a 1 x 1 image built up to zoom 2 completes') FROM okb;
SELECT is(result->'tiles_per_zoom',
          (SELECT jsonb_object_agg(l->>0, l->3) FROM jsonb_array_elements(publish._tile_plan(1, 1, 256, 0, 2)) AS l),
          '... with the tiles of its plan: {"0": 1, "1": 4, "2": 16}') FROM okb;

-- ---------------------------------------------------------------------------
-- A truncated source fails its build (libvips' fail_on "error").
-- ---------------------------------------------------------------------------

SELECT test_helpers.make_project('plan-cut', 1) AS cut_project \gset
SELECT test_helpers.make_image(:'root' || '/assets/plan/whole.png', 600, 400) \g /dev/null
SELECT test_helpers.run(format('head -c $(( $(stat -c %%s %1$s) / 2 )) %1$s > %2$s && echo ok',
                               test_helpers.sh_quote(:'root' || '/assets/plan/whole.png'),
                               test_helpers.sh_quote(:'root' || '/assets/plan/half.png'))) \g /dev/null
SELECT test_helpers.add_base_map(v.id, :'root', 'assets/plan/half.png')
  FROM publish.project_versions v WHERE v.project_id = :'cut_project' \g /dev/null
SELECT is(test_helpers.image_size(:'root' || '/assets/plan/half.png'), E'600\n400',
          'the truncated PNG still has a whole header (600 x 400)');
SELECT id AS cutjob FROM publish.build_tiles('plan-cut', 1, 'tap-plan') \gset
CREATE TEMP TABLE cut AS SELECT * FROM test_helpers.wait_job(:'cutjob', '60 s');
SELECT is(status, 'failed', 'a build from a truncated PNG fails') FROM cut;
SELECT matches(error, '^could not cut the tiles of the source image "assets/plan/half.png" \(asset map\)\nlibvips: .*read error',
               '... saying which source libvips could not read') FROM cut;
SELECT is((SELECT count(*) FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
            WHERE v.project_id = :'cut_project'), 0::bigint, '... and records no tileset, so no tile');
SELECT is((pg_stat_file(:'root' || '/tap-plan/plan-cut', true)).isdir, NULL,
          '... and uploads no tile (its build location was never made)');

-- ---------------------------------------------------------------------------
-- No process of the server ended by a signal meanwhile.
-- ---------------------------------------------------------------------------

SELECT pg_read_file(:'server_log', :log_start, (pg_stat_file(:'server_log')).size - :log_start) AS log_text \gset
SELECT is(substring(:'log_text' FROM '[^\n]*terminated by signal[^\n]*'), NULL,
          'the server log of this test has no process terminated by a signal');
SELECT is(substring(:'log_text' FROM '[^\n]*(terminating any other active server processes|reinitializing)[^\n]*'), NULL,
          '... and no crash recovery');
SELECT is(array_agg(pid ORDER BY pid), :'workers'::int[], 'the workers are the ones this test started with')
  FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'publish worker';

DELETE FROM publish.projects WHERE slug LIKE 'plan-%';

SELECT * FROM finish();
