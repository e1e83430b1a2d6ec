#!/usr/bin/env bash
# bench/release_size.sh: release.json against the number of overlays (1k,
# 10k, 100k and 1M): build time, whole-job time, document size, the
# worker's peak memory and the memory it keeps after a job.  Not a test: it
# measures, and fails only when a build or a publish fails.
#
# For each size, on a private cluster (port $PUBLISH_BENCH_PORT, 54451):
#   backend  a fresh session runs publish._release_document(version, env,
#            now()) (load, validate, write the document, as the worker does,
#            plus the copy into a json value); time by clock_timestamp()
#            around the call.
#   worker   BENCH_RELEASE_JOBS (3) publishes of the version through the
#            database's single publish worker, to a file:// target:
#            - build: job_queue.started_at -> the "Validated" log line (the
#              one pass that reads, checks and writes the document);
#            - job: started_at -> completed_at (also the upload of the two
#              copies (file://: the versioned copy written and fsync'd, release.json
#              a hard link to it) and the final commit);
#            - CPU: the worker's utime + stime over the job (/proc/PID/stat),
#              which the other processes of a busy machine do not inflate;
#            - peak memory: before each job the worker's high-water mark is
#              reset to its current RSS (echo 5 > /proc/PID/clear_refs);
#              peak = VmHWM after the job - VmRSS before it (KiB, from
#              /proc/PID/status);
#            - kept: RssAnon (private memory: malloc, palloc, mappings)
#              after each job - RssAnon of the idle worker before the first
#              job of the run (after a 20-overlay warm-up job).  RSS also
#              counts the shared buffers the worker has touched, which grow
#              to shared_buffers whatever the job keeps.
#            The table shows the last job's figures (the first job of a size
#            also maps the overlays' shared-buffer pages into the worker,
#            shared memory the job does not allocate; its peak is printed on
#            the job's line).
#
#   bash bench/release_size.sh                        # as root: 1k, 10k, 100k, 1M (~3 min)
#   BENCH_RELEASE_SIZES="1000 10000" bash bench/release_size.sh
#
# Writes bench/results/release_size.md and .log (git-ignored), the data
# behind the plots docs/results/release_size.dat
# and the plots docs/img/release-time.png and docs/img/release-memory.png.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54451}
SIZES=${BENCH_RELEASE_SIZES:-1000 10000 100000 1000000}
JOBS=${BENCH_RELEASE_JOBS:-3}
OUT=$BENCH_DIR/results
DATA=$BENCH_DIR/../docs/results
IMG=$ROOT_DIR/docs/img
DB=rel
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
build_and_install

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-relsize.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$OUT" "$DATA"
exec > >(tee "$OUT/release_size.log") 2>&1
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
	bytes := octet_length(publish._release_document(vid, 'size', now())::text);
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;
SQL

# make_project N: project size-N, version 1 ready, N overlays cycling over
# marker, label, polyline and polygon (lib/overlays.sql: about 230 bytes
# each in release.json).
make_project() {
	local n=$1
	q <<SQL
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('size-$n', 'Size $n') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready') RETURNING id AS version_id \gset
\set n $n
\i '$BENCH_DIR/lib/overlays.sql'
COMMIT;
ANALYZE publish.overlays;
SQL
}

# status_kb PID FIELD: a field of /proc/PID/status, in kB
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
# cpu_ms PID: utime + stime of PID so far, in ms
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
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

