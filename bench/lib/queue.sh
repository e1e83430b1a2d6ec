# shellcheck shell=bash
# The job queue as the queue benchmarks (pickup, throughput, deep_queue)
# watch it: the workers' CPU time and waiting for the queue to drain.
# They call the script's val (psql -tAc on its database $DB).

# workers_cpu: CPU time (ns, /proc/<pid>/schedstat) of the database's
# publish workers together
workers_cpu() {
	local t=0 p
	for p in $(val "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$DB'"); do
		t=$((t + $(cut -d' ' -f1 "/proc/$p/schedstat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# wait_drained TIMEOUT POLL [SINCE]: until no job (of those created at
# SINCE or later) is queued or running, looking every POLL seconds; fails
# after TIMEOUT seconds.  Each poll is a query on the server beside the
# workers, so each script keeps the interval its figures were taken with.
wait_drained() {
	local deadline=$((SECONDS + $1)) poll=$2 since=${3:-} left
	while :; do
		left=$(val "SELECT count(*) FROM publish.job_queue WHERE ${since:+created_at >= '$since' AND }status IN ('queued', 'running')")
		[ "$left" -eq 0 ] && return 0
		[ $SECONDS -lt $deadline ] || { echo "timed out: $left jobs left" >&2; return 1; }
		sleep "$poll"
	done
}
