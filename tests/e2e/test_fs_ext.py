"""The ext2/3/4 used-block map (src/track/fs_ext.c, through libext2fs)
against real filesystems made by mke2fs: the ranges fs_ext_open names
(printed by the fs_dump test tool) must hold everything e2fsck and the
files need, no more than the filesystem allocates, and an untrusted
filesystem (journal to recover, bad magic, free counts that disagree
with the bitmap) must be named as such instead of mapped."""
import os
import random
import shutil
import struct
import zlib
import subprocess

import pytest

from conftest import BUILD, VG, run

FS_DUMP = os.environ.get("DF_FS_DUMP", os.path.join(BUILD, "fs_dump"))
SIZE = 64 << 20
NFILES = 9

pytestmark = pytest.mark.skipif(
    not (shutil.which("mke2fs") or os.path.exists("/sbin/mke2fs")),
    reason="e2fsprogs not installed")

os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + \
    ":/usr/sbin:/sbin"


def sh(*argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, (argv, p.stderr.decode())
    return p.stdout.decode()


def dump(img, off=None, length=None, kind="ext"):
    """fs_dump KIND IMG [OFF LEN]: ("ok", [(off, len)], used_bytes, fs) or
    ("untrusted", reason, None, fs).  Whatever the filesystem's library
    says, it says nothing on stderr."""
    argv = list(VG) + [FS_DUMP, kind, img]
    if off is not None:
        argv += [str(off), str(length)]
    p = run(argv)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""
    lines = p.stdout.decode().splitlines()
    fs = lines[-1].split()[1]
    if lines[0].startswith("untrusted: "):
        return "untrusted", lines[0][len("untrusted: "):], None, fs
    ranges = [(int(a), int(b)) for _, a, b in
              (ln.split() for ln in lines if ln.startswith("used "))]
    used = int(lines[-2].split()[1])
    return "ok", ranges, used, fs


def make_fs(tmp, kind, opts):
    """A 64 MiB kind filesystem holding NFILES random files, a third of
    them then deleted without mounting (their blocks keep their data).
    Returns (image, {name: contents of the files left})."""
    rnd = random.Random(zlib.crc32(repr((kind, opts)).encode()))
    src = tmp / "src"
    src.mkdir()
    files = {}
    for i in range(1, NFILES + 1):
        data = rnd.randbytes(rnd.randrange(20 << 10, 3 << 20))
        (src / ("f%d" % i)).write_bytes(data)
        files["f%d" % i] = data
    img = str(tmp / "fs.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    sh("mke2fs", "-q", "-F", "-t", kind, *opts, "-d", str(src), img)
    for i in range(3, NFILES + 1, 3):
        sh("debugfs", "-w", "-R", "rm /f%d" % i, img)
        del files["f%d" % i]
    return img, files


def zero_outside(img, ranges, out):
    """A copy of img with every byte outside ranges zeroed."""
    with open(img, "rb") as f:
        data = bytearray(f.read())
    keep = bytearray(len(data))
    for off, length in ranges:
        keep[off:off + length] = data[off:off + length]
    with open(out, "wb") as f:
        f.write(keep)


def super_info(img):
    h = sh("dumpe2fs", "-h", img)
    info = {}
    for line in h.splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip()
    return (int(info["Block count"]), int(info["Free blocks"]),
            int(info["Block size"]))


CASES = [
    ("ext2", []),
    ("ext3", []),
    ("ext4", ["-b", "1024"]),
    ("ext4", ["-b", "4096"]),
    ("ext4", ["-O", "^flex_bg"]),
    ("ext4", ["-O", "meta_bg,^resize_inode"]),
    ("ext4", ["-O", "bigalloc,^resize_inode", "-C", "65536"]),
]


@pytest.mark.parametrize("kind,opts", CASES,
                         ids=["%s%s" % (k, "".join(o)) for k, o in CASES])
def test_used_map_holds_the_filesystem(tmp_path, kind, opts):
    img, files = make_fs(tmp_path, kind, opts)
    state, ranges, used, fs = dump(img)
    assert state == "ok", ranges
    assert fs == kind
    # ascending, coalesced, inside the disk; the head always named
    assert ranges[0][0] == 0 and ranges[0][1] >= 2048
    for (a, al), (b, _) in zip(ranges, ranges[1:]):
        assert a + al < b
    assert ranges[-1][0] + ranges[-1][1] <= SIZE
    assert sum(n for _, n in ranges) == used
    # (b) no more than the filesystem allocates
    blocks, free, bs = super_info(img)
    assert abs(used - (blocks - free) * bs) <= 0.01 * (blocks - free) * bs
    assert used < SIZE // 2          # the map does leave things out
    # (a) everything it needs: zero the rest, e2fsck is clean, the files
    # read back whole
    z = str(tmp_path / "zeroed.img")
    zero_outside(img, ranges, z)
    p = run(["e2fsck", "-fn", z])
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    for name, data in files.items():
        out = str(tmp_path / ("out_" + name))
        sh("debugfs", "-R", "dump /%s %s" % (name, out), z)
        with open(out, "rb") as f:
            assert f.read() == data, name


def patch(img, off, fmt, value):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, value))


