/*
 * fuzz_fs_ext.c: the ext2/3/4 used-block map (track/fs_ext.c, through
 * libext2fs and our io manager) on a raw disk that is the input, the
 * filesystem's region being the whole disk: open (superblock, features,
 * descriptors, bitmaps, counts), then used() over the region.  A map
 * that is returned must be inside the region, ascending and coalesced,
 * start with the boot block and superblock, and sum to used_bytes; a
 * refusal must say why (a reason, or err for I/O).
 *
 * tests/fuzz/fs_ext_seeds.py writes the seed corpus (small mke2fs
 * images, clean and damaged).
 */
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/overflow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    struct df_file f;
    struct image *img = NULL;
    struct df_error err;
    struct extent_list l;
    struct fs_why why;

    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", data, size);
    if (image_open_file(&f, "fuzz", "fuzz", &opts, &img, &err) < 0)
        return 0;
    uint64_t len = img->size;
    struct used_map *um = fs_ext_open(img, 0, len, &why, &err);
    if (!um) {
        if (err.cat == DF_OK && !why.reason[0])
            abort();            /* a refusal must say why */
        image_close(img);
        return 0;
    }
    if (why.reason[0])
        abort();
    extent_list_init(&l, 1u << 16);
    int rc = um->used(um, 0, len, &l, &err);
    if (rc < 0 || !l.n || l.v[0].off != 0 || l.v[0].len < 2048)
        abort();                /* the head is always named */
    uint64_t sum = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (!range_within(l.v[i].off, l.v[i].len, len) ||
            (i && l.v[i].off <= l.v[i - 1].off + l.v[i - 1].len))
            abort();            /* track.h: inside, ascending, coalesced */
        sum += l.v[i].len;
    }
    if (rc == 0 && sum != why.used_bytes)
        abort();
    extent_list_release(&l);
    used_map_close(um);
    image_close(img);
    return 0;
}
