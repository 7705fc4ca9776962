"""qcow2 driver: reading what qemu-img/qemu-io make, refusing what is
corrupt or unsupported (exit 5, no crash), and writing new images that
`qemu-img check` finds clean and `qemu-img compare` finds equal.

Reading is checked through build/imgcat (the library, chain included)
against `qemu-img convert -O raw`; maps against `qemu-img map`.  Writing
is checked through build/imgwrite (sequential write()/zero() calls as the
engine's sinks make them).
"""
import json
import os
import random
import shutil
import struct
import subprocess

import pytest

from conftest import BUILD, DISKFERRY, df, files_equal, imgcat, qemu_raw, \
    run, sh, write_at

IMGWRITE = os.environ.get("DF_IMGWRITE", os.path.join(BUILD, "imgwrite"))
HAVE_CLI = os.path.exists(DISKFERRY)

MiB = 1 << 20


def qemu_io(img, *cmds, fmt="qcow2"):
    argv = ["qemu-io", "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    sh(argv + [str(img)])


def create(img, size="64M", opts=None, backing=None, backing_fmt="qcow2"):
    argv = ["qemu-img", "create", "-f", "qcow2"]
    if opts:
        argv += ["-o", opts]
    if backing:
        argv += ["-b", str(backing), "-F", backing_fmt]
    sh(argv + [str(img), size])
    return img


def scattered(img, seed=1, size=64 * MiB):
    """Known patterns at scattered offsets, some unaligned."""
    rnd = random.Random(seed)
    cmds = []
    for i in range(12):
        off = rnd.randrange(0, size - 300 * 1024) // 512 * 512
        ln = rnd.choice([512, 4096, 65536, 100 * 1024, 3 * 512])
        cmds.append("write -P 0x%02x %d %d" % (rnd.randrange(1, 256), off, ln))
    qemu_io(img, *cmds)


def data_ranges(pairs):
    """Merge (off, len) pairs into sorted disjoint ranges."""
    out = []
    for off, ln in sorted(pairs):
        if out and out[-1][1] >= off:
            out[-1][1] = max(out[-1][1], off + ln)
        else:
            out.append([off, off + ln])
    return [tuple(r) for r in out]


def qemu_data(img):
    m = json.loads(sh(["qemu-img", "map", "--output=json", str(img)]))
    return data_ranges((e["start"], e["length"]) for e in m if e["data"])


def our_map(img, *extra):
    p = imgcat("--map", *extra, img)
    assert p.returncode == 0, p.stderr
    ext = []
    for line in p.stdout.decode().splitlines():
        off, ln, state = line.split()
        ext.append((int(off), int(ln), state))
    return ext


def our_data(img, *extra):
    return data_ranges((o, n) for o, n, s in our_map(img, *extra)
                       if s == "data")


def check_read(img, tmp_path, args=()):
    """imgcat IMG equals qemu-img convert; data extents equal qemu's.
    args: image options (a chain is followed only with -f qcow2)."""
    ref = qemu_raw(img, tmp_path / "ref.raw")
    p = imgcat(*args, img)
    assert p.returncode == 0, p.stderr
    with open(ref, "rb") as f:
        assert p.stdout == f.read()
    assert our_data(img, *args) == qemu_data(img)
    if HAVE_CLI:
        out = tmp_path / "df.raw"
        if out.exists():
            out.unlink()
        r = df("copy", *args, img, out)
        assert r.returncode == 0, r.stderr
        assert files_equal(out, ref)


# A chain is followed only when -f names the top's format.
QCOW2 = ("-f", "qcow2")


def expect_corrupt(img, *words, args=()):
    p = imgcat(*args, img)
    msg = p.stderr.decode()
    assert p.returncode == 5, (p.returncode, msg)
    for w in words:
        assert w in msg, msg
    p = imgcat("--map", *args, img)
    assert p.returncode in (0, 5), p.stderr


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("opts", [
    "compat=0.10",
    "compat=1.1",
    "compat=1.1,cluster_size=512",
    "compat=1.1,cluster_size=2M",
    "compat=0.10,cluster_size=4k",
])
def test_read_plain(tmp_path, opts):
    img = create(tmp_path / "a.qcow2", opts=opts)
    scattered(img)
    qemu_io(img, "write -P 0xab 1M 64k", "write -P 0x11 63M 1M")
    check_read(img, tmp_path)


def test_read_zero_clusters(tmp_path):
    img = create(tmp_path / "z.qcow2", opts="compat=1.1")
    qemu_io(img, "write -P 0xab 0 4M", "write -z 1M 128k",
            "write -z 10M 64k", "write -P 0x33 2M 64k")
    check_read(img, tmp_path)
    m = our_map(img)
    assert (1 * MiB, 128 * 1024, "zero") in m
    assert (10 * MiB, 64 * 1024, "zero") in m


def compressible(n, seed=7):
    rnd = random.Random(seed)
    return bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(n))


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_read_compressed(tmp_path, ctype):
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        f.truncate(8 * MiB)
    write_at(src, 0, compressible(300 * 1024))
    write_at(src, 3 * MiB + 1000, os.urandom(200 * 1024))
    write_at(src, 5 * MiB, b"\xff" * MiB)
    img = tmp_path / "c.qcow2"
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
        "compression_type=" + ctype, str(src), str(img)])
    check_read(img, tmp_path)
    # qemu-io writes on top: a mix of compressed and plain clusters
    qemu_io(img, "write -P 0x5a 64k 4k", "write -z 5M 64k")
    check_read(img, tmp_path)


