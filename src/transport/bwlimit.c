/*
 * bwlimit.c: the token bucket behind --bwlimit (see bwlimit.h).
 */
#include "bwlimit.h"

#include <stdlib.h>
#include <time.h>

#include "util/progress.h"

struct bwlimit *bwlimit_new(uint64_t rate)
{
    if (!rate)
        return NULL;
    struct bwlimit *bw = calloc(1, sizeof(*bw));
    if (!bw)
        return NULL;
    pthread_mutex_init(&bw->lock, NULL);
    bw->rate = (double)rate;
    bw->burst = bw->rate / 20;
    if (bw->burst < 16 * 1024)
        bw->burst = 16 * 1024;
    bw->tokens = 0;
    bw->last = time_now();
    return bw;
}

void bwlimit_free(struct bwlimit *bw)
{
    if (!bw)
        return;
    pthread_mutex_destroy(&bw->lock);
    free(bw);
}

/*
 * Debt model: take the tokens at once (the balance may go negative),
 * then sleep until the balance would be back at zero.  Concurrent
 * callers queue up behind each other's debt, so N streams share the
 * rate instead of each getting it.
 */
void bwlimit_take(struct bwlimit *bw, size_t n)
{
    if (!bw || !n)
        return;
    pthread_mutex_lock(&bw->lock);
    double now = time_now();
    bw->tokens += (now - bw->last) * bw->rate;
    if (bw->tokens > bw->burst)
        bw->tokens = bw->burst;
    bw->last = now;
    bw->tokens -= (double)n;
    double wait = bw->tokens < 0 ? -bw->tokens / bw->rate : 0;
    pthread_mutex_unlock(&bw->lock);
    if (wait > 0) {
        struct timespec ts = {.tv_sec = (time_t)wait,
                              .tv_nsec = (long)((wait - (double)(time_t)wait)
                                                * 1e9)};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
}
