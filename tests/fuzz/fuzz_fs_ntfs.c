/*
 * fuzz_fs_ntfs.c: the NTFS used-block map (track/fs_ntfs.c, through
 * libntfs-3g and our device) on a raw disk assembled from the input,
 * the volume's region being the whole disk: open (boot sector, mount,
 * trust checks, $Bitmap), then used() over the region.  An NTFS volume
 * is mostly zeros, so the input describes the disk as fuzz_sized.h
 * reads it (u32le size, then offset/length/bytes records).  A map that
 * is returned must be inside the region, ascending and coalesced, start
 * with the boot sector, end with the backup boot sector, and sum to
 * used_bytes; a refusal must say why (a reason, or err for I/O).
 *
 * tests/fuzz/fs_ntfs_seeds.py writes the seed corpus (small mkntfs
 * volumes, clean and damaged).  libntfs-3g (not instrumented: coverage
 * is of our glue) leaks a little on some failed mounts; fuzz with
 * LSAN_OPTIONS=suppressions=tests/fuzz/fs_ntfs.lsan.supp.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_sized.h"
#include "fuzz_fs.h"
#include "image/image.h"
#include "track/fs.h"

#define FUZZ_NTFS_MAX (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    struct df_file f;
    struct image *img = NULL;
    struct df_error err;
    struct fs_why why;

    size_t blen = 0;
    uint8_t *buf = fuzz_sized_file(data, size, FUZZ_NTFS_MAX, &blen);
    if (!buf)
        return 0;
    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", buf, blen);
    if (image_open_file(&f, "fuzz", "fuzz", &opts, &img, &err) < 0) {
        free(buf);
        return 0;
    }
    uint64_t len = img->size;
    struct used_map *um = fs_ntfs_open(img, 0, len, &why, &err);
    if (!um) {
        if (err.cat == DF_OK && !why.reason[0])
            abort();            /* a refusal must say why */
        image_close(img);
        free(buf);
        return 0;
    }
    fuzz_fs_check(um, len, &why, 512, true);
    image_close(img);
    free(buf);
    return 0;
}
