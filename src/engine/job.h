/*
 * job.h: the engine's API.  cli/ turns options into a struct job_spec,
 * calls job_run() and prints the struct job_report; it never reaches
 * past this header (and image.h, for info) into drivers, sources,
 * destinations, safety checks or the wire protocol.  Below job_run(),
 * the engine's own entry points: copy a disk into a sink, digest a
 * disk, compare two disks.
 *
 * The life of a copy (job.c), one flow whatever the endpoints:
 *
 *   endpoints parsed (endpoint.h): a path, - (a stream) or host:PATH
 *   source_open() (source.h): a local image, the stream on stdin, or a
 *        remote host's serve; checked, chain and all (nothing written
 *        yet; serve checks a remote one on its host)
 *   destination opened: here (dest.h: safety gate, claim, temporary
 *        name or resumable partial, growth, dry-run / guard / undo
 *        sinks), or on the remote host by its serve (the same dest.h
 *        there): the one place a job tells local from remote
 *   source_deliver(): the source's own copy into the destination's
 *        sink, verified end to end: the pipeline below for an image
 *        (engine_copy) or a stream (engine_copy_stream); serve's stream
 *        applied in order (apply.h) for a remote source
 *   commit: dest_commit(), the rename, never replacing; serve's after
 *        DONE; or dest_abort()
 *
 * A verify job (JOB_VERIFY) opens both endpoints as sources (two local
 * disks), checks both, and compares them (engine_compare): the report
 * says identical, or lists the differing ranges.  With one disk on
 * another host, both sides build its hash tree (engine_tree; serve
 * there) and walk them in step (remote_tree_diff): only hashes cross,
 * and the ranges are whole 64 KiB leaves.
 *
 * The pipeline (pipeline.c):
 *
 *   plan (image_map, through          one cursor, under a mutex, hands
 *        plan_window() with opts.plan,  out items in sequence order:
 *        leaf-aligned)                  DATA (read it), SKIP (known
 *        |                              zero / hole: nothing to read) or
 *        v                              KEEP (unchanged or free: nothing
 *   workers x N: read, zero-detect,     read, nothing delivered)
 *        hash each 64 KiB leaf
 *        |  ring of W slots, each with its own aligned buffer
 *        v
 *   writer (the calling thread): takes slots in sequence order, feeds
 *        the digest tree, delivers data runs and zero runs to the sink
 *
 * A KEEP leaf still counts in the digest, so that verification covers
 * the whole disk: its hash comes from a change source that knows it
 * (track.h, leaf_hash), else a worker reads the leaf only to hash it
 * (bytes_read_for_digest).
 *
 * Memory is W slots x unit bytes whatever the disk size; the plan is
 * mapped a window at a time.
 */
#ifndef DF_JOB_H
#define DF_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/sink.h"
#include "image/image.h"
#include "track/fs.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"
#include "util/hash.h"
#include "util/progress.h"

struct plan_inputs;             /* engine/plan.h */

