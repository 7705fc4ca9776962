/*
 * sync.c: `diskferry sync SRC DST`: write into DST, an earlier copy of
 * SRC, only the blocks that differ, verified end to end.
 *
 * The life of a sync:
 *
 *   SRC opened and checked (as a copy's source; with --passes or
 *       --until a source in use is read anyway: those passes run while
 *       the VM does, and the last one must run with it stopped)
 *   DST looked at: it must exist (else the sync is a copy) and be raw
 *       (a file or device written in place); its identity names its
 *       state record (track/manifest.h)
 *   what changed, from the base DST is known to hold:
 *       compare          DST's hash tree, read where it lives
 *       record           the state record the last copy or sync left
 *       manifest:FILE    a manifest the user kept (--write-manifest)
 *     record and manifest are proved before anything is written: their
 *     identity must be DST's, and DST's leaves at 64 spread places and
 *     at every leaf the sync will overwrite must hash as they say
 *     (exit 3 otherwise, naming --changes compare)
 *   DST opened for writing (dest.h): the same checks as a copy's; a DST
 *       that the record or manifest shows to be a copy of this SRC
 *       needs no --overwrite and no question, any other does
 *   each pass: SRC's tree, diffed against the base; the changed blocks
 *       copied with the plan (engine_copy), the kept leaves' hashes
 *       known to the digest on both sides, so verification reads back
 *       only what was written; the leaves delivered are the next base
 *   a regular file takes SRC's size (grown before, cut after)
 *   the state record (and --write-manifest) rewritten
 *
 * A sync that is killed leaves the record marked busy (NAME.busy beside
 * it in the state directory): the next one compares instead of trusting
 * it, so it sends only what still differs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/job_int.h"
#include "engine/plan.h"
#include "engine/source.h"
#include "engine/sync_int.h"
#include "image/nbd.h"
#include "proto/remote.h"
#include "safety/safety.h"
#include "track/htree.h"
#include "track/manifest.h"
#include "track/track.h"
#include "util/overflow.h"
#include "util/progress.h"
#include "util/size.h"

/* ---- trees ---- */

/* t (built) as a tree of a size-byte disk: leaves past its end read as
 * zeros (a file that will grow), leaves past size dropped. */
static int tree_resize(struct htree *t, uint64_t size, struct df_error *err)
{
    struct htree n;
    if (t->size == size)
        return 0;
    if (htree_init(&n, t->alg, size, err) < 0)
        return -1;
    /* leaves past t's end read as zeros: the sentinel, left as it is */
    htree_copy_leaves(&n, t);
    /* A leaf cut short by the new end no longer holds what it did. */
    if (size < t->size && size % DIGEST_LEAF_SIZE)
        memset(htree_leaf_slot(&n, n.nleaves - 1, 1), 0xff, t->hlen);
    if (htree_build(&n, err) < 0) {
        htree_release(&n);
        return -1;
    }
    htree_release(t);
    *t = n;
    return 0;
}

/* The tree of img's first `size` bytes (a larger DST: its tail is not
 * compared), resized to `want` (a smaller DST: the rest as zeros). */
static int tree_of(struct image *img, const struct job_opts *o,
                   uint64_t want, struct htree *t, uint64_t *bytes_read,
                   struct df_error *err)
{
    struct digest d;
    struct job_stats st;
    memset(&st, 0, sizeof(st));
    uint64_t whole = img->size;
    img->size = min_u64(whole, want);
    int r = engine_tree(img, o, t, &d, &st, err);
    img->size = whole;
    *bytes_read += st.bytes_read;
    return r < 0 ? -1 : tree_resize(t, want, err);
}

struct tree_job {
    struct image *img;
    const struct job_opts *o;
    uint64_t want;
    struct htree t;
    uint64_t bytes_read;
    struct df_error err;
    int rc;
};

static void *tree_thread(void *arg)
{
    struct tree_job *tj = arg;
    tj->rc = tree_of(tj->img, tj->o, tj->want, &tj->t, &tj->bytes_read,
                     &tj->err);
    return NULL;
}

/* ---- base proof ---- */

/* Leaf i of DST must hash as the base says. */
static int prove_leaf(struct image *dst, const struct htree *base,
                      uint64_t i, uint8_t *buf, const char *what,
                      uint64_t *leaves, uint64_t *bytes,
                      struct df_error *err)
{
    uint8_t h[DIGEST_MAX_LEN];
    uint64_t off = i * DIGEST_LEAF_SIZE;
    uint64_t len = min_u64(DIGEST_LEAF_SIZE, base->size - off);
    if (off + len > dst->size)
        len = dst->size > off ? dst->size - off : 0;
    if (len && image_read(dst, buf, (size_t)len, off, err) < 0)
        return -1;
    uint8_t want[DIGEST_MAX_LEN];
    digest_leaf(base->alg, buf, (size_t)len, h);
    htree_leaf_hash(base, i, want);
    (*leaves)++;
    *bytes += len;
    if (!memcmp(h, want, base->hlen))
        return 0;
    char at[32];
    size_format(off, at, sizeof(at));
    return df_refuse(err, dst->name, "refusing to sync: DST is not the copy "
                     "%s describes (its 64 KiB block at byte %llu (%s) "
                     "differs): it was written since; run with --changes "
                     "compare", what, (unsigned long long)off, at);
}

/* sync.h */
int sync_base_prove(struct image *dst, const struct htree *base,
                    const struct extent_list *changed, bool resumed,
                    const char *what, uint64_t *leaves, uint64_t *bytes,
                    struct df_error *err)
{
    uint64_t n = base->nleaves;
    uint64_t step = n > SYNC_PROOF_SAMPLES ? n / SYNC_PROOF_SAMPLES : 1;
    uint64_t sample = step / 2;     /* next sampled leaf */
    uint64_t last = UINT64_MAX;     /* last leaf proved */
    size_t ci = 0;
    uint8_t *buf = malloc(DIGEST_LEAF_SIZE);
    int rc = 0;

