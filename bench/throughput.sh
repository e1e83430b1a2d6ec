#!/usr/bin/env bash
# bench/throughput.sh: small publishes completed per second with 1 and 2
# workers per database, from 1 and 8 clients, over 50 environments: call k
# publishes project k (20 overlays) to environment k mod 50 (a file://
# target each), so that no request is merged into a queued job of the same
# version and jobs of different projects may run in parallel.  Each job is
# claimed, run and recorded on its own, with its own durable commits.  Not
# a test: it fails only when jobs fail or never finish.  Besides the rate,
# it reports the workers' CPU time per job (/proc/<pid>/schedstat), which
# depends much less on what else runs on the machine, and the WAL flushes
# per job (pg_stat_wal.wal_sync).
#
#   bash bench/throughput.sh                       # as root, about 1 minute
#   BENCH_TP_N=2000 bash bench/throughput.sh
#   BENCH_TP_STRACE=1 bash bench/throughput.sh     # + the workers' system calls
#                     per job (strace -c -w -f), in bench/results/throughput-strace.txt
#   BENCH_TP_WAITS=1 bash bench/throughput.sh      # + what the workers wait for
#                     (pg_stat_activity every 10 ms), in bench/results/throughput-waits.txt
#
# Writes bench/results/throughput.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/queue.sh
source "$BENCH_DIR/lib/queue.sh"

PORT=${PUBLISH_BENCH_PORT:-54454}
N=${BENCH_TP_N:-1000}
OUT=$BENCH_DIR/results
DB=tp
mkdir -p "$OUT"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

build_and_install
PGBENCH=$PG_BIN/pgbench
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-tp.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi

