#!/usr/bin/env bash
# bench/preview.sh: the preview publish.build_release() of a version of
# BENCH_PREVIEW_N (100,000) overlays, and the publish job of that version
# (the worker's whole job), against PostgreSQL's json_agg of the same rows,
# in the same run, on a fresh private cluster.  Not a test: it
# measures, and fails only when a statement fails.
#
# Both statements run in one psql session, interleaved (build_release,
# json_agg, build_release, ...), BENCH_PREVIEW_RUNS (5) times each after one
# untimed run of each; the time is psql's \timing of the statement (sent,
# parsed, planned, run, its one row received).  Two ways of running them:
#
#   on the server  the value is made, converted to text through its type's
#                  output function (what sending it would cost: for json a
#                  copy, for jsonb its printing), and only its length comes
#                  back; both in the target list, as PostgREST calls a
#                  function (in FROM, a function's result would be copied
#                  into a tuplestore first):
#                    SELECT octet_length(publish.build_release('preview', 1, 'preview', T)::text)
#                    SELECT octet_length(json_agg(...)::text) FROM (SELECT * FROM publish.overlays o
#                                          WHERE o.version_id = V ORDER BY o.key COLLATE "C") o
#   to the client  the whole value is sent to psql, which reads it and
#                  throws it away (\g /dev/null): what a PostgREST request
#                  also pays (PostgREST sends a json scalar as the body).
#
# json_agg's object per overlay is json_build_object('key', 'name', 'type',
# 'geometry', 'properties') over the rows ordered by key in the "C"
# collation, read in that order from the index the release is read through
# (an ORDER BY inside json_agg would sort: a slower floor).  release.json
# also writes each overlay's "asset" (null here) and the version's head.
#
#   bash bench/preview.sh                         # as root (~1 min)
#   BENCH_PREVIEW_N=20000 BENCH_PREVIEW_RUNS=9 bash bench/preview.sh
#
# The cluster lives in a directory made under BENCH_TMPDIR (default
# $TMPDIR or /tmp), on port PUBLISH_BENCH_PORT (54457), and is stopped by its
# pid on exit.  Writes bench/results/preview.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

PORT=${PUBLISH_BENCH_PORT:-54457}
N=${BENCH_PREVIEW_N:-100000}
RUNS=${BENCH_PREVIEW_RUNS:-5}
OUT=$BENCH_DIR/results
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-preview.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$OUT"
cluster_start "$WORK/pg" "$PORT" \
	"publish.max_release_size = '1GB'" \
	"publish.workers_per_database = 1" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK/maps"; fi

psql -X -q -d postgres -c "CREATE DATABASE preview"
q() { psql -X -q -v ON_ERROR_STOP=1 -d preview "$@"; }
val() { q -tAc "$1"; }

# The overlays of release_size.sh (lib/overlays.sql): marker, label,
# polyline and polygon in turn, about 230 bytes each in release.json.
q <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('preview', 'file://$WORK/maps') \g /dev/null
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('preview', 'Preview') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status) VALUES (:'project_id', 1, 'ready') RETURNING id AS version_id \gset
\set n $N
\i '$BENCH_DIR/lib/overlays.sql'
COMMIT;
VACUUM ANALYZE publish.overlays;
SQL
VID=$(val "SELECT id FROM publish.project_versions")
# a first publish starts the worker and warms its caches (queued in its own
# transaction: a job starts when the transaction that queued it commits)
WARM=$(val "SELECT id FROM publish.publish_version('preview', 1, 'preview')")
val "SELECT status FROM publish.wait_job('$WARM', '1 min')" >/dev/null
RET=$(val "SELECT pg_get_function_result('publish.build_release(text, integer, text, timestamptz)'::regprocedure)")

OBJ="json_build_object('key', o.key, 'name', o.name, 'type', o.overlay_type, 'geometry', o.geometry, 'properties', o.properties)"
ROWS="(SELECT * FROM publish.overlays o WHERE o.version_id = '$VID' ORDER BY o.key COLLATE \"C\") o"
BUILD="SELECT octet_length(publish.build_release('preview', 1, 'preview', '2026-01-01 00:00:00+00')::text)"
AGG="SELECT octet_length(json_agg($OBJ)::text) FROM $ROWS"
BUILD_SEND="SELECT publish.build_release('preview', 1, 'preview', '2026-01-01 00:00:00+00')"
AGG_SEND="SELECT json_agg($OBJ) FROM $ROWS"

