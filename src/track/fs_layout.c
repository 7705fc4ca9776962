/*
 * fs_layout.c: the regions of a disk, the filesystem in each, and the
 * disk's used map (fs.h, fs_layout_read).
 *
 * Invariants:
 *  1. The used map names every byte the copy must not skip: everything
 *     outside a trusted filesystem, and inside one what it uses.  A
 *     region is free only when its filesystem was opened and trusted.
 *  2. Regions do not overlap (parts_read refuses tables that do); the
 *     map is built in disk order from the regions sorted by offset.
 *  3. Nothing here fails a copy but I/O errors and memory: a table or a
 *     filesystem that does not parse leaves its bytes used.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define PROBE_LEN 4096u

const char *fs_kind_name(enum fs_kind k)
{
    switch (k) {
    case FS_EXT: return "ext";
    case FS_NTFS: return "ntfs";
    case FS_XFS: return "xfs";
    case FS_SWAP: return "swap";
    default: return "none";
    }
}

/* The filesystem whose signature the first bytes of a region carry. */
static enum fs_kind probe(const uint8_t *b, size_t n)
{
    if (n >= 0x43a && get_le16(b + 0x438) == 0xef53)
        return FS_EXT;
    if (n >= 4 && !memcmp(b, "XFSB", 4))
        return FS_XFS;
    if (n >= 11 && !memcmp(b + 3, "NTFS    ", 8))
        return FS_NTFS;
    if (n >= 4096 && (!memcmp(b + 4086, "SWAPSPACE2", 10) ||
                      !memcmp(b + 4086, "SWAP-SPACE", 10) ||
                      !memcmp(b + 4086, "S1SUSPEND", 9)))
        return FS_SWAP;
    return FS_NONE;
}

/* A swap area with larger pages keeps its signature further in: let
 * fs_swap_open look for it when the 4 KiB probe found none. */
static bool maybe_swap(const struct part *p)
{
    return strstr(p->type, "0x82") || strstr(p->type, "0657FD6D");
}

static struct used_map *open_kind(enum fs_kind k, struct image *img,
                                  const struct part *p, struct fs_why *why,
                                  struct df_error *err)
{
    switch (k) {
    case FS_EXT: return fs_ext_open(img, p->off, p->len, why, err);
    case FS_XFS: return fs_xfs_open(img, p->off, p->len, why, err);
    case FS_SWAP: return fs_swap_open(img, p->off, p->len, why, err);
    case FS_NTFS: return fs_ntfs_open(img, p->off, p->len, why, err);
    default: return NULL;
    }
}

static int region_cmp(const void *a, const void *b)
{
    const struct fs_region *x = a, *y = b;
    return x->part.off < y->part.off ? -1 : x->part.off > y->part.off;
}

/* Append [a, b) as used (merging with the last range): 0, 1 when the
 * list is full, -1. */
static int add_used(struct extent_list *l, uint64_t a, uint64_t b,
                    struct df_error *err)
{
    if (a >= b)
        return 0;
    return extent_list_append(l, a, b - a, EXT_DATA, "used map", err);
}

/* Open region r's filesystem; its used ranges into *um (NULL: all of
 * it is used). */
static int region_open(struct image *img, struct fs_region *r,
                       struct used_map **um, struct df_error *err)
{
    uint8_t *b = malloc(PROBE_LEN);
    size_t n = (size_t)min_u64(PROBE_LEN, r->part.len);
    *um = NULL;
    if (!b)
        return df_io(err, img->name, ENOMEM, "cannot probe the filesystems");
    int rc = image_read(img, b, n, r->part.off, err);
    if (rc == 0) {
        r->kind = probe(b, n);
        if (r->kind == FS_NONE && maybe_swap(&r->part))
            r->kind = FS_SWAP;
    }
    free(b);
    if (rc < 0 || r->kind == FS_NONE)
        return rc;
    *um = open_kind(r->kind, img, &r->part, &r->why, err);
    if (!*um && err->cat != DF_OK)
        return -1;
    r->trusted = *um != NULL;
    if (!r->trusted && !r->why.reason[0])
        snprintf(r->why.reason, sizeof(r->why.reason), "not understood");
    return 0;
}

int fs_layout_read(struct image *img, struct fs_layout *l,
                   struct df_error *err)
{
    struct extent_list used, q;
    unsigned n = 0;
    uint64_t at = 0;
    int ret = -1;

    memset(l, 0, sizeof(*l));
    l->size = img->size;
    extent_list_init(&used, EXTENT_LIST_DEFAULT_CAP);
    extent_list_init(&q, EXTENT_LIST_DEFAULT_CAP);
    struct part *pv = calloc(PARTS_MAX, sizeof(*pv));
    if (!pv) {
        df_io(err, img->name, ENOMEM, "cannot read the partition table");
        goto out;
    }
    if (parts_read(img, pv, &n, err) < 0) {
        if (err->cat == DF_IO)
            goto out;
        /* A table that does not parse: everything is used. */
        snprintf(l->table_error, sizeof(l->table_error), "%s", err->msg);
        df_error_reset(err);
        n = 0;
    }
    for (unsigned i = 0; i < n; i++)
        l->v[i].part = pv[i];
    l->n = n;
    qsort(l->v, l->n, sizeof(l->v[0]), region_cmp);
    for (unsigned i = 0; i < l->n; i++) {
        struct fs_region *r = &l->v[i];
        struct used_map *um;
        if (region_open(img, r, &um, err) < 0)
            goto out;
        if (!um)
            continue;
        extent_list_clear(&q);
        int rc = um->used(um, r->part.off, r->part.len, &q, err);
        used_map_close(um);
        if (rc < 0)
            goto out;
        if (rc == 1) {          /* too fragmented to hold: copy it all */
            r->trusted = false;
            snprintf(r->why.reason, sizeof(r->why.reason),
                     "too fragmented to map");
            continue;
        }
        rc = add_used(&used, at, r->part.off, err);
        for (size_t k = 0; rc == 0 && k < q.n; k++)
            rc = add_used(&used, q.v[k].off, q.v[k].off + q.v[k].len, err);
        if (rc < 0)
            goto out;
        if (rc == 1)
            goto full;
        at = r->part.off + r->part.len;
    }
    if (at == 0)                /* nothing trusted: no map at all */
        goto done;
    int rc = add_used(&used, at, img->size, err);
    if (rc < 0)
        goto out;
    if (rc == 1)
        goto full;
    l->free_bytes = img->size - extent_list_bytes(&used, EXT_DATA);
    l->used = used_map_from_list("filesystems", &used, err);
    if (!l->used)
        goto out;
    goto done;
full:
    /* the disk's map does not fit: nothing is skipped */
    for (unsigned i = 0; i < l->n; i++)
        if (l->v[i].trusted) {
            l->v[i].trusted = false;
            snprintf(l->v[i].why.reason, sizeof(l->v[i].why.reason),
                     "too fragmented to map");
        }
done:
    ret = 0;
out:
    free(pv);
    extent_list_release(&used);
    extent_list_release(&q);
    return ret;
}

void fs_layout_release(struct fs_layout *l)
{
    used_map_close(l->used);
    l->used = NULL;
}

enum fs_kind fs_layout_kind_at(const struct fs_layout *l, uint64_t off)
{
    for (unsigned i = 0; i < l->n; i++)
        if (off >= l->v[i].part.off && off - l->v[i].part.off <
                                           l->v[i].part.len)
            return l->v[i].trusted ? l->v[i].kind : FS_NONE;
    return FS_NONE;
}
