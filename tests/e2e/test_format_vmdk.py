"""VMDK driver: every subformat qemu-img makes, and hand-built files for
what it cannot (VMware-style streamOptimized with a footer, vmfsSparse
COWD deltas, seSparse, ZERO/RDONLY extents), read through imgcat (and
diskferry copy when the CLI is there) and compared with qemu-img's
reading; identity and corruption checks.

The hand-built layouts follow docs/formats.md section 2; qemu-img 7.2 reads
the stream, COWD and seSparse samples, so those are compared with it.
QEMU drops non-RW extents and cannot read ZERO extents: that sample is
compared with the bytes the test wrote.
"""
import os
import struct
import subprocess
import zlib

import pytest

from conftest import DISKFERRY, df, imgcat, run, sh, write_at

SECTOR = 512
MiB = 1 << 20
ZERO_CHUNK = bytes(4 * MiB)


# ---------------------------------------------------------------- helpers

def data_regions(path):
    """(start, end) of the data in a sparse file, by SEEK_DATA."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h))
            off = h
    finally:
        os.close(fd)
    return out


def stream_equals_file(argv, ref):
    """Does argv's stdout equal file ref?  Holes of ref are compared
    without reading them, so multi-GiB sparse disks stay cheap."""
    regions = data_regions(ref)
    size = os.path.getsize(ref)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    off = 0
    same = True
    with open(ref, "rb") as f:
        while True:
            a = p.stdout.read(len(ZERO_CHUNK))
            if not a:
                break
            end = off + len(a)
            if any(s < end and e > off for s, e in regions):
                f.seek(off)
                same = same and a == f.read(len(a))
            else:
                same = same and a == ZERO_CHUNK[:len(a)]
            off = end
    err = p.stderr.read()
    rc = p.wait()
    assert rc == 0, "%s exit %d: %s" % (argv, rc, err.decode(errors="replace"))
    return same and off == size


def files_same(a, b):
    """Equal files, reading only where either holds data."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for s, e in sorted(data_regions(a) + data_regions(b)):
            fa.seek(s)
            fb.seek(s)
            while s < e:
                n = min(e - s, len(ZERO_CHUNK))
                if fa.read(n) != fb.read(n):
                    return False
                s += n
    return True


# A chain is followed only when -f names the top's format.
VMDK = ("-f", "vmdk")


def assert_like_qemu(img, tmp_path, name="ref.raw", whole=True, args=()):
    """imgcat IMG (whole=False: only its map, for GiBs of flat holes that
    are slow to pread here) and diskferry copy IMG equal qemu-img's.
    args: image options for both (a chain needs -f vmdk)."""
    ref = tmp_path / name
    if ref.exists():
        ref.unlink()
    sh(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(img),
        str(ref)])
    from conftest import IMGCAT, VG
    if whole:
        assert stream_equals_file(VG + [IMGCAT] + list(args) + [str(img)],
                                  str(ref)), img
    else:
        p = imgcat("--map", *args, img)
        assert p.returncode == 0, p.stderr
        data = [tuple(map(int, l.split()[:2])) for l in
                p.stdout.decode().splitlines() if l.endswith(" data")]
        for s, e in data_regions(str(ref)):
            assert any(o <= s and e <= o + n for o, n in data), (s, e)
    if os.path.exists(DISKFERRY):
        out = tmp_path / ("df-" + name)
        if out.exists():
            out.unlink()
        p = df("copy", *args, img, out)
        assert p.returncode == 0, p.stderr
        assert files_same(str(out), str(ref))
    return ref


def expect_fail(img, code=5, words=(), args=()):
    p = imgcat(*args, img)
    msg = p.stderr.decode(errors="replace")
    assert p.returncode == code, (p.returncode, msg)
    for w in words:
        assert w in msg, msg
    return msg


def expect_ok_or_fail(img, words):
    """words None: img reads; else it is refused with exit 5 naming them."""
    if words is None:
        p = imgcat(img)
        assert p.returncode == 0, p.stderr
    else:
        expect_fail(img, 5, [words])


def qemu_io(img, *cmds):
    argv = ["qemu-io", "-f", "vmdk"]
    for c in cmds:
        argv += ["-c", c]
    sh(argv + [str(img)])


