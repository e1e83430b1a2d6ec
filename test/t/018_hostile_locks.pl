#!/usr/bin/perl
#
# 018_hostile_locks.pl: a role that may only read (publish_viewer), and a
# role with no grants at all, cannot stall the worker with locks.
#
# Every role may take advisory locks, on any key.  So each role takes and
# holds, in an open transaction, every advisory lock it could see the
# worker take (pg_locks of the worker at each pause point of a publish,
# publish.pause_at), and the keys an older worker used, which anyone could
# compute: (1886741100, hashtext(version id)), (1886741101, hashtext(job
# id)) -- taken between the queueing of the job and its commit, before any
# worker could claim it -- and (1886741102, hashtext(project id || '/' ||
# env)); the viewer also holds ACCESS SHARE on every relation it may read.
# Row locks and stronger table locks, which would block the worker's
# writes, must be refused (42501) on every table and view of publish.
# Meanwhile publish_version returns at once and the publish completes.
#
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

my $node = publish_node('locks');
my $db = 'postgres';
publish_sample($node, $db, $demo);

sub q1 { return $node->safe_psql($db, $_[0]); }

q1('CREATE ROLE tap_viewer LOGIN IN ROLE publish_viewer');
q1('CREATE ROLE tap_nobody LOGIN');

sub set_pause
{
	my ($point) = @_;
	q1("ALTER SYSTEM SET publish.pause_at = '$point'; SELECT pg_reload_conf()");
	# a new session has what the postmaster read, which it has passed on
	# to the worker by then
	$node->poll_query_until($db, "SELECT current_setting('publish.pause_at') = '$point'");
}

sub wait_job
{
	my ($id) = @_;
	# returns when the job ends, or after 30 s with the job as it is then
	return q1("SELECT status || '|' || coalesce(error, '') FROM publish.wait_job('$id', '30 s')");
}

sub version_id
{
	my ($n) = @_;
	return q1("SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id"
		  . " WHERE p.slug = 'campus' AND v.version_number = $n");
}

# --- the advisory locks the worker takes during a publish -------------------

