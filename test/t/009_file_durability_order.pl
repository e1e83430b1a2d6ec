#!/usr/bin/perl
#
# 009_file_durability_order.pl: the file:// target's syncs come in an order
# that survives a crash of the machine at any point.  A crash of the machine
# cannot be made in a test, so the worker's file-system calls are traced
# (strace) during real publishes and the order checked:
#
#  (a) a .json file is renamed into place (or linked) only after its data
#      was fsync'd: a reader never sees a partial release.json
#  (b) release.json is switched only after the tiles it points at were
#      made durable (syncfs; where there is none, each tile's data is
#      fsync'd before its rename)
#  (c) every directory whose entries changed (mkdir, rename, link) is
#      fsync'd (or covered by a syncfs) before the final commit's WAL flush:
#      once publish.releases says a release is live, its files are on disk
#
# Run for a project's first publish to a new environment (its directories
# made), with tiles (the syncfs path) and without (the directory fsyncs), for
# a publish over an existing release.json, for one whose final commit fails
# after the switch (release.json put back), and for several jobs queued at
# once: (a)-(c) hold for each of them.  Skipped where strace may not attach
# to the worker (ptrace restricted by kernel.yama.ptrace_scope).
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use IPC::Run;
use File::Basename qw(dirname);

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';
plan skip_all => 'strace is not installed (scripts/install-deps.sh)'
  unless system('strace -V >/dev/null 2>&1') == 0;

my $storage = PostgreSQL::Test::Utils::tempdir();
command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles written');

# fsync on (PostgreSQL::Test::Cluster turns it off, and then publish makes
# no sync calls either); the final commit's flush made by the worker itself,
# not by the WAL writer
my $node = publish_node('durability',
	conf => "fsync = on\nwal_sync_method = fdatasync\nwal_writer_delay = 10s\n");
my $db = 'durdb';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr($db),
		'-f', "$demo/sample_project.sql"
	],
	'sample project loaded');
# a project without tiles: version 3's overlays, no tileset
$node->safe_psql($db, q{
	INSERT INTO publish.projects (slug, name) VALUES ('plain', 'Plain');
	INSERT INTO publish.project_versions (project_id, version_number, status)
	SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'plain';
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
	       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4, 52.5)), '{}'
	  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id,
	       generate_series(1, 5) i
	 WHERE p.slug = 'plain';
});

my $worker = $node->safe_psql($db,
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$db'");
like($worker, qr/^\d+$/, 'the worker runs');

my $traces = 0;

# Publishes each [slug, version, env] (enqueued in one transaction) with the
# worker traced, checks that each job ends as $expect says (the start of
# "status error"), and returns the trace's lines.
sub traced_publish_all
{
	my ($expect, @jobs) = @_;
	my $trace = "$storage/../strace-" . ++$traces . ".txt";
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'strace', '-y', '-s', '4096', '-o', $trace, '-p', $worker,
			'-e', 'trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,link,linkat,mkdir,mkdirat,openat'
		],
		'>', \$out, '2>', \$err);
	# wait until strace is attached
	my $deadline = time + 30;
	while ($err !~ /attached/ && time < $deadline)
	{
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	my $ids = $node->safe_psql($db,
		"SELECT string_agg(quote_literal(id), ',') FROM ("
		  . join(' UNION ALL ', map { "SELECT (publish.publish_version('$_->[0]', $_->[1], '$_->[2]')).id" } @jobs)
		  . ") j");
	$node->poll_query_until($db,
		"SELECT bool_and(status IN ('completed', 'failed')) FROM publish.job_queue WHERE id IN ($ids)");
	my $status = $node->safe_psql($db,
		"SELECT string_agg(DISTINCT status || coalesce(' ' || error, ''), '; ') FROM publish.job_queue WHERE id IN ($ids)");
	like($status, qr/^\Q$expect\E/, join(', ', map { "$_->[0] v$_->[1] to $_->[2]" } @jobs) . ": $expect");
	$h->signal('INT');
	$h->finish;
	open(my $fh, '<', $trace) or die "no trace: $!";
	my @lines = <$fh>;
	close($fh);
	return @lines;
}

sub traced_publish { return traced_publish_all('completed', [@_]); }

