"""diskferry copy on raw images: files, sparse files, loop devices,
streams; refusals and failures leave nothing half-written."""
import json
import os
import subprocess

import pytest

from conftest import df, sh, sha256_file, files_equal, write_at, \
    loop_device, signal_and_wait


def make_mixed(path, size=32 << 20):
    """A raw disk with random data, text, written zeros and holes (the
    regions that fit in size)."""
    regions = [
        (0, os.urandom(1 << 20)),                    # random
        (3 << 20, b"some text line\n" * 50000),      # text-like
        (8 << 20, b"\0" * (4 << 20)),                 # zeros written as data
        (13 << 20, os.urandom(4096 * 3 + 17)),       # odd-sized data
    ]
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in regions:
            if off + len(data) <= size - 100:
                f.seek(off)
                f.write(data)
        f.seek(size - 100)
        f.write(b"tail" * 25)                        # last partial leaf
    return path


def report(p):
    return json.loads(p.stdout)


def test_copy_new_file_sparse_and_verified(tmp_path):
    src = make_mixed(tmp_path / "src.img")
    dst = tmp_path / "dst.img"
    p = df("copy", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    r = report(p)
    assert r["verified"] is True
    assert r["digest"]["source"] == r["digest"]["destination"]
    assert r["disk_size"] == os.path.getsize(src)
    # Zeros and holes were not written: the copy is sparser than the data.
    assert r["skipped"]["zero"] >= 4 << 20
    assert r["skipped"]["unallocated"] > 0
    assert os.stat(dst).st_blocks * 512 < 12 << 20
    assert r["bytes_read"] < os.path.getsize(src)    # holes not read


def test_copy_odd_size_and_tiny(tmp_path):
    for size in (1, 511, 65535, 65537, 3 * 65536 + 5):
        src = tmp_path / ("s%d" % size)
        src.write_bytes(os.urandom(size))
        dst = tmp_path / ("d%d" % size)
        p = df("copy", src, dst)
        assert p.returncode == 0, p.stderr
        assert src.read_bytes() == dst.read_bytes()


def test_copy_empty_file(tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    dst = tmp_path / "out"
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert dst.read_bytes() == b""


def test_copy_digest_sha256(tmp_path):
    src = make_mixed(tmp_path / "src.img", 4 << 20)
    dst = tmp_path / "dst.img"
    p = df("copy", "--json", "--digest", "sha256", src, dst)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["digest"]["algorithm"] == "sha256"
    assert len(r["digest"]["source"]) == 64


def test_copy_threads_give_same_digest(tmp_path):
    src = make_mixed(tmp_path / "src.img")
    digests = set()
    for t in (1, 2, 5):
        dst = tmp_path / ("d%d" % t)
        p = df("copy", "--json", "--threads", t, src, dst)
        assert p.returncode == 0, p.stderr
        digests.add(report(p)["digest"]["source"])
        assert files_equal(src, dst)
    assert len(digests) == 1


def test_copy_refuses_existing_without_overwrite(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    dst = tmp_path / "dst.img"
    dst.write_bytes(b"precious" * (1 << 17))        # 1 MiB, as the source
    before = sha256_file(dst)
    p = df("copy", src, dst)
    assert p.returncode == 3
    assert p.stderr.decode() == (
        "diskferry: copy: %s: refusing to write: holds non-zero data at "
        "offset 0 (give --overwrite)\n" % dst)
    assert sha256_file(dst) == before


def test_copy_overwrite_existing_file_punches_zeros(tmp_path):
    src = make_mixed(tmp_path / "src.img", 8 << 20)
    dst = tmp_path / "dst.img"
    dst.write_bytes(os.urandom(8 << 20))           # old data everywhere
    p = df("copy", "--overwrite", "--yes", "--json", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["bytes_zeroed"] > 0


def test_copy_overwrite_refuses_smaller_file(tmp_path):
    # Issue 3, check 5: a smaller destination is refused even with
    # --overwrite (it is likely not the disk meant); an empty one grows.
    src = make_mixed(tmp_path / "src.img", 4 << 20)
    dst = tmp_path / "dst.img"
    dst.write_bytes(b"x" * 1000)
    p = df("copy", "--overwrite", "--yes", src, dst)
    assert p.returncode == 3, p.stderr
    assert b"refusing to write: 1000 B is smaller than the source " \
        b"(4.0 MiB)" in p.stderr
    assert dst.read_bytes() == b"x" * 1000
    dst.write_bytes(b"")
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def test_copy_to_loop_device_and_back(tmp_path):
    src = make_mixed(tmp_path / "src.img", 16 << 20)
    backing = tmp_path / "backing.img"
    with open(backing, "wb") as f:
        f.write(os.urandom(16 << 20))
    with loop_device(backing) as dev:
        p = df("copy", "--overwrite", "--yes", "--fsync", "--json", src, dev)
        assert p.returncode == 0, p.stderr
        assert report(p)["verified"]
        out = tmp_path / "back.img"
        p = df("copy", dev, out)
        assert p.returncode == 0, p.stderr
        assert files_equal(src, out)
    assert files_equal(src, backing)


def test_copy_to_smaller_device_refused(tmp_path):
    src = make_mixed(tmp_path / "src.img", 16 << 20)
    backing = tmp_path / "small.img"
    backing.write_bytes(b"\1" * (8 << 20))
    before = sha256_file(backing)
    with loop_device(backing) as dev:
        p = df("copy", "--overwrite", "--yes", src, dev)
        assert p.returncode == 3, p.stderr
        assert b"smaller than the source" in p.stderr
    assert sha256_file(backing) == before


def test_copy_stdin_to_file_and_file_to_stdout(tmp_path):
    src = make_mixed(tmp_path / "src.img", 8 << 20)
    dst = tmp_path / "from_stdin.img"
    with open(src, "rb") as f:
        p = subprocess.run([os.environ.get("DISKFERRY") or
                            os.path.join(os.environ.get("DF_BUILD", "build"),
                                         "diskferry"),
                            "copy", "--json", "-", str(dst)],
                           stdin=f, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)
    assert report(p)["verified"]
    assert os.stat(dst).st_blocks * 512 < os.path.getsize(src)
    p = df("copy", src, "-")
    assert p.returncode == 0, p.stderr
    assert p.stdout == src.read_bytes()


def test_copy_stdin_through_pipe(tmp_path):
    src = make_mixed(tmp_path / "src.img", 8 << 20)
    dst = tmp_path / "piped.img"
    binary = os.path.join(os.environ.get("DF_BUILD", "build"), "diskferry")
    p = subprocess.run("cat %s | %s copy - %s" % (src, binary, dst),
                       shell=True, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert files_equal(src, dst)


def test_json_on_stdout_stream_refused(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    p = df("copy", "--json", src, "-")
    assert p.returncode == 2
    assert p.stdout == b""


def test_missing_source(tmp_path):
    dst = tmp_path / "dst"
    p = df("copy", tmp_path / "nope.img", dst)
    assert p.returncode == 4
    assert p.stderr.decode() == (
        "diskferry: copy: %s: cannot open: No such file or directory\n"
        % (tmp_path / "nope.img"))
    assert not dst.exists()


def test_directory_as_source(tmp_path):
    p = df("copy", tmp_path, tmp_path / "x")
    assert p.returncode == 2
    assert b"is a directory" in p.stderr
    assert not (tmp_path / "x").exists()


def test_unreadable_source(tmp_path):
    src = tmp_path / "secret.img"
    src.write_bytes(b"x" * 4096)
    os.chmod(src, 0)
    # root reads anything: drop to nobody for the test.
    binary = os.path.join(os.environ.get("DF_BUILD", "build"), "diskferry")
    os.chmod(tmp_path, 0o777)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                        "--clear-groups", binary, "copy", str(src),
                        str(tmp_path / "out")], capture_output=True)
    assert p.returncode == 4, p.stderr
    assert b"Permission denied" in p.stderr
    assert not (tmp_path / "out").exists()


def test_destination_dir_missing(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    p = df("copy", src, tmp_path / "no" / "such" / "dir" / "x.img")
    assert p.returncode == 4
    assert b"cannot open" in p.stderr


def test_new_file_under_dev_refused(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    p = df("copy", src, "/dev/diskferry-test-no-such-disk")
    assert p.returncode == 3
    assert b"no such device" in p.stderr
    assert not os.path.exists("/dev/diskferry-test-no-such-disk")


def test_same_file_refused(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    before = sha256_file(src)
    link = tmp_path / "link.img"
    os.symlink(src, link)
    p = df("copy", "--overwrite", "--yes", src, link)
    assert p.returncode == 3
    assert b"same file as the source" in p.stderr
    assert sha256_file(src) == before


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MiB ext4 filesystem on a loop device, mounted: a full disk."""
    img = tmp_path / "fs.img"
    sh(["truncate", "-s", "6M", str(img)])
    sh(["mkfs.ext4", "-q", "-F", str(img)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with loop_device(img) as dev:
        sh(["mount", dev, str(mnt)])
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)])


def test_destination_on_full_filesystem(tmp_path, small_fs):
    src = tmp_path / "big.img"
    src.write_bytes(os.urandom(16 << 20))
    dst = small_fs / "copy.img"
    p = df("copy", src, dst)
    assert p.returncode == 4, p.stderr
    assert b"No space left on device" in p.stderr
    # Nothing half-written left looking complete, no temporary either.
    assert sorted(os.listdir(small_fs)) == ["lost+found"]


def test_huge_sparse_disk_bounded_memory(tmp_path):
    """A 4 TiB sparse disk with scattered data: holes cost nothing, peak
    memory stays bounded (the plan is mapped a window at a time)."""
    src = tmp_path / "huge.img"
    with open(src, "wb") as f:
        f.truncate(4 << 40)
    for i in range(64):
        write_at(src, i * (64 << 30) + 12345, os.urandom(70000))
    dst = tmp_path / "huge-copy.img"
    binary = os.path.join(os.environ.get("DF_BUILD", "build"), "diskferry")
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", binary, "copy",
                        "--json", str(src), str(dst)], capture_output=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    r = report(p)
    assert r["verified"] and r["disk_size"] == 4 << 40
    assert r["bytes_read"] <= 64 * 3 * 65536
    if not os.environ.get("DF_SANITIZED"):
        rss_kib = int(p.stderr.decode().split("maxrss=")[1].split()[0])
        assert rss_kib < 256 * 1024, rss_kib
    p = df("verify", src, dst)
    assert p.returncode == 0, p.stdout


def test_progress_flag(tmp_path):
    src = make_mixed(tmp_path / "src.img", 4 << 20)
    p = df("copy", "--progress", src, tmp_path / "o.img")
    assert p.returncode == 0, p.stderr
    p = df("copy", "--no-progress", src, tmp_path / "o2.img")
    assert p.returncode == 0 and p.stderr == b""


def test_killed_copy_leaves_no_file_under_the_name(tmp_path):
    """kill -9 mid-copy: the destination name never holds a partial copy
    (it is written as a hidden temporary and renamed when verified)."""
    dst = tmp_path / "dst.img"
    binary = os.path.join(os.environ.get("DF_BUILD", "build"), "diskferry")
    proc = subprocess.Popen([binary, "copy", "-", str(dst)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(os.urandom(4 << 20))
    proc.stdin.flush()
    import time
    for _ in range(100):
        if any(n.startswith(".dst.img.diskferry-") for n in os.listdir(tmp_path)):
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not dst.exists()
    names = os.listdir(tmp_path)
    assert len(names) == 1 and names[0].startswith(".dst.img.diskferry-")


def start_stream_copy(tmp_path, dst, *extra):
    """copy - DST fed 4 MiB and kept open; returns once the temporary
    file exists."""
    import time
    binary = os.path.join(os.environ.get("DF_BUILD", "build"), "diskferry")
    proc = subprocess.Popen([binary, "copy", *extra, "-", str(dst)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(os.urandom(4 << 20))
    proc.stdin.flush()
    for _ in range(200):
        if any(n.startswith("." + dst.name + ".diskferry-")
               for n in os.listdir(tmp_path)):
            break
        time.sleep(0.05)
    time.sleep(0.2)
    return proc


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_copy_says_so_and_cleans_up(tmp_path, sig):
    """Ctrl-C (or SIGTERM) mid-copy: exit 130, one line saying how far it
    got and what to run, and no temporary file left."""
    import signal
    dst = tmp_path / "dst.img"
    proc = start_stream_copy(tmp_path, dst)
    err = signal_and_wait(proc, getattr(signal, sig))
    assert proc.returncode == 130, err
    assert err.startswith(b"diskferry: copy: interrupted: "), err
    assert b" written; run the same command again" in err, err
    assert len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_stale_temporary_files_are_removed(tmp_path):
    """kill -9 leaves a temporary file; the next copy to the same name
    removes it (saying so) and succeeds: kills do not pile up files.
    A live copy's file
    (locked) is left alone."""
    dst = tmp_path / "dst.img"
    seen = set()
    for _ in range(3):
        proc = start_stream_copy(tmp_path, dst)
        proc.kill()
        proc.wait()
        stale = sorted(n for n in os.listdir(tmp_path)
                       if n.startswith(".dst.img.diskferry-"))
        assert len(stale) == 1      # the one before was removed
        assert stale[0] not in seen
        seen.add(stale[0])
    src = make_mixed(tmp_path / "src.img", 4 << 20)
    p = df("copy", src, dst)
    assert p.returncode == 0, p.stderr
    for n in stale:
        assert ("removed a stale temporary file %s (an interrupted copy)"
                % n).encode() in p.stderr, p.stderr
    assert files_equal(src, dst)
    assert sorted(os.listdir(tmp_path)) == ["dst.img", "src.img"]
    # a live copy's temporary file is locked: another copy to that name
    # leaves it alone
    other = tmp_path / "other.img"
    live = start_stream_copy(tmp_path, other)
    try:
        tmp = [n for n in os.listdir(tmp_path) if n.startswith(".other")]
        p = df("copy", src, other)
        assert p.returncode == 0, p.stderr
        assert b"stale" not in p.stderr
        assert os.path.exists(tmp_path / tmp[0])
    finally:
        live.kill()
        live.wait()


def test_new_file_is_renamed_into_place(tmp_path):
    src = make_mixed(tmp_path / "src.img", 1 << 20)
    out = tmp_path / "out"
    out.mkdir()
    p = df("copy", src, out / "a.img")
    assert p.returncode == 0, p.stderr
    assert os.listdir(out) == ["a.img"]
