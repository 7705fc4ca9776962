"""VHDX: qemu-made images read as qemu-img reads them; what qemu cannot
make (differencing, 4096-byte sectors, dirty logs, corruption) built
here from the layout (vhdxgen.py) and checked against the expected raw
content computed in Python, or against qemu where qemu reads it.
"""
import json
import os
import struct
import subprocess
import uuid

import pytest

from conftest import IMGCAT, VG, df, files_equal, imgcat, qemu_raw, sh
import vhdxgen as g

MIB = g.MIB


def imgcat_to(img, out, *args):
    """imgcat IMG > out; returns the CompletedProcess (stderr only)."""
    with open(out, "wb") as f:
        p = subprocess.run(VG + [IMGCAT] + [str(a) for a in args] +
                           [str(img)], stdout=f, stderr=subprocess.PIPE,
                           timeout=600)
    assert p.returncode >= 0, "imgcat killed by signal %d" % -p.returncode
    return p


def expect_corrupt(img, *words, args=()):
    p = imgcat(*args, img)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 5, (p.returncode, err)
    for w in words:
        assert w in err, (w, err)
    return err


def layer_map(img, *args):
    p = imgcat("--map", "--layer", *args, img)
    assert p.returncode == 0, p.stderr
    return [(int(a), int(b), c) for a, b, c in
            (line.split() for line in p.stdout.decode().splitlines())]


def qemu_io(img, *cmds):
    argv = ["qemu-io", "-f", "vhdx"]
    for c in cmds:
        argv += ["-c", c]
    sh(argv + [str(img)])


# ----------------------------------------------------------------------------
# Images qemu makes


QEMU_CASES = [
    # (id, size, create options, writes)
    ("dynamic-1M", "64M", "block_size=1M",
     ["write -P 0x11 0 4k", "write -P 0x22 1536k 700k", "write -P 0x33 63M 1M",
      "write -z 1540k 8k"]),
    ("dynamic-8M", "64M", "block_size=8M",
     ["write -P 0x44 5M 64k", "write -P 0x55 17M 9M",
      "write -P 0x66 67108352 512"]),
    ("dynamic-32M", "100M", "block_size=32M",
     ["write -P 0x77 31M 2M", "write -P 0x78 99M 1M"]),
    ("fixed-1M", "16M", "subformat=fixed,block_size=1M",
     ["write -P 0x99 3M 100k", "write -P 0x9a 15M 1M"]),
    # 5 GiB at 1 MiB blocks: block 4096 and on sit past the first
    # sector bitmap entry (chunk ratio 4096).
    ("chunks-1M", "5G", "block_size=1M",
     ["write -P 0xab 4095M 2M", "write -P 0xac 4600M 4k"]),
    # 256 MiB blocks: chunk ratio 16.
    ("chunks-256M", "5G", "block_size=256M",
     ["write -P 0xcd 4352M 4k", "write -P 0xce 4095M 2M"]),
    ("odd-size", "1000", "", ["write -P 0x12 512 512"]),
]


