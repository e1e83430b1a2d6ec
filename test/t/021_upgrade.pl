#!/usr/bin/perl
#
# 021_upgrade.pl: from 1.0 to 1.1 with ALTER EXTENSION publish UPDATE, as
# docs/operations.md ("Upgrading") says: the new library runs first (this
# cluster's), then the update.
#
#   - Between the two, the 1.1 library runs the jobs of a 1.0 install as
#     1.0 did: two publishes complete there.
#   - A job whose final transaction records its live release while the
#     update starts: the update waits for it and takes it into the history
#     (database "up"); one that records it after the update committed
#     writes its history row itself (database "late").  Each change of a
#     live release is in the history once, with the sha256 of the document
#     on storage.
#   - Content, jobs and live releases are what they were; publishes after
#     the update complete.
#   - The extension's objects after the update are those of a fresh 1.1
#     install: the catalogue dump of test/sql/07_catalogue.sql is the same.
#   - A worker that meets objects of a version it does not know runs
#     nothing, logs it once, and runs the queue once the version is one it
#     knows again (ALTER EXTENSION wakes it).
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Digest::SHA qw(sha256_hex);

my $node = publish_node('upgrade');
my $storage = PostgreSQL::Test::Utils::tempdir();

sub q1 { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

# Waits until job $id (in $db) has ended; returns "status|error".
sub wait_job
{
	my ($db, $id) = @_;
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'")
	  or diag("job $id did not end");
	return q1($db, "SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

sub publish
{
	my ($db, $version) = @_;
	return q1($db, "SELECT id FROM publish.publish_version('up', $version, 'production')");
}

# A 1.0 install in a new database $db with project "up", versions 1 to 3
# ready, publishing to a directory of its own.
sub install_1_0
{
	my ($db) = @_;
	q1('postgres', "CREATE DATABASE $db");
	q1($db, "CREATE EXTENSION publish VERSION '1.0'");
	q1($db, "SELECT publish.set_storage_target('production', 'file://$storage/$db')");
	q1($db, q{
		INSERT INTO publish.projects (slug, name) VALUES ('up', 'Upgrade');
		INSERT INTO publish.project_versions (project_id, version_number, status)
		SELECT id, n, 'ready' FROM publish.projects, generate_series(1, 3) AS n;
		INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry)
		SELECT v.id, 'point-' || k, 'Point ' || k, 'marker',
		       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + k / 100.0, 52.5))
		  FROM publish.project_versions v, generate_series(1, v.version_number * 2) AS k});
}

sub set_pause
{
	my ($point) = @_;
	q1('postgres', "ALTER SYSTEM SET publish.pause_at = '$point'; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres', "SELECT current_setting('publish.pause_at') = '$point'");
}

# sha256 of the file at $path, or '' when there is none.
sub file_sha256
{
	my ($path) = @_;
	open(my $f, '<:raw', $path) or return '';
	local $/;
	my $data = <$f>;
	close $f;
	return sha256_hex($data);
}

# What a database holds of content, jobs and live releases, as text.
my $state_sql = q{
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT format('project %s %s', slug, name) FROM publish.projects
		UNION ALL SELECT format('version %s %s %s', version_number, status, published_at) FROM publish.project_versions
		UNION ALL SELECT format('overlay %s %s %s', version_id, key, geometry) FROM publish.overlays
		UNION ALL SELECT format('job %s %s %s %s %s %s', id, job_type, status, params, result, completed_at)
		            FROM publish.jobs WHERE status NOT IN ('queued', 'running')
		UNION ALL SELECT format('log %s %s %s', job_id, level, message) FROM publish.job_log
		UNION ALL SELECT format('live %s %s %s %s %s', project, env, version, published_at, release_url)
		            FROM publish.releases
	) AS s(x)};

# --- database "up": 1.0, publishes by the 1.1 library -------------------------

install_1_0('up');
is(q1('up', "SELECT extversion FROM pg_extension WHERE extname = 'publish'"), '1.0', 'up: version 1.0 installed');
my @jobs;
foreach my $v (1, 2)
{
	my $job = publish('up', $v);
	is(wait_job('up', $job), 'completed|', "up: a publish of version $v completes on the 1.0 objects");
	push @jobs, $job;
}
like(q1('up', 'SELECT version FROM publish.releases'), qr/^2$/, 'up: version 2 is live');

