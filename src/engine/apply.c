/*
 * apply.c: ranges in order into a destination, with the resume journal
 * (see apply.h).
 */
#include "apply.h"

#include <stdlib.h>
#include <string.h>

#include "engine/readback.h"
#include "util/overflow.h"
#include "util/progress.h"

void apply_init(struct apply *a, struct sink *k, struct rjournal *j)
{
    a->sink = k;
    a->j = j;
    a->since_commit = 0;
    a->last_commit = time_now();
    a->bytes = 0;
    a->hash_leaves = false;
    a->rb = NULL;
    a->leaf_off = UINT64_MAX;
    a->leaf_fill = 0;
    a->leaf_data = false;
}

/* Gather the leaves [off, off+len) (data NULL: zeros) fills, hashing
 * each one completed by contiguous ranges (apply.h). */
static void apply_leaves(struct apply *a, uint64_t off, uint64_t len,
                         const uint8_t *data)
{
    const uint64_t size = a->sink->size;
    uint8_t h[DIGEST_MAX_LEN];
    while (len) {
        uint64_t leaf = off - off % DIGEST_LEAF_SIZE;
        uint64_t lend = min_u64(leaf + DIGEST_LEAF_SIZE, size);
        uint64_t n = min_u64(len, lend - off);
        if (off == leaf) {
            a->leaf_off = leaf;
            a->leaf_fill = 0;
            a->leaf_data = false;
        }
        if (a->leaf_off != leaf || a->leaf_fill != off - leaf) {
            a->leaf_off = UINT64_MAX;       /* a gap: no hash */
        } else if (off == leaf && n == lend - leaf) {
            if (data) {                     /* whole, in place */
                digest_leaf(RJOURNAL_HASH_ALG, data, (size_t)n, h);
                rjournal_note_leaf(a->j, leaf / DIGEST_LEAF_SIZE, h);
            }
            a->leaf_off = UINT64_MAX;
        } else {
            uint8_t *p = a->leaf_buf + (off - leaf);
            if (data)
                memcpy(p, data, (size_t)n);
            else
                memset(p, 0, (size_t)n);
            a->leaf_data |= data != NULL;
            a->leaf_fill += n;
            if (a->leaf_fill == lend - leaf) {
                if (a->leaf_data) {
                    digest_leaf(RJOURNAL_HASH_ALG, a->leaf_buf,
                                (size_t)a->leaf_fill, h);
                    rjournal_note_leaf(a->j, leaf / DIGEST_LEAF_SIZE, h);
                }
                a->leaf_off = UINT64_MAX;
            }
        }
        off += n;
        len -= n;
        if (data)
            data += n;
    }
}

int apply_commit(struct apply *a, struct df_error *err)
{
    a->since_commit = 0;
    a->last_commit = time_now();
    if (!a->j || !a->j->npend)
        return 0;
    /* journal.h invariant 1: flush, then record */
    if (a->sink->ops->finish(a->sink, err) < 0)
        return -1;
    return rjournal_commit(a->j, err);
}

int apply_finish(struct apply *a, struct df_error *err)
{
    a->since_commit = 0;
    a->last_commit = time_now();
    if (a->sink->ops->finish(a->sink, err) < 0)
        return -1;
    return a->j ? rjournal_commit(a->j, err) : 0;
}

/*
 * Test hook (built only with meson -Dtesting=true):
 * DF_TEST_APPLY_FLIP_AT=OFFSET writes the byte at OFFSET inverted right
 * after the range holding it was written, before anything is told of
 * it: a destination that does not hold what arrived, which the
 * read-back must catch (tests/e2e/test_readback.py).
 */
static int apply_test_flip(struct apply *a, uint64_t off, uint64_t len,
                           const void *data, struct df_error *err)
{
#ifdef DF_TESTING
    const char *v = getenv("DF_TEST_APPLY_FLIP_AT");
    uint64_t at = v ? strtoull(v, NULL, 0) : UINT64_MAX;
    if (data && at >= off && at - off < len) {
        uint8_t b = (uint8_t)~((const uint8_t *)data)[at - off];
        return a->sink->ops->write(a->sink, at, &b, 1, err);
    }
#else
    (void)a, (void)off, (void)len, (void)data, (void)err;
#endif
    return 0;
}

int apply_range(struct apply *a, uint64_t off, uint64_t len,
                const void *data, struct df_error *err)
{
    struct sink *k = a->sink;
    /* journal.h invariant 8: the mark goes ahead of the writes */
    if (a->j && rjournal_reserve(a->j, off + len, err) < 0)
        return -1;
    if (data ? k->ops->write(k, off, data, (size_t)len, err)
             : k->ops->zero(k, off, len, err))
        return -1;
    if (apply_test_flip(a, off, len, data, err) < 0)
        return -1;
    a->bytes += len;
    if (a->rb)
        readback_note(a->rb, off, len);
    if (!a->j)
        return 0;
    rjournal_note(a->j, off, len);
    if (a->hash_leaves)
        apply_leaves(a, off, len, data);
    a->since_commit += len;
    if (a->since_commit >= APPLY_COMMIT_BYTES || rjournal_full(a->j) ||
        time_now() - a->last_commit > APPLY_COMMIT_SECONDS)
        return apply_commit(a, err);
    return 0;
}
