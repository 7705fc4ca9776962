#!/usr/bin/env bash
# bench/sync.sh [BUILD]: diskferry sync of the 2 GiB corpus into an earlier
# copy of it, against rsync and against only reading the images.
#
# Data (DATA: BENCH_DATA, default /var/tmp/diskferry-bench):
#   A    corpus.img of bench/corpus.sh (30% random, 20% text-like, 50%
#        zeros written as bytes); never written
#   A'   sync-src.img: A's bytes with a share of its 64 KiB blocks, at
#        distinct random positions, rewritten with random data (fixed
#        SEED; bench/sync_blocks.py change; zeros as bytes, no holes),
#        regenerated for each change level; the one path that is both
#        copied and synced, as a VM's image is
#   B    sync-dst.img: `diskferry copy --write-manifest M A' B` made once,
#        while A' still held A's bytes (zeros as holes, as copy leaves
#        them); M is kept aside as it was
# Before every timed run, untimed (interleave.py --prepare): B made A's
# bytes again in place (only the blocks that differ, zero blocks punched
# back to holes, fdatasynced: bench/sync_blocks.py restore), so it keeps
# its inode and M, put back too, still describes it.  Cache: warm (A', B
# and A are read before and between runs; the machine the figures are
# for has 24 GiB of RAM); nobody fsyncs.  Each sync command is run once
# untimed first and B compared with A' afterwards.
#
# Rows, each an interleave.py run (commands interleaved, one warm-up
# round dropped, median of RUNS, default 5), 1% of the blocks changed:
#   compare:   diskferry sync --changes compare A' B   (hashes A' and
#              the data of B, writes the changed blocks, verifies them
#              by reading back what it wrote)
#              rsync --inplace --no-whole-file --ignore-times A' B
#              (the delta algorithm although both are local;
#              --ignore-times only so that a size and mtime that happen
#              to match never skip the file)
#              cat A' B > /dev/null   (reading both images)
#              goal: diskferry/cat <= 1.3x
#   manifest:  diskferry sync --changes manifest:M A' B   (reads A', and
#              B only for the proof and the read-back)
#              cat A' > /dev/null
#              goal: diskferry/cat <= 1.3x
# Then a table for LEVELS (default 0.1 1 10 % of the blocks changed; the
# same SEED, so 1% is the A' above): diskferry compare and manifest
# interleaved with each other (the 1% row reuses the medians above), and
# from one extra `--json` run of each:
#   written     bytes_written         (what diskferry wrote into B)
#   changed     sync.changed_bytes    (the blocks found to differ)
#   read SRC    bytes_read            (A' hashed, and the changed blocks
#                                      read again to be sent)
#   read DST    sync.dst_bytes_read   (B's hash tree where B holds data,
#                                      or the manifest's proof)
#
# Over ssh on loopback, at each of LEVELS (row_remote; SKIP_REMOTE=1
# leaves it out): a private sshd on 127.0.0.1 with its own keys
# (bench/loopback_sshd.sh, as bench/copy_remote.sh uses it), B the same
# file written by the far end, restored as above before every run.  Both
# tools get the same ssh command line, which names ssh's own default
# cipher list (from `ssh -G`) so that diskferry keeps it instead of
# putting AES-GCM first (it does so only when no cipher is chosen):
#   diskferry (none):  diskferry sync --overwrite --yes --changes compare
#                      --compress none --rsh SSH --remote-path DF
#                      A' 127.0.0.1:B
#                      (serve on the far end hashes B while A' is hashed
#                      here; the trees are compared by exchanging the
#                      hashes of what differs; only changed blocks go)
#   diskferry (auto):  the same with the default compression (auto)
#   rsync:             rsync --inplace --no-whole-file --ignore-times
#                      -e SSH A' 127.0.0.1:B
# interleaved, median of RUNS; bytes on the wire from one more run of
# each: diskferry's --json bytes_sent (the session's bytes in both
# directions, hashes included, before ssh), rsync's --stats "Total bytes
# sent" + "Total bytes received" (also both directions, before ssh).
# Goal: wire bytes <= 1.2 x changed bytes + 0.1% of the image, changed
# bytes being the rewritten blocks x 64 KiB.
#
# CORPUS_MB (default 2048) takes a smaller corpus to try the script out;
# it then lives in /var/tmp/diskferry-bench-<CORPUS_MB>m unless
# BENCH_DATA says otherwise, so the 2 GiB corpus is left alone.
# Needs rsync (installed when missing and run as root) and, for the rows
# over ssh, OpenSSH's client and sshd.
set -euo pipefail
BUILD=${1:-build}
DF=$(realpath "$BUILD/diskferry")
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/corpus_data.sh
. "$HERE/corpus_data.sh"
RUNS=${RUNS:-5}
LEVELS=${LEVELS:-0.1 1 10}
SEED=${SEED:-20261216}
BLOCKS=$HERE/sync_blocks.py
if ! command -v rsync >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq rsync >/dev/null
    else
        echo "sync.sh: needs rsync (apt-get install rsync)" >&2
        exit 1
    fi
