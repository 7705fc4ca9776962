/*
 * progress.c: progress, rate and ETA on stderr (see progress.h).
 */
#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "size.h"

struct progress {
    char title[32];
    uint64_t total;
    double start, last_draw;
    bool drawn;
    pthread_mutex_t lock;
    uint64_t done, sent, skipped;
};

double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct progress *progress_new(const char *title, uint64_t total,
                              bool enabled)
{
    if (!enabled)
        return NULL;
    struct progress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->title, sizeof(p->title), "%s", title);
    p->total = total;
    p->start = time_now();
    p->last_draw = p->start;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void progress_draw(struct progress *p, double now)
{
    char done[32], sent[32], skipped[32], rate[32], eta[32] = "";
    double secs = now - p->start;
    double r = secs > 0 ? (double)p->done / secs : 0;

    size_format(p->done, done, sizeof(done));
    size_format(p->sent, sent, sizeof(sent));
    size_format(p->skipped, skipped, sizeof(skipped));
    size_format((uint64_t)r, rate, sizeof(rate));
    if (p->total && r > 0 && p->done <= p->total) {
        unsigned s = (unsigned)((double)(p->total - p->done) / r);
        snprintf(eta, sizeof(eta), " ETA %u:%02u:%02u", s / 3600,
                 s / 60 % 60, s % 60);
    }
    if (p->total)
        fprintf(stderr, "\r%s: %5.1f%% %s, %s/s, sent %s, skipped %s%s\033[K",
                p->title, 100.0 * (double)p->done / (double)p->total, done,
                rate, sent, skipped, eta);
    else
        fprintf(stderr, "\r%s: %s, %s/s, sent %s, skipped %s\033[K",
                p->title, done, rate, sent, skipped);
    p->drawn = true;
    p->last_draw = now;
}

void progress_update(struct progress *p, uint64_t done, uint64_t sent,
                     uint64_t skipped)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->done = done;
    p->sent = sent;
    p->skipped = skipped;
    double now = time_now();
    if (now - p->start >= 1.0 && now - p->last_draw >= 0.25)
        progress_draw(p, now);
    pthread_mutex_unlock(&p->lock);
}

void progress_finish(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        progress_draw(p, time_now());
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}
