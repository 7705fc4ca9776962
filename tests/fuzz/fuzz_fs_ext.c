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

#include "fuzz_fs.h"
#include "image/image.h"
#include "track/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    struct df_file f;
    struct image *img = NULL;
    struct df_error err;
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
    fuzz_fs_check(um, len, &why, 2048, false);
    image_close(img);
    return 0;
}
