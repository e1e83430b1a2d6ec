#!/usr/bin/env bash
# bench/profile_release.sh: where the time of a big publish job goes, by
# perf: the database's publish worker publishes a version of BENCH_PROFILE_N
# (100,000) overlays to a file:// target while `perf record -e cpu-clock -g`
# samples it (cpu-clock: hardware counters are not available in the VM).
# Not a test.
#
#   bash bench/profile_release.sh        # as root (perf needs it)
#
# Writes bench/results/profile_release.txt: the top shared objects, the top
# symbols (self time) and the top symbols with their callees.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
PORT=${PUBLISH_BENCH_PORT:-54456}
N=${BENCH_PROFILE_N:-100000}
OUT=$BENCH_DIR/results
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "perf is needed (linux-perf)" >&2; exit 1; }

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-prof.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
cluster_start "$WORK/pg" "$PORT" "publish.max_release_size = '1GB'" "log_min_messages = warning" \
	"publish.workers_per_database = 1"
mkdir -p "$WORK/maps"; chmod 777 "$WORK/maps"
psql -X -q -d postgres -c "CREATE DATABASE prof"
psql -X -q -v ON_ERROR_STOP=1 -d prof <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('prof', 'file://$WORK/maps') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('prof', 'Profile');
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects
RETURNING id AS version_id \gset
\set n $N
\i '$BENCH_DIR/lib/overlays.sql'
ANALYZE;
SQL
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -d prof -c "$1"; }
# wait_job ID: until the job has ended; fails unless it completed
wait_job() {
	local st=
	for _ in $(seq 1 3000); do
		st=$(q "SELECT status FROM publish.job_queue WHERE id = '$1'")
		[ "$st" = completed ] || [ "$st" = failed ] && break
		sleep 0.02
	done
	[ "$st" = completed ] || { q "SELECT error FROM publish.job_queue WHERE id = '$1'" >&2; exit 1; }
}
# a first job warms the worker (caches, plans) and the table's pages
wait_job "$(q "SELECT (publish.publish_version('prof', 1, 'prof')).id")"
WPID=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'prof'")
[ -n "$WPID" ] || { echo "no publish worker" >&2; exit 1; }
perf record -q -e cpu-clock -F 999 -g -p "$WPID" -o "$WORK/perf.data" 2>/dev/null &
PERF=$!
sleep 0.5
wait_job "$(q "SELECT (publish.publish_version('prof', 1, 'prof')).id")"
kill -INT "$PERF" 2>/dev/null || true
wait "$PERF" 2>/dev/null || true
perf report -i "$WORK/perf.data" --stdio --no-children --sort dso -g none >"$WORK/dso.txt" 2>/dev/null
perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol -g none >"$WORK/sym.txt" 2>/dev/null
perf report -i "$WORK/perf.data" --stdio --children --sort symbol -g none >"$WORK/children.txt" 2>/dev/null
strip() { grep -v -e '^#' -e '^$' "$1" | head -n "$2" || true; }
{
	echo "# perf -e cpu-clock, the publish worker running a publish job of $N overlays to file:// ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "## shared objects (self time)"
	strip "$WORK/dso.txt" 12
	echo
	echo "## symbols (self time)"
	strip "$WORK/sym.txt" 40
	echo
	echo "## symbols (with callees)"
	strip "$WORK/children.txt" 40
} >"$OUT/profile_release.txt"
cat "$OUT/profile_release.txt"
