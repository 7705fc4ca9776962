/*
 * hash.h: block hashes and the verification digest.
 *
 * The digest of a disk is the root of a binary hash tree over fixed
 * 64 KiB leaves (DIGEST_LEAF_SIZE):
 *
 *   leaf i  = H(bytes [i*64K, (i+1)*64K), the last one padded with zeros)
 *   node    = H(left || right)
 *   the leaves are padded with zero leaves to a power of two, so an
 *   all-zero subtree of 2^k leaves has a constant hash Z[k] and a hole
 *   costs O(log n) to account for, not a read;
 *   digest  = H(root || u64le disk size || u32le leaf size || u8 alg)
 *
 * H is XXH3-128 (default: catches accidental corruption at memory speed)
 * or SHA-256 (--digest sha256: a cryptographic digest to keep as
 * evidence).  Leaves are fed in order; digest_tree keeps one hash per
 * tree level, so memory is O(log n) whatever the disk size.
 */
#ifndef DF_HASH_H
#define DF_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIGEST_LEAF_SIZE (64u * 1024)
#define DIGEST_MAX_LEN 32
#define DIGEST_MAX_LEVELS 64

enum digest_alg { DIGEST_XXH128 = 1, DIGEST_SHA256 = 2 };

struct digest {
    enum digest_alg alg;
    size_t len;
    uint8_t bytes[DIGEST_MAX_LEN];
};

size_t digest_len(enum digest_alg alg);
const char *digest_alg_name(enum digest_alg alg);
/* "xxh128" / "xxh3" / "sha256"; -1 when unknown. */
int digest_alg_parse(const char *name, enum digest_alg *alg);
/* Hex text of d into buf (at least 2*DIGEST_MAX_LEN+1 bytes). */
void digest_hex(const struct digest *d, char *buf);

/* H over one leaf: len <= DIGEST_LEAF_SIZE, padded with zeros. */
void digest_leaf(enum digest_alg alg, const void *buf, size_t len,
                 uint8_t *out);
/* Z[level]: the hash of an all-zero subtree of 2^level leaves. */
const uint8_t *digest_zero_node(enum digest_alg alg, unsigned level);
/* Plain H over a buffer (protocol checks, manifests). */
void digest_buf(enum digest_alg alg, const void *buf, size_t len,
                uint8_t *out);

struct digest_tree {
    enum digest_alg alg;
    uint64_t nleaves;
    unsigned depth;                         /* entries on the stack */
    uint8_t level[DIGEST_MAX_LEVELS + 1];
    uint8_t hash[DIGEST_MAX_LEVELS + 1][DIGEST_MAX_LEN];
};

void digest_tree_init(struct digest_tree *t, enum digest_alg alg);
void digest_tree_add_leaf(struct digest_tree *t, const uint8_t *leaf_hash);
/* n consecutive all-zero leaves, in O(log^2 n). */
void digest_tree_add_zero_leaves(struct digest_tree *t, uint64_t n);
void digest_tree_final(const struct digest_tree *t, uint64_t disk_size,
                       struct digest *out);

#endif
