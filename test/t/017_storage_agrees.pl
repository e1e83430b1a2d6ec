#!/usr/bin/perl
#
# 017_storage_agrees.pl: outside a running step 5, the release.json on a
# target names the version that publish.releases names for that environment
# -- whatever happens to a publish between its steps, and between the switch
# of release.json and the job's final commit.
#
# Targets: file:// always; WebDAV (nginx) and S3 (s3rver behind the SigV4
# proxy) when scripts/test.sh started them and passed their settings as
# PUBLISH_SERVER_* (scripts/storage-servers.sh; otherwise those parts are
# skipped).  One project publishes to the three at once (three workers),
# each round a new version N over the live version M; every other version
# has a small tileset.  release.json is read back from storage: the file, or
# a GET from nginx or from s3rver itself.
#
#  (a) the workers are killed (SIGKILL, restart_after_crash) while the jobs
#      wait at each point between the steps (publish.pause_at: claimed,
#      validated, built, uploaded, marked, switched): after crash recovery
#      each job runs again and completes; with publish.max_attempts = 1
#      (uploaded, marked, switched) each fails as interrupted instead
#  (b) the final commit fails: a trigger on publish.project_versions
#      refuses the version (a prior live release: it is put back), and a
#      deferred trigger on publish.live_releases fails the COMMIT itself of
#      a first publish (release.json must be absent afterwards)
#  (c) a job waiting at "switched" is cancelled; another one waits there
#      past publish.job_timeout (past its last checkpoint, it completes);
#      a job killed at "switched" times out on its next attempt
#  (d) a job killed at "switched" waits, queued again, behind an older job
#      of another project: asked for again after another publish (which
#      supersedes a queued duplicate), then cancelled, it must still put the
#      live release back once it runs
#
# After each: the invariant on every target (release.json byte for byte the
# live version's immutable copy, or absent when nothing is live), each job
# completed or failed/cancelled with a reason, no job queued or running,
# the version statuses as the outcome says.
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use Time::HiRes qw(usleep);
use HTTP::Tiny;
use JSON::PP ();

my %srv = map { $_ => $ENV{ 'PUBLISH_SERVER_' . uc($_) } }
  qw(dav_url s3_endpoint s3rver_url s3_bucket s3_key_id s3_secret);

my $root = PostgreSQL::Test::Utils::tempdir();
my @envs = ('disk');
push @envs, 'dav' if $srv{dav_url};
push @envs, 's3' if $srv{s3_endpoint} && $srv{s3rver_url};
note('targets: ' . join(', ', @envs)
	  . (@envs < 3 ? ' (no PUBLISH_SERVER_* settings: run through scripts/test.sh for WebDAV and S3)' : ''));

my $node = publish_node('agree',
	conf => "publish.max_attempts = 3\n"
	  . "publish.workers_per_database = 3\n"
	  # PostgreSQL::Test::Cluster turns this off; a killed worker must
	  # restart the cluster.
	  . "restart_after_crash = on\n");
my $db = 'agree';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');

