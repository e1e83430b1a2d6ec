#!/usr/bin/perl
#
# 011_many_jobs_crash.pl: the worker dies while many jobs are queued.
#
# Many jobs are queued at once, and while they run the worker is killed
# (SIGKILL: the server restarts), the server is stopped in immediate mode
# and started again, and the worker is terminated (SIGTERM, as a shutdown
# does: its job is left to recovery).  Afterwards:
#
#  (a) every job ends completed, exactly once (one completion log line, one
#      live release pointing at it), with its attempts counted across the
#      crashes (some jobs needed more than one)
#  (b) every project's release.json is complete (valid JSON, all its
#      overlays) and is its versioned copy releases/v1.json
#  (c) of jobs queued together, one whose version does not validate fails
#      alone: the others complete
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);

my $storage = PostgreSQL::Test::Utils::tempdir();
my $n = 600;

my $node = publish_node('many_jobs_crash',
	conf => "publish.max_attempts = 20\n"
	  # PostgreSQL::Test::Cluster turns this off; a killed worker must
	  # restart the cluster.
	  . "restart_after_crash = on\n"
	  . "publish.sweep_interval = 1\n");
my $db = 'many';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db, "SELECT publish.set_storage_target('g', 'file://$storage')");
$node->safe_psql($db, qq{
	INSERT INTO publish.projects (slug, name) SELECT 'g-' || p, 'Group ' || p FROM generate_series(1, $n) p;
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
	       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + i / 1000.0, 52.5)),
	       jsonb_build_object('rank', i)
	  FROM publish.project_versions v, generate_series(1, 20) i;
});

sub q1 { return $node->safe_psql($db, $_[0]); }

sub worker_pid
{
	my $pid = '';
	for (1 .. 300)
	{
		$pid = $node->safe_psql($db,
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
		last if $pid =~ /^\d+$/;
		usleep(50_000);
	}
	return $pid;
}

# Waits until at least $k jobs have completed, then returns; jobs are
# still queued.
sub wait_completed
{
	my ($k) = @_;
	$node->poll_query_until($db,
		"SELECT count(*) >= $k FROM publish.job_queue WHERE status = 'completed'", 't')
	  or diag("fewer than $k jobs completed");
	return;
}

sub done_count
{
	return q1("SELECT count(*) FROM publish.job_queue WHERE status = 'completed'");
}

# Each log line of a running job costs the worker 4 ms more, so that a job
# takes about 25 ms and a kill lands in the middle of one, after its claim
# (and its attempt) was committed.  Not the claim's own line: a kill
# during the claim's transaction would undo the claim, and a slow claim
# widened that window to one kill in five or so.
q1(q{
	CREATE FUNCTION public.slow_log() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN PERFORM pg_sleep(0.004); RETURN NULL; END$$;
	CREATE TRIGGER slow_log AFTER INSERT ON publish.job_log
	  FOR EACH ROW WHEN (NEW.message NOT LIKE 'Started by %')
	  EXECUTE FUNCTION public.slow_log();
});

# queue every project at once
q1("SELECT count(*) FROM (SELECT publish.publish_version(slug, 1, 'g') FROM publish.projects) s");

# 1: SIGKILL of the worker (the postmaster restarts the cluster)
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'the worker runs');
wait_completed(40);
my $at_kill = done_count();
kill 'KILL', $pid;
ok($at_kill < $n, "killed (SIGKILL) with jobs left: $at_kill of $n completed");
$node->poll_query_until('postgres', 'SELECT 1', '1');

# 2: immediate shutdown, then start
wait_completed($at_kill + 60);
$node->stop('immediate');
$node->start;
my $at_stop = done_count();
ok($at_stop < $n, "stopped (immediate) with jobs left: $at_stop of $n completed");

# 3: SIGTERM of the worker (its job is left to recovery; the launcher
# starts it again)
$pid = worker_pid();
wait_completed($at_stop + 60);
my $at_term = done_count();
kill 'TERM', $pid;
ok($at_term < $n, "terminated (SIGTERM) with jobs left: $at_term of $n completed");

# 4: SIGKILL again, right after a restart
$pid = worker_pid();
wait_completed($at_term + 60);
kill 'KILL', $pid;
$node->poll_query_until('postgres', 'SELECT 1', '1');

$node->poll_query_until($db,
	"SELECT count(*) = 0 FROM publish.job_queue WHERE status IN ('queued', 'running')", 't')
  or diag('jobs left: ' . q1("SELECT string_agg(status || ' ' || count, ', ') FROM "
	  . "(SELECT status, count(*) FROM publish.job_queue GROUP BY status) s"));

# (a)
is(q1("SELECT count(*) FROM publish.job_queue WHERE status = 'completed'"), $n,
	'(a) every job completed');
