#!/usr/bin/env bash
# bench/stats_cost.sh: what a scrape of publish.stats costs with a large
# job history.  BENCH_STATS_N (1,000,000) finished jobs (90 % publish,
# 10 % build_tiles; 5 % failed, 1 % cancelled) spread over the last
# BENCH_STATS_DAYS (30) days, 50 queued and 2 running, in one database
# with publish.retention left at its default but no worker to apply it
# (publish.workers_per_database = 0).  After VACUUM ANALYZE, EXPLAIN
# (ANALYZE, BUFFERS) of SELECT * FROM publish.stats, BENCH_STATS_RUNS (20)
# times: the median and the largest execution time, the buffers of the
# last run, and its plan.  Not a test.
#
#   bash bench/stats_cost.sh                      # as root, about 1 minute
#
# Writes bench/results/stats_cost.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

PORT=${PUBLISH_BENCH_PORT:-54462}
N=${BENCH_STATS_N:-1000000}
DAYS=${BENCH_STATS_DAYS:-30}
RUNS=${BENCH_STATS_RUNS:-20}
OUT=$BENCH_DIR/results
DB=stats
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT"

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-stats.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cluster_start "$WORK/pg" "$PORT" "publish.workers_per_database = 0" "fsync = off"
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
q -c "CREATE EXTENSION publish"

q <<SQL
INSERT INTO publish.projects (slug, name) VALUES ('bench', 'bench');
ALTER TABLE publish.job_queue DISABLE TRIGGER USER;
INSERT INTO publish.job_queue (job_type, status, params, project_id, env, attempts,
                               created_at, started_at, completed_at)
SELECT CASE WHEN i % 10 = 0 THEN 'build_tiles' ELSE 'publish' END,
       CASE WHEN i % 100 = 0 THEN 'cancelled' WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END,
       '{}', p.id, 'production', 1,
       t, t + interval '1 s', t + interval '1 s' + (i % 97) * interval '100 ms'
  FROM publish.projects p,
       LATERAL (SELECT i, now() - (i::float8 / $N) * interval '$DAYS days' AS t
                  FROM generate_series(1, $N) AS i) AS s;
INSERT INTO publish.job_queue (job_type, status, project_id, env, created_at, started_at)
SELECT 'publish', CASE WHEN i <= 2 THEN 'running' ELSE 'queued' END, p.id, 'env-' || i,
       now() - i * interval '1 s', CASE WHEN i <= 2 THEN now() END
  FROM publish.projects p, generate_series(1, 52) AS i;
ALTER TABLE publish.job_queue ENABLE TRIGGER USER;
VACUUM ANALYZE publish.job_queue;
SQL

val "SELECT count(*) FROM publish.job_queue" >"$WORK/rows"
for i in $(seq 1 "$RUNS"); do
	val "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM publish.stats" >"$WORK/plan.json"
	python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))[0]; print(p["Execution Time"])' "$WORK/plan.json"
done | sort -n >"$WORK/times"
MEDIAN=$(median <"$WORK/times")
MAX=$(tail -n 1 "$WORK/times")
BUFFERS=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))[0]["Plan"]; print(p.get("Shared Hit Blocks",0)+p.get("Shared Read Blocks",0))' "$WORK/plan.json")
PLAN=$(val "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM publish.stats")

{
	echo "# publish.stats at $(cat "$WORK/rows") jobs"
	echo
	echo "load average at start: $LOAD_START; $RUNS runs"
	echo
	echo "| jobs | finished | median ms | max ms | shared buffers |"
	echo "|---:|---:|---:|---:|---:|"
	echo "| $(cat "$WORK/rows") | $N | $MEDIAN | $MAX | $BUFFERS |"
	echo
	echo '```'
	echo "$PLAN"
	echo '```'
} | tee "$OUT/stats_cost.md"
