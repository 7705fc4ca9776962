/*
 * probe.c: the link probe, both ends (see probe.h, msg.h).
 */
#include "probe.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "util/bytes.h"
#include "util/interrupt.h"
#include "util/progress.h"

#define PROBE_BUF (1u << 20)            /* the pattern, sent in slices */
#define PROBE_FRAME_MIN 4096u
#define PROBE_FRAME_MAX (256u * 1024)
#define PROBE_GRACE 0.2                 /* a late PROBE_DONE, seconds */
#define PROBE_MAX_STEP (1ull << 40)

/* ---- the pattern: made once, incompressible (invariant 1) ---- */

static uint8_t *probe_pattern;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe_make_pattern(void)
{
    uint8_t *p = malloc(PROBE_BUF);
    uint64_t x = time_now_ns() ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; p && i < PROBE_BUF; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);     /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        put_le64(p + i, z ^ (z >> 31));
    }
    probe_pattern = p;
}

/* Frames of about bytes / 16 per channel: small steps stay granular. */
static size_t probe_frame_len(uint64_t bytes, unsigned n)
{
    uint64_t f = bytes / 16 / (n ? n : 1);
    f -= f % 4096;
    if (f < PROBE_FRAME_MIN)
        f = PROBE_FRAME_MIN;
    if (f > PROBE_FRAME_MAX)
        f = PROBE_FRAME_MAX;
    return (size_t)f;
}

/* ---- sending a step's PROBE_DATA on every data channel ---- */

struct probe_send {
    struct session *s;
    uint32_t step;
    uint64_t bytes;             /* the step's size */
    size_t frame;
    double deadline;
    bool until_done;            /* client: stop at the step's PROBE_DONE */
    pthread_mutex_t lock;
    uint64_t claimed;           /* bytes handed to a channel */
    bool stop;
    struct df_error err;
};

struct probe_chan {
    struct probe_send *ps;
    struct chan *c;
};

/* The next slice to send, or 0 when the step is over. */
static size_t probe_claim(struct probe_send *ps, uint64_t *off)
{
    struct session *s = ps->s;
    bool over = time_now() >= ps->deadline;
    if (!over) {
        pthread_mutex_lock(&s->lock);
        over = s->err.cat != DF_OK ||
               (ps->until_done && s->has_probe_done &&
                s->probe_done.seq == ps->step);
        pthread_mutex_unlock(&s->lock);
    }
    size_t n = 0;
    pthread_mutex_lock(&ps->lock);
    if (over)
        ps->stop = true;
    if (!ps->stop && ps->claimed < ps->bytes) {
        uint64_t left = ps->bytes - ps->claimed;
        n = left < ps->frame ? (size_t)left : ps->frame;
        *off = ps->claimed;
        ps->claimed += n;
    }
    pthread_mutex_unlock(&ps->lock);
    return n;
}

static void *probe_sender(void *arg)
{
    struct probe_chan *pc = arg;
    struct probe_send *ps = pc->ps;
    uint8_t hdr[4];
    uint64_t off;
    size_t n;
    put_le32(hdr, ps->step);
    while ((n = probe_claim(ps, &off)) > 0) {
        struct df_error e;
        df_error_init(&e);
        const uint8_t *p = probe_pattern + off % (PROBE_BUF - ps->frame);
        if (chan_send(pc->c, MSG_PROBE_DATA, hdr, 4, p, n, &e) < 0) {
            pthread_mutex_lock(&ps->lock);
            ps->stop = true;
            if (ps->err.cat == DF_OK)
                df_error_copy(&ps->err, &e);
            pthread_mutex_unlock(&ps->lock);
            break;
        }
    }
    return NULL;
}

/*
 * Send up to bytes of step's PROBE_DATA, spread over the session's data
 * channels in parallel, until deadline (and, until_done, the step's
 * PROBE_DONE).  *sent: the bytes handed to the channels.
 */
