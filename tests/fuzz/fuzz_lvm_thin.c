/*
 * fuzz_lvm_thin.c: the reader of thin_delta's output (track/lvm_thin.h)
 * on hostile text, over a device of fixed size (1000 blocks of 64 KiB
 * and a half, so the last block is clipped), thin ids 1 and 2.
 *
 * Each input is read whole, then fed in two pieces split where its
 * first byte says: both must agree, and an accepted answer must be an
 * ascending, coalesced list of ranges inside the device.
 */
#include <stdint.h>
#include <stdlib.h>

#include "track/lvm_thin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SIZE (1000ull * 65536 + 32768)

static void check_list(const struct extent_list *l)
{
    uint64_t end = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct extent *e = &l->v[i];
        if (e->len == 0 || (i && e->off <= end) ||
            e->off + e->len > FUZZ_SIZE || e->state != EXT_DATA)
            abort();
        end = e->off + e->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct extent_list a, b;
    struct df_error err;
    struct lvm_thin_parser *p = malloc(sizeof(*p));
    if (!p)
        return 0;
    extent_list_init(&a, 64);
    extent_list_init(&b, 64);

    df_error_init(&err);
    int ra = lvm_thin_parse("fuzz", (const char *)data, size, 1, 2,
                            FUZZ_SIZE, &a, &err);
    if (ra == 0)
        check_list(&a);
    else if (err.cat != DF_CORRUPT)
        abort();

    size_t cut = size ? data[0] % (size + 1) : 0;
    df_error_init(&err);
    lvm_thin_parser_init(p, "fuzz", 1, 2, FUZZ_SIZE, &b);
    int rb = lvm_thin_parser_feed(p, (const char *)data, cut, &err);
    if (rb == 0)
        rb = lvm_thin_parser_feed(p, (const char *)data + cut, size - cut,
                                  &err);
    if (rb == 0)
        rb = lvm_thin_parser_finish(p, &err);
    if (ra != rb)
        abort();                /* a split changed the answer */
    if (ra == 0 && a.n != b.n)
        abort();
    for (size_t i = 0; ra == 0 && i < a.n; i++)
        if (a.v[i].off != b.v[i].off || a.v[i].len != b.v[i].len)
            abort();

    free(p);
    extent_list_release(&a);
    extent_list_release(&b);
    return 0;
}
