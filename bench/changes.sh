#!/usr/bin/env bash
# bench/changes.sh [BUILD]: sync --changes from metadata against a
# compare sync of the same change, in the same run: seconds, and bytes
# read against the bytes that changed.
#
# Data (DATA: BENCH_DATA, default /var/tmp/diskferry-bench): A, the
# 2 GiB corpus of bench/corpus.sh (30% random, 20% text-like, 50% zeros
# written as bytes); under DATA/changes:
#   lvm-cow    ORIGIN: A's bytes with LEVEL % of its 64 KiB chunks
#              rewritten with random data (distinct random positions,
#              fixed SEED); STORE: the snapshot's COW store holding their
#              old contents, in the kernel's format with 64 KiB chunks
#              (bench/changes_gen.py cow).  Timed: diskferry sync
#              --changes lvm-cow:STORE ORIGIN B
#   bitmap     Q: A converted to qcow2 (qemu-img convert), a persistent
#              dirty bitmap added and enabled, then the same chunks
#              rewritten through qemu-io (a pattern per chunk).  Timed:
#              diskferry sync --changes bitmap:b0 Q B
#   top-layer  O: a qcow2 overlay on A (qemu-img create -b A -F raw),
#              the same chunks written into it through qemu-io.  Timed:
#              diskferry sync --changes top-layer O B
#   cowd       a VMware vmfsSparse delta (COWD, 64 KiB grains, random
#              data in the same chunks) over base.vmdk, a vmfs descriptor
#              of A (bench/changes_gen.py cowd; qemu-img cannot make one).
#              Timed: diskferry sync --changes top-layer child.vmdk B
# B (DATA/changes/dst.img) is a `diskferry copy` of the source while it
# still held A's bytes (so B's state record, kept in DATA/changes/state,
# names it); before every timed run B is made A's bytes again in place
# (bench/sync_blocks.py restore --holes: same inode, zero blocks as
# holes) and the state directory put back as the copy left it; neither
# is timed.  Each pair (metadata, compare: diskferry sync --changes
# compare SRC B, hashing SRC and B) is interleaved by interleave.py
# (one warm-up round dropped, median of RUNS, default 5); warm cache;
# verification on, as a user runs it; B compared with the source's
# content after one untimed run of each.  The bytes come from one more
# --json run of each: bytes_read (SRC read), sync.changed_bytes,
# sync.dst_bytes_read (DST read: the proof, or compare's tree).
# Goals (issue 17): bytes read <= 1.05 x changed; time grows with the
# change; >= 5x faster than compare at 1%.
# CORPUS_MB takes a smaller corpus to try it out (as bench/sync.sh).
# Needs qemu-img and qemu-io (qemu-utils).
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/corpus_data.sh
. "$HERE/corpus_data.sh"
RUNS=${RUNS:-5}
LEVELS=${LEVELS:-1 5 20}
SOURCES=${SOURCES:-lvm-cow bitmap top-layer cowd}
SEED=${SEED:-20261203}
GEN=$HERE/changes_gen.py
BLOCKS=$HERE/sync_blocks.py
bash "$HERE/corpus.sh" "$DATA" "$CORPUS_MB"

A=$DATA/corpus.img
W=$DATA/changes
B=$W/dst.img
TMP=$(mktemp -d)
rm -rf "$W"
mkdir -p "$W"
export DISKFERRY_STATE_DIR=$W/state
trap 'rm -rf "$TMP" "$W"' EXIT
SIZE=$(stat -c %s "$A")
RESTORE="$BLOCKS restore --holes $A $B && rm -rf $W/state && cp -a $W/state.saved $W/state"

# first_copy SRC: B a copy of SRC (which holds A's bytes), its record kept
first_copy() {
    rm -rf "$W/state" "$B"
    mkdir -m 700 "$W/state"
    "$DF" copy "$1" "$B" >/dev/null
    rm -rf "$W/state.saved"
    cp -a "$W/state" "$W/state.saved"
}

