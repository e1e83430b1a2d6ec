#!/usr/bin/env bash
# tiles_peers.sh: publish's tile transfers against the tools a person would
# use without it, rclone and the AWS CLI (Debian's rclone and awscli), on
# the same test servers (nginx WebDAV with dav_ext; s3rver behind the SigV4
# check, scripts/storage-servers.sh), the same tiles, in the same run,
# interleaved (each run does publish, rclone, aws in turn), BENCH_RUNS runs
# each; medians in tiles per second.  Rows:
#
#   S3 upload       publish: the upload phase of build_tiles (the job's log,
#                   from "Cut N tiles" to its last zoom level); rclone copy
#                   --transfers 8 --s3-no-head; aws s3 cp --recursive, of the
#                   same tiles (built once onto a file:// target)
#   S3 copy         publish: step 4 of a first publish (a CopyObject per tile,
#                   verified by its ETag); rclone copy between two prefixes
#                   (server-side, --fast-list --s3-no-head); aws s3 cp
#                   --recursive between them
#   S3 unchanged    publish: step 4 of a re-publish (listings); rclone copy
#                   --checksum --fast-list again; aws s3 sync again
#   WebDAV upload   publish: build_tiles' upload phase; rclone copy --transfers 8
#                   (of BENCH_DAV_SAMPLE tiles of the tree: rclone waits
#                   between WebDAV calls)
#   WebDAV copy     publish: step 4 of a first publish (COPY); rclone copy
#                   between two folders (server-side COPY; rclone waits between
#                   calls, so it copies BENCH_DAV_SAMPLE tiles of the set)
#   WebDAV unchanged publish: a re-publish (PROPFIND, then a hashed GET of each
#                   tile: WebDAV keeps no checksum); rclone copy onto a copy
#                   of the tree made with cp -a (PROPFIND listings, size and time)
#
# and the worker's peak private memory (RssAnon, sampled every 5 ms) in the
# publishes, for each tile count; and a release.json of BENCH_OVERLAYS
# overlays published to S3 plain and with "compress": "gzip" (the job's
# duration, the bytes stored).  Tiles come from build_tiles: a noise image
# scaled up (max_zoom past the image's own) so that the pyramid has about
# the tile count asked for, cut into JPEG tiles of some 4 KB; every tool
# moves the same files.
#
#   bash bench/tiles_peers.sh
#   BENCH_TILE_COUNTS="10000" BENCH_RUNS=1 BENCH_ROWS="s3_copy s3_same" bash bench/tiles_peers.sh
#   BENCH_PEERS=0 BENCH_OVERLAYS=0 BENCH_ROWS="s3_copy s3_same dav_copy dav_same" \
#       bash bench/tiles_peers.sh            # publish alone: its rates and memory
#
# Private cluster on $PUBLISH_BENCH_PORT (54542), servers on 54543-54548;
# all stopped by pid on exit.  Writes its tables to bench/results/tiles_peers.md
# (git-ignored; docs/performance.md quotes them), the plot's data to
# docs/results/tiles_peers.dat and the plot to docs/img/tiles-peers.png
# (with BENCH_ROWS set, both to bench/results instead).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"
# shellcheck source=bench/lib/servers.sh
source "$BENCH_DIR/lib/servers.sh"
# shellcheck source=bench/lib/worker.sh
source "$BENCH_DIR/lib/worker.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"

COUNTS=${BENCH_TILE_COUNTS:-"10000 100000"}
RUNS=${BENCH_RUNS:-3}
CONC=${BENCH_CONCURRENCY:-8}
ROWS=${BENCH_ROWS:-"s3_up s3_copy s3_same dav_up dav_copy dav_same"}
DAV_SAMPLE=${BENCH_DAV_SAMPLE:-1000}
OVERLAYS=${BENCH_OVERLAYS:-100000}
PORT=${PUBLISH_BENCH_PORT:-54542}
storage_ports 54543 54544 54545 54546 54547 54548
RESULTS_DIR=$ROOT_DIR/bench/results
PLOT_DATA=$ROOT_DIR/docs/results/tiles_peers.dat
IMG_DIR=$ROOT_DIR/docs/img
# a run of some rows only leaves the documented plot alone
if [ -n "${BENCH_ROWS:-}" ]; then
	PLOT_DATA=$RESULTS_DIR/tiles_peers.dat
	IMG_DIR=$RESULTS_DIR