struct job_opts {
    unsigned threads;           /* workers; 0 = online cores */
    uint64_t unit;              /* bytes per work item; 0 = default */
    enum digest_alg digest;     /* 0 = DIGEST_XXH128 */
    bool verify;                /* read back the destination and compare */
    /* Progress (util/progress.h): where progress_out says, and a line
     * on SIGUSR1.  false: none at all (a stage that is not the job's
     * own progress: a sync's hashing). */
    bool progress;
    struct progress_out progress_out;   /* zeroed: the bar on stderr */
    const char *title;          /* progress title, e.g. "copy" */
    /* The plan's prediction of the seconds the job's data phase takes
     * (what progress counts); the ETA starts from it and turns to the
     * measured rate as the job runs (progress_eta).  0: none. */
    double predicted_seconds;
    /* engine_copy only: what the destination already holds (plan.h);
     * NULL: copy everything.  Borrowed. */
    const struct plan_inputs *plan;
    /* --salvage (engine_copy): a source read that fails (DF_IO) is
     * retried in SALVAGE_PIECE pieces; those that still fail are
     * delivered as zeros and their ranges appended here, in order
     * (merged).  Borrowed; NULL: a read error stops the job. */
    struct extent_list *salvaged;
    /* Every leaf's hash, in order, as the digest takes it (the source's;
     * engine_digest: the image's): leaf_fn(leaf_ctx, leaf index, hash),
     * from the writer thread.  Runs of zero leaves the map knows (holes,
     * zero runs) are not told: the receiver (a sync's hash tree,
     * track/htree.h) takes an untold leaf as zero.  NULL: not kept. */
    void (*leaf_fn)(void *ctx, uint64_t leaf, const uint8_t *hash);
    void *leaf_ctx;
    /* --fs-aware (track/fs.h; borrowed, NULL: none): a leaf every byte
     * of which is free in a trusted filesystem is neither read nor
     * sent; the destination is zeroed there (a new one keeps its holes)
     * unless a change source knows it holds zeros, and the digest takes
     * it as a zero leaf, on both sides (the read-back does not read it
     * either).  With fs_hint, nothing changes but the count of non-zero
     * bytes read in such leaves (job_stats.bytes_free_stale). */
    const struct fs_layout *fs;
    bool fs_hint;
    /* A read-back taken while the image is still being written
     * (engine/readback.h): the pipeline maps and reads it only below
     * what gate(gate_ctx, pos, &upto, err) answers for its position pos
     * (more than pos: a leaf boundary, or the end), which may wait for
     * it; -1 with err stops the pipeline.  NULL: all of it at once. */
    int (*gate)(void *ctx, uint64_t pos, uint64_t *upto,
                struct df_error *err);
    void *gate_ctx;
};

#define SALVAGE_PIECE 4096u

struct job_stats {
    uint64_t disk_size;
    uint64_t bytes_read;        /* read from the source */
    uint64_t bytes_written;     /* payload delivered to the sink */
    uint64_t bytes_wire;        /* on the wire (remote sinks) */
    uint64_t skipped_unallocated; /* holes and known zeros: not read */
    uint64_t skipped_zero;      /* read, found all zero: not written */
    uint64_t bytes_zeroed;      /* zeroed explicitly on the destination */
    uint64_t bytes_unchanged;   /* kept by the plan: the destination has
                                 * them (whole leaves) */
    uint64_t bytes_free;        /* not read: free in a trusted file
                                 * system (whole leaves) */
    uint64_t bytes_free_by[FS_KINDS];   /* the same, by enum fs_kind */
    uint64_t bytes_free_stale;  /* fs_hint: non-zero bytes read in
                                 * such leaves */
    uint64_t bytes_read_for_digest; /* kept leaves read only to hash them
                                 * (not in bytes_read) */
    double seconds;             /* whole job */
    double verify_seconds;      /* of which read-back */
    struct digest src_digest;
    struct digest dst_digest;
    bool verified;
    uint64_t bytes_salvaged;    /* --salvage: unreadable, written as zeros */
    /* How the data reached the sink (engine_copy; NULL: the pipeline
     * did not run, e.g. a remote source): "reflink" (blocks shared),
     * "copy_file_range" (copied by the kernel), "write" (written from a
     * view of the source's pages), "buffer" (read into memory, then
     * delivered); where several, the one that moved the most bytes. */
    const char *copy_method;
};

#define JOB_DEFAULT_UNIT (1u << 20)

void job_opts_init(struct job_opts *o);

enum job_kind {
    JOB_COPY,                   /* src to dst */
    JOB_VERIFY,                 /* compare src (A) with dst (B) */
    JOB_SYNC,                   /* src to dst, an earlier copy: only
                                 * what changed (engine/sync.c) */
};

/* verify: at most this many differing ranges are listed. */
#define JOB_VERIFY_MAX_RANGES 100000

/* How to reach the other host of a remote endpoint. */
struct job_remote {
    const char *rsh;            /* --rsh; NULL: ssh */
    const char *remote_path;    /* --remote-path; NULL: diskferry */
    const char *compress;       /* --compress (job_compress_check); NULL:
                                 * auto */
    uint64_t bwlimit;           /* bytes/s on the wire; 0: no limit */
    bool tcp;                   /* --transport tcp */
    unsigned streams;           /* tcp streams; 0: the default */
    unsigned timeout;           /* seconds; 0: the default */
    bool pass_timeout;          /* --timeout given: serve gets it too */
};

