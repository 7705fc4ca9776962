/*
 * fuzz_qcow2.c: the qcow2 reader: open, map and read one layer.  The
 * table mutation (fuzz_tables.h) moves the L1, refcount and snapshot
 * tables, the backing name, and the first L1, L2 and refcount entries.
 */
#include "fuzz_image.h"
#include "fuzz_tables.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_qcow2_list(const uint8_t *d, size_t size,
                            struct fuzz_fields *f)
{
    if (size < 72)
        return;
    uint32_t cb = get_be32(d + 20);
    uint64_t cluster = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
    fuzz_field_add(f, 8, 8, true, 1, size);        /* backing name */
    fuzz_field_add(f, 16, 4, true, 1, size);
    fuzz_field_add(f, 24, 8, true, 1, size);       /* virtual size */
    fuzz_field_add(f, 36, 4, true, 8, size);       /* l1_size */
    fuzz_field_add(f, 40, 8, true, 1, size);       /* L1 */
    fuzz_field_add(f, 48, 8, true, 1, size);       /* refcount table */
    fuzz_field_add(f, 56, 4, true, cluster, size);
    fuzz_field_add(f, 60, 4, true, 1, size);       /* snapshots */
    fuzz_field_add(f, 64, 8, true, 1, size);
    if (size >= 104)
        fuzz_field_add(f, 100, 4, true, 1, size);  /* header_length */
    fuzz_mark_add(f, 0);
    fuzz_mark_add(f, cluster);
    uint64_t l1 = get_be64(d + 40), rt = get_be64(d + 48);
    for (unsigned i = 0; i < 4; i++) {
        if (l1 < size && 8 * i < size - l1)
            fuzz_field_add(f, (size_t)l1 + 8 * i, 8, true, 1, size);
        if (rt < size && 8 * i < size - rt)
            fuzz_field_add(f, (size_t)rt + 8 * i, 8, true, 1, size);
    }
    if (l1 < size && 8 <= size - l1) {
        uint64_t l2 = get_be64(d + l1) & 0x00fffffffffffe00ull;
        for (unsigned i = 0; i < 4 && l2 < size; i++)
            fuzz_field_add(f, (size_t)l2 + 8 * i, 8, true, 1, size);
    }
}

static void fuzz_qcow2_fix(uint8_t *d, size_t size)
{
    (void)d;
    (void)size;                 /* qcow2 has no checksums */
}

FUZZ_TABLES_MUTATOR(fuzz_qcow2_list, fuzz_qcow2_fix)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("qcow2", data, size);
}
