/*
 * source.c: the three sources of a job (see source.h).
 */
#define _GNU_SOURCE
#include "engine/source.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/plan.h"
#include "engine/stream_in.h"
#include "image/nbd.h"
#include "proto/remote.h"
#include "safety/safety.h"

static struct source *source_alloc(const struct source_ops *ops,
                                   size_t priv, struct df_error *err)
{
    struct source *s = calloc(1, sizeof(*s) + priv);
    if (!s) {
        df_fail(err, DF_IO, 0, "", -1, "out of memory");
        return NULL;
    }
    s->ops = ops;
    s->priv = priv ? (void *)(s + 1) : NULL;
    return s;
}

/* ---- a local image ---- */

static bool src_image_size(const struct source *s, uint64_t *out)
{
    *out = s->img->size;
    return true;
}

static int src_image_map(struct source *s, uint64_t off, uint64_t len,
                         struct extent_list *out, struct df_error *err)
{
    return image_map(s->img, off, len, out, err);
}

static int src_image_read(struct source *s, uint64_t off, size_t len,
                          void *buf, struct df_error *err)
{
    return image_read(s->img, buf, len, off, err);
}

static int src_image_check(struct source *s, const char *cmd,
                           const char *result, bool force_share, bool quiet,
                           struct df_error *err)
{
    return job_check_source(s->img, cmd, result, force_share, quiet, err);
}

static int src_image_deliver(struct source *s, const struct plan_inputs *plan,
                             struct sink *dst, const struct job_opts *opts,
                             struct job_stats *st, struct df_error *err)
{
    struct job_opts jo = *opts;
    jo.plan = plan;
    return engine_copy(s->img, dst, &jo, st, err);
}

static void src_image_close(struct source *s)
{
    image_close(s->img);
    free(s);
}

static const struct source_ops src_image_ops = {
    .kind = "image",
    .size = src_image_size,
    .map = src_image_map,
    .read = src_image_read,
    .check = src_image_check,
    .deliver = src_image_deliver,
    .close = src_image_close,
};

int source_image_new(struct image *img, struct source **out,
                     struct df_error *err)
{
    struct source *s = source_alloc(&src_image_ops, 0, err);
    *out = NULL;
    if (!s) {
        image_close(img);
        return -1;
    }
    s->img = img;
    s->path = img->path;
    s->file = &img->file;
    snprintf(s->format, sizeof(s->format), "%s", image_format_name(img));
    *out = s;
    return 0;
}

/* ---- a raw stream, or a tar member (stream_in.h) ---- */

static bool src_stream_size(const struct source *s, uint64_t *out)
{
    (void)s;
    *out = 0;
    return false;
}

static int src_stream_deliver(struct source *s,
                              const struct plan_inputs *plan,
                              struct sink *dst, const struct job_opts *opts,
                              struct job_stats *st, struct df_error *err)
{
    struct stream_in *si = s->priv;
    struct job_opts jo = *opts;
    jo.plan = plan;             /* refused there: a stream cannot skip */
    /* a decompressor that failed ended its pipe early: not a real end */
    return engine_copy_stream(&si->in, dst, &jo, st, err) < 0 ||
           stream_in_finish(si, err) < 0 ? -1 : 0;
}

static void src_stream_close(struct source *s)
{
    stream_in_close(s->priv);
    free(s);
}

static const struct source_ops src_stream_ops = {
    .kind = "stream",
    .size = src_stream_size,
    .deliver = src_stream_deliver,
    .close = src_stream_close,
};

int source_stream_new(int fd, const char *name, bool as_raw,
                      struct source **out, struct df_error *err)
{
    struct source *s = source_alloc(&src_stream_ops,
                                    sizeof(struct stream_in), err);
    *out = NULL;
    if (!s)
        return -1;
    if (stream_in_open(s->priv, fd, name, as_raw, err) < 0) {
        src_stream_close(s);
        return -1;
    }
    s->path = name;
    snprintf(s->format, sizeof(s->format), "raw");
    *out = s;
    return 0;
}

int source_tar_new(const char *archive, const char *member,
                   const char *name, struct source **out,
                   struct df_error *err)
{
    struct source *s = source_alloc(&src_stream_ops,
                                    sizeof(struct stream_in), err);
    *out = NULL;
    if (!s)
        return -1;
    if (stream_in_open_tar(s->priv, archive, member, name, err) < 0) {
        src_stream_close(s);
        return -1;
    }
    s->path = name;
    snprintf(s->format, sizeof(s->format), "raw");
    *out = s;
    return 0;
}

/* ---- a remote host's serve ---- */

struct src_remote {
    uint64_t size;
};

