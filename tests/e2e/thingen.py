"""Build LVM thin pool metadata for tests: XML in thin_dump's form, made
into a metadata file by thin_restore (thin-provisioning-tools), and the
ranges a pair of thin devices differ in, worked out here from the
mappings (not from thin_delta) for the tests to compare with.

A pool is described as {thin_id: {origin_block: data_block}}.
"""
import random
import shutil
import struct
import subprocess

SECTOR = 512
META_BLOCK = 4096
SB_CSUM_XOR = 160774            # the thin superblock's checksum salt
SB_OFF_BLOCKNR = 8
SB_OFF_METADATA_SNAP = 56
SB_OFF_SPACE_MAP_ROOTS = 64     # data then metadata, 128 bytes each
SB_OFF_MAPPING_ROOT = 320


def tool(name):
    """The path of a thin-provisioning-tools binary, or None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def runs(mapping):
    """(origin, data, length) runs of a {origin: data} mapping."""
    out = []
    for o in sorted(mapping):
        d = mapping[o]
        if out and out[-1][0] + out[-1][2] == o and \
                out[-1][1] + out[-1][2] == d:
            out[-1][2] += 1
        else:
            out.append([o, d, 1])
    return [tuple(r) for r in out]


def pool_xml(devices, block_sectors=128, nr_data_blocks=None):
    """thin_dump-style XML for devices {id: {origin: data}}."""
    used = [d for m in devices.values() for d in m.values()]
    if nr_data_blocks is None:
        nr_data_blocks = max(used, default=0) + 16
    lines = ['<superblock uuid="" time="1" transaction="1" flags="0" '
             'version="2" data_block_size="%d" nr_data_blocks="%d">'
             % (block_sectors, nr_data_blocks)]
    for dev_id in sorted(devices):
        m = devices[dev_id]
        lines.append('  <device dev_id="%d" mapped_blocks="%d" '
                     'transaction="0" creation_time="0" snap_time="1">'
                     % (dev_id, len(m)))
        for o, d, n in runs(m):
            if n == 1:
                lines.append('    <single_mapping origin_block="%d" '
                             'data_block="%d" time="0"/>' % (o, d))
            else:
                lines.append('    <range_mapping origin_begin="%d" '
                             'data_begin="%d" length="%d" time="0"/>'
                             % (o, d, n))
        lines.append('  </device>')
    lines.append('</superblock>')
    return "\n".join(lines) + "\n"


def restore(xml, meta, xml_path=None, meta_size=8 << 20):
    """Write metadata file `meta` from xml with thin_restore."""
    xml_path = xml_path or str(meta) + ".xml"
    with open(xml_path, "w") as f:
        f.write(xml)
    with open(meta, "wb") as f:
        f.truncate(meta_size)
    p = subprocess.run([tool("thin_restore"), "-i", xml_path, "-o",
                        str(meta)], capture_output=True)
    if p.returncode != 0:
        raise AssertionError("thin_restore: %s" % p.stderr.decode())


def delta(meta, old, new, *extra):
    """thin_delta's stdout (bytes)."""
    p = subprocess.run([tool("thin_delta"), "--snap1", str(old), "--snap2",
                        str(new)] + list(extra) + [str(meta)],
                       capture_output=True)
    if p.returncode != 0:
        raise AssertionError("thin_delta: %s" % p.stderr.decode())
    return p.stdout


def changed(devices, old, new, block_bytes, size):
    """[(off, len)] in bytes: the blocks mapped differently (or in one
    only), coalesced and clipped to size."""
    a, b = devices[old], devices[new]
    blocks = sorted(o for o in set(a) | set(b) if a.get(o) != b.get(o))
    out = []
    for o in blocks:
        off = o * block_bytes
        end = min(off + block_bytes, size)
        if out and out[-1][0] + out[-1][1] == off:
            out[-1][1] = end - out[-1][0]
        else:
            out.append([off, end - off])
    return [tuple(r) for r in out]


def random_pool(seed, nblocks, old=1, new=2):
    """An origin `old` and its snapshot `new`, then written to: some
    blocks remapped, some discarded, some new; shared ones stay."""
    rng = random.Random(seed)
    # data blocks handed out in order, as a pool does: runs of them
    fresh = iter(range(10, 10 ** 9))
    a = {}
    for o in range(nblocks):
        if rng.random() < 0.6:
            a[o] = next(fresh)
    b = dict(a)
    for o in range(nblocks):
        r = rng.random()
        if o in b and r < 0.15:
            b[o] = next(fresh)
        elif o in b and r < 0.22:
            del b[o]
        elif o not in b and r < 0.2:
            b[o] = next(fresh)
    return {old: a, new: b}


def crc32c(data, crc=0xFFFFFFFF):
    """CRC-32C (Castagnoli) as dm's persistent data uses it: no final
    inversion."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc


def _seal(block):
    struct.pack_into("<I", block, 0,
                     crc32c(bytes(block[4:])) ^ SB_CSUM_XOR)


def add_metadata_snap(meta, at_block=1000, break_live=True):
    """Make a reserved metadata snapshot in `meta` as the kernel's
    reserve_metadata_snap does (a copy of the superblock at at_block,
    its space map roots zeroed, named by the live superblock).  With
    break_live the live superblock's mapping root is pointed at itself,
    so only a reader of the snapshot succeeds."""
    with open(meta, "r+b") as f:
        sb = bytearray(f.read(META_BLOCK))
        f.seek(at_block * META_BLOCK)
        if any(f.read(META_BLOCK)):
            raise AssertionError("block %d of %s in use" % (at_block, meta))
        snap = bytearray(sb)
        struct.pack_into("<Q", snap, SB_OFF_BLOCKNR, at_block)
        snap[SB_OFF_SPACE_MAP_ROOTS:SB_OFF_SPACE_MAP_ROOTS + 256] = bytes(256)
        _seal(snap)
        f.seek(at_block * META_BLOCK)
        f.write(snap)
        struct.pack_into("<Q", sb, SB_OFF_METADATA_SNAP, at_block)
        if break_live:
            struct.pack_into("<Q", sb, SB_OFF_MAPPING_ROOT, 0)
        _seal(sb)
        f.seek(0)
        f.write(sb)
