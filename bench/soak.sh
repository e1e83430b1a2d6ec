#!/usr/bin/env bash
# Soak: BENCH_SOAK_N publishes (default 100,000) enqueued at a steady rate by
# pgbench while the workers run them and retention deletes finished jobs.
# Every BENCH_SOAK_SAMPLE seconds it records: jobs completed so far, jobs/s
# over the last interval, rows and on-disk size of the job tables, and the
# private resident memory (RssAnon: heap, not shared buffers) of the workers.  The table and the RSS
# must stay flat: that is what the soak shows.  Not a test.
#
#   bash bench/soak.sh                     # as root
#   BENCH_SOAK_N=20000 BENCH_SOAK_RATE=300 bash bench/soak.sh
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"

N=${BENCH_SOAK_N:-100000}
RATE=${BENCH_SOAK_RATE:-250}				# publishes per second offered
SAMPLE=${BENCH_SOAK_SAMPLE:-10}			# seconds between samples
WORKERS=${BENCH_SOAK_WORKERS:-2}
PORT=${PUBLISH_BENCH_PORT:-54351}
OUT=$ROOT_DIR/bench/results/soak.md

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-soak.XXXXXX")
chmod 755 "$WORK"
trap 'cluster_stop "$WORK/pg"; rm -rf "$WORK"' EXIT
cluster_start "$WORK/pg" "$PORT" \
	"publish.workers_per_database = $WORKERS" \
	"publish.job_retention = 1min" \
	"publish.sweep_interval = 5s" \
	"synchronous_commit = on"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK/maps"; fi

psql -X -q -d postgres -c "CREATE DATABASE soak"
psql -X -q -v ON_ERROR_STOP=1 -d soak <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('soak', 'file://$WORK/maps');
-- 4 projects x 5 ready versions of 20 overlays each
INSERT INTO publish.projects (slug, name) SELECT 'soak-' || p, 'Soak ' || p FROM generate_series(1, 4) p;
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, v, 'ready' FROM publish.projects, generate_series(1, 5) v;
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT v.id, 'poi-' || n, 'Point ' || n, 'marker',
       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + n / 1000.0, 52.5)),
       jsonb_build_object('n', n)
  FROM publish.project_versions v, generate_series(1, 20) n;
SQL

cat >"$WORK/publish.pgbench" <<'SQL'
\set p random(1, 4)
\set v random(1, 5)
SELECT publish.publish_version('soak-' || :p, :v, 'soak');
SQL

sample() {
	psql -X -At -d soak -c "
	-- ended = finished jobs still in the table + those retention deleted
	SELECT (SELECT count(*) FROM publish.job_queue WHERE status IN ('completed', 'cancelled', 'failed'))
	       + (SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'publish.job_queue'::regclass),
	       (SELECT count(*) FROM publish.job_queue),
	       (SELECT count(*) FROM publish.job_log),
	       pg_total_relation_size('publish.job_queue') + pg_total_relation_size('publish.job_log'),
	       (SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'soak')"
}

rss_kb() {
	local total=0 pid kb
	for pid in "$@"; do
		kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		total=$((total + kb))
	done
	echo "$total"
}

DURATION=$(( (N + RATE - 1) / RATE ))
echo "== soak: $N publishes at $RATE/s offered (~${DURATION}s), $WORKERS workers, retention 1 min"
"$PG_BIN/pgbench" -n -h "$PGHOST" -p "$PGPORT" -U postgres -c 4 -j 2 -R "$RATE" -t $((N / 4)) \
	-f "$WORK/publish.pgbench" soak >"$WORK/pgbench.out" 2>&1 &
PGBENCH=$!

{
	echo "## publish: soak"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $N publishes offered at $RATE/s by 4 clients,"
	echo "$WORKERS workers per database, publish.job_retention = 1 min, sweep every 5 s."
	echo
	echo "| t (s) | jobs ended | jobs/s (interval) | job rows | log rows | job tables | worker private memory (RssAnon, sum) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|"
} >"$OUT.tmp"

start=$(date +%s)
prev_done=0
prev_t=$start
first_rss=""
while :; do
	sleep "$SAMPLE"
	IFS='|' read -r done rows logs bytes pids <<<"$(sample)"
	now=$(date +%s)
	# shellcheck disable=SC2086
	rss=$(rss_kb $pids)
	[ -n "$first_rss" ] || first_rss=$rss
	rate=$(( (done - prev_done) / (now - prev_t > 0 ? now - prev_t : 1) ))
	printf '| %d | %d | %d | %d | %d | %s | %s MB |\n' $((now - start)) "$done" "$rate" "$rows" "$logs" \
		"$(numfmt --to=iec "$bytes")" "$(awk "BEGIN {printf \"%.1f\", $rss/1024}")" | tee -a "$OUT.tmp"
	prev_done=$done
	prev_t=$now
	if ! kill -0 "$PGBENCH" 2>/dev/null; then
		left=$(psql -X -At -d soak -c "SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')")
		[ "$left" -eq 0 ] && break
	fi
done
wait "$PGBENCH" || true

{
	echo
	grep -E '^(tps|number of transactions actually processed)' "$WORK/pgbench.out" | sed 's/^/    /'
	echo
	echo "Failed jobs: $(psql -X -At -d soak -c "SELECT count(*) FROM publish.job_queue WHERE status = 'failed'")." \
		"Server log ERROR/FATAL lines: $(grep -cE 'ERROR|FATAL' "$WORK/pg/server.log" || true)."
} >>"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
