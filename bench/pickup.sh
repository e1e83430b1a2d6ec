#!/usr/bin/env bash
# bench/pickup.sh: how soon a job starts after a client queues it, at a
# steady 100 durable publishes a second from one client, against the floor
# of the same run: a durable one-row INSERT at the same rate.  Not a test:
# it measures, and fails only when a job fails or never finishes.
#
# On a private cluster (default settings: fsync on, synchronous_commit on,
# publish.workers_per_database = 2), 50 projects of 20 overlays, each
# published to its own environment (50 file:// targets).  Each round runs,
# one after the other, with pgbench -c 1 -R BENCH_PICKUP_RATE (100) for
# BENCH_PICKUP_SECONDS (10):
#   floor    INSERT INTO bench_commit VALUES (1): its latency from pgbench's
#            per-transaction log (time − schedule lag: the statement and its
#            durable commit, as the client sees it);
#   publish  SELECT publish.publish_version(project k, 1, environment k),
#            k = 1..50 in turn: pickup = job_queue.started_at − created_at.
#            created_at is clock_timestamp() at the job's INSERT inside
#            publish_version, started_at the claim's clock_timestamp(), so
#            pickup holds the rest of the call, the commit's WAL flush, the
#            worker's wake-up and its claim.
# BENCH_PICKUP_ROUNDS (3) rounds interleave the two, so that both see the
# same machine; the table gives each round and all rounds pooled.
#
#   bash bench/pickup.sh                           # as root, about 1.5 minutes
#   BENCH_PICKUP_ROUNDS=5 BENCH_PICKUP_SECONDS=20 bash bench/pickup.sh
#
# Writes bench/results/pickup.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/queue.sh
source "$BENCH_DIR/lib/queue.sh"

PORT=${PUBLISH_BENCH_PORT:-54350}
RATE=${BENCH_PICKUP_RATE:-100}
SECS=${BENCH_PICKUP_SECONDS:-10}
ROUNDS=${BENCH_PICKUP_ROUNDS:-3}
NENV=50
OUT=$BENCH_DIR/results
DB=bench
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT"

build_and_install
PGBENCH=$PG_BIN/pgbench
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-pickup.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
q <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('e-' || k, 'file://$WORK/maps/e-' || k) FROM generate_series(1, $NENV) k \g /dev/null
INSERT INTO publish.projects (slug, name) SELECT 'p-' || k, 'Pickup ' || k FROM generate_series(1, $NENV) k;
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects;
\i '$BENCH_DIR/lib/markers.sql'
CREATE SEQUENCE bench_seq;
CREATE TABLE bench_commit (i int);
SQL
printf "SELECT publish.publish_version('p-' || k, 1, 'e-' || k) FROM (SELECT nextval('bench_seq') %% %d + 1 AS k) s;\n" "$NENV" >"$WORK/publish.sql"
printf "INSERT INTO bench_commit VALUES (1);\n" >"$WORK/floor.sql"

# pgbench_run SCRIPT LOG: one client at RATE for SECS; LOG gets the
# statement latencies in ms (time − schedule lag, per transaction)
pgbench_run() {
	rm -f "$WORK"/pgbench_log.*
	(cd "$WORK" && "$PGBENCH" -n -c 1 -R "$RATE" -T "$SECS" -l --log-prefix=pgbench_log -f "$1" "$DB" >"$WORK/pgbench.out" 2>&1) \
		|| { cat "$WORK/pgbench.out" >&2; exit 1; }
	awk '{ print ($3 - $NF) / 1000 }' "$WORK"/pgbench_log.* >"$2"
}
# stats FILE: median p90 p99 max of one number a line
stats() {
	sort -g "$1" | awk '{ v[NR] = $1 } END {
		split("0.5 0.9 0.99", p, " ")
		for (i = 1; i <= 3; i++) { pos = (NR - 1) * p[i] + 1; lo = int(pos); f = pos - lo
			printf "%.3f ", v[lo] + (lo < NR ? (v[lo + 1] - v[lo]) * f : 0) }
		printf "%.3f\n", v[NR] }'
}