def test_read_compressed_v2(tmp_path):
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        f.write(compressible(2 * MiB))
    img = tmp_path / "c.qcow2"
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compat=0.10",
        str(src), str(img)])
    check_read(img, tmp_path)


def test_read_extended_l2(tmp_path):
    img = create(tmp_path / "x.qcow2", size="16M",
                 opts="extended_l2=on,cluster_size=128k")
    qemu_io(img, "write -P 0xab 4k 2k", "write -z 8k 4k",
            "write -P 0xcd 1M 200k", "write -P 1 3000k 5k",
            "write -P 2 8M 128k", "write -z 8196k 8k")
    check_read(img, tmp_path)
    m = our_map(img)
    assert (4096, 4096, "data") in m           # one 4 KiB subcluster
    assert (8192, 4096, "zero") in m


def test_read_extended_l2_over_backing(tmp_path):
    base = create(tmp_path / "base.qcow2", size="4M")
    qemu_io(base, "write -P 0x77 0 4M")
    top = create(tmp_path / "top.qcow2", size="4M",
                 opts="extended_l2=on,cluster_size=64k", backing="base.qcow2")
    qemu_io(top, "write -P 0x11 8k 2k", "write -z 64k 4k",
            "write -P 0x22 1M 6k")
    check_read(top, tmp_path, QCOW2)
    layer = our_map(top, "--layer", *QCOW2)
    assert (0, 8192, "parent") in layer
    assert (65536, 4096, "zero") in layer


def test_backing_chain_3_deep(tmp_path):
    d = tmp_path / "sub"
    d.mkdir()
    base = create(d / "base.qcow2", opts="compat=0.10")
    scattered(base, seed=2)
    qemu_io(base, "write -P 0x01 0 2M")
    mid = create(d / "mid.qcow2", backing="base.qcow2")        # relative
    scattered(mid, seed=3)
    qemu_io(mid, "write -z 1M 64k")
    top = create(tmp_path / "top.qcow2", backing=str(d / "mid.qcow2"))
    scattered(top, seed=4)
    qemu_io(top, "write -P 0x44 512k 4k")
    check_read(top, tmp_path, QCOW2)


def test_backing_smaller_and_larger(tmp_path):
    base = create(tmp_path / "base.qcow2", size="1M")
    qemu_io(base, "write -P 0xee 0 1M")
    top = create(tmp_path / "top.qcow2", size="8M", backing="base.qcow2")
    qemu_io(top, "write -P 0x12 512k 4k", "write -P 0x13 3M 4k")
    check_read(top, tmp_path, QCOW2)
    # a backing file larger than the overlay
    big = create(tmp_path / "big.qcow2", size="16M")
    qemu_io(big, "write -P 0x21 0 16M")
    small = create(tmp_path / "small.qcow2", size="2M", backing="big.qcow2")
    qemu_io(small, "write -P 0x22 4k 4k")
    check_read(small, tmp_path, QCOW2)


