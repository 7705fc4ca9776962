"""The qcow2 dirty bitmap reader (src/track/qcow2_bitmap.c) on images
qemu-img and qemu-io make: the changed ranges through build/bitmap_dump
(the change source `bitmap:NAME` alone), the trust rules, corrupt
copies, and `diskferry info`'s list.

bitmap_dump IMAGE NAME [SIZE] prints "off len" lines and exits with the
error category: 3 untrusted (sync falls back to compare), 5 corrupt, 2
no such bitmap.
"""
import json
import os
import shutil

import pytest

import qcow2bm as q
from conftest import BUILD, VG, df, run

DUMP = os.environ.get("DF_BITMAP_DUMP", os.path.join(BUILD, "bitmap_dump"))
K, M = 1 << 10, 1 << 20

pytestmark = pytest.mark.skipif(
    not shutil.which("qemu-img") or not shutil.which("qemu-io"),
    reason="needs qemu-img and qemu-io (qemu-utils)")


def dump(*args, env=None):
    return run(VG + [DUMP] + [str(a) for a in args], env=env)


def ranges(img, name, *extra, env=None):
    p = dump(*extra, img, name, env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""
    return [tuple(map(int, ln.split())) for ln in p.stdout.decode().split(
        "\n") if ln]


def rounded(writes, gran, size=64 * M):
    """The writes (off, len) as whole granules, merged."""
    out = []
    for off, n in sorted(writes):
        a = off // gran * gran
        b = min(-(-(off + n) // gran) * gran, size)
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b - a) for a, b in out]


def failed(img, name, cat, *extra):
    """bitmap_dump fails with exit cat; its message."""
    p = dump(img, name, *extra)
    assert p.returncode == cat, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == b""
    return p.stderr.decode()


@pytest.fixture
def img(tmp_path):
    """64 MiB, bitmap b0 (64 KiB granularity), two writes."""
    path = str(tmp_path / "x.qcow2")
    q.create(path)
    q.bitmap(path, "add", "b0", 65536)
    q.write(path, "write -P 0x55 1M 64k", "write 10M 4k")
    return path


def patched(img, tmp_path, fn):
    """A copy of img with fn(bytearray) applied."""
    buf = bytearray(open(img, "rb").read())
    out = str(tmp_path / "bad.qcow2")
    with open(out, "wb") as f:
        f.write(fn(buf) or buf)
    return out


@pytest.mark.parametrize("gran", [None, 512, 4096, 65536, 1 << 20])
def test_ranges_are_the_writes_rounded(tmp_path, gran):
    path = str(tmp_path / "x.qcow2")
    q.create(path)
    q.bitmap(path, "add", "b0", gran)
    writes = [(1 * M, 64 * K), (10 * M, 4 * K), (10 * M + 8 * K, 512),
              (64 * M - 512, 512)]
    q.write(path, *["write -P 0x55 %d %d" % w for w in writes])
    assert ranges(path, "b0") == rounded(writes, gran or 65536)
    # Asked with an out list of one extent: the caller's loop, same answer.
    assert ranges(path, "b0", "--cap", 1) == rounded(writes, gran or 65536)


def test_last_granule_is_clipped_to_the_disk(tmp_path):
    path = str(tmp_path / "x.qcow2")
    size = 10 * M + 512
    q.create(path, size=str(size))
    q.bitmap(path, "add", "b0", 65536)
    q.write(path, "write 0 512", "write %d 512" % (size - 512))
    assert ranges(path, "b0") == [(0, 64 * K), (10 * M, 512)]


def test_bitmap_added_later_sees_only_later_writes(img):
    q.bitmap(img, "add", "b1", 4096)
    q.write(img, "write 20M 1k", "write 30M 8k")
    assert ranges(img, "b1") == [(20 * M, 4 * K), (30 * M, 8 * K)]
    assert ranges(img, "b0") == [(1 * M, 64 * K), (10 * M, 64 * K),
                                 (20 * M, 64 * K), (30 * M, 64 * K)]


def test_disabled_bitmap_misses_later_writes(img):
    q.bitmap(img, "disable", "b0")
    q.write(img, "write 20M 4k")
    assert ranges(img, "b0") == [(1 * M, 64 * K), (10 * M, 64 * K)]
    p = dump("--list", img)
    assert p.stdout == b"b0 16 disabled consistent usable\n"


def test_cleared_bitmap_names_nothing(img):
    q.bitmap(img, "clear", "b0")
    assert ranges(img, "b0") == []


def test_small_clusters_many_table_entries(tmp_path):
    """512-byte clusters at 512-byte granularity: 32 table entries, most
    of them 0 (all zeros); one set to 1 by hand reads as all ones."""
    path = str(tmp_path / "x.qcow2")
    q.create(path, cluster=512)
    q.bitmap(path, "add", "b0", 512)
    q.write(path, "write 0 512", "write 5M 1k", "write 63M 512")
    want = [(0, 512), (5 * M, 1 * K), (63 * M, 512)]
    assert ranges(path, "b0") == want
    buf = bytearray(open(path, "rb").read())
    e = q.entries(buf)[0]
    assert e["table_size"] == 32
    # Entry 3 covers bitmap bytes [1536, 2048): guest [6 MiB, 8 MiB).
    q.put(buf, q.table_entry_at(buf, "b0", 3), ">Q", 1)
    open(path, "wb").write(buf)
    assert ranges(path, "b0") == [(0, 512), (5 * M, 1 * K), (6 * M, 2 * M),
                                  (63 * M, 512)]


def test_many_ranges_coalesce_at_the_cap(tmp_path):
    """With the cap lowered to 4 ranges (test hook), 12 scattered writes
    come back as at most 4 ranges that still cover every write."""
    path = str(tmp_path / "x.qcow2")
    q.create(path, cluster=512)
    q.bitmap(path, "add", "b0", 512)
    writes = [(i * 5 * M + (i % 3) * 4096, 512) for i in range(12)]
    q.write(path, *["write %d %d" % w for w in writes])
    assert ranges(path, "b0") == writes
    env = dict(os.environ, DF_TEST_BITMAP_MAX_EXTENTS="4")
    got = ranges(path, "b0", env=env)
    assert 1 <= len(got) <= 4
    for off, n in writes:
        assert any(a <= off and off + n <= a + m for a, m in got), (off, got)
    assert got[0][0] == 0 and got[-1][0] + got[-1][1] == writes[-1][0] + 512


def test_in_use_after_killed_qemu_is_untrusted(img):
    qio = q.QemuIo(img)
    try:
        qio.cmd("write 40M 4k")
    finally:
        qio.kill()
    msg = failed(img, "b0", 3)
    assert "bitmap 'b0' is in use (a QEMU has it open or crashed)" in msg
    assert dump("--list", img).stdout == b"b0 16 enabled in-use usable\n"


def test_image_held_by_qemu_is_untrusted(img):
    qio = q.QemuIo(img)
    try:
        qio.cmd("write 40M 4k")
        msg = failed(img, "b0", 3)
        assert "QEMU holds the image's write lock" in msg
    finally:
        qio.kill()


def test_autoclear_clear_is_untrusted(img, tmp_path):
    bad = patched(img, tmp_path, lambda b: q.put(b, q.OFF_AUTOCLEAR, ">Q", 0))
    msg = failed(bad, "b0", 3)
    assert "not kept by the last writer (autoclear bit clear)" in msg
    # ...even when the directory it no longer vouches for is garbage.
    def both(b):
        q.put(b, q.OFF_AUTOCLEAR, ">Q", 0)
        q.put(b, q.entries(b)[0]["at"] + 17, ">B", 0)
    bad = patched(img, tmp_path, both)
    assert "autoclear bit clear" in failed(bad, "b0", 3)


def test_size_other_than_the_image_is_untrusted(img):
    assert "covers 67108864 bytes" in failed(img, "b0", 3, 32 * M)


def test_unknown_name_lists_the_bitmaps(img):
    q.bitmap(img, "add", "other")
    msg = failed(img, "nope", 2)
    assert "no bitmap 'nope' in the image (it has 'b0', 'other')" in msg


def test_v2_image_has_no_bitmaps(tmp_path):
    path = str(tmp_path / "x.qcow2")
    q.create(path, compat="0.10")
    assert dump("--list", path).stdout == b""
    assert "it has no bitmaps" in failed(path, "b0", 2)


def test_extra_data(img, tmp_path):
    def extra(flags):
        def fn(b):
            e = q.entries(b)[0]
            e["extra"] = b"\xaa" * 12
            e["flags"] |= flags
            q.rewrite_dir(b, [e])
        return fn
    ok = patched(img, tmp_path, extra(q.FLAG_EXTRA_COMPAT))
    assert ranges(ok, "b0") == [(1 * M, 64 * K), (10 * M, 64 * K)]
    bad = patched(img, tmp_path, extra(0))
    assert "extra data it says must be understood" in failed(bad, "b0", 5)
    assert dump("--list", bad).stdout == b"b0 16 enabled consistent unusable\n"


def _entry(b, field, fmt, val, i=0):
    offs = dict(table_off=0, table_size=8, flags=12, type=16, gbits=17,
                name_size=18)
    return q.put(b, q.entries(b)[i]["at"] + offs[field], fmt, val)


def _ext(b, field, fmt, val):
    offs = dict(nb=0, reserved=4, dir_size=8, dir_off=16)
    return q.put(b, q.ext(b)[0] + offs[field], fmt, val)


CORRUPT = {
    "granularity-0": (lambda b: _entry(b, "gbits", ">B", 0),
                      "granularity_bits 0 outside 9..31"),
    "granularity-40": (lambda b: _entry(b, "gbits", ">B", 40),
                       "granularity_bits 40 outside 9..31"),
    "table-size-0": (lambda b: _entry(b, "table_size", ">I", 0),
                     "0 table entries, but a disk of 67108864 bytes at "
                     "granularity 65536 needs 1"),
    "table-past-eof": (lambda b: _entry(b, "table_off", ">Q", 1 << 30),
                       "runs past end of file"),
    "table-unaligned": (lambda b: _entry(b, "table_off", ">Q",
                                         q.entries(b)[0]["table_off"] + 8),
                        "not cluster aligned"),
    "table-size": (lambda b: _entry(b, "table_size", ">I", 2),
                   "2 table entries"),
    "data-past-eof": (lambda b: q.put(b, q.table_entry_at(b, "b0", 0), ">Q",
                                      1 << 30), "past end of file"),
    "data-reserved-bits": (lambda b: q.put(b, q.table_entry_at(b, "b0", 0),
                                           ">Q", (1 << 63) | 0x90000),
                           "reserved bits set"),
    "data-unaligned": (lambda b: q.put(b, q.table_entry_at(b, "b0", 0), ">Q",
                                       0x90200), "not cluster aligned"),
    "dir-past-eof": (lambda b: _ext(b, "dir_off", ">Q", 1 << 30),
                     "runs past end of file"),
    "dir-unaligned": (lambda b: _ext(b, "dir_off", ">Q", 4096),
                      "not cluster aligned"),
    "dir-huge": (lambda b: _ext(b, "dir_size", ">Q", 1 << 40),
                 "bitmap directory size 1099511627776 outside"),
    "nb-more": (lambda b: _ext(b, "nb", ">I", 2),
                "nb_bitmaps 2 but the directory"),
    "nb-zero": (lambda b: _ext(b, "nb", ">I", 0), "nb_bitmaps 0 outside"),
    "ext-reserved": (lambda b: _ext(b, "reserved", ">I", 1),
                     "reserved field not zero"),
    "type-2": (lambda b: _entry(b, "type", ">B", 2), "type 2"),
    "flags-reserved": (lambda b: _entry(b, "flags", ">I", 0x12),
                       "reserved flags 0x10 set"),
    "name-size-0": (lambda b: _entry(b, "name_size", ">H", 0),
                    "name_size 0 outside 1..1023"),
    "name-size-big": (lambda b: _entry(b, "name_size", ">H", 2000),
                      "name_size 2000 outside"),
    "incompat-unknown": (lambda b: q.put(b, 72, ">Q", 1 << 20),
                         "unknown incompatible feature bit 20"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_metadata(img, tmp_path, case):
    fn, want = CORRUPT[case]
    bad = patched(img, tmp_path, fn)
    msg = failed(bad, "b0", 5)
    assert want in msg, msg
    assert msg.startswith("bitmap_dump: %s: offset " % bad), msg


def test_corrupt_directory_fails_the_list_too(img, tmp_path):
    bad = patched(img, tmp_path, lambda b: _entry(b, "gbits", ">B", 40))
    p = dump("--list", bad)
    assert p.returncode == 5 and b"granularity_bits 40" in p.stderr


def test_nb_fewer_than_entries(img, tmp_path):
    q.bitmap(img, "add", "b1")
    bad = patched(img, tmp_path, lambda b: _ext(b, "nb", ">I", 1))
    assert "holds more than nb_bitmaps (1) entries" in failed(bad, "b0", 5)


def test_duplicate_names(img, tmp_path):
    q.bitmap(img, "add", "b1")
    bad = patched(img, tmp_path,
                  lambda b: q.put(b, q.entries(b)[1]["at"] + 24 + 1, ">B",
                                  ord("0")))
    assert "two bitmaps named 'b0'" in failed(bad, "b0", 5)


def test_truncated_copies(img, tmp_path):
    buf = open(img, "rb").read()
    x = q.ext(buf)
    e = q.entries(buf)[0]
    data = int.from_bytes(buf[e["table_off"]:e["table_off"] + 8], "big")
    for cut in (0, 50, 100, x[3] + 8, e["table_off"] + 4, data + 10):
        bad = str(tmp_path / ("cut%d.qcow2" % cut))
        open(bad, "wb").write(buf[:cut])
        p = dump(bad, "b0", 64 * M)
        assert p.returncode == 5, (cut, p.stderr)


def test_info_lists_bitmaps(img):
    q.bitmap(img, "add", "slow", 1 << 20)
    q.bitmap(img, "disable", "slow")
    p = df("info", img)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "bitmap b0: granularity 64 KiB, enabled, consistent\n" in out
    assert "bitmap slow: granularity 1 MiB, disabled, consistent\n" in out
    p = df("info", "--json", img)
    j = json.loads(p.stdout)
    assert j["bitmaps"] == [
        dict(name="b0", granularity=65536, enabled=True, in_use=False,
             consistent=True, state="consistent", usable=True),
        dict(name="slow", granularity=1 << 20, enabled=False, in_use=False,
             consistent=True, state="consistent", usable=True)]


def test_info_bitmap_states(img, tmp_path):
    qio = q.QemuIo(img)
    try:
        qio.cmd("write 40M 4k")
    finally:
        qio.kill()
    out = df("info", img).stdout.decode()
    assert "bitmap b0: granularity 64 KiB, enabled, in use\n" in out
    bad = patched(img, tmp_path, lambda b: q.put(b, q.OFF_AUTOCLEAR, ">Q", 0))
    out = df("info", bad).stdout.decode()
    assert "bitmap b0: granularity 64 KiB, enabled, not kept\n" in out


def test_info_without_bitmaps_and_with_a_broken_directory(img, tmp_path):
    plain = str(tmp_path / "plain.qcow2")
    q.create(plain)
    p = df("info", "--json", plain)
    assert json.loads(p.stdout)["bitmaps"] == []
    assert b"\nbitmap " not in df("info", plain).stdout
    bad = patched(img, tmp_path, lambda b: _entry(b, "gbits", ">B", 40))
    p = df("info", bad)
    assert p.returncode == 0
    assert b"bitmap b0" not in p.stdout
    assert b"diskferry: info: warning: bitmaps not shown: " in p.stderr
    assert b"granularity_bits 40" in p.stderr