# Checks (a)-(c) on a trace of publishes under $root (the storage
# directory, which holds the targets' roots): every switch of release.json
# is followed by a WAL flush (the job's final commit) before
# which every changed directory was synced.  Returns the number of those
# flushes and of the syncs on storage.
sub check_order
{
	my ($what, $root, @lines) = @_;
	my %durable;		# path => its data is durable
	my %written;		# path => created, its data not yet synced
	my %changed;		# directory => entries changed since its last fsync
	my $tiles_unsynced = 0;
	my ($switched, $flushed, $after) = (0, 0, 0);
	my ($data_ok, $link_ok, $tiles_ok) = (1, 1, 1);
	my $storage_syncs = 0;
	my @bad;

	for my $l (@lines)
	{
		next unless $l =~ /= \d+(?:<[^>]*>)?$/;
		my @paths = $l =~ /"([^"]*)"/g;
		if ($l =~ /^fdatasync\(\d+<([^>]*)>/ && $1 =~ m{/pg_wal/})
		{
			# a final commit's flush, once release.json is switched
			next unless $switched;
			$flushed++;
			$switched = 0;
			$after = 0;
			push @bad, "not fsync'd before the final commit: " . join(', ', sort keys %changed)
			  if %changed;
			next;
		}
		next unless $l =~ /= 0$/ || $l =~ /^openat/;
		if ($l =~ /^(?:fsync|syncfs)\(\d+<([^>]*)>/)
		{
			my $p = $1;
			next unless index($p, $root) == 0;
			$storage_syncs++;
			$after++;
			if ($l =~ /^syncfs/)
			{
				%changed = ();
				$tiles_unsynced = 0;
				$durable{$_} = 1 for keys %durable, keys %written;
				%written = ();
				next;
			}
			delete $changed{$p};
			$durable{$p} = 1;
			delete $written{$p};
			next;
		}
		next unless @paths && index($paths[0], $root) == 0;
		if ($l =~ /^openat/)
		{
			# a file created (O_CREAT): its data is not durable yet
			if ($l =~ /O_CREAT/)
			{
				$written{ $paths[0] } = 1;
				delete $durable{ $paths[0] };
			}
			next;
		}
		$after++;
		if ($l =~ /^mkdir/)
		{
			$changed{ dirname($paths[0]) } = 1;
		}
		elsif ($l =~ /^rename/)
		{
			my ($from, $to) = @paths;
			$changed{ dirname($to) } = 1;
			if ($to =~ /\.json$/)
			{
				# a linked temporary name shares its source's durable data
				unless ($durable{$from})
				{
					$data_ok = 0;
					push @bad, "renamed before its data was fsync'd: $to";
				}
				$durable{$to} = 1;
				delete $durable{$from};
				if ($to =~ m{/release\.json$})
				{
					$switched++;
					if ($tiles_unsynced)
					{
						$tiles_ok = 0;
						push @bad, "release.json switched before the tiles were synced";
					}
				}
			}
			elsif (!$durable{$from})
			{
				$tiles_unsynced = 1;
			}
		}
		elsif ($l =~ /^link/)
		{
			my ($from, $to) = @paths;
			$changed{ dirname($to) } = 1;
			# a file this trace did not create is an earlier job's copy,
			# whose data that job synced before its final commit (an
			# undo's or a rollback's link to releases/vN.json)
			if ($durable{$from} || !$written{$from}) { $durable{$to} = 1; }
			else
			{
				$link_ok = 0;
				push @bad, "linked before its data was fsync'd: $from";
			}
		}
	}
	ok($flushed > 0, "$what: release.json was switched, and the final commit flushed");
	ok($data_ok && $link_ok, "$what: (a) json data synced before each rename or link");
	ok($tiles_ok, "$what: (b) tiles synced before release.json is switched");
	ok(!$switched, "$what: every switch was followed by a final commit's flush");
	ok(!grep(/not fsync'd/, @bad),
		"$what: (c) every changed directory synced before the final commit");
	is($after, 0, "$what: no storage call after the last final commit's flush");
	diag($_) for @bad;
	note("$what: $storage_syncs fsync/syncfs calls on storage, $flushed final flushes");
	return ($flushed, $storage_syncs);
}

# strace may attach to the worker (same user) unless ptrace is restricted
# (kernel.yama.ptrace_scope >= 1 allows only descendants)
my ($probe_out, $probe_err) = ('', '');
my $probe = IPC::Run::start([ 'strace', '-e', 'trace=none', '-p', $worker ],
	'>', \$probe_out, '2>', \$probe_err);
my $probe_deadline = time + 10;
while ($probe_err !~ /attached|not permitted|denied/i && $probe->pumpable && time < $probe_deadline)
{
	$probe->pump_nb;
	select(undef, undef, undef, 0.05);
}
$probe->signal('INT') if $probe->pumpable;
$probe->finish;
my $can_trace = $probe_err =~ /attached/;

SKIP:
{
	skip "strace cannot attach to the worker: $probe_err", 1 unless $can_trace;

	$node->safe_psql($db, "SELECT publish.set_storage_target('fresh', 'file://$storage/fresh-root')");
	$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");

	check_order('first publish, no tiles', $storage,
		traced_publish('plain', 1, 'fresh'));
	ok(-f "$storage/fresh-root/fresh/plain/release.json", 'release.json written');
	check_order('publish over an existing release.json', $storage,
		traced_publish('plain', 1, 'fresh'));
	# a publish whose final commit fails after the switch (a site's
	# trigger refuses the release): the undo copies the live version's
	# document back over release.json, and that copy, too, is synced
	# before its rename
	$node->safe_psql($db, q{
		INSERT INTO publish.project_versions (project_id, version_number, status)
		SELECT id, 2, 'ready' FROM publish.projects WHERE slug = 'plain';
		INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
		SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
		       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4, 52.5)), '{}'
		  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id,
		       generate_series(1, 3) i
		 WHERE p.slug = 'plain' AND v.version_number = 2;
		CREATE FUNCTION refuse_v2() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF (SELECT version_number FROM publish.project_versions WHERE id = NEW.version_id) = 2 THEN
				RAISE EXCEPTION 'test: version 2 is refused';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_v2 BEFORE INSERT OR UPDATE ON publish.live_releases
			FOR EACH ROW EXECUTE FUNCTION refuse_v2();
	});
	check_order('a failed final commit, undone', $storage,
		traced_publish_all('failed test: version 2 is refused', [ 'plain', 2, 'fresh' ]));
	is(slurp_file("$storage/fresh-root/fresh/plain/release.json"),
		slurp_file("$storage/fresh-root/fresh/plain/releases/v1.json"),
		'release.json is the live version 1 again');
	$node->safe_psql($db, 'DROP TRIGGER refuse_v2 ON publish.live_releases');

	check_order('first publish to the environment, with tiles', "$storage",
		traced_publish('campus', 3, 'production'));
	is(slurp_file("$storage/production/campus/release.json"),
		slurp_file("$storage/production/campus/releases/v3.json"),
		'release.json is the versioned copy');
	like(slurp_file("$storage/production/campus/release.json"), qr/"version"\s*:\s*3\b/,
		'release.json describes version 3');

	# six projects queued in one transaction
	$node->safe_psql($db, q{
		INSERT INTO publish.projects (slug, name) SELECT 'group-' || g, 'Group ' || g FROM generate_series(1, 6) g;
		INSERT INTO publish.project_versions (project_id, version_number, status)
		SELECT id, 1, 'ready' FROM publish.projects WHERE slug LIKE 'group-%';
		INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
		SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
		       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4, 52.5)), '{}'
		  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id,
		       generate_series(1, 5) i
		 WHERE p.slug LIKE 'group-%';
	});
	check_order('six first publishes queued at once', $storage,
		traced_publish_all('completed', map { [ "group-$_", 1, 'fresh' ] } 1 .. 6));
	for my $g (1 .. 6)
	{
		my $dir = "$storage/fresh-root/fresh/group-$g";
		ok(-f "$dir/release.json" && slurp_file("$dir/release.json") eq slurp_file("$dir/releases/v1.json"),
			"group-$g: release.json is its versioned copy");
	}
	my @left = glob("$storage/fresh-root/fresh/group-*/*.tmp-* $storage/fresh-root/fresh/group-*/releases/*.tmp-*");
	is(scalar(@left), 0, 'no temporary file is left');
}

$node->stop;
done_testing();
