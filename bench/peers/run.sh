#!/usr/bin/env bash
# bench/peers/run.sh: pickup latency of publish against graphile-worker and
# pg-boss, in the same run on the same private cluster.  Not a test.
#
# Pickup latency = time from the COMMIT of the enqueuing transaction to the
# job being picked up, one job at a time with the worker idle, from two
# starting points: pg_xact_commit_timestamp() of the enqueuing transaction
# (track_commit_timestamp = on; its xid is recorded in a side table), taken
# before its WAL flush; and the moment the client's COMMIT returned (client
# clock).  See bench/peers/README.md.
#
#   bash bench/peers/run.sh                           # as root
#   BENCH_PEERS_N=500 BENCH_PEERS_POLL_N=0 bash bench/peers/run.sh
#
# Writes bench/peers/results/ (git-ignored: pickup.md, server.log), the data
# behind the plots in docs/results/peers/ (*.dat, summary.json), and
# docs/img/pickup-cdf.png, pickup-cdf-returned.png, pickup-cdf-async.png
# and pickup-percentiles.png.
set -euo pipefail

PEERS_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$PEERS_DIR/../../scripts/lib.sh"

PORT=${PUBLISH_BENCH_PORT:-54450}
OUT=$PEERS_DIR/results
DATA=$ROOT_DIR/docs/results/peers
IMG=$ROOT_DIR/docs/img
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
command -v node >/dev/null || { echo "node (>= 18) and npm are needed" >&2; exit 1; }
if [ ! -d "$PEERS_DIR/node_modules/graphile-worker" ] || [ ! -d "$PEERS_DIR/node_modules/pg-boss" ]; then
	(cd "$PEERS_DIR" && npm ci --no-audit --no-fund)
fi

build_and_install

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-peers.XXXXXX")
chmod 755 "$WORK"
cleanup() { cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT

# One publish worker, so the job always goes to the same (idle) process.
cluster_start "$WORK/pg" "$PORT" \
	"track_commit_timestamp = on" \
	"publish.workers_per_database = 1" \
	"log_min_messages = warning"
mkdir -p "$WORK/maps" "$OUT" "$DATA" "$IMG"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/maps"; fi

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
for db in bench gw boss; do q -d postgres -c "CREATE DATABASE $db"; done
q -d gw -c "CREATE TABLE bench_enq (seq int PRIMARY KEY, x xid8 NOT NULL)"
q -d boss -c "CREATE TABLE bench_enq (seq int PRIMARY KEY, x xid8 NOT NULL)"
q -d bench <<SQL
CREATE EXTENSION publish;
CREATE TABLE bench_enq (seq int PRIMARY KEY, job_id uuid NOT NULL, x xid8 NOT NULL);
BEGIN;
INSERT INTO publish.projects (slug, name) VALUES ('bench', 'Benchmark project') RETURNING id AS project_id \gset
INSERT INTO publish.project_versions (project_id, version_number, status)
VALUES (:'project_id', 1, 'ready') RETURNING id AS version_id \gset
-- 20 overlays (markers), as in bench/pickup.sh
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT :'version_id', 'poi-' || i, 'Point ' || i, 'marker',
       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + i / 1000.0, 52.5)),
       jsonb_build_object('rank', i)
  FROM generate_series(1, 20) i;
COMMIT;
SELECT publish.set_storage_target('bench', 'file://$WORK/maps') \g /dev/null
SQL

echo "== graphile-worker schema"
(cd "$PEERS_DIR" && PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER PGDATABASE=gw \
	npx --no-install graphile-worker --schema-only >/dev/null)

# What a single-row commit costs on this disk (the floor of every system's
# figure from the commit timestamp: it is taken before the WAL flush), back
# to back and, as the jobs below are enqueued, after BENCH_PEERS_SLEEP_MS of
# idle time (on this VM an idle disk and CPU make the first flush slower);
# and with synchronous_commit = off after the same idle time.
SLEEP_MS=${BENCH_PEERS_SLEEP_MS:-10}
q -d bench -c "CREATE TABLE bench_commit (i int)"
# commit_ms SCRIPT: mean latency of the INSERT statement (pgbench -r, 2,000)
commit_ms() {
	printf '%b' "$1" >"$WORK/commit.sql"
	"$PG_BIN/pgbench" -n -r -c 1 -t 2000 -f "$WORK/commit.sql" bench >"$WORK/commit.log" 2>&1
	awk '/INSERT INTO bench_commit/ { print $1 }' "$WORK/commit.log"
}
COMMIT_MS=$(commit_ms 'INSERT INTO bench_commit VALUES (1);\n')
COMMIT_IDLE_MS=$(commit_ms "\\sleep $SLEEP_MS ms\nINSERT INTO bench_commit VALUES (1);\n")
COMMIT_IDLE_ASYNC_MS=$(commit_ms "SET synchronous_commit = off;\n\\sleep $SLEEP_MS ms\nINSERT INTO bench_commit VALUES (1);\n")
echo "== a single-row INSERT + COMMIT (pgbench -r, mean of 2000): durable $COMMIT_MS ms back to back, $COMMIT_IDLE_MS ms after $SLEEP_MS ms idle; synchronous_commit = off after $SLEEP_MS ms idle: $COMMIT_IDLE_ASYNC_MS ms"

