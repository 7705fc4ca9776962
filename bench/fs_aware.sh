#!/usr/bin/env bash
# bench/fs_aware.sh [BUILD_DIR]: `diskferry copy --fs-aware` (issue 18:
# blocks an ext/XFS/swap file system marks free are neither read nor
# sent) against plain diskferry copy and the tools that already know
# ext4's free blocks.  Run as root (loop mount, network namespaces);
# BUILD_DIR defaults to build-release.
#
#   bash bench/fs_aware.sh build-release            the figures
#   SMALL=1 bash bench/fs_aware.sh build-release    a quick smoke: 128 MiB
#                      image, 64 MiB slice, RUNS=1 (figures meaningless)
#
# Data (bench/fs_corpus.sh, cached in DATA of bench/corpus_data.sh as
# fsaware-<MiB>m.img, made again when its parameters change): a fully
# allocated raw file holding ext4 (mkfs.ext4 -F -b 4096), filled through a
# loop mount to 70% of its blocks with files that compress like a used
# disk (by bytes ~30% random, 35% varied text, 35% binary-like; no block
# repeated), then 35% of the written bytes deleted (their blocks keep the
# stale data), `e2fsck -fn` clean.  Never-used blocks are zero bytes, not
# holes.  SRC: 1 GiB; SLICE: a 256 MiB one built the same way.
#
# Local rows (interleave.py: commands interleaved, one warm-up round
# dropped, median of RUNS, default 5; warm cache; before every run the
# outputs are removed, so each writes a new file on DATA's file system):
#   diskferry --fs-aware   diskferry copy --no-progress --fs-aware SRC DST
#                          (verification on: the read-back is timed)
#   diskferry --fs-aware --fsync   the same with --fsync: the durability
#                          partclone and e2image give (both fsync DST;
#                          diskferry and qemu-img by default do not)
#   diskferry (plain)      diskferry copy --no-progress SRC DST
#   qemu-img convert       qemu-img convert -O raw SRC DST
#   partclone -c           partclone.ext4 -q -L /dev/null -c -s SRC -o DST.pc
#                          (its own image format, used blocks only)
#   partclone -b           partclone.ext4 -q -L /dev/null -b -s SRC -O DST
#                          ("device to device" into a regular file: -o
#                          refuses a file that exists and -b on a missing
#                          one fails its size check, so DST is made by
#                          `truncate -s SIZE` in the untimed preparation,
#                          as a target device would exist; -O writes into
#                          it; free blocks stay holes)
#   e2image -ra            e2image -ra SRC DST (metadata and data, sparse)
# Each command also runs once untimed under bench/io_of.py, and its
# output is checked (bench/fs_check.py: every block in use equal to SRC's;
# for --fs-aware, partclone -b and e2image every free 64 KiB leaf / block
# zero; plain copy and qemu-img: cmp of the whole file; partclone -c:
# restored with partclone -r, then the same as -b).  Bytes read:
#   json read   diskferry's --json bytes_read (+ bytes_read_for_digest):
#               bytes read from SRC, file system metadata included
#   rchar       /proc/PID/io rchar of the command once it has exited
#               (bench/io_of.py): everything read(2)/pread(2)/... returned,
#               page cache or not: SRC, and for diskferry the read-back
#               of DST that verifies it; for the peers ~ SRC only
# used+meta: (Block count - Free blocks) x Block size of `dumpe2fs -h`.
# Goals: json read / used+meta <= 1.05; diskferry --fs-aware / the faster
# partclone row <= 0.8 (as users run both: diskferry without --fsync;
# the --fsync row's ratio is printed beside it).  partclone 0.3.23 ends
# by joining its progress thread, which sleeps 2 s at a time (-q or
# not; `strace -f -e clock_nanosleep`): its times are rounded up to
# that, which weighs on small images.
#
# Shaped link (SKIP_SHAPED=1 leaves it out; one run of each: it is
# slow): bench/shaped_link.sh, two network namespaces joined by a veth
# pair, 20 Mbit/s tbf on the sender's egress, sshd in the receiver's
# namespace with keys of its own; SLICE to DST on that host (the same
# file system here), warm cache, timed in the sender's namespace:
#   diskferry        diskferry copy --no-progress --fs-aware --rsh SSH
#                    --remote-path DF SLICE host:DST   (compression auto)
#   dd | ssh         dd if=SLICE bs=1M | SSH host 'dd of=DST bs=1M'
#   dd|bzip2|ssh     dd if=SLICE bs=1M | bzip2 -c | SSH host 'bunzip2 -c |
#                    dd of=DST bs=1M'
#   zerofree+zstd    zerofree Z; zstd -q -c Z | SSH host 'zstd -d -q -c |
#                    dd of=DST bs=1M'   (Z: a copy of SLICE made untimed,
#                    standing for the user's image; zerofree's time is
#                    counted; zstd's default level 3, one thread)
# SSH: ssh with OpenSSH's default cipher (diskferry picks AES-GCM when
# given no cipher and the CPU has AES).  Outputs checked as above
# (zerofree+zstd: DST equal to the zerofreed copy, whose free blocks are
# zeros; zerofree also rewrites the superblock's write time).
# Goals (for the 256 MiB slice): diskferry <= 30 s, dd|bzip2|ssh /
# diskferry >= 2.5, dd|ssh / diskferry >= 3.7.
#
# DISKFERRY_FS_FLAG (default --fs-aware) is the flag the --fs-aware rows
# pass; DISKFERRY_FS_FLAG= (empty) runs them as plain copies, to try the
# script on a build without the flag.  Needs partclone, zerofree, bzip2,
# zstd, e2fsprogs, qemu-utils, openssh-server, iproute2 (installed when
# missing).  Touches only files it makes (SRC, SLICE, DATA/fsaware-out*,
# a temporary directory) and loop devices over them; removes its
# namespaces, mounts and loop devices on exit.
set -euo pipefail
BUILD=${1:-build-release}
DF=$(realpath "$BUILD/diskferry")
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/corpus_data.sh
. "$HERE/corpus_data.sh"
FS_FLAG=${DISKFERRY_FS_FLAG---fs-aware}
if [ "${SMALL:-0}" = 1 ]; then
    SIZE_MIB=128 SLICE_MIB=64 RUNS=${RUNS:-1}