def descriptor(create_type, extents, cid=0x1234abcd, parent_cid=0xffffffff,
               parent=None, crlf=False):
    lines = ["# Disk DescriptorFile", "version=1",
             "CID=%08x" % cid, "parentCID=%08x" % parent_cid,
             'createType="%s"' % create_type]
    if parent:
        lines.append('parentFileNameHint="%s"' % parent)
    lines += ["", "# Extent description"] + extents + [
        "", "# The Disk Data Base", "#DDB", "",
        'ddb.adapterType = "lsilogic"',
        'ddb.comment = "a value with spaces # and a hash"']
    sep = "\r\n" if crlf else "\n"
    return (sep.join(lines) + sep).encode()


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xff for i in range(256)) * (n // 256)


# ------------------------------------------------- what qemu-img creates

SCATTER = [(0, 64 * 1024, 0x11), (3 * MiB + 512, 8192, 0x22),
           (17 * MiB - 4096, 1 * MiB, 0x33), (63 * MiB, 1 * MiB, 0x44)]


@pytest.mark.parametrize("sub", ["monolithicSparse", "monolithicFlat"])
def test_qemu_subformats(tmp_path, sub):
    img = tmp_path / "d.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
        "subformat=" + sub, str(img), "64M"])
    qemu_io(img, *["write -P %d %d %d" % (p, o, n) for o, n, p in SCATTER])
    assert_like_qemu(img, tmp_path)
    m = imgcat("--map", img).stdout.decode().split("\n")
    assert "0 65536 data" in m


@pytest.mark.parametrize("sub", ["twoGbMaxExtentSparse",
                                 "twoGbMaxExtentFlat"])
def test_two_gb_extents(tmp_path, sub):
    img = tmp_path / "d.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
        "subformat=" + sub, str(img), "2112M"])
    assert img.read_text().count(" \"d-") == 2      # two extent lines
    qemu_io(img, "write -P 0x51 0 4096",
            "write -P 0x52 %d %d" % (2047 * MiB, 2 * MiB),   # crosses
            "write -P 0x53 %d 100000" % (2100 * MiB))
    assert_like_qemu(img, tmp_path, whole=sub.endswith("Sparse"))


def test_zeroed_grain_child(tmp_path):
    base = tmp_path / "base.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(base), "64M"])
    qemu_io(base, "write -P 0xaa 0 64M")
    child = tmp_path / "child.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on",
        "-b", "base.vmdk", "-F", "vmdk", str(child)])
    qemu_io(child, "write -P 0x5c 1M 64k", "write -z 2M 128k",
            "write -z 9M 64k", "write -P 0x5d 40M 4096")
    with open(child, "rb") as f:
        hdr = f.read(512)
    assert struct.unpack_from("<II", hdr, 4) == (2, 7)   # zeroed GTEs
    ref = assert_like_qemu(child, tmp_path, args=VMDK)
    with open(ref, "rb") as f:
        f.seek(2 * MiB)
        assert f.read(128 * 1024) == bytes(128 * 1024)
    layer = imgcat(*VMDK, "--map", "--layer", child).stdout.decode().split(
        "\n")
    assert "%d %d zero" % (2 * MiB, 128 * 1024) in layer
    assert "0 %d parent" % MiB in layer


def test_child_chain(tmp_path):
    base = tmp_path / "base.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(base), "64M"])
    qemu_io(base, *["write -P %d %d %d" % (p, o, n) for o, n, p in SCATTER])
    child = tmp_path / "child.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F",
        "vmdk", str(child)])
    qemu_io(child, "write -P 0x77 4096 4096", "write -P 0x78 62M 2M")
    assert_like_qemu(child, tmp_path, args=VMDK)


def test_stream_optimized_qemu(tmp_path):
    raw = tmp_path / "src.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MiB)
    for o, n, p in SCATTER:
        write_at(raw, o, pattern(n, p))
    img = tmp_path / "s.vmdk"
    sh(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
        "subformat=streamOptimized", str(raw), str(img)])
    ref = assert_like_qemu(img, tmp_path)
    assert stream_equals_file(["cat", str(raw)], str(ref))


# ------------------------------------------------- hand-built: stream

def kdmv_header(capacity, grain, desc_off, desc_sectors, gd_offset, flags,
                version=3, overhead=128, compress=1, rgd=0):
    h = struct.pack("<4sIIQQQQIQQQB4sH", b"KDMV", version, flags, capacity,
                    grain, desc_off, desc_sectors, 512, rgd, gd_offset,
                    overhead, 0, b"\n \r\n", compress)
    return h + bytes(512 - len(h))


def marker(val, size=0, mtype=0):
    return struct.pack("<QII", val, size, mtype) + bytes(496)


def pad(b):
    return b + bytes(-len(b) % SECTOR)


