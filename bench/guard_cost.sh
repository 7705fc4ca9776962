#!/usr/bin/env bash
# bench/guard_cost.sh [BUILD]: what the whole-destination emptiness check
# costs (promise 1: data anywhere on an existing destination is found
# before it is overwritten, not only in sampled regions).
#
# On a 1 GiB loop device over a sparse file (all zeros; its pages come
# from the page cache after the first read, as on a warm LV):
#   check alone   copy --dry-run of an all-hole source: the guard reads
#                 the whole device and writes nothing (GB/s = 1 GiB / t)
#   guard         copy of a 1 GiB source (50% random data, 50% holes)
#                 onto the device without --overwrite: every range is
#                 read before it is written or zeroed
#   no guard      the same copy with --overwrite --yes (no reads before
#                 writing; zero runs become BLKZEROOUT)
#   dd            dd if=DEVICE of=/dev/null bs=1M: reading the device
#                 once, the floor of any whole-destination check
# The device is zeroed again (blkdiscard) before each run; medians of
# RUNS interleaved runs (bench/interleave.py), verification on.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
RUNS=${RUNS:-5}
cd "$(dirname "$0")"
W=$(mktemp -d /var/tmp/df-guard.XXXXXX)
LOOP=""
cleanup() { [ -n "$LOOP" ] && losetup -d "$LOOP"; rm -rf "$W"; }
trap cleanup EXIT
truncate -s 1G "$W/dev.img"
LOOP=$(losetup -f --show "$W/dev.img")
truncate -s 1G "$W/holes.img"
# 1 MiB regions: random data, then a hole, alternating.
python3 - "$W/src.img" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for i in range(1024):
        if i % 2 == 0:
            f.seek(i << 20); f.write(os.urandom(1 << 20))
    f.truncate(1 << 30)
PY
ZAP="blkdiscard $LOOP 2>/dev/null || dd if=/dev/zero of=$LOOP bs=4M status=none"
./interleave.py --runs "$RUNS" --prepare "$ZAP" \
    --title "1 GiB loop device: the whole-destination check" \
    "check-alone=$DF copy --dry-run $W/holes.img $LOOP" \
    "guard=$DF copy $W/src.img $LOOP" \
    "no-guard=$DF copy --overwrite --yes $W/src.img $LOOP" \
    "dd=dd if=$LOOP of=/dev/null bs=1M status=none"
