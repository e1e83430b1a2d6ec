#!/usr/bin/perl
#
# 005_crash_midjob.pl: the worker, or the whole server, dies in the middle of
# a job.
#
# A running job is held at a known point:
#   step 1   by a lock the worker needs, taken in a PREPAREd transaction (it
#            keeps its locks across a crash and a restart, until COMMIT/
#            ROLLBACK PREPARED): ACCESS EXCLUSIVE on publish.storage_credentials
#            (read by step 1 only): the job is claimed, nothing is on storage;
#   step 4   by publish.pause_at = 'marked' (kept across a restart): step 4 is
#            done and the switch marked, so the versioned copy of release.json
#            and the tiles are on storage, release.json is not.
#
#  (a) SIGKILL of the worker while a job waits in step 1: after crash
#      recovery the job is queued again with a warn 'interrupted' log line,
#      claimed again (attempt 2) and, once let go, completes; until then
#      release.json and the version are untouched
#  (b) immediate shutdown while a job waits at the end of step 4, then start:
#      the same, and release.json (absent before) appears only at completion
#  (c) publish.max_attempts = 2 and two kills: the job is quarantined,
#      'failed' with 'interrupted:', and never run again; storage, releases
#      and the version are untouched
#  (d) synchronous_commit = off in postgresql.conf: an immediate shutdown
#      just after a claim (the WAL writer not due to flush for 10 s) finds
#      the claim on disk (the job's next run is attempt 2), and likewise its
#      end
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep);

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $storage = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');

my $node = publish_node('crash_midjob',
	conf => "publish.max_attempts = 3\n"
	  # PostgreSQL::Test::Cluster turns this off; a killed worker must
	  # restart the cluster.
	  . "restart_after_crash = on\n");

my $db = 'midjob';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
foreach my $env (qw(production staging))
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

# --- helpers ----------------------------------------------------------------

sub q1 { return $node->safe_psql($db, $_[0]); }

sub version_id
{
	my ($n) = @_;
	return q1("SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id "
		  . "WHERE p.slug = 'campus' AND v.version_number = $n");
}

sub wait_job
{
	my ($id) = @_;
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'"
	) or diag("job $id did not finish");
	return q1("SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

# Waits until the database's worker waits for a lock (or, $paused, at
# publish.pause_at) while running job $id at attempt $attempt; returns the
# worker's pid.
sub wait_blocked
{
	my ($id, $attempt, $paused) = @_;
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM publish.job_queue WHERE id = '$id' AND status = 'running' AND attempts = $attempt"
	) or diag("job $id is not running attempt $attempt");
	$node->poll_query_until(
		$db, $paused ? qq{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE backend_type = 'publish worker' AND datname = '$db' AND query ~ '^publish: paused at'}
		: qq{
		SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		 WHERE a.backend_type = 'publish worker' AND a.datname = '$db' AND NOT l.granted})
	  or diag("the worker of $db is not waiting");
	return q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
}

sub pause_at
{
	my ($point) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET publish.pause_at = '$point'");
	$node->reload;
}

# The version of release.json of $env, or 'absent'.
sub live_file
{
	my ($env) = @_;
	my $f = "$storage/$env/campus/release.json";
	return 'absent' unless -f $f;
	return q1("SELECT (pg_read_file('$f')::jsonb)->>'version'");
}

sub live_db
{
	my ($env) = @_;
	return q1("SELECT coalesce((SELECT version::text FROM publish.releases WHERE project = 'campus' AND env = '$env'), 'none')");
}

sub version_status
{
	my ($n) = @_;
	return q1("SELECT status || '|' || coalesce(published_at::text, '') FROM publish.project_versions WHERE id = '"
		  . version_id($n) . "'");
}

# Kills the worker with SIGKILL and waits until the server has gone through
# crash recovery and accepts connections again.
sub kill_worker
{
	my ($pid, $label) = @_;
	my $offset = -s $node->logfile;
	is(kill('KILL', $pid), 1, "$label: SIGKILL sent to the worker (pid $pid)");
	for (my $i = 0; $i < 600; $i++)
	{
		last if substr(slurp_file($node->logfile), $offset) =~ /database system is ready to accept connections/;
		usleep(100_000);
	}
	like(substr(slurp_file($node->logfile), $offset),
		qr/terminated by signal 9.*all server processes terminated; reinitializing/s,
		"$label: the postmaster restarted the cluster");
}

