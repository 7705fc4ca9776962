"""Issue 15, a destination's life (engine/dest.h): kill -9 at each step
of a copy into a new file or a file replaced whole leaves nothing under
the final name before the commit, and the next run removes what the
killed one left.

The kill comes from the test hook DF_TEST_DEST_KILL_AT (built only with
meson -Dtesting=true): open (the temporary file was created), verified
(the copy verified, before the rename), committed (after it).
"""
import os
import signal
import subprocess

import pytest

from conftest import DISKFERRY, df, sha256_file

MIB = 1 << 20


def make_src(path, size=8 * MIB):
    with open(path, "wb") as f:
        f.write(os.urandom(2 * MIB))
        f.truncate(size)
    return path


def leftovers(d, name):
    return sorted(n for n in os.listdir(d)
                  if n.startswith("." + name + ".diskferry-"))


def killed_copy(step, *args):
    env = dict(os.environ, DF_TEST_DEST_KILL_AT=step)
    return subprocess.run([DISKFERRY, "copy"] + [str(a) for a in args],
                          capture_output=True, env=env, timeout=300)


@pytest.mark.parametrize("step", ["open", "verified"])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_kill_before_commit_new_file(tmp_path, step, fmt):
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "new.img"
    p = killed_copy(step, "-O", fmt, src, dst)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not os.path.lexists(dst)
    assert len(leftovers(tmp_path, "new.img")) == 1
    # The next run removes the stale file and finishes the copy.
    p = df("copy", "-O", fmt, src, dst)
    assert p.returncode == 0, p.stderr
    assert b"removed a stale temporary file" in p.stderr
    assert leftovers(tmp_path, "new.img") == []
    assert df("verify", src, dst).returncode == 0


def test_kill_after_commit_new_file(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "new.img"
    p = killed_copy("committed", src, dst)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert sha256_file(dst) == sha256_file(src)
    assert leftovers(tmp_path, "new.img") == []


@pytest.mark.parametrize("step", ["open", "verified"])
def test_kill_before_commit_replace(tmp_path, step):
    """An existing raw file replaced whole by a qcow2 one: until the
    rename, the old file is what the name holds."""
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "old.img"
    with open(dst, "wb") as f:
        f.write(os.urandom(MIB))
    before = sha256_file(dst)
    p = killed_copy(step, "-O", "qcow2", "--overwrite", "--yes", src, dst)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert sha256_file(dst) == before
    p = df("copy", "-O", "qcow2", "--overwrite", "--yes", src, dst)
    assert p.returncode == 0, p.stderr
    assert leftovers(tmp_path, "old.img") == []
    assert df("verify", src, dst).returncode == 0