def test_backing_raw(tmp_path):
    base = tmp_path / "base.raw"
    with open(base, "wb") as f:
        f.truncate(4 * MiB)
    write_at(base, 100000, b"raw backing" * 1000)
    top = create(tmp_path / "top.qcow2", size="4M", backing="base.raw",
                 backing_fmt="raw")
    qemu_io(top, "write -P 0x31 0 64k")
    check_read(top, tmp_path, QCOW2)


def test_backing_format_mismatch_refused(tmp_path):
    base = create(tmp_path / "base.qcow2", size="1M")
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "create", "-f", "qcow2", "-u", "-b", "base.qcow2",
        "-F", "raw", str(top), "1M"])
    expect_corrupt(top, "backing format recorded is 'raw'", args=QCOW2)
    del base


def test_backing_loop(tmp_path):
    a = create(tmp_path / "a.qcow2", size="1M")
    create(tmp_path / "b.qcow2", size="1M", backing="a.qcow2")
    sh(["qemu-img", "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", str(a)])
    expect_corrupt(a, "backing chain loop", args=QCOW2)
    expect_corrupt(tmp_path / "b.qcow2", "backing chain loop", args=QCOW2)


@pytest.mark.parametrize("name,word", [
    ('json:{"driver":"raw","file":{"driver":"file","filename":"x"}}',
     "json:"),
    ("nbd://localhost:10809/x", "protocol"),
    ("nbd:localhost:10809", "protocol"),
])
def test_backing_name_refused(tmp_path, name, word):
    img = tmp_path / "t.qcow2"
    sh(["qemu-img", "create", "-f", "qcow2", "-u", "-b", name, "-F", "raw",
        str(img), "1M"])
    expect_corrupt(img, word)


def test_missing_backing_file(tmp_path):
    img = tmp_path / "t.qcow2"
    sh(["qemu-img", "create", "-f", "qcow2", "-u", "-b", "gone.qcow2",
        "-F", "qcow2", str(img), "1M"])
    p = imgcat(*QCOW2, img)
    assert p.returncode == 4, p.stderr
    assert b"not found" in p.stderr


def test_refuse_qcow_v1(tmp_path):
    img = tmp_path / "v1.qcow"
    sh(["qemu-img", "create", "-f", "qcow", str(img), "1M"])
    expect_corrupt(img, "qcow version 1")


def test_refuse_encryption(tmp_path):
    img = tmp_path / "enc.qcow2"
    cmd = ["qemu-img", "create", "-f", "qcow2", "--object",
           "secret,id=sec0,data=abc123", "-o",
           "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
           str(img), "1M"]
    # qemu-img times its LUKS key derivation with getrusage(); on a busy
    # machine that can read 0 ("Unable to get accurate CPU usage"): again
    for attempt in range(5):
        p = subprocess.run(cmd, capture_output=True, timeout=120)
        if p.returncode == 0 or b"accurate CPU usage" not in p.stderr:
            break
        if img.exists():
            img.unlink()
    assert p.returncode == 0, p.stderr
    expect_corrupt(img, "encrypted", "luks")


def test_refuse_external_data_file(tmp_path):
    # qemu-img creates a relative data file in its working directory.
    img = create(tmp_path / "d.qcow2", size="1M",
                 opts="data_file=%s,data_file_raw=on" % (tmp_path / "d.raw"))
    expect_corrupt(img, "external data file")


# ------------------------------------------------------------- corruption

_BASE_IMAGES = {}


def base_image(tmp_path, opts="compat=1.1"):
    """A small valid image to corrupt (made once per option string)."""
    if opts not in _BASE_IMAGES:
        img = create(tmp_path / "c.qcow2", size="4M", opts=opts)
        qemu_io(img, "write -P 0xab 0 128k", "write -P 0xcd 2M 64k",
                "write -z 3M 64k")
        with open(img, "rb") as f:
            _BASE_IMAGES[opts] = f.read()
    img = tmp_path / "c.qcow2"
    img.write_bytes(_BASE_IMAGES[opts])
    return img


def header(img):
    with open(img, "rb") as f:
        h = f.read(112)
    return {
        "l1_size": struct.unpack(">I", h[36:40])[0],
        "l1_off": struct.unpack(">Q", h[40:48])[0],
        "cluster_bits": struct.unpack(">I", h[20:24])[0],
    }


def patch(src, dst, off, fmt, value):
    shutil.copy(src, dst)
    write_at(dst, off, struct.pack(fmt, value))
    return dst