struct job_spec {
    enum job_kind kind;
    const char *cmd;            /* "copy": the prefix of messages */
    const char *src, *dst;      /* a path, - (a stream), [user@]host:PATH */
    struct image_open_opts src_open;  /* -f, parents (arrays borrowed) */
    struct image_open_opts dst_open;  /* verify: how B is read (-F) */
    bool force_share;           /* read a source that is in use */
    const char *out_format;     /* -O, or NULL */
    struct image_create_opts copts;
    bool overwrite, yes, dry_run;
    bool interactive;           /* a user can answer (stdin, stderr) */
    bool fsync;                 /* DST durable before it is verified */
    bool resume;                /* continue from the receiver's journal */
    bool report_on_stdout;      /* --json: stdout is the report's */
    bool fs_aware;              /* --fs-aware (job_opts.fs); without it a
                                 * copy counts the stale free bytes it
                                 * reads (job_stats.bytes_free_stale) */
    const char *undo;           /* --undo journal, or NULL */
    struct job_opts jo;
    /* JOB_SYNC */
    const char *changes;        /* --changes: NULL (the state record, else
                                 * compare), "compare", "manifest:FILE",
                                 * "lvm-cow:COW", "lvm-thin:META,OLD,NEW",
                                 * "bitmap:NAME", "top-layer" */
    const char *write_manifest; /* --write-manifest FILE (copy, sync) */
    bool trust_base;            /* --trust-base: a top layer's DST is its
                                 * parent, unproved */
    unsigned passes;            /* --passes N; 0: one */
    uint64_t until;             /* --until SIZE: passes until one sends at
                                 * most this; 0: not */
    uint64_t block_size;        /* --block-size; 0: 64 KiB */
    const char *manifest;       /* verify --manifest FILE: src is checked
                                 * against it (dst names it) */
    struct job_remote remote;
    int verbose;                /* > 0: relay a remote host's stderr */
    FILE *msgs;                 /* warnings; NULL: quiet */
};

struct job_report {
    struct job_stats st;
    char src_format[32];
    char dst_format[32];
    bool verify;                /* verification was asked for (not with
                                 * --no-verify, nor a dry run to a host) */
    bool usage_hint;            /* the error is a misuse of the options */
    /* --salvage: the job ended, DST committed, but ranges of the source
     * were unreadable (spec->jo.salvaged lists them; the error says so):
     * the report is printed as for a success. */
    bool salvaged;
    bool remote;                /* a remote endpoint: what follows is set */
    const char *transport;      /* "ssh", "tcp" */
    const char *compression;    /* comp_mode_name() */
    uint64_t payload_bytes;     /* compression: payload before */
    uint64_t payload_bytes_compressed;  /* ... and after */
    uint64_t skipped_resumed;   /* bytes the journal said were there */
    int zstd_level_max;         /* highest auto level used, or 0 */
    /* job_undo() */
    uint64_t undo_records;      /* ranges put back (or that would be) */
    uint64_t undo_bytes;        /* bytes put back */
    bool undo_complete;         /* the copy that wrote the journal ended */
    bool undo_truncated;        /* a grown regular file was cut back */
    /* What the job was predicted to take before it began (forecast.h,
     * forecast_quick), or 0: no prediction (another host's link was
     * never measured by a plan); st.seconds is what it took. */
    double predicted_seconds;
    uint64_t predicted_bytes;           /* to write or send */
    char predicted_bottleneck[64];      /* forecast.h fc_strategy.why */
    /* JOB_SYNC */
    const char *changes;        /* "compare", "record", "manifest",
                                 * "copy" (DST did not exist) */
    unsigned passes;
    uint64_t changed_bytes;     /* of the last pass */
    uint64_t changed_blocks;    /* its changed ranges */
    double last_pass_seconds;
    uint64_t src_bytes_hashed;  /* SRC read to find what changed */
    uint64_t dst_bytes_read;    /* DST read to compare or prove its base */
    uint64_t proof_leaves;      /* leaves of DST the base proof read */
    /* JOB_VERIFY */
    bool identical;
    uint64_t src_size, dst_size;        /* A's and B's */
    struct extent_list differ;  /* the differing ranges (capped at
                                 * JOB_VERIFY_MAX_RANGES: n == cap says
                                 * the list was cut) */
    /* JOB_VERIFY with a disk on another host (a hash-tree comparison,
     * at 64 KiB granularity): what crossed the wire */
    uint64_t hash_bytes_sent, hash_bytes_received, tree_rounds;
};

