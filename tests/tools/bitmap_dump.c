/*
 * bitmap_dump.c: test tool for track/qcow2_bitmap.c on real images.
 *
 *   bitmap_dump [--cap N] IMAGE NAME [SIZE]
 *       the changed ranges of bitmap NAME, "off len" per line, asked of
 *       the change source over [0, SIZE) with an out list of at most N
 *       extents (default 1024: the caller's loop over a full list is
 *       taken too).  SIZE defaults to the header's virtual size.
 *   bitmap_dump --list IMAGE
 *       one line per bitmap: "NAME granularity_bits enabled|disabled
 *       STATE usable|unusable" (STATE as qcow2_bitmap_state, spaces
 *       as '-').
 *
 * On failure: "bitmap_dump: MESSAGE" on stderr, exit status the error
 * category (DF_CORRUPT = 5, DF_REFUSED = 3, DF_USAGE = 2).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "track/qcow2_bitmap.h"
#include "util/bytes.h"

static int fail(const struct df_error *err)
{
    char msg[PATH_MAX + 2048];
    df_error_format(err, msg, sizeof(msg));
    fprintf(stderr, "bitmap_dump: %s\n", msg);
    return err->cat;
}

static int list(const char *path)
{
    struct qcow2_bitmap_info *v;
    struct df_error err;
    size_t n;

    df_error_init(&err);
    if (qcow2_bitmap_list(path, &v, &n, &err) < 0)
        return fail(&err);
    for (size_t i = 0; i < n; i++) {
        char state[16];
        snprintf(state, sizeof(state), "%s", qcow2_bitmap_state(&v[i]));
        for (char *p = state; *p; p++)
            if (*p == ' ')
                *p = '-';
        printf("%s %u %s %s %s\n", v[i].name, v[i].granularity_bits,
               v[i].enabled ? "enabled" : "disabled", state,
               v[i].usable ? "usable" : "unusable");
    }
    qcow2_bitmap_list_free(v, n);
    return 0;
}

/* The virtual size in the qcow2 header (whole sectors), or 0. */
static uint64_t header_size(const char *path)
{
    uint8_t b[8];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t r = pread(fd, b, sizeof(b), 24);
    close(fd);
    return r == (ssize_t)sizeof(b) ? get_be64(b) / 512 * 512 : 0;
}

int main(int argc, char **argv)
{
    size_t cap = 1024;
    int i = 1;

    if (argc == 3 && !strcmp(argv[1], "--list"))
        return list(argv[2]);
    if (argc > 3 && !strcmp(argv[1], "--cap")) {
        cap = strtoul(argv[2], NULL, 10);
        i = 3;
    }
    if (argc - i < 2 || argc - i > 3 || cap == 0) {
        fprintf(stderr, "usage: bitmap_dump [--cap N] IMAGE NAME [SIZE] | "
                "--list IMAGE\n");
        return 2;
    }
    const char *path = argv[i], *name = argv[i + 1];
    uint64_t size = argc - i == 3 ? strtoull(argv[i + 2], NULL, 0)
                                  : header_size(path);
    struct df_error err;
    df_error_init(&err);
    struct change_source *cs = qcow2_bitmap_open(path, name, size, &err);
    if (!cs)
        return fail(&err);
    if (strcmp(cs->name, "bitmap") != 0) {
        fprintf(stderr, "bitmap_dump: change source named '%s'\n", cs->name);
        return 99;
    }
    struct extent_list l;
    uint64_t off = 0, last_end = 0;
    bool any = false;
    int rc = 0;
    extent_list_init(&l, cap);
    while (off < size) {
        extent_list_clear(&l);
        int r = cs->changed(cs, off, size - off, &l, &err);
        if (r < 0) {
            rc = fail(&err);
            break;
        }
        for (size_t k = 0; k < l.n; k++) {
            /* Ascending and coalesced, across calls too. */
            if (any && l.v[k].off <= last_end) {
                fprintf(stderr, "bitmap_dump: ranges not ascending and "
                        "coalesced at %" PRIu64 "\n", l.v[k].off);
                rc = 99;
            }
            any = true;
            printf("%" PRIu64 " %" PRIu64 "\n", l.v[k].off, l.v[k].len);
            last_end = l.v[k].off + l.v[k].len;
        }
        if (r == 0)
            break;
        off = extent_list_end(&l, size);
    }
    extent_list_release(&l);
    change_source_close(cs);
    return rc;
}
