/*
 * test_htree_walk.c: the walk two hosts take in step (track/htree.h)
 * against htree_diff() on random trees of odd sizes, block levels 0..3,
 * one round's bits gathered from chunks of odd sizes as serve answers
 * them; and the TREE_* messages' decoding (proto/msg.h).
 */
#include <string.h>

#include "test.h"
#include "proto/msg.h"
#include "track/htree.h"
#include "util/bytes.h"

static bool same_list(const struct extent_list *a, const struct extent_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].off != b->v[i].off || a->v[i].len != b->v[i].len)
            return false;
    return true;
}

/* The walk over a (the client's) and b (serve's) in step; serve answers
 * in chunks of `chunk` nodes.  The result lands in out. */
static void walk_both(const struct htree *a, const struct htree *b,
                      unsigned bl, size_t chunk, struct extent_list *out,
                      unsigned *rounds)
{
    struct htree_walk wa, wb;
    struct df_error err;
    df_error_init(&err);
    CHECK(htree_walk_start(&wa, a, bl, &err) == 0);
    CHECK(htree_walk_start(&wb, b, bl, &err) == 0);
    *rounds = 0;
    while (!wa.done && wa.n) {
        CHECK(wa.n == wb.n && wa.level == wb.level);
        uint8_t *hashes = malloc(wa.n * a->hlen);
        uint8_t *bits = calloc((wa.n + 7) / 8, 1);
        uint8_t *part = malloc((chunk + 7) / 8);
        for (size_t i = 0; i < wa.n; i++)
            memcpy(hashes + i * a->hlen, htree_node(a, wa.level, wa.idx[i]),
                   a->hlen);
        for (size_t first = 0; first < wa.n; first += chunk) {
            size_t n = wa.n - first < chunk ? wa.n - first : chunk;
            htree_walk_compare(&wb, first, n, hashes + first * a->hlen,
                               part);
            for (size_t i = 0; i < n; i++)
                if (part[i / 8] >> (i % 8) & 1)
                    bits[(first + i) / 8] |= (uint8_t)(1u << ((first + i) % 8));
        }
        CHECK(htree_walk_next(&wa, bits, &err) == 0);
        CHECK(htree_walk_next(&wb, bits, &err) == 0);
        free(hashes);
        free(bits);
        free(part);
        ++*rounds;
        CHECK(*rounds < 64);
        if (*rounds >= 64)
            break;
    }
    CHECK(wb.done == wa.done && wb.n == wa.n);
    CHECK(htree_walk_ranges(&wa, out, &err) == 0);
    htree_walk_release(&wa);
    htree_walk_release(&wb);
}

static void test_walk(void)
{
    static const uint64_t sizes[] = {
        1, 4096, 65536, 65537, 3 * 65536 + 5, 17 * 65536, 100 * 65536 - 1,
        1023 * 65536 + 123, 4097 * 65536,
    };
    static const size_t chunks[] = { 1, 3, 8, 13, 65536 };
    unsigned seed = 1;
    struct df_error err;
    df_error_init(&err);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (int alg = DIGEST_XXH128; alg <= DIGEST_SHA256; alg++)
            for (int change = 0; change < 4; change++) {
                struct htree a, b;
                CHECK(htree_init(&a, alg, sizes[si], &err) == 0);
                CHECK(htree_init(&b, alg, sizes[si], &err) == 0);
                uint8_t *la = htree_leaf_slot(&a, 0, a.nleaves);
                for (uint64_t i = 0; i < a.nleaves * a.hlen; i++)
                    la[i] = (uint8_t)rand_r(&seed);
                memcpy(htree_leaf_slot(&b, 0, b.nleaves), la,
                       a.nleaves * a.hlen);
                /* none, one, a few, about a third of the leaves */
                uint64_t nch = change == 0 ? 0 : change == 1 ? 1
                             : change == 2 ? 1 + a.nleaves / 50
                                           : 1 + a.nleaves / 3;
                for (uint64_t k = 0; k < nch; k++)
                    htree_leaf_slot(&b, (uint64_t)rand_r(&seed) % b.nleaves,
                                    1)[0] ^= (uint8_t)(1 + k % 255);
                CHECK(htree_build(&a, &err) == 0);
                CHECK(htree_build(&b, &err) == 0);
                for (unsigned bl = 0; bl <= 3; bl++) {
                    struct extent_list want, got;
                    unsigned rounds;
                    extent_list_init(&want, EXTENT_LIST_DEFAULT_CAP);
                    CHECK(htree_diff(&a, &b, bl, &want, &err) == 0);
                    CHECK((want.n == 0) == (change == 0));
                    size_t chunk = chunks[(si + change + bl) %
                                          (sizeof(chunks) / sizeof(chunks[0]))];
                    extent_list_init(&got, EXTENT_LIST_DEFAULT_CAP);
                    walk_both(&a, &b, bl, chunk, &got, &rounds);
                    CHECK(same_list(&want, &got));
                    if (!same_list(&want, &got))
                        fprintf(stderr, "size %llu alg %d change %d bl %u: "
                                "%zu ranges, walk %zu\n",
                                (unsigned long long)sizes[si], alg, change,
                                bl, want.n, got.n);
                    if (change == 0)
                        CHECK(rounds == 1);     /* the roots agree */
                    extent_list_release(&want);
                    extent_list_release(&got);
                }
                htree_release(&a);
                htree_release(&b);
            }
}