# prepare SOURCE LEVEL: the changed source; sets SRC, SPEC, WANT
prepare() {
    CMPF=""
    local io=$TMP/io
    case $1 in
    lvm-cow)
        SRC=$W/origin.img; SPEC=lvm-cow:$W/snap-cow; WANT=$SRC
        cp "$A" "$SRC"
        first_copy "$SRC"
        "$GEN" cow "$A" "$SRC" "$W/snap-cow" "$2" "$SEED" >/dev/null ;;
    bitmap)
        SRC=$W/vm.qcow2; SPEC=bitmap:b0; WANT=$W/want.raw
        rm -f "$SRC"
        qemu-img convert -f raw -O qcow2 "$A" "$SRC"
        first_copy "$SRC"
        qemu-img bitmap --add --enable "$SRC" b0
        "$GEN" qemu-io "$SIZE" "$2" "$SEED" > "$io"
        qemu-io -f qcow2 "$SRC" < "$io" >/dev/null
        qemu-img convert -O raw "$SRC" "$WANT" ;;
    cowd)
        SRC=$W/child.vmdk; SPEC=top-layer; WANT=$W/want.raw
        CMPF="-f vmdk --overwrite --yes"
        "$GEN" cowd "$A" "$W" "$2" "$SEED" >/dev/null
        first_copy "$W/base.vmdk" ;;
    top-layer)
        SRC=$W/overlay.qcow2; SPEC=top-layer; WANT=$W/want.raw
        CMPF="-f qcow2 --overwrite --yes"
        first_copy "$A"
        rm -f "$SRC"
        qemu-img create -q -f qcow2 -b "$A" -F raw "$SRC"
        "$GEN" qemu-io "$SIZE" "$2" "$SEED" > "$io"
        qemu-io -f qcow2 "$SRC" < "$io" >/dev/null
        qemu-img convert -O raw "$SRC" "$WANT" ;;
    esac
    cat "$A" "$SRC" >/dev/null
}

# once CMD: untimed on a restored B, which must hold WANT after it
once() {
    sh -c "$RESTORE"
    sh -c "$1" >/dev/null
    if ! cmp -s "$WANT" "$B"; then
        echo "changes.sh: after '$1' $B differs from $WANT" >&2
        exit 1
    fi
}

echo "corpus: $A ($CORPUS_MB MiB), $RUNS runs, $DF"
for src in $SOURCES; do
    for level in $LEVELS; do
        prepare "$src" "$level"
        META="$DF sync --changes $SPEC $SRC $B"
        CMP="$DF sync --changes compare $CMPF $SRC $B"
        once "$META --json > $TMP/r-$src-$level-meta.json"
        once "$CMP --json > $TMP/r-$src-$level-compare.json"
        "$HERE/interleave.py" --runs "$RUNS" --prepare "$RESTORE" \
            --json "$TMP/t-$src-$level.json" \
            --title "sync --changes $src, $level% of the 64 KiB chunks changed" \
            "$src=$META" "compare=$CMP"
        echo "$src $level" >> "$TMP/rows"
    done
done

echo
/usr/bin/python3 - "$TMP" <<'PY'
import json, os, sys
tmp = sys.argv[1]
MiB = 1 << 20
print("metadata against compare (MiB from one --json run; goal: read "
      "<= 1.05 x changed, >= 5x faster than compare at 1%)")
print("  %-10s %6s %9s %9s %9s %9s %8s %8s %8s" % (
    "source", "level", "changed", "read SRC", "read/chg", "read DST",
    "meta s", "cmp s", "cmp/meta"))
for line in open(os.path.join(tmp, "rows")):
    src, level = line.split()
    m = json.load(open(os.path.join(tmp, f"r-{src}-{level}-meta.json")))
    med = json.load(open(os.path.join(tmp, f"t-{src}-{level}.json")))["median"]
    chg = m["sync"]["changed_bytes"]
    print("  %-10s %5s%% %9.1f %9.1f %9.3f %9.1f %8.3f %8.3f %8.2f" % (
        src, level, chg / MiB, m["bytes_read"] / MiB,
        m["bytes_read"] / chg if chg else 0, m["sync"]["dst_bytes_read"] / MiB,
        med[src], med["compare"], med["compare"] / med[src]))
PY
