/*
 * dest.c: temporary names of new destinations (see dest.h).
 */
#define _GNU_SOURCE
#include "dest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/file.h"

#define DEST_TMP_TAG ".diskferry-"
#define DEST_TMP_HEX 12

int dest_dir_open(const char *path, struct df_error *err)
{
    char dir[PATH_MAX];
    path_dirname(path, dir, sizeof(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return df_io(err, path, errno, "cannot open the directory");
    return fd;
}

int dest_tmp_create(int dirfd, const char *path, const char *fmt,
                    uint64_t size, const struct image_create_opts *copts,
                    struct image **img, char *tmp, size_t tmplen,
                    struct df_error *err)
{
    char dir[PATH_MAX];
    path_dirname(path, dir, sizeof(dir));
    for (unsigned i = 0; i < 16; i++) {
        uint64_t r;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            return df_io(err, path, errno, "cannot name a temporary file");
        if (snprintf(tmp, tmplen, "%s/.%s" DEST_TMP_TAG "%0*llx", dir,
                     path_basename(path), DEST_TMP_HEX,
                     (unsigned long long)(r & 0xffffffffffffull)) >=
            (int)tmplen)
            return df_fail(err, DF_USAGE, 0, path, -1, "path too long");
        if (image_create_at(dirfd, tmp, fmt, size, copts, img, err) == 0) {
            return 0;
        }
        if (err->cat != DF_REFUSED)     /* not "exists": a real error */
            break;
        df_error_reset(err);
    }
    if (err->cat == DF_OK)
        df_io(err, path, EEXIST, "cannot create a temporary file");
    if (err->what[0] && !strcmp(err->what, tmp))
        snprintf(err->what, sizeof(err->what), "%s", path);
    return -1;
}
