"""A raw copy between regular files without the bytes passing through
diskferry's buffers (engine/pipeline.c invariants 6 and 7): the source is
scanned and hashed through views of its pages, and its data runs reach
the destination by a reflink (XFS), by copy_file_range (the same file
system), or are written from the views (another file system).  The
report's copy_method says which; the destination is the source's bytes
with holes where the source has zeros, its digest the one the buffered
path gives, and a source changed between its hash and its copy is
caught by the read-back."""
import hashlib
import json
import os
import subprocess

import pytest

from conftest import df, sh, files_equal, write_at, loop_device, have

MIB = 1 << 20
LEAF = 64 * 1024


def report(p):
    return json.loads(p.stdout)


def make_src(path, size=24 * MIB):
    """Random data, text, zeros written as bytes, odd-sized data, holes,
    and a last partial leaf when size is odd."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in [(0, os.urandom(MIB)),
                          (3 * MIB, b"some text line\n" * 50000),
                          (8 * MIB, bytes(4 * MIB)),
                          (13 * MIB, os.urandom(3 * 4096 + 17))]:
            f.seek(off)
            f.write(data)
        f.seek(size - 100)
        f.write(b"tail" * 25)
    return path


def zero_leaves(path):
    """Offsets of the leaves of path that read as zeros."""
    out = []
    with open(path, "rb") as f:
        off = 0
        while True:
            b = f.read(LEAF)
            if not b:
                return out
            if b.count(0) == len(b):
                out.append(off)
            off += len(b)


def has_data(path, off, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, off, os.SEEK_DATA) < off + length
    except OSError:             # ENXIO: no data from off on
        return False
    finally:
        os.close(fd)


def check_copy(src, dst, r):
    assert files_equal(src, dst)
    assert r["verified"] is True
    assert r["digest"]["source"] == r["digest"]["destination"]
    size = os.path.getsize(src)
    for off in zero_leaves(src):
        assert not has_data(dst, off, min(LEAF, size - off)), off


def copied(src, dst, methods, *args):
    """copy --json [args] src dst: it succeeds by one of methods, the
    destination is right; its report."""
    p = df("copy", "--json", *args, src, dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["copy_method"] in methods, r
    check_copy(src, dst, r)
    return r


def buffered_report(src, dst):
    """The same copy through the buffers (--salvage keeps them)."""
    p = df("copy", "--json", "--salvage", src, dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["copy_method"] == "buffer"
    return r


COUNTERS = ["bytes_read", "bytes_written", "bytes_zeroed", "skipped",
            "disk_size", "digest"]


@pytest.mark.parametrize("size", [24 * MIB, 24 * MIB + 4097])
def test_copy_same_filesystem_without_buffers(tmp_path, size):
    src = make_src(tmp_path / "src.img", size)
    # copy_file_range (ext4, tmpfs) or a reflink (XFS, btrfs)
    r = copied(src, tmp_path / "dst.img", ("copy_file_range", "reflink"))
    assert r["skipped"]["zero"] >= 4 * MIB
    assert r["skipped"]["unallocated"] > 0
    # The same counters and digest as the copy through buffers.
    ref = buffered_report(src, tmp_path / "ref.img")
    assert {k: r[k] for k in COUNTERS} == {k: ref[k] for k in COUNTERS}


def test_copy_sha256_digest_same_as_buffered(tmp_path):
    src = make_src(tmp_path / "src.img")
    p = df("copy", "--json", "--digest", "sha256", src, tmp_path / "a.img")
    assert p.returncode == 0, p.stderr
    r = report(p)
    p = df("copy", "--json", "--digest", "sha256", "-",
           tmp_path / "b.img", input=open(src, "rb").read())
    assert p.returncode == 0, p.stderr
    assert report(p)["copy_method"] == "buffer"
    assert r["digest"]["source"] == report(p)["digest"]["source"]


def test_copy_overwrite_in_place(tmp_path):
    """An existing raw file written in place (--overwrite): the kernel
    copies the data runs, the zero runs are punched."""
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    with open(dst, "wb") as f:
        f.write(os.urandom(os.path.getsize(src)))
    copied(src, dst, ("copy_file_range", "reflink"), "--overwrite", "--yes")


def test_copy_into_guarded_file_keeps_buffers(tmp_path):
    """An existing all-zero file written without --overwrite goes through
    the emptiness guard, which reads every range first: the buffers."""
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    with open(dst, "wb") as f:
        f.truncate(os.path.getsize(src))
    p = df("copy", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["copy_method"] == "buffer"
    assert files_equal(src, dst)


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs: another file system than tmp_path's."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    sh(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def test_copy_across_filesystems_writes_from_the_views(tmp_path, tmpfs):
    src = make_src(tmp_path / "src.img", 24 * MIB + 4097)
    r = copied(src, tmpfs / "dst.img", ("write",))
    ref = buffered_report(src, tmpfs / "ref.img")
    assert {k: r[k] for k in COUNTERS} == {k: ref[k] for k in COUNTERS}


@pytest.fixture
def xfs(tmp_path):
    """An XFS with reflink on a loop device over a file, mounted under
    tmp_path; unmounted and detached at the end."""
    if os.geteuid() != 0 or not have("mkfs.xfs"):
        pytest.skip("needs root and xfsprogs")
    img = tmp_path / "xfs.img"
    with open(img, "wb") as f:
        f.truncate(320 * MIB)
    sh(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(img)])
    mnt = tmp_path / "xfs"
    mnt.mkdir()
    with loop_device(img) as dev:
        sh(["mount", "-t", "xfs", dev, str(mnt)])
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)])


def shared_flags(path):
    """For each extent of path (filefrag -v), whether it is shared."""
    out = sh(["filefrag", "-v", str(path)]).decode()
    flags = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0].strip().isdigit():
            flags.append("shared" in line)
    return flags


@pytest.mark.parametrize("size", [24 * MIB, 24 * MIB + 4097])
def test_copy_reflink_on_xfs_shares_extents(tmp_path, xfs, size):
    src = make_src(xfs / "src.img", size)
    dst = xfs / "dst.img"
    copied(src, dst, ("reflink",))
    sh(["sync", "-f", str(dst)])
    flags = shared_flags(dst)
    assert flags and all(flags), flags
    # The source is left as it was, and a later write to it is its own.
    write_at(src, 0, b"changed")
    assert not files_equal(src, dst)


def test_copy_reflink_with_fsync_reads_back_the_medium(tmp_path, xfs):
    src = make_src(xfs / "src.img")
    copied(src, xfs / "dst.img", ("reflink",), "--fsync")


def test_source_changed_before_its_copy_is_caught(tmp_path):
    """The kernel reads the source again when it copies: a byte changed
    after the hash (the test hook DF_TEST_COPY_TAMPER_AT, built with
    meson -Dtesting=true) reaches the destination, and the read-back
    fails verification; nothing is left under the name."""
    src = make_src(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    env = dict(os.environ, DF_TEST_COPY_TAMPER_AT=str(13 * MIB + 100))
    p = df("copy", "--json", src, dst, env=env)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert not os.path.exists(dst)
    assert [n for n in os.listdir(tmp_path)
            if n.startswith(".dst.img.")] == []


def test_source_changed_before_its_write_is_caught(tmp_path, tmpfs):
    """The same across file systems: the bytes written come from the
    source's pages as they are when written."""
    src = make_src(tmp_path / "src.img")
    env = dict(os.environ, DF_TEST_COPY_TAMPER_AT=str(3 * MIB + 5))
    p = df("copy", "--json", src, tmpfs / "dst.img", env=env)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert os.listdir(tmpfs) == []


