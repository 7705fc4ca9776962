#!/usr/bin/env bash
# bench/copy_vs_peers.sh [BUILD]: local copy of the 2 GiB corpus.
#
# Times, in the same run, with hyperfine (1 warm-up dropped, median of
# RUNS): diskferry copy (verification on, the default) against
# dd bs=4M, cp --sparse=always and qemu-img convert -O raw, for the
# non-sparse corpus (zeros written as bytes) and its sparse twin.
# Cache state: warm (the source is read once before and stays in the
# page cache; 24 GiB of RAM); destinations are new files on the same
# file system, removed before each run, not fsynced by any tool (dd, cp
# and qemu-img convert, whose default cache mode is unsafe, do not;
# diskferry without --fsync does not either).  A second table adds
# --fsync / conv=fsync / sync to every tool: then the disk decides.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/work/bench-data}
RUNS=${RUNS:-5}
cd "$(dirname "$0")"
bash ./corpus.sh "$DATA" 2048
OUT=$DATA/out.img
JSON=$(mktemp -d)
trap 'rm -rf "$JSON" "$OUT"' EXIT

cat "$DATA/corpus.img" "$DATA/corpus-sparse.img" > /dev/null

run() {      # run NAME SRC FSYNC
    local name=$1 src=$2 fs=$3 sync="" ddsync="" dfsync=""
    if [ "$fs" = 1 ]; then sync="; sync -f $OUT"; ddsync="conv=fsync"; dfsync="--fsync"; fi
    hyperfine -N --style basic --warmup 1 --runs "$RUNS" \
        --prepare "rm -f $OUT" --export-json "$JSON/$name.json" \
        -n diskferry "$DF copy $dfsync $src $OUT" \
        -n qemu-img "sh -c 'qemu-img convert -O raw $src $OUT $sync'" \
        -n cp "sh -c 'cp --sparse=always $src $OUT $sync'" \
        -n dd "sh -c 'dd if=$src of=$OUT bs=4M status=none $ddsync'" \
        > "$JSON/$name.log" 2>&1 || { cat "$JSON/$name.log"; exit 1; }
}

report() {   # report NAME TITLE
    /usr/bin/python3 - "$JSON/$1.json" "$2" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
t = {r["command"]: r["median"] for r in res}
d = t["diskferry"]
print("%s" % sys.argv[2])
for name in ("diskferry", "qemu-img", "cp", "dd"):
    print("  %-10s median %6.2f s   diskferry/%-9s = %.2fx" %
          (name, t[name], name, d / t[name]))
PY
}

run dense "$DATA/corpus.img" 0
run sparse "$DATA/corpus-sparse.img" 0
report dense "2 GiB corpus, zeros written as bytes (goal: diskferry <= 0.8x qemu-img and cp)"
report sparse "2 GiB corpus, sparse twin"
if [ "${FSYNC:-1}" = 1 ]; then
    run dense_fsync "$DATA/corpus.img" 1
    report dense_fsync "2 GiB corpus, every tool waits for the disk (--fsync, conv=fsync, sync)"
fi
