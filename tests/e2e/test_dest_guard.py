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

from conftest import DISKFERRY, df, have, sha256_file, write_at

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


def test_guard_regular_file_between_samples(tmp_path):
    """A regular file with more data extents than check 6 samples, the
    data in a later one: found by the guard (holes are skipped)."""
    size = 64 * MIB
    src = make_src(tmp_path / "vm.raw", size, data_mib=4)
    dst = make_zero(tmp_path / "d.img", size)
    windows = [(0, MIB), (size - MIB, size)] + [
        (o - o % 4096, o - o % 4096 + 65536)
        for o in (size // 17 * i for i in range(1, 17))]
    offs = [k * MIB + 300 * 1024 for k in range(2, 40)]
    offs = [o for o in offs
            if not any(a <= o + 4096 and o < b for a, b in windows)]
    assert len(offs) > 20
    for o in offs[:-1]:
        write_at(dst, o, bytes(4096))       # zero data extents
    write_at(dst, offs[-1] + 100, b"z")
    before = sha256_file(dst)
    p = df("copy", src, dst)
    assert p.returncode == 3, p.stderr
    assert ("refusing to write: holds data at offset %d (found while "
            "copying" % (offs[-1] + 100)) in p.stderr.decode()
    assert sha256_file(dst) == before


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
    env = dict(os.environ)
    # LeakSanitizer cannot run under ptrace.
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run(["strace", "-f", "-e", "trace=openat", "-o",
                        str(trace), os.environ.get("DF_BUILD", "build") +
                        "/diskferry"] + [str(a) for a in args],
                       capture_output=True, env=env)
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


def qemu_img(*args):
    return subprocess.run(["qemu-img"] + [str(a) for a in args],
                          capture_output=True)


needs_qemu = pytest.mark.skipif(not have("qemu-img"),
                                reason="qemu-img missing")


@needs_qemu
def test_qcow2_destination_keeps_its_format(tmp_path):
    """--overwrite onto an existing qcow2: written as qcow2, not raw
    bytes over the container (was: the container was gone)."""
    src = make_src(tmp_path / "s.raw", 200 * MIB, data_mib=8)
    dst = tmp_path / "d.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", dst, "200M").returncode == 0
    os.chmod(dst, 0o640)
    p = df("copy", src, dst)
    assert p.returncode == 3, p.stderr
    assert p.stderr.decode().endswith(
        "refusing to write: holds a qcow2 image (give --overwrite)\n")
    p = df("copy", "--overwrite", "--yes", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert b'"destination_format":"qcow2"' in p.stdout.replace(b" ", b"")
    assert qemu_img("compare", src, dst).returncode == 0
    assert qemu_img("check", dst).returncode == 0
    assert os.stat(dst).st_mode & 0o777 == 0o640
    assert not [n for n in os.listdir(tmp_path) if "diskferry" in n]
    # -O qcow2 onto the qcow2 now holding data: replaced again.
    p = df("copy", "--overwrite", "--yes", "-O", "qcow2", src, dst)
    assert p.returncode == 0, p.stderr
    assert qemu_img("compare", src, dst).returncode == 0


@needs_qemu
@pytest.mark.skipif(not have("qemu-io"), reason="qemu-io missing")
def test_qcow2_destination_in_use_is_refused(tmp_path):
    from test_safety import qemu_io
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = tmp_path / "d.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", dst, "16M").returncode == 0
    before = sha256_file(dst)
    with qemu_io(dst, "qcow2") as pid:
        p = df("copy", "--overwrite", "--yes", "-O", "qcow2", src, dst)
        assert p.returncode == 3, p.stderr
        assert p.stderr.decode().strip().endswith(
            "refusing to write: locked by QEMU (write lock held) by qemu-io "
            "(pid %d)" % pid), p.stderr
    assert sha256_file(dst) == before


@needs_qemu
def test_vdi_destination_needs_an_output_format(tmp_path):
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = tmp_path / "d.vdi"
    assert qemu_img("create", "-q", "-f", "vdi", dst, "16M").returncode == 0
    before = sha256_file(dst)
    p = df("copy", "--overwrite", "--yes", src, dst)
    assert p.returncode == 2, p.stderr
    assert p.stderr.decode().splitlines() == [
        "diskferry: copy: %s: a vdi image: diskferry writes raw and qcow2; "
        "give -O raw or -O qcow2 to replace it whole (--overwrite)" % dst]
    assert sha256_file(dst) == before
    # -O qcow2 replaces it whole (the name stays, the content is qcow2).
    p = df("copy", "--overwrite", "--yes", "-O", "qcow2", src, dst)
    assert p.returncode == 0, p.stderr
    assert qemu_img("compare", "-F", "qcow2", src, dst).returncode == 0


@needs_qemu
def test_raw_output_replaces_a_qcow2(tmp_path):
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = tmp_path / "d.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", dst, "64M").returncode == 0
    p = df("copy", "--overwrite", "--yes", "-O", "raw", src, dst)
    assert p.returncode == 0, p.stderr
    assert open(dst, "rb").read() == open(src, "rb").read()


