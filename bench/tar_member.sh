#!/usr/bin/env bash
# bench/tar_member.sh [BUILD]: a disk image inside a tarball, onto a
# block device, without scratch space (issue: "tar member -> device vs
# tar -xOf | dd: goal <= 0.8x").
#
# Corpus: the sparse 2 GiB corpus of bench/corpus.sh (30% random, 20%
# text, 50% holes) in a GNU sparse tar (tar -S), plain and zstd-compressed.
# Destination: a loop device over a 2 GiB file in the corpus directory.
#
#   dd       tar -xOf ARCHIVE corpus-sparse.img | dd of=DEV bs=1M
#            (tar writes the holes out as zeros; dd writes every byte)
#   df       diskferry copy --overwrite --yes tar:ARCHIVE//corpus-sparse.img DEV
#            (verification on, as a user runs it: the device is read
#            back; zeros are not written, the device's old blocks there
#            are zeroed with BLKZEROOUT)
#
# Each command runs after the device's page cache is dropped (untimed:
# --prepare), interleaved, the first round dropped, medians of RUNS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
DF=$(realpath "$BUILD/diskferry")
DATA=${BENCH_DATA:-/var/tmp/diskferry-bench}
RUNS=${RUNS:-5}
bash "$HERE/corpus.sh" "$DATA" 2048
S=$DATA/corpus-sparse.img
[ -f "$DATA/c.tar" ] || tar -C "$DATA" -cSf "$DATA/c.tar" corpus-sparse.img
[ -f "$DATA/c.tar.zst" ] || zstd -q -T0 -o "$DATA/c.tar.zst" "$DATA/c.tar"
BACK=$DATA/tar-dev.img
truncate -s 2G "$BACK"
DEV=$(losetup -f --show "$BACK")
trap 'losetup -d "$DEV"; rm -f "$BACK"' EXIT
PREP="blockdev --flushbufs $DEV; echo 1 > /proc/sys/vm/drop_caches"
for a in c.tar c.tar.zst; do
    unpack="tar -xOf $DATA/$a corpus-sparse.img"
    [ "$a" = c.tar.zst ] && unpack="zstd -dc $DATA/$a | tar -xOf - corpus-sparse.img"
    "$HERE/interleave.py" --runs "$RUNS" --prepare "$PREP" \
        --title "$a member -> loop device (ratio to dd: below 1 = diskferry faster)" \
        "dd=$unpack | dd of=$DEV bs=1M status=none" \
        "df=$DF copy --overwrite --yes tar:$DATA/$a//corpus-sparse.img $DEV"
done
