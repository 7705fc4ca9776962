"""Build VHDX files from the documented layout ([MS-VHDX],
docs/formats.md 5.4).

For what qemu-img cannot make: differencing images (parent locator,
PARTIALLY_PRESENT blocks with sector bitmaps), 4096-byte logical
sectors, dirty logs and corrupt variants.  Written from the spec, not
from any implementation.

Layout of a built file (offsets in MiB unless noted):
    0          identifier "vhdxfile"
    64/128 KiB headers 1 and 2
    192/256 KiB region tables
    1          log (1 MiB)
    2          BAT (rounded up to MiB)
    then       metadata region (1 MiB: table, items from +64 KiB)
    then       payload blocks and sector bitmap blocks, in order
"""
import struct
import uuid

KIB = 1024
MIB = 1024 * 1024

BAT_GUID = "2DC27766-F623-4200-9D64-115E9BFD4A08"
META_GUID = "8B7CA206-4790-4B9A-B8FE-575F050F886E"
FILE_PARAMS = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B"
DISK_SIZE = "2FA54224-CD1B-4876-B211-5DBED83BF4B8"
DISK_ID = "BECA12AB-B2E6-4523-93EF-C309E000C746"
LOGICAL_SECTOR = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F"
PHYSICAL_SECTOR = "CDA348C7-445D-4471-9CC9-E9885251C556"
PARENT_LOCATOR = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"
PARENT_TYPE = "B04AEFB7-D19E-4A81-B789-25B8E9445913"

NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED = 0, 1, 2, 3
FULLY_PRESENT, PARTIALLY_PRESENT = 6, 7
SB_PRESENT = 6

HEADER1, HEADER2 = 64 * KIB, 128 * KIB
RT1, RT2 = 192 * KIB, 256 * KIB
LOG_OFF = 1 * MIB
LOG_LEN = 1 * MIB
BAT_OFF = 2 * MIB


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    t = _T
    for b in data:
        c = (c >> 8) ^ t[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def guid(s):
    """On-disk (mixed endian) bytes of a GUID string."""
    return uuid.UUID(s).bytes_le


def guid_str(b):
    return str(uuid.UUID(bytes_le=bytes(b)))


def set_crc(buf, off, length, crc_off=4):
    """Recompute the CRC-32C of buf[off:off+length] (field at crc_off)."""
    struct.pack_into("<I", buf, off + crc_off, 0)
    c = crc32c(bytes(buf[off:off + length]))
    struct.pack_into("<I", buf, off + crc_off, c)


def header(seq, data_write_guid, log_guid=b"\0" * 16, version=1,
           log_version=0):
    h = bytearray(4 * KIB)
    h[0:4] = b"head"
    struct.pack_into("<Q", h, 8, seq)
    h[16:32] = uuid.uuid4().bytes_le
    h[32:48] = data_write_guid
    h[48:64] = log_guid
    struct.pack_into("<HHIQ", h, 64, log_version, version, LOG_LEN, LOG_OFF)
    set_crc(h, 0, len(h))
    return h


def region_table(entries):
    """entries: (guid string, offset, length, required)."""
    t = bytearray(64 * KIB)
    t[0:4] = b"regi"
    struct.pack_into("<I", t, 8, len(entries))
    for i, (g, off, length, req) in enumerate(entries):
        struct.pack_into("<16sQII", t, 16 + 32 * i, guid(g), off, length, req)
    set_crc(t, 0, len(t))
    return t


def utf16(s):
    return s.encode("utf-16-le")


def parent_locator(kv):
    """kv: list of (key, value) strings."""
    head = bytearray(guid(PARENT_TYPE)) + struct.pack("<HH", 0, len(kv))
    strings = bytearray()
    entries = bytearray()
    base = len(head) + 12 * len(kv)
    for k, v in kv:
        ko = base + len(strings)
        strings += utf16(k)
        vo = base + len(strings)
        strings += utf16(v)
        entries += struct.pack("<IIHH", ko, vo, len(utf16(k)), len(utf16(v)))
    return bytes(head + entries + strings)


def chunk_ratio(lss, block_size):
    return (1 << 23) * lss // block_size


class Built:
    """A built image: the bytes and where its structures are."""

    def __init__(self):
        self.buf = None
        self.offsets = {}

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.buf)
        return path


