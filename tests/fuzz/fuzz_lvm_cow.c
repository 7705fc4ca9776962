/*
 * fuzz_lvm_cow.c: the lvm-cow change source (track/lvm_cow.c) on a
 * store assembled from the input, for an origin of FUZZ_COW_ORIGIN
 * bytes: open (header, area walk, bounds, duplicates), changed() over
 * the whole origin, base_read() of the first changed range.
 *
 * A store with two metadata areas is over a MiB of mostly zeros (4 KiB
 * chunks: area 1 sits at chunk 258), which a mutating fuzzer would
 * neither keep small nor reach.  So the input describes the file:
 *
 *   u32le    the store's size in bytes (mod FUZZ_COW_MAX + 1)
 *   records  u32le offset (mod FUZZ_COW_MAX), u16le length, then that
 *            many bytes, until the input ends; clipped to the size
 *
 * and the rest of the file is zeros (fuzz_sized.h).  tests/fuzz/lvm_cow_seeds.py
 * writes the seed corpus in this form.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_sized.h"
#include "track/lvm_cow.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define FUZZ_COW_MAX (8u << 20)
#define FUZZ_COW_ORIGIN (1ull << 30)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    uint8_t *buf = fuzz_sized_file(data, size, FUZZ_COW_MAX, &len);
    struct df_file f;
    struct df_error err;
    struct extent_list l;

    if (!buf)
        return 0;
    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", buf, len);
    struct change_source *cs = lvm_cow_open_file(&f, FUZZ_COW_ORIGIN, &err);
    if (!cs) {
        if (err.cat == DF_OK)
            abort();            /* a failure must say why */
        free(buf);
        return 0;
    }
    extent_list_init(&l, 4096);
    int rc = cs->changed(cs, 0, FUZZ_COW_ORIGIN, &l, &err);
    if (rc < 0 || (rc == 0 && l.n > 4096))
        abort();                /* a validated store answers */
    for (size_t i = 0; i < l.n; i++)
        if (!range_within(l.v[i].off, l.v[i].len, FUZZ_COW_ORIGIN) ||
            (i && l.v[i].off <= l.v[i - 1].off + l.v[i - 1].len))
            abort();            /* track.h: inside, ascending, coalesced */
    if (l.n) {
        size_t n = (size_t)min_u64(l.v[0].len, 1u << 20);
        uint8_t *out = malloc(n);
        if (out && cs->base_read(cs, l.v[0].off, n, out, &err) < 0)
            abort();            /* every changed byte has its old copy */
        free(out);
    }
    extent_list_release(&l);
    change_source_close(cs);
    free(buf);
    return 0;
}
