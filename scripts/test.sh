#!/usr/bin/env bash
# The whole test suite, against a private PostgreSQL 15 cluster with publish
# preloaded (started here, stopped by its pid at the end):
#   0. static       calls between src/'s folders run one way
#                   (scripts/check-layers.sh); make indent would change
#                   nothing (scripts/indent.sh --check)
#   1. pg_regress   test/sql/*.sql      the SQL surface, with expected output
#   2. pgTAP        test/pgtap/*.sql    behaviour, end to end through the worker,
#                   also against real storage servers (scripts/storage-servers.sh:
#                   nginx WebDAV, s3rver behind a SigV4 check, a fault server)
#   3. Perl TAP     test/t/*.pl         clusters of their own (dump/restore, restarts)
#   4. browser      test/browser        the map viewer (demo/viewer) in headless
#                   Chromium, on the sample project just published
#   5. docs         test/docs/run.sh    every example of README.md and docs/*.md
#                   marked <!-- doc-test -->, in order, against this cluster
# Ends with one line: "tests: N passed, N failed".
#
# The storage servers are started once, before layer 2, when layer 2, 3 or 5
# runs, and stopped by their pids at the end.  pgTAP gets their settings
# (scripts/storage-servers.sh prints them as VAR=value) as psql variables
# (:dav_url, ...); Perl TAP as environment variables PUBLISH_SERVER_VAR
# (PUBLISH_SERVER_DAV_URL, ...), and a TAP test skips its WebDAV and S3
# parts when they are not set (run by prove alone).
#
# Usage: scripts/test.sh            (as root on a fresh Debian 12 machine)
#        PUBLISH_TEST_PORT=NNNN     to run beside another cluster
#        PUBLISH_TEST_TMPDIR=DIR    where the test directory is made (default /tmp)
#        PUBLISH_TEST_ONLY=static|regress|pgtap|tap|browser|docs   to run one layer
#        PUBLISH_TEST_MATCH=REGEX   only the pgTAP and Perl TAP files whose
#                                   name matches (e.g. '^(14|30)_'), while working
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"

build_and_install

PORT=${PUBLISH_TEST_PORT:-54329}
WORK=$(mktemp -d "${PUBLISH_TEST_TMPDIR:-/tmp}/publish-test.XXXXXX")
chmod 755 "$WORK"
PGDIR=$WORK/pg
STORAGE=$WORK/storage

finish() {
	bash "$ROOT_DIR/scripts/storage-servers.sh" stop "$WORK/servers" || true
	cluster_stop "$PGDIR"
	if [ "${KEEP_TEST_DIR:-}" = "" ]; then rm -rf "$WORK"; fi
}
trap finish EXIT
# a signal ends the script through exit, so that finish runs (servers, cluster)
trap 'exit 130' INT TERM HUP

# remote storage: few, quick retries and a short stall limit, so that the
# fault tests (server down, 503s, a server that hangs) take seconds
cluster_start "$PGDIR" "$PORT" \
	"publish.sweep_interval = 30" \
	"max_prepared_transactions = 10" \
	"publish.storage_max_attempts = 3" \
	"publish.storage_retry_delay = 100ms" \
	"publish.storage_connect_timeout = 2s" \
	"publish.storage_low_speed_time = 2s"

mkdir -p "$STORAGE"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$STORAGE"; fi

passed=0
failed=0

