# PublishNode: what every Perl TAP test of publish starts with, a node with
# publish preloaded (1 worker per database, a 30 s sweep, a 1 s restart
# delay, prepared transactions allowed).  Extra postgresql.conf lines come
# after these, so they win.
#
#   my $node = publish_node('name', conf => "publish.max_attempts = 1\n",
#                           init => { allows_streaming => 1 });
package PublishNode;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(publish_node);

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

1;
