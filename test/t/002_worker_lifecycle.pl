#!/usr/bin/perl
#
# 002_worker_lifecycle.pl: the launcher and the per-database workers while
# databases and the extension come and go, on a running server.
#
#  (a) CREATE EXTENSION in a new database: a publish there completes, no restart
#  (b) CREATE DATABASE ... TEMPLATE, DROP DATABASE and ALTER DATABASE ...
#      RENAME on databases with a running worker succeed promptly (< 5 s; PG
#      waits 5 s for other backends before giving up), and the worker of the
#      renamed database comes back; a role that may not run them stops no
#      worker
#  (c) DROP EXTENSION while the worker runs: it is woken and exits quietly
#      (no ERROR loop), and CREATE EXTENSION again works
#  (d) without shared_preload_libraries: a clear error with a hint
#  (e) pg_stat_activity shows 'publish worker' and 'publish launcher'
#  (f) an idle worker sleeps on its latch (wait_event_type Extension)
#  (g) a database whose transactions are read-only, serializable and
#      without triggers by default (ALTER DATABASE ... SET): its worker runs
#      publishes, one blocked by the other, as anywhere else
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(time);

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $storage = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');

my $node = publish_node('lifecycle');

# --- helpers ----------------------------------------------------------------

# Extension, storage target and sample project in $db.
sub setup_db
{
	my ($db) = @_;
	$node->safe_psql($db, 'CREATE EXTENSION publish');
	$node->safe_psql($db,
		"SELECT publish.set_storage_target('production', 'file://$storage')");
	$node->command_ok(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr($db),
			'-f', "$demo/sample_project.sql"
		],
		"sample project loaded into $db");
}

# Publishes campus v3 to production in $db and waits; returns "status|error".
sub publish_and_wait
{
	my ($db) = @_;
	my $id = $node->safe_psql($db,
		"SELECT id FROM publish.publish_version('campus', 3, 'production')");
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'"
	) or diag("job $id in $db did not finish");
	return $node->safe_psql($db,
		"SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"
	);
}

sub wait_worker
{
	my ($db) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'"
	);
}

# Runs $sql in database postgres; returns (psql exit code, seconds, stderr).
sub timed
{
	my ($sql) = @_;
	my ($stdout, $stderr);
	my $t0 = time();
	my $rc = $node->psql('postgres', $sql,
		stdout => \$stdout, stderr => \$stderr);
	return ($rc, time() - $t0, $stderr);
}

# --- (e) the launcher ---------------------------------------------------------

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish launcher'"),
	'(e) the launcher shows as backend_type "publish launcher"');
is( $node->safe_psql('postgres',
		"SELECT datname IS NULL FROM pg_stat_activity WHERE backend_type = 'publish launcher'"),
	't',
	'(e) the launcher is connected to no database');

# --- (a) CREATE EXTENSION on a running server ---------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE lc_a');
setup_db('lc_a');
ok(wait_worker('lc_a'), '(a) a worker serves the new database');
is(publish_and_wait('lc_a'), 'completed|',
	'(a) publish in a database created after server start completes');

# --- (e) and (f) the worker ---------------------------------------------------

my $pid_a = worker_pid('lc_a');
like($pid_a, qr/^\d+$/, '(e) the worker shows as backend_type "publish worker"');
is( $node->safe_psql('postgres',
		"SELECT application_name FROM pg_stat_activity WHERE pid = $pid_a"),
	'publish worker',
	'(e) and as application_name "publish worker"');
ok( $node->poll_query_until('postgres',
		"SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE pid = $pid_a",
		'Extension/Extension'),
	'(f) the idle worker sleeps on its latch (wait event Extension)');
is( $node->safe_psql('postgres',
		"SELECT state FROM pg_stat_activity WHERE pid = $pid_a"),
	'idle',
	'(f) the idle worker reports state idle');

# --- (b) CREATE DATABASE ... TEMPLATE, DROP DATABASE, ALTER DATABASE RENAME ---