my @points = qw(claimed validated built uploaded marked switched);
set_pause($points[0]);
my $job = q1("SELECT id FROM publish.publish_version('campus', 3, 'production')");
my %seen;    # 'classid objid objsubid' of each advisory lock of the worker
foreach my $i (0 .. $#points)
{
	my $point = $points[$i];
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at $point'")
	  or diag("the worker did not wait at $point");
	$seen{$_} = 1 foreach split /\n/, q1(
		"SELECT l.classid || ' ' || l.objid || ' ' || l.objsubid FROM pg_locks l"
		  . " JOIN pg_stat_activity a ON a.pid = l.pid"
		  . " WHERE a.backend_type = 'publish worker' AND l.locktype = 'advisory'");
	set_pause($i < $#points ? $points[ $i + 1 ] : '');
}
is(wait_job($job), 'completed|', 'a publish walked through every pause point');
note('advisory locks of the worker seen during a publish: '
	  . (%seen ? join(', ', sort keys %seen) : 'none'));

# SQL that takes the advisory lock of each 'classid objid objsubid', as a
# session lock (objsubid 1: one bigint key; 2: two integer keys).
sub lock_seen
{
	my @sql;
	foreach my $k (sort keys %seen)
	{
		my ($classid, $objid, $objsubid) = split / /, $k;
		push @sql, $objsubid == 1
		  ? "SELECT pg_advisory_lock((${classid}::bigint << 32) | ${objid}::bigint)"
		  : "SELECT pg_advisory_lock(${classid}::bigint::bit(32)::int, ${objid}::bigint::bit(32)::int)";
	}
	return @sql;
}

# --- row and table locks a reader may not take ------------------------------

# Run by the role itself: every row lock on every table and view of
# publish, and every table lock but ACCESS SHARE; what was not refused
# with 42501 is listed.
my $try_locks = <<'SQL';
CREATE TEMP TABLE tried (what text, sqlstate text);
DO $$
DECLARE
	rel  text;
	mode text;
	stmt text;
BEGIN
	FOR rel IN SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
	            WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind IN ('r', 'v', 'p')
	            ORDER BY 1 LOOP
		FOREACH mode IN ARRAY ARRAY['UPDATE', 'NO KEY UPDATE', 'SHARE', 'KEY SHARE'] LOOP
			stmt := format('SELECT 1 FROM %s LIMIT 1 FOR %s', rel, mode);
			BEGIN
				EXECUTE stmt;
				INSERT INTO tried VALUES (stmt, 'ok');
			EXCEPTION WHEN OTHERS THEN
				INSERT INTO tried VALUES (stmt, SQLSTATE);
			END;
		END LOOP;
		FOREACH mode IN ARRAY ARRAY['ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE',
		                            'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE'] LOOP
			stmt := format('LOCK TABLE %s IN %s MODE', rel, mode);
			BEGIN
				EXECUTE stmt;
				INSERT INTO tried VALUES (stmt, 'ok');
			EXCEPTION WHEN OTHERS THEN
				INSERT INTO tried VALUES (stmt, SQLSTATE);
			END;
		END LOOP;
	END LOOP;
END
$$;
SELECT (SELECT count(*) FROM tried) || ' tried; not refused: '
       || coalesce((SELECT string_agg(what || ' -> ' || sqlstate, '; ') FROM tried WHERE sqlstate <> '42501'), 'none');
SQL

# --- each role holds every lock it can while a publish runs -----------------

my @rounds = ([ 'tap_viewer', 2 ], [ 'tap_nobody', 3 ]);
foreach my $round (@rounds)
{
	my ($role, $n) = @$round;
	my $label = $role eq 'tap_viewer' ? 'publish_viewer' : 'a role with no grants';
	my $s = $node->background_psql($db, extra_params => [ '-U', $role ]);
	is($s->query_safe('SELECT current_user'), $role, "$label: a session of its own");

	like($s->query_safe($try_locks), qr/^[1-9]\d* tried; not refused: none$/,
		"$label: every row lock and every table lock but ACCESS SHARE on publish is refused (42501)");
	$s->query_safe('DROP TABLE tried');

	my $vid = version_id($n);
	my $pid = q1("SELECT id FROM publish.projects WHERE slug = 'campus'");
	$s->query_safe('BEGIN');
	$s->query_safe($_) foreach lock_seen();
	$s->query_safe("SELECT pg_advisory_lock(1886741100, hashtext('$vid'))");
	$s->query_safe("SELECT pg_advisory_lock(1886741102, hashtext('$pid' || '/' || 'production'))");
	if ($role eq 'tap_viewer')
	{
		# the viewer may read the version and project ids itself, and
		# ACCESS SHARE every relation it may read
		is( $s->query_safe(
				"SELECT count(*) FROM (SELECT pg_advisory_lock(1886741100, hashtext(v.id::text)),"
				  . "                           pg_advisory_lock(1886741102, hashtext(p.id || '/' || 'production'))"
				  . "  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id"
				  . " WHERE p.slug = 'campus' AND v.version_number = $n) AS locked"),
			'1', "$label: takes the version's and the project's keys from what it reads");
		$s->query_safe(
			"DO \$\$ DECLARE r text; BEGIN"
			  . " FOR r IN SELECT c.oid::regclass::text FROM pg_catalog.pg_class c"
			  . "  WHERE c.relnamespace = 'publish'::regnamespace AND c.relkind IN ('r', 'v', 'p')"
			  . "    AND has_table_privilege(c.oid, 'SELECT') LOOP"
			  . "  EXECUTE format('LOCK TABLE %s IN ACCESS SHARE MODE', r);"
			  . " END LOOP; END \$\$");
	}

	# the job's key is taken before the job's commit, before any worker
	# can claim it; publish_version must not wait for any of these
	my $q = $node->background_psql($db, on_error_stop => 0);
	$q->query_safe("SET statement_timeout = '10s'");
	$q->query_safe('BEGIN');
	my $j = $q->query("SELECT id FROM publish.publish_version('campus', $n, 'production')");
	if (!like($j, qr/^[0-9a-f-]{36}$/, "$label: publish_version returns while the locks are held"))
	{
		$q->quit;
		$s->quit;
		next;
	}
	$s->query_safe("SELECT pg_advisory_lock(1886741101, hashtext('$j'))");
	$q->query_safe('COMMIT');
	$q->quit;

	my $held = q1("SELECT count(*) FILTER (WHERE l.locktype = 'advisory') || ' advisory, '"
		  . " || count(*) FILTER (WHERE l.locktype = 'relation' AND l.mode = 'AccessShareLock') || ' relations'"
		  . " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
		  . " WHERE a.usename = '$role' AND l.granted");
	like($held, qr/^[1-9]\d* advisory, \d+ relations$/, "$label holds its locks ($held)");

	is(wait_job($j), 'completed|', "$label: while it holds them, the publish of v$n completes");
	is(q1("SELECT version FROM publish.releases WHERE project = 'campus' AND env = 'production'"),
		$n, "$label: v$n is live");
	is(q1("SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')"),
		'0', "$label: no job is left queued or running");
	$s->query_safe('ROLLBACK');
	$s->quit;
}

$node->stop;
done_testing();