def test_source_changed_before_its_reflink_is_caught(tmp_path, xfs):
    src = make_src(xfs / "src.img")
    dst = xfs / "dst.img"
    env = dict(os.environ, DF_TEST_COPY_TAMPER_AT=str(100))
    p = df("copy", "--json", src, dst, env=env)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert not os.path.exists(dst)


# ---- image formats that store data as it reads ----
#
# A qcow2 data cluster, a VHD or VHDX payload block holds the guest's
# bytes as they read: where an item's bytes lie in one stretch of the
# image file (image_driver.host_run), they are scanned through a view of
# that stretch and copied from it by the kernel like a raw file's.

FORMATS = [
    ("qcow2", ["-O", "qcow2"]),
    ("qcow2-subclusters", ["-O", "qcow2", "-o",
                           "extended_l2=on,cluster_size=128k"]),
    ("vhd", ["-O", "vpc", "-o", "force_size=on"]),
    ("vhd-fixed", ["-O", "vpc", "-o", "subformat=fixed,force_size=on"]),
    ("vhdx", ["-O", "vhdx"]),
]


def converted(tmp_path, name, opts, size=24 * MIB):
    """make_src's disk in a format, and qemu-img's raw reading of it."""
    raw = make_src(tmp_path / "src.raw", size)
    img = tmp_path / ("src." + name)
    sh(["qemu-img", "convert", "-f", "raw"] + opts + [str(raw), str(img)])
    ref = tmp_path / "qemu.raw"
    sh(["qemu-img", "convert", "-O", "raw", str(img), str(ref)])
    return img, ref


