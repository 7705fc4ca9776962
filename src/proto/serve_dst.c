/*
 * serve_dst.c: the destination side of serve (OPEN_DST until DONE).
 *
 * Threads: the main thread answers control messages; an applier thread
 * takes data frames in seq order, decompresses them and applies them
 * to the sink (engine/apply.h: the writer the client uses for a pull
 * too, committing the resume journal of journal.h), acknowledging
 * every MSG_ACK_EVERY bytes.  sink_lock serialises the sink between
 * the applier and the main thread (FLUSH, DIGEST_REQ).
 *
 * The destination is opened by engine/dest.c (dest_open_session).  A
 * file this end created is kept when the session breaks: with its
 * journal it is what --resume continues from.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compress.h"
#include "engine/plan.h"
#include "engine/readback.h"
#include "engine/sync.h"
#include "serve_int.h"
#include "track/track.h"
#include "util/file.h"

/* ---- destination ---- */

/* Check 6 asked on the client's terminal (OPEN_ASK): ASK, then wait for
 * the ANSWER (KEEPALIVEs meanwhile say the user is still there). */
static int serve_ask(void *ctx, const char *desc, struct df_error *err)
{
    struct serve *sv = ctx;
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    msg_put_str(&b, desc);
    msg_put_str(&b, sv->path);
    if (session_send(&sv->s, MSG_ASK, &b, err) < 0 ||
        session_expect(&sv->s, MSG_ANSWER, &f, err) < 0)
        goto out;
    if (f->m.flags & ANSWER_YES)
        ret = 0;
    else
        df_refuse(err, sv->path, "refusing to write: not confirmed");
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

/* The options tail of OPEN_DST: --undo JOURNAL, confined for writing;
 * the source's name for the record (MSG_FEAT_RECORD). */
static int serve_dst_opts(struct serve *sv, const struct msg *m,
                          char *undo, struct df_error *err)
{
    char val[MSG_MAX_STR + 1];
    uint8_t kind;
    size_t pos = 0;
    undo[0] = '\0';
    while (msg_open_opt(m, &pos, &kind, val)) {
        if (kind == OPT_SYNC_SRC && (sv->s.features & MSG_FEAT_RECORD)) {
            snprintf(sv->sync_src, sizeof(sv->sync_src), "%s", val);
            continue;
        }
        if ((kind == OPT_SYNC_PARENT || kind == OPT_SYNC_LAYER) &&
            (sv->s.features & MSG_FEAT_CHANGES)) {
            char *to = kind == OPT_SYNC_PARENT ? sv->sync_parent
                                               : sv->sync_layer;
            snprintf(to, MSG_MAX_STR + 1, "%s", val);
            continue;
        }
        if (kind == OPT_VERIFY && (sv->s.features & MSG_FEAT_READBACK)) {
            sv->rb_want = digest_alg_parse(val, &sv->rb_alg) == 0;
            continue;
        }
        if (kind != OPT_UNDO)
            return df_usage(err, "--parent-dir and --parent apply to a "
                            "source");
        if (serve_confine(sv->o, val, true, undo, err) < 0)
            return -1;
    }
    return 0;
}

/*
 * The directory sv->path is in, opened once: every file this end
 * creates, renames or removes there (the partial file, journals) is
 * named relative to it (dest.h invariant 3), so a directory component
 * swapped for a symlink after serve_confine() cannot lead the writes
 * elsewhere.  It must still be the directory serve_confine() resolved.
 */
static int serve_open_dir(struct serve *sv, struct df_error *err)
{
    char dir[PATH_MAX], link[64], now[PATH_MAX];
    int fd = dest_dir_open(sv->path, err);
    if (fd < 0)
        return -1;
    path_dirname(sv->path, dir, sizeof(dir));
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, now, sizeof(now) - 1);
    if (n < 0) {
        df_io(err, sv->path, errno, "cannot resolve the directory");
        close(fd);
        return -1;
    }
    now[n] = '\0';
    if (strcmp(now, dir)) {
        df_refuse(err, sv->path, "refusing: the directory moved while it "
                  "was checked");
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * An existing raw destination's state record (engine/sync.h): loaded;
 * a record of the client's source is consent to write it (no
 * --overwrite asked); one that is not busy and of the size asked says
 * what it holds (OPENED_RECORD).
 */
static void serve_record_open(struct serve *sv, int dirfd,
                              const struct stat *st, uint64_t size,
                              unsigned flags, struct dest_opts *o)
{
    bool busy = false;
    if (!sv->sync_src[0] || !(S_ISREG(st->st_mode) || S_ISBLK(st->st_mode)))
        return;
    sync_identity_at(dirfd, path_basename(sv->path), sv->rec_id,
                     sizeof(sv->rec_id));
    if (sv->rec_fd < 0)
        sv->rec_fd = sync_record_open(sv->o->state_dir, !o->dry_run, NULL,
                                      "serve");
    int r = sync_record_load(sv->rec_fd, sv->rec_id, &sv->rec, &busy, NULL);
    sv->rec_was_busy = busy;
    if (r != 0)
        return;
    sv->have_rec = true;
    /* a record of another source says what DST holds just as well, but
     * the source's name is one more check that it is this DST's */
    bool meta = sv->s.features & MSG_FEAT_CHANGES;
    bool mine = !strcmp(sv->rec.src, sv->sync_src);
    if (meta && sv->sync_parent[0])     /* a delta: a record of its parent */
        mine = sync_layer_base(&sv->rec, sv->sync_parent, sv->sync_layer,
                               sv->sync_src);
    bool any = meta && (flags & OPEN_ANY_RECORD);
    sv->rec_resumed = busy && meta && (flags & OPEN_BUSY_RECORD);
    sv->rec_usable = (mine || any) && (!busy || sv->rec_resumed) &&
                     sv->rec.tree.size == size;
    if (mine) {
        o->overwrite = true;
        o->yes = true;
        o->interactive = false;
    }
}

void serve_record_release(struct serve *sv)
{
    /* Refused before any data came (a proof that failed, a question
     * answered no): DST is what the record says. */
    if (sv->rec_marked && !sv->data_seen)
        sync_record_unbusy(sv->rec_fd, sv->rec_id);
    if (sv->have_rec)
        manifest_release(&sv->rec);
    if (sv->have_newtree)
        htree_release(&sv->newtree);
    if (sv->rec_fd >= 0)
        close(sv->rec_fd);
    sv->rec_fd = -1;
    sv->have_rec = sv->have_newtree = false;
}

/* OPEN_DST: the destination through engine/dest.h, the one scheme of
 * the local copy; the gate runs here, on this host, and its question,
 * if any, is the client's user's (OPEN_ASK). */
static int serve_open_dst(struct serve *sv, const struct msg *m,
                          struct df_error *err)
{
    const char *fmt = m->s1[0] ? m->s1 : "raw";
    char undo[PATH_MAX];
    struct stat st;
    bool ask = m->flags & OPEN_ASK;
    struct dest_opts o = {
        .cmd = "serve", .out_format = fmt,
        .overwrite = m->flags & OPEN_OVERWRITE,
        .yes = !ask, .interactive = ask,
        .dry_run = m->flags & OPEN_DRY_RUN,
        .confirm = serve_ask, .confirm_ctx = sv,
        .state_dir = sv->o->state_dir,
    };

    if (sv->o->open_dst_hook) {
        snprintf(sv->path, sizeof(sv->path), "%s", m->s2);
        sv->d.sink = sv->o->open_dst_hook(m->s2, m->size, err);
        sv->sink = sv->d.sink;
        return sv->sink ? 0 : -1;
    }
    if (serve_confine(sv->o, m->s2, true, sv->path, err) < 0 ||
        serve_dst_opts(sv, m, undo, err) < 0)
        return -1;
    o.undo = undo[0] ? undo : NULL;
    unsigned caps;
    if (image_format_caps(fmt, &caps) < 0 || !(caps & IMG_CAN_CREATE))
        return df_usage(err, "-O: this host does not write '%s' images",
                        fmt);
    int dirfd = serve_open_dir(sv, err);
    if (dirfd < 0)
        return -1;
    if (!(m->flags & OPEN_CREATE) &&
        fstatat(dirfd, path_basename(sv->path), &st,
                AT_SYMLINK_NOFOLLOW) < 0) {
        close(dirfd);
        return df_io(err, sv->path, ENOENT, "cannot open");
    }
    struct stat tst;
    if (!(m->flags & OPEN_SIZE_UNKNOWN) && !strcmp(fmt, "raw") &&
        fstatat(dirfd, path_basename(sv->path), &tst, 0) == 0)
        serve_record_open(sv, dirfd, &tst, m->size, m->flags, &o);
    if (m->flags & OPEN_SIZE_UNKNOWN) {
        /* a stream: no journal (it cannot resume), the size at its end */
        sv->size_unknown = true;
        if (m->flags & OPEN_RESUME)
            return df_usage(err, "--resume: a stream cannot resume");
        sv->d.dirfd = dirfd;
        if (dest_open(&sv->d, &o, sv->path, NULL, 0, false, err) < 0)
            return -1;
    } else if (dest_open_session(&sv->d, &o, sv->path, dirfd, m->size,
                                 m->src_id, m->flags & OPEN_RESUME,
                                 err) < 0) {
        return -1;
    }
    sv->sink = sv->d.sink;
    /* --fsync (OPEN_FSYNC): every finish() waits for stable storage */
    if (sv->sink && (m->flags & OPEN_FSYNC))
        sv->sink->durable = true;
    /* From here the record is not the truth until DONE rewrites it. */
    /* (a mark a killed job left is never taken back) */
    bool mark = sv->rec_id[0] && sv->sink && !o.dry_run;
    sv->rec_marked = mark && !sv->rec_was_busy;
    if (mark && sync_record_begin(sv->rec_fd, sv->rec_id, err) < 0)
        return -1;
    return 0;
}

/* One data frame, in seq order, applied to the sink (engine/apply.h);
 * sink_lock held. */
static int serve_apply(struct serve *sv, struct comp_worker *cw,
                       uint8_t *dbuf, const struct rx_frame *f,
                       struct df_error *err)
{
    const struct msg *m = &f->m;
    const void *p = NULL;
    struct sink *k = sv->sink;
    /* A stream's end is not known: the sink refuses what runs past a
     * destination of fixed size, naming it ("the stream is longer"). */
    if (!sv->size_unknown &&
        (m->off > k->size || m->len > k->size - m->off))
        return df_net(err, sv->s.peer, "protocol error: %s [%llu, +%llu) "
                      "past the end of the destination (%llu)",
                      msg_type_name(m->type), (unsigned long long)m->off,
                      (unsigned long long)m->len,
                      (unsigned long long)k->size);
    if (m->type == MSG_WRITE &&
        !(p = comp_frame_data(cw, m, dbuf, sv->s.peer, err)))
        return -1;
    return apply_range(&sv->ap, m->off, m->len, p, err);
}

static void *serve_applier(void *arg)
{
    struct serve *sv = arg;
    struct comp_worker cw;
    struct df_error err;
    struct msg_buf b;
    uint8_t *dbuf = malloc(MSG_MAX_DATA);
    comp_worker_init(&cw);
    df_error_init(&err);
    msg_buf_init(&b);
    if (!dbuf) {
        df_net(&err, "", "out of memory");
        goto out;
    }
    for (;;) {
        struct rx_frame *f;
        int r = session_recv_data(&sv->s, &f, &err);
        if (r == 1)
            df_net(&err, sv->s.peer, "protocol error: STREAM_END sent to "
                   "a destination");
        if (r != 0)
            break;
        sv->data_seen = true;
        pthread_mutex_lock(&sv->sink_lock);
        r = serve_apply(sv, &cw, dbuf, f, &err);
        pthread_mutex_unlock(&sv->sink_lock);
        uint64_t len = f->m.type == MSG_WRITE ? f->m.raw_len : 0;
        uint64_t seq = f->m.seq;
        rx_frame_free(f);
        if (r < 0)
            break;
        pthread_mutex_lock(&sv->lock);
        sv->applied_seq = seq + 1;
        sv->applied_bytes += len;
        bool ack = sv->applied_bytes - sv->acked_bytes >= MSG_ACK_EVERY;
        if (ack)
            sv->acked_bytes = sv->applied_bytes;
        pthread_cond_broadcast(&sv->cond);
        pthread_mutex_unlock(&sv->lock);
        if (ack) {
            msg_enc_ack(&b, seq + 1, sv->acked_bytes);
            if (session_send(&sv->s, MSG_ACK, &b, &err) < 0)
                break;
        }
    }
out:
    /* Whatever arrived in order is applied: make it count for resume.
     * Unless the destination refused it (the emptiness guard found
     * data and zeroed back what was written): then what the journal
     * lists is gone, and nothing here is to be resumed. */
    pthread_mutex_lock(&sv->sink_lock);
    struct df_error cerr;
    df_error_init(&cerr);
    if (err.cat == DF_REFUSED && sv->ap.j) {
        rjournal_remove(sv->ap.j);
        sv->ap.j = NULL;
    } else {
        apply_commit(&sv->ap, &cerr);
    }
    pthread_mutex_unlock(&sv->sink_lock);
    pthread_mutex_lock(&sv->lock);
    df_error_copy(&sv->aerr, &err);
    sv->applier_done = true;
    pthread_cond_broadcast(&sv->cond);
    pthread_mutex_unlock(&sv->lock);
    session_fail(&sv->s, &err);
    free(dbuf);
    comp_worker_release(&cw);
    msg_buf_release(&b);
    return NULL;
}

static int serve_flush(struct serve *sv, uint64_t seq, struct df_error *err)
{
    pthread_mutex_lock(&sv->lock);
    while (sv->applied_seq < seq && !sv->applier_done)
        pthread_cond_wait(&sv->cond, &sv->lock);
    bool ok = sv->applied_seq >= seq;
    pthread_mutex_unlock(&sv->lock);
    if (!ok) {
        if (sv->aerr.cat != DF_OK)
            df_error_copy(err, &sv->aerr);
        else
            df_net(err, sv->s.peer, "session ended before the flush");
        return -1;
    }
    pthread_mutex_lock(&sv->sink_lock);
    if (sv->have_final_size)            /* a stream's end (SET_SIZE) */
        sv->sink->size = sv->final_size;
    int r = apply_finish(&sv->ap, err);
    pthread_mutex_unlock(&sv->sink_lock);
    return r;
}

/* After TREE_CHANGES a leaf wholly outside the changes hashes as a
 * zero leaf (track.h, change_source_unverified): the new record keeps
 * the old record's hash for it, copied in before; a leaf the changes
 * touch takes what was read back. */
static void serve_changed_leaf(void *ctx, uint64_t i, const uint8_t *h)
{
    struct serve *sv = ctx;
    const struct extent_list *l = &sv->tree_diff;
    uint64_t a = i * DIGEST_LEAF_SIZE, b = a + DIGEST_LEAF_SIZE;
    size_t lo = extent_list_find(l, a);
    if (lo < l->n && l->v[lo].off < b)
        htree_leaf_fn(&sv->newtree, i, h);
}

/* DIGEST_REQ of a copy read back as it was written (OPT_VERIFY): the
 * rest is read now and its digest taken, into *d (and the record's
 * leaves, as the read-back below keeps them).  0: taken; 1: there is
 * none for this request (a sync's tree walk stopped it, another digest
 * was asked, it failed): the caller reads the destination back. */
static int serve_digest_readback(struct serve *sv, const struct msg *m,
                                 struct digest *d)
{
    struct htree t;
    bool tree = sv->rb_tree && !sv->have_newtree;
    if (!sv->rb || sv->walk_over || sv->tree_changes)
        return 1;
    memset(&t, 0, sizeof(t));
    pthread_mutex_lock(&sv->sink_lock);
    int r = readback_finish(sv->rb, (enum digest_alg)m->alg, m->size, d,
                            tree ? &t : NULL);
    pthread_mutex_unlock(&sv->sink_lock);
    if (r != 0)
        return 1;
    if (tree) {
        sv->newtree = t;
        sv->have_newtree = true;
    }
    sv->newdigest = *d;
    return 0;
}

static int serve_digest(struct serve *sv, const struct msg *m,
                        struct df_error *err)
{
    struct digest d;
    struct msg_buf b;
    msg_buf_init(&b);
    if (!sv->sink->ops->digest)
        return df_net(err, sv->path, "this destination cannot be read "
                      "back");
    if (serve_digest_readback(sv, m, &d) == 0) {
        readback_test_log("readback");
        msg_enc_digest(&b, MSG_DIGEST, 0, (uint8_t)d.alg, d.bytes,
                       (uint8_t)d.len);
        int r = session_send(&sv->s, MSG_DIGEST, &b, err);
        msg_buf_release(&b);
        return r;
    }
    /* After a walk, what was not written hashes as the walk's tree says;
     * with a record to keep, every leaf read back is kept for it. */
    struct change_source *cs = NULL;
    struct change_source *csv[1];
    struct plan_inputs in = { .changes = csv, .nchanges = 1 };
    bool marked = sv->tree_changes;
    if (marked && (sv->tree.alg != (enum digest_alg)m->alg ||
                   sv->tree.size != m->size))
        return df_net(err, sv->s.peer, "protocol error: DIGEST_REQ of "
                      "another disk than TREE_CHANGES'");
    if (sv->walk_over && sv->tree.alg == (enum digest_alg)m->alg &&
        sv->tree.size == m->size) {
        cs = marked ? change_source_unverified("changes", &sv->tree_diff,
                                               err)
                    : change_source_from_tree("compare", &sv->tree_diff,
                                              &sv->tree, err);
        if (!cs)
            return -1;
        csv[0] = cs;
        sv->sink->known = &in;
    }
    if (sv->sync_src[0] && !sv->size_unknown && !sv->have_newtree &&
        sv->d.img && !strcmp(image_format_name(sv->d.img), "raw")) {
        if (htree_init(&sv->newtree, (enum digest_alg)m->alg, m->size,
                       err) < 0) {
            change_source_close(cs);
            return -1;
        }
        sv->have_newtree = true;
        sv->sink->leaf_fn = htree_leaf_fn;
        sv->sink->leaf_ctx = &sv->newtree;
        if (marked) {
            /* the record's leaves, but those the changes touch: what is
             * read back there (a zero leaf is not told: it stays zero) */
            htree_copy_leaves(&sv->newtree, &sv->tree);
            const struct extent_list *l = &sv->tree_diff;
            for (size_t k = 0; k < l->n; k++)
                for (uint64_t i = l->v[k].off / DIGEST_LEAF_SIZE;
                     i * DIGEST_LEAF_SIZE < l->v[k].off + l->v[k].len; i++)
                    memset(htree_leaf_slot(&sv->newtree, i, 1), 0,
                           sv->newtree.hlen);
            sv->sink->leaf_fn = serve_changed_leaf;
            sv->sink->leaf_ctx = sv;
        }
    }
    readback_test_log("end");
    pthread_mutex_lock(&sv->sink_lock);
    int r = sv->sink->ops->digest(sv->sink, m->size, (enum digest_alg)m->alg,
                                  sv->o->threads, &d, err);
    pthread_mutex_unlock(&sv->sink_lock);
    sv->sink->known = NULL;
    sv->sink->leaf_fn = NULL;
    change_source_close(cs);
    if (r == 0 && marked)
        manifest_leaves_digest(&sv->newtree, &sv->newdigest);
    else if (r == 0)
        sv->newdigest = d;
    else if (sv->have_newtree) {
        htree_release(&sv->newtree);
        sv->have_newtree = false;
    }
    if (r == 0) {
        msg_enc_digest(&b, MSG_DIGEST, 0, (uint8_t)d.alg, d.bytes,
                       (uint8_t)d.len);
        r = session_send(&sv->s, MSG_DIGEST, &b, err);
    }
    msg_buf_release(&b);
    return r;
}

/* FLUSH: everything up to the client's sequence number is durable. */
static int serve_on_flush(struct serve *sv, const struct msg *m,
                          struct df_error *err)
{
    return serve_flush(sv, m->seq, err) < 0 ||
           session_send(&sv->s, MSG_FLUSHED, NULL, err) < 0 ? -1 : 0;
}

/* SET_SIZE: the stream ended at size bytes; the FLUSH that follows
 * gives the destination that size. */
static int serve_on_set_size(struct serve *sv, const struct msg *m,
                             struct df_error *err)
{
    if (!sv->size_unknown || sv->have_final_size)
        return df_net(err, sv->s.peer, "protocol error: unexpected "
                      "SET_SIZE");
    if (m->size > IMAGE_STREAM_MAX_SIZE)
        return df_net(err, sv->s.peer, "protocol error: SET_SIZE of %llu "
                      "bytes", (unsigned long long)m->size);
    sv->final_size = m->size;
    sv->have_final_size = true;
    return 0;
}

/* TREE_REQ: the hash tree of the destination as it is, before anything
 * is written (serve_tree.c): the sink is held meanwhile, and a data
 * frame already applied makes it too late. */
static int serve_dst_tree(struct serve *sv, const struct msg *m,
                          struct df_error *err)
{
    struct image *img = sv->d.old ? sv->d.old : sv->d.img;
    int r;
    if (sv->rb)                 /* the digest reads only what is written */
        readback_stop(sv->rb);
    if (!img || sv->size_unknown)
        return df_usage(err, "%s: this destination has no hash tree (a "
                        "stream)", sv->path);
    pthread_mutex_lock(&sv->sink_lock);
    pthread_mutex_lock(&sv->lock);
    bool written = sv->applied_seq > 0 || sv->applier_done;
    pthread_mutex_unlock(&sv->lock);
    r = written ? df_net(err, sv->s.peer, "protocol error: TREE_REQ after "
                         "data was written")
        : m->type == MSG_TREE_REQ_RECORD ? serve_tree_req_record(sv, m, err)
                                         : serve_tree_req(sv, img, m, err);
    pthread_mutex_unlock(&sv->sink_lock);
    return r;
}

/* TREE_CHANGES: as a walk, the read-back stops (serve_tree.c). */
static int serve_dst_changes(struct serve *sv, const struct msg *m,
                             struct df_error *err)
{
    if (sv->rb)
        readback_stop(sv->rb);
    return serve_tree_changes(sv, m, err);
}

static const struct serve_handler serve_dst_handlers[] = {
    {MSG_FLUSH, serve_on_flush},
    {MSG_SET_SIZE, serve_on_set_size},
    {MSG_DIGEST_REQ, serve_digest},
    {MSG_TREE_REQ, serve_dst_tree},
    {MSG_TREE_REQ_RECORD, serve_dst_tree},
    {MSG_TREE_HASHES, serve_tree_hashes},
    {MSG_TREE_CHANGES, serve_dst_changes},
    {0, NULL},
};

/* DONE: the client verified; the destination takes its name, and its
 * record says what it holds now (the leaves DIGEST_REQ read back). */
static int serve_dst_done(struct serve *sv, struct df_error *err)
{
    if (dest_commit(&sv->d, err) < 0)
        return -1;
    rjournal_remove(&sv->d.j);          /* journal.h invariant 4 */
    if (sv->have_newtree && sv->d.img) {
        struct manifest m;
        memset(&m, 0, sizeof(m));
        m.tree = sv->newtree;
        m.digest = sv->newdigest;
        sync_identity(&sv->d.img->file, m.id, sizeof(m.id));
        snprintf(m.src, sizeof(m.src), "%s", sv->sync_src);
        snprintf(m.src_layer, sizeof(m.src_layer), "%s", sv->sync_layer);
        if (sv->rec_fd < 0)
            sv->rec_fd = sync_record_open(sv->o->state_dir, true, NULL,
                                          "serve");
        sync_record_commit(sv->rec_fd, m.id, &m, NULL, "serve");
    }
    return 0;
}

int serve_tree_req_record(struct serve *sv, const struct msg *m,
                          struct df_error *err)
{
    struct msg_buf b;
    int ret;
    if (!(sv->s.features & MSG_FEAT_RECORD) || !sv->rec_usable ||
        sv->have_tree)
        return df_net(err, sv->s.peer, "protocol error: TREE_REQ_RECORD "
                      "without a record to take");
    if (sv->rec.tree.alg != (enum digest_alg)m->alg)
        return df_usage(err, "%s: its state record holds %s hashes, not "
                        "%s: run with --changes compare", sv->path,
                        digest_alg_name(sv->rec.tree.alg),
                        digest_alg_name((enum digest_alg)m->alg));
    sv->tree = sv->rec.tree;            /* moved: rec keeps no tree */
    memset(&sv->rec.tree, 0, sizeof(sv->rec.tree));
    sv->have_tree = true;
    sv->tree_from_record = true;
    extent_list_init(&sv->tree_diff, EXTENT_LIST_DEFAULT_CAP);
    if (htree_walk_start(&sv->walk, &sv->tree, m->level, err) < 0)
        return -1;
    msg_buf_init(&b);
    msg_put_u64(&b, sv->tree.size);
    msg_put_u8(&b, (uint8_t)sv->rec.digest.alg);
    msg_put_u8(&b, (uint8_t)sv->rec.digest.len);
    msg_put_bytes(&b, sv->rec.digest.bytes, sv->rec.digest.len);
    msg_put_u64(&b, 0);
    ret = session_send(&sv->s, MSG_TREE, &b, err);
    msg_buf_release(&b);
    return ret;
}

static int serve_send_ranges(struct serve *sv, const struct extent_list *l,
                             struct df_error *err)
{
    struct msg_buf b;
    int r = 0;
    size_t i = 0;
    msg_buf_init(&b);
    do {
        size_t n = l->n - i;
        if (n > MSG_MAX_RANGES_PER_MSG)
            n = MSG_MAX_RANGES_PER_MSG;
        msg_enc_ranges(&b, l, i, n, i + n == l->n, false);
        r = session_send(&sv->s, MSG_RESUME_RANGES, &b, err);
        i += n;
    } while (r == 0 && i < l->n);
    msg_buf_release(&b);
    return r;
}

/* LEAF_HASHES: the journal's leaf hashes of what it lists (at least
 * one message, the last one flagged). */
static int serve_send_leaves(struct serve *sv, uint64_t size,
                             struct df_error *err)
{
    struct rjournal_leaves lv = {0};
    struct msg_buf b;
    int r = 0;
    size_t i = 0;
    if (sv->d.j.fd >= 0 &&
        rjournal_leaves(&sv->d.j, size, &sv->d.done, &lv, err) < 0)
        return -1;
    msg_buf_init(&b);
    do {
        size_t n = lv.n - i;
        if (n > MSG_MAX_RANGES_PER_MSG)
            n = MSG_MAX_RANGES_PER_MSG;
        msg_buf_reset(&b);
        msg_put_u32(&b, (uint32_t)n);
        msg_put_u8(&b, i + n == lv.n);
        for (size_t k = i; k < i + n; k++) {
            msg_put_u64(&b, lv.v[k].leaf);
            msg_put_bytes(&b, lv.v[k].hash, RJOURNAL_HASH_LEN);
        }
        r = session_send(&sv->s, MSG_LEAF_HASHES, &b, err);
        i += n;
    } while (r == 0 && i < lv.n);
    msg_buf_release(&b);
    rjournal_leaves_release(&lv);
    return r;
}

/*
 * OPT_VERIFY: read the destination back as the applier writes it
 * (engine/readback.h), where the sink says the read-back at the end
 * would read an image whole (sink.h readback_image: a raw image of the
 * size the copy fills, through the page cache, each write landed when
 * it returns; not under an undo journal, which writes in batches).  The
 * record's leaves are kept as serve_digest() keeps them.  Where it
 * cannot start, the end reads everything back as before.
 */
static void serve_readback_start(struct serve *sv, uint64_t size)
{
    if (!sv->rb_want || !sv->sink || sv->size_unknown)
        return;
    sv->rb_tree = sv->sync_src[0] != '\0';
    sv->rb = readback_for_sink(sv->sink, size, sv->rb_alg, sv->o->threads,
                               sv->rb_tree);
    sv->ap.rb = sv->rb;
}

int serve_dst(struct serve *sv, const struct msg *open,
              struct df_error *err)
{
    struct msg_buf b;
    int ret = -1;
    msg_buf_init(&b);
    if (serve_open_dst(sv, open, err) < 0)
        goto out;
    /* Created here, the destination reads as zeros: the client sends
     * no zero runs. */
    bool dst_is_zero = sv->sink && sv->d.img &&
                       ((sv->d.partial && !sv->d.resumed) ||
                        (sv->size_unknown && sv->d.created));
    /* a sync's dry run of a DST that is not there: it would be new */
    if ((open->flags & (OPEN_DRY_RUN | OPEN_SYNC)) ==
            (OPEN_DRY_RUN | OPEN_SYNC) && !sv->d.img)
        dst_is_zero = true;
    msg_enc_opened(&b, (dst_is_zero ? OPENED_DST_IS_ZERO : 0) |
                           (sv->d.resumed ? OPENED_RESUMED : 0) |
                           (sv->rec_usable ? OPENED_RECORD : 0),
                   open->size,
                   sv->d.img ? image_format_name(sv->d.img) : "raw",
                   sv->path);
    if (session_send(&sv->s, MSG_OPENED, &b, err) < 0)
        goto out;
    if (sv->d.resumed && serve_send_ranges(sv, &sv->d.done, err) < 0)
        goto out;
    if (sv->d.resumed && (sv->s.features & MSG_FEAT_LEAF_HASHES) &&
        serve_send_leaves(sv, open->size, err) < 0)
        goto out;
    if ((open->flags & OPEN_DRY_RUN) && (open->flags & OPEN_SYNC) &&
        (sv->s.features & MSG_FEAT_RECORD) && sv->d.img) {
        /* a sync's dry run: the tree walk, nothing written, then DONE */
        static const struct serve_handler walk_only[] = {
            {MSG_TREE_REQ, serve_dst_tree},
            {MSG_TREE_REQ_RECORD, serve_dst_tree},
            {MSG_TREE_HASHES, serve_tree_hashes},
            {0, NULL},
        };
        if (session_start(&sv->s, err) < 0)
            goto out;
        ret = serve_loop(sv, walk_only, NULL, err);
        goto out;
    }
    if (open->flags & OPEN_DRY_RUN) {
        ret = 0;
        goto out;
    }
    if (session_start(&sv->s, err) < 0)
        goto out;
    apply_init(&sv->ap, sv->sink, sv->d.j.fd >= 0 ? &sv->d.j : NULL);
    sv->ap.hash_leaves = sv->d.j.fd >= 0;
    serve_readback_start(sv, open->size);
    if (pthread_create(&sv->applier, NULL, serve_applier, sv)) {
        df_net(err, "", "cannot start the applier thread");
        goto out;
    }
    sv->applier_started = true;
    ret = serve_loop(sv, serve_dst_handlers, serve_dst_done, err);
out:
    msg_buf_release(&b);
    return ret;
}
