#!/usr/bin/env bash
# bench/corpus_real.sh DIR [SIZE_MIB]: the second benchmark corpus, made
# to compress like a real disk rather than like bench/corpus.sh's (whose
# text is eight 4 MiB blocks repeated, and so compresses far better than
# any disk).
#
#   DIR/real.img         SIZE (default 2048 MiB) of raw disk in 1 MiB
#                        regions, in a fixed shuffled order:
#                          25% random (media, archives, encrypted data:
#                              AES-CTR of zeros under a fixed key)
#                          25% binaries: the machine's own ELF files,
#                              libraries and data under /usr/lib and
#                              /usr/bin, read in sorted order
#                          10% text: C headers, documentation, Python
#                              and Perl sources under /usr, sorted
#                          40% zeros written as real zero bytes
#   DIR/real-sparse.img  its sparse twin (zeros as holes)
#
# Binaries and text come from the installed system, so the bytes are the
# same on machines with the same Debian packages, not everywhere; the
# script prints the corpus's sha256 and how well zstd -3 compresses it
# beside corpus.img, so a reader can compare.
set -euo pipefail
DIR=${1:?usage: corpus_real.sh DIR [SIZE_MIB]}
SIZE_MIB=${2:-2048}
mkdir -p "$DIR"
OUT="$DIR/real.img"
if [ -f "$OUT" ] && [ "$(stat -c %s "$OUT")" -eq $((SIZE_MIB << 20)) ] &&
   [ -f "$DIR/real-sparse.img" ]; then
    exit 0
fi
/usr/bin/python3 - "$OUT.tmp" "$SIZE_MIB" <<'PY'
import os, random, subprocess, sys
out, size_mib = sys.argv[1], int(sys.argv[2])
REG = 1 << 20
rng = random.Random(20261203)
n = size_mib
kinds = ["r"] * (n * 25 // 100) + ["b"] * (n * 25 // 100) + \
        ["t"] * (n * 10 // 100)
kinds += ["z"] * (n - len(kinds))
rng.shuffle(kinds)

TEXT_EXT = (".h", ".hpp", ".py", ".pm", ".pl", ".txt", ".md", ".html",
            ".rst", ".c", ".xml", ".json", ".conf")

def files(roots, want):
    for root in roots:
        for d, subdirs, names in os.walk(root):
            subdirs.sort()
            for name in sorted(names):
                p = os.path.join(d, name)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                if want(p, name):
                    yield p

def stream(paths):
    """The files' bytes, one after another, in 1 MiB pieces, forever."""
    while True:
        buf = b""
        for p in paths():
            try:
                with open(p, "rb") as f:
                    buf += f.read()
            except OSError:
                continue
            while len(buf) >= REG:
                yield buf[:REG]
                buf = buf[REG:]

def is_text(p, name):
    return name.endswith(TEXT_EXT) or name == "copyright"

def is_binary(p, name):
    return not name.endswith(TEXT_EXT) and os.path.getsize(p) >= 16384

text = stream(lambda: files(["/usr/include", "/usr/share/doc",
                             "/usr/lib/python3", "/usr/lib/python3.11",
                             "/usr/share/perl", "/usr/share/perl5"],
                            is_text))
binary = stream(lambda: files(["/usr/lib/x86_64-linux-gnu", "/usr/bin",
                               "/usr/libexec", "/usr/lib/gcc"], is_binary))
aes = subprocess.Popen(
    "openssl enc -aes-128-ctr -nosalt -K 0f0e0d0c0b0a09080706050403020100 "
    "-iv 00000000000000000000000000000000 < /dev/zero 2>/dev/null",
    shell=True, stdout=subprocess.PIPE)
zero = bytes(REG)
with open(out, "wb") as f:
    for k in kinds:
        if k == "r":
            f.write(aes.stdout.read(REG))
        elif k == "t":
            f.write(next(text))
        elif k == "b":
            f.write(next(binary))
        else:
            f.write(zero)
aes.kill()
PY
mv "$OUT.tmp" "$OUT"
cp --sparse=always "$OUT" "$DIR/real-sparse.img"
echo "corpus_real.sh: $(sha256sum "$OUT" | cut -c1-16)…  $OUT"
for c in "$DIR/corpus.img" "$OUT"; do
    [ -f "$c" ] || continue
    z=$(zstd -3 -T0 -q -c "$c" | wc -c)
    echo "corpus_real.sh: zstd -3: $(basename "$c") $((z >> 20)) MiB of $(( $(stat -c %s "$c") >> 20)) MiB"
done
