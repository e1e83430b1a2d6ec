#!/usr/bin/perl
# A commit that queued work wakes one sleeping worker (shmem.c); if that
# worker exits before it looks at the queue, its exit hands the wake-up to
# another worker, which runs the job at once, instead of the job waiting for
# the worker's restart and first sweep (or, for a worker not restarted, the
# next timed sweep).  gdb stops worker 0, the one picked, where it would
# look (publish_shmem_look) and makes it exit there (proc_exit, as after a
# SIGTERM).  Worker 1 must run the job; without the hand-over, the restarted
# worker 0 runs it.
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

my $node = publish_node('wake_passed_on', conf => "publish.workers_per_database = 2\n");
my $db = 'postgres';
publish_sample($node, $db, $demo);

ok($node->poll_query_until($db,
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"
		  . " AND wait_event_type = 'Extension' AND state_change < clock_timestamp() - interval '0.3 s'"),
	'both workers are asleep');

# worker N's pid, from its process title ("publish worker N for database ...")
my %pid;
for my $p (split /\n/, $node->safe_psql($db,
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"))
{
	open(my $fh, '<', "/proc/$p/cmdline") or next;
	my $title = <$fh> // '';
	close $fh;
	$pid{$1} = $p if $title =~ /publish worker (\d+) for database/;
}
ok(defined $pid{0} && defined $pid{1}, "worker 0 is $pid{0}, worker 1 is $pid{1}");

my ($gdb, $gdir, $gerr) = gdb_attach($pid{0}, <<'GDB');
break publish_shmem_look
commands
shell touch @DIR@/stopped
call (void) proc_exit(0)
end
GDB
my $deadline;

SKIP:
{
	skip "gdb cannot attach to a worker: $gerr", 3 unless $gdb;

	my $job = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 3, 'production')");
	$deadline = time + 30;
	usleep(50_000) while !-e "$gdir/stopped" && time < $deadline;
	ok(-e "$gdir/stopped", 'worker 0 was woken for the job, and is stopped where it would look');
	$gdb->finish;

	$deadline = time + 30;
	my $status = '';
	while (time < $deadline)
	{
		$status = $node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$job'");
		last if $status eq 'completed' || $status eq 'failed';
		usleep(100_000);
	}
	is($status, 'completed', 'the job completes');
	is($node->safe_psql($db,
			"SELECT substring(message from 'pid (\\d+)') FROM publish.job_log WHERE job_id = '$job' AND message ~ '^Started by'"),
		$pid{1}, '... run by worker 1, to which worker 0 handed the wake-up as it exited');
}
$gdb->kill_kill if $gdb && $gdb->pumpable;
$node->stop;
done_testing();
