#!/usr/bin/perl
#
# 010_idle_sweep.pl: the sweep gate (src/bgw/worker_sweep.c).  A timed sweep
# that can find nothing is skipped (no transaction), and an idle worker does
# not even wake for it; every kind of work the sweep exists for still gets a
# full sweep.  A 1 s sweep, a 10 s backstop (publish.sweep_backstop) and
# DEBUG1 in the server log, where the worker says "publish sweep skipped" or
# "publish sweep: full, <why>" for each timed sweep.
#
#  (a) idle: the worker sleeps until the backstop (no sweep to skip)
#  (b) a job row a superuser INSERTs wakes the worker at commit (the
#      job_queue_wake trigger); one written with triggers off
#      (session_replication_role = replica, as logical replication's apply
#      and pg_restore --disable-triggers write) runs too: the backstop, or
#      at once after an UPDATE of its status; a row inserted as 'running'
#      wakes the worker too, whose sweep queues it again (with triggers
#      off, after a reload)
#  (c) a job queued in a prepared transaction: sweeps stay full while it is
#      prepared, also after a restart, and COMMIT PREPARED wakes the worker
#  (d) retention: the worker sleeps until the oldest finished job expires,
#      then a full sweep deletes it
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

my $node = publish_node('idle_sweep',
	conf => "publish.sweep_interval = 1\npublish.sweep_backstop = 10\nlog_min_messages = debug1\n");
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");
$node->safe_psql($db, "SELECT publish.set_storage_target('staging', 'file://$storage')");
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', "$demo/sample_project.sql" ],
	'sample project loaded');

