/*
 * htree.h: a disk's hash tree, kept whole, for comparing two copies.
 *
 * The verification digest (util/hash.h) folds leaves into a root and
 * forgets them.  A sync keeps them: level 0 holds the hash of every
 * DIGEST_LEAF_SIZE leaf (the digest's own leaf hashes, so one read of a
 * disk gives both its digest and its tree), and level k+1 node i is
 *
 *     H(level k node 2i || level k node 2i+1)     (both exist)
 *     level k node 2i                             (the last, alone)
 *
 * up to one root.  Two trees of the same size and algorithm have the
 * same shape, and equal nodes mean equal leaves below them (up to the
 * hash), so a comparison descends only into subtrees that differ: the
 * work and, between two hosts, the hash traffic grow with the change,
 * not with the disk.
 *
 * Between two hosts the descent is a walk both sides take in step
 * (struct htree_walk): one side sends the hashes of the walk's current
 * nodes, the other answers one bit per node (differs), and both move to
 * the children HTREE_STEP levels down of the nodes that differ.  The
 * walk ends at the block level (a --block-size of 2^b leaves: level b);
 * its last differing nodes are the changed blocks.
 *
 * An all-zero leaf (a hole, a zero run, data that reads as zeros) is
 * stored as hlen zero bytes, not as its hash Z0, and a node over two
 * such children is zero bytes too: zero is the sentinel (a real hash is
 * zero with probability 2^-128), so the levels are allocated untouched
 * (mmap) and a sparse disk's tree costs no memory where it is sparse.
 * htree_leaf_hash() gives the real hash.  Both hosts use the same rule,
 * so their trees stay comparable.  Who reads a level skips what was
 * never written: one bit per HTREE_CHUNK nodes says which chunks were
 * (reading an untouched page would map it, and count as memory).
 *
 * Memory, where the disk holds data: hlen bytes per leaf and as much
 * again for the levels above: 512 KiB per GiB with XXH3-128.
 */
#ifndef DF_HTREE_H
#define DF_HTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"
#include "util/hash.h"

/* Levels descended per round of a walk (fan-out 16). */
#define HTREE_STEP 4
/* Nodes per written-or-not bit (one 4 KiB page of XXH3-128 hashes). */
#define HTREE_CHUNK 256

struct htree {
    enum digest_alg alg;
    size_t hlen;
    uint64_t size;              /* disk bytes */
    uint64_t nleaves;           /* ceil(size / DIGEST_LEAF_SIZE); >= 1 */
    unsigned nlevels;           /* level nlevels-1 is the root */
    uint64_t count[DIGEST_MAX_LEVELS];
    uint8_t *level[DIGEST_MAX_LEVELS];
    size_t maplen[DIGEST_MAX_LEVELS];   /* mmapped bytes of each level */
    uint8_t *written[DIGEST_MAX_LEVELS];  /* bit per HTREE_CHUNK nodes */
};

/* A tree of a size-byte disk with its leaves allocated (zeroed) and no
 * levels above yet.  0 or -1 (DF_IO: out of memory). */
int htree_init(struct htree *t, enum digest_alg alg, uint64_t size,
               struct df_error *err);
void htree_release(struct htree *t);

/* The stored hash of leaf i (i < nleaves): zero bytes for an all-zero
 * leaf (the sentinel).  Read only; fill with htree_set_leaf(). */
static inline const uint8_t *htree_leaf(const struct htree *t, uint64_t i)
{
    return t->level[0] + i * t->hlen;
}
/* Was chunk c (nodes [c*HTREE_CHUNK, ...)) of level lv ever written? */
static inline bool htree_chunk_written(const struct htree *t, unsigned lv,
                                       uint64_t c)
{
    return t->written[lv][c / 8] >> (c % 8) & 1;
}
/* How many leaves from i on (at most max) are the sentinel: reads only
 * chunks that were written. */
