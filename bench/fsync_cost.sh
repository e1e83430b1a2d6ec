#!/usr/bin/env bash
# bench/fsync_cost.sh: what the file:// target's syncs cost on this disk:
# a new file's fsync, an unchanged directory's, and one publish's sequence
# of calls (bench/lib/fsync_cost.c says what each sequence does), the floor
# under a small publish's time on file://.  Reports milliseconds per iteration (noisy on a shared machine)
# and, counted with perf's block tracepoints (no hardware counters needed),
# the block I/O each iteration submits and how many of those carry a cache
# flush: the figures that do not depend on the machine's load.  Not a test.
#
#   bash bench/fsync_cost.sh                 # as root, a few seconds
#   BENCH_FS_DIR=/srv/maps BENCH_FS_N=500 bash bench/fsync_cost.sh
#
# Writes bench/results/fsync_cost.md (git-ignored).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
N=${BENCH_FS_N:-200}
BASE=${BENCH_FS_DIR:-${TMPDIR:-/tmp}}
OUT=$BENCH_DIR/results
mkdir -p "$OUT"
WORK=$(mktemp -d "$BASE/publish-fsync.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -o "$WORK/fsync_cost" "$BENCH_DIR/lib/fsync_cost.c"
have_perf=false
if command -v perf >/dev/null &&
	perf record -q -e block:block_bio_queue -o "$WORK/probe.data" -- true >/dev/null 2>&1; then have_perf=true; fi

row() {
	local mode=$1 repeat=${2:-} dir="$WORK/d" ms bios="" flushes=""
	rm -rf "$dir"; mkdir "$dir"
	if $have_perf; then
		ms=$(perf record -q -e block:block_bio_queue -o "$WORK/p.data" -- "$WORK/fsync_cost" "$dir" "$N" "$mode" $repeat 2>/dev/null)
		read -r bios flushes < <(perf script -i "$WORK/p.data" -F event,trace 2>/dev/null |
			awk -v n="$N" '{ b++; if ($3 ~ /F/) f++ } END { printf "%.2f %.2f\n", b / n, f / n }')
	else
		ms=$("$WORK/fsync_cost" "$dir" "$N" "$mode" $repeat)
	fi
	echo "| $mode${repeat:+ (same project again)} | $ms | ${bios:-n/a} | ${flushes:-n/a} |"
}

{
	echo "$N iterations each in $BASE ($(findmnt -no FSTYPE,OPTIONS -T "$BASE" 2>/dev/null || echo '?')), load average $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| sequence | ms per iteration | block I/Os per iteration | of which cache flushes |"
	echo "|---|---:|---:|---:|"
	row file
	row dir
	row publish
	row publish repeat
} | tee "$OUT/fsync_cost.md"