static int probe_send_step(struct session *s, uint32_t step, uint64_t bytes,
                           double deadline, bool until_done,
                           uint64_t *sent, struct df_error *err)
{
    struct probe_send ps = {.s = s, .step = step, .bytes = bytes,
                            .deadline = deadline,
                            .until_done = until_done};
    struct probe_chan pc[SESSION_MAX_STREAMS];
    pthread_t th[SESSION_MAX_STREAMS];
    unsigned n = s->ndata, started = 0;
    pthread_once(&probe_once, probe_make_pattern);
    if (!probe_pattern)
        return df_net(err, s->peer, "out of memory for the link probe");
    ps.frame = probe_frame_len(bytes, n);
    pthread_mutex_init(&ps.lock, NULL);
    df_error_init(&ps.err);
    for (unsigned i = 0; i < n; i++) {
        pc[i] = (struct probe_chan){.ps = &ps, .c = s->data_out[i]};
        if (n == 1)
            break;
        if (pthread_create(&th[i], NULL, probe_sender, &pc[i]))
            break;
        started++;
    }
    if (!started)
        probe_sender(&pc[0]);   /* one channel, or no threads to be had */
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&ps.lock);
    *sent = ps.claimed;
    if (ps.err.cat != DF_OK) {
        df_error_copy(err, &ps.err);
        return -1;
    }
    return 0;
}

/* ---- serve ---- */

int probe_answer(struct session *s, const struct msg *m,
                 struct df_error *err)
{
    struct msg_buf b;
    uint32_t step = (uint32_t)m->seq;
    double ms = m->probe_ms;
    int ret = -1;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (ms > 20)
        ms = 20;
#endif
    double deadline = time_now() + ms / 1000.0;
    msg_buf_init(&b);
    if (m->flags == PROBE_ECHO) {
        msg_enc_probe_done(&b, step, 0, 0, 0);
    } else if (m->flags == PROBE_UP) {
        struct session_probe_count c;
        session_probe_arm(s, step);
        if (session_probe_wait(s, step, m->len, deadline, &c, err) < 0)
            goto out;
        msg_enc_probe_done(&b, step, c.bytes, c.span_bytes,
                           (c.t_last - c.t_first) / 1000);
    } else {
        uint64_t sent = 0;
        if (probe_send_step(s, step, m->len, deadline, false, &sent,
                            err) < 0)
            goto out;
        msg_enc_probe_done(&b, step, sent, 0, 0);
    }
    ret = session_send(s, MSG_PROBE_DONE, &b, err);
out:
    msg_buf_release(&b);
    return ret;
}

/* ---- client ---- */

struct probe_ctx {
    struct session *s;
    uint32_t step;
    double end;                 /* t0 + budget */
    double rtt;
    struct msg_buf b;
};

/* What one step measured at its receiving end. */
struct probe_result {
    uint64_t bytes, span_bytes;
    double span;                /* seconds, first frame to last */
    double wall;                /* seconds, as the client saw the step */
    bool cut;                   /* ended by its time limit */
    bool lost;                  /* no PROBE_DONE in time: stop probing */
};

static int probe_send_req(struct probe_ctx *c, uint8_t dir, uint64_t bytes,
                          double limit, struct df_error *err)
{
    uint32_t ms = (uint32_t)(limit * 1000);
    if (ms < 1)
        ms = 1;
    if (ms > MSG_PROBE_MAX_MS)
        ms = MSG_PROBE_MAX_MS;
    msg_enc_probe(&c->b, c->step, dir, bytes, ms);
    return session_send(c->s, MSG_PROBE, &c->b, err);
}

static int probe_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int probe_rtt(struct probe_ctx *c, double t0, double budget,
                     struct df_error *err)
{
    double v[PROBE_ECHOES];
    unsigned n = 0;
    /* at most a sixth of the budget, unless no echo came back yet */
    double stop = t0 + budget / 6;
    while (n < PROBE_ECHOES && (n == 0 || time_now() < stop)) {
        struct msg m;
        double t = time_now();
        c->step++;
        if (interrupt_check(err) < 0 ||
            probe_send_req(c, PROBE_ECHO, 0, 1, err) < 0)
            return -1;
        int r = session_probe_done(c->s, c->step, c->end, &m, err);
        if (r < 0)
            return -1;
        if (r > 0)
            break;
        v[n++] = time_now() - t;
    }
    if (!n)
        return df_net(err, c->s->peer, "the link probe had no answer "
                      "within %.1f s", budget);
    qsort(v, n, sizeof(v[0]), probe_cmp);
    c->rtt = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return 0;
}

