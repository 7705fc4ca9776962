/*
 * pipeline.c: the threaded copy pipeline (picture in job.h).
 *
 * Invariants:
 *  1. Items are numbered in disk order; item seq lives in slot
 *     seq % nslots, and the cursor issues seq only when
 *     seq < write_seq + nslots, so the slot is free when issued.
 *  2. Items start and end on DIGEST_LEAF_SIZE boundaries (or the end of
 *     the disk): a leaf is never split between two items, so the writer
 *     can feed the digest tree leaf by leaf.
 *  3. A SKIP item covers only whole leaves that the source map says are
 *     zero or holes: nothing is read for it.  A KEEP item (only with a
 *     plan, opts.plan) covers only whole leaves every byte of which the
 *     plan says is unchanged or free: nothing is delivered for it, and
 *     of its leaves only those whose hash no change source knows are
 *     read, to hash them.  A KEEP item of EXT_UNCHANGED_ZERO (unchanged
 *     where the map says zero) spans its whole range, as a SKIP does,
 *     and costs nothing but its zero leaves in the digest.  A leaf
 *     partly kept is read and delivered whole (a DATA item), like a leaf
 *     partly zero.  A FREE item (--fs-aware, opts.fs) covers only whole
 *     leaves free in a trusted filesystem, changed or not: nothing is
 *     read, the digest takes zero leaves, and the sink zeroes them but
 *     those a change source knows to be zero on the destination already.
 *     A leaf partly free is what its other part is.
 *  4. Only the writer (the thread that called engine_*) touches the
 *     digest tree and calls the sink's zero(), in item order (sink.h
 *     contract 1); write() too, unless the sink takes parallel writes:
 *     then the worker that read a block writes its data runs itself
 *     (slot->written) and the writer only accounts for them.
 *  5. The first error stops everything: workers stop taking items, the
 *     writer stops delivering, the error is returned once.
 *  6. A source on a regular file whose item lies in one stretch of that
 *     file as it reads (image_host_run: a raw file's bytes; a qcow2
 *     item of data clusters at consecutive host offsets, a VHD or VHDX
 *     one of payload at consecutive file offsets) is read without a
 *     copy into the slot's buffer when nothing but the worker needs the
 *     bytes: a digest only (no sink: the read-back of a destination, a
 *     sync's hashing), or a sink that takes data runs from any thread
 *     and offers copy_from.  The worker scans and hashes a view of that
 *     stretch's pages (util/fmap.h; slot->foff is where it starts; where
 *     one cannot be made, the file shrank, or the item is not one
 *     stretch, the item is read as before, which then says what is
 *     wrong); the writer never sees a worker's view.  --salvage keeps
 *     the buffer (its pieces are read one by one).
 *  7. With copy_from, the writer hands each data run of a viewed item
 *     (slot->to_copy) to it, in order, while the workers scan ahead: the
 *     bytes are the source file's at the item's stretch (slot->foff),
 *     which the kernel reads again (or shares).  Once copy_from answers "not here"
 *     (no_copy), the writer writes the runs from a view of its own
 *     (wview), still in order.  Writes into one file serialise on its
 *     inode lock: a second writer only spins on it, on a core a worker
 *     could hash with, and two writers from views on ext4 were seen to
 *     take ten times the system time of one.  By default there is one
 *     worker fewer than cores then: the writer is busy all the while.
 *
 * Test hook (built only with meson -Dtesting=true):
 * DF_TEST_COPY_TAMPER_AT=OFFSET changes the source's byte at OFFSET
 * after it was hashed and before copy_from copies the run holding it:
 * the source changing under a copy the kernel does, which the read-back
 * must catch (tests/e2e/test_copy_direct.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/apply.h"
#include "engine/job.h"
#include "engine/pipeline.h"
#include "engine/plan.h"
#include "track/htree.h"
#include "util/fmap.h"
#include "util/interrupt.h"
#include "util/overflow.h"
#include "util/progress.h"
#include "util/zero.h"

#define LEAF DIGEST_LEAF_SIZE
/* An unchanged item whose every leaf hash a change source knows spans
 * up to this much (nothing is read for it: a larger item is fewer trips
 * through the ring for a sync that changed little). */
#define KEEP_MAX (64ull << 20)
/* Map the source this much at a time (bounded plan memory). */
#define PLAN_WINDOW (64ull << 30)
#define PLAN_MAX_EXTENTS 65536

enum item_kind { ITEM_DATA, ITEM_SKIP, ITEM_KEEP, ITEM_FREE, ITEM_END };
enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

struct slot {
    enum slot_state state;
    enum item_kind kind;
    uint64_t seq;
    uint64_t off, len;
    uint8_t *buf;               /* unit bytes, 4 KiB aligned */
    /* A DATA item's bytes: buf, or (viewed) the worker's view of the
     * source's pages (invariant 6), valid until the slot is done. */
    const uint8_t *data;
    bool viewed;
    uint64_t foff;              /* viewed: the file offset of off's byte */
    uint8_t *is_zero;           /* one flag per leaf */
    uint8_t *hashes;            /* one hash per leaf */
    uint8_t *known;             /* KEEP: the leaf's hash came from a
                                 * change source (not read); FREE: the
                                 * destination holds zeros there */
    uint8_t *bad;               /* --salvage: one flag per SALVAGE_PIECE,
                                 * unreadable (read as zeros) */
    bool has_bad;
    enum extent_state kept;     /* KEEP: EXT_UNCHANGED(_ZERO) */
    bool failed;
    bool written;               /* data runs already written by the worker */
    bool to_copy;               /* invariant 7: the writer copy_from()s */
    struct df_error err;
};

struct pipeline {
    struct image *src;          /* or: */
    struct df_file *stream;
    const struct plan_inputs *inputs;   /* NULL: copy everything */
    struct plan_inputs fs_inputs;       /* inputs and opts.fs's map */
    struct used_map **fs_used;
    struct used_map *hint;      /* opts.fs_hint: the map counted against */
    struct extent_list hint_q;
    struct sink *sink;          /* NULL: digest only */
    /* Invariant 6: DATA items are read through views of the source's
     * file; with_copy: and their data runs go to sink->copy_from
     * (invariant 7) until it says no_copy (atomic). */
    bool map_src, with_copy;
    bool no_copy;               /* writer: copy_from said "not here" */
    struct fmap wview;          /* writer: its view of the source */
    const struct job_opts *o;
    struct job_stats *st;
    size_t hlen;
    uint64_t unit;
    unsigned nslots;
    struct slot *slots;

