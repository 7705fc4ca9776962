"""The XFS and swap used-block maps (track/fs_xfs.c, fs_swap.c) on real
filesystems, through tests/tools/fs_dump_xfs.

Oracle for XFS: a copy of the image with every byte outside the used
ranges zeroed must pass `xfs_repair -n` and, mounted read-only, hold
every file byte-identical; the used bytes must be close to what the
superblock says is allocated.  Loop mounts need root; every mount and
loop device is undone in `finally`.
"""
import ctypes
import hashlib
import os
import random
import shutil
import subprocess

import pytest

from conftest import BUILD, VG
from xfsgen import patch_be32

DUMP = os.environ.get("DF_FS_DUMP_XFS", os.path.join(BUILD, "fs_dump_xfs"))
M = 1 << 20

needs_xfs = pytest.mark.skipif(
    not shutil.which("mkfs.xfs") or os.geteuid() != 0,
    reason="needs xfsprogs and root for loop mounts")


def dump(kind, img):
    r = subprocess.run(VG + [DUMP, kind, str(img)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    if lines and lines[0].startswith("untrusted: "):
        return None, lines[0][len("untrusted: "):]
    used = [tuple(map(int, l.split()[1:])) for l in lines
            if l.startswith("used ")]
    assert lines[-1] == "used_bytes %d" % sum(n for _, n in used)
    return used, None


def detach(img):
    r = subprocess.run(["losetup", "-j", str(img)], capture_output=True,
                       text=True)
    for line in r.stdout.splitlines():
        subprocess.run(["losetup", "-d", line.split(":")[0]],
                       capture_output=True)


class Mounted:
    def __init__(self, img, mnt, ro=False):
        self.img, self.mnt, self.ro = img, mnt, ro

    def __enter__(self):
        os.makedirs(self.mnt, exist_ok=True)
        opts = "loop,ro" if self.ro else "loop"
        subprocess.run(["mount", "-t", "xfs", "-o", opts, str(self.img),
                        str(self.mnt)], check=True, capture_output=True)
        return self.mnt

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.mnt)], capture_output=True)
        detach(self.img)


def files_of(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return out


def sb_field(img, name):
    r = subprocess.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p " + name,
                        str(img)], capture_output=True, text=True, check=True)
    return int(r.stdout.split("=")[1].strip(), 0)


def agf_field(img, ag, name):
    r = subprocess.run(["xfs_db", "-r", "-c", "agf %d" % ag, "-c",
                        "p " + name, str(img)], capture_output=True,
                       text=True, check=True)
    return int(r.stdout.split("=")[1].strip(), 0)


def mkxfs(img, *opts):
    with open(img, "wb") as f:
        f.truncate(300 * M)
    subprocess.run(["mkfs.xfs", "-q", "-f", *opts, str(img)], check=True,
                   capture_output=True)


def fill(mnt, seed=1):
    rnd = random.Random(seed)
    names = []
    os.makedirs(os.path.join(mnt, "d"), exist_ok=True)
    for i in range(90):
        name = os.path.join(mnt, "d" if i % 3 else "", "f%03d" % i)
        with open(name, "wb") as f:
            f.write(rnd.randbytes(rnd.choice([100, 5000, 70000, 900000,
                                              2500000])))
        names.append(name)
    for name in names[::3]:
        os.unlink(name)


