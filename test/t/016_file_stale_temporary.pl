#!/usr/bin/perl
#
# 016_file_stale_temporary.pl: a temporary file that a killed writer left in
# a file:// target does not stay there forever.
#
# A worker killed between creating a temporary file
# ({name}.tmp-{pid}-{16 hex digits}) and renaming it into place leaves it
# behind.  Such files, of a pid no process has, are planted where a publish
# of campus v3 writes (beside its versioned copy, its release.json and a
# tile), and the publish must remove them: the first write of a process
# into a directory, and the first after any worker has exited, removes what
# dead writers left there.  Left alone are a file of
# the same pattern whose pid is alive (a writer at work), names of another
# pattern, and directories the job does not write into.
#
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use lib $FindBin::RealBin;
use PublishNode;
use Test::More;
use File::Path qw(make_path);
use POSIX ();

my $demo = $ENV{PUBLISH_DEMO_DIR}
  or plan skip_all => 'PUBLISH_DEMO_DIR is not set (run through scripts/test.sh)';

my $node = publish_node('stale_tmp');
my $storage = publish_sample($node, 'postgres', $demo);
my $dir = "$storage/production/campus";

# a pid that no process has: a child's, once it has exited and been reaped
my $dead = fork() // die "fork: $!";
POSIX::_exit(0) if $dead == 0;
waitpid($dead, 0);
ok(!kill(0, $dead), "pid $dead is gone");

my $hex = '0123456789abcdef';
my @stale = (
	"releases/v3.json.tmp-$dead-$hex",     # beside the versioned copy
	"release.json.tmp-$dead-$hex",         # beside release.json
	"tiles/v3/0/0/0.png.tmp-$dead-$hex",   # beside a tile
	"releases/v9.json.tmp-$dead-fedcba9876543210");    # another key's, same directory
my @kept = (
	"releases/v3.json.tmp-$$-$hex",        # its writer (this test) is alive
	"releases/v3.json.tmp-$dead",          # not the pattern: no random part
	"releases/v3.json.tmp-$dead-0123",     # nor this
	"releases/notes-$dead-$hex",           # nor this
	"../other/release.json.tmp-$dead-$hex");    # a directory the job does not write

sub plant
{
	for my $f (@_)
	{
		my $path = "$dir/$f";
		(my $parent = $path) =~ s{/[^/]*$}{};
		make_path($parent);
		open(my $fh, '>', $path) or die "$path: $!";
		print $fh "left behind\n";
		close($fh);
	}
}
plant(@stale, @kept);

sub publish_v3
{
	my ($what) = @_;
	my $job = $node->safe_psql('postgres',
		"SELECT (publish.publish_version('campus', 3, 'production')).id");
	$node->poll_query_until('postgres',
		"SELECT status IN ('completed', 'failed') FROM publish.job_queue WHERE id = '$job'")
	  or die 'the publish did not end';
	is($node->safe_psql('postgres', "SELECT status || coalesce(' ' || error, '') FROM publish.job_queue WHERE id = '$job'"),
		'completed', "campus v3 is published ($what)");
}

publish_v3('first');
ok(-f "$dir/tiles/v3/0/0/0.png" && -f "$dir/releases/v3.json", 'its tiles and versioned copy are in place');

ok(!-e "$dir/$_", "removed: $_") for @stale;
ok(-e "$dir/$_", "left alone: $_") for @kept;

# A process reads a directory for such files once, not at every write (a
# project's releases/ holds a file per version): with no writer gone
# since, the worker does not look again.
my @again = ("release.json.tmp-$dead-$hex", "releases/v3.json.tmp-$dead-$hex");
plant(@again);
publish_v3('again, no writer gone');
ok(-e "$dir/$_", "not looked for again: $_") for @again;

# Once a worker has exited (here the worker of another database), every
# process sweeps again, and the next publish removes them.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION publish');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'other'")
  or die 'no worker started in database other';
my $other = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'other'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($other)");
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $other")
  or die "worker $other did not exit";
publish_v3('after a worker exited');
ok(!-e "$dir/$_", "removed after a worker exit: $_") for @again;

$node->stop;
done_testing();
