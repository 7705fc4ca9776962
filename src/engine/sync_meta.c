/*
 * sync_meta.c: a sync whose changes come from metadata (--changes
 * lvm-cow:COW, lvm-thin:META,OLD,NEW, bitmap:NAME, top-layer; the
 * sources are in track/): opening and trusting them, their change set,
 * and the proofs a store or a delta's parent identity give.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/endpoint.h"
#include "engine/job_int.h"
#include "engine/source.h"
#include "engine/sync.h"
#include "engine/sync_int.h"
#include "image/chain.h"
#include "image/image.h"
#include "image/nbd.h"
#include "track/qcow2_bitmap.h"
#include "track/track.h"
#include "util/overflow.h"
#include "util/size.h"

/* ---- change sources read from metadata (--changes lvm-cow:, ...) ---- */

bool sync_meta_spec(const char *ch)
{
    return ch && (!strncmp(ch, "lvm-cow:", 8) ||
                  !strncmp(ch, "lvm-thin:", 9) || !strncmp(ch, "bitmap:", 7) ||
                  !strcmp(ch, "top-layer"));
}

bool sync_top_layer(const char *ch)
{
    return ch && !strcmp(ch, "top-layer");
}

/* sync.h */
bool sync_layer_base(const struct manifest *rec, const char *parent_id,
                     const char *layer_id, const char *srcname)
{
    static const char qb[] = "qcow2 backing ";
    if (!strcmp(rec->src, srcname) && !strcmp(rec->src_layer, layer_id))
        return true;
    if (!strncmp(parent_id, qb, sizeof(qb) - 1))
        return !strcmp(path_basename(parent_id + sizeof(qb) - 1),
                       path_basename(rec->src));
    return parent_id[0] && !strcmp(rec->src_layer, parent_id);
}

/* --changes bitmap:NAME on an NBD SRC: its open asks for the bitmap's
 * meta context (image/nbd.h), which cannot be added once connected. */
static bool sync_nbd_bitmap(const struct job_spec *spec,
                            const struct endpoint *sep)
{
    return spec->changes && !strncmp(spec->changes, "bitmap:", 7) &&
           sep->kind == EP_NBD;
}

/* --changes top-layer: SRC, a delta on this host, is opened alone (its
 * parent is what DST holds): so->open becomes *top.  Also, before SRC
 * is opened: an NBD SRC's open asks for the bitmap's context. */
int sync_top_layer_open_opts(const struct job_spec *spec,
                             const struct endpoint *sep,
                             struct image_open_opts *top,
                             struct source_opts *so,
                             struct job_report *rep, struct df_error *err)
{
    if (sync_nbd_bitmap(spec, sep)) {
        top->nbd_bitmap = spec->changes + 7;
        so->open = top;
        return 0;
    }
    if (!sync_top_layer(spec->changes))
        return 0;
    if (sep->kind != EP_LOCAL) {
        rep->usage_hint = true;
        return df_usage(err, "--changes top-layer: SRC is a delta image on "
                        "this host");
    }
    top->no_parents = true;
    so->open = top;
    return 0;
}

/* To another host a delta goes alone: a 64 KiB leaf it holds only in
 * part (VHD and VHDX sectors, small grains) would be hashed here
 * without its parent's part, which only DST has. */
int sync_top_layer_whole_leaves(const struct job_spec *spec,
                                const struct extent_list *changed,
                                uint64_t size, struct df_error *err)
{
    for (size_t i = 0; i < changed->n; i++) {
        uint64_t a = changed->v[i].off, b = a + changed->v[i].len;
        if (a % DIGEST_LEAF_SIZE || (b % DIGEST_LEAF_SIZE && b != size))
            return df_usage(err, "--changes top-layer: %s holds part of the "
                            "64 KiB block at byte %llu, whose rest is its "
                            "parent's: sync it to a DST on this host, or "
                            "with --changes compare", spec->src,
                            (unsigned long long)(a % DIGEST_LEAF_SIZE
                                                     ? a : b));
    }
    return 0;
}

/* The delta SRC reads what it leaves to its parent from DST, which holds
 * that parent (proved, or vouched for: --trust-base): a 64 KiB leaf it
 * holds only part of is hashed whole, as DST will hold it. */
