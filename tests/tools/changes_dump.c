/*
 * changes_dump.c: test tool: open a change source through the library
 * and print the ranges it names over a disk of SIZE bytes, one "off len"
 * line each (bytes, decimal).  On failure it prints the error as the CLI
 * would and exits with its category.
 *
 *   changes_dump SPEC SIZE
 *
 * SPEC, for now:
 *   lvm-thin:META,OLD,NEW     lvm_thin_open (META may hold commas: the
 *                             last two fields are the ids)
 *
 * NEEDSWORK: the spec is parsed here until the library parses
 * `sync --changes SPEC` itself; then this calls that.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "track/track.h"
#include "util/size.h"

/* A plain decimal u64 (no sign, no unit), or -1. */
static int parse_id(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' ||
            __builtin_mul_overflow(x, 10, &x) ||
            __builtin_add_overflow(x, (uint64_t)(s[i] - '0'), &x))
            return -1;
    }
    *v = x;
    return 0;
}

static struct change_source *open_spec(const char *spec, uint64_t size,
                                       struct df_error *err)
{
    static const char thin[] = "lvm-thin:";
    if (!strncmp(spec, thin, strlen(thin))) {
        const char *meta = spec + strlen(thin);
        const char *c2 = strrchr(meta, ',');
        const char *c1 = NULL;
        for (const char *q = meta; c2 && q < c2; q++)
            if (*q == ',')
                c1 = q;
        uint64_t old_id, new_id;
        if (!c1 || c1 == meta ||
            parse_id(c1 + 1, (size_t)(c2 - c1 - 1), &old_id) < 0 ||
            parse_id(c2 + 1, strlen(c2 + 1), &new_id) < 0) {
            df_usage(err, "%s: expected lvm-thin:META,OLD,NEW", spec);
            return NULL;
        }
        char *path = strndup(meta, (size_t)(c1 - meta));
        if (!path) {
            df_usage(err, "out of memory");
            return NULL;
        }
        struct change_source *cs = lvm_thin_open(path, old_id, new_id, size,
                                                 err);
        free(path);
        return cs;
    }
    df_usage(err, "%s: unknown change source", spec);
    return NULL;
}

int main(int argc, char **argv)
{
    struct df_error err;
    struct extent_list l;
    uint64_t size, off = 0;
    char msg[sizeof(err.msg) + sizeof(err.what) + 64];
    int rc = 0;

    if (argc != 3 || size_parse(argv[2], &size) < 0) {
        fprintf(stderr, "usage: changes_dump SPEC SIZE\n");
        return 2;
    }
    df_error_init(&err);
    extent_list_init(&l, 1024);
    struct change_source *cs = open_spec(argv[1], size, &err);
    if (!cs)
        goto fail;
    while (off < size) {
        extent_list_clear(&l);
        int r = cs->changed(cs, off, size - off, &l, &err);
        if (r < 0)
            goto fail;
        for (size_t i = 0; i < l.n; i++)
            printf("%" PRIu64 " %" PRIu64 "\n", l.v[i].off, l.v[i].len);
        if (r == 0)
            break;
        off = extent_list_end(&l, size);
    }
    goto out;
fail:
    df_error_format(&err, msg, sizeof(msg));
    fprintf(stderr, "changes_dump: %s\n", msg);
    rc = (int)err.cat;
out:
    change_source_close(cs);
    extent_list_release(&l);
    return rc;
}
