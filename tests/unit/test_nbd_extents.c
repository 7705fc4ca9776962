/* test_nbd_extents.c: a block-status reply as extents
 * (nbd_extents_convert, image/nbd.h) and as the dirty ranges of a
 * qemu:dirty-bitmap context (nbd_dirty_fold), hostile replies included. */
#include "test.h"
#include "image/nbd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HOLE 1u
#define ZERO 2u
#define D NBD_STATE_DIRTY

static int64_t conv(uint64_t off, uint64_t len, const uint32_t *e, size_t n,
                    struct extent_list *l, struct df_error *err)
{
    extent_list_clear(l);
    df_error_init(err);
    return nbd_extents_convert("t", off, len, e, n, l, err);
}

static int64_t fold(uint64_t off, uint64_t len, const uint32_t *e, size_t n,
                    struct extent_list *l, struct df_error *err)
{
    extent_list_clear(l);
    df_error_init(err);
    return nbd_dirty_fold("t", off, len, e, n, l, err);
}

/* nbd_dirty_fold: the fixed cases. */
static void test_dirty(void)
{
    struct extent_list l;
    struct df_error err;
    extent_list_init(&l, 1024);

    /* Dirty entries only, adjacent ones coalesced, other bits ignored. */
    uint32_t a[] = { 4096, 0, 8192, D, 4096, D | 6, 4096, 2, 512, D };
    CHECK(fold(1 << 20, 20992, a, 10, &l, &err) == 20992);
    CHECK(l.n == 2);
    CHECK(l.v[0].off == (1 << 20) + 4096 && l.v[0].len == 12288);
    CHECK(l.v[1].off == (1 << 20) + 20480 && l.v[1].len == 512);
    CHECK(l.v[0].state == EXT_DATA);

    /* Nothing dirty: the bytes described, no range. */
    uint32_t b[] = { 65536, 0 };
    CHECK(fold(0, 65536, b, 2, &l, &err) == 65536 && l.n == 0);

    /* Shorter than asked: what it describes (the caller loops). */
    CHECK(fold(0, 1 << 20, b, 2, &l, &err) == 65536);

    /* The last entry past the request is clipped to it. */
    uint32_t c[] = { 4096, 0, 0xffffffffu, D };
    CHECK(fold(0, 65536, c, 4, &l, &err) == 65536);
    CHECK(l.n == 1 && l.v[0].off == 4096 && l.v[0].len == 61440);

    /* Corrupt: no entries, an odd count, a zero length, an entry after
     * the request was covered. */
    CHECK(fold(0, 4096, b, 0, &l, &err) < 0 && err.cat == DF_CORRUPT);
    CHECK(fold(0, 4096, b, 1, &l, &err) < 0 && err.cat == DF_CORRUPT);
    uint32_t d[] = { 4096, D, 0, D };
    CHECK(fold(0, 65536, d, 4, &l, &err) < 0 && err.cat == DF_CORRUPT);
    uint32_t e[] = { 65536, 0, 4096, D };
    CHECK(fold(0, 65536, e, 4, &l, &err) < 0 && err.cat == DF_CORRUPT);
    CHECK(err.offset == 65536);

    /* A full list: 0, the ranges before it kept. */
    struct extent_list one;
    extent_list_init(&one, 1);
    uint32_t f[] = { 512, D, 512, 0, 512, D };
    df_error_init(&err);
    CHECK(nbd_dirty_fold("t", 0, 1536, f, 6, &one, &err) == 0);
    CHECK(one.n == 1 && one.v[0].off == 0 && one.v[0].len == 512);
    extent_list_release(&one);

    /* Offsets near the top of the range never wrap. */
    uint32_t g[] = { 0xffffffffu, D };
    CHECK(fold(UINT64_MAX - 100, 100, g, 2, &l, &err) == 100);
    CHECK(l.v[0].off + l.v[0].len == UINT64_MAX);

    extent_list_release(&l);
}

