#!/usr/bin/python3
"""bench/fs_check.py SRC DST [--free-zero[=N]] | SRC --used: for
bench/fs_aware.sh.

SRC is a raw ext2/3/4 image (the file system at offset 0).  The blocks
in use are the complement of the "Free blocks:" ranges of
`dumpe2fs SRC` (every group's bitmap).

  SRC DST        DST must hold SRC's bytes in every block in use
  --free-zero    and zeros (or holes) in every free block
  --free-zero=N  ... in every aligned N bytes that are free as a whole
                 (diskferry skips whole 64 KiB leaves; a leaf with a
                 block in use is copied whole, stale bytes and all)
  SRC --used     print the bytes in use, metadata included:
                 (Block count - Free blocks) x Block size of dumpe2fs -h

Exit status 1 with the first offset that differs.
"""
import re
import subprocess
import sys

CHUNK = 1 << 20


def layout(src):
    out = subprocess.run(["dumpe2fs", src], check=True, capture_output=True,
                         text=True).stdout
    head = dict(re.findall(r"^([A-Za-z ]+):\s+(\S+)", out, re.M))
    bs, count = int(head["Block size"]), int(head["Block count"])
    free = []
    for m in re.finditer(r"^\s+Free blocks: (.*)$", out, re.M):
        for r in m.group(1).split(","):
            r = r.strip()
            if r:
                a, _, b = r.partition("-")
                free.append((int(a), int(b or a) + 1))
    free.sort()
    return bs, count, free, int(head["Free blocks"])


def ranges(bs, count, free):
    """(offset, length, in_use) over the whole file system, in order."""
    pos = 0
    for a, b in free:
        if a > pos:
            yield pos * bs, (a - pos) * bs, True
        yield a * bs, (b - a) * bs, False
        pos = b
    if pos < count:
        yield pos * bs, (count - pos) * bs, True


def main():
    a = sys.argv[1:]
    src = a[0]
    bs, count, free, nfree = layout(src)
    if a[1:] == ["--used"]:
        print((count - nfree) * bs)
        return 0
    dst, free_zero = a[1], 0
    for opt in a[2:]:
        if opt == "--free-zero":
            free_zero = bs
        elif opt.startswith("--free-zero="):
            free_zero = int(opt.split("=", 1)[1])
        else:
            sys.exit("fs_check.py: unknown option " + opt)
    with open(src, "rb") as s, open(dst, "rb") as d:
        for off, length, used in ranges(bs, count, free):
            if not used:
                if not free_zero:
                    continue
                end = (off + length) // free_zero * free_zero
                off = -(-off // free_zero) * free_zero
                if off >= end:
                    continue
                length = end - off
            s.seek(off)
            d.seek(off)
            end = off + length
            while off < end:
                n = min(CHUNK, end - off)
                want = s.read(n) if used else bytes(n)
                got = d.read(n)
                if len(got) < n and not used:
                    got += bytes(n - len(got))   # a short file: zeros
                if got != want:
                    i = next(i for i in range(n) if i >= len(got) or
                             got[i] != want[i])
                    print("fs_check.py: %s: %s block at offset %d: %s" % (
                        dst, "used" if used else "free", off + i,
                        "differs from %s" % src if used else "not zero"),
                        file=sys.stderr)
                    return 1
                off += n
    return 0


sys.exit(main())