int sync_top_layer_attach(struct sync_state *s, struct df_error *err)
{
    struct image_open_opts po = { .no_parents = true, .format = "raw" };
    struct image *p = NULL;
    if (image_open(s->spec->dst, &po, &p, err) < 0)
        return -1;
    chain_attach_parent(s->src->img, p, "DST");
    return 0;
}

/* "META,OLD,NEW": the last two commas split (META may hold commas). */
static int thin_spec(const char *arg, char *meta, size_t len, uint64_t *a,
                     uint64_t *b)
{
    const char *c2 = strrchr(arg, ',');
    const char *c1 = c2 ? memrchr(arg, ',', (size_t)(c2 - arg)) : NULL;
    char *end;
    if (!c1 || c1 == arg || (size_t)(c1 - arg) >= len)
        return -1;
    errno = 0;
    *a = strtoull(c1 + 1, &end, 10);
    if (errno || end != c2 || c1[1] < '0' || c1[1] > '9')
        return -1;
    *b = strtoull(c2 + 1, &end, 10);
    if (errno || *end || c2[1] < '0' || c2[1] > '9')
        return -1;
    memcpy(meta, arg, (size_t)(c1 - arg));
    meta[c1 - arg] = '\0';
    return 0;
}

/* A bitmap that cannot be trusted (qcow2_bitmap.h: DF_REFUSED): said,
 * and the sync compares (1); any other error stays (-1). */
static int bitmap_untrusted(const struct job_spec *spec, struct df_error *err)
{
    if (err->cat != DF_REFUSED)
        return -1;
    if (spec->msgs) {
        char msg[PATH_MAX + 256];
        df_error_format(err, msg, sizeof(msg));
        fprintf(spec->msgs, "diskferry: sync: warning: %s; comparing "
                "instead\n", msg);
    }
    df_error_reset(err);
    return 1;
}

/* A disabled bitmap misses every write made since it was disabled: it
 * is no change set of SRC as it is now (DF_REFUSED: compare). */