my ($rc, $secs, $err) = timed('CREATE DATABASE lc_copy TEMPLATE lc_a');
my $t_copy = time();
is($rc, 0, '(b) CREATE DATABASE ... TEMPLATE a database with a worker succeeds')
  or diag($err);
cmp_ok($secs, '<', 5, sprintf('(b) ... promptly (%.2f s)', $secs));
ok(wait_worker('lc_a'), '(b) the template database gets its worker back');
ok(wait_worker('lc_copy'), '(b) the copy gets a worker of its own');
# CREATE DATABASE wakes the launcher at commit (its timer is 10 sweeps)
my $copy_secs = time() - $t_copy;
cmp_ok($copy_secs, '<', 5, sprintf('(b) ... at once (%.2f s)', $copy_secs));

($rc, $secs, $err) = timed('DROP DATABASE lc_copy');
is($rc, 0, '(b) DROP DATABASE of a database with a worker succeeds')
  or diag($err);
cmp_ok($secs, '<', 5, sprintf('(b) ... promptly (%.2f s)', $secs));
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'lc_copy'"),
	'0',
	'(b) no worker left for the dropped database');

ok(wait_worker('lc_a'), '(b) worker running before the rename');
($rc, $secs, $err) = timed('ALTER DATABASE lc_a RENAME TO lc_b');
is($rc, 0, '(b) ALTER DATABASE ... RENAME of a database with a worker succeeds')
  or diag($err);
cmp_ok($secs, '<', 5, sprintf('(b) ... promptly (%.2f s)', $secs));
ok(wait_worker('lc_b'), '(b) the worker comes back in the renamed database');
is(publish_and_wait('lc_b'), 'completed|',
	'(b) publish in the renamed database completes');

# A role that may not run these commands must not stop the worker either:
# PostgreSQL refuses them after the hook has run.
my $pid_b = worker_pid('lc_b');
$node->safe_psql('postgres', 'CREATE ROLE lc_stranger LOGIN CREATEDB');
for my $cmd ('DROP DATABASE lc_b', 'ALTER DATABASE lc_b RENAME TO lc_c',
	'ALTER DATABASE lc_b SET TABLESPACE pg_default',
	'CREATE DATABASE lc_d TEMPLATE lc_b')
{
	($rc, $secs, $err) = timed("SET ROLE lc_stranger; $cmd");
	isnt($rc, 0, "(b) $cmd by a role that does not own the database fails");
	like($err, qr/must be owner|permission denied/, '... refused by PostgreSQL')
	  or diag($err);
}
is(worker_pid('lc_b'), $pid_b, '(b) ... and the worker was not stopped');
$node->safe_psql('postgres', 'DROP ROLE lc_stranger');

# --- (g) the database's own settings do not reach the worker -----------------

# Read-only, serializable transactions without triggers by default: the
# worker, started again to take them, still claims, blocks and unblocks.
$node->safe_psql('postgres', q{
	ALTER DATABASE lc_b SET default_transaction_read_only = on;
	ALTER DATABASE lc_b SET default_transaction_isolation = 'serializable';
	ALTER DATABASE lc_b SET session_replication_role = 'replica'});
my $pid_g = worker_pid('lc_b');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid_g)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'lc_b' AND pid <> $pid_g"),
	'(g) a new worker connects to the database with the hostile defaults');
my $client = q{SET default_transaction_read_only = off;
	SET default_transaction_isolation = 'read committed';
	SET session_replication_role = 'origin';};
my @jobs_g = map {
	$node->safe_psql('lc_b', "$client SELECT id FROM publish.publish_version('campus', $_, 'production')")
} (2, 3);
ok( $node->poll_query_until('lc_b',
		"SELECT count(*) = 2 FROM publish.job_queue WHERE status = 'completed' AND id IN ('$jobs_g[0]', '$jobs_g[1]')"),
	'(g) two publishes of one project and environment, the second blocked by the first, both complete');