def build(vsize, block_size=1 * MIB, lss=512, pss=4096, blocks=None,
          bitmaps=None, parent_kv=None, data_write_guid=None,
          log_guid=None, fixed=False, meta_items=None, extra_regions=(),
          seqs=(1, 2), log=None):
    """Build a VHDX.

    blocks: {block index: (state, data)}; data (<= block_size bytes) is
      stored for FULLY/PARTIALLY_PRESENT.
    bitmaps: {block index: bytes of that block's sector bits} for
      PARTIALLY_PRESENT blocks (LSB first, 1 = in this file).
    parent_kv: parent locator key/value pairs (makes a differencing image).
    meta_items: replaces the metadata item list: (guid, bytes, flags).
    log: bytes placed at the start of the log region.
    """
    blocks = blocks or {}
    bitmaps = bitmaps or {}
    data_write_guid = data_write_guid or uuid.uuid4().bytes_le
    cr = chunk_ratio(lss, block_size)
    nblocks = -(-vsize // block_size)
    diff = parent_kv is not None
    if diff:
        nentries = -(-nblocks // cr) * (cr + 1)
    else:
        nentries = nblocks + (nblocks - 1) // cr if nblocks else 0
    bat_len = max(MIB, -(-nentries * 8 // MIB) * MIB)
    meta_off = BAT_OFF + bat_len
    meta_len = MIB
    next_off = meta_off + meta_len

    bat = bytearray(bat_len)
    payload = []        # (file offset, bytes)
    for b, (state, data) in sorted(blocks.items()):
        off = 0
        if state in (FULLY_PRESENT, PARTIALLY_PRESENT):
            off = next_off
            next_off += block_size
            payload.append((off, data or b""))
        struct.pack_into("<Q", bat, 8 * (b + b // cr), off | state)
    # Sector bitmap blocks: one per chunk holding partial blocks.
    chunks = {}
    for b, bits in sorted(bitmaps.items()):
        c = b // cr
        if c not in chunks:
            chunks[c] = bytearray(MIB)
        spb = block_size // lss
        start = (b % cr) * spb // 8
        chunks[c][start:start + len(bits)] = bits
    for c, bm in sorted(chunks.items()):
        off = next_off
        next_off += MIB
        payload.append((off, bytes(bm)))
        struct.pack_into("<Q", bat, 8 * (c * (cr + 1) + cr), off | SB_PRESENT)

    if meta_items is None:
        bits = (1 if fixed else 0) | (2 if diff else 0)
        meta_items = [
            (FILE_PARAMS, struct.pack("<II", block_size, bits), 4),
            (DISK_SIZE, struct.pack("<Q", vsize), 6),
            (DISK_ID, uuid.uuid4().bytes_le, 6),
            (LOGICAL_SECTOR, struct.pack("<I", lss), 6),
            (PHYSICAL_SECTOR, struct.pack("<I", pss), 6),
        ]
        if diff:
            meta_items.append((PARENT_LOCATOR, parent_locator(parent_kv), 4))
    meta = bytearray(meta_len)
    meta[0:8] = b"metadata"
    struct.pack_into("<HH", meta, 8, 0, len(meta_items))
    item_off = 64 * KIB
    for i, (g, data, flags) in enumerate(meta_items):
        struct.pack_into("<16sIII", meta, 32 + 32 * i, guid(g), item_off,
                         len(data), flags)
        meta[item_off:item_off + len(data)] = data
        item_off += -(-max(len(data), 1) // 4096) * 4096

    regions = [(BAT_GUID, BAT_OFF, bat_len, 1),
               (META_GUID, meta_off, meta_len, 1)] + list(extra_regions)
    out = bytearray(next_off)
    out[0:8] = b"vhdxfile"
    creator = utf16("diskferry test")
    out[8:8 + len(creator)] = creator
    lg = log_guid or b"\0" * 16
    out[HEADER1:HEADER1 + 4 * KIB] = header(seqs[0], data_write_guid, lg)
    out[HEADER2:HEADER2 + 4 * KIB] = header(seqs[1], data_write_guid, lg)
    rt = region_table(regions)
    out[RT1:RT1 + 64 * KIB] = rt
    out[RT2:RT2 + 64 * KIB] = rt
    if log:
        out[LOG_OFF:LOG_OFF + len(log)] = log
    out[BAT_OFF:BAT_OFF + bat_len] = bat
    out[meta_off:meta_off + meta_len] = meta
    for off, data in payload:
        out[off:off + len(data)] = data
    b = Built()
    b.buf = out
    b.offsets = dict(bat=BAT_OFF, bat_len=bat_len, meta=meta_off,
                     payload=[o for o, _ in payload], cr=cr,
                     data_write_guid=data_write_guid)
    return b


def log_entry(seq, log_guid, file_size, writes, tail=0, last=None):
    """One log entry.  writes, in order: (file offset, 4 KiB bytes) for
    a data descriptor, or (file offset, length) for a zero descriptor."""
    ndata = sum(1 for _, w in writes if not isinstance(w, int))
    hdr_len = -(-(64 + 32 * len(writes)) // 4096) * 4096
    entry = bytearray(hdr_len + 4096 * ndata)
    struct.pack_into("<4sIIIQII16sQQ", entry, 0, b"loge", 0, len(entry), tail,
                     seq, len(writes), 0, log_guid, file_size,
                     file_size if last is None else last)
    s = hdr_len
    for i, (off, w) in enumerate(writes):
        if isinstance(w, int):
            struct.pack_into("<4sIQQQ", entry, 64 + 32 * i, b"zero", 0, w,
                             off, seq)
            continue
        assert len(w) == 4096 and off % 4096 == 0
        struct.pack_into("<4sI8sQQ", entry, 64 + 32 * i, b"desc",
                         struct.unpack("<I", w[4092:4096])[0], w[0:8], off,
                         seq)
        struct.pack_into("<4sI", entry, s, b"data", seq >> 32)
        entry[s + 8:s + 4092] = w[8:4092]
        struct.pack_into("<I", entry, s + 4092, seq & 0xFFFFFFFF)
        s += 4096
    set_crc(entry, 0, len(entry))
    return bytes(entry)


def log_region(entries, length=LOG_LEN):
    """A log region with entries [(position, bytes)], wrapping around."""
    region = bytearray(length)
    for pos, e in entries:
        for i in range(len(e)):
            region[(pos + i) % length] = e[i]
    return bytes(region)


def current_header(buf):
    """(offset, header bytes) of the valid header with the higher seq."""
    best = None
    for off in (HEADER1, HEADER2):
        h = bytearray(buf[off:off + 4 * KIB])
        if h[0:4] != b"head":
            continue
        c = struct.unpack_from("<I", h, 4)[0]
        struct.pack_into("<I", h, 4, 0)
        if crc32c(bytes(h)) != c:
            continue
        seq = struct.unpack_from("<Q", h, 8)[0]
        if best is None or seq > best[0]:
            best = (seq, off, bytes(buf[off:off + 4 * KIB]))
    return best[1], best[2]


def data_write_guid(path):
    with open(path, "rb") as f:
        buf = f.read(256 * KIB)
    return current_header(buf)[1][32:48]


def log_guid(path):
    with open(path, "rb") as f:
        buf = f.read(256 * KIB)
    return current_header(buf)[1][48:64]
