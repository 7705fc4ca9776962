/*
 * job.c: job_run(): a job spec from the command line to a finished,
 * verified destination, or two disks compared (see job.h for the life
 * of a job).
 *
 * A copy is one flow whatever its endpoints: open the source
 * (source.h: a local image, - on stdin, or a remote host's serve),
 * check it, open the destination (job_dst_open: here through dest.h,
 * or on a remote host by its serve, which uses the same dest.h
 * functions), have the source deliver into the destination's sink,
 * commit.  Which source it is is the source's business; where the
 * destination is, job_dst_open()'s and job_dst_commit()'s.  A new raw
 * file here written from a source that resumes (a remote one) is a
 * resumable partial (dest_open_partial).  Copying between two remote
 * hosts is refused (exit 2): diskferry moves a disk between the host it
 * runs on and one other.
 *
 * Order of work (docs/design.md promises 1 and 5): the source is opened and
 * validated, chain and all, before the destination is created or opened.
 */
#define _GNU_SOURCE
#include "engine/job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/forecast.h"
#include "engine/job_int.h"
#include "engine/source.h"
#include "proto/remote.h"
#include "safety/safety.h"
#include "track/htree.h"
#include "util/progress.h"
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

void fs_layout_free(struct fs_layout *fs)
{
    if (fs) {
        fs_layout_release(fs);
        free(fs);
    }
}

/* One line for each region --fs-aware copies whole, and why. */
static void fs_warn(const struct job_spec *spec, const struct fs_layout *l)
{
    if (!spec->msgs)
        return;
    if (l->table_error[0])
        fprintf(spec->msgs, "diskferry: %s: warning: partition table not "
                "read (%s): the disk is copied whole\n", spec->cmd,
                l->table_error);
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_region *r = &l->v[i];
        char where[80];
        if (r->trusted)
            continue;
        if (r->part.number)
            snprintf(where, sizeof(where), "partition %u",
                     r->part.number);
        else
            snprintf(where, sizeof(where), "the disk");
        if (r->kind == FS_NONE)
            fprintf(spec->msgs, "diskferry: %s: warning: %s holds no "
                    "filesystem diskferry reads: copied whole\n",
                    spec->cmd, where);
        else
            fprintf(spec->msgs, "diskferry: %s: warning: %s (%s) copied "
                    "whole: %s\n", spec->cmd, where, r->why.fs,
                    r->why.reason);
    }
}

int job_fs_begin(const struct job_spec *spec, const struct source *src,
                 struct job_spec *spec_out, struct fs_layout **fs,
                 struct df_error *err)
{
    *spec_out = *spec;
    *fs = NULL;
    bool local = src->img && !src->session;
    if (!spec->fs_aware) {
        if (spec->kind != JOB_COPY || !local || spec->dry_run)
            return 0;
    } else if (!local) {
        return df_usage(err, "--fs-aware: %s is not a disk image on this "
                        "host (run diskferry on the source's host)",
                        spec->src);
    } else if (spec->force_share &&
               job_check_source(src->img, spec->cmd, "copy", false, true,
                                err) < 0) {
        if (err->cat == DF_REFUSED) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof(err->msg) - n, "; --fs-aware "
                     "reads a source no one writes: copy a snapshot");
        }
        return -1;
    }
    struct fs_layout *l = malloc(sizeof(*l));
    if (!l)
        return df_io(err, spec->src, ENOMEM, "out of memory");
    struct df_error e;
    df_error_init(&e);
    if (fs_layout_read(src->img, l, &e) < 0) {
        free(l);
        if (spec->fs_aware) {
            df_error_copy(err, &e);
            return -1;
        }
        return 0;               /* no hint, the copy goes on */
    }
    if (spec->fs_aware)
        fs_warn(spec, l);
    if (!l->used) {             /* nothing to skip, nothing to count */
        fs_layout_free(l);
        return 0;
    }
    *fs = l;
    spec_out->jo.fs = l;
    spec_out->jo.fs_hint = !spec->fs_aware;
    return 0;
}

