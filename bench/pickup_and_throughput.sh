#!/usr/bin/env bash
# pickup_and_throughput.sh: a reproducible benchmark of the publish worker
# (not a test: it measures, and fails only when jobs fail or never finish).
#
#   pickup latency   BENCH_PICKUP_N (2000) publishes, one at a time, each
#                    committed on its own with the worker idle: how long from
#                    the job's INSERT to the worker marking it running.
#   throughput       BENCH_THROUGHPUT_N (1000) publishes enqueued as fast as
#                    possible from 1 client, then from 8 clients: completed
#                    jobs per second until the queue is drained.
#
# It builds and installs publish, starts a private cluster in a temporary
# directory under /tmp on port $PUBLISH_BENCH_PORT (54350), loads a small
# project (20 overlays, 2 assets, no tileset) with a file:// storage target,
# runs the measurements with pgbench, prints a Markdown table and writes it
# to bench/results/latest.md.  The cluster is stopped and the directory
# removed on exit.  See bench/README.md for what the figures mean.
#
#   bash bench/pickup_and_throughput.sh
#   BENCH_PICKUP_N=500 BENCH_THROUGHPUT_N=400 bash bench/pickup_and_throughput.sh
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54350}
PICKUP_N=${BENCH_PICKUP_N:-2000}
PICKUP_SLEEP_MS=${BENCH_PICKUP_SLEEP_MS:-5}
THROUGHPUT_N=${BENCH_THROUGHPUT_N:-1000}
CLIENTS=${BENCH_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
TIMEOUT_S=${BENCH_TIMEOUT:-600}
RESULTS_DIR=$BENCH_DIR/results
DB=bench

for n in PICKUP_N PICKUP_SLEEP_MS THROUGHPUT_N CLIENTS THREADS TIMEOUT_S; do
	if ! [[ ${!n} =~ ^[0-9]+$ ]] || [ "${!n}" -le 0 ]; then
		echo "$n must be a positive integer (got '${!n}')" >&2
		exit 2
	fi
done

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
build_and_install
PGBENCH=$PG_BIN/pgbench

WORK=$(mktemp -d /tmp/publish-bench.XXXXXX)
chmod 755 "$WORK"				# the server user must reach pg/ and maps/
cleanup() {
	cluster_stop "$WORK/pg"
	rm -rf "$WORK"
}
trap cleanup EXIT

# synchronous_commit stays on (the default): each publish_version commit
# waits for its WAL flush, as a client's would.
cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning"

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
q -c "CREATE EXTENSION publish"

mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi

echo "== Loading project 'bench' (20 overlays, 2 assets, no tileset), target file://$WORK/maps"
q <<SQL
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('bench', 'Benchmark project')
RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready')
RETURNING id AS version_id \gset

INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
SELECT :'version_id', 'photo-' || i, 'image', 'assets/bench/photo-' || i || '.jpg', 'image/jpeg',
       100000 * i, encode(sha256(convert_to('bench asset ' || i, 'UTF8')), 'hex')
  FROM generate_series(1, 2) i;

-- 20 overlays, 4 of each type, on a small grid around 13.40,52.52.
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties, asset_id)
SELECT :'version_id', t.type || '-' || i, initcap(t.type) || ' ' || i, t.type,
       CASE t.type
       WHEN 'marker' THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y))
       WHEN 'label'  THEN jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y))
       WHEN 'polyline' THEN jsonb_build_object('type', 'LineString', 'coordinates',
            jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y + 0.0005),
                              jsonb_build_array(x + 0.002, y)))
       ELSE jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(jsonb_build_array(
            jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y),
            jsonb_build_array(x + 0.001, y + 0.001), jsonb_build_array(x, y + 0.001),
            jsonb_build_array(x, y))))
       END,
       jsonb_build_object('rank', i, 'category', t.type),
       CASE WHEN t.type = 'image'
            THEN (SELECT id FROM publish.assets WHERE version_id = :'version_id' AND key = 'photo-' || (1 + i % 2)) END
  FROM (VALUES ('marker', 0), ('label', 1), ('polyline', 2), ('polygon', 3), ('image', 4)) t(type, ord),
       generate_series(1, 4) i,
       LATERAL (SELECT round((13.395 + 0.003 * i)::numeric, 4) AS x,
                       round((52.515 + 0.002 * t.ord)::numeric, 4) AS y) g;
COMMIT;
SELECT publish.set_storage_target('bench', 'file://$WORK/maps') \g /dev/null
SQL

# The pickup script: publish (its own transaction), wait until the worker
# has finished the job, then give it PICKUP_SLEEP_MS to go back to sleep on
# its latch, so that the next job commits while the worker is idle.
q <<'SQL'
CREATE FUNCTION public.bench_wait_idle(timeout_s float8 DEFAULT 30) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
BEGIN
	-- each query of a volatile function takes a new snapshot
	WHILE EXISTS (SELECT 1 FROM publish.job_queue WHERE status IN ('queued', 'running')) LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'the publish worker is still busy after % s', timeout_s;
		END IF;
		PERFORM pg_sleep(0.0005);
	END LOOP;
