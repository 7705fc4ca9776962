/*
 * qcow2_write.c: writing a new qcow2 v3 image from sequential writes
 * (`-O qcow2`, with -c zstd-compressed clusters).
 *
 * Spec: qemu docs/interop/qcow2.rst (summary: docs/formats.md sections 3.1 to
 * 3.3).  What we write: version 3 (compat 1.1), refcount_order 4 (16-bit
 * refcounts), header_length 112, compression_type 1 (zstd, incompatible
 * bit 3) when compressing, no backing file, no extensions but the end
 * marker.  The header's size is rounded up to a multiple of 512 bytes
 * (as qemu-img does: QEMU sees whole sectors only); this handle keeps
 * the exact size it was created with.
 *
 * Layout of the file (c = cluster size, R = c / 2 refcounts per block,
 * "window" w = host clusters [w*R, (w+1)*R), the range one refcount block
 * covers):
 *
 *   cluster 0            header + end-of-extensions marker
 *   clusters 1..         L1 table (whole disk, sized at create)
 *   then                 refcount table, sized at create for the largest
 *                        file these writes can produce
 *   then                 refcount blocks of the windows the metadata
 *                        above fills, and the current window's block
 *   then, append only    L2 tables and data clusters in write order; a
 *                        compressed cluster takes only its bytes in the
 *                        compressed area (invariant 5), sharing host
 *                        clusters with its neighbours; the first cluster
 *                        of every later window is that window's refcount
 *                        block
 *
 * Invariants (the writer relies on them; cited by number):
 *  1. write()/zero() come in ascending, non-overlapping order (sink.h
 *     contract 1, IMG_SEQUENTIAL_WRITE); anything else is refused.
 *  2. Whole clusters are only ever appended at w->next; nothing written
 *     is moved or freed, so a cluster's refcount is final once w->next
 *     has left its window.  Only the current window's refcounts, the current
 *     L2 table and one partial cluster are in memory (plus L1 and the
 *     refcount table, both bounded by QEMU's limits: 32 MiB and 8 MiB).
 *  3. An L2 table is written out when the writes move past its range and
 *     never changes after; L1, the refcount table and the current
 *     refcount block are written by flush().
 *  4. A cluster that is all zeros is never allocated: it reads as zeros
 *     with no parent.  zero() therefore has nothing to do.
 *  5. Compressed clusters are packed byte after byte into the
 *     "compressed area" [cnext, cend): whole clusters taken from w->next
 *     (uncounted at allocation; each compressed extent counts one
 *     reference on every host cluster it touches).  The area grows in
 *     place while it is the end of the file, else a new one starts, so
 *     plain clusters in between waste nothing.  It never spans two
 *     windows (moving to the next window retires it), so its counts are
 *     always in memory, and no host cluster is counted past 0xffff.
 *
 * Threads: the driver is IMG_THREAD_SAFE, so image.c does not serialise
 * it; every function here runs under the image's rw lock held exclusive
 * (qcow2.c's qcow2_drv_* slots), never beside another write or a read.
 *
 * State of the image: created -> (writes) -> flush() -> readable (the
 * reader state is loaded from the file) -> a write makes it unreadable
 * until the next flush().  A flush while a cluster is partly written
 * stores it uncompressed at a host cluster that later writes to it reuse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "image/qcow2_int.h"
#include "util/bytes.h"
#include "util/overflow.h"
#include "util/zero.h"

#define QCOW2_W_DEFAULT_BITS 16
#define QCOW2_W_ZSTD_LEVEL 3

struct qcow2_writer {
    uint64_t size;              /* virtual size */
    unsigned bits;
    uint64_t cs;                /* cluster size */
    uint64_t l2_entries;
    uint64_t rpb;               /* refcounts per block (R) */

    uint32_t l1_size;
    uint64_t l1_off;
    uint8_t *l1;                /* big endian, as on disk */
    uint64_t rt_off;
    uint32_t rt_clusters;
    uint8_t *rt;                /* refcount table, big endian */
    uint64_t rt_entries;

    uint64_t next;              /* append pointer (invariant 2) */
    uint64_t cnext;             /* compressed area: next free byte, */
    uint64_t cend;              /* and its end (0 = none) */
    uint64_t win;               /* current window */
    uint8_t *rb;                /* its refcounts, u16 big endian */

    uint64_t l2_idx;            /* L1 index of the current L2 table */
    uint64_t l2_off;            /* its host offset, 0 = not allocated */
    uint8_t *l2;

    uint8_t *pend;              /* a partly written cluster */
    uint64_t pend_ci;
    bool pend_valid;
    uint64_t pend_host;         /* stored raw by a flush, or 0 */

    uint64_t hw;                /* end of the last write (invariant 1) */
    bool compress;
    ZSTD_CCtx *cctx;
    uint8_t *zbuf;
    size_t zcap;
};