    if (!buf)
        return df_io(err, dst->name, ENOMEM, "out of memory");
    for (;;) {
        /* the next leaf to prove: a sample or the next changed one */
        uint64_t c = UINT64_MAX;
        while (ci < changed->n) {
            uint64_t a = changed->v[ci].off / DIGEST_LEAF_SIZE;
            uint64_t b = div_round_up(changed->v[ci].off +
                                      changed->v[ci].len, DIGEST_LEAF_SIZE);
            uint64_t from = last == UINT64_MAX ? a : max_u64(a, last + 1);
            if (from < b) {
                c = from;
                break;
            }
            ci++;
        }
        while (last != UINT64_MAX && sample <= last)
            sample += step;
        uint64_t i = min_u64(c, sample);
        if (i >= n)
            break;
        if (!(resumed && i == c) &&
            (rc = prove_leaf(dst, base, i, buf, what, leaves, bytes,
                             err)) < 0)
            break;
        last = i;
    }
    free(buf);
    return rc;
}


/* ---- the job ---- */


/* The base's tree at SRC's size (a grown SRC: zero leaves after it),
 * built. */
int sync_base_resized(struct sync_state *s, struct htree *bt,
                      struct df_error *err)
{
    const struct htree *b = &s->base.tree;
    if (htree_init(bt, b->alg, b->size, err) < 0)
        return -1;
    htree_copy_leaves(bt, b);
    if (tree_resize(bt, s->size, err) < 0 ||
        (bt->size == b->size && htree_build(bt, err) < 0)) {
        htree_release(bt);
        return -1;
    }
    return 0;
}

/* The first pass's change set: SRC's tree diffed against the base
 * (compare: DST's tree, hashed at the same time). */
static int first_diff(struct sync_state *s, struct htree *src_t,
                      struct extent_list *changed, struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    struct job_opts o = spec->jo;
    struct job_report *rep = s->rep;
    o.progress = false;

    if (s->meta)
        return sync_meta_diff(s, src_t, changed, err);
    if (s->have_base) {
        if (tree_of(s->src->img, &o, s->size, src_t, &rep->src_bytes_hashed,
                    err) < 0)
            return -1;
        struct htree bt;
        if (sync_base_resized(s, &bt, err) < 0)
            return -1;
        if (htree_diff(src_t, &bt, s->block_level, changed, err) < 0) {
            htree_release(&bt);
            return -1;
        }
        htree_release(&bt);
        return sync_base_prove(s->d.img, &s->base.tree, changed, false,
                               s->base_what,
                          &rep->proof_leaves, &rep->dst_bytes_read, err);
    }
    /* compare: both trees at once, each where its data lives; DST's
     * whole (a free leaf there is the same only when it is zero) */
    struct job_opts od = o;
    od.fs = NULL;
    struct tree_job tj = { .img = s->d.img, .o = &od, .want = s->size };
    pthread_t tid;
    df_error_init(&tj.err);
    if (pthread_create(&tid, NULL, tree_thread, &tj) != 0)
        return df_io(err, "", errno, "cannot start a thread");
    int r = tree_of(s->src->img, &o, s->size, src_t,
                    &rep->src_bytes_hashed, err);
    pthread_join(tid, NULL);
    rep->dst_bytes_read += tj.bytes_read;
    if (tj.rc < 0) {
        if (r == 0)
            htree_release(src_t);
        df_error_copy(err, &tj.err);
        return -1;
    }
    if (r < 0 || htree_diff(src_t, &tj.t, s->block_level, changed,
                            err) < 0) {
        htree_release(&tj.t);
        return -1;
    }
    htree_release(&tj.t);
    return 0;
}

/* One pass: what changed since the base, copied and verified; *next
 * gets the leaves delivered (what DST holds now). */
static int sync_pass(struct sync_state *s, unsigned pass,
                     struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    struct job_report *rep = s->rep;
    struct htree src_t, next;
    struct extent_list changed;
    struct change_source *cs = NULL;
    struct job_stats st;
    int rc = -1;
    double t0 = time_now();

    memset(&src_t, 0, sizeof(src_t));
    memset(&next, 0, sizeof(next));
    memset(&st, 0, sizeof(st));
    extent_list_init(&changed, EXTENT_LIST_DEFAULT_CAP);
    if (!s->have_prev) {
        if (first_diff(s, &src_t, &changed, err) < 0)
            goto out;
    } else {
        struct job_opts o = spec->jo;
        o.progress = false;
        if (tree_of(s->src->img, &o, s->size, &src_t,
                    &rep->src_bytes_hashed, err) < 0 ||
            htree_diff(&src_t, &s->prev, s->block_level, &changed,
                       err) < 0)
            goto out;
    }
    if (s->meta && !s->have_base)
        cs = change_source_unverified(s->meta->name, &changed, err);
    else
        cs = change_source_from_tree(s->meta ? s->meta->name : "compare",
                                     &changed, &src_t, err);
    if (!cs || htree_init(&next, spec->jo.digest, s->size, err) < 0)
        goto out;
    struct change_source *csv[1] = { cs };
    struct plan_inputs in = { .changes = csv, .nchanges = 1 };
    struct job_opts jo = spec->jo;
    jo.plan = &in;
    jo.leaf_fn = htree_leaf_fn;
    jo.leaf_ctx = &next;
    if (spec->dry_run)
        jo.verify = false;
    if (pass == 1 && !spec->dry_run &&
        sync_record_begin(s->sfd, s->id, err) < 0)
        goto out;
    if (engine_copy(s->src->img, s->d.sink, &jo, &st, err) < 0)
        goto out;
    if (htree_build(&next, err) < 0)
        goto out;
    uint64_t nchanged = 0;
    for (size_t i = 0; i < changed.n; i++)
        nchanged += changed.v[i].len;
    rep->passes = pass;
    rep->changed_bytes = nchanged;
    rep->changed_blocks = changed.n;
    rep->last_pass_seconds = time_now() - t0;
    rep->st.bytes_written += st.bytes_written;
    rep->st.bytes_zeroed += st.bytes_zeroed;
    rep->st.skipped_zero += st.skipped_zero;
    rep->st.skipped_unallocated = st.skipped_unallocated;
    rep->st.bytes_unchanged = st.bytes_unchanged;
    rep->st.bytes_free = st.bytes_free;
    memcpy(rep->st.bytes_free_by, st.bytes_free_by,
           sizeof(st.bytes_free_by));
    s->copy_read += st.bytes_read;
    rep->st.bytes_read = rep->src_bytes_hashed + s->copy_read;
    rep->st.disk_size = st.disk_size;
    rep->st.verify_seconds += st.verify_seconds;
    rep->st.src_digest = st.src_digest;
    rep->st.dst_digest = st.dst_digest;
    rep->st.verified = st.verified;
    if (spec->msgs && (spec->passes > 1 || spec->until)) {
        char b[32];
        size_format(nchanged, b, sizeof(b));
        fprintf(spec->msgs, "diskferry: sync: pass %u: %s changed, %.1f s\n",
                pass, b, rep->last_pass_seconds);
    }
    if (s->have_prev)
        htree_release(&s->prev);
    s->prev = next;
    s->have_prev = true;
    memset(&next, 0, sizeof(next));
    rc = 0;
out:
    change_source_close(cs);
    htree_release(&src_t);
    htree_release(&next);
    extent_list_release(&changed);
    return rc;
}

