/*
 * vmdk.c: VMDK (VMware virtual disks), read only: probe, open, map,
 * read, parent identity.
 *
 * Spec: docs/formats.md section 2.  An image is opened either
 *   - as a text descriptor (monolithicFlat, twoGbMaxExtent*, vmfs,
 *     vmfsSparse, seSparse, custom ...): the virtual disk is the
 *     concatenation of its extent lines, each extent file opened with
 *     image_open_related() and validated here, in open(); or
 *   - as a binary extent (monolithicSparse, streamOptimized, a bare
 *     COWD or seSparse file): the file is the disk's only extent, and
 *     a KDMV's embedded descriptor (vmdk_desc.c) supplies CID, parent
 *     and createType.  Its extent lines are not followed: the file may
 *     have been renamed since, and it is the extent itself (as QEMU).
 *
 *   virtual disk  | extent 0 (FLAT) | extent 1 (SPARSE) | extent 2 (ZERO) |
 *   sparse extent   GD -> GT -> grain (vmdk_sparse.c); unallocated grains
 *                   say EXT_PARENT, zeroed grains EXT_ZERO
 *
 * Parents: parentFileNameHint names the parent's descriptor; its CID
 * must equal the child's parentCID (checked in check_parent before any
 * byte is read through it) and its size the child's.
 * Refused (exit 5): NOACCESS extents, raw device maps (VMFSRDM,
 * VMFSRAW, createType vmfsRDM/vmfsRDMP/vmfsRaw/fullDevice/
 * partitionedDevice), unknown createTypes, an extent path that is
 * absolute or climbs out with ".." unless -f named the format (a
 * probed descriptor may be guest-written text), an extent whose
 * SECTORS differ from its file's capacity, a FLAT extent past its
 * file's end, and everything vmdk_desc.c and vmdk_sparse.c refuse.  A missing
 * extent file is an I/O error (exit 4) naming the path.
 *
 * Threads (IMG_THREAD_SAFE): map and read run concurrently, for every
 * kind of extent.  The GT cache has its own lock, held only to find (or
 * read) a GT and copy out the entries a lookup needs; data preads and
 * inflating happen with no lock held.  A read looks up a GT's worth of
 * grains at once, reads host-contiguous plain grains (and flat extents)
 * with one pread per run, and fetches compressed grains lying close
 * together with one pread, inflating them with a context of its own
 * (at most 16 per image, 32 MiB of buffers; a reader past that waits).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/runs.h"
#include "image/vmdk.h"
#include "util/bytes.h"
#include "util/overflow.h"
#include "util/pool.h"

#define VMDK_SECTOR 512u
/* The inflate contexts of one image (one per thread reading at once)
 * hold at most this much in buffers, and at least one exists. */
#define VMDK_GCTX_BYTES (32u << 20)

struct vmdk_priv {
    struct vmdk_desc desc;
    bool has_desc;
    struct vmdk_extent *ext;
    size_t n_ext;
    struct df_file *files;      /* extent files this image opened */
    size_t n_files;
    struct vmdk_gt_cache gtc;   /* its own lock */
    struct ctx_pool gpool;      /* struct vmdk_gctx: compressed extents */
};

extern const struct image_driver vmdk_driver;

static const char *const vmdk_create_types[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat", "streamOptimized", "vmfs", "vmfsSparse",
    "seSparse", "vmfsThin", "vmfsPreallocated", "vmfsEagerZeroedThick",
    "custom", NULL,
};
static const char *const vmdk_raw_types[] = {
    "vmfsRDM", "vmfsRDMP", "vmfsRaw", "fullDevice", "partitionedDevice",
    "vmfsRawDeviceMap", "vmfsPassthroughRawDeviceMap", NULL,
};

static bool vmdk_in(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

/* Skip blank lines (and a UTF-8 BOM); returns the first text or NULL. */
static const char *vmdk_probe_text(const uint8_t *h, size_t n, size_t *rest)
{
    size_t i = 0;
    if (n >= 3 && !memcmp(h, "\xef\xbb\xbf", 3))
        i = 3;
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\r' ||
                     h[i] == '\n'))
        i++;
    *rest = n - i;
    return i < n ? (const char *)h + i : NULL;
}

