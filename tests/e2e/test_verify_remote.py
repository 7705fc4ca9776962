"""verify with one disk on another host (through the rsh shim and a real
sshd on 127.0.0.1): serve builds that disk's hash tree, this side its
own, and only hashes cross; changed 64 KiB blocks found exactly, the
hash traffic growing with the change; hostile peers on either end."""
import json
import os
import random
import shutil
import struct

import pytest

from conftest import DISKFERRY, df
from test_remote import FAKE, PY, RSH, rdf, sshd  # noqa: F401 (fixture)
from test_serve import HELLO, Serve, error_text, frame, s

LEAF = 64 << 10
SIZE = 64 << 20
NLEAVES = SIZE // LEAF


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("vr") / "a.img"
    with open(p, "wb") as f:
        f.write(random.Random(16).randbytes(SIZE))
    return p


def changed_copy(image, dst, pct, seed=0):
    """A copy with pct % of its 64 KiB leaves changed (a few bytes each,
    at random places); returns the changed leaves, sorted."""
    shutil.copy(image, dst)
    rnd = random.Random(seed)
    k = max(1, round(NLEAVES * pct / 100))
    leaves = sorted(rnd.sample(range(NLEAVES), k))
    with open(dst, "r+b") as f:
        for i in leaves:
            off = i * LEAF + rnd.randrange(LEAF - 64)
            f.seek(off)
            old = f.read(8)
            f.seek(off)
            f.write(bytes(b ^ 0x5A for b in old))
    return leaves


def ranges(leaves):
    """Leaves as merged byte ranges, as verify lists them."""
    out = []
    for i in leaves:
        if out and out[-1]["offset"] + out[-1]["length"] == i * LEAF:
            out[-1]["length"] += LEAF
        else:
            out.append({"offset": i * LEAF, "length": LEAF})
    return out


def vjson(p):
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("pct", [0.1, 1, 10])
@pytest.mark.parametrize("side", ["remote B", "remote A"])
def test_changed_blocks_found_over_rsh(tmp_path, image, pct, side):
    b = tmp_path / "b.img"
    leaves = changed_copy(image, b, pct, seed=int(pct * 10))
    if side == "remote B":
        p = rdf("verify", "--json", image, "localhost:%s" % b)
    else:
        p = rdf("verify", "--json", "localhost:%s" % image, b)
    assert p.returncode == 1, p.stderr
    r = vjson(p)
    assert r["identical"] is False
    assert r["differ"] == ranges(leaves)
    sent, got = r["hash_bytes_sent"], r["hash_bytes_received"]
    assert 0 < sent <= SIZE // 1000 + 64 * len(leaves), (sent, leaves)
    assert got <= sent // 16 + 8 * r["rounds"]
    assert r["rounds"] >= 1
    # the figures for the report
    print("pct=%s changed_leaves=%d hash_bytes_sent=%d received=%d "
          "rounds=%d" % (pct, len(leaves), sent, got, r["rounds"]))


def test_hash_traffic_grows_with_the_change(tmp_path, image):
    sent = []
    for pct in (0.1, 1, 10):
        b = tmp_path / ("b%s.img" % pct)
        changed_copy(image, b, pct)
        sent.append(vjson(rdf("verify", "--json", image,
                              "localhost:%s" % b))["hash_bytes_sent"])
        os.unlink(b)
    assert sent[0] < sent[1] < sent[2], sent


@pytest.mark.parametrize("digest", ["xxh128", "sha256"])
def test_identical(tmp_path, image, digest):
    b = tmp_path / "b.img"
    shutil.copy(image, b)
    p = rdf("verify", "--json", "--digest", digest, image,
            "localhost:%s" % b)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["identical"] is True and r["differ"] == []
    # the roots agree: one hash sent, one byte of bits back
    assert r["rounds"] == 1
    assert r["hash_bytes_sent"] == (16 if digest == "xxh128" else 32)
    assert r["hash_bytes_received"] == 1
    # the same digest as a local verify prints
    local = json.loads(df("verify", "--json", "--digest", digest, image,
                          b).stdout)
    assert r["digest"] == local["digest"]
    p = rdf("verify", image, "localhost:%s" % b)
    assert p.returncode == 0 and p.stdout.startswith(b"identical (")


def test_sizes_differ(tmp_path):
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    a.write_bytes(b"\0" * 8192)
    b.write_bytes(b"\0" * 4096)
    p = rdf("verify", a, "localhost:%s" % b)
    assert p.returncode == 1, p.stderr
    assert ("sizes differ: %s is 8192 bytes, localhost:%s is 4096 bytes"
            % (a, b)).encode() in p.stdout


def test_small_and_odd_sizes(tmp_path):
    """A disk of a few leaves and a partial last one."""
    for size in (1, 65536 + 17, 5 * 65536 + 3):
        a = tmp_path / "a.img"
        b = tmp_path / "b.img"
        data = os.urandom(size)
        a.write_bytes(data)
        b.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        r = vjson(rdf("verify", "--json", "localhost:%s" % a, b))
        last = (size - 1) // LEAF * LEAF
        assert r["differ"] == [{"offset": last, "length": size - last}]


