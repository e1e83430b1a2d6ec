--
-- 08_shared_definitions: the names and limits that both the C code and
-- the install script state agree.  The C side comes from
-- publish_shared_definitions() in publish.so (declared here, not by the
-- extension); the SQL side from the constraints, views and function bodies
-- that state them.  A new job type, status or limit added on one side only
-- fails here; so does a library whose version is not publish.control's
-- default_version.
--
CREATE FUNCTION pg_temp.c_definitions(OUT name text, OUT value text)
RETURNS SETOF record
LANGUAGE c AS '$libdir/publish', 'publish_shared_definitions';

-- the quoted words of a constraint, sorted: 'a'::text, 'b'::text -> a,b
CREATE FUNCTION pg_temp.constraint_words(constraint_name text) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT string_agg(w[1], ',' ORDER BY w[1] COLLATE "C")
	  FROM pg_constraint k,
	       regexp_matches(pg_get_constraintdef(k.oid), '''([a-z_]+)''::text', 'g') AS w
	 WHERE k.conname = constraint_name
	   AND k.connamespace = 'publish'::regnamespace
$$;

CREATE FUNCTION pg_temp.constraint_number(constraint_name text, pattern text)
RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT (regexp_match(pg_get_constraintdef(k.oid), pattern))[1]
	  FROM pg_constraint k
	 WHERE k.conname = constraint_name
	   AND k.connamespace = 'publish'::regnamespace
$$;

WITH c AS (
	SELECT d.name,
	       (SELECT string_agg(v, ',' ORDER BY v COLLATE "C")
	          FROM unnest(string_to_array(d.value, ',')) AS v) AS value
	  FROM pg_temp.c_definitions() AS d
), s(name, source, value) AS (
	VALUES ('job types', 'job_queue_type_valid',
	        pg_temp.constraint_words('job_queue_type_valid')),
	       -- the types publish.stats shows a row for
	       ('job types', 'publish.stats',
	        (SELECT string_agg(w[1], ',' ORDER BY w[1] COLLATE "C")
	           FROM regexp_matches((regexp_match(pg_get_viewdef('publish.stats'::regclass),
	                                             'unnest\((ARRAY\[[^]]*\])\)'))[1],
	                               '''([a-z_]+)''::text', 'g') AS w)),
	       ('job statuses', 'job_queue_status_valid',
	        pg_temp.constraint_words('job_queue_status_valid')),
	       ('job log levels', 'job_log_level_valid',
	        pg_temp.constraint_words('job_log_level_valid')),
	       ('properties depth', 'overlays_properties_depth',
	        pg_temp.constraint_number('overlays_properties_depth', '\{(\d+) to last\}')),
	       ('max zoom', 'tilesets_zoom_range',
	        pg_temp.constraint_number('tilesets_zoom_range', 'max_zoom <= (\d+)')),
	       ('max zoom', 'tiles_z_range',
	        pg_temp.constraint_number('tiles_z_range', 'z <= (\d+)')),
	       ('library version', 'publish.control',
	        (SELECT a.default_version FROM pg_available_extensions a WHERE a.name = 'publish'))
)
SELECT s.name, s.source, c.value AS in_c, s.value AS in_sql,
       c.value IS NOT DISTINCT FROM s.value AS agree
  FROM s FULL JOIN c USING (name)
 ORDER BY s.name, s.source;

-- the settings' defaults, which the SQL functions assume when the library
-- is not loaded (current_setting(..., true) is NULL then)
WITH s(setting, function_name, pattern) AS (
	VALUES ('publish.max_release_size', '_check_release_limits',
	        'publish\.max_release_size'', true\), ''([^'']+)'''),
	       ('publish.max_tiles', '_check_release_limits',
	        'publish\.max_tiles'', true\), ''([^'']+)'''),
	       ('publish.max_job_wait', 'wait_job',
	        'publish\.max_job_wait'', true\), ''([^'']+)''')
)
SELECT s.setting, s.function_name,
       p.boot_val || coalesce(p.unit, '') AS in_c, v.value AS in_sql,
       CASE p.unit
            WHEN 'kB' THEN pg_size_bytes(p.boot_val || 'kB') = pg_size_bytes(v.value)
            WHEN 's' THEN make_interval(secs => p.boot_val::integer) = v.value::interval
            ELSE p.boot_val = v.value END AS agree
  FROM s
  JOIN pg_settings p ON p.name = s.setting
  JOIN pg_proc f ON f.proname = s.function_name
                AND f.pronamespace = 'publish'::regnamespace,
       LATERAL (SELECT (regexp_match(f.prosrc, s.pattern))[1] AS value) AS v
 ORDER BY s.setting;
