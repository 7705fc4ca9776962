#!/usr/bin/python3
"""bench/changes_gen.py: the changed sources of bench/changes.sh.

  changes_gen.py cow PRISTINE ORIGIN STORE PERCENT SEED
      ORIGIN becomes PRISTINE's bytes with PERCENT % of its 64 KiB chunks
      (distinct random positions from SEED) rewritten with random data,
      as a VM writes its disk after an LVM snapshot; STORE becomes the
      snapshot's COW store in the kernel's format (64 KiB chunks) holding
      those chunks' old contents (tests/tools/cowstore.py).  Prints the
      number of chunks.
  changes_gen.py cowd PRISTINE DIR PERCENT SEED
      A VMware vmfsSparse (COWD) delta of the same chunks over a copy of
      PRISTINE: DIR/base.vmdk (a vmfs descriptor over base-flat.vmdk, a
      hard link to PRISTINE), DIR/child.vmdk and child-delta.vmdk (64 KiB
      grains, random data), and DIR/want.raw, the chain's content.
  changes_gen.py qemu-io SIZE PERCENT SEED
      The qemu-io commands (one per line) that rewrite PERCENT % of the
      64 KiB chunks of a SIZE-byte disk, at the same positions as `cow`
      with the same SEED.
"""
import os
import random
import struct
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


def descriptor(kind, extent, cid, parent_cid, parent=None):
    lines = ["# Disk DescriptorFile", "version=1", "CID=%08x" % cid,
             "parentCID=%08x" % parent_cid, 'createType="%s"' % kind]
    if parent:
        lines.append('parentFileNameHint="%s"' % parent)
    lines += ["", "# Extent description", extent, "", "# The Disk Data Base",
              "#DDB", 'ddb.adapterType = "lsilogic"']
    return ("\n".join(lines) + "\n").encode()


def cowd(pristine, d, percent, seed):
    """vmfsSparse layout: a 2048-byte header (COWD, version 1, flags 3,
    sectors, grain sectors, GD at sector 4, GD entries), the GD, 4096-entry
    grain tables of sector numbers, then the grains."""
    size = os.path.getsize(pristine)
    sectors, grain = size // 512, CHUNK // 512
    rnd, chunks = positions(size, percent, seed)
    flat = os.path.join(d, "base-flat.vmdk")
    if not os.path.exists(flat):
        os.link(pristine, flat)
    open(os.path.join(d, "base.vmdk"), "wb").write(descriptor(
        "vmfs", 'RW %d VMFS "base-flat.vmdk"' % sectors, 0xb0b0b0b0,
        0xffffffff))
    open(os.path.join(d, "child.vmdk"), "wb").write(descriptor(
        "vmfsSparse", 'RW %d VMFSSPARSE "child-delta.vmdk"' % sectors,
        0xc1c1c1c1, 0xb0b0b0b0, "base.vmdk"))
    n = -(-sectors // (4096 * grain))
    hdr = struct.pack("<4sIIIIIII", b"COWD", 1, 3, sectors, grain, 4, n, 0)
    gd_sect = -(-n * 4 // 512)
    nxt = 4 + gd_sect
    tables = sorted({c // 4096 for c in chunks})
    gt_at = {}
    for t in tables:
        gt_at[t] = nxt
        nxt += 32
    gts = {t: [0] * 4096 for t in tables}
    for i, c in enumerate(chunks):
        gts[c // 4096][c % 4096] = nxt + i * grain
    want = os.path.join(d, "want.raw")
    with open(pristine, "rb") as a, open(want, "wb") as w:
        while True:
            b = a.read(64 << 20)
            if not b:
                break
            w.write(b)
    with open(os.path.join(d, "child-delta.vmdk"), "wb") as f, \
            open(want, "r+b") as w:
        f.write(hdr.ljust(2048, b"\0"))
        f.write(struct.pack("<%dI" % n, *[gt_at.get(t, 0) for t in range(n)])
                .ljust(gd_sect * 512, b"\0"))
        for t in tables:
            f.write(struct.pack("<4096I", *gts[t]))
        for c in chunks:
            data = rnd.randbytes(CHUNK)
            f.write(data)
            w.seek(c * CHUNK)
            w.write(data)
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
    elif sys.argv[1] == "cowd":
        cowd(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "qemu-io":
        qemu_io(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
