#!/usr/bin/env bash
# bench/copy_vs_peers.sh [BUILD]: local copy of the 2 GiB corpus.
#
# Times diskferry copy (verification on, the default) against
# dd bs=4M, cp --sparse=always and qemu-img convert -O raw, in the same
# run, interleaved (bench/interleave.py: one warm-up round dropped,
# median of RUNS), for the non-sparse corpus (zeros written as bytes)
# and its sparse twin.
# Cache state: warm (the source is read once before and stays in the
# page cache; 24 GiB of RAM); destinations are new files on the same
# file system, removed before each run, not fsynced by any tool (dd, cp
# and qemu-img convert, whose default cache mode is unsafe, do not;
# diskferry without --fsync does not either).  With FSYNC=1 a second
# table adds --fsync / conv=fsync / sync to every tool: the disk decides.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-9}
cd "$(dirname "$0")"
bash ./corpus.sh "$DATA" 2048
OUT=$DATA/out.img
trap 'rm -f "$OUT"' EXIT
cat "$DATA/corpus.img" "$DATA/corpus-sparse.img" > /dev/null

run() {      # run TITLE SRC [fsync]
    local title=$1 src=$2 fs=${3:-} sync="" ddsync="" dfsync=""
    if [ -n "$fs" ]; then
        sync="&& sync -f $OUT"; ddsync="conv=fsync"; dfsync="--fsync"
    fi
    ./interleave.py --runs "$RUNS" --prepare "rm -f $OUT" --title "$title" \
        "diskferry=$DF copy $dfsync $src $OUT" \
        "qemu-img=qemu-img convert -O raw $src $OUT $sync" \
        "cp=cp --sparse=always $src $OUT $sync" \
        "dd=dd if=$src of=$OUT bs=4M status=none $ddsync"
}

run "2 GiB corpus, zeros written as bytes (goal: diskferry <= 0.8x qemu-img and cp)" \
    "$DATA/corpus.img"
run "2 GiB corpus, sparse twin" "$DATA/corpus-sparse.img"
if [ "${FSYNC:-0}" = 1 ]; then
    run "2 GiB corpus, every tool waits for the disk (--fsync, conv=fsync, sync)" \
        "$DATA/corpus.img" fsync
fi
