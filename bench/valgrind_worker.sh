#!/usr/bin/env bash
# The publish worker under valgrind memcheck: a private PostgreSQL 15 cluster
# whose postmaster (and so every process it forks: backends, the launcher,
# the worker) runs under memcheck, one worker per database, does ROUNDS rounds
# of real jobs: a publish with tiles to a file:// target, to WebDAV (nginx)
# and to S3 (s3rver behind the SigV4 proxy; once more with MD5s in the
# manifest, so that tiles are copied by CopyObject alone), a build_tiles of
# a generated 600 x 400 PNG, a publish that fails validation, a running
# publish that is cancelled, and three versions of one project queued at
# once (run in order; the last one refused after its switch, and undone).
# It does so twice, with a fresh worker each time: 1 round, then ROUNDS
# rounds; the worker's leak summary at exit (SIGTERM of the
# shutdown) after each pass tells what a job leaks (growth per round).
#
# Usage: bench/valgrind_worker.sh [ROUNDS]    (default 5)
# Ports: PUBLISH_BENCH_PORT (PostgreSQL), the PUBLISH_*_PORT of
# scripts/storage-servers.sh; PUBLISH_PRIVATE_PG as for the tests.
# Output: $VG_DIR (default $TMPDIR/publish-valgrind, or /tmp)/pass{1,N}/vg.PID.log, and a
# summary on stdout: the worker's errors and its leak summary per pass.
# Suppressions: bench/lib/valgrind.supp (PostgreSQL's and glibc's own).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"

