#!/usr/bin/env bash
# bench/trace_wakeup.sh: where the time between the commit of a publish and
# the worker's claim goes, from system calls.  Indicative only: strace slows
# every traced system call down.  Not a test.
#
# On a private cluster (port 54455, track_commit_timestamp = on, one worker)
# it publishes BENCH_TRACE_N (20) times, one at a time, from one session
# while strace -ttt follows that session's backend and the worker, then
# lines up, for each job:
#   commit_ts   pg_xact_commit_timestamp of the enqueuing transaction
#   flush       the backend's WAL fdatasync after commit_ts (start, end: -T)
#   kill        the backend's kill() of the worker (SetLatch) after that
#   wake        the worker's return from epoll_wait after that
#   started_at  the claim's clock_timestamp() (job_queue.started_at)
# and prints the medians of each step.  Writes bench/results/trace_wakeup.md
# and the raw trace bench/results/trace_wakeup.strace.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$BENCH_DIR/../scripts/lib.sh"
# shellcheck source=bench/lib/median.sh
source "$BENCH_DIR/lib/median.sh"
PORT=${PUBLISH_BENCH_PORT:-54455}
N=${BENCH_TRACE_N:-20}
OUT=$BENCH_DIR/results
mkdir -p "$OUT"
command -v strace >/dev/null || apt-get install -y -qq strace >/dev/null

build_and_install
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/publish-trace.XXXXXX")
chmod 755 "$WORK"
STRACE_PID=
cleanup() { [ -z "$STRACE_PID" ] || kill "$STRACE_PID" 2>/dev/null || true; cluster_stop "$WORK/pg"; rm -rf "$WORK"; }
trap cleanup EXIT
cluster_start "$WORK/pg" "$PORT" "track_commit_timestamp = on" "publish.workers_per_database = 1" "log_min_messages = warning"
mkdir -p "$WORK/maps"; chmod 777 "$WORK/maps"
psql -X -q -d postgres -c "CREATE DATABASE tr"
psql -X -q -v ON_ERROR_STOP=1 -d tr <<SQL
CREATE EXTENSION publish;
CREATE TABLE enq (seq int PRIMARY KEY, job_id uuid, x xid8);
SELECT publish.set_storage_target('tr', 'file://$WORK/maps') \g /dev/null
INSERT INTO publish.projects (slug, name) VALUES ('tr', 'Trace');
INSERT INTO publish.project_versions (project_id, version_number, status) SELECT id, 1, 'ready' FROM publish.projects;
INSERT INTO publish.overlays (version_id, key, name, overlay_type, geometry, properties)
SELECT v.id, 'poi-' || i, 'Point ' || i, 'marker',
       jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array(13.4 + i / 1000.0, 52.5)), '{}'
  FROM publish.project_versions v, generate_series(1, 20) i;
