#!/usr/bin/perl
#
# 004_concurrency.pl: many clients publishing at once, with three workers.
#
# Three projects (the demo project "campus", versions 2 and 3, and two small
# projects "alpha" and "beta" with five ready versions each) and two
# environments (staging, production): six targets.  pgbench runs 8 clients x
# 100 transactions; each picks a random project, version and environment,
# calls publish.publish_version and records (project, env, version, job id,
# clock_timestamp()) in a table "requests" in the same transaction.  Once no
# job is queued or running:
#   - every job ended: completed, or cancelled as superseded (never started);
#     none failed, none is left queued or running;
#   - there are no more jobs than requests, and every request's job exists;
#   - jobs of one project and environment never overlapped in time, and ran
#     in the order they were asked for;
#   - for each project and environment, the live version (publish.releases,
#     release.json on storage and the project's version status) is the one
#     of the last request for it;
#   - jobs of different targets did run at the same time (3 workers).
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $storage = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');

my $node = publish_node('concurrency',
	conf => "max_connections = 40\n" . "publish.workers_per_database = 3\n");

my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION publish');
foreach my $env (qw(staging production))
{
	$node->safe_psql($db,
		"SELECT publish.set_storage_target('$env', 'file://$storage')");
}
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr($db),
		'-f', "$demo/sample_project.sql"
	],
	'sample project loaded');

# Two small projects, five ready versions each: two assets (with size and
# checksum) and one overlay of every type, the image one on an asset of the
# same version.
$node->safe_psql(
	$db, q{
	WITH p AS (
		INSERT INTO publish.projects (slug, name)
		VALUES ('alpha', 'Alpha'), ('beta', 'Beta') RETURNING id, slug)
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT p.id, n, 'ready' FROM p, generate_series(1, 5) AS n;

	INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
	SELECT v.id, a.key, a.kind, format('assets/%s/v%s/%s', p.slug, v.version_number, a.file),
	       a.ctype, a.size,
	       encode(sha256(convert_to(format('%s v%s %s', p.slug, v.version_number, a.key), 'UTF8')), 'hex')
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	 CROSS JOIN (VALUES ('photo', 'image', 'photo.jpg', 'image/jpeg', 12345),
	                    ('icon', 'icon', 'icon.svg', 'image/svg+xml', 321))
	       AS a (key, kind, file, ctype, size)
	 WHERE p.slug IN ('alpha', 'beta');

	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
	SELECT v.id, o.type || '-1', initcap(o.type) || ' of v' || v.version_number, o.type,
	       o.geometry::jsonb, jsonb_build_object('version', v.version_number),
	       CASE WHEN o.type = 'image'
	            THEN (SELECT a.id FROM publish.assets a WHERE a.version_id = v.id AND a.key = 'photo') END
	  FROM publish.projects p
	  JOIN publish.project_versions v ON v.project_id = p.id
	 CROSS JOIN (VALUES
	   ('marker', '{"type":"Point","coordinates":[13.40,52.52]}'),
	   ('label', '{"type":"Point","coordinates":[13.401,52.521]}'),
	   ('polyline', '{"type":"LineString","coordinates":[[13.40,52.52],[13.41,52.521]]}'),
	   ('polygon', '{"type":"Polygon","coordinates":[[[13.40,52.51],[13.41,52.51],[13.41,52.52],[13.40,52.51]]]}'),
	   ('image', '{"type":"Polygon","coordinates":[[[13.39,52.50],[13.42,52.50],[13.42,52.53],[13.39,52.53],[13.39,52.50]]]}'))
	   AS o (type, geometry)
	 WHERE p.slug IN ('alpha', 'beta');

	CREATE TABLE requests (
		n        bigint GENERATED ALWAYS AS IDENTITY,
		project  text NOT NULL,
		env      text NOT NULL,
		version  int NOT NULL,
		job_id   uuid NOT NULL,
		asked_at timestamptz NOT NULL);
});

is( $node->safe_psql(
		$db, q{
	SELECT count(*) FROM publish.projects p JOIN publish.project_versions v ON v.project_id = p.id,
	       LATERAL publish.validate_version(p.slug, v.version_number) AS problem
	 WHERE p.slug IN ('alpha', 'beta') OR (p.slug = 'campus' AND v.version_number IN (2, 3))}),
	'0', 'campus v2, v3 and the ten versions of alpha and beta are valid');

ok( $node->poll_query_until($db,
		"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"),
	'three publish workers serve the database');

# --- 8 clients x 100 publishes -------------------------------------------------

# campus is published as version 2 or 3, alpha and beta as 1 to 5.  The
# request is recorded after publish_version returned, in the same statement:
# publish_version serializes the requests of one target until commit, so the
# latest asked_at of a target is its last request.
my $script = q{
\set p random(1, 3)
\set e random(1, 2)
\set v random(1, 5)
INSERT INTO requests (project, env, version, job_id, asked_at)
SELECT r.project, r.env, r.version, j.id, clock_timestamp()
  FROM (SELECT (ARRAY['campus', 'alpha', 'beta'])[:p] AS project,
               (ARRAY['staging', 'production'])[:e] AS env,
               CASE WHEN :p = 1 THEN 2 + :v % 2 ELSE :v END AS version) AS r,
       LATERAL publish.publish_version(r.project, r.version, r.env) AS j;
};

