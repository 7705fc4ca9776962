#!/usr/bin/env bash
# bench/nbd.sh [BUILD]: NBD export -> new raw file, diskferry against
# nbdcopy and qemu-img convert reading the same export, interleaved in
# one run (bench/interleave.py: a warm-up round dropped, medians of
# RUNS, default 5).  Goal: diskferry <= 1.0x nbdcopy's time, with its
# verification on (as a user runs it; nbdcopy and qemu-img do not
# verify).
#
# The export is the 2 GiB corpus of bench/corpus.sh (CORPUS=corpus.img,
# zeros as real bytes; CORPUS=corpus-sparse.img for its sparse twin,
# where block status skips the holes), read-only, served on unix
# sockets by
#   nbdkit file           (offers multi-conn)
#   qemu-nbd -f raw -t    (-e 8: up to 8 clients; no multi-conn)
# Both servers run for the whole bench and are killed at its end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
CORPUS=${CORPUS:-corpus.img}
for t in nbdkit qemu-nbd nbdcopy qemu-img; do
    command -v $t >/dev/null || { echo "nbd.sh: needs $t" >&2; exit 2; }
done
bash "$HERE/corpus.sh" "$DATA" 2048
C=$DATA/$CORPUS
OUT=$DATA/nbd-out.img
SOCKDIR=$(mktemp -d)
export DISKFERRY_STATE_DIR=$DATA/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$SOCKDIR" "$OUT"
}
trap cleanup EXIT
nbdkit -f -r -U "$SOCKDIR/k.sock" file "$C" & PIDS+=($!)
qemu-nbd -r -t -e 8 -f raw -k "$SOCKDIR/q.sock" "$C" & PIDS+=($!)
for s in k q; do
    for _ in $(seq 100); do [ -S "$SOCKDIR/$s.sock" ] && break; sleep 0.1; done
    [ -S "$SOCKDIR/$s.sock" ] || { echo "nbd.sh: $s server did not start" >&2; exit 1; }
done
cat "$C" >/dev/null
row() {     # row TITLE URI
    local title=$1 uri=$2
    "$HERE/interleave.py" --runs "$RUNS" --prepare "rm -f $OUT" \
        --title "$title (ratio of times diskferry/X: below 1 = diskferry is faster)" \
        "diskferry=$DF copy '$uri' $OUT" \
        "nbdcopy=nbdcopy '$uri' $OUT" \
        "qemu-img=qemu-img convert -f raw -O raw '$uri' $OUT"
}
row "nbdkit file $CORPUS -> raw" "nbd+unix:///?socket=$SOCKDIR/k.sock"
row "qemu-nbd $CORPUS -> raw" "nbd+unix:///?socket=$SOCKDIR/q.sock"
