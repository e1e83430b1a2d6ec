#!/usr/bin/env bash
# storage_upload.sh: uploads BENCH_OBJECTS (2000) small objects to the
# WebDAV (nginx) and S3 (s3rver behind the SigV4 check) test servers
# through the extension's storage code (publish._storage_put, the code the
# worker runs: libcurl, one reused connection, each upload then verified),
# and, in the same run, with the curl command-line tool doing the same PUTs
# over one reused connection (the practical ceiling).  Prints a Markdown
# table and writes it to bench/results/storage_upload.md.
#
#   bash bench/storage_upload.sh
#   BENCH_OBJECTS=500 BENCH_OBJECT_BYTES=4096 bash bench/storage_upload.sh
#
# Private cluster on $PUBLISH_BENCH_PORT (54380); servers on 54381-54386
# (PUBLISH_DAV_PORT, ... as in scripts/storage-servers.sh); all stopped by
# pid on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"
# shellcheck source=bench/lib/servers.sh
source "$BENCH_DIR/lib/servers.sh"

N=${BENCH_OBJECTS:-2000}
BYTES=${BENCH_OBJECT_BYTES:-1024}
PORT=${PUBLISH_BENCH_PORT:-54380}
storage_ports 54381 54382 54383 54384 54385 54386
RESULTS_DIR=$BENCH_DIR/results

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-bench-storage.XXXXXX")
chmod 755 "$WORK"
trap 'cleanup_servers_and_cluster "$WORK"' EXIT

servers_start "$WORK/servers"
cluster_start "$WORK/pg" "$PORT" "log_min_messages = warning"

head -c "$BYTES" /dev/urandom >"$WORK/object.bin"
chmod 644 "$WORK/object.bin"
HASH=$(sha256sum "$WORK/object.bin" | cut -d' ' -f1)
CACHE="public, max-age=31536000, immutable"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
psql -X -q -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
CREATE EXTENSION publish;
SELECT publish.set_storage_target('dav', '${S[dav_url]}/open/ext');
SELECT publish.set_storage_target('s3', 's3://${S[s3_bucket]}/ext', '{"endpoint": "${S[s3_endpoint]}"}');
SELECT publish.set_storage_credentials('s3', '${S[s3_key_id]}', '${S[s3_secret]}');
SQL

# ext ENV: seconds for N publish._storage_put calls in one session
ext() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d bench <<SQL
DO \$\$
DECLARE
	data bytea := pg_read_binary_file('$WORK/object.bin');
	t0 timestamptz := clock_timestamp();
BEGIN
	FOR i IN 1..$N LOOP
		PERFORM publish._storage_put('$1', format('objs/%s.bin', i), data,
		                             'application/octet-stream', '$CACHE');
	END LOOP;
	RAISE NOTICE 'seconds=%', extract(epoch FROM clock_timestamp() - t0);
END
\$\$;
SQL
}

# curl_cli BASE_URL [curl options]: seconds for N PUTs from one curl process
curl_cli() {
	local base=$1 t0 t1 i
	shift
	: >"$WORK/curl.cfg"
	for i in $(seq 1 "$N"); do echo "url = \"$base/objs/$i.bin\"" >>"$WORK/curl.cfg"; done
	t0=$(date +%s.%N)
	curl -sf -o /dev/null -X PUT --data-binary "@$WORK/object.bin" \
		-H "Content-Type: application/octet-stream" -H "Cache-Control: $CACHE" \
		"$@" -K "$WORK/curl.cfg"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

seconds() { sed -n 's/.*seconds=\([0-9.]*\).*/\1/p'; }

ext dav >/dev/null 2>&1 || true     # warm-up (creates the collections, connection)
dav_ext=$(ext dav 2>&1 | seconds)
dav_curl=$(curl_cli "${S[dav_url]}/open/cli" -H "Expect:")
s3_ext=$(ext s3 2>&1 | seconds)
s3_curl=$(curl_cli "${S[s3_endpoint]}/${S[s3_bucket]}/cli" \
	--aws-sigv4 "aws:amz:us-east-1:s3" -u "${S[s3_key_id]}:${S[s3_secret]}" \
	-H "x-amz-content-sha256: $HASH")

dav_files=$(find "$WORK/servers/dav/open/ext/objs" -type f | wc -l)
s3_files=$(find "$WORK/servers/s3/${S[s3_bucket]}/ext/objs" -name '*._S3rver_object' | wc -l)
if [ "$dav_files" -ne "$N" ] || [ "$s3_files" -ne "$N" ]; then
	echo "expected $N objects, found $dav_files on WebDAV and $s3_files on S3" >&2
	exit 1
fi

row() { # name ext_seconds curl_seconds what_ext_does
	awk -v name="$1" -v e="$2" -v c="$3" -v n="$N" -v what="$4" 'BEGIN {
		printf "| %s | %.0f objects/s (%.2f ms each; %s) | %.0f objects/s (%.2f ms each) | %.2f |\n",
			name, n / e, e * 1000 / n, what, n / c, c * 1000 / n, e / c }'
}

mkdir -p "$RESULTS_DIR"
{
	echo "$(date -u +%Y-%m-%d), $N objects of $BYTES bytes, $(nproc) CPUs, loopback; $(curl --version | head -1 | cut -d' ' -f1-2)"
	echo
	echo "| target | extension (publish._storage_put) | curl CLI, one connection | ratio |"
	echo "|---|---|---|---:|"
	row "WebDAV (nginx)" "$dav_ext" "$dav_curl" "PUT + verifying HEAD"
	row "S3 (s3rver behind the SigV4 check)" "$s3_ext" "$s3_curl" "signed PUT, ETag checked"
} | tee "$RESULTS_DIR/storage_upload.md"