U32 = 0xffffffff
U64 = 0xffffffffffffffff

HEADER_CASES = [
    # (name, offset, struct fmt, value, expected exit, words in message)
    ("magic0", 0, ">I", 0, 0, []),                 # then it is raw
    ("version0", 4, ">I", 0, 5, ["version 0"]),
    ("version1", 4, ">I", 1, 5, ["version 1"]),
    ("version4", 4, ">I", 4, 5, ["version 4"]),
    ("versionmax", 4, ">I", U32, 5, ["version"]),
    ("backing_off_max", 8, ">Q", U64, 0, []),      # backing size 0: none
    ("backing_size_max", 16, ">I", U32, 0, []),    # backing offset 0: none
    ("cluster_bits0", 20, ">I", 0, 5, ["cluster_bits 0"]),
    ("cluster_bits8", 20, ">I", 8, 5, ["outside 9..21"]),
    ("cluster_bits22", 20, ">I", 22, 5, ["outside 9..21"]),
    ("cluster_bits_max", 20, ">I", U32, 5, ["cluster_bits"]),
    ("size_max", 24, ">Q", U64, 5, ["l1_size"]),
    ("size_past_l1", 24, ">Q", 1 << 40, 5, ["too small"]),
    ("crypt1", 32, ">I", 1, 5, ["encrypted", "aes"]),
    ("crypt_max", 32, ">I", U32, 5, ["encrypted"]),
    ("l1_size0", 36, ">I", 0, 5, ["l1_size 0"]),
    ("l1_size_max", 36, ">I", U32, 5, ["l1_size"]),
    ("l1_size_past_eof", 36, ">I", 1 << 20, 5, ["past end of file"]),
    ("l1_off0", 40, ">Q", 0, 5, ["l1_table_offset"]),
    ("l1_off_max", 40, ">Q", U64, 5, ["l1_table_offset"]),
    ("l1_off_unaligned", 40, ">Q", 0x30200, 5, ["l1_table_offset"]),
    ("l1_off_past_eof", 40, ">Q", 1 << 40, 5, ["past end of file"]),
    ("rt_off0", 48, ">Q", 0, 5, ["refcount_table_offset"]),
    ("rt_off_max", 48, ">Q", U64, 5, ["refcount_table_offset"]),
    ("rt_off_past_eof", 48, ">Q", 1 << 40, 5, ["past end"]),
    ("rt_clusters0", 56, ">I", 0, 5, ["refcount_table_clusters 0"]),
    ("rt_clusters_max", 56, ">I", U32, 5, ["refcount_table_clusters"]),
    ("nb_snap_max", 60, ">I", U32, 5, ["nb_snapshots"]),
    ("nb_snap1", 60, ">I", 1, 5, ["snapshots_offset"]),
    ("snap_off_max", 64, ">Q", U64, 0, []),        # no snapshots: ignored
    ("incompat_max", 72, ">Q", U64, 5, ["incompatible"]),
    ("incompat_bit5", 72, ">Q", 1 << 5, 5, ["bit 5"]),
    ("incompat_bit63", 72, ">Q", 1 << 63, 5, ["bit 63"]),
    ("incompat_dirty", 72, ">Q", 1, 0, []),         # dirty: fine to read
    ("incompat_corrupt", 72, ">Q", 2, 0, []),       # corrupt: read-only ok
    ("incompat_datafile", 72, ">Q", 4, 5, ["external data file"]),
    ("incompat_compress", 72, ">Q", 8, 5, ["compression"]),
    ("compat_max", 80, ">Q", U64, 0, []),
    ("autoclear_max", 88, ">Q", U64, 0, []),
    ("refcount_order7", 96, ">I", 7, 5, ["refcount_order"]),
    ("refcount_order_max", 96, ">I", U32, 5, ["refcount_order"]),
    ("header_length0", 100, ">I", 0, 5, ["header_length"]),
    ("header_length100", 100, ">I", 100, 5, ["header_length"]),
    ("header_length105", 100, ">I", 105, 5, ["header_length"]),
    ("header_length_max", 100, ">I", U32, 5, ["header_length"]),
    ("header_length_cluster", 100, ">I", 65536 + 8, 5, ["header_length"]),
    ("compression_type1", 104, ">B", 1, 5, ["compression_type"]),
    ("ext_len_max", 116, ">I", U32, 5, ["header extension"]),
]


