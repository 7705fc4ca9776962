"""Issue 14, the destination side of a local copy: a stream longer than
the destination (an error, never an assertion), the whole-destination
emptiness guard, writing through or replacing an image container, and
the read-back with --fsync that bypasses the page cache.

Only files made here and loop devices over them are touched; every loop
device is detached in finally (conftest.loop_device).
"""
import os
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
