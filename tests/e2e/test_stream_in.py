"""A stream on stdin is looked at before it is written: compressed streams
are decompressed, a tar archive or an image container is refused naming
what to do (was: written raw onto the destination, exit 0)."""
import gzip
import json
import os
import subprocess

import pytest

from conftest import DISKFERRY, df, files_equal, sh, sha256_file

MIB = 1 << 20


def make_disk(path, size=8 * MIB):
    """A sparse raw disk: 1 MiB of random data at 0 and at 5 MiB."""
    with open(path, "wb") as f:
        f.write(os.urandom(MIB))
        f.seek(5 * MIB)
        f.write(os.urandom(MIB))
        f.truncate(size)
    return path


def copy_stdin(data_path, dst, *args):
    with open(data_path, "rb") as f:
        return df("copy", *args, "-", dst, input=f.read())


@pytest.mark.parametrize("tool", [["gzip", "-c"], ["xz", "-c", "-T1"],
                                  ["zstd", "-q", "-c"], ["bzip2", "-c"],
                                  ["lz4", "-q", "-c"]])
def test_compressed_stream_is_decompressed(tmp_path, tool):
    if subprocess.run(["which", tool[0]], capture_output=True).returncode:
        pytest.skip("%s not installed" % tool[0])
    disk = make_disk(tmp_path / "vm.raw")
    packed = tmp_path / "vm.packed"
    with open(packed, "wb") as out:
        subprocess.run(tool + [str(disk)], stdout=out, check=True)
    dst = tmp_path / "out.raw"
    p = copy_stdin(packed, dst)
    assert p.returncode == 0, p.stderr.decode()
    assert files_equal(disk, dst)


