/*
 * file.h: the byte store under an image: a file descriptor (regular file
 * or block device) or a buffer in memory (fuzzing and unit tests).
 *
 * Drivers read their metadata with df_file_pread(), which either returns
 * every byte asked for or fails: a read that runs past the end of the
 * file is DF_CORRUPT ("truncated"), an errno is DF_IO.  No driver sees a
 * short read.
 */
#ifndef DF_FILE_H
#define DF_FILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct df_file {
    int fd;                 /* -1 when in memory or closed */
    const uint8_t *mem;     /* borrowed, not freed */
    uint64_t size;          /* bytes (block devices: BLKGETSIZE64) */
    bool is_blockdev;
    bool is_regular;
    bool is_stream;         /* pipe, socket or tty: no pread, no size */
    bool writable;
    bool owns_fd;
    bool direct;            /* opened O_DIRECT: aligned reads only (raw.c) */
    uint64_t dev;           /* st_dev, or st_rdev for block devices */
    uint64_t ino;
    /* streams: bytes read ahead (a sniffed head), returned by
     * df_file_read_stream before the fd's; borrowed */
    const uint8_t *unread;
    size_t unread_len;
    char name[PATH_MAX];    /* for messages */
};

void df_file_init(struct df_file *f);

/*
 * Open `path` with open(2) `flags` (O_CLOEXEC added).  Fails with
 * DF_IO naming the path, or DF_USAGE for a directory.
 */
int df_file_open(struct df_file *f, const char *path, int flags,
                 struct df_error *err);
/* As df_file_open, relative to the directory dirfd (AT_FDCWD: as
 * df_file_open; else only the last component of path is used, the rest
 * names it in messages). */
int df_file_openat(struct df_file *f, int dirfd, const char *path, int flags,
                   struct df_error *err);
/* Adopt an fd (e.g. 0 or 1); name is for messages. */
int df_file_from_fd(struct df_file *f, int fd, const char *name,
                    bool owns_fd, struct df_error *err);
/* A read-only file over memory the caller keeps alive. */
void df_file_init_mem(struct df_file *f, const char *name, const void *mem,
                      size_t size);
void df_file_close(struct df_file *f);

/* Exactly len bytes at off, or -1 (DF_CORRUPT past EOF, DF_IO errno). */
int df_file_pread(struct df_file *f, void *buf, size_t len, uint64_t off,
                  struct df_error *err);
/* As df_file_pread, but bytes past EOF read as zeros. */
int df_file_pread_zfill(struct df_file *f, void *buf, size_t len,
                        uint64_t off, struct df_error *err);
int df_file_pwrite(struct df_file *f, const void *buf, size_t len,
                   uint64_t off, struct df_error *err);
/*
 * Put len bytes at src_off of the file src at off in f without them
 * passing through this process (both regular files on descriptors).
 * df_file_clone_range: FICLONERANGE, f then shares src's blocks (the
 * file systems that reflink; off, src_off and len block-aligned, but
 * len may end at the end of both files): 0, or 1 when refused for any
 * reason (nothing changed): copy instead.
 * df_file_copy_range: copy_file_range(2), looping on short copies: 0;
 * 1 when the kernel cannot (other file systems, EXDEV, EINVAL,
 * EOPNOTSUPP, ENOSYS before any byte): write the bytes instead; -1 with
 * err (DF_IO naming f; DF_CORRUPT when src ended before off + len).
 */
int df_file_clone_range(struct df_file *f, uint64_t off,
                        const struct df_file *src, uint64_t src_off,
                        uint64_t len);
int df_file_copy_range(struct df_file *f, uint64_t off,
                       const struct df_file *src, uint64_t src_off,
                       uint64_t len, struct df_error *err);
/* Streams: read up to len; returns bytes read (0 at EOF) or -1. */
long df_file_read_stream(struct df_file *f, void *buf, size_t len,
                         struct df_error *err);
int df_file_write_stream(struct df_file *f, const void *buf, size_t len,
                         struct df_error *err);

/*
 * The run of data or hole that starts at off in a regular file, by
 * SEEK_DATA/SEEK_HOLE: *is_data, and *run_end (off < *run_end <= end).
 * Devices, memory and file systems without SEEK_DATA: all data.
 */
void df_file_data_run(const struct df_file *f, uint64_t off, uint64_t end,
                      bool *is_data, uint64_t *run_end);

/* Directory part of path into dir (".") for resolving relative names. */
void path_dirname(const char *path, char *dir, size_t len);
/* poll(2) fd for events up to timeout_ms (-1: for ever): 0 when ready,
 * -1 with errno (ETIMEDOUT). */
int fd_wait(int fd, short events, int timeout_ms);
/* write() all of buf to fd (a pipe, a new file), retrying on EINTR and
 * short writes: 0, or -1 with errno. */
int fd_write_all(int fd, const void *buf, size_t len);
/* A small sysfs or proc file into buf (NUL-terminated, trailing
 * newlines and blanks removed): 0, or -1 when it cannot be read. */
int read_small_file(const char *path, char *buf, size_t len);

/* Join dir and name unless name is absolute. Returns -1 if too long. */
int path_join(char *out, size_t len, const char *dir, const char *name);
/* Last path component (pointer into path). */
const char *path_basename(const char *path);

/*
 * diskferry's own state directory (resume journals of devices): dir, or
 * $DISKFERRY_STATE_DIR, or DF_STATE_DIR; created 0700 if absent.  An fd
 * on it (O_DIRECTORY), or -1: DF_REFUSED when it is a symlink, not a
 * directory, not owned by the effective user or writable by group or
 * others (anyone could then plant names in it), DF_IO otherwise.
 */
#define DF_STATE_DIR "/var/lib/diskferry"
int state_dir_open(const char *dir, struct df_error *err);
/* As state_dir_open, but a directory that does not exist is not made:
 * -1 with DF_IO (ENOENT) then (a dry run leaves no trace). */
int state_dir_open_existing(const char *dir, struct df_error *err);

#endif
