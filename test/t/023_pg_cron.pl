#!/usr/bin/perl
# Publishing on a schedule with pg_cron (docs/operations.md, "Publishing on
# a schedule"): pg_cron preloaded next to publish, a publisher role (a
# publish_admin) schedules publish.publish_version with cron.schedule, and
# the publish job that pg_cron's run queues completes, asked for by that
# role.  The recipe's statements are the ones run here.  pg_cron 1.5 and
# later take a schedule in seconds ('5 seconds'); 1.4 (Debian 12's) runs
# at most once a minute, so the job is waited for up to three minutes.
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
my $libdir = `pg_config --pkglibdir`;
chomp $libdir;
plan skip_all => 'pg_cron is not installed (scripts/install-deps.sh: postgresql-15-cron)'
  unless -f "$libdir/pg_cron.so";

my $db = 'postgres';
# pg_cron's background workers run the commands (no connection over TCP)
my $node = publish_node('pg_cron',
	conf => "shared_preload_libraries = 'publish,pg_cron'\n"
	  . "cron.database_name = '$db'\n"
	  . "cron.use_background_workers = on\n");
publish_sample($node, $db, $demo);

$node->safe_psql($db, <<'SQL');
CREATE EXTENSION pg_cron;
CREATE ROLE publisher LOGIN IN ROLE publish_admin;
GRANT USAGE ON SCHEMA cron TO publisher;
SQL
my $version = $node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'");
my ($major, $minor) = $version =~ /^(\d+)\.(\d+)/;
my $schedule = ($major > 1 || ($major == 1 && $minor >= 5)) ? '5 seconds' : '* * * * *';
note("pg_cron $version, schedule '$schedule'");

is($node->safe_psql($db, "SELECT count(*) FROM publish.jobs"), '0', 'no job before the schedule');

# the recipe: the publisher schedules the publish of the project's newest
# ready version
my $jobid = $node->safe_psql($db, <<"SQL");
SET ROLE publisher;
SELECT cron.schedule('publish-campus', '$schedule', \$\$
    SELECT publish.publish_version('campus',
             (SELECT max(v.version_number)
                FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
               WHERE p.slug = 'campus' AND v.status IN ('ready', 'published')),
             'production')
\$\$);
SQL
like($jobid, qr/^\d+$/, 'cron.schedule takes the publish, as the publisher');

ok($node->poll_query_until($db,
		"SELECT count(*) > 0 FROM publish.jobs WHERE job_type = 'publish' AND status = 'completed'",
		't', 180),
	'the scheduled run queued a publish job, which completed');
is($node->safe_psql($db,
		"SELECT created_by || ' ' || (params->>'version_number') FROM publish.jobs"
		  . " WHERE job_type = 'publish' ORDER BY created_at LIMIT 1"),
	'publisher ' . $node->safe_psql($db,
		"SELECT max(version_number) FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id"
		  . " WHERE p.slug = 'campus' AND v.status IN ('ready', 'published')"),
	'... asked for by the publisher, for the newest version');
is($node->safe_psql($db,
		"SELECT status FROM cron.job_run_details WHERE jobid = $jobid ORDER BY runid LIMIT 1"),
	'succeeded', "pg_cron's run of the schedule succeeded");
ok($node->safe_psql($db, "SELECT count(*) FROM publish.releases WHERE project = 'campus' AND env = 'production'") == 1,
	'publish.releases names the scheduled release');

is($node->safe_psql($db, "SET ROLE publisher; SELECT cron.unschedule('publish-campus')"), 't',
	'the publisher unschedules it');

$node->stop;
done_testing();
