/*
 * htree.c: a disk's hash tree kept whole, its comparison, and the walk
 * two hosts take in step (htree.h).
 */
#include "track/htree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/overflow.h"

#define LEAF DIGEST_LEAF_SIZE

/* A zeroed level of n hashes, mapped untouched. */
static int level_alloc(struct htree *t, unsigned lv, uint64_t n,
                       struct df_error *err)
{
    size_t len = (size_t)n * t->hlen;
    void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return df_io(err, "", ENOMEM, "cannot allocate a hash tree of "
                     "%llu leaves", (unsigned long long)t->nleaves);
    t->written[lv] = calloc((size_t)(n / HTREE_CHUNK / 8 + 1), 1);
    if (!t->written[lv]) {
        munmap(p, len ? len : 1);
        return df_io(err, "", ENOMEM, "cannot allocate a hash tree");
    }
    t->level[lv] = p;
    t->maplen[lv] = len ? len : 1;
    t->count[lv] = n;
    return 0;
}

static void level_free(struct htree *t, unsigned lv)
{
    if (t->level[lv])
        munmap(t->level[lv], t->maplen[lv]);
    free(t->written[lv]);
    t->written[lv] = NULL;
    t->level[lv] = NULL;
    t->maplen[lv] = 0;
    t->count[lv] = 0;
}

bool htree_is_zero(const struct htree *t, const uint8_t *h)
{
    for (size_t i = 0; i < t->hlen; i++)
        if (h[i])
            return false;
    return true;
}

static void mark(struct htree *t, unsigned lv, uint64_t i)
{
    uint64_t c = i / HTREE_CHUNK;
    t->written[lv][c / 8] |= (uint8_t)(1u << (c % 8));
}

uint8_t *htree_leaf_slot(struct htree *t, uint64_t i, uint64_t n)
{
    for (uint64_t k = i; k < i + n; k += HTREE_CHUNK - k % HTREE_CHUNK)
        mark(t, 0, k);
    if (n)
        mark(t, 0, i + n - 1);
    return t->level[0] + i * t->hlen;
}

void htree_set_leaf(struct htree *t, uint64_t i, const uint8_t *h)
{
    uint8_t *p = t->level[0] + i * t->hlen;
    if (!memcmp(h, digest_zero_node(t->alg, 0), t->hlen)) {
        if (htree_chunk_written(t, 0, i / HTREE_CHUNK) &&
            !htree_is_zero(t, p))
            memset(p, 0, t->hlen);
        return;
    }
    mark(t, 0, i);
    memcpy(p, h, t->hlen);
}

uint64_t htree_zero_run(const struct htree *t, uint64_t i, uint64_t max)
{
    uint64_t j = i, end = i + max < t->nleaves ? i + max : t->nleaves;
    while (j < end) {
        if (!htree_chunk_written(t, 0, j / HTREE_CHUNK)) {
            j += HTREE_CHUNK - j % HTREE_CHUNK;
            continue;
        }
        if (!htree_is_zero(t, t->level[0] + j * t->hlen))
            break;
        j++;
    }
    return (j < end ? j : end) - i;
}

void htree_tell_leaves(const struct htree *t,
                       void (*fn)(void *ctx, uint64_t i, const uint8_t *h),
                       void *ctx)
{
    for (uint64_t i = 0; i < t->nleaves; i++) {
        i += htree_zero_run(t, i, t->nleaves - i);
        if (i < t->nleaves)
            fn(ctx, i, htree_leaf(t, i));
    }
}

void htree_leaf_fn(void *tree, uint64_t i, const uint8_t *h)
{
    struct htree *t = tree;
    if (i < t->nleaves)
        htree_set_leaf(t, i, h);
}

