#!/usr/bin/perl
# The publish_version supersede race, deterministically: a job whose claim
# by a worker commits while publish_version is superseding it must stay
# running (publish_version supersedes only a job that is still queued).
# Session s1 plays the worker's claim transaction (UPDATE ... status =
# 'running', not yet committed), exactly what job_claim_next does.
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
my $node = publish_node('repro');
my $db = 'postgres';
publish_sample($node, $db, $demo);

# The worker is kept busy with J0 (held in step 1), so J1 and J2 stay queued.
$node->safe_psql($db, "BEGIN; LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'hold'");
my $j0 = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 2, 'production')");
$node->poll_query_until($db, "SELECT status = 'running' FROM publish.job_queue WHERE id = '$j0'");
my $j1 = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 3, 'production')");
my $j2 = $node->safe_psql($db, "SELECT id FROM publish.publish_version('campus', 2, 'production')");

my $s1 = $node->background_psql($db);
$s1->query_safe("BEGIN; UPDATE publish.job_queue SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1 WHERE id = '$j1'");
my $s2 = $node->background_psql($db);
$s2->query_until(qr/sent/, "\\echo sent\nSELECT id FROM publish.publish_version('campus', 3, 'production');\n");
$node->poll_query_until($db, "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%publish_version%'");
$s1->query_safe('COMMIT');    # the "claim" commits: J1 is running
$s2->quit;
$s1->quit;

is($node->safe_psql($db, "SELECT status || '|' || coalesce(error, '') || '|' || (started_at IS NOT NULL) FROM publish.job_queue WHERE id = '$j1'"),
	'running||true', 'J1, claimed by a worker, is still running');
$node->safe_psql($db, "ROLLBACK PREPARED 'hold'");
done_testing();
