#!/usr/bin/env python3
"""rss_sampler.py PID STOPFILE [INTERVAL_MS]

Samples /proc/PID/status every INTERVAL_MS (default 1) until STOPFILE exists
or the process ends (STOPFILE.ready is created after the first sample), then prints: samples, first RssAnon kB, peak RssAnon kB,
last RssAnon kB, peak VmRSS kB.  RssAnon is the process's private memory
(malloc'd and palloc'd), without the shared buffers it touches.
"""
import os
import sys
import time

pid, stop = sys.argv[1], sys.argv[2]
interval = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.001


def read():
    anon = rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return anon, rss


first = last = peak = peak_rss = None
n = 0
while True:
    try:
        anon, rss = read()
    except (FileNotFoundError, ProcessLookupError):
        break
    if anon is None or rss is None:  # a zombie has no memory lines
        break
    n += 1
    if first is None:
        first = anon
        open(stop + ".ready", "w").close()  # the caller waits for the first sample
    last = anon
    peak = anon if peak is None else max(peak, anon)
    peak_rss = rss if peak_rss is None else max(peak_rss, rss)
    if os.path.exists(stop):
        break
    time.sleep(interval)
print(n, first or 0, peak or 0, last or 0, peak_rss or 0)
