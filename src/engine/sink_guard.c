/*
 * sink_guard.c: the whole-destination emptiness check (docs/design.md
 * promise 1: a destination that is not empty is not written without
 * --overwrite).
 *
 * safety.h check 6 samples the destination before the job, which
 * refuses most disks at once; this wrapper covers the rest without a
 * second pass.  It stands in front of the real sink and, before each
 * write(off, len) or zero(off, len), reads [off, off+len) of the
 * destination and requires it to be all zero (holes of a regular file
 * are skipped with SEEK_DATA, never read).  A range the copy neither
 * writes nor zeroes is left as it is, so it needs no look.
 *
 * A zero() over a range found all zero is not forwarded: the range
 * already reads as zeros (sink.h contract 2), so reading it costs what
 * BLKZEROOUT or punching would have, and nothing is written.
 *
 * On finding data: the guard trips.  New calls are refused; the one that
 * found it waits until every call in flight has returned (writes run
 * concurrently, sink.h contract 1), zeroes back every range written so
 * far (each was verified zero before it was written), and records the
 * refusal.  Every call that returns after the trip returns that same
 * error, so whichever one the engine reports first says it in full:
 *
 *   refusing to write: holds data at offset 104857600 (found while
 *   copying; the 12.0 MiB written so far were zero before and are zero
 *   again); give --overwrite to replace it
 *
 * Invariants (under lock): `busy` counts calls between guard_enter()
 * and their return; once `tripped`, busy only falls; `settled` is set
 * once, after the rollback, and `final` does not change after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/job.h"
#include "util/overflow.h"
#include "util/size.h"
#include "util/zero.h"

#define GUARD_CHUNK (1u << 20)          /* bytes per read of the dst */

struct guard {
    struct sink *inner;
    struct sink_ops ops;        /* guard_ops, digest only if inner has */
    struct image *dst;          /* read; zeroed back when tripped */
    bool rollback;              /* inner writes (false: a dry run) */
    uint64_t from;              /* ranges below are not checked */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* busy fell, or settled */
    unsigned busy;
    bool tripped, settled;
    struct df_error final;
    struct extent *done;        /* ranges written, unordered */
    size_t ndone, adone;
    uint8_t **pool;             /* free read buffers */
    size_t npool, apool;
};

static uint8_t *guard_buf_take(struct guard *g)
{
    uint8_t *b = NULL;
    pthread_mutex_lock(&g->lock);
    if (g->npool)
        b = g->pool[--g->npool];
    pthread_mutex_unlock(&g->lock);
    if (!b && posix_memalign((void **)&b, 4096, GUARD_CHUNK) != 0)
        b = NULL;
    return b;
}

static void guard_buf_put(struct guard *g, uint8_t *b)
{
    pthread_mutex_lock(&g->lock);
    if (g->npool == g->apool) {
        size_t na = g->apool ? 2 * g->apool : 16;
        uint8_t **nv = realloc(g->pool, na * sizeof(*nv));
        if (!nv) {
            pthread_mutex_unlock(&g->lock);
            free(b);
            return;
        }
        g->pool = nv;
        g->apool = na;
    }
    g->pool[g->npool++] = b;
    pthread_mutex_unlock(&g->lock);
}

/* An image with no local file (an NBD export) is read through the
 * image; the rest through its file. */
static bool guard_nofile(const struct image *dst)
{
    return dst->file.fd < 0 && !dst->file.mem;
}

static uint64_t guard_size(const struct image *dst)
{
    return guard_nofile(dst) ? dst->size : dst->file.size;
}

/* 1 with *at set when [off, off+len) of dst holds a non-zero byte, 0 if
 * all zero, -1 on error; buf: GUARD_CHUNK bytes. */
static int scan_zero(struct image *dst, uint8_t *buf, uint64_t off,
                     uint64_t len, uint64_t *at, struct df_error *err)
{
    struct df_file *f = &dst->file;
    bool nofile = guard_nofile(dst);
    uint64_t end = min_u64(off + len, guard_size(dst));
    int r = 0;

    while (r == 0 && off < end) {
        bool data = true;
        uint64_t run_end = end;
        if (!nofile)
            df_file_data_run(f, off, end, &data, &run_end);
        while (data && r == 0 && off < run_end) {
            size_t n = (size_t)min_u64(run_end - off, GUARD_CHUNK);
            if (nofile ? image_read(dst, buf, n, off, err) < 0
                       : df_file_pread(f, buf, n, off, err) < 0) {
                r = -1;
            } else if (!zero_is_zero(buf, n)) {
                size_t i = 0;
                while (!buf[i])
                    i++;
                *at = off + i;
                r = 1;
            }
            off += n;
        }
        off = max_u64(off, run_end);
    }
    return r;
}

/* guard_scan: scan_zero of the guarded destination. */
static int guard_scan(struct guard *g, uint64_t off, uint64_t len,
                      uint64_t *at, struct df_error *err)
{
    if (off >= guard_size(g->dst))
        return 0;
    uint8_t *buf = guard_buf_take(g);
    if (!buf)
        return df_io(err, g->inner->name, ENOMEM, "cannot check contents");
    int r = scan_zero(g->dst, buf, off, len, at, err);
    guard_buf_put(g, buf);
    return r;
}

