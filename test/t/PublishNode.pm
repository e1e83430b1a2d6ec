# PublishNode: what every Perl TAP test of publish starts with, a node with
# publish preloaded (1 worker per database, a 30 s sweep, a 1 s restart
# delay, prepared transactions allowed).  Extra postgresql.conf lines come
# after these, so they win.
#
#   my $node = publish_node('name', conf => "publish.max_attempts = 1\n",
#                           init => { allows_streaming => 1 });
#
# publish_sample: in database db, the extension, a file:// target
# 'production' in a new directory (returned) holding the demo's tiles, and
# the demo's sample project (campus); two checks, 'tiles' and 'sample
# project'.
#
#   my $storage = publish_sample($node, 'postgres', $ENV{PUBLISH_DEMO_DIR});
#
# gdb_attach: gdb attached to a server process with a breakpoint, for tests
# that must stop a process at an exact point (t/012, t/013).  @DIR@ in the
# commands is a directory of the test's, for marker files.
#
#   my ($gdb, $dir, $err) = gdb_attach($pid, "break kill\ncommands\nshell touch @DIR@/hit\nend\n");
#   # $gdb undef: gdb could not attach ($err says why)
package PublishNode;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Time::HiRes qw(usleep);

our @EXPORT = qw(publish_node publish_sample gdb_attach);

sub publish_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%{ $opt{init} // {} });
	$node->append_conf('postgresql.conf',
		    "shared_preload_libraries = 'publish'\n"
		  . "max_worker_processes = 32\n"
		  . "max_prepared_transactions = 10\n"
		  . "publish.sweep_interval = 30\n"
		  . "publish.launcher_restart_delay = 1\n"
		  . "publish.workers_per_database = 1\n"
		  . ($opt{conf} // ''));
	$node->start;
	return $node;
}

sub publish_sample
{
	my ($node, $db, $demo) = @_;
	my $storage = PostgreSQL::Test::Utils::tempdir();

	$node->safe_psql($db, 'CREATE EXTENSION publish');
	$node->safe_psql($db, "SELECT publish.set_storage_target('production', 'file://$storage')");
	PostgreSQL::Test::Utils::command_ok([ 'bash', "$demo/make_tiles.sh", $storage ], 'tiles');
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', "$demo/sample_project.sql" ],
		'sample project');
	return $storage;
}

# Starts gdb on pid with breakpoints (gdb commands), the server's signals
# passed through; returns once the breakpoints are set.
sub gdb_attach
{
	my ($pid, $breakpoints) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	$breakpoints =~ s/\@DIR\@/$dir/g;
	open(my $cmds, '>', "$dir/cmds") or die $!;
	print $cmds "set pagination off\nset confirm off\n"
	  . "handle SIGUSR1 SIGUSR2 SIGINT SIGALRM SIGURG SIGPIPE SIGTERM nostop noprint pass\n"
	  . $breakpoints
	  . "shell touch $dir/ready\ncontinue\n";
	close $cmds;
	my ($out, $err) = ('', '');
	my $gdb = IPC::Run::start([ 'gdb', '-batch', '-nx', '-p', $pid, '-x', "$dir/cmds" ], '>', \$out, '2>', \$err);
	my $deadline = time + 60;
	while (!-e "$dir/ready" && $gdb->pumpable && time < $deadline)
	{
		$gdb->pump_nb;
		usleep(50_000);
	}
	return ($gdb, $dir, '') if -e "$dir/ready";
	$gdb->kill_kill if $gdb->pumpable;
	return (undef, $dir, $err || 'gdb did not start');
}

1;
