# shellcheck shell=bash
# Helpers shared by demo.sh, test.sh and the benchmarks: install, build, and
# a private PostgreSQL 15 cluster (own data directory, port and socket
# directory, publish preloaded) that is stopped by its pid on exit.
#
# PostgreSQL refuses to run as root, so as root the server runs as the
# "postgres" user (created by the Debian package) in a directory it owns.

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# PUBLISH_PRIVATE_PG=DIR builds, installs and runs against a private copy of
# the PostgreSQL 15 installation under DIR (made on first use), so that two
# checkouts can be tested side by side without sharing $libdir.  PostgreSQL
# finds its share directory relative to its binaries, so the copy just works.
use_private_pg() {
	local dir=$1 src=/usr/lib/postgresql/15 share=/usr/share/postgresql/15 inc=/usr/include/postgresql
	if [ ! -x "$dir$src/bin/postgres" ]; then
		mkdir -p "$dir$src" "$dir$share"
		cp -a "$src/." "$dir$src/"
		cp -a "$share/." "$dir$share/"
	fi
	# extensions installed since the copy was made (pg_cron for t/023)
	cp -an "$src/lib/." "$dir$src/lib/"
	cp -an "$share/extension/." "$dir$share/extension/"
	# pg_config of the copy names headers under the copy too
	if [ ! -f "$dir$inc/15/server/postgres.h" ]; then
		mkdir -p "$dir$inc"
		cp -a "$inc/." "$dir$inc/"
	fi
	export PG_CONFIG=$dir$src/bin/pg_config
	export PATH=$dir$src/bin:$PATH
}

as_server_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# build_and_install [GROUP...]: installs the missing packages of the groups
# (scripts/install-deps.sh; all of them by default), then builds and installs
# the extension.
build_and_install() {
	bash "$ROOT_DIR/scripts/install-deps.sh" "$@"
	if [ -n "${PUBLISH_PRIVATE_PG:-}" ]; then use_private_pg "$PUBLISH_PRIVATE_PG"; fi
	export PG_CONFIG=${PG_CONFIG:-pg_config}
	PG_BIN=$("$PG_CONFIG" --bindir)
	export PG_BIN
	make -C "$ROOT_DIR" -s -j2 >/dev/null
	if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
		make -C "$ROOT_DIR" -s install >/dev/null
	else
		echo "cannot write $("$PG_CONFIG" --pkglibdir): run as root (or sudo make install) first" >&2
		exit 1
	fi
}

# cluster_start DIR PORT [postgresql.conf lines...]
# Creates (first time) and starts a cluster in DIR/data, socket in DIR.
cluster_start() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_server_user "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust \
			--no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
			|| { cat "$dir/initdb.log" >&2; return 1; }
	fi
	{
		echo "# written by scripts/lib.sh"
		echo "port = $port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'publish'"
		echo "max_worker_processes = 32"
		echo "fsync = on"
		echo "log_line_prefix = '%m [%p] %b '"
		for line in "$@"; do echo "$line"; done
	} | as_server_user tee "$dir/data/publish-cluster.conf" >/dev/null
	grep -q "^include 'publish-cluster.conf'" "$dir/data/postgresql.conf" \
		|| echo "include 'publish-cluster.conf'" | as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null
	as_server_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
		|| { tail -n 30 "$dir/server.log" >&2; return 1; }
	export PGHOST=$dir PGPORT=$port PGUSER=postgres
}

# cluster_stop DIR: stops the cluster by the pid in postmaster.pid.
cluster_stop() {
	local dir=$1 pid i
	[ -f "$dir/data/postmaster.pid" ] || return 0
	pid=$(head -n 1 "$dir/data/postmaster.pid")
	[ -n "$pid" ] || return 0
	kill -INT "$pid" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
