/*
 * verify.c: comparing two disks (`diskferry verify A B`).
 *
 * The pipeline reads A with its workers (hole-aware, hashing as it
 * goes) and delivers A's data runs and zero runs to a comparing sink
 * that reads the same range of B and records where they differ.  Data
 * runs arrive concurrently from the workers (parallel_write), so B is
 * read by as many threads as A; zero runs arrive in order, and B's
 * holes under them are not read at all.  Differing ranges are gathered
 * unordered and sorted once at the end.
 *
 * For a remote B the comparison will descend a hash tree instead
 * (sync's compare mode): only hashes of what differs cross the wire.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/apply.h"
#include "engine/job.h"
#include "engine/pipeline.h"
#include "util/progress.h"
#include "util/overflow.h"
#include "util/zero.h"

#define CMP_CHUNK (64u * 1024)   /* compared per read of B */
#define CMP_GRAIN 4096u          /* granularity of reported ranges */

struct cmp_sink {
    struct image *b;
    struct extent_list *differ;
    pthread_mutex_t lock;
    struct extent *found;       /* unordered, under lock */
    size_t nfound, afound;
    bool overflow;              /* more ranges than differ->cap */
    uint64_t ndiff_bytes;
};

static int cmp_note(struct cmp_sink *c, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    int ret = 0;
    pthread_mutex_lock(&c->lock);
    c->ndiff_bytes += len;
    struct extent *last = c->nfound ? &c->found[c->nfound - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->len += len;
    } else if (c->nfound >= c->differ->cap) {
        c->overflow = true;
    } else {
        if (c->nfound == c->afound) {
            size_t na = c->afound ? 2 * c->afound : 64;
            struct extent *nv = realloc(c->found, na * sizeof(*nv));
            if (!nv) {
                ret = df_io(err, c->b->name, ENOMEM, "out of memory");
                goto out;
            }
            c->found = nv;
            c->afound = na;
        }
        c->found[c->nfound++] = (struct extent){ off, len, EXT_DATA };
    }
out:
    pthread_mutex_unlock(&c->lock);
    return ret;
}

/* Compare a's bytes (or zeros when abuf is NULL) with b's, CMP_GRAIN at
 * a time so the reported ranges are tight. */
static int cmp_range(struct cmp_sink *c, uint64_t off, const uint8_t *abuf,
                     uint64_t len, struct df_error *err)
{
    uint8_t bbuf[CMP_CHUNK];
    while (len) {
        size_t n = (size_t)min_u64(len, CMP_CHUNK);
        if (image_read(c->b, bbuf, n, off, err) < 0)
            return -1;
        for (size_t i = 0; i < n; i += CMP_GRAIN) {
            size_t m = n - i < CMP_GRAIN ? n - i : CMP_GRAIN;
            bool same = abuf ? !memcmp(abuf + i, bbuf + i, m)
                             : zero_is_zero(bbuf + i, m);
            if (!same && cmp_note(c, off + i, m, err) < 0)
                return -1;
        }
        off += n;
        len -= n;
        if (abuf)
            abuf += n;
    }
    return 0;
}

static int cmp_extent_order(const void *x, const void *y)
{
    const struct extent *a = x, *b = y;
    return a->off < b->off ? -1 : a->off > b->off;
}

/* Sort what the threads found into the caller's list, merging. */
static int cmp_collect(struct cmp_sink *c, struct df_error *err)
{
    if (c->nfound)          /* qsort(NULL, 0, ...) is undefined */
        qsort(c->found, c->nfound, sizeof(*c->found), cmp_extent_order);
    for (size_t i = 0; i < c->nfound; i++) {
        struct extent_list *l = c->differ;
        struct extent e = c->found[i];
        if (l->n && l->v[l->n - 1].off + l->v[l->n - 1].len == e.off) {
            l->v[l->n - 1].len += e.len;
            continue;
        }
        if (extent_list_append(l, e.off, e.len, EXT_DATA, c->b->name,
                               err) < 0)
            return -1;
    }
    return 0;
}

static int cmp_write(struct sink *s, uint64_t off, const void *buf,
                     size_t len, struct df_error *err)
{
    struct cmp_sink *c = s->priv;
    uint64_t end = min_u64(off + len, c->b->size);
    if (off >= end)
        return 0;
    return cmp_range(c, off, buf, end - off, err);
}

static int cmp_zero(struct sink *s, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    struct cmp_sink *c = s->priv;
    struct extent_list l;
    uint64_t end = min_u64(off + len, c->b->size);
    int ret = -1;

    extent_list_init(&l, 4096);
    while (off < end) {
        extent_list_clear(&l);
        if (image_map(c->b, off, end - off, &l, err) < 0)
            goto out;
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].state == EXT_DATA &&
                cmp_range(c, l.v[i].off, NULL, l.v[i].len, err) < 0)
                goto out;
        off = extent_list_end(&l, end);
    }
    ret = 0;
out:
    extent_list_release(&l);
    return ret;
}

static int cmp_finish(struct sink *s, struct df_error *err)
{
    (void)s;
    (void)err;
    return 0;
}

static void cmp_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops cmp_ops = {
    .name = "compare",
    .write = cmp_write,
    .zero = cmp_zero,
    .finish = cmp_finish,
    .free = cmp_free,
};

int engine_compare(struct image *a, struct image *b,
                   const struct job_opts *opts, struct extent_list *differ,
                   struct job_stats *st, struct df_error *err)
{
    struct cmp_sink c = { .b = b, .differ = differ };
    struct sink s = { .ops = &cmp_ops, .priv = &c, .size = b->size,
                      .parallel_write = true };
    int ret = -1;

    pthread_mutex_init(&c.lock, NULL);
    snprintf(s.name, sizeof(s.name), "%s", b->name);
    if (engine_compare_run(a, &s, opts, st, err) < 0)
        goto out;
    if (a->size != b->size) {
        uint64_t lo = min_u64(a->size, b->size);
        uint64_t hi = max_u64(a->size, b->size);
        if (cmp_note(&c, lo, hi - lo, err) < 0)
            goto out;
    }
    if (cmp_collect(&c, err) < 0)
        goto out;
    if (!c.ndiff_bytes)
        st->dst_digest = st->src_digest;
    ret = c.ndiff_bytes ? 1 : 0;
out:
    free(c.found);
    pthread_mutex_destroy(&c.lock);
    return ret;
}

/* The read-back at the end of a copy (apply.h): one for the local
 * pipeline (engine_copy) and for a pull from a remote host. */
int engine_verify_sink(struct sink *dst, const struct job_opts *opts,
                       struct job_stats *st, struct df_error *err)
{
    if (!opts->verify || !dst->ops->digest)
        return 0;
    double tv = time_now();
    dst->known = opts->plan;
    dst->fs = opts->fs_hint ? NULL : opts->fs;
    if (dst->ops->digest(dst, st->disk_size, opts->digest, opts->threads,
                         &st->dst_digest, err) < 0)
        return -1;
    st->verify_seconds = time_now() - tv;
    return engine_verify_compare(dst, st, err);
}

int engine_verify_compare(const struct sink *dst, struct job_stats *st,
                          struct df_error *err)
{
    if (st->dst_digest.len != st->src_digest.len ||
        memcmp(st->dst_digest.bytes, st->src_digest.bytes,
               st->src_digest.len))
        return df_fail(err, DF_VERIFY, 0, dst->name, -1, "verification "
                       "failed: destination digest differs from the "
                       "source's");
    st->verified = true;
    return 0;
}
