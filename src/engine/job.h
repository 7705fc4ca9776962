/*
 * job.h: the engine's API: copy a disk into a sink, digest a disk,
 * compare two disks.  cli/ builds a job from options and prints the
 * report; it never reaches past this header into drivers.
 *
 * The pipeline (pipeline.c):
 *
 *   plan (image_map, leaf-aligned)     one cursor, under a mutex, hands
 *        |                              out items in sequence order:
 *        v                              DATA (read it) or SKIP (known
 *   workers x N: read, zero-detect,     zero / hole: nothing to read)
 *        hash each 64 KiB leaf
 *        |  ring of W slots, each with its own aligned buffer
 *        v
 *   writer (the calling thread): takes slots in sequence order, feeds
 *        the digest tree, delivers data runs and zero runs to the sink
 *
 * Memory is W slots x unit bytes whatever the disk size; the plan is
 * mapped a window at a time.
 */
#ifndef DF_JOB_H
#define DF_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/sink.h"
#include "image/image.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"
#include "util/hash.h"

struct job_opts {
    unsigned threads;           /* workers; 0 = online cores */
    uint64_t unit;              /* bytes per work item; 0 = default */
    enum digest_alg digest;     /* 0 = DIGEST_XXH128 */
    bool verify;                /* read back the destination and compare */
    bool progress;              /* draw progress on stderr */
    const char *title;          /* progress title, e.g. "copy" */
};

struct job_stats {
    uint64_t disk_size;
    uint64_t bytes_read;        /* read from the source */
    uint64_t bytes_written;     /* payload delivered to the sink */
    uint64_t bytes_wire;        /* on the wire (remote sinks) */
    uint64_t skipped_unallocated; /* holes and known zeros: not read */
    uint64_t skipped_zero;      /* read, found all zero: not written */
    uint64_t bytes_zeroed;      /* zeroed explicitly on the destination */
    double seconds;             /* whole job */
    double verify_seconds;      /* of which read-back */
    struct digest src_digest;
    struct digest dst_digest;
    bool verified;
};

#define JOB_DEFAULT_UNIT (1u << 20)

void job_opts_init(struct job_opts *o);

/*
 * Copy src (a whole chain) into dst.  With opts->verify, the sink's
 * digest() must match the source's; a mismatch is DF_VERIFY.
 */
int engine_copy(struct image *src, struct sink *dst,
                const struct job_opts *opts, struct job_stats *st,
                struct df_error *err);
/* Copy a raw byte stream (stdin) of unknown size into dst. */
int engine_copy_stream(struct df_file *in, struct sink *dst,
                       const struct job_opts *opts, struct job_stats *st,
                       struct df_error *err);
/* The verification digest of an image (hole-aware: holes are not read). */
int engine_digest(struct image *img, const struct job_opts *opts,
                  struct digest *out, struct job_stats *st,
                  struct df_error *err);
/*
 * Compare a and b: 0 identical, 1 different (ranges appended to
 * `differ`, capped), -1 error.  Digests of both land in st.
 */
int engine_compare(struct image *a, struct image *b,
                   const struct job_opts *opts, struct extent_list *differ,
                   struct job_stats *st, struct df_error *err);

/* Local sinks (sink_image.c).  The sink borrows img; caller closes it. */
struct sink *sink_image_new(struct image *img, bool dst_is_zero,
                            struct df_error *err);
/* As sink_image_new for a new raw file whose size is not known yet (a
 * stream source): it grows as written and takes sink->size at finish. */
struct sink *sink_image_new_growing(struct image *img,
                                    struct df_error *err);
/* A raw stream to fd (stdout): zero runs are written as zero bytes. */
struct sink *sink_stream_new(int fd, const char *name,
                             struct df_error *err);
void sink_free(struct sink *s);
/*
 * Wrap `inner` (ownership passes, also on failure) so that every range
 * is checked to read as zeros on `dst` (a raw destination, borrowed)
 * before it is written or zeroed (sink_guard.c): the emptiness check of
 * a destination written without --overwrite, covering all of it.  On
 * finding data the job fails with DF_REFUSED and, with `rollback`, every
 * range written so far is zeroed again first.  rollback false: inner
 * writes nothing (a dry run).
 */
struct sink *sink_guard_wrap(struct sink *inner, struct image *dst,
                             bool rollback, struct df_error *err);

#endif
