-- bench/lib/overlays.sql: N overlays into one version, for the benchmarks
-- that measure a large release.json (preview, release_size, worker_memory,
-- profile_release, tiles_peers), so that they all build the same document.
-- psql variables: version_id (the version's id), n (how many overlays) and,
-- optionally, types (a text[] literal, default
-- '{marker,label,polyline,polygon}'): overlay i is of type
-- types[1 + i % cardinality(types)], so the four types come in turn and
-- give about 230 bytes an overlay in release.json.  Keys o-0000001 ...,
-- points on a 1000-wide grid from (13.0, 52.0); a polyline is one segment,
-- a polygon a closed triangle.
--   \set version_id ...  \set n 100000  \i bench/lib/overlays.sql
\if :{?types}
\else
\set types '{marker,label,polyline,polygon}'
\endif
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT :'version_id', 'o-' || lpad(i::text, 7, '0'), 'Overlay ' || i, t.type,
       CASE t.type
       WHEN 'polyline' THEN jsonb_build_object('type', 'LineString', 'coordinates',
            jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y + 0.0005)))
       WHEN 'polygon' THEN jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(jsonb_build_array(
            jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y), jsonb_build_array(x + 0.001, y + 0.001),
            jsonb_build_array(x, y))))
       ELSE jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y))
       END,
       jsonb_build_object('rank', i, 'category', t.type)
  FROM generate_series(1, :n) i,
       LATERAL (SELECT (:'types'::text[])[1 + i % cardinality(:'types'::text[])] AS type,
                       round((13.0 + (i % 1000) * 0.001)::numeric, 4) AS x,
                       round((52.0 + (i / 1000) * 0.001)::numeric, 4) AS y) t;
