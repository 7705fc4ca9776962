/*
 * sender.c: ordered, compressed, windowed sending (see sender.h).
 *
 * Job states: FREE -> NEW (data queued) -> BUSY (a worker compresses)
 *             -> READY -> SENDING (an output thread) -> FREE.
 * ZERO/TRIM jobs and jobs under --compress none go FREE -> READY.
 * The job for seq lives in slot seq % nslots; the producer waits for the
 * slot to be FREE again (the job nslots earlier was sent).
 */
#include "sender.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "msg.h"
#include "util/progress.h"

enum job_state { JOB_FREE, JOB_NEW, JOB_BUSY, JOB_READY, JOB_SENDING };

struct sender_job {
    enum job_state st;
    uint8_t type;
    uint8_t comp;
    uint64_t seq, off, len;
    uint8_t *raw;           /* max_block bytes */
    uint8_t *zbuf;          /* comp_bound(max_block) bytes */
    size_t out_len;
};

struct sender_thread {
    struct sender *s;
    unsigned idx;
    pthread_t tid;
    bool started;
};

struct sender {
    struct chan **chans;
    unsigned nchans;
    struct comp_ctl *ctl;
    bool compress;
    size_t max_block;
    uint64_t ack_window;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sender_job *jobs;
    unsigned nslots;
    uint64_t next_seq;          /* next to assign */
    uint64_t next_compress;     /* next a worker looks at */
    uint64_t nsent;
    uint64_t bytes_in;          /* payload bytes queued */
    uint64_t acked_seq, acked_bytes;
    bool stop;
    struct df_error err;        /* first error (invariant 3) */

    /* auto level (invariant 4) */
    double wait_cpu, wait_link;
    double comp_busy;           /* seconds the workers compressed */
    uint64_t cpu_idle, cpu_total;   /* /proc/stat at period_start */
    uint64_t jobs_since_adjust;
    double period_start;
    uint64_t period_wire;       /* bytes on the wire at period_start */

    struct sender_thread *workers, *outs;
    unsigned nworkers;
};

static void sender_set_err(struct sender *s, const struct df_error *e)
{
    if (s->err.cat == DF_OK)
        df_error_copy(&s->err, e);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
}

static int sender_ret_err(struct sender *s, struct df_error *err)
{
    df_error_copy(err, &s->err);
    if (err->cat == DF_OK)
        df_net(err, "", "sender stopped");
    return -1;
}

static void *sender_worker(void *arg)
{
    struct sender_thread *t = arg;
    struct sender *s = t->s;
    struct comp_worker cw;
    comp_worker_init(&cw);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop) {
            while (s->next_compress < s->next_seq) {
                struct sender_job *j = &s->jobs[s->next_compress %
                                                s->nslots];
                if (j->seq == s->next_compress && j->st == JOB_NEW)
                    break;
                s->next_compress++;
            }
            if (s->next_compress < s->next_seq)
                break;
            pthread_cond_wait(&s->cond, &s->lock);
        }
        if (s->stop)
            break;
        struct sender_job *j = &s->jobs[s->next_compress++ % s->nslots];
        j->st = JOB_BUSY;
        pthread_mutex_unlock(&s->lock);
        size_t n = 0;
        double t0 = time_now();
        int comp = comp_block(s->ctl, &cw, j->raw, j->len, j->zbuf,
                              comp_bound(s->max_block), &n);
        double busy = time_now() - t0;
        pthread_mutex_lock(&s->lock);
        s->comp_busy += busy;
        j->comp = comp < 0 ? COMP_NONE : (uint8_t)comp;
        j->out_len = comp > 0 ? n : j->len;
        j->st = JOB_READY;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    comp_worker_release(&cw);
    return NULL;
}

static void *sender_output(void *arg)
{
    struct sender_thread *t = arg;
    struct sender *s = t->s;
    struct chan *c = s->chans[t->idx];
    struct msg_buf hdr;
    struct df_error err;
    msg_buf_init(&hdr);
    df_error_init(&err);
    pthread_mutex_lock(&s->lock);
    for (uint64_t seq = t->idx;; seq += s->nchans) {
        struct sender_job *j = &s->jobs[seq % s->nslots];
        while (!s->stop && !(j->seq == seq && j->st == JOB_READY &&
                             seq < s->next_seq)) {
            double t0 = time_now();
            pthread_cond_wait(&s->cond, &s->lock);
            if (seq < s->next_seq)
                s->wait_cpu += time_now() - t0;
        }
        if (s->stop)
            break;
        j->st = JOB_SENDING;
        pthread_mutex_unlock(&s->lock);
        int r;
        if (j->type == MSG_WRITE) {
            msg_enc_write_hdr(&hdr, j->seq, j->off, j->comp,
                              (uint32_t)j->len);
            r = chan_send(c, MSG_WRITE, hdr.p, hdr.len,
                          j->comp ? j->zbuf : j->raw,
                          j->comp ? j->out_len : j->len, &err);
        } else {
            msg_enc_zero(&hdr, j->seq, j->off, j->len);
            r = chan_send(c, j->type, hdr.p, hdr.len, NULL, 0, &err);
        }
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
            sender_set_err(s, &err);
            break;
        }
        j->st = JOB_FREE;
        s->nsent++;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    msg_buf_release(&hdr);
    return NULL;
}