else
    SIZE_MIB=1024 SLICE_MIB=256 RUNS=${RUNS:-5}
fi
LEAF=65536              # diskferry's leaf (util/hash.h DIGEST_LEAF_SIZE)

need=
for p in partclone zerofree bzip2 zstd e2fsprogs qemu-utils openssh-server \
         openssh-client iproute2; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
        grep -q '^install ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "fs_aware.sh: needs$need (apt-get install$need), and root" >&2
        exit 1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086  # one word a package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $need >/dev/null
fi

SRC=$DATA/fsaware-${SIZE_MIB}m.img
SLICE=$DATA/fsaware-${SLICE_MIB}m.img
bash "$HERE/fs_corpus.sh" "$SRC" "$SIZE_MIB"
bash "$HERE/fs_corpus.sh" "$SLICE" "$SLICE_MIB"
OUT=$DATA/fsaware-out
TMP=$(mktemp -d)
export DISKFERRY_STATE_DIR=$DATA/state
mkdir -p "$DATA"
[ -d "$DISKFERRY_STATE_DIR" ] || mkdir -m 700 "$DISKFERRY_STATE_DIR"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
# shellcheck source=bench/shaped_link.sh
. "$HERE/shaped_link.sh"
cleanup() {
    shaped_link_down
    rm -rf "$TMP"
    rm -f "$OUT".*
}
trap cleanup EXIT
trap "exit 130" INT TERM     # so that cleanup runs then too
CHECK=$HERE/fs_check.py
IO=$HERE/io_of.py
SIZE=$(stat -c %s "$SRC")
PC="partclone.ext4 -q -L /dev/null"