rm -f "$DATA"/*.dat "$DATA/summary.json"
(cd "$PEERS_DIR" && node pickup.js "$DATA")
# no figure plots the async runs from COMMIT returned: their samples stay in $OUT
mv "$DATA"/*-async-returned.dat "$OUT/" 2>/dev/null || true

GW_VERSION=$(node -p "require('$PEERS_DIR/node_modules/graphile-worker/package.json').version")
BOSS_VERSION=$(node -p "require('$PEERS_DIR/node_modules/pg-boss/package.json').version")
PG_VERSION=$(psql -X -tA -d postgres -c "SHOW server_version")
COMMIT=$(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)

bash "$PEERS_DIR/plot.sh"

node - "$DATA/summary.json" >"$OUT/pickup.md" <<JS
const s = require(process.argv[2]);
const f = x => x.toFixed(3);
const names = {
  'publish': 'publish (worker in the server, latch set at commit)',
  'graphile-worker': 'graphile-worker $GW_VERSION (LISTEN/NOTIFY)',
  'pg-boss-notify': 'pg-boss $BOSS_VERSION, woken by the enqueuer (notifyWorker after COMMIT)',
  'pg-boss-poll': 'pg-boss $BOSS_VERSION, polling every 0.5 s (its minimum)'
};
for (const k of ['publish', 'graphile-worker', 'pg-boss-notify']) names[k + '-async'] = names[k] + ', enqueued with synchronous_commit = off';
console.log('publish $COMMIT, PostgreSQL $PG_VERSION, node $(node --version), $(nproc) CPUs;');
console.log('load average $LOAD_START at the start, ' + require('fs').readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') + ' at the end.');
console.log('');
console.log('Two measures of the same jobs. *From the commit timestamp*: pg_xact_commit_timestamp() of the enqueuing transaction, taken before its WAL flush (the flush is inside the interval). *From COMMIT returned*: the enqueuing client\'s clock right after its COMMIT returned (flush and the reply to the client outside the interval; may be negative). Rows *enqueued with synchronous_commit = off*: the same, with an enqueuing transaction that does not wait for its WAL flush, so the job is visible as soon as its commit timestamp is taken and the interval holds only the wake-up and the claim.');
console.log('');
console.log('| system | jobs | from commit timestamp: median ms | p90 ms | p99 ms | max ms | mean ms | from COMMIT returned: median ms | p90 ms | p99 ms | max ms | min ms |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const k of Object.keys(s)) {
  const r = s[k].returned;
  console.log('| ' + names[k] + ' | ' + s[k].n + ' | **' + f(s[k].median) + '** | ' + f(s[k].p90) + ' | **' + f(s[k].p99) + '** | ' + f(s[k].max) + ' | ' + f(s[k].mean) +
              ' | **' + f(r.median) + '** | ' + f(r.p90) + ' | **' + f(r.p99) + '** | ' + f(r.max) + ' | ' + f(r.min) + ' |');
}
if (s.publish.run) console.log('\npublish job run (started_at -> completed_at), median ' + f(s.publish.run.median) + ' ms, p99 ' + f(s.publish.run.p99) + ' ms.');
JS
cp "$WORK/pg/server.log" "$OUT/server.log"
ERRS=$(grep -c -E ' (ERROR|FATAL|PANIC): ' "$WORK/pg/server.log" || true)
{
	echo
	echo "A single-row INSERT + COMMIT (pgbench -r, 1 client, mean of 2,000): durable, back to back $COMMIT_MS ms; durable, after $SLEEP_MS ms idle (as the jobs above are enqueued) $COMMIT_IDLE_MS ms; synchronous_commit = off, after $SLEEP_MS ms idle $COMMIT_IDLE_ASYNC_MS ms."
	echo "Server log: $ERRS ERROR/FATAL lines (copied to bench/peers/results/server.log); run took $(( $(date +%s) - T_START )) s."
	echo "Settings: BENCH_PEERS_N=${BENCH_PEERS_N:-2000} BENCH_PEERS_POLL_N=${BENCH_PEERS_POLL_N:-100} BENCH_PEERS_SLEEP_MS=$SLEEP_MS BENCH_PEERS_MODES=\"${BENCH_PEERS_MODES:-durable async}\"."
} >>"$OUT/pickup.md"
echo
cat "$OUT/pickup.md"
echo "(written to $OUT/pickup.md; plots $IMG/pickup-cdf.png, $IMG/pickup-cdf-returned.png, $IMG/pickup-cdf-async.png, $IMG/pickup-percentiles.png)"
