-- 24_release_text.sql: the text of geometry and properties in release.json
-- (release_text.c) is jsonb's own text, byte for byte, also when a value's
-- text is far larger than the value and is handed to the document in
-- pieces; and publish._jsonb_text_size, which the size estimate at call
-- time sums, counts exactly those bytes without making them.
--
-- t/015_release_memory.pl checks what this is for: the worker's memory.

SET client_min_messages = warning;
DELETE FROM publish.projects WHERE slug = 'text-size';

SELECT plan(7);

-- numbers of every form (signs, weights, scales, the extremes numeric
-- allows), every ASCII character, nesting, empty containers, raw scalars
CREATE TEMP TABLE samples AS
SELECT to_jsonb(n) AS j FROM (
	SELECT (x * 10::numeric ^ e) AS n
	  FROM generate_series(-40, 40) AS e,
	       (VALUES (1.0), (9.99), (12.3456789), (-0.5), (123456), (-987654321.123), (1000), (9999), (10000), (0)) AS v(x)
	UNION ALL
	SELECT round(((i * 7919) % 100003)::numeric / 997 * 10::numeric ^ (i % 41 - 20), i % 31) * (1 - 2 * (i % 2))
	  FROM generate_series(1, 3000) AS i
	UNION ALL
	SELECT x::numeric
	  FROM unnest(ARRAY['1e131071', '-1e131071', '1e-16383', '-9.999e-16000', '0.000', '1.00000000000000000000',
	                    '-0.0001', '5e1000', '123e-1000', '99999999', '100000000', '0.1', '-1', '10', '100']) AS x
	UNION ALL
	SELECT round(13::numeric, 16383)
) AS numbers
UNION ALL SELECT to_jsonb(chr(c)) FROM generate_series(1, 127) AS c
UNION ALL SELECT to_jsonb(string_agg(chr(c), '')) FROM generate_series(1, 2000) AS c
UNION ALL SELECT to_jsonb(E'Név "☃" \\ /\u00e9\t\r\n\b\f' || chr(27))
UNION ALL SELECT j::jsonb
  FROM unnest(ARRAY['[]', '{}', '[[]]', '[{}, [], [[]], {"a": {}}]', 'null', 'true', 'false', '"x"', '""', '{"": ""}',
                    '{"a":1,"b":[1,2,{"c":null}],"d":"é\"\\\n"}', '[1,[2,[3]],{"k":[{}, true, false, null]}]']) AS j;

SELECT is((SELECT count(*) FROM samples WHERE publish._jsonb_text_size(j) <> octet_length(j::text)), 0::bigint,
          'publish._jsonb_text_size is octet_length(value::text) for ' || (SELECT count(*) FROM samples) || ' samples');
SELECT is(publish._jsonb_text_size(jsonb_agg(j)), octet_length(jsonb_agg(j)::text)::bigint, '... and for all of them in one array')
  FROM samples;
SELECT is(publish._jsonb_text_size(jsonb_object_agg(j::text, j)), octet_length(jsonb_object_agg(j::text, j)::text)::bigint,
          '... and in one object') FROM samples;
SELECT is(publish._jsonb_text_size(jsonb_build_object('n', (SELECT jsonb_agg('1e131071'::numeric) FROM generate_series(1, 100)))),
          13107200::bigint + 99 * 2 + 2 + 7, '... counting 100 numbers of 131,072 digits as their 13 MB of text');

-- A document whose values are written in pieces: each overlay's text is
-- over the 64 kB the builder hands on at a time (numbers of 131,072 and
-- 16,385 characters, a string of 300 kB with an escape every 7 bytes).
SELECT :'storage' || '/text-size' AS root \gset
SELECT publish.set_storage_target('tap-text', 'file://' || :'root') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('text-size', 'Text size') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready') RETURNING id AS vid \gset
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
VALUES (:'vid', 'a-numbers', 'numbers', 'polyline',
        jsonb_build_object('type', 'LineString', 'coordinates',
                           (SELECT jsonb_agg(jsonb_build_array(round(13::numeric + i, 16383), -52.5)) FROM generate_series(1, 20) AS i)),
        jsonb_build_object('big', (SELECT jsonb_agg('1e131071'::numeric) FROM generate_series(1, 3)), 'tiny', '-1e-16383'::numeric)),
       (:'vid', 'b-string', E'name "q" \\ \n', 'marker', '{"type":"Point","coordinates":[13.4,52.5]}',
        jsonb_build_object('s', repeat(E'abc"\\\n\u0001é', 300000 / 8), E'k\t"', repeat('☃', 30000))),
       (:'vid', 'c-small', 'small', 'marker', '{"type":"Point","coordinates":[13.4,52.5]}', '{}');

SELECT publish._release_document(:'vid', 'tap-text', '2026-01-01 00:00:00+00') AS doc \gset
SELECT ok(octet_length(:'doc') > 1000000, 'the document is over 1 MB');
SELECT is((SELECT count(*) FROM publish.overlays o
            WHERE o.version_id = :'vid'
              AND strpos(:'doc', format('{"key":%s,"name":%s,"type":%s,"geometry":%s,"properties":%s,"asset":null}',
                                        to_json(o.key), to_json(o.name), to_json(o.overlay_type),
                                        o.geometry::text, o.properties::text)) > 0),
          3::bigint, 'each overlay is written as jsonb''s text of its values, byte for byte');
SELECT is(ARRAY(SELECT e->>'key' FROM jsonb_array_elements((:'doc')::jsonb->'overlays') AS e),
          ARRAY['a-numbers', 'b-string', 'c-small'], 'the document parses and lists the 3 overlays in order');

DELETE FROM publish.projects WHERE slug = 'text-size';
SELECT * FROM finish();