static int dec(uint8_t type, const uint8_t *p, size_t len)
{
    static struct msg m;
    struct df_error err;
    df_error_init(&err);
    return msg_decode(type, p, len, &m, "peer", &err);
}

static void test_messages(void)
{
    uint8_t p[64 + 32 * 2];
    memset(p, 0, sizeof(p));
    /* TREE_REQ: alg, block level */
    p[0] = 1; p[1] = 0;
    CHECK(dec(MSG_TREE_REQ, p, 2) == 0);
    p[0] = 3;
    CHECK(dec(MSG_TREE_REQ, p, 2) < 0);
    p[0] = 2; p[1] = MSG_TREE_MAX_BLOCK_LEVEL + 1;
    CHECK(dec(MSG_TREE_REQ, p, 2) < 0);
    p[1] = 0;
    CHECK(dec(MSG_TREE_REQ, p, 3) < 0);         /* trailing */
    /* TREE_BITS: first, n, (n + 7) / 8 bytes, unused bits 0 */
    put_le64(p, 0);
    put_le32(p + 8, 9);
    p[12] = 0xff; p[13] = 0x01;
    CHECK(dec(MSG_TREE_BITS, p, 14) == 0);
    CHECK(dec(MSG_TREE_BITS, p, 15) < 0);       /* trailing */
    CHECK(dec(MSG_TREE_BITS, p, 13) < 0);       /* short */
    p[13] = 0x03;
    CHECK(dec(MSG_TREE_BITS, p, 14) < 0);       /* bit 9 of 9 nodes */
    put_le32(p + 8, 0);
    CHECK(dec(MSG_TREE_BITS, p, 12) < 0);       /* no nodes */
    put_le32(p + 8, MSG_TREE_MAX_NODES + 1);
    CHECK(dec(MSG_TREE_BITS, p, 12) < 0);
    put_le64(p, UINT64_MAX);
    put_le32(p + 8, 2);
    p[12] = 0;
    CHECK(dec(MSG_TREE_BITS, p, 13) < 0);       /* first + n wraps */
    /* TREE_HASHES: n hashes of 16 or 32 bytes, nothing else */
    put_le64(p, 0);
    put_le32(p + 8, 2);
    CHECK(dec(MSG_TREE_HASHES, p, 12 + 32) == 0);
    CHECK(dec(MSG_TREE_HASHES, p, 12 + 64) == 0);
    CHECK(dec(MSG_TREE_HASHES, p, 12 + 33) < 0);
    CHECK(dec(MSG_TREE_HASHES, p, 12 + 16) < 0);
    /* TREE: size, digest, bytes read */
    put_le64(p, 1 << 20);
    p[8] = 1; p[9] = 16;
    put_le64(p + 26, 0);
    CHECK(dec(MSG_TREE, p, 34) == 0);
    CHECK(dec(MSG_TREE, p, 35) < 0);
    p[9] = 33;
    CHECK(dec(MSG_TREE, p, 34) < 0);
    CHECK(!strcmp(msg_type_name(MSG_TREE_BITS), "TREE_BITS"));
}

int main(void)
{
    test_walk();
    test_messages();
    return test_result("htree_walk");
}
