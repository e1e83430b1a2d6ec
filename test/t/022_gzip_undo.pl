# 022_gzip_undo.pl: release.json stored compressed (the target option
# "compress": "gzip") still agrees with publish.releases when a publish is
# undone after its switch, as 017_storage_agrees.pl checks for plain ones:
# the live version's immutable copy is put back with its Content-Encoding
# (S3), its bytes (WebDAV), and its .gz sibling (file://); with nothing
# live, both release.json and release.json.gz go.  What a reader gets
# after decompressing is the document whose sha256 the job reported.
#
# Targets: file:// always; WebDAV (nginx) and S3 (s3rver behind the SigV4
# proxy) when scripts/test.sh passed their settings (PUBLISH_SERVER_*).
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
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use Digest::SHA qw(sha256_hex);
use JSON::PP ();

my %srv = map { $_ => $ENV{ 'PUBLISH_SERVER_' . uc($_) } }
  qw(dav_url s3_endpoint s3rver_url s3_bucket s3_key_id s3_secret);

my $root = PostgreSQL::Test::Utils::tempdir();
my @envs = ('disk');
push @envs, 'dav' if $srv{dav_url};
push @envs, 's3' if $srv{s3_endpoint} && $srv{s3rver_url};
note('targets: ' . join(', ', @envs));

my $node = publish_node('gzip', conf => "publish.workers_per_database = 3\n");
my $db = 'gzip';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION publish');
sub q1 { return $node->safe_psql($db, $_[0]); }

