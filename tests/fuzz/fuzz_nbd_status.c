/*
 * fuzz_nbd_status.c: NBD block-status replies (image/nbd.h) as a
 * hostile server sends them: nbd_dirty_fold (a qemu:dirty-bitmap
 * context: the ranges a sync reads) and nbd_extents_convert
 * (base:allocation).
 *
 * Input: u64 BE offset << 2 (the low two bits dropped), u32 BE length - 1, u8
 * cap of the out list - 1, then the reply's entries as u32 BE (length,
 * flags, ...).  A fold that succeeds describes 1..len bytes and its
 * ranges lie inside them, ascending, apart; a full list (0) holds cap
 * ranges; an error is DF_CORRUPT.  The conversion's extents are
 * contiguous from the offset.
 */
#include <stdint.h>
#include <stdlib.h>

#include "image/nbd.h"
#include "util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 13
#define MAX_ENTRIES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint32_t e[MAX_ENTRIES];
    struct extent_list l;
    struct df_error err;

    if (size < HDR)
        return 0;
    uint64_t off = get_be64(data) >> 2;
    uint64_t len = (uint64_t)get_be32(data + 8) + 1;
    size_t cap = (size_t)data[12] + 1;
    size_t n = (size - HDR) / 4;
    if (n > MAX_ENTRIES)
        n = MAX_ENTRIES;
    for (size_t i = 0; i < n; i++)
        e[i] = get_be32(data + HDR + 4 * i);

    extent_list_init(&l, cap);
    df_error_init(&err);
    int64_t got = nbd_dirty_fold("fuzz", off, len, e, n, &l, &err);
    if (got < 0 && err.cat != DF_CORRUPT)
        abort();
    if (got == 0 && l.n != cap)
        abort();                /* 0 only for a full list */
    uint64_t end = got > 0 ? off + (uint64_t)got : off + len;
    if (got > 0 && (uint64_t)got > len)
        abort();
    for (size_t i = 0; got >= 0 && i < l.n; i++) {
        const struct extent *x = &l.v[i];
        if (x->len == 0 || x->off < off || x->off + x->len > end ||
            x->state != EXT_DATA ||
            (i && x->off <= l.v[i - 1].off + l.v[i - 1].len))
            abort();
    }

    extent_list_clear(&l);
    df_error_init(&err);
    got = nbd_extents_convert("fuzz", off, len, e, n, &l, &err);
    if (got < 0 && err.cat != DF_CORRUPT)
        abort();
    if (got > 0 && ((uint64_t)got > len || l.n == 0 || l.v[0].off != off ||
                    extent_list_end(&l, off) != off + (uint64_t)got))
        abort();
    extent_list_release(&l);
    return 0;
}
