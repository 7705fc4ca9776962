/*
 * serve.c: the remote end of a session (see serve.h, msg.h): the
 * dispatch on the first message (OPEN_DST: serve_dst.c, OPEN_SRC:
 * serve_src.c, UNDO: here), the confinement of every path to --root
 * and --allow, and what both sides share (the TCP transport).
 */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/readback.h"
#include "safety/safety.h"
#include "probe.h"
#include "serve_int.h"
#include "session.h"
#include "util/file.h"

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

/*
 * The link probe (probe.h), before anything is opened: answer PROBE and
 * TCP_REQ from *f on.  0: the session ended (DONE, or the client closed
 * its side); 1: *f is the first message of a job; -1 with err.
 */
static int serve_probe(struct serve *sv, struct rx_frame **f,
                       struct df_error *err)
{
    if (session_start(&sv->s, err) < 0)
        return -1;
    for (;;) {
        uint8_t t = (*f)->m.type;
        bool eof;
        if (t == MSG_OPEN_DST || t == MSG_OPEN_SRC || t == MSG_UNDO)
            return 1;
        if (t == MSG_DONE)
            return 0;
        if (t == MSG_PROBE) {
            if (probe_answer(&sv->s, &(*f)->m, err) < 0)
                return -1;
        } else if (t == MSG_TCP_REQ) {
            if (serve_tcp(sv, &(*f)->m, err) < 0)
                return -1;
        } else {
            return df_net(err, sv->s.peer, "protocol error: unexpected %s "
                          "before OPEN_DST or OPEN_SRC", msg_type_name(t));
        }
        rx_frame_free(*f);
        *f = NULL;
        if (session_recv_ctl(&sv->s, f, &eof, err) < 0)
            return eof ? (df_error_reset(err), 0) : -1;
    }
}

int serve_loop(struct serve *sv, const struct serve_handler *h,
               int (*done)(struct serve *sv, struct df_error *err),
               struct df_error *err)
{
    struct rx_frame *f = NULL;
    int ret = -1;
    for (;;) {
        bool eof;
        const struct serve_handler *k;
        rx_frame_free(f);
        if (session_recv_ctl(&sv->s, &f, &eof, err) < 0)
            break;
        if (f->m.type == MSG_DONE) {
            ret = done ? done(sv, err) : 0;
            break;
        }
        if (f->m.type == MSG_TCP_REQ) {
            if (serve_tcp(sv, &f->m, err) < 0)
                break;
            continue;
        }
        for (k = h; k->type && k->type != f->m.type; k++)
            ;
        if (!k->type) {
            df_net(err, sv->s.peer, "protocol error: unexpected %s",
                   msg_type_name(f->m.type));
            break;
        }
        if (k->fn(sv, &f->m, err) < 0)
            break;
    }
    rx_frame_free(f);
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
    sv.rec_fd = -1;
    dest_init(&sv.d);
    extent_list_init(&sv.client_done, EXTENT_LIST_DEFAULT_CAP);
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
    if ((sv.s.features & MSG_FEAT_PROBE) &&
        (f->m.type == MSG_PROBE || f->m.type == MSG_TCP_REQ)) {
        int r = serve_probe(&sv, &f, err);
        if (r <= 0) {
            ret = r;
            goto out;
        }
    }
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
    readback_free(sv.rb);               /* the applier is done with it */
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
    serve_tree_release(&sv);
    serve_record_release(&sv);
    image_close(sv.img);
    extent_list_release(&sv.client_done);
    pthread_mutex_destroy(&sv.sink_lock);
    pthread_mutex_destroy(&sv.lock);
    pthread_cond_destroy(&sv.cond);
    return ret;
}
