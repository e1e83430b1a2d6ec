#!/usr/bin/env bash
# bench/rollback.sh: a rollback of a large release against a full publish
# of the same release, on file://, WebDAV (nginx) and S3 (s3rver behind the
# SigV4 proxy).  Not a test: it measures, and fails only when a job fails.
#
# A project with two versions whose release.json is about
# BENCH_ROLLBACK_MB (20) MB each (overlays with long properties) and a small
# tileset (zooms 0-3, 85 tiles), on a private cluster with one worker (port
# $PUBLISH_BENCH_PORT, 54461) and the storage servers of the tests (ports
# 5448x).  For each target:
#   publish   BENCH_ROLLBACK_ROUNDS (5) full publishes of version 1 (the
#             release rebuilt, uploaded, its tiles checked and copied)
#   rollback  as many rollbacks, alternately to version 2 and back to 1
#             (the copy checked against its sha256, a sample of tiles
#             checked, release.json switched: on WebDAV a COPY beside it
#             and a MOVE over it, on S3 a HEAD and a CopyObject)
# and for each job: its time in the worker (started_at -> completed_at),
# from the request to its end (created_at -> completed_at: wake-up,
# claim, the job, its final commit), and the storage requests it made (the
# servers' access logs; file:// has none).  The table shows medians.
#
#   bash bench/rollback.sh               # as root (installs, builds, ~3 min)
#   BENCH_ROLLBACK_MB=50 BENCH_ROLLBACK_ROUNDS=9 bash bench/rollback.sh
#
# Writes bench/results/rollback.md (git-ignored); docs/performance.md quotes it.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/servers.sh
source "$BENCH_DIR/lib/servers.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

PORT=${PUBLISH_BENCH_PORT:-54461}
MB=${BENCH_ROLLBACK_MB:-20}
ROUNDS=${BENCH_ROLLBACK_ROUNDS:-5}
storage_ports 54481 54482 54483 54484 54485 54487
OUT=$BENCH_DIR/results
DB=rb
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

build_and_install

WORK=$(mktemp -d "${PUBLISH_BENCH_TMPDIR:-/tmp}/publish-bench-rollback.XXXXXX")
chmod 755 "$WORK"
trap 'cleanup_servers_and_cluster "$WORK"' EXIT

servers_start "$WORK/servers"
cluster_start "$WORK/pg" "$PORT" \
	"publish.workers_per_database = 1" \
	"publish.max_release_size = '256MB'" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps" "$OUT"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
val() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tAc "$1"; }

psql -X -q -d postgres -c "CREATE DATABASE $DB"
# one overlay is about 1 KB of release.json
q -v overlays=$((MB * 1024)) <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('file', 'file://$WORK/maps') \g /dev/null
SELECT publish.set_storage_target('dav', '${S[dav_url]}/open/bench') \g /dev/null
SELECT publish.set_storage_target('s3', 's3://${S[s3_bucket]}/bench',
       jsonb_build_object('endpoint', '${S[s3_endpoint]}')) \g /dev/null
SELECT publish.set_storage_credentials('s3', '${S[s3_key_id]}', '${S[s3_secret]}') \g /dev/null

INSERT INTO publish.projects (slug, name) VALUES ('big', 'A large release');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, n, 'ready' FROM publish.projects, generate_series(1, 2) AS n;
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT v.id, 'o-' || i, 'Overlay ' || i, 'marker',
       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + i / 1e6, 52.5)),
       jsonb_build_object('version', v.version_number, 'note', repeat(md5(i::text), 28))
  FROM publish.project_versions v, generate_series(1, :overlays) AS i;
INSERT INTO publish.tilesets (version_id, max_zoom, source_path)
SELECT id, 3, 'builds/big/v' || version_number || '/tiles' FROM publish.project_versions;
CREATE TEMP TABLE tile_bytes AS
SELECT s.id AS tileset_id, s.source_path, z, x, y,
       convert_to(format('%s %s/%s/%s %s', s.source_path, z, x, y, repeat('t', 2000)), 'UTF8') AS b
  FROM publish.tilesets s, generate_series(0, 3) AS z, generate_series(0, (1 << z) - 1) AS x,
       generate_series(0, (1 << z) - 1) AS y;
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256)
SELECT tileset_id, z, x, y, length(b), encode(sha256(b), 'hex') FROM tile_bytes;
SELECT count(publish._storage_put(e, format('%s/%s/%s/%s.png', source_path, z, x, y), b, 'image/png'))
  FROM tile_bytes, unnest(ARRAY['file', 'dav', 's3']) AS e \g /dev/null