static bool bitmap_disabled(const char *image, const char *name,
                            struct df_error *err)
{
    struct qcow2_bitmap_info *v = NULL;
    size_t n = 0;
    bool off = false;
    if (qcow2_bitmap_list(image, &v, &n, err) < 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (strlen(name) == v[i].name_len &&
            !memcmp(v[i].name, name, v[i].name_len) && !v[i].enabled)
            off = true;
    qcow2_bitmap_list_free(v, n);
    if (off)
        df_refuse(err, image, "bitmap '%s' is disabled: the writes made "
                  "since are not in it", name);
    return off;
}

/* s->meta opened from --changes: 0; 1 when the source cannot be trusted
 * (said on msgs: the sync compares instead); -1 with err. */
int sync_meta_open(struct sync_state *s, struct df_error *err)
{
    const struct job_spec *spec = s->spec;
    const char *ch = spec->changes;
    struct image *img = s->src->img;
    if (!strncmp(ch, "lvm-cow:", 8)) {
        s->meta = lvm_cow_open(ch + 8, "/", s->size, err);
    } else if (!strncmp(ch, "lvm-thin:", 9)) {
        char meta[PATH_MAX];
        uint64_t a, b;
        if (thin_spec(ch + 9, meta, sizeof(meta), &a, &b) < 0)
            return df_usage(err, "--changes %s: expected lvm-thin:METADATA,"
                            "OLD_ID,NEW_ID", ch);
        s->meta = lvm_thin_open(meta, a, b, s->size, err);
    } else if (sync_top_layer(ch)) {
        if (!img || !img->has_parent_ref)
            return df_usage(err, "--changes top-layer: %s is not a delta "
                            "image (it records no parent)", spec->src);
        s->meta = top_layer_open(img, s->size, err);
    } else if (img && img->drv == &image_driver_nbd) {
        /* Served by a QEMU that keeps the bitmap: no file to judge its
         * trust by, and a server without it is refused (exit 3), not
         * compared: comparing reads the whole export. */
        s->meta = nbd_bitmap_open(img, s->size, err);
    } else {
        if (!img || strcmp(s->src->format, "qcow2"))
            return df_usage(err, "--changes %s: a dirty bitmap is read from "
                            "a qcow2 SRC on this host or an NBD export "
                            "(qemu-nbd -B); %s is %s", ch, spec->src,
                            s->src->format);
        s->meta = qcow2_bitmap_open(spec->src, ch + 7, s->size, err);
        if (!s->meta || bitmap_disabled(spec->src, ch + 7, err)) {
            change_source_close(s->meta);
            s->meta = NULL;
            return bitmap_untrusted(spec, err);
        }
    }
    return s->meta ? 0 : -1;
}

/* What the source names as changed, over the whole disk. */
int sync_meta_changed(struct sync_state *s, struct extent_list *changed,
                      struct df_error *err)
{
    uint64_t off = 0;
    while (off < s->size) {
        int r = s->meta->changed(s->meta, off, s->size - off, changed, err);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        uint64_t end = extent_list_end(changed, off);
        if (end <= off)
            return df_io(err, s->spec->src, E2BIG, "--changes %s: more "
                         "changed ranges than a sync holds", s->meta->name);
        off = end;
    }
    return 0;
}

/*
 * A store that keeps the old contents (lvm-cow) proves DST itself: DST
 * must hold, under every changed range, what the store saved (the
 * origin as the snapshot saw it) or, after a sync that was killed, what
 * SRC holds now, in 4 KiB pieces.  Anything else is another disk.
 */
#define STORE_PROOF_STEP (1u << 20)
#define STORE_PROOF_PIECE 4096u
static int store_prove(struct sync_state *s, const struct extent_list *changed,
                       struct df_error *err)
{
    struct job_report *rep = s->rep;
    uint8_t *d = malloc(STORE_PROOF_STEP), *old = malloc(STORE_PROOF_STEP);
    uint8_t *now = malloc(STORE_PROOF_STEP);
    int rc = -1;
    if (!d || !old || !now) {
        df_io(err, s->spec->dst, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < changed->n; i++) {
        uint64_t end = changed->v[i].off + changed->v[i].len;
        for (uint64_t off = changed->v[i].off; off < end;) {
            size_t n = (size_t)min_u64(STORE_PROOF_STEP, end - off);
            bool have_now = false;
            if (image_read(s->d.img, d, n, off, err) < 0 ||
                s->meta->base_read(s->meta, off, n, old, err) < 0)
                goto out;
            rep->dst_bytes_read += n;
            for (size_t p = 0; memcmp(d, old, n) && p < n;
                 p += STORE_PROOF_PIECE) {
                size_t k = (size_t)min_u64(STORE_PROOF_PIECE, n - p);
                if (!memcmp(d + p, old + p, k))
                    continue;
                if (!have_now) {
                    if (image_read(s->src->img, now, n, off, err) < 0)
                        goto out;
                    s->copy_read += n;
                    have_now = true;
                }
                if (memcmp(d + p, now + p, k)) {
                    char at[32];
                    size_format(off + p, at, sizeof(at));
                    df_refuse(err, s->spec->dst, "refusing to sync: %s is "
                              "not the disk %s describes (at byte %llu "
                              "(%s) it holds neither what the snapshot "
                              "saved nor what SRC holds now); run with "
                              "--changes compare", s->spec->dst,
                              s->spec->changes,
                              (unsigned long long)(off + p), at);
                    goto out;
                }
            }
            off += n;
        }
    }
    rc = 0;
out:
    free(d);
    free(old);
    free(now);
    return rc;
}

/* The first pass of a sync whose changes come from metadata: SRC is not
 * hashed; the base record's tree (if any) stands for SRC's kept leaves
 * (src_t), proved on DST as a record is; a store that keeps old
 * contents proves the changed ranges. */
int sync_meta_diff(struct sync_state *s, struct htree *src_t,
                   struct extent_list *changed, struct df_error *err)
{
    struct job_report *rep = s->rep;
    if (sync_meta_changed(s, changed, err) < 0)
        return -1;
    /* A store's proof covers the changed ranges byte for byte: the
     * record's then proves only the samples outside them. */
    if (s->have_base &&
        (sync_base_resized(s, src_t, err) < 0 ||
         sync_base_prove(s->d.img, &s->base.tree, changed,
                    s->resumed || s->meta->base_read, s->base_what,
                    &rep->proof_leaves, &rep->dst_bytes_read, err) < 0))
        return -1;
    if (s->meta->base_read && store_prove(s, changed, err) < 0)
        return -1;
    return 0;
}