/* A random reply folded: ranges within [off, off+got), sorted, apart. */
static void check_fold(uint64_t off, uint64_t len, const uint32_t *r,
                       size_t n, struct extent_list *l, struct df_error *err)
{
    int64_t got = fold(off, len, r, n, l, err);
    if (got < 0) {
        CHECK(err->cat == DF_CORRUPT);
        return;
    }
    CHECK(got >= 1 && (uint64_t)got <= len);
    for (size_t i = 0; i < l->n; i++) {
        CHECK(l->v[i].off >= off && l->v[i].len > 0);
        CHECK(l->v[i].off + l->v[i].len <= off + (uint64_t)got);
        if (i)
            CHECK(l->v[i].off > l->v[i - 1].off + l->v[i - 1].len);
    }
}

int main(void)
{
    struct extent_list l;
    struct df_error err;
    extent_list_init(&l, 1024);

    /* The three states, in order, contiguous from off. */
    uint32_t a[] = { 4096, 0, 8192, HOLE | ZERO, 4096, ZERO, 4096, HOLE };
    CHECK(conv(1 << 20, 20480, a, 8, &l, &err) == 20480);
    CHECK(l.n == 4 && l.v[0].off == 1 << 20 && l.v[0].state == EXT_DATA);
    CHECK(l.v[1].state == EXT_HOLE && l.v[1].len == 8192);
    CHECK(l.v[2].state == EXT_ZERO && l.v[3].state == EXT_DATA);
    CHECK(l.v[3].off + l.v[3].len == (1 << 20) + 20480);

    /* A reply past the request is clipped to it. */
    uint32_t b[] = { 0xffffffffu, HOLE | ZERO, 4096, 0 };
    CHECK(conv(0, 65536, b, 4, &l, &err) == 65536);
    CHECK(l.n == 1 && l.v[0].len == 65536);

    /* Shorter than asked: what it describes (image.c loops). */
    uint32_t c[] = { 512, 0 };
    CHECK(conv(0, 65536, c, 2, &l, &err) == 512);

    /* Nothing, a zero-length first entry: corrupt, nothing appended. */
    CHECK(conv(0, 4096, c, 0, &l, &err) < 0 && err.cat == DF_CORRUPT);
    uint32_t d[] = { 0, 0, 4096, 0 };
    CHECK(conv(0, 4096, d, 4, &l, &err) < 0 && err.cat == DF_CORRUPT);
    CHECK(l.n == 0);
    /* A lone length without flags (odd count) is ignored. */
    CHECK(conv(0, 4096, c, 1, &l, &err) < 0 && err.cat == DF_CORRUPT);
    /* A zero-length later entry ends the reply. */
    uint32_t e[] = { 4096, 0, 0, 0, 4096, ZERO };
    CHECK(conv(0, 65536, e, 6, &l, &err) == 4096 && l.n == 1);

    /* Offsets near the top of the range never wrap. */
    uint32_t f[] = { 0xffffffffu, 0 };
    CHECK(conv(UINT64_MAX - 100, 100, f, 2, &l, &err) == 100);
    CHECK(l.v[0].off + l.v[0].len == UINT64_MAX);

    /* Random hostile replies: always contiguous from off, within len. */
    unsigned seed = 1;
    for (int it = 0; it < 20000; it++) {
        uint32_t r[16];
        size_t n = (size_t)(rand_r(&seed) % 17);
        for (size_t i = 0; i < n; i++)
            r[i] = (rand_r(&seed) % 4) ? (uint32_t)rand_r(&seed) % 70000
                                       : (uint32_t)rand_r(&seed);
        uint64_t off = (uint64_t)rand_r(&seed) << 20;
        uint64_t len = 1 + (uint64_t)rand_r(&seed) % 200000;
        check_fold(off, len, r, n, &l, &err);
        int64_t got = conv(off, len, r, n, &l, &err);
        if (got < 0) {
            CHECK(err.cat == DF_CORRUPT && l.n == 0);
            continue;
        }
        CHECK(got >= 1 && (uint64_t)got <= len);
        CHECK(l.n >= 1 && l.v[0].off == off);
        CHECK(extent_list_end(&l, off) == off + (uint64_t)got);
        for (size_t i = 0; i < l.n; i++)
            CHECK(l.v[i].state == EXT_DATA || l.v[i].state == EXT_ZERO ||
                  l.v[i].state == EXT_HOLE);
    }
    extent_list_release(&l);
    test_dirty();
    return test_result("nbd_extents");
}
