"""copy and sync --fs-aware (docs/design.md, filesystem-aware): blocks a
trusted filesystem marks free are neither read nor sent, the destination
holds zeros there, and the result is a filesystem that checks clean with
every file byte-identical.  Filesystems not to be trusted are copied
whole with one warning; a source in use is refused."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import DISKFERRY, df, files_equal, loop_device, run
from test_fs_ext import CASES, make_fs, super_info
from test_fs_xfs import Mounted, files_of, fill, mkxfs, needs_xfs

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20

pytestmark = pytest.mark.skipif(not shutil.which("mke2fs")
                                and not os.path.exists("/sbin/mke2fs"),
                                reason="e2fsprogs not installed")


def sh(*argv):
    p = subprocess.run(argv, capture_output=True)
    assert p.returncode == 0, (argv, p.stderr.decode())
    return p.stdout.decode()


def copy_json(*args):
    p = df("copy", "--json", *args)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout), p.stderr.decode()


def files_in(img, files, tmp_path):
    """Every file of `files` reads back from the ext image byte for byte."""
    for name, data in files.items():
        out = str(tmp_path / ("out_" + name))
        sh("debugfs", "-R", "dump /%s %s" % (name, out), img)
        with open(out, "rb") as f:
            assert f.read() == data, name


def used_and_meta(img):
    blocks, free, bs = super_info(img)
    return (blocks - free) * bs


@pytest.mark.parametrize("kind,opts", CASES,
                         ids=["%s%s" % (k, "".join(o)) for k, o in CASES])
def test_copy_reads_only_what_is_used(tmp_path, kind, opts):
    img, files = make_fs(tmp_path, kind, opts)
    dst = tmp_path / "out.img"
    rep, err = copy_json("--fs-aware", img, dst)
    assert "warning" not in err, err
    used = used_and_meta(img)
    assert rep["bytes_read"] <= 1.05 * used, (rep["bytes_read"], used)
    assert rep["skipped"]["free"] > 0
    assert rep["skipped"]["free_ext"] == rep["skipped"]["free"]
    assert rep["verified"] and rep["fs_aware"]
    assert rep["digest"]["covers"].startswith("used blocks")
    p = run(["e2fsck", "-fn", str(dst)])
    assert p.returncode == 0, p.stdout.decode()
    files_in(str(dst), files, tmp_path)
    # a new destination keeps holes where the blocks were free
    assert os.stat(dst).st_blocks * 512 <= 1.05 * used + MIB


def test_plain_copy_hints_and_fs_aware_is_smaller(tmp_path):
    img, files = make_fs(tmp_path, "ext4", [])
    p = df("copy", img, tmp_path / "plain.img")
    assert p.returncode == 0
    hint = [l for l in p.stderr.decode().splitlines() if "hint" in l]
    assert len(hint) == 1 and "--fs-aware" in hint[0], p.stderr
    assert files_equal(img, tmp_path / "plain.img")
    rep, _ = copy_json(img, tmp_path / "plain2.img")
    assert rep["bytes_free_stale"] > 0 and not rep["fs_aware"]
    fa, _ = copy_json("--fs-aware", img, tmp_path / "fa.img")
    assert fa["bytes_read"] + rep["bytes_free_stale"] <= rep["bytes_read"]
    # -q: no hint
    p = df("copy", "-q", img, tmp_path / "plain3.img")
    assert p.returncode == 0 and p.stderr == b""


def disk_with_table(tmp_path, label, fsimg):
    """A disk image: a `label` (dos or gpt) table, partition 1 holding
    fsimg at 1 MiB, partition 2 (swap) after it."""
    size = os.path.getsize(fsimg)
    disk = str(tmp_path / ("disk_%s.img" % label))
    with open(disk, "wb") as f:
        f.truncate(size + 16 * MIB + 2 * MIB)
    end = MIB + size
    parted = shutil.which("parted") or "/sbin/parted"
    sh(parted, "-s", disk, "mklabel", "msdos" if label == "dos" else "gpt",
       "unit", "B", "mkpart", "primary", "ext4", str(MIB), str(end - 1),
       "mkpart", "primary", "linux-swap", str(end), str(end + 16 * MIB - 1))
    with open(fsimg, "rb") as i, open(disk, "r+b") as o:
        o.seek(MIB)
        o.write(i.read())
        # the swap partition: a signature and stale pages after it
        o.seek(MIB + size)
        o.write(bytes(4086) + b"SWAPSPACE2")
        o.seek(MIB + size + 1024)
        o.write((1).to_bytes(4, "little"))
        o.seek(MIB + size + 64 * 1024)
        o.write(os.urandom(4 * MIB))
    return disk


@pytest.mark.parametrize("label", ["dos", "gpt"])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_inside_a_partitioned_disk(tmp_path, label, fmt):
    img, files = make_fs(tmp_path, "ext4", [])
    disk = disk_with_table(tmp_path, label, img)
    src = disk
    if fmt == "qcow2":
        src = str(tmp_path / "disk.qcow2")
        sh("qemu-img", "convert", "-O", "qcow2", disk, src)
    dst = tmp_path / "out.img"
    rep, err = copy_json("--fs-aware", src, dst)
    assert "warning" not in err, err
    assert rep["skipped"]["free_ext"] > 0
    assert rep["skipped"]["free_swap"] == 4 * MIB   # the stale pages
    assert rep["bytes_read"] <= 1.05 * used_and_meta(img) + 2 * MIB
    # the table, and partition 1 holds a clean filesystem with the files
    with open(disk, "rb") as a, open(dst, "rb") as b:
        assert a.read(MIB) == b.read(MIB)
        a.seek(-MIB, 2)
        b.seek(-MIB, 2)
        assert a.read() == b.read()     # GPT's backup table, or nothing
    part = str(tmp_path / "p1.img")
    with open(dst, "rb") as i, open(part, "wb") as o:
        i.seek(MIB)
        o.write(i.read(os.path.getsize(img)))
    assert run(["e2fsck", "-fn", part]).returncode == 0
    files_in(part, files, tmp_path)


@needs_xfs
def test_xfs(tmp_path):
    img = tmp_path / "xfs.img"
    mkxfs(img)
    with Mounted(img, tmp_path / "mnt") as mnt:
        fill(mnt)
        for i in range(12):             # on disk, then deleted: stale
            with open(os.path.join(mnt, "old%d" % i), "wb") as f:
                f.write(os.urandom(2 * MIB))
        os.sync()
        for i in range(12):
            os.unlink(os.path.join(mnt, "old%d" % i))
        expect = files_of(mnt)
    dst = tmp_path / "out.img"
    rep, err = copy_json("--fs-aware", img, dst)
    assert "warning" not in err, err
    assert rep["skipped"]["free_xfs"] >= 20 * MIB
    assert run(["xfs_repair", "-n", str(dst)]).returncode == 0
    with Mounted(dst, tmp_path / "mnt2", ro=True) as mnt:
        assert files_of(mnt) == expect


@pytest.fixture
def ext4(tmp_path):
    return make_fs(tmp_path, "ext4", [])


def test_journal_to_recover_is_copied_whole(ext4, tmp_path):
    img, _ = ext4
    sh("debugfs", "-w", "-R", "feature needs_recovery", img)
    rep, err = copy_json("--fs-aware", img, tmp_path / "o.img")
    lines = [l for l in err.splitlines() if "warning" in l]
    assert lines == ["diskferry: copy: warning: the disk (ext4) copied "
                     "whole: ext4 needs journal recovery"], err
    assert rep["skipped"]["free"] == 0
    assert rep["digest"]["covers"] == "all"
    assert files_equal(img, tmp_path / "o.img")


def test_corrupt_superblock_is_copied_whole(ext4, tmp_path):
    img, _ = ext4
    with open(img, "r+b") as f:
        f.seek(0x438)
        f.write(b"\0\0")
    rep, err = copy_json("--fs-aware", img, tmp_path / "o.img")
    assert "the disk holds no filesystem diskferry reads: copied whole" \
        in err, err
    assert rep["skipped"]["free"] == 0
    assert files_equal(img, tmp_path / "o.img")


def test_source_mounted_read_write_is_refused(ext4, tmp_path):
    img, _ = ext4
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop_device(img) as dev:
        sh("mount", dev, str(mnt))
        try:
            for extra in ([], ["--force-share"]):
                p = df("copy", "--fs-aware", *extra, dev,
                       tmp_path / "o.img")
                assert p.returncode == 3, p.stderr.decode()
                assert "mounted read-write" in p.stderr.decode()
                assert not os.path.exists(tmp_path / "o.img")
            # a read-only mount is a fine source
            sh("mount", "-o", "remount,ro", str(mnt))
            p = df("copy", "--fs-aware", dev, tmp_path / "o.img")
            assert p.returncode == 0, p.stderr.decode()
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)


def test_sync_zeroes_free_blocks_once(ext4, tmp_path):
    img, files = ext4
    env = dict(os.environ, DISKFERRY_STATE_DIR=str(tmp_path / "state"))
    dst = tmp_path / "dst.img"
    shutil.copyfile(img, dst)           # an old full copy: stale free blocks
    p = run([DISKFERRY, "sync", "--json", "--overwrite", "--fs-aware", img,
             dst], env=env)
    assert p.returncode == 0, p.stderr.decode()
    first = json.loads(p.stdout)
    assert first["sync"]["changes"] == "compare"
    assert first["bytes_written"] == 0 and first["bytes_zeroed"] > 0
    fa = tmp_path / "fa.img"
    assert df("copy", "--fs-aware", img, fa).returncode == 0
    assert files_equal(fa, dst)
    # the record is the base now: free blocks known zero are not redone
    p = run([DISKFERRY, "sync", "--json", "--fs-aware", img, dst], env=env)
    again = json.loads(p.stdout)
    assert again["sync"]["changes"] == "record"
    assert again["sync"]["changed_bytes"] == 0
    assert again["bytes_zeroed"] == 0
    # delete a file: its blocks become free, and only they are zeroed
    name = sorted(files)[0]
    sh("debugfs", "-w", "-R", "rm /%s" % name, img)
    p = run([DISKFERRY, "sync", "--json", "--fs-aware", img, dst], env=env)
    assert p.returncode == 0, p.stderr.decode()
    third = json.loads(p.stdout)
    assert 0 < third["bytes_zeroed"] <= len(files[name]) + 2 * MIB
    fa2 = tmp_path / "fa2.img"
    assert df("copy", "--fs-aware", img, fa2).returncode == 0
    assert files_equal(fa2, dst)
    # a sync without it sends the stale blocks back
    p = run([DISKFERRY, "sync", img, dst], env=env)
    assert p.returncode == 0 and files_equal(img, dst)


def test_sync_onto_a_device(ext4, tmp_path):
    img, files = ext4
    dev_file = tmp_path / "dev.img"
    with open(dev_file, "wb") as f:
        f.write(os.urandom(os.path.getsize(img)))
    with loop_device(dev_file) as dev:
        p = df("sync", "--overwrite", "--fs-aware", img, dev)
        assert p.returncode == 0, p.stderr.decode()
    assert run(["e2fsck", "-fn", str(dev_file)]).returncode == 0
    files_in(str(dev_file), files, tmp_path)
    fa = tmp_path / "fa.img"
    assert df("copy", "--fs-aware", img, fa).returncode == 0
    assert files_equal(fa, dev_file)


def test_to_another_host(ext4, tmp_path):
    img, files = ext4
    rsh = ["--rsh", os.path.join(HERE, "rsh_local.sh"), "--remote-path",
           DISKFERRY]
    dst = tmp_path / "remote.img"
    p = df("copy", "--json", "--fs-aware", *rsh, img, "localhost:%s" % dst)
    assert p.returncode == 0, p.stderr.decode()
    rep = json.loads(p.stdout)
    assert rep["skipped"]["free"] > 0 and rep["verified"]
    fa = tmp_path / "fa.img"
    assert df("copy", "--fs-aware", img, fa).returncode == 0
    assert files_equal(fa, dst)
    # a sync there: the stale blocks of an old full copy become zeros
    shutil.copyfile(img, dst)
    env = dict(os.environ, DISKFERRY_STATE_DIR=str(tmp_path / "state"))
    p = run([DISKFERRY, "sync", "--overwrite", "--fs-aware", *rsh, img,
             "localhost:%s" % dst], env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert files_equal(fa, dst)


@pytest.mark.parametrize("args,why", [
    (["--passes", "2"], "read once"),
    (["--until", "1M"], "read once"),
])
def test_sync_usage_errors(ext4, tmp_path, args, why):
    img, _ = ext4
    shutil.copyfile(img, tmp_path / "d.img")
    p = df("sync", "--fs-aware", *args, img, tmp_path / "d.img")
    assert p.returncode == 2 and why in p.stderr.decode()


def test_stream_and_remote_sources_are_usage_errors(ext4, tmp_path):
    img, _ = ext4
    with open(img, "rb") as f:
        p = run([DISKFERRY, "copy", "--fs-aware", "-", tmp_path / "o.img"],
                input=f.read(1 << 20))
    assert p.returncode == 2, p.stderr.decode()
    assert "not a disk image on this host" in p.stderr.decode()
    p = df("copy", "--fs-aware", "--rsh",
           os.path.join(HERE, "rsh_local.sh"), "--remote-path", DISKFERRY,
           "localhost:%s" % img, tmp_path / "o2.img")
    assert p.returncode == 2, p.stderr.decode()
    assert not os.path.exists(tmp_path / "o2.img")


def test_ext4_copied_while_mounted_is_copied_whole(ext4, tmp_path):
    """A raw copy taken while the filesystem was mounted and written (a
    snapshot of a running VM) needs journal recovery: copied whole."""
    img, _ = ext4
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    snap = tmp_path / "snap.img"
    with loop_device(img) as dev:
        sh("mount", dev, str(mnt))
        try:
            with open(mnt / "new", "wb") as f:
                f.write(os.urandom(MIB))
            os.sync()
            shutil.copyfile(img, snap)
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    rep, err = copy_json("--fs-aware", snap, tmp_path / "o.img")
    assert "ext4 needs journal recovery" in err, err
    assert rep["skipped"]["free"] == 0
    assert files_equal(snap, tmp_path / "o.img")


def wait_released(path, timeout=10):
    """ntfs-3g may still hold the image a moment after umount returns."""
    import time
    real = os.path.realpath(path)
    end = time.time() + timeout
    while time.time() < end:
        held = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == real:
                        held = True
                except OSError:
                    pass
        if not held:
            return
        time.sleep(0.05)


def ntfs_or_skip():
    if not shutil.which("mkntfs") and not os.path.exists("/sbin/mkntfs"):
        pytest.skip("ntfs-3g not installed")
    import test_fs_ntfs
    return test_fs_ntfs


def test_ntfs(tmp_path):
    nt = ntfs_or_skip()
    img, files = nt.make_fs(tmp_path, seed=5)
    wait_released(img)
    dst = tmp_path / "out.img"
    rep, err = copy_json("--fs-aware", img, dst)
    assert "warning" not in err, err
    assert rep["skipped"]["free_ntfs"] > 0
    assert rep["skipped"]["free"] == rep["skipped"]["free_ntfs"]
    clusters, free, cs = nt.ntfs_counts(img)
    assert rep["bytes_read"] <= 1.05 * (clusters - free) * cs + MIB
    assert run(["ntfsfix", "-n", str(dst)]).returncode == 0
    with nt.Mounted(str(dst), tmp_path / "mnt", "ro") as mnt:
        for name, data in files.items():
            with open(os.path.join(mnt, name), "rb") as f:
                assert f.read() == data, name


def test_hibernated_ntfs_is_copied_whole(tmp_path):
    nt = ntfs_or_skip()

    def hiberfil(mnt):
        with open(os.path.join(mnt, "hiberfil.sys"), "wb") as f:
            f.write(b"hibr" + bytes(8192))
    img, _ = nt.make_fs(tmp_path, seed=6, extra=hiberfil)
    wait_released(img)
    rep, err = copy_json("--fs-aware", img, tmp_path / "o.img")
    assert "(ntfs) copied whole: NTFS is hibernated (hiberfil.sys)" in err
    assert rep["skipped"]["free"] == 0
    assert files_equal(img, tmp_path / "o.img")
