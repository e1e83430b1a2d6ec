#!/usr/bin/env bash
# bench/idle.sh: what an idle server with publish in BENCH_IDLE_DBS (10)
# databases costs: CPU time and wake-ups (context switches) of the publish
# launcher and workers over BENCH_IDLE_SECONDS (60), against PostgreSQL's own
# background processes.  Not a test.
#
#   bash bench/idle.sh                     # as root (~5.5 minutes)
#   BENCH_IDLE_SECONDS=60 bash bench/idle.sh
#   BENCH_IDLE_WITHOUT=1 bash bench/idle.sh  # the same server without publish
#                     (not preloaded, no extension): PostgreSQL's own idle cost,
#                     to compare the "all processes" rows of the two
#   BENCH_IDLE_BACKSTOP=300 bash bench/idle.sh  # publish.sweep_backstop = 300 s:
#                     one full sweep per database in a 300 s window, to measure
#                     what a full sweep costs
#
# Wake-ups are counted as voluntary context switches (/proc/<pid>/status):
# a process that sleeps on its latch makes one per wake-up.  CPU time is
# the time on the CPU from /proc/<pid>/schedstat (nanoseconds).
#
# An idle database's worker 0 wakes once per publish.sweep_backstop (an
# hour by default) for one full sweep (src/bgw/worker_sweep.c); nothing else
# wakes the workers but PostgreSQL's cache catch-up signal while there is
# invalidation traffic.  A window shorter than the backstop sees no full
# sweep (or one, depending on when the window falls): that is what an idle
# server costs between them.  BENCH_IDLE_BACKSTOP shortens the backstop to
# measure a full sweep's cost, from which the report projects the cost per
# hour at the default backstop.
# Writes bench/results/idle.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54452}
NDB=${BENCH_IDLE_DBS:-10}
SECS=${BENCH_IDLE_SECONDS:-300}
SETTLE=${BENCH_IDLE_SETTLE:-15}
OUT=$BENCH_DIR/results
mkdir -p "$OUT"

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-idle.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
WITHOUT=${BENCH_IDLE_WITHOUT:-}
if [ -n "$WITHOUT" ]; then
	cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning" "shared_preload_libraries = ''"
	WHAT="without publish (not preloaded)"
else
	if [ -n "${BENCH_IDLE_BACKSTOP:-}" ]; then
		cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning" \
			"publish.sweep_backstop = ${BENCH_IDLE_BACKSTOP}"
	else
		cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning"
	fi
	WHAT="with publish"
fi
for i in $(seq 1 "$NDB"); do
	psql -X -q -d postgres -c "CREATE DATABASE idle$i"
	if [ -n "$WITHOUT" ]; then
		# a database in use, as publish's workers make it: once a backend
		# has connected, autovacuum visits it every autovacuum_naptime
		psql -X -q -d "idle$i" -c "SELECT 1" >/dev/null
	else
		psql -X -q -d "idle$i" -c "CREATE EXTENSION publish"
	fi
done
if [ -z "$WITHOUT" ]; then
	SWEEP=$(psql -X -tA -d idle1 -c "SHOW publish.sweep_interval")
	BACKSTOP=$(psql -X -tA -d idle1 -c "SELECT setting FROM pg_settings WHERE name = 'publish.sweep_backstop'")
	WPD=$(psql -X -tA -d idle1 -c "SHOW publish.workers_per_database")
else
	SWEEP=30s BACKSTOP=3600 WPD=0
fi
PM=$(head -n 1 "$WORK/pg/data/postmaster.pid")
echo "== $NDB databases $WHAT; settling ${SETTLE}s, then measuring ${SECS}s"
sleep "$SETTLE"

