/* test_extent.c: the extent list's invariants (util/extent.h). */
#include "test.h"
#include "util/extent.h"

#include <string.h>

/* A random list over [0, U): gaps, and runs of random states. */
#define U 300
static void random_list(struct extent_list *l, unsigned *seed, int states,
                        int cell[U])
{
    struct df_error err;
    df_error_init(&err);
    extent_list_clear(l);
    for (int x = 0; x < U; x++)
        cell[x] = -1;
    for (uint64_t pos = rand_r(seed) % 5; pos < U;) {
        uint64_t len = 1 + rand_r(seed) % 20;
        if (pos + len > U)
            len = U - pos;
        enum extent_state st = (enum extent_state)(rand_r(seed) % states);
        if (rand_r(seed) % 3) {
            CHECK(extent_list_append(l, pos, len, st, "t", &err) == 0);
            for (uint64_t x = pos; x < pos + len; x++)
                cell[x] = st;
        }
        pos += len + rand_r(seed) % 4;
    }
}

/* Does l describe exactly the cells of want (-1: not described), with
 * invariants 1 and 2 kept? */
static int list_is(const struct extent_list *l, const int want[U])
{
    int got[U];
    for (int x = 0; x < U; x++)
        got[x] = -1;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].len == 0 || l->v[i].off + l->v[i].len > U)
            return 0;
        if (i && (l->v[i].off < l->v[i - 1].off + l->v[i - 1].len ||
                  (l->v[i].off == l->v[i - 1].off + l->v[i - 1].len &&
                   l->v[i].state == l->v[i - 1].state)))
            return 0;
        for (uint64_t x = l->v[i].off; x < l->v[i].off + l->v[i].len; x++)
            got[x] = (int)l->v[i].state;
    }
    for (int x = 0; x < U; x++)
        if (got[x] != want[x])
            return 0;
    return 1;
}

/* intersect, subtract and mask against a brute-force cell map. */
static void test_set_ops(void)
{
    struct extent_list a, b, out;
    struct df_error err;
    int ca[U], cb[U], want[U];
    unsigned seed = 1;

    df_error_init(&err);
    extent_list_init(&a, 0);
    extent_list_init(&b, 0);
    extent_list_init(&out, 0);
    for (int round = 0; round < 2000; round++) {
        random_list(&a, &seed, 3, ca);
        random_list(&b, &seed, 4, cb);

        CHECK(extent_list_intersect(&a, &b, &out, &err) == 0);
        for (int x = 0; x < U; x++)
            want[x] = ca[x] >= 0 && cb[x] >= 0 ? ca[x] : -1;
        CHECK(list_is(&out, want));

        CHECK(extent_list_subtract(&a, &b, &out, &err) == 0);
        for (int x = 0; x < U; x++)
            want[x] = ca[x] >= 0 && cb[x] < 0 ? ca[x] : -1;
        CHECK(list_is(&out, want));

        CHECK(extent_list_mask(&a, &b, EXT_UNCHANGED, EXT_ALL_STATES, &out,
                               &err) == 0);
        for (int x = 0; x < U; x++)
            want[x] = ca[x] < 0 ? -1 : cb[x] >= 0 ? ca[x] : EXT_UNCHANGED;
        CHECK(list_is(&out, want));

        CHECK(extent_list_mask(&a, &b, EXT_FREE, 1u << EXT_DATA, &out,
                               &err) == 0);
        for (int x = 0; x < U; x++)
            want[x] = ca[x] < 0 ? -1 : cb[x] < 0 && ca[x] == EXT_DATA
                      ? EXT_FREE : ca[x];
        CHECK(list_is(&out, want));
    }

    /* Empty operands. */
    extent_list_clear(&b);
    random_list(&a, &seed, 3, ca);
    CHECK(extent_list_intersect(&a, &b, &out, &err) == 0 && out.n == 0);
    CHECK(extent_list_subtract(&a, &b, &out, &err) == 0 && out.n == a.n);
    CHECK(extent_list_intersect(&b, &a, &out, &err) == 0 && out.n == 0);

    /* A cap on out: 1, and out holds a prefix of the answer. */
    struct extent_list small;
    extent_list_init(&small, 2);
    extent_list_clear(&a);
    extent_list_clear(&b);
    for (uint64_t i = 0; i < 10; i++)
        CHECK(extent_list_append(&a, i * 10, 5, EXT_DATA, "t", &err) == 0);
    CHECK(extent_list_append(&b, 0, 100, EXT_DATA, "t", &err) == 0);
    CHECK(extent_list_intersect(&a, &b, &small, &err) == 1);
    CHECK(small.n == 2 && extent_list_end(&small, 0) == 15);
    CHECK(err.cat == DF_OK);
    CHECK(!strcmp(extent_state_name(EXT_FREE), "free"));
    CHECK(!strcmp(extent_state_name(EXT_UNCHANGED), "unchanged"));

    extent_list_release(&small);
    extent_list_release(&a);
    extent_list_release(&b);
    extent_list_release(&out);
}

int main(void)
{
    struct extent_list l;
    struct df_error err;

    df_error_init(&err);
    extent_list_init(&l, 3);
    CHECK(extent_list_append(&l, 0, 10, EXT_DATA, "t", &err) == 0);
    CHECK(extent_list_append(&l, 10, 5, EXT_DATA, "t", &err) == 0);
    CHECK(l.n == 1 && l.v[0].len == 15);            /* merged */
    CHECK(extent_list_append(&l, 20, 5, EXT_DATA, "t", &err) == 0);
    CHECK(l.n == 2);                                 /* gap: not merged */
    CHECK(extent_list_append(&l, 25, 5, EXT_HOLE, "t", &err) == 0);
    CHECK(l.n == 3);
    CHECK(extent_list_append(&l, 30, 5, EXT_ZERO, "t", &err) == 1);
    CHECK(l.n == 3 && err.cat == DF_OK);            /* cap: not an error */
    CHECK(extent_list_append(&l, 30, 5, EXT_HOLE, "t", &err) == 0);
    CHECK(l.n == 3 && l.v[2].len == 10);            /* merge at the cap */
    CHECK(extent_list_end(&l, 0) == 35);
    CHECK(extent_list_bytes(&l, EXT_DATA) == 20);
    CHECK(extent_list_bytes(&l, EXT_HOLE) == 10);

    /* Out of order, overlapping, empty, overflowing: refused. */
    CHECK(extent_list_append(&l, 34, 5, EXT_ZERO, "t", &err) == -1);
    CHECK(err.cat == DF_CORRUPT);
    df_error_init(&err);
    CHECK(extent_list_append(&l, 40, 0, EXT_ZERO, "t", &err) == -1);
    df_error_init(&err);
    CHECK(extent_list_append(&l, UINT64_MAX - 1, 5, EXT_ZERO, "t",
                             &err) == -1);
    df_error_init(&err);
    extent_list_clear(&l);
    CHECK(l.n == 0 && extent_list_end(&l, 7) == 7);
    extent_list_release(&l);

    /* Growth past the initial allocation. */
    extent_list_init(&l, 0);
    for (uint64_t i = 0; i < 10000; i++)
        CHECK(extent_list_append(&l, i * 2, 1, i % 2 ? EXT_DATA : EXT_ZERO,
                                 "t", &err) == 0);
    CHECK(l.n == 10000);
    extent_list_release(&l);

    test_set_ops();
    return test_result("extent");
}