/* DST before it is opened for writing: raw, its identity, and the base
 * the changes are taken from.  Sets consent: DST is a copy of SRC that
 * diskferry recorded. */
static int sync_look(struct sync_state *s, bool *consent,
                     struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    struct image_open_opts po = { .no_parents = true };
    struct image *probe = NULL;
    const char *ch = spec->changes;
    bool busy = false;

    if (image_is_nbd_uri(spec->dst)) {
        /* raw; not connected twice (a qemu-nbd without -t takes one
         * client) */
        sync_nbd_identity(spec->dst, s->id, sizeof(s->id));
    } else {
        if (image_open(spec->dst, &po, &probe, err) < 0)
            return -1;
        const char *fmt = image_format_name(probe);
        if (strcmp(fmt, "raw")) {
            image_close(probe);
            return df_usage(err, "%s: a %s image: sync writes raw files "
                            "and devices in place (use copy --overwrite to "
                            "replace it)", spec->dst, fmt);
        }
        sync_identity(&probe->file, s->id, sizeof(s->id));
        image_close(probe);
    }
    sync_source_name(spec->src, s->srcname, sizeof(s->srcname));
    s->sfd = sync_record_open(NULL, !spec->dry_run, spec->msgs,
                              spec->cmd);

    struct manifest rec;
    bool named = ch && !strncmp(ch, "manifest:", 9);
    int r = named ? 1 : sync_record_load(s->sfd, s->id, &rec, &busy, spec->msgs);
    bool have_rec = r == 0;
    *consent = have_rec && !strcmp(rec.src, s->srcname);
    if (busy && spec->msgs && (!ch || !strcmp(ch, "compare")))
        fprintf(spec->msgs, "diskferry: sync: the last copy or sync to %s "
                "did not finish: comparing\n", spec->dst);
    /* A record of another source (the same DST copied from elsewhere)
     * is no base: compare.  The name is one more check, beyond the
     * identity, that the record is this DST's. */
    if (!ch && *consent && !busy) {
        s->base = rec;
        s->have_base = true;
        s->base_what = "the state record";
        s->rep->changes = "record";
        return 0;
    }
    if (sync_meta_spec(ch)) {
        int m = sync_meta_open(s, err);
        if (m < 0 || m == 1) {
            if (have_rec)
                manifest_release(&rec);
            s->rep->changes = "compare";
            return m < 0 ? -1 : 0;
        }
        s->rep->changes = s->meta->name;
        /* DST's record says what the rest of DST holds, whatever SRC it
         * was written from (a snapshot then, the origin now: only one of
         * this SRC is consent); a top layer's must be of its parent.
         * One whose job did not end, only with --resume (what that job
         * wrote is written again). */
        bool fits = have_rec;
        if (sync_top_layer(ch))
            *consent = fits = have_rec &&
                sync_layer_base(&rec, s->src->img->parent_id,
                                s->src->img->layer_id, s->srcname);
        if (fits && (!busy || spec->resume)) {
            s->base = rec;
            s->have_base = true;
            s->base_what = "the state record";
            s->resumed = busy;
            return 0;
        }
        if (have_rec)
            manifest_release(&rec);
        if (s->meta->base_read && spec->write_manifest)
            return df_usage(err, "--write-manifest: with --changes %s and "
                            "no record of DST, what DST holds is known only "
                            "where the sync writes", ch);
        if (s->meta->base_read)
            return 0;           /* the store proves DST */
        if (sync_top_layer(ch) && spec->trust_base && !busy) {
            *consent = true;    /* the user vouches for DST */
            return 0;
        }
        if (busy && fits)
            return df_refuse(err, spec->dst, "refusing to sync with "
                             "--changes %s: the last job writing DST did "
                             "not finish (run with --resume to finish it)",
                             ch);
        if (sync_top_layer(ch))
            return df_refuse(err, spec->dst, "refusing to sync with "
                             "--changes top-layer: no state record shows "
                             "DST was written from the parent %s names "
                             "(%s); give --trust-base if it was, or run "
                             "with --changes compare", spec->src,
                             s->src->img->parent_id[0]
                                 ? s->src->img->parent_id
                                 : s->src->img->parent_name);
        return df_refuse(err, spec->dst, "refusing to sync with --changes "
                         "%s: no state record says what DST holds (run "
                         "with --changes compare)", ch);
    }
    if (have_rec)
        manifest_release(&rec);
    if (!ch || !strcmp(ch, "compare")) {
        s->rep->changes = "compare";
        return 0;
    }
    /* manifest:FILE */
    const char *file = ch + strlen("manifest:");
    r = manifest_read(-1, file, &s->base, err);
    if (r != 0)
        return r < 0 ? -1 : df_usage(err, "--changes manifest:%s: no such "
                                     "file", file);
    s->have_base = true;
    s->base_what = "the manifest";
    s->rep->changes = "manifest";
    if (strcmp(s->base.id, s->id))
        return df_refuse(err, spec->dst, "refusing to sync: manifest %s "
                         "describes %s, not %s (%s); run with --changes "
                         "compare", file, s->base.id, spec->dst, s->id);
    if (s->base.tree.alg != spec->jo.digest)
        return df_usage(err, "--changes manifest:%s: its hashes are %s, "
                        "this sync's %s (--digest)", file,
                        digest_alg_name(s->base.tree.alg),
                        digest_alg_name(spec->jo.digest));
    /* The user named the manifest, which names DST (checked above) and
     * is proved on it before any write: DST is that earlier copy,
     * whatever SRC is called now (a new snapshot's name, a moved VM). */
    *consent = true;
    return 0;
}