# --- a job records its live release while the update starts ----------------
#
# A session holds the live release's row: the publish of version 3 locks
# live_releases in its final transaction, sees 1.0, and waits for the row.
# The update then waits for the publish's lock; the session lets go; the
# publish commits, then the update, which finds the job completed.

my $holder = $node->background_psql('up');
$holder->query_safe(
	'BEGIN; SELECT 1 FROM publish.live_releases FOR UPDATE');
my $job3 = publish('up', 3);
ok( $node->poll_query_until('up', qq{
		SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		                WHERE a.backend_type = 'publish worker' AND NOT l.granted)
		   AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		                WHERE a.backend_type = 'publish worker' AND l.granted
		                  AND l.relation = 'publish.live_releases'::regclass
		                  AND l.mode = 'RowExclusiveLock')}),
	'up: the final transaction of the publish of version 3 holds live_releases and waits for the row');
my $before = q1('up', $state_sql);

my $updater = $node->background_psql('up', on_error_stop => 0);
$updater->query_until(qr/started/, "\\echo started\nALTER EXTENSION publish UPDATE;\n\\echo updated\n");
ok( $node->poll_query_until('up', q{
		SELECT EXISTS (SELECT 1 FROM pg_stat_activity a, pg_stat_activity w
		                WHERE a.query LIKE 'ALTER EXTENSION%' AND w.backend_type = 'publish worker'
		                  AND w.pid = ANY (pg_blocking_pids(a.pid)))}),
	'up: ALTER EXTENSION publish UPDATE waits for the publish');
$holder->query_safe('ROLLBACK');
$holder->quit;
is(wait_job('up', $job3), 'completed|', 'up: the publish of version 3 completes');
$updater->query_until(qr/updated/, '');
$updater->quit;
push @jobs, $job3;

is(q1('up', "SELECT extversion FROM pg_extension WHERE extname = 'publish'"), '1.1', 'up: updated to 1.1');
# all but what the publish of version 3 changed is what it was
my $filter = sub { join("\n", grep { !/$job3|^version 3 |^live / } split /\n/, $_[0]) };
my $after = q1('up', $state_sql);
is($filter->($after), $filter->($before), 'up: content, jobs and their logs are what they were');
like($after, qr/^live up production 3 /m, 'up: version 3 is live');
is( q1('up', q{SELECT string_agg(format('%s %s', version, coalesce(previous_version::text, '-')), ', ' ORDER BY id)
                 FROM publish.release_history WHERE project = 'up' AND env = 'production'}),
	'1 -, 2 1, 3 2',
	'up: the history has each change once, the last one the publish the update waited for');
is( q1('up', q{SELECT count(*) FROM publish.release_history h JOIN publish.jobs j ON j.id = h.job_id
                WHERE h.release_sha256 = j.result->>'release_sha256' AND h.published_at = (j.result->>'published_at')::timestamptz
                  AND h.requested_by = j.params->>'requested_by' AND h.job_type = 'publish'}),
	'3', 'up: each row names its job, who asked, and the document it made live');
is(q1('up', "SELECT release_sha256 FROM publish.release_history WHERE version = 3"),
	file_sha256("$storage/up/production/up/release.json"),
	'up: the last row has the sha256 of release.json on storage');

my $job1 = publish('up', 1);
is(wait_job('up', $job1), 'completed|', 'up: a publish after the update completes');
is( q1('up', q{SELECT format('%s %s %s', version, previous_version, job_id) FROM publish.release_history ORDER BY id DESC LIMIT 1}),
	"1 3 $job1", '... and is in the history');

# --- database "late": the update holds its locks when a job records -------
#
# The publish of version 2 waits past its switch (publish.pause_at); a
# session holds projects, which the update needs after its first
# statement, so the update waits there holding its locks.  The publish
# goes on: its final transaction waits for the update, then sees 1.1 and
# writes its history row itself.

install_1_0('late');
my $late1 = publish('late', 1);
is(wait_job('late', $late1), 'completed|', 'late: a publish of version 1 completes');
# its job is deleted: the update records the live release without it
q1('late', "SELECT publish.purge_jobs('0')");
set_pause('switched');
my $late2 = publish('late', 2);
ok( $node->poll_query_until('late',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'late' AND query = 'publish: paused at switched'"),
	'late: the publish of version 2 switched release.json and waits');
my $projects = $node->background_psql('late');
$projects->query_safe('BEGIN; LOCK TABLE publish.projects IN ROW EXCLUSIVE MODE');
my $late_updater = $node->background_psql('late', on_error_stop => 0);
$late_updater->query_until(qr/started/, "\\echo started\nALTER EXTENSION publish UPDATE;\n\\echo updated\n");
ok( $node->poll_query_until('late', q{
		SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		                WHERE a.query LIKE 'ALTER EXTENSION%' AND NOT l.granted
		                  AND l.relation = 'publish.projects'::regclass)}),
	'late: the update holds its first locks and waits for projects');
