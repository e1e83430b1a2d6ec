#!/usr/bin/perl
#
# 003_crash_recovery.pl: no job is left 'running' forever.
#
#  (a) kill -9 of an idle publish worker: the postmaster restarts the cluster
#      (crash recovery), the worker comes back and a new publish completes
#  (b) a job left 'running' by a server that stopped (immediate shutdown) with
#      attempts left is queued again, logged as 'interrupted', and completes
#      on its second attempt
#  (c) a job left 'running' that has used all publish.max_attempts attempts
#      fails with an error starting 'interrupted:'
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

my $node = publish_node('crash',
	conf => "publish.max_attempts = 3\n"
	  # PostgreSQL::Test::Cluster turns this off; (a) needs the real default.
	  . "restart_after_crash = on\n");

my $db = 'crashdb';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db,
	"SELECT publish.set_storage_target('production', 'file://$storage')");
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr($db),
		'-f', "$demo/sample_project.sql"
	],
	'sample project loaded');

# Waits until job $id has finished; returns "status|error".
sub wait_job
{
	my ($id) = @_;
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'"
	) or diag("job $id did not finish");
	return $node->safe_psql($db,
		"SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

sub publish_and_wait
{
	my $id = $node->safe_psql($db,
		"SELECT id FROM publish.publish_version('campus', 3, 'production')");
	return wait_job($id);
}

# The pid of the worker of $db once it is idle (asleep on its latch).
sub idle_worker_pid
{
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' "
		  . "AND datname = '$db' AND wait_event_type = 'Extension'")
	  or diag("no idle publish worker in $db");
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"
	);
}

is(publish_and_wait(), 'completed|', 'a first publish completes');

# --- (a) kill -9 of the idle worker -------------------------------------------

my $pid = idle_worker_pid();
like($pid, qr/^\d+$/, '(a) the worker is idle');
my $log_offset = -s $node->logfile;
ok(kill('KILL', $pid), "(a) SIGKILL sent to the worker (pid $pid)");

# The postmaster notices, terminates every backend, recovers and starts over;
# poll_query_until retries while connections are refused.
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' "
		  . "AND datname = '$db' AND pid <> $pid"),
	'(a) a new worker serves the database after crash recovery');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/terminated by signal 9/, '(a) the postmaster saw the worker die');
like($log, qr/all server processes terminated; reinitializing/,
	'(a) and restarted the cluster');
is(publish_and_wait(), 'completed|', '(a) a publish after the crash completes');

# --- (b) and (c) jobs left 'running' by a server that stopped ------------------

my $version_id = $node->safe_psql($db,
	"SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id "
	  . "WHERE p.slug = 'campus' AND v.version_number = 3");

# As a worker leaves them when it claims a job (status running, attempts
# counted, a start log line) and the server goes down before the job ends.
# Written with triggers off: an INSERT of a running row wakes the worker
# (job_queue_wake), whose sweep could queue the job again before the stop.
sub running_job
{
	my ($attempts, $env) = @_;
	return $node->safe_psql(
		$db, qq{
		SET session_replication_role = replica;
		WITH j AS (
			INSERT INTO publish.job_queue (job_type, status, params, version_id, env, attempts, started_at)
			VALUES ('publish', 'running',
			        jsonb_build_object('project_slug', 'campus', 'version_number', 3,
			                           'target_env', '$env', 'requested_by', current_user),
			        '$version_id', '$env', $attempts, clock_timestamp())
			RETURNING id, attempts)
		, l AS (
			INSERT INTO publish.job_log (job_id, level, message)
			SELECT id, 'info', format('Started by the publish worker (pid 1), attempt %s of 3', attempts) FROM j)
		SELECT id FROM j});
}

# (one job per version and environment can be active: c uses another env)
my $job_b = running_job(1, 'production');
my $job_c = running_job(3, 'staging');
like($job_b, qr/^[0-9a-f-]{36}$/, '(b) a job looks running (attempt 1 of 3)');
like($job_c, qr/^[0-9a-f-]{36}$/, '(c) a job looks running (attempt 3 of 3)');

$node->stop('immediate');
$node->start;

is(wait_job($job_b), 'completed|', '(b) the interrupted job completes after the restart');
is($node->safe_psql($db, "SELECT attempts FROM publish.job_queue WHERE id = '$job_b'"),
	'2', '(b) on its second attempt');
is( $node->safe_psql($db,
		"SELECT count(*) FROM publish.job_log WHERE job_id = '$job_b' AND level = 'warn' "
		  . "AND message LIKE 'interrupted%'"),
	'1',
	"(b) one 'warn' log line says it was interrupted");
is( $node->safe_psql($db,
		"SELECT l.message LIKE 'interrupted%' FROM publish.jobs j, jsonb_array_elements(j.logs) e, "
		  . "LATERAL (SELECT e->>'message' AS message, e->>'level' AS level) l "
		  . "WHERE j.id = '$job_b' AND l.level = 'warn'"),
	't',
	'(b) publish.jobs shows it in logs');
is( $node->safe_psql($db,
		"SELECT progress = 100 AND result ? 'release_url' FROM publish.jobs WHERE id = '$job_b'"),
	't',
	'(b) with progress 100 and a result');

my $final_c = wait_job($job_c);
like($final_c, qr/^failed\|interrupted:/, "(c) a job out of attempts fails with 'interrupted:'");
is($node->safe_psql($db, "SELECT attempts FROM publish.job_queue WHERE id = '$job_c'"),
	'3', '(c) and is not run again');
is( $node->safe_psql($db,
		"SELECT count(*) FROM publish.job_log WHERE job_id = '$job_c' AND level = 'error' "
		  . "AND message LIKE 'interrupted:%'"),
	'1',
	"(c) an 'error' log line says why");
is( $node->safe_psql($db,
		"SELECT completed_at IS NOT NULL FROM publish.job_queue WHERE id = '$job_c'"),
	't',
	'(c) it has a completion time');

is( $node->safe_psql($db,
		"SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')"),
	'0',
	'no job is left queued or running');

$node->stop;
done_testing();