fi

build_and_install
for tool in rclone:rclone aws:awscli gnuplot:gnuplot-nox; do
	command -v "${tool%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null; }
done
[ -f /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ] \
	|| { apt-get update -qq && apt-get install -y -qq libnginx-mod-http-dav-ext >/dev/null; }
AWS=/usr/bin/aws
WORK=$(mktemp -d "${PUBLISH_BENCH_TMPDIR:-/tmp}/publish-peers-tiles.XXXXXX")
chmod 755 "$WORK"
trap 'cleanup_servers_and_cluster "$WORK"' EXIT
trap 'echo "tiles_peers.sh: failed at line $LINENO" >&2' ERR
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

servers_start "$WORK/servers"
cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning" \
	"publish.workers_per_database = 1" "publish.launcher_restart_delay = 1" \
	"publish.storage_concurrency = $CONC" "publish.max_source_pixels = 1000" \
	"publish.job_timeout = '2h'" "publish.max_release_size = '1GB'"
mkdir -p "$WORK/maps"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK/maps"; fi
DAV_DIR=${S[dav_dir]}/open/bench

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('file', 'file://$WORK/maps');
SELECT publish.set_storage_target('dav', '${S[dav_url]}/open/bench');
SELECT publish.set_storage_target('s3', 's3://${S[s3_bucket]}/bench', '{"endpoint": "${S[s3_endpoint]}"}');
SELECT publish.set_storage_credentials('s3', '${S[s3_key_id]}', '${S[s3_secret]}');
SELECT publish.set_storage_target('s3gz', 's3://${S[s3_bucket]}/bench', '{"endpoint": "${S[s3_endpoint]}", "compress": "gzip"}');
SELECT publish.set_storage_credentials('s3gz', '${S[s3_key_id]}', '${S[s3_secret]}');
SQL

# rclone and the AWS CLI, on the same servers (through the SigV4 check)
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other RCLONE_CONFIG_S3_REGION=us-east-1
export RCLONE_CONFIG_S3_ACCESS_KEY_ID=${S[s3_key_id]} RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=${S[s3_secret]}
export RCLONE_CONFIG_S3_ENDPOINT=${S[s3_endpoint]} RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_DAV_TYPE=webdav RCLONE_CONFIG_DAV_URL=${S[dav_url]}/open/bench RCLONE_CONFIG_DAV_VENDOR=other
export RCLONE_CONFIG=/dev/null
# a CA bundle in the environment makes rclone's S3 client refuse to start
unset AWS_CA_BUNDLE
RCLONE=(rclone --transfers "$CONC" --checkers "$CONC" -q --s3-no-check-bucket)
export AWS_ACCESS_KEY_ID=${S[s3_key_id]} AWS_SECRET_ACCESS_KEY=${S[s3_secret]} AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=$WORK/aws.conf
cat >"$AWS_CONFIG_FILE" <<CONF
[default]
s3 =
  max_concurrent_requests = $CONC
  addressing_style = path
CONF
AWSS3=("$AWS" --endpoint-url "${S[s3_endpoint]}" s3 --only-show-errors)
BUCKET=${S[s3_bucket]}

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d bench -c "$1"; }

HZ=$(getconf CLK_TCK)
# cpu_ms PID...: user + system CPU time of the processes so far, in ms
cpu_ms() {
	local t=0 p v
	for p in "$@"; do
		if [ -r "/proc/$p/stat" ]; then
			v=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
			t=$((t + v))
		fi
	done
	echo $((t * 1000 / HZ))
}
# the server processes of a row: s3rver and the SigV4 proxy, or nginx's
S3_PIDS="$(cat "$WORK/servers/s3rver.pid") $(cat "$WORK/servers/s3proxy.pid")"
NGINX_MASTER=$(cat "$WORK/servers/nginx.pid")
DAV_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"
SRV_PIDS=$S3_PIDS

