/* test_extent.c: the extent list's invariants (util/extent.h). */
#include "test.h"
#include "util/extent.h"

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
    return test_result("extent");
}
