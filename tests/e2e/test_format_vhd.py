"""VHD images: fixed and dynamic images made by qemu-img ("vpc"),
differencing images built here from the layout in docs/formats.md 5.1-5.3
(parent locators, sector bitmaps), the virtual size rule, parent
identity, and corrupt footers, headers and BATs (exit 5, no crash).
"""
import os
import shutil
import struct
import uuid

import pytest

from conftest import DISKFERRY, df, imgcat, qemu_raw, sh, write_at

MiB = 1 << 20
SECTOR = 512
FREE = 0xFFFFFFFF

# Footer offsets (docs/formats.md 5.1), dynamic header offsets (5.2).
F_VERSION, F_DATA_OFF, F_TIME, F_CREATOR = 12, 16, 24, 28
F_CUR_SIZE, F_GEOM, F_TYPE, F_CSUM, F_UID = 48, 56, 60, 64, 68
H_TABLE, H_VERSION, H_ENTRIES, H_BLOCK, H_CSUM = 16, 24, 28, 32, 36
H_PARENT_ID, H_PARENT_TIME, H_PARENT_NAME, H_LOC = 40, 56, 64, 576

WRITES = [(0, 0x11, 4096), (MiB + 512, 0x22, 8192), (33 * MiB - 1024, 0x33,
          4096), (63 * MiB, 0x44, MiB)]


def qemu_io(img, cmds):
    args = ["qemu-io", "-f", "vpc"]
    for c in cmds:
        args += ["-c", c]
    sh(args + [str(img)])


def checksum(b, off):
    b = bytearray(b)
    b[off:off + 4] = bytes(4)
    return ~sum(b) & 0xFFFFFFFF


def seal(b, off):
    struct.pack_into(">I", b, off, checksum(b, off))
    return b


def read_at(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def footer_of(path):
    return bytearray(read_at(path, os.path.getsize(path) - 512, 512))


def set_footer(path, off, fmt, val, both=True):
    """Change a footer field (at EOF, and in the copy at 0 if `both` and
    the image is dynamic) and fix the checksums."""
    places = [os.path.getsize(path) - 512]
    if both and read_at(path, 0, 8) == b"conectix":
        places.append(0)
    for p in places:
        f = bytearray(read_at(path, p, 512))
        struct.pack_into(fmt, f, off, val)
        write_at(path, p, bytes(seal(f, F_CSUM)))


def header_off(path):
    return struct.unpack_from(">Q", footer_of(path), F_DATA_OFF)[0]


def set_header(path, off, fmt, val, fix=True):
    ho = header_off(path)
    h = bytearray(read_at(path, ho, 1024))
    struct.pack_into(fmt, h, off, val)
    if fix:
        seal(h, H_CSUM)
    write_at(path, ho, bytes(h))


def make_footer(disk_type, size, data_off, uid, creator=b"win ",
                timestamp=0x2A000000):
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, data_off, timestamp)
    f[F_CREATOR:F_CREATOR + 4] = creator
    struct.pack_into(">I4sQQ", f, 32, 0x000A0000, b"Wi2k", size, size)
    struct.pack_into(">HBBI", f, F_GEOM, 1000, 16, 63, disk_type)
    f[F_UID:F_UID + 16] = uid
    return seal(f, F_CSUM)


def utf16le(s):
    return s.encode("utf-16-le")


