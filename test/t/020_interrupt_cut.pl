#!/usr/bin/perl
# A worker cutting tiles can be stopped at once.  While the worker of
# database cutdb cuts the pyramid of a 16384 x 16384 image (many seconds of
# libvips work), each of these takes effect within two seconds:
#   (a) publish.cancel_job: the job ends 'cancelled';
#   (b) publish.job_timeout passing: the job fails as timed out;
#   (c) pg_terminate_backend on the worker: the worker is gone (and its
#       job is run again by the worker started after it);
#   (d) DROP DATABASE of another database (it waits until every process
#       has absorbed a barrier): it succeeds, and the cut goes on;
#   (e) a fast shutdown: the server has stopped;
#   (f) DROP DATABASE cutdb: it succeeds.
# None of them leaves the cut's temporary directory (base/pgsql_tmp) behind.
# The figures are in the test names.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep time);

plan skip_all => 'the vips command is not installed (scripts/install-deps.sh)'
  unless system('vips --version >/dev/null 2>&1') == 0;

# the image has 268 megapixels; a job may be interrupted a few times
my $node = publish_node('interrupt_cut',
	conf => "publish.max_source_pixels = 300\npublish.max_attempts = 5\n");
my $db = 'cutdb';
my $tmp = $node->data_dir . '/base/pgsql_tmp';

# the source image, on the local disk of a file:// target
my $storage = PostgreSQL::Test::Utils::tempdir();
mkdir "$storage/assets" or die $!;
command_ok([ 'vips', 'black', "$storage/assets/big.jpg", '16384', '16384', '--bands', '3' ],
	'a 16384 x 16384 source image');

$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");
$node->safe_psql(
	$db, q{
	INSERT INTO publish.projects (slug, name) VALUES ('big', 'A big map');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'big';
	INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type)
	SELECT v.id, 'map', 'base_map', 'assets/big.jpg', 'image/jpeg'
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
	 WHERE p.slug = 'big';
});

# Calls $cond every 10 ms until it is true or $seconds have passed.
sub wait_for
{
	my ($cond, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(10_000);
	}
	return $cond->();
}

# The temporary directories of tile builds (of worker $pid, or of any).
sub build_dirs
{
	my ($pid) = @_;
	my $pattern = defined $pid ? "publish_tiles.$pid." : 'publish_tiles.';
	opendir(my $dh, $tmp) or return ();
	my @dirs = grep { index($_, $pattern) >= 0 } readdir($dh);
	closedir $dh;
	return @dirs;
}

# Waits until cutdb's worker is in the middle of the cut (libvips has
# written tiles); returns its pid.
sub cutting_worker
{
	my $pid;
	wait_for(
		sub {
			$pid = $node->safe_psql($db,
				"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker'"
				  . " AND datname = '$db' AND query = 'publish: cutting tiles'");
			return 0 if $pid eq '';
			my @tiles = glob("$tmp/*publish_tiles.$pid.*/pyramid/*/0/0.png");
			return @tiles > 0;
		},
		120) or die 'the worker did not start cutting tiles';
	return $pid;
}

my $session = $node->background_psql($db);

# (a) cancel_job
my $job1 = $node->safe_psql($db, "SELECT id FROM publish.build_tiles('big', 1, 'production')");
my $pid = cutting_worker();
my $t0 = time;
$session->query_safe("SELECT publish.cancel_job('$job1')");
wait_for(sub { $session->query_safe("SELECT status FROM publish.job_queue WHERE id = '$job1'") eq 'cancelled' }, 60);
my $took = time - $t0;
is($session->query_safe("SELECT status FROM publish.job_queue WHERE id = '$job1'"),
	'cancelled', 'cancel_job during a cut: the job ends cancelled');
cmp_ok($took, '<', 2, sprintf('... %.2f s after the cancel', $took));
ok(wait_for(sub { build_dirs($pid) == 0 }, 10), '... and its temporary directory is removed');

