# 024_dav_switch_atomic.pl: on WebDAV (nginx), a reader of release.json
# never finds it missing, short or anything but one of the releases while
# rollbacks switch it back and forth.  nginx writes a COPY into its
# destination in place (truncated first); publish copies to a temporary
# name beside release.json and renames it over release.json with a MOVE,
# which nginx makes a rename(2).
#
# Three reader processes GET release.json (8 MB, so that writing it in
# place takes a while) in a loop for as long as 24 rollbacks run, and count
# every answer that is not a 200 whose body is one of the two releases.
# Nothing is timed: the test counts what the readers saw.  Without the
# temporary name and the MOVE it failed in each of several runs here, but
# that depends on the machine; 44_rollback_remote.sql checks the requests.
#
# Needs the WebDAV test server (PUBLISH_SERVER_DAV_URL, scripts/test.sh).
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use HTTP::Tiny;
use Digest::SHA qw(sha256_hex);
use POSIX ();

my $dav_url = $ENV{PUBLISH_SERVER_DAV_URL};
plan skip_all => 'no WebDAV server (PUBLISH_SERVER_DAV_URL)' unless $dav_url;

my $node = publish_node('davswitch');
my $db = 'davswitch';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
sub q1 { return $node->safe_psql($db, $_[0]); }

my $base = "$dav_url/open/t023-$$-" . time;
q1("SELECT publish.set_storage_target('dav', '$base')");

# Two versions whose release.json is about 8 MB each (4,000 overlays with
# 2 kB of properties), different in every overlay.
q1(<<'SQL');
CREATE SCHEMA t;
CREATE FUNCTION t.make_version(p_n int) RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
	pid uuid;
	vid uuid;
BEGIN
	SELECT id INTO pid FROM publish.projects WHERE slug = 'big';
	IF pid IS NULL THEN
		INSERT INTO publish.projects (slug, name) VALUES ('big', 'Big') RETURNING id INTO pid;
	END IF;
	INSERT INTO publish.project_versions (project_id, version_number, status)
	VALUES (pid, p_n, 'ready') RETURNING id INTO vid;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT vid, 'm' || i, 'Marker ' || i, 'marker',
	       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.40 + i * 0.00001, 52.52)),
	       jsonb_build_object('version', p_n, 'text', repeat(md5(p_n || ':' || i), 64))
	  FROM generate_series(1, 4000) AS i;
END
$$;
SELECT t.make_version(1), t.make_version(2);
SQL

sub run_job
{
	my ($sql) = @_;
	my $id = q1($sql);
	$node->poll_query_until($db,
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.jobs WHERE id = '$id'")
	  or diag("job $id did not end");
	return q1("SELECT status || coalesce(': ' || error, '') FROM publish.jobs WHERE id = '$id'");
}

is(run_job("SELECT (publish.publish_version('big', 1, 'dav')).id"), 'completed', 'version 1 is published');
is(run_job("SELECT (publish.publish_version('big', 2, 'dav')).id"), 'completed', 'version 2 is published');
my %release = map { $_ => 1 } split /\n/,
  q1("SELECT release_sha256 FROM publish.release_history WHERE project = 'big' AND env = 'dav'");
is(scalar(keys %release), 2, 'the history has the two documents');
cmp_ok(length(HTTP::Tiny->new->get("$base/dav/big/release.json")->{content}), '>', 6_000_000,
	'release.json is several MB');

# The readers: GET until the stop file exists, then write what they saw
# (a body compared with the two releases' copies byte for byte).
my @doc = map { HTTP::Tiny->new->get("$base/dav/big/releases/v$_.json")->{content} } 1, 2;
is_deeply([ sort map { sha256_hex($_) } @doc ], [ sort keys %release ], 'the two copies are the two documents');
my $dir = PostgreSQL::Test::Utils::tempdir();
my $stop = "$dir/stop";
my @readers;
foreach my $reader (1 .. 3)
{
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
		my ($gets, $bad) = (0, 0);
		my %seen;
		until (-e $stop)
		{
			my $r = $http->get("$base/dav/big/release.json");
			$gets++;
			next if $r->{status} == 200 && ($r->{content} eq $doc[0] || $r->{content} eq $doc[1]);
			$bad++;
			$seen{ $r->{status} == 200 ? length($r->{content}) . ' bytes, not a release' : "status $r->{status}" }++;
		}
		open(my $f, '>', "$dir/reader$reader") or die;
		print $f "$gets $bad " . join(', ', map { "$_ x$seen{$_}" } sort keys %seen) . "\n";
		close($f);
		# not exit: the cluster's END block would stop the node from here
		POSIX::_exit(0);
	}
	push @readers, $pid;
}

my @ended;
push @ended, run_job("SELECT (publish.rollback('big', 'dav')).id") for 1 .. 24;
open(my $s, '>', $stop) or die;
close($s);
waitpid($_, 0) foreach @readers;
my ($gets, $bad, @seen) = (0, 0);
foreach my $reader (1 .. 3)
{
	my ($g, $b, $what) = split / /, slurp_file("$dir/reader$reader"), 3;
	chomp($what);
	$gets += $g;
	$bad += $b;
	push @seen, $what if $b;
}

is_deeply(\@ended, [('completed') x 24], '24 rollbacks back and forth complete');
cmp_ok($gets, '>', 24, "the readers read release.json meanwhile ($gets times)");
is($bad, 0, 'they always got one of the two releases, whole: never a 404, a short or a mixed document')
  or diag('what they got instead: ' . join('; ', @seen));

# the temporary names are gone
my $listing = HTTP::Tiny->new->request('PROPFIND', "$base/dav/big/", { headers => { Depth => 1 } });
SKIP:
{
	skip 'the server has no PROPFIND', 1 unless $listing->{status} == 207;
	unlike($listing->{content}, qr/\.tmp/, 'no temporary copy is left beside release.json');
}

done_testing();