void qcow2_writer_free(struct qcow2_writer *w)
{
    if (!w)
        return;
    free(w->l1);
    free(w->rt);
    free(w->rb);
    free(w->l2);
    free(w->pend);
    free(w->zbuf);
    ZSTD_freeCCtx(w->cctx);
    free(w);
}

static int qcow2_w_pwrite(struct image *img, const void *buf, uint64_t len,
                          uint64_t off, struct df_error *err)
{
    return df_file_pwrite(&img->file, buf, (size_t)len, off, err);
}

/* Write the current window's refcount block to where the table says. */
static int qcow2_w_put_block(struct image *img, struct qcow2_writer *w,
                             struct df_error *err)
{
    uint64_t off = get_be64(w->rt + w->win * 8);
    return qcow2_w_pwrite(img, w->rb, w->cs, off, err);
}

/*
 * Leave the current window for the next (invariant 5): its first
 * cluster becomes its refcount block.
 */
static int qcow2_w_next_window(struct image *img, struct qcow2_writer *w,
                               struct df_error *err)
{
    if (qcow2_w_put_block(img, w, err) < 0)
        return -1;
    if (w->win + 1 >= w->rt_entries)
        return df_io(err, img->name, EFBIG,
                     "qcow2 writer: file outgrew its refcount table");
    w->win++;
    memset(w->rb, 0, w->cs);
    put_be16(w->rb, 1);
    put_be64(w->rt + w->win * 8, w->win * w->rpb * w->cs);
    w->next = (w->win * w->rpb + 1) * w->cs;
    w->cnext = w->cend = 0;     /* retire the compressed area */
    return 0;
}

/* Take n whole clusters at the end of the file; count one reference on
 * each unless the compressed area will count them (invariant 5). */
static int qcow2_w_alloc(struct image *img, struct qcow2_writer *w,
                         uint64_t n, bool count, uint64_t *out,
                         struct df_error *err)
{
    if (w->next + n * w->cs > (w->win + 1) * w->rpb * w->cs &&
        qcow2_w_next_window(img, w, err) < 0)
        return -1;
    uint64_t base = w->win * w->rpb;
    for (uint64_t c = w->next / w->cs; count && c < w->next / w->cs + n; c++)
        put_be16(w->rb + (c - base) * 2, 1);
    *out = w->next;
    w->next += n * w->cs;
    return 0;
}

/* Refcount of host cluster c (in the current window). */
static uint16_t qcow2_w_count(const struct qcow2_writer *w, uint64_t c)
{
    return get_be16(w->rb + (c - w->win * w->rpb) * 2);
}

/*
 * Take len bytes for a compressed cluster in the compressed area
 * (invariant 5), growing it at the end of the file or starting a new
 * one; counts one reference on every host cluster the bytes touch.
 */
static int qcow2_w_alloc_bytes(struct image *img, struct qcow2_writer *w,
                               uint64_t len, uint64_t *out,
                               struct df_error *err)
{
    uint64_t cs = w->cs;
    uint64_t start = w->cnext;
    bool ok = w->cend != 0;

    if (ok && start % cs && qcow2_w_count(w, start / cs) == 0xffff)
        ok = false;
    if (ok && start + len > w->cend) {
        uint64_t extra = div_round_up(start + len - w->cend, cs);
        uint64_t wend = (w->win + 1) * w->rpb * cs;
        uint64_t got;
        if (w->cend != w->next || w->cend + extra * cs > wend)
            ok = false;
        else if (qcow2_w_alloc(img, w, extra, false, &got, err) < 0)
            return -1;
        else
            w->cend += extra * cs;
    }
    if (!ok) {
        uint64_t k = div_round_up(len, cs);
        if (qcow2_w_alloc(img, w, k, false, &start, err) < 0)
            return -1;
        w->cend = start + k * cs;
    }
    uint64_t base = w->win * w->rpb;
    for (uint64_t c = start / cs; c <= (start + len - 1) / cs; c++)
        put_be16(w->rb + (c - base) * 2, (uint16_t)(qcow2_w_count(w, c) + 1));
    w->cnext = start + len;
    *out = start;
    return 0;
}

