/*
 * verify.c: comparing two disks (`diskferry verify A B`).
 *
 * The pipeline reads A with its workers (hole-aware, hashing as it
 * goes) and delivers A's data runs and zero runs, in order, to a
 * comparing sink that reads the same range of B and records where they
 * differ.  B's holes are not read: a zero run of A against a hole of B
 * is equal without I/O.
 *
 * NEEDSWORK: B is read by the writer thread alone; a second pipeline
 * over B in lockstep would read both at full speed.  For remote B the
 * comparison descends a hash tree instead (sync's compare mode).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/job.h"
#include "engine/pipeline.h"
#include "util/overflow.h"
#include "util/zero.h"

#define CMP_BUF (1u << 20)

struct cmp_sink {
    struct image *b;
    struct extent_list *differ;
    uint8_t *buf;
    uint64_t ndiff_bytes;
};

static int cmp_note(struct cmp_sink *c, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    c->ndiff_bytes += len;
    struct extent_list *l = c->differ;
    if (l->n && l->v[l->n - 1].off + l->v[l->n - 1].len == off) {
        l->v[l->n - 1].len += len;
        return 0;
    }
    return extent_list_append(l, off, len, EXT_DATA, c->b->name, err) < 0
               ? -1 : 0;
}

/* Compare a's bytes (or zeros when abuf is NULL) with b's, 4 KiB at a
 * time so the reported ranges are tight. */
static int cmp_range(struct cmp_sink *c, uint64_t off, const uint8_t *abuf,
                     uint64_t len, struct df_error *err)
{
    while (len) {
        size_t n = (size_t)min_u64(len, CMP_BUF);
        if (image_read(c->b, c->buf, n, off, err) < 0)
            return -1;
        for (size_t i = 0; i < n; i += 4096) {
            size_t m = n - i < 4096 ? n - i : 4096;
            bool same = abuf ? !memcmp(abuf + i, c->buf + i, m)
                             : zero_is_zero(c->buf + i, m);
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
    struct sink s = { .ops = &cmp_ops, .priv = &c, .size = b->size };
    int ret = -1;

    snprintf(s.name, sizeof(s.name), "%s", b->name);
    c.buf = malloc(CMP_BUF);
    if (!c.buf) {
        df_io(err, b->name, ENOMEM, "cannot allocate compare buffer");
        goto out;
    }
    if (engine_compare_run(a, &s, opts, st, err) < 0)
        goto out;
    if (a->size != b->size) {
        uint64_t lo = min_u64(a->size, b->size);
        uint64_t hi = max_u64(a->size, b->size);
        if (cmp_note(&c, lo, hi - lo, err) < 0)
            goto out;
    }
    if (!c.ndiff_bytes)
        st->dst_digest = st->src_digest;
    ret = c.ndiff_bytes ? 1 : 0;
out:
    free(c.buf);
    return ret;
}
