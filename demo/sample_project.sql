-- sample_project.sql: loads the demo map project "campus" into the publish
-- extension's tables.  Run it with psql in a database where
-- CREATE EXTENSION publish has run; running it again replaces the project.
--
--   version 1  archived   first map of the campus (a few overlays)
--   version 2  published  live since March 2024
--   version 3  ready      the one the demo publishes: 8 assets, 41 overlays
--                         of every type and a tileset of 21 tiles (z 0-2)
--   version 4  draft      work in progress, still empty
--
-- The tile manifest of version 3 describes the files that demo/make_tiles.sh
-- writes under the storage root (ROOT/production/campus/builds/v3/tiles/{z}/{x}/{y}.png):
-- both compute each tile from the same PNG bytes plus a line naming the tile.
-- The asset files themselves are not created: their sizes and checksums are
-- made up (sha256 of a text naming the asset).
--
-- Geometry is GeoJSON in lon/lat (WGS 84) on the Spree in Berlin, inside the
-- box 13.3950,52.5150 - 13.4100,52.5250; polygon exterior rings run
-- counterclockwise and holes clockwise (RFC 7946), every ring is closed.

\set ON_ERROR_STOP on

BEGIN;

-- Start from scratch: this cascades to versions, assets, overlays, tilesets,
-- tiles and live releases.  Old jobs stay, with version_id set to NULL.
DELETE FROM publish.projects WHERE slug = 'campus';

INSERT INTO publish.projects (slug, name, description)
VALUES ('campus', 'Riverside University Campus',
        'Interactive map of the Riverside University campus on the Spree: buildings, '
        'paths, parking, sports facilities and visitor information.')
RETURNING id AS project_id \gset

INSERT INTO publish.project_versions (project_id, version_number, status, notes, published_at, created_at)
VALUES (:'project_id', 1, 'archived', 'First campus map: entrance, library and campus label.',
        '2023-09-04 08:00:00+00', '2023-08-21 14:12:00+00'),
       (:'project_id', 2, 'published', 'Riverwalk and aerial photo added.',
        '2024-03-18 09:30:00+00', '2024-03-01 10:05:00+00'),
       (:'project_id', 3, 'ready', 'Autumn 2024 update: Science Center, sports fields, cycle network, '
        'residences, bike racks and a base-map tileset.', NULL, '2024-09-10 11:40:00+00'),
       (:'project_id', 4, 'draft', 'Work in progress: new parking rules for 2025.', NULL, now());

-- The version ids as psql variables :v1 .. :v4.
SELECT max(id::text) FILTER (WHERE version_number = 1) AS v1,
       max(id::text) FILTER (WHERE version_number = 2) AS v2,
       max(id::text) FILTER (WHERE version_number = 3) AS v3,
       max(id::text) FILTER (WHERE version_number = 4) AS v4
  FROM publish.project_versions
 WHERE project_id = :'project_id' \gset

-- ---------------------------------------------------------------------------
-- Version 1 (archived): uploaded before checksums were recorded, so its
-- asset has no byte_size or sha256.
-- ---------------------------------------------------------------------------

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type)
VALUES (:'v1', 'campus-aerial', 'image', 'assets/campus/v1/campus-aerial-2022.jpg', 'image/jpeg');

INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
VALUES
  (:'v1', 'marker-main-entrance', 'Main Entrance', 'marker',
   '{"type":"Point","coordinates":[13.3968,52.5158]}', '{"category":"entrance"}', NULL),
  (:'v1', 'label-campus-name', 'Riverside University', 'label',
   '{"type":"Point","coordinates":[13.4025,52.5200]}', '{"font_size":18}', NULL),
  (:'v1', 'building-library', 'University Library', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.4000,52.5190],[13.4025,52.5190],[13.4025,52.5205],[13.4000,52.5205],[13.4000,52.5190]]]}',
   '{"category":"building","floors":3}', NULL),
  (:'v1', 'image-campus-aerial', 'Aerial Photo 2022', 'image',
   '{"type":"Polygon","coordinates":[[[13.3950,52.5150],[13.4100,52.5150],[13.4100,52.5250],[13.3950,52.5250],[13.3950,52.5150]]]}',
   '{"opacity":0.8}',
   (SELECT id FROM publish.assets WHERE version_id = :'v1' AND key = 'campus-aerial'));

-- ---------------------------------------------------------------------------
-- Version 2 (published, live since 2024-03-18)
-- ---------------------------------------------------------------------------

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
SELECT :'v2', key, kind, 'assets/campus/v2/' || file, content_type, byte_size,
       encode(sha256(convert_to('campus v2 asset ' || key, 'UTF8')), 'hex')
  FROM (VALUES ('campus-aerial', 'image', 'campus-aerial-2023.jpg', 'image/jpeg', 1729341),
               ('icon-entrance', 'icon', 'icons/entrance.svg', 'image/svg+xml', 1187),
               ('campus-guide', 'document', 'campus-guide-2024.pdf', 'application/pdf', 2204117))
       AS a (key, kind, file, content_type, byte_size);

INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
VALUES
  (:'v2', 'marker-main-entrance', 'Main Entrance', 'marker',
   '{"type":"Point","coordinates":[13.3968,52.5158]}', '{"category":"entrance","icon":"icon-entrance"}', NULL),
  (:'v2', 'label-campus-name', 'Riverside University', 'label',
   '{"type":"Point","coordinates":[13.4025,52.5200]}', '{"font_size":18,"color":"#333333"}', NULL),
  (:'v2', 'building-library', 'University Library', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.4000,52.5190],[13.4025,52.5190],[13.4025,52.5205],[13.4010,52.5210],[13.4000,52.5205],[13.4000,52.5190]]]}',
   '{"category":"building","floors":4,"accessible":true,"color":"#1f77b4"}', NULL),
  (:'v2', 'path-riverwalk', 'Riverwalk', 'polyline',
   '{"type":"LineString","coordinates":[[13.3955,52.5236],[13.3990,52.5239],[13.4025,52.5237],[13.4060,52.5235],[13.4095,52.5238]]}',
   '{"category":"footpath","surface":"gravel","color":"#2ca02c","width":3}', NULL),
  (:'v2', 'image-campus-aerial', 'Aerial Photo 2023', 'image',
   '{"type":"Polygon","coordinates":[[[13.3950,52.5150],[13.4100,52.5150],[13.4100,52.5250],[13.3950,52.5250],[13.3950,52.5150]]]}',
   '{"opacity":0.85}',
   (SELECT id FROM publish.assets WHERE version_id = :'v2' AND key = 'campus-aerial'));

-- ---------------------------------------------------------------------------
-- Version 3 (ready): the release the demo publishes.  Every asset has its
-- size and checksum.
-- ---------------------------------------------------------------------------

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
SELECT :'v3', key, kind, 'assets/campus/v3/' || file, content_type, byte_size,
       encode(sha256(convert_to('campus v3 asset ' || key, 'UTF8')), 'hex')
  FROM (VALUES ('campus-aerial',         'image',    'campus-aerial-2024.jpg',    'image/jpeg',       1843206),
               ('library-photo',         'image',    'library-photo.jpg',         'image/jpeg',        284512),
               ('science-center-render', 'image',    'science-center-render.png', 'image/png',         512330),
               ('icon-entrance',         'icon',     'icons/entrance.svg',        'image/svg+xml',       1187),
               ('icon-bike',             'icon',     'icons/bike.svg',            'image/svg+xml',        988),
               ('icon-cafe',             'icon',     'icons/cafe.svg',            'image/svg+xml',       1130),
               ('campus-guide',          'document', 'campus-guide-2024-25.pdf',  'application/pdf',  2310455),
               ('base-map-style',        'base_map', 'base-map/style.json',       'application/json',   18342))
       AS a (key, kind, file, content_type, byte_size);