@pytest.mark.parametrize("case", HEADER_CASES,
                         ids=[c[0] for c in HEADER_CASES])
def test_corrupt_header_field(tmp_path, case):
    name, off, fmt, value, rc, words = case
    src = base_image(tmp_path)
    bad = patch(src, tmp_path / ("bad_" + name), off, fmt, value)
    if rc == 5:
        expect_corrupt(bad, *words)
    else:
        p = imgcat(bad)
        assert p.returncode == 0, p.stderr


def test_unknown_incompat_bit_named(tmp_path):
    """The feature name table names a known bit; an unknown one says so."""
    src = base_image(tmp_path)
    bad = patch(src, tmp_path / "bad", 72, ">Q", 1 << 9)
    expect_corrupt(bad, "unknown incompatible feature bit 9")


def test_zstd_bit_without_type(tmp_path):
    src = tmp_path / "s.raw"
    with open(src, "wb") as f:
        f.write(compressible(MiB))
    img = tmp_path / "z.qcow2"
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
        "compression_type=zstd", str(src), str(img)])
    expect_ok = imgcat(img)
    assert expect_ok.returncode == 0
    bad = patch(img, tmp_path / "b1", 104, ">B", 0)
    expect_corrupt(bad, "compression")
    bad = patch(img, tmp_path / "b2", 104, ">B", 2)
    expect_corrupt(bad, "compression_type 2")


@pytest.mark.parametrize("cut", [0, 3, 4, 50, 71, 72, 100, 104, 111, 112,
                                 300, 65536, "l1", "l1+4", "l2", "l2+100",
                                 "data", "data+4096"])
def test_truncated(tmp_path, cut):
    src = base_image(tmp_path)
    h = header(src)
    l1 = h["l1_off"]
    with open(src, "rb") as f:
        f.seek(l1)
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        data = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    if isinstance(cut, str):
        base, _, plus = cut.partition("+")
        cut = {"l1": l1, "l2": l2, "data": data}[base] + int(plus or 0)
    bad = tmp_path / "trunc.qcow2"
    shutil.copy(src, bad)
    os.truncate(bad, cut)
    p = imgcat(bad)
    if cut < 4:
        assert p.returncode == 0       # no magic: a tiny raw file
    else:
        assert p.returncode == 5, (cut, p.stderr)


def l1_l2(img):
    h = header(img)
    with open(img, "rb") as f:
        f.seek(h["l1_off"])
        l1e = struct.unpack(">Q", f.read(8))[0]
    return h["l1_off"], l1e & 0x00fffffffffffe00


@pytest.mark.parametrize("case", [
    ("l1_past_eof", "l1", 0x8000000000000000 | (1 << 40), "past end of file"),
    ("l1_reserved", "l1", "orig|0x2", "reserved bits"),
    ("l1_reserved_hi", "l1", "orig|0x0100000000000000", "reserved bits"),
    ("l1_unaligned", "l1", "orig+0x200", "not cluster aligned"),
    ("l2_past_eof", "l2", 0x8000000000000000 | (1 << 40), "past end of file"),
    ("l2_reserved", "l2", "orig|0x4", "reserved bits"),
    ("l2_reserved_hi", "l2", "orig|0x0200000000000000", "reserved bits"),
    ("l2_unaligned", "l2", "orig+0x200", "not cluster aligned"),
    ("l2_compressed_past_eof", "l2", (1 << 62) | (1 << 40), "compressed"),
    ("l2_compressed_in_header", "l2", (1 << 62) | 100, "compressed"),
], ids=lambda c: c[0])
def test_corrupt_table_entry(tmp_path, case):
    name, table, value, word = case
    src = base_image(tmp_path)
    l1_off, l2_off = l1_l2(src)
    at = l1_off if table == "l1" else l2_off
    with open(src, "rb") as f:
        f.seek(at)
        orig = struct.unpack(">Q", f.read(8))[0]
    if isinstance(value, str):
        expr = value.replace("orig", str(orig))
        value = eval(expr)
    bad = patch(src, tmp_path / name, at, ">Q", value)
    expect_corrupt(bad, word)
    assert ("L1 table entry 0" if table == "l1" else "entry 0") in \
        imgcat(bad).stderr.decode()


def rt_off(img):
    with open(img, "rb") as f:
        return struct.unpack(">Q", f.read(56)[48:56])[0]


