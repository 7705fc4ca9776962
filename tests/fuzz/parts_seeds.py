#!/usr/bin/python3
"""Write the seed corpus of fuzz_parts (tests/fuzz/corpus/parts/) in the
form fuzz_parts.c reads (flags, disk size, records): small MBR and GPT
disks built here, valid and broken.

    /usr/bin/python3 tests/fuzz/parts_seeds.py
"""
import os
import struct
import sys
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lvm_cow_seeds import records as cow_records  # noqa: E402
OUT = os.path.join(HERE, "corpus", "parts")
DISK = 1 << 20
LINUX = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
SWAP = uuid.UUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f").bytes_le


def records(buf, flags=0):
    """flags, then the disk as fuzz_lvm_cow's stores: size, records."""
    return bytes([flags]) + cow_records(bytes(buf))


def entry(status, ptype, start, count):
    return struct.pack("<B3sB3sII", status, b"\0" * 3, ptype, b"\0" * 3,
                       start, count)


def put_mbr(buf, at, entries):
    for i, e in enumerate(entries):
        buf[at + 446 + 16 * i:at + 462 + 16 * i] = e
    buf[at + 510:at + 512] = b"\x55\xaa"


def mbr_disk(loop=False, overlap=False):
    """p1, p2, extended at 640 with three logicals (EBRs at 640, 940,
    1240); loop: the last EBR links back to the first."""
    buf = bytearray(DISK)
    put_mbr(buf, 0, [entry(0x80, 0x83, 64, 256),
                     entry(0, 0x82, 200 if overlap else 320, 256),
                     entry(0, 0x05, 640, 1408)])
    rels = [0, 300, 600]
    for k, rel in enumerate(rels):
        link = rels[k + 1] if k + 1 < len(rels) else (0 if loop else None)
        es = [entry(0, 0x83, 32, 200)]
        if link is not None:
            es.append(entry(0, 0x05, link, 256))
        put_mbr(buf, (640 + rel) * 512, es)
    return buf


def gpt_disk(ss=512, parts=((LINUX, 8, 64), (SWAP, 65, 120),
                            (LINUX, 121, 200))):
    """A GPT of 128 entries on a 1 MiB disk of ss-byte sectors; parts
    are (type, first, last) in units of 4 KiB."""
    buf = bytearray(DISK)
    lbas = DISK // ss
    nent, esize = 128, 128
    esec = nent * esize // ss
    put_mbr(buf, 0, [entry(0, 0xee, 1, lbas - 1)])
    arr = bytearray(nent * esize)
    for i, (t, first, last) in enumerate(parts):
        f, l = first * 4096 // ss, (last + 1) * 4096 // ss - 1
        name = ("p%d" % (i + 1)).encode("utf-16-le").ljust(72, b"\0")
        arr[i * esize:(i + 1) * esize] = (
            t + uuid.UUID(int=i + 1).bytes_le
            + struct.pack("<QQQ", f, l, 0) + name)
    first_use, last_use = 2 + esec, lbas - 2 - esec
    for my, alt, ent in ((1, lbas - 1, 2), (lbas - 1, 1, lbas - 1 - esec)):
        h = bytearray(92)
        h[0:8] = b"EFI PART"
        struct.pack_into("<IIIIQQQQ16sQIII", h, 8, 0x10000, 92, 0, 0, my,
                         alt, first_use, last_use, uuid.UUID(int=7).bytes_le,
                         ent, nent, esize, zlib.crc32(arr))
        struct.pack_into("<I", h, 16, zlib.crc32(h))
        buf[my * ss:my * ss + 92] = h
        buf[ent * ss:ent * ss + len(arr)] = arr
    return buf


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    seeds["mbr-logicals"] = records(mbr_disk())
    seeds["mbr-ebr-loop"] = records(mbr_disk(loop=True))
    seeds["mbr-overlap"] = records(mbr_disk(overlap=True))
    seeds["mbr-past-end"] = records(mbr_disk()[:DISK // 2])
    fat = bytearray(DISK)
    fat[0:3] = b"\xeb\x3c\x90"
    fat[3:11] = b"MSDOS5.0"
    fat[54:62] = b"FAT16   "
    fat[510:512] = b"\x55\xaa"
    seeds["fat-boot-sector"] = records(fat)
    seeds["empty"] = records(bytearray(DISK))
    seeds["gpt-512"] = records(gpt_disk())
    seeds["gpt-4096"] = records(gpt_disk(4096), flags=2)
    bad = gpt_disk()
    bad[512 + 40] ^= 0xff           # primary header: CRC no longer holds
    seeds["gpt-primary-bad"] = records(bad, flags=1)
    both = gpt_disk()
    both[512 + 40] ^= 0xff
    both[DISK - 512 + 40] ^= 0xff
    seeds["gpt-both-bad"] = records(both, flags=1)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
