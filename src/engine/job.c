/*
 * job.c: job_run(): a job spec from the command line to a finished,
 * verified destination (see job.h for the life of a job).
 *
 * A copy has three shapes:
 *  - local: SRC a local image or - (stdin), DST a local file, device or
 *    - (stdout): the destination is opened here (dest.h);
 *  - to a remote host: the local source is read by the engine and the
 *    remote host's serve opens its destination (proto/serve.c, the same
 *    dest.h functions there);
 *  - from a remote host: serve reads its source and streams it; a new
 *    raw file here is a resumable partial (dest_open_partial).
 * Copying between two remote hosts is refused (exit 2): diskferry moves
 * a disk between the host it runs on and one other.
 *
 * Order of work (docs/design.md promises 1 and 5): the source is opened and
 * validated, chain and all, before the destination is created or opened.
 */
#define _GNU_SOURCE
#include "engine/job.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/stream_in.h"
#include "image/nbd.h"
#include "proto/remote.h"
#include "safety/safety.h"
#include "util/size.h"

int job_compress_check(const char *s)
{
    enum comp_mode mode;
    int level;
    return comp_mode_parse(s, &mode, &level);
}

int job_check_source(const struct image *src, const char *cmd,
                     const char *result, bool force_share, bool quiet,
                     struct df_error *err)
{
    struct safety_src_req req = {
        .src = src, .cmd = cmd, .result = result,
        .force_share = force_share, .quiet = quiet,
    };
    return safety_check_source(&req, err);
}

static void job_dest_opts(const struct job_spec *spec, struct dest_opts *o)
{
    *o = (struct dest_opts){
        .cmd = spec->cmd, .msgs = spec->msgs,
        .out_format = spec->out_format, .copts = spec->copts,
        .overwrite = spec->overwrite, .yes = spec->yes,
        .interactive = spec->interactive, .dry_run = spec->dry_run,
        .report_on_stdout = spec->report_on_stdout, .undo = spec->undo,
    };
}

int job_open_image(const char *arg, const struct image_open_opts *opts,
                   struct image **out, struct df_error *err)
{
    return image_is_nbd_uri(arg) ? image_open_nbd(arg, opts, out, err)
                                 : image_open(arg, opts, out, err);
}

/* Open the source image and check it (nothing is written before). */
static int job_open_source(const struct job_spec *spec, struct image **src,
                           struct df_error *err)
{
    if (job_open_image(spec->src, &spec->src_open, src, err) < 0)
        return -1;
    return job_check_source(*src, spec->cmd, "copy", spec->force_share,
                            !spec->msgs, err);
}

/* DF_INTERRUPTED: say how far it got and how to go on (docs/design.md). */
static void job_interrupted(struct df_error *err, uint64_t written,
                            uint64_t total, bool resumable)
{
    char done[32], all[32];
    if (err->cat != DF_INTERRUPTED)
        return;
    size_format(written, done, sizeof(done));
    size_format(total, all, sizeof(all));
    df_error_reset(err);
    df_fail(err, DF_INTERRUPTED, 0, "", -1, "interrupted: %s of %s "
            "written; run the same command %s", done, all, resumable
            ? "with --resume to continue" : "again");
}

static void job_set_format(char *out, const char *fmt)
{
    snprintf(out, sizeof(((struct job_report *)0)->src_format), "%s", fmt);
}

static int job_copy_local(const struct job_spec *spec,
                          const struct endpoint *sep,
                          struct job_report *rep, struct df_error *err)
{
    struct dest_opts dopts;
    struct dest d;
    struct image *src = NULL;
    struct stream_in sin;
    struct df_file *in = NULL;
    struct job_stats *st = &rep->st;
    int rc;

