/*
 * fuzz_vhdx.c: the VHDX driver on a file assembled from the input.
 *
 * A VHDX is megabytes of mostly zeros (regions start past the first
 * MiB) with CRC-32C over its headers and region tables: a mutating
 * fuzzer would neither keep it small nor get past the checksums.  So
 * the input describes the file:
 *
 *   u8 flags     bit i set: leave checksum i as the input has it
 *                (0 header 1, 1 header 2, 2 region table 1, 3 table 2)
 *   records      u32le file offset (mod FUZZ_VHDX_MAX), u16le length,
 *                then that many bytes, until the input ends
 *
 * The file is zeros up to the end of the furthest record; the four
 * checksums are recomputed unless flagged.  tests/fuzz/vhdx_seeds.py
 * writes the seed corpus in this form from real layouts.
 *
 * The table mutation (fuzz_tables.h) appends a record that rewrites a
 * header's log position, a region table entry's offset or length, a
 * metadata item's, or one of the first BAT entries: regions overlapping
 * each other, the headers or the log, misaligned, past the end.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
#include "fuzz_tables.h"
#include "util/bytes.h"
#include "util/crc32c.h"

#define FUZZ_VHDX_MAX (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_vhdx_fix_crc(uint8_t *buf, size_t size, size_t off,
                              size_t len)
{
    if (off + len > size)
        return;
    put_le32(buf + off + 4, 0);
    put_le32(buf + off + 4, crc32c(0, buf + off, len));
}

/* The file the input describes (file_size bytes, caller frees). */
static uint8_t *fuzz_vhdx_file(const uint8_t *data, size_t size,
                               size_t *file_size)
{
    size_t fsize = 0, pos = 1;

    /* Pass 1: the file's size. */
    while (pos + 6 <= size) {
        size_t off = get_le32(data + pos) % FUZZ_VHDX_MAX;
        size_t len = get_le16(data + pos + 4);
        pos += 6;
        len = len < size - pos ? len : size - pos;
        if (off + len > fsize)
            fsize = off + len < FUZZ_VHDX_MAX ? off + len : FUZZ_VHDX_MAX;
        pos += len;
    }
    uint8_t *buf = calloc(1, fsize ? fsize : 1);
    if (!buf)
        return NULL;
    /* Pass 2: the bytes. */
    for (pos = 1; pos + 6 <= size;) {
        size_t off = get_le32(data + pos) % FUZZ_VHDX_MAX;
        size_t len = get_le16(data + pos + 4);
        pos += 6;
        len = len < size - pos ? len : size - pos;
        if (off + len > fsize)
            len = fsize - off;
        memcpy(buf + off, data + pos, len);
        pos += len;
    }
    *file_size = fsize;
    return buf;
}

#ifdef DF_FUZZ_MUTATOR
static void fuzz_vhdx_list(const uint8_t *d, size_t size,
                           struct fuzz_fields *f)
{
    static const uint64_t marks[] = { 0, 64 << 10, 128 << 10, 192 << 10,
                                      256 << 10, 1 << 20 };

    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        fuzz_mark_add(f, marks[i]);
    for (size_t h = 64 << 10; h <= 128 << 10; h += 64 << 10) {
        fuzz_field_add(f, h + 68, 4, false, 1, size);      /* log length */
        fuzz_field_add(f, h + 72, 8, false, 1, size);      /* log offset */
    }
    for (size_t rt = 192 << 10; rt <= 256 << 10; rt += 64 << 10) {
        if (rt + 16 > size)
            break;
        uint32_t n = get_le32(d + rt + 8);
        for (uint32_t i = 0; i < n && i < 4; i++) {
            size_t e = rt + 16 + 32 * i;
            fuzz_field_add(f, e + 16, 8, false, 1, size);
            fuzz_field_add(f, e + 24, 4, false, 1, size);
            if (rt != 192 << 10 || e + 24 > size)
                continue;
            uint64_t r = get_le64(d + e + 16);
            if (r >= size || size - r < 64 << 10)
                continue;
            if (!memcmp(d + r, "metadata", 8)) {
                for (unsigned j = 0; j < 6; j++) {
                    fuzz_field_add(f, r + 48 + 32 * j, 4, false, 1, size);
                    fuzz_field_add(f, r + 52 + 32 * j, 4, false, 1, size);
                }
            } else {
                for (unsigned j = 0; j < 4; j++)
                    fuzz_field_add(f, r + 8 * j, 8, false, 1, size);
            }
        }
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    struct fuzz_fields f = { .n = 0 };
    size_t fsize = 0, which;
    uint64_t v;

    if (seed % 3 || size < 1)
        return LLVMFuzzerMutate(data, size, max_size);
    uint8_t *file = fuzz_vhdx_file(data, size, &fsize);
    if (!file)
        return LLVMFuzzerMutate(data, size, max_size);
    fuzz_vhdx_list(file, fsize, &f);
    bool ok = fuzz_tables_pick(file, fsize, &f, seed, &which, &v);
    free(file);
    if (!ok || size + 6 + f.v[which].width > max_size)
        return LLVMFuzzerMutate(data, size, max_size);
    /* A BAT entry keeps a payload state now and then. */
    if (f.v[which].width == 8 && seed & 8)
        v = (v & ~0xFFFFFull) | 6;
    put_le32(data + size, (uint32_t)f.v[which].off);
    put_le16(data + size + 4, (uint16_t)f.v[which].width);
    fuzz_field_put(data + size + 6, &f.v[which], v);
    return size + 6 + f.v[which].width;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t crcs[4][2] = {
        { 64 << 10, 4 << 10 }, { 128 << 10, 4 << 10 },
        { 192 << 10, 64 << 10 }, { 256 << 10, 64 << 10 },
    };
    size_t file_size = 0;

    if (size < 1)
        return 0;
    uint8_t *buf = fuzz_vhdx_file(data, size, &file_size);
    if (!buf)
        return 0;
    for (int i = 0; i < 4; i++)
        if (!(data[0] >> i & 1))
            fuzz_vhdx_fix_crc(buf, file_size, crcs[i][0], crcs[i][1]);
    fuzz_image("vhdx", buf, file_size);
    free(buf);
    return 0;
}
