/*
 * test_hash.c: the digest tree (util/hash.h): a streaming tree equals a
 * tree computed naively over all leaves; zero runs added in bulk equal
 * zero leaves added one by one; size and algorithm change the digest;
 * known SHA-256 vector.
 */
#include <string.h>

#include "test.h"
#include "util/hash.h"

/* Naive: all leaf hashes in an array, padded to a power of two. */
static void naive_root(enum digest_alg alg, uint8_t (*leaves)[32],
                       uint64_t n, uint64_t size, struct digest *out)
{
    size_t hl = digest_len(alg);
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    uint8_t (*lv)[32] = calloc(p, 32);
    for (uint64_t i = 0; i < p; i++)
        memcpy(lv[i], i < n ? leaves[i] : digest_zero_node(alg, 0), hl);
    while (p > 1) {
        for (uint64_t i = 0; i < p / 2; i++) {
            uint8_t both[64];
            memcpy(both, lv[2 * i], hl);
            memcpy(both + hl, lv[2 * i + 1], hl);
            digest_buf(alg, both, 2 * hl, lv[i]);
        }
        p /= 2;
    }
    uint8_t fin[32 + 13];
    memcpy(fin, lv[0], hl);
    for (int i = 0; i < 8; i++)
        fin[hl + i] = (uint8_t)(size >> (8 * i));
    for (int i = 0; i < 4; i++)
        fin[hl + 8 + i] = (uint8_t)(DIGEST_LEAF_SIZE >> (8 * i));
    fin[hl + 12] = (uint8_t)alg;
    out->alg = alg;
    out->len = hl;
    digest_buf(alg, fin, hl + 13, out->bytes);
    free(lv);
}

int main(void)
{
    enum digest_alg algs[] = { DIGEST_XXH128, DIGEST_SHA256 };
    uint8_t (*leaves)[32] = calloc(300, 32);

    for (size_t a = 0; a < 2; a++) {
        enum digest_alg alg = algs[a];
        size_t hl = digest_len(alg);
        for (uint64_t n = 1; n < 300; n += (n < 20 ? 1 : 37)) {
            struct digest_tree t, tz;
            struct digest d1, d2, d3;
            digest_tree_init(&t, alg);
            digest_tree_init(&tz, alg);
            for (uint64_t i = 0; i < n; i++) {
                bool zero = (i * 7 + n) % 3 == 0;
                if (zero) {
                    memcpy(leaves[i], digest_zero_node(alg, 0), hl);
                    digest_tree_add_zero_leaves(&tz, 1);
                } else {
                    uint8_t block[64];
                    memset(block, (int)(i + 1), sizeof(block));
                    digest_leaf(alg, block, sizeof(block), leaves[i]);
                    digest_tree_add_leaf(&tz, leaves[i]);
                }
                digest_tree_add_leaf(&t, leaves[i]);
            }
            uint64_t size = n * DIGEST_LEAF_SIZE - 100;
            digest_tree_final(&t, size, &d1);
            digest_tree_final(&tz, size, &d2);
            naive_root(alg, leaves, n, size, &d3);
            CHECK(!memcmp(d1.bytes, d3.bytes, hl));
            CHECK(!memcmp(d2.bytes, d3.bytes, hl));
            digest_tree_final(&t, size + 1, &d2);
            CHECK(memcmp(d1.bytes, d2.bytes, hl) != 0);
        }
        /* A long zero run in bulk equals one leaf at a time. */
        struct digest_tree t1, t2;
        struct digest d1, d2;
        uint8_t one[32];
        memset(one, 0x5a, sizeof(one));
        digest_tree_init(&t1, alg);
        digest_tree_init(&t2, alg);
        digest_tree_add_leaf(&t1, one);
        digest_tree_add_leaf(&t2, one);
        digest_tree_add_zero_leaves(&t1, 1000);
        for (int i = 0; i < 1000; i++)
            digest_tree_add_leaf(&t2, digest_zero_node(alg, 0));
        digest_tree_add_leaf(&t1, one);
        digest_tree_add_leaf(&t2, one);
        digest_tree_final(&t1, 1002 * (uint64_t)DIGEST_LEAF_SIZE, &d1);
        digest_tree_final(&t2, 1002 * (uint64_t)DIGEST_LEAF_SIZE, &d2);
        CHECK(!memcmp(d1.bytes, d2.bytes, hl));
        /* 2^40 zero leaves cost O(log) steps. */
        digest_tree_init(&t1, alg);
        digest_tree_add_zero_leaves(&t1, 1ull << 40);
        CHECK(t1.nleaves == 1ull << 40 && t1.depth == 1);
    }
    /* A partial leaf is padded with zeros. */
    uint8_t a[DIGEST_LEAF_SIZE] = { 1, 2, 3 }, h1[32], h2[32];
    digest_leaf(DIGEST_SHA256, a, 3, h1);
    digest_leaf(DIGEST_SHA256, a, DIGEST_LEAF_SIZE, h2);
    CHECK(!memcmp(h1, h2, 32));
    /* SHA-256("abc"). */
    uint8_t s[32];
    static const uint8_t abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
    digest_buf(DIGEST_SHA256, "abc", 3, s);
    CHECK(!memcmp(s, abc, 32));
    enum digest_alg alg;
    CHECK(digest_alg_parse("sha256", &alg) == 0 && alg == DIGEST_SHA256);
    CHECK(digest_alg_parse("xxh128", &alg) == 0 && alg == DIGEST_XXH128);
    CHECK(digest_alg_parse("md5", &alg) < 0);
    free(leaves);
    return test_result("hash");
}