def sha256_prefix(path, n):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(n))
    return h.hexdigest()


@pytest.mark.parametrize("name,opts", FORMATS, ids=[f[0] for f in FORMATS])
def test_format_copied_without_buffers(tmp_path, name, opts):
    img, ref = converted(tmp_path, name, opts)
    dst = tmp_path / "dst.img"
    p = df("copy", "--json", img, dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["copy_method"] in ("copy_file_range", "reflink"), r
    assert r["verified"] is True
    # (qemu reads a fixed VHD made with force_size 512 bytes longer)
    assert files_equal(tmp_path / "src.raw", dst)
    assert sha256_prefix(ref, os.path.getsize(dst)) == \
        sha256_prefix(dst, os.path.getsize(dst))
    # the digest and counters of the copy through the buffers
    buf = buffered_report(img, tmp_path / "buf.img")
    assert {k: r[k] for k in COUNTERS} == {k: buf[k] for k in COUNTERS}


def test_format_in_pieces_through_the_buffers(tmp_path):
    """512-byte clusters: an L2 table every 32 KiB between the data
    clusters, so no item is one stretch of the file: read into buffers,
    and said so."""
    img, ref = converted(tmp_path, "qcow2", ["-O", "qcow2", "-o",
                                             "cluster_size=512"])
    dst = tmp_path / "dst.img"
    p = df("copy", "--json", img, dst)
    assert p.returncode == 0, p.stderr
    assert report(p)["copy_method"] == "buffer"
    assert files_equal(ref, dst)


def test_format_mixed_clusters(tmp_path):
    """Compressed clusters, clusters written later elsewhere in the file
    (qemu-io), zero clusters and a backing file's: each piece as it
    reads."""
    base = make_src(tmp_path / "base.raw")
    top = tmp_path / "top.qcow2"
    sh(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(base),
        str(top)])
    sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 2M",
        "-c", "write -P 0x33 10M 96k", "-c", "write -z 3M 64k", str(top)])
    over = tmp_path / "over.qcow2"
    sh(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(top),
        str(over)])
    sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x77 2M 1M",
        "-c", "write -P 0x11 20M 4k", str(over)])
    for img in (top, over):
        ref = tmp_path / "ref.raw"
        sh(["qemu-img", "convert", "-O", "raw", str(img), str(ref)])
        dst = tmp_path / "dst.img"
        p = df("copy", "--json", "-f", "qcow2", img, dst)
        assert p.returncode == 0, p.stderr
        assert report(p)["verified"] is True
        assert files_equal(ref, dst)
        os.unlink(dst)


@pytest.mark.parametrize("name,opts", [FORMATS[0], FORMATS[-1]],
                         ids=["qcow2", "vhdx"])
def test_format_source_changed_before_its_copy_is_caught(tmp_path, name,
                                                         opts):
    """A byte of the image file changed after its hash and before the
    kernel copies it: the read-back fails verification (exit 7)."""
    img, ref = converted(tmp_path, name, opts)
    # where make_src's text lies in the image file
    host = open(img, "rb").read().find(b"some text line\n" * 8) + 1000
    assert host > 1000
    dst = tmp_path / "dst.img"
    env = dict(os.environ, DF_TEST_COPY_TAMPER_AT=str(host))
    p = df("copy", "--json", img, dst, env=env)
    assert p.returncode == 7, p.stderr
    assert b"verification failed" in p.stderr
    assert not os.path.exists(dst)