/* Make the L2 table for cluster ci the current one (invariant 3). */
static int qcow2_w_l2(struct image *img, struct qcow2_writer *w, uint64_t ci,
                      struct df_error *err)
{
    uint64_t l2i = ci / w->l2_entries;

    if (l2i != w->l2_idx) {
        if (w->l2_off && qcow2_w_pwrite(img, w->l2, w->cs, w->l2_off,
                                        err) < 0)
            return -1;
        memset(w->l2, 0, w->cs);
        w->l2_off = 0;
        w->l2_idx = l2i;
    }
    if (!w->l2_off) {
        if (qcow2_w_alloc(img, w, 1, true, &w->l2_off, err) < 0)
            return -1;
        put_be64(w->l1 + l2i * 8, w->l2_off | QCOW2_COPIED);
    }
    return 0;
}

/*
 * Store cluster ci.  `keep`: a flush stores a partly written cluster:
 * raw, remembering where, so later writes to it land in place.
 */
static int qcow2_w_commit(struct image *img, struct qcow2_writer *w,
                          uint64_t ci, const uint8_t *data, bool keep,
                          struct df_error *err)
{
    uint64_t host, entry;

    if (w->pend_host && ci == w->pend_ci)
        return qcow2_w_pwrite(img, data, w->cs, w->pend_host, err);
    if (zero_is_zero(data, (size_t)w->cs))
        return 0;                               /* invariant 4 */
    if (qcow2_w_l2(img, w, ci, err) < 0)
        return -1;
    size_t clen = 0;
    if (w->compress && !keep) {
        clen = ZSTD_compressCCtx(w->cctx, w->zbuf, w->zcap, data,
                                 (size_t)w->cs, QCOW2_W_ZSTD_LEVEL);
        if (ZSTD_isError(clen) || clen + 512 > w->cs)
            clen = 0;                           /* store it raw */
    }
    if (clen) {
        if (qcow2_w_alloc_bytes(img, w, clen, &host, err) < 0 ||
            qcow2_w_pwrite(img, w->zbuf, clen, host, err) < 0)
            return -1;
        uint64_t nsect = (host + clen - 1) / 512 - host / 512;
        entry = QCOW2_COMPRESSED | nsect << (62 - (w->bits - 8)) | host;
    } else {
        if (qcow2_w_alloc(img, w, 1, true, &host, err) < 0 ||
            qcow2_w_pwrite(img, data, w->cs, host, err) < 0)
            return -1;
        entry = host | QCOW2_COPIED;
        if (keep)
            w->pend_host = host;
    }
    put_be64(w->l2 + (ci % w->l2_entries) * 8, entry);
    return 0;
}

static int qcow2_w_commit_pending(struct image *img, struct qcow2_writer *w,
                                  struct df_error *err)
{
    if (!w->pend_valid)
        return 0;
    int r = qcow2_w_commit(img, w, w->pend_ci, w->pend, false, err);
    w->pend_valid = false;
    w->pend_host = 0;
    return r;
}

static int qcow2_w_order(struct image *img, struct qcow2_writer *w,
                         uint64_t off, uint64_t len, struct df_error *err)
{
    if (!w)
        return df_fail(err, DF_USAGE, 0, img->name, -1,
                       "qcow2 image not opened for writing");
    if (off < w->hw)
        return df_fail(err, DF_IO, EINVAL, img->name, (int64_t)off,
                       "qcow2 writer: write out of order (after %" PRIu64
                       ")", w->hw);
    w->hw = off + len;
    return 0;
}

