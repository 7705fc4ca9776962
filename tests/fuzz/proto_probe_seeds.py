#!/usr/bin/env python3
"""Seeds for fuzz_proto (the bytes serve reads) that exercise the link
probe (proto/probe.h): PROBE echo / down / up with PROBE_DATA, then DONE
or a job; and broken ones (a zero time limit, empty PROBE_DATA, a probe
without the feature).  Writes tests/fuzz/corpus/proto/probe_*.

    python3 tests/fuzz/proto_probe_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "proto")

HELLO, OPEN_SRC, DONE, TCP_REQ = 1, 4, 22, 19
PROBE, PROBE_DATA, PROBE_DONE = 37, 38, 39
ECHO, UP, DOWN = 0, 1, 2
FEAT_ALL = 0x7ffff
FEAT_PROBE = 1 << 18


def frame(t, payload=b""):
    return struct.pack("<IB", len(payload), t) + payload


def s(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b


def hello(features=FEAT_ALL):
    return frame(HELLO, struct.pack("<IHHII", 0x59524644, 1, 1, features,
                                    16 * 1024 * 1024 + 4096)
                 + s("diskferry 0.1"))


def probe(step, d, nbytes, ms):
    return frame(PROBE, struct.pack("<IBQI", step, d, nbytes, ms))


def data(step, n):
    return frame(PROBE_DATA, struct.pack("<I", step) + bytes(
        (i * 131 + 7) & 0xff for i in range(n)))


SEEDS = {
    "probe_echo": hello() + probe(1, ECHO, 0, 1000) + probe(2, ECHO, 0, 1)
    + frame(DONE, struct.pack("<I", 0)),
    "probe_down": hello() + probe(1, DOWN, 8192, 5)
    + frame(DONE, struct.pack("<I", 0)),
    "probe_up": hello() + probe(1, UP, 300, 20) + data(1, 100)
    + data(1, 200) + probe(2, UP, 100, 5) + data(1, 50) + data(2, 100)
    + frame(DONE, struct.pack("<I", 0)),
    "probe_then_open": hello() + probe(1, ECHO, 0, 10) + data(1, 16)
    + frame(OPEN_SRC, struct.pack("<I", 0) + s("") + s("a.img"))
    + frame(DONE, struct.pack("<I", 0)),
    "probe_tcp_refused": hello() + frame(TCP_REQ, struct.pack("<I", 2)),
    "probe_eof": hello() + probe(1, UP, 1 << 40, 20) + data(1, 64),
    "probe_bad_ms": hello() + probe(1, ECHO, 0, 0),
    "probe_bad_dir": hello() + probe(1, 7, 0, 10),
    "probe_empty_data": hello() + probe(1, UP, 10, 10)
    + frame(PROBE_DATA, struct.pack("<I", 1)),
    "probe_done_from_client": hello() + probe(1, ECHO, 0, 10)
    + frame(PROBE_DONE, struct.pack("<IQQQ", 1, 0, 0, 0)),
    "probe_without_feature": hello(FEAT_ALL & ~FEAT_PROBE)
    + probe(1, ECHO, 0, 10),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, blob in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(blob)
