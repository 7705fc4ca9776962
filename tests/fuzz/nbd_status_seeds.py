#!/usr/bin/python3
"""Write the seed corpus of fuzz_nbd_status (tests/fuzz/corpus/nbd_status/)
in the form fuzz_nbd_status.c reads: u64 BE offset << 2, u32 BE length - 1,
u8 list cap - 1, then the block-status entries (u32 BE length, flags).

    /usr/bin/python3 tests/fuzz/nbd_status_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "nbd_status")
DIRTY, HOLE, ZERO = 1, 1, 2


def seed(off, length, cap, entries):
    return (struct.pack(">QIB", off << 2, length - 1, cap - 1) +
            b"".join(struct.pack(">II", n, f) for n, f in entries))


SEEDS = {
    # valid: a clean, a dirty and a clean run, all of the request
    "three-runs": seed(1 << 20, 3 * 65536, 64,
                       [(65536, 0), (65536, DIRTY), (65536, 0)]),
    # valid: shorter than asked
    "short": seed(0, 1 << 30, 64, [(65536, DIRTY)]),
    # valid: the last entry runs past the request
    "past-end": seed(0, 65536, 64, [(4096, 0), (0xffffffff, DIRTY)]),
    # valid: every other granule dirty, into a list of 4
    "full-list": seed(0, 16 * 512, 4, [(512, DIRTY), (512, 0)] * 8),
    # base:allocation flags
    "alloc": seed(0, 12288, 64, [(4096, 0), (4096, HOLE | ZERO),
                                 (4096, ZERO)]),
    # broken: an empty extent
    "zero-length": seed(0, 65536, 64, [(4096, DIRTY), (0, DIRTY)]),
    # broken: entries past a covered request
    "extra": seed(0, 4096, 64, [(4096, 0), (4096, DIRTY)]),
    # broken: no entries, an odd count
    "empty": seed(0, 4096, 64, []),
    "odd": seed(0, 4096, 64, [])[:] + struct.pack(">I", 4096),
    # near the top of the offsets
    "top": seed((1 << 62) - 4096, 4096, 64, [(0xffffffff, DIRTY)]),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
