"""tests/tools/cowstore.py, the exception store builder the lvm-cow tests
use, writes the kernel's layout: header fields, areas at chunk
1 + k*(E+1), data chunks in order skipping the areas, the end marker."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
import cowstore  # noqa: E402

CB = 4096
E = CB // 16


def entry(buf, chunk, i):
    return struct.unpack_from("<QQ", buf, chunk * CB + i * 16)


def test_header_and_one_area(tmp_path):
    path = tmp_path / "a.cow"
    news = cowstore.write_store(str(path), CB, [(7, b"old7"), (3, b"x" * CB)])
    buf = path.read_bytes()
    assert struct.unpack_from("<IIII", buf, 0) == (0x70416e53, 1, 1, 8)
    assert buf[:4] == b"SnAp"
    assert news == [2, 3]
    assert entry(buf, 1, 0) == (7, 2) and entry(buf, 1, 1) == (3, 3)
    assert entry(buf, 1, 2) == (0, 0)                  # the end marker
    assert buf[2 * CB:2 * CB + 5] == b"old7\0"
    assert buf[3 * CB:4 * CB] == b"x" * CB
    assert len(buf) == 4 * CB


def test_areas_and_invalid(tmp_path):
    path = tmp_path / "b.cow"
    n = 2 * E + 10                       # two full areas, a third part
    news = cowstore.write_store(str(path), CB,
                                [(i, b"") for i in range(n)], valid=False)
    buf = path.read_bytes()
    assert struct.unpack_from("<I", buf, 4) == (0,)
    stride = E + 1
    assert news[E - 1] == stride and news[E] == stride + 2  # area 1 skipped
    assert all((c - 1) % stride for c in news)
    for k in range(3):
        a = 1 + k * stride
        first = k * E
        assert entry(buf, a, 0) == (first, news[first])
    assert entry(buf, 1 + 2 * stride, 10) == (0, 0)
    assert len(buf) == (news[-1] + 1) * CB


def test_full_last_area_has_the_next(tmp_path):
    path = tmp_path / "c.cow"
    cowstore.write_store(str(path), CB, [(i, b"") for i in range(E)],
                         spare_chunks=2)
    buf = path.read_bytes()
    assert len(buf) == (E + 3 + 2) * CB   # area 1 at chunk E + 2, zeroed
    assert entry(buf, E + 2, 0) == (0, 0)
