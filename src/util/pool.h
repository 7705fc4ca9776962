/*
 * pool.h: a bounded pool of work contexts (a decompressor and its
 * buffers) for the threads that read one image at once.
 *
 * A reader takes a context for the length of one call and gives it back
 * at the end: no two threads ever hold the same context, so what is in
 * it needs no lock.  At most `max` contexts exist at a time; a taker
 * past that waits until one is given back, so memory stays bounded
 * however many threads read.  Idle contexts are kept (LIFO, so a thread
 * calling again tends to get back what it just used, caches included)
 * until ctx_pool_release().
 *
 * Never take a second context of the same pool while holding one: with
 * max reached that waits forever.
 */
#ifndef DF_POOL_H
#define DF_POOL_H

#include <pthread.h>
#include <stdbool.h>

#define CTX_POOL_MAX 16         /* ceiling on any pool's max */

struct ctx_pool {
    pthread_mutex_t lock;
    pthread_cond_t given;       /* a context came back */
    void *idle[CTX_POOL_MAX];
    unsigned n_idle;
    unsigned live;              /* made and not destroyed */
    unsigned max;
    void *(*make)(void *arg);   /* NULL on failure (out of memory) */
    void (*destroy)(void *ctx);
    void *arg;
    bool ready;                 /* initialised, not yet released */
};

/* Prepare p (max is clamped to 1..CTX_POOL_MAX); nothing is made yet.
 * make(arg) builds a context, destroy() frees one. */
void ctx_pool_init(struct ctx_pool *p, unsigned max, void *(*make)(void *),
                   void (*destroy)(void *), void *arg);
/* An idle context, a new one, or (max reached) one given back later;
 * NULL when make() failed. */
void *ctx_pool_take(struct ctx_pool *p);
/* Give back what ctx_pool_take() returned (NULL is a no-op). */
void ctx_pool_give(struct ctx_pool *p, void *ctx);
/* Destroy every context; none may be taken.  A pool never initialised
 * (all zero) or already released is left alone. */
void ctx_pool_release(struct ctx_pool *p);

#endif
