/*
 * fuzz_xfs.c: the XFS used-block reader (track/fs_xfs.h) and the swap
 * reader (fs_swap_open) on hostile disks.
 *
 * An input describes a sparse disk: a u64 big-endian size (clipped to
 * FUZZ_DISK_MAX), then chunks of { u64 be offset, u32 be length, bytes };
 * what no chunk covers reads as zeros.  A trusted answer must be an
 * ascending list of ranges inside the disk that sums to used_bytes; an
 * untrusted one must give a reason; an error is only ever I/O.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs_xfs.h"
#include "util/bytes.h"
#include "util/overflow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DISK_MAX (512ull << 20)
#define FUZZ_CHUNKS 64

struct chunk {
    uint64_t off;
    const uint8_t *p;
    uint32_t len;
};

struct sparse {
    uint64_t size;
    struct chunk c[FUZZ_CHUNKS];
    unsigned n;
};

static int sparse_read(void *ctx, void *buf, size_t len, uint64_t off,
                       struct df_error *err)
{
    struct sparse *s = ctx;
    if (!range_within(off, len, s->size))
        return df_io(err, "fuzz", 5, "read beyond the disk");
    memset(buf, 0, len);
    for (unsigned i = 0; i < s->n; i++) {
        const struct chunk *c = &s->c[i];
        if (!ranges_overlap(c->off, c->len, off, len))
            continue;
        uint64_t a = max_u64(c->off, off);
        uint64_t b = min_u64(c->off + c->len, off + len);
        memcpy((uint8_t *)buf + (a - off), c->p + (a - c->off), b - a);
    }
    return 0;
}

static void check(int r, const struct extent_list *l,
                  const struct fs_why *why, const struct df_error *err,
                  uint64_t size)
{
    if (r < 0) {
        if (err->cat != DF_IO)
            abort();
        return;
    }
    if (r == 1) {
        if (!why->reason[0] || l->n)
            abort();
        return;
    }
    uint64_t end = 0, sum = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct extent *e = &l->v[i];
        if (e->len == 0 || (i && e->off <= end) || e->off + e->len > size)
            abort();
        end = e->off + e->len;
        sum += e->len;
    }
    if (sum != why->used_bytes || why->reason[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sparse s;
    struct extent_list l;
    struct df_error err;
    struct fs_why why;

    if (size < 8)
        return 0;
    s.size = min_u64(get_be64(data), FUZZ_DISK_MAX);
    s.n = 0;
    for (size_t p = 8; p + 12 <= size && s.n < FUZZ_CHUNKS;) {
        uint64_t off = get_be64(data + p);
        uint32_t len = get_be32(data + p + 8);
        p += 12;
        if (len > size - p)
            len = (uint32_t)(size - p);
        if (off < s.size)
            s.c[s.n++] = (struct chunk){ off, data + p, len };
        p += len;
    }

    extent_list_init(&l, EXTENT_LIST_DEFAULT_CAP);
    df_error_init(&err);
    int r = xfs_used_ranges(sparse_read, &s, 0, s.size, &why, &l, &err);
    check(r, &l, &why, &err, s.size);
    if (getenv("FUZZ_XFS_VERBOSE"))     /* what each seed takes */
        fprintf(stderr, "xfs: %d %s (%zu ranges)\n", r, why.reason, l.n);
    extent_list_release(&l);

    /* swap, through the image layer: the first 64 KiB as a raw disk */
    struct image_open_opts opts = { .format = "raw", .no_parents = true };
    struct df_file f;
    struct image *img = NULL;
    uint8_t head[65536] = { 0 };
    sparse_read(&s, head, (size_t)min_u64(sizeof(head), s.size), 0, &err);
    df_file_init_mem(&f, "fuzz", head, (size_t)min_u64(sizeof(head), s.size));
    df_error_init(&err);
    if (image_open_file(&f, "fuzz", "fuzz", &opts, &img, &err) == 0) {
        struct used_map *um = fs_swap_open(img, 0, img->size, &why, &err);
        if (um) {
            if (why.used_bytes < 4096 || why.used_bytes > 65536)
                abort();
            um->close(um);
        } else if (!why.reason[0] && err.cat != DF_IO) {
            abort();
        }
        image_close(img);
    }
    return 0;
}
