/*
 * readback.c: the read-back taken while the destination is written
 * (picture and invariants in readback.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/job.h"
#include "engine/readback.h"
#include "engine/sink.h"
#include "image/image.h"
#include "util/overflow.h"

/* The gate opens a stretch at least this long at a time (or up to the
 * end): the pipeline maps and hands out items in batches, not a leaf
 * per frame applied. */
#define READBACK_STEP (16ull << 20)

struct readback {
    struct image *img;
    uint64_t size;
    enum digest_alg alg;
    unsigned threads;
    bool want_tree;
    struct htree tree;
    pthread_t tid;
    bool started;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t frontier;          /* applied below this */
    bool open;                  /* readback_finish(): all of it */
    bool stopped;               /* readback_stop() or spoiled */
    bool spoiled;               /* a range came below the frontier */
    bool done;                  /* the digest ended (rc) */
    int rc;
    struct digest d;
    struct df_error err;
};

/* job_opts.gate: wait until a stretch from pos is final. */
static int readback_gate(void *ctx, uint64_t pos, uint64_t *upto,
                         struct df_error *err)
{
    struct readback *rb = ctx;
    uint64_t want = min_u64(rb->size, pos + READBACK_STEP);
    int ret = 0;
    pthread_mutex_lock(&rb->lock);
    for (;;) {
        if (rb->stopped) {
            ret = df_fail(err, DF_INTERRUPTED, 0, rb->img->name, -1,
                          "read-back stopped");
            break;
        }
        if (rb->open || rb->frontier >= rb->size) {
            *upto = rb->size;
            break;
        }
        uint64_t f = rb->frontier & ~(uint64_t)(DIGEST_LEAF_SIZE - 1);
        if (f >= want) {
            *upto = f;
            break;
        }
        pthread_cond_wait(&rb->cond, &rb->lock);
    }
    pthread_mutex_unlock(&rb->lock);
    return ret;
}

static void *readback_main(void *arg)
{
    struct readback *rb = arg;
    struct job_opts o;
    struct digest d;
    struct df_error err;
    job_opts_init(&o);
    df_error_init(&err);
    o.digest = rb->alg;
    o.threads = rb->threads;
    o.verify = false;
    o.gate = readback_gate;
    o.gate_ctx = rb;
    if (rb->want_tree) {
        o.leaf_fn = htree_leaf_fn;
        o.leaf_ctx = &rb->tree;
    }
    int r = engine_digest(rb->img, &o, &d, NULL, &err);
    pthread_mutex_lock(&rb->lock);
    rb->rc = r;
    rb->d = d;
    df_error_copy(&rb->err, &err);
    rb->done = true;
    pthread_cond_broadcast(&rb->cond);
    pthread_mutex_unlock(&rb->lock);
    return NULL;
}

struct readback *readback_start(struct image *img, enum digest_alg alg,
                                unsigned threads, bool tree,
                                struct df_error *err)
{
    struct readback *rb = calloc(1, sizeof(*rb));
    if (!rb) {
        df_io(err, img->name, ENOMEM, "cannot start the read-back");
        return NULL;
    }
    rb->img = img;
    rb->size = img->size;
    rb->alg = alg;
    rb->threads = threads;
    rb->want_tree = tree;
    df_error_init(&rb->err);
    if (tree && htree_init(&rb->tree, alg, img->size, err) < 0) {
        free(rb);
        return NULL;
    }
    pthread_mutex_init(&rb->lock, NULL);
    pthread_cond_init(&rb->cond, NULL);
    if (pthread_create(&rb->tid, NULL, readback_main, rb) != 0) {
        df_io(err, img->name, errno, "cannot start the read-back");
        readback_free(rb);
        return NULL;
    }
    rb->started = true;
    return rb;
}

struct readback *readback_for_sink(struct sink *k, uint64_t size,
                                   enum digest_alg alg, unsigned threads,
                                   bool tree)
{
    struct df_error e;
    struct image *img;
    if (!k->ops->digest || !k->ops->readback_image ||
        !(img = k->ops->readback_image(k)) || img->size != size)
        return NULL;
    df_error_init(&e);
    return readback_start(img, alg, threads, tree, &e);
}

void readback_note(struct readback *rb, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&rb->lock);
    if (off < rb->frontier) {
        rb->spoiled = rb->stopped = true;   /* invariant 2 */
        pthread_cond_broadcast(&rb->cond);
    } else if (!rb->stopped) {
        uint64_t was = rb->frontier & ~(uint64_t)(DIGEST_LEAF_SIZE - 1);
        rb->frontier = off + len;
        if ((rb->frontier & ~(uint64_t)(DIGEST_LEAF_SIZE - 1)) != was)
            pthread_cond_broadcast(&rb->cond);
    }
    pthread_mutex_unlock(&rb->lock);
}

void readback_stop(struct readback *rb)
{
    pthread_mutex_lock(&rb->lock);
    rb->stopped = true;
    pthread_cond_broadcast(&rb->cond);
    pthread_mutex_unlock(&rb->lock);
}

int readback_finish(struct readback *rb, enum digest_alg alg, uint64_t size,
                    struct digest *out, struct htree *t)
{
    pthread_mutex_lock(&rb->lock);
    rb->open = true;
    pthread_cond_broadcast(&rb->cond);
    pthread_mutex_unlock(&rb->lock);
    if (rb->started) {
        pthread_join(rb->tid, NULL);
        rb->started = false;
    }
    if (rb->rc < 0 || rb->spoiled || rb->stopped || alg != rb->alg ||
        size != rb->size)
        return 1;
    *out = rb->d;
    if (rb->want_tree && t) {
        *t = rb->tree;                  /* moved */
        memset(&rb->tree, 0, sizeof(rb->tree));
        rb->want_tree = false;
    }
    return 0;
}

void readback_test_log(const char *how)
{
#ifdef DF_TESTING
    const char *path = getenv("DF_TEST_READBACK_LOG");
    FILE *f = path ? fopen(path, "ae") : NULL;
    if (f) {
        fprintf(f, "digest=%s\n", how);
        fclose(f);
    }
#else
    (void)how;
#endif
}

void readback_free(struct readback *rb)
{
    if (!rb)
        return;
    if (rb->started) {
        readback_stop(rb);
        pthread_join(rb->tid, NULL);
    }
    if (rb->want_tree)
        htree_release(&rb->tree);
    pthread_mutex_destroy(&rb->lock);
    pthread_cond_destroy(&rb->cond);
    free(rb);
}
