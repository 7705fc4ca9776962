#!/usr/bin/python3
"""Build device-mapper persistent snapshot exception stores (the -cow
device of an LVM "old-style" snapshot) for tests, in the kernel's
layout (linux drivers/md/dm-snap-persistent.c; docs/formats.md section
8):

    chunk 0             header: u32le magic 0x70416e53, valid, version 1,
                        chunk size in 512-byte sectors
    chunk 1 + k*(E+1)   metadata area k: E = chunk_bytes/16 exceptions,
                        each u64le old_chunk (origin), u64le new_chunk
    the E chunks after  data chunks, handed out in order (skipping the
                        areas), each holding the origin chunk's old bytes

The table ends at the first new_chunk 0; when the last area is full,
the zeroed area after it is in the file too, as the kernel writes it.

    from cowstore import write_store
    write_store(path, 4096, [(origin_chunk, old_bytes), ...])

or from a shell: cowstore.py OUT CHUNK_BYTES ORIGIN_CHUNK... (each data
chunk then holds its origin chunk number as text).
"""
import struct
import sys

MAGIC = 0x70416e53
SECTOR = 512
ENTRY = 16


def data_chunks(chunk_bytes, n):
    """The store chunks the kernel hands the first n exceptions."""
    stride = chunk_bytes // ENTRY + 1
    out, nxt = [], 2                    # chunk 0 header, chunk 1 area 0
    for _ in range(n):
        out.append(nxt)
        nxt += 1
        if nxt % stride == 1:           # an area's chunk: skip it
            nxt += 1
    return out


def area_chunk(chunk_bytes, k):
    """The store chunk of metadata area k."""
    return 1 + k * (chunk_bytes // ENTRY + 1)


def build_store(chunk_bytes, entries, valid=True, spare_chunks=0):
    """The store's bytes.  entries: (old_chunk, old_data) in table
    order, old_data at most chunk_bytes (zero padded).  spare_chunks:
    unused chunks after the last one written (a store's free space)."""
    if chunk_bytes % SECTOR or chunk_bytes & (chunk_bytes - 1):
        raise ValueError("chunk size %d is not a power of two of sectors"
                         % chunk_bytes)
    per_area = chunk_bytes // ENTRY
    news = data_chunks(chunk_bytes, len(entries))
    # the area holding the end marker (the next one when the last is full)
    end = area_chunk(chunk_bytes, len(entries) // per_area) + 1
    end = max([end] + [c + 1 for c in news]) + spare_chunks
    buf = bytearray(end * chunk_bytes)
    struct.pack_into("<IIII", buf, 0, MAGIC, 1 if valid else 0, 1,
                     chunk_bytes // SECTOR)
    for i, ((old, data), new) in enumerate(zip(entries, news)):
        if len(data) > chunk_bytes:
            raise ValueError("old data of chunk %d is longer than a chunk"
                             % old)
        at = area_chunk(chunk_bytes, i // per_area) * chunk_bytes
        struct.pack_into("<QQ", buf, at + (i % per_area) * ENTRY, old, new)
        buf[new * chunk_bytes:new * chunk_bytes + len(data)] = data
    return bytes(buf)


def write_store(path, chunk_bytes, entries, valid=True, spare_chunks=0):
    """build_store into the file path (created or replaced); returns the
    data chunk of each entry."""
    with open(path, "wb") as f:
        f.write(build_store(chunk_bytes, entries, valid, spare_chunks))
    return data_chunks(chunk_bytes, len(entries))


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: cowstore.py OUT CHUNK_BYTES "
                         "ORIGIN_CHUNK...\n")
        return 2
    cb = int(argv[2])
    write_store(argv[1], cb, [(int(c), b"chunk %d\n" % int(c))
                              for c in argv[3:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
