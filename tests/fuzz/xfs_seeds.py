#!/usr/bin/python3
"""Write the seed corpus of fuzz_xfs (tests/fuzz/corpus/xfs/): sparse
disks in fuzz_xfs.c's format (u64 be size, then chunks of u64 be offset,
u32 be length, bytes) holding the metadata of fresh mkfs.xfs images
(superblock, each AG's header block and free-space tree root, the head
of the log; the rest reads as zeros), broken variants of them, and swap
headers.  Needs xfsprogs and mkswap.

    /usr/bin/python3 tests/fuzz/xfs_seeds.py
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from xfsgen import refresh_crc  # noqa: E402

OUT = os.path.join(HERE, "corpus", "xfs")
M = 1 << 20


def sb(img, field):
    r = subprocess.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p " + field,
                        img], capture_output=True, text=True, check=True)
    return int(r.stdout.split("=")[1].strip(), 0)


def agf(img, ag, field):
    r = subprocess.run(["xfs_db", "-r", "-c", "agf %d" % ag, "-c",
                        "p " + field, img], capture_output=True, text=True,
                       check=True)
    return int(r.stdout.split("=")[1].strip(), 0)


def chunks_of(img):
    """[(offset, bytes)] of the metadata the reader looks at."""
    bs, agblocks = sb(img, "blocksize"), sb(img, "agblocks")
    out = []
    with open(img, "rb") as f:
        def grab(off, n):
            f.seek(off)
            out.append((off, f.read(n)))
        for ag in range(sb(img, "agcount")):
            start = ag * agblocks * bs
            grab(start, max(bs, 2048))
            grab(start + agf(img, ag, "bnoroot") * bs, bs)
        ls = sb(img, "logstart")
        lag, lbno = ls >> sb(img, "agblklog"), ls & ((1 << sb(img, "agblklog")) - 1)
        grab((lag * agblocks + lbno) * bs, 2048)
    return out


def encode(size, chunks):
    b = struct.pack(">Q", size)
    for off, data in chunks:
        b += struct.pack(">QI", off, len(data)) + data
    return b


def patched(chunks, which, at, data):
    c = [list(x) for x in chunks]
    buf = bytearray(c[which][1])
    buf[at:at + len(data)] = data
    c[which][1] = bytes(buf)
    return [tuple(x) for x in c]


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, "x.img")
        for name, opts in [("v5", []), ("v4", ["-m", "crc=0"]),
                           ("v5-1k-rmap", ["-b", "size=1024", "-m",
                                           "rmapbt=1"])]:
            with open(img, "wb") as f:
                f.truncate(300 * M)
            subprocess.run(["mkfs.xfs", "-q", "-f"] +
                           opts + [img], check=True, capture_output=True)
            ch = chunks_of(img)
            size = os.path.getsize(img)
            seeds[name] = encode(size, ch)
            if name != "v5":
                continue
            seeds["v5-agf-magic"] = encode(size, patched(ch, 0, 512, b"XAGX"))
            inprog = patched(ch, 0, 126, b"\1")
            sector = bytearray(inprog[0][1][:512])
            refresh_crc(sector, 224)
            inprog = patched(inprog, 0, 0, bytes(sector))
            seeds["v5-inprogress"] = encode(size, inprog)
            seeds["v5-log-cycle2"] = encode(size, patched(ch, -1, 4,
                                                          b"\0\0\0\2"))
            seeds["v5-short-disk"] = encode(100 * M, ch)
        swap = os.path.join(tmp, "s.img")
        with open(swap, "wb") as f:
            f.truncate(16 * M)
        subprocess.run(["mkswap", swap], check=True, capture_output=True)
        with open(swap, "rb") as f:
            page = f.read(4096)
        seeds["swap"] = encode(16 * M, [(0, page)])
        seeds["swap-hibernated"] = encode(
            16 * M, [(0, page[:4086] + b"S1SUSPEND\0")])
    for name, data in seeds.items():
        assert len(data) <= 100 * 1024, name
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