    job_dest_opts(spec, &dopts);
    dest_init(&d);
    memset(&sin, 0, sizeof(sin));
    df_file_init(&sin.in);
    if (sep->kind == EP_STREAM || sep->kind == EP_TAR) {
        /* looked at before anything is opened for writing */
        if (sep->kind == EP_STREAM
                ? stream_in_open(&sin, STDIN_FILENO, "-",
                                 spec->src_open.format &&
                                     !strcmp(spec->src_open.format, "raw"),
                                 err) < 0
                : stream_in_open_tar(&sin, sep->archive, sep->member,
                                     spec->src, err) < 0)
            goto fail;
        in = &sin.in;
    } else if (job_open_source(spec, &src, err) < 0) {
        goto fail;
    }
    if (dest_open(&d, &dopts, spec->dst, src, src ? src->size : 0,
                  src != NULL, err) < 0)
        goto fail;
    d.sink->durable = spec->fsync;
    rc = src ? engine_copy(src, d.sink, &spec->jo, st, err)
             : engine_copy_stream(in, d.sink, &spec->jo, st, err) < 0 ||
                       stream_in_finish(&sin, err) < 0 ? -1 : 0;
    if (rc < 0 || dest_commit(&d, err) < 0)
        goto fail;
    job_set_format(rep->src_format, src ? image_format_name(src) : "raw");
    job_set_format(rep->dst_format, d.img ? image_format_name(d.img)
                                          : "raw");
    rc = 0;
    goto out;
fail:
    job_interrupted(err, d.sink ? d.sink->bytes_written : 0,
                    src ? src->size : st->disk_size, false);
    dest_abort(&d);
    rc = -1;
out:
    dest_close(&d);
    image_close(src);
    stream_in_close(&sin);
    return rc;
}

/* To a remote host: the engine reads here, serve writes there. */
static int job_copy_to_remote(const struct job_spec *spec,
                              struct remote_opts *ro, struct remote **r,
                              struct image **src, struct job_stats *st,
                              struct dest *d, bool *verify,
                              struct df_error *err)
{
    struct sink *sink = NULL;
    struct job_opts jo = spec->jo;
    bool created = false;

    if (!strcmp(spec->src, "-"))
        return df_usage(err, "a stream on stdin cannot go to a remote host "
                        "yet: give a file or device as SRC");
    ro->format = spec->out_format;
    if (job_open_source(spec, src, err) < 0 ||
        remote_connect(ro, r, err) < 0 ||
        remote_open_dst(*r, (*src)->size,
                        remote_src_id((*src)->path, (*src)->size,
                                      &(*src)->file),
                        &sink, &created, err) < 0)
        return -1;
    if (spec->undo && created) {
        struct dest_opts dopts;
        job_dest_opts(spec, &dopts);
        dest_warn_undo_new(&dopts, spec->dst);
    }
    if (!spec->dry_run)
        return engine_copy(*src, sink, &jo, st, err) < 0 ||
               remote_done(*r, st->verified, err) < 0 ? -1 : 0;
    /* The remote host ran its checks; show what would travel. */
    d->sink = dryrun_sink_new(spec->dst, (*src)->size,
                              spec->report_on_stdout ? stderr : stdout, err);
    jo.verify = false;
    *verify = false;
    if (!d->sink || engine_copy(*src, d->sink, &jo, st, err) < 0)
        return -1;
    return 0;
}

/* From a remote host: serve reads there, the destination is here. */
static int job_copy_from_remote(const struct job_spec *spec,
                                struct remote_opts *ro, struct remote **r,
                                uint64_t *size, char *fmt, size_t fmtlen,
                                struct job_stats *st, struct dest *d,
                                struct df_error *err)
{
    struct dest_opts dopts;
    struct stat lst;

    job_dest_opts(spec, &dopts);
    ro->format = spec->src_open.format;
    ro->parent_dirs = spec->src_open.parent_dirs;
    ro->n_parent_dirs = spec->src_open.n_parent_dirs;
    ro->parents = spec->src_open.parent_overrides;
    ro->n_parents = spec->src_open.n_parent_overrides;
    if (remote_connect(ro, r, err) < 0 ||
        remote_open_src(*r, size, fmt, fmtlen, err) < 0)
        return -1;
    bool partial = !spec->dry_run && strcmp(spec->dst, "-") &&
                   lstat(spec->dst, &lst) < 0 && errno == ENOENT &&
                   (!spec->out_format || !strcmp(spec->out_format, "raw"));
    if (spec->resume && !partial)
        return df_usage(err, "--resume from a remote host continues into a "
                        "new raw file: %s exists or is not one", spec->dst);
    if (partial ? dest_open_partial(d, &dopts, spec->dst, *size,
                                    remote_src_id(spec->src, *size, NULL),
                                    spec->resume, err) < 0
                : dest_open(d, &dopts, spec->dst, NULL, *size, true,
                            err) < 0)
        return -1;
    d->sink->durable = spec->fsync;
    if (remote_copy_from(*r, d->sink, partial ? &d->j : NULL,
                         d->resumed ? &d->done : NULL, &spec->jo, st,
                         err) < 0 ||
        dest_commit(d, err) < 0 || remote_done(*r, st->verified, err) < 0)
        return -1;
    if (partial)
        rjournal_remove(&d->j);
    return 0;
}

