"""VDI images: fixed and dynamic images made by qemu-img, differencing
images, ZERO entries and cbBlockExtra built here from the layout in
docs/formats.md section 4 (qemu-img can neither make nor read those), parent
search by UUID, and corrupt headers and block maps (exit 5, no crash).
"""
import os
import shutil
import struct
import uuid

import pytest

from conftest import DISKFERRY, df, imgcat, qemu_raw, sh, write_at

MiB = 1 << 20
SIG = 0xBEDA107F
FREE = 0xFFFFFFFF
ZERO = 0xFFFFFFFE

# Header offsets (docs/formats.md 4.1).
O_SIG, O_VER, O_CBHDR, O_TYPE = 64, 68, 72, 76
O_OFFBLOCKS, O_OFFDATA, O_SECTOR = 340, 344, 360
O_CBDISK, O_CBBLOCK, O_EXTRA, O_CBLOCKS, O_CALLOC = 368, 376, 380, 384, 388
O_UUID_CREATE, O_UUID_MODIFY, O_UUID_LINK, O_UUID_PMOD = 392, 408, 424, 440

WRITES = [(0, 0x11, 4096), (MiB + 512, 0x22, 8192), (33 * MiB - 1024, 0x33,
          4096), (63 * MiB, 0x44, MiB)]


def qemu_io(img, cmds, fmt="vdi"):
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    sh(args + [str(img)])


def header(path):
    with open(path, "rb") as f:
        return f.read(512)


def put32(path, off, val):
    write_at(path, off, struct.pack("<I", val & 0xFFFFFFFF))


def uuid_text(b):
    """IPRT layout: first u32 and two u16 little endian."""
    return str(uuid.UUID(bytes_le=bytes(b)))