static bool src_remote_size(const struct source *s, uint64_t *out)
{
    *out = ((const struct src_remote *)s->priv)->size;
    return true;
}

static int src_remote_map(struct source *s, uint64_t off, uint64_t len,
                          struct extent_list *out, struct df_error *err)
{
    return remote_map(s->session, off, len, out, err);
}

static int src_remote_deliver(struct source *s,
                              const struct plan_inputs *plan,
                              struct sink *dst, const struct job_opts *opts,
                              struct job_stats *st, struct df_error *err)
{
    /* A plan comes with s->held, the ranges it keeps, which the server
     * leaves out; here it stands for the kept leaves' hashes when the
     * destination is read back (a sync's). */
    if (plan && !s->held)
        return df_fail(err, DF_USAGE, 0, s->path, -1, "a plan cannot be "
                       "applied to a remote source without its kept "
                       "ranges");
    struct job_opts o = *opts;
    o.plan = plan;
    return remote_copy_from(s->session, dst, s->journal, s->held, &o, st,
                            err);
}

static int src_remote_done(struct source *s, bool verified,
                           struct df_error *err)
{
    return remote_done(s->session, verified, err);
}

static void src_remote_close(struct source *s)
{
    remote_close(s->session);
    free(s);
}

static const struct source_ops src_remote_ops = {
    .kind = "remote",
    .size = src_remote_size,
    .map = src_remote_map,
    .deliver = src_remote_deliver,
    .done = src_remote_done,
    .close = src_remote_close,
};

/* Connect and open the remote source: serve checks it on its host. */
static int source_remote_open(const struct source_opts *o,
                              struct source **out, struct df_error *err)
{
    struct remote_opts ro = *o->remote;
    struct source *s = source_alloc(&src_remote_ops,
                                    sizeof(struct src_remote), err);
    struct src_remote *sr;
    if (!s)
        return -1;
    sr = s->priv;
    s->caps = SOURCE_RESUMES;
    s->path = o->arg;
    snprintf(s->format, sizeof(s->format), "raw");
    ro.format = o->open->format;
    ro.parent_dirs = o->open->parent_dirs;
    ro.n_parent_dirs = o->open->n_parent_dirs;
    ro.parents = o->open->parent_overrides;
    ro.n_parents = o->open->n_parent_overrides;
    /* The session stays with the source also when opening fails: the
     * job explains the error from it (remote_explain). */
    *out = s;
    if (remote_connect(&ro, &s->session, err) < 0 ||
        remote_open_src(s->session, &sr->size, s->format, sizeof(s->format),
                        err) < 0)
        return -1;
    return 0;
}

int source_open(const struct endpoint *ep, const struct source_opts *o,
                struct source **out, struct df_error *err)
{
    struct image *img;
    *out = NULL;
    switch (ep->kind) {
    case EP_STREAM:
        /* -f raw: the bytes as they are; else looked at (stream_in.h) */
        return source_stream_new(STDIN_FILENO, "-",
                                 o->open && o->open->format &&
                                     !strcmp(o->open->format, "raw"),
                                 out, err);
    case EP_TAR:
        return source_tar_new(ep->archive, ep->member, o->arg, out, err);
    case EP_REMOTE:
        if (!o->remote)
            return df_usage(err, "%s: not a local disk", o->arg);
        return source_remote_open(o, out, err);
    case EP_NBD:
        /* an export: an image with no local file (image/nbd.h) */
        if (image_open_nbd(ep->path, o->open, &img, err) < 0)
            return -1;
        return source_image_new(img, out, err);
    case EP_LOCAL:
        break;
    }
    if (image_open(ep->path, o->open, &img, err) < 0)
        return -1;
    return source_image_new(img, out, err);
}

bool source_size(const struct source *s, uint64_t *out)
{
    return s->ops->size(s, out);
}

int source_check(struct source *s, const char *cmd, const char *result,
                 bool force_share, bool quiet, struct df_error *err)
{
    if (!s->ops->check)
        return 0;
    return s->ops->check(s, cmd, result, force_share, quiet, err);
}

int source_deliver(struct source *s, const struct plan_inputs *plan,
                   struct sink *dst, const struct job_opts *opts,
                   struct job_stats *st, struct df_error *err)
{
    return s->ops->deliver(s, plan, dst, opts, st, err);
}

int source_done(struct source *s, bool verified, struct df_error *err)
{
    if (!s->ops->done)
        return 0;
    return s->ops->done(s, verified, err);
}

uint64_t source_id(const struct source *s)
{
    uint64_t size;
    source_size(s, &size);
    return remote_src_id(s->path, size, s->file);
}

void source_close(struct source *s)
{
    if (s)
        s->ops->close(s);
}