DF_FS="$DF copy --no-progress $FS_FLAG $SRC $OUT.img"
DF_FSYNC="$DF copy --no-progress --fsync $FS_FLAG $SRC $OUT.img"
DF_PLAIN="$DF copy --no-progress $SRC $OUT.img"
QEMU="qemu-img convert -O raw $SRC $OUT.img"
PC_C="$PC -c -s $SRC -o $OUT.pc"
PC_B="$PC -b -s $SRC -O $OUT.img"
E2I="e2image -ra $SRC $OUT.img"
PREPARE="rm -f $OUT.img $OUT.pc $OUT.img.diskferry-resume && truncate -s $SIZE $OUT.img.pcb"
# partclone -b writes into the file truncate made; the others must find
# no DST.  The prepare step makes it aside, -b's command moves it in.
PC_B_RUN="mv $OUT.img.pcb $OUT.img && $PC_B"

# check NAME KIND: the output of NAME's run is right.  KIND: full (cmp
# with SRC), leaf (used blocks, whole free leaves zero), block (used
# blocks, free blocks zero), pc (restore the partclone image, then block),
# fsck (e2fsck -fn clean: e2image rewrites the backup superblocks).
check() {
    local f=$OUT.img
    case $2 in
    full) cmp -s "$SRC" "$f" || { echo "fs_aware.sh: $1: $f differs from $SRC" >&2; exit 1; } ;;
    leaf) if [ -n "$FS_FLAG" ]; then "$CHECK" "$SRC" "$f" --free-zero=$LEAF
          else cmp -s "$SRC" "$f" || { echo "fs_aware.sh: $1: $f differs" >&2; exit 1; }; fi ;;
    block) "$CHECK" "$SRC" "$f" --free-zero ;;
    fsck) # e2image -ra writes the backup superblocks anew (their
          # fields differ from SRC's; the file system is the same)
          e2fsck -fn "$f" >/dev/null 2>&1 ||
              { echo "fs_aware.sh: $1: $f does not pass e2fsck -fn" >&2; exit 1; } ;;
    pc) rm -f "$f"; truncate -s "$SIZE" "$f"
        $PC -r -s "$OUT.pc" -O "$f" >/dev/null 2>&1
        "$CHECK" "$SRC" "$f" --free-zero ;;
    esac
}

# measure KEY CMD KIND: CMD once, untimed, under io_of.py; output checked.
measure() {
    sh -c "$PREPARE"
    "$IO" "$TMP/io-$1" "$2" >/dev/null 2>"$TMP/err-$1" ||
        { cat "$TMP/err-$1" >&2; echo "fs_aware.sh: $1 failed: $2" >&2; exit 1; }
    check "$1" "$3"
}

echo "fs_aware.sh: $DF, flag '${FS_FLAG:-(none: plain copies)}', $RUNS runs"
echo "SRC $SRC ($SIZE_MIB MiB), SLICE $SLICE ($SLICE_MIB MiB), DST $OUT.*"
cat "$SRC" > /dev/null
measure dffs "$DF_FS --json > $TMP/json-dffs" leaf
measure dffsync "$DF_FSYNC" leaf
measure dfplain "$DF_PLAIN --json > $TMP/json-dfplain" full
measure qemu "$QEMU" full
measure pcc "$PC_C" pc
measure pcb "$PC_B_RUN" block
measure e2i "$E2I" fsck
"$CHECK" "$SRC" --used > "$TMP/used"
echo
"$HERE/interleave.py" --runs "$RUNS" --prepare "$PREPARE" \
    --json "$TMP/local.json" \
    --title "local, $SIZE_MIB MiB ext4 image, warm cache, median of $RUNS" \
    "diskferry --fs-aware=$DF_FS" "df --fs-aware --fsync=$DF_FSYNC" \
    "diskferry (plain)=$DF_PLAIN" "qemu-img convert=$QEMU" \
    "partclone -c=$PC_C" "partclone -b=$PC_B_RUN" "e2image -ra=$E2I" \
    >/dev/null
sh -c "$PREPARE"
rm -f "$OUT.img.pcb"

