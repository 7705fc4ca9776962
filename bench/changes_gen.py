#!/usr/bin/python3
"""bench/changes_gen.py: the changed sources of bench/changes.sh.

  changes_gen.py cow PRISTINE ORIGIN STORE PERCENT SEED
      ORIGIN becomes PRISTINE's bytes with PERCENT % of its 64 KiB chunks
      (distinct random positions from SEED) rewritten with random data,
      as a VM writes its disk after an LVM snapshot; STORE becomes the
      snapshot's COW store in the kernel's format (64 KiB chunks) holding
      those chunks' old contents (tests/tools/cowstore.py).  Prints the
      number of chunks.
  changes_gen.py qemu-io SIZE PERCENT SEED
      The qemu-io commands (one per line) that rewrite PERCENT % of the
      64 KiB chunks of a SIZE-byte disk, at the same positions as `cow`
      with the same SEED.
"""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests",
                                "tools"))
from cowstore import write_store  # noqa: E402

CHUNK = 64 << 10


def positions(size, percent, seed):
    rnd = random.Random(seed)
    n = size // CHUNK
    k = max(1, int(n * percent / 100))
    return rnd, sorted(rnd.sample(range(n), k))


def cow(pristine, origin, store, percent, seed):
    size = os.path.getsize(pristine)
    rnd, chunks = positions(size, percent, seed)
    entries = []
    with open(pristine, "rb") as a, open(origin, "r+b") as o:
        for c in chunks:
            a.seek(c * CHUNK)
            old = a.read(CHUNK)
            entries.append((c, old))
            o.seek(c * CHUNK)
            o.write(rnd.randbytes(CHUNK))
        o.flush()
        os.fdatasync(o.fileno())
    rnd.shuffle(entries)            # the kernel's table is in write order
    write_store(store, CHUNK, entries)
    print(len(chunks))


def qemu_io(size, percent, seed):
    rnd, chunks = positions(size, percent, seed)
    for c in chunks:
        print("write -P 0x%02x %d %d" % (rnd.randrange(1, 256), c * CHUNK,
                                         CHUNK))


if __name__ == "__main__":
    if sys.argv[1] == "cow":
        cow(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]),
            int(sys.argv[6]))
    elif sys.argv[1] == "qemu-io":
        qemu_io(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
