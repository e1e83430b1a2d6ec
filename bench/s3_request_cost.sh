#!/usr/bin/env bash
# s3_request_cost.sh: what each kind of S3 request costs the test S3 server
# (s3rver, and the SigV4-checking proxy in front of it): CPU time of each
# process per request, for N requests of 4 KiB objects sent by the curl
# command-line tool over one reused connection.  It explains the S3 rows of
# bench/tiles_publish.sh: a publish copies tiles with CopyObject, curl
# uploads them with PutObject, and the server is the bottleneck there.
#
#   bash bench/s3_request_cost.sh            # N=1000
#   BENCH_REQUESTS=2000 bash bench/s3_request_cost.sh
#
# Each kind is run twice (the first PUT creates the objects, the second
# overwrites them).  Prints a Markdown table and writes it to
# bench/results/s3_request_cost.md (git-ignored).  Servers on the ports of
# scripts/storage-servers.sh (PUBLISH_S3_PORT, ...; defaults 5439x here),
# stopped by pid on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib/servers.sh
source "$BENCH_DIR/lib/servers.sh"
N=${BENCH_REQUESTS:-1000}
storage_ports 54391 54392 54393 54394 54395 54396
RESULTS_DIR=$ROOT_DIR/bench/results

bash "$ROOT_DIR/scripts/install-deps.sh" >/dev/null
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-bench-s3cost.XXXXXX")
cleanup() { servers_stop "$WORK/servers"; rm -rf "$WORK"; }
trap cleanup EXIT
servers_start "$WORK/servers"

# one curl config per kind of request, N entries each
python3 - "$WORK" "$N" "${S[s3_endpoint]}/${S[s3_bucket]}" "${S[s3_key_id]}:${S[s3_secret]}" "${S[s3_bucket]}" <<'PY'
import hashlib, os, sys
work, n, ep, cred, bucket = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
os.makedirs(f"{work}/f", exist_ok=True)
empty = hashlib.sha256(b"").hexdigest()
kinds = ("put", "copy", "head", "get")
cfg = {k: open(f"{work}/{k}.cfg", "w") for k in kinds}
common = f'aws-sigv4 = "aws:amz:us-east-1:s3"\nuser = "{cred}"\noutput = "/dev/null"\nsilent\nfail\n'
for i in range(n):
    data = os.urandom(4096)
    path = f"{work}/f/{i}.png"
    with open(path, "wb") as f:
        f.write(data)
    for f in cfg.values():
        if f.tell() > 0:
            f.write("next\n")
    cfg["put"].write(f'url = "{ep}/cost/src/{i}.png"\nupload-file = "{path}"\n'
                     f'header = "Content-Type: image/png"\n'
                     f'header = "x-amz-content-sha256: {hashlib.sha256(data).hexdigest()}"\n' + common)
    # what a publish sends for a tile (tile_publish.c, storage_s3.c)
    cfg["copy"].write(f'url = "{ep}/cost/dst/{i}.png"\nrequest = "PUT"\n'
                      f'header = "x-amz-copy-source: /{bucket}/cost/src/{i}.png"\n'
                      f'header = "x-amz-metadata-directive: REPLACE"\nheader = "Content-Type: image/png"\n'
                      f'header = "Cache-Control: public, max-age=31536000, immutable"\n'
                      f'header = "x-amz-content-sha256: {empty}"\n' + common)
    cfg["head"].write(f'url = "{ep}/cost/src/{i}.png"\nhead\nheader = "x-amz-content-sha256: {empty}"\n' + common)
    cfg["get"].write(f'url = "{ep}/cost/src/{i}.png"\nheader = "x-amz-content-sha256: {empty}"\n' + common)
for f in cfg.values():
    f.close()
PY

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
s3rver=$(cat "$WORK/servers/s3rver.pid")
proxy=$(cat "$WORK/servers/s3proxy.pid")
rows=()
for kind in put copy head get put copy; do
	a=$(ticks "$s3rver"); b=$(ticks "$proxy"); t0=$(date +%s.%N)
	if ! curl -K "$WORK/$kind.cfg"; then
		echo "s3_request_cost.sh: a $kind request failed" >&2
		exit 1
	fi
	t1=$(date +%s.%N); a2=$(ticks "$s3rver"); b2=$(ticks "$proxy")
	rows+=("$(awk -v k="$kind" -v n="$N" -v t0="$t0" -v t1="$t1" -v s="$((a2 - a))" -v p="$((b2 - b))" -v hz="$hz" 'BEGIN {
		name = (k == "put") ? "PutObject" : (k == "copy") ? "CopyObject (REPLACE, as a tile copy)" : (k == "head") ? "HEAD" : "GET";
		printf "| %s | %.0f | %.2f | %.2f | %.2f |\n", name, n / (t1 - t0),
			1000 * s / hz / n, 1000 * p / hz / n, 1000 * (s + p) / hz / n }')")
done

mkdir -p "$RESULTS_DIR"
{
	echo "$(date -u +%Y-%m-%d), $N requests of each kind, 4 KiB objects, curl on one connection, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| request | requests/s (one connection) | s3rver CPU ms per request | SigV4 proxy CPU ms per request | both |"
	echo "|---|---:|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
} | tee "$RESULTS_DIR/s3_request_cost.md"