static void sync_state_release(struct sync_state *s)
{
    change_source_close(s->meta);
    if (s->have_base)
        manifest_release(&s->base);
    if (s->have_prev)
        htree_release(&s->prev);
    if (s->sfd >= 0)
        close(s->sfd);
    dest_close(&s->d);
    source_close(s->src);
    fs_layout_free(s->fs);
}

/* DST opened for writing, in place (dest.h: copy's checks; consent, a
 * record or manifest of this copy, stands for --overwrite and the
 * question; a regular file takes SRC's size).  src: for the check that
 * DST is not SRC (NULL: a remote SRC). */
static int sync_dest_open(struct sync_state *s, bool consent,
                          struct image *src, struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    struct dest_opts dopts;
    job_dest_opts(spec, &dopts);
    dopts.overwrite = spec->overwrite || consent;
    dopts.yes = spec->yes || consent;
    dopts.grow = true;
    if (dest_open(&s->d, &dopts, spec->dst, src, s->size, true, err) < 0)
        return -1;
    if (s->d.created || !s->d.img)
        return df_usage(err, "%s: sync writes raw files and devices in "
                        "place", spec->dst);
    return 0;
}

/* After the last pass: a regular file cut to SRC's size, the record and
 * the manifest written. */
static int sync_finish(struct sync_state *s, struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    if (spec->dry_run)
        return 0;
    struct image *img = s->d.img;
    if (img && img->file.is_regular && img->file.size > s->size) {
        if (ftruncate(img->file.fd, (off_t)s->size) < 0)
            return df_io(err, spec->dst, errno, "cannot cut to %llu bytes",
                         (unsigned long long)s->size);
        img->file.size = img->size = s->size;
    }
    if (s->meta && !s->have_base) {
        /* DST's tree is known only where this sync wrote: no record (the
         * busy mark stays: the next sync compares) */
        return 0;
    }
    struct manifest m;
    memset(&m, 0, sizeof(m));
    m.tree = s->prev;
    m.digest = s->rep->st.src_digest;
    snprintf(m.id, sizeof(m.id), "%s", s->id);
    snprintf(m.src, sizeof(m.src), "%s", s->srcname);
    if (s->src->img)
        snprintf(m.src_layer, sizeof(m.src_layer), "%s",
                 s->src->img->layer_id);
    sync_record_commit(s->sfd, s->id, &m, spec->msgs, spec->cmd);
    if (spec->write_manifest &&
        manifest_write(-1, spec->write_manifest, &m, err) < 0)
        return -1;
    return 0;
}

/*
 * sync SRC host:DST: serve hashes DST on its host while SRC is hashed
 * here; the two trees are compared by the walk (track/htree.h), so only
 * hashes of what differs cross before the changed blocks do; the copy
 * then runs with the plan, and serve verifies what DST holds, reading
 * back only what was written.  A DST that does not exist there is
 * copied whole.  Serve keeps DST's state record on its host (msg.h,
 * "State records"): a DST recorded as a copy of this SRC is written
 * without --overwrite, and by default its record stands for its tree
 * (serve proves DST against it first), so DST is read only for that
 * proof.
 */
static int job_sync_remote(const struct job_spec *spec,
                           const struct endpoint *sep,
                           const struct endpoint *dep,
                           struct job_report *rep, struct df_error *err)
{
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct source *src = NULL;
    struct remote_opts ro;
    struct remote *r = NULL;
    struct sink *sink = NULL;
    struct htree t;
    struct extent_list changed;
    struct change_source *cs = NULL;
    struct remote_tree_stats ts;
    struct remote_stats rs;
    bool created = false, have_t = false;
    struct job_spec fsspec;
    struct fs_layout *fsl = NULL;
    uint64_t size = 0;
    int rc = -1;