static int guard_extent_order(const void *x, const void *y)
{
    const struct extent *a = x, *b = y;
    return a->off < b->off ? -1 : a->off > b->off;
}

/* Sort and merge the written ranges (under lock). */
static void guard_compact(struct guard *g)
{
    if (!g->ndone)
        return;
    qsort(g->done, g->ndone, sizeof(*g->done), guard_extent_order);
    size_t n = 1;
    for (size_t i = 1; i < g->ndone; i++) {
        struct extent *last = &g->done[n - 1];
        if (last->off + last->len == g->done[i].off)
            last->len += g->done[i].len;
        else
            g->done[n++] = g->done[i];
    }
    g->ndone = n;
}

static int guard_note(struct guard *g, uint64_t off, uint64_t len,
                      struct df_error *err)
{
    int ret = 0;
    pthread_mutex_lock(&g->lock);
    struct extent *last = g->ndone ? &g->done[g->ndone - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->len += len;
        goto out;
    }
    if (g->ndone == g->adone) {
        guard_compact(g);
        /* Grow only when merging freed less than half. */
        if (!g->adone || g->ndone > g->adone / 2) {
            size_t na = g->adone ? 2 * g->adone : 256;
            struct extent *nv = realloc(g->done, na * sizeof(*nv));
            if (!nv) {
                ret = df_io(err, g->inner->name, ENOMEM, "out of memory");
                goto out;
            }
            g->done = nv;
            g->adone = na;
        }
    }
    g->done[g->ndone++] = (struct extent){ off, len, EXT_DATA };
out:
    pthread_mutex_unlock(&g->lock);
    return ret;
}

/* Wait for the trip's outcome and return it (under lock, the caller no
 * longer counted in busy). */
static int guard_refused(struct guard *g, struct df_error *err)
{
    while (!g->settled)
        pthread_cond_wait(&g->cond, &g->lock);
    df_error_copy(err, &g->final);
    return -1;
}

static int guard_enter(struct guard *g, struct df_error *err)
{
    int r = 0;
    pthread_mutex_lock(&g->lock);
    if (g->tripped)
        r = guard_refused(g, err);
    else
        g->busy++;
    pthread_mutex_unlock(&g->lock);
    return r;
}

static void guard_leave(struct guard *g)
{
    pthread_mutex_lock(&g->lock);
    g->busy--;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Data found at `at` by a call in flight: stop, put back, refuse. */
static int guard_trip(struct guard *g, uint64_t at, struct df_error *err)
{
    struct sink *s = g->inner;
    struct df_error e;
    uint64_t written = 0;
    char sz[32];

    pthread_mutex_lock(&g->lock);
    g->busy--;
    pthread_cond_broadcast(&g->cond);
    if (g->tripped) {
        guard_refused(g, err);
        pthread_mutex_unlock(&g->lock);
        return -1;
    }
    g->tripped = true;
    while (g->busy)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);

    /* Alone now: every other call has returned or waits for `settled`. */
    df_error_init(&e);
    for (size_t i = 0; i < g->ndone; i++) {
        if (image_zero(g->dst, g->done[i].off, g->done[i].len, &e) < 0)
            break;
        written += g->done[i].len;
    }
    if (e.cat == DF_OK && g->ndone)
        image_flush(g->dst, false, &e);
    size_format(written, sz, sizeof(sz));
    df_error_init(&g->final);
    if (e.cat != DF_OK) {
        char why[sizeof(e.msg) + 64];
        df_error_format(&e, why, sizeof(why));
        df_fail(&g->final, DF_IO, 0, s->name, -1, "refusing to write: "
                "holds data at offset %llu (found while copying); zeroing "
                "back what was written so far failed: %s",
                (unsigned long long)at, why);
    } else if (!g->rollback) {
        df_refuse(&g->final, s->name, "refusing to write: holds data at "
                  "offset %llu (found by the dry run's full check); give "
                  "--overwrite to replace it", (unsigned long long)at);
    } else if (!written) {
        df_refuse(&g->final, s->name, "refusing to write: holds data at "
                  "offset %llu (found while copying, before anything was "
                  "written); give --overwrite to replace it",
                  (unsigned long long)at);
    } else {
        df_refuse(&g->final, s->name, "refusing to write: holds data at "
                  "offset %llu (found while copying; the %s written so far "
                  "were zero before and are zero again); give --overwrite "
                  "to replace it", (unsigned long long)at, sz);
    }
    pthread_mutex_lock(&g->lock);
    g->settled = true;
    pthread_cond_broadcast(&g->cond);
    df_error_copy(err, &g->final);
    pthread_mutex_unlock(&g->lock);
    return -1;
}

/* Enter and check [off, off+len): 0 = all zero, go on (call
 * guard_leave() after); -1 = refused or failed (already left). */