    pthread_mutex_t lock;
    pthread_cond_t cond_free;   /* a slot was freed (workers wait) */
    pthread_cond_t cond_done;   /* a slot was filled (writer waits) */

    /* Cursor (under lock). */
    uint64_t size;              /* disk size; streams: grows */
    uint64_t pos;
    uint64_t next_seq;
    bool eof;
    struct extent_list plan;    /* leaf-aligned DATA regions; with
                                 * inputs, every leaf of the window:
                                 * DATA, ZERO (skip), UNCHANGED or FREE
                                 * (keep) */
    size_t plan_i;
    uint64_t plan_end;          /* the plan describes [.., plan_end) */

    /* Writer. */
    uint64_t write_seq;
    bool stop;
    struct df_error err;        /* first error (invariant 5) */
    struct digest_tree tree;
    uint64_t leaf_i;            /* leaves fed to the tree */
    struct progress *progress;
    uint64_t bytes_read;        /* atomic: workers add */
    uint64_t bytes_read_for_digest; /* atomic: workers add */
    uint64_t bytes_viewed;      /* atomic: of bytes_read, through views */
};

void job_opts_init(struct job_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->digest = DIGEST_XXH128;
    o->verify = true;
}

static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* Fail the pipeline (under lock). */
static void pipe_fail(struct pipeline *p, const struct df_error *e)
{
    if (!p->stop) {
        df_error_copy(&p->err, e);
        p->stop = true;
    }
    pthread_cond_broadcast(&p->cond_free);
    pthread_cond_broadcast(&p->cond_done);
}

/* What a leaf of the plan holds, as bits. */
#define LEAF_DATA 1u
#define LEAF_ZERO 2u
#define LEAF_UNCHANGED 4u
#define LEAF_FREE 8u
#define LEAF_KZERO 16u          /* unchanged, known zero */

static unsigned leaf_bit(enum extent_state st)
{
    switch (st) {
    case EXT_ZERO:
    case EXT_HOLE:
        return LEAF_ZERO;
    case EXT_UNCHANGED:
        return LEAF_UNCHANGED;
    case EXT_FREE:
        return LEAF_FREE;
    case EXT_UNCHANGED_ZERO:
        return LEAF_KZERO;
    default:
        return LEAF_DATA;       /* and anything unexpected: read it */
    }
}

/* What the pipeline does with a leaf holding `bits` (invariant 3): keep
 * it only when all of it is kept, skip it only when all of it is zero,
 * free only when no part of it is data or kept data. */
static enum extent_state leaf_state(unsigned bits)
{
    if (bits & LEAF_DATA)
        return EXT_DATA;
    if (bits & LEAF_UNCHANGED)  /* part zero, part kept: deliver it whole */
        return bits & LEAF_ZERO ? EXT_DATA : EXT_UNCHANGED;
    if (bits & LEAF_FREE)       /* the rest zero: zeroing it is harmless */
        return EXT_FREE;
    if (bits == LEAF_KZERO)
        return EXT_UNCHANGED_ZERO;
    return EXT_ZERO;            /* zeroing a kept zero part is harmless */
}

/* Append [off, off+len) of the leaf plan; 1 when the list is full. */
static int leaves_append(struct pipeline *p, uint64_t off, uint64_t len,
                         enum extent_state st, struct df_error *err)
{
    return extent_list_append(&p->plan, off, len, st, p->src->name, err);
}

/*
 * With a plan: lay the change sources and used maps over the map of
 * [pos, mapped) (plan_window) and turn the answer into a list of whole
 * leaves, each DATA, ZERO, UNCHANGED or FREE.  Sets plan_end.
 */
static int plan_leaves(struct pipeline *p, const struct extent_list *raw,
                       uint64_t mapped, struct df_error *err)
{
    struct extent_list pl;
    int ret = -1;

    extent_list_init(&pl, PLAN_MAX_EXTENTS);
    if (plan_window(raw, p->inputs, p->pos, mapped - p->pos, &pl, err) < 0)
        goto out;
    uint64_t wend = extent_list_end(&pl, p->pos);
    if (wend < p->size)
        wend &= ~(uint64_t)(LEAF - 1);
    if (wend <= p->pos) {
        /* Not one whole leaf described: read it, which is always safe. */
        wend = min_u64(p->size, p->pos + LEAF);
        if (leaves_append(p, p->pos, wend - p->pos, EXT_DATA, err) < 0)
            goto out;
        p->plan_end = wend;
        ret = 0;
        goto out;
    }
    unsigned bits = 0;          /* of the leaf being gathered */
    for (size_t i = 0; i < pl.n && pl.v[i].off < wend; i++) {
        uint64_t a = pl.v[i].off;
        uint64_t b = min_u64(pl.v[i].off + pl.v[i].len, wend);
        unsigned bit = leaf_bit(pl.v[i].state);
        while (a < b) {
            uint64_t leaf = a & ~(uint64_t)(LEAF - 1);
            uint64_t lend = min_u64(leaf + LEAF, p->size);
            uint64_t stop = b;
            enum extent_state st;
            if (a == leaf && b >= lend) {
                /* Whole leaves of one state. */
                if (b < p->size)
                    stop = b & ~(uint64_t)(LEAF - 1);
                st = leaf_state(bit);
            } else {
                bits |= bit;
                stop = min_u64(b, lend);
                if (stop < lend) {
                    a = stop;
                    continue;
                }
                a = leaf;
                st = leaf_state(bits);
                bits = 0;
            }
            int rc = leaves_append(p, a, stop - a, st, err);
            if (rc < 0)
                goto out;
            if (rc == 1) {      /* full: plan up to here */
                wend = a;
                break;
            }
            a = stop;
        }
        if (a < b)
            break;
    }
    p->plan_end = wend;
    ret = 0;
out:
    extent_list_release(&pl);
    return ret;
}

