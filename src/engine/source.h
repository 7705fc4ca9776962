/*
 * source.h: where a job reads a disk from, behind one ops table: a
 * local image (a file or device, any format, chain and all), a raw
 * stream (stdin, or a member of a tar archive: stream_in.h) or a remote
 * host's serve.  The job opens one with
 * source_open() and then never asks which it is: it reads the size,
 * checks it, and has it deliver() the disk into the destination's sink.
 *
 *   op        image               stream              remote (serve)
 *   size      the virtual size    unknown (false)     OPENED's size
 *   map       image_map           NULL                MAP_REQ
 *   read      image_read          NULL                NULL
 *   check     safety check        NULL                (serve's own)
 *   deliver   engine_copy         engine_copy_stream  READ_STREAM, apply
 *   done      NULL                NULL                DONE
 *
 * read is NULL when the source cannot be read at an offset: a stream
 * is read once, in order; serve has no request for a range (it streams
 * the whole disk, READ_STREAM), and adding one would make a random read
 * a round trip per block: a comparison against a remote disk wants its
 * own digest exchange instead.
 *
 * deliver() is the whole copy into the sink: plan, read, zero-detect,
 * digest, deliver, finish and (opts->verify) the read-back compared
 * with the source's digest (sink.h contract, apply.h).  A source that
 * streams in order (SOURCE_RESUMES) also notes what it applies in a
 * resumable destination's journal and leaves out what the journal says
 * the destination holds (dest_open_partial); the job sets those two
 * below after opening the destination.
 */
#ifndef DF_SOURCE_H
#define DF_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/endpoint.h"
#include "engine/job.h"
#include "engine/sink.h"
#include "image/image.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"

struct plan_inputs;             /* engine/plan.h */
struct remote;                  /* proto/remote.h */
struct remote_opts;
struct rjournal;                /* proto/journal.h */

struct source;

struct source_ops {
    const char *kind;           /* "image", "stream", "remote" */
    /* false: not known before the source was read (a stream). */
    bool (*size)(const struct source *s, uint64_t *out);
    /* Append what is where in [off, off+len) (EXT_DATA/ZERO/HOLE) to
     * out; may stop short at out's cap.  NULL: no map. */
    int (*map)(struct source *s, uint64_t off, uint64_t len,
               struct extent_list *out, struct df_error *err);
    /* len bytes at off; NULL: not random-access (see above). */
    int (*read)(struct source *s, uint64_t off, size_t len, void *buf,
                struct df_error *err);
    /* The source check (safety.h) before anything is written: result
     * names what an inconsistent read spoils.  NULL: nothing to check
     * here (a stream; serve checks its own). */
    int (*check)(struct source *s, const char *cmd, const char *result,
                 bool force_share, bool quiet, struct df_error *err);
    /* The copy into dst with plan (NULL: everything; see above). */
    int (*deliver)(struct source *s, const struct plan_inputs *plan,
                   struct sink *dst, const struct job_opts *opts,
                   struct job_stats *st, struct df_error *err);
    /* The job is over (verified or not); NULL: nothing to say. */
    int (*done)(struct source *s, bool verified, struct df_error *err);
    void (*close)(struct source *s);
};

/* caps */
#define SOURCE_RESUMES 1u       /* deliver() keeps journal and held */

struct source {
    const struct source_ops *ops;
    void *priv;
    unsigned caps;
    char format[32];            /* "raw" for a stream */
    /* Known by, for the resume journal (source_id): the path as given
     * (host:PATH for a remote one) and, open here, the file. */
    const char *path;
    const struct df_file *file;
    /* A local image (random access), else NULL: a destination's safety
     * check compares against it, a comparison reads it. */
    struct image *img;
    /* A remote source's session, else NULL: the job reports its figures
     * and explains its errors. */
    struct remote *session;
    /* Set by the job (SOURCE_RESUMES only; NULL: none): the resumable
     * destination's journal, and the ranges it already holds. */
    struct rjournal *journal;
    const struct extent_list *held;
};

/* How to open an endpoint as a source. */
struct source_opts {
    const struct image_open_opts *open;   /* -f, parents */
    /* A remote endpoint: how to reach it (the format and parents are
     * taken from open); NULL: a remote endpoint is refused. */
    const struct remote_opts *remote;
    const char *arg;            /* the argument as given (host:PATH) */
};

/* Open ep as a source (not checked yet: source_check).  0, or -1 with
 * err and *out NULL; but a remote source that failed after connecting
 * is returned all the same, so that its session can explain the error
 * (the caller closes it). */
int source_open(const struct endpoint *ep, const struct source_opts *o,
                struct source **out, struct df_error *err);
/* The implementations, for callers that hold their own (tests): img
 * and f are owned by the source from here, also on failure. */
int source_image_new(struct image *img, struct source **out,
                     struct df_error *err);
/* as_raw: -f raw, the bytes as they are; else looked at and maybe
 * decompressed or refused (stream_in.h). */
int source_stream_new(int fd, const char *name, bool as_raw,
                      struct source **out, struct df_error *err);
/* tar:ARCHIVE//MEMBER (stream_in_open_tar); name: for messages. */
int source_tar_new(const char *archive, const char *member,
                   const char *name, struct source **out,
                   struct df_error *err);

/* The op, or what its absence means. */
bool source_size(const struct source *s, uint64_t *out);
int source_check(struct source *s, const char *cmd, const char *result,
                 bool force_share, bool quiet, struct df_error *err);
int source_deliver(struct source *s, const struct plan_inputs *plan,
                   struct sink *dst, const struct job_opts *opts,
                   struct job_stats *st, struct df_error *err);
int source_done(struct source *s, bool verified, struct df_error *err);
/* The resume journal's id of the source (remote_src_id). */
uint64_t source_id(const struct source *s);
/* NULL is a no-op. */
void source_close(struct source *s);

#endif