sub worker_pid
{
	my $pid;
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'")
	  or die 'no publish worker';
	return $node->safe_psql($db,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
}

sub wait_done
{
	my ($id, $secs) = @_;
	my $t0 = time();
	while (time() - $t0 < $secs)
	{
		my $s = $node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$id'");
		return ($s, time() - $t0) if $s =~ /^(completed|failed|cancelled)$/;
		usleep(50_000);
	}
	return ($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$id'"), time() - $t0);
}

# The worker's sweep lines in the log from $offset on: (skipped, full, [full reasons]).
sub sweeps
{
	my ($offset, $pid) = @_;
	my $log = substr(slurp_file($node->logfile), $offset);
	my @mine = grep { /\[$pid\]/ } split /\n/, $log;
	my @skipped = grep { /publish sweep skipped/ } @mine;
	my @full = map { /publish sweep: full, (.*)$/ ? $1 : () } @mine;
	return (scalar(@skipped), scalar(@full), \@full);
}

my $first = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 3, 'production')");
my ($status) = wait_done($first, 60);
is($status, 'completed', 'a publish completes');

# --- (a) idle: no sweep, no wake-up until the backstop ------------------------

# voluntary context switches of a process: each sleep that ends is one
sub wakeups
{
	my ($p) = @_;
	open(my $fh, '<', "/proc/$p/status") or return -1;
	my ($n) = map { /^voluntary_ctxt_switches:\s+(\d+)/ ? $1 : () } <$fh>;
	close($fh);
	return $n;
}

my $pid = worker_pid();
sleep(2);    # a full sweep after the job, which sees the queue empty
my $offset = -s $node->logfile;
my $w0 = wakeups($pid);
sleep(6);
my $w1 = wakeups($pid);
my ($skipped, $full, $why) = sweeps($offset, $pid);
is($skipped, 0, '(a) idle: no sweep is skipped: the worker does not wake for them');
cmp_ok($full, '<=', 1, "(a) ... and at most the backstop's full sweep in 6 s ($full; the interval is 1 s)")
  or diag(join("\n", @$why));
SKIP:
{
	skip 'no /proc', 1 if $w0 < 0;
	cmp_ok($w1 - $w0, '<=', 2, '(a) the idle worker woke at most twice in 6 s (' . ($w1 - $w0) . ')');
}

# --- (b) a row inserted by a superuser: the trigger, or else the backstop -----

my $copy_first =
    "INSERT INTO publish.job_queue (job_type, params, project_id, version_id, env, created_by)"
  . " SELECT job_type, params, project_id, version_id, env, created_by FROM publish.job_queue WHERE id = '$first'"
  . " RETURNING id";

# Job $id, just committed, completes soon, woken at commit: a sweep is at
# most 1 s away, the backstop 10 s, and no backstop sweep is what found it.
# (The log is read from here on: a backstop sweep just before the commit,
# which could not see the job, is no failure.)
sub runs_woken
{
	my ($id, $what) = @_;
	my $offset = -s $node->logfile;
	my ($status, $secs) = wait_done($id, 30);
	is($status, 'completed', sprintf('(b) %s runs (%.1f s)', $what, $secs));
	cmp_ok($secs, '<', 5, '(b) ... at once: its commit woke the worker');
	my (undef, undef, $why) = sweeps($offset, $pid);
	ok(!(grep { /^backstop/ } @$why), '(b) ... not found by a backstop sweep')
	  or diag(join("\n", @$why));
}

runs_woken($node->safe_psql($db, $copy_first), 'a job inserted directly');

sleep(2);    # the full sweep after the job, which sees the queue empty
$offset = -s $node->logfile;
my $replicated = $node->safe_psql($db, "SET session_replication_role = replica; $copy_first");
my $secs;
($status, $secs) = wait_done($replicated, 30);
is($status, 'completed',
	sprintf('(b) a job inserted with triggers off, so with no wake-up, runs (%.1f s)', $secs));
cmp_ok($secs, '<', 15, '(b) ... within the backstop (publish.sweep_backstop = 10 s)');
($skipped, $full, $why) = sweeps($offset, $pid);
ok((grep { /^backstop/ } @$why), '(b) ... found by a backstop sweep')
  or diag(join("\n", @$why));

# what README tells whoever wrote rows with triggers off: touch them
sleep(2);    # the full sweep after the job, which sees the queue empty
$replicated = $node->safe_psql($db, "SET session_replication_role = replica; $copy_first");
sleep(2);
is($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$replicated'"),
	'queued', '(b) another job inserted with triggers off waits');
$node->safe_psql($db, "UPDATE publish.job_queue SET status = status WHERE status = 'queued'");
runs_woken($replicated, '... until an UPDATE sets its status again; then it');

# a row inserted as 'running' (a dump taken while the job ran, restored):
# no worker runs it; the sweep after its wake-up queues it again
sleep(2);
my $restored = $node->safe_psql($db,
	"INSERT INTO publish.job_queue (job_type, status, params, project_id, version_id, env, created_by, attempts, started_at)"
	  . " SELECT job_type, 'running', params, project_id, version_id, env, created_by, 1, now()"
	  . "   FROM publish.job_queue WHERE id = '$first' RETURNING id");
runs_woken($restored, 'a job inserted as running, with no worker (its wake-up\'s sweep queues it again),');

# the same written with triggers off waits for a full sweep; README's
# remedy: a reload, after which every worker's next sweep is full
sleep(2);
my $quiet = $node->safe_psql($db,
	"SET session_replication_role = replica;"
	  . " INSERT INTO publish.job_queue (job_type, status, params, project_id, version_id, env, created_by, attempts, started_at)"
	  . " SELECT job_type, 'running', params, project_id, version_id, env, created_by, 1, now()"
	  . "   FROM publish.job_queue WHERE id = '$first' RETURNING id");
sleep(2);
is($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$quiet'"),
	'running', '(b) one inserted as running with triggers off is left alone');
$offset = -s $node->logfile;
$node->reload;
($status, $secs) = wait_done($quiet, 30);
is($status, 'completed', sprintf('(b) ... until a reload: then it is run again (%.1f s)', $secs));
($skipped, $full, $why) = sweeps($offset, $pid);
ok((grep { /reloaded its configuration/ } @$why), '(b) ... by the full sweep after the reload')
  or diag(join("\n", @$why));

# --- (c) prepared transactions ------------------------------------------------

# (queuing a job does not NOTIFY, so a transaction that did may be prepared)
$node->safe_psql($db,
	"BEGIN; SELECT publish.publish_version('campus', 2, 'production'); PREPARE TRANSACTION 'idle_p1'");
my $p1 = $node->safe_psql($db,
	"SELECT id FROM publish.job_queue WHERE status = 'queued' AND params->>'version_number' = '2'");
is($p1, '', '(c) the prepared job is not visible yet');
$offset = -s $node->logfile;
sleep(4);
($skipped, $full, $why) = sweeps($offset, $pid);
is($skipped, 0, '(c) while a transaction is prepared, no sweep is skipped');
ok((grep { /^prepared transactions/ } @$why), '(c) ... because of the prepared transaction')
  or diag(join("\n", @$why));

# after a restart: no PREPARE callback announces it, the first sweep sees it
# (another project: idle_p1 holds the lock that orders campus's requests)
$node->safe_psql($db, q{
	INSERT INTO publish.projects (slug, name) VALUES ('annex', 'Annex');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'annex';
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry)
	SELECT v.id, 'poi', 'Point', 'marker', '{"type": "Point", "coordinates": [13.4, 52.5]}'
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
	 WHERE p.slug = 'annex';
});
$node->safe_psql($db,
	"BEGIN; SELECT publish.publish_version('annex', 1, 'staging'); PREPARE TRANSACTION 'idle_p2'");
