#!/usr/bin/env bash
# bench/engine_before_after.sh OLD_BUILD NEW_BUILD: the same work done by
# two builds of diskferry, interleaved in one run (bench/interleave.py:
# OLD NEW OLD NEW ..., a warm-up round dropped, medians of RUNS), so a
# refactoring shows whether it made anything slower.  Goal: no ratio
# worse than 1.03x.
#
# Work (the 2 GiB corpus of bench/corpus.sh, warm cache, a new
# destination file each run, verification on as a user runs it; the
# previous run's output removed and synced before each, untimed, so that
# its writeback does not land in the next one's time):
#   raw -> raw              copy corpus.img out.img
#   qcow2 -> raw            the corpus converted by qemu-img
#   qcow2 zstd -> raw       the same, compressed clusters
#   vmdk stream -> raw      streamOptimized
#   raw -> remote           copy to localhost through the rsh shim of
#                           the e2e tests (serve on this host, a pipe
#                           instead of ssh: the protocol and both ends,
#                           without ssh's cipher)
# OUT_DIR (default: the corpus directory) holds the output; a tmpfs there
# (mount -t tmpfs -o size=4g tmpfs DIR; not under /dev, where diskferry
# creates no file)
# takes the disk's writeback out of the comparison (2 GiB of output sits
# near the kernel's background writeback threshold, which makes runs on
# a disk bimodal), leaving what the two builds themselves do.
# OLD_BUILD is a build directory of the earlier tree, e.g.
#   git worktree add /tmp/old 1c8d90c && (cd /tmp/old && meson setup b && ninja -C b)
set -euo pipefail
OLD=$(realpath "${1:?usage: engine_before_after.sh OLD_BUILD NEW_BUILD}/diskferry")
NEW=$(realpath "${2:?usage: engine_before_after.sh OLD_BUILD NEW_BUILD}/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
RSH=$HERE/../tests/e2e/rsh_local.sh
bash "$HERE/corpus.sh" "$DATA" 2048
C=$DATA/corpus.img
[ -f "$DATA/c.qcow2" ] || qemu-img convert -O qcow2 "$C" "$DATA/c.qcow2"
[ -f "$DATA/c-zstd.qcow2" ] ||
    qemu-img convert -O qcow2 -c -o compression_type=zstd "$C" "$DATA/c-zstd.qcow2"
[ -f "$DATA/c-stream.vmdk" ] ||
    qemu-img convert -O vmdk -o subformat=streamOptimized "$C" "$DATA/c-stream.vmdk"
OUT=${OUT_DIR:-$DATA}/ba-out.img
export DISKFERRY_STATE_DIR=$DATA/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
trap 'rm -f "$OUT"' EXIT
cat "$C" "$DATA"/c.qcow2 "$DATA"/c-zstd.qcow2 "$DATA"/c-stream.vmdk >/dev/null
row() {     # row TITLE ARGS...
    local title=$1; shift
    "$HERE/interleave.py" --runs "$RUNS" --prepare "rm -f $OUT; sync" \
        --title "$title (ratio old/new: above 1 = new is faster)" \
        "old=$OLD copy $* $OUT" "new=$NEW copy $* $OUT"
}
row "raw -> raw" "$C"
row "qcow2 -> raw" -f qcow2 "$DATA/c.qcow2"
row "qcow2 zstd -> raw" -f qcow2 "$DATA/c-zstd.qcow2"
row "vmdk streamOptimized -> raw" -f vmdk "$DATA/c-stream.vmdk"
"$HERE/interleave.py" --runs "$RUNS" --prepare "rm -f $OUT; sync" \
    --title "raw -> localhost:DST through serve (ratio old/new)" \
    "old=$OLD copy --rsh $RSH --remote-path $OLD $C localhost:$OUT" \
    "new=$NEW copy --rsh $RSH --remote-path $NEW $C localhost:$OUT"
