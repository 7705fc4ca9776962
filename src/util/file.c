/*
 * file.c: pread/pwrite that never return short, over fds or memory.
 */
#define _GNU_SOURCE
#include "file.h"
#include "interrupt.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

void df_file_init(struct df_file *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
}

static int file_stat(struct df_file *f, struct df_error *err)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return df_io(err, f->name, errno, "cannot stat");
    if (S_ISDIR(st.st_mode))
        return df_fail(err, DF_USAGE, 0, f->name, -1, "is a directory");
    f->is_regular = S_ISREG(st.st_mode);
    f->is_blockdev = S_ISBLK(st.st_mode);
    f->is_stream = !f->is_regular && !f->is_blockdev;
    f->dev = f->is_blockdev ? st.st_rdev : st.st_dev;
    f->ino = f->is_blockdev ? 0 : st.st_ino;
    if (f->is_regular) {
        f->size = (uint64_t)st.st_size;
    } else if (f->is_blockdev) {
        uint64_t sz = 0;
        if (ioctl(f->fd, BLKGETSIZE64, &sz) < 0)
            return df_io(err, f->name, errno, "cannot get device size");
        f->size = sz;
    } else {
        f->size = 0;
    }
    return 0;
}

int df_file_open(struct df_file *f, const char *path, int flags,
                 struct df_error *err)
{
    return df_file_openat(f, AT_FDCWD, path, flags, err);
}

int df_file_openat(struct df_file *f, int dirfd, const char *path, int flags,
                   struct df_error *err)
{
    df_file_init(f);
    snprintf(f->name, sizeof(f->name), "%s", path);
    f->fd = openat(dirfd, dirfd == AT_FDCWD ? path : path_basename(path),
                   flags | O_CLOEXEC, 0666);
    if (f->fd < 0) {
        int e = errno;
        if (e == EISDIR)
            return df_fail(err, DF_USAGE, 0, path, -1, "is a directory");
        return df_io(err, path, e, "cannot open");
    }
    f->owns_fd = true;
    f->writable = (flags & O_ACCMODE) != O_RDONLY;
    f->direct = (flags & O_DIRECT) != 0;
    if (file_stat(f, err) < 0) {
        df_file_close(f);
        return -1;
    }
    return 0;
}

int df_file_from_fd(struct df_file *f, int fd, const char *name,
                    bool owns_fd, struct df_error *err)
{
    df_file_init(f);
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->fd = fd;
    f->owns_fd = owns_fd;
    int fl = fcntl(fd, F_GETFL);
    f->writable = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
    f->direct = fl >= 0 && (fl & O_DIRECT);
    if (file_stat(f, err) < 0) {
        f->owns_fd = false;
        f->fd = -1;
        return -1;
    }
    return 0;
}

void df_file_init_mem(struct df_file *f, const char *name, const void *mem,
                      size_t size)
{
    df_file_init(f);
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->mem = mem;
    f->size = size;
    f->is_regular = true;
}

void df_file_close(struct df_file *f)
{
    if (f->fd >= 0 && f->owns_fd)
        close(f->fd);
    f->fd = -1;
    f->mem = NULL;
}

int df_file_pread(struct df_file *f, void *buf, size_t len, uint64_t off,
                  struct df_error *err)
{
    if (off > f->size || len > f->size - off)
        return df_corrupt(err, f->name, (int64_t)off,
                          "truncated: %zu bytes wanted, file ends at %llu",
                          len, (unsigned long long)f->size);
    if (f->mem) {
        memcpy(buf, f->mem + off, len);
        return 0;
    }
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(f->fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return df_fail(err, DF_IO, errno, f->name, (int64_t)off,
                           "read failed");
        }
        if (r == 0)
            return df_corrupt(err, f->name, (int64_t)off,
                              "truncated: file ended while reading");
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return 0;
}

int df_file_pread_zfill(struct df_file *f, void *buf, size_t len,
                        uint64_t off, struct df_error *err)
{
    size_t have = 0;
    if (off < f->size)
        have = f->size - off < len ? (size_t)(f->size - off) : len;
    if (have && df_file_pread(f, buf, have, off, err) < 0)
        return -1;
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}