ROUNDS=${1:-5}
PORT=${PUBLISH_BENCH_PORT:-54399}
DIR=${VG_DIR:-${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-valgrind}
PGDIR=$DIR/pg
STORAGE=$DIR/storage

build_and_install

rm -rf "$DIR"
mkdir -p "$DIR" "$STORAGE"
chmod 755 "$DIR"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR" "$STORAGE"; fi

vg_pid=
stop_vg_cluster() {
	local pid i
	[ -f "$PGDIR/data/postmaster.pid" ] || return 0
	pid=$(head -n 1 "$PGDIR/data/postmaster.pid")
	[ -n "$pid" ] || return 0
	kill -INT "$pid" 2>/dev/null || return 0
	# memcheck's leak check at exit takes a while in each process
	for i in $(seq 1 1200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	if [ -n "$vg_pid" ]; then wait "$vg_pid" 2>/dev/null || true; vg_pid=; fi
}
finish() {
	bash "$ROOT_DIR/scripts/storage-servers.sh" stop "$DIR/servers" || true
	stop_vg_cluster
	cluster_stop "$PGDIR"
}
trap finish EXIT
trap 'exit 130' INT TERM HUP

# The storage servers; their settings (dav_url=..., s3_bucket=...) as psql
# variables.
server_sets=()
while IFS= read -r line; do
	server_sets+=(-v "$line")
done < <(bash "$ROOT_DIR/scripts/storage-servers.sh" start "$DIR/servers")
[ ${#server_sets[@]} -gt 0 ] || { echo "storage servers did not start" >&2; exit 1; }

# The cluster is made and the database set up without valgrind (quick), then
# restarted under it for each pass.
# publish.tile_window = 8: the 21-tile tilesets of the publishes span three
# windows of the manifest, so step 4's window reads (a transaction between
# transfers) run under memcheck too.
cluster_start "$PGDIR" "$PORT" \
	"publish.workers_per_database = 1" \
	"publish.tile_window = 8" \
	"publish.sweep_interval = 3600" \
	"publish.storage_max_attempts = 3" \
	"publish.storage_retry_delay = 100ms" \
	"autovacuum = off" \
	"max_prepared_transactions = 10"
psql_vg() { psql -X -q -v ON_ERROR_STOP=1 -d publish_vg "$@"; }
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE publish_vg"
psql_vg -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION publish" \
	-f "$ROOT_DIR/test/pgtap/helpers/setup.sql"
cluster_stop "$PGDIR"

start_vg_cluster() {
	local out=$1 i
	mkdir -p "$out"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$out"; fi
	# Forked children stay under memcheck; no exec'd program (COPY FROM
	# PROGRAM's sh, vips, curl of the test helpers) is traced.
	# VIPSHOME names an empty prefix, so that libvips loads none of its
	# modules (jxl, heif): libhwy, which they link, runs RDTSCP in its
	# constructor, an instruction valgrind 3.19 does not know (SIGILL).
	mkdir -p "$DIR/no-vips-modules"
	as_server_user env VIPSHOME="$DIR/no-vips-modules" valgrind --tool=memcheck --trace-children=no \
		--track-origins=yes --leak-check=full --show-leak-kinds=definite,indirect \
		--read-inline-info=yes --error-limit=no --num-callers=30 \
		--suppressions="$ROOT_DIR/bench/lib/valgrind.supp" --gen-suppressions=all \
		--log-file="$out/vg.%p.log" \
		"$PG_BIN/postgres" -D "$PGDIR/data" >"$out/server.log" 2>&1 &
	vg_pid=$!
	for i in $(seq 1 1200); do
		if psql -X -q -d publish_vg -c "SELECT 1" >/dev/null 2>&1; then break; fi
		kill -0 "$vg_pid" 2>/dev/null || { cat "$out/server.log" >&2; return 1; }
		sleep 0.25
	done
	# wait for the worker of publish_vg to be up
	for i in $(seq 1 1200); do
		[ -n "$(psql -X -tA -d publish_vg -c "SELECT test_helpers.worker_pid()")" ] && return 0
		sleep 0.25
	done
	echo "the worker did not start under valgrind" >&2
	return 1
}

# run_round PASS I: the ten jobs of one round; prints each job's status.
run_round() {
	local p=vg$1x$2
	psql_vg -tA "${server_sets[@]}" -v p="$p" -v storage="$STORAGE" <<'SQL'
\set ON_ERROR_STOP 1
SELECT :'storage' || '/file' AS file_root, :'storage' || '/build' AS build_root,
       :'dav_url' || '/open/vg' AS dav_url, :'dav_dir' || '/open/vg' AS dav_dir \gset
SELECT publish.set_storage_target('vg-file', 'file://' || :'file_root') \g /dev/null
SELECT publish.set_storage_target('vg-build', 'file://' || :'build_root') \g /dev/null
SELECT publish.set_storage_target('vg-dav', :'dav_url') \g /dev/null
SELECT publish.set_storage_target('vg-s3', 's3://' || :'s3_bucket' || '/vg',
       jsonb_build_object('endpoint', :'s3_endpoint', 'region', 'eu-central-1')) \g /dev/null
SELECT publish.set_storage_credentials('vg-s3', :'s3_key_id', :'s3_secret') \g /dev/null

-- 1. a publish with tiles to file://
SELECT test_helpers.make_project(:'p' || '-file', 6, true, 2) \g /dev/null
SELECT test_helpers.write_tiles(:'file_root', :'p' || '-file', 1) \g /dev/null
SELECT id AS job FROM publish.publish_version(:'p' || '-file', 1, 'vg-file') \gset
SELECT 'file ' || status || coalesce(' ' || error, '') FROM test_helpers.wait_job(:'job', '600 s');

-- 2. to WebDAV
SELECT test_helpers.make_project(:'p' || '-dav', 6, true, 2) \g /dev/null
SELECT test_helpers.write_tiles(:'dav_dir', :'p' || '-dav', 1) \g /dev/null
SELECT id AS job FROM publish.publish_version(:'p' || '-dav', 1, 'vg-dav') \gset
SELECT 'dav ' || status || coalesce(' ' || error, '') FROM test_helpers.wait_job(:'job', '600 s');

-- 3. to S3
SELECT test_helpers.make_project(:'p' || '-s3', 6, true, 2) \g /dev/null
SELECT test_helpers.upload_tiles('vg-s3', :'p' || '-s3', 1) \g /dev/null
SELECT id AS job FROM publish.publish_version(:'p' || '-s3', 1, 'vg-s3') \gset
SELECT 's3 ' || status || coalesce(' ' || error, '') FROM test_helpers.wait_job(:'job', '600 s');

-- 3b. to S3 again, with MD5s in the manifest (tiles copied by one CopyObject,
-- verified by its ETag): a version of its own, so nothing is skipped
SELECT test_helpers.make_project(:'p' || '-s3md5', 6, true, 2) \g /dev/null
UPDATE publish.tiles tl SET md5 = md5(test_helpers.tile_bytes(p.slug, 1, tl.z, tl.x, tl.y))
  FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
  JOIN publish.projects p ON p.id = v.project_id
 WHERE tl.tileset_id = s.id AND p.slug = :'p' || '-s3md5';
SELECT test_helpers.upload_tiles('vg-s3', :'p' || '-s3md5', 1) \g /dev/null
SELECT id AS job FROM publish.publish_version(:'p' || '-s3md5', 1, 'vg-s3') \gset
SELECT 's3md5 ' || status || coalesce(' ' || error, '') FROM test_helpers.wait_job(:'job', '600 s');

-- 4. build_tiles of a generated 600 x 400 PNG
SELECT test_helpers.make_project(:'p' || '-build', 3) AS project_id \gset
SELECT id AS version_id FROM publish.project_versions WHERE project_id = :'project_id' \gset
SELECT test_helpers.make_image(:'build_root' || '/assets/' || :'p' || '/map.png', 600, 400) \g /dev/null
SELECT test_helpers.add_base_map(:'version_id', :'build_root', 'assets/' || :'p' || '/map.png') \g /dev/null
SELECT id AS job FROM publish.build_tiles(:'p' || '-build', 1, 'vg-build') \gset
SELECT 'build ' || status || coalesce(' ' || error, '') FROM test_helpers.wait_job(:'job', '600 s');

-- 5. a version that fails validation (a marker that is a line)
SELECT test_helpers.make_project(:'p' || '-bad', 5) AS project_id \gset
UPDATE publish.overlays o SET geometry = '{"type":"LineString","coordinates":[[13.4,52.5],[13.5,52.6]]}'
  FROM publish.project_versions v
 WHERE o.version_id = v.id AND v.project_id = :'project_id' AND o.key = 'ov-001';
SELECT id AS job FROM publish.publish_version(:'p' || '-bad', 1, 'vg-file') \gset
SELECT 'invalid ' || status FROM test_helpers.wait_job(:'job', '600 s');

-- 6. a running publish, held in step 1 by a lock, cancelled
SELECT test_helpers.make_project(:'p' || '-cancel', 5) \g /dev/null
SELECT test_helpers.hold('creds', 'LOCK TABLE publish.storage_credentials IN ACCESS EXCLUSIVE MODE') \g /dev/null
SELECT id AS job FROM publish.publish_version(:'p' || '-cancel', 1, 'vg-file') \gset
SELECT test_helpers.wait_worker_blocked('600 s') \g /dev/null
SELECT status FROM publish.cancel_job(:'job') \g /dev/null
SELECT 'cancel ' || status FROM test_helpers.wait_job(:'job', '600 s');
SELECT test_helpers.let_go('creds') \g /dev/null
SELECT test_helpers.session_close('creds') \g /dev/null

-- 7. three versions of one project queued at once, run one at a time in
-- order (the claim marks the later ones blocked_by the earlier); the last
-- one's final commit is refused by a site's trigger after the switch, so
-- its undo puts version 2's release.json back
SELECT test_helpers.make_project(:'p' || '-seq', 4) AS project_id \gset
SELECT test_helpers.make_version(:'project_id', n, 4) FROM generate_series(2, 3) n \g /dev/null
CREATE OR REPLACE FUNCTION public.refuse_v3() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT version_number FROM publish.project_versions WHERE id = NEW.version_id) = 3 THEN
		RAISE EXCEPTION 'valgrind run: version 3 is refused';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER refuse_v3 BEFORE INSERT OR UPDATE ON publish.live_releases
	FOR EACH ROW EXECUTE FUNCTION public.refuse_v3();
CREATE TABLE seq_jobs AS
SELECT n, (publish.publish_version(:'p' || '-seq', n, 'vg-file')).id FROM generate_series(1, 3) n;
SELECT 'sequence ' || string_agg(w.status, ' ' ORDER BY s.n)
  FROM seq_jobs s, LATERAL test_helpers.wait_job(s.id, '600 s') w;
DROP TABLE seq_jobs;
DROP TRIGGER refuse_v3 ON publish.live_releases;
SQL
}

# worker_report LOG: the worker's error count and leak summary.
worker_report() {
	local log=$1
	grep -E 'in use at exit|ERROR SUMMARY|definitely lost:|indirectly lost:|possibly lost:' "$log" \
		| sed 's/^==[0-9]*== */    /'
	echo "    invalid accesses / uninitialised values / overlaps: $(access_errors "$log")"
}

# access_errors LOG: how many reports other than leaks the log has.
access_errors() {
	grep -cE '^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Source and destination|Mismatched|Argument)' "$1" || true
}

pass() {
	local rounds=$1 out=$DIR/pass$1 wpid i
	start_vg_cluster "$out"
	wpid=$(psql -X -tA -d publish_vg -c "SELECT test_helpers.worker_pid()")
	echo "== pass of $rounds round(s): worker pid $wpid"
	for i in $(seq 1 "$rounds"); do run_round "$rounds" "$i" | sed 's/^/    /'; done
	stop_vg_cluster
	echo "worker $wpid ($out/vg.$wpid.log):"
	worker_report "$out/vg.$wpid.log"
	echo "other processes (backends, launcher) with invalid accesses or uninitialised values:"
	for f in "$out"/vg.*.log; do
		[ "$(access_errors "$f")" -eq 0 ] || echo "    $f: $(access_errors "$f")"
	done
}

pass 1
if [ "$ROUNDS" -ne 1 ]; then pass "$ROUNDS"; fi
