#!/usr/bin/env bash
# bench/peers/plot.sh: the plots of run.sh from its data in
# docs/results/peers/ (run.sh calls it; run it alone to redraw).
#   docs/img/pickup-cdf.png          distribution (CDF, log x) of every system,
#                                    from the commit timestamp
#   docs/img/pickup-cdf-returned.png the same from the return of the client's COMMIT
#   docs/img/pickup-cdf-async.png    the same from the commit timestamp, jobs
#                                    enqueued with synchronous_commit = off
#   docs/img/pickup-percentiles.png  median / p99 of the event-driven ones, both measures
set -euo pipefail
PEERS_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$PEERS_DIR/../.." && pwd)
DATA=$ROOT/docs/results/peers
IMG=$ROOT/docs/img
mkdir -p "$IMG"
command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/publish-peers-plot.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
for f in "$DATA"/*.dat; do cp "$f" "$OUT/"; done

series=(publish graphile-worker pg-boss-notify)
[ -s "$OUT/pg-boss-poll.dat" ] && series+=(pg-boss-poll)
async_series=()
for s in publish graphile-worker pg-boss-notify; do
	[ -s "$OUT/$s-async.dat" ] && async_series+=("$s-async")
done
# cdf SERIES: the CDF of $OUT/SERIES.dat
cdf() { sort -g "$OUT/$1.dat" | awk -v n="$(wc -l <"$OUT/$1.dat")" '{print $1, NR / n}' >"$OUT/$1.cdf"; }
for s in "${series[@]}"; do cdf "$s"; cdf "$s-returned"; done
for s in "${async_series[@]}"; do cdf "$s"; done
# cdf_plot SUFFIX PNG TITLE XAXIS MARKS [SYSTEM...]: one CDF per system
# (default: $series) of $OUT/<system>SUFFIX.dat; MARKS: gnuplot lines that
# draw the targets
cdf_plot() {
	local m=$1 png=$2 title=$3 xaxis=$4 marks=$5 sep="" s
	shift 5
	local systems=("${series[@]}")
	[ $# -gt 0 ] && systems=("$@")
	{
		echo "set terminal pngcairo size 900,540 font ',10'"
		echo "set output '$png'"
		echo "set title '$title' noenhanced"
		echo "set ylabel 'fraction of jobs'; set grid; set key bottom right; set yrange [0:1]"
		echo "$xaxis"
		echo "$marks"
		printf "plot "
		for s in "${systems[@]}"; do
			printf "%s'%s' using 1:2 with lines lw 2 title '%s (n = %s)'" "$sep" "$OUT/$s$m.cdf" "$s" "$(wc -l <"$OUT/$s$m.dat")"
			sep=", "
		done
		echo
	} | gnuplot
}
cdf_plot "" "$IMG/pickup-cdf.png" \
	'Pickup latency from the commit timestamp (before the WAL flush) -> job started (one job at a time, idle worker)' \
	"set logscale x; set xrange [0.2:*]; set xlabel 'latency (ms, log scale)'" \
	"set arrow from 5, graph 0 to 5, graph 1 nohead dt 3 lc rgb 'gray'; set label 'target p99 5 ms' at 5.2, graph 0.1 textcolor rgb 'gray40'"
# linear: the job may start before the client has read its COMMIT's reply (< 0)
cdf_plot -returned "$IMG/pickup-cdf-returned.png" \
	'Pickup latency from the return of the client COMMIT -> job started (one job at a time, idle worker)' \
	"set xrange [-2:12]; set xtics 1; set xlabel 'latency (ms; < 0: started before the client read the reply)'" \
	"set arrow from 0.2, graph 0 to 0.2, graph 1 nohead dt 2 lc rgb 'gray'; set label 'target median 0.2 ms' at 0.3, graph 0.45 textcolor rgb 'gray40'"
if [ ${#async_series[@]} -gt 0 ]; then
	cdf_plot "" "$IMG/pickup-cdf-async.png" \
		'Pickup latency from the commit timestamp -> job started, enqueued with synchronous_commit = off (no flush inside)' \
		"set logscale x; set xrange [0.05:*]; set xlabel 'latency (ms, log scale)'" "" "${async_series[@]}"
fi

# percentiles.dat: system, median and p99 from the commit timestamp, from
# COMMIT returned, and from the commit timestamp enqueued asynchronously (0
# when not measured)
node -e '
const s = require(process.argv[1]);
const f = x => x.toFixed(4);
for (const k of ["publish", "graphile-worker", "pg-boss-notify"]) {
  const a = s[k + "-async"];
  console.log(k, f(s[k].median), f(s[k].p99), f(s[k].returned.median), f(s[k].returned.p99), a ? f(a.median) : 0, a ? f(a.p99) : 0);
}' "$DATA/summary.json" >"$OUT/percentiles.dat"
gnuplot <<GP
set terminal pngcairo size 900,480 font ',10'
set output '$IMG/pickup-percentiles.png'
set title 'Pickup latency percentiles (ms), three measures; dashed: the targets (median 0.2 ms from COMMIT returned, p99 5 ms)' noenhanced
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
set ylabel 'ms'; set grid y; set key top left; set yrange [0:*]
plot '$OUT/percentiles.dat' using 2:xtic(1) title 'median, from commit timestamp', '' using 3 title 'p99, from commit timestamp', \
     '' using 4 title 'median, from COMMIT returned', '' using 5 title 'p99, from COMMIT returned', \
     '' using 6 title 'median, async enqueue', '' using 7 title 'p99, async enqueue', \
     0.2 with lines dt 2 lc rgb 'gray40' notitle, 5 with lines dt 3 lc rgb 'gray40' notitle
GP
echo "plots: $IMG/pickup-cdf.png $IMG/pickup-cdf-returned.png $IMG/pickup-cdf-async.png $IMG/pickup-percentiles.png"
