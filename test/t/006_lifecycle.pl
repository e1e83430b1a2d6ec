#!/usr/bin/perl
#
# 006_lifecycle.pl: settings, signals, notifications, retention and a hot
# standby, on a running server.
#
#  (a) SIGHUP: publish.workers_per_database 1 -> 3 (ALTER SYSTEM + reload)
#      starts two more workers; back to 1, the extra workers exit cleanly
#  (b) SIGTERM (pg_terminate_backend) of a worker: it exits without an ERROR,
#      and the launcher starts it again after publish.launcher_restart_delay
#  (d) NOTIFY publish_jobs: a session that LISTENs sees its job queued,
#      running, at 10/30/50/80 % and completed at 100 %
#  (e) retention: with publish.job_retention = 1 min, finished jobs that ended
#      2 hours ago are deleted by the worker (with their log), recent ones kept
#  (c) hot standby: no publish process runs on the standby and its log has no
#      ERROR about publish; after the primary stops and the standby is
#      promoted, the jobs it had (one interrupted while running, one queued)
#      run there to completion
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(time usleep);

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $storage = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');

my $node = publish_node('primary', init => { allows_streaming => 1 });

my $db = 'lc6';
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

sub workers
{
	my ($n) = @_;
	return $n->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
}

sub wait_workers
{
	my ($n, $count) = @_;
	return $n->poll_query_until('postgres',
		"SELECT count(*) = $count FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"
	);
}

sub wait_job
{
	my ($n, $id) = @_;
	$n->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'"
	) or diag("job $id did not finish");
	return $n->safe_psql($db,
		"SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

sub publish
{
	my ($n, $version, $env) = @_;
	return $n->safe_psql($db,
		"SELECT id FROM publish.publish_version('campus', $version, '$env')");
}

# Lines of the server log of $n written since $offset that match $re.
sub log_lines
{
	my ($n, $offset, $re) = @_;
	return grep { /$re/ } split /\n/, substr(slurp_file($n->logfile), $offset);
}

ok(wait_workers($node, 1), 'one publish worker with publish.workers_per_database = 1');

# --- (a) SIGHUP ------------------------------------------------------------------

my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.workers_per_database = 3');
$node->reload;
ok(wait_workers($node, 3), '(a) after a reload with workers_per_database = 3, three workers run');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE backend_type = 'publish worker' "
		  . "AND datname = '$db' AND application_name = 'publish worker'"),
	'3', '(a) each shows as "publish worker"');
my $job = publish($node, 3, 'production');
is(wait_job($node, $job), 'completed|', '(a) a publish completes with three workers');

$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.workers_per_database = 1');
$node->reload;
ok(wait_workers($node, 1), '(a) back to workers_per_database = 1, the extra workers exit');
sleep(1);
is(workers($node), '1', '(a) and are not started again');
my @bad = log_lines($node, $offset, qr/\b(ERROR|FATAL|PANIC)\b|exited with exit code [1-9]/);
is(scalar(@bad), 0, '(a) they exit cleanly: no ERROR, FATAL or failed exit in the log')
  or diag(join("\n", @bad));

# --- (b) SIGTERM --------------------------------------------------------------------

my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
$offset = -s $node->logfile;
my $t0 = time();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't',
	'(b) pg_terminate_backend sends SIGTERM to the worker');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' "
		  . "AND datname = '$db' AND pid <> $pid"),
	'(b) the launcher starts a new worker');
my $secs = time() - $t0;
cmp_ok($secs, '>=', 0.9,
	sprintf('(b) ... after publish.launcher_restart_delay (1 s; it took %.1f s)', $secs));
cmp_ok($secs, '<', 10, '(b) ... and not much later');
@bad = log_lines($node, $offset, qr/\b(ERROR|PANIC)\b/);
is(scalar(@bad), 0, '(b) no ERROR in the log') or diag(join("\n", @bad));
my @fatal = log_lines($node, $offset, qr/\bFATAL\b/);
ok(@fatal <= 1, '(b) at most one FATAL line (the termination itself)')
  or diag(join("\n", @fatal));
ok(scalar(log_lines($node, $offset, qr/terminated by signal|server processes terminated/)) == 0,
	'(b) no crash restart of the cluster');
$job = publish($node, 2, 'production');
is(wait_job($node, $job), 'completed|', '(b) the new worker runs jobs');

# --- (d) NOTIFY publish_jobs ----------------------------------------------------

my ($out, $err) = ('', '');
$node->psql(
	$db, q{
	LISTEN publish_jobs;
	SELECT id AS job_d FROM publish.publish_version('campus', 3, 'production') \gset
	SELECT 'job=' || :'job_d';
	SELECT 'ended=' || status FROM publish.wait_job(:'job_d', '20 s');
	SELECT pg_sleep(0.5);
	},
	stdout => \$out,
	stderr => \$err,
	on_error_stop => 1);
my ($job_d) = $out =~ /job=([0-9a-f-]{36})/;
ok($job_d, '(d) the listening session queued a job');
like($out, qr/ended=completed/, '(d) and publish.wait_job saw it complete');
my @seen;
foreach my $line (split /\n/, $out . "\n" . $err)
{
	next unless $line =~ /^Asynchronous notification "publish_jobs" with payload "(.*)" received/;
	my $payload = $1;
	next unless $payload =~ /"id"\s*:\s*"\Q$job_d\E"/;
	my ($status) = $payload =~ /"status"\s*:\s*"(\w+)"/;
	my ($progress) = $payload =~ /"progress"\s*:\s*(\d+)/;
	push @seen, "$status $progress";
}
note('notifications: ' . join(', ', @seen));
# Step 2's 30 % is written with step 3's 50 % when it comes less than 100 ms
# after step 1's write (job_step_reached); a queued job is not announced.
like(join(', ', @seen),
	qr/^running 0, running 10, (running 30, )?running 50, running 80, completed 100$/,
	'(d) LISTEN publish_jobs sees running, 10/50/80 % (30 % unless written with 50 %) and completed 100 %');
