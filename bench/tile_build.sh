#!/usr/bin/env bash
# tile_build.sh: the time and the worker's peak memory to build the tile
# pyramid of an 8192 x 8192 source image (BENCH_IMAGE_SIZE) with
# publish.build_tiles(): cut with libvips, uploaded to a file:// target,
# manifest recorded.  For comparison, in the same run, the vips command
# cutting the same pyramid (vips dzsave --layout google, the same threads
# and PNG settings, from the same image with the alpha band the job adds),
# which is the floor: the job adds hashing, the upload and the manifest.
# Each is run BENCH_RUNS times (3); the table shows the median time and the
# peak memory.  Prints a Markdown table and writes it to
# bench/results/tile_build.md.
#
#   bash bench/tile_build.sh
#   BENCH_IMAGE_SIZE=4096 BENCH_RUNS=5 bash bench/tile_build.sh
#
# Private cluster on $PUBLISH_BENCH_PORT (54380), one worker, stopped by
# pid on exit.  Memory: VmHWM of the worker that ran the jobs (its peak
# resident set, shared buffers it touched included) before the first build
# and after the last; for the vips command, its maximum resident set.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

SIZE=${BENCH_IMAGE_SIZE:-8192}
RUNS=${BENCH_RUNS:-3}
THREADS=${BENCH_THREADS:-2}
PORT=${PUBLISH_BENCH_PORT:-54380}
RESULTS_DIR=$BENCH_DIR/results

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-bench-tiles.XXXXXX")
chmod 755 "$WORK"
cleanup() {
	cluster_stop "$WORK/pg"
	rm -rf "$WORK"
}
trap cleanup EXIT

cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning" \
	"publish.workers_per_database = 1" "publish.tile_build_threads = $THREADS"
mkdir -p "$WORK/storage/assets"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/storage"; fi

# the source: pixel (x, y) = (x mod 256, y mod 256, 128), as in the tests
SRC=$WORK/storage/assets/map.png
(
	cd "$WORK"
	vips xyz xy.v "$SIZE" "$SIZE"
	vips remainder_const xy.v r.v 256
	vips bandjoin_const r.v rgb.v 128
	vips cast rgb.v u.v uchar
	vips copy u.v "$SRC"
	# the same with the alpha band the job adds, for the vips command
	vips bandjoin_const u.v rgba.v 255
	vips copy rgba.v map-rgba.png
	rm -f xy.v r.v rgb.v u.v rgba.v
)
chmod 644 "$SRC"
SRC_BYTES=$(stat -c %s "$SRC")

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('bench', 'file://$WORK/storage');
INSERT INTO publish.projects (slug, name) VALUES ('bench', 'Tile build benchmark');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = 'bench';
INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type)
SELECT v.id, 'map', 'base_map', 'assets/map.png', 'image/png'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = 'bench';
SQL

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d bench -c "$1"; }

# the worker (one per database here), and its peak memory before any build
for _ in $(seq 1 100); do
	WPID=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'bench'")
	[ -n "$WPID" ] && break
	sleep 0.1
done
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
HWM_BEFORE=$(hwm "$WPID")

job_ms=()
cut_ms=()
for i in $(seq 1 "$RUNS"); do
	job=$(q "SELECT id FROM publish.build_tiles('bench', 1, 'bench')")
	q "SELECT status FROM publish.wait_job('$job', '10 min')" >/dev/null
	row=$(q "SELECT status, result->>'duration_ms', result->>'cut_ms', result->>'tile_count', result->>'bytes', coalesce(error, '') FROM publish.jobs WHERE id = '$job'")
	IFS='|' read -r status d c TILES BYTES err <<<"$row"
	if [ "$status" != completed ]; then
		echo "tile_build: job $job $status: $err" >&2
		exit 1
	fi
	job_ms+=("$d")
	cut_ms+=("$c")
done
HWM_AFTER=$(hwm "$WPID")
PER_ZOOM=$(q "SELECT string_agg(format('z%s: %s', z, n), ', ' ORDER BY z::int) FROM publish.jobs j, jsonb_each_text(j.result->'tiles_per_zoom') AS t(z, n) WHERE j.id = '$job'")

# the vips command alone, same pyramid and threads
vips_ms=()
VIPS_KB=0
for i in $(seq 1 "$RUNS"); do
	rm -rf "$WORK/dz"
	out=$( { VIPS_CONCURRENCY=$THREADS /usr/bin/time -f '%e %M' vips dzsave "$WORK/map-rgba.png" "$WORK/dz" \
		--layout google --background '0 0 0 0' --suffix '.png[compression=3,strip]' --tile-size 256 --overlap 0 \
		--skip-blanks -1 --depth onetile; } 2>&1 | tail -1)
	vips_ms+=("$(awk -v s="${out% *}" 'BEGIN { printf "%d", s * 1000 }')")
	kb=${out#* }
	[ "$kb" -gt "$VIPS_KB" ] && VIPS_KB=$kb
done
VIPS_TILES=$(find "$WORK/dz" -name '*.png' ! -name blank.png | wc -l)

JOB=$(median "${job_ms[@]}")
CUT=$(median "${cut_ms[@]}")
VIPS=$(median "${vips_ms[@]}")

mkdir -p "$RESULTS_DIR"
{
	echo "$(date -u +%Y-%m-%d), ${SIZE}x${SIZE} PNG source ($SRC_BYTES bytes), 256 px PNG tiles, $THREADS libvips threads, $(nproc) CPUs, file:// target; median of $RUNS runs"
	echo
	echo "| what | time | tiles | tile bytes | peak memory |"
	echo "|---|---|---|---|---|"
	awk -v j="$JOB" -v t="$TILES" -v b="$BYTES" -v h0="$HWM_BEFORE" -v h1="$HWM_AFTER" 'BEGIN {
		printf "| build_tiles job (cut, hash, upload, manifest) | %.2f s (%.0f tiles/s) | %d | %.1f MB | worker VmHWM %.0f MB (%.0f MB before the first build) |\n",
			j / 1000, t / (j / 1000), t, b / 1e6, h1 / 1024, h0 / 1024 }'
	awk -v c="$CUT" 'BEGIN { printf "| ... of which the cut (libvips dzsave) | %.2f s | | | |\n", c / 1000 }'
	awk -v v="$VIPS" -v t="$VIPS_TILES" -v k="$VIPS_KB" 'BEGIN {
		printf "| vips dzsave command, same pyramid | %.2f s | %d | | max RSS %.0f MB |\n", v / 1000, t, k / 1024 }'
	echo
	echo "Tiles per zoom: $PER_ZOOM."
} | tee "$RESULTS_DIR/tile_build.md"
