"""NBD exports as endpoints (image/nbd.c): sources from qemu-nbd and
nbdkit, destinations on nbdkit, block status, multi-conn, the safety
rules of an export, a server that loses writes, and --salvage over
nbdkit's error filter.  Servers listen on unix sockets under tmp_path
and are always killed."""
import contextlib
import json
import os
import subprocess
import time

import pytest

from conftest import df, have, sh, qemu_raw, files_equal, sha256_file

pytestmark = pytest.mark.skipif(
    not (have("nbdkit") and have("qemu-nbd") and have("nbdcopy")),
    reason="needs nbdkit, qemu-nbd and nbdcopy")

MiB = 1 << 20


@contextlib.contextmanager
def server(argv, sock):
    """Run an NBD server in the foreground until the block ends (a socket
    left by a server killed before is removed first)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.02)
        assert os.path.exists(sock), p.stderr.read().decode()
        yield "nbd+unix:///?socket=%s" % sock
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def nbdkit(tmp_path, *args, name="k"):
    sock = str(tmp_path / (name + ".sock"))
    return server(["nbdkit", "-f", "-U", sock] + [str(a) for a in args],
                  sock)


def qemu_nbd(tmp_path, img, fmt, *extra, name="q"):
    sock = str(tmp_path / (name + ".sock"))
    return server(["qemu-nbd", "-k", sock, "-f", fmt] + list(extra) +
                  [str(img)], sock)


def sparse_image(path, size=64 * MiB, every=8 * MiB, data=MiB):
    """Random data runs at every `every` bytes, holes between."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, every):
            f.seek(off)
            f.write(os.urandom(data))
    return path