my $prefix = 't021-' . $$ . '-' . time;
my %read_url = (
	dav => ($srv{dav_url} // '') . "/open/$prefix",
	s3  => ($srv{s3rver_url} // '') . '/' . ($srv{s3_bucket} // '') . "/$prefix");
q1("SELECT publish.set_storage_target('disk', 'file://$root', '{\"compress\": \"gzip\"}')");
q1("SELECT publish.set_storage_target('dav', '$read_url{dav}', '{\"compress\": \"gzip\"}')")
  if grep { $_ eq 'dav' } @envs;
if (grep { $_ eq 's3' } @envs)
{
	q1("SELECT publish.set_storage_target('s3', 's3://$srv{s3_bucket}/$prefix', "
		  . "jsonb_build_object('endpoint', '$srv{s3_endpoint}', 'compress', 'gzip'))");
	q1("SELECT publish.set_storage_credentials('s3', '$srv{s3_key_id}', '$srv{s3_secret}')");
}

# Projects with versions of 50 markers each (a document worth compressing).
q1(<<'SQL');
CREATE SCHEMA t;
CREATE FUNCTION t.make_version(p_slug text, p_n int) RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
	pid uuid;
	vid uuid;
BEGIN
	SELECT id INTO pid FROM publish.projects WHERE slug = p_slug;
	IF pid IS NULL THEN
		INSERT INTO publish.projects (slug, name) VALUES (p_slug, 'Project ' || p_slug) RETURNING id INTO pid;
	END IF;
	INSERT INTO publish.project_versions (project_id, version_number, status)
	VALUES (pid, p_n, 'ready') RETURNING id INTO vid;
	INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
	SELECT vid, 'm' || i, 'Marker ' || i, 'marker',
	       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.40 + i * 0.001, 52.52)),
	       jsonb_build_object('version', p_n)
	  FROM generate_series(1, 50) AS i;
END
$$;
SELECT t.make_version('gz', 1), t.make_version('gz', 2), t.make_version('gz-first', 1);
SQL

# What a reader of key on env gets: the document after decompression, and
# how it was stored ('gzip' header, '.gz' sibling, or 'plain'); undef when
# there is no such object.
sub fetch
{
	my ($env, $key) = @_;
	my ($raw, $how);
	if ($env eq 'disk')
	{
		return undef unless -f "$root/$key";
		my $plain = slurp_file("$root/$key");
		return ($plain, 'plain') unless -f "$root/$key.gz";
		my $gz = slurp_file("$root/$key.gz");
		my $doc;
		gunzip(\$gz => \$doc) or die "gunzip $key.gz: $GunzipError";
		return ($doc eq $plain ? $doc : "differs from $key.gz", '.gz');
	}
	my $r = HTTP::Tiny->new(timeout => 10)
	  ->get("$read_url{$env}/$key", { headers => { 'Accept-Encoding' => 'gzip' } });
	return undef if $r->{status} == 404;
	die "GET $read_url{$env}/$key: $r->{status} $r->{reason}" unless $r->{success};
	$raw = $r->{content};
	# nginx keeps no header with what it stores: the bytes say it
	$how = ($r->{headers}{'content-encoding'} // '') eq 'gzip' ? 'gzip'
	  : substr($raw, 0, 2) eq "\x1f\x8b" ? 'gzip bytes' : 'plain';
	return ($raw, $how) if $how eq 'plain';
	my $doc;
	gunzip(\$raw => \$doc) or die "gunzip $key: $GunzipError";
	return ($doc, $how);
}

my %stored_as = (disk => '.gz', dav => 'gzip bytes', s3 => 'gzip');

sub pause_at
{
	q1("ALTER SYSTEM SET publish.pause_at = '$_[0]'; SELECT pg_reload_conf()");
	$node->poll_query_until($db, "SELECT current_setting('publish.pause_at') = '$_[0]'")
	  or diag("publish.pause_at not set");
}

sub queue
{
	my ($slug, $n) = @_;
	my $arr = join(', ', map { "'$_'" } @envs);
	return { map { split / / } split /\n/,
		  q1("SELECT e || ' ' || (publish.publish_version('$slug', $n, e)).id FROM unnest(ARRAY[$arr]) AS e") };
}

sub wait_ended
{
	my ($jobs) = @_;
	my $ids = join(', ', map { "'$_'" } values %$jobs);
	my $n = scalar(keys %$jobs);
	$node->poll_query_until($db,
		"SELECT count(*) = $n FROM publish.job_queue WHERE id IN ($ids) AND status IN ('completed', 'failed', 'cancelled')")
	  or diag('jobs did not end');
}

# --- v1 published, compressed -------------------------------------------------
my $v1 = queue('gz', 1);
wait_ended($v1);
foreach my $env (@envs)
{
	my ($status, $sha, $bytes, $stored, $encoding) = split /\|/,
	  q1("SELECT status, result->>'release_sha256', result->>'release_bytes', result->>'release_stored_bytes',"
		  . " result->>'release_encoding' FROM publish.jobs WHERE id = '$v1->{$env}'");
	is($status, 'completed', "$env: v1 publishes with compress gzip");
	is($encoding, 'gzip', "$env: ... its result says the document is stored with gzip");
	cmp_ok($stored, '<', $bytes, "$env: ... in fewer bytes ($stored) than the document ($bytes)");
	my ($doc, $how) = fetch($env, "$env/gz/release.json");
	is($how, $stored_as{$env}, "$env: release.json is stored compressed ($stored_as{$env})");
	is(sha256_hex($doc // ''), $sha, "$env: ... and decompresses to the document whose sha256 the job reported");
	is(length($doc // ''), $bytes, "$env: ... of release_bytes bytes");
	my ($copy) = fetch($env, "$env/gz/releases/v1.json");
	is($copy, $doc, "$env: the immutable copy is the same document");
}

# --- v2 switched, then cancelled: v1 put back, still compressed -------------------
pause_at('switched');
my $v2 = queue('gz', 2);
my $ids = join(', ', map { "'$_'" } values %$v2);
my $n = scalar(@envs);
$node->poll_query_until($db,
	"SELECT count(*) >= $n FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at switched'")
  or diag('jobs not paused at switched');
foreach my $env (@envs)
{
	my ($doc) = fetch($env, "$env/gz/release.json");
	is(eval { JSON::PP::decode_json($doc)->{version} }, 2, "$env: while v2 waits after its switch, release.json names v2");
}
q1(join(";\n", map { "SELECT publish.cancel_job('$_')" } values %$v2));
pause_at('');
wait_ended($v2);
foreach my $env (@envs)
{
	is(q1("SELECT status FROM publish.jobs WHERE id = '$v2->{$env}'"), 'cancelled', "$env: v2 is cancelled after its switch");
	my ($doc, $how) = fetch($env, "$env/gz/release.json");
	my ($copy) = fetch($env, "$env/gz/releases/v1.json");
	is(eval { JSON::PP::decode_json($doc)->{version} }, 1, "$env: release.json names v1 again, as publish.releases does");
	is($doc, $copy, "$env: ... the live copy byte for byte once decompressed");
	is($how, $stored_as{$env}, "$env: ... and is still stored compressed ($stored_as{$env}), not mislabelled");
}
if (grep { $_ eq 's3' } @envs)
{
	my $r = HTTP::Tiny->new(timeout => 10)->head("$read_url{s3}/s3/gz/release.json");
	is($r->{headers}{'cache-control'}, 'no-cache', 's3: the release.json put back has the live Cache-Control');
}

# --- a first publish cancelled after its switch: nothing live, nothing left ---------
pause_at('switched');
my $first = queue('gz-first', 1);
$node->poll_query_until($db,
	"SELECT count(*) >= $n FROM pg_stat_activity WHERE backend_type = 'publish worker' AND query = 'publish: paused at switched'")
  or diag('jobs not paused at switched');
q1(join(";\n", map { "SELECT publish.cancel_job('$_')" } values %$first));
pause_at('');
wait_ended($first);
foreach my $env (@envs)
{
	my ($doc) = fetch($env, "$env/gz-first/release.json");
	ok(!defined $doc, "$env: a first publish undone leaves no release.json");
}
ok(!-e "$root/disk/gz-first/release.json.gz", 'disk: ... and no release.json.gz');

done_testing();
