#!/usr/bin/env bash
# bench/deep_queue.sh: does a deep queue slow the worker down?  A worker's
# rate with a short queue against its rate with BENCH_DEEP_N (20,000) jobs
# queued, in two shapes:
#   versions  one project, BENCH_DEEP_N ready versions, each published to
#             the same environment: the jobs must run one at a time, in
#             order (publish._claim_job, blocked_by);
#   projects  BENCH_DEEP_N projects, version 1 of each.
# Every version has 20 overlays; one file:// environment.  A short queue
# is BENCH_DEEP_SHORT (200) jobs of the same shape (their own project(s)),
# each run of versions or projects not published before, like the deep
# runs; BENCH_DEEP_SHORT_RUNS (3) of them run before each deep queue and
# as many after, and the deep rate is set against their median (this
# machine's speed drifts over minutes).  Each queue is made by one
# statement (one transaction: the jobs appear at once) and then run by
# publish.workers_per_database = BENCH_DEEP_WORKERS (1) workers: a short
# queue until it is empty, the deep one for its first BENCH_DEEP_MEASURE
# (4,000) jobs (the queue still ≥ 16,000 deep), after which the rest is
# deleted.  For each run: the enqueue statement's time, jobs/s of the
# first BENCH_DEEP_MEASURE jobs to complete (n ÷ (the nth completed_at −
# the first started_at): not the few that end while the rest of the queue
# is deleted), the workers' CPU
# time per job (/proc/<pid>/schedstat), and, every BENCH_DEEP_SAMPLE (2)
# s of the deep runs, the rate and CPU per job against the jobs left (the
# plot).  Once a deep queue's measured jobs have run, the queue still
# deep, auto_explain logs for half a second the plans the worker runs
# (log_analyze, nested statements): the queries inside publish._claim_job
# among them (not while measuring: its timing slows every query).  Not a
# test: it fails only when jobs fail or never finish.
#
#   bash bench/deep_queue.sh                      # as root, about 3 minutes
#   BENCH_DEEP_N=5000 BENCH_DEEP_WORKERS=2 bash bench/deep_queue.sh
#
# Writes bench/results/deep_queue.md, deep_queue-plans.txt (git-ignored),
# docs/results/deep_queue.dat and the plot docs/img/deep-queue.png.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/queue.sh
source "$BENCH_DIR/lib/queue.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

PORT=${PUBLISH_BENCH_PORT:-54458}
N=${BENCH_DEEP_N:-20000}
SHORT=${BENCH_DEEP_SHORT:-200}
SHORT_RUNS=${BENCH_DEEP_SHORT_RUNS:-3}
NS=$((2 * SHORT_RUNS * SHORT))	# short jobs of each shape, all runs
WORKERS=${BENCH_DEEP_WORKERS:-1}
MEASURE=${BENCH_DEEP_MEASURE:-4000}
OUT=$BENCH_DIR/results
DATA=$BENCH_DIR/../docs/results
IMG=$BENCH_DIR/../docs/img
DB=deep
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$OUT" "$DATA" "$IMG"

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-deep.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cluster_start "$WORK/pg" "$PORT" \
	"publish.workers_per_database = $WORKERS" \
	"shared_preload_libraries = 'publish, auto_explain'" \
	"auto_explain.log_nested_statements = on" \
	"auto_explain.log_analyze = on" \
	"auto_explain.log_buffers = on" \
	"auto_explain.log_min_duration = -1" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB"
echo "== loading: 1 + 1 projects of $N + $NS versions, $N + $NS projects of 1 version (20 overlays each)"
q <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('deep', 'file://$WORK/maps') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('versions-deep', 'Deep'), ('versions-short', 'Short');
INSERT INTO publish.projects (slug, name) SELECT 'deep-' || k, 'Deep ' || k FROM generate_series(1, $N) k;
INSERT INTO publish.projects (slug, name) SELECT 'short-' || k, 'Short ' || k FROM generate_series(1, $NS) k;
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT p.id, v, 'ready' FROM publish.projects p, generate_series(1, CASE p.slug WHEN 'versions-deep' THEN $N WHEN 'versions-short' THEN $NS ELSE 1 END) v;
\i '$BENCH_DIR/lib/markers.sql'
VACUUM ANALYZE;
SQL
echo "   loaded in $(( $(date +%s) - T_START )) s"

# wait_completed T0 N: until N jobs queued since T0 have ended
wait_completed() {
	while [ "$(val "SELECT count(*) FROM publish.job_queue WHERE created_at >= '$1' AND status NOT IN ('queued', 'running')")" -lt "$2" ]; do
		sleep 0.5
	done
}
# explain_window LABEL: the plans the workers run, for half a second,
# after a line "bench: LABEL" in the server log
explain_window() {
	psql -X -q -d "$DB" -c "DO \$\$ BEGIN RAISE WARNING 'bench: %', '$1'; END \$\$" >/dev/null 2>&1
	psql -X -q -d postgres -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
	psql -X -q -d postgres -c "ALTER SYSTEM RESET auto_explain.log_min_duration" -c "SELECT pg_reload_conf()" >/dev/null
}
# plans SHAPE: a window once the measured jobs have run, the queue still
# deep (not during the measure: auto_explain's timing slows every query;
# whether autovacuum has analyzed the queue since it was made is said in
# the label)
plans() {
	explain_window "$1, $(val "SELECT count(*) FROM publish.job_queue WHERE status IN ('queued', 'running')") jobs queued; job_queue last analyzed $(val "SELECT coalesce(greatest(last_analyze, last_autoanalyze)::text, 'never') FROM pg_stat_user_tables WHERE relid = 'publish.job_queue'::regclass")"
}


