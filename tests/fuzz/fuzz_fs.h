/*
 * fuzz_fs.h: what the used-block map fuzz targets check of a map that
 * fs_*_open returned over the region [0, len) (track.h, fs.h): inside
 * the region, ascending and coalesced, starting at 0 with at least
 * `head` bytes, summing to used_bytes, and, with tail, reaching the
 * region's end.  Any breach aborts.  Closes um.
 */
#ifndef DF_FUZZ_FS_H
#define DF_FUZZ_FS_H

#include <stdbool.h>
#include <stdlib.h>

#include "track/fs.h"
#include "util/overflow.h"

static inline void fuzz_fs_check(struct used_map *um, uint64_t len,
                                 const struct fs_why *why, uint64_t head,
                                 bool tail)
{
    struct df_error err;
    struct extent_list l;

    if (why->reason[0])
        abort();
    df_error_init(&err);
    extent_list_init(&l, 1u << 16);
    int rc = um->used(um, 0, len, &l, &err);
    if (rc < 0 || !l.n || l.v[0].off != 0 || l.v[0].len < head)
        abort();                /* the head is always named */
    if (tail && rc == 0 && l.v[l.n - 1].off + l.v[l.n - 1].len != len)
        abort();
    uint64_t sum = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (!range_within(l.v[i].off, l.v[i].len, len) ||
            (i && l.v[i].off <= l.v[i - 1].off + l.v[i - 1].len))
            abort();            /* track.h: inside, ascending, coalesced */
        sum += l.v[i].len;
    }
    if (rc == 0 && sum != why->used_bytes)
        abort();
    extent_list_release(&l);
    used_map_close(um);
}

#endif
