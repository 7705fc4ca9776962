/*
 * fuzz_qcow2_bitmap.c: the qcow2 dirty bitmap reader
 * (track/qcow2_bitmap.c) on a hostile file held in memory: list the
 * bitmaps, then open the first one listed and "b0" as change sources
 * over the header's size and ask for every changed range.  The answer
 * must lie inside the disk, ascending and coalesced.  The table
 * mutation (fuzz_tables.h) moves the directory, the first entry's
 * table and that table's first entries.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_tables.h"
#include "track/qcow2_bitmap.h"
#include "util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where the bitmaps extension's data starts, or 0. */
static size_t fuzz_bitmap_ext(const uint8_t *d, size_t size)
{
    if (size < 104 || get_be32(d + 4) != 3)
        return 0;
    size_t off = get_be32(d + 100);
    while (off <= size && size - off >= 8 && off < (1u << 21)) {
        uint32_t type = get_be32(d + off), len = get_be32(d + off + 4);
        if (type == 0 || len > size - off - 8)
            return 0;
        if (type == 0x23852875u)
            return len >= 24 ? off + 8 : 0;
        off += 8 + ((size_t)len + 7) / 8 * 8;
    }
    return 0;
}

static void fuzz_bitmap_list(const uint8_t *d, size_t size,
                             struct fuzz_fields *f)
{
    size_t ext = fuzz_bitmap_ext(d, size);
    if (size < 72)
        return;
    uint32_t cb = get_be32(d + 20);
    uint64_t cluster = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
    fuzz_field_add(f, 24, 8, true, 1, size);       /* virtual size */
    fuzz_mark_add(f, 0);
    fuzz_mark_add(f, cluster);
    if (!ext)
        return;
    fuzz_field_add(f, ext, 4, true, 1, size);      /* nb_bitmaps */
    fuzz_field_add(f, ext + 8, 8, true, 1, size);  /* directory size */
    fuzz_field_add(f, ext + 16, 8, true, 1, size); /* directory offset */
    uint64_t dir = get_be64(d + ext + 16);
    if (dir >= size || size - dir < 24)
        return;
    fuzz_field_add(f, (size_t)dir, 8, true, 1, size);      /* table */
    fuzz_field_add(f, (size_t)dir + 8, 4, true, 1, size);  /* entries */
    fuzz_field_add(f, (size_t)dir + 20, 4, true, 1, size); /* extra data */
    uint64_t tbl = get_be64(d + dir);
    for (unsigned i = 0; i < 4; i++)
        if (tbl < size && 8 * i + 8 <= size - tbl)
            fuzz_field_add(f, (size_t)tbl + 8 * i, 8, true, 1, size);
}

static void fuzz_bitmap_fix(uint8_t *d, size_t size)
{
    (void)d;
    (void)size;                 /* no checksums */
}

FUZZ_TABLES_MUTATOR(fuzz_bitmap_list, fuzz_bitmap_fix)

static void fuzz_bitmap_query(struct df_file *f, const char *name,
                              uint64_t size)
{
    struct df_error err;
    struct extent_list l;
    uint64_t off = 0, last = 0;
    bool any = false;

    df_error_init(&err);
    struct change_source *cs = qcow2_bitmap_open_file(f, name, size, &err);
    if (!cs)
        return;
    extent_list_init(&l, 64);
    while (off < size) {
        extent_list_clear(&l);
        int r = cs->changed(cs, off, size - off, &l, &err);
        if (r < 0)
            break;
        for (size_t i = 0; i < l.n; i++) {
            if ((any && l.v[i].off <= last) || l.v[i].off < off ||
                l.v[i].len > size - l.v[i].off)
                abort();        /* contract of track.h broken */
            any = true;
            last = l.v[i].off + l.v[i].len;
        }
        if (r == 0)
            break;
        off = extent_list_end(&l, size);
    }
    extent_list_release(&l);
    change_source_close(cs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct df_file f;
    struct df_error err;
    struct qcow2_bitmap_info *v = NULL;
    size_t n = 0;
    uint64_t vsize = size >= 32 ? get_be64(data + 24) / 512 * 512 : 0;

    df_file_init_mem(&f, "fuzz", data, size);
    df_error_init(&err);
    if (qcow2_bitmap_list_file(&f, &v, &n, &err) == 0 && n) {
        for (size_t i = 0; i < n; i++)
            if (!v[i].name || strlen(v[i].name) > v[i].name_len ||
                v[i].granularity_bits < 9 || v[i].granularity_bits > 31)
                abort();
        if (!memchr(v[0].name, 0, v[0].name_len))
            fuzz_bitmap_query(&f, v[0].name, vsize);
    }
    qcow2_bitmap_list_free(v, n);
    fuzz_bitmap_query(&f, "b0", vsize);
    return 0;
}
