#!/usr/bin/python3
"""Write the seed corpus of fuzz_fs_ntfs (tests/fuzz/corpus/fs_ntfs/) in
the form fuzz_fs_ntfs.c reads (disk size, then the non-zero runs as
records, fuzz_sized.h): a 2 MiB volume made by mkntfs with two files
copied in by ntfscp (no mount needed), and damaged copies of it (dirty,
hibernated, BitLocker, $Boot's cluster marked free, the $Bitmap padding
cleared, a bad $MFT record, cut short).

    /usr/bin/python3 tests/fuzz/fs_ntfs_seeds.py
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lvm_cow_seeds import records  # noqa: E402
OUT = os.path.join(HERE, "corpus", "fs_ntfs")
SIZE = 2 << 20
PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"


def tool(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, PATH=PATH))


def mkntfs(tmp, files):
    img = os.path.join(tmp, "fs.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    tool("mkntfs", "-F", "-Q", "-q", "-L", "seed", img)
    for name, data in files.items():
        src = os.path.join(tmp, "src")
        with open(src, "wb") as f:
            f.write(data)
        tool("ntfscp", img, src, name)
    with open(img, "rb") as f:
        return bytearray(f.read())


def geometry(img):
    """(cluster size, $MFT lcn, $MFTMirr lcn, MFT record size)."""
    cs = struct.unpack_from("<H", img, 0x0B)[0] * img[0x0D]
    mft, mirr = struct.unpack_from("<QQ", img, 0x30)
    c = struct.unpack_from("<b", img, 0x40)[0]
    return cs, mft, mirr, (c * cs if c > 0 else 1 << -c)


def attr(img, lcn, recno, typ):
    """The offset in img of attribute typ of MFT record recno."""
    cs, _, _, rec = geometry(img)
    at = lcn * cs + recno * rec
    a = at + struct.unpack_from("<H", img, at + 0x14)[0]
    while True:
        t, alen = struct.unpack_from("<II", img, a)
        if t == 0xffffffff or alen == 0:
            raise ValueError("attribute 0x%x not in record %d" % (typ, recno))
        if t == typ:
            return a
        a += alen


def dirty(img):
    out = bytearray(img)
    _, mft, mirr, _ = geometry(img)
    for lcn in (mft, mirr):
        a = attr(out, lcn, 3, 0x70)
        v = a + struct.unpack_from("<H", out, a + 0x14)[0] + 0x0A
        out[v] |= 1
    return out


def bitmap_lcn(img):
    """$Bitmap's first cluster (record 6, non-resident $DATA)."""
    _, mft, _, _ = geometry(img)
    a = attr(img, mft, 6, 0x80)
    mp = a + struct.unpack_from("<H", img, a + 0x20)[0]
    h = img[mp]
    nlen, noff = h & 15, h >> 4
    return int.from_bytes(img[mp + 1 + nlen:mp + 1 + nlen + noff], "little",
                          signed=True)


def bitmap_bit(img, lcn, value):
    out = bytearray(img)
    cs = geometry(img)[0]
    at = bitmap_lcn(img) * cs + lcn // 8
    if value:
        out[at] |= 1 << (lcn % 8)
    else:
        out[at] &= ~(1 << (lcn % 8)) & 0xff
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = mkntfs(tmp, {"a": bytes(range(256)) * 40, "b": b"small"})
        hib = mkntfs(tmp, {"hiberfil.sys": b"hibr" + bytes(8192)})
    cs = geometry(base)[0]
    clusters = (SIZE // 512 - 1) * 512 // cs
    bad_mft = bytearray(base)
    at = geometry(base)[1] * cs
    bad_mft[at:at + 4] = b"BAAD"
    seeds = {
        "ntfs": records(base),
        "ntfs-dirty": records(dirty(base)),
        "ntfs-hibernated": records(hib),
        # refused on the boot sector: the rest need not be stored
        "ntfs-bitlocker": records(base[:3] + b"-FVE-FS-" + base[11:512],
                                  SIZE),
        "ntfs-boot-free": records(bitmap_bit(base, 0, 0)),
        "ntfs-padding-free": records(bitmap_bit(base, clusters, 0)),
        "ntfs-bad-mft": records(bad_mft),
        "ntfs-short": records(base[:SIZE // 2]),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