END
$$;
SQL
printf "SELECT publish.publish_version('bench', 1, 'bench');\nSELECT bench_wait_idle();\n\\\\sleep %s ms\n" \
	"$PICKUP_SLEEP_MS" >"$WORK/pickup.sql"
printf "SELECT publish.publish_version('bench', 1, 'bench');\n" >"$WORK/enqueue.sql"

now() { val "SELECT clock_timestamp()"; }

# wait_drained T0: waits until no job created since T0 is queued or running.
# Polls from fresh connections, so that no snapshot stays open meanwhile.
wait_drained() {
	local t0=$1 deadline=$((SECONDS + TIMEOUT_S)) left
	while :; do
		left=$(val "SELECT count(*) FROM publish.job_queue
		             WHERE created_at >= '$t0' AND status IN ('queued', 'running')")
		[ "$left" -eq 0 ] && return 0
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out after ${TIMEOUT_S}s: $left job(s) still queued or running" >&2
			return 1
		fi
		sleep 0.2
	done
}

# tidy: vacuum between phases so that each starts from a compact queue.
tidy() { q -c "VACUUM (ANALYZE) publish.job_queue, publish.job_log, publish.project_versions, publish.live_releases"; }

echo "== Warm-up: 20 publishes (starts the database's worker, fills caches)"
T0=$(now)
"$PGBENCH" -n -c 1 -t 20 -f "$WORK/pickup.sql" "$DB" >/dev/null
wait_drained "$T0"
WARM_FAILED=$(val "SELECT count(*) FROM publish.job_queue WHERE created_at >= '$T0' AND status <> 'completed'")
if [ "$WARM_FAILED" -ne 0 ]; then
	echo "warm-up: $WARM_FAILED job(s) did not complete" >&2
	q -c "SELECT status, error FROM publish.jobs WHERE created_at >= '$T0' AND status <> 'completed' LIMIT 5" >&2
	exit 1
fi
tidy

echo "== Pickup latency: $PICKUP_N publishes, 1 client, each committed with the worker idle"
PICKUP_T0=$(now)
"$PGBENCH" -n -r -c 1 -t "$PICKUP_N" -f "$WORK/pickup.sql" "$DB" >"$WORK/pgbench-pickup.log" 2>&1 \
	|| { cat "$WORK/pgbench-pickup.log" >&2; exit 1; }
wait_drained "$PICKUP_T0"
PICKUP_T1=$(now)
# A job counts when the worker was idle at its INSERT: the previous job had
# completed by then.  Jobs that found the worker busy are counted apart.
PICKUP_ROW=$(q -tA -F'|' <<SQL
WITH j AS (
	SELECT status, created_at, started_at, completed_at,
	       lag(completed_at) OVER (ORDER BY created_at, id) AS prev_done
	  FROM publish.job_queue
	 WHERE created_at >= '$PICKUP_T0' AND created_at < '$PICKUP_T1'
), idle AS (
	SELECT extract(epoch FROM started_at - created_at) * 1000 AS pickup_ms,
	       extract(epoch FROM completed_at - started_at) * 1000 AS run_ms
	  FROM j WHERE status = 'completed' AND (prev_done IS NULL OR prev_done <= created_at)
)
SELECT (SELECT count(*) FROM j),
       (SELECT count(*) FROM j WHERE status = 'completed'),
       (SELECT count(*) FROM j WHERE status = 'failed'),
       count(*),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY pickup_ms)::numeric, 3),
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY pickup_ms)::numeric, 3),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY pickup_ms)::numeric, 3),
       round(max(pickup_ms)::numeric, 3),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY run_ms)::numeric, 3)
  FROM idle
SQL
)
IFS='|' read -r P_TOTAL P_DONE P_FAILED P_IDLE P_MED P_P90 P_P99 P_MAX P_RUN <<<"$PICKUP_ROW"
# pgbench -r: mean client-side latency of the publish_version statement,
# which includes its durable commit (the WAL flush that pickup also includes).
P_CALL=$(awk '/publish_version/ {print $1; exit}' "$WORK/pgbench-pickup.log")
echo "   $P_DONE/$P_TOTAL completed, $P_FAILED failed; pickup over $P_IDLE idle-worker jobs:" \
	"median $P_MED ms, p90 $P_P90 ms, p99 $P_P99 ms, max $P_MAX ms;" \
	"publish_version + commit takes ${P_CALL:-?} ms on average (client side)"
tidy

