/*
 * top_layer.c: `sync --changes top-layer`: a delta image (a qcow2
 * overlay, a VMDK child or delta, a VHD, VHDX or VDI differencing image)
 * names as changed every range it holds itself: its data, and its zero
 * clusters, which mask the parent.  What it leaves to its parent is
 * unchanged: DST holds the parent already (the sync proves that).
 *
 * The ranges are mapped once, at open, through the layer alone
 * (image_map_layer: EXT_PARENT is what the delta does not hold), so
 * metadata that does not parse fails before anything is written.
 */
#include <errno.h>
#include <stdlib.h>

#include "image/image.h"
#include "track/track.h"

struct change_source *top_layer_open(struct image *delta, uint64_t size,
                                     struct df_error *err)
{
    struct extent_list layer, held;
    struct change_source *cs = NULL;
    uint64_t off = 0;

    if (size > delta->size)
        size = delta->size;
    extent_list_init(&layer, 4096);
    extent_list_init(&held, EXTENT_LIST_DEFAULT_CAP);
    while (off < size) {
        extent_list_clear(&layer);
        if (image_map_layer(delta, off, size - off, &layer, err) < 0)
            goto out;
        if (!layer.n) {
            df_corrupt(err, delta->name, (int64_t)off, "the image maps "
                       "nothing at byte %llu", (unsigned long long)off);
            goto out;
        }
        for (size_t i = 0; i < layer.n; i++) {
            const struct extent *e = &layer.v[i];
            if (e->state == EXT_PARENT)
                continue;
            int r = extent_list_append(&held, e->off, e->len, EXT_DATA,
                                       delta->name, err);
            if (r < 0)
                goto out;
            if (r == 1) {
                df_io(err, delta->name, E2BIG, "--changes top-layer: more "
                      "ranges than a sync holds");
                goto out;
            }
        }
        off = extent_list_end(&layer, off);
    }
    cs = change_source_from_list("top-layer", &held, err);
out:
    extent_list_release(&layer);
    extent_list_release(&held);
    return cs;
}