def build_vhd_diff(path, parent, sectors, block_size=2 * MiB,
                   locators=None, parent_name=None, parent_id=None,
                   size=None, creator=b"win "):
    """A differencing VHD over `parent` (a dynamic VHD made by qemu).

    sectors: {virtual sector number: 512 bytes} stored in this file;
    locators: [(code, bytes)], default a W2ru ".\\<parent name>" and a
    W2ku "C:\\vms\\<parent name>".
    """
    pf = footer_of(parent)
    if size is None:
        size = struct.unpack_from(">Q", pf, F_CUR_SIZE)[0]
        geom = pf[F_GEOM:F_GEOM + 4]
    pname = os.path.basename(str(parent))
    if parent_id is None:
        parent_id = pf[F_UID:F_UID + 16]
    if locators is None:
        locators = [(b"W2ku", utf16le("C:\\vms\\" + pname)),
                    (b"W2ru", utf16le(".\\" + pname))]
    n_entries = -(-size // block_size)
    bat_len = -(-(n_entries * 4) // 512) * 512
    bitmap_len = -(-(block_size // SECTOR // 8) // 512) * 512
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 2 ** 64 - 1, 1536, 0x00010000,
                     n_entries, block_size)
    h[H_PARENT_ID:H_PARENT_ID + 16] = parent_id
    struct.pack_into(">I", h, H_PARENT_TIME,
                     struct.unpack_from(">I", pf, F_TIME)[0])
    name = (parent_name if parent_name is not None else pname)
    h[H_PARENT_NAME:H_PARENT_NAME + 512] = \
        name.encode("utf-16-be")[:510].ljust(512, b"\0")
    pos = 1536 + bat_len
    loc_data = bytearray()
    for i, (code, data) in enumerate(locators):
        space = -(-len(data) // 512) * 512 or 512
        struct.pack_into(">4sIIIQ", h, H_LOC + 24 * i, code, space,
                         len(data), 0, pos + len(loc_data))
        loc_data += data.ljust(space, b"\0")
    seal(h, 36)
    pos += len(loc_data)
    bat = [FREE] * n_entries
    blocks = bytearray()
    per_block = block_size // SECTOR
    by_block = {}
    for s, data in sectors.items():
        by_block.setdefault(s // per_block, {})[s % per_block] = data
    for b in sorted(by_block, reverse=True):     # stored out of order
        bat[b] = (pos + len(blocks)) // 512
        bm = bytearray(bitmap_len)
        data = bytearray(b"\xdd" * block_size)  # garbage where bit is 0
        for s, d in by_block[b].items():
            bm[s // 8] |= 0x80 >> (s % 8)
            data[s * SECTOR:(s + 1) * SECTOR] = d
        blocks += bm + data
    uid = uuid.uuid4().bytes
    foot = make_footer(4, size, 512, uid, creator=creator)
    if creator in (b"qemu", b"vpc "):
        foot[F_GEOM:F_GEOM + 4] = geom
        seal(foot, F_CSUM)
    with open(path, "wb") as f:
        f.write(foot)
        f.write(h)
        f.write(struct.pack(">%dI" % n_entries, *bat).ljust(bat_len, b"\0"))
        f.write(loc_data)
        f.write(blocks)
        f.write(foot)
    return uid


def sec(seed):
    return bytes((seed + i) & 0xFF for i in range(SECTOR))


def check_same_as_qemu(img, tmp_path, ref=None):
    """qemu-img must be told the format: it probes VHD by the cookie at
    offset 0 only, so it takes a fixed VHD for raw (footer included)."""
    if ref is None:
        ref = qemu_raw(img, tmp_path / "ref.raw", fmt="vpc")
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    with open(ref, "rb") as f:
        assert p.stdout == f.read()
    if os.path.exists(DISKFERRY):
        out = tmp_path / "out.raw"
        if out.exists():
            out.unlink()
        r = df("copy", img, out)
        assert r.returncode == 0, r.stderr
        with open(ref, "rb") as a, open(out, "rb") as b:
            assert a.read() == b.read()


@pytest.mark.parametrize("sub", ["dynamic", "fixed"])
def test_qemu_images_read_as_qemu_reads_them(tmp_path, sub):
    img = tmp_path / "d.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "subformat=" + sub,
        str(img), "64M"])
    qemu_io(img, ["write -P 0x%x %d %d" % (p, o, n) for o, p, n in WRITES])
    check_same_as_qemu(img, tmp_path)
    m = imgcat("--map", img).stdout.decode().split("\n")
    size = os.path.getsize(tmp_path / "ref.raw")
    if sub == "fixed":
        assert m == ["0 %d data" % size, ""]
    else:
        # 2 MiB blocks 0, 16 and 31 hold data.
        assert m[:4] == ["0 %d data" % (2 * MiB),
                         "%d %d hole" % (2 * MiB, 30 * MiB),
                         "%d %d data" % (32 * MiB, 2 * MiB),
                         "%d %d hole" % (34 * MiB, 28 * MiB)]


def test_force_size_image(tmp_path):
    """force_size=on: creator "qem2", current size is the size."""
    img = tmp_path / "f.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "force_size=on", str(img),
        "10M"])
    qemu_io(img, ["write -P 0x5a %d 4096" % (10 * MiB - 4096)])
    check_same_as_qemu(img, tmp_path)
    assert len(imgcat(img).stdout) == 10 * MiB


def test_fixed_probed_by_its_footer(tmp_path):
    """A fixed VHD whose first sector looks like nothing known."""
    img = tmp_path / "fx.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "subformat=fixed",
        str(img), "4M"])
    qemu_io(img, ["write -P 0xeb 0 512"])
    check_same_as_qemu(img, tmp_path)