    struct sync_state ms;       /* for the metadata source */
    memset(&ts, 0, sizeof(ts));
    memset(&ms, 0, sizeof(ms));
    extent_list_init(&changed, EXTENT_LIST_DEFAULT_CAP);
    if (spec->changes && strcmp(spec->changes, "compare") &&
        !sync_meta_spec(spec->changes)) {
        rep->usage_hint = true;
        return df_usage(err, "--changes %s: for a DST on this host (a "
                        "remote DST is compared, or synced from metadata)",
                        spec->changes);
    }
    struct image_open_opts top = spec->src_open;
    if (sync_top_layer_open_opts(spec, sep, &top, &so, rep, err) < 0)
        return -1;
    if (spec->write_manifest) {
        rep->usage_hint = true;
        return df_usage(err, "--write-manifest: for a DST on this host");
    }
    int bl = htree_block_level(spec->block_size ? spec->block_size
                                                : DIGEST_LEAF_SIZE);
    if (bl < 0) {
        rep->usage_hint = true;
        return df_usage(err, "--block-size: a power of two from 64K to 64M");
    }
    char recsrc[PATH_MAX + 300];
    job_copy_remote_opts(spec, dep, &ro, rep);
    ro.resume = false;      /* a sync goes on by comparing (header) */
    ro.sync_walk = spec->dry_run;   /* serve stays for the walk */
    sync_remote_source_name(spec->src, recsrc, sizeof(recsrc));
    ro.record_src = recsrc;
    so.remote = &ro;
    if (source_open(sep, &so, &src, err) < 0 ||
        source_check(src, spec->cmd, "sync", spec->force_share,
                     !spec->msgs, err) < 0 ||
        job_fs_begin(spec, src, &fsspec, &fsl, err) < 0)
        goto out;
    spec = &fsspec;
    struct job_opts pjo = spec->jo;
    job_predict(spec, src, dep->host, &pjo, rep);
    if (!source_size(src, &size) || !src->img) {
        df_usage(err, "%s: not a disk that can be compared", spec->src);
        goto out;
    }
    /* the metadata read and checked before anything is sent */
    ms.spec = spec;
    ms.rep = rep;
    ms.src = src;
    ms.size = size;
    if (sync_meta_spec(spec->changes) && sync_meta_open(&ms, err) < 0)
        goto out;
    ro.any_record = ms.meta && !sync_top_layer(spec->changes);
    ro.busy_record = ms.meta && spec->resume;
    ro.sync_layer = src->img->layer_id;
    if (ms.meta && sync_top_layer(spec->changes))
        ro.sync_parent = src->img->parent_id;
    if (remote_connect(&ro, &r, err) < 0 ||
        remote_open_dst(r, size, source_id(src), &sink, &created, err) < 0)
        goto out;
    struct job_opts jo = spec->jo;
    const struct plan_inputs *plan = NULL;
    struct change_source *csv[1];
    struct plan_inputs in = { .changes = csv, .nchanges = 1 };
    if (created) {
        rep->changes = "copy";          /* nothing there to compare */
    } else if (ms.meta) {
        /* the changes from metadata here, proved there against the
         * record (a store's old contents are not sent: the record is
         * the proof) */
        rep->changes = ms.meta->name;
        if (!remote_dst_has_record(r)) {
            df_refuse(err, spec->dst, "refusing to sync with --changes %s: "
                      "no state record on DST's host says what DST holds "
                      "(run with --changes compare)", spec->changes);
            goto out;
        }
        if (remote_tree_request_record(r, spec->jo.digest, (unsigned)bl,
                                       err) < 0 ||
            sync_meta_changed(&ms, &changed, err) < 0 ||
            (sync_top_layer(spec->changes) &&
             sync_top_layer_whole_leaves(spec, &changed, size, err) < 0) ||
            remote_tree_changes(r, size, &changed, &ts, err) < 0 ||
            !(cs = change_source_unverified(ms.meta->name, &changed, err)))
            goto out;
        rep->hash_bytes_sent = ts.hash_bytes_sent;
        csv[0] = cs;
        jo.plan = plan = &in;
        for (size_t i = 0; i < changed.n; i++)
            rep->changed_bytes += changed.v[i].len;
        rep->changed_blocks = changed.n;
    } else {
        /* the record there, proved by serve before the walk ends, else
         * DST read there */
        bool rec = !spec->changes && remote_dst_has_record(r);
        rep->changes = rec ? "record" : "compare";
        struct job_opts o = spec->jo;
        o.progress = false;
        if ((rec ? remote_tree_request_record(r, o.digest, (unsigned)bl,
                                              err)
                 : remote_tree_request(r, o.digest, (unsigned)bl,
                                       err)) < 0 ||
            tree_of(src->img, &o, size, &t, &rep->src_bytes_hashed,
                    err) < 0)
            goto out;
        have_t = true;
        if (remote_tree_diff(r, &t, (unsigned)bl, &changed, &ts, err) < 0)
            goto out;
        rep->dst_bytes_read = ts.remote_bytes_read;
        rep->hash_bytes_sent = ts.hash_bytes_sent;
        rep->hash_bytes_received = ts.hash_bytes_received;
        rep->tree_rounds = ts.rounds;
        cs = change_source_from_tree("compare", &changed, &t, err);
        if (!cs)
            goto out;
        csv[0] = cs;
        jo.plan = plan = &in;
        for (size_t i = 0; i < changed.n; i++)
            rep->changed_bytes += changed.v[i].len;
        rep->changed_blocks = changed.n;
    }
    double t0 = time_now();
    struct sink *dry = NULL;
    if (spec->dry_run) {
        /* what would be written, shown here; serve wrote nothing */
        dry = dryrun_sink_new(spec->dst, size, spec->report_on_stdout
                                                   ? stderr : stdout, err);
        if (!dry)
            goto out;
        sink = dry;
        jo.verify = false;
        rep->verify = false;
    }
    int dr = source_deliver(src, plan, sink, &jo, &rep->st, err);
    sink_free(dry);
    /* a dry run of a new DST: serve ended after its checks */
    if (dr < 0 || (!(spec->dry_run && created) &&
                   remote_done(r, rep->st.verified, err) < 0))
        goto out;
    rep->passes = 1;
    rep->last_pass_seconds = time_now() - t0;
    rep->st.bytes_read += rep->src_bytes_hashed;
    job_set_format(rep->src_format, src->format);
    job_set_format(rep->dst_format, "raw");
    rc = 0;
out:
    if (rc < 0) {
        remote_explain(r, err);
        job_interrupted(err, 0, size, false);
    }
    if (r) {
        remote_get_stats(r, &rs);
        rep->st.bytes_wire = rs.bytes_wire;
        rep->payload_bytes = rs.raw_in;
        rep->payload_bytes_compressed = rs.comp_out;
    }
    change_source_close(cs);
    change_source_close(ms.meta);
    if (have_t)
        htree_release(&t);
    extent_list_release(&changed);
    remote_close(r);
    source_close(src);
    fs_layout_free(fsl);
    return rc;
}