def parse_size(s):
    units = {"k": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def expected_writes(writes):
    """[(off, len, byte)] of the qemu-io writes, in order (-z: 0)."""
    out = []
    for w in writes:
        parts = w.split()
        byte = int(parts[2], 16) if parts[1] == "-P" else 0
        out.append((parse_size(parts[-2]), parse_size(parts[-1]), byte))
    return out


@pytest.mark.parametrize("case", QEMU_CASES, ids=[c[0] for c in QEMU_CASES])
def test_qemu_image(tmp_path, case):
    name, size, opts, writes = case
    img = tmp_path / "a.vhdx"
    sh(["qemu-img", "create", "-q", "-f", "vhdx"] +
       (["-o", opts] if opts else []) + [str(img), size])
    qemu_io(img, *writes)
    # qemu replays and clears its log when it closes the file.
    assert g.log_guid(img) == b"\0" * 16
    extents = layer_map(img)
    assert extents[0][0] == 0
    vsize = sum(e[1] for e in extents)
    if vsize > 1 << 30:
        # Too big to convert and hash twice in a fast test (5 GiB through
        # a pipe takes many seconds here): the map shows the BAT index
        # math, data exactly in the blocks written, including those past
        # the first chunk's sector bitmap entry.
        bs = parse_size(opts.split("=")[1])
        want = set()
        for off, length, byte in expected_writes(writes):
            want |= set(range(off // bs, -(-(off + length) // bs)))
        got = set()
        for o, n, st in extents:
            if st == "data":
                got |= set(range(o // bs, (o + n) // bs))
        assert got == want
    else:
        ref = qemu_raw(img, tmp_path / "ref.raw", fmt="vhdx")
        out = tmp_path / "out.raw"
        p = imgcat_to(img, out)
        assert p.returncode == 0, p.stderr
        assert files_equal(out, ref)
        assert vsize == os.path.getsize(ref)
    # Every written range maps as data.
    data = [(o, n) for o, n, st in extents if st == "data"]
    for off, length, byte in expected_writes(writes):
        if byte and "fixed" not in name:
            assert any(o <= off and off + length <= o + n for o, n in data)


def test_zero_size(tmp_path):
    """VirtualDiskSize 0 (or below one sector) is no disk: refused rather
    than copied as a 0-byte disk."""
    img = tmp_path / "z.vhdx"
    sh(["qemu-img", "create", "-q", "-f", "vhdx", str(img), "0"])
    expect_corrupt(img, "virtual disk size 0 is below 512")
    for size in (0, 1, 511):
        b = g.build(size).write(tmp_path / ("b%d.vhdx" % size))
        expect_corrupt(b, "virtual disk size %d is below 512" % size)


@pytest.mark.parametrize("extra", [100, 1000])
def test_size_not_sector_multiple(tmp_path, extra):
    """A size that is not a multiple of 512 reads as its whole sectors,
    as qemu reads it."""
    size = 8 * MIB + extra
    data = pattern(3, 2 * MIB)
    img = g.build(size, blocks={8: (g.FULLY_PRESENT, data)})
    img = img.write(tmp_path / "a.vhdx")
    want = qemu_raw(img, tmp_path / "q.raw", fmt="vhdx").read_bytes()
    assert len(want) == size - extra % 512
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == want


# ----------------------------------------------------------------------------
# Built images: what qemu cannot make


def pattern(seed, n):
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(256)) * (n // 256)


def test_logical_sector_4096(tmp_path):
    """qemu 7.2 refuses 4096-byte logical sectors: check against Python."""
    vsize = 16 * MIB
    blocks = {0: (g.FULLY_PRESENT, pattern(1, MIB)),
              3: (g.ZERO, None),
              5: (g.FULLY_PRESENT, pattern(2, 64 * 1024)),
              15: (g.FULLY_PRESENT, pattern(3, MIB))}
    img = g.build(vsize, lss=4096, blocks=blocks).write(tmp_path / "a.vhdx")
    want = bytearray(vsize)
    for b, (st, data) in blocks.items():
        if data:
            want[b * MIB:b * MIB + len(data)] = data
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    assert layer_map(img) == [
        (0, MIB, "data"), (MIB, 2 * MIB, "hole"), (3 * MIB, MIB, "zero"),
        (4 * MIB, MIB, "hole"), (5 * MIB, MIB, "data"),
        (6 * MIB, 9 * MIB, "hole"), (15 * MIB, MIB, "data")]


def test_built_matches_qemu(tmp_path):
    """The generator's dynamic images read the same in qemu and here."""
    blocks = {1: (g.FULLY_PRESENT, pattern(4, MIB)), 2: (g.UNDEFINED, None),
              3: (g.UNMAPPED, None), 7: (g.FULLY_PRESENT, pattern(5, 4096))}
    img = g.build(8 * MIB, blocks=blocks).write(tmp_path / "a.vhdx")
    ref = qemu_raw(img, tmp_path / "ref.raw", fmt="vhdx")
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ref.read_bytes()


# Differencing images over a qemu-made parent.

DIFF_SIZE = 16 * MIB


def make_parent(tmp_path, name="parent.vhdx"):
    parent = tmp_path / name
    sh(["qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M",
        str(parent), str(DIFF_SIZE)])
    qemu_io(parent, "write -P 0xa1 0 16M", "write -z 6M 1M")
    assert g.log_guid(parent) == b"\0" * 16
    return parent, bytearray(qemu_raw(parent, tmp_path / "parent.raw",
                                      fmt="vhdx").read_bytes())


def sector_bits(sectors, spb):
    """LSB-first bitmap of one block with `sectors` set."""
    bm = bytearray(spb // 8)
    for s in sectors:
        bm[s // 8] |= 1 << (s % 8)
    return bytes(bm)


def make_child(tmp_path, parent_guid, want, kv=None, name="child.vhdx",
               lss=512, vsize=DIFF_SIZE):
    """A differencing child over `want` (the parent's content), updated
    in place to the child's expected content."""
    spb = MIB // lss
    partial_sectors = [0, 1, 2, 9, 100, 101, spb - 1]
    blocks = {0: (g.FULLY_PRESENT, pattern(10, MIB)),
              2: (g.PARTIALLY_PRESENT, pattern(11, MIB)),
              5: (g.ZERO, None),
              9: (g.UNMAPPED, None),
              12: (g.PARTIALLY_PRESENT, pattern(12, MIB))}
    bitmaps = {2: sector_bits(partial_sectors, spb),
               12: sector_bits(range(64, spb), spb)}
    if kv is None:
        kv = [("parent_linkage", "{%s}" % g.guid_str(parent_guid)),
              ("relative_path", ".\\parent.vhdx"),
              ("absolute_win32_path", "\\\\?\\C:\\vms\\parent.vhdx")]
    img = g.build(vsize, lss=lss, blocks=blocks, bitmaps=bitmaps,
                  parent_kv=kv).write(tmp_path / name)
    want[0:MIB] = blocks[0][1]
    for s in partial_sectors:
        o = 2 * MIB + s * lss
        want[o:o + lss] = blocks[2][1][s * lss:(s + 1) * lss]
    want[5 * MIB:6 * MIB] = bytes(MIB)
    want[9 * MIB:10 * MIB] = bytes(MIB)
    want[12 * MIB + 64 * lss:13 * MIB] = blocks[12][1][64 * lss:]
    return img


def test_differencing(tmp_path):
    parent, want = make_parent(tmp_path)
    child = make_child(tmp_path, g.data_write_guid(parent), want)
    p = imgcat("-f", "vhdx", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    # This layer alone: partial blocks split per sector run.
    m = layer_map(child, "-f", "vhdx")
    assert m[:4] == [(0, MIB, "data"), (MIB, MIB, "parent"),
                     (2 * MIB, 3 * 512, "data"),
                     (2 * MIB + 3 * 512, 6 * 512, "parent")]
    assert (5 * MIB, MIB, "zero") in m
    # Blocks 10, 11 and the first 64 sectors of block 12: parent.
    assert (10 * MIB, 2 * MIB + 64 * 512, "parent") in m, m
    assert (12 * MIB + 64 * 512, MIB - 64 * 512, "data") in m


def test_checkpoint_chain(tmp_path):
    """Hyper-V checkpoints: .avhdx differencing layers on a differencing
    layer; each linkage checked against its own parent."""
    parent, want = make_parent(tmp_path)
    mid = make_child(tmp_path, g.data_write_guid(parent), want,
                     name="disk_A1.avhdx")
    top_guid = g.data_write_guid(mid)
    kv = [("parent_linkage", "{%s}" % g.guid_str(top_guid)),
          ("relative_path", ".\\disk_A1.avhdx")]
    bits = sector_bits(range(10, 20), MIB // 512)
    top = g.build(DIFF_SIZE, parent_kv=kv, blocks={
        1: (g.FULLY_PRESENT, pattern(30, MIB)),
        2: (g.PARTIALLY_PRESENT, pattern(31, MIB)),
        5: (g.FULLY_PRESENT, pattern(32, MIB))}, bitmaps={2: bits})
    top = top.write(tmp_path / "disk_A2.avhdx")
    want[MIB:2 * MIB] = pattern(30, MIB)
    want[2 * MIB + 10 * 512:2 * MIB + 20 * 512] = \
        pattern(31, MIB)[10 * 512:20 * 512]
    want[5 * MIB:6 * MIB] = pattern(32, MIB)
    out = tmp_path / "out.raw"
    p = df("copy", "-f", "vhdx", top, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == want
    # The middle layer replaced by another: its DataWriteGuid differs.
    make_child(tmp_path, g.data_write_guid(parent), bytearray(want),
               name="disk_A1.avhdx")
    err = expect_corrupt(top, "parent_linkage", "disk_A1.avhdx",
                         args=("-f", "vhdx"))
    assert "disk_A2.avhdx" in err


def test_differencing_4096(tmp_path):
    """Both layers with 4096-byte logical sectors (built)."""
    pblocks = {b: (g.FULLY_PRESENT, pattern(20 + b, MIB)) for b in range(16)}
    pb = g.build(DIFF_SIZE, lss=4096, blocks=pblocks)
    pb.write(tmp_path / "parent.vhdx")
    want = bytearray(b"".join(pblocks[b][1] for b in range(16)))
    child = make_child(tmp_path, pb.offsets["data_write_guid"], want,
                       lss=4096)
    p = imgcat("-f", "vhdx", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


def test_differencing_parent_dir_and_id(tmp_path):
    """Found through absolute_win32_path's name in --parent-dir, and by
    DataWriteGuid alone when no path is recorded."""
    pdir = tmp_path / "p"
    pdir.mkdir()
    parent, want = make_parent(pdir)
    guid = "{%s}" % g.guid_str(g.data_write_guid(parent)).upper()
    kv = [("parent_linkage", guid),
          ("absolute_win32_path", "\\\\?\\D:\\other\\parent.vhdx")]
    child = make_child(tmp_path, None, bytearray(want), kv=kv)
    p = imgcat("-f", "vhdx", child)
    assert p.returncode == 4 and b"parent image not found" in p.stderr
    p = imgcat("--parent-dir", pdir, child)
    assert p.returncode == 0, p.stderr
    # Recorded by identifier only: the parent is found next to the child.
    kv = [("parent_linkage", guid)]
    parent2, _ = make_parent(tmp_path, "renamed-parent.vhdx")
    want = bytearray(want)
    child2 = make_child(tmp_path, None, want, kv=kv, name="child2.vhdx")
    p = imgcat("-f", "vhdx", child2)
    assert p.returncode == 4 and b"matching identifier" in p.stderr, p.stderr
    # The real parent, renamed, beside the child: found by its GUID.
    os.replace(parent, tmp_path / "renamed-parent.vhdx")
    p = imgcat("-f", "vhdx", child2)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


def test_differencing_wrong_linkage(tmp_path):
    parent, want = make_parent(tmp_path)
    child = make_child(tmp_path, uuid.uuid4().bytes_le, want)
    expect_corrupt(child, "parent_linkage", "parent.vhdx", "child.vhdx",
                   args=("-f", "vhdx"))
    # parent_linkage2 matching is enough.
    kv = [("parent_linkage", "{%s}" % uuid.uuid4()),
          ("parent_linkage2", "{%s}" % g.guid_str(g.data_write_guid(parent))),
          ("relative_path", "parent.vhdx")]
    child = make_child(tmp_path, None, want, kv=kv, name="c2.vhdx")
    assert imgcat("-f", "vhdx", child).returncode == 0


def test_differencing_mismatch(tmp_path):
    parent, want = make_parent(tmp_path)
    guid = g.data_write_guid(parent)
    child = make_child(tmp_path, guid, bytearray(want), lss=4096)
    expect_corrupt(child, "logical sector size", args=("-f", "vhdx"))
    child = make_child(tmp_path, guid, bytearray(want) + bytes(MIB),
                       vsize=DIFF_SIZE + MIB, name="c2.vhdx")
    expect_corrupt(child, "virtual size", args=("-f", "vhdx"))


def test_differencing_bad_locator(tmp_path):
    guid = "{%s}" % uuid.uuid4()
    cases = [
        ([("relative_path", "p.vhdx")], "no parent_linkage"),
        ([("parent_linkage", "{1234}"), ("relative_path", "p.vhdx")],
         "is not a GUID"),
        ([("parent_linkage", guid), ("parent_linkage", guid)], "twice"),
    ]
    for i, (kv, words) in enumerate(cases):
        img = g.build(8 * MIB, parent_kv=kv).write(tmp_path / ("%d.vhdx" % i))
        expect_corrupt(img, words)
    # Locator type other than VHDX's.
    pl = bytearray(g.parent_locator([("parent_linkage", guid)]))
    pl[0] ^= 1
    img = g.build(8 * MIB, parent_kv=[], meta_items=base_items(
        8 * MIB, bits=2) + [(g.PARENT_LOCATOR, bytes(pl), 4)])
    expect_corrupt(img.write(tmp_path / "t.vhdx"), "parent locator type")
    # A differencing image without a locator item.
    img = g.build(8 * MIB, meta_items=base_items(8 * MIB, bits=2))
    expect_corrupt(img.write(tmp_path / "n.vhdx"), "without a parent locator")
    # Key offset outside the item.
    pl = bytearray(g.parent_locator([("parent_linkage", guid)]))
    struct.pack_into("<I", pl, 20, 60000)
    img = g.build(8 * MIB, meta_items=base_items(8 * MIB, bits=2) +
                  [(g.PARENT_LOCATOR, bytes(pl), 4)])
    expect_corrupt(img.write(tmp_path / "k.vhdx"), "outside the item")


def test_partial_without_bitmap(tmp_path):
    parent, _ = make_parent(tmp_path)
    kv = [("parent_linkage", "{%s}" % g.guid_str(g.data_write_guid(parent))),
          ("relative_path", "parent.vhdx")]
    img = g.build(DIFF_SIZE, parent_kv=kv,
                  blocks={1: (g.PARTIALLY_PRESENT, pattern(1, MIB))})
    expect_corrupt(img.write(tmp_path / "a.vhdx"), "sector bitmap state 0",
                   "block 1 is partially present", args=("-f", "vhdx"))


# ----------------------------------------------------------------------------
# The log


LOG_GUID = uuid.UUID("0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b").bytes_le
DWG = uuid.UUID("11111111-2222-4333-8444-555555555555").bytes_le


def dirty(tmp_path, make_log, name="d.vhdx", qemu=True, **kw):
    """A 16 MiB image with blocks 0 and 1 stored and a log made by
    make_log(base) -> (log region bytes, log guid); checks that the
    in-memory replay reads as qemu reads the file after `qemu-img check
    -r all` replayed it (unless qemu=False), and that the file is left
    as it was."""
    blocks = {0: (g.FULLY_PRESENT, pattern(1, MIB)),
              1: (g.FULLY_PRESENT, pattern(2, MIB)), 2: (g.ZERO, None)}
    base = g.build(16 * MIB, blocks=blocks, data_write_guid=DWG)
    log, lg = make_log(base)
    img = g.build(16 * MIB, blocks=blocks, data_write_guid=DWG, log_guid=lg,
                  log=log, **kw).write(tmp_path / name)
    before = img.read_bytes()
    p = imgcat(img)
    assert img.read_bytes() == before       # never written
    assert p.returncode == 0, p.stderr
    if not qemu:
        return img, base, p.stdout
    copy = tmp_path / ("q-" + name)
    copy.write_bytes(before)
    q = subprocess.run(["qemu-img", "info", str(copy)], capture_output=True)
    assert q.returncode != 0 and b"replay" in q.stderr, q.stderr
    sh(["qemu-img", "check", "-q", "-r", "all", str(copy)])
    assert g.log_guid(copy) == b"\0" * 16
    assert p.returncode == 0, p.stderr
    assert p.stdout == qemu_raw(copy, tmp_path / "r.raw").read_bytes()
    return img, base, p.stdout


def page(seed):
    return pattern(seed, 4096)


def test_log_replay_one_entry(tmp_path):
    def make(base):
        off = base.offsets["payload"][0]
        e = g.log_entry(1, LOG_GUID, len(base.buf), [(off + 8192, page(9))])
        return g.log_region([(0, e)]), LOG_GUID
    img, base, out = dirty(tmp_path, make)
    assert out[8192:12288] == page(9)
    p = df("info", "--json", img)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["properties"]["log"].startswith(
        "replayed in memory (1 entries, 1 writes)")


def test_log_replay_sequence_zero_and_order(tmp_path):
    """Two entries: the second overwrites part of the first and zeroes a
    range; data and zero descriptors apply in order."""
    def make(base):
        b0, b1 = base.offsets["payload"][:2]
        e1 = g.log_entry(7, LOG_GUID, len(base.buf),
                         [(b0, page(3)), (b0 + 4096, page(4)),
                          (b1, 65536), (b1 + 8192, page(5))])
        e2 = g.log_entry(8, LOG_GUID, len(base.buf),
                         [(b0 + 4096, 8192), (b0 + 4096, page(6))], tail=0)
        return g.log_region([(0, e1), (len(e1), e2)]), LOG_GUID
    _, _, out = dirty(tmp_path, make)
    assert out[0:4096] == page(3)
    assert out[4096:8192] == page(6)
    assert out[8192:12288] == bytes(4096)
    assert out[MIB:MIB + 8192] == bytes(8192)
    assert out[MIB + 8192:MIB + 12288] == page(5)


def test_log_replay_wrapping_entry(tmp_path):
    """One entry whose data sectors wrap around the end of the log."""
    def make(base):
        b0 = base.offsets["payload"][0]
        e = g.log_entry(40, LOG_GUID, len(base.buf),
                        [(b0, page(7)), (b0 + 8192, page(8))],
                        tail=g.LOG_LEN - 4096)
        assert len(e) == 12288
        return g.log_region([(g.LOG_LEN - 4096, e)]), LOG_GUID
    _, _, out = dirty(tmp_path, make)
    assert out[0:4096] == page(7) and out[8192:12288] == page(8)


def test_log_replay_sequence_wraps(tmp_path):
    """A sequence that wraps: tail entry at the end of the log, head at
    its start.  qemu 7.2 replays only the head here (it takes the first
    run it meets with the highest sequence number and does not check
    that the head's tail lies in the run, [MS-VHDX] 2.3.3), so the
    expected content is computed here."""
    def make(base):
        b0 = base.offsets["payload"][0]
        e1 = g.log_entry(40, LOG_GUID, len(base.buf), [(b0, page(7))],
                         tail=g.LOG_LEN - 8192)
        e2 = g.log_entry(41, LOG_GUID, len(base.buf),
                         [(b0 + 4096, page(8)), (b0 + 12288, page(9))],
                         tail=g.LOG_LEN - 8192)
        assert len(e1) == 8192 and len(e2) == 12288
        return g.log_region([(g.LOG_LEN - 8192, e1), (0, e2)]), LOG_GUID
    _, _, out = dirty(tmp_path, make, qemu=False)
    want = bytearray(pattern(1, MIB) + pattern(2, MIB)) + bytes(14 * MIB)
    want[0:4096] = page(7)
    want[4096:8192] = page(8)
    want[12288:16384] = page(9)
    assert out == want


def test_log_replay_picks_active_sequence(tmp_path):
    """A stale older sequence, entries of another LogGuid, a newer run
    whose head has a bad checksum, and a newest entry whose tail is not
    in its run: the active sequence is the newest complete one.  (qemu
    7.2 replays the last, so the expected content is computed here.)"""
    def make(base):
        b0 = base.offsets["payload"][0]
        n = len(base.buf)
        old = g.log_entry(3, LOG_GUID, n, [(b0, page(1))], tail=0)
        stale_guid = g.log_entry(90, uuid.uuid4().bytes_le, n,
                                 [(b0, page(2))], tail=65536)
        a1 = g.log_entry(20, LOG_GUID, n, [(b0, page(3))], tail=131072)
        a2 = g.log_entry(21, LOG_GUID, n, [(b0 + 4096, page(4))],
                         tail=131072)
        bad = bytearray(g.log_entry(22, LOG_GUID, n, [(b0, page(5))],
                                    tail=131072))
        bad[100] ^= 1
        # Seq 30 whose tail is outside its run: not a valid sequence.
        orphan = g.log_entry(30, LOG_GUID, n, [(b0, page(6))], tail=0)
        return g.log_region([(0, old), (65536, stale_guid),
                             (131072, a1), (131072 + len(a1), a2),
                             (131072 + 2 * len(a1), bytes(bad)),
                             (524288, orphan)]), LOG_GUID
    _, _, out = dirty(tmp_path, make, qemu=False)
    want = bytearray(pattern(1, MIB) + pattern(2, MIB)) + bytes(14 * MIB)
    want[0:4096] = page(3)
    want[4096:8192] = page(4)
    assert out == want


def extend_log(last_write):
    """A log that allocates block 3 past the end of the file: the BAT
    page and sectors of the new block are in the log, LastFileOffset
    covers the block."""
    def make(base):
        n = len(base.buf)
        bat = bytearray(base.buf[g.BAT_OFF:g.BAT_OFF + 4096])
        struct.pack_into("<Q", bat, 8 * 3, n | g.FULLY_PRESENT)
        writes = [(g.BAT_OFF, bytes(bat)), (n + 4096, page(12))]
        if last_write:
            writes.append((n + MIB - 4096, page(13)))
        e = g.log_entry(5, LOG_GUID, n, writes, last=n + MIB)
        return g.log_region([(0, e)]), LOG_GUID
    return make


def test_log_replay_extends_file(tmp_path):
    _, _, out = dirty(tmp_path, extend_log(True))
    assert out[3 * MIB:3 * MIB + 4096] == bytes(4096)
    assert out[3 * MIB + 4096:3 * MIB + 8192] == page(12)
    assert out[4 * MIB - 4096:4 * MIB] == page(13)


def test_log_replay_last_file_offset(tmp_path):
    """Only LastFileOffset reaches the end of the new block.  qemu 7.2
    extends the file only as far as the log's writes and then finds the
    block truncated; [MS-VHDX] 2.3.3 extends it to LastFileOffset."""
    _, _, out = dirty(tmp_path, extend_log(False), qemu=False)
    want = bytearray(pattern(1, MIB) + pattern(2, MIB)) + bytes(14 * MIB)
    want[3 * MIB + 4096:3 * MIB + 8192] = page(12)
    assert out == want


@pytest.mark.parametrize("case", ["no-entry", "log-version", "past-eof",
                                  "flushed", "write-far"])
def test_log_refused(tmp_path, case):
    base = g.build(8 * MIB, data_write_guid=DWG)
    n = len(base.buf)
    entry = g.log_entry(1, LOG_GUID, n, [(n - 4096, page(1))])
    if case == "flushed":
        entry = g.log_entry(1, LOG_GUID, n + MIB, [(n - 4096, page(1))])
    if case == "write-far":
        entry = g.log_entry(1, LOG_GUID, n, [(1 << 50, page(1))])
    log = None if case == "no-entry" else g.log_region([(0, entry)])
    img = g.build(8 * MIB, data_write_guid=DWG, log_guid=LOG_GUID, log=log)
    img = img.write(tmp_path / "a.vhdx")
    if case == "log-version":
        for h in (g.HEADER1, g.HEADER2):
            patch(img, h + 64, struct.pack("<H", 1), crc=(h, 4096))
    if case == "past-eof":
        for h in (g.HEADER1, g.HEADER2):
            patch(img, h + 72, struct.pack("<Q", n), crc=(h, 4096))
    words = {"no-entry": "no valid sequence of entries",
             "log-version": "log version 1 is not 0",
             "past-eof": "is not 4 KiB-aligned, past the header section",
             "flushed": "shorter than the",
             "write-far": "beyond 128 TiB"}[case]
    err = expect_corrupt(img, words)
    if case in ("no-entry", "log-version", "past-eof"):
        assert ("vhdx log is dirty and cannot be replayed here" in err and
                "replay it with Hyper-V or qemu-img check -r all first"
                in err), err


# ----------------------------------------------------------------------------
# Corruption


@pytest.fixture
def qimg(tmp_path):
    """A qemu-made dynamic image with data; returns (path, raw bytes)."""
    img = tmp_path / "q.vhdx"
    sh(["qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M",
        str(img), "8M"])
    qemu_io(img, "write -P 0x5a 1M 1M", "write -P 0x5b 7M 4k")
    return img, qemu_raw(img, tmp_path / "q.raw", fmt="vhdx").read_bytes()


def patch(path, off, data, crc=None):
    """Write data at off; crc=(struct offset, length) recomputes it."""
    buf = bytearray(open(path, "rb").read())
    buf[off:off + len(data)] = data
    if crc:
        g.set_crc(buf, crc[0], crc[1])
    open(path, "wb").write(buf)


def regions(path):
    buf = open(path, "rb").read(g.RT1 + 64 * 1024)
    n = struct.unpack_from("<I", buf, g.RT1 + 8)[0]
    out = {}
    for i in range(n):
        gb, off, length, req = struct.unpack_from("<16sQII", buf,
                                                  g.RT1 + 16 + 32 * i)
        out[g.guid_str(gb).upper()] = (off, length, g.RT1 + 16 + 32 * i)
    return out


def test_one_header_bad(qimg):
    img, raw = qimg
    # qemu writes both headers: spoil whichever, the other is used.
    patch(img, g.HEADER1 + 100, b"\xff")
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == raw


def test_both_headers_bad(qimg):
    img, _ = qimg
    patch(img, g.HEADER1 + 100, b"\xff")
    patch(img, g.HEADER2, b"HEAD")
    expect_corrupt(img, "no valid header", "checksum mismatch",
                   "bad signature")


def test_header_sequence(tmp_path):
    """The valid header with the higher sequence number is current: a
    dirty log there is refused; one in the older header is not."""
    img = g.build(8 * MIB, seqs=(5, 4)).write(tmp_path / "a.vhdx")
    lg = uuid.uuid4().bytes_le
    patch(img, g.HEADER2 + 48, lg, crc=(g.HEADER2, 4096))
    assert imgcat(img).returncode == 0
    patch(img, g.HEADER1 + 48, lg, crc=(g.HEADER1, 4096))
    expect_corrupt(img, "log is dirty")
    # Equal sequence numbers in headers that differ: neither is current.
    img = g.build(8 * MIB, seqs=(5, 5)).write(tmp_path / "b.vhdx")
    expect_corrupt(img, "both headers have sequence number 5 and differ")


def test_header_sequence_equal_disk2vhd(tmp_path):
    """Disk2VHD writes two identical headers, both sequence number 1:
    read as qemu reads it (header 1)."""
    data = pattern(5, MIB)
    b = g.build(8 * MIB, seqs=(1, 1), blocks={2: (g.FULLY_PRESENT, data)})
    b.buf[g.HEADER2:g.HEADER2 + 4096] = b.buf[g.HEADER1:g.HEADER1 + 4096]
    img = b.write(tmp_path / "d2v.vhdx")
    want = qemu_raw(img, tmp_path / "q.raw", fmt="vhdx").read_bytes()
    assert want[2 * MIB:3 * MIB] == data
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == want
    # Any other difference (a field, or the checksum) is refused.
    patch(img, g.HEADER2 + 16, b"\x01", crc=(g.HEADER2, 4096))
    expect_corrupt(img, "both headers have sequence number 1 and differ")


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_header_version(qimg, version):
    img, _ = qimg
    for h in (g.HEADER1, g.HEADER2):
        patch(img, h + 66, struct.pack("<H", version), crc=(h, 4096))
    expect_corrupt(img, "version %d is not 1" % version)


def test_region_tables(qimg):
    img, raw = qimg
    patch(img, g.RT1 + 40, b"\x01")         # first copy bad: use the second
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == raw
    patch(img, g.RT2 + 40, b"\x01")
    expect_corrupt(img, "no valid region table")


def test_region_count(qimg):
    img, _ = qimg
    for rt in (g.RT1, g.RT2):
        patch(img, rt + 8, struct.pack("<I", 2048), crc=(rt, 65536))
    expect_corrupt(img, "entry count 2048 above 2047")


@pytest.mark.parametrize("which", ["bat", "meta"])
@pytest.mark.parametrize("field", ["past-eof", "huge", "zero-off", "zero-len"])
def test_region_bounds(qimg, which, field):
    img, _ = qimg
    r = regions(img)
    off, length, eoff = r[g.BAT_GUID if which == "bat" else g.META_GUID]
    size = os.path.getsize(img)
    new = {"past-eof": (size, length), "huge": (off, 0xFFFFFFFF),
           "zero-off": (0, length), "zero-len": (off, 0)}[field]
    for rt in (g.RT1, g.RT2):
        patch(img, eoff - g.RT1 + rt + 16, struct.pack("<QI", *new),
              crc=(rt, 65536))
    expect_corrupt(img, "region")


def set_region(img, which, off, length):
    eoff = regions(img)[which][2]
    for rt in (g.RT1, g.RT2):
        patch(img, eoff - g.RT1 + rt + 16, struct.pack("<QI", off, length),
              crc=(rt, 65536))


@pytest.mark.parametrize("which,off,length,words", [
    # Misaligned: the BAT read from 0x200001 was all zeros, "verified".
    ("bat", 0x200001, None, "BAT region [2097153, +1048576) is not "
     "aligned to 1 MiB"),
    ("bat", None, 8, "is not aligned to 1 MiB"),
    ("meta", None, MIB + 4096, "metadata region"),
    ("bat", "meta", None, "region [%(meta)d, +1048576) overlaps the "),
    ("meta", "bat", None, "overlaps the BAT region"),
    ("bat", g.LOG_OFF, None, "overlaps the log region [1048576, +1048576)"),
    ("meta", "eof", None, "runs past end of file"),
])
def test_region_placement(qimg, which, off, length, words):
    """Regions start and end on 1 MiB, lie in the file, overlap nothing."""
    img, _ = qimg
    r = regions(img)
    key = g.BAT_GUID if which == "bat" else g.META_GUID
    cur_off, cur_len, _ = r[key]
    named = {"meta": r[g.META_GUID][0], "bat": r[g.BAT_GUID][0],
             "eof": os.path.getsize(img) // MIB * MIB}
    off = named.get(off, off) if off is not None else cur_off
    length = length if length is not None else cur_len
    set_region(img, key, off, length)
    expect_corrupt(img, words % named)


@pytest.mark.parametrize("log,words", [
    ((MIB + 4096, MIB), "log region [1052672, +1048576) is not aligned"),
    ((MIB, 4096), "log region [1048576, +4096) is not aligned"),
    ((0, MIB), "log region at offset 0 is inside the header section"),
    ("bat", "overlaps the log region"),
    ("past", "log region"),
])
def test_log_placement(qimg, log, words):
    """A clean log's region is checked as a region (it is never read)."""
    img, _ = qimg
    r = regions(img)
    if log == "bat":
        log = (r[g.BAT_GUID][0], MIB)
    elif log == "past":
        log = (os.path.getsize(img) // MIB * MIB + MIB, MIB)
    for h in (g.HEADER1, g.HEADER2):
        patch(img, h + 68, struct.pack("<IQ", log[1], log[0]),
              crc=(h, 4096))
    expect_corrupt(img, words)


def test_region_unknown_placement(qimg):
    """An ignored region still may not overlap the others."""
    img, _ = qimg
    r = regions(img)
    n = len(r)
    ent = g.guid(str(uuid.uuid4())) + struct.pack(
        "<QII", r[g.META_GUID][0], MIB, 0)
    for rt in (g.RT1, g.RT2):
        patch(img, rt + 16 + 32 * n, ent, crc=(rt, 65536))
        patch(img, rt + 8, struct.pack("<I", n + 1), crc=(rt, 65536))
    expect_corrupt(img, "unknown region", "overlaps the metadata region")


@pytest.mark.parametrize("target,words", [
    ("meta", "overlaps the metadata region"),
    ("bat", "overlaps the BAT region"),
    ("log", "overlaps the log region"),
])
def test_block_overlaps_region(qimg, target, words):
    """A payload block may not lie over the log, BAT or metadata."""
    img, _ = qimg
    r = regions(img)
    off = {"meta": r[g.META_GUID][0], "bat": r[g.BAT_GUID][0],
           "log": g.LOG_OFF}[target]
    patch(img, bat_entry(img, 1), struct.pack("<Q", off | 6))
    expect_corrupt(img, "BAT entry 1: block", words)


def test_metadata_items_overlap(tmp_path):
    items = base_items(8 * MIB)
    b = g.build(8 * MIB, meta_items=items)
    moff = b.offsets["meta"]
    # Point the disk size item (entry 1) at the file parameters' bytes.
    struct.pack_into("<I", b.buf, moff + 32 + 32 + 16, 64 * 1024)
    img = b.write(tmp_path / "a.vhdx")
    expect_corrupt(img, "metadata item 'virtual disk size' [65536, +8) "
                   "overlaps item 'file parameters' [65536, +8)")


def test_region_unknown(qimg):
    img, raw = qimg
    n = len(regions(img))
    ent = g.guid(str(uuid.uuid4())) + struct.pack("<QII", 4 * MIB, MIB, 0)
    for rt in (g.RT1, g.RT2):
        patch(img, rt + 16 + 32 * n, ent, crc=(rt, 65536))
        patch(img, rt + 8, struct.pack("<I", n + 1), crc=(rt, 65536))
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == raw    # not required: ignored
    for rt in (g.RT1, g.RT2):
        patch(img, rt + 16 + 32 * n + 28, struct.pack("<I", 1),
              crc=(rt, 65536))
    expect_corrupt(img, "unknown required region")


def bat_entry(img, b):
    off = regions(img)[g.BAT_GUID][0]
    return off + 8 * b


@pytest.mark.parametrize("entry,words", [
    (4, "payload state 4"),
    (7, "payload state 7 is not valid in a non-differencing image"),
    (6 | (1 << 40), "runs past end of file"),
    (6, "inside the header section"),
])
def test_bat_entries(qimg, entry, words):
    img, _ = qimg
    # Block 1 was written by qemu; point it elsewhere.
    patch(img, bat_entry(img, 1), struct.pack("<Q", entry))
    expect_corrupt(img, words)


def meta_entries(img):
    r = regions(img)[g.META_GUID]
    buf = open(img, "rb").read()[r[0]:r[0] + 65536]
    n = struct.unpack_from("<H", buf, 10)[0]
    return r[0], [(g.guid_str(buf[32 + 32 * i:48 + 32 * i]).upper(),
                   r[0] + 32 + 32 * i) for i in range(n)]


def base_items(vsize, bs=MIB, bits=0, lss=512):
    return [(g.FILE_PARAMS, struct.pack("<II", bs, bits), 4),
            (g.DISK_SIZE, struct.pack("<Q", vsize), 6),
            (g.DISK_ID, uuid.uuid4().bytes_le, 6),
            (g.LOGICAL_SECTOR, struct.pack("<I", lss), 6),
            (g.PHYSICAL_SECTOR, struct.pack("<I", 4096), 6)]


@pytest.mark.parametrize("bs", [0, 512 * 1024, 3 * MIB, 512 * MIB,
                                0xFFFFFFFF])
def test_block_size(tmp_path, bs):
    img = g.build(8 * MIB, meta_items=base_items(8 * MIB, bs=bs))
    expect_corrupt(img.write(tmp_path / "a.vhdx"), "block size %d" % bs)


@pytest.mark.parametrize("item", range(5))
def test_metadata_missing(tmp_path, item):
    items = base_items(8 * MIB)
    name = ["file parameters", "virtual disk size", "virtual disk id",
            "logical sector size", "physical sector size"][item]
    del items[item]
    img = g.build(8 * MIB, meta_items=items).write(tmp_path / "a.vhdx")
    expect_corrupt(img, "metadata item '%s' missing" % name)


@pytest.mark.parametrize("item", range(5))
def test_metadata_duplicated(tmp_path, item):
    items = base_items(8 * MIB)
    items.append(items[item])
    img = g.build(8 * MIB, meta_items=items).write(tmp_path / "a.vhdx")
    expect_corrupt(img, "appears twice")


@pytest.mark.parametrize("items,words", [
    (lambda: base_items(8 * MIB) + [(str(uuid.uuid4()), b"x", 4)],
     "unknown required metadata item"),
    (lambda: base_items(8 * MIB)[:3] + [
        (g.LOGICAL_SECTOR, struct.pack("<I", 1024), 6),
        (g.PHYSICAL_SECTOR, struct.pack("<I", 4096), 6)],
     "logical sector size 1024 is not 512 or 4096"),
    (lambda: base_items(8 * MIB)[:4] + [
        (g.PHYSICAL_SECTOR, struct.pack("<I", 0), 6)],
     "physical sector size 0"),
    (lambda: [(g.FILE_PARAMS, struct.pack("<III", MIB, 0, 0), 4)] +
     base_items(8 * MIB)[1:], "file parameters' length 12 is not 8"),
    (lambda: base_items(8 * MIB)[:1] + [
        (g.DISK_SIZE, struct.pack("<Q", (64 << 40) + 512), 6)] +
     base_items(8 * MIB)[2:], "above 64 TiB"),
    # 64 TiB at 1 MiB blocks needs a 512 MiB BAT; the file has 1 MiB.
    (lambda: base_items(8 * MIB)[:1] + [
        (g.DISK_SIZE, struct.pack("<Q", 64 << 40), 6)] +
     base_items(8 * MIB)[2:], "is smaller than its"),
])
def test_metadata_values(tmp_path, items, words):
    img = g.build(8 * MIB, meta_items=items()).write(tmp_path / "a.vhdx")
    expect_corrupt(img, words)


def test_metadata_table(qimg):
    img, raw = qimg
    moff, ents = meta_entries(img)
    # Unknown optional item: ignored.
    patch(img, moff + 32 + 32 * len(ents),
          g.guid(str(uuid.uuid4())) + struct.pack("<III", MIB - 4096, 8, 0))
    patch(img, moff + 10, struct.pack("<H", len(ents) + 1))
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == raw
    # An item past the region; an offset inside the table.
    for val, words in [((MIB - 4, 8), "outside the metadata region"),
                       ((100, 8), "outside the metadata region")]:
        patch(img, ents[0][1] + 16, struct.pack("<II", *val))
        expect_corrupt(img, words)
    patch(img, moff + 10, struct.pack("<H", 2048))
    expect_corrupt(img, "metadata entry count 2048 above 2047")
    patch(img, moff, b"METADATA")
    expect_corrupt(img, "signature is not 'metadata'")


def test_truncated(qimg, tmp_path):
    img, _ = qimg
    r = regions(img)
    boff, moff = r[g.BAT_GUID][0], r[g.META_GUID][0]
    size = os.path.getsize(img)
    cuts = [0, 7, 8, 64 * 1024, 64 * 1024 + 100, 128 * 1024,
            128 * 1024 + 4096, 192 * 1024, 256 * 1024, 256 * 1024 + 100,
            320 * 1024, MIB, boff, boff + 8, moff, moff + 65536,
            moff + 65536 + 4, moff + MIB - 1, size - MIB // 2, size - 1]
    data = open(img, "rb").read()
    for cut in sorted(set(cuts)):
        t = tmp_path / "t.vhdx"
        t.write_bytes(data[:cut])
        p = imgcat("-f", "vhdx", t)
        assert p.returncode == 5, (cut, p.returncode, p.stderr)


def test_probe_not_vhdx(tmp_path):
    t = tmp_path / "x.vhdx"
    t.write_bytes(b"vhdxfilX" + bytes(MIB))
    expect_corrupt(t, "not 'vhdxfile'", args=("-f", "vhdx"))


# ----------------------------------------------------------------------------
# Through the diskferry CLI


@pytest.mark.parametrize("opts", ["block_size=1M", "block_size=32M",
                                  "subformat=fixed,block_size=8M"])
def test_cli_copy(tmp_path, opts):
    img = tmp_path / "a.vhdx"
    sh(["qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, str(img),
        "48M"])
    qemu_io(img, "write -P 0x31 0 100k", "write -P 0x32 20M 3M",
            "write -z 21M 64k", "write -P 0x33 %d 4k" % (48 * MIB - 4096))
    ref = qemu_raw(img, tmp_path / "ref.raw", fmt="vhdx")
    out = tmp_path / "out.raw"
    p = df("copy", img, out)
    assert p.returncode == 0, p.stderr
    assert files_equal(out, ref)
    p = df("info", "--json", img)
    assert p.returncode == 0, p.stderr
    props = json.loads(p.stdout)["properties"]
    assert props["type"] == ("fixed" if "fixed" in opts else "dynamic")
    assert props["block_size"] == str(parse_size(opts.split("=")[-1]))


def test_cli_differencing(tmp_path):
    parent, want = make_parent(tmp_path)
    pguid = g.data_write_guid(parent)
    child = make_child(tmp_path, pguid, want)
    out = tmp_path / "out.raw"
    p = df("copy", "-f", "vhdx", child, out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == want
    p = df("info", "-f", "vhdx", "--json", child)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    props = info["properties"]
    assert props["type"] == "differencing"
    assert props["logical_sector_size"] == "512"
    assert props["block_size"] == str(MIB)
    assert props["parent_linkage"] == g.guid_str(pguid)
    assert info["chain"][1]["properties"]["data_write_guid"] == \
        g.guid_str(pguid)
    # A parent that changed since: refused before anything is written.
    child = make_child(tmp_path, uuid.uuid4().bytes_le, bytearray(want),
                       name="bad.vhdx")
    out2 = tmp_path / "out2.raw"
    p = df("copy", "-f", "vhdx", child, out2)
    assert p.returncode == 5, p.stderr
    assert b"parent_linkage" in p.stderr
    assert not out2.exists()


def test_cli_dirty_log(tmp_path):
    img = g.build(8 * MIB, log_guid=uuid.uuid4().bytes_le)
    img = img.write(tmp_path / "d.vhdx")
    out = tmp_path / "out.raw"
    p = df("copy", img, out)
    assert p.returncode == 5
    assert p.stderr.decode().startswith(
        "diskferry: copy: %s: offset 131120: vhdx log is dirty and cannot be "
        "replayed here (no valid sequence of entries): replay it with "
        "Hyper-V or qemu-img check -r all first" % img)
    assert not out.exists()
