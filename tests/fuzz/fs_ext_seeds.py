#!/usr/bin/python3
"""Write the seed corpus of fuzz_fs_ext (tests/fuzz/corpus/fs_ext/):
small raw disks holding filesystems made by mke2fs (ext2, ext4 without
a journal: too small for one; 1 KiB blocks; with a few files), and damaged copies of them (bad magic,
needs_recovery, a free count that disagrees, a group descriptor
pointing out of the disk, cut short).

    /usr/bin/python3 tests/fuzz/fs_ext_seeds.py
"""
import os
import shutil
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fs_ext")
SIZE = 128 << 10
SB = 1024


def mkfs(tmp, kind, opts):
    src = os.path.join(tmp, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.mkdir(src)
    for i in range(2):
        with open(os.path.join(src, "f%d" % i), "wb") as f:
            f.write(bytes([i + 1]) * (5000 * (i + 1)))
    img = os.path.join(tmp, "fs.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    env = dict(os.environ, MKE2FS_DETERMINISTIC="1",
               E2FSPROGS_FAKE_TIME="1700000000")
    subprocess.run(["mke2fs", "-q", "-F", "-b", "1024", "-t", kind,
                    "-U", "00000000-0000-0000-0000-000000000001",
                    "-E", "hash_seed=00000000-0000-0000-0000-000000000002",
                    *opts, "-d", src, img], check=True, env=env)
    with open(img, "rb") as f:
        return bytearray(f.read())


def patched(img, off, fmt, value):
    out = bytearray(img)
    out[off:off + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ext2 = mkfs(tmp, "ext2", [])
        ext4 = mkfs(tmp, "ext4", ["-O", "^has_journal"])
    seeds = {
        "ext2": ext2,
        "ext4": ext4,
        "ext2-bad-magic": patched(ext2, SB + 0x38, "<H", 0),
        "ext4-needs-recovery": patched(ext4, SB + 0x60, "<I",
                                       struct.unpack_from("<I", ext4,
                                                          SB + 0x60)[0] | 4),
        "ext2-free-count": patched(ext2, SB + 0x0C, "<I", 1),
        # the first group descriptor's block bitmap, far outside
        "ext2-bad-bitmap": patched(ext2, 2048, "<I", 0x7fffffff),
        "ext2-short": ext2[:SIZE // 2],
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
