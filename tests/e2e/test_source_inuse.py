"""Issue 14 item 7: a source that someone else is writing is refused
(exit 3, naming the holder) unless --force-share, which goes on with one
warning line.  Writers: QEMU's write lock (qemu-io), a read-write mount,
a process holding the file or device open for writing; every layer of a
chain and every VMDK extent file counts.  Readers (qemu-io -r, a
read-only mount, a process reading) are fine.  The same check runs on
the remote host for a remote source, and for both disks of verify.

Only files made here and loop devices over them are touched; every loop
device and mount is undone in finally.
"""
import contextlib
import os
import re
import subprocess

import pytest

from conftest import DISKFERRY, df, have, sh, files_equal
from test_safety import held_open, loop, make_src, qemu_io

HERE = os.path.dirname(os.path.abspath(__file__))
RSH = os.path.join(HERE, "rsh_local.sh")
FAKE = os.path.join(HERE, "fake_peer.py")
PY = "/usr/bin/python3"
MIB = 1 << 20
TAIL = ": the copy would be inconsistent (--force-share reads it anyway)"


@contextlib.contextmanager
def mounted(dev, where, ro=False):
    os.makedirs(where, exist_ok=True)
    sh(["mount"] + (["-o", "ro"] if ro else []) + [dev, str(where)])
    try:
        yield str(where)
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def refused(args, who, why, cmd="copy", tail=TAIL):
    """exit 3, one line: diskferry: CMD: WHO: refusing to read: WHY..."""
    p = df(*args)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    assert err.splitlines() == [
        "diskferry: %s: %s: refusing to read: %s%s" % (cmd, who, why, tail)
    ], err


def refused_re(args, who_re, why):
    """As refused(), WHO a regular expression (a path the chain found)."""
    p = df(*args)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    assert re.fullmatch(r"diskferry: copy: %s: refusing to read: %s\n"
                        % (who_re, re.escape(why + TAIL)), err), err


def warned(args, who, why, cmd="copy", result="copy"):
    """exit 0 and exactly one warning line."""
    p = df(*args)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert err.splitlines() == [
        "diskferry: %s: warning: %s is in use (%s): the %s may be "
        "inconsistent" % (cmd, who, why, result)], err


def test_file_open_for_writing(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    with held_open(src, "r+b") as pid:
        why = "open for writing by python3 (pid %d)" % pid
        refused(["copy", src, dst], src, why)
        assert not os.path.exists(dst)
        warned(["copy", "--force-share", src, dst], src, why)
        assert files_equal(src, dst)
    # A reader changes nothing: no word.
    os.unlink(dst)
    with held_open(src, "rb"):
        p = df("copy", src, dst)
        assert p.returncode == 0 and p.stderr == b"", p.stderr
    # info never refuses, and takes the flag as qemu-img info -U does.
    with held_open(src, "r+b"):
        p = df("info", "--force-share", src)
        assert p.returncode == 0, p.stderr
        p = df("info", src)
        assert p.returncode == 0, p.stderr


def test_block_device_open_for_writing(tmp_path):
    img = make_src(tmp_path / "disk.img")
    dst = tmp_path / "dst.img"
    with loop(img) as dev:
        with held_open(dev, "r+b") as pid:
            refused(["copy", dev, dst], dev,
                    "open for writing by python3 (pid %d)" % pid)
        # Writing to the loop device's backing file changes the device.
        with held_open(img, "r+b") as pid:
            refused(["copy", dev, dst], dev,
                    "open for writing by python3 (pid %d) (via %s)"
                    % (pid, img))
        with held_open(dev, "rb"):
            p = df("copy", dev, dst)
            assert p.returncode == 0, p.stderr


@pytest.mark.skipif(not have("qemu-io"), reason="qemu-io missing")
def test_qcow2_written_by_qemu(tmp_path):
    q = tmp_path / "vm.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "8M"])
    dst = tmp_path / "dst.img"
    with qemu_io(q, "qcow2") as pid:
        refused(["copy", q, dst], q,
                "QEMU's write lock is held by qemu-io (pid %d)" % pid)
        assert not os.path.exists(dst)
    # A read-only QEMU user (qemu-io -r: byte 100, maybe 201) is fine.
    with qemu_io(q, "qcow2", readonly=True):
        p = df("copy", q, dst)
        assert p.returncode == 0 and p.stderr == b"", p.stderr


@pytest.mark.skipif(not have("qemu-io"), reason="qemu-io missing")
def test_backing_file_of_chain_written(tmp_path):
    """Every layer counts: a VM writing the base (a block-commit, or a
    second VM on it) makes the copy of the overlay inconsistent."""
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "8M"])
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
        "-F", "qcow2", str(top)])
    dst = tmp_path / "dst.img"
    with qemu_io(base, "qcow2") as pid:
        refused_re(["copy", "-f", "qcow2", top, dst], r"\S*base\.qcow2",
                   "QEMU's write lock is held by qemu-io (pid %d)" % pid)