void htree_copy_leaves(struct htree *dst, const struct htree *src)
{
    uint64_t n = dst->nleaves < src->nleaves ? dst->nleaves : src->nleaves;
    for (uint64_t i = 0; i < n; i++) {
        if (!htree_chunk_written(src, 0, i / HTREE_CHUNK)) {
            i += HTREE_CHUNK - 1 - i % HTREE_CHUNK;
            continue;
        }
        const uint8_t *h = src->level[0] + i * src->hlen;
        if (!htree_is_zero(src, h))
            htree_set_leaf(dst, i, h);
    }
}

void htree_leaf_hash(const struct htree *t, uint64_t i, uint8_t *out)
{
    const uint8_t *p = t->level[0] + i * t->hlen;
    memcpy(out, htree_is_zero(t, p) ? digest_zero_node(t->alg, 0) : p,
           t->hlen);
}

int htree_init(struct htree *t, enum digest_alg alg, uint64_t size,
               struct df_error *err)
{
    memset(t, 0, sizeof(*t));
    t->alg = alg;
    t->hlen = digest_len(alg);
    t->size = size;
    t->nleaves = size ? div_round_up(size, LEAF) : 1;
    if (t->nleaves > SIZE_MAX / t->hlen / 2)
        return df_io(err, "", ENOMEM, "disk too large for a hash tree");
    if (level_alloc(t, 0, t->nleaves, err) < 0)
        return -1;
    t->nlevels = 1;
    return 0;
}

void htree_release(struct htree *t)
{
    for (unsigned i = 0; i < DIGEST_MAX_LEVELS; i++)
        level_free(t, i);
    memset(t, 0, sizeof(*t));
}

int htree_build(struct htree *t, struct df_error *err)
{
    uint8_t pair[2 * DIGEST_MAX_LEN];
    unsigned lv = 0;

    for (unsigned i = 1; i < DIGEST_MAX_LEVELS; i++)
        level_free(t, i);
    while (t->count[lv] > 1) {
        uint64_t n = t->count[lv], m = (n + 1) / 2;
        if (level_alloc(t, lv + 1, m, err) < 0)
            return -1;
        uint8_t *up = t->level[lv + 1];
        for (uint64_t i = 0; i < m; i++) {
            /* children 2i, 2i+1 in chunk 2i / HTREE_CHUNK, never written:
             * the parent stays the sentinel (skip to the next chunk) */
            if (!htree_chunk_written(t, lv, 2 * i / HTREE_CHUNK)) {
                i += HTREE_CHUNK / 2 - 1 - i % (HTREE_CHUNK / 2);
                continue;
            }
            const uint8_t *l = t->level[lv] + 2 * i * t->hlen;
            bool two = 2 * i + 1 < n;
            /* zero over zero stays the sentinel, untouched */
            if (htree_is_zero(t, l) &&
                (!two || htree_is_zero(t, l + t->hlen)))
                continue;
            if (two) {
                memcpy(pair, l, 2 * t->hlen);
                digest_buf(t->alg, pair, 2 * t->hlen, up + i * t->hlen);
            } else {
                memcpy(up + i * t->hlen, l, t->hlen);
            }
            mark(t, lv + 1, i);
        }
        lv++;
    }
    t->nlevels = lv + 1;
    return 0;
}

void htree_leaf_range(const struct htree *t, uint64_t first,
                      uint64_t nleaves, uint64_t *off, uint64_t *len)
{
    uint64_t a = first * LEAF;
    uint64_t b = (first + nleaves) * LEAF;
    if (b > t->size)
        b = t->size;
    *off = a;
    *len = b > a ? b - a : 0;
}

int htree_block_level(uint64_t block_size)
{
    for (int lv = 0; lv <= 10; lv++)
        if (block_size == (uint64_t)LEAF << lv)
            return lv;
    return -1;
}

/* Append block i of level lv (2^lv leaves) as bytes. */
static int append_block(const struct htree *t, unsigned lv, uint64_t i,
                        struct extent_list *out, struct df_error *err)
{
    uint64_t off, len;
    htree_leaf_range(t, i << lv, 1ull << lv, &off, &len);
    if (!len)
        return 0;
    int r = extent_list_append(out, off, len, EXT_DATA, "hash tree", err);
    if (r > 0)
        return df_io(err, "", ENOMEM, "more than %zu changed ranges",
                     out->cap);
    return r;
}

