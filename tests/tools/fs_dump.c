/*
 * fs_dump.c: test tool: open the filesystem in a region of an image
 * (any format, probed) through the library and print the ranges its
 * used-block map names, one "used OFF LEN" line each (bytes, decimal,
 * in the disk's coordinates), then "used_bytes N"; or one line
 * "untrusted: REASON" when the filesystem is not trusted (exit 0 both).
 * On failure it prints the error as the CLI would and exits with its
 * category.
 *
 *   fs_dump ext|ntfs IMAGE [OFF LEN]      (default: the whole disk)
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/size.h"

int main(int argc, char **argv)
{
    struct df_error err;
    struct extent_list l;
    struct image *img = NULL;
    struct used_map *um = NULL;
    struct fs_why why;
    struct image_open_opts opts = { 0 };
    char msg[sizeof(err.msg) + sizeof(err.what) + 64];
    uint64_t off = 0, len = 0;
    int rc = 0;

    bool ntfs = argc > 1 && !strcmp(argv[1], "ntfs");
    if ((argc != 3 && argc != 5) || (strcmp(argv[1], "ext") && !ntfs) ||
        (argc == 5 && (size_parse(argv[3], &off) < 0 ||
                       size_parse(argv[4], &len) < 0))) {
        fprintf(stderr, "usage: fs_dump ext|ntfs IMAGE [OFF LEN]\n");
        return 2;
    }
    df_error_init(&err);
    extent_list_init(&l, 1024);
    if (image_open(argv[2], &opts, &img, &err) < 0)
        goto fail;
    if (argc == 3)
        len = img->size;
    um = ntfs ? fs_ntfs_open(img, off, len, &why, &err)
              : fs_ext_open(img, off, len, &why, &err);
    if (!um) {
        if (err.cat != DF_OK)
            goto fail;
        printf("untrusted: %s\nfs %s\n", why.reason, why.fs);
        goto out;
    }
    for (uint64_t at = off; at < off + len;) {
        extent_list_clear(&l);
        int r = um->used(um, at, off + len - at, &l, &err);
        if (r < 0)
            goto fail;
        for (size_t i = 0; i < l.n; i++)
            printf("used %" PRIu64 " %" PRIu64 "\n", l.v[i].off, l.v[i].len);
        if (r == 0)
            break;
        at = extent_list_end(&l, off + len);
    }
    printf("used_bytes %" PRIu64 "\nfs %s\n", why.used_bytes, why.fs);
    goto out;
fail:
    df_error_format(&err, msg, sizeof(msg));
    fprintf(stderr, "fs_dump: %s\n", msg);
    rc = (int)err.cat;
out:
    used_map_close(um);
    image_close(img);
    extent_list_release(&l);
    return rc;
}