-- Hand-written overlays: 5 markers, 3 labels, 4 polylines, 6 polygons and
-- 3 images.
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
VALUES
  -- Markers (Point); "icon" names an icon asset of the version.
  (:'v3', 'marker-main-entrance', 'Main Entrance', 'marker',
   '{"type":"Point","coordinates":[13.3968,52.5158]}',
   '{"category":"entrance","icon":"icon-entrance","accessible":true}'),
  (:'v3', 'marker-library-entrance', 'Library Entrance', 'marker',
   '{"type":"Point","coordinates":[13.4012,52.5190]}',
   '{"category":"entrance","icon":"icon-entrance","accessible":true,"opening_hours":"Mo-Fr 08:00-22:00"}'),
  (:'v3', 'marker-bus-stop', 'Bus Stop Riverside Gate', 'marker',
   '{"type":"Point","coordinates":[13.3955,52.5156]}',
   '{"category":"transit","lines":["147","248"]}'),
  (:'v3', 'marker-riverside-cafe', 'Riverside Cafe', 'marker',
   '{"type":"Point","coordinates":[13.4046,52.5232]}',
   '{"category":"food","icon":"icon-cafe","outdoor_seating":true}'),
  (:'v3', 'marker-first-aid', 'First Aid Station', 'marker',
   '{"type":"Point","coordinates":[13.4071,52.5187]}',
   '{"category":"safety","phone":"+49 30 555 0112","color":"#d62728"}'),
  -- Labels (Point)
  (:'v3', 'label-campus-name', 'Riverside University', 'label',
   '{"type":"Point","coordinates":[13.4025,52.5200]}',
   '{"font_size":18,"color":"#333333","min_zoom":14}'),
  (:'v3', 'label-river-spree', 'Spree', 'label',
   '{"type":"Point","coordinates":[13.4030,52.5243]}',
   '{"font_size":14,"color":"#1f77b4","italic":true}'),
  (:'v3', 'label-the-quad', 'The Quad', 'label',
   '{"type":"Point","coordinates":[13.4020,52.5181]}',
   '{"font_size":12,"color":"#2ca02c"}'),
  -- Polylines (LineString, MultiLineString)
  (:'v3', 'path-riverwalk', 'Riverwalk', 'polyline',
   '{"type":"LineString","coordinates":[[13.3955,52.5236],[13.3990,52.5239],[13.4025,52.5237],[13.4060,52.5235],[13.4095,52.5238]]}',
   '{"category":"footpath","surface":"gravel","color":"#2ca02c","width":3}'),
  (:'v3', 'path-main-avenue', 'University Avenue', 'polyline',
   '{"type":"LineString","coordinates":[[13.3968,52.5158],[13.3990,52.5170],[13.4020,52.5172],[13.4055,52.5175],[13.4090,52.5178]]}',
   '{"category":"road","surface":"asphalt","color":"#7f7f7f","width":5}'),
  (:'v3', 'path-cycle-network', 'Cycle Network', 'polyline',
   '{"type":"MultiLineString","coordinates":[[[13.3966,52.5165],[13.3966,52.5230]],[[13.4097,52.5160],[13.4097,52.5230]],[[13.3966,52.5200],[13.3998,52.5200]]]}',
   '{"category":"cycleway","color":"#ff7f0e","width":2,"dashed":true}'),
  (:'v3', 'path-shuttle-route', 'Campus Shuttle', 'polyline',
   '{"type":"LineString","coordinates":[[13.3955,52.5156],[13.3955,52.5190],[13.3985,52.5226],[13.4046,52.5228],[13.4090,52.5225]]}',
   '{"category":"transit","interval_minutes":10,"color":"#9467bd","width":2}'),
  -- Polygons (Polygon, one with a courtyard hole, MultiPolygon)
  (:'v3', 'building-library', 'University Library', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.4000,52.5190],[13.4025,52.5190],[13.4025,52.5205],[13.4010,52.5210],[13.4000,52.5205],[13.4000,52.5190]]]}',
   '{"category":"building","floors":4,"accessible":true,"color":"#1f77b4"}'),
  (:'v3', 'building-science-center', 'Science Center', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.4035,52.5188],[13.4065,52.5188],[13.4065,52.5210],[13.4035,52.5210],[13.4035,52.5188]],[[13.4045,52.5195],[13.4045,52.5203],[13.4055,52.5203],[13.4055,52.5195],[13.4045,52.5195]]]}',
   '{"category":"building","floors":6,"accessible":true,"color":"#1f77b4","courtyard":true,"opened":2024}'),
  (:'v3', 'building-student-union', 'Student Union', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.3975,52.5210],[13.3995,52.5210],[13.3995,52.5222],[13.3975,52.5222],[13.3975,52.5210]]]}',
   '{"category":"building","floors":2,"accessible":true,"color":"#17becf"}'),
  (:'v3', 'area-the-quad', 'The Quad', 'polygon',
   '{"type":"Polygon","coordinates":[[[13.4005,52.5175],[13.4035,52.5175],[13.4035,52.5186],[13.4005,52.5186],[13.4005,52.5175]]]}',
   '{"category":"green","color":"#98df8a","opacity":0.6}'),
  (:'v3', 'area-sports-fields', 'Sports Fields', 'polygon',
   '{"type":"MultiPolygon","coordinates":[[[[13.4070,52.5195],[13.4092,52.5195],[13.4092,52.5210],[13.4070,52.5210],[13.4070,52.5195]]],[[[13.4070,52.5213],[13.4092,52.5213],[13.4092,52.5226],[13.4070,52.5226],[13.4070,52.5213]]]]}',
   '{"category":"sports","surfaces":["grass","artificial turf"],"color":"#bcbd22","opacity":0.6}'),
  (:'v3', 'area-parking', 'Visitor Parking', 'polygon',
   '{"type":"MultiPolygon","coordinates":[[[[13.3952,52.5160],[13.3962,52.5160],[13.3962,52.5170],[13.3952,52.5170],[13.3952,52.5160]]],[[[13.3952,52.5175],[13.3962,52.5175],[13.3962,52.5185],[13.3952,52.5185],[13.3952,52.5175]]]]}',
   '{"category":"parking","spaces":120,"fee":true,"color":"#c7c7c7"}');

