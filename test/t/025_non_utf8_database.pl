#!/usr/bin/perl
#
# 025_non_utf8_database.pl: release.json is JSON, and JSON is UTF-8.  In a
# database whose encoding is LATIN1, text is stored in LATIN1: a version
# whose text is all ASCII (the same bytes in both) is published as usual,
# and one with other characters ("Café") is refused, by the preview and by
# the job alike, with SQLSTATE 22P05, instead of writing LATIN1 bytes into
# release.json.
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;

my $node = publish_node('latin1');
my $storage = PostgreSQL::Test::Utils::tempdir();

$node->safe_psql('postgres',
	"CREATE DATABASE lat ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
$node->safe_psql('lat', 'CREATE EXTENSION publish');
$node->safe_psql('lat', "SELECT publish.set_storage_target('production', 'file://$storage')");

# a project with one version of one overlay named by the SQL expression $name
sub make_project
{
	my ($slug, $name) = @_;
	$node->safe_psql('lat', qq{
		WITH p AS (INSERT INTO publish.projects (slug, name) VALUES ('$slug', 'Project $slug') RETURNING id),
		     v AS (INSERT INTO publish.project_versions (project_id, version_number, status)
		           SELECT id, 1, 'ready' FROM p RETURNING id)
		INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
		SELECT id, 'ov-1', $name, 'marker', '{"type": "Point", "coordinates": [13.4, 52.52]}', '{}' FROM v});
}

# the job's status and error once it has ended
sub publish_and_wait
{
	my ($slug) = @_;
	my $id = $node->safe_psql('lat', "SELECT id FROM publish.publish_version('$slug', 1, 'production')");
	$node->poll_query_until('lat',
		"SELECT status IN ('completed', 'failed', 'cancelled') FROM publish.jobs WHERE id = '$id'")
	  or die "job $id did not end";
	return split /\|/, $node->safe_psql('lat', "SELECT status, error FROM publish.jobs WHERE id = '$id'"), 2;
}

make_project('plain', "'Campus map'");
my ($status, $error) = publish_and_wait('plain');
is($status, 'completed', 'LATIN1 database, ASCII text: the publish completes');
my $doc = slurp_file("$storage/production/plain/release.json");
like($doc, qr/"name":\s*"Campus map"/, '... and release.json has the overlay');

make_project('accents', "'Caf' || chr(233)");	# é in LATIN1
my ($rc, $stdout, $stderr) = $node->psql('lat',
	"SET client_encoding = 'UTF8'; SET client_min_messages = error; "
	  . "\\set VERBOSITY verbose\nSELECT publish.build_release('accents', 1)");
isnt($rc, 0, 'text other than ASCII: build_release refuses it');
like($stderr, qr/22P05: release\.json would not be UTF-8: the database's encoding is LATIN1/,
	'... with SQLSTATE 22P05, naming the encoding');

($status, $error) = publish_and_wait('accents');
is($status, 'failed', '... and so does the job');
like($error, qr/release\.json would not be UTF-8/, '... for the same reason');
ok(!-e "$storage/production/accents/release.json", '... writing no release.json');

$node->stop;
done_testing();