/* Map the next window of the source into leaf-aligned data regions. */
static int plan_refill(struct pipeline *p, struct df_error *err)
{
    struct extent_list raw;
    uint64_t wend = min_u64(p->size, p->pos + PLAN_WINDOW);
    uint64_t upto;
    int ret = -1;

    /* a read-back behind the writes: only what is final (job.h) */
    if (p->o->gate) {
        if (p->o->gate(p->o->gate_ctx, p->pos, &upto, err) < 0)
            return -1;
        wend = min_u64(wend, upto);
    }
    extent_list_init(&raw, PLAN_MAX_EXTENTS);
    extent_list_clear(&p->plan);
    p->plan_i = 0;
    if (image_map(p->src, p->pos, wend - p->pos, &raw, err) < 0)
        goto out;
    uint64_t mapped = extent_list_end(&raw, p->pos);
    if (p->inputs) {
        ret = plan_leaves(p, &raw, min_u64(mapped, wend), err);
        goto out;
    }
    if (mapped < wend) {
        /* The list filled up: stop at a leaf boundary. */
        wend = mapped & ~(uint64_t)(LEAF - 1);
        if (wend <= p->pos)
            wend = min_u64(p->size, p->pos + LEAF);
    }
    for (size_t i = 0; i < raw.n; i++) {
        struct extent e = raw.v[i];
        if (e.state != EXT_DATA || e.off >= wend)
            continue;
        uint64_t a = e.off & ~(uint64_t)(LEAF - 1);
        uint64_t b = min_u64(e.off + e.len, wend);
        b = min_u64(div_round_up(b, LEAF) * LEAF, p->size);
        if (a < p->pos)
            a = p->pos;
        struct extent *last = p->plan.n ? &p->plan.v[p->plan.n - 1] : NULL;
        if (last && a <= last->off + last->len) {
            if (b > last->off + last->len)
                last->len = b - last->off;
            continue;
        }
        if (extent_list_append(&p->plan, a, b - a, EXT_DATA, p->src->name,
                               err) != 0)
            goto out;
    }
    p->plan_end = wend;
    ret = 0;
out:
    extent_list_release(&raw);
    return ret;
}

/* The hash of the leaf at off that a change source knows, into out:
 * 1, 0 (none knows it), -1 with err.  Under lock, leaves ascending
 * (track.h leaf_hash). */
static int leaf_known(struct pipeline *p, uint64_t off, uint8_t *out,
                      struct df_error *err)
{
    for (size_t c = 0; c < p->inputs->nchanges; c++) {
        struct change_source *cs = p->inputs->changes[c];
        if (!cs->leaf_hash)
            continue;
        int r = cs->leaf_hash(cs, p->o->digest, off, out, err);
        if (r != 0)
            return r;
    }
    return 0;
}

/*
 * The leaves of a FREE item the destination holds as zeros already: a
 * change source knows their hash, and it is a zero leaf's (under lock,
 * as keep_hashes).  Those are not zeroed again.
 */
static int free_known(struct pipeline *p, struct slot *s,
                      struct df_error *err)
{
    uint64_t nleaves = div_round_up(s->len, LEAF);
    const uint8_t *z0 = digest_zero_node(p->o->digest, 0);
    uint8_t h[DIGEST_MAX_LEN];
    memset(s->known, 0, (size_t)nleaves);
    for (uint64_t i = 0; i < nleaves; i++) {
        int r = leaf_known(p, s->off + i * LEAF, h, err);
        if (r < 0)
            return -1;
        s->known[i] = r == 1 && !memcmp(h, z0, p->hlen);
    }
    return 0;
}

/*
 * The hashes of a KEEP item's leaves that a change source knows (under
 * lock, so that leaf_hash is called in ascending order, one at a time).
 */
static int keep_hashes(struct pipeline *p, struct slot *s,
                       struct df_error *err)
{
    uint64_t nleaves = div_round_up(s->len, LEAF);
    memset(s->known, 0, (size_t)nleaves);
    /* An item holds at most a unit of leaves to read (process_keep
     * reads them into the slot's buffer): it ends after the one that
     * makes a unit, so that every leaf asked is the item's (leaf_hash
     * is asked each leaf once, in order). */
    uint64_t unit_leaves = div_round_up(p->unit, LEAF), unknown = 0;
    for (uint64_t i = 0; i < nleaves; i++) {
        if (i && !s->known[i - 1] && ++unknown == unit_leaves) {
            s->len = i * LEAF;
            break;
        }
        int r = leaf_known(p, s->off + i * LEAF, s->hashes + i * p->hlen,
                           err);
        if (r < 0)
            return -1;
        s->known[i] = r == 1;
    }
    return 0;
}

/* Next item of a planned copy (under lock): the leaf plan says. */
static int cursor_planned(struct pipeline *p, struct slot *s,
                          struct df_error *err)
{
    while (p->plan_i < p->plan.n &&
           p->plan.v[p->plan_i].off + p->plan.v[p->plan_i].len <= p->pos)
        p->plan_i++;
    struct extent *r = p->plan_i < p->plan.n ? &p->plan.v[p->plan_i] : NULL;
    enum extent_state st = r && r->off <= p->pos ? r->state : EXT_DATA;
    uint64_t end = r ? (r->off <= p->pos ? r->off + r->len : r->off)
                     : p->plan_end;
    s->off = p->pos;
    s->len = min_u64(p->unit, end - p->pos);
    switch (st) {
    case EXT_ZERO:
        s->kind = ITEM_SKIP;
        s->len = end - p->pos;
        break;
    case EXT_UNCHANGED_ZERO:
        /* All of it at once, as a SKIP: nothing to read or hash. */
        s->kind = ITEM_KEEP;
        s->kept = st;
        s->len = end - p->pos;
        break;
    case EXT_UNCHANGED:
        /* As far as KEEP_MAX while every leaf's hash is known; a unit
         * (its leaves read to hash them) when the first one is not. */
        s->kind = ITEM_KEEP;
        s->kept = st;
        s->len = min_u64(max_u64(p->unit, KEEP_MAX), end - p->pos);
        if (keep_hashes(p, s, err) < 0)
            return -1;
        break;
    case EXT_FREE:
        /* All of it, as a SKIP; KEEP_MAX at a time when a change source
         * may know the destination is zero there already. */
        s->kind = ITEM_FREE;
        s->len = end - p->pos;
        if (p->inputs->nchanges) {
            s->len = min_u64(s->len, max_u64(p->unit, KEEP_MAX));
            if (free_known(p, s, err) < 0)
                return -1;
        }
        break;
    default:
        s->kind = ITEM_DATA;
        break;
    }
    p->pos += s->len;
    return 0;
}

