#!/usr/bin/env bash
# The examples of the documentation, run against the test cluster: every
# fenced block that follows a line "<!-- doc-test -->" in README.md and
# docs/*.md, file by file (README.md first), in the order they appear.
#
#   ```sql   runs in psql, one session per file, so \gset variables of one
#            block are there for the next ones; any error fails the file
#   ```sh    runs with bash -euo pipefail from the checkout's root, in its
#            place among the SQL blocks; a non-zero exit fails the file
#
# The database (publish_docs) is what ./scripts/demo.sh --target s3 leaves:
# the extension, and environments dev, staging and production on the local
# S3 test server with its credentials.  In the blocks, before they run:
#   /var/lib/postgresql/maps     becomes a directory of the test, owned by
#                                the server's user (the README's file:// root)
#   127.0.0.1:54371, :54372, :54373   the default addresses of the WebDAV
#                                server, s3rver and the SigV4 endpoint,
#                                become the ones the test servers use.
# A file fails when an example fails, or when a job its examples queued did
# not complete.  Blocks that cannot run here (ALTER SYSTEM, AWS, a standby)
# are left unmarked.
#
# Usage: test/docs/run.sh WORKDIR     with PGHOST, PGPORT, PGUSER set (a
# superuser) and the test servers' settings as PUBLISH_SERVER_S3_ENDPOINT,
# PUBLISH_SERVER_S3RVER_URL, PUBLISH_SERVER_S3_BUCKET,
# PUBLISH_SERVER_S3_KEY_ID, PUBLISH_SERVER_S3_SECRET, PUBLISH_SERVER_DAV_URL
# (scripts/test.sh passes them).  Prints one line per file, "docs: FILE:
# N examples ran" or "docs: FILE failed ...", and ends with
# "docs: N files passed, N failed"; exits 1 when one failed.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:?work directory}
DB=publish_docs
mkdir -p "$WORK"
MAPS=$WORK/maps
rm -rf "$MAPS"
mkdir -p "$MAPS"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$MAPS"; fi

host_port() { echo "$1" | sed -E 's|^[a-z]+://||; s|/.*$||'; }
S3_ENDPOINT=${PUBLISH_SERVER_S3_ENDPOINT:?}
S3RVER_URL=${PUBLISH_SERVER_S3RVER_URL:?}
S3_BUCKET=${PUBLISH_SERVER_S3_BUCKET:?}
DAV_URL=${PUBLISH_SERVER_DAV_URL:?}
# sed expressions that turn the documented addresses into the test's
SUBST=(
	-e "s|/var/lib/postgresql/maps|$MAPS|g"
	-e "s|127\\.0\\.0\\.1:54371|$(host_port "$DAV_URL")|g"
	-e "s|127\\.0\\.0\\.1:54372|$(host_port "$S3RVER_URL")|g"
	-e "s|127\\.0\\.0\\.1:54373|$(host_port "$S3_ENDPOINT")|g"
)

psql_docs() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
roles_before=$(psql_docs -d postgres -tAc "SELECT string_agg(quote_literal(rolname), ',') FROM pg_roles")

PGOPTIONS="-c client_min_messages=warning" psql_docs -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql_docs -d "$DB" -v endpoint="$S3_ENDPOINT" -v public="$S3RVER_URL/$S3_BUCKET/demo" \
	-v bucket="$S3_BUCKET" -v key_id="${PUBLISH_SERVER_S3_KEY_ID:?}" \
	-v secret="${PUBLISH_SERVER_S3_SECRET:?}" >/dev/null <<'SQL'
CREATE EXTENSION publish;
SELECT publish.set_storage_target(env, 's3://' || :'bucket' || '/demo',
                                  jsonb_build_object('endpoint', :'endpoint', 'region', 'us-east-1',
                                                     'public_url', :'public')),
       publish.set_storage_credentials(env, :'key_id', :'secret')
  FROM unnest(ARRAY['dev', 'staging', 'production']) AS env;
SQL

