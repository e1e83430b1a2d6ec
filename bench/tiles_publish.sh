#!/usr/bin/env bash
# tiles_publish.sh: step 4 of a publish (tiles verified and copied,
# tile_publish.c) on the WebDAV (nginx) and S3 (s3rver behind the SigV4
# check) test servers on loopback, for 1,000 and 10,000 tiles, side by side
# in the same run with the curl command-line tool uploading the same files
# (BENCH_TILE_COUNTS="1000 10000 40000" shows the memory staying flat):
#   - curl, one process, one reused connection (-K with one entry per file);
#     this upload puts the build tiles where the publish reads them;
#   - curl --parallel (--parallel-max = publish.storage_concurrency).
# For the extension: tiles per second of step 4 (from its log: the 50 %
# entry to the 80 % entry) for a first publish and for a re-publish (all
# skipped), and the worker's peak memory: VmHWM of a worker
# started just before the job (it includes the shared buffers the worker
# touched, which grow with the manifest's pages), and its peak private
# memory (RssAnon, sampled every 5 ms by peak_anon, lib/worker.sh), and
# the CPU time the worker spent per 1,000 tiles (the whole job, from /proc:
# steadier than the rates when other work shares the CPUs).  Prints a Markdown
# table and writes it to bench/results/tiles_publish.md (git-ignored).
#
#   bash bench/tiles_publish.sh
#   BENCH_TILE_COUNTS="1000 10000" BENCH_TILE_BYTES=4096 BENCH_CONCURRENCY=8 BENCH_TARGETS="dav s3" bash bench/tiles_publish.sh
#
# The manifest has each tile's MD5, as build_tiles records it: on S3 a
# first publish is then one CopyObject per tile, verified by its ETag;
# BENCH_MD5=0 leaves it out (tiles registered without one: a hashed GET of
# each build tile, then the copy).  On WebDAV each tile is a hashed GET
# and a COPY either way.
#
# Private cluster on $PUBLISH_BENCH_PORT (54380); servers on the ports of
# scripts/storage-servers.sh (PUBLISH_DAV_PORT, ...); all stopped by pid on
# exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"
# shellcheck source=bench/lib/servers.sh
source "$BENCH_DIR/lib/servers.sh"
# shellcheck source=bench/lib/worker.sh
source "$BENCH_DIR/lib/worker.sh"

COUNTS=${BENCH_TILE_COUNTS:-"1000 10000"}
BYTES=${BENCH_TILE_BYTES:-4096}
CONC=${BENCH_CONCURRENCY:-8}
MD5=${BENCH_MD5:-1}
PORT=${PUBLISH_BENCH_PORT:-54380}
storage_ports 54381 54382 54383 54384 54385 54386
RESULTS_DIR=$ROOT_DIR/bench/results
CACHE="public, max-age=31536000, immutable"

build_and_install
# python3 writes the tiles and the curl configs (not on every new machine)
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-bench-tiles.XXXXXX")
chmod 755 "$WORK"
trap 'cleanup_servers_and_cluster "$WORK"' EXIT

servers_start "$WORK/servers"
# one worker, restarted quickly: its VmHWM is the peak of one job
cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning" \
	"publish.workers_per_database = 1" "publish.launcher_restart_delay = 1" \
	"publish.storage_concurrency = $CONC"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('dav', '${S[dav_url]}/open/bench');
SELECT publish.set_storage_target('s3', 's3://${S[s3_bucket]}/bench', '{"endpoint": "${S[s3_endpoint]}"}');
SELECT publish.set_storage_credentials('s3', '${S[s3_key_id]}', '${S[s3_secret]}');
SQL