# timed CMD...: seconds CMD took (it must succeed); its CPU time and the
# servers' (SRV_PIDS) go to $WORK/cpu, in ms
timed() {
	local t0 t1 s0 s1
	s0=$(cpu_ms $SRV_PIDS)
	t0=$(date +%s.%N)
	/usr/bin/time -f '%U %S' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" \
		|| { echo "failed: $* ($(head -c 500 "$WORK/err"))" >&2; exit 1; }
	t1=$(date +%s.%N)
	s1=$(cpu_ms $SRV_PIDS)
	awk -v s="$((s1 - s0))" '{ printf "%d %d\n", ($1 + $2) * 1000, s }' "$WORK/time" >"$WORK/cpu"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# job ID_SQL: runs the job the SQL queues, to its end (sampling the worker's
# private memory into $WORK/peak, kB); prints its id; fails unless it completed
peak() { cat "$WORK/peak" 2>/dev/null || echo 0; }
job() {
	local id st i pid stop=$WORK/stop.$RANDOM
	pid=$(worker_pid)
	if [ -n "$pid" ]; then
		peak_anon "$pid" "$stop" >"$stop.out" &
		for i in $(seq 1 200); do [ -f "$stop.ready" ] && break; sleep 0.01; done
	fi
	local c0 s0 cut
	c0=$(cpu_ms $pid)
	s0=$(cpu_ms $SRV_PIDS)
	id=$(q "$1")
	# a build: polled until its cut ends, to read the worker's CPU then;
	# after that, wait_job (a psql a tenth of a second would take CPU from
	# the transfers measured)
	if [ "$(q "SELECT job_type FROM publish.job_queue WHERE id = '$id'")" = build_tiles ]; then
		for i in $(seq 1 72000); do
			st=$(q "SELECT status || (CASE WHEN EXISTS (SELECT 1 FROM publish.job_log WHERE job_id = '$id' AND message LIKE 'Cut %') THEN ' cut' ELSE '' END)
			          FROM publish.job_queue WHERE id = '$id'")
			if [[ $st == *" cut" ]]; then cut=$(cpu_ms $pid); break; fi
			case $st in completed|failed|cancelled) break ;; esac
			sleep 0.1
		done
	fi
	for i in $(seq 1 720); do
		st=$(q "SELECT status FROM publish.wait_job('$id', '10 min')")
		case $st in completed|failed|cancelled) break ;; esac
	done
	echo "$(($(cpu_ms $pid) - ${cut:-$c0}))" >"$WORK/cpu_after_cut"
	touch "$stop"
	wait
	if [ -f "$stop.out" ]; then cp "$stop.out" "$WORK/peak"; fi
	echo "$(($(cpu_ms $pid) - c0)) $(($(cpu_ms $SRV_PIDS) - s0))" >"$WORK/cpu"
	[ "$st" = completed ] || { echo "job $id: $st $(q "SELECT error FROM publish.jobs WHERE id = '$id'")" >&2; exit 1; }
	echo "$id"
}

# step4 ID: seconds of step 4 (the log's 50 % entry to its 80 % entry)
step4() {
	q "SELECT extract(epoch FROM min((e->>'timestamp')::timestamptz) FILTER (WHERE (e->>'progress')::int = 80)
	                           - min((e->>'timestamp')::timestamptz) FILTER (WHERE (e->>'progress')::int = 50))::numeric(10,3)
	     FROM publish.jobs, jsonb_array_elements(logs) e WHERE id = '$1'"
}
# upload_phase ID: seconds of a build's uploads ("Cut N tiles" to its last zoom level)
upload_phase() {
	q "SELECT extract(epoch FROM max((e->>'timestamp')::timestamptz) FILTER (WHERE e->>'message' ~ '^Zoom ')
	                           - min((e->>'timestamp')::timestamptz) FILTER (WHERE e->>'message' ~ '^Cut '))::numeric(10,3)
	     FROM publish.jobs, jsonb_array_elements(logs) e WHERE id = '$1'"
}

# copy_project SLUG FROM ENV: a project SLUG whose tileset is the build of
# project FROM on ENV (FROM's manifest, tiles where build_tiles put them),
# so that publishing SLUG copies FROM's tiles into a new place
copy_project() {
	psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
SELECT s.max_zoom FROM publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
  JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = '$2' \gset
\set slug '$1'
\set name '$1'
\set format jpg
\set source_path '$3/$2/builds/v1/tiles'
\i '$BENCH_DIR/lib/built_tiles_project.sql'
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256, md5)
SELECT n.id, t.z, t.x, t.y, t.byte_size, t.sha256, t.md5
  FROM publish.tiles t JOIN publish.tilesets o ON o.id = t.tileset_id
  JOIN publish.project_versions ov ON ov.id = o.version_id JOIN publish.projects op ON op.id = ov.project_id,
       publish.tilesets n JOIN publish.project_versions nv ON nv.id = n.version_id JOIN publish.projects np ON np.id = nv.project_id
 WHERE op.slug = '$2' AND np.slug = '$1';
