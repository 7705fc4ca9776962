#!/usr/bin/env bash
# bench/corpus.sh DIR [SIZE_MIB]: the reproducible benchmark corpus.
#
#   DIR/corpus.img         SIZE (default 2048 MiB) of raw disk: 30% random,
#                          20% text-like, 50% zeros written as real zero
#                          bytes, in 4 MiB segments in a fixed shuffled order
#   DIR/corpus-sparse.img  its sparse twin (zeros as holes)
#
# The same bytes on every run and machine: random data is AES-CTR of
# zeros under a fixed key, text is generated from a seeded word list.
set -euo pipefail
DIR=${1:?usage: corpus.sh DIR [SIZE_MIB]}
SIZE_MIB=${2:-2048}
mkdir -p "$DIR"
OUT="$DIR/corpus.img"
if [ -f "$OUT" ] && [ "$(stat -c %s "$OUT")" -eq $((SIZE_MIB << 20)) ] &&
   [ -f "$DIR/corpus-sparse.img" ]; then
    exit 0
fi
/usr/bin/python3 - "$OUT" "$SIZE_MIB" <<'PY'
import random, subprocess, sys
out, size_mib = sys.argv[1], int(sys.argv[2])
SEG = 4 << 20
nseg = size_mib * (1 << 20) // SEG
rng = random.Random(20261122)
kinds = ["r"] * (nseg * 30 // 100) + ["t"] * (nseg * 20 // 100)
kinds += ["z"] * (nseg - len(kinds))
rng.shuffle(kinds)
# Text: lines of words drawn from a Zipf-like vocabulary.
vocab = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz")
                 for _ in range(rng.randint(2, 10))) for _ in range(4000)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]
def text_block():
    words = rng.choices(vocab, weights, k=SEG // 5)
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) >= rng.randint(6, 14):
            lines.append(" ".join(line) + ".\n")
            line = []
    return ("".join(lines).encode() * 2)[:SEG]
texts = [text_block() for _ in range(8)]
aes = subprocess.Popen(
    "openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f "
    "-iv 00000000000000000000000000000000 < /dev/zero",
    shell=True, stdout=subprocess.PIPE)
zero = bytes(SEG)
with open(out, "wb") as f:
    for i, k in enumerate(kinds):
        if k == "r":
            f.write(aes.stdout.read(SEG))
        elif k == "t":
            f.write(texts[i % len(texts)])
        else:
            f.write(zero)
aes.kill()
PY
cp --sparse=always "$OUT" "$DIR/corpus-sparse.img"