/* Next item from the cursor (under lock). */
static int cursor_next(struct pipeline *p, struct slot *s,
                       struct df_error *err)
{
    if (p->stream) {
        if (p->eof) {
            s->kind = ITEM_END;
            return 0;
        }
        s->kind = ITEM_DATA;
        s->off = p->pos;
        s->len = p->unit;
        return 0;
    }
    if (p->pos >= p->size) {
        s->kind = ITEM_END;
        return 0;
    }
    if (p->pos >= p->plan_end && plan_refill(p, err) < 0)
        return -1;
    if (p->inputs)
        return cursor_planned(p, s, err);
    while (p->plan_i < p->plan.n &&
           p->plan.v[p->plan_i].off + p->plan.v[p->plan_i].len <= p->pos)
        p->plan_i++;
    struct extent *r = p->plan_i < p->plan.n ? &p->plan.v[p->plan_i] : NULL;
    s->off = p->pos;
    if (r && r->off <= p->pos) {
        s->kind = ITEM_DATA;
        s->len = min_u64(p->unit, r->off + r->len - p->pos);
    } else {
        s->kind = ITEM_SKIP;
        s->len = (r ? r->off : p->plan_end) - p->pos;
    }
    p->pos += s->len;
    return 0;
}

/*
 * --salvage: the read of item s failed with an I/O error.  Read it again
 * SALVAGE_PIECE at a time; a piece that still fails reads as zeros and
 * is flagged for the writer to list.  Other errors stop the job.
 */
static int salvage_read(struct pipeline *p, struct slot *s,
                        struct df_error *err)
{
    for (uint64_t a = 0; a < s->len; a += SALVAGE_PIECE) {
        size_t n = (size_t)min_u64(SALVAGE_PIECE, s->len - a);
        df_error_reset(err);
        if (image_read(p->src, s->buf + a, n, s->off + a, err) == 0)
            continue;
        if (err->cat != DF_IO)
            return -1;
        memset(s->buf + a, 0, n);
        s->bad[a / SALVAGE_PIECE] = 1;
        s->has_bad = true;
    }
    df_error_reset(err);
    return 0;
}

/* Zero-detect and hash the leaves of DATA item s from s->data. */
static void scan_leaves(struct pipeline *p, struct slot *s)
{
    uint64_t nleaves = div_round_up(s->len, LEAF);
    for (uint64_t i = 0; i < nleaves; i++) {
        const uint8_t *leaf = s->data + i * LEAF;
        size_t n = (size_t)min_u64(LEAF, s->len - i * LEAF);
        s->is_zero[i] = zero_is_zero(leaf, n);
        if (!s->is_zero[i])
            digest_leaf(p->o->digest, leaf, n, s->hashes + i * p->hlen);
    }
}

struct scan_ctx {
    struct pipeline *p;
    struct slot *s;
};

static void scan_view(void *ctx)
{
    struct scan_ctx *c = ctx;
    scan_leaves(c->p, c->s);
}

/* Invariant 6: scan item s through the worker's view of the source's
 * pages.  true: done; false: read it into the buffer instead. */
static bool process_view(struct pipeline *p, struct slot *s,
                         struct fmap *view)
{
    struct scan_ctx c = { p, s };
    struct df_error e;
    df_error_init(&e);
    /* a format's data stored as it reads, in one stretch of its file */
    if (image_host_run(p->src, s->off, s->len, &s->foff, &e) != 1 ||
        fmap_map(view, &p->src->file, s->foff, (size_t)s->len) != 0)
        return false;
    s->data = view->p;
    if (fmap_run(view, scan_view, &c) == 0) {
        s->viewed = true;
        return true;
    }
    fmap_unmap(view);           /* it shrank: the read will say so */
    s->data = s->buf;
    return false;
}

/* Read and analyse one DATA item (outside the lock); view: the
 * worker's (invariant 6). */
static int process_data(struct pipeline *p, struct slot *s,
                        struct fmap *view, struct df_error *err)
{
    s->data = s->buf;
    s->viewed = false;
    if (!p->stream) {
        s->has_bad = false;
        if (p->map_src && process_view(p, s, view)) {
            __atomic_fetch_add(&p->bytes_read, s->len, __ATOMIC_RELAXED);
            __atomic_fetch_add(&p->bytes_viewed, s->len, __ATOMIC_RELAXED);
            return 0;
        }
        if (image_read(p->src, s->buf, s->len, s->off, err) < 0 &&
            (!s->bad || err->cat != DF_IO || salvage_read(p, s, err) < 0))
            return -1;
        __atomic_fetch_add(&p->bytes_read, s->len, __ATOMIC_RELAXED);
    }
    scan_leaves(p, s);
    return 0;
}

/*
 * Hash the leaves of a KEEP item that no change source knows, reading
 * them from the source (outside the lock); nothing is delivered.
 */
static int process_keep(struct pipeline *p, struct slot *s,
                        struct df_error *err)
{
    uint64_t nleaves = div_round_up(s->len, LEAF);
    for (uint64_t i = 0; i < nleaves;) {
        if (s->known[i]) {
            i++;
            continue;
        }
        uint64_t j = i;
        while (j < nleaves && !s->known[j])
            j++;
        /* each run from the buffer's start: an item holds at most a
         * unit of unknown leaves (keep_hashes) */
        uint64_t a = i * LEAF, b = min_u64(j * LEAF, s->len);
        if (image_read(p->src, s->buf, (size_t)(b - a), s->off + a,
                       err) < 0)
            return -1;
        __atomic_fetch_add(&p->bytes_read_for_digest, b - a,
                           __ATOMIC_RELAXED);
        for (; i < j; i++) {
            const uint8_t *leaf = s->buf + (i * LEAF - a);
            size_t n = (size_t)min_u64(LEAF, s->len - i * LEAF);
            uint8_t *h = s->hashes + i * p->hlen;
            if (zero_is_zero(leaf, n))
                memcpy(h, digest_zero_node(p->o->digest, 0), p->hlen);
            else
                digest_leaf(p->o->digest, leaf, n, h);
        }
    }
    return 0;
}

