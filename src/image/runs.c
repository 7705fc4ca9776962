/*
 * runs.c: map() and read() over a driver's locate function (runs.h).
 */
#include "image/runs.h"

#include <string.h>

int runs_map(struct image *img, uint64_t off, uint64_t len,
             struct extent_list *out, runs_locate_fn locate,
             struct df_error *err)
{
    uint64_t end = off + len;
    while (off < end) {
        enum extent_state st;
        uint64_t run_end, foff = 0;
        if (locate(img, off, end, &st, &run_end, &foff, err) < 0)
            return -1;
        int r = extent_list_append(out, off, run_end - off, st, img->name,
                                   err);
        if (r)
            return r < 0 ? -1 : 0;
        off = run_end;
    }
    return 0;
}

int runs_read(struct image *img, void *buf, size_t len, uint64_t off,
              runs_locate_fn locate, struct df_error *err)
{
    uint8_t *p = buf;
    uint64_t end = off + len;
    while (off < end) {
        enum extent_state st;
        uint64_t run_end, foff = 0;
        if (locate(img, off, end, &st, &run_end, &foff, err) < 0)
            return -1;
        size_t n = (size_t)(run_end - off);
        if (st != EXT_DATA)
            memset(p, 0, n);
        else if (df_file_pread(&img->file, p, n, foff, err) < 0)
            return -1;
        p += n;
        off = run_end;
    }
    return 0;
}

int runs_file_pread(void *src, void *buf, size_t len, uint64_t off,
                    struct df_error *err)
{
    return df_file_pread(src, buf, len, off, err);
}

int runs_batch_flush(struct runs_batch *b, struct df_error *err)
{
    size_t len = b->len;

    b->len = 0;
    return len ? b->pread(b->src, b->dst, len, b->off, err) : 0;
}

int runs_batch_add(struct runs_batch *b, runs_pread_fn pread, void *src,
                   uint8_t *dst, uint64_t off, size_t len,
                   struct df_error *err)
{
    if (b->len && b->pread == pread && b->src == src &&
        b->dst + b->len == dst && b->off + b->len == off) {
        b->len += len;
        return 0;
    }
    if (runs_batch_flush(b, err) < 0)
        return -1;
    b->pread = pread;
    b->src = src;
    b->dst = dst;
    b->off = off;
    b->len = len;
    return 0;
}

int runs_host(struct image *img, uint64_t off, uint64_t len,
              uint64_t *file_off, runs_locate_fn locate,
              struct df_error *err)
{
    uint64_t a = off, end = off + len;
    while (a < end) {
        enum extent_state st;
        uint64_t run_end, fo;
        if (locate(img, a, end, &st, &run_end, &fo, err) < 0)
            return -1;
        if (st != EXT_DATA)
            return 0;
        if (a == off)
            *file_off = fo;
        else if (fo != *file_off + (a - off))
            return 0;
        a = run_end;
    }
    return 1;
}