sub hold_step1
{
	my ($gid) = @_;
	q1("BEGIN; LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION '$gid'");
}

sub interrupted_warnings
{
	my ($id) = @_;
	return q1("SELECT count(*) FROM publish.job_log WHERE job_id = '$id' AND level = 'warn' AND message LIKE 'interrupted%'");
}

# --- a first release: campus v2 in production -------------------------------

my $job0 = q1("SELECT id FROM publish.publish_version('campus', 2, 'production')");
is(wait_job($job0), 'completed|', 'campus v2 published to production');
is(live_file('production'), '2', 'release.json of production is v2');
my $v3_before = version_status(3);
like($v3_before, qr/^ready\|$/, 'campus v3 is ready, never published');

# --- (a) SIGKILL while the job waits in step 1 ----------------------------------

hold_step1('midjob_a');
my $job_a = q1("SELECT id FROM publish.publish_version('campus', 3, 'production')");
my $pid = wait_blocked($job_a, 1);
like($pid, qr/^\d+$/, '(a) the worker runs the job and waits in step 1');
is(q1("SELECT progress FROM publish.job_queue WHERE id = '$job_a'"), '0', '(a) at 0%');

kill_worker($pid, '(a)');

my $pid2 = wait_blocked($job_a, 2);
isnt($pid2, $pid, '(a) after crash recovery a new worker claims the job again (attempt 2)');
is(interrupted_warnings($job_a), '1', "(a) one warn log line says it was 'interrupted'");
like(q1("SELECT message FROM publish.job_log WHERE job_id = '$job_a' AND level = 'warn'"),
	qr/attempt 1 of 3/, '(a) ... naming the attempt');
is(live_file('production'), '2', '(a) release.json is still v2 while the job waits');
is(live_db('production'), '2', '(a) publish.releases still shows v2');
is(version_status(3), $v3_before, '(a) version 3 is untouched');

q1("ROLLBACK PREPARED 'midjob_a'");
is(wait_job($job_a), 'completed|', '(a) let go, the job completes');
is( q1("SELECT attempts || '|' || progress || '|' || (result ? 'release_url') FROM publish.job_queue WHERE id = '$job_a'"),
	'2|100|true', '(a) on attempt 2, at 100%, with a result');
is(live_file('production'), '3', '(a) release.json is v3');
is(live_db('production'), '3', '(a) publish.releases shows v3');
like(version_status(3), qr/^published\|.+/, '(a) version 3 is published');

# --- (b) immediate shutdown while the job waits at the end of step 4 -----------

pause_at('marked');
my $job_b = q1("SELECT id FROM publish.publish_version('campus', 3, 'staging')");
wait_blocked($job_b, 1, 1);
is(q1("SELECT progress || ' ' || switched FROM publish.job_queue WHERE id = '$job_b'"), '80 true',
	'(b) the job has done steps 1-4 (80%) and marked the switch, not made it');
ok(-f "$storage/staging/campus/releases/v3.json", '(b) the versioned copy is uploaded');
ok(-f "$storage/staging/campus/tiles/v3/2/3/3.png", '(b) the tiles are copied');
is(live_file('staging'), 'absent', '(b) release.json of staging does not exist yet');

$node->stop('immediate');
$node->start;

wait_blocked($job_b, 2, 1);
is(interrupted_warnings($job_b), '1', "(b) after the restart the job is queued again, logged 'interrupted'");
is(q1("SELECT status FROM publish.job_queue WHERE id = '$job_b'"), 'running',
	'(b) and claimed again (attempt 2)');
is(live_file('staging'), 'absent', '(b) release.json of staging is still absent');
is(live_db('staging'), 'none', '(b) publish.releases has nothing for staging');

pause_at('');
is(wait_job($job_b), 'completed|', '(b) let go, the job completes');
is(q1("SELECT attempts FROM publish.job_queue WHERE id = '$job_b'"), '2', '(b) on attempt 2');
is(live_file('staging'), '3', '(b) release.json of staging is v3');
is(live_db('staging'), '3', '(b) publish.releases shows v3 in staging');
is(live_file('production'), '3', '(b) production is untouched');