struct sender *sender_new(struct chan **chans, unsigned nchans,
                          struct comp_ctl *ctl, unsigned nworkers,
                          size_t max_block, uint64_t ack_window,
                          struct df_error *err)
{
    struct sender *s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    df_error_init(&s->err);
    s->chans = chans;
    s->nchans = nchans;
    s->ctl = ctl;
    s->compress = ctl->mode != COMPRESS_NONE;
    if (nchans > SENDER_MANY_CHANS && max_block > SENDER_MANY_BLOCK)
        max_block = SENDER_MANY_BLOCK;
    s->max_block = max_block;
    s->ack_window = ack_window;
    s->nworkers = s->compress ? (nworkers ? nworkers : 1) : 0;
    size_t per_slot = max_block + (s->compress ? comp_bound(max_block) : 0);
    unsigned cap = (unsigned)(SENDER_MEM_MAX / per_slot);
    if (cap < s->nworkers + 2)
        cap = s->nworkers + 2;
    s->nslots = 2 * s->nworkers + 2 * nchans + 4;
    if (s->nslots > cap)
        s->nslots = cap;
    s->jobs = calloc(s->nslots, sizeof(*s->jobs));
    if (!s->jobs)
        goto nomem;
    for (unsigned i = 0; i < s->nslots; i++) {
        s->jobs[i].seq = UINT64_MAX;
        s->jobs[i].raw = malloc(max_block);
        if (s->compress)
            s->jobs[i].zbuf = malloc(comp_bound(max_block));
        if (!s->jobs[i].raw || (s->compress && !s->jobs[i].zbuf))
            goto nomem;
    }
    s->workers = calloc(s->nworkers + 1, sizeof(*s->workers));
    s->outs = calloc(nchans, sizeof(*s->outs));
    if (!s->workers || !s->outs)
        goto nomem;
    for (unsigned i = 0; i < s->nworkers; i++) {
        s->workers[i] = (struct sender_thread){.s = s, .idx = i};
        if (pthread_create(&s->workers[i].tid, NULL, sender_worker,
                           &s->workers[i]))
            goto nothread;
        s->workers[i].started = true;
    }
    for (unsigned i = 0; i < nchans; i++) {
        s->outs[i] = (struct sender_thread){.s = s, .idx = i};
        if (pthread_create(&s->outs[i].tid, NULL, sender_output,
                           &s->outs[i]))
            goto nothread;
        s->outs[i].started = true;
    }
    return s;
nothread:
    sender_free(s);
    df_fail(err, DF_NET, 0, "", -1, "cannot start sender threads");
    return NULL;
nomem:
    sender_free(s);
    df_fail(err, DF_NET, 0, "", -1, "out of memory for send buffers");
    return NULL;
}

static uint64_t sender_wire(const struct sender *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->nchans; i++)
        n += s->chans[i]->bytes_out;
    return n;
}

/* The machine's idle and total CPU time so far (/proc/stat, in
 * ticks); false when it cannot be read. */
static bool cpu_times(uint64_t *idle, uint64_t *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return false;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return false;
    *idle = v[3] + v[4];
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    return *total > 0;
}

/* No CPU time to spare in the period (under SENDER_IDLE_MIN of the
 * machine idle) while compression took at least SENDER_COMP_SHARE of
 * a core: compressing more takes it from the transport. */
static bool sender_starved(struct sender *s, double dt)
{
    uint64_t idle, total;
    if (!cpu_times(&idle, &total))
        return false;
    bool starved = false;
    if (s->cpu_total && total > s->cpu_total)
        starved = (double)(idle - s->cpu_idle) <
                      SENDER_IDLE_MIN * (double)(total - s->cpu_total) &&
                  s->comp_busy > SENDER_COMP_SHARE * dt;
    s->cpu_idle = idle;
    s->cpu_total = total;
    return starved;
}