/usr/bin/python3 - "$TMP" "$SIZE_MIB" "$RUNS" "$FS_FLAG" <<PY
import json, os, sys
tmp, size_mib, runs, flag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
MiB = 1 << 20
med = json.load(open(os.path.join(tmp, "local.json")))["median"]
used = int(open(os.path.join(tmp, "used")).read())
def rchar(key):
    for line in open(os.path.join(tmp, "io-" + key)):
        k, v = line.split(":")
        if k == "rchar":
            return int(v)
rows = [("diskferry --fs-aware", "dffs", """$DF_FS"""),
        ("df --fs-aware --fsync", "dffsync", """$DF_FSYNC"""),
        ("diskferry (plain)", "dfplain", """$DF_PLAIN"""),
        ("qemu-img convert", "qemu", """$QEMU"""),
        ("partclone -c", "pcc", """$PC_C"""),
        ("partclone -b", "pcb", """$PC_B"""),
        ("e2image -ra", "e2i", """$E2I""")]
js = {k: json.load(open(os.path.join(tmp, "json-" + k)))
      for k in ("dffs", "dfplain")}
first = med["diskferry --fs-aware"]
print("local, %s MiB ext4 image (used+meta %.1f MiB), warm cache, median "
      "of %s runs, interleaved" % (size_mib, used / MiB, runs))
print("  %-22s %8s %9s %10s %10s" % ("", "median s", "fs-aware/", "json read",
                                     "rchar"))
for name, key, _ in rows:
    jr = "-"
    if key in js:
        r = js[key]
        jr = "%.1f" % ((r["bytes_read"] + r["bytes_read_for_digest"]) / MiB)
    print("  %-22s %8.2f %8.2fx %10s %10.1f" % (
        name, med[name], first / med[name], jr, rchar(key) / MiB))
print("  (MiB; json read: --json bytes_read + bytes_read_for_digest, SRC "
      "only; rchar: /proc/PID/io of one extra run, all reads, diskferry's "
      "read-back of DST included)")
r, p = js["dffs"], js["dfplain"]
print("  diskferry --fs-aware: skipped.free %.1f MiB; plain copy: "
      "bytes_free_stale %.1f MiB (stale bytes it read and wrote)" % (
          r["skipped"].get("free", r.get("bytes_free", 0)) / MiB,
          p.get("bytes_free_stale", 0) / MiB))
got = (r["bytes_read"] + r["bytes_read_for_digest"]) / used
print("  json read / used+meta          = %.3f   (goal <= 1.05) %s" % (
    got, "met" if got <= 1.05 else "MISSED"))
pc = min(med["partclone -c"], med["partclone -b"])
t = first / pc
print("  fs-aware / faster partclone    = %.2fx  (goal <= 0.8) %s; with "
      "--fsync %.2fx" % (t, "met" if t <= 0.8 else "MISSED",
                         med["df --fs-aware --fsync"] / pc))
print("  NOTE: partclone's times include the wait for its progress thread,"
      " which sleeps 2 s at a time (-q or not): they are rounded up to it")
if not flag:
    print("  NOTE: DISKFERRY_FS_FLAG is empty: the --fs-aware rows are plain "
          "copies")
print("commands (SRC, DST as above; before each run: %s):" % """$PREPARE""")
for name, _, cmd in rows:
    print("  %-22s %s" % (name, cmd))
PY

[ "${SKIP_SHAPED:-0}" = 1 ] && exit 0
echo
mkdir "$TMP/ssh"
shaped_link_up "$TMP/ssh" 20mbit
A=$SHAPED_A
SSH=$SHAPED_SSH
H=$SHAPED_HOST
now() { date +%s.%N; }
# shaped KEY CMD: CMD once in the sender's namespace; seconds to TMP/t-KEY.
shaped() {
    local t0 t1
    rm -f "$OUT.img" "$OUT.img.diskferry-resume"
    cat "$SLICE" > /dev/null
    t0=$(now)
    $A sh -c "$2" > "$TMP/out-$1" 2>"$TMP/err-$1" ||
        { cat "$TMP/err-$1" >&2; echo "fs_aware.sh: $1 failed: $2" >&2; exit 1; }
    t1=$(now)
    echo "$t1 - $t0" | bc -l > "$TMP/t-$1"
}
S_DF="$DF copy --no-progress --json $FS_FLAG --rsh '$SSH' --remote-path $DF $SLICE $H:$OUT.img"
S_DD="dd if=$SLICE bs=1M status=none | $SSH $H 'dd of=$OUT.img bs=1M status=none'"
S_BZ="dd if=$SLICE bs=1M status=none | bzip2 -c | $SSH $H 'bunzip2 -c | dd of=$OUT.img bs=1M status=none'"
S_ZF="zerofree $OUT.zf"
S_ZS="zstd -q -c $OUT.zf | $SSH $H 'zstd -d -q -c | dd of=$OUT.img bs=1M status=none'"
shaped df "$S_DF"
if [ -n "$FS_FLAG" ]; then
    "$CHECK" "$SLICE" "$OUT.img" --free-zero=$LEAF