is(q1("SELECT count(*) FROM publish.job_queue WHERE status <> 'completed'"), 0,
	'(a) none failed or is left');
is(q1(q{SELECT count(*) FROM (SELECT job_id FROM publish.job_log
	WHERE message = 'Version marked published; publish completed successfully'
	GROUP BY job_id HAVING count(*) <> 1) s}), 0,
	'(a) each job was recorded completed exactly once');
is(q1(q{SELECT count(*) FROM publish.job_queue q
	JOIN publish.live_releases r ON r.job_id = q.id AND r.project_id = q.project_id AND r.env = q.env}), $n,
	'(a) each project has one live release, recorded by its job');
ok(q1("SELECT count(*) FILTER (WHERE attempts > 1) > 0 FROM publish.job_queue") eq 't',
	'(a) crashes interrupted jobs: some needed more than one attempt ('
	  . q1("SELECT count(*) FILTER (WHERE attempts > 1) FROM publish.job_queue") . ')');
is(q1(q{SELECT count(*) FROM publish.job_queue q WHERE attempts <>
	1 + (SELECT count(*) FROM publish.job_log l WHERE l.job_id = q.id AND l.message ~ '^interrupted')}), 0,
	'(a) attempts are counted across crashes: one more than the interruptions logged');

# (b)
my ($complete, $same) = (0, 0);
my @bad;
for my $p (1 .. $n)
{
	my $dir = "$storage/g/g-$p";
	my $live = eval { slurp_file("$dir/release.json") } // '';
	my $doc = eval { decode_json($live) };
	my $overlays = ref($doc) eq 'HASH' && ref($doc->{overlays}) eq 'ARRAY' ? scalar(@{ $doc->{overlays} }) : -1;
	if ($overlays == 20) { $complete++; }
	else { push @bad, "g-$p: release.json has $overlays overlays"; }
	my $versioned = eval { slurp_file("$dir/releases/v1.json") } // '';
	if ($live ne '' && $live eq $versioned) { $same++; }
	else { push @bad, "g-$p: release.json is not releases/v1.json"; }
}
is($complete, $n, '(b) every release.json is complete: valid JSON, 20 overlays');
is($same, $n, '(b) every release.json is its versioned copy');
diag($_) for @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ];
my @tmp = glob("$storage/g/g-*/*.tmp-* $storage/g/g-*/releases/*.tmp-*");
is(scalar(@tmp), 0, '(b) no temporary file is left: each retry removed what its interrupted attempt left');
diag($_) for @tmp[ 0 .. ($#tmp < 4 ? $#tmp : 4) ];

q1('DROP TRIGGER slow_log ON publish.job_log');

# (c) five jobs queued at once, claimed together by the idle worker; the
# third's version has an overlay that does not validate (a marker that is a
# line): it fails alone, at its step 1, and the four others complete.
q1(q{
	INSERT INTO publish.projects (slug, name) SELECT 'c-' || p, 'Check ' || p FROM generate_series(1, 5) p;
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects WHERE slug LIKE 'c-%';
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
	       CASE WHEN p.slug = 'c-3' AND i = 2
	            THEN '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'::jsonb
	            ELSE jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4, 52.5)) END,
	       '{}'
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id,
	       generate_series(1, 3) i
	 WHERE p.slug LIKE 'c-%';
});
my $ids = q1(q{SELECT string_agg(quote_literal(id), ',') FROM
	(SELECT (publish.publish_version(slug, 1, 'g')).id FROM publish.projects WHERE slug LIKE 'c-%') s});
$node->poll_query_until($db,
	"SELECT bool_and(status IN ('completed', 'failed')) FROM publish.job_queue WHERE id IN ($ids)", 't');
is(q1("SELECT string_agg(p.slug || ' ' || q.status, ', ' ORDER BY p.slug) FROM publish.job_queue q"
	  . " JOIN publish.projects p ON p.id = q.project_id WHERE q.id IN ($ids)"),
	'c-1 completed, c-2 completed, c-3 failed, c-4 completed, c-5 completed',
	'(c) the job whose version does not validate fails; the four others complete');
ok(q1("SELECT error FROM publish.job_queue q JOIN publish.projects p ON p.id = q.project_id"
	  . " WHERE q.id IN ($ids) AND p.slug = 'c-3'") =~ /poi-2/,
	'(c) the failed job says which overlay');
ok(!-e "$storage/g/c-3/release.json", '(c) nothing of the failed job is live');
is(scalar(my @t = glob("$storage/g/c-*/releases/*.tmp-*")), 0,
	'(c) no temporary file is left by the failed job');

$node->stop;
done_testing();
