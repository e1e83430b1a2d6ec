#!/usr/bin/env bash
# bench/lib/plot_release_size.sh: the plots of bench/release_size.sh from
# docs/results/release_size.dat (release_size.sh calls it; run it alone to
# redraw): docs/img/release-time.png and docs/img/release-memory.png.
# Columns: overlays, release.json MB, backend ms, worker build ms, worker
# job ms, worker CPU ms, worker peak MB, worker MB kept after the last job.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(cd "$BENCH_DIR/.." && pwd)/docs/results
command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
IMG=$(cd "$BENCH_DIR/.." && pwd)/docs/img
mkdir -p "$IMG"
gnuplot <<GP
set terminal pngcairo size 900,520 font ',10' noenhanced
set output '$IMG/release-time.png'
set title 'release.json: time against the number of overlays'
set xlabel 'overlays'; set ylabel 'ms'
set logscale xy; set grid; set key top left
set format x '%.0s%c'; set xrange [500:2000000]
plot '$OUT/release_size.dat' using 1:5 with linespoints lw 2 pt 7 title 'worker: whole publish job (file:// target)', \
     '' using 1:4 with linespoints lw 2 pt 5 title 'worker: build (read, check, write release.json)', \
     '' using 1:6 with linespoints lw 2 pt 9 title 'worker: CPU time of the job', \
     '' using 1:3 with linespoints lw 2 pt 11 title 'backend: publish._release_document'
set output '$IMG/release-memory.png'
set title 'release.json: the worker''s memory against the number of overlays'
set ylabel 'MB'
plot '$OUT/release_size.dat' using 1:2 with linespoints lw 2 pt 1 lc rgb 'black' title 'release.json size', \
     '' using 1:(3 * \$2) with lines dt 2 lc rgb 'gray' title 'target: 3 × release.json', \
     '' using 1:7 with linespoints lw 2 pt 5 title 'worker: peak during a job (VmHWM − RSS before it)', \
     '' using 1:(\$8 > 0.1 ? \$8 : 0.1) with linespoints lw 2 pt 9 title 'worker: private memory kept after the job (RssAnon − idle RssAnon; floor 0.1)'
GP
