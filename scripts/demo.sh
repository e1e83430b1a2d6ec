#!/usr/bin/env bash
# The demo: publishes version 3 of the sample project "campus", shows the job
# moving from queued to completed, and leaves everything running so that the
# map can be looked at in a browser and the database explored with psql.
#
#   ./scripts/demo.sh                    to a local directory (file://)
#   ./scripts/demo.sh --target s3        to the local S3 test server (s3rver
#                                        behind a SigV4 check)
#   ./scripts/demo.sh --target webdav    to the local WebDAV test server (nginx)
#   ./scripts/demo.sh --env staging      another environment (default production)
#   ./scripts/demo.sh --stop             stops what the demo left running
#
# It installs what is missing (scripts/install-deps.sh demo, and servers for
# s3 and webdav), builds and installs publish, starts a private PostgreSQL 15
# cluster (publish preloaded) under $PUBLISH_DEMO_DIR (default
# /tmp/publish-demo) on port $PUBLISH_DEMO_PORT (default 54320), loads
# demo/sample_project.sql into the database "demo", points the environments
# dev, staging and production at the target, puts the sample's tiles there
# (make_tiles.sh writes them; on S3 and WebDAV they are then uploaded),
# publishes, and prints progress, logs and the result.  The map viewer
# (demo/viewer) is served by python3 -m http.server on 127.0.0.1, port
# $PUBLISH_DEMO_VIEWER_PORT (default: the cluster's port + 1).  Re-running
# stops what runs, then starts again from the same directory.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT_DIR/scripts/lib.sh"

DEMO_DIR=${PUBLISH_DEMO_DIR:-/tmp/publish-demo}
PORT=${PUBLISH_DEMO_PORT:-54320}
VIEWER_PORT=${PUBLISH_DEMO_VIEWER_PORT:-$((PORT + 1))}
TARGET="file"
ENV_NAME=production
STOP=false

usage() {
	echo "usage: $0 [--target file|s3|webdav] [--env NAME] | --stop" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
		--target) TARGET=${2:-}; shift 2 || usage ;;
		--target=*) TARGET=${1#--target=}; shift ;;
		--env) ENV_NAME=${2:-}; shift 2 || usage ;;
		--env=*) ENV_NAME=${1#--env=}; shift ;;
		--stop) STOP=true; shift ;;
		-h|--help) usage ;;
		-*) usage ;;
		*) ENV_NAME=$1; shift ;;		# the environment, as before --env
	esac
done
case $TARGET in file|s3|webdav) ;; *) usage ;; esac

# The command that stops the demo, as the user should type it.
stop_cmd="./scripts/demo.sh --stop"
if [ -n "${PUBLISH_DEMO_DIR:-}" ]; then stop_cmd="PUBLISH_DEMO_DIR=$DEMO_DIR $stop_cmd"; fi

stop_viewer() {
	local pid
	[ -f "$DEMO_DIR/viewer.pid" ] || return 0
	pid=$(cat "$DEMO_DIR/viewer.pid")
	rm -f "$DEMO_DIR/viewer.pid"
	if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
}

stop_all() {
	stop_viewer
	if [ -d "$DEMO_DIR/servers" ]; then
		bash "$ROOT_DIR/scripts/storage-servers.sh" stop "$DEMO_DIR/servers"
	fi
	cluster_stop "$DEMO_DIR/pg"
}

if $STOP; then
	stop_all
	echo "demo stopped (its files stay in $DEMO_DIR)"
	exit 0
fi

STARTED=$(date +%s)
if [ "$TARGET" = file ]; then
	build_and_install demo
else
	build_and_install demo servers
fi

mkdir -p "$DEMO_DIR"
chmod 755 "$DEMO_DIR"
stop_all			# what a previous run left running
on_exit() {
	local rc=$?
	[ "$rc" -eq 0 ] || echo "demo: failed; what it started still runs: $stop_cmd stops it" >&2
}
trap on_exit EXIT
cluster_start "$DEMO_DIR/pg" "$PORT"

psql_demo() { psql -X -q -v ON_ERROR_STOP=1 -d demo "$@"; }

# A fresh database each run: the sample is reloaded anyway, and the
# extension's objects always match the library just installed.
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS demo" -c "CREATE DATABASE demo"
psql_demo -c "CREATE EXTENSION publish"

echo "== Loading the sample project"
psql_demo -f "$ROOT_DIR/demo/sample_project.sql"

# The sample's tiles: written by make_tiles.sh under the root of a file://
# target, or into a local directory and uploaded from there.
TILES=$DEMO_DIR/tiles
MAPS=$DEMO_DIR/maps
rm -rf "$TILES"
if [ "$TARGET" = file ]; then TILES=$MAPS; fi
mkdir -p "$TILES"
bash "$ROOT_DIR/demo/make_tiles.sh" "$TILES" >/dev/null
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$TILES"; fi

