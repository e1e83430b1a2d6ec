#!/usr/bin/perl
#
# 015_release_memory.pl: publish.max_release_size bounds the memory of the
# worker that builds release.json, of the caller whose publish_version
# estimates its size, and of the caller of build_release, whatever the rows
# hold.  jsonb stores a number such as 1e131071 in a few bytes and prints it
# as 131,072 digits, and 1.000... with 16,383 zeros after the point as
# 16,385: rows of tens of kilobytes print as hundreds of megabytes.  With
# publish.max_release_size = 4MB:
#
#  (a) a publish is queued for a small valid version, and in the same
#      transaction (after the call-time estimate) the overlay's properties
#      become 2,000 numbers of 1e131071 (262 MB of text): the job fails with
#      PT413's message
#  (b) the same with the geometry: a LineString of 2,000 positions whose
#      coordinates print as 16,385 characters each (65 MB of text)
#  (c) the same with properties that take 100 MB as stored (a long string):
#      refused before they are read
#  (d) a release of about 3 MB (a long string) is still published
#  (e) the worker (the same process throughout) has a peak resident size
#      (VmHWM) under 2 x max_release_size + 64 MB, the fixed margin for the
#      process itself (libraries, shared memory it touched, one batch of
#      rows); before the size was counted ahead of the text it grew with
#      the text, to gigabytes
#  (f) publish_version and validate_version, with the 262 MB-of-text rows
#      stored, refuse the version at call time (PT413); build_release, which
#      writes the document as the worker does, refuses it as the worker does
#      (PT413, before the document passes the limit); the caller's backend
#      stays under the same bound
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;

my $max_kb = 4096;
my $margin_kb = 65536;
my $bound_kb = 2 * $max_kb + $margin_kb;

my $storage = PostgreSQL::Test::Utils::tempdir();
my $node = publish_node('release_memory', conf => "publish.max_release_size = '${max_kb}kB'\n");
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");
$node->safe_psql(
	$db, q{
	INSERT INTO publish.projects (slug, name) VALUES ('mem', 'Memory');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'mem';
	INSERT INTO publish.overlays (version_id, key, overlay_type, geometry, properties)
	SELECT v.id, 'o1', 'polyline', '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}', '{"n":1}'
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'mem';
});

my $small_geometry = q{'{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'};
my %content = (
	huge_numbers => q{properties = jsonb_build_object('n', (SELECT jsonb_agg('1e131071'::numeric) FROM generate_series(1, 2000)))},
	long_scales => q{geometry = jsonb_build_object('type', 'LineString', 'coordinates',
	                     (SELECT jsonb_agg(jsonb_build_array(round(13::numeric, 16383), round(52::numeric, 16383)))
	                        FROM generate_series(1, 2000)))},
	stored_100mb => q{properties = jsonb_build_object('s', repeat('x', 100000000))},
	text_3mb => q{properties = jsonb_build_object('s', repeat('x', 3000000))},
);
my $reset = "geometry = $small_geometry, properties = '{\"n\":1}'";

sub worker_pid
{
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'")
	  or die 'no publish worker';
	return $node->safe_psql($db,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
}

# peak resident size of a process, in kB
sub vm_hwm
{
	my ($pid) = @_;
	my $status = slurp_file("/proc/$pid/status");
	$status =~ /^VmHWM:\s+(\d+) kB/m or die "no VmHWM in /proc/$pid/status";
	return $1;
}

# Queues a publish of the version, then (same transaction) sets the
# overlay's content; returns the job's end (status, error).
sub publish_then_set
{
	my ($set) = @_;
	my $job = $node->safe_psql(
		$db, qq{
		BEGIN;
		SELECT id FROM publish.publish_version('mem', 1);
		UPDATE publish.overlays SET $set WHERE key = 'o1';
		COMMIT;
	});
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.jobs WHERE id = '$job'", 't')
	  or die "job $job did not end";
	my $end = $node->safe_psql($db, "SELECT status || ' ' || coalesce(error, '') FROM publish.jobs WHERE id = '$job'");
	$node->safe_psql($db, "UPDATE publish.overlays SET $reset WHERE key = 'o1'");
	return $end;
}

my $worker = worker_pid();
note "worker $worker, VmHWM at start: " . vm_hwm($worker) . ' kB';

like(publish_then_set($content{huge_numbers}),
	qr/^failed version 1 of project "mem" is too large to publish: its release.json went over publish.max_release_size \(4096 kB\)/,
	'(a) properties of 2,000 numbers 1e131071, set after the publish was queued: the job fails with PT413');
note 'VmHWM: ' . vm_hwm($worker) . ' kB';

like(publish_then_set($content{long_scales}),
	qr/^failed version 1 of project "mem" is too large to publish: its release.json went over publish.max_release_size \(4096 kB\)/,
	'(b) a geometry of 4,000 coordinates of 16,385 characters: PT413');
note 'VmHWM: ' . vm_hwm($worker) . ' kB';

like(publish_then_set($content{stored_100mb}),
	qr/^failed version 1 of project "mem" is too large to publish: the geometry and properties of overlay "o1" take \d+ MB, over publish.max_release_size \(4096 kB\)/,
	'(c) properties of 100 MB as stored: PT413, before they are read');
note 'VmHWM: ' . vm_hwm($worker) . ' kB';

is(publish_then_set($content{text_3mb}), 'completed ', '(d) a release.json of about 3 MB is published');
ok(-s "$storage/production/mem/release.json" > 3_000_000, '... and is on storage');

is(worker_pid(), $worker, '(e) the same worker ran every job');
my $peak = vm_hwm($worker);
cmp_ok($peak, '<', $bound_kb,
	"... and its peak resident size, $peak kB, is under 2 x publish.max_release_size + 64 MB ($bound_kb kB)");

# (f) the estimate at call time, in a backend of its own
$node->safe_psql($db, "UPDATE publish.overlays SET $content{huge_numbers} WHERE key = 'o1'");
my ($rc, $out, $err) = $node->psql(
	$db, q{
	DO $$
	BEGIN
		PERFORM publish.publish_version('mem', 1);
	EXCEPTION WHEN SQLSTATE 'PT413' THEN
		RAISE NOTICE 'publish_version: %', SQLERRM;
	END $$;
	DO $$
	BEGIN
		PERFORM publish.validate_version('mem', 1);
	EXCEPTION WHEN SQLSTATE 'PT413' THEN
		RAISE NOTICE 'validate_version: %', SQLERRM;
	END $$;
	DO $$
	BEGIN
		PERFORM publish.build_release('mem', 1);
	EXCEPTION WHEN SQLSTATE 'PT413' THEN
		RAISE NOTICE 'build_release: %', SQLERRM;
	END $$;
	SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s+(\d+) kB');
});
is($rc, 0, '(f) the calls ran');
like($err, qr/publish_version: version 1 of project "mem" is too large to publish: its release.json would be about 2\d\d MB/,
	'... publish_version refuses the version (PT413), counting its text as 262 MB');
like($err, qr/validate_version: version 1 of project "mem" is too large to publish/,
	'... and so does validate_version');
like($err, qr/build_release: version 1 of project "mem" is too large to publish: its release.json went over publish.max_release_size \(4096 kB\)/,
	'... and build_release, while it writes the document');
cmp_ok($out, '<', $bound_kb, "... and the caller's backend peaked at $out kB, under $bound_kb kB");
is($node->safe_psql($db, "SELECT count(*) FROM publish.jobs WHERE status = 'queued'"), '0', '... no job was queued');

$node->stop;
done_testing();