# The script psql runs.  Before each timed statement, the backend's CPU
# time so far (/proc/self/schedstat: ns on a CPU) is kept, then a tag is
# echoed; after it, a line "cpu|<ns>" gives the statement's CPU time.  Only
# the "Time:" line right after a tag is the timed statement's.
{
	echo "CREATE FUNCTION pg_temp.cpu_ns() RETURNS bigint LANGUAGE sql AS \$\$ SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint \$\$;"
	echo '\timing on'
	echo "$BUILD;"; echo "$AGG;"
	echo "$BUILD_SEND \\g /dev/null"; echo "$AGG_SEND \\g /dev/null"
	timed() {
		echo 'SELECT pg_temp.cpu_ns() AS cpu0 \gset'
		echo "\\echo @ $1"
		echo "$2"
		echo "SELECT 'cpu', pg_temp.cpu_ns() - :cpu0;"
	}
	echo "SELECT pid AS wpid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = current_database() \\gset"
	for _ in $(seq 1 "$RUNS"); do
		timed "build server" "$BUILD;"
		timed "agg server" "$AGG;"
		# the publish job of the same version, by the worker: started_at ->
		# completed_at, and the worker's CPU time meanwhile
		echo "SELECT split_part(pg_read_file('/proc/' || :wpid || '/schedstat'), ' ', 1)::bigint AS w0 \\gset"
		echo "SELECT (publish.publish_version('preview', 1, 'preview')).id AS job \\gset"
		echo "SELECT 'status', status FROM publish.wait_job(:'job', '1 min');"
		echo "SELECT 'job', extract(epoch FROM completed_at - started_at) * 1000,"
		echo "       split_part(pg_read_file('/proc/' || :wpid || '/schedstat'), ' ', 1)::bigint - :w0"
		echo "  FROM publish.job_queue WHERE id = :'job';"
	done
	for _ in $(seq 1 "$RUNS"); do
		timed "build client" "$BUILD_SEND \\g /dev/null"
		timed "agg client" "$AGG_SEND \\g /dev/null"
	done
} >"$WORK/timed.sql"
q -tA -f "$WORK/timed.sql" >"$WORK/timed.out"

# times WHAT: the wall ms of the timed runs of WHAT ("build server", ...),
# one a line; cpus WHAT: their backend CPU ms
times() { awk -v w="$1" '/^@ / { tag = substr($0, 3); next } /^Time: / { if (tag == w) print $2; tag = "" }' "$WORK/timed.out"; }
cpus() { awk -v w="$1" -F'|' '/^@ / { tag = substr($0, 3); next } /^cpu\|/ { if (tag == w) print $2 / 1e6; tag = "" }' "$WORK/timed.out"; }
list() { awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }'; }
if grep '^status|' "$WORK/timed.out" | grep -qv '^status|completed$'; then
	echo "a publish job did not complete" >&2; grep '^status|' "$WORK/timed.out" >&2; exit 1
fi
BYTES_BUILD=$(grep -m1 -E '^[0-9]+$' "$WORK/timed.out")
BYTES_AGG=$(grep -E '^[0-9]+$' "$WORK/timed.out" | sed -n 2p)
ratio() { awk -v b="$1" -v a="$2" 'BEGIN { printf "%.2f", b / a }'; }
# row WHERE LABEL: the table's line of "build WHERE" against "agg WHERE"
row() {
	local b a bc ac
	b=$(times "build $1" | median); a=$(times "agg $1" | median)
	bc=$(cpus "build $1" | median); ac=$(cpus "agg $1" | median)
	printf '| %s | %.0f (%s) | %.0f (%s) | **%s×** | %.0f | %.0f | %s× |\n' "$2" \
		"$b" "$(times "build $1" | list)" "$a" "$(times "agg $1" | list)" "$(ratio "$b" "$a")" \
		"$bc" "$ac" "$(ratio "$bc" "$ac")"
}

{
	echo "publish $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
		"PostgreSQL $(val 'SHOW server_version'), $(nproc) CPUs; load average $LOAD_START at the start," \
		"$(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "$(printf "%'d" "$N") overlays; build_release returns $RET, whose text has $BYTES_BUILD bytes;" \
		"json_agg's has $BYTES_AGG. Wall: psql's \\timing, median of $RUNS runs each, interleaved (the runs" \
		"in brackets); CPU: the backend's (schedstat), median."
	echo
	echo "| statement | build_release (or job) ms | json_agg ms | ratio | build_release (or job) CPU ms | json_agg CPU ms | CPU ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	row server "on the server: octet_length(value::text)"
	row client "to the client: the whole value to psql"
	jm=$(awk -F'|' '/^job\|/ { print $2 }' "$WORK/timed.out" | median)
	jc=$(awk -F'|' '/^job\|/ { print $3 / 1e6 }' "$WORK/timed.out" | median)
	am=$(times "agg server" | median); ac=$(cpus "agg server" | median)
	printf '| the publish job (worker: started_at → completed_at; its CPU) | %.0f (%s) | %.0f | **%s×** | %.0f | %.0f | %s× |\n' \
		"$jm" "$(awk -F'|' '/^job\|/ { print $2 }' "$WORK/timed.out" | list)" "$am" "$(ratio "$jm" "$am")" \
		"$jc" "$ac" "$(ratio "$jc" "$ac")"
	echo
	echo "The publish job's row compares the whole job (validate, write release.json and its versioned copy to file:// with their fsyncs, mark it published, its commits) with json_agg on the server."
	echo "Run took $(($(date +%s) - T_START)) s."
} >"$OUT/preview.md"
cat "$OUT/preview.md"