@pytest.mark.parametrize("pct", [0.1, 1, 10])
def test_changed_blocks_found_over_sshd(tmp_path, image, sshd, pct):
    b = tmp_path / "remote dir" / "b.img"
    b.parent.mkdir()
    leaves = changed_copy(image, b, pct, seed=7)
    p = rdf("verify", "--json", image, "root@127.0.0.1:%s" % b, rsh=sshd)
    assert p.returncode == 1, p.stderr
    r = vjson(p)
    assert r["differ"] == ranges(leaves)
    assert r["hash_bytes_sent"] <= SIZE // 1000 + 64 * len(leaves)
    shutil.copy(image, b)
    p = rdf("verify", "127.0.0.1:%s" % b, image, rsh=sshd)
    assert p.returncode == 0, p.stderr


def test_missing_remote_disk(tmp_path, image):
    p = rdf("verify", image, "localhost:%s" % (tmp_path / "nope.img"))
    assert p.returncode == 4, p.stderr
    assert b"nope.img" in p.stderr


@pytest.mark.parametrize("mode,msg", [
    ("notree", b"the remote diskferry is too old for a hash-tree "
               b"comparison"),
    ("badbits", b"protocol error: TREE_BITS for nodes [1, +1)"),
    ("manybits", b"protocol error: TREE_BITS for nodes [0, +9)"),
])
def test_hostile_remote(tmp_path, mode, msg):
    a = tmp_path / "a.img"
    a.write_bytes(os.urandom(1 << 20))
    p = rdf("verify", a, "localhost:/x", rsh="%s %s %s" % (PY, FAKE, mode))
    assert p.returncode == 6, p.stderr
    assert msg in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr


# ---- serve spoken to directly: a hostile client ----

HELLO_TREE = frame(1, struct.pack("<IHHII", 0x59524644, 1, 1, 0xFFFF,
                                  (16 << 20) + 4096) + s("pytest"))


def open_src(sv, path, hello=HELLO_TREE):
    sv.send(hello)
    assert sv.recv()[0] == 1
    sv.send(frame(4, struct.pack("<I", 0) + s("raw") + s(str(path))))
    t, body = sv.recv()
    assert t == 5, body


def tree_req(sv, alg=1):
    sv.send(frame(30, struct.pack("<BB", alg, 0)))
    t, body = sv.recv()
    while t == 23:                      # KEEPALIVE
        t, body = sv.recv()
    assert t == 31, body
    return body


def hashes(first, hl, data):
    n = len(data) // hl
    return frame(32, struct.pack("<QI", first, n) + data)


@pytest.mark.parametrize("attack,msg", [
    ("before", "TREE_HASHES before TREE_REQ"),
    ("order", "TREE_HASHES for nodes [1, +1)"),
    ("toomany", "TREE_HASHES for nodes [0, +2)"),
    ("hlen", "TREE_HASHES of 32-byte hashes"),
    ("nofeature", "TREE_REQ without the feature"),
    ("after", "TREE_HASHES after the walk ended"),
])
def test_hostile_client(tmp_path, attack, msg):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(3 * LEAF))
    sv = Serve()
    try:
        open_src(sv, img, HELLO if attack == "nofeature" else HELLO_TREE)
        if attack == "before":
            sv.send(hashes(0, 16, b"\0" * 16))
        elif attack == "nofeature":
            sv.send(frame(30, struct.pack("<BB", 1, 0)))
        else:
            tree_req(sv)
            if attack == "order":
                sv.send(hashes(1, 16, b"\0" * 16))
            elif attack == "toomany":
                sv.send(hashes(0, 16, b"\0" * 32))
            elif attack == "hlen":
                sv.send(hashes(0, 32, b"\0" * 32))
            else:
                # 3 leaves: the root differs, then its 3 leaves do (the
                # block level): the walk is over, one more is too many
                sv.send(hashes(0, 16, b"\0" * 16))
                t, body = sv.recv()
                assert t == 33 and body[12:] == b"\1"
                sv.send(hashes(0, 16, b"\0" * 48))
                t, body = sv.recv()
                assert t == 33 and body[12:] == b"\7"
                sv.send(hashes(0, 16, b"\0" * 16))
        t, body = sv.recv()
        while t == 23:
            t, body = sv.recv()
        assert t == 2, body
        cat, _what, text = error_text(body)
        assert cat == 6 and msg in text, text
    finally:
        rc = sv.close()
    assert rc == 6      # (86: a leak under ASan: the tree freed on this path)


def test_tree_of_an_existing_destination(tmp_path, image):
    """TREE_REQ in a session opened with OPEN_DST on an existing file:
    the tree of the destination as it is, before anything is written."""
    b = tmp_path / "b.img"
    shutil.copy(image, b)
    local = json.loads(df("verify", "--json", image, b).stdout)
    sv = Serve()
    try:
        sv.send(HELLO_TREE)
        assert sv.recv()[0] == 1
        sv.send(frame(3, struct.pack("<IQQ", 1, SIZE, 0) + s("raw") +
                      s(str(b))))               # OPEN_OVERWRITE
        t, body = sv.recv()
        assert t == 5, body
        body = tree_req(sv)
        size, alg, n = struct.unpack("<QBB", body[:10])
        assert size == SIZE and alg == 1 and n == 16
        assert body[10:26].hex() == local["digest"]["source"]
        sv.send(frame(22, struct.pack("<I", 0)))    # DONE, nothing written
        while True:
            hdr = sv.p.stdout.read(5)
            if len(hdr) < 5:
                break
            sv.p.stdout.read(struct.unpack("<IB", hdr)[0])
    finally:
        assert sv.close() == 0
    assert open(b, "rb").read() == open(image, "rb").read()
