#!/usr/bin/python3
"""Write the seed corpus of fuzz_lvm_thin (tests/fuzz/corpus/lvm_thin/):
what thin_delta (thin-provisioning-tools) printed for pools built by
thin_restore, and broken variants of it.  Thin ids 1 and 2, blocks of
128 sectors, at most 1001 blocks: fuzz_lvm_thin.c's device.

    /usr/bin/python3 tests/fuzz/lvm_thin_seeds.py
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import thingen as tg  # noqa: E402

OUT = os.path.join(HERE, "corpus", "lvm_thin")

POOL = {
    1: {**{o: o for o in range(10)}, 20: 20, 30: 30, 50: 50, 51: 51},
    2: {**{o: o for o in range(4)}, 4: 100, 5: 101,
        **{o: o for o in range(6, 10)}, 20: 20,
        **{o: 200 + o for o in range(40, 45)}, 50: 300, 51: 301, 52: 302},
}


def real(tmp):
    """name -> thin_delta's output."""
    out = {}
    pools = {
        "kinds": POOL,
        "reversed": {1: POOL[2], 2: POOL[1]},
        "same": {1: POOL[1], 2: dict(POOL[1])},
        "empty": {1: {}, 2: {}},
        "left-only": {1: {0: 5, 1: 6, 1000: 7}, 2: {}},
        "random": tg.random_pool(7, 120),
    }
    for name, pool in pools.items():
        meta = os.path.join(tmp, name + ".bin")
        tg.restore(tg.pool_xml(pool), meta)
        out["real-" + name] = tg.delta(meta, 1, 2)
        if name == "kinds":
            out["broken-verbose"] = tg.delta(meta, 1, 2, "--verbose")
            tg.add_metadata_snap(meta)
            out["real-metadata-snap"] = tg.delta(meta, 1, 2,
                                                 "--metadata-snap")
    return out


def broken(kinds):
    """Variants of the output for `kinds` that must be refused (and one
    laid out otherwise that must not)."""
    lines = kinds.split(b"\n")
    return {
        "broken-truncated": kinds[:len(kinds) // 2],
        "broken-no-end": b"\n".join(lines[:-2]) + b"\n",
        "broken-unknown-element": kinds.replace(b"<same", b"<sam", 1),
        "broken-unknown-attr": kinds.replace(b'length="2"',
                                             b'length="2" x="1"', 1),
        "broken-no-length": kinds.replace(b' length="2"', b"", 1),
        "broken-not-number": kinds.replace(b'begin="4"', b'begin="4k"'),
        "broken-overflow": kinds.replace(
            b'begin="40"', b'begin="18446744073709551615"'),
        "broken-order": kinds.replace(b'begin="40"', b'begin="3"'),
        "broken-past-end": kinds.replace(b'begin="40"', b'begin="999"'),
        "broken-ids": kinds.replace(b'right="2"', b'right="3"'),
        "broken-needs-check": kinds.replace(b'time="1"',
                                            b'time="1" flags="1"'),
        "broken-block-size": kinds.replace(b'data_block_size="128"',
                                           b'data_block_size="100"'),
        "broken-nul": kinds.replace(b"<different", b"<diff\0rent"),
        "ok-crlf-no-indent": b"\r\n".join(l.strip() for l in lines).rstrip(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        seeds = real(tmp)
    seeds.update(broken(seeds["real-kinds"]))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