: >"$DATA/release_size.dat"
ROWS=()
IDLE_ANON=$(status_kb "$WORKER_PID" RssAnon)
for n in $SIZES; do
	echo "== $n overlays"
	t0=$(date +%s.%N)
	make_project "$n"
	SETUP_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	VID=$(val "SELECT v.id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'size-$n'")
	echo "   loaded in $SETUP_S s"

	# backend: a fresh session
	read -r B_BYTES B_MS <<<"$(psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -F' ' -c "SELECT * FROM bench_build('$VID')")"
	echo "   backend: $B_BYTES bytes in $B_MS ms"

	# worker: JOBS publishes of the same version
	KEPT=()
	for job in $(seq 1 "$JOBS"); do
		BEFORE=$(status_kb "$WORKER_PID" VmRSS)
		SHM0=$(status_kb "$WORKER_PID" RssShmem)
		echo 5 >"/proc/$WORKER_PID/clear_refs"
		CPU0=$(cpu_ms "$WORKER_PID")
		JOB=$(val "SELECT (publish.publish_version('size-$n', 1, 'size')).id")
		for _ in $(seq 1 60000); do
			st=$(val "SELECT status FROM publish.job_queue WHERE id = '$JOB'")
			[ "$st" = completed ] || [ "$st" = failed ] && break
			sleep 0.01
		done
		CPU=$(awk -v a="$CPU0" -v b="$(cpu_ms "$WORKER_PID")" 'BEGIN { printf "%.0f", b - a }')
		HWM=$(status_kb "$WORKER_PID" VmHWM)
		sleep 0.2
		AFTER=$(status_kb "$WORKER_PID" VmRSS)
		AFTER_ANON=$(status_kb "$WORKER_PID" RssAnon)
		[ "$st" = completed ] || { q -c "SELECT status, error FROM publish.job_queue WHERE id = '$JOB'" >&2; exit 1; }
		read -r J_TOTAL J_BUILD J_BYTES <<<"$(val "
			SELECT round(extract(epoch FROM q.completed_at - q.started_at)::numeric * 1000, 1),
			       round(extract(epoch FROM v.logged_at - q.started_at)::numeric * 1000, 1),
			       q.result->>'release_bytes'
			  FROM publish.job_queue q
			  JOIN publish.job_log v ON v.job_id = q.id AND v.message LIKE 'Validated%'
			 WHERE q.id = '$JOB'" | tr '|' ' ')"
		PEAK=$((HWM - BEFORE))
		echo "   worker job $job: $J_TOTAL ms (build $J_BUILD ms), CPU $CPU ms, $J_BYTES bytes;" \
			"VmRSS $(kb_to_mb "$BEFORE") MB before, peak +$(kb_to_mb $PEAK) MB (VmHWM $(kb_to_mb "$HWM") MB), $(kb_to_mb "$AFTER") MB after;" \
			"RssShmem $(kb_to_mb "$SHM0") -> $(kb_to_mb "$(status_kb "$WORKER_PID" RssShmem)") MB, RssAnon after $(kb_to_mb "$AFTER_ANON") MB"
		KEPT+=("$(kb_to_mb $((AFTER_ANON - IDLE_ANON)))")
	done
	DOC_MB=$(awk -v b="$J_BYTES" 'BEGIN { printf "%.2f", b / 1048576 }')
	RATIO=$(awk -v d="$PEAK" -v b="$J_BYTES" 'BEGIN { printf "%.2f", d * 1024 / b }')
	# gnuplot data: n doc_MB backend_ms worker_build_ms worker_job_ms worker_cpu_ms peak_MB kept_after_last_MB
	echo "$n $DOC_MB $B_MS $J_BUILD $J_TOTAL $CPU $(kb_to_mb $PEAK) ${KEPT[-1]}" >>"$DATA/release_size.dat"
	ROWS+=("| $(printf "%'d" "$n") | $DOC_MB | $(printf '%.1f' "$B_MS") | $J_BUILD | **$J_TOTAL** | $CPU | $(kb_to_mb $PEAK) | **$RATIO×** | $(IFS=' '; echo "${KEPT[*]}" | sed 's/ / → /g') |")
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
	echo "| overlays | release.json MB | backend: _release_document ms | worker: build ms (read, check, write) | worker: whole job ms | worker CPU ms | worker peak MB over the RSS before the job (VmHWM) | peak ÷ release.json | worker private MB kept after each of $JOBS jobs (RssAnon − idle $(kb_to_mb "$IDLE_ANON") MB) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for r in "${ROWS[@]}"; do echo "$r"; done
	echo
	echo "Run took $(( $(date +%s) - T_START )) s (mostly loading the overlays)."
} >"$OUT/release_size.md"

bash "$BENCH_DIR/lib/plot_release_size.sh"

echo
cat "$OUT/release_size.md"
echo "(written to $OUT/release_size.md; plots $IMG/release-time.png, $IMG/release-memory.png)"
