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
    case EXT_UNCHANGED: return "unchanged";
    case EXT_FREE: return "free";
    case EXT_UNCHANGED_ZERO: return "unchanged-zero";
    }
    return "?";
}

enum { KEEP_IN = 1, KEEP_OUT = 2 };

/*
 * One sweep over a and b at once: each extent of a is cut where b's
 * ranges begin and end; a piece inside b is kept when KEEP_IN is set,
 * a piece outside when KEEP_OUT is (in state `outside` when its own
 * state is in `which`).  O(a.n + b.n).
 */
static int extent_sweep(const struct extent_list *a,
                        const struct extent_list *b, unsigned keep,
                        enum extent_state outside, unsigned which,
                        struct extent_list *out, struct df_error *err)
{
    size_t j = 0;

    extent_list_clear(out);
    for (size_t i = 0; i < a->n; i++) {
        uint64_t pos = a->v[i].off, end = a->v[i].off + a->v[i].len;
        while (pos < end) {
            while (j < b->n && b->v[j].off + b->v[j].len <= pos)
                j++;
            bool in = j < b->n && b->v[j].off <= pos;
            uint64_t stop = end;
            if (in && b->v[j].off + b->v[j].len < stop)
                stop = b->v[j].off + b->v[j].len;
            else if (!in && j < b->n && b->v[j].off < stop)
                stop = b->v[j].off;
            if (keep & (in ? KEEP_IN : KEEP_OUT)) {
                enum extent_state st = a->v[i].state;
                if (!in && (which & (1u << st)))
                    st = outside;
                int rc = extent_list_append(out, pos, stop - pos, st,
                                            "plan", err);
                if (rc)
                    return rc;
            }
            pos = stop;
        }
    }
    return 0;
}

int extent_list_intersect(const struct extent_list *a,
                          const struct extent_list *b,
                          struct extent_list *out, struct df_error *err)
{
    return extent_sweep(a, b, KEEP_IN, EXT_DATA, 0, out, err);
}

int extent_list_subtract(const struct extent_list *a,
                         const struct extent_list *b,
                         struct extent_list *out, struct df_error *err)
{
    return extent_sweep(a, b, KEEP_OUT, EXT_DATA, 0, out, err);
}

int extent_list_mask(const struct extent_list *a,
                     const struct extent_list *b, enum extent_state outside,
                     unsigned which, struct extent_list *out,
                     struct df_error *err)
{
    return extent_sweep(a, b, KEEP_IN | KEEP_OUT, outside, which, out, err);
}

size_t extent_list_find(const struct extent_list *l, uint64_t off)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].off + l->v[mid].len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
