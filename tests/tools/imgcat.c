/*
 * imgcat.c: test tool: open an image through the library (chain
 * included) and write its flattened content to stdout, or with --map
 * print its extents ("off len state" lines).  Tests compare its output
 * with `qemu-img convert -O raw` without going through the engine.
 *
 *   imgcat [--map] [--layer] [--no-parents] [-f FMT] [--parent-dir D] IMAGE
 *
 * --no-parents opens IMAGE alone (image_open_opts.no_parents): a child
 * then reads as its own layer, zeros where it defers to its parent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/image.h"
#include "util/overflow.h"

int main(int argc, char **argv)
{
    struct image_open_opts opts = { 0 };
    const char *dirs[16];
    bool map = false, layer = false;
    const char *path = NULL;
    struct df_error err;
    struct image *img = NULL;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--map"))
            map = true;
        else if (!strcmp(argv[i], "--layer"))
            layer = true;
        else if (!strcmp(argv[i], "--no-parents"))
            opts.no_parents = true;
        else if (!strcmp(argv[i], "-f") && i + 1 < argc)
            opts.format = argv[++i];
        else if (!strcmp(argv[i], "--parent-dir") && i + 1 < argc &&
                 opts.n_parent_dirs < 16)
            dirs[opts.n_parent_dirs++] = argv[++i];
        else
            path = argv[i];
    }
    opts.parent_dirs = dirs;
    if (!path) {
        fprintf(stderr, "usage: imgcat [--map] [--layer] [-f FMT] IMAGE\n");
        return 2;
    }
    df_error_init(&err);
    if (image_open(path, &opts, &img, &err) < 0)
        goto fail;
    if (map) {
        struct extent_list l;
        extent_list_init(&l, 0);
        int r = layer ? image_map_layer(img, 0, img->size, &l, &err)
                      : image_map(img, 0, img->size, &l, &err);
        if (r < 0) {
            extent_list_release(&l);
            goto fail;
        }
        for (size_t i = 0; i < l.n; i++)
            printf("%llu %llu %s\n", (unsigned long long)l.v[i].off,
                   (unsigned long long)l.v[i].len,
                   extent_state_name(l.v[i].state));
        extent_list_release(&l);
    } else {
        size_t bs = 1 << 20;
        char *buf = malloc(bs);
        for (uint64_t off = 0; off < img->size; off += bs) {
            size_t n = (size_t)min_u64(bs, img->size - off);
            if (image_read(img, buf, n, off, &err) < 0) {
                free(buf);
                goto fail;
            }
            if (fwrite(buf, 1, n, stdout) != n) {
                free(buf);
                return 4;
            }
        }
        free(buf);
    }
    image_close(img);
    return rc;
fail: {
        char msg[PATH_MAX + 512];
        df_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "imgcat: %s\n", msg);
        image_close(img);
        return err.cat;
    }
}