def test_vmdk_extent_file_written(tmp_path):
    vmdk = tmp_path / "disk.vmdk"
    sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
        "subformat=twoGbMaxExtentFlat", str(vmdk), "8M"])
    ext = tmp_path / "disk-f001.vmdk"
    assert ext.exists()
    dst = tmp_path / "dst.img"
    with held_open(ext, "r+b") as pid:
        refused_re(["copy", vmdk, dst], r"\S*disk-f001\.vmdk",
                   "open for writing by python3 (pid %d)" % pid)
    with held_open(ext, "rb"):
        assert df("copy", vmdk, dst).returncode == 0


@pytest.mark.skipif(not have("mkfs.ext4"), reason="mkfs.ext4 missing")
def test_mounted_read_write(tmp_path):
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(16 * MIB)
    sh(["mkfs.ext4", "-q", "-F", str(img)])
    dst = tmp_path / "dst.img"
    with loop(img) as dev:
        with mounted(dev, tmp_path / "mnt") as mnt:
            refused(["copy", dev, dst], dev,
                    "mounted read-write on %s" % mnt)
            # The file under the mounted loop device is written too.
            refused(["copy", "-f", "raw", img, dst], img,
                    "mounted read-write on %s (via %s)" % (mnt, dev))
            warned(["copy", "--force-share", dev, dst], dev,
                   "mounted read-write on %s" % mnt)
            os.unlink(dst)
        with mounted(dev, tmp_path / "mnt", ro=True):
            p = df("copy", dev, dst)
            assert p.returncode == 0 and p.stderr == b"", p.stderr
            assert df("verify", dev, dst).returncode == 0


def test_verify_checks_both(tmp_path):
    a = make_src(tmp_path / "a.img")
    b = tmp_path / "b.img"
    b.write_bytes(a.read_bytes())
    tail = (": the comparison would be inconsistent (--force-share reads "
            "it anyway)")
    with held_open(b, "r+b") as pid:
        why = "open for writing by python3 (pid %d)" % pid
        refused(["verify", a, b], b, why, cmd="verify", tail=tail)
        p = df("verify", "--force-share", a, b)
        assert p.returncode == 0, p.stderr
        assert p.stderr.decode().splitlines() == [
            "diskferry: verify: warning: %s is in use (%s): the comparison "
            "may be inconsistent" % (b, why)]
    with held_open(a, "r+b") as pid:
        refused(["verify", a, b], a,
                "open for writing by python3 (pid %d)" % pid, cmd="verify",
                tail=tail)
    # Our own fds never count: the same disk twice, both opened by us.
    p = df("verify", a, a)
    assert p.returncode == 0, p.stderr


def rdf(*args):
    return df(args[0], "--rsh", RSH, "--remote-path", DISKFERRY, *args[1:])


def test_remote_source_checked_on_its_host(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    with held_open(src, "r+b") as pid:
        why = "open for writing by python3 (pid %d)" % pid
        refused(["copy", "--rsh", RSH, "--remote-path", DISKFERRY,
                 "localhost:%s" % src, dst], "localhost:%s" % src, why)
        assert not os.path.exists(dst)
        p = rdf("copy", "--force-share", "localhost:%s" % src, dst)
        assert p.returncode == 0, p.stderr
        # The warning comes from the host that holds the source.
        assert ("diskferry: serve: warning: %s is in use (%s): the copy "
                "may be inconsistent" % (src, why)) in p.stderr.decode()
        assert files_equal(src, dst)


def test_force_share_not_sent_to_an_old_server(tmp_path):
    """A server without the source check would refuse the unknown flag:
    the client leaves it out (that server reads the source anyway)."""
    rsh = "%s %s oldsrc" % (PY, FAKE)
    p = df("copy", "--rsh", rsh, "--force-share", "h:/x", tmp_path / "d")
    assert p.returncode == 6
    assert b"old server got open flags 0" in p.stderr, p.stderr
