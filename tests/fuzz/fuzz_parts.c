/*
 * fuzz_parts.c: parts_read over a raw disk assembled from the input.
 *
 * A partition table is a few sectors at the start (and, for GPT, the
 * end) of a disk of zeros, and GPT's CRCs would stop a mutating fuzzer
 * at the headers.  So the input describes the disk:
 *
 *   u8       flags: bit 0 leave both GPT CRCs as the input has them;
 *            bit 1 fix them for 4096-byte sectors (else 512)
 *   u32le    the disk's size in bytes (mod FUZZ_PARTS_MAX + 1)
 *   records  u32le offset (mod FUZZ_PARTS_MAX), u16le length, then that
 *            many bytes, until the input ends; clipped to the size
 *
 * and the rest of the disk is zeros (fuzz_sized.h).  Unless flagged, the CRCs of the
 * primary and backup GPT headers (and their entry arrays) are
 * recomputed.  tests/fuzz/parts_seeds.py writes the seed corpus.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_sized.h"
#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define FUZZ_PARTS_MAX (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Recompute the CRCs of the GPT header at byte `at` of buf. */
static void fuzz_parts_fix(uint8_t *buf, size_t len, uint64_t at, size_t ss)
{
    if (!range_within(at, ss, len) || memcmp(buf + at, "EFI PART", 8))
        return;
    uint8_t *h = buf + at;
    uint32_t hsize = get_le32(h + 12);
    uint64_t n = get_le32(h + 80), esize = get_le32(h + 84), eoff;
    if (!ovf_mul(get_le64(h + 72), ss, &eoff) &&
        range_within(eoff, n * esize, len))
        put_le32(h + 88, (uint32_t)crc32(0, buf + eoff, (uInt)(n * esize)));
    if (hsize >= 92 && hsize <= ss) {
        put_le32(h + 16, 0);
        put_le32(h + 16, (uint32_t)crc32(0, h, hsize));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    static struct part v[PARTS_MAX];
    struct df_file f;
    struct image *img = NULL;
    struct df_error err;
    unsigned n = 0;

    size_t len = 0;
    uint8_t *buf = size ? fuzz_sized_file(data + 1, size - 1,
                                          FUZZ_PARTS_MAX, &len) : NULL;
    if (!buf)
        return 0;
    if (!(data[0] & 1)) {
        size_t ss = data[0] & 2 ? 4096 : 512;
        fuzz_parts_fix(buf, len, ss, ss);
        if (len >= 2 * ss)
            fuzz_parts_fix(buf, len, (len / ss - 1) * ss, ss);
    }

    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", buf, len);
    if (image_open_file(&f, "fuzz", "fuzz", &opts, &img, &err) == 0) {
        if (parts_read(img, v, &n, &err) == 0) {
            /* the contract: at least one region, each inside the disk */
            if (n == 0 || n > PARTS_MAX)
                abort();
            for (unsigned i = 0; i < n; i++)
                if (v[i].len > img->size ||
                    v[i].off > img->size - v[i].len ||
                    !memchr(v[i].type, 0, sizeof(v[i].type)))
                    abort();
        } else if (err.cat == DF_OK || n != 0) {
            abort();
        }
        image_close(img);
    }
    free(buf);
    return 0;
}