# extract FILE OUT BLOCKDIR: OUT gets FILE's SQL examples at their own line
# numbers (every other line empty), so that psql's "psql:FILE:LINE: ERROR"
# points into the documentation; each sh example goes to BLOCKDIR/LINE.sh,
# run from OUT by a psql backtick command on its opening fence's line and
# checked on its closing fence's line.  Prints the number of examples.
extract() {
	awk -v blocks="$3" -v rel="$1" -v out="$2" '
		function emit(s) { print s > out }
		{ line = $0 }
		state == "sql" && line ~ /^```/ { state = ""; emit(""); next }
		state == "sql" { emit(line); next }
		state == "sh" && line ~ /^```/ {
			state = ""
			emit("SELECT pg_temp.doc_sh_ended(" sq(rel ":" shline) ", :doc_rc);")
			next
		}
		state == "sh" { print line > (blocks "/" shline ".sh"); emit(""); next }
		marked && line ~ /^```sql[[:space:]]*$/ { state = "sql"; marked = 0; n++; emit(""); next }
		marked && line ~ /^```(sh|bash)[[:space:]]*$/ {
			state = "sh"; marked = 0; n++; shline = NR
			print "cd \"$DOC_ROOT\"" > (blocks "/" shline ".sh")
			emit("\\set doc_rc `bash -euo pipefail " blocks "/" shline ".sh >" blocks "/" shline ".log 2>&1; echo $?`")
			next
		}
		marked && line !~ /^[[:space:]]*$/ {
			printf "%s:%d: <!-- doc-test --> is not followed by a sql or sh block\n", rel, NR > "/dev/stderr"
			bad = 1
		}
		{ marked = (line ~ /^<!-- doc-test -->[[:space:]]*$/) || (marked && line ~ /^[[:space:]]*$/); emit("") }
		function sq(s) { gsub(/'\''/, "'\'''\''", s); return "'\''" s "'\''" }
		END { if (state != "") { printf "%s: a doc-test block is not closed\n", rel > "/dev/stderr"; bad = 1 }
		      print n + 0; exit bad }
	' "$ROOT_DIR/$1"
}

files_ok=0
files_bad=0
examples=0
cd "$WORK"
for rel in README.md $(cd "$ROOT_DIR" && find docs -maxdepth 1 -name '*.md' | sort); do
	grep -q '^<!-- doc-test -->' "$ROOT_DIR/$rel" || continue
	out=$WORK/$rel
	blocks=$WORK/blocks/$rel
	rm -rf "$blocks"
	mkdir -p "$(dirname "$out")" "$blocks"
	rm -f "$out"
	if ! n=$(extract "$rel" "$out" "$blocks"); then
		echo "docs: $rel failed: its doc-test markers are malformed"
		files_bad=$((files_bad + 1))
		continue
	fi
	sed -i "${SUBST[@]}" "$out"
	for f in "$blocks"/*.sh; do [ -e "$f" ] && sed -i "${SUBST[@]}" "$f"; done
	examples=$((examples + n))
	since=$(psql_docs -d "$DB" -tAc "SELECT clock_timestamp()")
	set +e
	DOC_ROOT=$ROOT_DIR psql_docs -d "$DB" -c "
		CREATE FUNCTION pg_temp.doc_sh_ended(at text, rc int) RETURNS void LANGUAGE plpgsql AS \$\$
		BEGIN
			IF rc <> 0 THEN
				RAISE EXCEPTION 'the sh example at % exited with status %', at, rc;
			END IF;
		END
		\$\$" -f "$rel" >"$WORK/$rel.log" 2>&1
	rc=$?
	# every job the examples queued must complete: an example that shows a
	# failed job's row is no error to psql
	if [ "$rc" -eq 0 ]; then
		psql_docs -d "$DB" -tA -v since="$since" >"$WORK/$rel.jobs" 2>&1 <<'SQL'
SELECT format('%s job %s ended %s: %s', j.job_type, j.id, w.status, coalesce(w.error, ''))
  FROM publish.jobs j, LATERAL publish.wait_job(j.id, '1 min') w
 WHERE j.created_at >= :'since' AND w.status <> 'completed'
 ORDER BY j.created_at;
SQL
		if [ -s "$WORK/$rel.jobs" ]; then rc=1; fi
	fi
	set -e
	if [ "$rc" -eq 0 ]; then
		echo "docs: $rel: $n examples ran"
		files_ok=$((files_ok + 1))
	else
		echo "docs: $rel failed:"
		{ grep -E '^psql:|ERROR|DETAIL|HINT' "$WORK/$rel.log" || true; } | tail -n 8 | sed 's/^/  /'
		if [ -s "$WORK/$rel.jobs" ]; then sed 's/^/  /' "$WORK/$rel.jobs"; fi
		if [ "$rc" -ne 0 ] && [ ! -s "$WORK/$rel.jobs" ]; then
			for log in "$blocks"/*.log; do
				if [ -s "$log" ]; then
					echo "  output of the sh example at line $(basename "$log" .log):"
					tail -n 5 "$log" | sed 's/^/    /'
				fi
			done
		fi
		files_bad=$((files_bad + 1))
	fi
done

# the roles the examples made belong to the cluster: drop them with the database
psql_docs -d postgres -c "DROP DATABASE $DB" >/dev/null
psql_docs -d postgres -tA >/dev/null <<SQL
SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE rolname NOT IN ($roles_before) \gexec
SQL

echo "docs: $files_ok files passed, $files_bad failed ($examples examples)"
[ "$files_bad" -eq 0 ]