# snapshot: "pid kind ticks ctxt" for every child of the postmaster
snapshot() {
	local pid kind
	for pid in $(pgrep -P "$PM"); do
		[ -r "/proc/$pid/stat" ] || continue
		kind=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed -e 's/^postgres: //' -e 's/ for database .*//' -e 's/ [0-9]* *$//' -e 's/ *$//')
		echo "$pid|$kind|$(awk '{print $1}' "/proc/$pid/schedstat")|$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status")"
	done
}
# CPU of the postmaster's children that exited (autovacuum workers, whose
# visits no snapshot catches): its cutime + cstime, in clock ticks
exited_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print ($16 + $17) * 1000 / hz }' "/proc/$PM/stat"; }
snapshot >"$WORK/s0"
X0=$(exited_ms)
sleep "$SECS"
snapshot >"$WORK/s1"
X1=$(exited_ms)

# per kind: processes, CPU ms, wake-ups per process per minute
join -t'|' <(sort "$WORK/s0") <(sort "$WORK/s1") | awk -F'|' -v secs="$SECS" '
	# joined: pid | kind | cpu_ns0 | switches0 | kind | cpu_ns1 | switches1
	{ k = $2; n[k]++; cpu[k] += ($6 - $3) / 1e6; cs[k] += $7 - $4 }
	END { for (k in n) printf "| %s | %d | %.1f | %.2f | %.1f |\n", k, n[k], cpu[k], cpu[k] / n[k] / (secs / 60), cs[k] / n[k] * 60 / secs }' \
	| sort >"$WORK/rows"
# the children that exited meanwhile, then all of them together
awk -v x="$(awk -v a="$X0" -v b="$X1" 'BEGIN { print b - a }')" -v secs="$SECS" 'BEGIN {
	printf "| processes that exited in the window (autovacuum workers) | | %.0f | %.2f | |\n", x, x / (secs / 60) }' >>"$WORK/rows"
awk -F'|' -v secs="$SECS" '{ n += $3; cpu += $4 } END { printf "| all processes (children of the postmaster) | %d | %.1f | %.2f | |\n", n, cpu, cpu / (secs / 60) }' "$WORK/rows" >>"$WORK/rows"
{
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), publish $(git -C "$ROOT_DIR" rev-parse --short HEAD), $(nproc) CPUs; $NDB databases $WHAT,"
	echo "publish.workers_per_database = $WPD, publish.sweep_interval = $SWEEP, publish.sweep_backstop = ${BACKSTOP}s;"
	echo "measured over $SECS s after ${SETTLE} s of settling."
	echo
	echo "| process | count | CPU ms in ${SECS} s (all of them together) | CPU ms per process per minute | wake-ups per process per minute |"
	echo "|---|---:|---:|---:|---:|"
	cat "$WORK/rows"
	echo
	echo "Wake-ups are voluntary context switches (each sleep that ends is one). An idle database's"
	echo "worker 0 wakes once per publish.sweep_backstop (${BACKSTOP} s) for a full sweep; its siblings do not wake."
	# a full sweep's cost, when the window holds one per database
	[ "$BACKSTOP" -gt "$SECS" ] || awk -F'|' -v secs="$SECS" -v backstop="$BACKSTOP" -v ndb="$NDB" '$2 ~ /publish worker/ {
		n = ndb * int(secs / backstop); per = $4 / n
		printf "Per full sweep of a worker 0: %.2f ms CPU (all publish workers'"'"' CPU over %d full sweeps, %d databases x %d s / %d s);\n", per, n, ndb, secs, backstop
		printf "at the default publish.sweep_backstop (1 h) that is %.2f ms of CPU per minute for the %d databases.\n", per * ndb / 60, ndb }' "$WORK/rows"
	echo "CPU time is the first field of /proc/<pid>/schedstat (nanoseconds on the CPU); that of processes"
	echo "that exited in the window is the postmaster's cutime + cstime (/proc/<pid>/stat, clock ticks of $((1000 / $(getconf CLK_TCK))) ms)."
} >"$OUT/idle.md"
cat "$OUT/idle.md"
