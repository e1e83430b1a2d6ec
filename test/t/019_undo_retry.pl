#!/usr/bin/perl
#
# 019_undo_retry.pl: a publish whose final commit fails after release.json
# was switched puts the live release back even when the storage is down at
# that moment: the worker tries the undo again (after 1, 2, 4 ... s) until
# the storage is back, and only then records the job failed.  When the
# storage stays down past publish.job_timeout, the job fails all the same,
# with an error that says release.json may still name its version.
#
# The target is the fault server's /switchable mode (an HTTP PUT server that
# answers 503 while the test says it is down).  The job waits at
# publish.pause_at = 'switched' while the server is taken down; a trigger
# makes its final commit fail.  Needs PUBLISH_SERVER_FAULT_URL (set by
# scripts/test.sh).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep time);
use HTTP::Tiny;

my $fault = $ENV{PUBLISH_SERVER_FAULT_URL}
  or plan skip_all => 'PUBLISH_SERVER_FAULT_URL is not set (run through scripts/test.sh)';

my $node = publish_node('undo_retry',
	conf => "publish.storage_max_attempts = 2\n"
	  . "publish.storage_retry_delay = 50ms\n");
my $db = 'postgres';
my $tag = "undo-$$-" . int(time);
my $http = HTTP::Tiny->new(timeout => 5);

sub q1 { return $node->safe_psql($db, $_[0]); }

sub storage { $http->post("$fault/_$_[0]/$tag") }

# Sets a setting and waits until it is in effect ($shown: as SHOW shows it).
sub set_conf
{
	my ($name, $value, $shown) = @_;
	$shown //= $value;
	q1("ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf()");
	$node->poll_query_until($db, "SELECT current_setting('$name') = '$shown'")
	  or diag("$name is not $shown");
}

# The version that release.json on the target names ('absent' when none).
sub live_storage
{
	my $r = $http->get("$fault/switchable/$tag/production/refused/release.json");
	return 'absent' if $r->{status} == 404;
	return $1 if $r->{content} =~ /"version":(\d+)/;
	return "status $r->{status}";
}

sub live_db
{
	return q1("SELECT coalesce((SELECT version::text FROM publish.releases"
		  . " WHERE project = 'refused' AND env = 'production'), 'none')");
}

q1('CREATE EXTENSION publish');
q1("SELECT publish.set_storage_target('production', '$fault/switchable/$tag')");
q1(q{
	INSERT INTO publish.projects (slug, name) VALUES ('refused', 'Refused');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, n, 'ready' FROM publish.projects, generate_series(1, 3) n;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT id, 'poi', 'Point', 'marker', '{"type": "Point", "coordinates": [13.4, 52.5]}', '{}'
	  FROM publish.project_versions;
	CREATE FUNCTION refuse_live() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT version_number FROM publish.project_versions WHERE id = NEW.version_id) > 1 THEN
			RAISE EXCEPTION 'test: this release is refused';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_live BEFORE INSERT OR UPDATE ON publish.live_releases
		FOR EACH ROW EXECUTE FUNCTION refuse_live();
});

my $v1 = q1("SELECT id FROM publish.publish_version('refused', 1, 'production')");
$node->poll_query_until($db, "SELECT status = 'completed' FROM publish.job_queue WHERE id = '$v1'");
is(live_storage(), '1', 'version 1 is live on storage');

# Publishes version $n, stops it after the switch, takes the storage down,
# lets it go on (its final commit fails); returns the job's id.
sub switched_then_down
{
	my ($n) = @_;
	set_conf('publish.pause_at', 'switched');
	my $job = q1("SELECT id FROM publish.publish_version('refused', $n, 'production')");
	$node->poll_query_until($db,
		"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'publish worker'"
		  . " AND query = 'publish: paused at switched')")
	  or diag("version $n's job did not reach the switch");
	is(live_storage(), $n, "version $n: release.json is switched, the job waits before its final commit");
	storage('down');
	set_conf('publish.pause_at', '');
	return $job;
}

# (a) the storage comes back: the undo succeeds at a later try
my $job = switched_then_down(2);
ok( $node->poll_query_until($db,
		"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'publish worker'"
		  . " AND query = 'publish: waiting to put the live release back')"),
	'(a) the final commit failed and the undo found the storage down: the worker waits to try again');
is(q1("SELECT status FROM publish.job_queue WHERE id = '$job'"), 'running',
	'(a) ... the job still running meanwhile');
sleep(2);
storage('up');
$node->poll_query_until($db, "SELECT status <> 'running' FROM publish.job_queue WHERE id = '$job'");
like(q1("SELECT status || '|' || error FROM publish.job_queue WHERE id = '$job'"),
	qr/^failed\|test: this release is refused$/, '(a) once the storage is back, the job fails with the commit\'s error');
is(live_storage(), '1', '(a) release.json names version 1 again');
is(live_db(), '1', '(a) ... as publish.releases does');
like(q1("SELECT string_agg(message, ' | ' ORDER BY id) FROM publish.job_log WHERE job_id = '$job' AND level = 'warn'"),
	qr/Put production\/refused\/release.json back to version 1/, '(a) the log says so');

# (b) the storage stays down past publish.job_timeout: the job fails all
# the same, saying release.json may name its version
set_conf('publish.job_timeout', '3', '3s');
$job = switched_then_down(3);
my $t0 = time;
$node->poll_query_until($db, "SELECT status <> 'running' FROM publish.job_queue WHERE id = '$job'");
my $took = time - $t0;
my $error = q1("SELECT error FROM publish.job_queue WHERE id = '$job'");
like($error, qr/release.json could not be put back, and may name this job's version/,
	'(b) the storage down past publish.job_timeout: the job fails, saying release.json may name its version');
cmp_ok($took, '<', 30, sprintf('(b) ... after the timeout, not forever (%.1f s)', $took));
is(q1("SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')"), '0',
	'(b) no job is left queued or running');
storage('up');

# the next publish puts storage and database in agreement again
q1("DROP TRIGGER refuse_live ON publish.live_releases");
set_conf('publish.job_timeout', '3600', '1h');
$job = q1("SELECT id FROM publish.publish_version('refused', 3, 'production')");
$node->poll_query_until($db, "SELECT status = 'completed' FROM publish.job_queue WHERE id = '$job'");
is(live_storage() . ' ' . live_db(), '3 3', 'the next publish completes: storage and publish.releases agree');

$node->stop;
done_testing();
