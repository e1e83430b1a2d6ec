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
#   publish, targets in memory
#            the same publishes to 50 more environments whose file://
#            targets are on tmpfs (/dev/shm): no fsync of the storage then
#            shares the disk with the WAL's flushes (BENCH_PICKUP_MEMORY=0
#            leaves this series out).
# BENCH_PICKUP_ROUNDS (3) rounds interleave them, so that all see the same
# machine; the table gives each round and all rounds pooled.
#
#   bash bench/pickup.sh                           # as root, about 2 minutes
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
MEMORY=${BENCH_PICKUP_MEMORY:-1}
[ -w /dev/shm ] || MEMORY=0
OUT=$BENCH_DIR/results
DB=bench
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT"

build_and_install
PGBENCH=$PG_BIN/pgbench
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-pickup.XXXXXX")
chmod 755 "$WORK"
MEM_DIR=
if [ "$MEMORY" != 0 ]; then MEM_DIR=$(mktemp -d /dev/shm/publish-pickup.XXXXXX); chmod 755 "$MEM_DIR"; fi
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK" ${MEM_DIR:+"$MEM_DIR"}; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps" ${MEM_DIR:+"$MEM_DIR"}; fi
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
q <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('e-' || k, 'file://$WORK/maps/e-' || k) FROM generate_series(1, $NENV) k \g /dev/null
${MEM_DIR:+SELECT publish.set_storage_target('m-' || k, 'file://$MEM_DIR/m-' || k) FROM generate_series(1, $NENV) k \g /dev/null}
INSERT INTO publish.projects (slug, name) SELECT 'p-' || k, 'Pickup ' || k FROM generate_series(1, $NENV) k;
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects;
\i '$BENCH_DIR/lib/markers.sql'
CREATE SEQUENCE bench_seq;
CREATE TABLE bench_commit (i int);
SQL
for e in e m; do
	printf "SELECT publish.publish_version('p-' || k, 1, '%s-' || k) FROM (SELECT nextval('bench_seq') %% %d + 1 AS k) s;\n" "$e" "$NENV" >"$WORK/publish-$e.sql"
done
SERIES=(e)
[ -z "$MEM_DIR" ] || SERIES+=(m)
declare -A WHERE=([e]="disk" [m]="memory")
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

echo "== warm-up: every project published once to each environment"
for e in "${SERIES[@]}"; do
	"$PGBENCH" -n -c 1 -t "$NENV" -f "$WORK/publish-$e.sql" "$DB" >/dev/null