SELECT publish.publish_version('tr', 1, 'tr') \g /dev/null
SQL
sleep 1
WORKER=$(psql -X -tA -d tr -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'tr'")

# the enqueuing session: writes its pid, waits for strace, then publishes
{
	echo "\\o $WORK/backend.pid"
	echo "SELECT pg_backend_pid();"
	echo "\\o"
	echo "SELECT pg_sleep(2);"
	for i in $(seq 1 "$N"); do
		echo "INSERT INTO enq SELECT $i, (publish.publish_version('tr', 1, 'tr')).id, pg_current_xact_id();"
		echo "SELECT pg_sleep(0.2);"
	done
} >"$WORK/session.sql"
psql -X -q -tA -d tr -f "$WORK/session.sql" >/dev/null &
PSQL=$!
for _ in $(seq 1 100); do [ -s "$WORK/backend.pid" ] && break; sleep 0.02; done
BACKEND=$(tr -d ' \n' <"$WORK/backend.pid")
TRACE_SET=fdatasync,fsync,kill,epoll_wait
[ -z "${BENCH_TRACE_ALL:-}" ] || TRACE_SET=all	# BENCH_TRACE_ALL=1: every system call, for reading
strace -q -ttt -T -e trace="$TRACE_SET" -p "$BACKEND" -p "$WORKER" -o "$WORK/trace" &
STRACE_PID=$!
wait "$PSQL"
sleep 0.3
kill "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true; STRACE_PID=
cp "$WORK/trace" "$OUT/trace_wakeup.strace"

psql -X -tA -F' ' -d tr -c "SELECT extract(epoch FROM pg_xact_commit_timestamp(xid(e.x))), extract(epoch FROM q.started_at)
                             FROM enq e JOIN publish.job_queue q ON q.id = e.job_id ORDER BY e.seq" >"$WORK/db"
# trace lines: "PID START syscall(...) = R <DURATION>"; a call interrupted by
# another process's line is split into "... <unfinished ...>" (with the start)
# and "<... NAME resumed> ... <DURATION>".
awk -v B="$BACKEND" -v W="$WORKER" '
	function dur(   m) { return match($0, /<[0-9.]+>$/) ? substr($0, RSTART + 1, RLENGTH - 2) + 0 : 0 }
	FNR == NR { c[++n] = $1; s[n] = $2; next }
	$1 == B && $3 ~ /^fdatasync\(/ { fs[++nf] = $2; fe[nf] = ($0 ~ /unfinished/) ? -1 : $2 + dur() }
	$1 == B && $0 ~ /<\.\.\. fdatasync resumed>/ { fe[nf] = $2 }
	$1 == B && $3 ~ /^kill\(/ && $0 ~ W { kl[++nk] = $2 }
	# a resumed line is printed when the call returns, a whole line at its start
	$1 == W && $0 ~ /epoll_wait/ && $0 !~ /unfinished/ && $0 ~ /= 1 </ { wk[++nw] = ($0 ~ /resumed>/) ? $2 : $2 + dur() }
	function after(arr, cnt, t,   i) { for (i = 1; i <= cnt; i++) if (arr[i] >= t) return i; return 0 }
	END {
		for (i = 1; i <= n; i++) {
			f = after(fs, nf, c[i]); if (!f) continue
			k = after(kl, nk, fe[f]); if (!k) continue
			w = after(wk, nw, kl[k]); if (!w) continue
			printf "%.3f %.3f %.3f %.3f %.3f %.3f\n", (fs[f] - c[i]) * 1000, (fe[f] - fs[f]) * 1000, (kl[k] - fe[f]) * 1000,
			       (wk[w] - kl[k]) * 1000, (s[i] - wk[w]) * 1000, (s[i] - c[i]) * 1000
		}
	}' "$WORK/db" "$WORK/trace" >"$WORK/steps"
{
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(wc -l <"$WORK/steps") of $N publishes lined up (under strace: indicative)."
	echo
	echo "| step | median ms |"
	echo "|---|---:|"
	echo "| commit timestamp → the backend starts its WAL fdatasync | $(cut -d' ' -f1 "$WORK/steps" | median) |"
	echo "| the WAL fdatasync (commit flush) | $(cut -d' ' -f2 "$WORK/steps" | median) |"
	echo "| end of the flush → backend's kill() of the worker (SetLatch, from the commit callback) | $(cut -d' ' -f3 "$WORK/steps" | median) |"
	echo "| kill() → the worker's epoll_wait returns | $(cut -d' ' -f4 "$WORK/steps" | median) |"
	echo "| worker awake → claim's clock_timestamp() (started_at) | $(cut -d' ' -f5 "$WORK/steps" | median) |"
	echo "| total, commit timestamp → started_at | $(cut -d' ' -f6 "$WORK/steps" | median) |"
	echo
	echo "strace stops the traced processes at every system call (tens of µs each), so every step is"
	echo "longer than without it; compare with bench/peers/run.sh's untraced figures."
} >"$OUT/trace_wakeup.md"
cat "$OUT/trace_wakeup.md"