# tap_failed_files OUTPUT TOTAL STATUS: how many of TOTAL test files failed,
# from the "Test Summary Report" of pg_prove/prove (one line per bad file).
tap_failed_files() {
	local bad
	bad=$(sed -n '/^Test Summary Report/,$p' "$1" | grep -cE '^[^ ].*\.(sql|pl) +\(Wstat' || true)
	if [ "$3" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=$2; fi
	echo "$bad"
}

ONLY=${PUBLISH_TEST_ONLY:-all}
MATCH=${PUBLISH_TEST_MATCH:-.}
# test_files DIR EXT: the test files of DIR, narrowed by PUBLISH_TEST_MATCH
test_files() {
	find "$1" -maxdepth 1 -name "*.$2" -printf '%f\n' | grep -E -- "$MATCH" | sort || true
}
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
PG_REGRESS=$PGXS_DIR/test/regress/pg_regress

# 0. static checks -------------------------------------------------------------
# Each prints one line CI can read ("layers: ok", "indent: ok") and counts as
# one test.
if [ "$ONLY" = all ] || [ "$ONLY" = static ]; then
	for check in "$ROOT_DIR/scripts/check-layers.sh" "$ROOT_DIR/scripts/indent.sh --check"; do
		# shellcheck disable=SC2086
		if $check; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
		fi
	done
fi

# 1. pg_regress ---------------------------------------------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = regress ]; then
regress_tests=$(cd "$ROOT_DIR/test/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
mkdir -p "$WORK/regress"
r_all=$(echo "$regress_tests" | wc -w)
set +e -o pipefail
# shellcheck disable=SC2086
"$PG_REGRESS" --inputdir="$ROOT_DIR/test" --outputdir="$WORK/regress" \
	--bindir="$PG_BIN" --host="$PGDIR" --port="$PORT" --user=postgres \
	--dbname=publish_regress $regress_tests 2>&1 | tee "$WORK/regress.out"
set -e
r_ok=$(grep -cE '^(test| )? *[a-z0-9_]+ +\.\.\. ok' "$WORK/regress.out" || true)
r_bad=$((r_all - r_ok))
if [ -f "$WORK/regress/regression.diffs" ]; then
	cp "$WORK/regress/regression.diffs" "$ROOT_DIR/regression.diffs"
	cat "$WORK/regress/regression.diffs"
fi
passed=$((passed + r_ok))
failed=$((failed + r_bad))
fi

# the storage servers, for layers 2, 3 and 5 ------------------------------------
server_sets=()	# pgTAP: --set var=value
server_env=()	# Perl TAP and docs: PUBLISH_SERVER_VAR=value
if [ "$ONLY" = all ] || [ "$ONLY" = pgtap ] || [ "$ONLY" = tap ] || [ "$ONLY" = docs ]; then
	while IFS= read -r line; do
		server_sets+=(--set "$line")
		name=${line%%=*}
		server_env+=("PUBLISH_SERVER_${name^^}=${line#*=}")
	done < <(bash "$ROOT_DIR/scripts/storage-servers.sh" start "$WORK/servers")
	if [ ${#server_sets[@]} -eq 0 ]; then
		echo "test.sh: the storage servers did not start (see scripts/storage-servers.sh for their ports)" >&2
		exit 1
	fi
fi

# 2. pgTAP --------------------------------------------------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = pgtap ]; then
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE publish_tap"
psql -X -q -v ON_ERROR_STOP=1 -d publish_tap \
	-c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION publish" \
	-f "$ROOT_DIR/test/pgtap/helpers/setup.sql"
set +e
pg_prove -h "$PGDIR" -p "$PORT" -U postgres -d publish_tap \
	--set storage="$STORAGE" --set demo_dir="$ROOT_DIR/demo" \
	--set server_log="$PGDIR/server.log" "${server_sets[@]}" \
	$(test_files "$ROOT_DIR/test/pgtap" sql | sed "s|^|$ROOT_DIR/test/pgtap/|") >"$WORK/pgtap.out" 2>&1
t_status=$?
set -e
cat "$WORK/pgtap.out"
t_all=$(test_files "$ROOT_DIR/test/pgtap" sql | wc -l)
t_bad=$(tap_failed_files "$WORK/pgtap.out" "$t_all" "$t_status")
passed=$((passed + t_all - t_bad))
failed=$((failed + t_bad))
fi

# 3. Perl TAP -----------------------------------------------------------------
# PostgreSQL::Test::Cluster runs initdb, which refuses root: run as postgres
# from a copy of the tests it can read, with a directory it can write.
if { [ "$ONLY" = all ] || [ "$ONLY" = tap ]; } && compgen -G "$ROOT_DIR/test/t/*.pl" >/dev/null; then
	mkdir -p "$WORK/tap"
	cp -r "$ROOT_DIR/test/t" "$WORK/tap/t"
	cp -r "$ROOT_DIR/test/sql" "$WORK/tap/sql"	# t/021 reuses a query file
	cp -r "$ROOT_DIR/demo" "$WORK/tap/demo"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/tap"; fi
	set +e
	(cd "$WORK/tap" && as_server_user env PATH="$PG_BIN:$PATH" TESTDIR="$WORK/tap" \
		PG_REGRESS="$PG_REGRESS" PUBLISH_DEMO_DIR="$WORK/tap/demo" "${server_env[@]}" \
		prove -I "$PGXS_DIR/test/perl" $(test_files "$ROOT_DIR/test/t" pl | sed 's|^|t/|')) >"$WORK/prove.out" 2>&1
	p_status=$?
	set -e
	cat "$WORK/prove.out"
	p_all=$(test_files "$ROOT_DIR/test/t" pl | wc -l)
	p_bad=$(tap_failed_files "$WORK/prove.out" "$p_all" "$p_status")
	passed=$((passed + p_all - p_bad))
	failed=$((failed + p_bad))
	if [ "$p_bad" -ne 0 ] && [ -d "$WORK/tap/tmp_check/log" ]; then
		tail -n 50 "$WORK/tap/tmp_check/log/"*.log
	fi
fi

# 4. browser ------------------------------------------------------------------
# The sample published to a file:// target (its release.json names file://
# URLs, which the viewer reads relative to where it found release.json),
# then test/browser/viewer.test.mjs (node's test runner) serves the viewer
# and the target's directory and drives Chromium; it saves
# docs/img/viewer.png.
if [ "$ONLY" = all ] || [ "$ONLY" = browser ]; then
	if [ ! -d "$ROOT_DIR/test/browser/node_modules/playwright-core" ]; then
		(cd "$ROOT_DIR/test/browser" && npm ci --no-audit --no-fund --silent >/dev/null)
	fi
	maps=$WORK/browser-maps
	mkdir -p "$maps"
	bash "$ROOT_DIR/demo/make_tiles.sh" "$maps" >/dev/null
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$maps"; fi
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE publish_browser"
	psql -X -q -v ON_ERROR_STOP=1 -d publish_browser -c "CREATE EXTENSION publish" \
		-f "$ROOT_DIR/demo/sample_project.sql" >/dev/null
	b_status=$(psql -X -q -tA -v ON_ERROR_STOP=1 -d publish_browser -v maps="$maps" <<'SQL'
SELECT publish.set_storage_target('production', 'file://' || :'maps') \g /dev/null
SELECT set_config('browser.job', id::text, false) FROM publish.publish_version('campus', 3) \g /dev/null
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
	WHILE clock_timestamp() < deadline AND NOT EXISTS (
		SELECT FROM publish.jobs WHERE id = current_setting('browser.job')::uuid
		   AND status IN ('completed', 'failed', 'cancelled')) LOOP
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT status || coalesce(': ' || error, '') FROM publish.jobs WHERE id = current_setting('browser.job')::uuid;
SQL
)
	set +e
	if [ "$b_status" = completed ]; then
		VIEWER_MAPS=$maps VIEWER_TMPDIR=$WORK node --test "$ROOT_DIR/test/browser/viewer.test.mjs" \
			>"$WORK/browser.out" 2>&1
		b_rc=$?
	else
		echo "browser: the sample was not published: $b_status" >"$WORK/browser.out"
		b_rc=1
	fi
	set -e
	cat "$WORK/browser.out"
	if [ "$b_rc" -eq 0 ]; then
		echo "browser: viewer.test.mjs passed"
		passed=$((passed + 1))
	else
		echo "browser: viewer.test.mjs FAILED"
		failed=$((failed + 1))
	fi
fi

# 5. docs ---------------------------------------------------------------------
# The examples of README.md and docs/*.md (test/docs/run.sh): one line per
# file, then "docs: N files passed, N failed"; a file counts once.
if [ "$ONLY" = all ] || [ "$ONLY" = docs ]; then
	set +e
	env "${server_env[@]}" bash "$ROOT_DIR/test/docs/run.sh" "$WORK/docs" >"$WORK/docs.out" 2>&1
	set -e
	cat "$WORK/docs.out"
	d_ok=$(sed -n 's/^docs: \([0-9]*\) files passed, \([0-9]*\) failed.*/\1/p' "$WORK/docs.out")
	d_bad=$(sed -n 's/^docs: \([0-9]*\) files passed, \([0-9]*\) failed.*/\2/p' "$WORK/docs.out")
	if [ -z "$d_ok" ]; then d_ok=0; d_bad=1; fi	# it did not get to its summary
	passed=$((passed + d_ok))
	failed=$((failed + d_bad))
fi

if [ "$failed" -ne 0 ]; then
	echo "--- server log (last 40 lines) ---"
	tail -n 40 "$PGDIR/server.log"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