is(wait_job($node, $job_d), 'completed|', '(d) the job completed');

# --- (e) retention ----------------------------------------------------------------

# Two more finished jobs, so that there are old and recent ones.
my $job_e1 = publish($node, 2, 'staging');
is(wait_job($node, $job_e1), 'completed|', '(e) a job to keep completed');
my @old = split /\n/, $node->safe_psql($db,
	"SELECT id FROM publish.job_queue WHERE status IN ('completed', 'failed', 'cancelled') AND id <> '$job_e1' ORDER BY id");
cmp_ok(scalar(@old), '>=', 3, '(e) some finished jobs to age');
my $old_list = join(',', map {"'$_'"} @old);
$node->safe_psql($db,
	"UPDATE publish.job_queue SET completed_at = now() - interval '2 hours' WHERE id IN ($old_list)");
cmp_ok($node->safe_psql($db, "SELECT count(*) FROM publish.job_log WHERE job_id IN ($old_list)"),
	'>', 0, '(e) the old jobs have log entries');

$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.job_retention = 1');
$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.sweep_interval = 1');
$node->reload;
$t0 = time();
ok( $node->poll_query_until($db,
		"SELECT count(*) = 0 FROM publish.job_queue WHERE id IN ($old_list)"),
	'(e) the worker deletes the jobs that ended 2 hours ago');
$secs = time() - $t0;
cmp_ok($secs, '<', 10, sprintf('(e) ... within seconds (%.1f s)', $secs));
is($node->safe_psql($db, "SELECT count(*) FROM publish.job_log WHERE job_id IN ($old_list)"),
	'0', '(e) and their log entries');
is($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$job_e1'"),
	'completed', '(e) a job that ended a moment ago is kept');
cmp_ok($node->safe_psql($db, "SELECT count(*) FROM publish.job_log WHERE job_id = '$job_e1'"),
	'>', 0, '(e) with its log');
is( $node->safe_psql($db,
		"SELECT count(*) FROM publish.releases WHERE project = 'campus' AND env IN ('production', 'staging')"),
	'2', '(e) publish.releases keeps the live releases');

# back to a long sweep: what follows must not rely on it
$node->safe_psql('postgres', 'ALTER SYSTEM SET publish.sweep_interval = 30');
$node->reload;

# --- (c) hot standby and promotion ------------------------------------------------

$node->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'bk', has_streaming => 1);
$standby->start;

# A job held in step 1 by a lock in a prepared transaction (replicated, and
# kept through promotion), and a second job of the same target queued behind it.
$node->safe_psql($db,
	"BEGIN; LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'lc6_hold'");
my $job_run = publish($node, 2, 'production');
$node->poll_query_until($db,
	"SELECT status = 'running' FROM publish.job_queue WHERE id = '$job_run'")
  or diag('the job did not start on the primary');
my $job_queued = publish($node, 3, 'production');
is( $node->safe_psql($db,
		"SELECT string_agg(status, ',' ORDER BY created_at) FROM publish.job_queue WHERE id IN ('$job_run', '$job_queued')"),
	'running,queued', '(c) on the primary: one job running (held), one queued');
$node->wait_for_catchup($standby);

my $sb_offset = 0;
is( $standby->safe_psql($db,
		"SELECT string_agg(status, ',' ORDER BY created_at) FROM publish.job_queue WHERE id IN ('$job_run', '$job_queued')"),
	'running,queued', '(c) the standby has both jobs');
sleep(2);    # room for a launcher or worker to (wrongly) start and fail
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('publish worker', 'publish launcher')"),
	'0', '(c) no publish launcher or worker runs on the standby');
is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'), 't', '(c) the standby is in recovery');
@bad = grep { /publish/i } log_lines($standby, $sb_offset, qr/\b(ERROR|FATAL|PANIC):/);
is(scalar(@bad), 0, '(c) no ERROR about publish in the standby log') or diag(join("\n", @bad));

$node->stop('immediate');
$standby->promote;
is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'), 'f', '(c) the standby is promoted');
ok(wait_workers($standby, 1), '(c) after promotion a publish worker runs');
ok( $standby->poll_query_until($db,
		"SELECT count(*) = 1 FROM publish.job_log WHERE job_id = '$job_run' AND level = 'warn' AND message LIKE 'interrupted%'"),
	"(c) the job that was running on the old primary is queued again as 'interrupted'");
is( $standby->safe_psql($db, 'SELECT gid FROM pg_prepared_xacts'),
	'lc6_hold', '(c) the prepared transaction came along');
$standby->safe_psql($db, "ROLLBACK PREPARED 'lc6_hold'");

is(wait_job($standby, $job_run), 'completed|', '(c) the interrupted job completes on the promoted node');
is(wait_job($standby, $job_queued), 'completed|', '(c) the queued job completes after it');
is( $standby->safe_psql($db,
		"SELECT version || '|' || job_id FROM publish.releases WHERE project = 'campus' AND env = 'production'"),
	"3|$job_queued", '(c) publish.releases shows the last job (v3)');
is( $standby->safe_psql($db,
		"SELECT (pg_read_file('$storage/production/campus/release.json')::jsonb)->>'version'"),
	'3', '(c) release.json on storage is v3');
@bad = grep { /publish/i } log_lines($standby, $sb_offset, qr/\b(ERROR|PANIC):/);
is(scalar(@bad), 0, '(c) no ERROR about publish in the promoted node log') or diag(join("\n", @bad));

$standby->stop;
done_testing();
