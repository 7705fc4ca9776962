/*
 * imgwrite.c: test tool: create a new image of format -O FMT from SRC
 * (any format the library reads) with sequential write()/zero() calls,
 * as the engine's sinks make them, flush it, then read it back through
 * the same handle and compare with SRC.  Tests check the result with
 * `qemu-img check` and `qemu-img compare` without going through the
 * engine.
 *
 *   imgwrite [-f FMT] [-O FMT] [-c] [--cluster-bits N] [--chunk BYTES]
 *            [--no-zero] [--flush-every BYTES] SRC DST
 *
 * -f reads SRC as FMT (needed to follow a chain) instead of probing.
 *
 * --chunk splits data extents into writes of that many bytes (odd
 * sizes exercise partial clusters); --no-zero skips zero() calls (ranges
 * never written must read as zeros); --flush-every flushes in between.
 * Exit code: the error category, or 7 when the read-back differs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "util/overflow.h"

struct imgwrite_opts {
    const char *fmt;
    struct image_create_opts copts;
    uint64_t chunk;
    uint64_t flush_every;
    bool no_zero;
};

static int imgwrite_copy(struct image *src, struct image *dst,
                         const struct imgwrite_opts *o, struct df_error *err)
{
    struct extent_list l;
    uint8_t *buf = malloc(o->chunk);
    uint64_t since_flush = 0;
    int ret = -1;

    extent_list_init(&l, 0);
    if (!buf || image_map(src, 0, src->size, &l, err) < 0)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        struct extent e = l.v[i];
        if (e.state != EXT_DATA) {
            if (!o->no_zero && image_zero(dst, e.off, e.len, err) < 0)
                goto out;
            continue;
        }
        for (uint64_t off = e.off; off < e.off + e.len;) {
            size_t n = (size_t)min_u64(o->chunk, e.off + e.len - off);
            if (image_read(src, buf, n, off, err) < 0 ||
                image_write(dst, buf, n, off, err) < 0)
                goto out;
            off += n;
            since_flush += n;
            if (o->flush_every && since_flush >= o->flush_every) {
                since_flush = 0;
                if (image_flush(dst, false, err) < 0)
                    goto out;
            }
        }
    }
    ret = image_flush(dst, true, err);
out:
    free(buf);
    extent_list_release(&l);
    return ret;
}

/* Does dst hold data in [off, off+len)?  -1 on error. */
static int imgwrite_has_data(struct image *dst, uint64_t off, uint64_t len,
                             struct df_error *err)
{
    struct extent_list l;
    extent_list_init(&l, 0);
    int r = image_map(dst, off, len, &l, err);
    if (r == 0)
        r = extent_list_bytes(&l, EXT_DATA) != 0;
    extent_list_release(&l);
    return r;
}

/*
 * Read dst back through the library: 0 same, 1 differs, -1 error.
 * Where src maps as zeros and dst stores no data, nothing is read.
 */
static int imgwrite_compare(struct image *src, struct image *dst,
                            struct df_error *err)
{
    size_t bs = 1 << 20;
    uint8_t *a = malloc(bs), *b = malloc(bs);
    struct extent_list l;
    int ret = -1;

    extent_list_init(&l, 0);
    if (!a || !b || image_map(src, 0, src->size, &l, err) < 0)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        struct extent e = l.v[i];
        if (e.state != EXT_DATA) {
            int r = imgwrite_has_data(dst, e.off, e.len, err);
            if (r < 0)
                goto out;
            if (!r)
                continue;
        }
        for (uint64_t off = e.off; off < e.off + e.len; off += bs) {
            size_t n = (size_t)min_u64(bs, e.off + e.len - off);
            if (image_read(src, a, n, off, err) < 0 ||
                image_read(dst, b, n, off, err) < 0)
                goto out;
            if (memcmp(a, b, n)) {
                fprintf(stderr, "imgwrite: read-back differs in [%llu, "
                        "+%zu)\n", (unsigned long long)off, n);
                ret = 1;
                goto out;
            }
        }
    }
    ret = 0;
out:
    extent_list_release(&l);
    free(a);
    free(b);
    return ret;
}

int main(int argc, char **argv)
{
    struct imgwrite_opts o = { .fmt = "qcow2", .chunk = 1 << 20 };
    const char *paths[2];
    int np = 0, rc = 0;
    struct df_error err;
    struct image *src = NULL, *dst = NULL;
    struct image_open_opts so = { 0 };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-f") && i + 1 < argc)
            so.format = argv[++i];
        else if (!strcmp(argv[i], "-O") && i + 1 < argc)
            o.fmt = argv[++i];
        else if (!strcmp(argv[i], "-c"))
            o.copts.compress = true;
        else if (!strcmp(argv[i], "--cluster-bits") && i + 1 < argc)
            o.copts.cluster_bits = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            o.chunk = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--flush-every") && i + 1 < argc)
            o.flush_every = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--no-zero"))
            o.no_zero = true;
        else if (np < 2)
            paths[np++] = argv[i];
    }
    if (np != 2 || !o.chunk) {
        fprintf(stderr, "usage: imgwrite [-f FMT] [-O FMT] [-c] [--cluster-bits N] "
                "[--chunk N] [--no-zero] [--flush-every N] SRC DST\n");
        return 2;
    }
    df_error_init(&err);
    if (image_open(paths[0], &so, &src, &err) < 0 ||
        image_create(paths[1], o.fmt, src->size, &o.copts, &dst, &err) < 0 ||
        imgwrite_copy(src, dst, &o, &err) < 0)
        goto fail;
    int r = imgwrite_compare(src, dst, &err);
    if (r < 0)
        goto fail;
    rc = r ? 7 : 0;
    image_close(dst);
    image_close(src);
    return rc;
fail: {
        char msg[PATH_MAX + 512];
        df_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "imgwrite: %s\n", msg);
        image_close(dst);
        image_close(src);
        return err.cat ? (int)err.cat : 1;
    }
}