static int vmdk_probe(const struct image_probe *p)
{
    size_t n;
    if (vmdk_sparse_kind(p->head, p->head_len) != VMDK_K_FLAT)
        return 100;
    const char *t = vmdk_probe_text(p->head, p->head_len, &n);
    if (!t)
        return 0;
    static const char sig[] = "# Disk DescriptorFile";
    if (n >= sizeof(sig) - 1 && !memcmp(t, sig, sizeof(sig) - 1))
        return 100;
    /* Hand-written: "version=..." first and a createType somewhere. */
    if (n >= 8 && !memcmp(t, "version", 7) &&
        (t[7] == '=' || t[7] == ' ') &&
        memmem(p->head, p->head_len, "createType", 10))
        return 80;
    return 0;
}

static int vmdk_check_create_type(const char *what, const char *ct,
                                  struct df_error *err)
{
    if (vmdk_in(ct, vmdk_raw_types))
        return df_corrupt(err, what, -1, "createType %s: raw device "
                          "mappings are not supported (copy the device "
                          "itself)", ct);
    if (!vmdk_in(ct, vmdk_create_types))
        return df_corrupt(err, what, -1, "unknown createType '%s'", ct);
    return 0;
}

/* Parse descriptor text read from f at [off, off+len). */
static int vmdk_read_desc(struct image *img, struct df_file *f, uint64_t off,
                          uint64_t len, bool embedded, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    char *buf = NULL;
    int ret = -1;

    if (len > VMDK_DESC_MAX)
        return df_corrupt(err, img->name, -1, "descriptor of %" PRIu64
                          " bytes is larger than %u", len, VMDK_DESC_MAX);
    buf = malloc(len ? len : 1);
    if (!buf)
        return df_io(err, img->name, ENOMEM, "out of memory");
    if (df_file_pread(f, buf, len, off, err) < 0)
        goto out;
    if (embedded) {
        /* Extents of a twoGbMaxExtentSparse disk carry an empty area. */
        size_t i = 0;
        while (i < len && (buf[i] == '\0' || buf[i] == ' ' ||
                           buf[i] == '\n' || buf[i] == '\r'))
            i++;
        if (i == len) {
            ret = 0;
            goto out;
        }
    }
    if (vmdk_desc_parse(buf, len, img->name, !embedded, &p->desc, err) < 0)
        goto out;
    p->has_desc = true;
    if (vmdk_check_create_type(img->name, p->desc.create_type, err) < 0)
        goto out;
    ret = 0;
out:
    free(buf);
    return ret;
}

/* Does rel stay in the descriptor's directory (relative, no ".."
 * component)? */
static bool vmdk_extent_local(const char *rel)
{
    if (rel[0] == '/')
        return false;
    for (const char *c = rel; c; c = strchr(c, '/')) {
        if (*c == '/')
            c++;
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
            return false;
    }
    return true;
}

/* Open an extent's file, sharing one df_file per path. */
static int vmdk_open_extent_file(struct image *img, const char *rel,
                                 struct df_file **out, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    char path[PATH_MAX];
    struct df_file f;

    /* A probed descriptor may be text a guest wrote into a raw disk:
     * it names no file outside its own directory (image.h). */
    if (!img->format_named && !vmdk_extent_local(rel))
        return df_corrupt(err, img->name, -1, "extent \"%.200s\" is outside "
                          "the descriptor's directory: give -f vmdk to open "
                          "it, or -f raw to copy this file's bytes", rel);
    if (image_open_related(img, rel, O_RDONLY, &f, path, sizeof(path),
                           err) < 0)
        return -1;
    for (size_t i = 0; i < p->n_files; i++) {
        if (p->files[i].dev == f.dev && p->files[i].ino == f.ino &&
            f.is_regular) {
            df_file_close(&f);
            *out = &p->files[i];
            return 0;
        }
    }
    p->files[p->n_files] = f;
    *out = &p->files[p->n_files++];
    img->aux_files = p->files;
    img->n_aux_files = p->n_files;
    return 0;
}