fi
bash "$HERE/corpus.sh" "$DATA" "$CORPUS_MB"

A=$DATA/corpus.img
S=$DATA/sync-src.img
B=$DATA/sync-dst.img
M=$DATA/sync-dst.manifest
TMP=$(mktemp -d)
export DISKFERRY_STATE_DIR=$DATA/state
mkdir -p -m 700 "$DISKFERRY_STATE_DIR"
# shellcheck source=bench/loopback_sshd.sh
. "$HERE/loopback_sshd.sh"
trap 'bench_sshd_stop; rm -rf "$TMP" "$S" "$B" "$M"' EXIT

RESTORE="$BLOCKS restore --holes $A $B && cp $TMP/manifest $M"
DF_COMPARE="$DF sync --changes compare $S $B"
DF_MANIFEST="$DF sync --changes manifest:$M $S $B"
RSYNC="rsync --inplace --no-whole-file --ignore-times $S $B"
REMOTE=1
[ "${SKIP_REMOTE:-0}" = 1 ] && REMOTE=
if [ -n "$REMOTE" ]; then
    mkdir "$TMP/ssh"
    bench_sshd_start "$TMP/ssh"
    CIPHERS=$($BENCH_SSH -G 127.0.0.1 | awk '$1 == "ciphers" { print $2 }')
    RSH="$BENCH_SSH -o Ciphers=$CIPHERS"
    DF_REMOTE="$DF sync --overwrite --yes --changes compare --rsh '$RSH' --remote-path $DF"
    DF_R_NONE="$DF_REMOTE --compress none $S 127.0.0.1:$B"
    DF_R_AUTO="$DF_REMOTE $S 127.0.0.1:$B"
    RSYNC_R="rsync --inplace --no-whole-file --ignore-times -e '$RSH' $S 127.0.0.1:$B"
fi

# The copy B, once, of A' while it holds A's bytes.
rm -f "$S" "$B" "$M"
"$BLOCKS" change "$A" "$S" 0 "$SEED" >/dev/null
"$DF" copy --write-manifest "$M" "$S" "$B" >/dev/null
cp "$M" "$TMP/manifest"

# change PERCENT: A' becomes A with PERCENT % of its blocks rewritten;
# prints how many.
change() {
    local n
    n=$("$BLOCKS" change "$A" "$S" "$1" "$SEED")
    sh -c "$RESTORE"
    cat "$A" "$S" "$B" >/dev/null
    echo "$n"
}

# once CMD: CMD run untimed on a restored B, which must hold A' after it.
once() {
    sh -c "$RESTORE"
    sh -c "$1" >/dev/null
    if ! cmp -s "$S" "$B"; then
        echo "sync.sh: after '$1' $B differs from $S" >&2
        exit 1
    fi
}

# report MODE PERCENT CMD: one --json run of the diskferry CMD, kept.
report() {
    once "$3 --json > $TMP/report-$1-$2.json"
}

# interleave JSON TITLE NAME=CMD...: one timed row, B restored before each.
interleave() {
    local json=$1 title=$2
    shift 2
    "$HERE/interleave.py" --runs "$RUNS" --prepare "$RESTORE" \
        --json "$json" --title "$title" "$@"
}

row_compare_local() {     # row_compare_local PERCENT
    once "$DF_COMPARE"
    once "$RSYNC"
    interleave "$TMP/compare-$1.json" \
        "sync --changes compare, local files, $1% of the blocks changed (goal: diskferry/cat <= 1.3x)" \
        "diskferry=$DF_COMPARE" "rsync=$RSYNC" "cat A' B=cat $S $B >/dev/null"
}

row_manifest_local() {    # row_manifest_local PERCENT
    once "$DF_MANIFEST"
    interleave "$TMP/manifest-$1.json" \
        "sync --changes manifest:M, local files, $1% of the blocks changed (goal: diskferry/cat <= 1.3x)" \
        "diskferry=$DF_MANIFEST" "cat A'=cat $S >/dev/null"
}

row_scaling_local() {     # row_scaling_local PERCENT: both diskferry modes
    if [ ! -f "$TMP/compare-$1.json" ] || [ ! -f "$TMP/manifest-$1.json" ]; then
        interleave "$TMP/scale-$1.json" \
            "sync, local files, $1% of the blocks changed" \
            "compare=$DF_COMPARE" "manifest=$DF_MANIFEST" >/dev/null
    fi
    report compare "$1" "$DF_COMPARE"
    report manifest "$1" "$DF_MANIFEST"
}