/* The options of a remote endpoint that every job shares. */
static void job_remote_opts(const struct job_spec *spec,
                            const struct endpoint *ep, struct remote_opts *ro)
{
    memset(ro, 0, sizeof(*ro));
    ro->rsh = spec->remote.rsh;
    ro->remote_path = spec->remote.remote_path;
    ro->timeout = spec->remote.timeout;
    ro->pass_timeout = spec->remote.pass_timeout;
    ro->user = ep->has_user ? ep->user : NULL;
    ro->host = ep->host;
    ro->path = ep->rpath;
    ro->verbose = spec->verbose;
}

static int job_copy_remote(const struct job_spec *spec,
                           const struct endpoint *sep,
                           const struct endpoint *dep,
                           struct job_report *rep, struct df_error *err)
{
    struct remote *r = NULL;
    struct image *src = NULL;
    struct dest d;
    struct remote_stats rs;
    struct remote_opts ro;
    char fmt[64] = "raw";
    uint64_t remote_size = 0;
    bool to_remote = dep->kind == EP_REMOTE;
    const struct endpoint *rep_ep = to_remote ? dep : sep;
    int rc;

    dest_init(&d);
    memset(&rs, 0, sizeof(rs));
    job_remote_opts(spec, rep_ep, &ro);
    if (spec->remote.compress)
        comp_mode_parse(spec->remote.compress, &ro.comp, &ro.level);
    ro.bwlimit = spec->remote.bwlimit;
    ro.tcp = spec->remote.tcp;
    ro.streams = spec->remote.streams;
    ro.resume = spec->resume;
    ro.overwrite = spec->overwrite;
    ro.threads = spec->jo.threads;      /* compression workers too */
    ro.dry_run = spec->dry_run;
    ro.force_share = spec->force_share;
    /* The same question as a local overwrite, asked here for the
     * remote host's check (safety.h check 6). */
    ro.ask = spec->overwrite && !spec->yes && !spec->dry_run &&
             spec->interactive;
    ro.undo = spec->undo;
    rep->remote = true;
    rep->transport = ro.tcp ? "tcp" : "ssh";
    rep->compression = comp_mode_name(ro.comp);
    if (spec->undo && !to_remote) {
        df_usage(err, "--undo: the journal is kept on the destination's "
                 "host; this destination is local");
        goto fail;
    }
    if (to_remote ? job_copy_to_remote(spec, &ro, &r, &src, &rep->st, &d,
                                       &rep->verify, err) < 0
                  : job_copy_from_remote(spec, &ro, &r, &remote_size, fmt,
                                         sizeof(fmt), &rep->st, &d,
                                         err) < 0)
        goto fail;
    remote_get_stats(r, &rs);
    rep->st.bytes_wire = rs.bytes_wire;
    job_set_format(rep->src_format, src ? image_format_name(src) : fmt);
    job_set_format(rep->dst_format, d.img ? image_format_name(d.img)
                                    : spec->out_format ? spec->out_format
                                                       : "raw");
    rc = 0;
    goto out;
fail:
    remote_explain(r, err);
    /* A remote raw destination and a partial file here are journaled:
     * --resume continues them; they stay.  Written, to a remote host:
     * what it acknowledged. */
    if (r)
        remote_get_stats(r, &rs);
    job_interrupted(err, to_remote ? r ? rs.bytes_acked : 0
                         : d.sink ? d.sink->bytes_written : 0,
                    src ? src->size : remote_size,
                    to_remote ? !spec->out_format ||
                                    !strcmp(spec->out_format, "raw")
                              : d.partial);
    if (err->cat == DF_VERIFY && r) {
        /* A resumed copy that does not verify: the source changed in a
         * way its id did not show (a remote source is known by path and
         * size).  Its journal would resume into the same failure. */
        if (d.resumed || rs.skipped_resumed) {
            if (d.resumed)
                rjournal_remove(&d.j);
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof(err->msg) - n, "; the source "
                     "changed since the interrupted copy: run without "
                     "--resume");
        }
    }
    dest_abort(&d);
    rc = -1;
out:
    rep->st.bytes_wire = rs.bytes_wire;
    rep->payload_bytes = rs.raw_in;
    rep->payload_bytes_compressed = rs.comp_out;
    rep->skipped_resumed = rs.skipped_resumed;
    rep->zstd_level_max = rs.zstd_level_max;
    remote_close(r);
    dest_close(&d);
    image_close(src);
    return rc;
}

/* A copy that ended (rc 0, DST committed) with unreadable ranges
 * written as zeros (--salvage) still fails: DF_IO, after the fact. */
