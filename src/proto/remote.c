/*
 * remote.c: the client side of a session (see remote.h, msg.h).
 */
#define _GNU_SOURCE
#include "remote.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/apply.h"
#include "engine/plan.h"
#include "engine/readback.h"
#include "journal.h"
#include "probe.h"
#include "safety/safety.h"
#include "sender.h"
#include "session.h"
#include "transport/bwlimit.h"
#include "track/htree.h"
#include "transport/transport.h"
#include "util/interrupt.h"
#include "util/overflow.h"
#include "util/progress.h"

#define REMOTE_MAX_BLOCK (1u << 20)
#define REMOTE_MAX_PARENTS 32
#define REMOTE_ACK_WINDOW (64ull << 20)

struct remote {
    struct remote_opts o;
    char name[PATH_MAX];        /* host:path, for messages */
    struct ssh_conn ssh;
    struct session s;
    bool has_session;
    struct comp_ctl ctl;
    struct sender *snd;
    struct sink sink;
    struct extent_list done;    /* resume: ranges already there */
    struct resume_plan rp;      /* ... kept by the engine's plan */
    struct rjournal_leaves leaves;  /* ... their leaf hashes */
    uint64_t skipped_resumed;
    bool size_unknown;          /* a stream: SET_SIZE at finish */
    bool tree_asked;            /* TREE_REQ sent (remote_tree_request) */
    bool dst_record;            /* OPENED_RECORD */
    enum digest_alg tree_alg;
    unsigned tree_level;
};

uint64_t remote_src_id(const char *path, uint64_t size,
                       const struct df_file *f)
{
    char real[PATH_MAX];
    struct stat st;
    XXH64_state_t *h = XXH64_createState();
    if (!h)
        return 0;
    XXH64_reset(h, 0);
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    XXH64_update(h, real, strlen(real));
    XXH64_update(h, &size, sizeof(size));
    if (f && f->fd >= 0 && fstat(f->fd, &st) == 0) {
        /* journal.h invariant 5: a source changed since the interrupted
         * copy has another id.  A file says so by its inode times; a
         * device's are not kept up to date, so it is sampled. */
        uint64_t v[6] = {st.st_dev, st.st_ino, st.st_size,
                         (uint64_t)st.st_mtim.tv_sec * 1000000000u +
                             (uint64_t)st.st_mtim.tv_nsec,
                         (uint64_t)st.st_ctim.tv_sec * 1000000000u +
                             (uint64_t)st.st_ctim.tv_nsec, st.st_rdev};
        XXH64_update(h, v, sizeof(v));
        uint8_t *buf = S_ISBLK(st.st_mode) ? malloc(RJOURNAL_SAMPLE_LEN)
                                           : NULL;
        for (unsigned i = 0; buf && i < RJOURNAL_SAMPLES; i++) {
            uint64_t off = f->size / RJOURNAL_SAMPLES * i;
            off -= off % 4096;
            ssize_t n = pread(f->fd, buf, RJOURNAL_SAMPLE_LEN, (off_t)off);
            if (n > 0)
                XXH64_update(h, buf, (size_t)n);
        }
        free(buf);
    }
    uint64_t id = XXH64_digest(h);
    XXH64_freeState(h);
    return id;
}

