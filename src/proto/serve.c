/*
 * serve.c: the remote end of a session (see serve.h, msg.h).
 *
 * Threads: the main thread answers control messages; for a destination
 * an applier thread takes data frames in seq order, decompresses them
 * and applies them to the sink (engine/apply.h: the writer the client
 * uses for a pull too, committing the resume journal of journal.h),
 * acknowledging every MSG_ACK_EVERY bytes.  sink_lock serialises the sink between the
 * applier and the main thread (FLUSH, DIGEST_REQ).
 *
 * A destination file this end created is kept when the session breaks:
 * with its journal it is what --resume continues from.
 */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compress.h"
#include "engine/apply.h"
#include "engine/dest.h"
#include "engine/job.h"
#include "image/image.h"
#include "journal.h"
#include "safety/safety.h"
#include "sender.h"
#include "session.h"
#include "transport/bwlimit.h"
#include "util/file.h"
#include "util/overflow.h"
#include "util/progress.h"

#define SERVE_MAX_BLOCK (1u << 20)
#define SERVE_MAP_MAX 65536

struct serve {
    const struct serve_opts *o;
    struct session s;
    struct image *img;          /* the source */
    char path[PATH_MAX];        /* the file named, resolved */

    struct dest d;              /* the destination (engine/dest.h) */
    struct sink *sink;          /* d.sink, or open_dst_hook's */
    struct apply ap;            /* the applier's, under sink_lock */

    pthread_mutex_t sink_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t applier;
    bool applier_started;
    uint64_t applied_seq, applied_bytes, acked_bytes;
    bool applier_done;
    struct df_error aerr;
};

/* ---- confinement ---- */

static bool serve_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/')
        return true;
    return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

int serve_confine(const struct serve_opts *o, const char *path,
                  bool for_write, char *out, struct df_error *err)
{
    char joined[PATH_MAX], dir[PATH_MAX], rdir[PATH_MAX], root[PATH_MAX];
    if (!path[0])
        return df_usage(err, "empty path");
    if (o->root) {
        if (!realpath(o->root, root))
            return df_io(err, o->root, errno, "--root");
        if (path_join(joined, sizeof(joined), root, path) < 0)
            return df_refuse(err, path, "path too long");
    } else {
        snprintf(joined, sizeof(joined), "%s", path);
    }
    if (realpath(joined, out)) {
        /* It exists: out is fully resolved (symlinks followed). */
    } else if (errno == ENOENT) {
        const char *base = path_basename(joined);
        if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
            return df_refuse(err, path, "refusing: not a file name");
        path_dirname(joined, dir, sizeof(dir));
        if (!realpath(dir, rdir))
            return df_io(err, path, errno, "cannot resolve the directory");
        if (path_join(out, PATH_MAX, rdir, base) < 0)
            return df_refuse(err, path, "path too long");
        struct stat st;
        if (lstat(out, &st) == 0)   /* a dangling symlink: never follow */
            return df_refuse(err, path, "refusing to write: a symlink "
                             "that leads nowhere");
    } else {
        return df_io(err, path, errno, "cannot resolve");
    }
    if (o->root && !serve_under(out, root))
        return df_refuse(err, path, "refusing: outside the served root "
                         "%s", o->root);
    if (for_write && o->nallow) {
        for (size_t i = 0; i < o->nallow; i++) {
            char a[PATH_MAX];
            if (realpath(o->allow[i], a) && serve_under(out, a))
                return 0;
        }
        return df_refuse(err, path, "refusing to write: not under any "
                         "--allow path of the server");
    }
    return 0;
}

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

