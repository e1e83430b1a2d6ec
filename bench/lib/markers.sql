-- bench/lib/markers.sql: 20 markers (poi-1 ... poi-20, a point each) in
-- every version of the database: the small release of the queue
-- benchmarks (pickup, throughput, deep_queue), whose jobs should cost
-- little beside the queue itself.
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + i / 1000.0, 52.5)),
       jsonb_build_object('rank', i)
  FROM publish.project_versions v, generate_series(1, 20) i;