start() { cluster_start "$WORK/pg" "$PORT" "publish.workers_per_database = $1" "log_min_messages = warning"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

start 1
psql -X -q -d postgres -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('tp-' || e, 'file://$WORK/maps/tp-' || e) FROM generate_series(1, 50) e \g /dev/null
INSERT INTO publish.projects (slug, name) SELECT 'tp-' || p, 'Throughput ' || p FROM generate_series(1, $N) p;
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects;
\i '$BENCH_DIR/lib/markers.sql'
CREATE SEQUENCE tp_seq;
SQL
# each call publishes the next project, to the next environment: N calls
# publish every project once
printf "SELECT publish.publish_version('tp-' || ((k - 1) %% %d + 1), 1, 'tp-' || ((k - 1) %% 50 + 1)) FROM (SELECT nextval('tp_seq') AS k) s;\n" "$N" >"$WORK/enqueue.sql"

ROWS=()
ALL_OK=true
[ -z "${BENCH_TP_STRACE:-}" ] || : >"$OUT/throughput-strace.txt"
[ -z "${BENCH_TP_WAITS:-}" ] || : >"$OUT/throughput-waits.txt"
run() {
	local workers=$1 clients=$2 t0 row cpu0 cpums wal0 walsync
	val "VACUUM publish.job_queue" >/dev/null 2>&1 || true
	cpu0=$(workers_cpu)
	wal0=$(val "SELECT wal_sync FROM pg_stat_wal")
	t0=$(val "SELECT clock_timestamp()")
	local spid= wpid=
	if [ -n "${BENCH_TP_WAITS:-}" ]; then
		# one session samples the workers' wait events until the queue drains
		psql -X -q -d "$DB" >/dev/null 2>&1 <<-SQL &
		CREATE TEMP TABLE w (e text);
		DO \$\$
		DECLARE t0 timestamptz := clock_timestamp();
		BEGIN
			LOOP
				PERFORM pg_stat_clear_snapshot();
				INSERT INTO w SELECT coalesce(wait_event_type || ':' || wait_event, 'running (CPU or I/O)')
				  FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = current_database();
				EXIT WHEN clock_timestamp() > t0 + interval '2 s'
				      AND NOT EXISTS (SELECT 1 FROM publish.job_queue WHERE status IN ('queued', 'running'));
				EXIT WHEN clock_timestamp() > t0 + interval '300 s';
				PERFORM pg_sleep(0.01);
			END LOOP;
		END \$\$;
		\\copy (SELECT e, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 1) FROM w GROUP BY e ORDER BY 2 DESC) TO '$WORK/waits.txt'
		SQL
		wpid=$!
	fi
	if [ -n "${BENCH_TP_STRACE:-}" ]; then
		local pids=()
		for p in $(val "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$DB'"); do pids+=(-p "$p"); done
		strace -c -w -f "${pids[@]}" -o "$WORK/strace.txt" 2>/dev/null &
		spid=$!
		sleep 0.5
	fi
	"$PGBENCH" -n -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -t $((N / clients)) -f "$WORK/enqueue.sql" "$DB" >"$WORK/pgbench.log" 2>&1 \
		|| { cat "$WORK/pgbench.log" >&2; exit 1; }
	wait_drained 600 0.2 "$t0"
	row=$(val "SELECT count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
	                  round(extract(epoch FROM max(completed_at) - min(created_at))::numeric, 2),
	                  round((count(*) FILTER (WHERE status = 'completed')
	                         / extract(epoch FROM max(completed_at) - min(created_at)))::numeric, 1),
	                  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000)::numeric, 2),
	                  round((count(*) / extract(epoch FROM max(created_at) - min(created_at)))::numeric, 1)
	             FROM publish.job_queue WHERE created_at >= '$t0'")
	IFS='|' read -r total done failed elapsed rate runms enqrate <<<"$row"
	cpums=$(awk -v a="$cpu0" -v b="$(workers_cpu)" -v n="$total" 'BEGIN { printf "%.2f", (b - a) / 1e6 / n }')
	walsync=$(awk -v a="$wal0" -v b="$(val "SELECT wal_sync FROM pg_stat_wal")" -v n="$total" 'BEGIN { printf "%.2f", (b - a) / n }')
	if [ -n "$wpid" ]; then
		wait "$wpid" || true
		{
			echo "== $workers worker(s), $clients client(s): the workers' samples (wait event, samples, %)"
			sed 's/^/   /' "$WORK/waits.txt" 2>/dev/null || echo "   (no samples)"
		} >>"$OUT/throughput-waits.txt"
	fi
	if [ -n "$spid" ]; then
		kill -INT "$spid"; wait "$spid" || true
		{
			echo "== $workers worker(s), $clients client(s): $total jobs; calls per job:"
			awk -v n="$total" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "   %-16s %8.2f per job, %8.3f ms per job (wall)\n", $NF, $4 / n, $2 * 1000 / n }' "$WORK/strace.txt" \
				| grep -E ' (fsync|fdatasync|syncfs|rename|link|mkdir|openat|epoll_wait|futex|semop|pwrite64|write|sendto|recvfrom|kill) ' || true
		} >>"$OUT/throughput-strace.txt"
	fi
	echo "   $workers worker(s), $clients client(s): $done/$total completed, $failed failed, in $elapsed s: $rate jobs/s (enqueued $enqrate/s, job run median $runms ms, worker CPU $cpums ms per job, $walsync WAL flushes per job)"
	ROWS+=("| $workers | $clients | $total | $done | $failed | $elapsed | **$rate** | $enqrate | $runms | $cpums | $walsync |")
	[ "$done" -eq "$total" ] && [ "$failed" -eq 0 ] || ALL_OK=false
}

for workers in 1 2; do
	if [ "$workers" -ne 1 ]; then cluster_stop "$WORK/pg"; start "$workers"; fi
	echo "== $workers worker(s) per database; warm-up"
	"$PGBENCH" -n -c 1 -t 20 -f "$WORK/enqueue.sql" "$DB" >/dev/null 2>&1
	wait_drained 600 0.2 "$(val "SELECT clock_timestamp() - interval '10 s'")"
	for clients in 1 8; do run "$workers" "$clients"; done
done

{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD), $(nproc) CPUs, fsync on, synchronous_commit on;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo "$N projects of 20 overlays, each published once per run, over 50 environments (file:// targets); jobs/s = completed / (last completed_at − first created_at); enqueued/s = jobs / (last created_at − first created_at), the clients' rate."
	echo "Job run = completed_at − started_at. WAL flushes: pg_stat_wal.wal_sync over the run ÷ jobs (all processes: the clients' commits too)."
	echo
	echo "| workers per database | clients | jobs | completed | failed | elapsed s | completed jobs/s | enqueued jobs/s | job run median ms | worker CPU ms per job | WAL flushes per job |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for r in "${ROWS[@]}"; do echo "$r"; done
	echo
	echo "Run took $(( $(date +%s) - T_START )) s."
} >"$OUT/throughput.md"
echo; cat "$OUT/throughput.md"
[ "$ALL_OK" = true ] || { echo "some jobs did not complete" >&2; exit 1; }
