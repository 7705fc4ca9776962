"""qcow2 images with persistent dirty bitmaps, made by qemu-img and
qemu-io, and the byte patches that break them (test_qcow2_bitmap.py and
tests/fuzz/qcow2_bitmap_seeds.py).

Layout (docs/formats.md section 3.5): the bitmaps header extension
(type 0x23852875: u32 nb_bitmaps, u32 0, u64 directory size, u64
directory offset), the directory's entries (u64 table offset, u32 table
entries, u32 flags, u8 type, u8 granularity_bits, u16 name_size, u32
extra_data_size, extra data, name, zero padding to 8), the tables (u64
per cluster of bitmap data).
"""
import os
import select
import struct
import subprocess
import time

EXT_BITMAPS = 0x23852875
OFF_AUTOCLEAR = 88
FLAG_IN_USE, FLAG_AUTO, FLAG_EXTRA_COMPAT = 1, 2, 4
ENTRY = struct.Struct(">QIIBBHI")


def create(path, size="64M", cluster=None, compat=None):
    opts = []
    if cluster:
        opts.append("cluster_size=%d" % cluster)
    if compat:
        opts.append("compat=%s" % compat)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        argv += ["-o", ",".join(opts)]
    subprocess.run(argv + [path, size], check=True, capture_output=True)


def bitmap(path, op, name, granularity=None):
    """qemu-img bitmap --add/--enable/--disable/--remove/--clear."""
    argv = ["qemu-img", "bitmap", "--" + op]
    if op == "add" and granularity:
        argv += ["-g", str(granularity)]
    subprocess.run(argv + [path, name], check=True, capture_output=True)


def write(path, *cmds):
    """qemu-io -c CMD ...: "write -P 0x55 1M 64k", "write 10M 4k"."""
    argv = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        argv += ["-c", c]
    subprocess.run(argv + [path], check=True, capture_output=True)


class QemuIo:
    """An interactive qemu-io holding path open (read-write: QEMU's write
    lock, its bitmaps marked in use).  kill() leaves them so."""

    def __init__(self, path):
        self.p = subprocess.Popen(["qemu-io", "-f", "qcow2", path],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)

    def cmd(self, line, expect=b"wrote", timeout=30):
        """Send one command; wait for a line holding `expect`."""
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        end = time.monotonic() + timeout
        buf = b""
        while expect not in buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [],
                                              left)[0]:
                raise AssertionError("qemu-io: no %r after %r: %r" % (
                    expect, line, buf))
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("qemu-io exited: %r" % buf)
            buf += chunk

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def ext(buf):
    """(offset of the extension's data, nb, dir_size, dir_off), or None."""
    version = struct.unpack_from(">I", buf, 4)[0]
    off = struct.unpack_from(">I", buf, 100)[0] if version == 3 else 72
    while off + 8 <= len(buf):
        t, n = struct.unpack_from(">II", buf, off)
        if t == 0:
            return None
        if t == EXT_BITMAPS:
            return (off + 8,) + struct.unpack_from(">IxxxxQQ", buf, off + 8)
        off += 8 + (n + 7) // 8 * 8
    return None


def entries(buf):
    """The directory entries as dicts (at: file offset of the entry)."""
    x = ext(buf)
    if not x:
        return []
    _, nb, _, pos = x
    out = []
    for _ in range(nb):
        toff, tsize, flags, typ, g, ns, es = ENTRY.unpack_from(buf, pos)
        start = pos + ENTRY.size
        out.append(dict(at=pos, table_off=toff, table_size=tsize,
                        flags=flags, type=typ, gbits=g,
                        extra=bytes(buf[start:start + es]),
                        name=bytes(buf[start + es:start + es + ns])))
        pos += (ENTRY.size + es + ns + 7) // 8 * 8
    return out


def put(buf, off, fmt, *vals):
    """buf (bytearray) with struct fmt written at off."""
    struct.pack_into(fmt, buf, off, *vals)
    return buf


def rewrite_dir(buf, ents):
    """Write ents (as entries() gives them) as the directory, in place
    (it must fit in the directory's cluster), and set nb and size."""
    x = ext(buf)
    data = b""
    for e in ents:
        raw = ENTRY.pack(e["table_off"], e["table_size"], e["flags"],
                         e["type"], e["gbits"], len(e["name"]),
                         len(e["extra"])) + e["extra"] + e["name"]
        data += raw + bytes(-len(raw) % 8)
    buf[x[3]:x[3] + len(data)] = data
    put(buf, x[0], ">IIQ", len(ents), 0, len(data))
    return buf


def table_entry_at(buf, name, i):
    """File offset of entry i of bitmap name's table."""
    e = [e for e in entries(buf) if e["name"] == name.encode()][0]
    return e["table_off"] + 8 * i