static int probe_step(struct probe_ctx *c, uint8_t dir, uint64_t bytes,
                      double limit, double hard, struct probe_result *res,
                      struct df_error *err)
{
    struct session *s = c->s;
    struct msg m;
    double t = time_now();
    int r;
    memset(res, 0, sizeof(*res));
    c->step++;
    if (dir == PROBE_UP) {
        uint64_t sent = 0;
        if (probe_send_req(c, dir, bytes, limit, err) < 0 ||
            probe_send_step(s, c->step, bytes, t + limit, true, &sent,
                            err) < 0)
            return -1;
        r = session_probe_done(s, c->step, hard, &m, err);
        if (r < 0)
            return -1;
        if (r > 0) {
            res->lost = true;
            return 0;
        }
        res->bytes = m.len;
        res->span_bytes = m.span_bytes;
        res->span = (double)m.span_us / 1e6;
    } else {
        struct session_probe_count n;
        uint64_t want = UINT64_MAX;
        session_probe_arm(s, c->step);
        if (probe_send_req(c, dir, bytes, limit, err) < 0)
            return -1;
        r = session_probe_done(s, c->step, hard, &m, err);
        if (r < 0)
            return -1;
        if (r == 0)
            want = m.len;       /* what serve sent: wait for the rest */
        else
            res->lost = true;
        if (session_probe_wait(s, c->step, want, r ? 0 : hard, &n,
                               err) < 0)
            return -1;
        res->bytes = n.bytes;
        res->span_bytes = n.span_bytes;
        res->span = (double)(n.t_last - n.t_first) / 1e9;
    }
    res->wall = time_now() - t;
    res->cut = res->bytes < bytes;
    return 0;
}

/* One direction's ramp, until share_end: its rate and bytes moved. */
static int probe_dir(struct probe_ctx *c, uint8_t dir, double share_end,
                     double *rate, uint64_t *total, struct df_error *err)
{
    uint64_t bytes = PROBE_FIRST;
    double best_span = 0, est = 0;
    *rate = 0;
    *total = 0;
    for (unsigned k = 0;; k++) {
        /* the time serve may take: its answer must be back by the end */
        double limit = share_end - time_now() - 2 * c->rtt - 0.02;
        if (limit < 0.02 || (k && limit * 0.6 < best_span))
            break;
        if (k) {
            /* a step cut short leaves the link's buffers full of data
             * that is dropped: aim well inside the time left */
            double want = limit * 0.6 < PROBE_AIM ? limit * 0.6 : PROBE_AIM;
            double nb = est * want;
            if (nb > (double)bytes * 16)
                nb = (double)bytes * 16;
            if (nb < PROBE_FRAME_MIN)
                nb = PROBE_FRAME_MIN;
            if (nb > (double)PROBE_MAX_STEP)
                nb = (double)PROBE_MAX_STEP;
            bytes = (uint64_t)nb;
        }
        struct probe_result res;
        if (interrupt_check(err) < 0 ||
            probe_step(c, dir, bytes, limit,
                       share_end + PROBE_GRACE, &res, err) < 0)
            return -1;
        *total += res.bytes;
        bool spanned = res.span >= 0.002 && res.span_bytes;
        double r = spanned ? res.span_bytes / res.span
                           : res.bytes / (res.wall > c->rtt + 1e-4
                                              ? res.wall - c->rtt : 1e-4);
        /* a short span may be one burst of a policer or a buffer:
         * size the next step from half of it */
        est = res.span < 0.1 ? r / 2 : r;
        if (spanned && res.span >= best_span) {
            best_span = res.span;
            *rate = r;
        } else if (!*rate) {
            *rate = r;          /* nothing better yet */
        }
        if (res.span >= PROBE_GOOD || res.cut || res.lost)
            break;
    }
    return 0;
}

int probe_run(struct session *s, double t0, double budget,
              struct link_probe *out, struct df_error *err)
{
    struct probe_ctx c = {.s = s, .end = t0 + budget};
    int ret = -1;
    memset(out, 0, sizeof(*out));
    out->streams = s->nstreams ? s->nstreams : 1;
    msg_buf_init(&c.b);
    if (probe_rtt(&c, t0, budget, err) < 0)
        goto out;
    out->rtt = c.rtt;
    double mid = time_now() + (c.end - time_now()) / 2;
    if (probe_dir(&c, PROBE_DOWN, mid, &out->down, &out->bytes_down,
                  err) < 0 ||
        probe_dir(&c, PROBE_UP, c.end, &out->up, &out->bytes_up, err) < 0)
        goto out;
    ret = 0;
out:
    out->seconds = time_now() - t0;
    msg_buf_release(&c.b);
    return ret;
}