$node->restart;
$pid = worker_pid();
$offset = -s $node->logfile;
sleep(4);
($skipped, $full, $why) = sweeps($offset, $pid);
is($skipped, 0, '(c) after a restart, the sweeps stay full while transactions are prepared');
cmp_ok($full, '>=', 2, "(c) ... ($full full sweeps in 4 s)");

# COMMIT PREPARED wakes the worker: with a 30 s sweep, the job runs at once
$node->safe_psql($db, 'ALTER SYSTEM SET publish.sweep_interval = 30');
$node->reload;
$node->poll_query_until($db, "SELECT current_setting('publish.sweep_interval') = '30s'");
sleep(1);
$node->safe_psql($db, "COMMIT PREPARED 'idle_p1'");
$p1 = $node->safe_psql($db,
	"SELECT id FROM publish.job_queue WHERE env = 'production' AND params->>'version_number' = '2' ORDER BY created_at DESC LIMIT 1");
($status, $secs) = wait_done($p1, 60);
is($status, 'completed', '(c) the job committed with COMMIT PREPARED completes');
cmp_ok($secs, '<', 10, sprintf('(c) ... woken by COMMIT PREPARED, not the 30 s sweep (%.1f s)', $secs));
$node->safe_psql($db, "COMMIT PREPARED 'idle_p2'");
my $p2 = $node->safe_psql($db,
	"SELECT id FROM publish.job_queue WHERE env = 'staging' ORDER BY created_at DESC LIMIT 1");
($status, $secs) = wait_done($p2, 60);
is($status, 'completed', sprintf('(c) so does the one prepared before the restart (%.1f s)', $secs));

$node->safe_psql($db, 'ALTER SYSTEM SET publish.sweep_interval = 1');
$node->reload;
$node->poll_query_until($db, "SELECT current_setting('publish.sweep_interval') = '1s'");
sleep(3);
$offset = -s $node->logfile;
sleep(4);
($skipped, $full, $why) = sweeps($offset, $pid);
cmp_ok($full, '<=', 1, "(c) with no transaction prepared any more, the worker sleeps until the backstop ($full full sweeps in 4 s)")
  or diag(join("\n", @$why));

# --- (d) retention: the purge is due at a time the full sweep computed --------

# Every finished job "ended" a day ago less 6 s; the retention becomes 1 day
# (the reload makes the next sweep full, which computes the expiry time).
$node->safe_psql($db,
	"UPDATE publish.job_queue SET completed_at = now() - interval '1 day' + interval '6 s'"
	  . " WHERE status IN ('completed', 'failed', 'cancelled')");
$node->safe_psql($db, "ALTER SYSTEM SET publish.job_retention = '1d'");
$node->reload;
$offset = -s $node->logfile;
my $t0 = time();
ok( $node->poll_query_until($db,
		"SELECT count(*) = 0 FROM publish.job_queue WHERE status IN ('completed', 'failed', 'cancelled')"),
	'(d) the worker deletes the jobs once they pass publish.job_retention');
$secs = time() - $t0;
cmp_ok($secs, '>=', 3, sprintf('(d) ... not before (%.1f s)', $secs));
($skipped, $full, $why) = sweeps($offset, $pid);
ok((grep { /^finished jobs are due/ } @$why), '(d) ... in a sweep made full because the purge was due')
  or diag(join("\n", @$why));
cmp_ok($full, '<=', 3, "(d) ... the worker slept until then: $full full sweeps (reload, purge, the one after)")
  or diag(join("\n", @$why));

$node->safe_psql($db, 'ALTER SYSTEM RESET publish.job_retention');
$node->safe_psql($db, 'ALTER SYSTEM RESET publish.sweep_interval');
$node->stop;
done_testing();