done
wait_drained 600 0.2
: >"$WORK/floor-all"
for e in "${SERIES[@]}"; do : >"$WORK/pickup-all-$e"; : >"$WORK/call-all-$e"; : >"$WORK/run-all-$e"; done
ROWS=()
declare -A JOBS=() CPU_NS=()
FAILED=0
# row ROUND SERIES FLOOR PICKUP CALL JOBS CPU_NS: a table row (files of ms)
row() {
	local fm fp99 pm pp90 pp99 pmax cm cpuj
	read -r fm _ fp99 _ <<<"$(stats "$3")"
	read -r pm pp90 pp99 pmax <<<"$(stats "$4")"
	read -r cm _ _ _ <<<"$(stats "$5")"
	cpuj=$(awk -v c="$7" -v n="$6" 'BEGIN { printf "%.2f", c / 1e6 / n }')
	echo "   ${WHERE[$2]}: floor median $fm ms (p99 $fp99); pickup median $pm ms, p90 $pp90, p99 $pp99, max $pmax over $6 jobs; publish_version call median $cm ms; worker CPU $cpuj ms per job" >&2
	ROWS+=("| $1 | ${WHERE[$2]} | $6 | $fm | $fp99 | **$pm** | $pp90 | **$pp99** | $pmax | $(awk -v a="$pm" -v b="$fm" 'BEGIN { printf "%+.3f", a - b }') | $cm | $cpuj |")
}
for r in $(seq 1 "$ROUNDS"); do
	echo "== round $r: floor, then publishes to each series of targets, $RATE/s for $SECS s each"
	val "VACUUM ANALYZE publish.job_queue, publish.job_log, bench_commit" >/dev/null
	pgbench_run "$WORK/floor.sql" "$WORK/floor-$r"
	cat "$WORK/floor-$r" >>"$WORK/floor-all"
	for e in "${SERIES[@]}"; do
		t0=$(val "SELECT clock_timestamp()")
		cpu0=$(workers_cpu)
		pgbench_run "$WORK/publish-$e.sql" "$WORK/call-$r-$e"
		wait_drained 600 0.2
		cpu1=$(workers_cpu)
		val "SELECT status, extract(epoch FROM started_at - created_at) * 1000, extract(epoch FROM completed_at - started_at) * 1000,
		            extract(epoch FROM created_at - '$t0'), extract(epoch FROM started_at - '$t0'), extract(epoch FROM completed_at - '$t0'), attempts
		       FROM publish.job_queue WHERE created_at >= '$t0' ORDER BY created_at" >"$WORK/jobs-$r-$e"
		cp "$WORK/jobs-$r-$e" "$OUT/pickup-jobs-$r-${WHERE[$e]}.txt"
		n=$(wc -l <"$WORK/jobs-$r-$e")
		FAILED=$((FAILED + $(grep -vc '^completed|' "$WORK/jobs-$r-$e" || true)))
		JOBS[$e]=$((${JOBS[$e]:-0} + n)); CPU_NS[$e]=$((${CPU_NS[$e]:-0} + cpu1 - cpu0))
		cut -d'|' -f2 "$WORK/jobs-$r-$e" >"$WORK/pickup-$r-$e"
		cut -d'|' -f3 "$WORK/jobs-$r-$e" >>"$WORK/run-all-$e"
		cat "$WORK/pickup-$r-$e" >>"$WORK/pickup-all-$e"; cat "$WORK/call-$r-$e" >>"$WORK/call-all-$e"
		row "$r" "$e" "$WORK/floor-$r" "$WORK/pickup-$r-$e" "$WORK/call-$r-$e" "$n" "$((cpu1 - cpu0))"
	done
done
RUNS=()
for e in "${SERIES[@]}"; do
	row all "$e" "$WORK/floor-all" "$WORK/pickup-all-$e" "$WORK/call-all-$e" "${JOBS[$e]}" "${CPU_NS[$e]}"
	read -r rm _ rp99 _ <<<"$(stats "$WORK/run-all-$e")"
	RUNS+=("${WHERE[$e]} median $rm ms, p99 $rp99 ms")
done
SERVER_ERRORS=$(grep -c -E ' (ERROR|FATAL|PANIC): ' "$WORK/pg/server.log" || true)
{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown), PostgreSQL $(val 'SHOW server_version'), $(nproc) CPUs, fsync on, synchronous_commit on, $(val 'SHOW publish.workers_per_database') workers;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "One client, $RATE/s for $SECS s per run, $ROUNDS rounds (floor, then publishes); $NENV projects of 20 overlays, each to its own file:// environment: targets on the disk beside the cluster (disk)${MEM_DIR:+, or on tmpfs (memory)}."
	echo "Floor: a durable one-row INSERT at the same rate (pgbench, statement + commit). Pickup: job started_at − created_at."
	echo
	echo "| round | targets | jobs | floor median ms | floor p99 ms | pickup median ms | pickup p90 ms | pickup p99 ms | pickup max ms | median − floor ms | publish_version call median ms | worker CPU ms per job |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for row in "${ROWS[@]}"; do echo "$row"; done
	echo
	echo "Job run (started_at → completed_at): $(IFS=';'; echo "${RUNS[*]}" | sed 's/;/; /g'). Jobs not completed: $FAILED. Server log: $SERVER_ERRORS ERROR/FATAL lines. Run took $(( $(date +%s) - T_START )) s."
} >"$OUT/pickup.md"
echo; cat "$OUT/pickup.md"
cp "$WORK/pickup-all-e" "$OUT/pickup.dat"; cp "$WORK/floor-all" "$OUT/pickup-floor.dat"
[ "$FAILED" -eq 0 ] || { echo "some jobs did not complete" >&2; exit 1; }