def test_qcow2_output_replaces_a_raw_file(tmp_path):
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = make_zero(tmp_path / "d.img", 16 * MIB)
    write_at(dst, 0, b"old data")
    p = df("copy", "-O", "qcow2", src, dst)
    assert p.returncode == 3, p.stderr
    # An empty file too is replaced only with --overwrite.
    empty = make_zero(tmp_path / "e.img", 16 * MIB)
    p = df("copy", "-O", "qcow2", src, empty)
    assert p.returncode == 3, p.stderr
    assert b"refusing to write: file exists (give --overwrite to replace " \
        b"it)" in p.stderr
    p = df("copy", "--overwrite", "--yes", "-O", "qcow2", src, dst)
    assert p.returncode == 0, p.stderr
    assert open(dst, "rb").read(4) == b"QFI\xfb"
    p = df("verify", src, dst)
    assert p.returncode == 0, p.stderr


def test_replace_whole_refuses_undo_and_devices(tmp_path, loop):
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = make_zero(tmp_path / "d.img", 16 * MIB)
    p = df("copy", "--overwrite", "--yes", "-O", "qcow2", "--undo",
           tmp_path / "j", src, dst)
    assert p.returncode == 2, p.stderr
    assert b"replaced whole by a new qcow2 file" in p.stderr
    with loop(dst) as dev:
        p = df("copy", "--overwrite", "--yes", "-O", "qcow2", src, dev)
        assert p.returncode == 2, p.stderr
        assert b"a device is written raw" in p.stderr


@needs_qemu
def test_replace_whole_through_a_symlink_is_refused(tmp_path):
    src = make_src(tmp_path / "s.raw", 16 * MIB, data_mib=1)
    dst = tmp_path / "d.qcow2"
    assert qemu_img("create", "-q", "-f", "qcow2", dst, "16M").returncode == 0
    os.symlink("d.qcow2", tmp_path / "link.qcow2")
    before = sha256_file(dst)
    p = df("copy", "--overwrite", "--yes", src, tmp_path / "link.qcow2")
    assert p.returncode == 2, p.stderr
    assert b"is a symbolic link: a qcow2 file replaces it whole" in p.stderr
    assert sha256_file(dst) == before
    assert os.path.islink(tmp_path / "link.qcow2")


def test_guard_remote_destination(tmp_path):
    """The same on the far end of a session: an existing 256 MiB file
    (written zeros, no holes) on the serve side with 2 MiB of data at
    100 MiB, copied to without
    --overwrite, is refused there by the whole-destination guard and
    left as it was (was: only the sampled check ran, the data was
    wiped, exit 0)."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = make_src(tmp_path / "vm.raw", 256 * MIB)
    dst = tmp_path / "e.img"
    with open(dst, "wb") as f:      # allocated: no hole tells it apart
        for _ in range(256):
            f.write(bytes(MIB))
    write_at(dst, 100 * MIB, os.urandom(2 * MIB))
    before = sha256_file(dst)
    p = df("copy", "--rsh", os.path.join(here, "rsh_local.sh"),
           "--remote-path", DISKFERRY, src, "localhost:%s" % dst)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    assert err.splitlines() == [
        "diskferry: copy: localhost:%s: refusing to write: holds data at "
        "offset 104857600 (found while copying; the 64.0 MiB written so "
        "far were zero before and are zero again); give --overwrite to "
        "replace it" % dst], err
    assert sha256_file(dst) == before
    # what the journal had listed was zeroed back: no journal to resume
    assert not os.path.exists("%s.diskferry-resume" % dst)


def test_guard_remote_dry_run_checks_everything(tmp_path):
    """A dry run to a remote destination runs the guard's full check on
    the far side, as a local dry run does (was: only the sampled check
    ran there, and the dry run promised a copy the real run refuses)."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = make_src(tmp_path / "vm.raw", 256 * MIB)
    dst = tmp_path / "e.img"
    with open(dst, "wb") as f:      # allocated: no hole tells it apart
        for _ in range(256):
            f.write(bytes(MIB))
    write_at(dst, 100 * MIB + 12345, b"x")
    before = sha256_file(dst)
    p = df("copy", "--dry-run", "--rsh", os.path.join(here, "rsh_local.sh"),
           "--remote-path", DISKFERRY, src, "localhost:%s" % dst)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    assert err.splitlines()[-1] == (
        "diskferry: copy: localhost:%s: refusing to write: holds data at "
        "offset 104869945 (found by the dry run's full check); give "
        "--overwrite to replace it" % dst), err
    assert sha256_file(dst) == before
    # with --overwrite the dry run goes through, and still writes nothing
    p = df("copy", "--dry-run", "--overwrite", "--yes", "--rsh",
           os.path.join(here, "rsh_local.sh"), "--remote-path", DISKFERRY,
           src, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256_file(dst) == before