static int vmdk_open_extent(struct image *img, const struct vmdk_desc_extent *d,
                            struct vmdk_extent *e, uint64_t *total_gd,
                            struct df_error *err)
{
    const char *type = vmdk_type_name(d->type);
    struct vmdk_sparse_meta meta;
    uint8_t head[16];

    if (d->access == VMDK_ACC_NOACCESS)
        return df_corrupt(err, img->name, -1, "NOACCESS extent \"%s\" has "
                          "no readable data", d->file ? d->file : "");
    if (d->type == VMDK_T_VMFSRDM || d->type == VMDK_T_VMFSRAW)
        return df_corrupt(err, img->name, -1, "%s extent \"%s\": raw device "
                          "mappings are not supported", type, d->file);
    if (d->type == VMDK_T_ZERO) {
        e->kind = VMDK_K_ZERO;
        return 0;
    }
    if (vmdk_open_extent_file(img, d->file, &e->file, err) < 0)
        return -1;
    if (d->type == VMDK_T_FLAT || d->type == VMDK_T_VMFS) {
        e->kind = VMDK_K_FLAT;
        e->file_off = d->start * VMDK_SECTOR;
        if (!range_within(e->file_off, e->vlen, e->file->size))
            return df_corrupt(err, e->file->name, -1, "%s extent of %"
                              PRIu64 " sectors from sector %" PRIu64
                              " runs past the end of the file (%" PRIu64
                              " bytes)", type, d->sectors, d->start,
                              e->file->size);
        return 0;
    }
    size_t hl = (size_t)min_u64(sizeof(head), e->file->size);
    if (df_file_pread(e->file, head, hl, 0, err) < 0)
        return -1;
    e->kind = vmdk_sparse_kind(head, hl);
    if (e->kind == VMDK_K_FLAT ||
        (d->type == VMDK_T_SESPARSE) != (e->kind == VMDK_K_SESPARSE))
        return df_corrupt(err, e->file->name, 0, "%s extent has no %s "
                          "header", type,
                          d->type == VMDK_T_SESPARSE ? "seSparse"
                                                     : "KDMV or COWD");
    if (vmdk_sparse_open(e, &meta, total_gd, err) < 0)
        return -1;
    if (e->capacity != d->sectors)
        return df_corrupt(err, img->name, -1, "extent \"%s\" is listed with "
                          "%" PRIu64 " sectors but its header says %" PRIu64,
                          d->file, d->sectors, e->capacity);
    return 0;
}

static int vmdk_open_descriptor(struct image *img, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    uint64_t total_gd = 0, vsectors = 0;

    if (img->file.size > VMDK_DESC_MAX)
        return df_corrupt(err, img->name, -1, "descriptor file of %" PRIu64
                          " bytes is larger than %u", img->file.size,
                          VMDK_DESC_MAX);
    if (vmdk_read_desc(img, &img->file, 0, img->file.size, false, err) < 0)
        return -1;
    size_t n = p->desc.n_ext;
    p->ext = calloc(n, sizeof(*p->ext));
    p->files = calloc(n, sizeof(*p->files));
    if (!p->ext || !p->files)
        return df_io(err, img->name, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct vmdk_desc_extent *d = &p->desc.ext[i];
        struct vmdk_extent *e = &p->ext[i];
        p->n_ext = i + 1;
        if (d->sectors == 0)
            return df_corrupt(err, img->name, -1, "extent %zu has 0 sectors",
                              i + 1);
        if (d->sectors > VMDK_MAX_SECTORS - vsectors)
            return df_corrupt(err, img->name, -1, "extents add up to more "
                              "than 2^44 sectors");
        e->vstart = vsectors * VMDK_SECTOR;
        e->vlen = d->sectors * VMDK_SECTOR;
        vsectors += d->sectors;
        if (vmdk_open_extent(img, d, e, &total_gd, err) < 0)
            return -1;
    }
    img->size = vsectors * VMDK_SECTOR;
    return 0;
}

