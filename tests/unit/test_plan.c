/*
 * test_plan.c: plan_window() (engine/plan.h) against a brute-force
 * cell map: random source maps, change lists and used maps, small caps.
 */
#include "test.h"
#include "engine/plan.h"

#define U 400

/* A random map covering [0, U) without gaps, as image_map answers. */
static void random_map(struct extent_list *l, unsigned *seed, int cell[U])
{
    struct df_error err;
    df_error_init(&err);
    extent_list_clear(l);
    for (uint64_t pos = 0; pos < U;) {
        uint64_t len = 1 + rand_r(seed) % 30;
        if (pos + len > U)
            len = U - pos;
        enum extent_state st = (enum extent_state)(rand_r(seed) % 3);
        CHECK(extent_list_append(l, pos, len, st, "t", &err) == 0);
        for (uint64_t x = pos; x < pos + len; x++)
            cell[x] = st;
        pos += len;
    }
}

/* A random set of ranges (gaps between them). */
static void random_set(struct extent_list *l, unsigned *seed, int in[U])
{
    struct df_error err;
    df_error_init(&err);
    extent_list_clear(l);
    for (int x = 0; x < U; x++)
        in[x] = 0;
    for (uint64_t pos = rand_r(seed) % 10; pos < U;) {
        uint64_t len = 1 + rand_r(seed) % 25;
        if (pos + len > U)
            len = U - pos;
        CHECK(extent_list_append(l, pos, len, EXT_DATA, "t", &err) == 0);
        for (uint64_t x = pos; x < pos + len; x++)
            in[x] = 1;
        pos += len + 1 + rand_r(seed) % 25;
    }
}

/* A used map over a fixed list, answering in pieces of at most cap. */
struct fixed_used {
    struct used_map um;
    struct extent_list l;
};

static int fixed_used(struct used_map *um, uint64_t off, uint64_t len,
                      struct extent_list *out, struct df_error *err)
{
    struct fixed_used *f = um->priv;
    for (size_t i = 0; i < f->l.n; i++) {
        uint64_t a = f->l.v[i].off, b = a + f->l.v[i].len;
        if (b <= off || a >= off + len)
            continue;
        a = a < off ? off : a;
        b = b > off + len ? off + len : b;
        int rc = extent_list_append(out, a, b - a, EXT_DATA, "u", err);
        if (rc)
            return rc;
    }
    return 0;
}

static void fixed_close(struct used_map *um)
{
    (void)um;
}

int main(void)
{
    struct extent_list map, c1, c2, u1, out;
    struct df_error err;
    int cmap[U], in1[U], in2[U], used[U];
    unsigned seed = 7;

    df_error_init(&err);
    extent_list_init(&map, 0);
    extent_list_init(&c1, 0);
    extent_list_init(&c2, 0);
    extent_list_init(&u1, 0);
    for (int round = 0; round < 1500; round++) {
        random_map(&map, &seed, cmap);
        random_set(&c1, &seed, in1);
        random_set(&c2, &seed, in2);
        struct fixed_used fu = { .um = { .name = "ext4", .used = fixed_used,
                                         .close = fixed_close } };
        fu.um.priv = &fu;
        extent_list_init(&fu.l, 0);
        random_set(&fu.l, &seed, used);

        struct change_source *cs[2];
        cs[0] = change_source_from_list("a", &c1, &err);
        cs[1] = change_source_from_list("b", &c2, &err);
        CHECK(cs[0] && cs[1]);
        struct used_map *ums[1] = { &fu.um };
        unsigned nc = round % 3, nu = round % 2;
        struct plan_inputs in = { .changes = cs, .nchanges = nc,
                                  .used = ums, .nused = nu };

        /* Ask window by window, with a small out cap, as a caller
         * does; stitch the answers together. */
        size_t cap = round % 4 ? 1000 : 3;
        int got[U];
        for (int x = 0; x < U; x++)
            got[x] = -1;
        uint64_t pos = 0, steps = 0;
        extent_list_init(&out, cap);
        while (pos < U && steps++ < 10 * U) {
            struct extent_list win;
            extent_list_init(&win, 0);
            for (size_t i = 0; i < map.n; i++) {
                uint64_t a = map.v[i].off, b = a + map.v[i].len;
                if (b <= pos)
                    continue;
                CHECK(extent_list_append(&win, a < pos ? pos : a,
                                         b - (a < pos ? pos : a),
                                         map.v[i].state, "t", &err) == 0);
            }
            CHECK(plan_window(&win, &in, pos, U - pos, &out, &err) == 0);
            uint64_t end = extent_list_end(&out, pos);
            CHECK(end > pos);
            CHECK(out.n == 0 || out.v[0].off == pos);
            for (size_t i = 0; i < out.n; i++) {
                if (i)
                    CHECK(out.v[i].off == out.v[i - 1].off +
                          out.v[i - 1].len);
                for (uint64_t x = out.v[i].off;
                     x < out.v[i].off + out.v[i].len; x++)
                    got[x] = (int)out.v[i].state;
            }
            extent_list_release(&win);
            if (end <= pos)
                break;
            pos = end;
        }
        extent_list_release(&out);

        int ok = 1;
        for (int x = 0; x < U; x++) {
            int want = cmap[x];
            bool changed = (nc < 1 || in1[x]) && (nc < 2 || in2[x]);
            if (!changed)
                want = want == EXT_ZERO || want == EXT_HOLE
                           ? EXT_UNCHANGED_ZERO : EXT_UNCHANGED;
            /* free, changed or not: DST is zero there (plan.h) */
            if (nu && !used[x] &&
                (want == EXT_DATA || want == EXT_UNCHANGED))
                want = EXT_FREE;
            if (got[x] != want)
                ok = 0;
        }
        CHECK(ok);
        change_source_close(cs[0]);
        change_source_close(cs[1]);
        extent_list_release(&fu.l);
    }
    extent_list_release(&map);
    extent_list_release(&c1);
    extent_list_release(&c2);
    extent_list_release(&u1);

    /* A resume's missing ranges: the complement of the done list. */
    struct extent_list done, q;
    extent_list_init(&done, 16);
    extent_list_init(&q, 16);
    CHECK(extent_list_append(&done, 0, 10, EXT_DATA, "t", &err) == 0);
    CHECK(extent_list_append(&done, 50, 25, EXT_DATA, "t", &err) == 0);
    CHECK(extent_list_append(&done, 90, 10, EXT_DATA, "t", &err) == 0);
    struct change_source *miss = change_source_missing("resume", 100, &done,
                                                       &err);
    CHECK(miss != NULL);
    CHECK(miss->changed(miss, 0, 100, &q, &err) == 0);
    CHECK(q.n == 2 && q.v[0].off == 10 && q.v[0].len == 40 &&
          q.v[1].off == 75 && q.v[1].len == 15);
    extent_list_clear(&q);
    CHECK(miss->changed(miss, 60, 40, &q, &err) == 0);
    CHECK(q.n == 1 && q.v[0].off == 75 && q.v[0].len == 15);
    change_source_close(miss);
    extent_list_clear(&done);
    miss = change_source_missing("resume", 100, &done, &err);
    extent_list_clear(&q);
    CHECK(miss && miss->changed(miss, 0, 100, &q, &err) == 0);
    CHECK(q.n == 1 && q.v[0].off == 0 && q.v[0].len == 100);
    change_source_close(miss);
    extent_list_release(&done);
    extent_list_release(&q);
    return test_result("plan");
}
