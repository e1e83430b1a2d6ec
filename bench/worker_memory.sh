#!/usr/bin/env bash
# bench/worker_memory.sh: does the worker's memory stay flat over many jobs?
# One worker runs BENCH_MEM_JOBS (100) jobs in turn, one at a time: a
# publish of BENCH_MEM_BIG (100,000) overlays (every other job), a publish
# of 20 overlays, and a publish that fails validation; after each job its
# VmRSS, RssAnon (private memory: malloc, palloc, json-c) and VmHWM are
# read from /proc/<pid>/status.  RSS also counts the shared buffers the
# worker has touched (shared memory, which grows to what it reads), so
# RssAnon is the figure that shows a leak.  Not a test: it fails only when
# a job ends otherwise than expected.
#
#   bash bench/worker_memory.sh                   # as root, about 3 minutes
#   BENCH_MEM_JOBS=40 BENCH_MEM_BIG=20000 bash bench/worker_memory.sh
#
# Writes bench/results/worker_memory.md (git-ignored), the data
# docs/results/worker_memory.dat and the plot docs/img/worker-memory.png.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54459}
JOBS=${BENCH_MEM_JOBS:-100}
BIG=${BENCH_MEM_BIG:-100000}
OUT=$BENCH_DIR/results
DATA=$BENCH_DIR/../docs/results
IMG=$BENCH_DIR/../docs/img
DB=mem
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT" "$DATA" "$IMG"

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-mem.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cluster_start "$WORK/pg" "$PORT" \
	"publish.workers_per_database = 1" \
	"publish.max_release_size = '1GB'" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
# big: the overlays of release_size.sh (lib/overlays.sql); small: 20
# markers; bad: 20 markers, one of them a line (fails validation)
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('mem', 'file://$WORK/maps') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('big', 'Big'), ('small', 'Small'), ('bad', 'Bad');
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects;
SELECT v.id AS version_id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'big' \gset
\set n $BIG
\i '$BENCH_DIR/lib/overlays.sql'
\set n 20
\set types '{marker}'
SELECT v.id AS version_id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'small' \gset
\i '$BENCH_DIR/lib/overlays.sql'
SELECT v.id AS version_id FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'bad' \gset
\i '$BENCH_DIR/lib/overlays.sql'
UPDATE publish.overlays o SET geometry = '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id
 WHERE o.version_id = v.id AND p.slug = 'bad' AND o.key = 'o-0000001';
VACUUM ANALYZE;
SQL

# run_job SLUG: publishes SLUG's version 1 and waits; prints its status
run_job() {
	local id st
	id=$(val "SELECT (publish.publish_version('$1', 1, 'mem')).id")
	for _ in $(seq 1 60000); do
		st=$(val "SELECT status FROM publish.job_queue WHERE id = '$id'")
		[ "$st" = completed ] || [ "$st" = failed ] && break
		sleep 0.01
	done
	echo "$st"
}
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

run_job small >/dev/null	# starts the worker
WPID=$(val "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = '$DB'")
[ -n "$WPID" ] || { echo "no publish worker" >&2; exit 1; }
echo "== $JOBS jobs through worker $WPID"
# columns: job, kind, VmRSS kB, RssAnon kB, VmHWM kB, worker CPU ms of the job
echo "0 idle $(status_kb "$WPID" VmRSS) $(status_kb "$WPID" RssAnon) $(status_kb "$WPID" VmHWM) 0" >"$DATA/worker_memory.dat"
BAD=0
for i in $(seq 1 "$JOBS"); do
	case $((i % 4)) in
	1|3) kind=big want=completed ;;
	2) kind=small want=completed ;;
	0) kind=bad want=failed ;;
	esac
	cpu0=$(cut -d' ' -f1 "/proc/$WPID/schedstat")
	st=$(run_job "$kind")
	sleep 0.1	# the job's memory reset and trimmed after its end is recorded
	[ "$st" = "$want" ] || { echo "job $i ($kind) ended $st, not $want" >&2; BAD=$((BAD + 1)); }
	line="$i $kind $(status_kb "$WPID" VmRSS) $(status_kb "$WPID" RssAnon) $(status_kb "$WPID" VmHWM) $(( ($(cut -d' ' -f1 "/proc/$WPID/schedstat") - cpu0) / 1000000 ))"
	echo "$line" >>"$DATA/worker_memory.dat"
	[ $((i % 10)) -ne 0 ] || echo "   $line"
done

gnuplot <<GP
set terminal pngcairo size 900,480 font ',10' noenhanced
set output '$IMG/worker-memory.png'
set title 'The worker''s memory after each of $JOBS jobs (publishes of $BIG overlays, of 20, and failing ones, in turn)'
set xlabel 'jobs run'; set ylabel 'MB'; set grid; set key top left; set yrange [0:*]
plot '$DATA/worker_memory.dat' using 1:(\$3 / 1024) with linespoints lw 2 pt 7 ps 0.5 title 'VmRSS (resident, shared buffers included)', \
     '' using 1:(\$4 / 1024) with linespoints lw 2 pt 5 ps 0.5 title 'RssAnon (private: heap, palloc, json-c)', \
     '' using 1:(\$5 / 1024) with lines lw 1 dt 2 title 'VmHWM (peak so far)'
GP

# private memory after the 10th job and after the last, and the slope of a
# least-squares line over jobs 10..last (kB per job)
SUMMARY=$(awk -v last="$JOBS" '$1 >= 10 { n++; sx += $1; sy += $4; sxx += $1 * $1; sxy += $1 * $4 }
	$1 == 10 { a10 = $4; r10 = $3 } $1 == last { al = $4; rl = $3; h = $5 }
	$2 == "big" { bc += $6; bn++ }
	END { printf "%.1f %.1f %.1f %.1f %.2f %.1f %.0f\n", a10 / 1024, al / 1024, r10 / 1024, rl / 1024, (n * sxy - sx * sy) / (n * sxx - sx * sx), h / 1024, bc / bn }' "$DATA/worker_memory.dat")
read -r A10 AL R10 RL SLOPE HWM BIGCPU <<<"$SUMMARY"
{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown), PostgreSQL $(val 'SHOW server_version'), $(nproc) CPUs, glibc malloc;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "One worker, $JOBS jobs in turn: publish of $(printf "%'d" "$BIG") overlays, of 20 overlays, of $(printf "%'d" "$BIG") again, and one that fails validation."
	echo
	echo "| after job | VmRSS MB | RssAnon MB (private) |"
	echo "|---:|---:|---:|"
	echo "| 10 | $R10 | $A10 |"
	echo "| $JOBS | $RL | $AL |"
	echo
	echo "RssAnon slope over jobs 10–$JOBS (least squares): $SLOPE kB per job. VmHWM after the last job: $HWM MB. Worker CPU per $(printf "%'d" "$BIG")-overlay job: $BIGCPU ms (mean). Jobs that ended otherwise than expected: $BAD. Run took $(( $(date +%s) - T_START )) s."
} >"$OUT/worker_memory.md"
echo; cat "$OUT/worker_memory.md"
[ "$BAD" -eq 0 ]
