/*
 * fs_ntfs.c: NTFS (fs.h).  Not read yet: an NTFS region is copied whole.
 */
#include <stdio.h>
#include <string.h>

#include "track/fs.h"

struct used_map *fs_ntfs_open(struct image *img, uint64_t off, uint64_t len,
                              struct fs_why *why, struct df_error *err)
{
    (void)img;
    (void)off;
    (void)len;
    (void)err;
    memset(why, 0, sizeof(*why));
    snprintf(why->fs, sizeof(why->fs), "ntfs");
    snprintf(why->reason, sizeof(why->reason), "NTFS is not read yet");
    return NULL;
}