static int guard_begin(struct guard *g, uint64_t off, uint64_t len,
                       struct df_error *err)
{
    uint64_t at = 0;
    if (guard_enter(g, err) < 0)
        return -1;
    uint64_t end = off + len;
    int r = end <= g->from ? 0
                           : guard_scan(g, max_u64(off, g->from),
                                        end - max_u64(off, g->from), &at, err);
    if (r > 0)
        return guard_trip(g, at, err);
    if (r < 0)
        guard_leave(g);
    return r;
}

static int guard_write(struct sink *s, uint64_t off, const void *buf,
                       size_t len, struct df_error *err)
{
    struct guard *g = s->priv;
    if (guard_begin(g, off, len, err) < 0)
        return -1;
    int r = g->inner->ops->write(g->inner, off, buf, len, err);
    /* what was checked is what may be zeroed back */
    if (r == 0 && g->rollback && off + len > g->from)
        r = guard_note(g, max_u64(off, g->from),
                       off + len - max_u64(off, g->from), err);
    if (r == 0)
        __atomic_fetch_add(&s->bytes_written, len, __ATOMIC_RELAXED);
    guard_leave(g);
    return r;
}

static int guard_zero(struct sink *s, uint64_t off, uint64_t len,
                      struct df_error *err)
{
    struct guard *g = s->priv;
    int r = 0;
    if (guard_begin(g, off, len, err) < 0)
        return -1;
    /* All zero already: nothing to write, unless it runs past the end
     * (the inner sink says so) or nothing is written anyway (a dry run
     * shows its plan). */
    if (!g->rollback || off + len > g->dst->size || off < g->from)
        r = g->inner->ops->zero(g->inner, off, len, err);
    guard_leave(g);
    return r;
}

static int guard_finish(struct sink *s, struct df_error *err)
{
    struct guard *g = s->priv;
    g->inner->durable = s->durable;
    g->inner->size = s->size;
    int r = g->inner->ops->finish(g->inner, err);
    s->bytes_wire = g->inner->bytes_wire;
    s->bytes_zeroed = g->inner->bytes_zeroed;
    return r;
}

static int guard_digest(struct sink *s, uint64_t size, enum digest_alg alg,
                        unsigned threads, struct digest *out,
                        struct df_error *err)
{
    struct guard *g = s->priv;
    if (!g->inner->ops->digest)
        return df_fail(err, DF_USAGE, 0, s->name, -1,
                       "cannot be read back");
    g->inner->known = s->known;
    g->inner->fs = s->fs;
    g->inner->leaf_fn = s->leaf_fn;
    g->inner->leaf_ctx = s->leaf_ctx;
    return g->inner->ops->digest(g->inner, size, alg, threads, out, err);
}

static struct image *guard_readback(struct sink *s)
{
    struct guard *g = s->priv;
    g->inner->durable = s->durable;
    return g->inner->ops->readback_image
               ? g->inner->ops->readback_image(g->inner)
               : NULL;
}

static void guard_abort(struct sink *s)
{
    struct guard *g = s->priv;
    if (g->inner->ops->abort_job)
        g->inner->ops->abort_job(g->inner);
}

static void guard_free(struct sink *s)
{
    struct guard *g = s->priv;
    if (g) {
        sink_free(g->inner);
        for (size_t i = 0; i < g->npool; i++)
            free(g->pool[i]);
        free(g->pool);
        free(g->done);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
    }
    free(s);
}

static const struct sink_ops guard_ops = {
    .name = "guard",
    .write = guard_write,
    .zero = guard_zero,
    .finish = guard_finish,
    .digest = guard_digest,
    .abort_job = guard_abort,
    .free = guard_free,
    .readback_image = guard_readback,
};

int guard_check_empty(struct image *dst, uint64_t len, const char *name,
                      struct df_error *err)
{
    uint64_t at = 0;
    uint8_t *buf;
    if (posix_memalign((void **)&buf, 4096, GUARD_CHUNK) != 0)
        return df_io(err, name, ENOMEM, "cannot check contents");
    int r = scan_zero(dst, buf, 0, len, &at, err);
    free(buf);
    if (r > 0)
        return df_refuse(err, name, "refusing to write: holds data at "
                         "offset %llu (found by the dry run's full check); "
                         "give --overwrite to replace it",
                         (unsigned long long)at);
    return r;
}

struct sink *sink_guard_wrap(struct sink *inner, struct image *dst,
                             bool rollback, struct df_error *err)
{
    return sink_guard_wrap_from(inner, dst, rollback, 0, err);
}

struct sink *sink_guard_wrap_from(struct sink *inner, struct image *dst,
                                  bool rollback, uint64_t from,
                                  struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    struct guard *g = calloc(1, sizeof(*g));
    if (!s || !g) {
        free(s);
        free(g);
        df_io(err, inner->name, ENOMEM, "cannot allocate sink");
        sink_free(inner);
        return NULL;
    }
    g->inner = inner;
    g->dst = dst;
    g->rollback = rollback;
    g->from = from;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->ops = guard_ops;
    if (!inner->ops->digest)
        g->ops.digest = NULL;   /* the engine then does not verify */
    s->ops = &g->ops;
    s->priv = g;
    s->size = inner->size;
    s->durable = inner->durable;
    s->parallel_write = inner->parallel_write;
    snprintf(s->name, sizeof(s->name), "%s", inner->name);
    return s;
}
