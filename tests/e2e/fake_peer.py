#!/usr/bin/python3
"""fake_peer.py MODE [rsh-args...]: a broken or hostile "remote" for
--rsh: it ignores the host and command and speaks (or fails to speak)
the protocol on stdin/stdout.

MODE:
  garbage     bytes that are no frames at all
  huge        a frame header announcing 2 GiB
  truncated   a valid HELLO, then half a frame, then exit
  version     a HELLO for protocol versions 9..12
  badwrite    a remote source whose first WRITE does not decompress
  oldsrc      a server of before MSG_FEAT_SRC_CHECK: answers OPEN_SRC with
              an ERROR that names the flags it received
  notree      a server of before MSG_FEAT_TREE: a 1 MiB source, no tree
  badbits     a 1 MiB source whose TREE_BITS answer nodes not asked about
  manybits    a 1 MiB source whose TREE_BITS answer more nodes than asked
"""
import os
import struct
import sys


def frame(t, p):
    return struct.pack("<IB", len(p), t) + p


def s(x):
    x = x.encode()
    return struct.pack("<H", len(x)) + x


def hello(vmin=1, vmax=1, features=0x7F):
    return frame(1, struct.pack("<IHHII", 0x59524644, vmin, vmax, features,
                                (16 << 20) + 4096) + s("fake 0.0"))


def read_frame():
    hdr = sys.stdin.buffer.read(5)
    if len(hdr) < 5:
        sys.exit(0)
    n, t = struct.unpack("<IB", hdr)
    return t, sys.stdin.buffer.read(n)


def main():
    mode = sys.argv[1]
    out = sys.stdout.buffer
    if mode == "garbage":
        out.write(b"Welcome to host!\n" + os.urandom(64))
    elif mode == "huge":
        out.write(struct.pack("<IB", 0x80000000, 9) + b"\0" * 32)
    elif mode == "truncated":
        read_frame()
        out.write(hello())
        out.write(frame(5, b"\0" * 40)[:20])
        out.flush()
        sys.exit(0)
    elif mode == "version":
        read_frame()
        out.write(hello(9, 12))
    elif mode == "badwrite":
        read_frame()
        out.write(hello())
        out.flush()
        read_frame()                                    # OPEN_SRC
        out.write(frame(5, struct.pack("<IQ", 0, 1 << 20) + s("raw") +
                        s("/fake")))
        out.flush()
        read_frame()                                    # READ_STREAM
        out.write(frame(9, struct.pack("<QQBI", 0, 0, 1, 65536) +
                        b"\x28\xb5\x2f\xfd" + os.urandom(100)))
    elif mode == "oldsrc":
        read_frame()
        out.write(hello())
        out.flush()
        t, p = read_frame()                             # OPEN_SRC
        flags = struct.unpack("<I", p[:4])[0] if t == 4 else -1
        out.write(frame(2, struct.pack("<BqI", 6, -1, 0) + s("/fake") +
                        s("old server got open flags %d" % flags)))
    elif mode in ("notree", "badbits", "manybits"):
        read_frame()
        out.write(hello(features=0x7F if mode == "notree" else 0xFFFF))
        out.flush()
        read_frame()                                    # OPEN_SRC
        out.write(frame(5, struct.pack("<IQ", 0, 1 << 20) + s("raw") +
                        s("/fake")))
        out.flush()
        if mode != "notree":
            t, p = read_frame()                         # TREE_REQ
            out.write(frame(31, struct.pack("<QBB", 1 << 20, p[0],
                                             16 if p[0] == 1 else 32) +
                            b"\1" * (16 if p[0] == 1 else 32) +
                            struct.pack("<Q", 0)))
            out.flush()
            t, p = read_frame()                         # TREE_HASHES
            first, n = struct.unpack("<QI", p[:12])
            if mode == "badbits":
                first += 1
            else:
                n += 8
            out.write(frame(33, struct.pack("<QI", first, n) +
                            b"\0" * ((n + 7) // 8)))
    out.flush()
    sys.stdin.buffer.read()


if __name__ == "__main__":
    main()
