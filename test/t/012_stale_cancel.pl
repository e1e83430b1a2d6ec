#!/usr/bin/perl
# A cancel signal that arrives after its job ended must not interrupt the
# worker's next job.  cancel_job() checks, at its commit, that the worker
# runs the job, then sends SIGINT; the worker may end that job between the
# two.  The race is made deterministic with gdb: the cancelling backend is
# stopped at its kill(SIGINT) while the worker ends the cancelled job (A)
# and starts the next one (B); then the signal goes.  B must not notice it.
#
# A is held after its first step by publish.pause_at; B, behind it, in its
# first step by a lock on publish.storage_credentials that another session
# holds.
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
plan skip_all => 'gdb is not installed (scripts/install-deps.sh)'
  unless system('gdb --version >/dev/null 2>&1') == 0;
# the breakpoint's condition reads kill()'s second argument from its register
plan skip_all => 'the gdb breakpoint condition is written for x86-64'
  unless `uname -m` =~ /^x86_64/;

my $node = publish_node('stale_cancel');
my $db = 'postgres';
publish_sample($node, $db, $demo);

sub worker_blocked
{
	$node->poll_query_until($db,
		"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND wait_event_type = 'Lock')");
}

sub pause_at
{
	my ($point) = @_;
	$node->safe_psql($db, "ALTER SYSTEM SET publish.pause_at = '$point'");
	$node->reload;
	$node->poll_query_until($db, "SELECT current_setting('publish.pause_at') = '$point'");
}

# A runs and waits after its first step; B is queued behind it.
pause_at('validated');
my $a = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 2, 'production')");
ok( $node->poll_query_until($db,
		"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at validated')"),
	'A runs and waits after its first step');
my $holder = $node->background_psql($db);
$holder->query_safe('BEGIN');
$holder->query_safe('LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE');
my $b = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 3, 'production')");

# The session that cancels A, and gdb stopped at its kill(..., SIGINT).
my $canceller = $node->background_psql($db);
my $cpid = $canceller->query_safe('SELECT pg_backend_pid()');
chomp $cpid;
my ($gdb, $gdir, $gerr) = gdb_attach($cpid, <<'GDB');
break kill if $rsi == 2
commands
shell touch @DIR@/stopped; while [ ! -e @DIR@/go ]; do sleep 0.05; done
detach
quit
end
GDB
my $deadline;

SKIP:
{
	skip "gdb cannot attach to a backend: $gerr", 6 unless $gdb;

	# cancel_job(A) commits; its commit callback finds the worker running A
	# and is stopped by gdb before its kill()
	$canceller->query_until(qr/sent/, "\\echo sent\nSELECT publish.cancel_job('$a');\n");
	$deadline = time + 60;
	usleep(50_000) while !-e "$gdir/stopped" && time < $deadline;
	ok(-e "$gdir/stopped", "the cancelling backend is stopped at its kill(SIGINT)");

	# A goes on, sees the committed request at its next step, ends; the
	# worker takes B, which waits in its first step for the lock
	pause_at('');
	$node->poll_query_until($db, "SELECT status <> 'running' FROM publish.job_queue WHERE id = '$a'");
	is($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$a'"), 'cancelled', 'A ends cancelled');
	$node->poll_query_until($db, "SELECT status = 'running' FROM publish.job_queue WHERE id = '$b'");
	ok(worker_blocked(), 'B runs and waits for the lock in its first step');

	# now the signal meant for A reaches the worker running B
	open(my $go, '>', "$gdir/go") or die $!;
	close $go;
	$gdb->finish;
	$canceller->quit;
	usleep(500_000);
	is($node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$b'"), 'running',
		'the late signal did not interrupt B');

	$holder->query_safe('COMMIT');
	$node->poll_query_until($db, "SELECT status <> 'running' FROM publish.job_queue WHERE id = '$b'");
	is($node->safe_psql($db, "SELECT status || coalesce(' ' || error, '') FROM publish.job_queue WHERE id = '$b'"),
		'completed', 'B completes');
	is($node->safe_psql($db, "SELECT count(*) FROM publish.job_log WHERE job_id = '$b' AND message ~ '^Validated'"),
		'1', '... having run once, from its first step to its last');
}
$gdb->kill_kill if $gdb && $gdb->pumpable;
$holder->quit;
$node->stop;
done_testing();
