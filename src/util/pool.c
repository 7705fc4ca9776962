/*
 * pool.c: the bounded pool of work contexts (pool.h).
 */
#include "util/pool.h"

#include <assert.h>

void ctx_pool_init(struct ctx_pool *p, unsigned max, void *(*make)(void *),
                   void (*destroy)(void *), void *arg)
{
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->given, NULL);
    p->n_idle = 0;
    p->live = 0;
    p->max = max < 1 ? 1 : max > CTX_POOL_MAX ? CTX_POOL_MAX : max;
    p->make = make;
    p->destroy = destroy;
    p->arg = arg;
    p->ready = true;
}

void *ctx_pool_take(struct ctx_pool *p)
{
    void *ctx = NULL;

    pthread_mutex_lock(&p->lock);
    while (!p->n_idle && p->live == p->max)
        pthread_cond_wait(&p->given, &p->lock);
    if (p->n_idle) {
        ctx = p->idle[--p->n_idle];
        pthread_mutex_unlock(&p->lock);
        return ctx;
    }
    p->live++;                  /* a place for the one made below */
    pthread_mutex_unlock(&p->lock);

    ctx = p->make(p->arg);
    if (!ctx) {
        pthread_mutex_lock(&p->lock);
        p->live--;
        pthread_cond_signal(&p->given);
        pthread_mutex_unlock(&p->lock);
    }
    return ctx;
}

void ctx_pool_give(struct ctx_pool *p, void *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&p->lock);
    assert(p->n_idle < p->live);
    p->idle[p->n_idle++] = ctx;
    pthread_cond_signal(&p->given);
    pthread_mutex_unlock(&p->lock);
}

void ctx_pool_release(struct ctx_pool *p)
{
    if (!p->ready)
        return;
    assert(p->n_idle == p->live);       /* none taken */
    for (unsigned i = 0; i < p->n_idle; i++)
        p->destroy(p->idle[i]);
    p->n_idle = 0;
    p->live = 0;
    pthread_cond_destroy(&p->given);
    pthread_mutex_destroy(&p->lock);
    p->ready = false;
}
