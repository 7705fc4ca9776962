#!/usr/bin/env bash
# bench/formats_vs_qemu_img.sh [BUILD]: reading each image format to raw.
#
# The 2 GiB corpus converted by qemu-img to qcow2, qcow2 with zstd
# compression, vmdk (monolithicSparse, streamOptimized), vdi and vpc
# (dynamic), then, in the same run, interleaved (bench/interleave.py:
# one warm-up round dropped, median of RUNS, warm page cache, new
# destination each run, no fsync by either tool),
# `diskferry copy IMG out.raw` against
# `qemu-img convert -O raw IMG out.raw`.  Goal: <= 0.9x for each.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
cd "$(dirname "$0")"
bash ./corpus.sh "$DATA" 2048
SRC=$DATA/corpus.img
OUT=$DATA/out.raw
trap 'rm -f "$OUT"' EXIT

mk() {  # mk NAME qemu-img-convert-args...
    local f=$DATA/corpus.$1
    shift
    [ -f "$f" ] || qemu-img convert "$@" "$SRC" "$f"
    echo "$f"
}
declare -A IMG
IMG[qcow2]=$(mk qcow2 -O qcow2)
IMG[qcow2-zstd]=$(mk zstd.qcow2 -O qcow2 -c -o compression_type=zstd)
IMG[vmdk-sparse]=$(mk vmdk -O vmdk -o subformat=monolithicSparse)
IMG[vmdk-stream]=$(mk stream.vmdk -O vmdk -o subformat=streamOptimized)
IMG[vdi]=$(mk vdi -O vdi)
IMG[vpc]=$(mk vhd -O vpc)

for name in qcow2 qcow2-zstd vmdk-sparse vmdk-stream vdi vpc; do
    f=${IMG[$name]}
    cat "$f" > /dev/null
    ./interleave.py --runs "$RUNS" --prepare "rm -f $OUT" --title "$name" \
        "diskferry=$DF copy $f $OUT" \
        "qemu-img=qemu-img convert -O raw $f $OUT"
done