static int job_salvage_end(const struct job_spec *spec,
                           struct job_report *rep, int rc,
                           struct df_error *err)
{
    const struct extent_list *l = spec->jo.salvaged;
    char bytes[32];
    if (rc < 0 || !l || l->n == 0)
        return rc;
    rep->salvaged = true;
    size_format(rep->st.bytes_salvaged, bytes, sizeof(bytes));
    return df_fail(err, DF_IO, 0, spec->src, -1, "%zu unreadable range%s "
                   "(%s) written as zeros (--salvage); %s is complete "
                   "otherwise", l->n, l->n == 1 ? "" : "s", bytes,
                   spec->dst);
}

int job_run(const struct job_spec *spec, struct job_report *rep,
            struct df_error *err)
{
    struct endpoint sep, dep;

    memset(rep, 0, sizeof(*rep));
    rep->verify = spec->jo.verify;
    if (endpoint_parse(spec->src, &sep, err) < 0 ||
        endpoint_parse(spec->dst, &dep, err) < 0)
        return -1;
    if (dep.kind == EP_TAR) {
        rep->usage_hint = true;
        return df_usage(err, "%s: a tar member is a source only",
                        spec->dst);
    }
    if (sep.kind == EP_REMOTE && dep.kind == EP_REMOTE) {
        rep->usage_hint = true;
        return df_usage(err, "both SRC and DST are remote: run diskferry "
                        "on one of the two hosts");
    }
    if ((sep.kind == EP_REMOTE && dep.kind == EP_NBD) ||
        (sep.kind == EP_NBD && dep.kind == EP_REMOTE)) {
        rep->usage_hint = true;
        return df_usage(err, "an NBD export and a remote host: run "
                        "diskferry on the host that has the other one");
    }
    if (spec->jo.salvaged && sep.kind != EP_LOCAL && sep.kind != EP_NBD) {
        rep->usage_hint = true;
        return df_usage(err, "--salvage applies to a file, device or NBD "
                        "export as SRC");
    }
    if (sep.kind == EP_REMOTE || dep.kind == EP_REMOTE)
        return job_salvage_end(spec, rep, job_copy_remote(spec, &sep, &dep,
                                                          rep, err), err);
    if (spec->resume || spec->remote.tcp || spec->remote.bwlimit) {
        rep->usage_hint = true;
        return df_usage(err, "--resume, --transport and --bwlimit apply to "
                        "a remote SRC or DST");
    }
    return job_salvage_end(spec, rep, job_copy_local(spec, &sep, rep, err),
                           err);
}

/* JOURNAL on another host: serve runs undo_apply() there. */
static int job_undo_remote(const struct job_spec *spec,
                           const struct endpoint *ep, struct job_report *rep,
                           struct df_error *err)
{
    struct remote_opts ro;
    struct remote *r = NULL;
    struct undo_result res;

    if (spec->dry_run) {
        rep->usage_hint = true;
        return df_usage(err, "--dry-run: not for a journal on another host");
    }
    job_remote_opts(spec, ep, &ro);
    if (remote_connect(&ro, &r, err) < 0 ||
        remote_undo(r, spec->dst, &res, err) < 0) {
        remote_explain(r, err);
        remote_close(r);
        return -1;
    }
    remote_done(r, true, err);
    remote_close(r);
    rep->undo_records = res.records;
    rep->undo_bytes = res.bytes;
    rep->undo_complete = res.complete;
    rep->undo_truncated = res.truncated;
    return 0;
}

int job_undo(const struct job_spec *spec, struct job_report *rep,
             struct df_error *err)
{
    struct endpoint ep;
    struct undo_opts uo = {
        .dry_run = spec->dry_run, .yes = spec->yes,
        .interactive = spec->interactive, .msgs = spec->msgs,
    };
    struct undo_stats us;

    memset(rep, 0, sizeof(*rep));
    if (endpoint_parse(spec->src, &ep, err) < 0)
        return -1;
    if (ep.kind == EP_REMOTE)
        return job_undo_remote(spec, &ep, rep, err);
    if (ep.kind == EP_NBD)
        return df_usage(err, "%s: an undo journal is a file", spec->src);
    memset(&us, 0, sizeof(us));
    if (undo_apply(spec->src, spec->dst, &uo, &us, err) < 0)
        return -1;
    rep->undo_records = us.records;
    rep->undo_bytes = us.bytes;
    rep->undo_complete = us.complete;
    rep->undo_truncated = us.truncated;
    return 0;
}

int job_create(const char *path, const char *fmt, uint64_t size,
               struct df_error *err)
{
    return dest_create(path, fmt, size, err);
}