uint64_t htree_zero_run(const struct htree *t, uint64_t i, uint64_t max);
/* Leaf i's storage for n raw hashes (manifest_parse), marked written. */
uint8_t *htree_leaf_slot(struct htree *t, uint64_t i, uint64_t n);
/* The pipeline's leaf callback (job_opts.leaf_fn) into a tree. */
void htree_leaf_fn(void *tree, uint64_t i, const uint8_t *h);

/* Tell fn(ctx, i, hash) every leaf that is not the sentinel, in order
 * (what a pipeline's leaf_fn would have been told). */
void htree_tell_leaves(const struct htree *t,
                       void (*fn)(void *ctx, uint64_t i, const uint8_t *h),
                       void *ctx);

/* Store h as leaf i (the sentinel when h is the zero leaf's hash). */
void htree_set_leaf(struct htree *t, uint64_t i, const uint8_t *h);
/* Copy src's leaves into dst's (both initialised, same alg), as many
 * as both have; only those not zero are written. */
void htree_copy_leaves(struct htree *dst, const struct htree *src);
/* Leaf i's real hash (Z0 for the sentinel). */
void htree_leaf_hash(const struct htree *t, uint64_t i, uint8_t *out);
/* Is this stored hash the sentinel? */
bool htree_is_zero(const struct htree *t, const uint8_t *h);

/* Node i of level lv (after htree_build). */
static inline const uint8_t *htree_node(const struct htree *t, unsigned lv,
                                        uint64_t i)
{
    return t->level[lv] + i * t->hlen;
}

/* Compute the levels above the leaves.  0 or -1 (out of memory). */
int htree_build(struct htree *t, struct df_error *err);

/* Leaf i of a built tree as a byte range (the last one clipped). */
void htree_leaf_range(const struct htree *t, uint64_t first,
                      uint64_t nleaves, uint64_t *off, uint64_t *len);

/*
 * The ranges where a and b (built, same size and alg) differ, at block
 * granularity (block_level: a block is 2^block_level leaves), appended
 * to out (EXT_DATA, merged, ascending; clipped to the disk).  Descends
 * only into differing subtrees.  0, or -1 with err (the list's cap).
 */
int htree_diff(const struct htree *a, const struct htree *b,
               unsigned block_level, struct extent_list *out,
               struct df_error *err);

/* A block size in bytes as a level (a power of two, 64 KiB to 64 MiB);
 * -1 when it is not one. */
int htree_block_level(uint64_t block_size);

/* The walk both ends of a remote comparison take in step (header). */
struct htree_walk {
    const struct htree *t;
    unsigned level;             /* of the current nodes */
    unsigned stop;              /* block level */
    uint64_t *idx;              /* current nodes, ascending */
    size_t n, alloc;
    bool done;                  /* idx holds the differing blocks */
};

/* Start at the root (one node; or the block level if the tree is no
 * taller).  0 or -1 (out of memory). */
int htree_walk_start(struct htree_walk *w, const struct htree *t,
                     unsigned block_level, struct df_error *err);
/*
 * Move on, given one bit per current node (bit i of differ[i / 8], LSB
 * first: node i differs): the current nodes become the children
 * HTREE_STEP levels down (not below the block level) of those that
 * differ; at the block level, the walk is done and keeps only those
 * that differ.  0 or -1 (out of memory).
 */
int htree_walk_next(struct htree_walk *w, const uint8_t *differ,
                    struct df_error *err);
/* The bits for the current nodes [first, first+n) of a walk over
 * `mine`, given the other side's hashes of them (n * hlen bytes): bit
 * set where they differ.  differ holds (n + 7) / 8 bytes. */
void htree_walk_compare(const struct htree_walk *w, size_t first, size_t n,
                        const uint8_t *theirs, uint8_t *differ);
/* After done: the differing blocks as byte ranges into out (as
 * htree_diff).  0 or -1. */
int htree_walk_ranges(const struct htree_walk *w, struct extent_list *out,
                      struct df_error *err);
void htree_walk_release(struct htree_walk *w);

#endif