# gen N: N tiles of BYTES random bytes (zoom 0 up, row by row) under
# $WORK/tiles-N, their manifest (z,x,y,size,sha256,md5) and curl configs
gen() {
	python3 - "$WORK" "$1" "$BYTES" "${S[dav_url]}" "${S[s3_endpoint]}/${S[s3_bucket]}" \
		"${S[s3_key_id]}:${S[s3_secret]}" "$CACHE" <<'PY'
import hashlib, os, sys
work, n, size, dav, s3, cred, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
root = f"{work}/tiles-{n}"
tiles = []
z = 0
while len(tiles) < n:
    for x in range(1 << z):
        for y in range(1 << z):
            if len(tiles) < n:
                tiles.append((z, x, y))
    z += 1
cfg = {k: open(f"{work}/curl-{k}-{n}.cfg", "w") for k in ("dav-src", "dav-cli", "s3-src", "s3-cli")}
with open(f"{work}/manifest-{n}.csv", "w") as man:
    for (z, x, y) in tiles:
        d = f"{root}/{z}/{x}"
        os.makedirs(d, exist_ok=True)
        data = os.urandom(size)
        path = f"{d}/{y}.png"
        with open(path, "wb") as f:
            f.write(data)
        h = hashlib.sha256(data).hexdigest()
        man.write(f"{z},{x},{y},{size},{h},{hashlib.md5(data).hexdigest()}\n")
        for k, f in cfg.items():
            if f.tell() > 0:
                f.write("next\n")
            base = (dav + "/open/bench") if k.startswith("dav") else (s3 + "/bench")
            prefix = f"builds/b{n}" if k.endswith("src") else f"cli/b{n}"
            f.write(f'url = "{base}/{prefix}/{z}/{x}/{y}.png"\nupload-file = "{path}"\n'
                    f'output = "/dev/null"\nsilent\nfail\n'
                    f'header = "Content-Type: image/png"\nheader = "Cache-Control: {cache}"\n')
            if k.startswith("s3"):
                f.write(f'aws-sigv4 = "aws:amz:us-east-1:s3"\nuser = "{cred}"\n'
                        f'header = "x-amz-content-sha256: {h}"\n')
            else:
                f.write('header = "Expect:"\n')
for f in cfg.values():
    f.close()
print(max(z for z, _, _ in tiles))
PY
}

# timed CMD...: seconds CMD took
timed() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" 2>/dev/null || true
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d bench -c "$1"; }

hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# cpu_ms PID: user + system CPU time of PID so far, in ms (steadier than
# wall-clock rates on a shared machine)
cpu_ms() {
	local stat
	stat=$(cat "/proc/$1/stat")
	stat=${stat##*) }
	awk -v s="$stat" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(s, f, " "); printf "%d", (f[12] + f[13]) * 1000 / hz }'
}

# sampled PID CMD...: runs CMD while peak_anon samples PID every 5 ms;
# CMD's output goes to $WORK/out, the peak RssAnon (kB) to stdout
sampled() {
	local pid=$1 stop=$WORK/stop.$RANDOM i
	shift
	peak_anon "$pid" "$stop" >"$stop.out" &
	for i in $(seq 1 500); do [ -f "$stop.ready" ] && break; sleep 0.01; done
	"$@" >"$WORK/out"
	touch "$stop"
	wait
	cat "$stop.out"
}

# publish SLUG ENV: runs a job to its end; prints step4_seconds|copied|skipped|verified|status|error
publish() {
	local job st i
	job=$(q "SELECT id FROM publish.publish_version('$1', 1, '$2')")
	for i in $(seq 1 6000); do
		st=$(q "SELECT status FROM publish.jobs WHERE id = '$job'")
		case $st in completed|failed|cancelled) break ;; esac
		sleep 0.1
	done
	q "SELECT extract(epoch FROM
	            min((e->>'timestamp')::timestamptz) FILTER (WHERE (e->>'progress')::int = 80)
	          - min((e->>'timestamp')::timestamptz) FILTER (WHERE (e->>'progress')::int = 50))::numeric(10,3),
	          result->>'tiles_copied', result->>'tiles_skipped', result->>'tiles_verified', status,
	          coalesce(error, '')
	     FROM publish.jobs, jsonb_array_elements(logs) e WHERE id = '$job'
	    GROUP BY result, status, error"
}