/* Call fn on each maximal run of zero (or non-zero) leaves of s. */
static int for_each_run(struct slot *s, bool zero,
                        int (*fn)(struct pipeline *p, struct slot *s,
                                  uint64_t a, uint64_t b,
                                  struct df_error *err),
                        struct pipeline *p, struct df_error *err)
{
    uint64_t nleaves = div_round_up(s->len, LEAF);
    for (uint64_t i = 0; i < nleaves;) {
        uint64_t j = i;
        while (j < nleaves && (bool)s->is_zero[j] == (bool)s->is_zero[i])
            j++;
        if ((bool)s->is_zero[i] == zero &&
            fn(p, s, i * LEAF, min_u64(j * LEAF, s->len), err) < 0)
            return -1;
        i = j;
    }
    return 0;
}

static int write_run(struct pipeline *p, struct slot *s, uint64_t a,
                     uint64_t b, struct df_error *err)
{
    return p->sink->ops->write(p->sink, s->off + a, s->data + a,
                               (size_t)(b - a), err);
}

#ifdef DF_TESTING
static void pipeline_test_tamper(struct pipeline *p, uint64_t off,
                                 uint64_t len)
{
    const char *at = getenv("DF_TEST_COPY_TAMPER_AT");
    char path[64];
    uint8_t b;
    if (!at)
        return;
    uint64_t t = strtoull(at, NULL, 0);
    if (t < off || t - off >= len)
        return;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", p->src->file.fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    if (pread(fd, &b, 1, (off_t)t) == 1) {
        b = (uint8_t)~b;
        if (pwrite(fd, &b, 1, (off_t)t) != 1)
            b = 0;
    }
    close(fd);
}
#else
static void pipeline_test_tamper(struct pipeline *p, uint64_t off,
                                 uint64_t len)
{
    (void)p;
    (void)off;
    (void)len;
}
#endif

/* The writer's data run of a viewed item without copy_from (invariant
 * 7): written from the writer's view, else read into the slot's buffer
 * first. */
static int copy_write(struct pipeline *p, struct slot *s, uint64_t a,
                      uint64_t b, struct df_error *err)
{
    struct sink *k = p->sink;
    size_t n = (size_t)(b - a);
    if (fmap_map(&p->wview, &p->src->file, s->foff + a, n) == 0) {
        fmap_populate(&p->wview);
        if (k->ops->write(k, s->off + a, p->wview.p, n, err) == 0)
            return 0;
        /* The kernel met a page past the source's end (EFAULT: no
         * SIGBUS in a system call): say what happened to which file. */
        if (err->errnum != EFAULT)
            return -1;
        df_error_reset(err);
        return df_corrupt(err, p->src->name, (int64_t)(s->off + a),
                          "truncated: file ended while reading");
    }
    if (image_read(p->src, s->buf + a, n, s->off + a, err) < 0)
        return -1;
    return k->ops->write(k, s->off + a, s->buf + a, n, err);
}

/* The writer's data run of a viewed item (invariant 7): the source
 * file's bytes at the same offset through copy_from, else written. */
static int copy_run(struct pipeline *p, struct slot *s, uint64_t a,
                    uint64_t b, struct df_error *err)
{
    struct sink *k = p->sink;
    pipeline_test_tamper(p, s->foff + a, b - a);
    if (p->no_copy)
        return copy_write(p, s, a, b, err);
    int r = k->ops->copy_from(k, s->off + a, &p->src->file, s->foff + a,
                              (size_t)(b - a), err);
    if (r != 1)
        return r;
    p->no_copy = true;
    return copy_write(p, s, a, b, err);
}

static void *worker_main(void *arg)
{
    struct pipeline *p = arg;
    struct fmap view;           /* invariant 6 */

    fmap_init(&view);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->stop || p->eof)
            break;
        struct df_error ie;
        df_error_init(&ie);
        if (interrupt_check(&ie) < 0) {         /* util/interrupt.h */
            pipe_fail(p, &ie);
            break;
        }
        if (p->next_seq >= p->write_seq + p->nslots) {
            pthread_cond_wait(&p->cond_free, &p->lock);
            continue;
        }
        struct slot *s = &p->slots[p->next_seq % p->nslots];
        struct df_error e;
        df_error_init(&e);
        if (cursor_next(p, s, &e) < 0) {
            pipe_fail(p, &e);
            break;
        }
        if (s->kind == ITEM_END) {
            p->eof = true;
            pthread_cond_broadcast(&p->cond_done);
            pthread_cond_broadcast(&p->cond_free);
            break;
        }
        if (p->stream) {
            /* Streams are read in order, under the lock. */
            long n = df_file_read_stream(p->stream, s->buf, s->len, &e);
            if (n < 0) {
                pipe_fail(p, &e);
                break;
            }
            p->bytes_read += (uint64_t)n;
            if ((uint64_t)n < s->len)
                p->eof = true;
            if (n == 0) {
                pthread_cond_broadcast(&p->cond_done);
                break;
            }
            s->len = (uint64_t)n;
            p->pos += (uint64_t)n;
            p->size = p->pos;
        }
        s->seq = p->next_seq++;
        s->state = SLOT_BUSY;
        s->failed = false;
        pthread_mutex_unlock(&p->lock);

        df_error_init(&s->err);
        s->written = false;
        s->to_copy = false;
        if (s->kind == ITEM_DATA && process_data(p, s, &view, &s->err) < 0)
            s->failed = true;
        else if (s->kind == ITEM_KEEP && s->kept != EXT_UNCHANGED_ZERO)
            s->failed = process_keep(p, s, &s->err) < 0;
        else if (s->kind == ITEM_DATA && p->sink &&
                 p->sink->parallel_write) {
            if (s->viewed && p->with_copy) {
                s->to_copy = true;      /* invariant 7 */
            } else {
                s->failed = for_each_run(s, false, write_run, p,
                                         &s->err) < 0;
                s->written = true;
            }
        }
        s->data = s->buf;       /* invariant 6: the writer sees no view */
        s->viewed = false;

        pthread_mutex_lock(&p->lock);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cond_done);
    }
    pthread_mutex_unlock(&p->lock);
    fmap_unmap(&view);
    return NULL;
}