/*
 * sync host:SRC DST: serve hashes SRC on its host; here, DST's tree is
 * DST's state record (proved on DST once the walk says what changed)
 * or DST read here (compare).  The walk gives the changed blocks; serve
 * then streams only those (the rest is "held", as a resume's), and DST
 * is read back only where written.  The record here is rewritten.
 */
static int job_sync_pull(const struct job_spec *spec,
                         const struct endpoint *sep, struct job_report *rep,
                         struct df_error *err)
{
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct sync_state s;
    struct remote_opts ro;
    struct htree mine, next;
    struct extent_list changed, held, disk;
    struct change_source *cs = NULL;
    struct remote_tree_stats ts;
    bool consent = false, have_mine = false, have_next = false;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    memset(&ts, 0, sizeof(ts));
    s.spec = spec;
    s.rep = rep;
    s.sfd = -1;
    dest_init(&s.d);
    extent_list_init(&changed, EXTENT_LIST_DEFAULT_CAP);
    extent_list_init(&held, EXTENT_LIST_DEFAULT_CAP);
    extent_list_init(&disk, 1);
    if (spec->changes && strcmp(spec->changes, "compare")) {
        rep->usage_hint = true;
        return df_usage(err, "from a remote SRC: compare or the state "
                        "record (--changes manifest: for a SRC on this "
                        "host)");
    }
    int bl = htree_block_level(spec->block_size ? spec->block_size
                                                : DIGEST_LEAF_SIZE);
    if (bl < 0) {
        rep->usage_hint = true;
        return df_usage(err, "--block-size: a power of two from 64K to 64M");
    }
    job_copy_remote_opts(spec, sep, &ro, rep);
    ro.resume = false;      /* a sync goes on by comparing (header) */
    so.remote = &ro;
    if (source_open(sep, &so, &s.src, err) < 0 ||
        source_check(s.src, spec->cmd, "sync", spec->force_share,
                     !spec->msgs, err) < 0)
        goto out;
    if (!source_size(s.src, &s.size)) {
        df_usage(err, "%s: its size is not known", spec->src);
        goto out;
    }
    if (sync_look(&s, &consent, err) < 0)
        goto out;
    if (sync_dest_open(&s, consent, NULL, err) < 0)
        goto fail;
    s.d.sink->durable = spec->fsync;
    /* both trees at once: serve reads SRC there while DST's tree is
     * taken here (the record, or DST read) */
    struct job_opts o = spec->jo;
    o.progress = false;
    if (remote_tree_request(s.src->session, o.digest, (unsigned)bl,
                            err) < 0)
        goto fail;
    if (s.have_base && s.base.tree.size == s.size &&
        s.base.tree.alg == o.digest) {
        mine = s.base.tree;             /* borrowed from s.base */
    } else {
        if (s.have_base) {
            manifest_release(&s.base);
            s.have_base = false;
            rep->changes = "compare";
        }
        if (tree_of(s.d.img, &o, s.size, &mine, &rep->dst_bytes_read,
                    err) < 0)
            goto fail;
        have_mine = true;
    }
    if (remote_tree_diff(s.src->session, &mine, (unsigned)bl, &changed, &ts,
                         err) < 0)
        goto fail;
    rep->src_bytes_hashed = ts.remote_bytes_read;
    rep->hash_bytes_sent = ts.hash_bytes_sent;
    rep->hash_bytes_received = ts.hash_bytes_received;
    rep->tree_rounds = ts.rounds;
    if (s.have_base &&
        sync_base_prove(s.d.img, &mine, &changed, false, s.base_what,
                        &rep->proof_leaves, &rep->dst_bytes_read, err) < 0)
        goto fail;
    for (size_t i = 0; i < changed.n; i++)
        rep->changed_bytes += changed.v[i].len;
    rep->changed_blocks = changed.n;
    if (spec->dry_run) {
        /* the ranges that would come; their data stays there */
        for (size_t i = 0; i < changed.n; i++)
            dryrun_sink_range(s.d.sink, changed.v[i].off, changed.v[i].len);
        rep->verify = false;
        if (s.d.sink->ops->finish(s.d.sink, err) < 0 ||
            source_done(s.src, false, err) < 0)
            goto fail;
        rc = 0;
        goto out;
    }
    /* what DST keeps: the server leaves it out */
    if ((s.size && extent_list_append(&disk, 0, s.size, EXT_DATA, "sync",
                                      err) < 0) ||
        extent_list_subtract(&disk, &changed, &held, err) != 0) {
        if (err->cat == DF_OK)
            df_io(err, spec->dst, ENOMEM, "too many ranges");
        goto fail;
    }
    if (!(cs = change_source_from_tree("compare", &changed, &mine, err)) ||
        htree_init(&next, o.digest, s.size, err) < 0)
        goto fail;
    have_next = true;
    struct change_source *csv[1] = { cs };
    struct plan_inputs in = { .changes = csv, .nchanges = 1 };
    struct job_opts jo = spec->jo;
    s.src->held = &held;
    s.d.sink->leaf_fn = htree_leaf_fn;  /* what DST holds, read back */
    s.d.sink->leaf_ctx = &next;
    if (sync_record_begin(s.sfd, s.id, err) < 0)
        goto fail;
    double t0 = time_now();
    if (source_deliver(s.src, &in, s.d.sink, &jo, &rep->st, err) < 0 ||
        source_done(s.src, rep->st.verified, err) < 0)
        goto fail;
    rep->passes = 1;
    rep->last_pass_seconds = time_now() - t0;
    rep->st.bytes_unchanged = s.size - rep->changed_bytes;
    if (rep->st.verified) {
        s.prev = next;                  /* sync_finish writes it */
        s.have_prev = true;
        have_next = false;
    }
    if (s.have_prev && sync_finish(&s, err) < 0)
        goto fail;
    if (dest_commit(&s.d, err) < 0)
        goto fail;
    job_set_format(rep->src_format, s.src->format);
    job_set_format(rep->dst_format, "raw");
    rc = 0;
    goto out;
fail:
    remote_explain(s.src ? s.src->session : NULL, err);
    job_interrupted(err, s.d.sink ? s.d.sink->bytes_written : 0, s.size,
                    false);
    dest_abort(&s.d);
out:
    if (s.src && s.src->session) {
        struct remote_stats rs;
        remote_get_stats(s.src->session, &rs);
        rep->st.bytes_wire = rs.bytes_wire;
        rep->payload_bytes = rs.raw_in;
        rep->payload_bytes_compressed = rs.comp_out;
    }
    if (s.src)
        s.src->held = NULL;
    change_source_close(cs);
    if (have_mine)
        htree_release(&mine);
    if (have_next)
        htree_release(&next);
    extent_list_release(&changed);
    extent_list_release(&held);
    extent_list_release(&disk);
    sync_state_release(&s);
    return rc;
}

