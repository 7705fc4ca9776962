"""Issue 14, the destination side of a local copy: a stream longer than
the destination (an error, never an assertion), the whole-destination
emptiness guard, writing through or replacing an image container, and
the read-back with --fsync that bypasses the page cache.

Only files made here and loop devices over them are touched; every loop
device is detached in finally (conftest.loop_device).
"""
import os
import re
import subprocess

import pytest

from conftest import df, have, sha256_file, write_at

MIB = 1 << 20


def test_stream_longer_than_device(tmp_path, loop):
    """300 MiB on stdin into a 256 MiB device: exit 4 naming the size,
    no abort (was: an assertion, exit 134)."""
    back = tmp_path / "d.img"
    with open(back, "wb") as f:
        f.truncate(256 * MIB)
    data = b"a" * (300 * MIB)
    with loop(back) as dev:
        p = df("copy", "--overwrite", "--yes", "-", dev, input=data)
        err = p.stderr.decode()
        assert p.returncode == 4, err
        assert err.strip().splitlines() == [
            "diskferry: copy: %s: the stream is longer than the "
            "destination (256.0 MiB)" % dev], err


def test_stream_longer_than_file(tmp_path):
    """The same into an existing regular file of fixed size."""
    dst = tmp_path / "d.img"
    with open(dst, "wb") as f:
        f.truncate(4 * MIB)
    p = df("copy", "--overwrite", "--yes", "-", str(dst),
           input=b"b" * (5 * MIB))
    assert p.returncode == 4, p.stderr
    assert b"the stream is longer than the destination (4.0 MiB)" \
        in p.stderr


def make_src(path, size, data_mib=64):
    """data_mib MiB of random data at the start, holes after it."""
    with open(path, "wb") as f:
        f.write(os.urandom(data_mib * MIB))
        f.truncate(size)
    return path


def make_zero(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_guard_data_between_samples(tmp_path, loop):
    """2 MiB of data at 100 MiB of a 256 MiB device lies between the
    sampled windows: the copy finds it, zeroes back what it wrote, and
    refuses (was: wiped, exit 0)."""
    src = make_src(tmp_path / "vm.raw", 256 * MIB)
    back = make_zero(tmp_path / "e.img", 256 * MIB)
    data = os.urandom(2 * MIB)
    write_at(back, 100 * MIB, data)
    before = sha256_file(back)
    with loop(back) as dev:
        p = df("copy", src, dev)
        err = p.stderr.decode()
        assert p.returncode == 3, err
        assert err.splitlines() == [
            "diskferry: copy: %s: refusing to write: holds data at offset "
            "104857600 (found while copying; the 64.0 MiB written so far "
            "were zero before and are zero again); give --overwrite to "
            "replace it" % dev], err
    assert sha256_file(back) == before


def test_guard_dry_run_checks_everything(tmp_path, loop):
    src = make_src(tmp_path / "vm.raw", 256 * MIB)
    back = make_zero(tmp_path / "e.img", 256 * MIB)
    write_at(back, 100 * MIB + 12345, b"x")
    before = sha256_file(back)
    with loop(back) as dev:
        p = df("copy", "--dry-run", src, dev)
        err = p.stderr.decode()
        assert p.returncode == 3, err
        assert err.splitlines()[-1] == (
            "diskferry: copy: %s: refusing to write: holds data at offset "
            "104869945 (found by the dry run's full check); give "
            "--overwrite to replace it" % dev), err
    assert sha256_file(back) == before


def test_guard_with_undo_still_rolls_back(tmp_path, loop):
    """--undo without --overwrite: the guard still refuses and restores."""
    src = make_src(tmp_path / "vm.raw", 64 * MIB, data_mib=8)
    back = make_zero(tmp_path / "e.img", 64 * MIB)
    write_at(back, 40 * MIB, b"y" * 4096)
    before = sha256_file(back)
    with loop(back) as dev:
        p = df("copy", "--undo", tmp_path / "j", src, dev)
        assert p.returncode == 3, p.stderr
        assert b"holds data at offset 41943040 (found while copying" \
            in p.stderr
    assert sha256_file(back) == before


def test_guard_empty_device_is_written(tmp_path, loop):
    """An all-zero device needs no --overwrite; the copy is exact."""
    src = make_src(tmp_path / "vm.raw", 64 * MIB, data_mib=8)
    back = make_zero(tmp_path / "e.img", 96 * MIB)
    with loop(back) as dev:
        p = df("copy", src, dev)
        assert p.returncode == 0, p.stderr
    with open(back, "rb") as f:
        assert f.read(64 * MIB) == open(src, "rb").read()


def test_guard_overwrite_is_not_checked(tmp_path, loop):
    src = make_src(tmp_path / "vm.raw", 64 * MIB, data_mib=8)
    back = make_zero(tmp_path / "e.img", 64 * MIB)
    write_at(back, 40 * MIB, b"y" * 4096)
    with loop(back) as dev:
        p = df("copy", "--overwrite", "--yes", src, dev)
        assert p.returncode == 0, p.stderr
    assert open(back, "rb").read() == open(src, "rb").read()


def direct_reopens(tmp_path, *args):
    """Run diskferry under strace; the O_DIRECT opens it made."""
    trace = tmp_path / "trace.txt"
    p = subprocess.run(["strace", "-f", "-e", "trace=openat", "-o",
                        str(trace), os.environ.get("DF_BUILD", "build") +
                        "/diskferry"] + [str(a) for a in args],
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    return [ln for ln in trace.read_text().splitlines()
            if re.search(r"\bO_DIRECT\b(?!ORY)", ln)]


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_fsync_reads_back_past_the_cache(tmp_path, loop):
    """With --fsync the read-back opens the destination again with
    O_DIRECT (an odd size exercises the unaligned tail); without it, the
    page cache serves it, as cp and dd do."""
    src = tmp_path / "odd.raw"
    with open(src, "wb") as f:
        f.write(os.urandom(300000))
        f.truncate(1000001)
    hits = direct_reopens(tmp_path, "copy", "--fsync", src, tmp_path / "n")
    assert len(hits) == 1 and "/proc/self/fd/" in hits[0], hits
    assert open(tmp_path / "n", "rb").read() == open(src, "rb").read()
    assert direct_reopens(tmp_path, "copy", src, tmp_path / "m") == []

    back = make_zero(tmp_path / "d.img", 4 * MIB)
    with loop(back) as dev:
        hits = direct_reopens(tmp_path, "copy", "--fsync", "--overwrite",
                              "--yes", src, dev)
        assert len(hits) == 1 and "/proc/self/fd/" in hits[0], hits