else
    cmp "$SLICE" "$OUT.img"
fi
shaped dd "$S_DD"
cmp "$SLICE" "$OUT.img"
shaped bz "$S_BZ"
cmp "$SLICE" "$OUT.img"
cp --sparse=never "$SLICE" "$OUT.zf"
shaped zf "$S_ZF"
shaped zs "$S_ZS"
# zerofree rewrites the superblock (its write time): the reference is
# the zerofreed copy, whose free blocks are SLICE's.
cmp "$OUT.zf" "$OUT.img"
"$CHECK" "$OUT.zf" "$OUT.img" --free-zero
rm -f "$OUT.zf"

/usr/bin/python3 - "$TMP" "$SLICE_MIB" "$FS_FLAG" <<PY
import json, os, sys
tmp, slice_mib, flag = sys.argv[1], sys.argv[2], sys.argv[3]
t = {k: float(open(os.path.join(tmp, "t-" + k)).read())
     for k in ("df", "dd", "bz", "zf", "zs")}
t["zfzs"] = t["zf"] + t["zs"]
r = json.load(open(os.path.join(tmp, "out-df")))
rem = r.get("remote", {})
print("20 Mbit/s link (veth between two namespaces, tbf), %s MiB ext4 "
      "slice, one run each" % slice_mib)
print("  %-22s %8.2f s   wire %.1f MiB, skipped.free %.1f MiB" % (
    "diskferry --fs-aware", t["df"], rem.get("bytes_wire", 0) / (1 << 20),
    r["skipped"].get("free", 0) / (1 << 20)))
print("  %-22s %8.2f s" % ("dd | ssh", t["dd"]))
print("  %-22s %8.2f s" % ("dd | bzip2 | ssh", t["bz"]))
print("  %-22s %8.2f s   (zerofree %.2f s + zstd | ssh %.2f s)" % (
    "zerofree + zstd | ssh", t["zfzs"], t["zf"], t["zs"]))
def goal(label, v, unit, ok, g):
    print("  %-30s = %6.2f%s (goal %s) %s" % (label, v, unit, g,
                                             "met" if ok else "MISSED"))
goal("diskferry", t["df"], " s", t["df"] <= 30, "<= 30 s at 256 MiB")
goal("dd|bzip2|ssh / diskferry", t["bz"] / t["df"], "x",
     t["bz"] / t["df"] >= 2.5, ">= 2.5")
goal("dd|ssh / diskferry", t["dd"] / t["df"], "x", t["dd"] / t["df"] >= 3.7,
     ">= 3.7")
print("  %-30s = %6.2fx" % ("zerofree+zstd / diskferry", t["zfzs"] / t["df"]))
if not flag:
    print("  NOTE: DISKFERRY_FS_FLAG is empty: diskferry ran a plain copy")
print("commands (in the sender's namespace; DST removed before each):")
for name, cmd in (("diskferry --fs-aware", """$S_DF"""),
                  ("dd | ssh", """$S_DD"""),
                  ("dd | bzip2 | ssh", """$S_BZ"""),
                  ("zerofree + zstd | ssh", """cp --sparse=never $SLICE $OUT.zf (untimed); $S_ZF; $S_ZS""")):
    print("  %-22s %s" % (name, cmd))
PY
