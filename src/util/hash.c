/*
 * hash.c: leaf and node hashing and the streaming digest tree (hash.h).
 */
#include "hash.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "bytes.h"

size_t digest_len(enum digest_alg alg)
{
    return alg == DIGEST_SHA256 ? 32 : 16;
}

const char *digest_alg_name(enum digest_alg alg)
{
    return alg == DIGEST_SHA256 ? "sha256" : "xxh128";
}

int digest_alg_parse(const char *name, enum digest_alg *alg)
{
    if (!strcmp(name, "xxh128") || !strcmp(name, "xxh3") ||
        !strcmp(name, "xxh3-128")) {
        *alg = DIGEST_XXH128;
        return 0;
    }
    if (!strcmp(name, "sha256") || !strcmp(name, "sha-256")) {
        *alg = DIGEST_SHA256;
        return 0;
    }
    return -1;
}

void digest_hex(const struct digest *d, char *buf)
{
    for (size_t i = 0; i < d->len; i++)
        sprintf(buf + 2 * i, "%02x", d->bytes[i]);
    buf[2 * d->len] = '\0';
}

static void sha256(const void *buf, size_t len, uint8_t *out)
{
    unsigned int n = 32;
    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

void digest_buf(enum digest_alg alg, const void *buf, size_t len,
                uint8_t *out)
{
    if (alg == DIGEST_SHA256) {
        sha256(buf, len, out);
    } else {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(buf, len));
        memcpy(out, c.digest, 16);
    }
}

static const uint8_t zero_leaf_bytes[DIGEST_LEAF_SIZE];

void digest_leaf(enum digest_alg alg, const void *buf, size_t len,
                 uint8_t *out)
{
    if (len == DIGEST_LEAF_SIZE) {
        digest_buf(alg, buf, len, out);
        return;
    }
    /* The last leaf of a disk: pad with zeros (hash.h). */
    uint8_t *tmp = malloc(DIGEST_LEAF_SIZE);
    if (!tmp) {     /* cannot happen in practice; hash in two steps */
        memset(out, 0xff, digest_len(alg));
        return;
    }
    memcpy(tmp, buf, len);
    memset(tmp + len, 0, DIGEST_LEAF_SIZE - len);
    digest_buf(alg, tmp, DIGEST_LEAF_SIZE, out);
    free(tmp);
}

static void digest_node(enum digest_alg alg, const uint8_t *l,
                        const uint8_t *r, uint8_t *out)
{
    uint8_t both[2 * DIGEST_MAX_LEN];
    size_t n = digest_len(alg);
    memcpy(both, l, n);
    memcpy(both + n, r, n);
    digest_buf(alg, both, 2 * n, out);
}

static uint8_t zero_nodes[3][DIGEST_MAX_LEVELS + 1][DIGEST_MAX_LEN];
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_nodes_init(void)
{
    enum digest_alg algs[] = { DIGEST_XXH128, DIGEST_SHA256 };
    for (size_t a = 0; a < 2; a++) {
        enum digest_alg alg = algs[a];
        digest_buf(alg, zero_leaf_bytes, DIGEST_LEAF_SIZE,
                   zero_nodes[alg][0]);
        for (unsigned l = 1; l <= DIGEST_MAX_LEVELS; l++)
            digest_node(alg, zero_nodes[alg][l - 1], zero_nodes[alg][l - 1],
                        zero_nodes[alg][l]);
    }
}

const uint8_t *digest_zero_node(enum digest_alg alg, unsigned level)
{
    pthread_once(&zero_once, zero_nodes_init);
    return zero_nodes[alg][level];
}

void digest_tree_init(struct digest_tree *t, enum digest_alg alg)
{
    memset(t, 0, sizeof(*t));
    t->alg = alg;
}

/* Push a complete subtree of 2^level leaves, merging equal levels. */
static void tree_push(struct digest_tree *t, unsigned level,
                      const uint8_t *h)
{
    uint8_t cur[DIGEST_MAX_LEN];
    size_t n = digest_len(t->alg);
    memcpy(cur, h, n);
    while (t->depth && t->level[t->depth - 1] == level) {
        digest_node(t->alg, t->hash[t->depth - 1], cur, cur);
        t->depth--;
        level++;
    }
    t->level[t->depth] = (uint8_t)level;
    memcpy(t->hash[t->depth], cur, n);
    t->depth++;
}

void digest_tree_add_leaf(struct digest_tree *t, const uint8_t *leaf_hash)
{
    tree_push(t, 0, leaf_hash);
    t->nleaves++;
}

void digest_tree_add_zero_leaves(struct digest_tree *t, uint64_t n)
{
    while (n) {
        /* Largest aligned all-zero subtree that fits. */
        unsigned k = t->nleaves ? (unsigned)__builtin_ctzll(t->nleaves) : 63;
        unsigned fit = 63 - (unsigned)__builtin_clzll(n);
        if (k > fit)
            k = fit;
        tree_push(t, k, digest_zero_node(t->alg, k));
        t->nleaves += 1ull << k;
        n -= 1ull << k;
    }
}

void digest_tree_final(const struct digest_tree *t, uint64_t disk_size,
                       struct digest *out)
{
    struct digest_tree c = *t;
    size_t n = digest_len(t->alg);
    uint8_t buf[DIGEST_MAX_LEN + 13];

    if (!c.depth)
        tree_push(&c, 0, digest_zero_node(c.alg, 0));
    while (c.depth > 1) {
        unsigned l = c.level[c.depth - 1];
        tree_push(&c, l, digest_zero_node(c.alg, l));
    }
    memcpy(buf, c.hash[0], n);
    put_le64(buf + n, disk_size);
    put_le32(buf + n + 8, DIGEST_LEAF_SIZE);
    buf[n + 12] = (uint8_t)t->alg;
    out->alg = t->alg;
    out->len = n;
    digest_buf(t->alg, buf, n + 13, out->bytes);
}
