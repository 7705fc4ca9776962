/*
 * fuzz_image.h: the body shared by the image fuzz targets: open one
 * layer of `format` over the input held in memory, map all of it, read
 * every data extent (bounded), close.  Any crash, leak, sanitizer report
 * or broken driver contract (assert) is a bug.
 */
#ifndef DF_FUZZ_IMAGE_H
#define DF_FUZZ_IMAGE_H

#include <stdint.h>
#include <stdlib.h>

#include "image/image.h"
#include "util/overflow.h"

#define FUZZ_READ_MAX (8u << 20)   /* bytes read per input, at most */

static inline int fuzz_image(const char *format, const uint8_t *data,
                             size_t size)
{
    struct image_open_opts opts = { .format = format, .no_parents = true };
    struct df_file f;
    struct image *img = NULL;
    struct df_error err;
    struct extent_list l;
    uint64_t budget = FUZZ_READ_MAX;

    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", data, size);
    if (image_open_file(&f, "fuzz", "fuzz", &opts, &img, &err) < 0)
        return 0;
    extent_list_init(&l, 4096);
    if (image_map_layer(img, 0, img->size, &l, &err) == 0) {
        uint8_t *buf = malloc(1 << 20);
        for (size_t i = 0; buf && i < l.n && budget; i++) {
            if (l.v[i].state == EXT_PARENT)
                continue;
            uint64_t len = min_u64(min_u64(l.v[i].len, 1 << 20), budget);
            budget -= len;
            df_error_init(&err);
            image_read(img, buf, (size_t)len, l.v[i].off, &err);
        }
        free(buf);
    }
    extent_list_release(&l);
    image_close(img);
    return 0;
}

#endif
