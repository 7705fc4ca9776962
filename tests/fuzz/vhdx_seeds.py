#!/usr/bin/python3
"""Write the seed corpus of fuzz_vhdx (tests/fuzz/corpus/vhdx/) in the
record form fuzz_vhdx.c reads, from qemu-made and built images.

    /usr/bin/python3 tests/fuzz/vhdx_seeds.py
"""
import os
import struct
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import vhdxgen as g  # noqa: E402

MIB = g.MIB
OUT = os.path.join(HERE, "corpus", "vhdx")


def records(buf, flags=0):
    """The non-zero runs of buf as records, then one byte at EOF."""
    out = bytearray([flags])
    i, n = 0, len(buf)
    while i < n:
        if buf[i] == 0:
            i += 1
            continue
        j = i
        zeros = 0
        while j < n and (j - i) < 65535 and zeros < 32:
            zeros = zeros + 1 if buf[j] == 0 else 0
            j += 1
        j -= zeros
        out += struct.pack("<IH", i, j - i) + bytes(buf[i:j])
        i = j
    out += struct.pack("<IH", n - 1, 1) + bytes(buf[n - 1:n])
    return bytes(out)


def qemu(opts, size, writes):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "a.vhdx")
        subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", "-o", opts,
                        p, size], check=True)
        argv = ["qemu-io", "-f", "vhdx"]
        for w in writes:
            argv += ["-c", w]
        subprocess.run(argv + [p], check=True, capture_output=True)
        return open(p, "rb").read()


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    seeds["qemu-dynamic"] = qemu("block_size=1M", "8M",
                                 ["write -P 0x5a 1M 4k", "write -z 3M 1M"])
    seeds["qemu-fixed"] = qemu("subformat=fixed,block_size=1M", "4M",
                               ["write -P 0x11 512 512"])
    small = bytes(range(256)) * 16
    seeds["built-4096"] = g.build(8 * MIB, lss=4096, blocks={
        1: (g.FULLY_PRESENT, small), 2: (g.ZERO, None)}).buf
    seeds["built-chunks"] = g.build(5 << 30, blocks={
        4097: (g.FULLY_PRESENT, small), 3: (g.UNMAPPED, None)}).buf
    kv = [("parent_linkage", "{%s}" % uuid.uuid4()),
          ("parent_linkage2", "{%s}" % uuid.uuid4()),
          ("relative_path", ".\\p.vhdx"),
          ("absolute_win32_path", "\\\\?\\C:\\p.vhdx")]
    bits = bytes([0x0f, 0xf0]) + bytes(254)
    seeds["built-diff"] = g.build(4 * MIB, parent_kv=kv, blocks={
        0: (g.PARTIALLY_PRESENT, small), 1: (g.FULLY_PRESENT, small),
        2: (g.ZERO, None)}, bitmaps={0: bits}).buf
    lg = uuid.uuid4().bytes_le
    base = g.build(4 * MIB, blocks={0: (g.FULLY_PRESENT, small)})
    entry = g.log_entry(1, lg, len(base.buf),
                        [(base.offsets["payload"][0], small)])
    seeds["built-dirty-log"] = g.build(
        4 * MIB, blocks={0: (g.FULLY_PRESENT, small)}, log_guid=lg,
        log=entry).buf
    off = base.offsets["payload"][0]
    e1 = g.log_entry(9, lg, len(base.buf), [(off, small), (off + 8192, 4096)],
                     tail=g.LOG_LEN - 8192)
    e2 = g.log_entry(10, lg, len(base.buf), [(off + 4096, small)],
                     tail=g.LOG_LEN - 8192, last=len(base.buf) + MIB)
    seeds["built-log-wrap"] = g.build(
        4 * MIB, blocks={0: (g.FULLY_PRESENT, small)}, log_guid=lg,
        log=g.log_region([(g.LOG_LEN - 8192, e1), (0, e2)])).buf
    for name, buf in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(records(buf))


if __name__ == "__main__":
    main()