/*
 * --passes / --until with another host: each pass is a session of its
 * own, and the record the last one left on DST's host (or here, for a
 * pull) is the next one's base: SRC is read again, DST only for the
 * proof.  The report is the last pass's.
 */
static int sync_remote_passes(const struct job_spec *spec,
                              const struct endpoint *sep,
                              const struct endpoint *dep, bool pull,
                              struct job_report *rep, struct df_error *err)
{
    unsigned max = spec->passes ? spec->passes : spec->until ? 20 : 1;
    bool running = max > 1;
    struct job_spec one = *spec;
    one.passes = 0;
    one.until = 0;
    one.force_share = spec->force_share || running;
    for (unsigned p = 1; p <= max; p++) {
        struct job_report r1;
        memset(&r1, 0, sizeof(r1));
        r1.verify = rep->verify;
        int rc = pull ? job_sync_pull(&one, sep, &r1, err)
                      : job_sync_remote(&one, sep, dep, &r1, err);
        *rep = r1;
        rep->passes = p;
        if (rc < 0)
            return -1;
        if (running && spec->msgs) {
            char b[32];
            size_format(rep->changed_bytes, b, sizeof(b));
            fprintf(spec->msgs, "diskferry: sync: pass %u: %s changed, "
                    "%.1f s\n", p, b, rep->last_pass_seconds);
        }
        if (spec->until && rep->changed_bytes <= spec->until)
            break;
    }
    if (running && spec->msgs) {
        char b[32];
        size_format(rep->changed_bytes, b, sizeof(b));
        fprintf(spec->msgs, "diskferry: sync: last pass: %s in %.1f s — "
                "stop the VM and run: diskferry sync %s %s\n", b,
                rep->last_pass_seconds, spec->src, spec->dst);
    }
    return 0;
}

int job_sync(const struct job_spec *spec, const struct endpoint *sep,
             const struct endpoint *dep, struct job_report *rep,
             struct df_error *err)
{
    struct sync_state s;
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct job_spec fsspec;
    struct stat st;
    bool consent = false;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    s.spec = spec;
    s.rep = rep;
    s.sfd = -1;
    dest_init(&s.d);
    if ((spec->passes > 1 || spec->until) && sync_meta_spec(spec->changes)) {
        rep->usage_hint = true;
        return df_usage(err, "--passes, --until: with --changes %s the "
                        "changes are read once from metadata",
                        spec->changes);
    }
    if ((spec->passes > 1 || spec->until) && spec->fs_aware) {
        rep->usage_hint = true;
        return df_usage(err, "--passes, --until: with --fs-aware the free "
                        "blocks are read once, and a running VM's change: "
                        "sync a snapshot");
    }
    if (sep->kind == EP_REMOTE && spec->fs_aware) {
        rep->usage_hint = true;
        return df_usage(err, "--fs-aware: %s is not a disk image on this "
                        "host (run diskferry on the source's host)",
                        spec->src);
    }
    if (sep->kind == EP_REMOTE && dep->kind == EP_LOCAL &&
        !(stat(spec->dst, &st) < 0 && errno == ENOENT))
        return sync_remote_passes(spec, sep, dep, true, rep, err);
    if (sep->kind != EP_LOCAL && sep->kind != EP_NBD && sep->kind !=
                                                            EP_REMOTE) {
        rep->usage_hint = true;
        return df_usage(err, "%s: sync reads a file, device, NBD export "
                        "or another host's disk as SRC", spec->src);
    }
    if (dep->kind == EP_REMOTE)
        return sync_remote_passes(spec, sep, dep, false, rep, err);
    if (dep->kind != EP_LOCAL && dep->kind != EP_NBD) {
        rep->usage_hint = true;
        return df_usage(err, "%s: sync writes a file or device on this "
                        "host or another host's, or an NBD export",
                        spec->dst);
    }
    int bl = htree_block_level(spec->block_size ? spec->block_size
                                                : DIGEST_LEAF_SIZE);
    if (bl < 0) {
        rep->usage_hint = true;
        return df_usage(err, "--block-size: a power of two from 64K to 64M");
    }
    s.block_level = (unsigned)bl;
    if (dep->kind == EP_LOCAL && stat(spec->dst, &st) < 0 &&
        errno == ENOENT) {
        if (spec->changes && strcmp(spec->changes, "compare")) {
            rep->usage_hint = true;
            return df_usage(err, "%s does not exist: there is nothing to "
                            "sync with --changes %s", spec->dst,
                            spec->changes);
        }
        /* Nothing to sync with: the first sync is a copy. */
        rep->changes = "copy";
        return job_copy(spec, sep, dep, rep, err);
    }
    bool running = spec->passes > 1 || spec->until;
    struct image_open_opts top = spec->src_open;
    if (sync_top_layer_open_opts(spec, sep, &top, &so, rep, err) < 0)
        return -1;
    if (source_open(sep, &so, &s.src, err) < 0 ||
        source_check(s.src, spec->cmd, "sync", spec->force_share || running,
                     !spec->msgs || running, err) < 0 ||
        job_fs_begin(spec, s.src, &fsspec, &s.fs, err) < 0)
        goto out;
    s.spec = spec = &fsspec;
    struct job_opts pjo = spec->jo;     /* the report's alone: a pass's
                                         * copy is not the whole sync */
    job_predict(spec, s.src, NULL, &pjo, rep);
    if (!source_size(s.src, &s.size) || !s.src->img) {
        df_usage(err, "%s: not a disk that can be compared", spec->src);
        goto out;
    }
    if (sync_look(&s, &consent, err) < 0)
        goto out;
    if (sync_dest_open(&s, consent, s.src->img, err) < 0)
        goto fail;
    char id2[256];
    sync_image_identity(s.d.img, id2, sizeof(id2));
    if (strcmp(id2, s.id)) {
        df_refuse(err, spec->dst, "refusing to sync: %s was replaced while "
                  "it was being checked", spec->dst);
        goto fail;
    }
    if (sync_top_layer(spec->changes) && sync_top_layer_attach(&s, err) < 0)
        goto fail;
    if (spec->undo && s.d.img->file.is_regular &&
        s.d.img->file.size > s.size) {
        df_refuse(err, spec->dst, "refusing to sync: %s would be cut to the "
                  "source's size, which --undo cannot put back", spec->dst);
        goto fail;
    }
    s.d.sink->durable = spec->fsync;
    rep->verify = spec->jo.verify && !spec->dry_run;
    unsigned max_passes = spec->passes ? spec->passes : spec->until ? 20 : 1;
    for (unsigned p = 1; p <= max_passes; p++) {
        if (sync_pass(&s, p, err) < 0)
            goto fail;
        if (spec->dry_run)
            break;
        if (spec->until && rep->changed_bytes <= spec->until)
            break;
    }
    if (sync_finish(&s, err) < 0 || dest_commit(&s.d, err) < 0)
        goto fail;
    job_set_format(rep->src_format, s.src->format);
    job_set_format(rep->dst_format, dep->kind == EP_NBD ? "nbd" : "raw");
    if (running && spec->msgs && !spec->dry_run) {
        char b[32];
        size_format(rep->changed_bytes, b, sizeof(b));
        fprintf(spec->msgs, "diskferry: sync: last pass: %s in %.1f s — "
                "stop the VM and run: diskferry sync %s %s\n", b,
                rep->last_pass_seconds, spec->src, spec->dst);
    }
    rc = 0;
    goto out;
fail:
    job_interrupted(err, s.d.sink ? s.d.sink->bytes_written : 0, s.size,
                    false);
    dest_abort(&s.d);
out:
    sync_state_release(&s);
    return rc;
}

