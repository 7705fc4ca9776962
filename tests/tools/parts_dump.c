/*
 * parts_dump.c: test tool: open an image through the library (chain
 * included) and print the regions parts_read names, one
 * "NUMBER OFF LEN TYPE" line each (bytes, decimal).  On failure it prints
 * the error as the CLI would and exits with its category.
 *
 *   parts_dump [-f FMT] IMAGE
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"

int main(int argc, char **argv)
{
    struct image_open_opts opts = { 0 };
    struct image *img = NULL;
    struct df_error err;
    static struct part v[PARTS_MAX];
    unsigned n = 0;
    char msg[sizeof(err.msg) + sizeof(err.what) + 64];
    const char *path = NULL;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-f") && i + 1 < argc)
            opts.format = argv[++i];
        else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: parts_dump [-f FMT] IMAGE\n");
        return 2;
    }
    df_error_init(&err);
    if (image_open(path, &opts, &img, &err) < 0 ||
        parts_read(img, v, &n, &err) < 0) {
        df_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "parts_dump: %s\n", msg);
        rc = (int)err.cat;
    }
    for (unsigned i = 0; i < n; i++)
        printf("%u %" PRIu64 " %" PRIu64 " %s\n", v[i].number, v[i].off,
               v[i].len, v[i].type);
    image_close(img);
    return rc;
}