def build_vmware_stream(path, disk, grain=128, capacity=None):
    """A VMware-style streamOptimized file: header with GD_AT_END, grain
    markers, GT/GD markers, footer marker, footer, EOS marker."""
    gbytes = grain * SECTOR
    capacity = capacity or len(disk) // SECTOR
    ngrains = -(-capacity // grain)
    ngts = -(-ngrains // 512)
    desc = descriptor("streamOptimized",
                      ['RW %d SPARSE "stream.vmdk"' % capacity])
    dsect = -(-len(desc) // SECTOR)
    out = bytearray(kdmv_header(capacity, grain, 1, dsect, 2 ** 64 - 1,
                                0x30001))
    out += pad(desc)
    while len(out) < 128 * SECTOR:
        out += bytes(SECTOR)
    gtes = [0] * (ngts * 512)
    for g in range(ngrains):
        chunk = disk[g * gbytes:(g + 1) * gbytes]
        if not chunk.strip(b"\0"):
            continue
        z = zlib.compress(chunk)
        gtes[g] = len(out) // SECTOR
        out += pad(struct.pack("<QI", g * grain, len(z)) + z)
    gd = []
    for t in range(ngts):
        out += marker(4, 0, 1)
        gd.append(len(out) // SECTOR)
        out += struct.pack("<512I", *gtes[t * 512:(t + 1) * 512])
    gd_sectors = -(-ngts * 4 // SECTOR)
    out += marker(gd_sectors, 0, 2)
    gd_at = len(out) // SECTOR
    out += pad(struct.pack("<%dI" % ngts, *gd))
    out += marker(1, 0, 3)
    out += kdmv_header(capacity, grain, 1, dsect, gd_at, 0x30001)
    out += marker(0, 0, 0)
    with open(path, "wb") as f:
        f.write(out)
    return gd_at


def stream_disk(size):
    disk = bytearray(size)
    for o, n, p in [(0, 70000, 1), (5 * MiB + 100, 200000, 2),
                    (size - 4096, 4096, 3)]:
        disk[o:o + n] = pattern(n + 256, p)[:n]
    return bytes(disk)


def test_vmware_stream_footer(tmp_path):
    img = tmp_path / "stream.vmdk"
    disk = stream_disk(16 * MiB + 4096)         # last grain is short
    build_vmware_stream(img, disk)
    ref = assert_like_qemu(img, tmp_path)
    assert ref.read_bytes() == disk
    m = imgcat("--map", img).stdout.decode().split("\n")
    assert "0 131072 data" in m


# ------------------------------------------------- hand-built: vmfsSparse

def build_cowd(path, sectors, grains, grain=1, gd_entries=None):
    """COWD delta; grains = {grain index: bytes of grain*512}."""
    per_gt = 4096 * grain
    need = -(-sectors // per_gt)
    n = need if gd_entries is None else gd_entries
    hdr = struct.pack("<4sIIIIIII", b"COWD", 1, 3, sectors, grain, 4, n, 0)
    hdr += bytes(2048 - len(hdr))
    gd_at = 4
    gd_sect = -(-n * 4 // SECTOR)
    nxt = gd_at + gd_sect
    tables = sorted({g // 4096 for g in grains})
    gt_at = {}
    for t in tables:
        gt_at[t] = nxt
        nxt += 32
    gd = [gt_at.get(t, 0) for t in range(n)]
    gts = {t: [0] * 4096 for t in tables}
    body = bytearray()
    for g in sorted(grains):
        gts[g // 4096][g % 4096] = nxt + len(body) // SECTOR
        body += grains[g]
    out = bytearray(hdr) + pad(struct.pack("<%dI" % n, *gd))
    for t in tables:
        out += struct.pack("<4096I", *gts[t])
    out += body
    with open(path, "wb") as f:
        f.write(out)


def build_vmfs_base(tmp_path, sectors, cid=0xb0b0b0b0, fill=0xa5):
    flat = tmp_path / "base-flat.vmdk"
    with open(flat, "wb") as f:
        if fill is None:
            f.truncate(sectors * SECTOR)
        else:
            f.write(bytes([fill]) * (sectors * SECTOR))
    base = tmp_path / "base.vmdk"
    base.write_bytes(descriptor("vmfs", ['RW %d VMFS "base-flat.vmdk"'
                                         % sectors], cid=cid))
    return base


def build_vmfs_sparse_child(tmp_path, parent_cid=0xb0b0b0b0, grain=1,
                            gd_entries=None, fill=0xa5):
    sectors = 8 * 4096 + 1000           # three GTs at grain 1, last partial
    base = build_vmfs_base(tmp_path, sectors, fill=fill)
    gb = grain * SECTOR
    grains = {0: b"\x01" * gb, 7: b"\x02" * gb, 4097 // grain: b"\x03" * gb,
              (sectors - 1) // grain: b"\x04" * gb}
    build_cowd(tmp_path / "child-delta.vmdk", sectors, grains, grain,
               gd_entries)
    child = tmp_path / "child.vmdk"
    child.write_bytes(descriptor(
        "vmfsSparse", ['RW %d VMFSSPARSE "child-delta.vmdk"' % sectors],
        cid=0xc1c1c1c1, parent_cid=parent_cid, parent="base.vmdk"))
    return base, child, sectors, grains


@pytest.mark.parametrize("grain", [1, 8])
def test_vmfs_sparse_delta(tmp_path, grain):
    base, child, sectors, grains = build_vmfs_sparse_child(tmp_path,
                                                           grain=grain)
    ref = assert_like_qemu(child, tmp_path, args=VMDK)
    want = bytearray(b"\xa5" * (sectors * SECTOR))
    for g, b in grains.items():
        want[g * grain * SECTOR:(g + 1) * grain * SECTOR] = b
    assert ref.read_bytes() == bytes(want)
    layer = imgcat(*VMDK, "--map", "--layer", child).stdout.decode().split(
        "\n")
    assert "0 %d data" % (grain * SECTOR) in layer


def test_vmfs_sparse_wrong_parent_cid(tmp_path):
    _, child, _, _ = build_vmfs_sparse_child(tmp_path, parent_cid=0x1234abcd)
    msg = expect_fail(child, 5, ["parentCID 1234abcd", "CID b0b0b0b0",
                                 "base.vmdk", "child.vmdk"], VMDK)
    assert "does not match" in msg


def test_windows_parent_hint(tmp_path):
    """A hint recorded by VMware on Windows finds base.vmdk beside the
    child by its last component (qemu-img cannot follow it)."""
    _, child, sectors, grains = build_vmfs_sparse_child(tmp_path)
    child.write_bytes(child.read_bytes().replace(
        b'"base.vmdk"', b'"C:\\Virtual Machines\\vm1\\base.vmdk"'))
    want = bytearray(b"\xa5" * (sectors * SECTOR))
    for g, b in grains.items():
        want[g * SECTOR:(g + 1) * SECTOR] = b
    p = imgcat(*VMDK, child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == bytes(want)


def test_cowd_gd_too_small(tmp_path):
    _, child, _, _ = build_vmfs_sparse_child(tmp_path, gd_entries=2,
                                             fill=None)
    expect_fail(child, 5, ["numGDEntries 2"])


# ------------------------------------------------- hand-built: seSparse

def se_gte_alloc(idx):
    return (3 << 60) | ((idx & 0xfff) << 48) | (idx >> 12)


def build_sesparse(path, sectors, gtes, dirty=False):
    """gtes = {grain: (entry, data or None)}; GT t lives at table index
    t + 1 (so index 0 is unused, as a real allocator may leave it)."""
    need = -(-sectors // (4096 * 8))
    gd_sect = -(-need * 8 // SECTOR)
    tables = sorted({g // 4096 for g in gtes})
    vol, jh, jn, gd_at = 1, 2, 3, 4
    gts_at = gd_at + gd_sect
    gts_size = (len(tables) + 1) * 64
    fb = gts_at + gts_size
    bm = fb + 1
    grains_at = bm + 1
    hdr = struct.pack("<QQQQQQ", 0xcafebabe, 0x200000001, sectors, 8, 64, 0)
    hdr += bytes(32)
    hdr += struct.pack("<16Q", vol, 1, jh, 1, jn, 1, gd_at, gd_sect,
                       gts_at, gts_size, fb, 1, bm, 1, grains_at, 1 << 20)
    hdr += bytes(512 - len(hdr))
    f = open(path, "wb")
    f.write(hdr)
    f.seek(vol * SECTOR)
    f.write(struct.pack("<QQQQ", 0xcafecafe, 0, 0, 1 if dirty else 0))
    gd = [0] * need
    for i, t in enumerate(tables):
        gd[t] = (0x10000000 << 32) | (i + 1)
    f.seek(gd_at * SECTOR)
    f.write(struct.pack("<%dQ" % need, *gd))
    for i, t in enumerate(tables):
        gt = [0] * 4096
        for g, (e, data) in gtes.items():
            if g // 4096 == t:
                gt[g % 4096] = e
                if data is not None:
                    idx = ((e >> 48) & 0xfff) | ((e & 0xffffffffffff) << 12)
                    f.seek((grains_at + idx * 8) * SECTOR)
                    f.write(data)
        f.seek((gts_at + (i + 1) * 64) * SECTOR)
        f.write(struct.pack("<4096Q", *gt))
    f.seek((grains_at + 8) * SECTOR)
    f.truncate(max(f.tell(), os.fstat(f.fileno()).st_size))
    f.close()


def build_sesparse_child(tmp_path, dirty=False, fill=0x5a):
    sectors = 131072                    # 64 MiB: four GTs of 16 MiB
    base = build_vmfs_base(tmp_path, sectors, fill=fill)
    gtes = {
        0: (se_gte_alloc(3), b"\x31" * 4096),
        1: (se_gte_alloc(5000), b"\x32" * 4096),    # index above 4095
        2: (1 << 60, None),                         # unmapped: zeros
        3: (2 << 60, None),                         # zero grain
        9000: (se_gte_alloc(7), b"\x33" * 4096),    # second GT
    }
    build_sesparse(tmp_path / "child-sesparse.vmdk", sectors, gtes, dirty)
    child = tmp_path / "child.vmdk"
    child.write_bytes(descriptor(
        "seSparse", ['RW %d SESPARSE "child-sesparse.vmdk"' % sectors],
        cid=0xc2c2c2c2, parent_cid=0xb0b0b0b0, parent="base.vmdk"))
    return child, sectors, gtes


def test_sesparse_child(tmp_path):
    child, sectors, gtes = build_sesparse_child(tmp_path)
    ref = assert_like_qemu(child, tmp_path, args=VMDK)
    want = bytearray(b"\x5a" * (sectors * SECTOR))
    for g, (e, data) in gtes.items():
        want[g * 4096:(g + 1) * 4096] = data or bytes(4096)
    assert ref.read_bytes() == bytes(want)
    layer = imgcat(*VMDK, "--map", "--layer", child).stdout.decode().split(
        "\n")
    assert "0 8192 data" in layer and "8192 8192 zero" in layer


def test_sesparse_dirty_journal(tmp_path):
    child, _, _ = build_sesparse_child(tmp_path, dirty=True, fill=None)
    expect_fail(child, 5, ["journal"])


# ------------------------------------------------- ZERO and RDONLY extents

def test_zero_and_rdonly_extents(tmp_path):
    flat = tmp_path / "a b.raw"                 # a name with a space
    fdata = pattern(2 * MiB, 9)
    flat.write_bytes(fdata)
    sp = tmp_path / "s.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(sp), "2M"])
    qemu_io(sp, "write -P 0x6e 1M 4096")
    img = tmp_path / "d.vmdk"
    img.write_bytes(descriptor("custom", [
        'RW 2048 FLAT "a b.raw" 0',
        'RDONLY 2048 FLAT "a b.raw" 2048',
        'RW 1024 ZERO',
        'RW 4096 SPARSE "s.vmdk"'], crlf=True))
    want = fdata + bytes(512 * MiB // 1024) + bytes(MiB) + \
        b"\x6e" * 4096 + bytes(MiB - 4096)
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    m = imgcat("--map", img).stdout.decode().split("\n")
    assert m[:5] == ["0 2097152 data", "2097152 524288 zero",
                     "2621440 1048576 hole", "3670016 65536 data",
                     "3735552 983040 hole"]


@pytest.mark.parametrize("line,words", [
    ('NOACCESS 2048 FLAT "a.raw" 0', ["NOACCESS"]),
    ('RW 2048 VMFSRDM "a.raw"', ["raw device"]),
    ('RW 2048 VMFSRAW "a.raw"', ["raw device"]),
    ('RW 2048 BOGUS "a.raw"', ["unknown extent type"]),
    ('RW 4096 FLAT "a.raw" 0', ["past the end"]),
    ('RW 2048 FLAT "a.raw" 0 junk', ["unexpected text"]),
    ('RW 2048 FLAT a.raw 0', ["file name"]),
    ('RW 2048 FLAT "a.raw"', ["without a start sector"]),
    ('RW 2048 FLAT "a.raw', ["unterminated"]),
    ('RW 20x48 FLAT "a.raw" 0', ["sector count"]),
    ('RW 2048 SPARSE "a.raw"', ["KDMV or COWD"]),
    ('this is not a descriptor line', ["line"]),
])
def test_bad_extent_lines(tmp_path, line, words):
    (tmp_path / "a.raw").write_bytes(bytes(MiB))
    img = tmp_path / "d.vmdk"
    img.write_bytes(descriptor("monolithicFlat", [line]))
    expect_fail(img, 5, words)


def test_missing_extent_file_is_io_error(tmp_path):
    img = tmp_path / "d.vmdk"
    img.write_bytes(descriptor("monolithicFlat",
                               ['RW 2048 FLAT "gone-flat.vmdk" 0']))
    # A missing file is an I/O error (exit 4), naming the path.
    expect_fail(img, 4, ["gone-flat.vmdk"])


def test_raw_device_create_type(tmp_path):
    img = tmp_path / "d.vmdk"
    img.write_bytes(descriptor("fullDevice", ['RW 2048 FLAT "/dev/sda" 0']))
    expect_fail(img, 5, ["fullDevice"])


def test_descriptor_limits(tmp_path):
    (tmp_path / "a.raw").write_bytes(bytes(4096))
    img = tmp_path / "d.vmdk"
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0'] * 4097))
    expect_fail(img, 5, ["4096 extents"])
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0'] * 4096))
    p = imgcat("--map", img)
    assert p.returncode == 0, p.stderr
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0']) +
                    b"ddb.x = \"" + b"y" * 5000 + b"\"\n")
    expect_fail(img, 5, ["longer than 4096"])
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0']) +
                    (b"# padding comment line\n" * 50000))
    expect_fail(img, 5, ["larger than"])
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0'])
                    .replace(b"version=1", b"version=7"))
    expect_fail(img, 5, ["version"])
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0'])
                    .replace(b"CID=1234abcd", b"CID=12x4"))
    expect_fail(img, 5, ["CID"])
    img.write_bytes(descriptor("custom", ['RW 1 FLAT "a.raw" 0'])
                    .replace(b"createType", b"createType=\"a\"\ncreateType"))
    expect_fail(img, 5, ["twice"])
    img.write_bytes(descriptor("weird", ['RW 1 FLAT "a.raw" 0']))
    expect_fail(img, 5, ["createType"])


# ------------------------------------------------- corruption: KDMV

def qemu_sparse(tmp_path, name="c.vmdk"):
    img = tmp_path / name
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(img), "64M"])
    qemu_io(img, "write -P 0x42 0 128k", "write -P 0x43 40M 64k")
    return img


def set_field(img, off, fmt, val):
    write_at(img, off, struct.pack(fmt, val))


@pytest.mark.parametrize("off,fmt,val,words", [
    (4, "<I", 0, "version 0"),
    (4, "<I", 9, "version 9"),
    (20, "<Q", 0, "grainSize 0"),
    (20, "<Q", 3, "grainSize 3"),
    (20, "<Q", 8, "grainSize 8"),
    (20, "<Q", 1 << 40, "grainSize"),
    (44, "<I", 4096, "numGTEsPerGT"),
    (56, "<Q", 1 << 40, "gdOffset"),
    (56, "<Q", 0, "gdOffset"),
    (12, "<Q", 1 << 50, "capacity"),
    (12, "<Q", 1 << 40, "grain directory"),
    (28, "<Q", 1 << 40, "descriptor"),
    (36, "<Q", 4096, "descriptor"),
    (73, "<I", 0x0a0a0a0a, "check bytes"),
    (77, "<H", 1, None),           # ignored without the compressed flag
])
def test_kdmv_header_fields(tmp_path, off, fmt, val, words):
    img = qemu_sparse(tmp_path)
    set_field(img, off, fmt, val)
    expect_ok_or_fail(img, words)


def test_kdmv_truncations(tmp_path):
    img = qemu_sparse(tmp_path)
    data = img.read_bytes()
    # Header, descriptor, RGD and its GT, GD and its GT, grains.
    for cut in [0, 3, 100, 511, 512, 600, 21 * 512, 22 * 512 + 100,
                26 * 512 + 2, 27 * 512, 127 * 512, 128 * 512 + 1,
                len(data) - 65536, len(data) - 1]:
        img.write_bytes(data[:cut])
        p = imgcat(img)
        assert p.returncode == 5 or (cut < 4 and p.returncode == 0), \
            (cut, p.returncode, p.stderr)


def test_kdmv_gte_past_eof(tmp_path):
    img = qemu_sparse(tmp_path)
    data = img.read_bytes()
    gd = struct.unpack_from("<Q", data, 56)[0]
    gt = struct.unpack_from("<I", data, gd * 512)[0]
    set_field(img, gt * 512, "<I", 0x7fffff00)
    expect_fail(img, 5, ["past the end"])
    set_field(img, gd * 512, "<I", 0x7fffff00)          # GT itself
    expect_fail(img, 5, ["grain table"])


@pytest.mark.parametrize("what,target,words", [
    ("gd", "desc", "grain directory at byte 512 (8 bytes) overlaps the "
     "embedded descriptor"),
    ("gt", "header", None),        # GT at sector 0: 0 means "none"
    ("gt", "desc", "grain table 0 at sector 1 overlaps the embedded "
     "descriptor"),
    ("gt", "gd", "overlaps the grain directory"),
    ("grain", "desc", "overlaps the embedded descriptor"),
    ("grain", "gd", "overlaps the grain directory"),
    ("grain", "gt", "overlaps the grain table that maps it"),
])
def test_kdmv_overlaps(tmp_path, what, target, words):
    """No GD, GT or grain lies on the header, the embedded descriptor,
    the GD or (a grain) its own GT."""
    img = qemu_sparse(tmp_path)
    data = img.read_bytes()
    gd = struct.unpack_from("<Q", data, 56)[0]
    gt = struct.unpack_from("<I", data, gd * 512)[0]
    sector = {"header": 0, "desc": 1, "gd": gd, "gt": gt}[target]
    at = {"gd": 56, "gt": gd * 512, "grain": gt * 512}[what]
    set_field(img, at, "<Q" if what == "gd" else "<I", sector)
    # words None: GT 0 is "no table", its grains read from the parent.
    expect_ok_or_fail(img, words)


def test_descriptor_without_version(tmp_path):
    """qemu reads a descriptor without a version line (as version 1)."""
    flat = tmp_path / "f.img"
    flat.write_bytes(pattern(1 << 20, 3))
    desc = descriptor("monolithicFlat", ['RW 2048 FLAT "f.img" 0'])
    desc = desc.replace(b"version=1\n", b"")
    img = tmp_path / "nv.vmdk"
    img.write_bytes(desc)
    ref = tmp_path / "ref.raw"
    sh(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(img),
        str(ref)])
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ref.read_bytes() == flat.read_bytes()


def test_embedded_descriptor_garbage(tmp_path):
    img = qemu_sparse(tmp_path)
    write_at(img, 512 + 30, b"\x01garbage line without equals\n")
    expect_fail(img, 5, ["descriptor"])
    # Past the first NUL nothing counts, as for qemu.
    img = qemu_sparse(tmp_path, "d.vmdk")
    write_at(img, 512 + 5000, b"trailing text after the NUL padding")
    assert imgcat(img).returncode == 0


def test_descriptor_rewritten_shorter_by_qemu(tmp_path):
    """qemu rewrites a descriptor file on the first write with the new
    CID printed without leading zeros; a shorter text leaves a NUL and a
    stray byte of the old text behind it ("\\n\\0\\n"), 1 time in 16."""
    img = tmp_path / "d.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
        "subformat=monolithicFlat", str(img), "8M"])
    qemu_io(img, "write -P 0x5a 0 65536")
    text = img.read_bytes().rstrip(b"\0")
    start = text.index(b"\nCID=") + 5
    end = text.index(b"\n", start)
    short = text[:start] + b"abcdef0" + text[end:]     # one digit fewer
    img.write_bytes(short + b"\0" + b"\n" + b"\0" * (512 - len(short) - 2))
    assert_like_qemu(img, tmp_path)


def test_extent_sectors_mismatch(tmp_path):
    img = tmp_path / "t.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
        "subformat=twoGbMaxExtentSparse", str(img), "64M"])
    img.write_bytes(img.read_bytes().replace(b"RW 131072 SPARSE",
                                             b"RW 131000 SPARSE"))
    expect_fail(img, 5, ["131000", "131072"])


def test_stream_corruption(tmp_path):
    img = tmp_path / "stream.vmdk"
    disk = stream_disk(8 * MiB)
    gd_at = build_vmware_stream(img, disk)
    good = img.read_bytes()
    size = len(good)
    # Footer marker, footer magic, EOS marker, footer GD offset.
    for off, val, words in [(size - 1536 + 12, b"\x09", "footer marker"),
                            (size - 1024, b"XDMV", "footer"),
                            (size - 512 + 12, b"\x01", "end-of-stream"),
                            (size - 1024 + 56, struct.pack("<Q", 2 ** 64 - 1),
                             "GD_AT_END")]:
        img.write_bytes(good)
        write_at(img, off, val)
        expect_fail(img, 5, [words])
    # A grain marker naming another LBA, a size past EOF, bad zlib.
    first = 128 * 512
    for off, val, words in [(first, b"\x07", "marker names"),
                            (first + 8, struct.pack("<I", 1 << 30),
                             "compressed grain size"),
                            (first + 14, b"\xff\xff\xff\xff", "inflate")]:
        img.write_bytes(good)
        write_at(img, off, val)
        expect_fail(img, 5, [words])
    img.write_bytes(good)
    write_at(img, gd_at * 512, struct.pack("<I", 1 << 30))
    expect_fail(img, 5, ["grain table"])
    img.write_bytes(good[:-700])
    expect_fail(img, 5)


def test_probe_is_not_fooled(tmp_path):
    """A raw disk that mentions 'version=' is still raw."""
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"hello version=1 world\n" + bytes(4096))
    p = imgcat(raw)
    assert p.returncode == 0 and p.stdout == raw.read_bytes()


# ------------------------------------------------- through the CLI

needs_cli = pytest.mark.skipif(not os.path.exists(DISKFERRY),
                               reason="diskferry CLI not built")


@needs_cli
def test_info_props(tmp_path):
    img = tmp_path / "stream.vmdk"
    build_vmware_stream(img, stream_disk(4 * MiB))
    p = df("info", img)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    for line in ["format: vmdk", "create_type: streamOptimized",
                 "cid: 1234abcd", "parent_cid: ffffffff", "extents: 1",
                 "compressed: yes"]:
        assert line in out, out


@needs_cli
def test_copy_refuses_wrong_parent_cid(tmp_path):
    _, child, _, _ = build_vmfs_sparse_child(tmp_path, parent_cid=0x1234abcd)
    out = tmp_path / "out.raw"
    p = df("copy", *VMDK, child, out)
    assert p.returncode == 5, p.stderr
    assert b"parentCID 1234abcd does not match CID b0b0b0b0" in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("off,fmt,val,words", [
    (4, "<I", 2, "COWD version 2"),
    (16, "<I", 0, "grainSize 0"),
    (16, "<I", 3, "grainSize 3"),
    (16, "<I", 1 << 30, "grainSize"),
    (20, "<I", 1 << 30, "grain directory"),
    (20, "<I", 0, "gdOffset is 0"),
    (12, "<I", 0xffffffff, "numGDEntries"),
    (24, "<I", 0, "numGDEntries 0"),
    (4 * 512, "<I", 0x7fffffff, "grain table"),
    (5 * 512, "<I", 0x7fffffff, "past the end"),
])
def test_cowd_header_fields(tmp_path, off, fmt, val, words):
    _, child, _, _ = build_vmfs_sparse_child(tmp_path, fill=None)
    write_at(tmp_path / "child-delta.vmdk", off, struct.pack(fmt, val))
    expect_fail(child, 5, [words], VMDK)


@pytest.mark.parametrize("off,fmt,val,words", [
    (0, "<Q", 0xcafebabf, "seSparse"),
    (24, "<Q", 16, "grain size"),
    (32, "<Q", 128, "grain table size"),
    (40, "<Q", 1, "flags"),
    (16, "<Q", 1 << 50, "capacity"),
    (80, "<Q", 1 << 40, "volatile header"),
    (128, "<Q", 1 << 40, "grain directory"),
    (136, "<Q", 0, "grain directory"),
    (152, "<Q", 1, "grain table index"),
    (192, "<Q", 1 << 40, "grains offset"),
    (512, "<Q", 0xcafecafd, "volatile header"),
    (4 * 512, "<Q", 0x2000000000000001, "unknown type"),
])
def test_sesparse_header_fields(tmp_path, off, fmt, val, words):
    child, _, _ = build_sesparse_child(tmp_path, fill=None)
    write_at(tmp_path / "child-sesparse.vmdk", off, struct.pack(fmt, val))
    expect_fail(child, 5, [words])


def test_parent_must_be_vmdk_of_same_size(tmp_path):
    _, child, sectors, _ = build_vmfs_sparse_child(tmp_path, fill=None)
    raw = tmp_path / "base.raw"
    raw.write_bytes(b"\x01" * 4096 + bytes(sectors * SECTOR - 4096))
    child.write_bytes(child.read_bytes().replace(b'"base.vmdk"',
                                                 b'"base.raw"'))
    expect_fail(child, 5, ["base.raw is a raw image, not vmdk"], VMDK)
    child.write_bytes(child.read_bytes().replace(b'"base.raw"',
                                                 b'"small.vmdk"'))
    (tmp_path / "small.vmdk").write_bytes(descriptor(
        "vmfs", ['RW %d VMFS "base-flat.vmdk"' % (sectors - 8)],
        cid=0xb0b0b0b0))
    expect_fail(child, 5, ["virtual size", "small.vmdk"], VMDK)


def test_cid_check_through_qemu_child(tmp_path):
    """qemu-made monolithicSparse child whose base was rewritten with a
    new CID: refused before any byte is read, naming both files."""
    base = tmp_path / "base.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", str(base), "64M"])
    child = tmp_path / "child.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F",
        "vmdk", str(child)])
    data = bytearray(base.read_bytes())
    i = data.index(b"\nCID=") + 5
    j = data.index(b"\n", i)
    grow = 8 - (j - i)                  # qemu may write fewer digits
    nul = data.index(b"\0", j)          # keep the padded area's size
    del data[nul:nul + grow]
    data[i:j] = b"5678ef01"
    assert len(data) == base.stat().st_size
    base.write_bytes(bytes(data))
    msg = expect_fail(child, 5, ["does not match CID 5678ef01",
                                 "base.vmdk", "child.vmdk"], VMDK)
    assert "parentCID" in msg


def test_descriptor_with_bom_and_tabs(tmp_path):
    (tmp_path / "a.raw").write_bytes(pattern(MiB, 5))
    img = tmp_path / "d.vmdk"
    img.write_bytes(b"\xef\xbb\xbf\r\n" + descriptor(
        "monolithicFlat", ['RW\t2048\tFLAT\t"a.raw"\t0'], crlf=True)
        .replace(b"version=1", b"version = 1"))
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == pattern(MiB, 5)