def build_vdi(path, cb_disk, blocks, image_type=1, cb_block=MiB, extra=0,
              cb_header=400, off_blocks=MiB, off_data=None, uuids=None,
              n_blocks=None):
    """Write a VDI as VirtualBox lays it out (1 MiB aligned map and data).

    blocks: {block index: bytes (cb_block long) or "zero"}; data blocks
    are stored in the order given, each after `extra` bytes of 0xee.
    """
    if n_blocks is None:
        n_blocks = -(-cb_disk // cb_block)
    if off_data is None:
        off_data = off_blocks + -(-(n_blocks * 4) // MiB) * MiB
    uuids = uuids or [uuid.uuid4().bytes_le, uuid.uuid4().bytes_le,
                      bytes(16), bytes(16)]
    h = bytearray(off_blocks)
    h[0:64] = b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0")
    struct.pack_into("<IIII", h, O_SIG, SIG, 0x00010001, cb_header,
                     image_type)
    struct.pack_into("<II", h, O_OFFBLOCKS, off_blocks, off_data)
    struct.pack_into("<IIII", h, 348, 0, 0, 0, 512)
    struct.pack_into("<QIIII", h, O_CBDISK, cb_disk, cb_block, extra,
                     n_blocks, sum(1 for v in blocks.values() if v != "zero"))
    for i, u in enumerate(uuids):
        h[O_UUID_CREATE + 16 * i:O_UUID_CREATE + 16 * i + 16] = u
    bmap = [FREE] * n_blocks
    data = bytearray()
    e = 0
    for b, v in blocks.items():
        if v == "zero":
            bmap[b] = ZERO
            continue
        assert len(v) == cb_block
        bmap[b] = e
        data += b"\xee" * extra + v
        e += 1
    with open(path, "wb") as f:
        f.write(h)
        f.write(struct.pack("<%dI" % n_blocks, *bmap))
        f.truncate(off_data)
        f.seek(off_data)
        f.write(data)
    return uuids


def pattern(seed, n):
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(256)) * (n // 256)


def cat(img, *extra):
    p = imgcat(*extra, img)
    return p


def check_same_as_qemu(img, tmp_path):
    ref = qemu_raw(img, tmp_path / "ref.raw")
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


@pytest.mark.parametrize("static", [False, True])
def test_qemu_images_read_as_qemu_reads_them(tmp_path, static):
    img = tmp_path / "d.vdi"
    opts = ["-o", "static=on"] if static else []
    sh(["qemu-img", "create", "-f", "vdi"] + opts + [str(img), "64M"])
    qemu_io(img, ["write -P 0x%x %d %d" % (p, o, n) for o, p, n in WRITES])
    check_same_as_qemu(img, tmp_path)
    m = imgcat("--map", img).stdout.decode().split("\n")
    if static:
        assert m[0] == "0 %d data" % (64 * MiB)
    else:
        # Blocks 0, 1, 32, 33 and 63 hold data, the rest are holes.
        assert m == ["0 %d data" % (2 * MiB), "%d %d hole" % (2 * MiB,
                     30 * MiB), "%d %d data" % (32 * MiB, 2 * MiB),
                     "%d %d hole" % (34 * MiB, 29 * MiB),
                     "%d %d data" % (63 * MiB, MiB), ""]


def test_size_not_a_multiple_of_the_block(tmp_path):
    img = tmp_path / "odd.vdi"
    size = 3 * MiB + 512
    sh(["qemu-img", "create", "-f", "vdi", str(img), str(size)])
    qemu_io(img, ["write -P 0x5a %d 512" % (3 * MiB)])
    check_same_as_qemu(img, tmp_path)
    assert len(imgcat(img).stdout) == size


def test_zero_entries_and_block_extra(tmp_path):
    """VirtualBox-style image: cbHeader 400, map and data at 1 MiB,
    cbBlockExtra 4096, a ZERO entry, blocks stored out of order, a disk
    size that is neither a block nor a sector multiple."""
    img = tmp_path / "vbox.vdi"
    cb_disk = 5 * MiB - 100
    blocks = {3: pattern(3, MiB), 0: pattern(1, MiB), 2: "zero",
              4: pattern(4, MiB)}
    build_vdi(img, cb_disk, blocks, extra=4096)
    size = -(-cb_disk // 512) * 512
    want = bytearray(size)
    for b, v in blocks.items():
        if v != "zero":
            n = min(MiB, size - b * MiB)
            want[b * MiB:b * MiB + n] = v[:n]
    p = imgcat(img)
    assert p.returncode == 0, p.stderr
    assert p.stdout == bytes(want)
    m = imgcat("--map", img).stdout.decode().split("\n")
    assert m[:4] == ["0 %d data" % MiB, "%d %d hole" % (MiB, MiB),
                     "%d %d zero" % (2 * MiB, MiB),
                     "%d %d data" % (3 * MiB, size - 3 * MiB)]


def make_diff(tmp_path, parent, child, blocks, link=None, pmod=None,
              image_type=4):
    """A differencing child of a qemu-made dynamic VDI."""
    h = header(parent)
    cb_disk = struct.unpack_from("<Q", h, O_CBDISK)[0]
    link = link if link is not None else h[O_UUID_CREATE:O_UUID_CREATE + 16]
    pmod = pmod if pmod is not None else h[O_UUID_MODIFY:O_UUID_MODIFY + 16]
    return build_vdi(child, cb_disk, blocks, image_type=image_type,
                     uuids=[uuid.uuid4().bytes_le, uuid.uuid4().bytes_le,
                            link, pmod])


@pytest.fixture
def chain(tmp_path):
    """parent.vdi (qemu, 8 MiB, data in blocks 0, 2, 5) and child.vdi
    (block 2 rewritten, block 5 ZERO, block 6 new) with the expected
    flattened content."""
    parent = tmp_path / "parent.vdi"
    sh(["qemu-img", "create", "-f", "vdi", str(parent), "8M"])
    qemu_io(parent, ["write -P 0x61 0 %d" % MiB,
                     "write -P 0x62 %d 4096" % (2 * MiB + 8192),
                     "write -P 0x65 %d %d" % (5 * MiB, MiB)])
    child = tmp_path / "child.vdi"
    blocks = {6: pattern(6, MiB), 2: pattern(2, MiB), 5: "zero"}
    make_diff(tmp_path, parent, child, blocks)
    want = bytearray(open(qemu_raw(parent, tmp_path / "p.raw"), "rb").read())
    want[2 * MiB:3 * MiB] = blocks[2]
    want[5 * MiB:6 * MiB] = bytes(MiB)
    want[6 * MiB:7 * MiB] = blocks[6]
    return parent, child, bytes(want)


def test_diff_parent_found_by_uuid(chain):
    parent, child, want = chain
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    layer = imgcat("-f", "vdi", "--map", "--layer", child).stdout.decode().split("\n")
    assert layer[:5] == ["0 %d parent" % (2 * MiB), "%d %d data" % (2 * MiB,
                         MiB), "%d %d parent" % (3 * MiB, 2 * MiB),
                         "%d %d zero" % (5 * MiB, MiB),
                         "%d %d data" % (6 * MiB, MiB)]
    m = imgcat("-f", "vdi", "--map", child).stdout.decode().split("\n")
    assert m[0] == "0 %d data" % MiB and m[1] == "%d %d hole" % (MiB, MiB)
    assert "%d %d zero" % (5 * MiB, MiB) in m


def test_diff_type3_undo_reads_as_diff(chain, tmp_path):
    parent, child, want = chain
    put32(child, O_TYPE, 3)
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want


def test_diff_parent_via_parent_dir(chain, tmp_path):
    parent, child, want = chain
    elsewhere = tmp_path / "snap"
    elsewhere.mkdir()
    moved = elsewhere / "{1234}.vdi"
    shutil.move(str(child), moved)
    p = imgcat("-f", "vdi", moved)
    assert p.returncode == 4
    assert b"parent image not found" in p.stderr
    p = imgcat("--parent-dir", tmp_path, moved)
    assert p.returncode == 0, p.stderr
    assert p.stdout == want
    if os.path.exists(DISKFERRY):
        out = tmp_path / "out.raw"
        r = df("copy", "--parent-dir", tmp_path, moved, out)
        assert r.returncode == 0, r.stderr
        assert open(out, "rb").read() == want
        r = df("info", "--parent-dir", tmp_path, moved)
        assert r.returncode == 0, r.stderr
        assert b"found by: --parent-dir" in r.stdout


def test_info_properties(chain):
    if not os.path.exists(DISKFERRY):
        pytest.skip("no diskferry binary yet")
    parent, child, want = chain
    ph, ch = header(parent), header(child)
    r = df("info", "-f", "vdi", child)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "type: diff" in out and "type: dynamic" in out
    for key, h, off in [("uuid", ch, O_UUID_CREATE),
                        ("modify_uuid", ch, O_UUID_MODIFY),
                        ("parent_uuid", ch, O_UUID_LINK),
                        ("uuid", ph, O_UUID_CREATE)]:
        assert "%s: %s" % (key, uuid_text(h[off:off + 16])) in out
    assert "block_size: 1048576" in out


def test_diff_copy_with_diskferry(chain, tmp_path):
    if not os.path.exists(DISKFERRY):
        pytest.skip("no diskferry binary yet")
    parent, child, want = chain
    out = tmp_path / "out.raw"
    r = df("copy", "-f", "vdi", child, out)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == want


def test_diff_no_matching_parent(tmp_path, chain):
    parent, child, want = chain
    make_diff(tmp_path, parent, child, {1: pattern(9, MiB)},
              link=uuid.uuid4().bytes_le)
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 4, p.stderr
    assert b"parent image not found" in p.stderr
    assert b"--parent" in p.stderr


def test_diff_parent_modified_since(tmp_path, chain):
    parent, child, want = chain
    make_diff(tmp_path, parent, child, {1: pattern(9, MiB)},
              pmod=uuid.uuid4().bytes_le)
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 5, p.stderr
    assert b"uuidParentModify" in p.stderr
    assert b"parent.vdi" in p.stderr


def test_diff_two_matching_parents(chain, tmp_path):
    parent, child, want = chain
    shutil.copy(parent, tmp_path / "parent-copy.vdi")
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 5, p.stderr
    assert b"parent.vdi" in p.stderr and b"parent-copy.vdi" in p.stderr


def test_diff_parent_of_other_size(chain, tmp_path):
    parent, child, want = chain
    h = header(parent)
    build_vdi(child, 16 * MiB, {}, image_type=4,
              uuids=[uuid.uuid4().bytes_le, uuid.uuid4().bytes_le,
                     h[O_UUID_CREATE:O_UUID_CREATE + 16],
                     h[O_UUID_MODIFY:O_UUID_MODIFY + 16]])
    p = imgcat("-f", "vdi", child)
    assert p.returncode == 5, p.stderr
    assert b"cbDisk" in p.stderr


def test_uuid_text_form(tmp_path):
    """The text form follows the IPRT byte order (checked against
    Python's bytes_le, which is the same Microsoft layout)."""
    img = tmp_path / "u.vdi"
    u = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    build_vdi(img, MiB, {}, uuids=[u.bytes_le, bytes(16), bytes(16),
                                   bytes(16)])
    assert uuid_text(u.bytes_le) == str(u)
    if not os.path.exists(DISKFERRY):
        pytest.skip("no diskferry binary yet")
    r = df("info", img)
    assert r.returncode == 0, r.stderr
    assert str(u).encode() in r.stdout


@pytest.mark.parametrize("size", [1, 511, 513, 1000, MiB - 100])
def test_size_not_a_multiple_of_512(tmp_path, size):
    """cbDisk not a multiple of 512 (VBoxManage convertfromraw writes
    such): rounded up to a sector, as qemu reads it."""
    img = tmp_path / "odd.vdi"
    sh(["qemu-img", "create", "-f", "vdi", str(img), "1M"])
    qemu_io(img, ["write -P 0x5a 0 1M"])
    with open(img, "r+b") as f:
        f.seek(O_CBDISK)
        f.write(struct.pack("<Q", size))
    check_same_as_qemu(img, tmp_path)
    assert len(imgcat(img).stdout) == -(-size // 512) * 512


# --- corruption: every case exits 5 without a crash ---------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A 4 MiB dynamic qemu VDI: map at 512, data at 1024, one block."""
    d = tmp_path_factory.mktemp("vdi")
    img = d / "good.vdi"
    sh(["qemu-img", "create", "-f", "vdi", str(img), "4M"])
    qemu_io(img, ["write -P 0x77 %d 4096" % (2 * MiB)])
    assert imgcat(img).returncode == 0
    return img


BAD_FIELDS = [
    (O_SIG, 0), (O_SIG, FREE),
    (O_VER, 0), (O_VER, 0x00010000), (O_VER, FREE),
    (O_CBHDR, 0), (O_CBHDR, 390), (O_CBHDR, FREE), (O_CBHDR, 1 << 24),
    (O_TYPE, 0), (O_TYPE, 5), (O_TYPE, FREE),
    (O_OFFBLOCKS, 0), (O_OFFBLOCKS, FREE), (O_OFFBLOCKS, 2 * MiB),
    (O_OFFDATA, 0), (O_OFFDATA, FREE), (O_OFFDATA, 2 * MiB),
    (O_OFFDATA, 1024 + MiB),
    (O_SECTOR, 0), (O_SECTOR, FREE),
    (O_CBDISK, 0), (O_CBDISK + 4, FREE), (O_CBDISK, 4 * MiB + 1),
    (O_CBBLOCK, 0), (O_CBBLOCK, FREE), (O_CBBLOCK, 3 * 4096),
    (O_CBBLOCK, 4096), (O_CBBLOCK, 1 << 31),
    (O_EXTRA, FREE), (O_EXTRA, 4096),
    (O_CBLOCKS, 0), (O_CBLOCKS, FREE), (O_CBLOCKS, 1000),
    # block map: entry >= cBlocks, not a marker, a duplicate
    (512, 4), (512, 0xFFFFFFFD), (512, 0),
    # block 2 at data block 3: past the end of the file
    (520, 3),
]


@pytest.mark.parametrize("off,val", BAD_FIELDS,
                         ids=["%d=%#x" % f for f in BAD_FIELDS])
def test_corrupt_field(good, tmp_path, off, val):
    img = tmp_path / "bad.vdi"
    shutil.copy(good, img)
    put32(img, off, val)
    p = imgcat("-f", "vdi", img)
    assert p.returncode == 5, (p.returncode, p.stderr)
    assert p.stderr.startswith(b"imgcat: ")


@pytest.mark.parametrize("cut", [0, 1, 64, 71, 100, 455, 512, 520, 1024,
                                 1024 + 4096, 1024 + MiB - 1])
def test_truncated(good, tmp_path, cut):
    img = tmp_path / "cut.vdi"
    with open(good, "rb") as f:
        data = f.read(cut)
    with open(img, "wb") as f:
        f.write(data)
    p = imgcat("-f", "vdi", img)
    assert p.returncode == 5, (p.returncode, p.stderr)


def test_truncated_file_is_not_probed_as_vdi(good, tmp_path):
    """Below the signature the file is raw: nothing claims it."""
    img = tmp_path / "cut.vdi"
    with open(good, "rb") as f:
        data = f.read(60)
    with open(img, "wb") as f:
        f.write(data)
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == data


def test_three_layer_chain(chain, tmp_path):
    """A diff of a diff: each layer's parent found by UUID in turn."""
    parent, child, want = chain
    grand = tmp_path / "grand.vdi"
    block = pattern(11, MiB)
    make_diff(tmp_path, child, grand, {5: block, 2: "zero"})
    want = bytearray(want)
    want[5 * MiB:6 * MiB] = block
    want[2 * MiB:3 * MiB] = bytes(MiB)
    p = imgcat("-f", "vdi", grand)
    assert p.returncode == 0, p.stderr
    assert p.stdout == bytes(want)
