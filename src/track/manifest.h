/*
 * manifest.h: what a copy or sync wrote, kept for the next sync.
 *
 * A manifest records, for one destination, the hash of every
 * DIGEST_LEAF_SIZE leaf of what was written, the digest those leaves
 * make (util/hash.h), the destination's identity and the source it was
 * written from.  `--write-manifest FILE` keeps one where the user says;
 * every copy and sync also keeps one as the destination's state record,
 * in diskferry's state directory on the destination's host (never
 * beside the file), named after the destination's identity.  A later
 * `sync` hashes only the source and sends the leaves whose hash
 * differs; `verify --manifest` checks a backup against it.
 *
 * The file (little endian):
 *
 *   0   8   magic "DFMANIF1"
 *   8   4   version (1)
 *   12  4   alg (enum digest_alg)
 *   16  8   disk size in bytes
 *   24  8   nleaves = ceil(size / 64 KiB), at least 1
 *   32  4   leaf size (65536)
 *   36  4   identity length I (<= MANIFEST_MAX_STR)
 *   40  4   source length S (<= MANIFEST_MAX_STR)
 *   44  4   source layer length L (<= MANIFEST_MAX_STR)
 *   48  32  digest (the first digest_len(alg) bytes)
 *   80  I   destination identity (text, no NUL)
 *   ..  S   source (text, no NUL)
 *   ..  L   the source's layer identity (text, no NUL; "" when it has
 *           none): what a delta made on that source names as its
 *           parent (image.h layer_id; sync --changes top-layer)
 *   ..      the leaf hashes, in order, as runs until nleaves are told:
 *           u8 0, u64 n        n all-zero leaves (n >= 1)
 *           u8 1, u32 n, n x hlen  n leaf hashes (n >= 1; none of them
 *                              zero bytes, htree.h's sentinel)
 *   ..  hlen  H(every byte before), the file's own check
 *
 * Read as hostile: every length is checked against the file's size and
 * the leaves left to tell, the check must match, and the digest must be
 * the one the leaves make.
 * Written to a temporary name in the same directory, made durable and
 * renamed over the old one: a crash leaves the old manifest or the new.
 */
#ifndef DF_MANIFEST_H
#define DF_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>

#include "track/htree.h"
#include "util/error.h"
#include "util/hash.h"

#define MANIFEST_MAGIC "DFMANIF1"
#define MANIFEST_VERSION 1
#define MANIFEST_MAX_STR 4096
#define MANIFEST_HDR_LEN 80

struct manifest {
    struct htree tree;          /* leaves; built by manifest_read */
    struct digest digest;
    char id[MANIFEST_MAX_STR + 1];      /* destination identity */
    char src[MANIFEST_MAX_STR + 1];     /* written from */
    char src_layer[MANIFEST_MAX_STR + 1];   /* its layer_id, or "" */
};

/* Read FILE (dirfd-relative when dirfd >= 0 and name is relative).
 * 0; 1 when it does not exist (ENOENT, nothing set); -1 with err:
 * DF_CORRUPT naming the file and offset for a bad one, DF_IO. */
int manifest_read(int dirfd, const char *name, struct manifest *m,
                  struct df_error *err);
/* Parse a manifest held in memory (the fuzz target's entry). */
int manifest_parse(const uint8_t *buf, uint64_t len, const char *name,
                   struct manifest *m, struct df_error *err);
/* Write m (its tree's leaves, digest, id, src) to FILE, atomically and
 * durably (header).  0 or -1 with err. */
int manifest_write(int dirfd, const char *name, const struct manifest *m,
                   struct df_error *err);
void manifest_release(struct manifest *m);
/* The digest (util/hash.h) that t's leaves make. */
void manifest_leaves_digest(const struct htree *t, struct digest *out);

/* The state record's file name of a destination identity, in the
 * state directory (util/file.h state_dir_open). */
void manifest_record_name(const char *id, char *out, size_t len);

#endif
