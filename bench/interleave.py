#!/usr/bin/python3
"""bench/interleave.py: time commands interleaved (A B C A B C ...), so
that a slow spell of a shared or virtual machine falls on every command
alike; print each median and its ratio to the first command.

  interleave.py --runs N --prepare CMD --title T NAME=CMD [NAME=CMD ...]

The first round is a warm-up and is dropped.  Commands run through
/bin/sh; --prepare runs before each (untimed).  Exit status of every
timed command must be 0.
"""
import argparse
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=7)
ap.add_argument("--prepare", default="")
ap.add_argument("--title", default="")
ap.add_argument("--json", default="")
ap.add_argument("cmds", nargs="+")
a = ap.parse_args()
cmds = [c.split("=", 1) for c in a.cmds]
times = {n: [] for n, _ in cmds}
for rnd in range(a.runs + 1):
    for name, cmd in cmds:
        if a.prepare:
            subprocess.run(a.prepare, shell=True, check=True)
        t0 = time.monotonic()
        p = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit("%s failed (%d): %s" % (name, p.returncode,
                                             p.stderr.decode()[-500:]))
        if rnd:
            times[name].append(dt)
first = cmds[0][0]
med = {n: statistics.median(v) for n, v in times.items()}
if a.title:
    print(a.title)
for name, _ in cmds:
    v = sorted(times[name])
    print("  %-22s median %6.2f s  (min %5.2f, max %5.2f)  %s/%s = %.2fx" % (
        name, med[name], v[0], v[-1], first, name, med[first] / med[name]))
if a.json:
    import json
    json.dump({"median": med, "times": times}, open(a.json, "w"))
