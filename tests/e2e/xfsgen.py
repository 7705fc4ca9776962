"""Helpers shared by test_fs_xfs.py and tests/fuzz/xfs_seeds.py: XFS v5
metadata is checksummed (CRC-32C, stored little endian, computed with
the field zeroed), so a patched field needs its sector's CRC refreshed."""


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def refresh_crc(buf, crc_off):
    """Set the CRC at crc_off of bytearray buf over all of buf."""
    buf[crc_off:crc_off + 4] = bytes(4)
    buf[crc_off:crc_off + 4] = crc32c(bytes(buf)).to_bytes(4, "little")


def patch_be32(img, sector_off, sectsize, field, value, crc_off):
    """Set a big-endian u32 in a v5 sector of img and refresh its CRC."""
    with open(img, "r+b") as f:
        f.seek(sector_off)
        b = bytearray(f.read(sectsize))
        b[field:field + 4] = value.to_bytes(4, "big")
        refresh_crc(b, crc_off)
        f.seek(sector_off)
        f.write(b)
