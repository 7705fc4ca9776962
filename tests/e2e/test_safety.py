"""Issue 3: the safety checks before the first byte is written, on real
objects: loop devices (mounted, partitioned, attached), processes holding
files open, QEMU's own locks (qemu-io, qemu-nbd), signatures made by
mkfs / sgdisk / pvcreate / mkswap, links and loops to the source, sizes,
dry runs, a terminal that must type the name.

Every refusal: exit 3, one line naming the reason and holder, and the
destination's hash unchanged.  Only files made here and loop devices over
them are touched; every loop device and mount is undone in finally.
"""
import contextlib
import os
import pty
import re
import select
import stat
import subprocess
import time

import pytest

from conftest import df, have, sh, sha256_file, write_at

PY = "/usr/bin/python3"
MIB = 1 << 20


def make_src(path, size=16 * MIB):
    """A source with data in a few places and holes elsewhere."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off in (0, size // 3, size - 4096):
            f.seek(off)
            f.write(os.urandom(4096))
    return path


def make_zero(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def refused(args, dst, reason, exact=True):
    """Run diskferry; expect exit 3 with `reason`; dst's hash unchanged."""
    before = sha256_file(dst) if os.path.exists(dst) else None
    p = df(*args)
    err = p.stderr.decode()
    assert p.returncode == 3, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    if exact:
        assert lines[0].endswith(": refusing to write: " + reason), err
    else:
        assert re.search(reason, lines[0]), err
    if before is not None:
        assert sha256_file(dst) == before
    return lines[0]


@contextlib.contextmanager
def loop(path, partscan=False):
    args = ["losetup", "--find", "--show"] + (["-P"] if partscan else [])
    dev = sh(args + [str(path)]).decode().strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


