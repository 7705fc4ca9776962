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
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t crcs[4][2] = {
        { 64 << 10, 4 << 10 }, { 128 << 10, 4 << 10 },
        { 192 << 10, 64 << 10 }, { 256 << 10, 64 << 10 },
    };
    size_t file_size = 0, pos = 1;

    if (size < 1)
        return 0;
    /* Pass 1: the file's size. */
    while (pos + 6 <= size) {
        size_t off = get_le32(data + pos) % FUZZ_VHDX_MAX;
        size_t len = get_le16(data + pos + 4);
        pos += 6;
        len = len < size - pos ? len : size - pos;
        if (off + len > file_size)
            file_size = off + len < FUZZ_VHDX_MAX ? off + len : FUZZ_VHDX_MAX;
        pos += len;
    }
    uint8_t *buf = calloc(1, file_size ? file_size : 1);
    if (!buf)
        return 0;
    /* Pass 2: the bytes. */
    for (pos = 1; pos + 6 <= size;) {
        size_t off = get_le32(data + pos) % FUZZ_VHDX_MAX;
        size_t len = get_le16(data + pos + 4);
        pos += 6;
        len = len < size - pos ? len : size - pos;
        if (off + len > file_size)
            len = file_size - off;
        memcpy(buf + off, data + pos, len);
        pos += len;
    }
    for (int i = 0; i < 4; i++)
        if (!(data[0] >> i & 1))
            fuzz_vhdx_fix_crc(buf, file_size, crcs[i][0], crcs[i][1]);
    fuzz_image("vhdx", buf, file_size);
    free(buf);
    return 0;
}
