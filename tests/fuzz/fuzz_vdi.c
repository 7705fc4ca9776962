/*
 * fuzz_vdi.c: the VDI driver's open, map and read (one layer).  The
 * table mutation (fuzz_tables.h) moves the block map and the data area,
 * resizes the disk and its blocks, and rewrites the first map entries.
 */
#include "fuzz_image.h"
#include "fuzz_tables.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_vdi_list(const uint8_t *d, size_t size,
                          struct fuzz_fields *f)
{
    if (size < 400)
        return;
    fuzz_field_add(f, 72, 4, false, 1, size);      /* cbHeader */
    fuzz_field_add(f, 340, 4, false, 1, size);     /* offBlocks */
    fuzz_field_add(f, 344, 4, false, 1, size);     /* offData */
    fuzz_field_add(f, 368, 8, false, 1, size);     /* cbDisk */
    fuzz_field_add(f, 376, 4, false, 1, size);     /* cbBlock */
    fuzz_field_add(f, 380, 4, false, 1, size);     /* cbBlockExtra */
    fuzz_field_add(f, 384, 4, false, 1, size);     /* cBlocks */
    fuzz_field_add(f, 388, 4, false, 1, size);     /* cBlocksAllocated */
    fuzz_mark_add(f, 0);
    fuzz_mark_add(f, 512);
    uint32_t map = get_le32(d + 340), bs = get_le32(d + 376);
    for (unsigned i = 0; i < 4; i++)
        if (map < size && 4 * i < size - map)
            fuzz_field_add(f, map + 4 * i, 4, false, bs ? bs : 1, size);
}

static void fuzz_vdi_fix(uint8_t *d, size_t size)
{
    (void)d;
    (void)size;                 /* VDI has no checksums */
}

FUZZ_TABLES_MUTATOR(fuzz_vdi_list, fuzz_vdi_fix)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vdi", data, size);
}
