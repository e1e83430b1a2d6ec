#!/usr/bin/env bash
# bench/release_size.sh: build time and peak memory of release.json against
# the number of overlays (1k, 10k, 100k; 1M with BENCH_RELEASE_1M=1).  Not a
# test: it measures, and fails only when a build or a publish fails.
#
# For each size, on a private cluster (port $PUBLISH_BENCH_PORT, 54451):
#   backend  a fresh session runs publish._release_document(version, env,
#            now()), the function the worker calls to build the document
#            (load the rows, validate, build with json-c, serialize); its
#            time is clock_timestamp() around the call, its memory the peak
#            RssAnon of that backend, sampled every millisecond from
#            /proc/<pid>/status, minus the RssAnon just before the call.
#   worker   publish.publish_version() BENCH_RELEASE_JOBS (3) times through the database's single
#            publish worker (file:// target): the job's times from
#            publish.job_queue and publish.job_log, and the worker's peak
#            RssAnon during each job, and its RssAnon after each job (growth
#            from one job to the next).
#
#   bash bench/release_size.sh                     # as root
#   BENCH_RELEASE_SIZES="1000 10000" bash bench/release_size.sh
#   BENCH_RELEASE_1M=1 bash bench/release_size.sh  # adds 1,000,000 overlays
#
# Writes bench/results/release_size.md (git-ignored) and the plots
# docs/img/release-time.png and docs/img/release-memory.png.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
export PUBLISH_PRIVATE_PG=${PUBLISH_PRIVATE_PG:-/tmp/pg-wt7}
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54451}
SIZES=${BENCH_RELEASE_SIZES:-1000 10000 100000}
JOBS=${BENCH_RELEASE_JOBS:-3}
if [ "${BENCH_RELEASE_1M:-0}" = 1 ]; then SIZES="$SIZES 1000000"; fi
OUT=$BENCH_DIR/results
IMG=$ROOT_DIR/docs/img
SAMPLER=$BENCH_DIR/lib/rss_sampler.py
PYTHON=$(command -v /usr/bin/python3 || command -v python3)
DB=rel
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
build_and_install

WORK=$(mktemp -d /tmp/publish-relsize.XXXXXX)
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT

cluster_start "$WORK/pg" "$PORT" \
	"publish.workers_per_database = 1" \
	"publish.max_release_size = '1GB'" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps" "$OUT" "$IMG"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -d postgres -c "CREATE DATABASE $DB"
q <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('size', 'file://$WORK/maps') \g /dev/null
CREATE FUNCTION bench_build(vid uuid, OUT bytes bigint, OUT ms float8)
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	bytes := octet_length(publish._release_document(vid, 'size', now()));
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;
SQL

# make_project N: project size-N, version 1 ready, N overlays cycling over
# marker, label, polyline and polygon (about 230 bytes each in release.json).
make_project() {
	local n=$1
	q <<SQL
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('size-$n', 'Size $n') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready');
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT v.id, 'o-' || lpad(i::text, 7, '0'), 'Overlay ' || i, t.type,
       CASE t.type
       WHEN 'polyline' THEN jsonb_build_object('type', 'LineString', 'coordinates',
            jsonb_build_array(jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y + 0.0005)))
       WHEN 'polygon' THEN jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(jsonb_build_array(
            jsonb_build_array(x, y), jsonb_build_array(x + 0.001, y), jsonb_build_array(x + 0.001, y + 0.001),
            jsonb_build_array(x, y))))
       ELSE jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(x, y))
       END,
       jsonb_build_object('rank', i, 'category', t.type)
  FROM publish.project_versions v,
       generate_series(1, $n) i,
       LATERAL (SELECT (ARRAY['marker', 'label', 'polyline', 'polygon'])[1 + i % 4] AS type,
                       round((13.0 + (i % 1000) * 0.001)::numeric, 4) AS x,
                       round((52.0 + (i / 1000) * 0.001)::numeric, 4) AS y) t
 WHERE v.project_id = :'project_id';