/*
 * verify --manifest FILE IMAGE: IMAGE hashed whole (hole-aware) and its
 * leaves compared with those FILE records: the differing 64 KiB leaves
 * listed, a size that differs (a backup cut short) said.  Only IMAGE is
 * read.
 */
int job_verify_manifest(const struct job_spec *spec, struct job_report *rep,
                        struct df_error *err)
{
    struct endpoint ep;
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct source *src = NULL;
    struct manifest m;
    struct htree t;
    struct job_opts o = spec->jo;
    bool have_m = false, have_t = false;
    uint64_t size;
    int rc = -1, r;

    extent_list_init(&rep->differ, JOB_VERIFY_MAX_RANGES);
    if (endpoint_parse(spec->src, &ep, err) < 0)
        return -1;
    if (ep.kind != EP_LOCAL && ep.kind != EP_NBD) {
        rep->usage_hint = true;
        return df_usage(err, "%s: verify --manifest checks a disk on this "
                        "host", spec->src);
    }
    r = manifest_read(-1, spec->manifest, &m, err);
    if (r != 0)
        return r < 0 ? -1 : df_fail(err, DF_IO, ENOENT, spec->manifest, -1,
                                    "cannot open the manifest");
    have_m = true;
    o.digest = m.tree.alg;
    if (source_open(&ep, &so, &src, err) < 0 ||
        source_check(src, spec->cmd, "comparison", spec->force_share,
                     !spec->msgs, err) < 0)
        goto out;
    if (!src->img || !source_size(src, &size)) {
        df_usage(err, "%s: not a disk that can be compared", spec->src);
        goto out;
    }
    struct digest d;
    if (engine_tree(src->img, &o, &t, &d, &rep->st, err) < 0)
        goto out;
    have_t = true;
    rep->st.src_digest = d;
    rep->st.dst_digest = m.digest;
    rep->src_size = size;
    rep->dst_size = m.tree.size;
    job_set_format(rep->src_format, src->format);
    job_set_format(rep->dst_format, "manifest");
    /* Leaf by leaf over what both cover, then what only one does. */
    uint64_t common = min_u64(t.nleaves, m.tree.nleaves);
    if (size != m.tree.size && size && m.tree.size &&
        size % DIGEST_LEAF_SIZE)
        common--;               /* IMAGE's last leaf is cut: it differs */
    uint8_t a[DIGEST_MAX_LEN], b[DIGEST_MAX_LEN];
    for (uint64_t i = 0; i < common; i++) {
        htree_leaf_hash(&t, i, a);
        htree_leaf_hash(&m.tree, i, b);
        if (!memcmp(a, b, t.hlen))
            continue;
        uint64_t off, len;
        htree_leaf_range(&t, i, 1, &off, &len);
        if (extent_list_append(&rep->differ, off, len, EXT_DATA, "verify",
                               err) < 0)
            goto out;
    }
    uint64_t lo = common * DIGEST_LEAF_SIZE;
    uint64_t hi = max_u64(size, m.tree.size);
    if (hi > lo && extent_list_append(&rep->differ, lo, hi - lo, EXT_DATA,
                                      "verify", err) < 0)
        goto out;
    rep->identical = rep->differ.n == 0;
    rc = 0;
out:
    if (have_t)
        htree_release(&t);
    if (have_m)
        manifest_release(&m);
    source_close(src);
    return rc;
}