my $t0 = time();
$node->pgbench(
	'-n -c 8 -j 2 -t 100',
	0,
	[ qr{processed: 800/800}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'8 clients x 100 publish_version calls, all succeed',
	{ '004_publish' => $script },
	$db);
note(sprintf('pgbench took %d s', time() - $t0));

ok( $node->poll_query_until($db,
		"SELECT count(*) = 0 FROM publish.job_queue WHERE status IN ('queued', 'running')"),
	'every job ends (none left queued or running)');
note(sprintf('all jobs ended after %d s', time() - $t0));

# --- jobs ------------------------------------------------------------------------

my $summary = $node->safe_psql($db,
	"SELECT status, count(*) FROM publish.job_queue GROUP BY 1 ORDER BY 1");
note("jobs by status:\n$summary");

# Every figure at once (each psql call costs a fraction of a second).
my %n = map { split /=/ } split /\n/, $node->safe_psql(
	$db, q{
	SELECT 'requests=' || count(*) FROM requests
	UNION ALL SELECT 'jobs=' || count(*) FROM publish.job_queue
	UNION ALL SELECT 'failed=' || count(*) FROM publish.job_queue WHERE status NOT IN ('completed', 'cancelled')
	UNION ALL SELECT 'cancelled_not_superseded=' || count(*) FROM publish.job_queue
	           WHERE status = 'cancelled' AND error NOT LIKE 'superseded%'
	UNION ALL SELECT 'superseded_started=' || count(*) FROM publish.job_queue
	           WHERE status = 'cancelled' AND (started_at IS NOT NULL OR attempts > 0)
	UNION ALL SELECT 'completed_bad=' || count(*) FROM publish.job_queue
	           WHERE status = 'completed' AND (progress <> 100 OR attempts <> 1 OR NOT result ? 'release_url'
	                                           OR started_at IS NULL OR completed_at < started_at)
	UNION ALL SELECT 'request_without_job=' || count(*) FROM requests r
	           WHERE NOT EXISTS (SELECT 1 FROM publish.job_queue q WHERE q.id = r.job_id)
	UNION ALL SELECT 'request_wrong_job=' || count(*) FROM requests r
	             JOIN publish.job_queue q ON q.id = r.job_id
	             JOIN publish.projects p ON p.id = q.project_id
	             JOIN publish.project_versions v ON v.id = q.version_id
	           WHERE p.slug <> r.project OR q.env <> r.env OR v.version_number <> r.version
	UNION ALL SELECT 'job_without_request=' || count(*) FROM publish.job_queue q
	           WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.job_id = q.id)
	UNION ALL SELECT 'same_target_overlaps=' || count(*) FROM publish.job_queue a JOIN publish.job_queue b
	              ON a.project_id = b.project_id AND a.env = b.env AND a.id < b.id
	           WHERE a.started_at IS NOT NULL AND b.started_at IS NOT NULL
	             AND tstzrange(a.started_at, a.completed_at) && tstzrange(b.started_at, b.completed_at)
	UNION ALL SELECT 'completed_overlaps=' || count(*) FROM publish.job_queue a JOIN publish.job_queue b
	              ON a.project_id = b.project_id AND a.env = b.env AND a.id < b.id
	           WHERE a.status = 'completed' AND b.status = 'completed'
	             AND tstzrange(a.started_at, a.completed_at) && tstzrange(b.started_at, b.completed_at)
	UNION ALL SELECT 'out_of_order=' || count(*) FROM publish.job_queue a JOIN publish.job_queue b
	              ON a.project_id = b.project_id AND a.env = b.env
	           WHERE a.status = 'completed' AND b.status = 'completed'
	             AND a.created_at < b.created_at AND a.started_at > b.started_at
	UNION ALL SELECT 'live_not_completed=' || count(*) FROM publish.live_releases r
	             JOIN publish.job_queue q ON q.id = r.job_id
	           WHERE q.status <> 'completed'
	UNION ALL SELECT 'parallel_pairs=' || count(*) FROM publish.job_queue a JOIN publish.job_queue b
	              ON (a.project_id, a.env) <> (b.project_id, b.env) AND a.id < b.id
	           WHERE a.status = 'completed' AND b.status = 'completed'
	             AND tstzrange(a.started_at, a.completed_at) && tstzrange(b.started_at, b.completed_at)
	UNION ALL SELECT 'worker_pids=' || count(DISTINCT substring(l.message FROM 'pid (\d+)')) FROM publish.job_log l
	           WHERE l.message LIKE 'Started by the publish worker%'});