# (b) publish.job_timeout, reached during the cut
$node->safe_psql($db, 'ALTER SYSTEM SET publish.job_timeout = 2');
$node->reload;
# a new session sees the setting once the postmaster has passed the reload on
$node->poll_query_until($db, "SELECT current_setting('publish.job_timeout') = '2s'");
my $job3 = $node->safe_psql($db, "SELECT id FROM publish.build_tiles('big', 1, 'production')");
wait_for(sub { $session->query_safe("SELECT status FROM publish.job_queue WHERE id = '$job3'") eq 'failed' }, 60);
my ($error, $over) = split(/\|/, $session->query_safe(
	"SELECT error, extract(epoch FROM completed_at - started_at) - 2 FROM publish.job_queue WHERE id = '$job3'"));
like($error, qr/^timed out/, 'publish.job_timeout passing during a cut: the job times out');
like(slurp_file($node->logfile), qr/publish job $job3 ended without publishing: cutting the tiles .* was stopped at its deadline/,
	'... stopping the cut');
cmp_ok($over, '<', 2, sprintf('... %.2f s after its deadline', $over));
ok(wait_for(sub { build_dirs() == 0 }, 10), '... and its temporary directory is removed');
$node->safe_psql($db, 'ALTER SYSTEM RESET publish.job_timeout');
$node->reload;
$node->poll_query_until($db, "SELECT current_setting('publish.job_timeout') = '1h'");

# (c) pg_terminate_backend
my $job2 = $node->safe_psql($db, "SELECT id FROM publish.build_tiles('big', 1, 'production')");
$pid = cutting_worker();
$t0 = time;
$session->query_safe("SELECT pg_terminate_backend($pid)");
wait_for(sub { !kill(0, $pid) }, 60);
$took = time - $t0;
ok(!kill(0, $pid), 'pg_terminate_backend during a cut: the worker exits');
cmp_ok($took, '<', 2, sprintf('... %.2f s after the signal', $took));
is(scalar(build_dirs($pid)), 0, '... leaving no temporary directory behind');
my $pid2 = cutting_worker();
isnt($pid2, $pid, 'the next worker runs the job again');
is($session->query_safe("SELECT status || ' ' || attempts FROM publish.job_queue WHERE id = '$job2'"),
	'running 2', '... as its second attempt');

# (d) DROP DATABASE of another database waits until every process has
# absorbed a barrier: the cutting worker absorbs it without stopping.  (A
# checkpoint first, here and below: the one the command makes has little
# left to write, so that its time is the interruption's.)
$node->safe_psql('postgres', 'CHECKPOINT');
$t0 = time;
my $rc = $node->psql('postgres', 'DROP DATABASE other');
$took = time - $t0;
is($rc, 0, 'DROP DATABASE of another database during a cut succeeds');
cmp_ok($took, '<', 2, sprintf('... in %.2f s', $took));
is($session->query_safe("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid2 AND query = 'publish: cutting tiles'"),
	'1', '... and the worker goes on cutting');
$session->quit;

# (e) a fast shutdown, during that second attempt's cut
$node->safe_psql('postgres', 'CHECKPOINT');
$t0 = time;
$node->stop('fast');
$took = time - $t0;
cmp_ok($took, '<', 2, sprintf('a fast shutdown during a cut: the server stopped in %.2f s', $took));
is(scalar(build_dirs()), 0, '... leaving no temporary directory behind');

# (f) DROP DATABASE cutdb, during the cut of the job's third attempt
$node->start;
$pid = cutting_worker();
my $err = '';
$node->safe_psql('postgres', 'CHECKPOINT');
$t0 = time;
$rc = $node->psql('postgres', "DROP DATABASE $db", stderr => \$err);
$took = time - $t0;
is($rc, 0, 'DROP DATABASE of a database whose worker is cutting tiles succeeds') or diag($err);
cmp_ok($took, '<', 2, sprintf('... in %.2f s', $took));
ok(wait_for(sub { !kill(0, $pid) }, 5), '... its worker is gone');
is(scalar(build_dirs()), 0, '... and no temporary directory is left behind');

$node->stop;
done_testing();
