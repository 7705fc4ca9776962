#!/usr/bin/python3
"""Write the seed corpus of fuzz_qcow2_bitmap (tests/fuzz/corpus/
qcow2_bitmap/): small qcow2 files (512-byte clusters, a few KiB) with
dirty bitmaps made by qemu-img and qemu-io, and broken copies of them.

    /usr/bin/python3 tests/fuzz/qcow2_bitmap_seeds.py
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import qcow2bm as q  # noqa: E402

OUT = os.path.join(HERE, "corpus", "qcow2_bitmap")


def made(d, name, size="8M", bitmaps=(("b0", 512, True),), writes=(),
         later=(), compat=None):
    """An image: bitmaps added (disabled after `writes` when not
    enabled), then `later` writes."""
    p = os.path.join(d, name + ".qcow2")
    q.create(p, size=size, cluster=512, compat=compat)
    for b, g, _ in bitmaps:
        q.bitmap(p, "add", b, g)
    if writes:
        q.write(p, *writes)
    for b, _, enabled in bitmaps:
        if not enabled:
            q.bitmap(p, "disable", b)
    if later:
        q.write(p, *later)
    return bytearray(open(p, "rb").read())


def killed(d):
    """A bitmap left in use by a qemu-io killed after a write."""
    p = os.path.join(d, "killed.qcow2")
    q.create(p, size="1M", cluster=512)
    q.bitmap(p, "add", "b0", 512)
    io = q.QemuIo(p)
    try:
        io.cmd("write 4k 4k")
    finally:
        io.kill()
    return bytearray(open(p, "rb").read())


def variants(base):
    """Broken copies of an image whose first bitmap is b0."""
    x = q.ext(base)
    e = q.entries(base)[0]

    def copy(fn):
        b = bytearray(base)
        fn(b)
        return b

    def entry(off, fmt, val):
        return copy(lambda b: q.put(b, e["at"] + off, fmt, val))

    def extra(flags):
        def fn(b):
            f = dict(e, extra=b"\x11" * 8, flags=e["flags"] | flags)
            q.rewrite_dir(b, [f] + q.entries(b)[1:])
        return copy(fn)

    return {
        "bad-gran-0": entry(17, ">B", 0),
        "bad-gran-40": entry(17, ">B", 40),
        "bad-table-past-eof": entry(0, ">Q", 1 << 30),
        "bad-table-size": entry(8, ">I", e["table_size"] + 1),
        "bad-data-past-eof": copy(lambda b: q.put(
            b, e["table_off"], ">Q", 1 << 30)),
        "all-ones-entry": copy(lambda b: q.put(b, e["table_off"], ">Q", 1)),
        "bad-dir-past-eof": copy(lambda b: q.put(b, x[0] + 16, ">Q",
                                                 1 << 30)),
        "bad-nb-more": copy(lambda b: q.put(b, x[0], ">I", x[1] + 1)),
        "bad-truncated": bytearray(base[:x[3] + 12]),
        "not-kept": copy(lambda b: q.put(b, q.OFF_AUTOCLEAR, ">Q", 0)),
        "extra-compatible": extra(q.FLAG_EXTRA_COMPAT),
        "bad-extra-required": extra(0),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    with tempfile.TemporaryDirectory() as d:
        one = made(d, "one", writes=("write 0 512", "write 1M 1k",
                                     "write 7M 4k"))
        seeds["one"] = one
        two = made(d, "two", bitmaps=(("b0", 4096, True),
                                      ("b1", 512, False)),
                   writes=("write 64k 512",), later=("write 3M 8k",))
        seeds["two"] = two
        seeds["v2"] = made(d, "v2", bitmaps=(), writes=("write 0 512",),
                           compat="0.10")
        seeds["in-use"] = killed(d)
        seeds.update(variants(one))
        dup = bytearray(two)
        q.put(dup, q.entries(two)[1]["at"] + 25, ">B", ord("0"))
        seeds["bad-duplicate-names"] = dup
    for name, buf in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(buf)
        print("%-24s %6d bytes" % (name, len(buf)))


if __name__ == "__main__":
    main()