case $TARGET in
	file)
		# public_url: the address readers use, here the viewer's server
		URL=file://$MAPS
		OPTIONS="{\"public_url\": \"http://127.0.0.1:$VIEWER_PORT/maps\"}"
		;;
	s3|webdav)
		echo "== Starting the local storage servers (scripts/storage-servers.sh)"
		rm -rf "$DEMO_DIR/servers"		# an empty bucket and WebDAV tree each run
		PUBLISH_SERVERS_CORS=1 bash "$ROOT_DIR/scripts/storage-servers.sh" start "$DEMO_DIR/servers" \
			>"$DEMO_DIR/servers.env"
		server() { sed -n "s/^$1=//p" "$DEMO_DIR/servers.env"; }
		if [ "$TARGET" = s3 ]; then
			# publish signs its requests to the SigV4 proxy; readers fetch
			# objects anonymously from s3rver itself, as from a public bucket
			URL=s3://$(server s3_bucket)/demo
			OPTIONS="{\"endpoint\": \"$(server s3_endpoint)\", \"region\": \"us-east-1\",
			          \"public_url\": \"$(server s3rver_url)/$(server s3_bucket)/demo\"}"
		else
			URL=$(server dav_url)/open/demo
			OPTIONS='{}'
		fi
		;;
esac
for env in dev staging production; do
	psql_demo -c "SELECT publish.set_storage_target('$env', '$URL', '$OPTIONS')" >/dev/null
	if [ "$TARGET" = s3 ]; then
		psql_demo -c "SELECT publish.set_storage_credentials('$env', '$(server s3_key_id)', '$(server s3_secret)')" \
			>/dev/null
	fi
done
psql_demo -c "SELECT env, url, options FROM publish.storage_targets ORDER BY env"

if [ "$TARGET" != file ]; then
	echo "== Uploading the sample's tiles to $URL"
	# Tiles are files the version points at, like assets: they must be on the
	# target before a publish (or be built there by publish.build_tiles from
	# a base_map asset).  publish._storage_put writes as the worker would.
	psql_demo -v src="$TILES" <<'SQL'
SELECT count(*) AS tiles_uploaded
  FROM (SELECT publish._storage_put('production', path,
                                    pg_read_binary_file(:'src' || '/' || path), 'image/png')
          FROM (SELECT format('%s/%s/%s/%s.%s', s.source_path, t.z, t.x, t.y, s.format) AS path
                  FROM publish.projects p
                  JOIN publish.project_versions v ON v.project_id = p.id
                  JOIN publish.tilesets s ON s.version_id = v.id
                  JOIN publish.tiles t ON t.tileset_id = s.id
                 WHERE p.slug = 'campus' AND v.version_number = 3) AS tiles) AS uploaded;
SQL
fi

echo "== Publishing campus version 3 to $ENV_NAME"
echo "SELECT id, status, progress FROM publish.publish_version('campus', 3, '$ENV_NAME');"
# Publish, then poll the jobs view the way a client would, printing each
# change, in one session so that no step goes by unseen.  A PL/pgSQL loop
# sees every commit of the worker (each query takes a new snapshot).
POLL=$(psql_demo -tA <<SQL 2>&1 >/dev/null | sed 's/^NOTICE: *//'
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
echo "$POLL"
JOB=$(echo "$POLL" | sed -n 's/^job \([0-9a-f-]*\) .*/\1/p')

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
RELEASE_URL=$(psql_demo -tAc "SELECT release_url FROM publish.releases WHERE project = 'campus' AND env = '$ENV_NAME'")

# release.json as the server has it (read back from the target when remote)
RELEASE=$MAPS/$ENV_NAME/campus/release.json
if [ "$TARGET" != file ] && [ -n "$RELEASE_URL" ]; then
	RELEASE=$DEMO_DIR/release-$ENV_NAME.json
	curl -fsS -o "$RELEASE" "$RELEASE_URL" || rm -f "$RELEASE"
	[ ! -f "$RELEASE" ] || chmod 644 "$RELEASE"
fi
if [ -f "$RELEASE" ]; then
	echo "== $RELEASE_URL ($(stat -c %s "$RELEASE") bytes)"
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
fi
if [ "$TARGET" = file ] && [ -d "$MAPS/$ENV_NAME/campus" ]; then
	echo "files under $MAPS/$ENV_NAME/campus:"
	(cd "$MAPS/$ENV_NAME/campus" && find . -maxdepth 2 | sort | head -n 12)
fi

# The viewer: demo/viewer and, for a file:// target, the maps directory,
# served on 127.0.0.1 only.
WWW=$DEMO_DIR/www
rm -rf "$WWW"
mkdir -p "$WWW"
ln -s "$ROOT_DIR/demo/viewer" "$WWW/viewer"
if [ "$TARGET" = file ]; then ln -s "$MAPS" "$WWW/maps"; fi
if (exec 3<>"/dev/tcp/127.0.0.1/$VIEWER_PORT") 2>/dev/null; then
	echo "demo: port $VIEWER_PORT is taken; set PUBLISH_DEMO_VIEWER_PORT to a free one" >&2
	exit 1
fi
nohup setsid python3 -m http.server "$VIEWER_PORT" --bind 127.0.0.1 --directory "$WWW" \
	>"$DEMO_DIR/viewer.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/viewer.pid"
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$VIEWER_PORT") 2>/dev/null && break
	sleep 0.1
done

if [ "$STATUS" = completed ]; then
	echo "== Demo finished in $(($(date +%s) - STARTED)) s: job $JOB completed; still running:"
	echo "map:     http://127.0.0.1:$VIEWER_PORT/viewer/?release=$RELEASE_URL"
else
	echo "== Demo failed: job $JOB is $STATUS (its error is above); still running:"
fi
echo "psql:    psql -h 127.0.0.1 -p $PORT -U postgres demo"
echo "stop:    $stop_cmd"
[ "$STATUS" = completed ]
