/*
 * bwlimit.h: --bwlimit RATE: a token bucket shared by every stream of a
 * session.
 *
 * Tokens (bytes) accrue at `rate` per second up to a small burst (50 ms
 * worth, at least 16 KiB), so the link sees a smooth rate rather than a
 * second's worth at once.  bwlimit_take() sleeps until n bytes may go;
 * callers take at most BWLIMIT_CHUNK at a time so one big frame does not
 * borrow far into the future.  A NULL bwlimit never waits.
 */
#ifndef DF_BWLIMIT_H
#define DF_BWLIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define BWLIMIT_CHUNK (16u * 1024)

struct bwlimit {
    pthread_mutex_t lock;
    double rate;            /* bytes per second */
    double burst;           /* bucket size in bytes */
    double tokens;
    double last;            /* time of the last refill */
};

/* NULL when rate is 0 (no limit). */
struct bwlimit *bwlimit_new(uint64_t rate);
void bwlimit_free(struct bwlimit *bw);
void bwlimit_take(struct bwlimit *bw, size_t n);

#endif