# sample SHAPE DEPTH T0: every BENCH_DEEP_SAMPLE (2) s until the queue is
# empty, a line of the plot's data: shape, jobs still queued or running, the
# interval's jobs/s and the workers' CPU ms per job
sample() {
	local shape=$1 depth=$2 t0=$3 cpu0 cpu1 done0=0 done1 t1 tp
	cpu0=$(workers_cpu); tp=$(date +%s.%N)
	while :; do
		sleep "${BENCH_DEEP_SAMPLE:-2}"
		done1=$(val "SELECT count(*) FROM publish.job_queue WHERE created_at >= '$t0' AND status NOT IN ('queued', 'running')")
		cpu1=$(workers_cpu); t1=$(date +%s.%N)
		[ "$done1" -gt "$done0" ] && awk -v s="$shape" -v left="$((depth - done0))" -v n="$((done1 - done0))" -v c="$((cpu1 - cpu0))" -v dt="$(awk -v a="$tp" -v b="$t1" 'BEGIN { print b - a }')" \
			'BEGIN { printf "%s %d %.1f %.3f\n", s, left, n / dt, c / 1e6 / n }' >>"$DATA/deep_queue.dat"
		cpu0=$cpu1; done0=$done1; tp=$t1
		[ "$done1" -lt "$MEASURE" ] || break
	done
}

ROWS=()
: >"$DATA/deep_queue.dat"
FAILED=0
# run SHAPE DEPTH ENQUEUE_SQL: queues DEPTH jobs in one statement, drains them
run() {
	local shape=$1 depth=$2 sql=$3 t0 enq_ms cpu0 cpu1 row total done rate runms cpuj ran=
	val "VACUUM ANALYZE publish.job_queue, publish.job_log" >/dev/null
	t0=$(val "SELECT clock_timestamp()")
	cpu0=$(workers_cpu)
	enq_ms=$(psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -c '\timing on' -c "$sql" | awk '/^Time:/ { print $2 }')
	if [ "$depth" -gt "$SHORT" ]; then
		sample "$shape" "$depth" "$t0" &
		wait_completed "$t0" "$MEASURE"
		cpu1=$(workers_cpu)
		ran=$(val "SELECT count(*) FROM publish.job_queue WHERE created_at >= '$t0' AND status NOT IN ('queued', 'running')")
		plans "$shape"
		val "DELETE FROM publish.job_queue WHERE created_at >= '$t0' AND status = 'queued'" >/dev/null
	fi
	wait_drained 3600 0.5
	wait
	[ "$depth" -gt "$SHORT" ] || cpu1=$(workers_cpu)
	# the rate of the first MEASURE jobs to complete: those that end while
	# the rest of a deep queue is being deleted are not run with it queued
	row=$(val "WITH run AS (SELECT status, started_at, completed_at FROM publish.job_queue WHERE created_at >= '$t0'),
	                measured AS (SELECT * FROM run WHERE status = 'completed' ORDER BY completed_at LIMIT $MEASURE)
	           SELECT (SELECT count(*) FILTER (WHERE status <> 'cancelled') FROM run),
	                  (SELECT count(*) FILTER (WHERE status = 'completed') FROM run),
	                  round((count(*) / extract(epoch FROM max(completed_at) - min(started_at)))::numeric, 1),
	                  round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at) * 1000)::numeric, 2)
	             FROM measured")
	IFS='|' read -r total done rate runms <<<"$row"
	FAILED=$((FAILED + total - done))
	cpuj=$(awk -v c="$((cpu1 - cpu0))" -v n="${ran:-$total}" 'BEGIN { printf "%.2f", c / 1e6 / n }')
	echo "   $shape, $depth queued: enqueued in $enq_ms ms; $done/$total completed at $rate jobs/s (job run median $runms ms), worker CPU $cpuj ms per job"
	ROWS+=("| $shape | $(printf "%'d" "$depth") | $total | $(awk -v m="$enq_ms" -v n="$depth" 'BEGIN { printf "%.0f (%.2f per job)", m, m / n }') | **$rate** | $runms | $cpuj |")
	if [ "$depth" -gt "$SHORT" ]; then
		RATES[$shape]=$rate; CPUS[$shape]=$cpuj
	else
		SHORT_RATES[$shape]="${SHORT_RATES[$shape]:-} $rate"; SHORT_CPUS[$shape]="${SHORT_CPUS[$shape]:-} $cpuj"
	fi
}
declare -A RATES CPUS SHORT_RATES SHORT_CPUS
# short SHAPE: SHORT_RUNS short queues of SHAPE, each of versions or
# projects never published before, as in the deep runs (a first publish
# writes more than a re-publish); batch counts them
short() {
	local i first last
	for i in $(seq 1 "$SHORT_RUNS"); do
		first=$((batch * SHORT + 1)); last=$(((batch + 1) * SHORT)); batch=$((batch + 1))
		case $1 in
			versions) run versions "$SHORT" "SELECT count(publish.publish_version('versions-short', v, 'deep')) FROM generate_series($first, $last) v" ;;
			projects) run projects "$SHORT" "SELECT count(publish.publish_version('short-' || k, 1, 'deep')) FROM generate_series($first, $last) k" ;;
		esac
	done
}
# each deep queue between short ones, on either side, as the machine's
# speed drifts over minutes
for shape in versions projects; do
	echo "== $shape"
	batch=0	# each shape has its own short projects or versions
	short "$shape"
	case $shape in
		versions) run versions "$N" "SELECT count(publish.publish_version('versions-deep', v, 'deep')) FROM generate_series(1, $N) v" ;;
		projects) run projects "$N" "SELECT count(publish.publish_version('deep-' || k, 1, 'deep')) FROM generate_series(1, $N) k" ;;
	esac
	short "$shape"