/* Deliver one finished item to the digest tree and the sink. */
/* The writer, in item order: list the pieces of s salvage_read()
 * could not read (adjacent ones merge). */
static int salvage_note(struct pipeline *p, struct slot *s,
                        struct df_error *err)
{
    for (uint64_t a = 0; a < s->len; a += SALVAGE_PIECE) {
        if (!s->bad[a / SALVAGE_PIECE])
            continue;
        s->bad[a / SALVAGE_PIECE] = 0;
        uint64_t n = min_u64(SALVAGE_PIECE, s->len - a);
        p->st->bytes_salvaged += n;
        if (extent_list_append(p->o->salvaged, s->off + a, n, EXT_DATA,
                               "salvaged", err) < 0)
            return -1;
    }
    s->has_bad = false;
    return 0;
}

/* The writer's leaf, in order: into the digest tree and, if asked
 * (job_opts.leaf_hashes), the caller's array. */
static void feed_leaf(struct pipeline *p, const uint8_t *h)
{
    digest_tree_add_leaf(&p->tree, h);
    if (p->o->leaf_fn)
        p->o->leaf_fn(p->o->leaf_ctx, p->leaf_i, h);
    p->leaf_i++;
}

static void feed_zero_leaves(struct pipeline *p, uint64_t n)
{
    digest_tree_add_zero_leaves(&p->tree, n);
    /* Zero leaves are not told: leaf_fn's receiver starts all zero. */
    p->leaf_i += n;
}

/* A FREE item: zero leaves in the digest; zeros on the destination but
 * where it holds them already (invariant 3). */