is($n{requests}, 800, '800 requests recorded');
is($n{failed}, 0, 'every job completed or was cancelled; none failed')
  or diag($node->safe_psql($db,
	"SELECT q.id, q.status, q.attempts, q.error, (SELECT string_agg(l.message, ' | ' ORDER BY l.id) FROM publish.job_log l"
	  . " WHERE l.job_id = q.id) FROM publish.job_queue q WHERE q.status NOT IN ('completed', 'cancelled')"));
is($n{cancelled_not_superseded}, 0, "every cancelled job was 'superseded'");
is($n{completed_bad}, 0, 'every completed job is at 100% with a result, after one attempt');
cmp_ok($n{jobs}, '<=', $n{requests}, "no more jobs than requests ($n{jobs} jobs)");
is($n{request_without_job}, 0, "every request's job exists");
is($n{request_wrong_job}, 0,
	"every request's job is for the project, version and environment asked for");
is($n{job_without_request}, 0, 'every job was returned to some request (none made up)');
is($n{out_of_order}, 0, 'jobs of one project and environment ran in the order they were asked for');
cmp_ok($n{parallel_pairs}, '>', 0,
	"jobs of different targets ran at the same time ($n{parallel_pairs} overlapping pairs)");
cmp_ok($n{worker_pids}, '>=', 2, "more than one worker ran jobs ($n{worker_pids} workers)");

is($n{same_target_overlaps}, 0,
	'no two jobs of the same project and environment overlapped in time')
  or diag($node->safe_psql(
	$db, q{
	SELECT string_agg(format('%s %s attempts %s %s..%s  /  %s %s attempts %s %s..%s',
	                         a.id, a.status, a.attempts, a.started_at, a.completed_at,
	                         b.id, b.status, b.attempts, b.started_at, b.completed_at), E'\n')
	  FROM publish.job_queue a JOIN publish.job_queue b
	    ON a.project_id = b.project_id AND a.env = b.env AND a.id < b.id
	 WHERE a.started_at IS NOT NULL AND b.started_at IS NOT NULL
	   AND tstzrange(a.started_at, a.completed_at) && tstzrange(b.started_at, b.completed_at)}));
is($n{live_not_completed}, 0, 'every live release names a completed job');

{
	# publish_version supersedes a duplicate only while it is still queued:
	# a job a worker claimed a moment before is left to run.
	is($n{superseded_started}, 0, 'no superseded job had been started by a worker')
	  or diag($node->safe_psql(
		$db, q{
		SELECT string_agg(format('job %s (%s v%s %s) created %s, cancelled %s:%s', q.id, p.slug,
		                         v.version_number, q.env, q.created_at, q.completed_at,
		                         (SELECT string_agg(E'\n    ' || l.logged_at || ' ' || l.level || ' ' || l.message,
		                                            '' ORDER BY l.id)
		                            FROM publish.job_log l WHERE l.job_id = q.id)), E'\n')
		  FROM (SELECT * FROM publish.job_queue
		         WHERE status = 'cancelled' AND (started_at IS NOT NULL OR attempts > 0)
		         ORDER BY created_at LIMIT 3) q
		  JOIN publish.projects p ON p.id = q.project_id
		  JOIN publish.project_versions v ON v.id = q.version_id}));
}

# --- what is live: the last request of each target -------------------------------

my @targets = split /\n/, $node->safe_psql(
	$db, qq{
	SELECT t.project, t.env, t.version,
	       coalesce(r.version::text, 'none'),
	       coalesce((pg_read_file('$storage/' || t.env || '/' || t.project || '/release.json', 0, 100000000, true)::jsonb)->>'version',
	                'absent'),
	       r.job_id = (SELECT q.id FROM publish.job_queue q
	                    WHERE q.project_id = r.project_id AND q.env = r.env AND q.status = 'completed'
	                    ORDER BY q.completed_at DESC LIMIT 1)
	  FROM (SELECT DISTINCT ON (project, env) project, env, version
	          FROM requests ORDER BY project, env, asked_at DESC, n DESC) AS t
	  LEFT JOIN publish.releases r ON r.project = t.project AND r.env = t.env
	 ORDER BY 1, 2});
is(scalar(@targets), 6, 'requests covered all six targets');
foreach my $t (@targets)
{
	my ($project, $env, $version, $live, $file, $last_job) = split /\|/, $t;
	is($live, $version, "$project/$env: publish.releases shows v$version, the last one asked for");
	is($file, $version, "$project/$env: release.json on storage is v$version");
	is($last_job, 't', "$project/$env: the live release is the job that completed last");
}
is( $node->safe_psql(
		$db, q{
	SELECT count(*) FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
	 WHERE p.slug IN ('alpha', 'beta') AND v.status = 'published'
	   AND NOT EXISTS (SELECT 1 FROM publish.job_queue q WHERE q.version_id = v.id AND q.status = 'completed')}),
	'0',
	'a version is marked published only by a completed job');

my $log = slurp_file($node->logfile);
my @errors = grep { /\b(ERROR|FATAL|PANIC)\b/ } split /\n/, $log;
is(scalar(@errors), 0, 'no ERROR in the server log')
  or diag(join("\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]));

$node->stop;
done_testing();