static void sender_adjust(struct sender *s)
{
    double now = time_now();
    if (!s->period_start) {
        s->period_start = now;
        s->period_wire = sender_wire(s);
        s->comp_busy = 0;
        sender_starved(s, 0);
    }
    if (++s->jobs_since_adjust < SENDER_ADJUST_EVERY &&
        now - s->period_start < SENDER_PERIOD)
        return;
    double dt = now - s->period_start;
    if (dt < SENDER_PERIOD / 4)
        return;
    bool link = s->wait_link > 2 * s->wait_cpu && s->wait_link > 0.05 * dt;
    bool cpu = s->wait_cpu > 2 * s->wait_link && s->wait_cpu > 0.05 * dt;
    uint64_t wire = sender_wire(s);
    comp_ctl_adjust(s->ctl, link, cpu, sender_starved(s, dt),
                    (double)(wire - s->period_wire) / dt);
    s->wait_cpu = s->wait_link = s->comp_busy = 0;
    s->jobs_since_adjust = 0;
    s->period_wire = wire;
    s->period_start = now;
}

/* Wait for the slot of next_seq (and the ack window); lock held. */
static struct sender_job *sender_slot(struct sender *s, uint64_t len)
{
    for (;;) {
        if (s->stop)
            return NULL;
        struct sender_job *j = &s->jobs[s->next_seq % s->nslots];
        bool window = s->ack_window &&
                      s->bytes_in + len - s->acked_bytes > s->ack_window &&
                      s->bytes_in > s->acked_bytes;
        if (j->st == JOB_FREE && !window)
            return j;
        bool link = window || j->st == JOB_READY || j->st == JOB_SENDING;
        double t0 = time_now();
        pthread_cond_wait(&s->cond, &s->lock);
        if (link)
            s->wait_link += time_now() - t0;
    }
}

int sender_write(struct sender *s, uint64_t off, const void *buf,
                 size_t len, struct df_error *err)
{
    const uint8_t *p = buf;
    while (len) {
        size_t n = len < s->max_block ? len : s->max_block;
        pthread_mutex_lock(&s->lock);
        struct sender_job *j = sender_slot(s, n);
        if (!j) {
            pthread_mutex_unlock(&s->lock);
            return sender_ret_err(s, err);
        }
        j->type = MSG_WRITE;
        j->seq = s->next_seq;
        j->off = off;
        j->len = n;
        j->comp = COMP_NONE;
        memcpy(j->raw, p, n);
        j->st = s->compress ? JOB_NEW : JOB_READY;
        if (!s->compress) {
            s->ctl->raw_in += n;
            s->ctl->comp_out += n;
        }
        s->next_seq++;
        s->bytes_in += n;
        if (s->compress)
            sender_adjust(s);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int sender_zero(struct sender *s, uint8_t type, uint64_t off, uint64_t len,
                struct df_error *err)
{
    pthread_mutex_lock(&s->lock);
    struct sender_job *j = sender_slot(s, 0);
    if (!j) {
        pthread_mutex_unlock(&s->lock);
        return sender_ret_err(s, err);
    }
    j->type = type;
    j->seq = s->next_seq++;
    j->off = off;
    j->len = len;
    j->st = JOB_READY;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int sender_drain(struct sender *s, struct df_error *err)
{
    pthread_mutex_lock(&s->lock);
    while (!s->stop && s->nsent < s->next_seq)
        pthread_cond_wait(&s->cond, &s->lock);
    bool failed = s->err.cat != DF_OK;
    pthread_mutex_unlock(&s->lock);
    return failed ? sender_ret_err(s, err) : 0;
}

void sender_ack(struct sender *s, uint64_t seq, uint64_t bytes)
{
    pthread_mutex_lock(&s->lock);
    if (seq > s->acked_seq)
        s->acked_seq = seq;
    if (bytes > s->acked_bytes)
        s->acked_bytes = bytes;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int sender_wait_acked(struct sender *s, struct df_error *err)
{
    pthread_mutex_lock(&s->lock);
    while (!s->stop && s->acked_seq < s->next_seq)
        pthread_cond_wait(&s->cond, &s->lock);
    bool failed = s->err.cat != DF_OK;
    pthread_mutex_unlock(&s->lock);
    return failed ? sender_ret_err(s, err) : 0;
}

void sender_fail(struct sender *s, const struct df_error *e)
{
    pthread_mutex_lock(&s->lock);
    sender_set_err(s, e);
    pthread_mutex_unlock(&s->lock);
}

uint64_t sender_next_seq(const struct sender *s)
{
    return s->next_seq;
}

uint64_t sender_acked_bytes(struct sender *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->acked_bytes;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t sender_bytes_in(const struct sender *s)
{
    return s->bytes_in;
}

void sender_free(struct sender *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        if (s->workers[i].started)
            pthread_join(s->workers[i].tid, NULL);
    for (unsigned i = 0; s->outs && i < s->nchans; i++)
        if (s->outs[i].started)
            pthread_join(s->outs[i].tid, NULL);
    for (unsigned i = 0; s->jobs && i < s->nslots; i++) {
        free(s->jobs[i].raw);
        free(s->jobs[i].zbuf);
    }
    free(s->jobs);
    free(s->workers);
    free(s->outs);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