-- Images: a Polygon footprint and an image asset of the same version.
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
SELECT :'v3', o.key, o.name, 'image', o.geometry::jsonb, o.properties::jsonb, a.id
  FROM (VALUES
        ('image-campus-aerial', 'Aerial Photo 2024', 'campus-aerial',
         '{"type":"Polygon","coordinates":[[[13.3950,52.5150],[13.4100,52.5150],[13.4100,52.5250],[13.3950,52.5250],[13.3950,52.5150]]]}',
         '{"opacity":0.85,"attribution":"Riverside University, 2024"}'),
        ('image-library-photo', 'Library Reading Room', 'library-photo',
         '{"type":"Polygon","coordinates":[[[13.4002,52.5192],[13.4012,52.5192],[13.4012,52.5198],[13.4002,52.5198],[13.4002,52.5192]]]}',
         '{"opacity":1.0,"caption":"The reading room after the 2024 renovation"}'),
        ('image-science-center-render', 'Science Center (rendering)', 'science-center-render',
         '{"type":"Polygon","coordinates":[[[13.4035,52.5188],[13.4065,52.5188],[13.4065,52.5210],[13.4035,52.5210],[13.4035,52.5188]]]}',
         '{"opacity":0.7,"min_zoom":16}'))
       AS o (key, name, asset_key, geometry, properties)
  JOIN publish.assets a ON a.version_id = :'v3' AND a.key = o.asset_key;

-- Generated overlays: 12 bike racks along University Avenue ...
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT :'v3', format('bike-rack-%s', to_char(i, 'FM00')), format('Bike Rack %s', i), 'marker',
       jsonb_build_object('type', 'Point',
                          'coordinates', jsonb_build_array(13.3976 + i * 0.0009, 52.5168)),
       jsonb_build_object('category', 'bike_rack', 'icon', 'icon-bike',
                          'capacity', 10 + (i % 3) * 5, 'covered', i % 2 = 0)
  FROM generate_series(1, 12) AS i;

-- ... and 8 student residences in two rows of four south-east of the avenue.
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT :'v3', 'building-residence-' || letter, 'Residence Hall ' || upper(letter), 'polygon',
       jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(jsonb_build_array(
           jsonb_build_array(w, s), jsonb_build_array(w + 0.0010, s),
           jsonb_build_array(w + 0.0010, s + 0.0005), jsonb_build_array(w, s + 0.0005),
           jsonb_build_array(w, s)))),
       jsonb_build_object('category', 'residence', 'floors', 3 + i % 3,
                          'beds', 80 + 20 * (i % 4), 'color', '#8c564b')
  FROM generate_series(0, 7) AS i,
       LATERAL (SELECT chr(ascii('a') + i) AS letter,
                       13.4040 + (i % 4) * 0.0014 AS w,
                       52.5153 + (i / 4) * 0.0008 AS s) AS r;

-- The tileset of version 3 (base map, zooms 0-2).  Its tiles lie where
-- build_tiles would put them for production, {env}/{slug}/builds/v{N}/tiles
-- under the target's root, but were put there by other means (make_tiles.sh),
-- so built_env stays NULL: a publish to any environment of that target
-- copies them from there ...
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom, bounds, source_path, built_at)
VALUES (:'v3', 'png', 256, 0, 2, ARRAY[13.3950, 52.5150, 13.4100, 52.5250]::double precision[],
        'production/campus/builds/v3/tiles', now())
RETURNING id AS tileset_id \gset

-- ... and its manifest: every tile of zooms 0-2 (1 + 4 + 16 = 21).  Each
-- tile is the 103-byte PNG below followed by the line
-- 'campus v3 tile {z}/{x}/{y}\n', byte for byte what make_tiles.sh writes.
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
SELECT :'tileset_id', z, x, y, length(tile), encode(sha256(tile), 'hex')
  FROM generate_series(0, 2) AS z,
       generate_series(0, (1 << z) - 1) AS x,
       generate_series(0, (1 << z) - 1) AS y,
       LATERAL (SELECT decode('89504e470d0a1a0a0000000d494844520000010000000100010300000066bc3a25'
                              '00000003504c5445f2efe9110a2f9b0000001f4944415478daedc1010d000000c2'
                              'a0f74f6d0e37a00000000000000000be0d2100000160e49d970000000049454e44'
                              'ae426082', 'hex')
                       || convert_to(format(E'campus v3 tile %s/%s/%s\n', z, x, y), 'UTF8') AS tile) AS t;

COMMIT;

-- What was loaded.
SELECT v.version_number AS version, v.status,
       (SELECT count(*) FROM publish.assets a WHERE a.version_id = v.id) AS assets,
       (SELECT count(*) FROM publish.overlays o WHERE o.version_id = v.id) AS overlays,
       (SELECT count(*) FROM publish.tiles t JOIN publish.tilesets s ON s.id = t.tileset_id
         WHERE s.version_id = v.id) AS tiles
  FROM publish.project_versions v
  JOIN publish.projects p ON p.id = v.project_id
 WHERE p.slug = 'campus'
 ORDER BY v.version_number;