# --- (c) a job that keeps crashing the worker is quarantined ------------------

$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.max_attempts = 2');
$node->reload;
is( $node->poll_query_until($db, "SELECT current_setting('publish.max_attempts') = '2'"),
	1, '(c) publish.max_attempts = 2');

my $v2_before = version_status(2);
hold_step1('midjob_c');
my $job_c = q1("SELECT id FROM publish.publish_version('campus', 2, 'production')");
$pid = wait_blocked($job_c, 1);
kill_worker($pid, '(c) first crash');
$pid = wait_blocked($job_c, 2);
is(interrupted_warnings($job_c), '1', '(c) queued again once, after the first crash');
kill_worker($pid, '(c) second crash');

like(wait_job($job_c), qr/^failed\|interrupted:/,
	"(c) after the second crash the job is 'failed' with 'interrupted:'");
is( q1("SELECT attempts || '|' || (completed_at IS NOT NULL) FROM publish.job_queue WHERE id = '$job_c'"),
	'2|true', '(c) after 2 attempts, with a completion time');
is( q1("SELECT count(*) FROM publish.job_log WHERE job_id = '$job_c' AND level = 'error' AND message LIKE 'interrupted:%'"),
	'1', "(c) an 'error' log line says why");

q1("ROLLBACK PREPARED 'midjob_c'");
# A publish that completes afterwards shows the worker is back and idle
# before we look again: the quarantined job must not have run.
my $job_after = q1("SELECT id FROM publish.publish_version('campus', 3, 'staging')");
is(wait_job($job_after), 'completed|', '(c) the worker goes on with other jobs');
is(q1("SELECT status || '|' || attempts FROM publish.job_queue WHERE id = '$job_c'"),
	'failed|2', '(c) the quarantined job is not run again');
is(live_file('production'), '3', '(c) release.json of production is still v3');
is(live_db('production'), '3', '(c) publish.releases still shows v3');
is(version_status(2), $v2_before, '(c) version 2 is untouched');

# --- (d) synchronous_commit = off on the server: a claim is still durable ------

# The WAL writer flushes asynchronous commits at most every wal_writer_delay
# (10 s here) and, with autovacuum off, nothing else flushes meanwhile; the
# update just before the publish makes it flush now, so the next 10 s of
# asynchronous commits stay in memory until then.
$node->append_conf('postgresql.conf',
	"synchronous_commit = off\nwal_writer_delay = '10s'\nwal_writer_flush_after = '1GB'\nautovacuum = off\n");
$node->restart;
q1('CREATE TABLE wal_nudge (n int); INSERT INTO wal_nudge VALUES (0)');
pause_at('claimed');
q1('UPDATE wal_nudge SET n = n + 1');
my $job_d = q1("SET synchronous_commit = on; SELECT id FROM publish.publish_version('campus', 2, 'staging')");
wait_blocked($job_d, 1, 1);
$node->stop('immediate');
$node->start;
ok( $node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query ~ '^publish: paused at'"),
	'(d) after an immediate stop and start the job is claimed again');
is(q1("SELECT attempts || '|' || status FROM publish.job_queue WHERE id = '$job_d'"), '2|running',
	'(d) the first claim, committed before the stop, was on disk: this is attempt 2');
is(interrupted_warnings($job_d), '1', "(d) ... and attempt 1 is logged 'interrupted'");
pause_at('');
is(wait_job($job_d), 'completed|', '(d) let go, the job completes');
$node->stop('immediate');
$node->start;
is(q1("SELECT status FROM publish.job_queue WHERE id = '$job_d'"), 'completed',
	'(d) its end is on disk too');
is(live_db('staging'), '2', '(d) publish.releases shows v2 in staging');
is(live_file('staging'), '2', '(d) and so does its release.json');

is(q1("SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')"),
	'0', 'no job is left queued or running');
is(q1('SELECT count(*) FROM pg_prepared_xacts'), '0', 'no prepared transaction is left');

$node->stop;
done_testing();