/* The options tail of OPEN_DST: --undo JOURNAL, confined for writing. */
static int serve_dst_opts(struct serve *sv, const struct msg *m,
                          char *undo, struct df_error *err)
{
    char val[MSG_MAX_STR + 1];
    uint8_t kind;
    size_t pos = 0;
    undo[0] = '\0';
    while (msg_open_opt(m, &pos, &kind, val)) {
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
    if (dest_open_session(&sv->d, &o, sv->path, dirfd, m->size, m->src_id,
                          m->flags & OPEN_RESUME, err) < 0)
        return -1;
    sv->sink = sv->d.sink;
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
    if (m->off > k->size || m->len > k->size - m->off)
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
    /* Whatever arrived in order is applied: make it count for resume. */
    pthread_mutex_lock(&sv->sink_lock);
    struct df_error cerr;
    df_error_init(&cerr);
    apply_commit(&sv->ap, &cerr);
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

/* The client asks for the TCP transport: listen, hand back port and key. */
static int serve_tcp(struct serve *sv, const struct msg *m,
                     struct df_error *err)
{
    if (sv->o->no_tcp)
        return df_refuse(err, "", "this server does not offer the TCP "
                         "transport (serve --no-tcp)");
    if (session_tcp_server(&sv->s, m, err) < 0)
        return -1;
    return session_start(&sv->s, err);
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
    int r = apply_finish(&sv->ap, err);
    pthread_mutex_unlock(&sv->sink_lock);
    return r;
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
    pthread_mutex_lock(&sv->sink_lock);
    int r = sv->sink->ops->digest(sv->sink, m->size, (enum digest_alg)m->alg,
                                  sv->o->threads, &d, err);
    pthread_mutex_unlock(&sv->sink_lock);
    if (r == 0) {
        msg_enc_digest(&b, MSG_DIGEST, 0, (uint8_t)d.alg, d.bytes,
                       (uint8_t)d.len);
        r = session_send(&sv->s, MSG_DIGEST, &b, err);
    }
    msg_buf_release(&b);
    return r;
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

static int serve_dst(struct serve *sv, const struct msg *open,
                     struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    if (serve_open_dst(sv, open, err) < 0)
        goto out;
    /* Created here, the destination reads as zeros: the client sends
     * no zero runs. */
    bool dst_is_zero = sv->sink && sv->d.img && sv->d.partial &&
                       !sv->d.resumed;
    msg_enc_opened(&b, (dst_is_zero ? OPENED_DST_IS_ZERO : 0) |
                           (sv->d.resumed ? OPENED_RESUMED : 0),
                   open->size,
                   sv->d.img ? image_format_name(sv->d.img) : "raw",
                   sv->path);
    if (session_send(&sv->s, MSG_OPENED, &b, err) < 0)
        goto out;
    if (sv->d.resumed && serve_send_ranges(sv, &sv->d.done, err) < 0)
        goto out;
    if (open->flags & OPEN_DRY_RUN) {
        ret = 0;
        goto out;
    }
    if (session_start(&sv->s, err) < 0)
        goto out;
    apply_init(&sv->ap, sv->sink, sv->d.j.fd >= 0 ? &sv->d.j : NULL);
    if (pthread_create(&sv->applier, NULL, serve_applier, sv)) {
        df_net(err, "", "cannot start the applier thread");
        goto out;
    }
    sv->applier_started = true;
    for (;;) {
        bool eof;
        rx_frame_free(f);
        if (session_recv_ctl(&sv->s, &f, &eof, err) < 0)
            goto out;
        switch (f->m.type) {
        case MSG_TCP_REQ:
            if (serve_tcp(sv, &f->m, err) < 0)
                goto out;
            break;
        case MSG_FLUSH:
            if (serve_flush(sv, f->m.seq, err) < 0 ||
                session_send(&sv->s, MSG_FLUSHED, NULL, err) < 0)
                goto out;
            break;
        case MSG_DIGEST_REQ:
            if (serve_digest(sv, &f->m, err) < 0)
                goto out;
            break;
        case MSG_DONE:
            if (dest_commit(&sv->d, err) < 0)
                goto out;
            rjournal_remove(&sv->d.j);     /* journal.h invariant 4 */
            ret = 0;
            goto out;
        default:
            df_net(err, sv->s.peer, "protocol error: unexpected %s",
                   msg_type_name(f->m.type));
            goto out;
        }
    }
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

/* ---- source: the engine reads, this sink sends ---- */

struct serve_src_sink {
    struct sender *snd;
    struct rskip skip;          /* ranges the client holds already */
};

static int serve_src_send(void *ctx, uint64_t off, uint64_t len,
                          const uint8_t *p, struct df_error *err)
{
    struct serve_src_sink *ss = ctx;
    return p ? sender_write(ss->snd, off, p, (size_t)len, err)
             : sender_zero(ss->snd, MSG_ZERO, off, len, err);
}

static int serve_src_write(struct sink *s, uint64_t off, const void *buf,
                           size_t len, struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    s->bytes_written += len;
    return rskip_each(&ss->skip, off, len, buf, serve_src_send, ss, err);
}

static int serve_src_zero(struct sink *s, uint64_t off, uint64_t len,
                          struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    return rskip_each(&ss->skip, off, len, NULL, serve_src_send, ss, err);
}

static int serve_src_finish(struct sink *s, struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    return sender_drain(ss->snd, err);
}

static void serve_src_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops serve_src_ops = {
    .name = "remote-stream",
    .write = serve_src_write,
    .zero = serve_src_zero,
    .finish = serve_src_finish,
    .free = serve_src_free,
};

static int serve_read_stream(struct serve *sv, const struct msg *rs,
                             const struct extent_list *skip,
                             struct df_error *err)
{
    struct comp_ctl ctl;
    struct serve_src_sink ss = {0};
    struct sink k = {0};
    struct job_opts jo;
    struct job_stats st;
    struct msg_buf b;
    int ret = -1;
    msg_buf_init(&b);
    enum comp_mode mode = rs->comp == COMP_NONE   ? COMPRESS_NONE
                          : rs->comp == COMP_ZSTD ? COMPRESS_ZSTD
                          : rs->comp == COMP_LZ4  ? COMPRESS_LZ4
                                                  : COMPRESS_AUTO;
    comp_ctl_init(&ctl, mode, rs->level);
    if (rs->size && rs->size < 1024) {
        df_net(err, sv->s.peer, "protocol error: bwlimit of %llu bytes/s "
               "(at least 1024)", (unsigned long long)rs->size);
        goto out;
    }
    if (rs->size && !sv->s.bw && !sv->o->no_bwlimit) {  /* --bwlimit */
        sv->s.bw = bwlimit_new(rs->size);
        for (unsigned i = 0; i < sv->s.ndata; i++)
            sv->s.data_out[i]->bw = sv->s.bw;
    }
    unsigned cores = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    ss.skip.done = skip;
    ss.snd = sender_new(sv->s.data_out, sv->s.ndata, &ctl, cores,
                        SERVE_MAX_BLOCK, 0, err);
    if (!ss.snd)
        goto out;
    pthread_mutex_lock(&sv->s.lock);
    sv->s.ack_sender = ss.snd;
    pthread_mutex_unlock(&sv->s.lock);
    k.ops = &serve_src_ops;
    k.priv = &ss;
    k.size = sv->img->size;
    snprintf(k.name, sizeof(k.name), "%s", sv->s.peer);
    job_opts_init(&jo);
    jo.verify = false;
    jo.threads = sv->o->threads;
    memset(&st, 0, sizeof(st));
    if (engine_copy(sv->img, &k, &jo, &st, err) < 0)
        goto out;
    msg_enc_digest(&b, MSG_STREAM_END, sender_next_seq(ss.snd),
                   (uint8_t)st.src_digest.alg, st.src_digest.bytes,
                   (uint8_t)st.src_digest.len);
    if (session_send(&sv->s, MSG_STREAM_END, &b, err) < 0)
        goto out;
    ret = 0;
out:
    pthread_mutex_lock(&sv->s.lock);
    sv->s.ack_sender = NULL;
    pthread_mutex_unlock(&sv->s.lock);
    sender_free(ss.snd);
    msg_buf_release(&b);
    return ret;
}

/* RESUME_RANGES from the client: ranges to leave out of the stream. */
static int serve_add_ranges(struct serve *sv, const struct msg *m,
                            struct extent_list *l, struct df_error *err)
{
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t off, len;
        msg_range(m, i, &off, &len, NULL);
        if (!len || !range_within(off, len, sv->img->size) ||
            extent_list_append(l, off, len, EXT_DATA, sv->path, err) != 0) {
            df_error_init(err);
            return df_net(err, sv->s.peer, "protocol error: bad resume "
                          "range");
        }
    }
    return 0;
}

/* MAP_REQ: what is where in [off, off+len) of the source, as the chain
 * resolves it (EXT_DATA / EXT_ZERO / EXT_HOLE); the reply may stop
 * short (SERVE_MAP_MAX extents): the client asks again from its end. */
static int serve_map(struct serve *sv, const struct msg *m,
                     struct df_error *err)
{
    struct extent_list l;
    struct msg_buf b;
    int ret = -1;
    extent_list_init(&l, SERVE_MAP_MAX);
    msg_buf_init(&b);
    if (!range_within(m->off, m->len, sv->img->size) || !m->len) {
        df_net(err, sv->s.peer, "protocol error: MAP_REQ [%llu, +%llu) "
               "outside the source (%llu bytes)",
               (unsigned long long)m->off, (unsigned long long)m->len,
               (unsigned long long)sv->img->size);
        goto out;
    }
    if (image_map(sv->img, m->off, m->len, &l, err) < 0)
        goto out;
    msg_enc_ranges(&b, &l, 0, l.n, true, true);
    ret = session_send(&sv->s, MSG_MAP_REPLY, &b, err);
out:
    msg_buf_release(&b);
    extent_list_release(&l);
    return ret;
}

/* The options tail of OPEN_SRC: --parent-dir, --parent, confined. */
struct serve_src_opts {
    char (*paths)[PATH_MAX];    /* resolved dirs and parents */
    const char *dirs[MSG_MAX_OPEN_OPTS];
    struct parent_override ov[MSG_MAX_OPEN_OPTS];
    size_t ndirs, nov;
};

static int serve_src_opts(struct serve *sv, const struct msg *m,
                          struct serve_src_opts *so,
                          struct image_open_opts *oo, struct df_error *err)
{
    char val[MSG_MAX_STR + 1];
    uint8_t kind;
    size_t pos = 0, n = 0;
    if (!m->n)
        return 0;
    so->paths = calloc(2 * (size_t)m->n, PATH_MAX);
    if (!so->paths)
        return df_net(err, sv->s.peer, "out of memory");
    while (msg_open_opt(m, &pos, &kind, val)) {
        if (kind == OPT_UNDO)
            return df_usage(err, "--undo applies to a destination");
        char *eq = kind == OPT_PARENT ? strchr(val, '=') : NULL;
        if (kind == OPT_PARENT && (!eq || eq == val || !eq[1]))
            return df_usage(err, "--parent: expected CHILD=PARENT");
        if (serve_confine(sv->o, eq ? eq + 1 : val, false, so->paths[n],
                          err) < 0)
            return -1;
        if (kind == OPT_PARENT_DIR) {
            so->dirs[so->ndirs++] = so->paths[n++];
        } else {
            *eq = '\0';        /* the child is a name to match, kept */
            snprintf(so->paths[n + 1], PATH_MAX, "%s", val);
            so->ov[so->nov].child = so->paths[n + 1];
            so->ov[so->nov++].parent = so->paths[n];
            n += 2;
        }
    }
    oo->parent_dirs = so->dirs;
    oo->n_parent_dirs = so->ndirs;
    oo->parent_overrides = so->ov;
    oo->n_parent_overrides = so->nov;
    return 0;
}

static int serve_src(struct serve *sv, const struct msg *open,
                     struct df_error *err)
{
    struct msg_buf b;
    struct extent_list skip;
    struct rx_frame *f = NULL;
    struct image_open_opts oo = {.format = open->s1[0] ? open->s1 : NULL};
    struct serve_src_opts so;
    int ret = -1;
    msg_buf_init(&b);
    extent_list_init(&skip, EXTENT_LIST_DEFAULT_CAP);
    /* A source being written on this host (safety.h): refused unless
     * the client said --force-share; the warning goes to our stderr,
     * which ssh carries to the user. */
    struct safety_src_req sreq = {
        .cmd = "serve", .result = "copy",
        .force_share = open->flags & OPEN_FORCE_SHARE,
    };
    memset(&so, 0, sizeof(so));
    if (serve_confine(sv->o, open->s2, false, sv->path, err) < 0 ||
        serve_src_opts(sv, open, &so, &oo, err) < 0 ||
        image_open(sv->path, &oo, &sv->img, err) < 0)
        goto out;
    sreq.src = sv->img;
    if (safety_check_source(&sreq, err) < 0)
        goto out;
    msg_enc_opened(&b, 0, sv->img->size, image_format_name(sv->img), sv->path);
    if (session_send(&sv->s, MSG_OPENED, &b, err) < 0 ||
        session_start(&sv->s, err) < 0)
        goto out;
    for (;;) {
        bool eof;
        rx_frame_free(f);
        if (session_recv_ctl(&sv->s, &f, &eof, err) < 0)
            goto out;
        switch (f->m.type) {
        case MSG_TCP_REQ:
            if (serve_tcp(sv, &f->m, err) < 0)
                goto out;
            break;
        case MSG_RESUME_RANGES:
            if (serve_add_ranges(sv, &f->m, &skip, err) < 0)
                goto out;
            break;
        case MSG_MAP_REQ:
            if (serve_map(sv, &f->m, err) < 0)
                goto out;
            break;
        case MSG_READ_STREAM:
            if (serve_read_stream(sv, &f->m, &skip, err) < 0)
                goto out;
            break;
        case MSG_DONE:
            ret = 0;
            goto out;
        default:
            df_net(err, sv->s.peer, "protocol error: unexpected %s",
                   msg_type_name(f->m.type));
            goto out;
        }
    }
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    extent_list_release(&skip);
    free(so.paths);
    return ret;
}

/* ---- undo ---- */

static int serve_undo_resolve(void *ctx, const char *path, char *out,
                              struct df_error *err)
{
    const struct serve *sv = ctx;
    return serve_confine(sv->o, path, true, out, err);
}

/* `diskferry undo host:JOURNAL [DST]`: the journal is read and the
 * destination (named or recorded) written under the confinement. */
static int serve_undo(struct serve *sv, const struct msg *m,
                      struct df_error *err)
{
    struct undo_opts uo = {.yes = true, .resolve_dst = serve_undo_resolve,
                           .resolve_ctx = sv};
    struct undo_stats st;
    struct msg_buf b;
    char jpath[PATH_MAX];
    int ret = -1;
    msg_buf_init(&b);
    if (m->flags) {
        df_usage(err, "undo: --dry-run of a remote journal is not "
                 "supported");
        goto out;
    }
    if (serve_confine(sv->o, m->s1, false, jpath, err) < 0 ||
        undo_apply(jpath, m->s2[0] ? m->s2 : NULL, &uo, &st, err) < 0)
        goto out;
    msg_put_u64(&b, st.records);
    msg_put_u64(&b, st.bytes);
    msg_put_u32(&b, (st.complete ? UNDONE_COMPLETE : 0) |
                        (st.truncated ? UNDONE_TRUNCATED : 0));
    ret = session_send(&sv->s, MSG_UNDONE, &b, err);
out:
    msg_buf_release(&b);
    return ret;
}

int serve_run(int rfd, int wfd, const struct serve_opts *o,
              struct df_error *err)
{
    struct serve sv;
    struct rx_frame *f = NULL;
    int ret = -1;
    memset(&sv, 0, sizeof(sv));
    sv.o = o;
    dest_init(&sv.d);
    pthread_mutex_init(&sv.sink_lock, NULL);
    pthread_mutex_init(&sv.lock, NULL);
    pthread_cond_init(&sv.cond, NULL);
    df_error_init(&sv.aerr);
    signal(SIGPIPE, SIG_IGN);
    session_init(&sv.s, rfd, wfd, "client", true);
    if (o->timeout)
        session_set_timeout(&sv.s, o->timeout);
    if (session_hello(&sv.s, err) < 0)
        goto out;
    if (session_recv_ctl(&sv.s, &f, NULL, err) < 0)
        goto out;
    if (f->m.type == MSG_OPEN_DST)
        ret = serve_dst(&sv, &f->m, err);
    else if (f->m.type == MSG_OPEN_SRC)
        ret = serve_src(&sv, &f->m, err);
    else if (f->m.type == MSG_UNDO)
        ret = serve_undo(&sv, &f->m, err);
    else
        df_net(err, sv.s.peer, "protocol error: expected OPEN_DST or "
               "OPEN_SRC, got %s", msg_type_name(f->m.type));
out:
    if (ret < 0)
        session_send_error(&sv.s, err);     /* best effort */
    if (sv.applier_started) {
        struct df_error end;
        df_error_init(&end);
        df_net(&end, sv.s.peer, "session ended");
        session_fail(&sv.s, ret < 0 ? err : &end);
        pthread_join(sv.applier, NULL);
    }
    /* Our output ends: the client (and ssh) see the end of the session,
     * and the client closes its side, which ends our reader. */
    session_quiet(&sv.s);
    if (shutdown(sv.s.ctl.wfd, SHUT_WR) < 0 && sv.s.ctl.wfd != sv.s.ctl.rfd) {
        close(sv.s.ctl.wfd);
        sv.s.ctl.wfd = -1;
    }
    rx_frame_free(f);
    session_release(&sv.s);
    /* A partial file and its journal stay for --resume (dest.h
     * invariant 4): never dest_abort(). */
    dest_close(&sv.d);
    image_close(sv.img);
    pthread_mutex_destroy(&sv.sink_lock);
    pthread_mutex_destroy(&sv.lock);
    pthread_cond_destroy(&sv.cond);
    return ret;
}
