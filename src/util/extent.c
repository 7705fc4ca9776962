/*
 * extent.c: sorted, non-overlapping extent lists (see extent.h).
 */
#include "extent.h"

#include <errno.h>
#include <stdlib.h>

void extent_list_init(struct extent_list *l, size_t cap)
{
    l->v = NULL;
    l->n = 0;
    l->alloc = 0;
    l->cap = cap ? cap : EXTENT_LIST_DEFAULT_CAP;
}

void extent_list_release(struct extent_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->alloc = 0;
}

void extent_list_clear(struct extent_list *l)
{
    l->n = 0;
}

int extent_list_append(struct extent_list *l, uint64_t off, uint64_t len,
                       enum extent_state state, const char *what,
                       struct df_error *err)
{
    if (len == 0 || off + len < off)
        return df_corrupt(err, what, (int64_t)off,
                          "extent of %llu bytes is empty or overflows",
                          (unsigned long long)len);
    if (l->n) {
        struct extent *last = &l->v[l->n - 1];
        uint64_t end = last->off + last->len;
        if (off < end)
            return df_corrupt(err, what, (int64_t)off,
                              "extent out of order or overlapping (previous "
                              "ends at %llu)", (unsigned long long)end);
        if (off == end && last->state == state) {   /* invariant 2 */
            last->len += len;
            return 0;
        }
    }
    if (l->n == l->cap)
        return 1;
    if (l->n == l->alloc) {
        size_t na = l->alloc ? l->alloc * 2 : 64;
        if (na > l->cap)
            na = l->cap;
        struct extent *nv = realloc(l->v, na * sizeof(*nv));
        if (!nv)
            return df_fail(err, DF_IO, ENOMEM, what, -1,
                           "cannot grow extent list");
        l->v = nv;
        l->alloc = na;
    }
    l->v[l->n++] = (struct extent){ .off = off, .len = len, .state = state };
    return 0;
}

uint64_t extent_list_end(const struct extent_list *l, uint64_t dflt)
{
    if (!l->n)
        return dflt;
    return l->v[l->n - 1].off + l->v[l->n - 1].len;
}

uint64_t extent_list_bytes(const struct extent_list *l,
                           enum extent_state state)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].state == state)
            sum += l->v[i].len;
    return sum;
}

const char *extent_state_name(enum extent_state s)
{
    switch (s) {
    case EXT_DATA: return "data";
    case EXT_ZERO: return "zero";
    case EXT_HOLE: return "hole";
    case EXT_PARENT: return "parent";
    }
    return "?";
}
