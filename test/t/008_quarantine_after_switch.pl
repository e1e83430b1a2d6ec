#!/usr/bin/perl
# A job interrupted in step 5 -- after release.json was switched to the new
# version, before the version/releases were recorded -- and then quarantined
# (publish.max_attempts reached) fails, but only after it put the live
# release back: release.json on storage agrees with publish.releases.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep);

my $demo = $ENV{PUBLISH_DEMO_DIR} or plan skip_all => 'PUBLISH_DEMO_DIR is not set';
my $node = publish_node('q5',
	conf => "publish.max_attempts = 1\nrestart_after_crash = on\n");
my $db = 'postgres';
my $storage = publish_sample($node, $db, $demo);
my $j = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 2, 'production')");
$node->poll_query_until($db, "SELECT status = 'completed' FROM publish.job_queue WHERE id = '$j'");

my $v3 = $node->safe_psql($db, "SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'campus' AND v.version_number = 3");
# a row lock on the version: only step 5's final UPDATE waits for it, after release.json was written
$node->safe_psql($db, "BEGIN; SELECT 1 FROM publish.project_versions WHERE id = '$v3' FOR NO KEY UPDATE; PREPARE TRANSACTION 'row'");
$j = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 3, 'production')");
$node->poll_query_until($db, "SELECT progress = 80 FROM publish.job_queue WHERE id = '$j'");
$node->poll_query_until($db, "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.backend_type = 'publish worker' AND NOT l.granted");
my $pid = $node->safe_psql($db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
kill 'KILL', $pid;
$node->poll_query_until($db, "SELECT status = 'failed' FROM publish.job_queue WHERE id = '$j'");
$node->safe_psql($db, "ROLLBACK PREPARED 'row'");
like($node->safe_psql($db, "SELECT error FROM publish.job_queue WHERE id = '$j'"),
	qr/^interrupted: .*1 of 1 attempts used/, 'the job, past its last attempt, failed as interrupted');
like($node->safe_psql($db, "SELECT string_agg(message, ' | ' ORDER BY id) FROM publish.job_log WHERE job_id = '$j' AND level = 'warn'"),
	qr/Put production\/campus\/release.json back to version 2/, '... once it had put the live release back');
ok($node->poll_query_until($db,
		"SELECT count(*) = 0 FROM publish.job_queue WHERE status IN ('queued', 'running')"),
	'no job is left queued or running');
my $file = $node->safe_psql($db, "SELECT (pg_read_file('$storage/production/campus/release.json')::jsonb)->>'version'");
my $live = $node->safe_psql($db, "SELECT version FROM publish.releases WHERE project = 'campus' AND env = 'production'");
note("job: " . $node->safe_psql($db, "SELECT status || ' ' || error FROM publish.job_queue WHERE id = '$j'"));
is($file, $live, "release.json on storage (v$file) agrees with publish.releases (v$live) after the job failed");
done_testing();
