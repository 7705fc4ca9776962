#!/usr/bin/python3
"""bench/sync_blocks.py: the changed source and the restored destination
of bench/sync.sh.

  sync_blocks.py change PRISTINE FILE PERCENT SEED
      FILE becomes PRISTINE's bytes (written in place, zeros as bytes)
      with PERCENT % of its 64 KiB blocks, at distinct random positions,
      rewritten with random data; positions and data come from SEED.
      Prints the number of blocks rewritten.
  sync_blocks.py restore [--holes] PRISTINE FILE
      FILE becomes PRISTINE's bytes again, rewriting in place only the
      64 KiB blocks that differ (FILE keeps its inode, so a manifest or
      state record naming it still does); with --holes a block that is
      zero in PRISTINE becomes a hole, as `diskferry copy` leaves it.
      FILE is cut or grown to PRISTINE's size and fdatasynced, so that
      no writeback of the restore falls into the next timed run.
"""
import ctypes
import os
import random
import sys

BLOCK = 64 << 10
CHUNK = 4 << 20
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
ZERO = bytes(BLOCK)

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]


def punch(fd, off, length):
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      off, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "cannot punch a hole: " + os.strerror(err))


def restore(pristine, path, holes):
    """Rewrite the blocks of PATH that differ from PRISTINE; returns how
    many were rewritten."""
    size = os.path.getsize(pristine)
    src = os.open(pristine, os.O_RDONLY)
    dst = os.open(path, os.O_RDWR)
    if os.fstat(dst).st_size != size:
        os.ftruncate(dst, size)
    rewritten = 0
    off = 0
    while off < size:
        want = os.pread(src, CHUNK, off)
        have = os.pread(dst, len(want), off)
        if want != have:
            for b in range(0, len(want), BLOCK):
                w = want[b:b + BLOCK]
                if w == have[b:b + BLOCK]:
                    continue
                if holes and w == ZERO[:len(w)]:
                    punch(dst, off + b, len(w))
                else:
                    os.pwrite(dst, w, off + b)
                rewritten += 1
        off += len(want)
    os.fdatasync(dst)
    os.close(dst)
    os.close(src)
    return rewritten


def change(pristine, path, percent, seed):
    if os.path.exists(path):
        restore(pristine, path, holes=False)
    else:
        with open(pristine, "rb") as src, open(path, "wb") as dst:
            while True:
                buf = src.read(CHUNK)
                if not buf:
                    break
                dst.write(buf)   # zeros too: FILE has no holes
    size = os.path.getsize(path)
    nblocks = size // BLOCK
    count = round(nblocks * percent / 100)
    if percent > 0:
        count = max(1, count)
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY)
    for i in sorted(rng.sample(range(nblocks), count)):
        os.pwrite(fd, rng.randbytes(BLOCK), i * BLOCK)
    os.fdatasync(fd)
    os.close(fd)
    return count


def main(argv):
    if len(argv) == 6 and argv[1] == "change":
        print(change(argv[2], argv[3], float(argv[4]), int(argv[5])))
    elif len(argv) in (4, 5) and argv[1] == "restore":
        holes = argv[2] == "--holes"
        if len(argv) == 5 and not holes:
            sys.exit(__doc__)
        restore(argv[-2], argv[-1], holes)
    else:
        sys.exit(__doc__)


main(sys.argv)