set_pause('');
ok( $node->poll_query_until('late', q{
		SELECT EXISTS (SELECT 1 FROM pg_stat_activity a, pg_stat_activity w
		                WHERE a.query LIKE 'ALTER EXTENSION%' AND w.backend_type = 'publish worker'
		                  AND w.datname = 'late' AND a.pid = ANY (pg_blocking_pids(w.pid)))}),
	'late: the final transaction of the publish waits for the update');
$projects->query_safe('ROLLBACK');
$projects->quit;
$late_updater->query_until(qr/updated/, '');
$late_updater->quit;
is(q1('late', "SELECT extversion FROM pg_extension WHERE extname = 'publish'"), '1.1', 'late: updated to 1.1');
is(wait_job('late', $late2), 'completed|', 'late: the publish of version 2 completes');
is( q1('late', q{SELECT string_agg(format('%s %s %s %s', version, coalesce(previous_version::text, '-'),
                                          job_id IS NULL, release_sha256 IS NULL), ', ' ORDER BY id)
                   FROM publish.release_history}),
	'1 - t t, 2 1 f f',
	'late: the update recorded the live release whose job was gone (no checksum), the publish its own change, once');
is(q1('late', "SELECT release_sha256 FROM publish.release_history WHERE job_id = '$late2'"),
	file_sha256("$storage/late/production/up/release.json"),
	'late: with the sha256 of release.json on storage');

# --- the same objects as a fresh install -------------------------------------

# test/sql/07_catalogue.sql's queries, run in each database
open(my $f, '<', "$FindBin::RealBin/../sql/07_catalogue.sql") or die "07_catalogue.sql: $!";
my $catalogue = do { local $/; <$f> };
close $f;
$catalogue =~ s/^.*?\nCREATE EXTENSION publish;\n//s or die 'no CREATE EXTENSION in 07_catalogue.sql';
$catalogue =~ s/\n\\c :regress_db.*$//s;
q1('postgres', 'CREATE DATABASE fresh');
q1('fresh', 'CREATE EXTENSION publish');

sub catalogue
{
	my ($db) = @_;
	my ($ret, $out, $err) = $node->psql($db, $catalogue, extra_params => [ '-P', 'pager=off' ]);
	is($ret, 0, "catalogue of $db read") or diag($err);
	return $out;
}
my $fresh = catalogue('fresh');
like($fresh, qr/live_release_history/, 'the catalogue shows the objects of 1.1');
is(catalogue('up'), $fresh, 'the objects of up after the update are those of a fresh 1.1 install');
is(catalogue('late'), $fresh, '... and so are those of late');

# --- objects of a version the library does not know ---------------------------

my $offset = -s $node->logfile;
q1('up', "UPDATE pg_extension SET extversion = '1.9' WHERE extname = 'publish'");
my $waiting = publish('up', 2);
ok( $node->wait_for_log(
		qr/publish worker waits: the extension in database "up" is version 1\.9, which this library \(1\.1\) does not know/,
		$offset),
	'a worker that meets version 1.9 says it waits');
is(q1('up', "SELECT status FROM publish.jobs WHERE id = '$waiting'"), 'queued', '... and the job stays queued');
my $waiting2 = publish('up', 3);
q1('up', "UPDATE pg_extension SET extversion = '1.1' WHERE extname = 'publish'");
q1('up', 'ALTER EXTENSION publish UPDATE');    # already 1.1: wakes the worker all the same
is(wait_job('up', $waiting), 'completed|', 'once the version is 1.1 again, the job runs');
is(wait_job('up', $waiting2), 'completed|', '... and so does the one queued meanwhile');
my $log = slurp_file($node->logfile, $offset);
my $n_waits = () = $log =~ /publish worker waits:/g;
is($n_waits, 1, 'the worker said it waits once');
like($log, qr/publish worker resumes: the extension in database "up" is version 1\.1/, 'and that it resumes');

$node->stop;
done_testing();