@pytest.mark.parametrize("creator", [b"wa\0\0", b"abcd"])
def test_size_rule_of_qemu_10(tmp_path, creator):
    """Azure ("wa\\0\\0") and unknown creators: QEMU 10.0 takes the
    current size, QEMU 7.2 (installed here) the CHS geometry, so the
    reference is qemu-img with force_size_calc=current_size."""
    img = tmp_path / "wa.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "subformat=fixed",
        str(img), "8M"])
    qemu_io(img, ["write -P 0x3c %d 4096" % (8 * MiB - 4096)])
    f = footer_of(img)
    f[F_CREATOR:F_CREATOR + 4] = creator
    struct.pack_into(">QQ", f, 40, 8 * MiB, 8 * MiB)
    write_at(img, os.path.getsize(img) - 512, bytes(seal(f, F_CSUM)))
    ref = tmp_path / "ref.raw"
    sh(["qemu-img", "convert", "--image-opts",
        "driver=vpc,force_size_calc=current_size,file.filename=%s" % img,
        "-O", "raw", str(ref)])
    assert os.path.getsize(ref) == 8 * MiB
    check_same_as_qemu(img, tmp_path, ref)
    # What qemu 7.2 would say without the option: the CHS size.
    info = sh(["qemu-img", "info", "-f", "vpc", str(img)]).decode()
    assert "8390656 bytes" in info


def test_footer_copy_at_zero_stands_in(tmp_path):
    """A dynamic image cut short after its last block (no EOF footer)
    opens through the copy at offset 0."""
    img = tmp_path / "d.vhd"
    sh(["qemu-img", "create", "-f", "vpc", str(img), "8M"])
    qemu_io(img, ["write -P 0x21 %d 4096" % (3 * MiB)])
    ref = qemu_raw(img, tmp_path / "ref.raw")
    with open(img, "r+b") as f:
        f.truncate(os.path.getsize(img) - 512)
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == open(ref, "rb").read()


@pytest.fixture
def chain(tmp_path):
    """parent.vhd (qemu, dynamic 8 MiB) with data, child.vhd over it with
    scattered sectors, and the expected flattened content."""
    parent = tmp_path / "parent.vhd"
    sh(["qemu-img", "create", "-f", "vpc", str(parent), "8M"])
    qemu_io(parent, ["write -P 0x61 0 %d" % (3 * MiB),
                     "write -P 0x62 %d 4096" % (5 * MiB)])
    want = bytearray(open(qemu_raw(parent, tmp_path / "p.raw", fmt="vpc"),
                          "rb").read())
    sectors = {}
    for s in [0, 1, 7, 8, 9, 4095, 4096, 4100, 4101, 10240, 16383]:
        if s * SECTOR < len(want):
            sectors[s] = sec(s)
            want[s * SECTOR:(s + 1) * SECTOR] = sec(s)
    child = tmp_path / "child.vhd"
    build_vhd_diff(child, parent, sectors)
    return parent, child, bytes(want), sectors