@pytest.mark.parametrize("case", [
    # (name, where, value, words)
    ("l1_on_refcount_table", 40, "rt", "L1 table at 0x%(rt)x (8 bytes) "
     "overlaps the refcount table"),
    ("l2_on_l1", "l1e", "l1|COPIED", "L2 table at 0x%(l1)x overlaps the "
     "L1 table"),
    ("l2_on_refcount_table", "l1e", "rt|COPIED", "overlaps the refcount "
     "table"),
    ("data_on_l1", "l2e", "l1|COPIED", "data cluster 0x%(l1)x overlaps the "
     "L1 table"),
    ("data_on_refcount_table", "l2e", "rt|COPIED", "overlaps the refcount "
     "table"),
    ("data_on_l2", "l2e", "l2|COPIED", "data cluster 0x%(l2)x overlaps the "
     "L2 table"),
    ("refcount_table_past_eof", 56, 100, "refcount table at"),
], ids=lambda c: c[0])
def test_table_overlaps(tmp_path, case):
    """No table lies on another, no data cluster on a table."""
    name, where, value, words = case
    src = base_image(tmp_path)
    l1_off, l2_off = l1_l2(src)
    named = {"l1": l1_off, "l2": l2_off, "rt": rt_off(src)}
    if isinstance(value, str):
        value = eval(value, {"COPIED": 1 << 63}, named)
    at = {"l1e": l1_off, "l2e": l2_off}.get(where, where)
    fmt = ">I" if where == 56 else ">Q"
    bad = patch(src, tmp_path / name, at, fmt, value)
    expect_corrupt(bad, words % named)


@pytest.mark.parametrize("size", [1, 511, 513, 1000, 4 * MiB - 1])
def test_size_not_sector_multiple(tmp_path, size):
    """The header's size rounded down to whole sectors, as qemu reads it
    (a size of 1 is an empty disk)."""
    src = base_image(tmp_path)
    img = patch(src, tmp_path / "odd.qcow2", 24, ">Q", size)
    want = qemu_raw(img, tmp_path / "q.raw").read_bytes()
    assert len(want) == size // 512 * 512
    p = imgcat(img)
    assert p.returncode == 0 and p.stdout == want


def test_zero_flag_in_v2_refused(tmp_path):
    src = base_image(tmp_path, opts="compat=0.10")
    _, l2_off = l1_l2(src)
    with open(src, "rb") as f:
        f.seek(l2_off)
        orig = struct.unpack(">Q", f.read(8))[0]
    bad = patch(src, tmp_path / "bad", l2_off, ">Q", orig | 1)
    expect_corrupt(bad, "version 2")


def compressed_image(tmp_path, ctype):
    src = tmp_path / "s.raw"
    with open(src, "wb") as f:
        f.write(compressible(64 * 1024))
        f.truncate(MiB)
    img = tmp_path / ("c_%s.qcow2" % ctype)
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
        "compression_type=" + ctype, str(src), str(img)])
    _, l2_off = l1_l2(img)
    with open(img, "rb") as f:
        f.seek(l2_off)
        e = struct.unpack(">Q", f.read(8))[0]
    assert e & (1 << 62)
    return img, l2_off, e


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_corrupt_compressed(tmp_path, ctype):
    img, l2_off, e = compressed_image(tmp_path, ctype)
    x = 62 - (16 - 8)
    coff = e & ((1 << x) - 1)
    nsect = (e >> x) & 0xff
    assert nsect > 2
    # fewer sectors than the stream needs: inflates to less than a cluster
    short = (e & ~(0xff << x)) | (1 << x)
    bad = patch(img, tmp_path / "short", l2_off, ">Q", short)
    expect_corrupt(bad, "compressed cluster")
    # garbage instead of the stream
    bad = tmp_path / "garbage"
    shutil.copy(img, bad)
    write_at(bad, coff, os.urandom(256))
    expect_corrupt(bad, "compressed cluster")
    # sector count running far past the end of the file
    size = os.path.getsize(img)
    far = (1 << 62) | (0xff << x) | (size - 100)
    bad = patch(img, tmp_path / "far", l2_off, ">Q", far)
    expect_corrupt(bad, "outside the file")


