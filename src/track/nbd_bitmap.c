/*
 * nbd_bitmap.c: `sync --changes bitmap:NAME` on an NBD SRC: the dirty
 * bitmap NAME as the server exports it (qemu-nbd -B NAME: the meta
 * context qemu:dirty-bitmap:NAME, flag bit 0 dirty), read through block
 * status on SRC's own connection (its open asked for the context before
 * it connected: image_open_opts.nbd_bitmap).
 *
 * The ranges are read once, at open, in requests of at most 1 GiB that
 * the server may answer in part (each next one starts where the reply
 * ended), so a bad reply fails before anything is written.  A server
 * that does not offer the context (no -B, another name) is DF_REFUSED.
 * Past NBD_BITMAP_MAX_EXTENTS ranges the rest of the disk is named
 * changed whole: a superset, never a range left out.
 *
 * Unlike the qcow2 reader this cannot tell an enabled bitmap from a
 * disabled one: the server's export is trusted to be the image the
 * bitmap describes (QEMU's own backups export a frozen bitmap beside a
 * point-in-time image).
 */
#include "image/image.h"
#include "image/nbd.h"
#include "track/track.h"

#define NBD_BITMAP_MAX_EXTENTS EXTENT_LIST_DEFAULT_CAP

struct change_source *nbd_bitmap_open(struct image *img, uint64_t size,
                                      struct df_error *err)
{
    struct change_source *cs = NULL;
    struct extent_list l;
    uint64_t off = 0;

    if (size > img->size)
        size = img->size;
    extent_list_init(&l, NBD_BITMAP_MAX_EXTENTS);
    while (off < size) {
        int64_t n = nbd_image_dirty(img, off, size - off, &l, err);
        if (n < 0)
            goto out;
        if (n == 0) {
            /* Full: the last range runs to the end of the disk. */
            struct extent *e = &l.v[l.n - 1];
            e->len = size - e->off;
            break;
        }
        off += (uint64_t)n;
    }
    cs = change_source_from_list("bitmap", &l, err);
out:
    extent_list_release(&l);
    return cs;
}