int df_file_pwrite(struct df_file *f, const void *buf, size_t len,
                   uint64_t off, struct df_error *err)
{
    const uint8_t *p = buf;
    if (f->fd < 0)
        return df_io(err, f->name, EBADF, "not open for writing");
    while (len) {
        ssize_t r = pwrite(f->fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return df_fail(err, DF_IO, errno, f->name, (int64_t)off,
                           "write failed");
        }
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    if (f->is_regular && off > f->size)
        f->size = off;
    return 0;
}

int df_file_clone_range(struct df_file *f, uint64_t off,
                        const struct df_file *src, uint64_t src_off,
                        uint64_t len)
{
    struct file_clone_range r = {
        .src_fd = src->fd, .src_offset = src_off, .src_length = len,
        .dest_offset = off,
    };
    if (f->fd < 0 || src->fd < 0 || len == 0)
        return 1;
    for (;;) {
        if (ioctl(f->fd, FICLONERANGE, &r) == 0)
            return 0;
        if (errno != EINTR)
            return 1;
    }
}

int df_file_copy_range(struct df_file *f, uint64_t off,
                       const struct df_file *src, uint64_t src_off,
                       uint64_t len, struct df_error *err)
{
    uint64_t done = 0;
    if (f->fd < 0 || src->fd < 0)
        return 1;
    while (done < len) {
        loff_t in = (loff_t)(src_off + done), out = (loff_t)(off + done);
        size_t n = (size_t)(len - done < (1u << 30) ? len - done : 1u << 30);
        ssize_t r = copy_file_range(src->fd, &in, f->fd, &out, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && done == 0 &&
            (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
             errno == ENOSYS))
            return 1;
        if (r < 0)
            return df_fail(err, DF_IO, errno, f->name, (int64_t)(off + done),
                           "copy from %s failed", src->name);
        if (r == 0)
            return df_corrupt(err, src->name, (int64_t)(src_off + done),
                              "truncated: file ended while reading");
        done += (uint64_t)r;
    }
    if (f->is_regular && off + len > f->size)
        f->size = off + len;
    return 0;
}

long df_file_read_stream(struct df_file *f, void *buf, size_t len,
                         struct df_error *err)
{
    size_t got = 0;
    if (f->unread_len) {
        got = f->unread_len < len ? f->unread_len : len;
        memcpy(buf, f->unread, got);
        f->unread += got;
        f->unread_len -= got;
    }
    while (got < len) {
        ssize_t r = read(f->fd, (uint8_t *)buf + got, len - got);
        if (r < 0) {
            if (errno == EINTR && interrupt_check(err) < 0)
                return -1;              /* Ctrl-C while a pipe is idle */
            if (errno == EINTR)
                continue;
            return df_io(err, f->name, errno, "read failed");
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

int df_file_write_stream(struct df_file *f, const void *buf, size_t len,
                         struct df_error *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = write(f->fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return df_io(err, f->name, errno, "write failed");
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

void path_dirname(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, len, ".");
    } else if (slash == path) {
        snprintf(dir, len, "/");
    } else {
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
    }
}

int path_join(char *out, size_t len, const char *dir, const char *name)
{
    int w;
    if (name[0] == '/' || !dir[0] || !strcmp(dir, "."))
        w = snprintf(out, len, "%s", name);
    else
        w = snprintf(out, len, "%s/%s", dir, name);
    return (w < 0 || (size_t)w >= len) ? -1 : 0;
}

const char *path_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void df_file_data_run(const struct df_file *f, uint64_t off, uint64_t end,
                      bool *is_data, uint64_t *run_end)
{
    *is_data = true;
    *run_end = end;
    if (f->fd < 0 || !f->is_regular)
        return;
    off_t d = lseek(f->fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        /* ENXIO: only a hole till EOF; else no SEEK_DATA: all data. */
        *is_data = errno != ENXIO;
        return;
    }
    if ((uint64_t)d > off) {
        *is_data = false;
        *run_end = (uint64_t)d < end ? (uint64_t)d : end;
        return;
    }
    off_t h = lseek(f->fd, (off_t)off, SEEK_HOLE);
    if (h > 0 && (uint64_t)h > off && (uint64_t)h < end)
        *run_end = (uint64_t)h;
}

static int state_dir_open_how(const char *dir, bool create,
                              struct df_error *err)
{
    struct stat st;
    if (!dir || !dir[0])
        dir = getenv("DISKFERRY_STATE_DIR");
    if (!dir || !dir[0])
        dir = DF_STATE_DIR;
    if (!create && lstat(dir, &st) < 0)
        return df_io(err, dir, errno, "no state directory");
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
        return df_io(err, dir, errno, "cannot create the state directory");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            return df_refuse(err, dir, "refusing to use the state "
                             "directory: %s", lstat(dir, &st) == 0 &&
                             S_ISLNK(st.st_mode) ? "it is a symlink"
                                                 : "not a directory");
        return df_io(err, dir, e, "cannot open the state directory");
    }
    const char *why = NULL;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return df_io(err, dir, e, "cannot stat the state directory");
    }
    if (st.st_uid != geteuid())
        why = "not owned by this user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        why = "writable by group or others";
    if (why) {
        close(fd);
        return df_refuse(err, dir, "refusing to use the state directory: "
                         "%s", why);
    }
    return fd;
}

int state_dir_open(const char *dir, struct df_error *err)
{
    return state_dir_open_how(dir, true, err);
}

int state_dir_open_existing(const char *dir, struct df_error *err)
{
    return state_dir_open_how(dir, false, err);
}

int fd_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int fd_wait(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int r;
    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    return r > 0 ? 0 : -1;
}

int read_small_file(const char *path, char *buf, size_t len)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, len - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}