def test_diff_reads_through_parent(chain, tmp_path):
    parent, child, want, sectors = chain
    p = imgcat("-f", "vhd", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    layer = imgcat("-f", "vhd", "--map", "--layer", child).stdout.decode().split("\n")
    assert layer[:5] == ["0 1024 data", "1024 %d parent" % (5 * 512),
                         "%d %d data" % (7 * 512, 3 * 512),
                         "%d %d parent" % (10 * 512, 4085 * 512),
                         "%d %d data" % (4095 * 512, 2 * 512)]
    data = sum(int(l.split()[1]) for l in layer if l.endswith(" data"))
    assert data == len(sectors) * 512


def test_diff_qemu_reads_it_too(chain, tmp_path):
    """qemu 7.2's vpc driver opens a differencing VHD as if it were
    dynamic: no parent (unallocated blocks read as zeros) and allocated
    blocks whole, bitmap ignored (the 0xdd filler of unmarked sectors
    shows).  So it can only vouch for the sectors the bitmap marks."""
    parent, child, want, sectors = chain
    ref = tmp_path / "q.raw"
    r = __import__("subprocess").run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(child),
         str(ref)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("qemu-img cannot read VHD differencing images: %s"
                    % r.stderr.decode().strip())
    q = open(ref, "rb").read()
    for s, d in sectors.items():
        assert q[s * 512:(s + 1) * 512] == d


def test_diff_parent_by_locator_in_parent_dir(chain, tmp_path):
    parent, child, want, sectors = chain
    sub = tmp_path / "a"
    sub.mkdir()
    moved = sub / "child.vhd"
    shutil.move(str(child), moved)
    p = imgcat("-f", "vhd", moved)
    assert p.returncode == 4, p.stderr
    assert b"parent image not found" in p.stderr
    p = imgcat("--parent-dir", tmp_path, moved)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


@pytest.mark.parametrize("kind", ["W2ku", "MacX", "name"])
def test_diff_other_locators(chain, tmp_path, kind):
    parent, child, want, sectors = chain
    if kind == "W2ku":
        locs = [(b"W2ku", utf16le("D:\\x\\parent.vhd"))]
        # "/x/parent.vhd" does not exist: found through --parent-dir.
        extra = ["--parent-dir", tmp_path]
    elif kind == "MacX":
        locs = [(b"MacX", b"file://localhost" + str(parent).replace(
            "parent", "par%65nt").encode())]
        extra = []
    else:
        locs = []
        extra = []
    build_vhd_diff(child, parent, sectors, locators=locs)
    p = imgcat("-f", "vhd", *extra, child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


def test_diff_relative_locator_preferred(chain, tmp_path):
    """W2ku names a file that exists but is not the parent; W2ru names
    the parent: the relative one wins."""
    parent, child, want, sectors = chain
    decoy = tmp_path / "decoy.vhd"
    shutil.copy(parent, decoy)
    set_footer(decoy, F_UID, "16s", uuid.uuid4().bytes)
    build_vhd_diff(child, parent, sectors, locators=[
        (b"W2ku", utf16le(str(decoy))), (b"W2ru", utf16le(".\\parent.vhd"))])
    p = imgcat("-f", "vhd", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


def test_diff_wrong_parent_unique_id(chain, tmp_path):
    parent, child, want, sectors = chain
    build_vhd_diff(child, parent, sectors, parent_id=uuid.uuid4().bytes)
    p = imgcat("-f", "vhd", child)
    assert p.returncode == 5, p.stderr
    assert b"parent unique id" in p.stderr
    assert b"parent.vhd" in p.stderr and b"child.vhd" in p.stderr


def test_diff_parent_timestamp_mismatch_is_not_refused(chain, tmp_path):
    parent, child, want, sectors = chain
    set_footer(parent, F_TIME, ">I", 12345)
    p = imgcat("-f", "vhd", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    if os.path.exists(DISKFERRY):
        r = df("info", "-f", "vhd", child)
        assert r.returncode == 0, r.stderr
        assert b"parent_timestamp_mismatch: child records" in r.stdout
        assert b"parent has 12345" in r.stdout


def test_info_properties(chain, tmp_path):
    if not os.path.exists(DISKFERRY):
        pytest.skip("no diskferry binary yet")
    parent, child, want, sectors = chain
    uid = build_vhd_diff(child, parent, sectors)
    pid = footer_of(parent)[F_UID:F_UID + 16]
    r = df("info", "-f", "vhd", child)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "type: differencing" in out and "type: dynamic" in out
    assert "creator: win 10.0" in out and "creator: qemu " in out
    assert "unique_id: %s" % uuid.UUID(bytes=uid) in out
    assert "parent_unique_id: %s" % uuid.UUID(bytes=bytes(pid)) in out
    assert "block_size: 2097152" in out
    assert "parent_timestamp_mismatch" not in out
    assert "recorded as: parent.vhd" in out


def test_diff_copy_with_diskferry(chain, tmp_path):
    if not os.path.exists(DISKFERRY):
        pytest.skip("no diskferry binary yet")
    parent, child, want, sectors = chain
    out = tmp_path / "out.raw"
    r = df("copy", "-f", "vhd", child, out)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == want


# --- corruption: every case exits 5 without a crash ---------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """qemu 8 MiB dynamic: footer copy 0, header 512, BAT 1536 (5
    entries), one block at sector 4 (2048), footer at EOF."""
    d = tmp_path_factory.mktemp("vhd")
    img = d / "good.vhd"
    sh(["qemu-img", "create", "-f", "vpc", str(img), "8M"])
    qemu_io(img, ["write -P 0x77 %d 4096" % (2 * MiB)])
    fx = d / "fixed.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "subformat=fixed",
        str(fx), "4M"])
    assert imgcat(img).returncode == 0
    return img, fx


def copy_of(src, tmp_path):
    img = tmp_path / "bad.vhd"
    shutil.copy(src, img)
    return img


def expect_corrupt(img):
    p = imgcat("-f", "vhd", img)
    assert p.returncode == 5, (p.returncode, p.stderr)
    assert p.stderr.startswith(b"imgcat: ")
    return p


FOOTER_CASES = [
    (F_VERSION, ">I", 0), (F_VERSION, ">I", FREE),
    (F_DATA_OFF, ">Q", 0), (F_DATA_OFF, ">Q", 2 ** 64 - 1),
    (F_DATA_OFF, ">Q", 4 * MiB), (F_DATA_OFF, ">Q", 1536),
    (F_TYPE, ">I", 0), (F_TYPE, ">I", 1), (F_TYPE, ">I", 5),
    (F_TYPE, ">I", FREE),
    # size beyond what the BAT covers (max geometry -> current size)
    (F_CUR_SIZE, ">Q", 2 ** 64 - 1), (F_CUR_SIZE, ">Q", 11 * MiB),
]


@pytest.mark.parametrize("off,fmt,val", FOOTER_CASES,
                         ids=["%d=%#x" % (o, v) for o, f, v in FOOTER_CASES])
def test_corrupt_footer_field(good, tmp_path, off, fmt, val):
    img = copy_of(good[0], tmp_path)
    set_footer(img, off, fmt, val)
    if off == F_CUR_SIZE:
        set_footer(img, F_GEOM, ">I", 0xFFFF10FF)
    expect_corrupt(img)


def test_corrupt_footer_checksum(good, tmp_path):
    img = copy_of(good[0], tmp_path)
    write_at(img, os.path.getsize(img) - 512 + F_CSUM, b"\0\0\0\0")
    assert b"checksum" in expect_corrupt(img).stderr


def test_corrupt_both_cookies(good, tmp_path):
    img = copy_of(good[0], tmp_path)
    write_at(img, 0, b"xxxxxxxx")
    write_at(img, os.path.getsize(img) - 512, b"xxxxxxxx")
    expect_corrupt(img)


@pytest.mark.parametrize("off,fmt,val", [
    (F_CSUM, ">I", 0), (F_TYPE, ">I", 3), (F_TYPE, ">I", 7),
    (F_CUR_SIZE, ">Q", 2 ** 63)])
def test_corrupt_fixed(good, tmp_path, off, fmt, val):
    img = copy_of(good[1], tmp_path)
    if off == F_CSUM:
        write_at(img, os.path.getsize(img) - 512 + F_CSUM, b"\0\0\0\0")
    else:
        set_footer(img, off, fmt, val)
        set_footer(img, F_GEOM, ">I", 0xFFFF10FF)
    expect_corrupt(img)


HEADER_CASES = [
    (0, ">Q", 0), (H_TABLE, ">Q", 0), (H_TABLE, ">Q", 2 ** 64 - 1),
    (H_TABLE, ">Q", 4 * MiB), (H_VERSION, ">I", 0),
    (H_VERSION, ">I", FREE), (H_ENTRIES, ">I", 0), (H_ENTRIES, ">I", 4),
    (H_ENTRIES, ">I", FREE), (H_ENTRIES, ">I", 1 << 20),
    (H_BLOCK, ">I", 0), (H_BLOCK, ">I", FREE), (H_BLOCK, ">I", 3 << 20),
    (H_BLOCK, ">I", 256), (H_BLOCK, ">I", MiB), (H_BLOCK, ">I", 1 << 31),
]


@pytest.mark.parametrize("off,fmt,val", HEADER_CASES,
                         ids=["%d=%#x" % (o, v) for o, f, v in HEADER_CASES])
def test_corrupt_header_field(good, tmp_path, off, fmt, val):
    img = copy_of(good[0], tmp_path)
    set_header(img, off, fmt, val)
    expect_corrupt(img)


@pytest.mark.parametrize("where,words", [
    (0, b"BAT at 0 (20 bytes) overlaps the footer copy at 0"),
    (520, b"BAT at 520 (20 bytes) overlaps the dynamic header at 512"),
    ("footer", b"overlaps the footer at"),
])
def test_corrupt_bat_placement(good, tmp_path, where, words):
    """The BAT lies on neither footer nor the dynamic header."""
    img = copy_of(good[0], tmp_path)
    if where == "footer":
        where = os.path.getsize(img) - 512 - 8
    set_header(img, H_TABLE, ">Q", where)
    assert words in expect_corrupt(img).stderr


def test_corrupt_header_checksum(good, tmp_path):
    img = copy_of(good[0], tmp_path)
    set_header(img, H_BLOCK, ">I", 1 << 20, fix=False)
    assert b"checksum" in expect_corrupt(img).stderr


@pytest.mark.parametrize("entry,val", [
    (1, 0x7FFFFFFF), (1, FREE - 1), (0, 0x1004), (4, 0x1001)])
def test_corrupt_bat_entry(good, tmp_path, entry, val):
    """BAT entries whose block runs past the data (before the footer)."""
    img = copy_of(good[0], tmp_path)
    write_at(img, 1536 + 4 * entry, struct.pack(">I", val))
    expect_corrupt(img)


@pytest.mark.parametrize("val,what", [
    (0, b"footer copy"), (1, b"dynamic header"), (3, b"BAT"),
    (4, b"overlap")])
def test_corrupt_bat_overlap(good, tmp_path, val, what):
    """Entry 0 pointing into metadata, or at block 1's sector (4)."""
    img = copy_of(good[0], tmp_path)
    write_at(img, 1536, struct.pack(">I", val))
    p = expect_corrupt(img)
    assert what in p.stderr and b"overlap" in p.stderr


@pytest.mark.parametrize("cut", [0, 1, 100, 511, 512, 1000, 1536, 1540,
                                 2048, 2048 + 512 + 4096, 2048 + 2 * MiB])
def test_truncated(good, tmp_path, cut):
    img = tmp_path / "cut.vhd"
    with open(good[0], "rb") as f:
        data = f.read(cut)
    with open(img, "wb") as f:
        f.write(data)
    expect_corrupt(img)


def test_corrupt_locator_past_eof(chain, tmp_path):
    parent, child, want, sectors = chain
    ho = 512
    h = bytearray(read_at(child, ho, 1024))
    struct.pack_into(">Q", h, H_LOC + 16, 2 ** 40)
    write_at(child, ho, bytes(seal(h, H_CSUM)))
    assert b"locator" in expect_corrupt(child).stderr


def test_fixed_with_511_byte_footer(tmp_path):
    """Pre-2004 Virtual PC wrote a 511-byte footer (the spec's note):
    the last (reserved, zero) byte of a qemu footer cut off."""
    img = tmp_path / "old.vhd"
    sh(["qemu-img", "create", "-f", "vpc", "-o", "subformat=fixed",
        str(img), "4M"])
    qemu_io(img, ["write -P 0x4f %d 4096" % (4 * MiB - 4096)])
    ref = qemu_raw(img, tmp_path / "ref.raw", fmt="vpc")
    with open(img, "r+b") as f:
        f.truncate(os.path.getsize(img) - 1)
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == open(ref, "rb").read()