COMMIT;
ANALYZE publish.overlays;
SQL
}

# sample_start PID: starts the RSS sampler on PID; sample_stop prints its line.
# (python3 may be a slow pyenv shim: wait for the sampler's first sample.)
sample_start() {
	rm -f "$WORK/stop" "$WORK/stop.ready"
	"$PYTHON" "$SAMPLER" "$1" "$WORK/stop" 1 >"$WORK/sample" &
	SAMPLER_PID=$!
	for _ in $(seq 1 500); do [ -e "$WORK/stop.ready" ] && return 0; sleep 0.01; done
	echo "the RSS sampler did not start" >&2; exit 1
}
sample_stop() { touch "$WORK/stop"; wait "$SAMPLER_PID"; cat "$WORK/sample"; }

kb_to_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Warm-up: starts the worker, loads the library's caches.
make_project 20
val "SELECT (publish.publish_version('size-20', 1, 'size')).id" >/dev/null
for _ in $(seq 1 100); do
	[ "$(val "SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')")" = 0 ] && break
	sleep 0.1
done
WORKER_PID=$(val "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$DB' LIMIT 1")
[ -n "$WORKER_PID" ] || { echo "no publish worker found" >&2; exit 1; }

: >"$OUT/release_size.dat"
ROWS=()
for n in $SIZES; do
	echo "== $n overlays"
	t0=$(date +%s.%N)
	make_project "$n"
	SETUP_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	VID=$(val "SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'size-$n'")
	echo "   loaded in $SETUP_S s"

	# backend: a fresh session; the sampler attaches during its pg_sleep
	psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -F' ' \
		-c "SET application_name = 'release-size'" \
		-c "SELECT pg_sleep(1)" -o /dev/null \
		-c "\\o $WORK/build.out" -c "SELECT * FROM bench_build('$VID')" -c "\\o" \
		-c "SELECT pg_sleep(0.05)" >/dev/null &
	PSQL_PID=$!
	BPID=
	for _ in $(seq 1 50); do
		BPID=$(val "SELECT pid FROM pg_stat_activity WHERE application_name = 'release-size' LIMIT 1")
		[ -n "$BPID" ] && break
		sleep 0.01
	done
	[ -n "$BPID" ] || { echo "backend not found" >&2; exit 1; }
	sample_start "$BPID"
	wait "$PSQL_PID"
	read -r _ B_FIRST B_PEAK _ _ <<<"$(sample_stop)"
	read -r B_BYTES B_MS <<<"$(grep -v '^$' "$WORK/build.out")"
	B_DELTA=$((B_PEAK - B_FIRST))
	echo "   backend: $B_BYTES bytes in $B_MS ms, peak private memory +$(kb_to_mb $B_DELTA) MB"

	# worker: JOBS publishes of the same version
	W_AFTER=()
	W_DELTA=0
	for job in $(seq 1 "$JOBS"); do
		BEFORE=$(awk '/^RssAnon:/ {print $2}' "/proc/$WORKER_PID/status")
		[ "$job" -gt 1 ] || W_AFTER+=("$BEFORE")
		sample_start "$WORKER_PID"
		JOB=$(val "SELECT (publish.publish_version('size-$n', 1, 'size')).id")
		for _ in $(seq 1 6000); do
			st=$(val "SELECT status FROM publish.job_queue WHERE id = '$JOB'")
			[ "$st" = completed ] || [ "$st" = failed ] && break
			sleep 0.05
		done
		read -r _ _ W_PEAK _ _ <<<"$(sample_stop)"
		sleep 0.2
		AFTER=$(awk '/^RssAnon:/ {print $2}' "/proc/$WORKER_PID/status")
		[ "$st" = completed ] || { q -c "SELECT status, error FROM publish.job_queue WHERE id = '$JOB'" >&2; exit 1; }
		# load+validate = started -> "Validated" log; build = "Validated" -> "Built"
		read -r J_TOTAL J_LOAD J_BUILD J_BYTES <<<"$(val "
			SELECT round(extract(epoch FROM q.completed_at - q.started_at)::numeric * 1000, 1),
			       round(extract(epoch FROM v.logged_at - q.started_at)::numeric * 1000, 1),
			       round(extract(epoch FROM b.logged_at - v.logged_at)::numeric * 1000, 1),
			       q.result->>'release_bytes'
			  FROM publish.job_queue q
			  JOIN publish.job_log v ON v.job_id = q.id AND v.message LIKE 'Validated%'
			  JOIN publish.job_log b ON b.job_id = q.id AND b.message LIKE 'Built release.json%'
			 WHERE q.id = '$JOB'" | tr '|' ' ')"
		echo "   worker job $job: $J_TOTAL ms (load+validate $J_LOAD ms, build $J_BUILD ms), $J_BYTES bytes;" \
			"RssAnon $(kb_to_mb "$BEFORE") MB before, peak $(kb_to_mb "$W_PEAK") MB, $(kb_to_mb "$AFTER") MB after"
		W_AFTER+=("$AFTER")
		[ $((W_PEAK - BEFORE)) -le "$W_DELTA" ] || W_DELTA=$((W_PEAK - BEFORE))
		if [ "$job" -eq 1 ]; then W1_TOTAL=$J_TOTAL; fi
	done
	DOC_MB=$(awk -v b="$B_BYTES" 'BEGIN { printf "%.2f", b / 1048576 }')
	# gnuplot data: n doc_MB backend_ms backend_delta_MB worker_total_ms worker_build_ms worker_peak_delta_MB worker_after_last_MB
	echo "$n $DOC_MB $B_MS $(kb_to_mb $B_DELTA) $J_TOTAL $J_BUILD $(kb_to_mb $W_DELTA) $(kb_to_mb "${W_AFTER[-1]}")" >>"$OUT/release_size.dat"
	RATIO_B=$(awk -v d="$B_DELTA" -v b="$B_BYTES" 'BEGIN { printf "%.1f", d * 1024 / b }')
	RATIO_W=$(awk -v d="$W_DELTA" -v b="$B_BYTES" 'BEGIN { printf "%.1f", d * 1024 / b }')
	AFTERS=$(for a in "${W_AFTER[@]}"; do kb_to_mb "$a"; echo; done | paste -sd' ' | sed 's/ / → /g')
	ROWS+=("| $(printf "%'d" "$n") | $DOC_MB | $(printf '%.1f' "$B_MS") | $(kb_to_mb $B_DELTA) ($RATIO_B×) | $W1_TOTAL | $J_TOTAL ($J_LOAD + $J_BUILD) | $(kb_to_mb $W_DELTA) ($RATIO_W×) | $AFTERS |")
	# drop the project's rows so the next size starts from a small table
	q -c "DELETE FROM publish.job_queue WHERE version_id = '$VID'" -c "DELETE FROM publish.live_releases WHERE version_id = '$VID'" \
		-c "DELETE FROM publish.overlays WHERE version_id = '$VID'" -c "VACUUM publish.overlays"
done

PG_VERSION=$(val "SHOW server_version")
COMMIT=$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), publish $COMMIT, PostgreSQL $PG_VERSION, $(nproc) CPUs, glibc malloc;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "| overlays | release.json MB | backend: _release_document ms | backend: peak private memory MB (× doc) | worker: job 1 ms | worker: last job ms (load+validate + build) | worker: peak private memory MB during a job (× doc) | worker RssAnon MB: before → after each of $JOBS jobs |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---|"
	for r in "${ROWS[@]}"; do echo "$r"; done
	echo
	echo "Run took $(( $(date +%s) - T_START )) s (mostly loading the overlays)."
} >"$OUT/release_size.md"

bash "$BENCH_DIR/lib/plot_release_size.sh"

echo
cat "$OUT/release_size.md"
echo "(written to $OUT/release_size.md; plots $IMG/release-time.png, $IMG/release-memory.png)"
