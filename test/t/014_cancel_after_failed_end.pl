#!/usr/bin/perl
# After a job's final transaction fails, the worker can still be
# interrupted by cancel_job().  An ERROR resets PostgreSQL's cancel holdoff
# count to 0; the worker holds cancels while it records a job's end, and a
# RESUME after the error would wrap the count around, so that from then on
# the worker never processed a cancel signal: a job held on a lock stayed
# running until the lock was released.
#
# A trigger on publish.live_releases makes the final transaction of one
# project's publish fail; then a job of another project is held in step 1
# by a lock in a prepared transaction, and cancelled.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep time);

my $storage = PostgreSQL::Test::Utils::tempdir();
my $node = publish_node('cancel_after_failed_end');
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");
$node->safe_psql($db, q{
	INSERT INTO publish.projects (slug, name) VALUES ('refused', 'Refused'), ('held', 'Held');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT id, 'poi', 'Point', 'marker', '{"type": "Point", "coordinates": [13.4, 52.5]}', '{}'
	  FROM publish.project_versions;
	CREATE FUNCTION refuse_live() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT slug FROM publish.projects WHERE id = NEW.project_id) = 'refused' THEN
			RAISE EXCEPTION 'test: this release is refused';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_live BEFORE INSERT OR UPDATE ON publish.live_releases
		FOR EACH ROW EXECUTE FUNCTION refuse_live();
});

sub wait_end
{
	my ($job) = @_;
	my $deadline = time + 30;
	my $row = '';
	while (time < $deadline)
	{
		$row = $node->safe_psql($db, "SELECT status || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$job'");
		last if $row =~ /^(completed|failed|cancelled)\|/;
		usleep(50_000);
	}
	return $row;
}

my $refused = $node->safe_psql($db, "SELECT id FROM publish.publish_version('refused', 1, 'production')");
like(wait_end($refused), qr/^failed\|.*this release is refused/,
	'the job whose final transaction fails is recorded failed, with the error');

$node->safe_psql($db,
	"BEGIN; LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'hold'");
my $held = $node->safe_psql($db, "SELECT id FROM publish.publish_version('held', 1, 'production')");
ok( $node->poll_query_until($db,
		"SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		                 WHERE a.backend_type = 'publish worker' AND NOT l.granted)"),
	'the same worker runs the next job, held in step 1 by the lock');

my $t0 = time;
$node->safe_psql($db, "SELECT publish.cancel_job('$held')");
my $deadline = time + 5;
my $status = '';
while (time < $deadline)
{
	$status = $node->safe_psql($db, "SELECT status FROM publish.job_queue WHERE id = '$held'");
	last if $status ne 'running';
	usleep(20_000);
}
is($status, 'cancelled', 'cancel_job interrupts it while the lock is still held');
cmp_ok(time - $t0, '<', 5, sprintf('... at once (%.2f s)', time - $t0));

$node->safe_psql($db, "ROLLBACK PREPARED 'hold'");
$node->stop;
done_testing();
