"""create, info and verify on raw images."""
import json
import os

from conftest import df, loop_device, write_at


def test_create_sparse_raw(tmp_path):
    dst = tmp_path / "new.img"
    p = df("create", "--size", "1G", dst)
    assert p.returncode == 0, p.stderr
    assert os.path.getsize(dst) == 1 << 30
    assert os.stat(dst).st_blocks == 0


def test_create_never_replaces(tmp_path):
    dst = tmp_path / "exists.img"
    dst.write_bytes(b"keep me")
    p = df("create", "--size", "1M", dst)
    assert p.returncode == 3
    assert b"refusing to create" in p.stderr
    assert b"give --overwrite" not in p.stderr
    assert dst.read_bytes() == b"keep me"


def test_create_under_dev_refused():
    p = df("create", "--size", "1M", "/dev/diskferry-nonexistent-test")
    assert p.returncode == 3
    assert not os.path.exists("/dev/diskferry-nonexistent-test")


def test_info_raw_sparse_json(tmp_path):
    img = tmp_path / "a.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    write_at(img, 10 << 20, os.urandom(1 << 20))
    p = df("info", "--json", img)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["format"] == "raw"
    assert r["virtual_size"] == 64 << 20
    assert r["data_bytes"] == 1 << 20
    assert r["hole_bytes"] == 63 << 20
    assert len(r["chain"]) == 1
    p = df("info", img)
    assert p.returncode == 0
    assert b"format: raw" in p.stdout
    assert b"virtual size: 64.0 MiB (67108864 bytes)" in p.stdout


def test_info_block_device(tmp_path):
    img = tmp_path / "dev.img"
    img.write_bytes(b"\0" * (4 << 20))
    with loop_device(img) as dev:
        p = df("info", "--json", dev)
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert r["virtual_size"] == 4 << 20
        assert r["data_bytes"] == 4 << 20      # devices report no holes


def test_verify_identical_and_different(tmp_path):
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    data = os.urandom(3 << 20)
    a.write_bytes(data)
    with open(b, "wb") as f:          # same content, sparse where zero
        f.write(data)
    p = df("verify", a, b)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"identical")
    # Bytes that surely differ from the random data under them.
    x = (1 << 20) + 4096 * 3
    write_at(b, x, bytes([data[x] ^ 0xff]))
    write_at(b, 2 << 20,
             bytes(v ^ 0xff for v in data[2 << 20:(2 << 20) + 10000]))
    p = df("verify", a, b)
    assert p.returncode == 1
    out = p.stdout.decode()
    assert "differ: 2 ranges, 16384 bytes" in out
    assert "offset 1060864, 4096 bytes" in out
    assert "offset 2097152, 12288 bytes" in out
    p = df("verify", "--json", a, b)
    r = json.loads(p.stdout)
    assert r["identical"] is False
    assert r["differ"][0] == {"offset": 1060864, "length": 4096}


def test_verify_zero_vs_hole(tmp_path):
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    a.write_bytes(b"\0" * (2 << 20))
    with open(b, "wb") as f:
        f.truncate(2 << 20)
    p = df("verify", a, b)
    assert p.returncode == 0
    write_at(b, 100, b"\1")
    p = df("verify", a, b)
    assert p.returncode == 1
    assert b"offset 0, 4096 bytes" in p.stdout


def test_verify_size_differs(tmp_path):
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    a.write_bytes(b"\0" * 8192)
    b.write_bytes(b"\0" * 4096)
    p = df("verify", a, b)
    assert p.returncode == 1
    assert b"sizes differ" in p.stdout


def test_verify_json_digest_spelled_as_copy(tmp_path):
    """One spelling of the digest in every report: verify's A is the
    source, B the destination (known only when they are identical)."""
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    a.write_bytes(os.urandom(1 << 20))
    p = df("copy", "--json", "--digest", "sha256", a, b)
    assert p.returncode == 0, p.stderr
    copied = json.loads(p.stdout)["digest"]
    p = df("verify", "--json", "--digest", "sha256", a, b)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert "digest_algorithm" not in r
    assert r["digest"] == copied
    assert r["digest"] == {"algorithm": "sha256", "covers": "all",
                           "source": copied["source"],
                           "destination": copied["source"]}
    write_at(b, 4096, bytes([a.read_bytes()[4096] ^ 0xff]))
    p = df("verify", "--json", a, b)
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert r["digest"]["algorithm"] == "xxh128"
    assert len(r["digest"]["source"]) == 32
    assert "destination" not in r["digest"]


def test_verify_job_qcow2_against_raw(tmp_path):
    """verify runs as a job (job_run, JOB_VERIFY): two local images of
    different formats, each opened as a source; differing ranges are
    listed and the exit code is 1."""
    a = tmp_path / "a.img"
    q = tmp_path / "a.qcow2"
    data = os.urandom(2 << 20)
    a.write_bytes(data)
    p = df("copy", "-O", "qcow2", a, q)
    assert p.returncode == 0, p.stderr
    p = df("verify", q, a)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"identical (xxh128 ")
    write_at(a, 8192, bytes([data[8192] ^ 0xff]))
    p = df("verify", q, a)
    assert p.returncode == 1, p.stderr
    assert p.stdout.decode().splitlines() == [
        "differ: 1 range, 4096 bytes", "  offset 8192, 4096 bytes"]
    p = df("verify", "--json", "-F", "raw", q, a)
    assert p.returncode == 1, p.stderr
    r = json.loads(p.stdout)
    assert r["a"] == str(q) and r["b"] == str(a)
    assert r["identical"] is False
    assert r["differ"] == [{"offset": 8192, "length": 4096}]


def test_verify_refuses_stream_and_remote(tmp_path):
    """A stream is not something verify compares, nor two disks both on
    other hosts (one on another host is: test_verify_remote.py): a
    usage error naming it (exit 2), not "cannot open"."""
    a = tmp_path / "a.img"
    a.write_bytes(b"\0" * 4096)
    p = df("verify", "-", a)
    assert p.returncode == 2
    assert p.stderr.decode().splitlines()[0] == (
        "diskferry: verify: -: verify compares two disks, not a stream")
    p = df("verify", "-", "somehost:disk.img")
    assert p.returncode == 2
    assert p.stderr.decode().splitlines()[0] == (
        "diskferry: verify: -: verify compares two disks, not a stream")
    p = df("verify", "otherhost:a.img", "somehost:disk.img")
    assert p.returncode == 2
    assert p.stderr.decode().splitlines()[0] == (
        "diskferry: verify: both A and B are on other hosts: run "
        "diskferry verify on one of them")