# throughput CLIENTS TOTAL: enqueues TOTAL publishes from CLIENTS clients,
# waits for the queue to drain, sets T_* (one Markdown row in T_ROW).
throughput() {
	local clients=$1 per=$(( ($2 + $1 - 1) / $1 )) threads=$THREADS t0 t1 row enq_tps
	[ "$threads" -le "$clients" ] || threads=$clients
	echo "== Throughput: $((per * clients)) publishes from $clients client(s) ($per each), no sleeps"
	t0=$(now)
	"$PGBENCH" -n -c "$clients" -j "$threads" -t "$per" -f "$WORK/enqueue.sql" "$DB" \
		>"$WORK/pgbench-c$clients.log" 2>&1 || { cat "$WORK/pgbench-c$clients.log" >&2; exit 1; }
	wait_drained "$t0"
	t1=$(now)
	enq_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/pgbench-c$clients.log" | tail -n 1)
	row=$(val "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
	                  count(*) FILTER (WHERE status = 'failed'),
	                  round(extract(epoch FROM max(completed_at) - min(created_at))::numeric, 3),
	                  round((count(*) FILTER (WHERE status = 'completed')
	                         / extract(epoch FROM max(completed_at) - min(created_at)))::numeric, 1)
	             FROM publish.job_queue WHERE created_at >= '$t0' AND created_at < '$t1'")
	IFS='|' read -r T_TOTAL T_DONE T_FAILED T_ELAPSED T_RATE <<<"$row"
	echo "   $T_DONE/$T_TOTAL completed, $T_FAILED failed in $T_ELAPSED s: $T_RATE jobs/s" \
		"(enqueued at ${enq_tps:-?} tx/s)"
	T_ROW="| $clients | $T_TOTAL | $T_DONE | $T_FAILED | ${enq_tps%.*} | $T_ELAPSED | **$T_RATE** |"
	[ "$T_DONE" -eq "$T_TOTAL" ] && [ "$T_FAILED" -eq 0 ] || ALL_OK=false
	tidy
}

ALL_OK=true
[ "$P_DONE" -eq "$P_TOTAL" ] && [ "$P_FAILED" -eq 0 ] || ALL_OK=false
throughput 1 "$THROUGHPUT_N"
ROW_1=$T_ROW
throughput "$CLIENTS" "$THROUGHPUT_N"
ROW_N=$T_ROW

PG_VERSION=$(val "SHOW server_version")
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
COMMIT=$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT_DIR" status --porcelain -- src sql 2>/dev/null)" ]; then COMMIT="$COMMIT (+ local changes)"; fi
SERVER_ERRORS=$(grep -c -E ' (ERROR|FATAL|PANIC): ' "$WORK/pg/server.log" || true)

mkdir -p "$RESULTS_DIR"
{
	echo "## publish: pickup latency and throughput"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), publish $COMMIT, PostgreSQL $PG_VERSION,"
	echo "$(nproc) CPUs ($CPU_MODEL), $(uname -sr), fsync on, synchronous_commit on;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews the figures)."
	echo "Project: 20 overlays, 2 assets, no tileset; target file:// on $(df -PT /tmp | awk 'NR == 2 {print $2}')."
	echo
	echo "Pickup latency, 1 client, one publish at a time (each committed $PICKUP_SLEEP_MS ms after the"
	echo "previous job completed, so the worker sleeps on its latch): job INSERT → worker"
	echo "marks it running, i.e. an upper bound of commit → running (it includes the commit's WAL flush):"
	echo
	echo "| jobs (idle worker / all) | failed | median ms | p90 ms | p99 ms | max ms | call + commit ms (mean) | job run ms (median) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
	echo "| $P_IDLE / $P_TOTAL | $P_FAILED | **$P_MED** | $P_P90 | $P_P99 | $P_MAX | ${P_CALL:-?} | $P_RUN |"
	echo
	echo "Throughput (enqueued without pauses; jobs/s = completed / (last completed_at − first created_at)):"
	echo
	echo "| clients | jobs | completed | failed | enqueue tx/s | elapsed s | completed jobs/s |"
	echo "|---:|---:|---:|---:|---:|---:|---:|"
	echo "$ROW_1"
	echo "$ROW_N"
	echo
	echo "Settings: BENCH_PICKUP_N=$PICKUP_N BENCH_PICKUP_SLEEP_MS=$PICKUP_SLEEP_MS" \
		"BENCH_THROUGHPUT_N=$THROUGHPUT_N BENCH_CLIENTS=$CLIENTS; server log: $SERVER_ERRORS ERROR/FATAL lines;" \
		"run took $(( $(date +%s) - T_START )) s."
} >"$RESULTS_DIR/latest.md"

echo
cat "$RESULTS_DIR/latest.md"
echo
echo "(written to $RESULTS_DIR/latest.md)"

if [ "$ALL_OK" != true ]; then
	echo "some jobs did not complete:" >&2
	q -c "SELECT status, error, count(*) FROM publish.jobs WHERE status <> 'completed' GROUP BY 1, 2" >&2
	exit 1
fi
