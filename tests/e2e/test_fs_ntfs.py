"""The NTFS used-block map (src/track/fs_ntfs.c, through libntfs-3g)
against real volumes made by mkntfs and written through ntfs-3g: the
ranges fs_ntfs_open names (printed by the fs_dump test tool) must hold
everything ntfsfix and the files need, no more than the volume
allocates, and an untrusted volume (dirty, hibernated, BitLocker) must
be named as such instead of mapped."""
import hashlib
import os
import random
import shutil
import struct

import pytest

from conftest import run
from test_fs_ext import copy, sh, zero_outside
from test_fs_ext import dump as fs_dump

SIZE = 64 << 20
NFILES = 12

os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + \
    ":/usr/sbin:/sbin"

pytestmark = pytest.mark.skipif(
    not (shutil.which("mkntfs") and shutil.which("ntfs-3g")
         and os.path.exists("/dev/fuse")),
    reason="ntfs-3g (mkntfs, FUSE) not available")


def dump(img, off=None, length=None):
    """fs_dump ntfs IMG [OFF LEN] (test_fs_ext.dump)."""
    return fs_dump(img, off, length, kind="ntfs")


class Mounted:
    """ntfs-3g IMG MNT [-o OPTS] for a with block; unmounted after."""

    def __init__(self, img, mnt, opts=None):
        self.img, self.mnt, self.opts = img, str(mnt), opts

    def __enter__(self):
        os.makedirs(self.mnt, exist_ok=True)
        argv = ["ntfs-3g", self.img, self.mnt]
        if self.opts:
            argv += ["-o", self.opts]
        sh(*argv)
        return self.mnt

    def __exit__(self, *exc):
        sh("umount", self.mnt)