SQL
}

# results: name|tiles|tool -> list of tiles/s
declare -A R C V
# add ROW|N|TOOL RATE [CLIENT_MS]: a run's tiles/s, and the CPU of the
# client (CLIENT_MS when given) and the servers in it ($WORK/cpu), per
# 1,000 tiles
add() {
	local c v
	R[$1]="${R[$1]:-} $2"
	read -r c v <"$WORK/cpu"
	c=${3:-$c}
	C[$1]="${C[$1]:-} $((c * 1000 / tiles))"
	V[$1]="${V[$1]:-} $((v * 1000 / tiles))"
}
# add_sample ROW|N|TOOL NS SECS: add, for a run over a sample of NS tiles
# that took SECS (its rate and its CPU per 1,000 tiles of the sample)
add_sample() {
	local tiles=$2
	add "$1" "$(rate "$2" "$3")"
}
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
want() { [[ " $ROWS " == *" $1 "* ]]; }
peers() { [ "${BENCH_PEERS:-1}" != 0 ]; }

# a noise image whose pyramid, scaled up to max_zoom, has about n tiles
image_for() {
	local n=$1 best
	best=$(q "SELECT w || ' ' || h || ' ' || z FROM (
	            SELECT w, h, z, (SELECT sum((l->>3)::bigint) FROM jsonb_array_elements(plan) l) AS t
	              FROM (SELECT w, w * 2 / 3 AS h, z, publish._tile_plan(w, w * 2 / 3, 256, 0, z) AS plan
	                      FROM generate_series(500, 3000, 50) w, generate_series(3, 10) z) a
	             WHERE jsonb_typeof(plan) = 'array') p
	           ORDER BY abs(t - $n), w LIMIT 1")
	echo "$best"
}

MEM=()
declare -A TILES
for n in $COUNTS; do
	read -r w h z < <(image_for "$n")
	vips gaussnoise "$WORK/noise-$n.v" "$w" "$h" --mean 128 --sigma 40 >/dev/null
	vips cast "$WORK/noise-$n.v" "$WORK/map-$n.png" uchar >/dev/null
	src=$WORK/map-$n.png
	size=$(stat -c %s "$src")
	sha=$(sha256sum "$src" | cut -d' ' -f1)
	for env in file dav s3; do
		slug=up-$env-$n
		case $env in
			file) mkdir -p "$WORK/maps/assets"; cp "$src" "$WORK/maps/assets/$slug.png"; chown -R postgres: "$WORK/maps" 2>/dev/null || true ;;
			dav) mkdir -p "$DAV_DIR/assets"; cp "$src" "$DAV_DIR/assets/$slug.png"; chown -R postgres: "$DAV_DIR" 2>/dev/null || true ;;
			s3) "${AWSS3[@]}" cp "$src" "s3://$BUCKET/bench/assets/$slug.png" >/dev/null ;;
		esac
		psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
INSERT INTO publish.projects (slug, name) VALUES ('$slug', '$slug');
INSERT INTO publish.project_versions (project_id, version_number, status)
SELECT id, 1, 'ready' FROM publish.projects WHERE slug = '$slug';
INSERT INTO publish.assets (version_id, key, kind, storage_path, content_type, byte_size, sha256)
SELECT v.id, 'map', 'base_map', 'assets/$slug.png', 'image/png', $size, '$sha'
  FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = '$slug';