def test_truncated_compressed_stream_fails_and_leaves_nothing(tmp_path):
    disk = make_disk(tmp_path / "vm.raw")
    data = gzip.compress(open(disk, "rb").read())
    dst = tmp_path / "out.raw"
    p = df("copy", "-", dst, input=data[:len(data) // 2])
    err = p.stderr.decode()
    assert p.returncode == 5, err
    assert "diskferry: copy: -: gzip stream: " in err, err
    assert not dst.exists()
    assert os.listdir(tmp_path) == ["vm.raw"]


def test_tar_stream_refused_nothing_written(tmp_path, loop):
    disk = make_disk(tmp_path / "vm.raw")
    tar = tmp_path / "vm.tar"
    sh("tar -C %s -cSf %s vm.raw" % (tmp_path, tar))
    back = tmp_path / "dev.img"
    back.write_bytes(bytes(16 * MIB))
    before = sha256_file(back)
    with loop(back) as dev:
        p = copy_stdin(tar, dev)
        err = p.stderr.decode()
        assert p.returncode == 5, err
        assert err.strip() == (
            "diskferry: copy: -: the stream is a tar archive: name the disk "
            "in it as tar:-//MEMBER, or give -f raw to write the archive "
            "itself"), err
    assert sha256_file(back) == before
    # compressed, the same
    tgz = tmp_path / "vm.tgz"
    sh("gzip -c %s > %s" % (tar, tgz))
    p = copy_stdin(tgz, tmp_path / "o.raw")
    assert p.returncode == 5
    assert "the stream (decompressed) is a tar archive" in p.stderr.decode()
    assert not (tmp_path / "o.raw").exists()


def test_tar_stream_with_f_raw_is_written_as_it_is(tmp_path):
    disk = make_disk(tmp_path / "vm.raw")
    tar = tmp_path / "vm.tar"
    sh("tar -C %s -cf %s vm.raw" % (tmp_path, tar))
    dst = tmp_path / "out.raw"
    p = copy_stdin(tar, dst, "-f", "raw")
    assert p.returncode == 0, p.stderr.decode()
    assert files_equal(tar, dst)


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi", "vhdx", "vpc"])
def test_image_container_stream_refused(tmp_path, fmt):
    disk = make_disk(tmp_path / "vm.raw")
    img = tmp_path / ("vm." + fmt)
    sh("qemu-img convert -O %s %s %s" % (fmt, disk, img))
    dst = tmp_path / "out.raw"
    p = copy_stdin(img, dst)
    err = p.stderr.decode()
    assert p.returncode == 5, err
    name = {"vpc": "vhd"}.get(fmt, fmt)
    assert ("the stream is a %s image, which cannot be read from a "
            "stream" % name) in err, err
    assert not dst.exists()


@pytest.mark.parametrize("size", [0, 1, 511, 512, 65535, 65536, 65537])
def test_short_raw_streams(tmp_path, size):
    src = tmp_path / "s.raw"
    src.write_bytes(os.urandom(size))
    dst = tmp_path / "out.raw"
    p = copy_stdin(src, dst)
    assert p.returncode == 0, p.stderr.decode()
    assert files_equal(src, dst)


# ---- tar:ARCHIVE//MEMBER ----

def make_tar(tmp_path, disk, flags):
    tar = tmp_path / ("vm" + flags.replace(" ", "").replace("-", "_") + ".tar")
    sh("tar -C %s %s -cf %s %s" % (tmp_path, flags, tar, disk.name))
    return tar


@pytest.mark.parametrize("flags", ["-S", "-S --format=pax", "-S -z",
                                   "-S --zstd", "-S -J", ""])
def test_tar_member_to_file(tmp_path, flags):
    disk = make_disk(tmp_path / "vm.raw", 32 * MIB)
    tar = make_tar(tmp_path, disk, flags)
    dst = tmp_path / "out.raw"
    p = df("copy", "--json", "tar:%s//vm.raw" % tar, dst)
    assert p.returncode == 0, p.stderr.decode()
    assert files_equal(disk, dst)
    rep = json.loads(p.stdout)
    assert rep["bytes_written"] == 2 * MIB          # only the data
    assert rep["verified"] is True
    # the zeros were not written: the new file is as sparse as the disk
    assert os.stat(dst).st_blocks * 512 <= 3 * MIB


def test_tar_member_from_stdin_to_device(tmp_path, loop):
    disk = make_disk(tmp_path / "vm.raw", 16 * MIB)
    tgz = tmp_path / "vm.tgz"
    sh("tar -C %s -cSzf %s vm.raw" % (tmp_path, tgz))
    back = tmp_path / "dev.img"
    back.write_bytes(bytes(16 * MIB))
    with loop(back) as dev:
        with open(tgz, "rb") as f:
            p = df("copy", "--json", "tar:-//./vm.raw", dev, input=f.read())
        assert p.returncode == 0, p.stderr.decode()
        assert json.loads(p.stdout)["bytes_written"] == 2 * MIB
    assert files_equal(disk, back)


def test_tar_member_missing_or_not_a_disk(tmp_path):
    disk = make_disk(tmp_path / "vm.raw")
    sh("qemu-img convert -O qcow2 %s %s" % (disk, tmp_path / "vm.qcow2"))
    tar = tmp_path / "vm.tar"
    sh("tar -C %s -cf %s vm.raw vm.qcow2" % (tmp_path, tar))
    dst = tmp_path / "out.raw"
    p = df("copy", "tar:%s//nope.raw" % tar, dst)
    assert p.returncode == 2, p.stderr.decode()
    assert p.stderr.decode().strip() == (
        "diskferry: copy: tar:%s//nope.raw: no member nope.raw in the "
        "archive (it has vm.raw, vm.qcow2)" % tar)
    p = df("copy", "tar:%s//vm.qcow2" % tar, dst)
    assert p.returncode == 5, p.stderr.decode()
    assert ("member vm.qcow2 is a qcow2 image, which cannot be read from a "
            "stream: save it to a file and copy that") in p.stderr.decode()
    p = df("copy", "tar:%s//x" % disk, dst)
    assert p.returncode == 5, p.stderr.decode()
    assert "cannot be read" in p.stderr.decode()
    p = df("copy", disk, "tar:%s//x" % tar)
    assert p.returncode == 2
    assert "a tar member is a source only" in p.stderr.decode()
    p = df("copy", "tar:%s" % tar, dst)
    assert p.returncode == 2
    assert "expected tar:ARCHIVE//MEMBER" in p.stderr.decode()
    assert not dst.exists()


# ---- a stream becomes a qcow2 ----

@pytest.mark.parametrize("args,packer", [([], None), (["-c"], None),
                                         ([], "gzip"), ([], "tar")])
def test_stream_to_qcow2(tmp_path, args, packer):
    """The size comes from the stream's end; the header is written last
    (was: "-O qcow2 needs a file or device as SRC")."""
    disk = make_disk(tmp_path / "vm.raw", 24 * MIB + 4096)
    src, spec = disk, "-"
    if packer == "gzip":
        src = tmp_path / "vm.raw.gz"
        sh("gzip -c %s > %s" % (disk, src))
    elif packer == "tar":
        src = tmp_path / "vm.tar"
        sh("tar -C %s -cSf %s vm.raw" % (tmp_path, src))
        spec = "tar:-//vm.raw"
    dst = tmp_path / "out.qcow2"
    with open(src, "rb") as f:
        p = df("copy", "--json", "-O", "qcow2", *args, spec, dst,
               input=f.read())
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["destination_format"] == "qcow2"
    info = json.loads(sh("qemu-img info --output=json %s" % dst))
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 24 * MIB + 4096
    sh("qemu-img check %s" % dst)
    sh("qemu-img compare -f raw -F qcow2 %s %s" % (disk, dst))
    # only the data was stored: the zeros are not in the file
    assert os.path.getsize(dst) < 4 * MIB


def test_stream_to_qcow2_odd_size(tmp_path):
    """qcow2 sizes are whole sectors (as qemu-img makes them): 100000
    bytes read back as 100352, the tail zeros."""
    data = os.urandom(100000)
    src = tmp_path / "s.raw"
    src.write_bytes(data)
    dst = tmp_path / "out.qcow2"
    p = copy_stdin(src, dst, "--json", "-O", "qcow2")
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["verified"] is True
    back = tmp_path / "back.raw"
    sh("qemu-img convert -O raw %s %s" % (dst, back))
    assert back.read_bytes() == data + bytes(352)


# ---- a stream to another host ----

HERE = os.path.dirname(os.path.abspath(__file__))


def rcopy(*args, **kw):
    return df("copy", "--rsh", os.path.join(HERE, "rsh_local.sh"),
              "--remote-path", DISKFERRY, *args, **kw)


@pytest.mark.parametrize("form", ["raw", "gzip", "tar", "qcow2"])
def test_stream_to_a_remote_host(tmp_path, form):
    """(was: "a stream on stdin cannot go to a remote host yet")"""
    disk = make_disk(tmp_path / "vm.raw", 16 * MIB + 512)
    data, spec, args = open(disk, "rb").read(), "-", []
    if form == "gzip":
        data = gzip.compress(data, 1)
    elif form == "tar":
        sh("tar -C %s -cSf %s vm.raw" % (tmp_path, tmp_path / "vm.tar"))
        data, spec = open(tmp_path / "vm.tar", "rb").read(), "tar:-//vm.raw"
    elif form == "qcow2":
        args = ["-O", "qcow2"]
    dst = tmp_path / "far" / "out.img"
    dst.parent.mkdir()
    p = rcopy("--json", *args, spec, "localhost:%s" % dst, input=data)
    assert p.returncode == 0, p.stderr.decode()
    rep = json.loads(p.stdout)
    assert rep["verified"] is True and rep["disk_size"] == 16 * MIB + 512
    assert rep["bytes_written"] == 2 * MIB      # the zeros did not travel
    if form == "qcow2":
        sh("qemu-img compare -f raw -F qcow2 %s %s" % (disk, dst))
    else:
        assert files_equal(disk, dst)
    assert os.listdir(dst.parent) == ["out.img"]


def test_stream_to_a_remote_device(tmp_path, loop):
    disk = make_disk(tmp_path / "vm.raw", 8 * MIB)
    back = tmp_path / "dev.img"
    back.write_bytes(bytes(16 * MIB))
    with loop(back) as dev:
        p = rcopy("-", "localhost:%s" % dev, input=open(disk, "rb").read())
        assert p.returncode == 0, p.stderr.decode()
        with open(back, "rb") as f:
            assert f.read(8 * MIB) == open(disk, "rb").read()
        # longer than the device: refused by the far side, named
        p = rcopy("--overwrite", "--yes", "-", "localhost:%s" % dev,
                  input=bytes(17 * MIB))
        assert p.returncode == 4, p.stderr.decode()
        assert "the stream is longer than the destination (16.0 MiB)" in \
            p.stderr.decode()


def test_stream_to_a_remote_file_with_data_needs_overwrite(tmp_path):
    dst = tmp_path / "old.img"
    dst.write_bytes(os.urandom(MIB))
    before = sha256_file(dst)
    p = rcopy("-", "localhost:%s" % dst, input=bytes(MIB))
    assert p.returncode == 3, p.stderr.decode()
    assert "give --overwrite" in p.stderr.decode()
    assert sha256_file(dst) == before
    p = rcopy("--resume", "-", "localhost:%s" % (tmp_path / "n.img"),
              input=bytes(MIB))
    assert p.returncode == 2, p.stderr.decode()
    assert "a stream on stdin cannot resume" in p.stderr.decode()


def test_refusal_does_not_wait_for_the_stream_to_end(tmp_path):
    """A refused stream whose producer keeps stdin open: the decompressor
    waiting on stdin is stopped, the refusal comes at once (no hang)."""
    disk = make_disk(tmp_path / "vm.raw")
    tgz = tmp_path / "vm.tgz"
    sh("tar -C %s -czf %s vm.raw" % (tmp_path, tgz))
    proc = subprocess.Popen([DISKFERRY, "copy", "-", str(tmp_path / "o")],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            proc.stdin.write(open(tgz, "rb").read()[:256 << 10])
            proc.stdin.flush()
        except BrokenPipeError:
            pass                        # it refused while we wrote
        rc = proc.wait(timeout=20)      # stdin still open
        err = proc.stderr.read()
        assert rc == 5, err
        assert b"is a tar archive" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    assert not (tmp_path / "o").exists()