def punch(mnt, seed=0):
    """A 20 MiB file with every other KiB punched out: thousands of free
    extents, a free-space tree three levels deep with 1 KiB blocks."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long,
                               ctypes.c_long]
    with open(os.path.join(mnt, "big"), "wb") as f:
        f.write(random.Random(seed).randbytes(20 * M))
        f.flush()
        os.fsync(f.fileno())
        for off in range(0, 20 * M, 2048):     # PUNCH_HOLE | KEEP_SIZE
            assert libc.fallocate(f.fileno(), 3, off, 1024) == 0


@pytest.fixture
def filled(tmp_path):
    img = tmp_path / "xfs.img"
    mkxfs(img)
    with Mounted(img, tmp_path / "mnt") as mnt:
        fill(mnt)
        expect = files_of(mnt)
    return img, expect


def zero_outside(src, dst, used):
    size = os.path.getsize(src)
    with open(src, "rb") as i, open(dst, "wb") as o:
        o.truncate(size)
        for off, n in used:
            i.seek(off)
            o.seek(off)
            o.write(i.read(n))


@needs_xfs
@pytest.mark.parametrize("opts,filler", [
    ((), fill), (("-m", "crc=0"), fill),
    (("-m", "rmapbt=1", "-b", "size=1024"), fill),
    (("-b", "size=1024"), punch)])
def test_used_ranges_hold_the_filesystem(tmp_path, opts, filler):
    img = tmp_path / "xfs.img"
    mkxfs(img, *opts)
    try:
        with Mounted(img, tmp_path / "mnt") as mnt:
            filler(mnt, seed=len(opts))
            expect = files_of(mnt)
    except subprocess.CalledProcessError:
        if "crc=0" in opts:
            pytest.skip("this kernel does not mount v4 XFS")
        raise
    if filler is punch:
        assert max(agf_field(img, ag, "bnolevel") for ag in range(
            sb_field(img, "agcount"))) >= 2
    used, why = dump("xfs", img)
    assert why is None
    bs = sb_field(img, "blocksize")
    alloc = (sb_field(img, "dblocks") - sb_field(img, "fdblocks")) * bs
    total = sum(n for _, n in used)
    assert abs(total - alloc) <= alloc * 0.03, (total, alloc)
    copy = tmp_path / "zeroed.img"
    zero_outside(img, copy, used)
    r = subprocess.run(["xfs_repair", "-n", str(copy)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    with Mounted(copy, tmp_path / "mnt2", ro=True) as mnt:
        assert files_of(mnt) == expect


@needs_xfs
@pytest.mark.parametrize("opts", [(), ("-m", "crc=0")])
def test_fresh_filesystem_is_trusted(tmp_path, opts):
    img = tmp_path / "xfs.img"
    mkxfs(img, *opts)
    used, why = dump("xfs", img)
    assert why is None and used
    copy = tmp_path / "zeroed.img"
    zero_outside(img, copy, used)
    r = subprocess.run(["xfs_repair", "-n", str(copy)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def xfs_db_write(img, *cmds):
    args = ["xfs_db", "-x"]
    for c in cmds:
        args += ["-c", c]
    subprocess.run(args + [str(img)], check=True, capture_output=True)


@needs_xfs
def test_inprogress_is_untrusted(filled):
    img, _ = filled
    xfs_db_write(img, "sb 0", "write inprogress 1")
    used, why = dump("xfs", img)
    assert used is None and "in progress" in why


@needs_xfs
def test_unknown_incompat_bit_is_untrusted(filled):
    img, _ = filled
    bits = sb_field(img, "features_incompat")
    patch_be32(img, 0, sb_field(img, "sectsize"), 216, bits | 1 << 20, 224)
    used, why = dump("xfs", img)
    assert used is None and "incompat" in why


def agf_offset(img, ag):
    return (ag * sb_field(img, "agblocks") * sb_field(img, "blocksize") +
            sb_field(img, "sectsize"))


@needs_xfs
def test_corrupt_agf_is_untrusted(filled):
    img, _ = filled
    with open(img, "r+b") as f:
        f.seek(agf_offset(img, 2))
        f.write(b"XAGX")
    used, why = dump("xfs", img)
    assert used is None and "AGF of AG 2" in why


@needs_xfs
def test_free_count_disagreeing_is_untrusted(filled):
    img, _ = filled
    patch_be32(img, agf_offset(img, 1), sb_field(img, "sectsize"), 52, 7, 216)
    used, why = dump("xfs", img)
    assert used is None and "disagree" in why


@needs_xfs
def test_copy_of_a_mounted_filesystem_is_untrusted(tmp_path):
    img = tmp_path / "xfs.img"
    snap = tmp_path / "snap.img"
    mkxfs(img)
    with Mounted(img, tmp_path / "mnt") as mnt:
        fill(mnt)
        subprocess.run(["sync"], check=True)
        shutil.copyfile(img, snap)
    used, why = dump("xfs", snap)
    assert used is None and "log" in why
    used, why = dump("xfs", img)          # unmounted since: clean
    assert why is None


@needs_xfs
@pytest.mark.parametrize("opt,reason", [("-l logdev", "external log"),
                                         ("-r rtdev", "realtime device")])
def test_realtime_and_external_log_are_untrusted(tmp_path, opt, reason):
    img, dev = tmp_path / "xfs.img", tmp_path / "dev.img"
    with open(dev, "wb") as f:
        f.truncate(64 * M)
    flag, name = opt.split()
    mkxfs(img, flag, "%s=%s" % (name, dev))
    used, why = dump("xfs", img)
    assert used is None and reason in why


def mkswap(path):
    with open(path, "wb") as f:
        f.truncate(16 * M)
    subprocess.run(["mkswap", str(path)], check=True, capture_output=True)


@pytest.mark.skipif(not shutil.which("mkswap"), reason="needs mkswap")
def test_swap_uses_its_first_page(tmp_path):
    img = tmp_path / "swap.img"
    mkswap(img)
    used, why = dump("swap", img)
    assert why is None and used == [(0, 4096)]


@pytest.mark.skipif(not shutil.which("mkswap"), reason="needs mkswap")
@pytest.mark.parametrize("sig", [b"S1SUSPEND\0", b"LINHIB0001"])
def test_hibernated_swap_is_untrusted(tmp_path, sig):
    img = tmp_path / "swap.img"
    mkswap(img)
    with open(img, "r+b") as f:
        f.seek(4086)
        f.write(sig)
    used, why = dump("swap", img)
    assert used is None and why == "swap holds a hibernation image"


def test_not_swap_is_untrusted(tmp_path):
    img = tmp_path / "zero.img"
    with open(img, "wb") as f:
        f.truncate(1 * M)
    used, why = dump("swap", img)
    assert used is None and why == "no swap signature"
    used, why = dump("xfs", img)
    assert used is None and why == "no XFS superblock"