@pytest.fixture(scope="module")
def ext4_img(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ext4")
    img, _ = make_fs(tmp, "ext4", [])
    return img


def copy(img, tmp_path, name="c.img"):
    out = str(tmp_path / name)
    shutil.copyfile(img, out)
    return out


def test_needs_recovery_untrusted(ext4_img, tmp_path):
    img = copy(ext4_img, tmp_path)
    sh("debugfs", "-w", "-R", "feature needs_recovery", img)
    state, reason, _, fs = dump(img)
    assert (state, reason, fs) == ("untrusted", "ext4 needs journal recovery",
                                   "ext4")


def test_needs_recovery_patched_untrusted(ext4_img, tmp_path):
    # the raw bit, checksum left stale: still named for the journal
    img = copy(ext4_img, tmp_path)
    with open(img, "r+b") as f:
        f.seek(1024 + 0x60)
        (v,) = struct.unpack("<I", f.read(4))
    patch(img, 1024 + 0x60, "<I", v | 0x4)
    state, reason, _, _ = dump(img)
    assert (state, reason) == ("untrusted", "ext4 needs journal recovery")


def test_bad_magic_untrusted(ext4_img, tmp_path):
    img = copy(ext4_img, tmp_path)
    patch(img, 1024 + 0x38, "<H", 0x1234)
    state, reason, _, _ = dump(img)
    assert state == "untrusted"
    assert reason == "no ext2/3/4 superblock at offset 1024 (bad magic)"


@pytest.mark.parametrize("state_value,why", [
    (0, "ext4 was not cleanly unmounted"),
    (3, "ext4 has errors recorded (run e2fsck)")])
def test_state_untrusted(ext4_img, tmp_path, state_value, why):
    img = copy(ext4_img, tmp_path)
    sh("debugfs", "-w", "-R", "ssv state %d" % state_value, img)
    assert dump(img)[:2] == ("untrusted", why)


def test_free_count_disagrees_untrusted(ext4_img, tmp_path):
    # through debugfs: the superblock checksum stays right
    img = copy(ext4_img, tmp_path)
    _, free, _ = super_info(img)
    sh("debugfs", "-w", "-R", "ssv free_blocks_count %d" % (free + 10), img)
    state, reason, _, _ = dump(img)
    assert state == "untrusted"
    assert reason == ("ext4 free block count %d disagrees with its bitmap "
                      "(%d free)" % (free + 10, free))


def test_free_count_patched_ext2_untrusted(tmp_path):
    # no checksums on ext2: the raw patch at 1024+0x0C is read as is
    img, _ = make_fs(tmp_path, "ext2", [])
    _, free, _ = super_info(img)
    patch(img, 1024 + 0x0C, "<I", free - 1)
    state, reason, _, _ = dump(img)
    assert state == "untrusted"
    assert "disagrees with its bitmap" in reason


def test_stale_checksum_untrusted(ext4_img, tmp_path):
    # the same raw patch on ext4 breaks the superblock checksum
    img = copy(ext4_img, tmp_path)
    patch(img, 1024 + 0x0C, "<I", 5)
    state, reason, _, _ = dump(img)
    assert state == "untrusted"
    assert reason.startswith("ext4 at offset 0 does not parse: ")


def test_qcow2_same_ranges(ext4_img, tmp_path):
    q = str(tmp_path / "fs.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", ext4_img, q)
    assert dump(q) == dump(ext4_img)


def test_region_offset_and_tail(ext4_img, tmp_path):
    # the filesystem 1 MiB into a larger disk, its region 2 MiB longer:
    # ranges in the disk's coordinates, the tail past the fs named used
    off, extra = 1 << 20, 2 << 20
    disk = str(tmp_path / "disk.img")
    with open(ext4_img, "rb") as f, open(disk, "wb") as g:
        g.truncate(off + SIZE + extra + (1 << 20))
        g.seek(off)
        g.write(f.read())
    _, base, used, _ = dump(ext4_img)
    state, ranges, used2, _ = dump(disk, off, SIZE + extra)
    assert state == "ok"
    want = [(o + off, n) for o, n in base]
    tail = (off + SIZE, extra)
    if want[-1][0] + want[-1][1] == tail[0]:
        want[-1] = (want[-1][0], want[-1][1] + extra)
    else:
        want.append(tail)
    assert ranges == want
    assert used2 == used + extra
    # a region shorter than the filesystem is not trusted
    state, reason, _, _ = dump(disk, off, SIZE - 4096)
    assert state == "untrusted"
    assert "is larger than its region" in reason