static int vmdk_open_binary(struct image *img, enum vmdk_kind kind,
                            struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    struct vmdk_sparse_meta meta;
    uint64_t total_gd = 0;

    p->ext = calloc(1, sizeof(*p->ext));
    if (!p->ext)
        return df_io(err, img->name, ENOMEM, "out of memory");
    p->n_ext = 1;
    struct vmdk_extent *e = &p->ext[0];
    e->kind = kind;
    e->file = &img->file;
    if (vmdk_sparse_open(e, &meta, &total_gd, err) < 0)
        return -1;
    e->vlen = e->capacity * VMDK_SECTOR;
    img->size = e->vlen;
    if (meta.desc_len &&
        vmdk_read_desc(img, &img->file, meta.desc_off, meta.desc_len, true,
                       err) < 0)
        return -1;
    if (kind == VMDK_K_COWD || kind == VMDK_K_SESPARSE) {
        /* Snapshot formats: always a delta on some parent. */
        img->has_parent_ref = true;
        snprintf(img->parent_name, sizeof(img->parent_name), "%s",
                 meta.parent);
    }
    return 0;
}

static int vmdk_open(struct image *img, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    uint8_t head[16];

    vmdk_gt_cache_init(&p->gtc);
    p->desc.parent_cid = VMDK_NO_PARENT_CID;
    size_t hl = (size_t)min_u64(sizeof(head), img->file.size);
    if (df_file_pread(&img->file, head, hl, 0, err) < 0)
        return -1;
    enum vmdk_kind kind = vmdk_sparse_kind(head, hl);
    int r = kind == VMDK_K_FLAT ? vmdk_open_descriptor(img, err)
                                : vmdk_open_binary(img, kind, err);
    if (r < 0)
        return -1;

    if (p->has_desc && p->desc.parent_hint) {
        /* VMware on Windows records C:\VMs\base.vmdk: only its last
         * component can name a file here (next to the child or in a
         * --parent-dir); the CID check still guards the match. */
        const char *hint = p->desc.parent_hint;
        const char *bs = strrchr(hint, '\\');
        img->has_parent_ref = true;
        snprintf(img->parent_name, sizeof(img->parent_name), "%s",
                 bs ? bs + 1 : hint);
    }
    bool compressed = false;
    uint64_t ctx_bytes = 0;
    for (size_t i = 0; i < p->n_ext; i++) {
        const struct vmdk_extent *e = &p->ext[i];
        if (!e->compressed)
            continue;
        compressed = true;
        ctx_bytes = max_u64(ctx_bytes, vmdk_sparse_span_cap(e) +
                                       2 * e->grain_bytes);
    }
    if (compressed)
        ctx_pool_init(&p->gpool, (unsigned)(VMDK_GCTX_BYTES / ctx_bytes),
                      vmdk_gctx_new, vmdk_gctx_free, NULL);
    if (p->has_desc) {
        image_set_prop(img, "create_type", "%s", p->desc.create_type);
        if (p->desc.has_cid) {
            image_set_prop(img, "cid", "%08" PRIx32, p->desc.cid);
            snprintf(img->layer_id, sizeof(img->layer_id),
                     "vmdk CID %08" PRIx32, p->desc.cid);
        }
        image_set_prop(img, "parent_cid", "%08" PRIx32, p->desc.parent_cid);
        if (p->desc.parent_cid != VMDK_NO_PARENT_CID)
            snprintf(img->parent_id, sizeof(img->parent_id),
                     "vmdk CID %08" PRIx32, p->desc.parent_cid);
    } else {
        image_set_prop(img, "create_type", "%s",
                       kind == VMDK_K_COWD ? "vmfsSparse"
                       : kind == VMDK_K_SESPARSE ? "seSparse"
                                                 : "monolithicSparse");
    }
    image_set_prop(img, "extents", "%zu", p->n_ext);
    if (compressed)
        image_set_prop(img, "compressed", "yes");
    return 0;
}

/* The extent holding virtual byte off (off < img->size). */
static struct vmdk_extent *vmdk_find(struct vmdk_priv *p, uint64_t off)
{
    size_t lo = 0, hi = p->n_ext;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->ext[mid].vstart <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &p->ext[lo];
}