/* Free what a report holds (verify's list). */
void job_report_release(struct job_report *rep);

/* 0 if s is a valid --compress value (auto, zstd, zstd:LEVEL, lz4,
 * none), else -1. */
int job_compress_check(const char *s);

/*
 * Run the job spec describes; the report (zeroed first; release it with
 * job_report_release) says what it did, also on failure (as far as it
 * got).  A verify job that finds the disks differ returns 0 with
 * rep->identical false.  0, or -1 with err: one line
 * naming the file and the reason; an interrupted job says how far it got
 * and how to go on.  Nothing that failed is left under the name the
 * user gave (dest.h invariant 2).
 */
int job_run(const struct job_spec *spec, struct job_report *rep,
            struct df_error *err);

/*
 * `diskferry undo JOURNAL [DST]`: spec->src is the journal (a path or
 * [user@]host:PATH: then serve runs it on that host, reached as
 * spec->remote says), spec->dst the destination (NULL: the one the
 * journal records); dry_run, yes, interactive, verbose and msgs as for
 * a copy.  The work is undo_apply() (safety/undo.c): the same checks as
 * any write, a refusal when DST no longer matches the journal, then the
 * old contents newest first.  rep->undo_* say what was put back.
 */
int job_undo(const struct job_spec *spec, struct job_report *rep,
             struct df_error *err);

/*
 * `diskferry create`: a new, empty image of size bytes and format fmt at
 * path, after the safety gate (safety.h, SAFETY_OP_CREATE): never
 * replacing anything.  On failure nothing is left at path.
 */
int job_create(const char *path, const char *fmt, uint64_t size,
               struct df_error *err);

/*
 * The source check (safety_check_source()) on an open source: result
 * names what an inconsistent read spoils ("copy", "comparison"); quiet:
 * no warning for a source read anyway (force_share).  0 or -1 with err.
 */
int job_check_source(const struct image *src, const char *cmd,
                     const char *result, bool force_share, bool quiet,
                     struct df_error *err);

/*
 * Copy src (a whole chain) into dst.  With opts->verify, the sink's
 * digest() must match the source's; a mismatch is DF_VERIFY.  With
 * opts->plan, the leaves the plan keeps whole (unchanged, free) are
 * neither read (but to hash them, when no change source knows their
 * hash) nor delivered: dst must already hold them.
 */
int engine_copy(struct image *src, struct sink *dst,
                const struct job_opts *opts, struct job_stats *st,
                struct df_error *err);
/* Copy a raw byte stream (stdin) of unknown size into dst.  A plan
 * (opts->plan) is refused: a stream cannot skip. */
int engine_copy_stream(struct df_file *in, struct sink *dst,
                       const struct job_opts *opts, struct job_stats *st,
                       struct df_error *err);
/* The verification digest of an image (hole-aware: holes are not read).
 * With opts->plan, a leaf the plan keeps takes its hash from the change
 * source that knows it (a destination read back after a sync: only
 * what was written is read).  opts->plan is ignored by engine_compare. */
int engine_digest(struct image *img, const struct job_opts *opts,
                  struct digest *out, struct job_stats *st,
                  struct df_error *err);
/* As engine_digest, keeping every leaf: the hash tree of img
 * (track/htree.h, initialised here, opts->digest; release it with
 * htree_release) and its digest.  0 or -1 with err. */
struct htree;
int engine_tree(struct image *img, const struct job_opts *opts,
                struct htree *t, struct digest *out, struct job_stats *st,
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
/* As sink_guard_wrap, checking only from `from` on: a resumed copy's
 * destination, below whose journal mark the interrupted run may have
 * written (journal.h invariant 8).  Ranges below are written as they
 * come and never zeroed back. */
struct sink *sink_guard_wrap_from(struct sink *inner, struct image *dst,
                                  bool rollback, uint64_t from,
                                  struct df_error *err);
/* The guard's check in one pass, for a dry run that writes nowhere
 * near dst (a remote host's): 0 when [0, len) of dst reads as zeros,
 * else -1: DF_REFUSED naming the offset (as the guard's dry run does),
 * or an I/O error; name: the destination in messages. */
int guard_check_empty(struct image *dst, uint64_t len, const char *name,
                      struct df_error *err);

#endif