VACUUM ANALYZE;
SQL

# run_job SQL: runs the call (which returns a job), waits for the job;
# prints "worker_ms total_ms"; fails when the job does not complete
run_job() {
	local id status
	id=$(val "SELECT id FROM $1")
	status=$(val "SELECT status || ' ' || coalesce(error, '') FROM publish.wait_job('$id', '10 min')")
	if [ "$status" != "completed " ]; then echo "rollback.sh: job $id: $status" >&2; exit 1; fi
	val "SELECT round(extract(epoch FROM completed_at - started_at) * 1000, 1) || ' '
	            || round(extract(epoch FROM completed_at - created_at) * 1000, 1)
	       FROM publish.jobs WHERE id = '$id'"
}

# lines LOG: lines of a server's access log so far
lines() { if [ -n "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# requests LOG FROM: "N (METHOD n, ...)" after line FROM; waits a little
# for the S3 proxy, which writes its log asynchronously
requests() {
	local log=$1 from=$2
	if [ -z "$log" ]; then echo "0"; return; fi
	sleep 0.3
	tail -n +"$((from + 1))" "$log" | awk '{n++; m[$1]++} END {
		s = ""; for (k in m) s = s (s == "" ? "" : ", ") k " " m[k]; printf "%d (%s)", n, s }'
}

bytes=$(val "SELECT octet_length(publish.build_release('big', 1, 'file')::text)")
{
	echo "# Rollback against a full publish"
	echo
	echo "release.json of $((bytes / 1024 / 1024)) MB ($bytes bytes), 85 tiles; medians of $ROUNDS jobs each;"
	echo "worker: started_at -> completed_at; total: created_at -> completed_at."
	echo
	echo "| target | job | worker ms | total ms | storage requests per job |"
	echo "|---|---|---:|---:|---|"
} >"$WORK/table.md"

for env in file dav s3; do
	case $env in
		dav) log=${S[dav_log]} ;;
		s3) log=${S[s3_log]} ;;
		*) log= ;;
	esac
	# the release history: version 2, then version 1 live
	run_job "publish.publish_version('big', 2, '$env')" >/dev/null
	run_job "publish.publish_version('big', 1, '$env')" >/dev/null
	: >"$WORK/publish.times"
	: >"$WORK/rollback.times"
	for _ in $(seq 1 "$ROUNDS"); do
		from=$(lines "$log")
		run_job "publish.publish_version('big', 1, '$env')" >>"$WORK/publish.times"
		publish_requests=$(requests "$log" "$from")
	done
	for i in $(seq 1 "$ROUNDS"); do
		from=$(lines "$log")
		run_job "publish.rollback('big', '$env')" >>"$WORK/rollback.times"
		rollback_requests=$(requests "$log" "$from")
		echo "  $env rollback $i: $(tail -n 1 "$WORK/rollback.times") ms, requests $rollback_requests"
	done
	# back to version 1 when ROUNDS is odd
	if [ "$(val "SELECT version FROM publish.releases WHERE env = '$env'")" != 1 ]; then
		run_job "publish.rollback('big', '$env')" >/dev/null
	fi
	for kind in publish rollback; do
		w=$(cut -d' ' -f1 "$WORK/$kind.times" | median)
		t=$(cut -d' ' -f2 "$WORK/$kind.times" | median)
		r=$([ "$kind" = publish ] && echo "$publish_requests" || echo "$rollback_requests")
		echo "| $env | $kind | $w | $t | $r |" >>"$WORK/table.md"
	done
done

{
	echo
	echo "$(nproc) CPUs, load before the run: $LOAD_START; $(date -u +%Y-%m-%d)."
} >>"$WORK/table.md"
cat "$WORK/table.md"
cp "$WORK/table.md" "$OUT/rollback.md"