row_remote() {            # row_remote PERCENT: over ssh on loopback
    once "$DF_R_NONE --json > $TMP/remote-none-$1.json"
    once "$DF_R_AUTO --json > $TMP/remote-auto-$1.json"
    once "rsync --stats ${RSYNC_R#rsync } > $TMP/remote-rsync-$1.txt"
    interleave "$TMP/remote-$1.json" \
        "sync over ssh on loopback, $1% of the blocks changed" \
        "diskferry (none)=$DF_R_NONE" "diskferry (auto)=$DF_R_AUTO" \
        "rsync=$RSYNC_R"
}

echo "corpus: $A ($CORPUS_MB MiB), $RUNS runs, $(basename "$DF") of $DF"
n=$(change 1)
echo "1% changed: $n blocks of 64 KiB"
echo
row_compare_local 1
echo
row_manifest_local 1
echo
for level in $LEVELS; do
    n=$(change "$level")
    row_scaling_local "$level"
    if [ -n "$REMOTE" ]; then
        echo
        row_remote "$level"
    fi
    echo "$level $n" >> "$TMP/levels"
done

/usr/bin/python3 - "$TMP" <<'PY'
import json, os, sys
tmp = sys.argv[1]
MiB = 1 << 20
def median(level, mode):
    for name, key in ((f"{mode}-{level}.json", "diskferry"),
                      (f"scale-{level}.json", mode)):
        p = os.path.join(tmp, name)
        if os.path.exists(p):
            return json.load(open(p))["median"][key]
print("time grows with the change: diskferry sync, local files "
      "(MiB from one --json run)")
print("  %-8s %7s  %-8s %8s  %9s %9s %9s %9s" % (
    "changed", "blocks", "changes", "median s", "written", "changed",
    "read SRC", "read DST"))
for line in open(os.path.join(tmp, "levels")):
    level, blocks = line.split()
    for mode in ("compare", "manifest"):
        r = json.load(open(os.path.join(tmp, f"report-{mode}-{level}.json")))
        print("  %-8s %7s  %-8s %8.2f  %9.1f %9.1f %9.1f %9.1f" % (
            level + "%", blocks, mode, median(level, mode),
            r["bytes_written"] / MiB, r["sync"]["changed_bytes"] / MiB,
            r["bytes_read"] / MiB, r["sync"]["dst_bytes_read"] / MiB))
PY
[ -n "$REMOTE" ] || exit 0
echo
/usr/bin/python3 - "$TMP" "$(stat -c %s "$S")" <<'PY'
import json, os, re, sys
tmp, size = sys.argv[1], int(sys.argv[2])
MiB = 1 << 20
def rsync_wire(path):
    n = 0
    for line in open(path):
        m = re.match(r"Total bytes (sent|received): ([\d,]+)", line)
        if m:
            n += int(m.group(2).replace(",", ""))
    return n
print("over ssh on loopback: bytes on the wire, both directions, before ssh "
      "(goal: wire <= 1.2 x changed + 0.1% of the image)")
print("  %-8s %7s %9s %9s  %-17s %8s %9s %9s %6s" % (
    "changed", "blocks", "changed", "goal", "", "median s", "wire",
    "hashes", "goal"))
for line in open(os.path.join(tmp, "levels")):
    level, blocks = line.split()
    changed = int(blocks) * 65536
    goal = 1.2 * changed + size / 1000
    med = json.load(open(os.path.join(tmp, f"remote-{level}.json")))["median"]
    first = True
    for name, what in (("diskferry (none)", "none"),
                       ("diskferry (auto)", "auto"), ("rsync", "rsync")):
        if what == "rsync":
            wire = rsync_wire(os.path.join(tmp, f"remote-rsync-{level}.txt"))
            hashes = "-"
        else:
            r = json.load(open(os.path.join(tmp, f"remote-{what}-{level}.json")))
            wire = r["bytes_sent"]
            hashes = "%9.2f" % ((r["sync"]["hash_bytes_sent"] +
                                 r["sync"]["hash_bytes_received"]) / MiB)
        head = ("%-8s %7s %9.2f %9.2f" % (level + "%", blocks, changed / MiB,
                                          goal / MiB)) if first else " " * 36
        first = False
        print("  %s  %-17s %8.2f %9.2f %9s %6s" % (
            head, name, med[name], wire / MiB, hashes,
            "met" if wire <= goal else "missed"))
print("  (MiB; wire: diskferry's --json bytes_sent, rsync's --stats total "
      "bytes sent + received; hashes: diskferry's share of wire for hash "
      "trees)")
PY
