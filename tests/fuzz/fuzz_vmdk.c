/*
 * fuzz_vmdk.c: the VMDK driver over a binary extent held in memory
 * (KDMV incl. streamOptimized and an embedded descriptor, COWD,
 * seSparse).  A text descriptor naming other files cannot open them in
 * memory: that path fails cleanly and fuzz_vmdk_desc covers its parser.
 * The table mutation (fuzz_tables.h) moves the grain directories, the
 * descriptor and the grain tables, resizes grains and the disk, and
 * rewrites the first directory and table entries.
 */
#include "fuzz_image.h"
#include "fuzz_tables.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first entries of the u32 table at sector sec, and of the table
 * its first entry points to. */
static void fuzz_vmdk_table(const uint8_t *d, size_t size, uint64_t sec,
                            struct fuzz_fields *f)
{
    if (sec >= size / 512)
        return;
    size_t t = (size_t)sec * 512;
    for (unsigned i = 0; i < 4; i++)
        fuzz_field_add(f, t + 4 * i, 4, false, 512, size);
    if (t + 4 <= size) {
        uint64_t gt = get_le32(d + t);
        for (unsigned i = 0; gt < size / 512 && i < 4; i++)
            fuzz_field_add(f, (size_t)gt * 512 + 4 * i, 4, false, 512, size);
    }
}

static void fuzz_vmdk_list(const uint8_t *d, size_t size,
                           struct fuzz_fields *f)
{
    fuzz_mark_add(f, 0);
    fuzz_mark_add(f, 512);
    if (size >= 80 && !memcmp(d, "KDMV", 4)) {
        static const size_t u64s[] = { 12, 20, 28, 36, 48, 56, 64 };
        for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++)
            fuzz_field_add(f, u64s[i], 8, false, 512, size);
        fuzz_field_add(f, 44, 4, false, 1, size);
        fuzz_vmdk_table(d, size, get_le64(d + 56), f);
        fuzz_vmdk_table(d, size, get_le64(d + 48), f);
    } else if (size >= 40 && !memcmp(d, "COWD", 4)) {
        for (size_t off = 12; off <= 24; off += 4)
            fuzz_field_add(f, off, 4, false, off == 24 ? 1 : 512, size);
        fuzz_vmdk_table(d, size, get_le32(d + 20), f);
    } else if (size >= 200) {
        for (size_t off = 16; off <= 40; off += 8)
            fuzz_field_add(f, off, 8, false, 512, size);
        for (size_t off = 128; off <= 200; off += 8)
            fuzz_field_add(f, off, 8, false, 512, size);
    }
}

static void fuzz_vmdk_fix(uint8_t *d, size_t size)
{
    (void)d;
    (void)size;                 /* no checksums to keep */
}

FUZZ_TABLES_MUTATOR(fuzz_vmdk_list, fuzz_vmdk_fix)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vmdk", data, size);
}
