/*
 * fs_dump_xfs.c: test tool for track/fs_xfs.c and fs_swap.c on real
 * images.
 *
 *   fs_dump_xfs xfs|swap IMAGE [OFF LEN]
 *       "used OFF LEN" per range the map names over [OFF, OFF+LEN)
 *       (default: the whole image), asked through the used_map with a
 *       small out list (the caller's loop is taken too), then
 *       "used_bytes N"; or "untrusted: REASON" (exit 0 both).
 *
 * On failure: "fs_dump_xfs: MESSAGE" on stderr, exit status the error
 * category.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"

static int fail(const struct df_error *err)
{
    char msg[PATH_MAX + 2048];
    df_error_format(err, msg, sizeof(msg));
    fprintf(stderr, "fs_dump_xfs: %s\n", msg);
    return err->cat ? err->cat : 99;
}

int main(int argc, char **argv)
{
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    struct df_error err;
    struct image *img = NULL;
    struct fs_why why;

    if ((argc != 3 && argc != 5) ||
        (strcmp(argv[1], "xfs") && strcmp(argv[1], "swap"))) {
        fprintf(stderr, "usage: fs_dump_xfs xfs|swap IMAGE [OFF LEN]\n");
        return 2;
    }
    df_error_init(&err);
    if (image_open(argv[2], &opts, &img, &err) < 0)
        return fail(&err);
    uint64_t off = argc == 5 ? strtoull(argv[3], NULL, 0) : 0;
    uint64_t len = argc == 5 ? strtoull(argv[4], NULL, 0) : img->size;
    struct used_map *um = !strcmp(argv[1], "xfs")
        ? fs_xfs_open(img, off, len, &why, &err)
        : fs_swap_open(img, off, len, &why, &err);
    if (!um) {
        int rc = 0;
        if (err.cat)
            rc = fail(&err);
        else
            printf("untrusted: %s\n", why.reason);
        image_close(img);
        return rc;
    }
    struct extent_list l;
    uint64_t pos = off, end = off + len, sum = 0, last = 0;
    int rc = 0;
    extent_list_init(&l, 16);
    while (pos < end) {
        extent_list_clear(&l);
        int r = um->used(um, pos, end - pos, &l, &err);
        if (r < 0) {
            rc = fail(&err);
            break;
        }
        for (size_t k = 0; k < l.n; k++) {
            if (l.v[k].off < last || l.v[k].off < off ||
                l.v[k].off + l.v[k].len > end) {
                fprintf(stderr, "fs_dump_xfs: range %" PRIu64 " out of "
                        "order or outside\n", l.v[k].off);
                rc = 99;
            }
            printf("used %" PRIu64 " %" PRIu64 "\n", l.v[k].off, l.v[k].len);
            sum += l.v[k].len;
            last = l.v[k].off + l.v[k].len;
        }
        if (r == 0)
            break;
        pos = extent_list_end(&l, end);
    }
    if (!rc && sum != why.used_bytes) {
        fprintf(stderr, "fs_dump_xfs: used_bytes %" PRIu64 " but ranges "
                "sum to %" PRIu64 "\n", why.used_bytes, sum);
        rc = 99;
    }
    printf("used_bytes %" PRIu64 "\n", sum);
    extent_list_release(&l);
    um->close(um);
    image_close(img);
    return rc;
}
