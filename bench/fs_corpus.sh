#!/usr/bin/env bash
# bench/fs_corpus.sh IMG SIZE_MIB [FILL_PCT] [DELETE_PCT]: a raw disk
# image holding an ext4 file system that has been used, for
# bench/fs_aware.sh.  Kept when IMG.done says it was made with the same
# parameters (and generator version); made again otherwise.
#
#   1. IMG: SIZE_MIB of zero bytes written out (a fully allocated raw
#      file: blocks never used read as zeros and are not holes).
#   2. mkfs.ext4 -F -b 4096, inode tables and journal written now
#      (lazy_itable_init=0, lazy_journal_init=0, nodiscard), so that
#      nothing is written behind the benchmark's back at mount time.
#   3. Mounted through a loop device of its own; files written until df
#      says FILL_PCT (default 70) % of the blocks are in use (metadata
#      and journal included).  Sizes log-uniform between 2 KiB and
#      16 MiB, 40 files a directory; content by file, drawn so that by
#      bytes about 30% is random (compressed media, packages), 35% text
#      (lines drawn from a pool of 200,000 lines of a Zipf vocabulary)
#      and 35% binary-like (tokens of 4..32 bytes from a Zipf-weighted
#      vocabulary whose bytes are themselves skewed).  No block repeats
#      another: what a compressor finds is what a used disk offers it.
#      Fixed seed: the same files on every run and machine (where the
#      blocks land is ext4's choice).
#   4. Files drawn at random (same seed) and deleted until DELETE_PCT
#      (default 35) % of the bytes written are gone; their blocks keep
#      their stale data.  Unmounted, loop device detached, then
#      `e2fsck -fn` must find it clean.
set -euo pipefail
IMG=${1:?usage: fs_corpus.sh IMG SIZE_MIB [FILL_PCT] [DELETE_PCT]}
SIZE_MIB=${2:?usage: fs_corpus.sh IMG SIZE_MIB [FILL_PCT] [DELETE_PCT]}
FILL=${3:-70}
DELETE=${4:-35}
VERSION=1
STAMP="fs_corpus v$VERSION size=${SIZE_MIB}MiB fill=$FILL delete=$DELETE"
if [ -f "$IMG" ] && [ -f "$IMG.done" ] && [ "$(cat "$IMG.done")" = "$STAMP" ]; then
    exit 0
fi
rm -f "$IMG" "$IMG.done"
mkdir -p "$(dirname "$IMG")"
MNT=$(mktemp -d)
LOOP=
cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT"; fi
    if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || true; fi
    rmdir "$MNT"
}
trap cleanup EXIT
trap "exit 130" INT TERM     # so that cleanup runs then too
echo "fs_corpus.sh: making $IMG ($STAMP)" >&2
dd if=/dev/zero of="$IMG" bs=1M count="$SIZE_MIB" status=none
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard \
    -L dfbench "$IMG"
LOOP=$(losetup -f --show "$IMG")
mount -t ext4 -o nodiscard "$LOOP" "$MNT"
/usr/bin/python3 - "$MNT" "$FILL" "$DELETE" <<'PY'
import itertools, math, os, random, sys
mnt, fill, delete = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261203)
letters = "etaoinshrdlucmfwypvbgkqjxz"
vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 11)))
         for _ in range(20000)]
def cum(w):              # cumulative weights, computed once
    return list(itertools.accumulate(w))
vw = cum(1.0 / (i + 1) for i in range(len(vocab)))
lines = []
for _ in range(200000):
    words = rng.choices(vocab, cum_weights=vw, k=rng.randint(3, 16))
    sep = rng.choice((" ", " ", " ", ", ", "\t", "  "))
    lines.append((sep.join(words) + rng.choice((".", "", ";", ":")) + "\n")
                 .encode())
bw = cum(1.0 / (i + 1) ** 1.2 for i in range(256))
byte_order = list(range(256))
rng.shuffle(byte_order)
tokens = [bytes(rng.choices(byte_order, cum_weights=bw, k=rng.randint(4, 32)))
          for _ in range(30000)]
tw = cum(1.0 / (i + 1) for i in range(len(tokens)))

def content(kind, n):
    if kind == "random":
        return rng.randbytes(n)
    pool, w, avg = (lines, None, 60) if kind == "text" else (tokens, tw, 18)
    out = b"".join(rng.choices(pool, cum_weights=w, k=n // avg + 64))
    while len(out) < n:
        out += b"".join(rng.choices(pool, cum_weights=w, k=n // avg + 64))
    return out[:n]

def used_fraction():
    s = os.statvfs(mnt)
    return (s.f_blocks - s.f_bfree) / s.f_blocks

files = []
lo, hi = math.log(2 << 10), math.log(16 << 20)
while used_fraction() < fill / 100:
    n = int(math.exp(rng.uniform(lo, hi)))
    kind = rng.choices(("random", "text", "binary"), (30, 35, 35))[0]
    d = os.path.join(mnt, "d%03d" % (len(files) // 40))
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "f%05d.%s" % (len(files), kind[:3]))
    try:
        with open(path, "wb") as f:
            f.write(content(kind, n))
    except OSError:         # full: the last file is as far as it goes
        os.unlink(path)
        break
    files.append((path, n))
total = sum(n for _, n in files)
order = list(range(len(files)))
rng.shuffle(order)
gone = 0
for i in order:
    if gone >= total * delete / 100:
        break
    os.unlink(files[i][0])
    gone += files[i][1]
os.sync()
print("fs_corpus.sh: %d files, %d MiB written, %d MiB of them deleted, "
      "%.1f%% of the blocks in use" % (len(files), total >> 20, gone >> 20,
                                       100 * used_fraction()),
      file=sys.stderr)
PY
umount "$MNT"
losetup -d "$LOOP"
LOOP=
if ! out=$(e2fsck -fn "$IMG" 2>&1); then
    echo "$out" >&2
    echo "fs_corpus.sh: $IMG: e2fsck -fn finds it unclean" >&2
    exit 1
fi
echo "$STAMP" > "$IMG.done"
