"""The partition reader (src/track/parts.c, parts_read) against tables
made by parted and sgdisk: the regions the parts_dump test tool prints
are compared with what `parted -m unit B print` and `sgdisk -i` say."""
import os
import re
import shutil
import struct
import subprocess

import pytest

from conftest import BUILD, VG, run, sh

PARTS_DUMP = os.environ.get("DF_PARTS_DUMP", os.path.join(BUILD, "parts_dump"))
SBIN = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
MiB = 1 << 20


def tool(name):
    return shutil.which(name, path=SBIN)


def need(*names):
    for n in names:
        if not tool(n):
            pytest.skip("%s not installed" % n)


def dump(path, fmt=None):
    """parts_dump [-f FMT] PATH: (rc, [(number, off, len, type)], stderr)."""
    argv = VG + [PARTS_DUMP] + (["-f", fmt] if fmt else []) + [str(path)]
    p = run(argv)
    regions = []
    for line in p.stdout.decode().splitlines():
        num, off, length, typ = line.split(" ", 3)
        regions.append((int(num), int(off), int(length), typ))
    return p.returncode, regions, p.stderr.decode()


def helper(argv):
    """Run parted/sgdisk (found in sbin too); their udev noise ignored."""
    p = subprocess.run([tool(argv[0])] + [str(a) for a in argv[1:]],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode()


def parted_parts(path):
    """{number: (off, len)} as `parted -m unit B print` reads path."""
    out = helper(["parted", "-s", "-m", path, "unit", "B", "print"])
    parts = {}
    for line in out.splitlines()[2:]:
        f = line.rstrip(";").split(":")
        parts[int(f[0])] = (int(f[1].rstrip("B")), int(f[3].rstrip("B")))
    return parts


def sgdisk_parts(path):
    """{number: (off, len, type guid)} as sgdisk reads path."""
    parts = {}
    for line in helper(["sgdisk", "-p", path]).splitlines():
        m = re.match(r"\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if not m:
            continue
        n, first, last = (int(x) for x in m.groups())
        info = helper(["sgdisk", "-i", str(n), path])
        guid = re.search(r"Partition GUID code: (\S+)", info).group(1)
        parts[n] = (first * 512, (last - first + 1) * 512, guid.lower())
    return parts


def blank(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def write_at(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def read_at(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


@pytest.fixture
def mbr(tmp_path):
    """3 primaries, an extended partition with 3 logicals."""
    need("parted")
    path = tmp_path / "mbr.img"
    blank(path, 64 * MiB)
    helper(["parted", "-s", path, "mklabel", "msdos",
            "mkpart", "primary", "1MiB", "9MiB",
            "mkpart", "primary", "linux-swap", "9MiB", "17MiB",
            "mkpart", "primary", "ntfs", "17MiB", "25MiB",
            "mkpart", "extended", "25MiB", "100%",
            "mkpart", "logical", "26MiB", "30MiB",
            "mkpart", "logical", "31MiB", "35MiB",
            "mkpart", "logical", "36MiB", "63MiB"])
    return path


@pytest.fixture
def gpt(tmp_path):
    need("sgdisk")
    path = tmp_path / "gpt.img"
    blank(path, 64 * MiB)
    helper(["sgdisk", "-n1:0:+8M", "-n2:0:+8M", "-t2:8200", "-n3:0:+8M",
            "-t3:0700", "-n4:0:0", path])
    return path


def mbr_expected(path):
    oracle = parted_parts(path)
    assert sorted(oracle) == [1, 2, 3, 4, 5, 6, 7]
    ext_type = read_at(path, 446 + 3 * 16 + 4, 1)[0]
    assert ext_type in (0x05, 0x0f, 0x85)
    exp = {}
    for n, (off, length) in oracle.items():
        # the extended entry shows as its first 1 KiB, as in Linux
        exp[n] = (off, min(length, 1024)) if n == 4 else (off, length)
    return exp


def test_mbr_primaries_and_logicals(mbr):
    rc, regions, err = dump(mbr)
    assert rc == 0, err
    assert {r[0]: (r[1], r[2]) for r in regions} == mbr_expected(mbr)
    types = {r[0]: r[3] for r in regions}
    assert types[1] == "mbr 0x83" and types[2] == "mbr 0x82"
    assert types[3] == "mbr 0x07" and re.match(r"mbr 0x(05|0f|85)$", types[4])


def test_mbr_inside_qcow2_reads_the_same(mbr, tmp_path):
    need("qemu-img")
    q = tmp_path / "mbr.qcow2"
    sh(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(mbr), str(q)])
    assert dump(q) == dump(mbr)
    assert dump(q)[0] == 0


def test_gpt_four_partitions(gpt):
    rc, regions, err = dump(gpt)
    assert rc == 0, err
    oracle = sgdisk_parts(gpt)
    assert len(oracle) == 4
    assert {r[0]: (r[1], r[2], r[3]) for r in regions} == {
        n: (off, length, "gpt " + guid)
        for n, (off, length, guid) in oracle.items()}


def test_gpt_primary_header_damaged_uses_backup(gpt):
    good = dump(gpt)
    write_at(gpt, 512 + 40, b"\xff" * 8)        # first usable: CRC fails
    assert dump(gpt) == good


def test_gpt_primary_entries_damaged_uses_backup(gpt):
    good = dump(gpt)
    write_at(gpt, 1024 + 56, b"X")              # entry 1's name: array CRC
    assert dump(gpt) == good


def test_gpt_both_headers_damaged_is_corrupt(gpt):
    write_at(gpt, 512, b"EFI JUNK")
    write_at(gpt, 64 * MiB - 512, b"EFI JUNK")
    rc, regions, err = dump(gpt)
    assert rc == 5 and regions == []
    assert "GPT" in err and "offset 446" in err


def test_zeros_are_one_region(tmp_path):
    path = tmp_path / "zero.img"
    blank(path, 8 * MiB)
    assert dump(path) == (0, [(0, 0, 8 * MiB, "disk")], "")


def test_raw_ext4_is_one_region(tmp_path):
    need("mkfs.ext4")
    path = tmp_path / "ext4.img"
    blank(path, 16 * MiB)
    sh([tool("mkfs.ext4"), "-q", "-F", str(path)])
    assert dump(path) == (0, [(0, 0, 16 * MiB, "disk")], "")


def test_fat_boot_sector_is_not_a_table(tmp_path):
    path = tmp_path / "fat.img"
    blank(path, 8 * MiB)
    if tool("mkfs.vfat"):
        sh([tool("mkfs.vfat"), str(path)])
    else:                       # a FAT16 boot sector's tell-tales
        sec = bytearray(512)
        sec[0:3] = b"\xeb\x3c\x90"
        sec[54:62] = b"FAT16   "
        sec[446:510] = bytes(range(64))     # boot code, not entries
        sec[510:512] = b"\x55\xaa"
        write_at(path, 0, bytes(sec))
    assert dump(path) == (0, [(0, 0, 8 * MiB, "disk")], "")


def test_garbage_entries_are_not_a_table(tmp_path):
    path = tmp_path / "boot.img"
    blank(path, 8 * MiB)
    sec = bytearray(512)
    sec[446:510] = b"\x17" * 64             # status 0x17: boot code
    sec[510:512] = b"\x55\xaa"
    write_at(path, 0, bytes(sec))
    assert dump(path) == (0, [(0, 0, 8 * MiB, "disk")], "")


def test_ebr_loop_is_corrupt(mbr):
    ext = parted_parts(mbr)[4][0]
    # walk to the last EBR, then link it back to the first
    ebr = ext
    while True:
        link = read_at(mbr, ebr + 446 + 16, 16)
        if link[4] == 0:
            break
        ebr = ext + struct.unpack_from("<I", link, 8)[0] * 512
    assert ebr != ext
    write_at(mbr, ebr + 446 + 16,
             struct.pack("<B3sB3sII", 0, b"\0" * 3, 0x05, b"\0" * 3, 0, 1))
    rc, regions, err = dump(mbr)
    assert rc == 5 and regions == [] and "loops" in err
    assert "offset %d" % (ebr + 446 + 16) in err


def test_overlapping_primaries_are_corrupt(mbr):
    # entry 2 starts inside entry 1
    write_at(mbr, 446 + 16 + 8, struct.pack("<I", 4096))
    rc, regions, err = dump(mbr)
    assert rc == 5 and "overlaps" in err and "offset 462" in err


def test_partition_past_the_end_is_corrupt(mbr):
    with open(mbr, "r+b") as f:
        f.truncate(30 * MiB)        # the extended partition ends at 64 MiB
    rc, regions, err = dump(mbr)
    assert rc == 5 and "outside the disk" in err and "offset 494" in err


def test_gpt_4096_byte_sectors_read_as_512(tmp_path):
    """The same layout in 4096-byte sectors (built as fuzz_parts' seeds
    are: sgdisk makes 512-byte sectors on a file) gives the same regions."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fuzz"))
    import parts_seeds
    out = {}
    for ss in (512, 4096):
        path = tmp_path / ("gpt%d.img" % ss)
        path.write_bytes(parts_seeds.gpt_disk(ss))
        out[ss] = dump(path, "raw")
    assert out[512][0] == 0 and len(out[512][1]) == 3
    assert out[4096] == out[512]


def test_gpt_without_partitions_is_one_region(tmp_path):
    need("sgdisk")
    path = tmp_path / "empty-gpt.img"
    blank(path, 8 * MiB)
    helper(["sgdisk", "-o", path])
    assert dump(path) == (0, [(0, 0, 8 * MiB, "disk")], "")