is( $node->safe_psql('lc_b',
		"SELECT (SELECT started_at FROM publish.job_queue WHERE id = '$jobs_g[1]') >= "
		  . "(SELECT completed_at FROM publish.job_queue WHERE id = '$jobs_g[0]')"),
	't', '(g) ... one after the other, in order');
$node->safe_psql('postgres', 'ALTER DATABASE lc_b RESET ALL');

# --- (c) DROP EXTENSION while the worker runs ---------------------------------

ok(wait_worker('lc_b'), '(c) worker running before DROP EXTENSION');
my $log_offset = -s $node->logfile;
my $t_drop = time();
$node->safe_psql('lc_b', 'DROP EXTENSION publish');
# DROP EXTENSION wakes the worker at commit (utility_hook.c): it exits at
# once, not at a full sweep (30 s here, and idle sweeps are skipped).
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'lc_b'"),
	'(c) the worker exits once its extension is gone');
my $drop_secs = time() - $t_drop;
cmp_ok($drop_secs, '<', 5, sprintf('(c) ... woken by DROP EXTENSION (%.2f s)', $drop_secs));
# Give a restart loop, if any, time to show up in the log.
sleep(2);
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep(1);
my $log = substr(slurp_file($node->logfile), $log_offset);
my @errors = grep { /\b(ERROR|FATAL|PANIC)\b/ && /publish/i } split /\n/, $log;
is(scalar(@errors), 0, '(c) no ERROR about publish in the server log after DROP EXTENSION')
  or diag(join("\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]));
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'lc_b'"),
	'0',
	'(c) and the launcher does not start it again');

setup_db('lc_b');
ok(wait_worker('lc_b'), '(c) CREATE EXTENSION again brings the worker back');
is(publish_and_wait('lc_b'), 'completed|',
	'(c) publish after DROP/CREATE EXTENSION completes');

# --- (d) a server without shared_preload_libraries -----------------------------

my $plain = PostgreSQL::Test::Cluster->new('no_preload');
$plain->init;
$plain->start;
my ($stdout, $stderr);
$rc = $plain->psql('postgres', 'CREATE EXTENSION publish',
	stdout => \$stdout, stderr => \$stderr, extra_params => ['-v', 'VERBOSITY=verbose']);
if ($rc != 0)
{
	note('without shared_preload_libraries, CREATE EXTENSION publish already fails');
	like($stderr, qr/shared_preload_libraries/,
		'(d) CREATE EXTENSION fails, naming shared_preload_libraries');
	like($stderr, qr/HINT:.*shared_preload_libraries/,
		'(d) with a hint about shared_preload_libraries');
	like($stderr, qr/55000/, '(d) SQLSTATE 55000 (object not in prerequisite state)');
	is( $plain->safe_psql('postgres',
			"SELECT count(*) FROM pg_extension WHERE extname = 'publish'"),
		'0',
		'(d) nothing is left installed');
}
else
{
	note('without shared_preload_libraries, CREATE EXTENSION publish succeeds');
	$plain->safe_psql('postgres',
		"SELECT publish.set_storage_target('production', 'file://$storage')");
	$plain->command_ok(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $plain->connstr('postgres'),
			'-f', "$demo/sample_project.sql"
		],
		'sample project loaded');
	$rc = $plain->psql('postgres',
		"SELECT publish.publish_version('campus', 3, 'production')",
		stdout => \$stdout, stderr => \$stderr, extra_params => ['-v', 'VERBOSITY=verbose']);
	isnt($rc, 0, '(d) publish_version fails without shared_preload_libraries');
	like($stderr, qr/HINT:.*shared_preload_libraries/,
		'(d) with a hint about shared_preload_libraries');
	is($plain->safe_psql('postgres', 'SELECT count(*) FROM publish.job_queue'),
		'0', '(d) no job was created');
}
$plain->stop;

# The loop above must not have disturbed the main server.
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish launcher'"),
	'1',
	'the launcher is still running');

$node->stop;
done_testing();