def test_extended_l2_invalid_bitmap(tmp_path):
    img = create(tmp_path / "x.qcow2", size="4M",
                 opts="extended_l2=on,cluster_size=64k")
    qemu_io(img, "write -P 0xab 4k 2k")
    _, l2_off = l1_l2(img)
    with open(img, "rb") as f:
        f.seek(l2_off)
        e, bm = struct.unpack(">QQ", f.read(16))
    assert bm == 4                     # subcluster 2 (2 KiB each)
    bad = patch(img, tmp_path / "both", l2_off + 8, ">Q", bm | (4 << 32))
    expect_corrupt(bad, "both allocated and zero")
    bad = patch(img, tmp_path / "nohost", l2_off + 24, ">Q", 1)
    expect_corrupt(bad, "without a host cluster")
    bad = patch(img, tmp_path / "zflag", l2_off, ">Q", e | 1)
    expect_corrupt(bad, "zero flag")


# ---------------------------------------------------------------- writing

def raw_source(path, size=32 * MiB, seed=5):
    """Patterns incl. unaligned and partial-cluster runs and zero runs."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
    write_at(path, 0, compressible(200 * 1024, seed))
    write_at(path, 1 * MiB + 123, os.urandom(70000))        # unaligned
    write_at(path, 3 * MiB - 10, b"\x01" * 20)              # across a cluster
    write_at(path, 5 * MiB, b"\x00" * MiB)                  # explicit zeros
    for _ in range(20):
        off = rnd.randrange(0, size - 70000)
        byte = bytes([rnd.randrange(256)])
        write_at(path, off, byte * rnd.randrange(1, 70000))
    write_at(path, size - 1000, b"tail" * 250)              # last cluster
    return path


def check_written(src, out):
    chk = run(["qemu-img", "check", str(out)])
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert b"No errors were found" in chk.stdout
    cmp = run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(src),
               str(out)])
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    info = json.loads(sh(["qemu-img", "info", "--output=json", str(out)]))
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert info["format-specific"]["data"]["refcount-bits"] == 16
    return info


@pytest.mark.parametrize("args", [
    [],
    ["--chunk", "12345"],
    ["--chunk", "4097", "--no-zero"],
    ["--chunk", "1000", "--cluster-bits", "9"],
    ["--cluster-bits", "21"],
    ["--chunk", "65536", "--flush-every", "300000"],
    ["-c"],
    ["-c", "--chunk", "7000"],
    ["-c", "--cluster-bits", "12", "--chunk", "777"],
    ["-c", "--chunk", "4097", "--flush-every", "250000"],
], ids=lambda a: "_".join(a) or "default")
def test_write(tmp_path, args):
    src = raw_source(tmp_path / "src.raw")
    out = tmp_path / "out.qcow2"
    p = run([IMGWRITE] + args + [str(src), str(out)])
    assert p.returncode == 0, p.stderr
    info = check_written(src, out)
    bits = int(args[args.index("--cluster-bits") + 1]) \
        if "--cluster-bits" in args else 16
    assert info["cluster-size"] == 1 << bits
    if "-c" in args:
        assert info["format-specific"]["data"]["compression-type"] == "zstd"
        # imgcat reads the compressed clusters back, qemu agrees
        check_read(out, tmp_path)
    # holes and zeros stay unallocated: no data where the source is zero
    with open(src, "rb") as f:
        raw = f.read()
    for off, end in our_data(out):
        assert any(raw[off:end])
    assert our_data(out) == qemu_data(out)


def test_write_sparse_large(tmp_path):
    """A mostly empty 1 GiB disk with 512-byte clusters: the L1 table
    alone (256 KiB) spans two refcount windows (128 KiB each)."""
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        f.truncate(1 << 30)
    write_at(src, 1 << 29, b"middle" * 1000)
    write_at(src, (1 << 30) - 4096, b"end!" * 1024)
    out = tmp_path / "out.qcow2"
    p = run([IMGWRITE, "--cluster-bits", "9", str(src), str(out)])
    assert p.returncode == 0, p.stderr
    check_written(src, out)
    assert os.path.getsize(out) < 8 * MiB


def test_write_from_qcow2_chain(tmp_path):
    """The writer fed from a qcow2 chain (zero clusters, compressed)."""
    base = create(tmp_path / "base.qcow2", size="16M")
    qemu_io(base, "write -P 0x41 0 16M")
    top = create(tmp_path / "top.qcow2", size="16M", backing="base.qcow2")
    qemu_io(top, "write -z 1M 3M", "write -P 0x42 8M 100k")
    out = tmp_path / "out.qcow2"
    p = run([IMGWRITE, "-f", "qcow2", "-c", str(top), str(out)])
    assert p.returncode == 0, p.stderr
    ref = qemu_raw(top, tmp_path / "ref.raw")
    check_written(ref, out)


def test_write_refuses_existing(tmp_path):
    src = raw_source(tmp_path / "src.raw", size=MiB)
    out = tmp_path / "out.qcow2"
    out.write_bytes(b"keep me")
    p = run([IMGWRITE, str(src), str(out)])
    assert p.returncode == 3
    assert out.read_bytes() == b"keep me"


@pytest.mark.skipif(not HAVE_CLI, reason="diskferry CLI not built yet")
@pytest.mark.parametrize("compress", [False, True])
def test_cli_copy_to_qcow2(tmp_path, compress):
    src = raw_source(tmp_path / "src.raw")
    out = tmp_path / "out.qcow2"
    args = ["copy", src, out, "-O", "qcow2"] + (["-c"] if compress else [])
    p = df(*args)
    assert p.returncode == 0, p.stderr
    check_written(src, out)
    p = df("verify", src, out)
    assert p.returncode == 0, p.stderr
    # and back to raw through the CLI
    back = tmp_path / "back.raw"
    p = df("copy", out, back)
    assert p.returncode == 0, p.stderr
    assert files_equal(back, src)


@pytest.mark.parametrize("size", [0, 512, 65536, 65537, 1000000])
def test_write_odd_sizes(tmp_path, size):
    """Sizes qemu-img rounds up to a sector: our header does the same."""
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(size))
    for args in ([], ["-c"]):
        out = tmp_path / "out.qcow2"
        if out.exists():
            out.unlink()
        p = run([IMGWRITE] + args + [str(src), str(out)])
        assert p.returncode == 0, p.stderr
        check_written(src, out)
        info = json.loads(sh(["qemu-img", "info", "--output=json",
                              str(out)]))
        assert info["virtual-size"] == (size + 511) // 512 * 512


def test_write_compressed_packing(tmp_path):
    """Compressed clusters interleaved with incompressible ones pack as
    tightly as qemu-img's (no partial cluster wasted per switch)."""
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        for i in range(32):
            f.write(compressible(256 * 1024, i) if i % 2 else
                    os.urandom(256 * 1024))
    out = tmp_path / "out.qcow2"
    p = run([IMGWRITE, "-c", str(src), str(out)])
    assert p.returncode == 0, p.stderr
    check_written(src, out)
    ref = tmp_path / "ref.qcow2"
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
        "compression_type=zstd", str(src), str(ref)])
    assert os.path.getsize(out) <= os.path.getsize(ref) + 128 * 1024


