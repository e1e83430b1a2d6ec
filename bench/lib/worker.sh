# shellcheck shell=bash
# The database's publish worker as the tile benchmarks (tiles_publish,
# tiles_peers) watch it: which it is, a fresh one, its peak private memory.
# They call the script's q (psql -At -c on its database).

worker_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = current_database() LIMIT 1"; }

# fresh_worker: terminates the worker and waits for its successor (and half
# a second more, for it to settle); prints its pid.  A job's peak memory is
# then its own, not what an earlier job (a tile build's libvips) left.
fresh_worker() {
	local old new i
	old=$(worker_pid)
	if [ -n "$old" ]; then q "SELECT pg_terminate_backend($old)" >/dev/null; fi
	for i in $(seq 1 200); do
		new=$(worker_pid)
		if [ -n "$new" ] && [ "$new" != "$old" ]; then sleep 0.5; echo "$new"; return; fi
		sleep 0.1
	done
	echo "no publish worker started" >&2
	exit 1
}

# peak_anon PID STOP: samples PID's private memory (RssAnon: statm's
# resident less its shared pages) every 5 ms until the file STOP exists (or
# PID ends); prints the peak (kB).  Touches STOP.ready once it samples.
# Bash builtins only, one short line read a sample, at the lowest CPU
# priority: the sampling forks nothing and takes no CPU from the worker or
# the servers it measures.
peak_anon() {
	local pid=$1 stop=$2 peak=0 size res shared rest sfd
	renice -n 19 -p "$BASHPID" >/dev/null 2>&1 || true
	exec {sfd}<> <(:)
	touch "$stop.ready"
	while [ ! -e "$stop" ] && read -r size res shared rest 2>/dev/null <"/proc/$pid/statm"; do
		((res - shared > peak)) && peak=$((res - shared))
		read -r -t 0.005 -u "$sfd" _ || true
	done
	exec {sfd}>&-
	echo "$((peak * $(getconf PAGESIZE) / 1024))"
}
