#!/usr/bin/env bash
# The demo: publishes version 3 of the sample project "campus" to a local
# directory and shows the job moving from queued to completed.
#
# It installs what is missing, builds and installs publish, starts a private
# PostgreSQL 15 cluster (publish preloaded) under $PUBLISH_DEMO_DIR
# (default /tmp/publish-demo), loads demo/sample_project.sql, points the
# environments dev, staging and production at $PUBLISH_DEMO_DIR/maps, writes
# the sample tiles, publishes, and prints progress, logs and the result.  The
# cluster is stopped at the end; re-running starts from the same directory.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"

DEMO_DIR=${PUBLISH_DEMO_DIR:-/tmp/publish-demo}
PORT=${PUBLISH_DEMO_PORT:-54320}
ENV_NAME=${1:-production}
MAPS=$DEMO_DIR/maps

build_and_install

mkdir -p "$DEMO_DIR"
chmod 755 "$DEMO_DIR"
cluster_stop "$DEMO_DIR/pg"			# left over from an interrupted run
trap 'cluster_stop "$DEMO_DIR/pg"' EXIT
cluster_start "$DEMO_DIR/pg" "$PORT"

psql_demo() { psql -X -q -v ON_ERROR_STOP=1 -d demo "$@"; }

# A fresh database each run: the sample is reloaded anyway, and the
# extension's objects always match the library just installed.
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS demo" -c "CREATE DATABASE demo"
psql_demo -c "CREATE EXTENSION publish"

echo "== Loading the sample project"
mkdir -p "$MAPS"
bash "$ROOT_DIR/demo/make_tiles.sh" "$MAPS" >/dev/null
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$MAPS"; fi
psql_demo -f "$ROOT_DIR/demo/sample_project.sql"
for env in dev staging production; do
	psql_demo -c "SELECT publish.set_storage_target('$env', 'file://$MAPS')" >/dev/null
done
psql_demo -c "SELECT env, url FROM publish.storage_targets ORDER BY env"

echo "== Publishing campus version 3 to $ENV_NAME"
echo "SELECT id, status, progress FROM publish.publish_version('campus', 3, '$ENV_NAME');"
# Publish, then poll the jobs view the way a client would, printing each
# change, in one session so that no step goes by unseen.  A PL/pgSQL loop
# sees every commit of the worker (each query takes a new snapshot).
JOB=$(psql_demo -tA <<SQL 2>&1 >/dev/null | sed 's/^NOTICE: *//' | tee /dev/stderr | sed -n 's/^job \([0-9a-f-]*\) .*/\1/p'
SET client_min_messages = notice;
SELECT set_config('demo.job', id::text, false) AS job_id
  FROM publish.publish_version('campus', 3, '$ENV_NAME') \gset
DO \$\$
DECLARE
	j record;
	last text := '';
	deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
	RAISE NOTICE 'job % queued', current_setting('demo.job');
	LOOP
		SELECT status, progress INTO j FROM publish.jobs WHERE id = current_setting('demo.job')::uuid;
		IF j.status || '/' || j.progress <> last THEN
			RAISE NOTICE 'poll: % %', rpad(j.status, 9), lpad(j.progress::text, 3) || '%';
			last := j.status || '/' || j.progress;
		END IF;
		EXIT WHEN j.status IN ('completed', 'failed', 'cancelled') OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.0002);
	END LOOP;
END
\$\$;
SQL
)

echo "== The job's log (each step records its progress and a line)"
psql_demo -c "SELECT to_char((e->>'timestamp')::timestamptz, 'HH24:MI:SS.MS') AS at,
                     e->>'level' AS level, lpad(e->>'progress', 3) || '%' AS progress,
                     e->>'message' AS message
                FROM publish.jobs j, jsonb_array_elements(j.logs) e
               WHERE j.id = '$JOB'"
psql_demo -c "SELECT status, progress, error, jsonb_pretty(result) AS result
                FROM publish.jobs WHERE id = '$JOB'"
STATUS=$(psql_demo -tAc "SELECT status FROM publish.jobs WHERE id = '$JOB'")

echo "== What is live"
psql_demo -c "SELECT project, version, env, published_at, release_url FROM publish.releases ORDER BY env"

RELEASE=$MAPS/$ENV_NAME/campus/release.json
if [ -f "$RELEASE" ]; then
	echo "== $RELEASE ($(stat -c %s "$RELEASE") bytes)"
	psql_demo -c "WITH r AS (SELECT pg_read_file('$RELEASE')::jsonb AS doc)
	              SELECT doc->'project'->>'slug' AS project, doc->>'version' AS version,
	                     doc->>'environment' AS environment, doc->>'published_at' AS published_at,
	                     jsonb_array_length(doc->'assets') AS assets,
	                     jsonb_array_length(doc->'overlays') AS overlays,
	                     doc->'tileset'->>'tile_count' AS tiles
	                FROM r"
	psql_demo -c "WITH r AS (SELECT pg_read_file('$RELEASE')::jsonb AS doc)
	              SELECT o->>'type' AS overlay_type, count(*) AS overlays
	                FROM r, jsonb_array_elements(doc->'overlays') o GROUP BY 1 ORDER BY 1"
	echo "files under $MAPS/$ENV_NAME/campus:"
	(cd "$MAPS/$ENV_NAME/campus" && find . -maxdepth 2 | sort | head -n 12)
fi

[ "$STATUS" = completed ]
echo "== Demo finished: job $JOB completed"
