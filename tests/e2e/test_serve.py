"""diskferry serve spoken to directly (a Python client on its stdin and
stdout): the handshake, OPEN_SRC + MAP_REQ, read confinement, protocol
errors answered with an ERROR message, and a clean end."""
import os
import struct
import subprocess

from conftest import DISKFERRY


def frame(t, p):
    return struct.pack("<IB", len(p), t) + p


def s(x):
    x = x.encode()
    return struct.pack("<H", len(x)) + x


HELLO = frame(1, struct.pack("<IHHII", 0x59524644, 1, 1, 0x7F,
                             (16 << 20) + 4096) + s("pytest"))


class Serve:
    def __init__(self, *args):
        self.p = subprocess.Popen([DISKFERRY, "serve"] + list(args),
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def recv(self):
        hdr = self.p.stdout.read(5)
        assert len(hdr) == 5, self.p.stderr.read()
        n, t = struct.unpack("<IB", hdr)
        return t, self.p.stdout.read(n)

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


def error_text(body):
    cat, _off, _errno = struct.unpack("<BqI", body[:13])
    n = struct.unpack("<H", body[13:15])[0]
    what = body[15:15 + n].decode()
    rest = body[15 + n:]
    m = struct.unpack("<H", rest[:2])[0]
    return cat, what, rest[2:2 + m].decode()


def test_open_src_and_map(tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(os.urandom(1 << 20))
    sv = Serve("--root", str(tmp_path))
    sv.send(HELLO)
    t, body = sv.recv()
    assert t == 1 and body[:4] == b"DFRY"
    sv.send(frame(4, struct.pack("<I", 0) + s("") + s("disk.img")))
    t, body = sv.recv()
    assert t == 5, body
    size = struct.unpack("<Q", body[4:12])[0]
    assert size == 8 << 20
    sv.send(frame(6, struct.pack("<QQ", 0, size)))
    t, body = sv.recv()
    assert t == 7
    n = struct.unpack("<I", body[:4])[0]
    ext = [struct.unpack("<QQB", body[4 + 17 * i:21 + 17 * i])
           for i in range(n)]
    data = [(o, l) for o, l, st in ext if st == 0]
    assert (1 << 20, 1 << 20) in data or any(
        o <= 1 << 20 and o + l >= 2 << 20 for o, l in data)
    assert sum(l for _, l, _ in ext) == size
    # a map request past the end is a protocol error, reported
    sv.send(frame(6, struct.pack("<QQ", size, 1)))
    t, body = sv.recv()
    assert t == 2
    cat, _what, msg = error_text(body)
    assert cat == 6 and "outside the source" in msg
    assert sv.close() == 6


def test_read_outside_root_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.img").write_bytes(b"s" * 4096)
    sv = Serve("--root", str(tmp_path / "root"))
    sv.send(HELLO)
    sv.recv()
    sv.send(frame(4, struct.pack("<I", 0) + s("") + s("../secret.img")))
    t, body = sv.recv()
    assert t == 2
    cat, what, msg = error_text(body)
    assert cat == 3 and what == "../secret.img"
    assert "outside the served root" in msg
    assert sv.close() == 3


def test_garbage_answered_and_closed(tmp_path):
    sv = Serve()
    sv.send(b"GET / HTTP/1.1\r\n\r\n")
    t, body = sv.recv()
    assert t == 2
    cat, _what, msg = error_text(body)
    assert cat == 6 and "protocol error" in msg
    assert sv.close() == 6


def test_serve_refuses_a_terminal():
    p = subprocess.run(["script", "-qec", "%s serve" % DISKFERRY,
                        "/dev/null"], capture_output=True, timeout=30)
    assert p.returncode == 2 or b"not by hand" in p.stdout + p.stderr
