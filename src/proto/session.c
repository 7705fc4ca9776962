/*
 * session.c: reader threads, routing, reorder queue (see session.h).
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sender.h"
#include "transport/bwlimit.h"
#include "util/progress.h"

void rx_frame_free(struct rx_frame *f)
{
    if (!f)
        return;
    free(f->buf);
    free(f);
}

void session_init(struct session *s, int rfd, int wfd, const char *peer,
                  bool is_server)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->is_server = is_server;
    chan_init(&s->ctl, rfd, wfd, peer);
    s->data_out[0] = &s->ctl;
    s->ndata = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->ctlq_tail = &s->ctlq_head;
    df_error_init(&s->err);
    session_set_timeout(s, SESSION_TIMEOUT_S);
}

void session_set_timeout(struct session *s, unsigned secs)
{
    s->timeout_ms = secs ? (int)(secs > 86400 ? 86400 : secs) * 1000 : -1;
    chan_set_timeouts(&s->ctl, s->timeout_ms, s->timeout_ms);
}

bool session_timed_out(const struct session *s)
{
    if (s->ctl.timed_out)
        return true;
    for (unsigned i = 0; i < s->nstreams; i++)
        if (s->streams[i].timed_out)
            return true;
    return false;
}

/* Invariant 4: a KEEPALIVE every interval until session_quiet(). */
static void *session_keepalive(void *arg)
{
    struct session *s = arg;
    int ms = s->timeout_ms / 4;
    if (ms > SESSION_KEEPALIVE_MS)
        ms = SESSION_KEEPALIVE_MS;
    if (ms < 100)
        ms = 100;
    pthread_mutex_lock(&s->lock);
    while (!s->keepalive_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (!s->keepalive_stop &&
               pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
            ;
        if (s->keepalive_stop)
            break;
        pthread_mutex_unlock(&s->lock);
        struct df_error e;
        df_error_init(&e);
        int r = chan_send(&s->ctl, MSG_KEEPALIVE, NULL, 0, NULL, 0, &e);
        if (r < 0)
            session_fail(s, &e);
        pthread_mutex_lock(&s->lock);
        if (r < 0)
            break;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

void session_quiet(struct session *s)
{
    if (!s->keepalive_started)
        return;
    pthread_mutex_lock(&s->lock);
    s->keepalive_stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->keepalive, NULL);
    s->keepalive_started = false;
}

void session_fail(struct session *s, const struct df_error *e)
{
    /* Under s->lock: whoever detaches ack_sender (under the lock) frees
     * it only afterwards.  Lock order: session, then sender. */
    pthread_mutex_lock(&s->lock);
    if (s->err.cat == DF_OK)
        df_error_copy(&s->err, e);
    pthread_cond_broadcast(&s->cond);
    if (s->ack_sender)
        sender_fail(s->ack_sender, e);
    pthread_mutex_unlock(&s->lock);
}

static int session_ret_err(struct session *s, struct df_error *err)
{
    df_error_copy(err, &s->err);
    return -1;
}

/* Read and decode one frame from c; handles ERROR.  Returns 0, 1 (EOF)
 * or -1. */
static int session_read_frame(struct session *s, struct chan *c,
                              struct rx_frame **out, struct df_error *err)
{
    struct rx_frame *f = calloc(1, sizeof(*f));
    uint8_t type;
    if (!f)
        return df_net(err, s->peer, "out of memory for a frame");
    int r;
    while ((r = chan_recv(c, &type, &f->buf, &f->len, err)) == 0 &&
           type == MSG_KEEPALIVE && f->len == 0 &&
           (s->features & MSG_FEAT_KEEPALIVE)) {
        free(f->buf);       /* it said only that the peer lives */
        f->buf = NULL;
    }
    if (r != 0) {
        free(f);
        return r;
    }
    if (msg_decode(type, f->buf, f->len, &f->m, s->peer, err) < 0) {
        rx_frame_free(f);
        return -1;
    }
    if (type == MSG_ERROR) {
        char what[PATH_MAX];
        if (f->m.s1[0] && !s->is_server)
            snprintf(what, sizeof(what), "%s:%s", s->peer, f->m.s1);
        else
            snprintf(what, sizeof(what), "%s", f->m.s1[0] ? f->m.s1
                                                         : s->peer);
        df_fail(err, (enum df_cat)f->m.cat, 0, what, -1, "%s", f->m.s2);
        rx_frame_free(f);
        pthread_mutex_lock(&s->lock);
        if (!s->has_peer_err)
            df_error_copy(&s->peer_err, err);
        s->has_peer_err = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    *out = f;
    return 0;
}

/* Queue a data frame (invariants 1, 2); takes f. */
static int session_put_data(struct session *s, struct rx_frame *f,
                            struct df_error *err)
{
    uint64_t seq = f->m.seq;
    pthread_mutex_lock(&s->lock);
    while (s->err.cat == DF_OK && seq != s->rx_next &&
           seq >= s->rx_next &&
           (seq - s->rx_next >= SESSION_RXQ_SLOTS ||
            s->rx_bytes + f->len > SESSION_RXQ_BYTES))
        pthread_cond_wait(&s->cond, &s->lock);
    if (s->err.cat != DF_OK) {
        pthread_mutex_unlock(&s->lock);
        rx_frame_free(f);
        return session_ret_err(s, err);
    }
    struct rx_frame **slot = &s->rxq[seq % SESSION_RXQ_SLOTS];
    if (seq < s->rx_next || *slot ||
        (s->has_end && seq >= s->end.seq)) {
        pthread_mutex_unlock(&s->lock);
        rx_frame_free(f);
        return df_net(err, s->peer, "protocol error: %s with sequence "
                      "%llu out of place", msg_type_name(f->m.type),
                      (unsigned long long)seq);
    }
    *slot = f;
    s->rx_bytes += f->len;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Probe data counts on arrival and is dropped (probe.h). */
static void session_probe_take(struct session *s, struct rx_frame *f)
{
    uint64_t now = time_now_ns();
    uint32_t step = (uint32_t)f->m.seq;
    pthread_mutex_lock(&s->lock);
    struct session_probe_count *c = &s->probe;
    if (step > c->step)
        *c = (struct session_probe_count){.step = step};
    if (step == c->step) {
        if (c->frames++ == 0)
            c->t_first = now;
        else
            c->span_bytes += f->m.data_len;
        c->t_last = now;
        c->bytes += f->m.data_len;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    rx_frame_free(f);
}

/* A client's PROBE_DONE: the newest is kept (rx_frame's strings are not
 * used by it, so the copy is cheap enough for a few per second). */
static void session_probe_done_take(struct session *s, struct rx_frame *f)
{
    pthread_mutex_lock(&s->lock);
    s->probe_done = f->m;
    s->probe_done.data = NULL;
    s->has_probe_done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    rx_frame_free(f);
}

/* Wait on s->cond (locked) until woken or deadline (time_now()). */
static void session_wait_until(struct session *s, double deadline)
{
    double left = deadline - time_now();
    if (left <= 0)
        return;
    if (left > 1)
        left = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(left * 1e9);
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

void session_probe_arm(struct session *s, uint32_t step)
{
    pthread_mutex_lock(&s->lock);
    if (s->probe.step != step)
        s->probe = (struct session_probe_count){.step = step};
    pthread_mutex_unlock(&s->lock);
}

int session_probe_wait(struct session *s, uint32_t step, uint64_t want,
                       double deadline, struct session_probe_count *out,
                       struct df_error *err)
{
    pthread_mutex_lock(&s->lock);
    while (s->err.cat == DF_OK &&
           !(s->probe.step == step && s->probe.bytes >= want) &&
           time_now() < deadline)
        session_wait_until(s, deadline);
    if (s->err.cat != DF_OK) {
        pthread_mutex_unlock(&s->lock);
        return session_ret_err(s, err);
    }
    if (s->probe.step == step)
        *out = s->probe;
    else
        *out = (struct session_probe_count){.step = step};
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int session_probe_done(struct session *s, uint32_t step, double deadline,
                       struct msg *out, struct df_error *err)
{
    pthread_mutex_lock(&s->lock);
    while (s->err.cat == DF_OK &&
           !(s->has_probe_done && s->probe_done.seq == step) &&
           time_now() < deadline)
        session_wait_until(s, deadline);
    if (s->has_probe_done && s->probe_done.seq == step) {
        *out = s->probe_done;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (s->err.cat != DF_OK) {
        pthread_mutex_unlock(&s->lock);
        return session_ret_err(s, err);
    }
    pthread_mutex_unlock(&s->lock);
    return 1;
}

struct reader_arg {
    struct session *s;
    struct chan *c;
    bool is_ctl;
};

static void *session_reader(void *arg)
{
    struct reader_arg *ra = arg;
    struct session *s = ra->s;
    struct df_error err;
    uint64_t next_seq = 0, last_seq = 0;
    bool seen = false;
    df_error_init(&err);
    for (;;) {
        struct rx_frame *f = NULL;
        int r = session_read_frame(s, ra->c, &f, &err);
        if (r == 1) {
            if (!ra->is_ctl)
                break;      /* a stream may end; FLUSH/END say if early */
            pthread_mutex_lock(&s->lock);
            s->ctl_eof = true;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            df_net(&err, s->peer, "connection closed by the remote side");
            session_fail(s, &err);
            break;
        }
        if (r < 0) {
            if (ra->is_ctl) {
                pthread_mutex_lock(&s->lock);
                s->ctl_dead = true;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
            }
            session_fail(s, &err);
            break;
        }
        uint8_t t = f->m.type;
        if (msg_is_data(t)) {
            /* Each channel carries ascending seqs (sender.h invariant 1);
             * the only data channel carries every seq, consecutively. */
            bool only = ra->is_ctl && s->nstreams == 0;
            if ((only && f->m.seq != next_seq) ||
                (!only && seen && f->m.seq <= last_seq)) {
                df_net(&err, s->peer, "protocol error: %s with sequence "
                       "%llu out of place", msg_type_name(t),
                       (unsigned long long)f->m.seq);
                rx_frame_free(f);
                session_fail(s, &err);
                break;
            }
            seen = true;
            last_seq = f->m.seq;
            next_seq = f->m.seq + 1;
            if (session_put_data(s, f, &err) < 0) {
                session_fail(s, &err);
                break;
            }
            continue;
        }
        if ((t == MSG_PROBE_DATA || (t == MSG_PROBE_DONE && !s->is_server &&
                                     ra->is_ctl)) &&
            (s->features & MSG_FEAT_PROBE)) {
            if (t == MSG_PROBE_DATA)
                session_probe_take(s, f);
            else
                session_probe_done_take(s, f);
            continue;
        }
        if (!ra->is_ctl) {
            df_net(&err, s->peer, "protocol error: %s on a data stream",
                   msg_type_name(t));
            rx_frame_free(f);
            session_fail(s, &err);
            break;
        }
        if (t == MSG_ACK) {
            pthread_mutex_lock(&s->lock);
            if (s->ack_sender)
                sender_ack(s->ack_sender, f->m.seq, f->m.len);
            pthread_mutex_unlock(&s->lock);
            rx_frame_free(f);
            continue;
        }
        pthread_mutex_lock(&s->lock);
        if (t == MSG_STREAM_END) {
            if (s->has_end || f->m.seq < s->rx_next) {
                pthread_mutex_unlock(&s->lock);
                rx_frame_free(f);
                df_net(&err, s->peer, "protocol error: STREAM_END out of "
                       "place");
                session_fail(s, &err);
                break;
            }
            s->has_end = true;
            s->end = f->m;
            rx_frame_free(f);
        } else {
            *s->ctlq_tail = f;
            s->ctlq_tail = &f->next;
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    free(ra);
    return NULL;
}

static int session_add_reader(struct session *s, struct chan *c,
                              bool is_ctl, struct df_error *err)
{
    struct reader_arg *ra = malloc(sizeof(*ra));
    if (!ra || s->nreaders >= SESSION_MAX_STREAMS + 1) {
        free(ra);
        return df_net(err, s->peer, "too many reader threads");
    }
    *ra = (struct reader_arg){.s = s, .c = c, .is_ctl = is_ctl};
    if (pthread_create(&s->readers[s->nreaders], NULL, session_reader,
                       ra)) {
        free(ra);
        return df_net(err, s->peer, "cannot start a reader thread");
    }
    s->nreaders++;
    return 0;
}

int session_start(struct session *s, struct df_error *err)
{
    for (; s->streams_started < s->nstreams; s->streams_started++)
        if (session_add_reader(s, &s->streams[s->streams_started], false,
                               err) < 0)
            return -1;
    if (!s->started && session_add_reader(s, &s->ctl, true, err) < 0)
        return -1;
    s->started = true;
    return 0;
}

void session_release(struct session *s)
{
    session_quiet(s);
    /* Wake readers blocked in read(): shut sockets, close pipes. */
    for (unsigned i = 0; i < s->nstreams; i++)
        shutdown(s->streams[i].rfd, SHUT_RDWR);
    shutdown(s->ctl.rfd, SHUT_RDWR);
    pthread_mutex_lock(&s->lock);
    if (s->err.cat == DF_OK)
        df_net(&s->err, s->peer, "session closed");
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->ctl.rfd >= 0 && s->ctl.rfd != s->ctl.wfd) {
        /* A pipe: closing it does not wake a blocked read(); the peer
         * going away does.  The caller has ended the peer (ssh child
         * killed or our stdout closed) before releasing. */
    }
    for (unsigned i = 0; i < s->nreaders; i++)
        pthread_join(s->readers[i], NULL);
    for (unsigned i = 0; i < s->nstreams; i++)
        chan_release(&s->streams[i]);
    free(s->streams);
    chan_release(&s->ctl);
    while (s->ctlq_head) {
        struct rx_frame *f = s->ctlq_head;
        s->ctlq_head = f->next;
        rx_frame_free(f);
    }
    for (unsigned i = 0; i < SESSION_RXQ_SLOTS; i++)
        rx_frame_free(s->rxq[i]);
    bwlimit_free(s->bw);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

int session_send(struct session *s, uint8_t type, const struct msg_buf *b,
                 struct df_error *err)
{
    if (b && !msg_buf_ok(b))
        return df_net(err, s->peer, "internal: %s message too large",
                      msg_type_name(type));
    return chan_send(&s->ctl, type, b ? b->p : NULL, b ? b->len : 0, NULL,
                     0, err);
}

void session_send_error(struct session *s, const struct df_error *e)
{
    struct msg_buf b;
    struct df_error ignored;
    df_error_init(&ignored);
    msg_buf_init(&b);
    msg_enc_error(&b, e);
    session_send(s, MSG_ERROR, &b, &ignored);
    msg_buf_release(&b);
}

int session_recv_ctl(struct session *s, struct rx_frame **out, bool *eof,
                     struct df_error *err)
{
    *out = NULL;
    if (eof)
        *eof = false;
    if (!s->started) {
        int r = session_read_frame(s, &s->ctl, out, err);
        if (r == 1) {
            if (eof)
                *eof = true;
            return df_net(err, s->peer, "connection closed by the remote "
                          "side");
        }
        if (r == 0 && msg_is_data((*out)->m.type)) {
            rx_frame_free(*out);
            *out = NULL;
            return df_net(err, s->peer, "protocol error: data before "
                          "the session was opened");
        }
        return r;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->ctlq_head && s->err.cat == DF_OK)
        pthread_cond_wait(&s->cond, &s->lock);
    if (s->ctlq_head) {
        *out = s->ctlq_head;
        s->ctlq_head = (*out)->next;
        if (!s->ctlq_head)
            s->ctlq_tail = &s->ctlq_head;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (eof)
        *eof = s->ctl_eof;
    pthread_mutex_unlock(&s->lock);
    return session_ret_err(s, err);
}

int session_expect(struct session *s, uint8_t type, struct rx_frame **out,
                   struct df_error *err)
{
    if (session_recv_ctl(s, out, NULL, err) < 0)
        return -1;
    if ((*out)->m.type != type) {
        uint8_t got = (*out)->m.type;
        rx_frame_free(*out);
        *out = NULL;
        return df_net(err, s->peer, "protocol error: expected %s, got %s",
                      msg_type_name(type), msg_type_name(got));
    }
    return 0;
}

int session_recv_data(struct session *s, struct rx_frame **out,
                      struct df_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        struct rx_frame **slot = &s->rxq[s->rx_next % SESSION_RXQ_SLOTS];
        if (*slot) {
            *out = *slot;
            *slot = NULL;
            s->rx_next++;
            s->rx_bytes -= (*out)->len;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        if (s->has_end && s->rx_next >= s->end.seq) {
            pthread_mutex_unlock(&s->lock);
            return 1;
        }
        if (s->err.cat != DF_OK)
            break;
        pthread_cond_wait(&s->cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return session_ret_err(s, err);
}

void session_explain(struct session *s, struct df_error *err,
                     double timeout)
{
    if (!s->started || err->cat != DF_NET)
        return;
    double end = time_now() + timeout;
    pthread_mutex_lock(&s->lock);
    while (!s->has_peer_err && !s->ctl_eof && !s->ctl_dead &&
           time_now() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    if (s->has_peer_err) {
        df_error_init(err);
        df_error_copy(err, &s->peer_err);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t session_bytes_out(const struct session *s)
{
    uint64_t n = s->ctl.bytes_out;
    for (unsigned i = 0; i < s->nstreams; i++)
        n += s->streams[i].bytes_out;
    return n;
}

uint64_t session_bytes_in(const struct session *s)
{
    uint64_t n = s->ctl.bytes_in;
    for (unsigned i = 0; i < s->nstreams; i++)
        n += s->streams[i].bytes_in;
    return n;
}

/*
 * The features this side offers.  Test hook (meson -Dtesting=true):
 * DF_TEST_SERVE_MASK_FEATURES=0xBITS makes serve leave those feature
 * bits out, as an older serve would (tests/e2e/test_link_probe.py).
 */
static uint32_t session_my_features(const struct session *s)
{
    uint32_t f = MSG_FEAT_ALL;
#ifdef DF_TESTING
    const char *mask = getenv("DF_TEST_SERVE_MASK_FEATURES");
    if (s->is_server && mask)
        f &= ~(uint32_t)strtoul(mask, NULL, 0);
#else
    (void)s;
#endif
    return f;
}

int session_hello(struct session *s, struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    uint32_t mine = session_my_features(s);
    msg_buf_init(&b);
    msg_enc_hello(&b, mine);
    /* The client speaks first; the server always answers with its own
     * HELLO, so the client can name both versions on a mismatch. */
    if (!s->is_server && session_send(s, MSG_HELLO, &b, err) < 0)
        goto out;
    if (session_expect(s, MSG_HELLO, &f, err) < 0)
        goto out;
    if (s->is_server && session_send(s, MSG_HELLO, &b, err) < 0)
        goto out;
    if (msg_negotiate(&f->m, mine, s->peer, &s->version,
                      &s->features, err) < 0)
        goto out;
    if (!(s->features & MSG_FEAT_KEEPALIVE)) {
        /* an older peer is silent while busy: only writes time out */
        chan_set_timeouts(&s->ctl, -1, s->timeout_ms);
    } else if (s->timeout_ms >= 0) {
        if (pthread_create(&s->keepalive, NULL, session_keepalive, s)) {
            df_net(err, s->peer, "cannot start the keepalive thread");
            goto out;
        }
        s->keepalive_started = true;
    }
    ret = 0;
out:
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}