# every run has its own prefix on the shared servers
my $prefix = 't016-' . $$ . '-' . time;
my %target_url = (
	disk => "file://$root",
	dav  => ($srv{dav_url} // '') . "/open/$prefix",
	s3   => 's3://' . ($srv{s3_bucket} // '') . "/$prefix");
my %read_url = (
	dav => ($srv{dav_url} // '') . "/open/$prefix",
	s3  => ($srv{s3rver_url} // '') . '/' . ($srv{s3_bucket} // '') . "/$prefix");
q1("SELECT publish.set_storage_target('disk', '$target_url{disk}')");
if (grep { $_ eq 'dav' } @envs)
{
	q1("SELECT publish.set_storage_target('dav', '$target_url{dav}')");
}
if (grep { $_ eq 's3' } @envs)
{
	q1("SELECT publish.set_storage_target('s3', '$target_url{s3}', "
		  . "jsonb_build_object('endpoint', '$srv{s3_endpoint}', 'region', 'eu-central-1'))");
	q1("SELECT publish.set_storage_credentials('s3', '$srv{s3_key_id}', '$srv{s3_secret}')");
}

# Versions: three markers; with tiles, a tileset of zooms 0-1 (5 tiles)
# whose build tiles are put on every target, through the extension's
# storage code.
q1(<<'SQL');
CREATE SCHEMA t;
CREATE FUNCTION t.tile(p_slug text, p_n int, z int, x int, y int)
RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$
	SELECT decode('89504e470d0a1a0a0000000d494844520000010000000100010300000066bc3a25'
	              '00000003504c5445f2efe9110a2f9b0000001f4944415478daedc1010d000000c2'
	              'a0f74f6d0e37a00000000000000000be0d2100000160e49d970000000049454e44'
	              'ae426082', 'hex')
	       || convert_to(format(E'%s v%s tile %s/%s/%s\n', p_slug, p_n, z, x, y), 'UTF8')
$$;
CREATE FUNCTION t.make_version(p_slug text, p_n int, p_tiles boolean)
RETURNS uuid LANGUAGE plpgsql
AS $$
DECLARE
	pid uuid;
	vid uuid;
	ts  uuid;
BEGIN
	SELECT id INTO pid FROM publish.projects WHERE slug = p_slug;
	IF pid IS NULL THEN
		INSERT INTO publish.projects (slug, name) VALUES (p_slug, 'Project ' || p_slug)
		RETURNING id INTO pid;
	END IF;
	INSERT INTO publish.project_versions (project_id, version_number, status)
	VALUES (pid, p_n, 'ready') RETURNING id INTO vid;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT vid, 'm' || i, 'Marker ' || i, 'marker',
	       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.40 + i * 0.001, 52.52)),
	       jsonb_build_object('version', p_n)
	  FROM generate_series(1, 3) AS i;
	IF p_tiles THEN
		INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom, bounds, source_path, built_at)
		VALUES (vid, 'png', 256, 0, 1, ARRAY[13.39, 52.51, 13.42, 52.53],
		        format('builds/%s/v%s/tiles', p_slug, p_n), now())
		RETURNING id INTO ts;
		INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
		SELECT ts, z, x, y, length(b), encode(sha256(b), 'hex')
		  FROM generate_series(0, 1) AS z, generate_series(0, (1 << z) - 1) AS x,
		       generate_series(0, (1 << z) - 1) AS y,
		       LATERAL (SELECT t.tile(p_slug, p_n, z, x, y) AS b) AS b;
		PERFORM publish._storage_put(e.env, format('builds/%s/v%s/tiles/%s/%s/%s.png', p_slug, p_n, tl.z, tl.x, tl.y),
		                             t.tile(p_slug, p_n, tl.z, tl.x, tl.y), 'image/png')
		   FROM publish.storage_targets e, publish.tiles tl WHERE tl.tileset_id = ts;
	END IF;
	RETURN vid;
END
$$;
SQL

# --- helpers ----------------------------------------------------------------

sub q1 { return $node->safe_psql($db, $_[0]); }

# The object at key on env's target: its bytes, or undef when there is none.
sub stored
{
	my ($env, $key) = @_;
	if ($env eq 'disk')
	{
		return -f "$root/$key" ? slurp_file("$root/$key") : undef;
	}
	my $r = HTTP::Tiny->new(timeout => 10)->get("$read_url{$env}/$key");
	return $r->{content} if $r->{success};
	return undef if $r->{status} == 404;
	die "GET $read_url{$env}/$key: $r->{status} $r->{reason}";
}

sub live_db
{
	my ($slug, $env) = @_;
	return q1("SELECT coalesce((SELECT version::text FROM publish.releases WHERE project = '$slug' AND env = '$env'), 'none')");
}

# The version release.json of env names ('none': there is none).
sub live_storage
{
	my ($slug, $env) = @_;
	my $doc = stored($env, "$env/$slug/release.json");
	return 'none' unless defined $doc;
	my $v = eval { JSON::PP::decode_json($doc)->{version} };
	return defined $v ? "$v" : 'unreadable';
}

# The invariant on env: release.json names the live version and is its
# immutable copy byte for byte (with its tiles, when it has some), or it is
# absent when nothing is live.
sub agrees
{
	my ($label, $slug, $env, $db_v) = @_;
	$db_v //= live_db($slug, $env);
	my $st_v = live_storage($slug, $env);
	my $ok = is($st_v, $db_v, "$label, $env: release.json names v$st_v, publish.releases v$db_v");
	if ($ok && $db_v ne 'none')
	{
		my $doc = stored($env, "$env/$slug/release.json");
		my $copy = stored($env, "$env/$slug/releases/v$db_v.json");
		ok(defined $copy && $copy eq $doc, "$label, $env: ... byte for byte releases/v$db_v.json");
		my $doc_tiles = JSON::PP::decode_json($doc)->{tileset};
		if ($doc_tiles)
		{
			ok(defined stored($env, "$env/$slug/tiles/v$db_v/1/1/1.png"),
				"$label, $env: ... and its tiles are there");
		}
	}
	return $ok;
}

# The invariant, or a job of slug and env that switched release.json is
# still queued or running to put it back (the job's step 5 is not over).
sub agrees_or_pending
{
	my ($label, $slug, $env) = @_;
	my $pending = q1("SELECT count(*) FROM publish.job_queue j JOIN publish.projects p ON p.id = j.project_id"
		  . " WHERE p.slug = '$slug' AND j.env = '$env' AND j.switched AND j.status IN ('queued', 'running')");
	my ($db_v, $st_v) = (live_db($slug, $env), live_storage($slug, $env));
	ok($st_v eq $db_v || $pending > 0,
		"$label, $env: release.json (v$st_v) agrees with publish.releases (v$db_v), or a job that switched it is still to run ($pending)");
}

sub set_conf
{
	my (%set) = @_;
	q1(join('', map { "ALTER SYSTEM SET $_ = '$set{$_}';\n" } sort keys %set) . 'SELECT pg_reload_conf()');
	# a new session has what the postmaster read, which it has passed on
	# to the workers by then
	my $cond = join(' AND ', map { "current_setting('$_') = '$set{$_}'" } sort keys %set);
	$node->poll_query_until($db, "SELECT $cond") or diag("settings not in effect: $cond");
}

sub pause_at { set_conf('publish.pause_at' => $_[0]); }

# Queues publishes of version n of slug to the environments @on, in one
# transaction; returns their ids by environment.
sub queue
{
	my ($slug, $n, @on) = @_;
	my $arr = join(', ', map { "'$_'" } @on);
	return { map { split / / } split /\n/,
		  q1("SELECT e || ' ' || (publish.publish_version('$slug', $n, e)).id FROM unnest(ARRAY[$arr]) AS e") };
}

sub id_list { return join(', ', map { "'$_'" } values %{ $_[0] }); }

# Waits until each job runs attempt $attempt and its worker waits at $point.
sub wait_paused
{
	my ($jobs, $point, $attempt) = @_;
	my $n = scalar(keys %$jobs);
	my $ids = id_list($jobs);
	$node->poll_query_until($db,
		"SELECT (SELECT count(*) = $n FROM publish.job_queue WHERE id IN ($ids) AND status = 'running' AND attempts = $attempt)"
		  . " AND (SELECT count(*) >= $n FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at $point')")
	  or diag("jobs not waiting at $point, attempt $attempt: "
		  . q1("SELECT string_agg(env || ' ' || status || ' ' || attempts, '; ') FROM publish.job_queue WHERE id IN ($ids)"));
}

sub wait_ended
{
	my ($jobs) = @_;
	my $ids = id_list($jobs);
	my $n = scalar(keys %$jobs);
	$node->poll_query_until($db,
		"SELECT count(*) = $n FROM publish.job_queue WHERE id IN ($ids) AND status IN ('completed', 'failed', 'cancelled')")
	  or diag('jobs did not end: '
		  . q1("SELECT string_agg(env || ' ' || status || ' ' || attempts, '; ') FROM publish.job_queue WHERE id IN ($ids)"));
}

# How each job ended, by environment: {end => 'status|attempts|error',
# live => the version publish.releases names there ('none'), warn => its warn
# log lines}.
sub ends
{
	my ($jobs) = @_;
	my %r;
	my $ids = id_list($jobs);
	my $out = q1(
		"SELECT concat_ws(chr(31), j.env,"
		  . "   j.status || '|' || j.attempts || '|' || coalesce(j.error, ''),"
		  . "   coalesce((SELECT v.version_number::text FROM publish.live_releases r"
		  . "               JOIN publish.project_versions v ON v.id = r.version_id"
		  . "              WHERE r.project_id = j.project_id AND r.env = j.env), 'none'),"
		  . "   coalesce((SELECT string_agg(l.message, ' / ' ORDER BY l.id) FROM publish.job_log l"
		  . "              WHERE l.job_id = j.id AND l.level = 'warn'), ''))"
		  . " || chr(30) FROM publish.job_queue j WHERE j.id IN ($ids)");
	foreach my $row (split /\x1e\n?/, $out)
	{
		my ($env, $end, $live, $warn) = split /\x1f/, $row, 4;
		$r{$env} = { end => $end, live => $live, warn => $warn // '' };
	}
	return \%r;
}

# The version publish.releases names in each environment of slug ('none').
sub lives
{
	my ($slug) = @_;
	my %r = map { $_ => 'none' } @envs;
	foreach my $row (split /\n/, q1("SELECT env || ' ' || version FROM publish.releases WHERE project = '$slug'"))
	{
		my ($env, $v) = split / /, $row;
		$r{$env} = $v;
	}
	return \%r;
}

# After the jobs (by environment) that published v$n of slug over the
# versions live before ($before): each ended as $end_re says; v$n is live
# where its job completed, the version live before elsewhere; with put_back,
# the job's log says it put the live release back; the invariant holds on
# every target; v$n is published if a job completed, else still ready; no
# job is left queued or running.
sub check_round
{
	my ($label, $slug, $jobs, $n, $before, $end_re, %opt) = @_;
	my $e = ends($jobs);
	my $completed = 0;
	foreach my $env (sort keys %$jobs)
	{
		my $r = $e->{$env};
		like($r->{end}, $end_re, "$label, $env: the job ended as expected");
		my $done = $r->{end} =~ /^completed/;
		$completed ||= $done;
		my $want = $done ? $n : $before->{$env};
		is($r->{live}, $want, "$label, $env: v$want is live");
		if ($opt{put_back})
		{
			like($r->{warn},
				$before->{$env} eq 'none'
				? qr/Removed \Q$env\/$slug\/release.json\E: no release is live/
				: qr/Put \Q$env\/$slug\/release.json\E back to version $before->{$env}/,
				"$label, $env: the job put the live release back");
		}
		agrees($label, $slug, $env, $r->{live});
	}
	is( q1("SELECT v.status || ' ' || (SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running'))"
			  . " FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id"
			  . " WHERE p.slug = '$slug' AND v.version_number = $n"),
		($completed ? 'published' : 'ready') . ' 0',
		"$label: v$n is " . ($completed ? 'published' : 'still ready') . ', no job is left queued or running');
}

sub job_end
{
	my ($id) = @_;
	return q1("SELECT status || '|' || attempts || '|' || coalesce(error, '') FROM publish.job_queue WHERE id = '$id'");
}

sub nothing_left
{
	my ($label) = @_;
	is(q1("SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')"), '0',
		"$label: no job is left queued or running");
}

# SIGKILL to every worker of the database; returns once the server went
# through crash recovery and accepts connections again.
sub kill_workers
{
	my ($label) = @_;
	my $offset = -s $node->logfile;
	my @pids = split /\n/,
	  q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
	# the first kill starts the crash restart, which may end the others
	# before their own SIGKILL reaches them
	cmp_ok(kill('KILL', @pids), '>=', 1, "$label: SIGKILL sent to the workers (@pids)");
	for (my $i = 0; $i < 600; $i++)
	{
		last if substr(slurp_file($node->logfile), $offset) =~ /all server processes terminated; reinitializing.*database system is ready to accept connections/s;
		usleep(100_000);
	}
	like(substr(slurp_file($node->logfile), $offset),
		qr/all server processes terminated; reinitializing.*database system is ready to accept connections/s,
		"$label: the server went through crash recovery");
}

my $slug = 'agree';
my $next = 1;

sub new_version
{
	my $n = $next++;
	q1("SELECT t.make_version('$slug', $n, " . ($n % 2 ? 'true' : 'false') . ')');
	return $n;
}

# --- a first live release on every target ---------------------------------------

my $v = new_version();
my $jobs = queue($slug, $v, @envs);
wait_ended($jobs);
check_round('first release', $slug, $jobs, $v, { map { $_ => 'none' } @envs }, qr/^completed\|1\|$/);

# --- (a) the workers killed at each point -----------------------------------

# point, publish.max_attempts, expected end
my @rounds = (
	[ 'claimed',   3, 'completed' ],
	[ 'validated', 3, 'completed' ],
	[ 'built',     3, 'completed' ],
	[ 'uploaded',  3, 'completed' ],
	[ 'marked',    3, 'completed' ],
	[ 'switched',  3, 'completed' ],
	[ 'uploaded',  1, 'failed' ],
	[ 'marked',    1, 'failed' ],
	[ 'switched',  1, 'failed' ]);
foreach my $round (@rounds)
{
	my ($point, $max, $expect) = @$round;
	my $label = "(a) killed at $point, max_attempts $max";
	my $before = lives($slug);
	my $n = new_version();

	set_conf('publish.max_attempts' => $max, 'publish.pause_at' => $point);
	$jobs = queue($slug, $n, @envs);
	wait_paused($jobs, $point, 1);
	kill_workers($label);
	if ($expect eq 'completed')
	{
		# queued again, claimed again, held at the same point
		wait_paused($jobs, $point, 2);
		pause_at('');
		wait_ended($jobs);
		check_round($label, $slug, $jobs, $n, $before, qr/^completed\|2\|$/);
	}
	else
	{
		# past the switch, queued again to put the live release back
		wait_ended($jobs);
		pause_at('');
		check_round($label, $slug, $jobs, $n, $before, qr/^failed\|\d+\|interrupted: /,
			put_back => $point ne 'uploaded');
	}
}
set_conf('publish.max_attempts' => 3);

# --- (b) the final commit fails ---------------------------------------------

{
	my $label = '(b) the version refused in the final transaction';
	my $before = lives($slug);
	my $n = new_version();
	q1(<<"SQL");
CREATE FUNCTION t.refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	RAISE EXCEPTION 'site rule: version % may not go live', NEW.version_number;
END
\$\$;
CREATE TRIGGER refuse BEFORE UPDATE ON publish.project_versions FOR EACH ROW
	WHEN (NEW.version_number = $n AND NEW.status = 'published') EXECUTE FUNCTION t.refuse();
SQL
	$jobs = queue($slug, $n, @envs);
	wait_ended($jobs);
	check_round($label, $slug, $jobs, $n, $before, qr/^failed\|1\|site rule: version $n may not go live/,
		put_back => 1);
	q1('DROP TRIGGER refuse ON publish.project_versions');
}

{
	my $label = '(b) a first publish whose COMMIT fails';
	q1("SELECT t.make_version('first', 1, true)");
	q1(<<'SQL');
CREATE FUNCTION t.refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'site rule, checked at commit: no live release of this version';
END
$$;
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON publish.live_releases
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION t.refuse_at_commit();
SQL
	$jobs = queue('first', 1, @envs);
	wait_ended($jobs);
	# release.json absent: nothing is live
	check_round($label, 'first', $jobs, 1, { map { $_ => 'none' } @envs },
		qr/^failed\|1\|site rule, checked at commit/, put_back => 1);
	q1('DROP TRIGGER refuse_at_commit ON publish.live_releases');
}

# --- (c) cancelled, and timed out, after the switch ---------------------------

{
	my $label = '(c) cancelled at switched';
	my $before = lives($slug);
	my $n = new_version();
	pause_at('switched');
	$jobs = queue($slug, $n, @envs);
	wait_paused($jobs, 'switched', 1);
	is(live_storage($slug, $envs[0]), $n, "$label: release.json was switched");
	q1(join(";\n", map { "SELECT publish.cancel_job('$_')" } values %$jobs));
	wait_ended($jobs);
	pause_at('');
	check_round($label, $slug, $jobs, $n, $before, qr/^cancelled\|1\|cancelled/, put_back => 1);
}

{
	my $label = '(c) past publish.job_timeout at switched';
	my $before = lives($slug);
	my $n = new_version();
	set_conf('publish.job_timeout' => '4s', 'publish.pause_at' => 'switched');
	$jobs = queue($slug, $n, @envs);
	my $ids = id_list($jobs);
	# (a loaded machine may take the steps past the timeout: then the jobs
	# fail before the switch, which must hold the invariant as well)
	$node->poll_query_until($db,
		"SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at switched')"
		  . " + (SELECT count(*) FROM publish.job_queue WHERE id IN ($ids) AND status <> 'running') = " . scalar(@envs));
	$node->poll_query_until($db,
		"SELECT bool_and(status <> 'running' OR clock_timestamp() > started_at + interval '5 s') FROM publish.job_queue WHERE id IN ($ids)");
	set_conf('publish.job_timeout' => '1h', 'publish.pause_at' => '');
	wait_ended($jobs);
	# past its last checkpoint, a switched job is recorded as it is
	check_round($label, $slug, $jobs, $n, $before, qr/^(completed\|1\|$|failed\|1\|timed out)/);
}

{
	my $label = '(c) killed after the switch, timed out on the next attempt';
	my $before = lives($slug);
	my $n = new_version();
	pause_at('switched');
	$jobs = queue($slug, $n, @envs);
	wait_paused($jobs, 'switched', 1);
	set_conf('publish.job_timeout' => '3s');
	# step 1 reads the overlays, putting the live release back does not: a
	# prepared transaction keeps them locked across the crash, so the next
	# attempt waits in step 1 until its deadline
	q1("BEGIN; LOCK TABLE publish.overlays IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'overlays'");
	kill_workers($label);
	wait_ended($jobs);
	q1("ROLLBACK PREPARED 'overlays'");
	set_conf('publish.job_timeout' => '1h', 'publish.pause_at' => '');
	check_round($label, $slug, $jobs, $n, $before, qr/^failed\|2\|timed out/, put_back => 1);
}

# --- (d) a switched job queued again behind an older job ------------------------

{
	my $label = '(d) queued again after the switch';
	my $env = 'disk';
	set_conf('publish.workers_per_database' => 1);
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'")
	  or diag('more than one worker');
	my $m = live_db($slug, $env);
	my $n = new_version();
	pause_at('switched');
	my $j = queue($slug, $n, $env);
	wait_paused($j, 'switched', 1);
	# an older job of another project: it is claimed first after the crash
	q1("SELECT t.make_version('other', 1, false)");
	my $x = queue('other', 1, $env);
	q1("UPDATE publish.job_queue SET created_at = (SELECT created_at - interval '1 s' FROM publish.job_queue WHERE id = '$j->{$env}')"
		  . " WHERE id = '$x->{$env}'");
	kill_workers($label);
	wait_paused($x, 'switched', 1);
	is(q1("SELECT status || ' ' || switched FROM publish.job_queue WHERE id = '$j->{$env}'"), 'queued true',
		"$label: the switched job waits, queued again");
	agrees_or_pending("$label, before anything else", $slug, $env);

	# another publish after it, then the same again: a queued duplicate
	# would be superseded
	my $k = queue($slug, $m, $env);
	my $again = queue($slug, $n, $env);
	agrees_or_pending("$label, the same publish asked for again", $slug, $env);
	q1("SELECT publish.cancel_job('$j->{$env}')");
	agrees_or_pending("$label, cancelled", $slug, $env);

	pause_at('');
	wait_ended({ %$x, j => $j->{$env}, k => $k->{$env}, again => $again->{$env} });
	like(job_end($j->{$env}), qr/^cancelled\|2\|/, "$label: the switched job ended cancelled on its next attempt");
	like(q1("SELECT string_agg(message, ' | ' ORDER BY id) FROM publish.job_log WHERE job_id = '$j->{$env}' AND level = 'warn'"),
		qr/Put $env\/$slug\/release.json back to version $m/, "$label: ... once it had put the live release back");
	is(job_end($k->{$env}), 'completed|1|', "$label: the publish asked for after it completed");
	is(job_end($again->{$env}), 'completed|1|', "$label: the one asked for last completed");
	is(job_end($x->{$env}), 'completed|1|', "$label: the older job completed");
	is(live_db($slug, $env), $n, "$label: v$n, asked for last, is live");
	agrees($label, $slug, $env);
	agrees($label, 'other', $env);
	nothing_left($label);
}

$node->stop;
done_testing();