echo "== warm-up: every project published once"
"$PGBENCH" -n -c 1 -t "$NENV" -f "$WORK/publish.sql" "$DB" >/dev/null
wait_drained 600 0.2
: >"$WORK/floor-all"; : >"$WORK/pickup-all"; : >"$WORK/call-all"; : >"$WORK/run-all"
ROWS=()
JOBS=0; CPU_NS=0; FAILED=0
for r in $(seq 1 "$ROUNDS"); do
	echo "== round $r: floor, then publishes, $RATE/s for $SECS s each"
	val "VACUUM ANALYZE publish.job_queue, publish.job_log, bench_commit" >/dev/null
	pgbench_run "$WORK/floor.sql" "$WORK/floor-$r"
	t0=$(val "SELECT clock_timestamp()")
	cpu0=$(workers_cpu)
	pgbench_run "$WORK/publish.sql" "$WORK/call-$r"
	wait_drained 600 0.2
	cpu1=$(workers_cpu)
	val "SELECT status, extract(epoch FROM started_at - created_at) * 1000, extract(epoch FROM completed_at - started_at) * 1000,
	            extract(epoch FROM created_at - '$t0'), extract(epoch FROM started_at - '$t0'), extract(epoch FROM completed_at - '$t0'), attempts
	       FROM publish.job_queue WHERE created_at >= '$t0' ORDER BY created_at" >"$WORK/jobs-$r"
	cp "$WORK/jobs-$r" "$OUT/pickup-jobs-$r.txt"
	n=$(wc -l <"$WORK/jobs-$r")
	bad=$(grep -vc '^completed|' "$WORK/jobs-$r" || true)
	FAILED=$((FAILED + bad)); JOBS=$((JOBS + n)); CPU_NS=$((CPU_NS + cpu1 - cpu0))
	cut -d'|' -f2 "$WORK/jobs-$r" >"$WORK/pickup-$r"
	cut -d'|' -f3 "$WORK/jobs-$r" >>"$WORK/run-all"
	cat "$WORK/floor-$r" >>"$WORK/floor-all"; cat "$WORK/pickup-$r" >>"$WORK/pickup-all"; cat "$WORK/call-$r" >>"$WORK/call-all"
	read -r fm _ fp99 _ <<<"$(stats "$WORK/floor-$r")"
	read -r pm pp90 pp99 pmax <<<"$(stats "$WORK/pickup-$r")"
	read -r cm _ _ _ <<<"$(stats "$WORK/call-$r")"
	cpuj=$(awk -v c="$((cpu1 - cpu0))" -v n="$n" 'BEGIN { printf "%.2f", c / 1e6 / n }')
	echo "   floor median $fm ms (p99 $fp99); pickup median $pm ms, p90 $pp90, p99 $pp99, max $pmax over $n jobs ($bad not completed); publish_version call median $cm ms; worker CPU $cpuj ms per job"
	ROWS+=("| $r | $n | $fm | $fp99 | **$pm** | $pp90 | **$pp99** | $pmax | $(awk -v a="$pm" -v b="$fm" 'BEGIN { printf "%+.3f", a - b }') | $cm | $cpuj |")
done
read -r fm _ fp99 _ <<<"$(stats "$WORK/floor-all")"
read -r pm pp90 pp99 pmax <<<"$(stats "$WORK/pickup-all")"
read -r cm _ _ _ <<<"$(stats "$WORK/call-all")"
read -r rm _ rp99 _ <<<"$(stats "$WORK/run-all")"
cpuj=$(awk -v c="$CPU_NS" -v n="$JOBS" 'BEGIN { printf "%.2f", c / 1e6 / n }')
ROWS+=("| all | $JOBS | $fm | $fp99 | **$pm** | $pp90 | **$pp99** | $pmax | $(awk -v a="$pm" -v b="$fm" 'BEGIN { printf "%+.3f", a - b }') | $cm | $cpuj |")
SERVER_ERRORS=$(grep -c -E ' (ERROR|FATAL|PANIC): ' "$WORK/pg/server.log" || true)
{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown), PostgreSQL $(val 'SHOW server_version'), $(nproc) CPUs, fsync on, synchronous_commit on, $(val 'SHOW publish.workers_per_database') workers;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "One client, $RATE/s for $SECS s per run, $ROUNDS rounds (floor, then publishes); $NENV projects of 20 overlays, each to its own file:// environment."
	echo "Floor: a durable one-row INSERT at the same rate (pgbench, statement + commit). Pickup: job started_at − created_at."
	echo
	echo "| round | jobs | floor median ms | floor p99 ms | pickup median ms | pickup p90 ms | pickup p99 ms | pickup max ms | median − floor ms | publish_version call median ms | worker CPU ms per job |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for row in "${ROWS[@]}"; do echo "$row"; done
	echo
	echo "Job run (started_at → completed_at) median $rm ms, p99 $rp99 ms. Jobs not completed: $FAILED. Server log: $SERVER_ERRORS ERROR/FATAL lines. Run took $(( $(date +%s) - T_START )) s."
} >"$OUT/pickup.md"
echo; cat "$OUT/pickup.md"
cp "$WORK/pickup-all" "$OUT/pickup.dat"; cp "$WORK/floor-all" "$OUT/pickup-floor.dat"
[ "$FAILED" -eq 0 ] || { echo "some jobs did not complete" >&2; exit 1; }