/* Holes of a flat extent's file read as zeros: say so. */
static int vmdk_map_flat(struct image *img, const struct vmdk_extent *e,
                         uint64_t off, uint64_t len, struct extent_list *out,
                         struct df_error *err)
{
    uint64_t h = e->file_off + (off - e->vstart), hend = h + len;

    while (h < hend) {
        bool data;
        uint64_t next;
        df_file_data_run(e->file, h, hend, &data, &next);
        int r = extent_list_append(out, off, next - h,
                                   data ? EXT_DATA : EXT_ZERO, img->name,
                                   err);
        if (r)
            return r;
        off += next - h;
        h = next;
    }
    return 0;
}

static int vmdk_map(struct image *img, uint64_t off, uint64_t len,
                    struct extent_list *out, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    uint64_t end = off + len;
    struct vmdk_grain gr[VMDK_GRAINS_MAX];

    while (off < end) {
        const struct vmdk_extent *e = vmdk_find(p, off);
        uint64_t eend = min_u64(end, e->vstart + e->vlen);
        int r = 0;
        if (e->kind == VMDK_K_ZERO) {
            r = extent_list_append(out, off, eend - off, EXT_ZERO,
                                   img->name, err);
            off = eend;
        } else if (e->kind == VMDK_K_FLAT) {
            r = vmdk_map_flat(img, e, off, eend - off, out, err);
            off = eend;
        } else {
            uint64_t g = (off - e->vstart) / e->grain_bytes;
            uint64_t want = div_round_up(eend - e->vstart, e->grain_bytes) - g;
            struct df_error lerr;
            df_error_init(&lerr);
            size_t k = vmdk_sparse_grains(&p->gtc, e, g, want, gr,
                                          VMDK_GRAINS_MAX, &lerr);
            for (size_t i = 0; i < k && !r; i++) {
                g += gr[i].n;
                uint64_t stop = min_u64(eend, e->vstart +
                                        min_u64(g * e->grain_bytes, e->vlen));
                r = extent_list_append(out, off, stop - off, gr[i].state,
                                       img->name, err);
                off = stop;
            }
            if (!r && lerr.cat != DF_OK) {
                df_error_copy(err, &lerr);
                return -1;
            }
        }
        if (r)
            return r < 0 ? -1 : 0;
    }
    return 0;
}

/* One read call's pending I/O: its own, so threads share none of it. */
struct vmdk_rd {
    struct runs_batch run;      /* flat extents, plain grains */
    struct vmdk_zbatch zb;      /* compressed grains (zb.gc: lazily) */
};

static int vmdk_rd_flush(struct vmdk_rd *rd, struct df_error *err)
{
    if (vmdk_zbatch_flush(&rd->zb, err) < 0)
        return -1;
    return runs_batch_flush(&rd->run, err);
}

/*
 * Look the grains of [off, off+len) up a GT's worth at a time, then
 * queue their reads: host-contiguous plain grains become one pread,
 * compressed ones lying close together one pread and an inflate each.
 */
static int vmdk_read_sparse(struct image *img, struct vmdk_rd *rd,
                            struct vmdk_extent *e, uint8_t *buf,
                            uint64_t len, uint64_t off, struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    struct vmdk_grain gr[VMDK_GRAINS_MAX];

    while (len) {
        uint64_t rel = off - e->vstart;
        uint64_t g = rel / e->grain_bytes, in = rel % e->grain_bytes;
        struct df_error lerr;
        df_error_init(&lerr);
        size_t k = vmdk_sparse_grains(&p->gtc, e, g,
                                      div_round_up(in + len, e->grain_bytes),
                                      gr, VMDK_GRAINS_MAX, &lerr);
        for (size_t i = 0; i < k; i++) {
            uint64_t n = min_u64(len, gr[i].n * e->grain_bytes - in);
            int r = 0;
            if (gr[i].state != EXT_DATA) {
                memset(buf, 0, n);
            } else if (e->compressed) {
                if (!rd->zb.gc && !(rd->zb.gc = ctx_pool_take(&p->gpool)))
                    return df_io(err, e->file->name, ENOMEM,
                                 "cannot allocate grain buffer");
                r = vmdk_zbatch_add(&rd->zb, e, g, gr[i].host, buf,
                                    (size_t)in, (size_t)n, err);
            } else {
                r = runs_batch_add(&rd->run, runs_file_pread, e->file, buf,
                                   gr[i].host + in, (size_t)n, err);
            }
            if (r < 0)
                return -1;
            buf += n;
            off += n;
            len -= n;
            in = 0;
            g += gr[i].n;
        }
        if (lerr.cat != DF_OK) {
            /* The grains before it were read before it was looked up. */
            if (vmdk_rd_flush(rd, err) < 0)
                return -1;
            df_error_copy(err, &lerr);
            return -1;
        }
    }
    return 0;
}