def copy_json(*args):
    p = df("copy", "--json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_source_qemu_nbd_identical_block_status(tmp_path, fmt):
    raw = sparse_image(tmp_path / "src.raw")
    img = raw
    if fmt == "qcow2":
        img = tmp_path / "src.qcow2"
        sh(["qemu-img", "convert", "-O", "qcow2", str(raw), str(img)])
    out = tmp_path / "out.raw"
    with qemu_nbd(tmp_path, img, fmt, "-r") as uri:
        rep = copy_json(uri, out)
    assert files_equal(out, raw)
    assert rep["verified"] and rep["source_format"] == "nbd"
    # 8 data runs of 1 MiB: block status honoured (not 64 MiB read)
    assert 8 * MiB <= rep["bytes_read"] <= 10 * MiB, rep


def test_verify_nbd_against_local(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    # -r: nbdkit's file plugin holds a read-only export open read-only
    with nbdkit(tmp_path, "-r", "file", raw) as uri:
        p = df("verify", uri, raw)
        assert p.returncode == 0, p.stderr
        other = tmp_path / "other.raw"
        sh(["cp", str(raw), str(other)])
        with open(other, "r+b") as f:
            f.seek(5 * MiB)
            f.write(b"x")
        p = df("verify", other, uri)
        assert p.returncode == 1, p.stderr


@pytest.mark.parametrize("plugin", ["memory", "file", "sparse-random"])
def test_source_nbdkit_identical(tmp_path, plugin):
    raw = sparse_image(tmp_path / "src.raw")
    if plugin == "memory":
        args = ["memory", "size=64M"]
    elif plugin == "file":
        args = ["file", raw]
    else:
        args = ["sparse-random", "size=64M", "seed=7"]
    out = tmp_path / "out.raw"
    with nbdkit(tmp_path, *args) as uri:
        if plugin == "memory":
            sh(["nbdcopy", str(raw), uri])
        rep = copy_json(uri, out)
        ref = tmp_path / "ref.raw"
        sh(["nbdcopy", uri, str(ref)])
    assert files_equal(out, ref)
    if plugin != "sparse-random":
        assert files_equal(out, raw)
        assert rep["bytes_read"] <= 10 * MiB, rep
    else:
        # sparse-random: about 1/16 of it allocated (its default)
        assert rep["bytes_read"] < 32 * MiB, rep


def test_multi_conn_used_when_offered(tmp_path):
    raw = sparse_image(tmp_path / "src.raw", size=256 * MiB,
                       every=2 * MiB, data=2 * MiB)
    log = tmp_path / "log.txt"
    out = tmp_path / "out.raw"
    with nbdkit(tmp_path, "--filter=log", "file", raw,
                "logfile=%s" % log) as uri:
        copy_json("--threads", "4", uri, out)
    assert files_equal(out, raw)
    conns = {w for line in log.read_text().splitlines() if " Connect " in line
             for w in line.split() if w.startswith("connection=")}
    assert len(conns) >= 2, conns


def test_single_connection_server(tmp_path):
    """qemu-nbd without -t takes one client, offers no multi-conn."""
    raw = sparse_image(tmp_path / "src.raw", size=128 * MiB,
                       every=2 * MiB, data=2 * MiB)
    out = tmp_path / "out.raw"
    with qemu_nbd(tmp_path, raw, "raw", "-r") as uri:
        copy_json("--threads", "4", uri, out)
    assert files_equal(out, raw)


def test_destination_memory_readback(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "memory", "size=80M") as uri:
        rep = copy_json(raw, uri)
        assert rep["verified"] and rep["destination_format"] == "nbd"
        back = tmp_path / "back.raw"
        sh(["nbdcopy", uri, str(back)])
    with open(back, "rb") as b, open(raw, "rb") as r:
        assert b.read(64 * MiB) == r.read()
        assert b.read() == b"\0" * 16 * MiB


def test_destination_non_empty_needs_overwrite(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    old = tmp_path / "old.raw"
    with open(old, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(40 * MiB + 12345)
        f.write(b"old data")
    with nbdkit(tmp_path, "memory", "size=64M") as uri:
        sh(["nbdcopy", str(old), uri])
        p = df("copy", raw, uri)
        assert p.returncode == 3, p.stderr
        assert "refusing to write" in p.stderr.decode()
        back = tmp_path / "back.raw"
        sh(["nbdcopy", uri, str(back)])
        assert files_equal(back, old)
        copy_json("--overwrite", raw, uri)
        sh(["nbdcopy", uri, str(back)])
        assert files_equal(back, raw)


def test_destination_data_between_samples_guard(tmp_path):
    """Data the sampling misses is found by the guard, rolled back."""
    raw = sparse_image(tmp_path / "src.raw")
    old = tmp_path / "old.raw"
    with open(old, "wb") as f:
        f.truncate(64 * MiB)
        f.seek(1 * MiB + 8 * MiB + 512 * 1024)
        f.write(b"old data")
    with nbdkit(tmp_path, "memory", "size=64M") as uri:
        sh(["nbdcopy", str(old), uri])
        p = df("copy", "--threads", "1", raw, uri)
        assert p.returncode == 3, p.stderr


def test_destination_too_small_refused(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "memory", "size=32M") as uri:
        p = df("copy", raw, uri)
    assert p.returncode == 3, p.stderr
    assert "refusing to write: 32.0 MiB is smaller than the source " \
        "(64.0 MiB)" in p.stderr.decode()


def test_destination_losing_writes_fails_verification(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "null", "size=64M") as uri:
        p = df("copy", raw, uri)
    assert p.returncode == 7, p.stderr


def test_destination_read_only_export_refused(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "-r", "memory", "size=64M") as uri:
        p = df("copy", raw, uri)
    assert p.returncode == 3, p.stderr
    assert "read-only" in p.stderr.decode()


BAD = 5 * MiB + 8192            # one unreadable 4 KiB sector


def bad_sector_server(tmp_path, src, size):
    """nbdkit's sh plugin over src: reads touching [BAD, BAD+4096) fail
    with EIO (the error filter fails whole requests at random)."""
    script = tmp_path / "bad.sh"
    script.write_text("""#!/bin/sh
case "$1" in
  get_size) echo %d ;;
  can_write) exit 3 ;;
  thread_model) echo parallel ;;
  pread)
    if [ "$4" -lt %d ] && [ $(($4 + $3)) -gt %d ]; then
      echo "EIO bad sector" >&2; exit 1
    fi
    dd if=%s iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none ;;
  *) exit 2 ;;
esac
""" % (size, BAD + 4096, BAD, src))
    script.chmod(0o755)
    return nbdkit(tmp_path, "sh", script, name="bad")


def test_read_error_without_salvage_leaves_nothing(tmp_path):
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(8 * MiB))
    out = tmp_path / "out.raw"
    with bad_sector_server(tmp_path, src, 8 * MiB) as uri:
        p = df("copy", uri, out)
    assert p.returncode == 4, p.stderr
    assert "read failed" in p.stderr.decode()
    assert not out.exists()
    assert [f for f in os.listdir(tmp_path) if "diskferry" in f] == []


def test_salvage_zeros_the_bad_sector_lists_it_exit_4(tmp_path):
    data = bytearray(os.urandom(8 * MiB))
    src = tmp_path / "src.raw"
    src.write_bytes(data)
    out = tmp_path / "out.raw"
    with bad_sector_server(tmp_path, src, 8 * MiB) as uri:
        p = df("copy", "--salvage", "--json", uri, out)
    assert p.returncode == 4, p.stderr
    rep = json.loads(p.stdout)
    assert rep["salvaged"] == [{"offset": BAD, "length": 4096}]
    assert rep["verified"]      # against what was written: the zeros
    err = p.stderr.decode()
    assert "1 unreadable range (4.0 KiB) written as zeros (--salvage)" in err
    assert "unreadable, written as zeros: offset %d, 4096 bytes" % BAD in err
    data[BAD:BAD + 4096] = bytes(4096)
    assert out.read_bytes() == bytes(data)


def test_salvage_needs_a_file_or_export_source(tmp_path):
    out = tmp_path / "out.raw"
    p = df("copy", "--salvage", "-", out, input=b"x" * 4096)
    assert p.returncode == 2, p.stderr
    assert "--salvage applies to a file, device or NBD export as SRC" in \
        p.stderr.decode()


def test_export_to_export_and_verify(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "-r", "file", raw, name="a") as a, \
            nbdkit(tmp_path, "memory", "size=64M", name="b") as b:
        rep = copy_json(a, b)
        assert rep["bytes_read"] <= 10 * MiB, rep
        p = df("verify", a, b)
        assert p.returncode == 0, p.stderr
        back = tmp_path / "back.raw"
        sh(["nbdcopy", b, str(back)])
    assert files_equal(back, raw)


def test_destination_dry_run_and_output_format(tmp_path):
    raw = sparse_image(tmp_path / "src.raw")
    with nbdkit(tmp_path, "memory", "size=64M") as uri:
        p = df("copy", "-O", "qcow2", raw, uri)
        assert p.returncode == 2, p.stderr
        assert "an NBD export is written raw: -O qcow2 needs a file" in \
            p.stderr.decode()
        p = df("copy", "--dry-run", raw, uri)
        assert p.returncode == 0, p.stderr
        back = tmp_path / "back.raw"
        sh(["nbdcopy", uri, str(back)])
    assert back.read_bytes() == bytes(64 * MiB)


def test_nbd_and_remote_host_refused(tmp_path):
    p = df("copy", "nbd://localhost/x", "host:/tmp/x")
    assert p.returncode == 2, p.stderr
    p = df("copy", "host:/tmp/x", "nbd://localhost/x")
    assert p.returncode == 2, p.stderr


def test_one_connection_keeps_requests_in_flight(tmp_path):
    """Without multi-conn the reads of the workers still overlap on the
    one connection (libnbd's aio calls), not one at a time."""
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(32 * MiB))
    log = tmp_path / "log.txt"
    out = tmp_path / "out.raw"
    with nbdkit(tmp_path, "-r", "--filter=log", "--filter=multi-conn",
                "--filter=delay", "file", src, "rdelay=5ms",
                "multi-conn-mode=disable", "logfile=%s" % log) as uri:
        copy_json("--threads", "4", uri, out)
    assert files_equal(out, src)
    lines = log.read_text().splitlines()
    assert sum(" Connect " in line for line in lines) == 1
    inflight = most = 0
    for line in lines:
        if " Read id=" in line:
            inflight += 1
        elif " ...Read id=" in line:
            inflight -= 1
        most = max(most, inflight)
    assert most >= 2, most


def test_tls_psk_export(tmp_path):
    """nbds+unix:// with a PSK file named in the URI; the same export
    without TLS is refused by the server (a network error)."""
    raw = sparse_image(tmp_path / "src.raw")
    psk = tmp_path / "keys.psk"
    psk.write_text("alice:%s\n" % os.urandom(32).hex())
    psk.chmod(0o600)
    out = tmp_path / "out.raw"
    sock = str(tmp_path / "t.sock")
    with server(["nbdkit", "-f", "-r", "-U", sock, "--tls=require",
                 "--tls-psk=%s" % psk, "file", str(raw)], sock):
        uri = "nbds+unix://alice@/?socket=%s&tls-psk-file=%s" % (sock, psk)
        rep = copy_json(uri, out)
        assert rep["verified"]
        p = df("copy", "nbd+unix:///?socket=%s" % sock,
               tmp_path / "plain.raw")
        assert p.returncode == 6, p.stderr
    assert files_equal(out, raw)


def test_writes_and_write_zeroes_share_one_connection(tmp_path):
    """qemu-nbd without multi-conn: writes, write-zeroes and block status
    all go through the one aio driver of its connection.  A synchronous
    write-zeroes beside the driver once moved libnbd's state under it
    ("external event 1 is invalid in state READY", about one copy in
    two)."""
    raw = sparse_image(tmp_path / "src.raw", every=MiB, data=512 * 1024)
    dst = tmp_path / "dst.raw"
    dst.write_bytes(os.urandom(64 * MiB))
    with qemu_nbd(tmp_path, dst, "raw", "-t") as uri:
        for _ in range(5):
            rep = copy_json("--overwrite", "--threads", "4", raw, uri)
            assert rep["verified"]
    assert files_equal(dst, raw)


def test_sync_into_an_export(tmp_path):
    """An export as sync's DST: compared the first time, then the state
    record of its URI is the base (proved on its leaves) and only the
    changed leaves are written; one connection per sync (qemu-nbd
    without -t serves one client)."""
    src = sparse_image(tmp_path / "src.raw")
    dst = tmp_path / "dst.raw"
    with open(dst, "wb") as f:
        f.truncate(64 * MiB)
    with qemu_nbd(tmp_path, dst, "raw", name="a") as uri:
        p = df("sync", "--json", src, uri)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["sync"]["changes"] == "compare"
    assert r["destination_format"] == "nbd" and r["verified"]
    assert files_equal(dst, src)
    with open(src, "r+b") as f:
        for off in (5 * MiB, 33 * MiB + 4096):
            f.seek(off)
            f.write(os.urandom(4096))
    with qemu_nbd(tmp_path, dst, "raw", name="a") as uri:
        p = df("sync", "--json", src, uri)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["sync"]["changes"] == "record"
    assert r["sync"]["changed_bytes"] == 128 * 1024
    assert r["bytes_written"] == 128 * 1024
    assert files_equal(dst, src)


def test_sync_into_an_export_that_changed_behind_the_record(tmp_path):
    """The record names the export by URI only: another disk served at
    the same URI fails the proof on its leaves, and nothing is
    written."""
    src = sparse_image(tmp_path / "src.raw")
    dst = tmp_path / "dst.raw"
    with open(dst, "wb") as f:
        f.truncate(64 * MiB)
    with qemu_nbd(tmp_path, dst, "raw", "-t", name="a") as uri:
        assert df("sync", src, uri).returncode == 0
        other = tmp_path / "other.raw"
        other.write_bytes(os.urandom(64 * MiB))
    before = sha256_file(other)
    with open(src, "r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(4096))
    with qemu_nbd(tmp_path, other, "raw", "-t", name="a") as uri:
        p = df("sync", src, uri)
    assert p.returncode == 3, p.stderr
    assert "refusing to sync" in p.stderr.decode()
    assert sha256_file(other) == before