static int deliver_free(struct pipeline *p, struct slot *s,
                        struct df_error *err)
{
    struct sink *k = p->sink;
    uint64_t nleaves = div_round_up(s->len, LEAF);
    feed_zero_leaves(p, nleaves);
    p->st->bytes_free += s->len;
    if (p->o->fs)
        p->st->bytes_free_by[fs_layout_kind_at(p->o->fs, s->off)] += s->len;
    if (!k)
        return 0;
    if (!p->inputs->nchanges)
        return k->ops->zero(k, s->off, s->len, err);
    for (uint64_t i = 0; i < nleaves;) {
        uint64_t j = i;
        while (j < nleaves && s->known[j] == s->known[i])
            j++;
        uint64_t a = i * LEAF, b = min_u64(j * LEAF, s->len);
        if (!s->known[i] && k->ops->zero(k, s->off + a, b - a, err) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/*
 * --fs-aware's hint (opts.fs_hint): the non-zero bytes of DATA item s in
 * leaves free in a trusted filesystem, which --fs-aware would not have
 * read nor sent.
 */
static int count_stale(struct pipeline *p, struct slot *s,
                       struct df_error *err)
{
    struct used_map *um = p->hint;
    uint64_t nleaves = div_round_up(s->len, LEAF);
    uint64_t at = s->off;       /* start of the next gap to look at */

    extent_list_clear(&p->hint_q);
    int rc = um->used(um, s->off, s->len, &p->hint_q, err);
    if (rc < 0)
        return -1;
    if (rc == 1)                /* too many: a hint need not be exact */
        return 0;
    for (size_t r = 0; r <= p->hint_q.n; r++) {
        uint64_t gend = r < p->hint_q.n ? p->hint_q.v[r].off
                                        : s->off + s->len;
        /* the whole leaves of the free gap [at, gend) */
        uint64_t i = div_round_up(at - s->off, LEAF);
        for (; i < nleaves && s->off + (i + 1) * LEAF <= gend; i++)
            if (!s->is_zero[i])
                p->st->bytes_free_stale += LEAF;
        if (r < p->hint_q.n)
            at = p->hint_q.v[r].off + p->hint_q.v[r].len;
    }
    return 0;
}

static int deliver(struct pipeline *p, struct slot *s, struct df_error *err)
{
    struct job_stats *st = p->st;
    struct sink *k = p->sink;

    if (s->kind == ITEM_SKIP) {
        feed_zero_leaves(p, div_round_up(s->len, LEAF));
        st->skipped_unallocated += s->len;
        return k ? k->ops->zero(k, s->off, s->len, err) : 0;
    }
    if (s->kind == ITEM_KEEP && s->kept == EXT_UNCHANGED_ZERO) {
        feed_zero_leaves(p, div_round_up(s->len, LEAF));
        st->bytes_unchanged += s->len;
        return 0;
    }
    if (s->kind == ITEM_KEEP) {
        /* The destination holds it: its hashes in order, nothing sent. */
        uint64_t nkeep = div_round_up(s->len, LEAF);
        for (uint64_t i = 0; i < nkeep; i++)
            feed_leaf(p, s->hashes + i * p->hlen);
        st->bytes_unchanged += s->len;
        return 0;
    }
    if (s->kind == ITEM_FREE)
        return deliver_free(p, s, err);
    if (s->has_bad && salvage_note(p, s, err) < 0)
        return -1;
    if (p->hint && count_stale(p, s, err) < 0)
        return -1;
    uint64_t nleaves = div_round_up(s->len, LEAF);
    const uint8_t *z0 = digest_zero_node(p->o->digest, 0);
    uint64_t i = 0;
    while (i < nleaves) {
        uint64_t j = i;
        bool zero = s->is_zero[i];
        while (j < nleaves && s->is_zero[j] == zero) {
            feed_leaf(p, zero ? z0 : s->hashes + j * p->hlen);
            j++;
        }
        uint64_t a = i * LEAF, b = min_u64(j * LEAF, s->len);
        if (zero) {
            st->skipped_zero += b - a;
            if (k && k->ops->zero(k, s->off + a, b - a, err) < 0)
                return -1;
        } else {
            st->bytes_written += b - a;
            if (k && !s->written &&
                (s->to_copy ? copy_run : write_run)(p, s, a, b, err) < 0)
                return -1;
        }
        i = j;
    }
    return 0;
}

/* What the sink has taken, for the progress line (parallel writers
 * add to bytes_written as the writer reads it). */
static uint64_t sink_progress_bytes(const struct sink *k)
{
    uint64_t wire = __atomic_load_n(&k->bytes_wire, __ATOMIC_RELAXED);
    return wire ? wire : __atomic_load_n(&k->bytes_written,
                                         __ATOMIC_RELAXED);
}

static void writer_loop(struct pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct slot *s = &p->slots[p->write_seq % p->nslots];
        if (p->stop)
            break;
        struct df_error ie;
        df_error_init(&ie);
        if (interrupt_check(&ie) < 0) {
            pipe_fail(p, &ie);
            break;
        }
        if (s->state == SLOT_DONE && s->seq == p->write_seq) {
            pthread_mutex_unlock(&p->lock);
            struct df_error e;
            df_error_init(&e);
            int r = 0;
            if (s->failed) {
                df_error_copy(&e, &s->err);
                r = -1;
            } else {
                r = deliver(p, s, &e);
            }
            progress_update(p->progress, s->off + s->len,
                            p->sink ? sink_progress_bytes(p->sink) : 0,
                            p->st->skipped_unallocated +
                                p->st->skipped_zero +
                                p->st->bytes_unchanged + p->st->bytes_free);
            pthread_mutex_lock(&p->lock);
            if (r < 0) {
                pipe_fail(p, &e);
                break;
            }
            s->state = SLOT_FREE;
            p->write_seq++;
            pthread_cond_broadcast(&p->cond_free);
            continue;
        }
        if (p->eof && p->write_seq == p->next_seq)
            break;
        /* Woken by a finished slot, or every 200 ms to see a signal. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->cond_done, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
}

static void pipeline_release(struct pipeline *p)
{
    for (unsigned i = 0; p->slots && i < p->nslots; i++) {
        free(p->slots[i].buf);
        free(p->slots[i].is_zero);
        free(p->slots[i].hashes);
        free(p->slots[i].known);
        free(p->slots[i].bad);
    }
    free(p->slots);
    fmap_unmap(&p->wview);
    extent_list_release(&p->plan);
    extent_list_release(&p->hint_q);
    free(p->fs_used);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond_free);
    pthread_cond_destroy(&p->cond_done);
    progress_free(p->progress);
}

/* opts.fs: its used map joins the plan's inputs; or, fs_hint, is only
 * counted against.  A map of another disk is refused. */
static int pipeline_fs(struct pipeline *p, struct image *src,
                       const struct plan_inputs *inputs,
                       struct df_error *err)
{
    const struct fs_layout *fs = p->o->fs;
    if (fs->size != src->size)
        return df_fail(err, DF_USAGE, 0, src->name, -1, "the filesystem "
                       "map is of a disk of another size");
    if (p->o->fs_hint) {
        p->hint = fs->used;
        return 0;
    }
    size_t n = inputs ? inputs->nused : 0;
    p->fs_used = calloc(n + 1, sizeof(*p->fs_used));
    if (!p->fs_used)
        return df_io(err, "", ENOMEM, "cannot allocate pipeline");
    for (size_t i = 0; i < n; i++)
        p->fs_used[i] = inputs->used[i];
    p->fs_used[n] = fs->used;
    if (inputs)
        p->fs_inputs = *inputs;
    p->fs_inputs.used = p->fs_used;
    p->fs_inputs.nused = n + 1;
    p->inputs = &p->fs_inputs;
    return 0;
}

/* Invariant 6: a raw image of one layer on a regular file, read through
 * the page cache (not O_DIRECT: the read-back after --fsync wants the
 * medium). */
bool engine_can_view(const struct image *img)
{
    return img && !img->parent && !strcmp(image_format_name(img), "raw") &&
           img->file.fd >= 0 && !img->file.mem && img->file.is_regular &&
           !img->file.direct;
}

/* job_stats.copy_method: how most of the data the sink took got there
 * (NULL: none did). */
static const char *copy_method(const struct pipeline *p)
{
    const struct sink *k = p->sink;
    uint64_t cloned = k->bytes_cloned, copied = k->bytes_copied;
    uint64_t rest = k->bytes_written - cloned - copied;
    if (!k->bytes_written)
        return NULL;
    if (!p->map_src)
        return "buffer";
    if (cloned >= copied && cloned >= rest)
        return "reflink";
    if (copied >= rest)
        return "copy_file_range";
    /* what was written came mostly from views, or from the buffers
     * (items of a format not in one stretch of its file) */
    return 2 * p->bytes_viewed >= p->bytes_read ? "write" : "buffer";
}

/*
 * Run the pipeline over src (or stream) into sink (NULL = digest only);
 * the source digest lands in *digest.
 */
static int pipeline_run(struct image *src, struct df_file *stream,
                        const struct plan_inputs *inputs,
                        struct sink *sink, const struct job_opts *o,
                        struct job_stats *st, struct digest *digest,
                        struct df_error *err)
{
    struct pipeline p;
    pthread_t *tids = NULL;
    unsigned threads = o->threads ? o->threads : default_threads();
    unsigned started = 0;
    int ret = -1;

    memset(&p, 0, sizeof(p));
    p.src = src;
    p.stream = stream;
    p.inputs = inputs;
    p.sink = sink;
    extent_list_init(&p.hint_q, 4096);
    p.o = o;
    p.st = st;
    p.hlen = digest_len(o->digest);
    p.unit = o->unit ? o->unit : JOB_DEFAULT_UNIT;
    p.unit = max_u64(LEAF, p.unit / LEAF * LEAF);
    p.size = src ? src->size : 0;
    p.with_copy = sink && sink->parallel_write && sink->ops->copy_from;
    p.map_src = image_has_host_runs(src) && !o->salvaged &&
                (!sink || p.with_copy);
    p.nslots = 2 * threads + 2;
    df_error_init(&p.err);
    digest_tree_init(&p.tree, o->digest);
    fmap_init(&p.wview);
    extent_list_init(&p.plan, PLAN_MAX_EXTENTS);
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond_free, NULL);
    pthread_cond_init(&p.cond_done, NULL);
    p.progress = progress_new(o->title ? o->title : "copy", p.size,
                              o->progress ? &o->progress_out : NULL);
    progress_set_prediction(p.progress, o->predicted_seconds);

    if (src && o->fs && o->fs->used &&
        pipeline_fs(&p, src, inputs, err) < 0)
        goto out;
    p.slots = calloc(p.nslots, sizeof(*p.slots));
    tids = calloc(threads, sizeof(*tids));
    if (!p.slots || !tids) {
        df_io(err, "", ENOMEM, "cannot allocate pipeline");
        goto out;
    }
    size_t nleaves = (size_t)(p.unit / LEAF);
    size_t nkeep = (size_t)(max_u64(p.unit, KEEP_MAX) / LEAF);
    for (unsigned i = 0; i < p.nslots; i++) {
        struct slot *s = &p.slots[i];
        if (posix_memalign((void **)&s->buf, 4096, (size_t)p.unit) != 0)
            s->buf = NULL;
        s->is_zero = calloc(nleaves, 1);
        s->hashes = calloc(nkeep, p.hlen);
        s->known = calloc(nkeep, 1);
        if (o->salvaged && !stream)
            s->bad = calloc(div_round_up(p.unit, SALVAGE_PIECE), 1);
        if (!s->buf || !s->is_zero || !s->hashes || !s->known ||
            (o->salvaged && !stream && !s->bad)) {
            df_io(err, "", ENOMEM, "cannot allocate pipeline buffers");
            goto out;
        }
    }
    /* A stream is read in order under the lock: one reader suffices. */
    if (stream)
        threads = threads > 2 ? 2 : threads;
    /* Invariant 7: the writer copies all the while, so by default one
     * worker fewer than cores (a third busy thread on two cores took
     * the writer's core from it: 0.60 s against 0.50 s for the corpus
     * of bench/copy_vs_peers.sh).  Only for a raw source: a format's
     * compressed items are inflated by the workers, on every core (with
     * one fewer, a zlib qcow2 took twice as long). */
    if (p.map_src && p.with_copy && !o->threads && threads > 1 &&
        engine_can_view(src))
        threads--;
    for (; started < threads; started++) {
        if (pthread_create(&tids[started], NULL, worker_main, &p) != 0) {
            df_io(err, "", errno, "cannot start worker thread");
            pthread_mutex_lock(&p.lock);
            p.stop = true;
            pthread_cond_broadcast(&p.cond_free);
            pthread_mutex_unlock(&p.lock);
            goto join;
        }
    }
    writer_loop(&p);
join:
    pthread_mutex_lock(&p.lock);
    if (!p.stop && !(p.eof && p.write_seq == p.next_seq))
        p.stop = true;
    pthread_cond_broadcast(&p.cond_free);
    pthread_mutex_unlock(&p.lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (err->cat != DF_OK)
        goto out;
    if (p.err.cat != DF_OK) {
        df_error_copy(err, &p.err);
        goto out;
    }
    st->disk_size = p.size;
    if (sink)
        st->copy_method = copy_method(&p);
    st->bytes_read += p.bytes_read;
    st->bytes_read_for_digest += p.bytes_read_for_digest;
    digest_tree_final(&p.tree, p.size, digest);
    progress_finish(p.progress);
    ret = 0;
out:
    free(tids);
    pipeline_release(&p);
    return ret;
}

static int copy_finish(struct sink *dst, const struct job_opts *opts,
                       struct job_stats *st, double t0,
                       struct df_error *err)
{
    if (dst->ops->finish(dst, err) < 0)
        return -1;
    st->bytes_wire = dst->bytes_wire;
    st->bytes_zeroed = dst->bytes_zeroed;
    if (engine_verify_sink(dst, opts, st, err) < 0) {
        st->seconds = time_now() - t0;
        return -1;
    }
    st->seconds = time_now() - t0;
    return 0;
}

int engine_copy(struct image *src, struct sink *dst,
                const struct job_opts *opts, struct job_stats *st,
                struct df_error *err)
{
    double t0 = time_now();
    /* A change source says what the destination holds already: never
     * of one known to read as zeros (a new file), whose kept ranges
     * would stay zero.  (Used maps alone may: free blocks stay zero.) */
    if (opts->plan && opts->plan->nchanges && dst->dst_is_zero) {
        df_refuse(err, dst->name, "refusing to keep ranges of a new "
                  "destination: it holds none of the source's bytes");
        if (dst->ops->abort_job)
            dst->ops->abort_job(dst);
        return -1;
    }
    if (pipeline_run(src, NULL, opts->plan, dst, opts, st, &st->src_digest,
                     err) < 0) {
        if (dst->ops->abort_job)
            dst->ops->abort_job(dst);
        return -1;
    }
    return copy_finish(dst, opts, st, t0, err);
}

int engine_copy_stream(struct df_file *in, struct sink *dst,
                       const struct job_opts *opts, struct job_stats *st,
                       struct df_error *err)
{
    double t0 = time_now();
    if (opts->plan) {
        df_fail(err, DF_USAGE, 0, in->name, -1,
                "a plan cannot be applied to a stream source");
        if (dst->ops->abort_job)
            dst->ops->abort_job(dst);
        return -1;
    }
    if (pipeline_run(NULL, in, NULL, dst, opts, st, &st->src_digest,
                     err) < 0) {
        if (dst->ops->abort_job)
            dst->ops->abort_job(dst);
        return -1;
    }
    dst->size = st->disk_size;
    return copy_finish(dst, opts, st, t0, err);
}

int engine_digest(struct image *img, const struct job_opts *opts,
                  struct digest *out, struct job_stats *st,
                  struct df_error *err)
{
    struct job_stats local;
    memset(&local, 0, sizeof(local));
    return pipeline_run(img, NULL, opts->plan, NULL, opts,
                        st ? st : &local, out, err);
}

int engine_tree(struct image *img, const struct job_opts *opts,
                struct htree *t, struct digest *out, struct job_stats *st,
                struct df_error *err)
{
    struct job_opts o = *opts;
    o.plan = NULL;
    if (htree_init(t, o.digest, img->size, err) < 0)
        return -1;
    o.leaf_fn = htree_leaf_fn;
    o.leaf_ctx = t;
    if (engine_digest(img, &o, out, st, err) < 0 ||
        htree_build(t, err) < 0) {
        htree_release(t);
        return -1;
    }
    return 0;
}

int engine_compare_run(struct image *a, struct sink *cmp,
                       const struct job_opts *opts, struct job_stats *st,
                       struct df_error *err)
{
    double t0 = time_now();
    int r = pipeline_run(a, NULL, NULL, cmp, opts, st, &st->src_digest,
                         err);
    st->seconds = time_now() - t0;
    return r;
}