int qcow2_write(struct image *img, const void *buf, size_t len, uint64_t off,
                struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_writer *w = q->w;
    const uint8_t *p = buf;

    if (qcow2_w_order(img, w, off, len, err) < 0)
        return -1;
    if (len)
        q->can_read = false;
    while (len) {
        uint64_t ci = off >> w->bits;
        uint64_t in = off & (w->cs - 1);
        size_t n = (size_t)min_u64(len, w->cs - in);

        if (w->pend_valid && w->pend_ci != ci &&
            qcow2_w_commit_pending(img, w, err) < 0)
            return -1;
        if (n == w->cs && !w->pend_valid) {
            if (qcow2_w_commit(img, w, ci, p, false, err) < 0)
                return -1;
        } else {
            if (!w->pend_valid) {
                memset(w->pend, 0, w->cs);
                w->pend_ci = ci;
                w->pend_valid = true;
            }
            memcpy(w->pend + in, p, n);
            if (in + n == w->cs && qcow2_w_commit_pending(img, w, err) < 0)
                return -1;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int qcow2_zero(struct image *img, uint64_t off, uint64_t len,
               struct df_error *err)
{
    struct qcow2 *q = img->priv;
    /* Invariant 4: never-written ranges already read as zeros, and the
     * partial cluster buffer is zero where nothing was written. */
    return qcow2_w_order(img, q->w, off, len, err);
}

static void qcow2_w_header(const struct qcow2_writer *w, uint8_t *h)
{
    memset(h, 0, QCOW2_V3_HEADER_LEN + 8);
    put_be32(h + QCOW2_OFF_MAGIC, QCOW2_MAGIC);
    put_be32(h + QCOW2_OFF_VERSION, 3);
    put_be32(h + QCOW2_OFF_CLUSTER_BITS, w->bits);
    put_be64(h + QCOW2_OFF_SIZE, div_round_up(w->size, 512) * 512);
    put_be32(h + QCOW2_OFF_L1_SIZE, w->l1_size);
    put_be64(h + QCOW2_OFF_L1_OFFSET, w->l1_off);
    put_be64(h + QCOW2_OFF_REFTABLE_OFFSET, w->rt_off);
    put_be32(h + QCOW2_OFF_REFTABLE_CLUSTERS, w->rt_clusters);
    put_be64(h + QCOW2_OFF_INCOMPAT,
             w->compress ? QCOW2_INCOMPAT_COMPRESSION : 0);
    put_be32(h + QCOW2_OFF_REFCOUNT_ORDER, 4);
    put_be32(h + QCOW2_OFF_HEADER_LENGTH, QCOW2_V3_HEADER_LEN);
    h[QCOW2_OFF_COMPRESSION_TYPE] =
        w->compress ? QCOW2_COMPRESS_ZSTD : QCOW2_COMPRESS_ZLIB;
    /* bytes 112..119: the end-of-extensions marker (type 0, length 0) */
}

int qcow2_flush(struct image *img, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_writer *w = q->w;
    uint8_t h[QCOW2_V3_HEADER_LEN + 8];

    if (!w)
        return 0;
    if (w->pend_valid &&
        qcow2_w_commit(img, w, w->pend_ci, w->pend, true, err) < 0)
        return -1;
    qcow2_w_header(w, h);
    if ((w->l2_off &&
         qcow2_w_pwrite(img, w->l2, w->cs, w->l2_off, err) < 0) ||
        qcow2_w_put_block(img, w, err) < 0 ||
        qcow2_w_pwrite(img, w->rt, (uint64_t)w->rt_clusters * w->cs,
                       w->rt_off, err) < 0 ||
        (w->l1_size && qcow2_w_pwrite(img, w->l1, (uint64_t)w->l1_size * 8,
                                      w->l1_off, err) < 0) ||
        qcow2_w_pwrite(img, h, sizeof(h), 0, err) < 0)
        return -1;
    /* image_flush() fsyncs when durability is asked for. */
    if (qcow2_load(img, err) < 0)
        return -1;
    img->size = w->size;        /* the header rounds up to a sector */
    return 0;
}

/* Refcount table clusters for the largest file `w` can produce. */
static uint64_t qcow2_w_rt_clusters(const struct qcow2_writer *w)
{
    uint64_t l1c = div_round_up((uint64_t)w->l1_size * 8, w->cs);
    uint64_t data = div_round_up(w->size, w->cs);
    uint64_t fixed = 1 + l1c + w->l1_size + data;
    uint64_t rt = 1;

    for (;;) {
        uint64_t total = fixed + rt;
        /* each window: its refcount block and at most one cluster left
         * unused before it (invariant 5); one more for the last */
        uint64_t windows = div_round_up(total, w->rpb - 2) + 1;
        total += 2 * windows;
        uint64_t need = div_round_up(div_round_up(total, w->rpb) * 8, w->cs);
        if (need <= rt)
            return rt;
        rt = need;
    }
}

/* Lay out cluster 0, L1, the refcount table and the first blocks. */
static int qcow2_w_layout(struct image *img, struct qcow2_writer *w,
                          struct df_error *err)
{
    uint64_t l1c = div_round_up((uint64_t)w->l1_size * 8, w->cs);
    uint64_t meta = 1 + l1c + w->rt_clusters;      /* clusters 0..meta-1 */
    uint64_t first_win = meta / w->rpb;
    uint64_t off;

    w->l1_off = l1c ? w->cs : 0;       /* an empty disk has no L1 */
    w->rt_off = (1 + l1c) * w->cs;
    w->win = first_win;
    memset(w->rb, 0, w->cs);
    for (uint64_t c = first_win * w->rpb; c < meta; c++)
        put_be16(w->rb + (c - first_win * w->rpb) * 2, 1);
    /* This window's own block: its first cluster when that is free. */
    put_be64(w->rt + w->win * 8, meta * w->cs);
    put_be16(w->rb + (meta - first_win * w->rpb) * 2, 1);
    w->next = (meta + 1) * w->cs;
    /* Windows the metadata fills entirely: all counts 1. */
    for (uint64_t win = 0; win < first_win; win++) {
        uint8_t *ones = malloc(w->cs);
        if (!ones)
            return df_io(err, img->name, ENOMEM, "cannot allocate");
        for (uint64_t i = 0; i < w->rpb; i++)
            put_be16(ones + i * 2, 1);
        int r = qcow2_w_alloc(img, w, 1, true, &off, err);
        if (r == 0)
            r = qcow2_w_pwrite(img, ones, w->cs, off, err);
        free(ones);
        if (r < 0)
            return -1;
        put_be64(w->rt + win * 8, off);
    }
    return 0;
}

int qcow2_create(struct image *img, uint64_t size,
                 const struct image_create_opts *copts, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_writer *w = NULL;
    unsigned bits = copts->cluster_bits ? copts->cluster_bits
                                        : QCOW2_W_DEFAULT_BITS;
    uint8_t h[QCOW2_V3_HEADER_LEN + 8];

    if (bits < 9 || bits > 21)
        return df_usage(err, "qcow2 cluster size 2^%u outside 512 bytes .. "
                        "2 MiB", bits);
    w = calloc(1, sizeof(*w));
    if (!w)
        return df_io(err, img->name, ENOMEM, "cannot allocate");
    q->w = w;                   /* freed by close */
    w->size = size;
    w->bits = bits;
    w->cs = 1ull << bits;
    w->l2_entries = w->cs / 8;
    w->rpb = w->cs / 2;
    w->l2_idx = UINT64_MAX;
    w->compress = copts->compress;

    uint64_t l1 = div_round_up(div_round_up(size, 512) * 512,
                               w->l2_entries * w->cs);
    if (l1 * 8 > QCOW2_MAX_L1_BYTES)
        return df_usage(err, "%" PRIu64 " bytes is too large for a qcow2 "
                        "image with %" PRIu64 "-byte clusters", size, w->cs);
    w->l1_size = (uint32_t)l1;
    uint64_t rt = qcow2_w_rt_clusters(w);
    if (rt * w->cs > QCOW2_MAX_REFTABLE_BYTES)
        return df_usage(err, "%" PRIu64 " bytes is too large for a qcow2 "
                        "image with %" PRIu64 "-byte clusters", size, w->cs);
    w->rt_clusters = (uint32_t)rt;
    w->rt_entries = rt * w->cs / 8;

    w->l1 = calloc(1, max_u64(8, l1 * 8));
    w->rt = calloc(1, rt * w->cs);
    w->rb = malloc(w->cs);
    w->l2 = calloc(1, w->cs);
    w->pend = malloc(w->cs);
    if (w->compress) {
        w->zcap = ZSTD_compressBound((size_t)w->cs);
        w->zbuf = malloc(w->zcap);
        w->cctx = ZSTD_createCCtx();
    }
    if (!w->l1 || !w->rt || !w->rb || !w->l2 || !w->pend ||
        (w->compress && (!w->zbuf || !w->cctx)))
        return df_io(err, img->name, ENOMEM, "cannot allocate");
    if (qcow2_w_layout(img, w, err) < 0)
        return -1;
    qcow2_w_header(w, h);
    return qcow2_w_pwrite(img, h, sizeof(h), 0, err);
}

int qcow2_set_size(struct image *img, uint64_t size, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_writer *w = q->w;

    if (!w || size > w->size)
        return df_fail(err, DF_IO, EFBIG, img->name, -1, "%" PRIu64
                       " bytes: more than this qcow2 image was made for "
                       "(%" PRIu64 ")", size, w ? w->size : 0);
    if (size < w->hw)
        return df_fail(err, DF_IO, EINVAL, img->name, -1, "qcow2 writer: "
                       "size %" PRIu64 " below what was written", size);
    /* L1 stays as allocated: qemu takes an L1 larger than the size
     * needs (only a smaller one is refused). */
    w->size = size;
    return 0;
}
