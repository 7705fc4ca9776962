/*
 * sink.h: where the engine's pipeline delivers a disk: a local image
 * (raw file or device, a new qcow2), stdout, or a remote `serve`.
 *
 * Contract (the engine keeps it, every sink may rely on it):
 *  1. write() and zero() calls come from one thread, in ascending offset
 *     order, never overlapping, and together they cover every byte of
 *     [0, disk size) that the destination must hold.  Ranges the plan
 *     skips (unchanged since the last sync) are simply not delivered.
 *     Exception: a sink that sets parallel_write receives write() calls
 *     from the worker threads, concurrently and in any order (still
 *     never overlapping); its zero() calls keep the rule above.  Local
 *     files and devices take this: the thread that read a block writes
 *     it while it is still in that core's cache.
 *  2. zero(off, len): afterwards [off, off+len) must read as zeros.  A
 *     sink whose destination is known to be zero there (freshly created,
 *     sink->dst_is_zero) does nothing; others punch, BLKZEROOUT, send a
 *     zero message, or write zeros (a stream).
 *  3. finish() hands everything to the destination (and with durable,
 *     waits until it is on stable storage); digest() then computes the
 *     verification digest (util/hash.h) of [0, size) from what the
 *     destination holds, read back where it lives.
 *  4. A sink that fails keeps its error; the engine stops at once and
 *     calls abort_job() (may be NULL) before free().
 */
#ifndef DF_SINK_H
#define DF_SINK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/file.h"
#include "util/hash.h"

struct sink;
struct image;
struct plan_inputs;
struct fs_layout;

struct sink_ops {
    const char *name;
    int (*write)(struct sink *s, uint64_t off, const void *buf, size_t len,
                 struct df_error *err);
    int (*zero)(struct sink *s, uint64_t off, uint64_t len,
                struct df_error *err);
    /*
     * Optional (NULL: not offered): put [src_off, src_off+len) of the
     * file src (a raw source image's own file) at off without the bytes
     * passing through this process: a reflink or copy_file_range(2).
     * Offered only with parallel_write: it stands for a write() of those
     * bytes (contract 1: from any thread, never overlapping another
     * delivery), for a data run the engine has just read and hashed
     * from src; the read-back (digest) proves what arrived, so a source
     * changed in between fails verification.  0 done; 1 not here
     * (nothing written: deliver these bytes with write(); later calls
     * may answer 1 at once); -1 with err.
     */
    int (*copy_from)(struct sink *s, uint64_t off, const struct df_file *src,
                     uint64_t src_off, size_t len, struct df_error *err);
    int (*finish)(struct sink *s, struct df_error *err);
    /* NULL: the sink cannot be read back (stdout): no verification. */
    int (*digest)(struct sink *s, uint64_t size, enum digest_alg alg,
                  unsigned threads, struct digest *out, struct df_error *err);
    void (*abort_job)(struct sink *s);
    void (*free)(struct sink *s);
    /*
     * Optional (NULL: none): the image digest() would read back whole,
     * through the page cache, when nothing is known (known, fs and
     * leaf_fn unset, not durable) and [0, size) is all of it, and where
     * each write() and zero() has landed in it when it returns; NULL
     * when there is none.  Its read-back may then run while the
     * destination is written (engine/readback.h), the image staying
     * open.  A wrapper that holds writes back (the undo journal's
     * batches) offers none.
     */
    struct image *(*readback_image)(struct sink *s);
};

struct sink {
    const struct sink_ops *ops;
    void *priv;
    char name[PATH_MAX];        /* for messages: path or host:path */
    uint64_t size;              /* destination size in bytes */
    bool dst_is_zero;           /* destination known to read all zeros */
    bool durable;               /* finish() waits for stable storage */
    bool parallel_write;        /* write() may run concurrently (rule 1) */
    /* Set by the engine before digest(): the plan the copy kept leaves
     * by (engine/plan.h; NULL: none).  A sink that reads its
     * destination back may take a kept leaf's hash from these change
     * sources (track.h leaf_hash: the content of both sides) instead
     * of reading it; a wrapper passes it to its inner sink. */
    const struct plan_inputs *known;
    /* Set with known: --fs-aware's layout (job_opts.fs), whose free
     * leaves the read-back takes as zeros without reading them. */
    const struct fs_layout *fs;
    /* Set before digest() to be told every leaf's hash of what the
     * destination holds (job_opts.leaf_fn): serve keeps its record so.
     * NULL: not asked. */
    void (*leaf_fn)(void *ctx, uint64_t leaf, const uint8_t *hash);
    void *leaf_ctx;
    /* Counters the sink keeps for the report (parallel writers add with
     * __atomic builtins). */
    uint64_t bytes_written;     /* payload bytes written or sent */
    uint64_t bytes_wire;        /* bytes on the wire (remote), else 0 */
    uint64_t bytes_zeroed;      /* bytes zeroed explicitly */
    /* Of bytes_written, those copy_from() shared (reflink) or had the
     * kernel copy (copy_file_range); the rest went through write(). */
    uint64_t bytes_cloned;
    uint64_t bytes_copied;
};

#endif