INSERT INTO publish.tilesets (version_id, format, tile_size, min_zoom, max_zoom)
SELECT v.id, 'jpg', 256, 0, $z FROM publish.project_versions v JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = '$slug';
SQL
	done
	# the local tree every tool uploads
	id=$(job "SELECT id FROM publish.build_tiles('up-file-$n', 1, 'file')")
	tiles=$(q "SELECT result->>'tile_count' FROM publish.jobs WHERE id = '$id'")
	TILES[$n]=$tiles
	tree=$WORK/maps/file/up-file-$n/builds/v1/tiles
	bytes=$(du -sb "$tree" | cut -f1)
	echo "$n: image ${w}x${h}, zooms 0-$z: $tiles tiles, $((bytes / tiles)) bytes a tile on average" >&2

	for r in $(seq 1 "$RUNS"); do
		echo "$n tiles, run $r (load $(cut -d' ' -f1 /proc/loadavg))" >&2
		SRV_PIDS=$S3_PIDS
		if want s3_up || want s3_copy || want s3_same; then
			id=$(job "SELECT id FROM publish.build_tiles('up-s3-$n', 1, 's3')")
			add "s3_up|$n|publish" "$(rate "$tiles" "$(upload_phase "$id")")" "$(cat "$WORK/cpu_after_cut")"
		fi
		if want s3_up; then
			peers && add "s3_up|$n|rclone" "$(rate "$tiles" "$(timed "${RCLONE[@]}" copy --fast-list --s3-no-head "$tree" "s3:$BUCKET/bench/rc-up-$n-$r")")"
			peers && add "s3_up|$n|aws" "$(rate "$tiles" "$(timed "${AWSS3[@]}" cp --recursive "$tree" "s3://$BUCKET/bench/aws-up-$n-$r")")"
		fi
		if want s3_copy || want s3_same; then
			# a project whose tileset is the S3 build, published to a new place
			slug=cp-s3-$n-$r
			copy_project "$slug" "up-s3-$n" s3
			srcp=s3:$BUCKET/bench/s3/up-s3-$n/builds/v1/tiles
			fresh_worker >/dev/null
			id=$(job "SELECT id FROM publish.publish_version('$slug', 1, 's3')")
			add "s3_copy|$n|publish" "$(rate "$tiles" "$(step4 "$id")")"
			MEM+=("$n|publish S3|$(peak)")
			peers && add "s3_copy|$n|rclone" "$(rate "$tiles" "$(timed "${RCLONE[@]}" copy --fast-list --s3-no-head "$srcp" "s3:$BUCKET/bench/rc-cp-$n-$r")")"
			peers && add "s3_copy|$n|aws" "$(rate "$tiles" "$(timed "${AWSS3[@]}" cp --recursive "s3://$BUCKET/bench/s3/up-s3-$n/builds/v1/tiles" "s3://$BUCKET/bench/aws-cp-$n-$r")")"
			if want s3_same; then
				id=$(job "SELECT id FROM publish.publish_version('$slug', 1, 's3')")
				add "s3_same|$n|publish" "$(rate "$tiles" "$(step4 "$id")")"
				MEM+=("$n|re-publish S3|$(peak)")
				peers && add "s3_same|$n|rclone" "$(rate "$tiles" "$(timed "${RCLONE[@]}" copy --checksum --fast-list "$srcp" "s3:$BUCKET/bench/rc-cp-$n-$r")")"
				peers && add "s3_same|$n|aws" "$(rate "$tiles" "$(timed "${AWSS3[@]}" sync "s3://$BUCKET/bench/s3/up-s3-$n/builds/v1/tiles" "s3://$BUCKET/bench/aws-cp-$n-$r")")"
			fi
		fi
		SRV_PIDS=$DAV_PIDS
		if want dav_up || want dav_copy || want dav_same; then
			id=$(job "SELECT id FROM publish.build_tiles('up-dav-$n', 1, 'dav')")
			add "dav_up|$n|publish" "$(rate "$tiles" "$(upload_phase "$id")")" "$(cat "$WORK/cpu_after_cut")"
		fi
		if want dav_up; then
			# rclone paces its WebDAV calls: a sample of the tree, as for its copies
			(cd "$tree" && find . -type f | sed 's|^\./||' | sort) >"$WORK/up-all-$n"
			head -n "$DAV_SAMPLE" "$WORK/up-all-$n" >"$WORK/up-sample-$n"
			ns=$(wc -l <"$WORK/up-sample-$n")
			peers && add_sample "dav_up|$n|rclone" "$ns" "$(timed "${RCLONE[@]}" copy --files-from "$WORK/up-sample-$n" "$tree" "dav:rc-up-$n-$r")"
		fi
		if want dav_copy || want dav_same; then
			slug=cp-dav-$n-$r
			copy_project "$slug" "up-dav-$n" dav
			fresh_worker >/dev/null
			id=$(job "SELECT id FROM publish.publish_version('$slug', 1, 'dav')")
			add "dav_copy|$n|publish" "$(rate "$tiles" "$(step4 "$id")")"
			MEM+=("$n|publish WebDAV|$(peak)")
			# rclone's server-side COPY on WebDAV: a sample of the tiles (the top zoom's first columns)
			sample=dav/up-dav-$n/builds/v1/tiles/$z
			find "$DAV_DIR/$sample" -type f | sed "s|^$DAV_DIR/$sample/||" | sort >"$WORK/all-$n"
			head -n "$DAV_SAMPLE" "$WORK/all-$n" >"$WORK/sample-$n"
			ns=$(wc -l <"$WORK/sample-$n")
			peers && add_sample "dav_copy|$n|rclone" "$ns" "$(timed "${RCLONE[@]}" copy --files-from "$WORK/sample-$n" "dav:$sample" "dav:rc-cp-$n-$r")"
			if want dav_same; then
				id=$(job "SELECT id FROM publish.publish_version('$slug', 1, 'dav')")
				add "dav_same|$n|publish" "$(rate "$tiles" "$(step4 "$id")")"
				MEM+=("$n|re-publish WebDAV|$(peak)")
				# rclone's copy to compare with, made on the server's disk: rclone
				# compares size and time, which cp -a keeps (its own paced copy of
				# 100,000 tiles takes an hour)
				mkdir -p "$DAV_DIR/rc-same-$n"
				cp -a "$DAV_DIR/dav/up-dav-$n/builds/v1/tiles/." "$DAV_DIR/rc-same-$n/"
				peers && add "dav_same|$n|rclone" "$(rate "$tiles" "$(timed "${RCLONE[@]}" copy "dav:dav/up-dav-$n/builds/v1/tiles" "dav:rc-same-$n")")"
			fi
		fi
	done