static int diff_node(const struct htree *a, const struct htree *b,
                     unsigned lv, uint64_t i, unsigned stop,
                     struct extent_list *out, struct df_error *err)
{
    if (!memcmp(htree_node(a, lv, i), htree_node(b, lv, i), a->hlen))
        return 0;
    if (lv <= stop)
        return append_block(a, lv, i, out, err);
    for (uint64_t c = 2 * i; c < 2 * i + 2 && c < a->count[lv - 1]; c++)
        if (diff_node(a, b, lv - 1, c, stop, out, err) < 0)
            return -1;
    return 0;
}

int htree_diff(const struct htree *a, const struct htree *b,
               unsigned block_level, struct extent_list *out,
               struct df_error *err)
{
    unsigned top = a->nlevels - 1;
    if (block_level > top)
        block_level = top;
    /* Start at the block level or above, one node at a time from the
     * top: recursion depth is the tree's height. */
    return diff_node(a, b, top, 0, block_level, out, err);
}

int htree_walk_start(struct htree_walk *w, const struct htree *t,
                     unsigned block_level, struct df_error *err)
{
    memset(w, 0, sizeof(*w));
    w->t = t;
    w->level = t->nlevels - 1;
    w->stop = block_level < w->level ? block_level : w->level;
    w->alloc = 16;
    w->idx = malloc(w->alloc * sizeof(*w->idx));
    if (!w->idx)
        return df_io(err, "", ENOMEM, "out of memory");
    w->idx[0] = 0;
    w->n = 1;
    return 0;
}

static bool bit_set(const uint8_t *bits, size_t i)
{
    return bits[i / 8] >> (i % 8) & 1;
}

int htree_walk_next(struct htree_walk *w, const uint8_t *differ,
                    struct df_error *err)
{
    size_t k = 0;
    if (w->level == w->stop) {
        for (size_t i = 0; i < w->n; i++)
            if (bit_set(differ, i))
                w->idx[k++] = w->idx[i];
        w->n = k;
        w->done = true;
        return 0;
    }
    unsigned down = w->level - w->stop < HTREE_STEP ? w->level - w->stop
                                                     : HTREE_STEP;
    unsigned lv = w->level - down;
    uint64_t fan = 1ull << down, limit = w->t->count[lv];
    size_t nd = 0;
    for (size_t i = 0; i < w->n; i++)
        nd += bit_set(differ, i);
    size_t need = nd * (size_t)fan;
    uint64_t *nv = malloc((need ? need : 1) * sizeof(*nv));
    if (!nv)
        return df_io(err, "", ENOMEM, "out of memory");
    for (size_t i = 0; i < w->n; i++) {
        if (!bit_set(differ, i))
            continue;
        for (uint64_t c = w->idx[i] << down;
             c < (w->idx[i] + 1) << down && c < limit; c++)
            nv[k++] = c;
    }
    free(w->idx);
    w->idx = nv;
    w->n = k;
    w->alloc = need ? need : 1;
    w->level = lv;
    return 0;
}

void htree_walk_compare(const struct htree_walk *w, size_t first, size_t n,
                        const uint8_t *theirs, uint8_t *differ)
{
    size_t hl = w->t->hlen;
    memset(differ, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (memcmp(htree_node(w->t, w->level, w->idx[first + i]),
                   theirs + i * hl, hl))
            differ[i / 8] |= (uint8_t)(1u << (i % 8));
}

int htree_walk_ranges(const struct htree_walk *w, struct extent_list *out,
                      struct df_error *err)
{
    for (size_t i = 0; i < w->n; i++)
        if (append_block(w->t, w->level, w->idx[i], out, err) < 0)
            return -1;
    return 0;
}

void htree_walk_release(struct htree_walk *w)
{
    free(w->idx);
    memset(w, 0, sizeof(*w));
}
