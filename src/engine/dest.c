/*
 * dest.c: temporary names of new destinations (see dest.h).
 */
#define _GNU_SOURCE
#include "dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
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

/* Is name ".BASE.diskferry-" followed by DEST_TMP_HEX hex digits? */
static bool dest_is_tmp(const char *name, const char *base)
{
    size_t bl = strlen(base), tl = strlen(DEST_TMP_TAG);
    if (name[0] != '.' || strncmp(name + 1, base, bl) ||
        strncmp(name + 1 + bl, DEST_TMP_TAG, tl))
        return false;
    const char *hex = name + 1 + bl + tl;
    if (strlen(hex) != DEST_TMP_HEX)
        return false;
    return strspn(hex, "0123456789abcdef") == DEST_TMP_HEX;
}

void dest_clean_stale(int dirfd, const char *path, FILE *msgs)
{
    const char *base = path_basename(path);
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    while ((e = readdir(d))) {
        if (!dest_is_tmp(e->d_name, base))
            continue;
        int fd = openat(dirfd, e->d_name, O_RDONLY | O_NOFOLLOW |
                                              O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
            continue;
        /* Ours (a regular file of this user) and no live copy holds it. */
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            unlinkat(dirfd, e->d_name, 0) == 0 && msgs)
            fprintf(msgs, "diskferry: removed a stale temporary file %s "
                    "(an interrupted copy)\n", e->d_name);
        close(fd);
    }
    closedir(d);
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
            /* dest.h: locked while in use; never fails on a new file */
            flock((*img)->file.fd, LOCK_EX | LOCK_NB);
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