done

# release.json of OVERLAYS overlays (lib/overlays.sql) on S3, plain and gzip, interleaved
GZ=()
if [ "$OVERLAYS" -gt 0 ]; then
	psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('big', 'Big') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status) VALUES (:'project_id', 1, 'ready') RETURNING id AS version_id \gset
\set n $OVERLAYS
\i '$BENCH_DIR/lib/overlays.sql'
COMMIT;
ANALYZE publish.overlays;
SQL
	job "SELECT id FROM publish.publish_version('big', 1, 's3')" >/dev/null	# warm-up
	for r in $(seq 1 "$RUNS"); do
		for env in s3 s3gz; do
			id=$(job "SELECT id FROM publish.publish_version('big', 1, '$env')")
			GZ+=("$env|$(q "SELECT extract(epoch FROM completed_at - started_at)::numeric(10,3) || '|' || (result->>'release_bytes') || '|' || (result->>'release_stored_bytes') FROM publish.jobs WHERE id = '$id'")")
		done
	done
fi

# --- the table ------------------------------------------------------------------
declare -A LABEL=(
	[s3_up]="S3: upload of built tiles"
	[s3_copy]="S3: server-side copy into the release's place"
	[s3_same]="S3: nothing changed (re-publish / re-sync)"
	[dav_up]="WebDAV: upload of built tiles"
	[dav_copy]="WebDAV: copy into the release's place"
	[dav_same]="WebDAV: nothing changed"
)
mkdir -p "$RESULTS_DIR" "$IMG_DIR" "$(dirname "$PLOT_DATA")"
: >"$PLOT_DATA"
{
	echo "$(date -u +%Y-%m-%d), commit $(git -C "$ROOT_DIR" rev-parse --short HEAD), $(nproc) CPUs, load at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); $RUNS runs, medians; publish.storage_concurrency = $CONC, rclone --transfers $CONC, AWS CLI max_concurrent_requests $CONC; $(rclone version | head -1), $($AWS --version | cut -d' ' -f1)"
	echo
	echo "| operation | tiles | publish, tiles/s | rclone, tiles/s | AWS CLI, tiles/s | publish / faster peer |"
	echo "|---|---:|---:|---:|---:|---:|"
	for row in s3_up s3_copy s3_same dav_up dav_copy dav_same; do
		want "$row" || continue
		for n in $COUNTS; do
			p=$(median "${R[$row|$n|publish]:-}")
			rc=$(median "${R[$row|$n|rclone]:-}")
			aw=$(median "${R[$row|$n|aws]:-}")
			ratio=$(awk -v p="$p" -v a="$rc" -v b="$aw" 'BEGIN { m = 0; if (a != "-" && a + 0 > m) m = a; if (b != "-" && b + 0 > m) m = b; if (m > 0 && p != "-") printf "%.2f×", p / m; else print "-" }')
			echo "| ${LABEL[$row]} | ${TILES[$n]} | $p | $rc | $aw | $ratio |"
			echo "\"${LABEL[$row]} ($n)\" ${p/-/0} ${rc/-/0} ${aw/-/0}" >>"$PLOT_DATA"
		done
	done
	echo
	echo "Where the time goes: CPU ms per 1,000 tiles (medians), of the client (publish: the worker, the whole job, a build's from the end of its cut) and of the servers (s3rver and the SigV4 proxy, or nginx):"
	echo
	echo "| operation | tiles | publish: client / servers | rclone: client / servers | AWS CLI: client / servers |"
	echo "|---|---:|---:|---:|---:|"
	CORES=()
	for row in s3_up s3_copy s3_same dav_up dav_copy dav_same; do
		want "$row" || continue
		for n in $COUNTS; do
			line="| ${LABEL[$row]} | ${TILES[$n]} |"
			cores=$line
			for tool in publish rclone aws; do
				c=$(median "${C[$row|$n|$tool]:-}")
				v=$(median "${V[$row|$n|$tool]:-}")
				r=$(median "${R[$row|$n|$tool]:-}")
				if [ "$c" = - ]; then line="$line - |"; cores="$cores - |"; continue; fi
				line="$line $c / $v |"
				cores="$cores $(awk -v c="$c" -v v="$v" -v r="$r" 'BEGIN { printf "%.2f", (c + v) * r / 1e6 }') |"
			done
			echo "$line"
			CORES+=("$cores")
		done
	done
	echo
	echo "The machine's $(nproc) cores in each run: the client's and the servers' CPU together, in cores busy on average (their CPU ms per 1,000 tiles × tiles/s ÷ 10⁶; publish's copies count the whole job's CPU against step 4's time, so a little high); near $(nproc), the machine is the limit:"
	echo
	echo "| operation | tiles | publish | rclone | AWS CLI |"
	echo "|---|---:|---:|---:|---:|"
	printf '%s\n' "${CORES[@]}"
	echo
	echo "Worker private memory (peak RssAnon in the job):"
	echo
	echo "| tiles | job | peak RssAnon |"
	echo "|---:|---|---:|"
	printf '%s\n' "${MEM[@]}" | sort -t'|' -k2,2 -k1,1n | awk -F'|' '{ k = $1 "|" $2; if (!(k in peak) || $3 > peak[k]) peak[k] = $3; if (!(k in seen)) { seen[k] = 1; order[++n] = k } } END { for (i = 1; i <= n; i++) { split(order[i], f, "|"); printf "| %s | %s | %.1f MB |\n", f[1], f[2], peak[order[i]] / 1024 } }'
	if [ ${#GZ[@]} -gt 0 ]; then
		echo
		echo "release.json of $OVERLAYS overlays on S3 (the whole job, median of $RUNS):"
		echo
		echo "| target option | job, s | release.json bytes | bytes stored | stored / document |"
		echo "|---|---:|---:|---:|---:|"
		for env in s3 s3gz; do
			printf '%s\n' "${GZ[@]}" | awk -F'|' -v e="$env" '$1 == e { print $2 "|" $3 "|" $4 }' | sort -t'|' -k1,1n |
				awk -F'|' -v e="$env" '{ t[NR] = $1; b = $2; s = $3 } END { printf "| %s | %.2f | %d | %d | %.1f %% |\n", (e == "s3gz" ? "\"compress\": \"gzip\"" : "none"), t[int((NR + 1) / 2)], b, s, 100 * s / b }'
		done
	fi
} | tee "$RESULTS_DIR/tiles_peers.md"

gnuplot <<GP
set terminal pngcairo size 900,560 font "DejaVu Sans,10"
set output "$IMG_DIR/tiles-peers.png"
set title "Tiles per second on the test servers (loopback; medians of $RUNS runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 left font ",8"
set ylabel "tiles/s"
set logscale y
set yrange [10:*]
set key outside top center horizontal
set bmargin 12
plot "$PLOT_DATA" using 2:xtic(1) title "publish", '' using 3 title "rclone", '' using 4 title "AWS CLI"
GP
echo "plot: $IMG_DIR/tiles-peers.png" >&2
