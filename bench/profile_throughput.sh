#!/usr/bin/env bash
# bench/profile_throughput.sh: perf profile of a publish worker under
# bench/throughput.sh's load: where a small publish's CPU time goes.  Runs throughput.sh (BENCH_TP_N projects,
# 2,000 by default) and records the worker of its 1-worker, 1-client run
# for BENCH_PROF_SECONDS (8) with `perf record -e cpu-clock -g` (hardware
# counters are not available on this VM).  Not a test.
#
#   bash bench/profile_throughput.sh              # as root, about 1.5 minutes
#
# Writes bench/results/profile_throughput/ (git-ignored): perf.data,
# throughput.log, top.txt (perf report --no-children, top symbols) and
# inclusive.txt (share of the samples under publish's main functions).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
OUT=$BENCH_DIR/results/profile_throughput
PORT=${PUBLISH_BENCH_PORT:-54454}
SECS=${BENCH_PROF_SECONDS:-8}
export BENCH_TP_N=${BENCH_TP_N:-2000}
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
rm -rf "$OUT"
mkdir -p "$OUT"

bash "$BENCH_DIR/throughput.sh" >"$OUT/throughput.log" 2>&1 &
TP=$!
# the measured run of 1 worker, 1 client: pgbench with one client is running
pid=
for _ in $(seq 1 1500); do
	if grep -q "warm-up" "$OUT/throughput.log" && pgrep -f "pgbench -n -c 1 -j 1 -t" >/dev/null; then
		pid=$(psql -X -h 127.0.0.1 -p "$PORT" -U postgres -d tp -tAc \
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'publish worker' AND datname = 'tp'" | head -n 1)
		break
	fi
	kill -0 "$TP" 2>/dev/null || break
	sleep 0.2
done
[ -n "$pid" ] || { wait "$TP" || true; cat "$OUT/throughput.log" >&2; echo "no worker found" >&2; exit 1; }
echo "recording worker $pid for $SECS s"
perf record -e cpu-clock -g -p "$pid" -o "$OUT/perf.data" -- sleep "$SECS" >"$OUT/perf-record.log" 2>&1
wait "$TP"
# (head closes the pipe early: not an error)
{ perf report -i "$OUT/perf.data" --no-children --stdio --sort dso,symbol -g none 2>/dev/null \
	| grep -v '^#' | grep -v '^$' | head -n 40 >"$OUT/top.txt"; } || true
perf script -i "$OUT/perf.data" -F ip,sym 2>/dev/null | python3 -c '
import collections, sys
samples = sys.stdin.read().split("\n\n")
inc = collections.Counter()
for s in samples:
    seen = set()
    for l in s.strip().split("\n"):
        f = (l.strip().split(None, 1) + ["", ""])[1]
        if f and f not in seen:
            inc[f] += 1
            seen.add(f)
print("%d samples" % len(samples))
for k in ["run_next_job", "job_claim", "run_job", "publish_job_run", "load_release", "release_build",
          "storage_target_load", "storage_put", "storage_put_same", "storage_sync",
          "job_step", "insert_log", "job_mark_switched", "job_record_completed", "publish_record_release",
          "job_txn_begin", "job_txn_commit", "XLogFlush", "pg_fsync", "fsync_fname_ext", "link",
          "AfterTriggerEndQuery", "PreCommit_Notify", "plpgsql_exec_function", "malloc_trim", "MemoryContextReset"]:
    print("%6.2f%% %s" % (100.0 * inc[k] / len(samples), k))
' >"$OUT/inclusive.txt"
tail -n 9 "$OUT/throughput.log"
echo; cat "$OUT/inclusive.txt"
echo "(perf data and reports in $OUT)"
