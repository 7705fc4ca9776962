#!/usr/bin/env bash
# bench/formats_vs_qemu_img.sh [BUILD]: reading each image format to raw.
#
# The 2 GiB corpus converted by qemu-img to qcow2, qcow2 with zstd
# compression, vmdk (monolithicSparse, streamOptimized), vdi and vpc
# (dynamic), then, in the same run with hyperfine (1 warm-up, median of
# RUNS, warm page cache, new destination each run, no fsync by either
# tool), `diskferry copy IMG out.raw` against
# `qemu-img convert -O raw IMG out.raw`.  Goal: <= 0.9x for each.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/work/bench-data}
RUNS=${RUNS:-5}
cd "$(dirname "$0")"
bash ./corpus.sh "$DATA" 2048
SRC=$DATA/corpus.img
OUT=$DATA/out.raw
JSON=$(mktemp -d)
trap 'rm -rf "$JSON" "$OUT"' EXIT

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

printf '%-12s %10s %10s %8s\n' format diskferry qemu-img ratio
for name in qcow2 qcow2-zstd vmdk-sparse vmdk-stream vdi vpc; do
    f=${IMG[$name]}
    cat "$f" > /dev/null
    hyperfine -N --style none --warmup 1 --runs "$RUNS" \
        --prepare "rm -f $OUT" --export-json "$JSON/$name.json" \
        -n diskferry "$DF copy $f $OUT" \
        -n qemu-img "qemu-img convert -O raw $f $OUT" >/dev/null 2>&1
    /usr/bin/python3 - "$JSON/$name.json" "$name" <<'PY'
import json, sys
t = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
print("%-12s %9.2fs %9.2fs %7.2fx" % (sys.argv[2], t["diskferry"],
      t["qemu-img"], t["diskferry"] / t["qemu-img"]))
PY
done