rows=()
for n in $COUNTS; do
	maxz=$(gen "$n")
	for target in ${BENCH_TARGETS:-dav s3}; do
		curl1=$(timed curl -K "$WORK/curl-$target-src-$n.cfg")
		curlp=$(timed curl -s --parallel --parallel-max "$CONC" -K "$WORK/curl-$target-cli-$n.cfg")
		psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
\set slug '$target-$n'
\set name 'Bench $target $n'
\set format png
\set max_zoom $maxz
\set source_path 'builds/b$n'
\i '$BENCH_DIR/lib/built_tiles_project.sql'
CREATE TEMP TABLE m (z int, x int, y int, byte_size bigint, sha256 text, md5 text);
\copy m FROM '$WORK/manifest-$n.csv' WITH (FORMAT csv)
INSERT INTO publish.tiles (tileset_id, z, x, y, byte_size, sha256, md5)
SELECT s.id, m.z, m.x, m.y, m.byte_size, m.sha256, CASE WHEN $MD5 = 1 THEN m.md5 END
  FROM m, publish.tilesets s JOIN publish.project_versions v ON v.id = s.version_id
  JOIN publish.projects p ON p.id = v.project_id WHERE p.slug = '$target-$n';
SQL
		pid=$(fresh_worker)
		hwm0=$(hwm "$pid")
		anon0=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
		cpu0=$(cpu_ms "$pid")
		anon1=$(sampled "$pid" publish "$target-$n" "$target")
		IFS='|' read -r t1 c1 s1 v1 st1 err1 <"$WORK/out"
		hwm1=$(hwm "$pid")
		cpu1=$(cpu_ms "$pid")
		anon2=$(sampled "$pid" publish "$target-$n" "$target")
		IFS='|' read -r t2 c2 s2 v2 st2 err2 <"$WORK/out"
		hwm2=$(hwm "$pid")
		cpu2=$(cpu_ms "$pid")
		if [ "$st1" != completed ] || [ "$c1" != "$n" ] || [ "$st2" != completed ] || [ "$s2" != "$n" ]; then
			echo "$target $n: unexpected result: $st1 copied=$c1 $err1 / $st2 skipped=$s2 $err2" >&2
			exit 1
		fi
		rows+=("$(awk -v t="$target" -v n="$n" -v t1="$t1" -v t2="$t2" -v c1="$curl1" -v cp="$curlp" \
			-v h0="$hwm0" -v h1="$hwm1" -v h2="$hwm2" -v a0="$anon0" -v a1="$anon1" -v a2="$anon2" \
			-v u0="$cpu0" -v u1="$cpu1" -v u2="$cpu2" 'BEGIN {
			name = (t == "dav") ? "WebDAV (nginx)" : "S3 (s3rver + SigV4 check)";
			printf "| %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f / %.1f / %.1f MB | %.1f / %.1f / %.1f MB | %.0f / %.0f |\n",
				name, n, n / t1, n / t2, n / c1, n / cp, h0 / 1024, h1 / 1024, h2 / 1024,
				a0 / 1024, a1 / 1024, a2 / 1024, (u1 - u0) * 1000 / n, (u2 - u1) * 1000 / n }')")
	done
done

mkdir -p "$RESULTS_DIR"
{
	echo "$(date -u +%Y-%m-%d), commit $(git -C "$ROOT_DIR" rev-parse --short HEAD), tiles of $BYTES bytes, publish.storage_concurrency = $CONC, manifest MD5s: $([ "$MD5" = 1 ] && echo yes || echo no), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), loopback; $(curl --version | head -1 | cut -d' ' -f1-2)"
	echo
	echo "| target | tiles | publish, tiles/s | re-publish, tiles/s (all skipped) | curl, 1 connection, uploads/s | curl --parallel-max $CONC, uploads/s | worker VmHWM: idle / after publish / after re-publish | worker private memory (RssAnon): idle / peak in publish / peak in re-publish | worker CPU, ms per 1,000 tiles: publish / re-publish (whole job) |"
	echo "|---|---:|---:|---:|---:|---:|---|---|---|"
	printf '%s\n' "${rows[@]}"
} | tee "$RESULTS_DIR/tiles_publish.md"