void job_dest_opts(const struct job_spec *spec, struct dest_opts *o)
{
    *o = (struct dest_opts){
        .cmd = spec->cmd, .msgs = spec->msgs,
        .out_format = spec->out_format, .copts = spec->copts,
        .overwrite = spec->overwrite, .yes = spec->yes,
        .interactive = spec->interactive, .dry_run = spec->dry_run,
        .report_on_stdout = spec->report_on_stdout, .undo = spec->undo,
    };
}

/* DF_INTERRUPTED: say how far it got and how to go on (docs/design.md). */
void job_interrupted(struct df_error *err, uint64_t written,
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

void job_set_format(char *out, const char *fmt)
{
    snprintf(out, sizeof(((struct job_report *)0)->src_format), "%s", fmt);
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

/* ... and those of a copy to or from it. */
void job_copy_remote_opts(const struct job_spec *spec,
                                 const struct endpoint *ep,
                                 struct remote_opts *ro,
                                 struct job_report *rep)
{
    job_remote_opts(spec, ep, ro);
    if (spec->remote.compress)
        comp_mode_parse(spec->remote.compress, &ro->comp, &ro->level);
    ro->bwlimit = spec->remote.bwlimit;
    ro->tcp = spec->remote.tcp;
    ro->streams = spec->remote.streams;
    ro->resume = spec->resume;
    ro->overwrite = spec->overwrite;
    ro->threads = spec->jo.threads;     /* compression workers too */
    ro->dry_run = spec->dry_run;
    ro->force_share = spec->force_share;
    /* The same question as a local overwrite, asked here for the
     * remote host's check (safety.h check 6). */
    ro->ask = spec->overwrite && !spec->yes && !spec->dry_run &&
              spec->interactive;
    ro->undo = spec->undo;
    ro->verify = spec->jo.verify ? digest_alg_name(spec->jo.digest) : NULL;
    ro->fsync = spec->fsync;
    rep->remote = true;
    rep->transport = ro->tcp ? "tcp" : "ssh";
    rep->compression = comp_mode_name(ro->comp);
}

/* The destination of a copy: here (dest.h), or on a remote host, where
 * its serve opens it (a dry run shows here what would travel). */
struct job_dst {
    struct dest d;              /* here; a remote dry run's sink */
    struct remote *r;           /* a remote destination's session */
    struct sink *sink;          /* what the source delivers into */
    struct job_opts jo;         /* spec->jo, as the destination allows */
};

static int job_dst_open_remote(const struct job_spec *spec,
                               const struct remote_opts *ro,
                               struct source *src, struct job_dst *jd,
                               struct job_report *rep, struct df_error *err)
{
    struct remote_opts o = *ro;
    uint64_t size;
    bool created = false;

    bool known = source_size(src, &size);
    o.format = spec->out_format;
    if (remote_connect(&o, &jd->r, err) < 0 ||
        remote_open_dst(jd->r, known ? size : REMOTE_SIZE_UNKNOWN,
                        source_id(src), &jd->sink, &created, err) < 0)
        return -1;
    if (spec->undo && created) {
        struct dest_opts dopts;
        job_dest_opts(spec, &dopts);
        dest_warn_undo_new(&dopts, spec->dst);
    }
    /* --resume: what serve's journal lacks is all that is read */
    if (src->img)
        jd->jo.plan = remote_plan(jd->r, src->img);
    if (!spec->dry_run)
        return 0;
    /* The remote host ran its checks; show what would travel. */
    jd->d.sink = dryrun_sink_new(spec->dst, size,
                                 spec->report_on_stdout ? stderr : stdout,
                                 err);
    jd->sink = jd->d.sink;
    jd->jo.verify = false;
    rep->verify = false;
    return jd->sink ? 0 : -1;
}

/* Open the destination for what src delivers: the one place a job
 * tells a local destination from a remote one. */
static int job_dst_open(const struct job_spec *spec,
                        const struct endpoint *dep,
                        const struct remote_opts *ro, struct source *src,
                        struct job_dst *jd, struct job_report *rep,
                        struct df_error *err)
{
    struct dest_opts dopts;
    struct stat lst;
    uint64_t size;
    bool known = source_size(src, &size);

    jd->jo = spec->jo;
    if (dep->kind == EP_REMOTE)
        return job_dst_open_remote(spec, ro, src, jd, rep, err);
    job_dest_opts(spec, &dopts);
    /* A new raw file from a source that resumes: the partial. */
    bool partial = (src->caps & SOURCE_RESUMES) && !spec->dry_run &&
                   strcmp(spec->dst, "-") &&
                   lstat(spec->dst, &lst) < 0 && errno == ENOENT &&
                   (!spec->out_format || !strcmp(spec->out_format, "raw"));
    if (spec->resume && !partial)
        return df_usage(err, "--resume from a remote host continues into a "
                        "new raw file: %s exists or is not one", spec->dst);
    if (partial ? dest_open_partial(&jd->d, &dopts, spec->dst, size,
                                    source_id(src), spec->resume, err) < 0
                : dest_open(&jd->d, &dopts, spec->dst, src->img, size,
                            known, err) < 0)
        return -1;
    jd->d.sink->durable = spec->fsync;
    jd->sink = jd->d.sink;
    src->journal = partial ? &jd->d.j : NULL;
    src->held = jd->d.resumed ? &jd->d.done : NULL;
    return 0;
}

/* The copy verified: here, the rename (dest.h); there, serve's after
 * DONE (not for a dry run, which opened nothing there). */
static int job_dst_commit(const struct job_spec *spec, struct job_dst *jd,
                          bool verified, struct df_error *err)
{
    if (jd->r)
        return spec->dry_run ? 0 : remote_done(jd->r, verified, err);
    return dest_commit(&jd->d, err);
}

/* The session whose figures and errors the report takes, if any. */
static struct remote *job_session(const struct job_dst *jd,
                                  const struct source *src)
{
    return jd->r ? jd->r : src ? src->session : NULL;
}

void job_predict(const struct job_spec *spec, const struct source *src,
                 const char *host, struct job_opts *jo,
                 struct job_report *rep)
{
    struct link_figures lk;
    struct fc_strategy v;
    struct df_error e;

    if (!src->img || src->session)
        return;
    if (host)
        link_figures_load(host, &lk);
    df_error_init(&e);
    if (forecast_quick(spec, src->img, spec->jo.fs, host ? &lk : NULL, &v,
                       &e) < 0 || v.total <= 0)
        return;
    jo->predicted_seconds = v.total;
    rep->predicted_seconds = v.total;
    rep->predicted_bytes = v.bytes_sent;
    snprintf(rep->predicted_bottleneck, sizeof(rep->predicted_bottleneck),
             "%s", v.why);
}

int job_copy(const struct job_spec *spec, const struct endpoint *sep,
                    const struct endpoint *dep, struct job_report *rep,
                    struct df_error *err)
{
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct source *src = NULL;
    struct job_dst jd = { .r = NULL };
    struct remote_stats rs;
    struct remote_opts ro;
    struct remote *r;
    struct copy_record rec;
    struct job_spec fsspec;
    struct fs_layout *fsl = NULL;
    uint64_t size = 0;
    bool to_remote = dep->kind == EP_REMOTE;
    int rc;

    dest_init(&jd.d);
    copy_record_init(&rec);
    memset(&rs, 0, sizeof(rs));
    memset(&ro, 0, sizeof(ro));
    char recsrc[PATH_MAX + 300];
    if (to_remote || sep->kind == EP_REMOTE) {
        job_copy_remote_opts(spec, to_remote ? dep : sep, &ro, rep);
        if (to_remote && sep->kind == EP_LOCAL) {
            /* serve keeps DST's record under this name */
            sync_remote_source_name(spec->src, recsrc, sizeof(recsrc));
            ro.record_src = recsrc;
        }
        so.remote = &ro;
        if (spec->undo && !to_remote) {
            df_usage(err, "--undo: the journal is kept on the "
                     "destination's host; this destination is local");
            goto fail;
        }
    }
    if (source_open(sep, &so, &src, err) < 0 ||
        source_check(src, spec->cmd, "copy", spec->force_share,
                     !spec->msgs, err) < 0 ||
        job_fs_begin(spec, src, &fsspec, &fsl, err) < 0)
        goto fail;
    spec = &fsspec;
    if (ro.record_src && src->img)  /* what a delta of SRC will name */
        ro.sync_layer = src->img->layer_id;
    if (job_dst_open(spec, dep, &ro, src, &jd, rep, err) < 0)
        goto fail;
    job_predict(spec, src, to_remote ? dep->host : NULL, &jd.jo, rep);
    if (copy_record_start(spec, dep, src, &jd.d, &jd.jo, &rec, err) < 0 ||
        source_deliver(src, jd.jo.plan, jd.sink, &jd.jo, &rep->st,
                       err) < 0 ||
        job_dst_commit(spec, &jd, rep->st.verified, err) < 0 ||
        source_done(src, rep->st.verified, err) < 0 ||
        copy_record_end(spec, &rec, &rep->st, err) < 0)
        goto fail;
    if (src->journal)
        rjournal_remove(src->journal);
    job_set_format(rep->src_format, src->format);
    job_set_format(rep->dst_format, jd.d.img ? image_format_name(jd.d.img)
                                    : rep->remote && spec->out_format
                                    ? spec->out_format : "raw");
    rc = 0;
    goto out;
fail:
    r = job_session(&jd, src);
    remote_explain(r, err);
    /* A remote raw destination and a partial file here are journaled:
     * --resume continues them; they stay.  Written, to a remote host:
     * what it acknowledged. */
    if (r)
        remote_get_stats(r, &rs);
    job_interrupted(err, to_remote ? r ? rs.bytes_acked : 0
                         : jd.d.sink ? jd.d.sink->bytes_written : 0,
                    src && source_size(src, &size) ? size
                                                   : rep->st.disk_size,
                    to_remote ? !spec->out_format ||
                                    !strcmp(spec->out_format, "raw")
                              : jd.d.partial);
    if (err->cat == DF_VERIFY && r) {
        /* A resumed copy that does not verify: the source changed in a
         * way its id did not show (a remote source is known by path and
         * size), or what the interrupted run wrote did (the journal's
         * leaf hashes stood for it).  Its journal would resume into the
         * same failure. */
        if (jd.d.resumed || rs.skipped_resumed) {
            if (jd.d.resumed)
                rjournal_remove(&jd.d.j);
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof(err->msg) - n, "; the source, or "
                     "what the interrupted copy wrote, changed since: run "
                     "without --resume");
        }
    }
    dest_abort(&jd.d);
    rc = -1;
out:
    if ((r = job_session(&jd, src))) {
        remote_get_stats(r, &rs);
        rep->st.bytes_wire = rs.bytes_wire;
        rep->payload_bytes = rs.raw_in;
        rep->payload_bytes_compressed = rs.comp_out;
        rep->skipped_resumed = rs.skipped_resumed;
        rep->zstd_level_max = rs.zstd_level_max;
    }
    remote_close(jd.r);
    copy_record_release(&rec);
    dest_close(&jd.d);
    source_close(src);
    fs_layout_free(fsl);
    return rc;
}

/* The remote half of a verify (job_verify_remote): tree against tree,
 * s[ri] the remote source, s[1 - ri] the local image. */
static int job_verify_trees(const struct job_spec *spec,
                            struct source *const s[2], int ri,
                            struct job_report *rep, struct df_error *err)
{
    struct job_opts jo = spec->jo;
    struct remote_tree_stats ts;
    struct digest mine;
    struct htree t;
    double t0 = time_now();

    jo.digest = jo.digest ? jo.digest : DIGEST_XXH128;
    /* serve reads its disk while this side reads its own */
    if (remote_tree_request(s[ri]->session, jo.digest, 0, err) < 0 ||
        engine_tree(s[1 - ri]->img, &jo, &t, &mine, &rep->st, err) < 0)
        return -1;
    int r = remote_tree_diff(s[ri]->session, &t, 0, &rep->differ, &ts, err);
    htree_release(&t);
    if (r < 0)
        return -1;
    rep->hash_bytes_sent = ts.hash_bytes_sent;
    rep->hash_bytes_received = ts.hash_bytes_received;
    rep->tree_rounds = ts.rounds;
    rep->identical = rep->differ.n == 0;
    if (rep->identical && (ts.remote_digest.len != mine.len ||
                           memcmp(ts.remote_digest.bytes, mine.bytes,
                                  mine.len)))
        return df_net(err, spec->src, "protocol error: the remote digest "
                      "does not match its hash tree");
    rep->st.src_digest = ri ? mine : ts.remote_digest;
    rep->st.dst_digest = ri ? ts.remote_digest : mine;
    rep->st.seconds = time_now() - t0;
    return 0;
}

/*
 * verify A host:B, verify host:A B: the remote disk opened as a source
 * (serve checks it on its host), the local one as job_verify opens it;
 * then job_verify_trees.  Disks of different sizes are not compared:
 * they differ, and the ranges past the shorter one are listed.  1:
 * neither endpoint is remote (job_verify goes on).
 */
static int job_verify_remote(const struct job_spec *spec,
                             struct job_report *rep, struct df_error *err)
{
    const char *arg[2] = { spec->src, spec->dst };
    const struct image_open_opts *open[2] = { &spec->src_open,
                                              &spec->dst_open };
    struct source *s[2] = { NULL, NULL };
    struct endpoint ep[2];
    struct remote_opts ro;
    uint64_t size[2];
    int rc = -1, ri = -1;

    for (int i = 0; i < 2; i++) {
        if (endpoint_parse(arg[i], &ep[i], err) < 0)
            return -1;
        if (ep[i].kind == EP_REMOTE)
            ri = ri < 0 ? i : 2;
    }
    if (ri < 0)
        return 1;
    rep->usage_hint = true;
    if (ri == 2)
        return df_usage(err, "both A and B are on other hosts: run "
                        "diskferry verify on one of them");
    if (ep[1 - ri].kind != EP_LOCAL && ep[1 - ri].kind != EP_NBD)
        return df_usage(err, "%s: verify compares two disks, not a stream",
                        arg[1 - ri]);
    rep->usage_hint = false;
    job_remote_opts(spec, &ep[ri], &ro);
    ro.force_share = spec->force_share;
    rep->remote = true;
    rep->transport = "ssh";
    for (int i = 0; i < 2; i++) {
        struct source_opts so = { .open = open[i], .arg = arg[i],
                                  .remote = i == ri ? &ro : NULL };
        if (source_open(&ep[i], &so, &s[i], err) < 0 ||
            source_check(s[i], spec->cmd, "comparison", spec->force_share,
                         !spec->msgs, err) < 0)
            goto out;
    }
    if (!s[1 - ri]->img) {
        df_usage(err, "%s: a %s source cannot be compared", arg[1 - ri],
                 s[1 - ri]->ops->kind);
        goto out;
    }
    for (int i = 0; i < 2; i++)
        source_size(s[i], &size[i]);
    rep->src_size = size[0];
    rep->dst_size = size[1];
    rep->st.disk_size = size[1 - ri];
    job_set_format(rep->src_format, s[0]->format);
    job_set_format(rep->dst_format, s[1]->format);
    if (size[0] != size[1]) {
        uint64_t lo = size[0] < size[1] ? size[0] : size[1];
        uint64_t hi = size[0] ^ size[1] ^ lo;
        if (extent_list_append(&rep->differ, lo, hi - lo, EXT_DATA,
                               spec->cmd, err) < 0)
            goto out;
        if (spec->msgs)
            fprintf(spec->msgs, "diskferry: %s: the sizes differ: the "
                    "contents were not compared\n", spec->cmd);
        rep->identical = false;
    } else if (job_verify_trees(spec, s, ri, rep, err) < 0) {
        goto out;
    }
    rc = source_done(s[ri], true, err);
out:
    if (rc < 0 && s[ri] && s[ri]->session)
        remote_explain(s[ri]->session, err);
    source_close(s[0]);
    source_close(s[1]);
    return rc;
}

/* verify A B: both local disks, opened as sources and checked, then
 * compared (engine_compare reads B where A has data). */
static int job_verify(const struct job_spec *spec, struct job_report *rep,
                      struct df_error *err)
{
    const char *arg[2] = { spec->src, spec->dst };
    const struct image_open_opts *open[2] = { &spec->src_open,
                                              &spec->dst_open };
    struct source *s[2] = { NULL, NULL };
    struct endpoint ep;
    int rc = -1, r;

    extent_list_init(&rep->differ, JOB_VERIFY_MAX_RANGES);
    if ((r = job_verify_remote(spec, rep, err)) != 1)
        return r;
    for (int i = 0; i < 2; i++) {
        struct source_opts so = { .open = open[i], .arg = arg[i] };
        if (endpoint_parse(arg[i], &ep, err) < 0)
            goto out;
        if (ep.kind != EP_LOCAL && ep.kind != EP_NBD) {
            rep->usage_hint = true;
            df_usage(err, ep.kind == EP_STREAM || ep.kind == EP_TAR
                     ? "%s: verify compares two disks, not a stream"
                     : "%s: verify compares two disks on this host (a "
                       "local name with a colon is written ./a:b)",
                     arg[i]);
            goto out;
        }
        if (source_open(&ep, &so, &s[i], err) < 0)
            goto out;
    }
    for (int i = 0; i < 2; i++)
        if (source_check(s[i], spec->cmd, "comparison", spec->force_share,
                         !spec->msgs, err) < 0)
            goto out;
    /* The comparison reads B at A's offsets: both random-access. */
    for (int i = 0; i < 2; i++)
        if (!s[i]->img) {
            df_usage(err, "%s: a %s source cannot be compared", arg[i],
                     s[i]->ops->kind);
            goto out;
        }
    r = engine_compare(s[0]->img, s[1]->img, &spec->jo, &rep->differ,
                       &rep->st, err);
    if (r < 0)
        goto out;
    rep->identical = r == 0;
    source_size(s[0], &rep->src_size);
    source_size(s[1], &rep->dst_size);
    job_set_format(rep->src_format, s[0]->format);
    job_set_format(rep->dst_format, s[1]->format);
    rc = 0;
out:
    source_close(s[0]);
    source_close(s[1]);
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
    if (spec->kind == JOB_VERIFY && spec->manifest)
        return job_verify_manifest(spec, rep, err);
    if (spec->kind == JOB_VERIFY)
        return job_verify(spec, rep, err);
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
    if (spec->kind == JOB_SYNC) {
        double t0 = time_now();
        int rc = job_sync(spec, &sep, &dep, rep, err);
        rep->st.seconds = time_now() - t0;
        return rc;
    }
    if (spec->jo.salvaged && sep.kind != EP_LOCAL && sep.kind != EP_NBD) {
        rep->usage_hint = true;
        return df_usage(err, "--salvage applies to a file, device or NBD "
                        "export as SRC");
    }
    if (sep.kind != EP_REMOTE && dep.kind != EP_REMOTE &&
        (spec->resume || spec->remote.tcp || spec->remote.bwlimit)) {
        rep->usage_hint = true;
        return df_usage(err, "--resume, --transport and --bwlimit apply to "
                        "a remote SRC or DST");
    }
    return job_salvage_end(spec, rep, job_copy(spec, &sep, &dep, rep, err),
                           err);
}

void job_report_release(struct job_report *rep)
{
    extent_list_release(&rep->differ);
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