done

# the plans: auto_explain's entries for the claim's queries
awk '/WARNING:  bench: / { sub(/.*WARNING:  /, "== "); print; next }
     /LOG:  duration: .* plan:/ { keep = 1; buf = $0 "\n"; next }
     keep && /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { if (buf ~ /job_queue/) print buf; keep = 0; buf = "" }
     keep { buf = buf $0 "\n" }' "$WORK/pg/server.log" >"$OUT/deep_queue-plans.txt"

gnuplot <<GP
set terminal pngcairo size 900,480 font ',10' noenhanced
set output '$IMG/deep-queue.png'
set title 'The first $MEASURE jobs of a queue of $N ($WORKERS worker): CPU time per job and rate, against the jobs left'
set xlabel 'jobs still queued or running'; set ylabel 'worker CPU ms per job'; set y2label 'jobs/s'
set xrange [$N:$((N - MEASURE))]; set yrange [0:*]; set y2range [0:*]; set ytics nomirror; set y2tics; set grid; set key top right
plot '< grep ^versions $DATA/deep_queue.dat' using 2:4 with lines lw 2 lc 1 title 'CPU per job: one project, $N versions', \
     '< grep ^projects $DATA/deep_queue.dat' using 2:4 with lines lw 2 lc 2 title 'CPU per job: $N projects', \
     $(median "${SHORT_CPUS[versions]}") with lines dt 2 lw 1 lc 1 title 'CPU per job, short queues of $SHORT (median): versions', \
     $(median "${SHORT_CPUS[projects]}") with lines dt 2 lw 1 lc 2 title 'CPU per job, short queues of $SHORT (median): projects', \
     '< grep ^versions $DATA/deep_queue.dat' using 2:3 axes x1y2 with points pt 7 ps 0.5 lc 1 title 'jobs/s: one project, $N versions', \
     '< grep ^projects $DATA/deep_queue.dat' using 2:3 axes x1y2 with points pt 5 ps 0.5 lc 2 title 'jobs/s: $N projects'
GP

{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown), PostgreSQL $(val 'SHOW server_version'), $(nproc) CPUs, publish.workers_per_database = $WORKERS;"
	echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "Each queue made by one statement; the short ones drained, the deep ones run for their first $MEASURE jobs (then the rest deleted); jobs/s = n ÷ (the nth completed_at − the first started_at) over the first $MEASURE jobs to complete. $SHORT_RUNS short queues before and $SHORT_RUNS after each deep one, each of versions or projects not published before, as in the deep ones."
	echo
	echo "| shape | jobs queued | jobs run | enqueue ms | jobs/s | job run median ms | worker CPU ms per job |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for row in "${ROWS[@]}"; do echo "$row"; done
	echo
	for shape in versions projects; do
		awk -v s="$shape" -v d="${RATES[$shape]}" -v c="${CPUS[$shape]}" -v r1="$(median "${SHORT_RATES[$shape]}")" -v c1="$(median "${SHORT_CPUS[$shape]}")" \
			'BEGIN { printf "%s: deep rate %.0f%% of the short queues'"'"' median (%.1f jobs/s), CPU per job %.0f%% (%.2f ms).\n", s, 100 * d / r1, r1, 100 * c / c1, c1 }'
	done
	echo "Jobs not completed: $FAILED. Run took $(( $(date +%s) - T_START )) s."
} >"$OUT/deep_queue.md"
echo; cat "$OUT/deep_queue.md"
echo "(plans in $OUT/deep_queue-plans.txt; plot $IMG/deep-queue.png)"
[ "$FAILED" -eq 0 ] || exit 1
