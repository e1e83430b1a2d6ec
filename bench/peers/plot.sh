#!/usr/bin/env bash
# bench/peers/plot.sh: the plots of run.sh from bench/peers/results/
# (run.sh calls it; run it alone to redraw).
#   docs/img/pickup-cdf.png          distribution (CDF, log x) of every system
#   docs/img/pickup-percentiles.png  median / p90 / p99 of the event-driven ones
set -euo pipefail
PEERS_DIR=$(cd "$(dirname "$0")" && pwd)
OUT=$PEERS_DIR/results
IMG=$(cd "$PEERS_DIR/../.." && pwd)/docs/img
mkdir -p "$IMG"

series=(publish graphile-worker pg-boss-notify)
[ -s "$OUT/pg-boss-poll.dat" ] && series+=(pg-boss-poll)
for s in "${series[@]}"; do
	sort -g "$OUT/$s.dat" | awk -v n="$(wc -l <"$OUT/$s.dat")" '{print $1, NR / n}' >"$OUT/$s.cdf"
done
{
	echo "set terminal pngcairo size 900,540 font ',10'"
	echo "set output '$IMG/pickup-cdf.png'"
	echo "set title 'Pickup latency: commit of the enqueuing transaction -> job started (one job at a time, idle worker)'"
	echo "set xlabel 'latency (ms, log scale)'; set ylabel 'fraction of jobs'"
	echo "set logscale x; set grid; set key bottom right; set yrange [0:1]; set xrange [0.2:*]"
	echo "set arrow from 0.5, graph 0 to 0.5, graph 1 nohead dt 2 lc rgb 'gray'"
	echo "set label 'target median 0.5 ms' at 0.52, graph 0.55 textcolor rgb 'gray40'"
	echo "set arrow from 2, graph 0 to 2, graph 1 nohead dt 3 lc rgb 'gray'"
	echo "set label 'target p99 2 ms' at 2.1, graph 0.1 textcolor rgb 'gray40'"
	printf "plot "
	sep=""
	for s in "${series[@]}"; do
		printf "%s'%s' using 1:2 with lines lw 2 title '%s (n = %s)'" "$sep" "$OUT/$s.cdf" "$s" "$(wc -l <"$OUT/$s.dat")"
		sep=", "
	done
	echo
} | gnuplot

node -e '
const s = require(process.argv[1]);
for (const k of ["publish", "graphile-worker", "pg-boss-notify"])
  console.log(k, s[k].median.toFixed(4), s[k].p90.toFixed(4), s[k].p99.toFixed(4));
' "$OUT/summary.json" >"$OUT/percentiles.dat"
gnuplot <<GP
set terminal pngcairo size 900,480 font ',10'
set output '$IMG/pickup-percentiles.png'
set title 'Pickup latency percentiles (ms), commit -> started; dashed: targets (median 0.5, p99 2)'
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
set ylabel 'ms'; set grid y; set key top left; set yrange [0:*]
plot '$OUT/percentiles.dat' using 2:xtic(1) title 'median', '' using 3 title 'p90', '' using 4 title 'p99', \
     0.5 with lines dt 2 lc rgb 'gray40' notitle, 2 with lines dt 3 lc rgb 'gray40' notitle
GP
echo "plots: $IMG/pickup-cdf.png $IMG/pickup-percentiles.png"
