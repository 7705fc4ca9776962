/*
 * fuzz_vhd.c: the VHD driver's open, map and read (one layer).  The
 * table mutation (fuzz_tables.h) moves the dynamic header, the BAT and
 * the parent locators' data, resizes the disk, and rewrites the first
 * BAT entries; the footer (both copies) and header checksums are then
 * recomputed.
 */
#include "fuzz_image.h"
#include "fuzz_tables.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_vhd_csum(uint8_t *b, size_t len, size_t at)
{
    uint32_t sum = 0;

    put_be32(b + at, 0);
    for (size_t i = 0; i < len; i++)
        sum += b[i];
    put_be32(b + at, ~sum);
}

/* The dynamic header's offset, or SIZE_MAX. */
static size_t fuzz_vhd_dyn(const uint8_t *d, size_t size)
{
    if (size < 512 || memcmp(d + size - 512, "conectix", 8))
        return SIZE_MAX;
    uint64_t off = get_be64(d + size - 512 + 16);
    return off < size && size - off >= 1024 ? (size_t)off : SIZE_MAX;
}

static void fuzz_vhd_list(const uint8_t *d, size_t size,
                          struct fuzz_fields *f)
{
    if (size < 512)
        return;
    size_t ft = size - 512;
    fuzz_field_add(f, ft + 16, 8, true, 1, size);  /* data offset */
    fuzz_field_add(f, ft + 40, 8, true, 1, size);  /* original size */
    fuzz_field_add(f, ft + 48, 8, true, 1, size);  /* current size */
    fuzz_field_add(f, 16, 8, true, 1, size);       /* the copy's */
    fuzz_mark_add(f, 0);
    fuzz_mark_add(f, 512);
    fuzz_mark_add(f, ft);
    size_t h = fuzz_vhd_dyn(d, size);
    if (h == SIZE_MAX)
        return;
    fuzz_field_add(f, h + 16, 8, true, 1, size);   /* BAT */
    fuzz_field_add(f, h + 28, 4, true, 4, size);   /* max entries */
    fuzz_field_add(f, h + 32, 4, true, 1, size);   /* block size */
    for (unsigned i = 0; i < 2; i++)               /* locator data */
        fuzz_field_add(f, h + 576 + 24 * i + 16, 8, true, 1, size);
    uint64_t bat = get_be64(d + h + 16);
    for (unsigned i = 0; i < 4; i++)
        if (bat < size && 4 * i < size - bat)
            fuzz_field_add(f, (size_t)bat + 4 * i, 4, true, 512, size);
}

static void fuzz_vhd_fix(uint8_t *d, size_t size)
{
    size_t h = fuzz_vhd_dyn(d, size);

    if (h != SIZE_MAX)
        fuzz_vhd_csum(d + h, 1024, 36);
    if (size >= 512 && !memcmp(d + size - 512, "conectix", 8))
        fuzz_vhd_csum(d + size - 512, 512, 64);
    if (size >= 1024 && !memcmp(d, "conectix", 8))
        fuzz_vhd_csum(d, 512, 64);
}

FUZZ_TABLES_MUTATOR(fuzz_vhd_list, fuzz_vhd_fix)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vhd", data, size);
}