SEEDS = int(os.environ.get("DF_QCOW2_SEEDS", "4"))   # more: a longer soak


@pytest.mark.parametrize("seed", range(SEEDS))
def test_write_random(tmp_path, seed):
    """Random runs of random, compressible and zero data, random write
    sizes, small clusters (many refcount windows), some flushes."""
    rnd = random.Random(seed)
    src = tmp_path / "src.raw"
    size = 8 * MiB
    with open(src, "wb") as f:
        f.truncate(size)
    for _ in range(60):
        off = rnd.randrange(0, size - 1)
        n = min(rnd.choice([1, 511, 513, 4096, 30000, 200000]), size - off)
        kind = rnd.randrange(3)
        data = (os.urandom(n) if kind == 0 else
                compressible(n, rnd.randrange(99)) if kind == 1 else
                bytes(n))
        write_at(src, off, data)
    args = ["--cluster-bits", str(rnd.choice([9, 10, 12, 16])),
            "--chunk", str(rnd.choice([512, 777, 65536, 1 << 20]))]
    if rnd.randrange(2):
        args.append("-c")
    if rnd.randrange(2):
        args += ["--flush-every", str(rnd.randrange(10000, 2 * MiB))]
    if rnd.randrange(2):
        args.append("--no-zero")
    out = tmp_path / "out.qcow2"
    p = run([IMGWRITE] + args + [str(src), str(out)])
    assert p.returncode == 0, (args, p.stderr)
    check_written(src, out)