def make_fs(tmp, seed=1, extra=None):
    """A 64 MiB NTFS holding NFILES files of random content (some small
    enough to be resident in the MFT), a third of them then deleted (their
    clusters keep their data).  extra(mnt) writes more.  Returns (image,
    {name: contents of the files left})."""
    rnd = random.Random(seed)
    img = str(tmp / "fs.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    sh("mkntfs", "-F", "-Q", "-q", img)
    files = {}
    with Mounted(img, tmp / "mnt") as mnt:
        os.mkdir(os.path.join(mnt, "d"))
        for i in range(1, NFILES + 1):
            size = rnd.choice([rnd.randrange(1, 600),
                               rnd.randrange(4 << 10, 64 << 10),
                               rnd.randrange(256 << 10, 4 << 20)])
            data = rnd.randbytes(size)
            name = ("d/f%d" if i % 2 else "f%d") % i
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(data)
            files[name] = data
        for name in sorted(files)[::3]:
            os.unlink(os.path.join(mnt, name))
            del files[name]
        if extra:
            extra(mnt)
    return img, files


def ntfs_counts(img):
    """(clusters, free clusters, cluster size) as ntfsinfo -m says."""
    out = sh("ntfsinfo", "-m", img)
    info = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip().split()[0] if v.strip() else ""
    return (int(info["Volume Size in Clusters"]), int(info["Free Clusters"]),
            int(info["Cluster Size"]))


@pytest.fixture(scope="module")
def ntfs_img(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ntfs")
    return make_fs(tmp)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_used_map_holds_the_volume(ntfs_img, tmp_path):
    img, files = ntfs_img
    before = digest(img)
    state, ranges, used, fs = dump(img)
    assert digest(img) == before     # read-only: nothing written
    assert state == "ok", ranges
    assert fs == "ntfs"
    # ascending, coalesced, inside the disk; both boot sectors named
    assert ranges[0][0] == 0 and ranges[0][1] >= 512
    for (a, al), (b, _) in zip(ranges, ranges[1:]):
        assert a + al < b
    assert ranges[-1][0] + ranges[-1][1] == SIZE
    assert sum(n for _, n in ranges) == used
    # (b) no more than the volume allocates: within a few clusters
    clusters, free, cs = ntfs_counts(img)
    assert abs(used - (clusters - free) * cs) <= 4 * cs
    assert used < SIZE // 2          # the map does leave things out
    # (a) everything it needs: zero the rest, ntfsfix finds it clean, the
    # files read back whole
    z = str(tmp_path / "zeroed.img")
    zero_outside(img, ranges, z)
    p = run(["ntfsfix", "-n", z])
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    with Mounted(z, tmp_path / "zmnt", "ro") as mnt:
        for name, data in files.items():
            with open(os.path.join(mnt, name), "rb") as f:
                assert f.read() == data, name
    # the same answer twice
    assert dump(img) == (state, ranges, used, fs)


def test_free_space_is_left_out(ntfs_img, tmp_path):
    # a deleted file's clusters keep its bytes, and the map skips them
    img, _ = ntfs_img
    _, ranges, _, _ = dump(img)
    clusters, free, cs = ntfs_counts(img)
    gaps = sum(n for n in
               (b - (a + al) for (a, al), (b, _) in zip(ranges, ranges[1:])))
    assert gaps == free * cs


def patch(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def volume_info_offsets(img):
    """The offsets of $Volume's VOLUME_INFORMATION flags in $MFT and in
    $MFTMirr (record 3, resident attribute 0x70, flags at +0x0A)."""
    with open(img, "rb") as f:
        boot = f.read(512)
        bps = struct.unpack_from("<H", boot, 0x0B)[0]
        cs = bps * boot[0x0D]
        mft, mirr = struct.unpack_from("<QQ", boot, 0x30)
        c = struct.unpack_from("<b", boot, 0x40)[0]
        rec = c * cs if c > 0 else 1 << -c
        out = []
        for lcn in (mft, mirr):
            at = lcn * cs + 3 * rec
            f.seek(at)
            r = f.read(rec)
            assert r[:4] == b"FILE"
            a = struct.unpack_from("<H", r, 0x14)[0]
            while True:
                typ, alen = struct.unpack_from("<II", r, a)
                assert typ != 0xffffffff and alen > 0
                if typ == 0x70:
                    voff = struct.unpack_from("<H", r, a + 0x14)[0]
                    out.append(at + a + voff + 0x0A)
                    break
                a += alen
        return out


def test_dirty_untrusted(ntfs_img, tmp_path):
    img = copy(ntfs_img[0], tmp_path)
    for at in volume_info_offsets(img):
        with open(img, "rb") as f:
            f.seek(at)
            (flags,) = struct.unpack("<H", f.read(2))
        patch(img, at, struct.pack("<H", flags | 1))
    assert "Volume Flags: 0x0001" in sh("ntfsinfo", "-f", "-m", img)
    state, reason, _, fs = dump(img)
    assert (state, reason, fs) == ("untrusted",
                                   "NTFS volume is dirty (needs chkdsk)",
                                   "ntfs")


def test_hibernated_untrusted(tmp_path):
    def hiberfil(mnt):
        with open(os.path.join(mnt, "hiberfil.sys"), "wb") as f:
            f.write(b"hibr" + bytes(8192))
    img, _ = make_fs(tmp_path, seed=2, extra=hiberfil)
    state, reason, _, _ = dump(img)
    assert (state, reason) == ("untrusted", "NTFS is hibernated (hiberfil.sys)")


def test_zeroed_hiberfil_trusted(tmp_path):
    # hiberfil.sys whose header is zero: Windows resumed, nothing cached
    def hiberfil(mnt):
        with open(os.path.join(mnt, "hiberfil.sys"), "wb") as f:
            f.write(bytes(8192))
    img, _ = make_fs(tmp_path, seed=3, extra=hiberfil)
    assert dump(img)[0] == "ok"


def test_bitlocker_untrusted(ntfs_img, tmp_path):
    img = copy(ntfs_img[0], tmp_path)
    patch(img, 3, b"-FVE-FS-")
    assert dump(img)[:2] == ("untrusted", "BitLocker volume")


def test_bitmap_padding_untrusted(ntfs_img, tmp_path):
    # bits of $Bitmap past the last cluster cleared: libntfs-3g's free
    # count (all of $Bitmap) then disagrees with the volume's clusters
    img = copy(ntfs_img[0], tmp_path)
    clusters, _, cs = ntfs_counts(img)
    # $Bitmap's first run, from ntfsinfo's dump of inode 6
    out = sh("ntfsinfo", "-i", "6", "-v", img)
    runs = out.split("Runlist:", 1)[1].splitlines()[1:]
    lcn = int(runs[0].split()[1], 16)
    assert clusters // 8 < cs        # the last byte is in the first cluster
    last = lcn * cs + (clusters // 8)
    with open(img, "rb") as f:
        f.seek(last)
        b = f.read(1)[0]
    if clusters % 8:
        b &= (1 << (clusters % 8)) - 1     # clear the padding bits
        patch(img, last, bytes([b]))
    else:
        patch(img, last, b"\0")
    state, reason, _, _ = dump(img)
    assert state == "untrusted"
    assert reason.startswith("NTFS free count disagrees with $Bitmap")


def test_qcow2_same_ranges(ntfs_img, tmp_path):
    q = str(tmp_path / "fs.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", ntfs_img[0], q)
    assert dump(q) == dump(ntfs_img[0])


def test_mbr_partition_same_ranges_shifted(ntfs_img, tmp_path):
    # the volume dd'd into partition 1 (1 MiB in) of an MBR disk (parted)
    img = ntfs_img[0]
    off = 1 << 20
    disk = str(tmp_path / "disk.img")
    with open(disk, "wb") as g:
        g.truncate(off + SIZE + (1 << 20))
    sh("parted", "-s", disk, "mklabel", "msdos", "mkpart", "primary", "ntfs",
       "2048s", "%ds" % (2048 + SIZE // 512 - 1))
    sh("dd", "if=" + img, "of=" + disk, "bs=1M", "seek=1", "conv=notrunc",
       "status=none")
    _, base, used, _ = dump(img)
    state, ranges, used2, _ = dump(disk, off, SIZE)
    assert state == "ok"
    assert ranges == [(o + off, n) for o, n in base]
    assert used2 == used
    # a region shorter than the volume is not trusted
    state, reason, _, _ = dump(disk, off, SIZE - (1 << 20))
    assert state == "untrusted"