static int vmdk_read(struct image *img, void *buf, size_t len, uint64_t off,
                     struct df_error *err)
{
    struct vmdk_priv *p = img->priv;
    struct vmdk_rd rd;
    uint8_t *b = buf;
    int ret = -1;

    rd.run.len = 0;
    rd.zb.gc = NULL;
    rd.zb.nz = 0;
    while (len) {
        struct vmdk_extent *e = vmdk_find(p, off);
        uint64_t n = min_u64(len, e->vstart + e->vlen - off);
        int r = 0;
        if (e->kind == VMDK_K_ZERO)
            memset(b, 0, n);
        else if (e->kind == VMDK_K_FLAT)
            r = runs_batch_add(&rd.run, runs_file_pread, e->file, b,
                               e->file_off + (off - e->vstart), (size_t)n,
                               err);
        else
            r = vmdk_read_sparse(img, &rd, e, b, n, off, err);
        if (r < 0)
            goto out;
        b += n;
        off += n;
        len -= n;
    }
    if (vmdk_rd_flush(&rd, err) < 0)
        goto out;
    ret = 0;
out:
    ctx_pool_give(&p->gpool, rd.zb.gc);
    return ret;
}

static int vmdk_check_parent(struct image *child, struct image *parent,
                             struct df_error *err)
{
    const struct vmdk_priv *c = child->priv, *pp = parent->priv;

    if (parent->drv != &vmdk_driver)
        return df_corrupt(err, child->name, -1, "parent %s is a %s image, "
                          "not vmdk", parent->name, parent->drv->name);
    if (c->has_desc) {
        if (!pp->has_desc || !pp->desc.has_cid)
            return df_corrupt(err, child->name, -1, "parent %s records no "
                              "CID to check parentCID %08" PRIx32
                              " against", parent->name, c->desc.parent_cid);
        if (pp->desc.cid != c->desc.parent_cid)
            return df_corrupt(err, child->name, -1, "parentCID %08" PRIx32
                              " does not match CID %08" PRIx32 " of %s "
                              "(the parent changed after the child was "
                              "made)", c->desc.parent_cid, pp->desc.cid,
                              parent->name);
    }
    if (parent->size != child->size)
        return df_corrupt(err, child->name, -1, "virtual size %" PRIu64
                          " differs from %" PRIu64 " of parent %s",
                          child->size, parent->size, parent->name);
    return 0;
}

static void vmdk_close(struct image *img)
{
    struct vmdk_priv *p = img->priv;

    for (size_t i = 0; i < p->n_ext; i++)
        free(p->ext[i].gd);
    free(p->ext);
    for (size_t i = 0; i < p->n_files; i++)
        df_file_close(&p->files[i]);
    free(p->files);
    vmdk_gt_cache_release(&p->gtc);
    ctx_pool_release(&p->gpool);
    vmdk_desc_release(&p->desc);
}

const struct image_driver vmdk_driver = {
    .name = "vmdk",
    .priv_size = sizeof(struct vmdk_priv),
    .caps = IMG_THREAD_SAFE,
    .probe = vmdk_probe,
    .open = vmdk_open,
    .map = vmdk_map,
    .read = vmdk_read,
    .check_parent = vmdk_check_parent,
    .close = vmdk_close,
};
