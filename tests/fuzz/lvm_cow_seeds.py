#!/usr/bin/python3
"""Write the seed corpus of fuzz_lvm_cow (tests/fuzz/corpus/lvm_cow/) in
the form fuzz_lvm_cow.c reads (u32le store size, then records of
u32le offset, u16le length, bytes), from stores tests/tools/cowstore.py
builds.

    /usr/bin/python3 tests/fuzz/lvm_cow_seeds.py
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import cowstore  # noqa: E402

OUT = os.path.join(HERE, "corpus", "lvm_cow")
CB = 4096
E = CB // 16


def records(store, size=None):
    """The store's non-zero runs as records, after its size."""
    out = bytearray(struct.pack("<I", len(store) if size is None else size))
    i, n = 0, len(store)
    while i < n:
        if store[i] == 0:
            i += 1
            continue
        j = i
        while j < n and j - i < 65535 and any(store[j:j + 32]):
            j += 1
        out += struct.pack("<IH", i, j - i) + store[i:j]
        i = j
    return bytes(out)


def seeds():
    def tag(c):
        return b"old %d" % c
    # area 0 full, area 1 partly: scattered and neighbouring chunks
    two = [((i * 37) % 4000, tag(i)) for i in range(E + 20)]
    yield "two-areas", records(cowstore.build_store(CB, two))
    small = [(5, tag(5)), (6, tag(6)), (2, tag(2))]
    yield "64k-small", records(cowstore.build_store(64 << 10, small,
                                                    spare_chunks=1))
    yield "empty", records(cowstore.build_store(CB, []))
    yield "invalid", records(cowstore.build_store(CB, small, valid=False))
    # a full area 0 and the file ending where area 1 would start
    full = cowstore.build_store(CB, [(i, tag(i)) for i in range(E)])
    cut = cowstore.area_chunk(CB, 1) * CB
    yield "truncated", records(full[:cut])
    hdr = bytearray(cowstore.build_store(CB, small))
    struct.pack_into("<I", hdr, 12, 24)     # chunk size not a power of 2
    yield "bad-chunk-size", records(bytes(hdr))
    struct.pack_into("<II", hdr, 0, 0, 1)   # never initialised
    yield "magic0", records(bytes(hdr))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