int remote_connect(const struct remote_opts *o, struct remote **out,
                   struct df_error *err)
{
    struct remote *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return df_net(err, o->host, "out of memory");
    r->o = *o;
    r->ssh.pid = -1;
    extent_list_init(&r->done, EXTENT_LIST_DEFAULT_CAP);
    snprintf(r->name, sizeof(r->name), "%s:%s", o->host, o->path);
    comp_ctl_init(&r->ctl, o->comp, o->level);
    signal(SIGPIPE, SIG_IGN);
    const char *args[2];
    char tbuf[16];
    size_t nargs = 0;
    if (o->pass_timeout) {      /* only when asked: older serves lack it */
        snprintf(tbuf, sizeof(tbuf), "%u", o->timeout);
        args[nargs++] = "--timeout";
        args[nargs++] = tbuf;
    }
    if (ssh_spawn(o->rsh ? o->rsh : "ssh", o->user, o->host,
                  o->remote_path ? o->remote_path : "diskferry", args,
                  nargs, o->verbose > 0, &r->ssh, err) < 0)
        goto fail;
    session_init(&r->s, r->ssh.rfd, r->ssh.wfd, o->host, false);
    r->has_session = true;
    session_set_timeout(&r->s, o->timeout ? o->timeout : SESSION_TIMEOUT_S);
    r->s.bw = bwlimit_new(o->bwlimit);
    r->s.ctl.bw = r->s.bw;
    if (session_hello(&r->s, err) < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    remote_explain(r, err);
    remote_close(r);
    return -1;
}

/* Does the session need a feature the server lacks?  Then say which. */
static int remote_need(struct remote *r, uint32_t feat, const char *what,
                       struct df_error *err)
{
    if (r->s.features & feat)
        return 0;
    return df_net(err, r->o.host, "the remote diskferry is too old for "
                  "%s: update it", what);
}

/* The options tail of OPEN_* (MSG_FEAT_OPEN_OPTS) from r->o. */
static int remote_open_opts(struct remote *r, struct msg_buf *b, bool dst,
                            struct df_error *err)
{
    uint8_t kinds[MSG_MAX_OPEN_OPTS];
    const char *vals[MSG_MAX_OPEN_OPTS];
    size_t n = 0;
    if (dst && r->o.undo) {
        kinds[n] = OPT_UNDO;
        vals[n++] = r->o.undo;
    }
    /* the record's source name: only to a serve that keeps records */
    if (dst && r->o.record_src && r->o.record_src[0] &&
        (r->s.features & (MSG_FEAT_RECORD | MSG_FEAT_OPEN_OPTS)) ==
            (MSG_FEAT_RECORD | MSG_FEAT_OPEN_OPTS)) {
        kinds[n] = OPT_SYNC_SRC;
        vals[n++] = r->o.record_src;
    }
    if (dst && (r->s.features & MSG_FEAT_CHANGES)) {
        if (r->o.sync_parent && r->o.sync_parent[0]) {
            kinds[n] = OPT_SYNC_PARENT;
            vals[n++] = r->o.sync_parent;
        }
        if (r->o.sync_layer && r->o.sync_layer[0]) {
            kinds[n] = OPT_SYNC_LAYER;
            vals[n++] = r->o.sync_layer;
        }
    }
    if (dst && r->o.verify && !r->o.dry_run &&
        (r->s.features & (MSG_FEAT_READBACK | MSG_FEAT_OPEN_OPTS)) ==
            (MSG_FEAT_READBACK | MSG_FEAT_OPEN_OPTS)) {
        kinds[n] = OPT_VERIFY;
        vals[n++] = r->o.verify;
    }
    for (size_t i = 0; !dst && i < r->o.n_parent_dirs; i++) {
        kinds[n] = OPT_PARENT_DIR;
        vals[n++] = r->o.parent_dirs[i];
    }
    char pairs[REMOTE_MAX_PARENTS][MSG_MAX_STR + 1];
    for (size_t i = 0; !dst && i < r->o.n_parents; i++) {
        if (i >= REMOTE_MAX_PARENTS || n >= MSG_MAX_OPEN_OPTS)
            return df_usage(err, "too many --parent options");
        if ((size_t)snprintf(pairs[i], sizeof(pairs[i]), "%s=%s",
                             r->o.parents[i].child,
                             r->o.parents[i].parent) >= sizeof(pairs[i]))
            return df_usage(err, "--parent %s: too long",
                            r->o.parents[i].child);
        kinds[n] = OPT_PARENT;
        vals[n++] = pairs[i];
    }
    if (!n)
        return 0;
    /* what the user asked for needs the features; the record's name
     * was sent only where they are */
    bool asked = dst ? r->o.undo != NULL
                     : r->o.n_parent_dirs || r->o.n_parents;
    if (asked &&
        remote_need(r, MSG_FEAT_OPEN_OPTS | (dst ? MSG_FEAT_UNDO : 0),
                    dst ? "--undo" : "--parent-dir and --parent", err) < 0)
        return -1;
    msg_enc_open_opts(b, n, kinds, vals);
    return 0;
}

/* The server found data in the destination: ask our user (check 6). */
static int remote_ask(struct remote *r, const struct msg *m,
                      struct df_error *err)
{
    struct msg_buf b;
    int ok = safety_confirm_overwrite(r->name, r->o.path, m->s1, NULL,
                                      NULL, err);
    msg_buf_init(&b);
    msg_put_u32(&b, ok == 0 ? ANSWER_YES : 0);
    struct df_error e;
    df_error_init(&e);
    int sent = session_send(&r->s, MSG_ANSWER, &b, ok == 0 ? err : &e);
    msg_buf_release(&b);
    return ok == 0 ? sent : -1;
}

/* ---- the remote sink ---- */

static int remote_sink_write(struct sink *s, uint64_t off, const void *buf,
                             size_t len, struct df_error *err)
{
    struct remote *r = s->priv;
    if (sender_write(r->snd, off, buf, len, err) < 0)
        return -1;
    s->bytes_written += len;
    s->bytes_wire = session_bytes_out(&r->s);
    return 0;
}

static int remote_sink_zero(struct sink *s, uint64_t off, uint64_t len,
                            struct df_error *err)
{
    struct remote *r = s->priv;
    if (s->dst_is_zero)
        return 0;
    if (sender_zero(r->snd, MSG_ZERO, off, len, err) < 0)
        return -1;
    s->bytes_zeroed += len;
    return 0;
}

static int remote_sink_finish(struct sink *s, struct df_error *err)
{
    struct remote *r = s->priv;
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    if (sender_drain(r->snd, err) < 0)
        goto out;
    if (r->size_unknown) {          /* the stream's end: its size */
        msg_enc_u64(&b, s->size);
        if (session_send(&r->s, MSG_SET_SIZE, &b, err) < 0)
            goto out;
        msg_buf_release(&b);
        msg_buf_init(&b);
    }
    msg_enc_u64(&b, sender_next_seq(r->snd));
    if (session_send(&r->s, MSG_FLUSH, &b, err) < 0 ||
        session_expect(&r->s, MSG_FLUSHED, &f, err) < 0)
        goto out;
    s->bytes_wire = session_bytes_out(&r->s);
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

static int remote_sink_digest(struct sink *s, uint64_t size,
                              enum digest_alg alg, unsigned threads,
                              struct digest *out, struct df_error *err)
{
    struct remote *r = s->priv;
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    msg_enc_digest_req(&b, (uint8_t)alg, threads, size);
    if (session_send(&r->s, MSG_DIGEST_REQ, &b, err) < 0 ||
        session_expect(&r->s, MSG_DIGEST, &f, err) < 0)
        goto out;
    if (f->m.alg != alg || f->m.digest_len != digest_len(alg)) {
        df_net(err, r->s.peer, "protocol error: digest of the wrong kind");
        goto out;
    }
    out->alg = alg;
    out->len = f->m.digest_len;
    memcpy(out->bytes, f->m.digest, out->len);
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

static void remote_sink_abort(struct sink *s)
{
    struct remote *r = s->priv;
    struct df_error e;
    df_error_init(&e);
    df_net(&e, r->s.peer, "job aborted");
    if (r->snd)
        sender_fail(r->snd, &e);
}

static void remote_sink_free(struct sink *s)
{
    (void)s;        /* owned by struct remote */
}

static const struct sink_ops remote_sink_ops = {
    .name = "remote",
    .write = remote_sink_write,
    .zero = remote_sink_zero,
    .finish = remote_sink_finish,
    .digest = remote_sink_digest,
    .abort_job = remote_sink_abort,
    .free = remote_sink_free,
};

static int remote_recv_ranges(struct remote *r, struct df_error *err)
{
    for (;;) {
        struct rx_frame *f;
        if (session_expect(&r->s, MSG_RESUME_RANGES, &f, err) < 0)
            return -1;
        for (uint32_t i = 0; i < f->m.n; i++) {
            uint64_t off, len;
            msg_range(&f->m, i, &off, &len, NULL);
            if (len == 0 || off + len < off ||
                off + len > r->sink.size ||
                extent_list_append(&r->done, off, len, EXT_DATA, r->name,
                                   err) != 0) {
                rx_frame_free(f);
                df_error_init(err);
                return df_net(err, r->s.peer, "protocol error: bad resume "
                              "range");
            }
        }
        bool last = f->m.last;
        rx_frame_free(f);
        if (last)
            return 0;
    }
}

/* LEAF_HASHES after RESUME_RANGES (MSG_FEAT_LEAF_HASHES): ascending
 * leaves of the disk, each once. */
static int remote_recv_leaves(struct remote *r, struct df_error *err)
{
    const uint64_t nleaves = div_round_up(r->sink.size, DIGEST_LEAF_SIZE);
    struct rjournal_leaves *lv = &r->leaves;
    for (;;) {
        struct rx_frame *f;
        if (session_expect(&r->s, MSG_LEAF_HASHES, &f, err) < 0)
            return -1;
        struct rjournal_leaf *nv = f->m.n
            ? realloc(lv->v, (lv->n + f->m.n) * sizeof(*nv)) : lv->v;
        if (f->m.n && !nv) {
            rx_frame_free(f);
            return df_net(err, r->s.peer, "out of memory");
        }
        lv->v = nv;
        for (uint32_t i = 0; i < f->m.n; i++) {
            struct rjournal_leaf *l = &lv->v[lv->n];
            msg_leaf_hash(&f->m, i, &l->leaf, l->hash);
            if (l->leaf >= nleaves ||
                (lv->n && l->leaf <= lv->v[lv->n - 1].leaf)) {
                rx_frame_free(f);
                return df_net(err, r->s.peer, "protocol error: bad leaf "
                              "hash");
            }
            lv->n++;
        }
        bool last = f->m.last;
        rx_frame_free(f);
        if (last)
            return 0;
    }
}

static int remote_data_channels(struct remote *r, struct df_error *err)
{
    if (r->o.tcp && !r->s.nstreams &&     /* a probe may have set them up */
        session_tcp_client(&r->s, r->o.host,
                                       r->o.streams ? r->o.streams : 4,
                                       err) < 0)
        return -1;
    return session_start(&r->s, err);
}

int remote_open_dst(struct remote *r, uint64_t size, uint64_t src_id,
                    struct sink **out, bool *created, struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    uint32_t flags = OPEN_CREATE;
    msg_buf_init(&b);
    if (size == REMOTE_SIZE_UNKNOWN) {
        /* a stream: its size is known at its end (SET_SIZE) */
        if (!(r->s.features & MSG_FEAT_STREAM_DST)) {
            df_usage(err, "the remote diskferry cannot take a stream (an "
                     "older version): update it, or give a file or "
                     "device as SRC");
            goto out;
        }
        if (r->o.resume) {
            df_usage(err, "--resume: a stream on stdin cannot resume");
            goto out;
        }
        flags |= OPEN_SIZE_UNKNOWN;
        size = 0;
        r->size_unknown = true;
    }
    if (r->o.overwrite)
        flags |= OPEN_OVERWRITE;
    if (r->o.resume)
        flags |= OPEN_RESUME;
    if (r->o.dry_run)
        flags |= OPEN_DRY_RUN;
    if (r->o.any_record || r->o.sync_parent || r->o.busy_record) {
        if (remote_need(r, MSG_FEAT_CHANGES, "a sync from metadata "
                        "(--changes) with a remote disk", err) < 0)
            goto out;
        if (r->o.any_record)
            flags |= OPEN_ANY_RECORD;
        if (r->o.busy_record)
            flags |= OPEN_BUSY_RECORD;
    }
    if (r->o.dry_run && r->o.sync_walk) {
        if (remote_need(r, MSG_FEAT_RECORD, "a dry run of sync", err) < 0)
            goto out;
        flags |= OPEN_SYNC;
    }
    if (r->o.fsync && !r->o.dry_run) {
        if (remote_need(r, MSG_FEAT_FSYNC, "--fsync", err) < 0)
            goto out;
        flags |= OPEN_FSYNC;
    }
    if (r->o.ask) {
        /* never write without the question the user expects */
        if (!(r->s.features & MSG_FEAT_ASK)) {
            df_refuse(err, r->name, "refusing to write: the remote "
                      "diskferry cannot ask before overwriting (an older "
                      "version): give --yes, or update it");
            goto out;
        }
        flags |= OPEN_ASK;
    }
    msg_enc_open(&b, flags, size, src_id, r->o.format, r->o.path, true);
    if (remote_open_opts(r, &b, true, err) < 0 ||
        session_send(&r->s, MSG_OPEN_DST, &b, err) < 0)
        goto out;
    for (;;) {
        if (session_recv_ctl(&r->s, &f, NULL, err) < 0)
            goto out;
        if (f->m.type == MSG_OPENED)
            break;
        if (f->m.type != MSG_ASK || !r->o.ask) {
            df_net(err, r->s.peer, "protocol error: expected OPENED, got "
                   "%s", msg_type_name(f->m.type));
            goto out;
        }
        if (remote_ask(r, &f->m, err) < 0)
            goto out;
        rx_frame_free(f);
        f = NULL;
    }
    if (created)
        *created = f->m.flags & OPENED_DST_IS_ZERO;
    r->dst_record = f->m.flags & OPENED_RECORD;
    r->sink.ops = &remote_sink_ops;
    r->sink.priv = r;
    r->sink.size = size;
    r->sink.dst_is_zero = f->m.flags & OPENED_DST_IS_ZERO;
    snprintf(r->sink.name, sizeof(r->sink.name), "%s", r->name);
    if ((f->m.flags & OPENED_RESUMED) &&
        (remote_recv_ranges(r, err) < 0 ||
         ((r->s.features & MSG_FEAT_LEAF_HASHES) &&
          remote_recv_leaves(r, err) < 0) ||
         resume_plan_init(&r->rp, size, &r->done, err) < 0))
        goto out;
    if (r->o.dry_run) {             /* the server checked; nothing more */
        *out = &r->sink;
        ret = 0;
        goto out;
    }
    if (remote_data_channels(r, err) < 0)
        goto out;
    pthread_mutex_lock(&r->s.lock);
    r->snd = sender_new(r->s.data_out, r->s.ndata, &r->ctl, r->o.threads
                        ? r->o.threads
                        : (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
                        REMOTE_MAX_BLOCK, REMOTE_ACK_WINDOW, err);
    r->s.ack_sender = r->snd;
    pthread_mutex_unlock(&r->s.lock);
    if (!r->snd)
        goto out;
    *out = &r->sink;
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

int remote_open_src(struct remote *r, uint64_t *size, char *format,
                    size_t flen, struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    /* A server without MSG_FEAT_SRC_CHECK does not check the source, so
     * there is nothing to force (and it would refuse the flag). */
    uint32_t flags = r->o.force_share &&
                     (r->s.features & MSG_FEAT_SRC_CHECK)
                     ? OPEN_FORCE_SHARE : 0;
    msg_enc_open(&b, flags, 0, 0, r->o.format, r->o.path, false);
    if (remote_open_opts(r, &b, false, err) < 0 ||
        session_send(&r->s, MSG_OPEN_SRC, &b, err) < 0 ||
        session_expect(&r->s, MSG_OPENED, &f, err) < 0)
        goto out;
    *size = f->m.size;
    snprintf(format, flen, "%s", f->m.s1);
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

int remote_map(struct remote *r, uint64_t off, uint64_t len,
               struct extent_list *out, struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    msg_put_u64(&b, off);
    msg_put_u64(&b, len);
    if (session_send(&r->s, MSG_MAP_REQ, &b, err) < 0 ||
        session_expect(&r->s, MSG_MAP_REPLY, &f, err) < 0)
        goto out;
    uint64_t pos = off;
    for (uint32_t i = 0; i < f->m.n; i++) {
        uint64_t o, l;
        uint8_t st;
        msg_range(&f->m, i, &o, &l, &st);
        if (o != pos || !l || l > off + len - o || st > EXT_HOLE) {
            df_net(err, r->s.peer, "protocol error: bad MAP_REPLY extent");
            goto out;
        }
        if (extent_list_append(out, o, l, (enum extent_state)st, r->name,
                               err) < 0)
            goto out;
        pos = o + l;
    }
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

static uint8_t remote_comp_code(enum comp_mode m)
{
    switch (m) {
    case COMPRESS_NONE: return COMP_NONE;
    case COMPRESS_ZSTD: return COMP_ZSTD;
    case COMPRESS_LZ4: return COMP_LZ4;
    default: return COMP_LZ4 + 1;   /* auto */
    }
}

/* Tell the server which ranges the local journal already holds. */
static int remote_send_skip(struct remote *r, const struct extent_list *l,
                            struct df_error *err)
{
    struct msg_buf b;
    int ret = 0;
    msg_buf_init(&b);
    for (size_t i = 0; ret == 0 && i < l->n;) {
        size_t n = l->n - i < MSG_MAX_RANGES_PER_MSG ? l->n - i
                                                     : MSG_MAX_RANGES_PER_MSG;
        msg_enc_ranges(&b, l, i, n, i + n == l->n, false);
        ret = session_send(&r->s, MSG_RESUME_RANGES, &b, err);
        i += n;
    }
    msg_buf_release(&b);
    return ret;
}

/*
 * With a skip list (sorted, merged): [a, b) lies inside one of its
 * ranges; *i is a cursor that only moves forward (the stream ascends).
 * The server's plan keeps only whole leaves inside them, so what it
 * leaves out of the stream must be there.
 */
static bool remote_held(const struct extent_list *skip, size_t *i,
                        uint64_t a, uint64_t b)
{
    if (a >= b)
        return true;
    if (!skip)
        return false;
    while (*i < skip->n && skip->v[*i].off + skip->v[*i].len <= a)
        (*i)++;
    return *i < skip->n && skip->v[*i].off <= a &&
           skip->v[*i].off + skip->v[*i].len >= b;
}

/* A pull's destination read back as it is written (engine/readback.h),
 * where its verification would read all of it, nothing known (the
 * leaves a record keeps are kept by it as well); NULL: read back at the
 * end. */
static struct readback *remote_readback_start(struct sink *dst,
                                              const struct job_opts *o,
                                              enum digest_alg alg)
{
    if (!o->verify || o->plan || (o->fs && !o->fs_hint))
        return NULL;
    return readback_for_sink(dst, dst->size, alg, o->threads,
                             dst->leaf_fn != NULL);
}

int remote_copy_from(struct remote *r, struct sink *dst, struct rjournal *j,
                     const struct extent_list *skip,
                     const struct job_opts *opts, struct job_stats *st,
                     struct df_error *err)
{
    struct apply ap;
    struct msg_buf b;
    struct comp_worker cw;
    struct progress *pg = NULL;
    struct job_opts vo = *opts;
    uint8_t *dbuf = malloc(MSG_MAX_DATA);
    double t0 = time_now();
    int ret = -1;
    enum digest_alg alg = opts->digest ? opts->digest : DIGEST_XXH128;
    msg_buf_init(&b);
    comp_worker_init(&cw);
    apply_init(&ap, dst, j);
    ap.rb = remote_readback_start(dst, opts, alg);
    if (!dbuf) {
        df_net(err, r->s.peer, "out of memory");
        goto out;
    }
    if (remote_data_channels(r, err) < 0)
        goto out;
    if (skip && skip->n && remote_send_skip(r, skip, err) < 0)
        goto out;
    msg_enc_read_stream(&b, alg, remote_comp_code(r->o.comp),
                        (uint8_t)r->o.level, r->s.ndata, r->o.bwlimit);
    if (session_send(&r->s, MSG_READ_STREAM, &b, err) < 0)
        goto out;
    pg = progress_new(opts->title ? opts->title : "copy", dst->size,
                      opts->progress ? &opts->progress_out : NULL);
    progress_set_prediction(pg, opts->predicted_seconds);
    uint64_t done = 0;
    size_t si = 0;
    for (;;) {
        struct rx_frame *f;
        if (interrupt_check(err) < 0)   /* util/interrupt.h */
            goto out;
        int rr = session_recv_data(&r->s, &f, err);
        if (rr < 0)
            goto out;
        if (rr == 1)
            break;
        const struct msg *m = &f->m;
        const void *p = NULL;
        int w = 0;
        if (m->off < done || m->off > dst->size ||
            m->len > dst->size - m->off ||
            !remote_held(skip, &si, done, m->off)) {
            w = df_net(err, r->s.peer, "protocol error: %s at %llu, "
                       "expected %llu", msg_type_name(m->type),
                       (unsigned long long)m->off,
                       (unsigned long long)done);
        } else if (m->type == MSG_WRITE) {
            r->ctl.comp_out += m->data_len;
            r->ctl.raw_in += m->raw_len;
            if (!(p = comp_frame_data(&cw, m, dbuf, r->s.peer, err)))
                w = -1;
        }
        if (w == 0)
            w = apply_range(&ap, m->off, m->len, p, err);
        done = m->off + m->len;
        rx_frame_free(f);
        if (w < 0)
            goto out;
        progress_update(pg, done, session_bytes_in(&r->s), 0);
    }
    uint64_t skipped = skip ? extent_list_bytes(skip, EXT_DATA) : 0;
    if (!remote_held(skip, &si, done, dst->size)) {
        df_net(err, r->s.peer, "protocol error: stream ended with %llu of "
               "%llu bytes", (unsigned long long)(ap.bytes + skipped),
               (unsigned long long)dst->size);
        goto out;
    }
    r->skipped_resumed = skipped;
    progress_finish(pg);
    st->disk_size = dst->size;
    st->src_digest.alg = (enum digest_alg)r->s.end.alg;
    st->src_digest.len = r->s.end.digest_len;
    memcpy(st->src_digest.bytes, r->s.end.digest, r->s.end.digest_len);
    if (r->s.end.alg != alg || r->s.end.digest_len != digest_len(alg)) {
        df_net(err, r->s.peer, "protocol error: source digest of the "
               "wrong kind");
        goto out;
    }
    if (apply_finish(&ap, err) < 0)
        goto out;
    st->bytes_written = dst->bytes_written;
    st->bytes_zeroed = dst->bytes_zeroed;
    st->bytes_wire = session_bytes_in(&r->s) + session_bytes_out(&r->s);
    vo.digest = alg;
    double tv = time_now();
    struct htree t;
    memset(&t, 0, sizeof(t));
    if (ap.rb && readback_finish(ap.rb, alg, dst->size, &st->dst_digest,
                                 dst->leaf_fn ? &t : NULL) == 0) {
        if (dst->leaf_fn) {
            htree_tell_leaves(&t, dst->leaf_fn, dst->leaf_ctx);
            htree_release(&t);
        }
        st->verify_seconds = time_now() - tv;
        readback_test_log("readback");
        if (engine_verify_compare(dst, st, err) < 0)
            goto out;
    } else {
        if (vo.verify && dst->ops->digest)
            readback_test_log("end");
        if (engine_verify_sink(dst, &vo, st, err) < 0)
            goto out;
    }
    ret = 0;
out:
    if (ret < 0 && j) {
        /* what arrived in order counts for the next --resume */
        struct df_error ignored;
        df_error_init(&ignored);
        apply_finish(&ap, &ignored);
    }
    st->seconds = time_now() - t0;
    readback_free(ap.rb);
    progress_free(pg);
    comp_worker_release(&cw);
    msg_buf_release(&b);
    free(dbuf);
    return ret;
}

const struct plan_inputs *remote_plan(struct remote *r,
                                      const struct image *src)
{
    const struct plan_inputs *in = resume_plan_get(&r->rp);
    r->skipped_resumed = in ? r->rp.kept : 0;
    /* The journal's leaf hashes are of what the interrupted run wrote:
     * they stand for the source's leaves only when the source provably
     * did not change since.  A raw regular file does: the journal was
     * accepted for our remote_src_id, which holds its device, inode,
     * size, mtime and ctime (ns).  A device keeps its identity while
     * written (an LV under a VM), a layered image's parents are not in
     * the id: those are read to hash them, and a change shows in the
     * verification as before. */
    if (in && src->file.is_regular && !src->parent && !src->has_parent_ref &&
        !strcmp(image_format_name(src), "raw"))
        resume_plan_use_leaves(&r->rp, r->leaves.v, r->leaves.n);
    return in;
}

int remote_probe(struct remote *r, double budget, struct link_probe *out,
                 struct df_error *err)
{
    double t0 = time_now();
    memset(out, 0, sizeof(*out));
    if (!(r->s.features & MSG_FEAT_PROBE))
        return df_net(err, r->o.host, "the diskferry serve on %s is too "
                      "old to measure the link (no link probe): upgrade "
                      "diskferry there", r->o.host);
    if (!(budget > 0))
        return df_usage(err, "the link probe needs a time budget above 0");
    if (remote_data_channels(r, err) < 0)
        return -1;
    return probe_run(&r->s, t0, budget, out, err);
}

int remote_done(struct remote *r, bool verified, struct df_error *err)
{
    struct msg_buf b;
    msg_buf_init(&b);
    msg_put_u32(&b, verified ? DONE_VERIFIED : 0);
    int ret = session_send(&r->s, MSG_DONE, &b, err);
    msg_buf_release(&b);
    return ret;
}

int remote_undo(struct remote *r, const char *dst, struct undo_result *st,
                struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    memset(st, 0, sizeof(*st));
    if (remote_need(r, MSG_FEAT_UNDO, "undo", err) < 0)
        goto out;
    msg_put_u32(&b, 0);
    msg_put_str(&b, r->o.path);
    msg_put_str(&b, dst ? dst : "");
    if (session_send(&r->s, MSG_UNDO, &b, err) < 0 ||
        session_expect(&r->s, MSG_UNDONE, &f, err) < 0)
        goto out;
    st->records = f->m.off;
    st->bytes = f->m.len;
    st->complete = f->m.flags & UNDONE_COMPLETE;
    st->truncated = f->m.flags & UNDONE_TRUNCATED;
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

/* A local end of the session that the peer may explain. */
static bool remote_hangup(const struct df_error *err)
{
    return err->cat == DF_NET &&
           (strstr(err->msg, "connection closed") ||
            err->errnum == EPIPE || err->errnum == ECONNRESET);
}

void remote_explain(struct remote *r, struct df_error *err)
{
    if (!r || !r->has_session)
        return;
    /* A peer that broke the protocol is not asked why: it said all it
     * will (a hostile one would hold the job for the whole timeout). */
    if (err->cat == DF_NET && strstr(err->msg, "protocol error"))
        return;
    /* The server may still be finishing what it will say: as long as
     * the session would wait for it. */
    double wait = r->s.timeout_ms >= 0 ? r->s.timeout_ms / 1000.0 + 1 : 3;
    session_explain(&r->s, err, wait);
    if (r->s.has_peer_err || !remote_hangup(err))
        return;
    /* No word from serve: ask ssh (exit status, stderr) why. */
    if (ssh_wait(&r->ssh, 2000))
        ssh_explain(&r->ssh, r->o.host, r->o.remote_path, err);
}

void remote_get_stats(const struct remote *r, struct remote_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (r->has_session)
        st->bytes_wire = session_bytes_out(&r->s) +
                         session_bytes_in(&r->s);
    st->raw_in = r->ctl.raw_in;
    st->comp_out = r->ctl.comp_out;
    st->skipped_resumed = r->skipped_resumed;
    st->bytes_acked = r->snd ? sender_acked_bytes(r->snd) : 0;
    st->zstd_level_max = r->ctl.mode == COMPRESS_AUTO ||
                                 r->ctl.mode == COMPRESS_ZSTD
                             ? r->ctl.level_max_seen
                             : 0;
}

void remote_close(struct remote *r)
{
    if (!r)
        return;
    if (r->snd) {
        struct df_error e;
        df_error_init(&e);
        df_net(&e, r->o.host, "session closed");
        sender_fail(r->snd, &e);
    }
    if (r->has_session) {
        pthread_mutex_lock(&r->s.lock);
        r->s.ack_sender = NULL;
        pthread_mutex_unlock(&r->s.lock);
    }
    /* Queued frames drain (the server keeps reading) or fail. */
    sender_free(r->snd);
    r->snd = NULL;
    /* Then our end of the control channel closes: the server sees the
     * end, commits its journal and exits; then ssh exits.  A server
     * that stopped answering is not waited for. */
    int linger = r->has_session && session_timed_out(&r->s) ? 0 : 10000;
    if (r->has_session)
        session_quiet(&r->s);
    if (r->has_session && r->s.ctl.wfd >= 0) {
        close(r->s.ctl.wfd);
        r->s.ctl.wfd = -1;
    }
    for (unsigned i = 0; r->has_session && i < r->s.nstreams; i++)
        shutdown(r->s.streams[i].rfd, SHUT_RDWR);
    ssh_close(&r->ssh, linger);
    if (r->has_session) {
        session_release(&r->s);
    } else {
        if (r->ssh.rfd >= 0)
            close(r->ssh.rfd);
        if (r->ssh.wfd >= 0)
            close(r->ssh.wfd);
    }
    resume_plan_release(&r->rp);
    rjournal_leaves_release(&r->leaves);
    extent_list_release(&r->done);
    free(r);
}

/* ---- the hash-tree comparison (msg.h) ---- */

static int tree_request(struct remote *r, uint8_t type, enum digest_alg alg,
                        unsigned block_level, struct df_error *err)
{
    struct msg_buf b;
    int ret;
    if (remote_need(r, MSG_FEAT_TREE, "a hash-tree comparison (verify "
                    "or sync with a remote disk)", err) < 0)
        return -1;
    if (r->tree_asked)
        return df_usage(err, "%s: its hash tree was asked for already",
                        r->name);
    if (block_level > MSG_TREE_MAX_BLOCK_LEVEL)
        return df_usage(err, "block of 2^%u leaves: too large",
                        block_level);
    /* the control reader: serve's KEEPALIVEs while both sides hash */
    if (session_start(&r->s, err) < 0)
        return -1;
    msg_buf_init(&b);
    msg_put_u8(&b, (uint8_t)alg);
    msg_put_u8(&b, (uint8_t)block_level);
    ret = session_send(&r->s, type, &b, err);
    msg_buf_release(&b);
    r->tree_asked = ret == 0;
    r->tree_alg = alg;
    r->tree_level = block_level;
    return ret;
}

int remote_tree_request(struct remote *r, enum digest_alg alg,
                        unsigned block_level, struct df_error *err)
{
    return tree_request(r, MSG_TREE_REQ, alg, block_level, err);
}

int remote_tree_request_record(struct remote *r, enum digest_alg alg,
                               unsigned block_level, struct df_error *err)
{
    if (!r->dst_record)
        return df_usage(err, "%s: no state record there", r->name);
    return tree_request(r, MSG_TREE_REQ_RECORD, alg, block_level, err);
}

bool remote_dst_has_record(const struct remote *r)
{
    return r->dst_record;
}

/* TREE: the remote tree is built; it must be one `mine` can walk. */
static int remote_tree_reply(struct remote *r, uint64_t size,
                             struct remote_tree_stats *st,
                             struct df_error *err)
{
    struct rx_frame *f = NULL;
    int ret = -1;
    if (session_expect(&r->s, MSG_TREE, &f, err) < 0)
        goto out;
    if (f->m.alg != r->tree_alg ||
        f->m.digest_len != digest_len(r->tree_alg)) {
        df_net(err, r->s.peer, "protocol error: TREE of the wrong digest");
        goto out;
    }
    st->remote_size = f->m.size;
    st->remote_bytes_read = f->m.len;
    st->remote_digest.alg = r->tree_alg;
    st->remote_digest.len = f->m.digest_len;
    memcpy(st->remote_digest.bytes, f->m.digest, f->m.digest_len);
    if (f->m.size != size) {
        df_usage(err, "sizes differ: the disk here is %llu bytes, %s is "
                 "%llu", (unsigned long long)size, r->name,
                 (unsigned long long)f->m.size);
        goto out;
    }
    ret = 0;
out:
    rx_frame_free(f);
    return ret;
}

/* TREE_BITS for the oldest chunk in flight: [first, first+n). */
static int remote_tree_bits(struct remote *r, size_t first, size_t n,
                            uint8_t *bits, struct remote_tree_stats *st,
                            struct df_error *err)
{
    struct rx_frame *f = NULL;
    if (session_expect(&r->s, MSG_TREE_BITS, &f, err) < 0)
        return -1;
    if (f->m.off != first || f->m.n != n) {
        df_net(err, r->s.peer, "protocol error: TREE_BITS for nodes "
               "[%llu, +%u), expected [%zu, +%zu)",
               (unsigned long long)f->m.off, f->m.n, first, n);
        rx_frame_free(f);
        return -1;
    }
    /* chunks start at multiples of MSG_TREE_MAX_NODES: whole bytes */
    memcpy(bits + first / 8, f->m.data, f->m.data_len);
    st->hash_bytes_received += f->m.data_len;
    rx_frame_free(f);
    return 0;
}

/* One round: the walk's current nodes in chunks, at most 2 of them
 * unanswered; bits receives the answer for all of them. */
static int remote_tree_round(struct remote *r, const struct htree_walk *w,
                             uint8_t *bits, struct remote_tree_stats *st,
                             struct df_error *err)
{
    const size_t chunk = MSG_TREE_MAX_NODES, hl = w->t->hlen;
    struct msg_buf b;
    size_t sent = 0, got = 0;
    int ret = -1;
    msg_buf_init(&b);
    while (got < w->n) {
        while (sent < w->n && sent - got < 2 * chunk) {
            size_t n = w->n - sent < chunk ? w->n - sent : chunk;
            msg_buf_reset(&b);
            msg_put_u64(&b, sent);
            msg_put_u32(&b, (uint32_t)n);
            for (size_t i = sent; i < sent + n; i++)
                msg_put_bytes(&b, htree_node(w->t, w->level, w->idx[i]),
                              hl);
            if (!msg_buf_ok(&b)) {
                df_net(err, r->s.peer, "out of memory");
                goto out;
            }
            if (session_send(&r->s, MSG_TREE_HASHES, &b, err) < 0)
                goto out;
            st->hash_bytes_sent += n * hl;
            sent += n;
        }
        size_t n = w->n - got < chunk ? w->n - got : chunk;
        if (remote_tree_bits(r, got, n, bits, st, err) < 0)
            goto out;
        got += n;
    }
    ret = 0;
out:
    msg_buf_release(&b);
    return ret;
}

int remote_tree_diff(struct remote *r, const struct htree *mine,
                     unsigned block_level, struct extent_list *out,
                     struct remote_tree_stats *st, struct df_error *err)
{
    struct htree_walk w;
    uint8_t *bits = NULL;
    int ret = -1;
    memset(st, 0, sizeof(*st));
    memset(&w, 0, sizeof(w));
    if (!r->tree_asked &&
        remote_tree_request(r, mine->alg, block_level, err) < 0)
        return -1;
    if (r->tree_alg != mine->alg)
        return df_usage(err, "digests differ: the tree here is %s, the "
                        "one asked of %s %s", digest_alg_name(mine->alg),
                        r->name, digest_alg_name(r->tree_alg));
    if (r->tree_level != block_level)
        return df_usage(err, "%s: its tree was asked for another block "
                        "size", r->name);
    if (remote_tree_reply(r, mine->size, st, err) < 0 ||
        htree_walk_start(&w, mine, block_level, err) < 0)
        goto out;
    while (!w.done && w.n) {
        bits = calloc((w.n + 7) / 8, 1);
        if (!bits) {
            df_net(err, r->s.peer, "out of memory");
            goto out;
        }
        if (remote_tree_round(r, &w, bits, st, err) < 0 ||
            htree_walk_next(&w, bits, err) < 0)
            goto out;
        free(bits);
        bits = NULL;
        st->rounds++;
    }
    ret = htree_walk_ranges(&w, out, err);
out:
    free(bits);
    htree_walk_release(&w);
    return ret;
}

int remote_tree_changes(struct remote *r, uint64_t size,
                        const struct extent_list *changed,
                        struct remote_tree_stats *st, struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = 0;
    if (!r->tree_asked || !r->dst_record)
        return df_usage(err, "%s: TREE_CHANGES without the record's tree",
                        r->name);
    if (remote_need(r, MSG_FEAT_CHANGES, "a sync from metadata (--changes) "
                    "with a remote disk", err) < 0 ||
        remote_tree_reply(r, size, st, err) < 0)
        return -1;
    msg_buf_init(&b);
    size_t i = 0;
    do {
        size_t n = changed->n - i < MSG_MAX_RANGES_PER_MSG
                       ? changed->n - i : MSG_MAX_RANGES_PER_MSG;
        msg_enc_ranges(&b, changed, i, n, i + n == changed->n, false);
        ret = session_send(&r->s, MSG_TREE_CHANGES, &b, err);
        st->hash_bytes_sent += (uint64_t)n * 16;
        i += n;
    } while (ret == 0 && i < changed->n);
    msg_buf_release(&b);
    if (ret < 0 || session_expect(&r->s, MSG_TREE_PROVED, &f, err) < 0)
        ret = -1;
    rx_frame_free(f);
    return ret;
}