@contextlib.contextmanager
def mounted(dev, where):
    os.makedirs(where, exist_ok=True)
    sh(["mount", dev, str(where)])
    try:
        yield str(where)
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@contextlib.contextmanager
def held_open(path, mode="rb"):
    """A python3 process with path open, until the block ends."""
    p = subprocess.Popen(
        [PY, "-c", "import sys; f = open(sys.argv[1], sys.argv[2]); "
         "print('ready', flush=True); sys.stdin.read()", str(path), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        yield p.pid
    finally:
        p.kill()
        p.wait()


# --- check 9 / 0: new destinations -------------------------------------

def test_new_path_under_dev_refused(tmp_path):
    src = make_src(tmp_path / "src.img")
    for dst in ("/dev/diskferry-no-such-disk", "/dev/../dev/df-nope"):
        refused(["copy", src, dst], dst, "no such device (a new file is "
                "never created under /dev)")
        assert not os.path.exists(dst)
    refused(["create", "--size", "1M", "/dev/df-nope"], "/dev/df-nope",
            "no such device (a new file is never created under /dev)")
    assert not os.path.exists("/dev/df-nope")


def test_create_never_replaces(tmp_path):
    dst = tmp_path / "exists.img"
    dst.write_bytes(b"keep me")
    before = sha256_file(dst)
    p = df("create", "--size", "1M", dst)
    assert p.returncode == 3
    # create takes no --overwrite: the refusal does not offer it.
    assert p.stderr.decode() == (
        "diskferry: create: refusing to create %s: it exists (create never "
        "replaces a file; delete it first, or use copy --overwrite to write "
        "over it)\n" % dst)
    assert sha256_file(dst) == before


# --- check 1: mounted ----------------------------------------------------

def test_mounted_loop_device(tmp_path):
    src = make_src(tmp_path / "src.img", 32 * MIB)
    disk = make_zero(tmp_path / "disk.img", 32 * MIB)
    sh(["mkfs.ext4", "-q", str(disk)])
    with loop(disk) as dev, mounted(dev, tmp_path / "mnt") as mnt:
        refused(["copy", "--overwrite", "--yes", src, dev], disk,
                "mounted on %s" % mnt)
        # Through the loop device backed by the file.
        refused(["copy", "--overwrite", "--yes", src, disk], disk,
                "mounted on %s (via %s)" % (mnt, dev))
        # The same, with --dry-run: every check runs.
        refused(["copy", "--dry-run", "--overwrite", src, dev], disk,
                "mounted on %s" % mnt)


def partition_node(dev, name, tmp_path):
    """The device node of partition `name` (loop0p1) of dev: /dev/name,
    or, where no udev makes nodes, one made with mknod in tmp_path.  Where
    the kernel did not scan the table (some containers), partx adds it."""
    sysdev = "/sys/class/block/%s/dev" % name
    if not os.path.exists(sysdev):
        sh(["partx", "-a", dev])
    if os.path.exists("/dev/" + name):
        return "/dev/" + name
    major, minor = open(sysdev).read().strip().split(":")
    node = str(tmp_path / name)
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(int(major), int(minor)))
    return node


@pytest.mark.skipif(not have("sgdisk"), reason="sgdisk (gdisk) missing")
def test_mounted_partition_of_device(tmp_path):
    src = make_src(tmp_path / "src.img", 32 * MIB)
    disk = make_zero(tmp_path / "disk.img", 32 * MIB)
    sh(["sgdisk", "-n", "1:2048:+16M", str(disk)])
    with loop(disk, partscan=True) as dev:
        name = os.path.basename(dev) + "p1"
        part = partition_node(dev, name, tmp_path)
        sh(["mkfs.ext4", "-q", part])
        with mounted(part, tmp_path / "mnt") as mnt:
            refused(["copy", "--overwrite", "--yes", src, dev], disk,
                    "mounted on %s (via /dev/%s)" % (mnt, name))
        # Not mounted, but open by a process.
        with held_open(part) as pid:
            refused(["copy", "--overwrite", "--yes", src, dev], disk,
                    "open by python3 (pid %d) (via /dev/%s)" % (pid, name))


# --- check 2: open by another process ------------------------------------

def test_file_held_open_by_a_process(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = make_zero(tmp_path / "dst.img", 16 * MIB)
    with held_open(dst) as pid:
        refused(["copy", src, dst], dst, "open by python3 (pid %d)" % pid)
        # A hard link or symlink to it is the same object.
        os.link(dst, tmp_path / "hard.img")
        os.symlink(dst, tmp_path / "sym.img")
        for other in ("hard.img", "sym.img"):
            refused(["copy", src, tmp_path / other], dst,
                    "open by python3 (pid %d)" % pid)
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert sha256_file(dst) == sha256_file(src)


def test_block_device_held_open(tmp_path):
    src = make_src(tmp_path / "src.img")
    disk = make_zero(tmp_path / "disk.img", 16 * MIB)
    with loop(disk) as dev:
        with held_open(dev) as pid:
            refused(["copy", src, dev], disk,
                    "open by python3 (pid %d)" % pid)
        p = df("copy", src, dev)
        assert p.returncode == 0, p.stderr


def test_file_attached_to_loop_device(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = make_zero(tmp_path / "dst.img", 16 * MIB)
    with loop(dst) as dev:
        refused(["copy", src, dst], dst, "open by loop device %s" % dev)


# --- check 3: QEMU locks ---------------------------------------------------

@contextlib.contextmanager
def qemu_io(path, fmt, readonly=False):
    """qemu-io holding path open (and locked) until the block ends."""
    args = ["qemu-io", "-f", fmt] + (["-r"] if readonly else []) + [str(path)]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        # Once a read has answered, the image is open and locked.
        p.stdin.write(b"read 0 512\n")
        p.stdin.flush()
        line = b""
        while b"bytes at offset" not in line:
            line = p.stdout.readline()
            assert line, "qemu-io ended early"
        yield p.pid
    finally:
        p.kill()
        p.wait()


@pytest.mark.skipif(not have("qemu-io"), reason="qemu-io missing")
def test_image_locked_by_qemu_io(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = make_zero(tmp_path / "dst.img", 16 * MIB)
    with qemu_io(dst, "raw") as pid:
        refused(["copy", src, dst], dst, "locked by QEMU (write lock held) "
                "by qemu-io (pid %d)" % pid)
    # Read-only: QEMU 7.2's qemu-io -r takes byte 100 (and, depending
    # on the sharing it asks for, 201): a reader is still refused.
    with qemu_io(dst, "raw", readonly=True) as pid:
        refused(["copy", src, dst], dst, r"refusing to write: locked by "
                r"QEMU \(read lock held(, writers refused)?\) by qemu-io "
                r"\(pid %d\)$" % pid, exact=False)
    # A qcow2 image in use is refused as well (writing over it with
    # --overwrite -f raw would be the accident).
    q = tmp_path / "vm.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "16M"])
    with qemu_io(q, "qcow2") as pid:
        refused(["copy", "--overwrite", "--yes", src, q], q,
                "locked by QEMU (write lock held) by qemu-io (pid %d)" % pid)


@pytest.mark.skipif(not have("qemu-nbd"), reason="qemu-nbd missing")
def test_image_locked_by_qemu_nbd(tmp_path):
    src = make_src(tmp_path / "src.img")
    dst = make_zero(tmp_path / "dst.img", 16 * MIB)
    sock = tmp_path / "nbd.sock"
    p = subprocess.Popen(["qemu-nbd", "-f", "raw", "--persistent", "-k",
                          str(sock), str(dst)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The socket is created after the image is opened and locked.
        for _ in range(400):
            if sock.exists() or p.poll() is not None:
                break
            time.sleep(0.025)
        assert sock.exists(), p.stderr.read() if p.poll() is not None else ""
        refused(["copy", src, dst], dst, "locked by QEMU (write lock held) "
                "by qemu-nbd (pid %d)" % p.pid)
    finally:
        p.kill()
        p.wait()


# --- check 4: same as the source ------------------------------------------

def test_same_as_source(tmp_path):
    src = make_src(tmp_path / "src.img")
    os.link(src, tmp_path / "hard.img")
    os.symlink(src, tmp_path / "sym.img")
    args = ["copy", "--overwrite", "--yes", src]
    refused(args + [src], src, "same file as the source")
    refused(args + [tmp_path / "hard.img"], src, "same file as the source")
    refused(args + [tmp_path / "sym.img"], src, "same file as the source")
    with loop(src) as dev:
        refused(args + [dev], src, "a loop device over the source")
        refused(["copy", "--overwrite", "--yes", dev, src], src,
                "the backing file of the source (loop device %s)" % dev)
        refused(["copy", "--overwrite", "--yes", dev, dev], src,
                "same device as the source")


def test_backing_file_of_source_chain(tmp_path):
    base = make_src(tmp_path / "base.img")
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
        str(base), str(top)])
    if b"format: qcow2" not in df("info", top).stdout:
        pytest.skip("no qcow2 driver in this build")
    refused(["copy", "-f", "qcow2", "--overwrite", "--yes", top, base], base,
            "same file as the source")


# --- check 5: size ---------------------------------------------------------

def test_smaller_destination(tmp_path):
    src = make_src(tmp_path / "src.img", 128 * MIB)
    disk = make_zero(tmp_path / "disk.img", 64 * MIB)
    with loop(disk) as dev:
        refused(["copy", "--overwrite", "--yes", src, dev], disk,
                "64.0 MiB is smaller than the source (128.0 MiB)")
    small = make_zero(tmp_path / "small.img", 64 * MIB)
    refused(["copy", "--overwrite", "--yes", src, small], small,
            "64.0 MiB is smaller than the source (128.0 MiB)")


def test_larger_destination_warns_and_keeps_tail(tmp_path):
    src = make_src(tmp_path / "src.img", 8 * MIB)
    disk = make_zero(tmp_path / "disk.img", 16 * MIB)
    tail = os.urandom(4096)
    write_at(disk, 12 * MIB, tail)
    with loop(disk) as dev:
        p = df("copy", "--overwrite", "--yes", src, dev)
        assert p.returncode == 0, p.stderr
        assert b"is larger than the source" in p.stderr
    with open(disk, "rb") as f:
        assert f.read(8 * MIB) == open(src, "rb").read()
        f.seek(12 * MIB)
        assert f.read(4096) == tail


# --- check 6: signatures and data ------------------------------------------

def signature_cases(tmp_path):
    """(name, expected description, maker) for each signature tool here."""
    cases = [("ext4", "an ext4 filesystem",
              lambda p: sh(["mkfs.ext4", "-q", "-F", str(p)])),
             ("swap", "a swap area", lambda p: sh(["mkswap", str(p)]))]
    if have("sgdisk"):
        cases.append(("gpt", "a gpt partition table",
                      lambda p: sh(["sgdisk", "-n", "1:2048:+1M", str(p)])))
    if have("parted"):
        cases.append(("dos", "a dos partition table",
                      lambda p: sh(["parted", "-s", str(p), "mklabel",
                                    "msdos"])))
    if have("pvcreate"):
        def pv(p):
            with loop(p) as dev:
                sh(["pvcreate", "-ff", "-y", dev])
        cases.append(("lvm", "an LVM physical volume", pv))
    return cases


@pytest.mark.parametrize("kind", ["ext4", "swap", "gpt", "dos", "lvm"])
def test_signature_refused_without_overwrite(tmp_path, kind):
    cases = {c[0]: c for c in signature_cases(tmp_path)}
    if kind not in cases:
        pytest.skip("no tool for %s" % kind)
    _, desc, make = cases[kind]
    src = make_src(tmp_path / "src.img", 16 * MIB)
    disk = make_zero(tmp_path / "disk.img", 16 * MIB)
    make(disk)
    refused(["copy", src, disk], disk, "holds %s (give --overwrite)" % desc)
    with loop(disk) as dev:
        refused(["copy", src, dev], disk,
                "holds %s (give --overwrite)" % desc)
        p = df("copy", "--overwrite", src, dev)
        assert p.returncode == 0, p.stderr
    assert sha256_file(disk) == sha256_file(src)


def test_nonzero_data_refused(tmp_path):
    src = make_src(tmp_path / "src.img", 64 * MIB)
    disk = make_zero(tmp_path / "disk.img", 64 * MIB)
    write_at(disk, 40 * MIB + 123, b"\x01")
    refused(["copy", src, disk], disk,
            "holds non-zero data at offset %d (give --overwrite)"
            % (40 * MIB + 123))
    with loop(disk) as dev:
        # A device has no SEEK_DATA: the last MiB is a sampled region.
        write_at(disk, 40 * MIB + 123, b"\x00")
        write_at(disk, 64 * MIB - 1, b"\x02")
        refused(["copy", src, dev], disk,
                "holds non-zero data at offset %d (give --overwrite)"
                % (64 * MIB - 1))


def run_on_tty(args, answer):
    """Run diskferry with stdin and stderr on a terminal; type answer when
    asked.  Returns (exit code, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out = b""
    typed = False
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not typed and b"to go ahead: " in out:
            os.write(fd, answer.encode() + b"\n")
            typed = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_overwrite_on_terminal_asks_for_the_name(tmp_path):
    from conftest import DISKFERRY
    src = make_src(tmp_path / "src.img", 16 * MIB)
    disk = make_zero(tmp_path / "vmdisk.img", 16 * MIB)
    sh(["mkfs.ext4", "-q", "-F", str(disk)])
    before = sha256_file(disk)
    rc, out = run_on_tty([DISKFERRY, "copy", "--overwrite", str(src),
                          str(disk)], "y")
    assert rc == 3, out
    assert "holds an ext4 filesystem" in out
    assert "refusing to write: not confirmed" in out
    assert sha256_file(disk) == before
    rc, out = run_on_tty([DISKFERRY, "copy", "--overwrite", str(src),
                          str(disk)], "vmdisk.img")
    assert rc == 0, out
    assert sha256_file(disk) == sha256_file(src)
    # --yes: no question.
    sh(["mkfs.ext4", "-q", "-F", str(disk)])
    rc, out = run_on_tty([DISKFERRY, "copy", "--overwrite", "--yes",
                          str(src), str(disk)], "")
    assert rc == 0 and "go ahead" not in out, out


# --- check 7: dry run -------------------------------------------------------

def test_dry_run_writes_nothing(tmp_path):
    src = make_src(tmp_path / "src.img", 16 * MIB)
    disk = make_zero(tmp_path / "disk.img", 16 * MIB)
    sh(["mkfs.ext4", "-q", "-F", str(disk)])
    before = sha256_file(disk)
    # Checks run: without --overwrite the dry run refuses as the copy would.
    refused(["copy", "--dry-run", src, disk], disk,
            "holds an ext4 filesystem (give --overwrite)")
    p = df("copy", "--dry-run", "--overwrite", src, disk)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert re.search(r"^would write 0\.\.\d+ \(", out, re.M), out
    assert "would zero " in out
    assert re.search(r"dry run: .*: would write \d+ bytes .* nothing "
                     r"written", out), out
    assert sha256_file(disk) == before
    # A new destination is not even created.
    p = df("copy", "--dry-run", src, tmp_path / "new.img")
    assert p.returncode == 0, p.stderr
    assert b"would write" in p.stdout
    assert not (tmp_path / "new.img").exists()


@pytest.mark.skipif(not have("unshare"), reason="unshare missing")
def test_mounted_in_another_namespace_is_claimed(tmp_path):
    """A mount we cannot see in our mountinfo (another mount namespace, a
    container) still claims the device: the O_EXCL probe finds it."""
    src = make_src(tmp_path / "src.img", 32 * MIB)
    disk = make_zero(tmp_path / "disk.img", 32 * MIB)
    sh(["mkfs.ext4", "-q", str(disk)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop(disk) as dev:
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private",
                              "sh", "-c", 'mount "$0" "$1" && echo ok && '
                              'exec cat', dev, str(mnt)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            if p.stdout.readline() != b"ok\n":
                pytest.skip("cannot mount in a new namespace here")
            refused(["copy", "--overwrite", "--yes", src, dev], disk,
                    "device is claimed exclusively (busy: mounted "
                    "elsewhere or in use by the kernel)")
        finally:
            p.stdin.close()
            p.wait()


def test_loop_device_over_the_destination_device(tmp_path):
    """Another loop device stacked on the destination device."""
    src = make_src(tmp_path / "src.img")
    disk = make_zero(tmp_path / "disk.img", 16 * MIB)
    with loop(disk) as dev, loop(dev) as upper:
        refused(["copy", src, dev], disk, "open by loop device %s" % upper)
