#!/usr/bin/perl
#
# 001_dump_restore.pl: pg_dump / pg_restore round trip of a database that
# uses publish.
#
# In database "src": the sample project, a completed publish of campus v3 to
# production and a storage secret.  pg_dump -Fc src, pg_restore
# --single-transaction into a new database "dst", then:
#   - every table of the extension holds the same rows in both databases
#     (the tables are extension configuration tables: pg_dump must keep their
#     data), and the publish.jobs and publish.releases views show the same;
#   - the job_log and release history identities continue after the
#     restored rows;
#   - a new publish in dst completes, which also shows that the launcher
#     notices a new database with the extension without a restart.
#
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $storage = PostgreSQL::Test::Utils::tempdir();
my $tmp     = PostgreSQL::Test::Utils::tempdir();

my $node = publish_node('dump_restore');

# Waits until job $id (in $db) has finished; returns "status|error".
sub wait_job
{
	my ($db, $id) = @_;
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.job_queue WHERE id = '$id'"
	) or diag("job $id did not finish");
	return $node->safe_psql($db,
		"SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

# Runs a client program; returns (success, stdout, stderr).
sub run_cmd
{
	my ($cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run($cmd, '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

# --- src: sample project, a completed publish, a secret --------------------

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION publish');
$node->safe_psql('src',
	"SELECT publish.set_storage_target('production', 'file://$storage')");
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('src'),
		'-f', "$demo/sample_project.sql"
	],
	'sample project loaded into src');

my $job = $node->safe_psql('src',
	"SELECT id FROM publish.publish_version('campus', 3, 'production')");
like($job, qr/^[0-9a-f-]{36}$/, 'publish queued in src');
is(wait_job('src', $job), 'completed|', 'publish in src completed');
ok(-f "$storage/production/campus/release.json", 'release.json on storage');

$node->safe_psql('src',
	"SELECT publish.set_storage_credentials('production', 'key', 's3cr3t')");

# --- dump and restore -------------------------------------------------------

my $dump = "$tmp/src.dump";
my ($ok, $out, $err) =
  run_cmd([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ]);
ok($ok, 'pg_dump -Fc src') or diag($err);
is($err, '', 'pg_dump wrote no warnings');

$node->safe_psql('postgres', 'CREATE DATABASE dst');
($ok, $out, $err) =
  run_cmd([ 'pg_restore', '--single-transaction', '-d', $node->connstr('dst'), $dump ]);
ok($ok, 'pg_restore --single-transaction -d dst (as README advises)') or diag($err);
is($err, '', 'pg_restore wrote no errors or warnings');

# --- compare, table by table ------------------------------------------------

my @tables = qw(projects project_versions assets overlays tilesets tiles
  storage_targets storage_credentials job_queue job_log live_releases
  live_release_history jobs releases release_history);
my %must_have_rows = map { $_ => 1 }
  qw(projects project_versions assets overlays tilesets tiles storage_targets
  storage_credentials job_queue job_log live_releases live_release_history
  jobs releases release_history);

foreach my $t (@tables)
{
	my $q =
	  "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') "
	  . "FROM publish.$t t";
	my $in_src = $node->safe_psql('src', $q);
	my $in_dst = $node->safe_psql('dst', $q);
	is($in_dst, $in_src, "publish.$t: same rows after restore");
	if ($must_have_rows{$t})
	{
		my ($n) = split / /, $in_src;
		cmp_ok($n, '>', 0, "publish.$t is not empty in src");
	}
}

is( $node->safe_psql('dst',
		"SELECT secret FROM publish.storage_credentials WHERE env = 'production'"),
	's3cr3t',
	'secret restored');
is( $node->safe_psql('dst',
		"SELECT has_table_privilege('public', 'publish.storage_credentials', 'SELECT')"),
	'f',
	'storage_credentials still not readable by PUBLIC after restore');

# --- the job_log identity continues -----------------------------------------

my $max_log = $node->safe_psql('dst', 'SELECT max(id) FROM publish.job_log');
my ($rc, $new_log, $log_err) = $node->psql('dst',
	"INSERT INTO publish.job_log (job_id, level, message) "
	  . "VALUES ('$job', 'info', 'written after restore') RETURNING id");
is($rc, 0, 'inserting a job_log row after restore works') or diag($log_err);
cmp_ok($new_log || 0, '>', $max_log, 'job_log id continues after the restored rows');

# --- a new publish in dst ---------------------------------------------------

my $job2 = $node->safe_psql('dst',
	"SELECT id FROM publish.publish_version('campus', 3, 'production')");
like($job2, qr/^[0-9a-f-]{36}$/, 'publish queued in dst');
is(wait_job('dst', $job2), 'completed|', 'publish in restored database completed');
is( $node->safe_psql('dst',
		"SELECT job_id FROM publish.releases WHERE project = 'campus' AND env = 'production'"),
	$job2,
	'publish.releases in dst shows the new job');
is( $node->safe_psql('dst',
		"SELECT count(*) FROM publish.job_log WHERE job_id = '$job2' AND level = 'info'")
	  > 0 ? 1 : 0,
	1,
	'the new job logged its steps');
is( $node->safe_psql('dst',
		"SELECT string_agg(format('%s %s', job_id, id), ' ' ORDER BY id) FROM publish.live_release_history"),
	$node->safe_psql('src', "SELECT format('%s %s', job_id, id) FROM publish.live_release_history")
	  . " $job2 " . ($node->safe_psql('src', 'SELECT max(id) + 1 FROM publish.live_release_history')),
	'the release history in dst goes on after the restored rows (its identity continues)');
is( $node->safe_psql('src',
		"SELECT job_id FROM publish.releases WHERE project = 'campus' AND env = 'production'"),
	$job,
	'src is untouched by the publish in dst');

$node->stop;
done_testing();
