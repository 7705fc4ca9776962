/*
 * sink_image.c: the local sinks: an image (raw file or block device, a
 * new qcow2) and a raw byte stream (stdout).
 *
 * The image sink relies on sink.h contract 2 for speed: a destination
 * created by us reads as zeros, so zero runs cost nothing; on an
 * existing destination they become punched holes or BLKZEROOUT (raw.c),
 * never written zero bytes unless the storage offers nothing better.
 *
 * A raw regular file offers copy_from (sink.h): a data run of a raw
 * source file is shared with it (FICLONERANGE, where the file system
 * reflinks) or copied by the kernel (copy_file_range); each step down
 * is taken once and remembered (copy_how, whichever thread calls), down
 * to "not here", when the engine writes the bytes itself.  A reflink
 * refused on a range that is not block-aligned (the end of an odd-sized
 * disk) steps down for that range only.  Before copy_file_range the
 * run's blocks are allocated in one fallocate call: ext4 then fills
 * unwritten extents instead of reserving blocks for delayed allocation
 * page by page (1 GiB in 1 MiB runs: 0.27 s instead of 0.37 s); where
 * refused it is not asked again, and failing, it only costs the try.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/job.h"
#include "util/overflow.h"
#include "util/size.h"

enum sink_copy_how { SINK_COPY_CLONE, SINK_COPY_RANGE, SINK_COPY_NONE };

struct sink_image {
    struct image *img;
    bool growing;               /* size unknown until finish */
    int copy_how;               /* enum sink_copy_how (atomic) */
    /* copy_from: the file system cannot fallocate (atomic) */
    bool no_prealloc;
};

/* Only a stream (its size unknown until its end) can run past a
 * destination of fixed size: a source image was checked against it. */
static int sink_image_past_end(struct sink *s, uint64_t off, uint64_t len,
                               struct df_error *err)
{
    struct sink_image *si = s->priv;
    char sz[32];
    if (off <= si->img->size && len <= si->img->size - off)
        return 0;
    size_format(si->img->size, sz, sizeof(sz));
    return df_io(err, s->name, 0, "the stream is longer than the "
                 "destination (%s)", sz);
}

static int sink_image_write(struct sink *s, uint64_t off, const void *buf,
                            size_t len, struct df_error *err)
{
    struct sink_image *si = s->priv;
    if (sink_image_past_end(s, off, len, err) < 0 ||
        image_write(si->img, buf, len, off, err) < 0)
        return -1;
    __atomic_fetch_add(&s->bytes_written, len, __ATOMIC_RELAXED);
    return 0;
}

/* The block size below which a refused reflink may be the range's, not
 * the file system's, fault. */
#define SINK_CLONE_ALIGN 4096u

static int sink_image_copy_from(struct sink *s, uint64_t off,
                                const struct df_file *src, uint64_t src_off,
                                size_t len, struct df_error *err)
{
    struct sink_image *si = s->priv;
    int how = __atomic_load_n(&si->copy_how, __ATOMIC_RELAXED);
    if (how == SINK_COPY_NONE)
        return 1;
    if (!si->img->writable)
        return df_io(err, si->img->name, EBADF, "not open for writing");
    if (sink_image_past_end(s, off, len, err) < 0)
        return -1;
    if (how == SINK_COPY_CLONE) {
        if (df_file_clone_range(&si->img->file, off, src, src_off,
                                len) == 0) {
            __atomic_fetch_add(&s->bytes_written, len, __ATOMIC_RELAXED);
            __atomic_fetch_add(&s->bytes_cloned, len, __ATOMIC_RELAXED);
            return 0;
        }
        if ((off | src_off | len) % SINK_CLONE_ALIGN == 0)
            __atomic_store_n(&si->copy_how, SINK_COPY_RANGE,
                             __ATOMIC_RELAXED);
    }
    if (!__atomic_load_n(&si->no_prealloc, __ATOMIC_RELAXED) &&
        fallocate(si->img->file.fd, FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0 &&
        (errno == EOPNOTSUPP || errno == ENOSYS))
        __atomic_store_n(&si->no_prealloc, true, __ATOMIC_RELAXED);
    int r = df_file_copy_range(&si->img->file, off, src, src_off, len, err);
    if (r == 1) {
        __atomic_store_n(&si->copy_how, SINK_COPY_NONE, __ATOMIC_RELAXED);
        return 1;
    }
    if (r == 0) {
        __atomic_fetch_add(&s->bytes_written, len, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->bytes_copied, len, __ATOMIC_RELAXED);
    }
    return r;
}

static int sink_image_zero(struct sink *s, uint64_t off, uint64_t len,
                           struct df_error *err)
{
    struct sink_image *si = s->priv;
    if (sink_image_past_end(s, off, len, err) < 0)
        return -1;
    if (s->dst_is_zero)
        return 0;
    if (image_zero(si->img, off, len, err) < 0)
        return -1;
    s->bytes_zeroed += len;
    return 0;
}

static int sink_image_finish(struct sink *s, struct df_error *err)
{
    struct sink_image *si = s->priv;
    if (si->growing) {
        if (image_set_size(si->img, s->size, err) < 0)
            return -1;
        si->growing = false;
    }
    return image_flush(si->img, s->durable, err);
}

/*
 * The read-back after --fsync (docs/design.md promise 2, from the
 * medium, not the page cache).  A raw destination is opened again,
 * through this process's own descriptor (the same file, whatever its
 * name now points to), with O_DIRECT: *out.  Where O_DIRECT is refused
 * (some file systems) or the format is read through a driver with
 * unaligned metadata reads (qcow2), the cached pages of the file, all
 * clean after the fsync, are dropped instead and *out stays NULL.
 */
static int sink_image_reopen_direct(struct image *img, struct image **out,
                                    struct df_error *err)
{
    struct image_open_opts oo = { .format = "raw", .no_parents = true };
    char path[64];
    struct df_file f;

    *out = NULL;
    if (img->file.fd < 0)
        return 0;
    if (!strcmp(image_format_name(img), "raw")) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", img->file.fd);
        int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (fd >= 0) {
            if (df_file_from_fd(&f, fd, img->name, true, err) < 0) {
                close(fd);
                return -1;
            }
            return image_open_file(&f, img->name, img->path, &oo, out, err);
        }
    }
    /* Advice, not a promise: pages another process maps stay. */
    posix_fadvise(img->file.fd, 0, 0, POSIX_FADV_DONTNEED);
    return 0;
}

static int sink_image_digest(struct sink *s, uint64_t size,
                             enum digest_alg alg, unsigned threads,
                             struct digest *out, struct df_error *err)
{
    struct sink_image *si = s->priv;
    struct job_opts o;
    job_opts_init(&o);
    o.digest = alg;
    o.threads = threads;
    o.verify = false;
    o.plan = s->known;
    o.fs = s->fs;
    o.leaf_fn = s->leaf_fn;
    o.leaf_ctx = s->leaf_ctx;
    if (size > si->img->size)
        return df_fail(err, DF_VERIFY, 0, s->name, -1,
                       "verification failed: destination holds %llu bytes, "
                       "source %llu", (unsigned long long)si->img->size,
                       (unsigned long long)size);
    /* With durable, read what the medium holds, not the page cache. */
    struct image *rd = NULL;
    if (s->durable && sink_image_reopen_direct(si->img, &rd, err) < 0)
        return -1;
    struct image *img = rd ? rd : si->img;
    /* A larger destination (safety check 5 allows it, the tail is left
     * alone): digest the part the copy wrote, [0, size). */
    uint64_t whole = img->size;
    img->size = size;
    int r = engine_digest(img, &o, out, NULL, err);
    img->size = whole;
    image_close(rd);
    return r;
}

static struct image *sink_image_readback(struct sink *s)
{
    struct sink_image *si = s->priv;
    return !s->durable && !si->growing && si->img->size == s->size &&
                   !strcmp(image_format_name(si->img), "raw")
               ? si->img
               : NULL;
}

static void sink_image_free(struct sink *s)
{
    free(s->priv);
    free(s);
}

static const struct sink_ops sink_image_ops = {
    .name = "image",
    .write = sink_image_write,
    .zero = sink_image_zero,
    .finish = sink_image_finish,
    .digest = sink_image_digest,
    .free = sink_image_free,
    .readback_image = sink_image_readback,
};

/* The same for a raw regular file, which takes copy_from. */
static const struct sink_ops sink_image_file_ops = {
    .name = "image",
    .write = sink_image_write,
    .zero = sink_image_zero,
    .copy_from = sink_image_copy_from,
    .finish = sink_image_finish,
    .digest = sink_image_digest,
    .free = sink_image_free,
    .readback_image = sink_image_readback,
};

static struct sink *sink_image_alloc(struct image *img, bool dst_is_zero,
                                     bool growing, struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    struct sink_image *si = calloc(1, sizeof(*si));
    if (!s || !si) {
        free(s);
        free(si);
        df_io(err, img->name, ENOMEM, "cannot allocate sink");
        return NULL;
    }
    si->img = img;
    si->growing = growing;
    /* Drivers that may be written concurrently (raw) take writes from the
     * workers; a sequential writer (qcow2) keeps the ordered thread. */
    s->parallel_write = (image_caps(img) & IMG_THREAD_SAFE) &&
                        !(image_caps(img) & IMG_SEQUENTIAL_WRITE);
    bool file = !strcmp(image_format_name(img), "raw") && !img->parent &&
                img->file.fd >= 0 && img->file.is_regular && !growing;
    s->ops = file && s->parallel_write ? &sink_image_file_ops
                                       : &sink_image_ops;
    si->copy_how = SINK_COPY_CLONE;
    s->priv = si;
    s->size = img->size;
    s->dst_is_zero = dst_is_zero;
    snprintf(s->name, sizeof(s->name), "%s", img->name);
    return s;
}

struct sink *sink_image_new(struct image *img, bool dst_is_zero,
                            struct df_error *err)
{
    return sink_image_alloc(img, dst_is_zero, false, err);
}

struct sink *sink_image_new_growing(struct image *img, struct df_error *err)
{
    /* Writes land past the current end: let image.c's range checks
     * pass until finish sets the real size (a new raw file grows; a
     * qcow2 was made for the most a stream may hold). */
    if (!img->size)
        img->size = INT64_MAX;
    return sink_image_alloc(img, true, true, err);
}

/* ---- raw stream (stdout) ---- */

struct sink_stream {
    struct df_file f;
    uint64_t pos;
};

static int sink_stream_write(struct sink *s, uint64_t off, const void *buf,
                             size_t len, struct df_error *err)
{
    struct sink_stream *ss = s->priv;
    if (off != ss->pos)
        return df_io(err, s->name, EINVAL, "internal: stream gap at %llu",
                     (unsigned long long)off);
    if (df_file_write_stream(&ss->f, buf, len, err) < 0)
        return -1;
    ss->pos += len;
    s->bytes_written += len;
    return 0;
}

static int sink_stream_zero(struct sink *s, uint64_t off, uint64_t len,
                            struct df_error *err)
{
    static const uint8_t zeros[256 * 1024];
    struct sink_stream *ss = s->priv;
    if (off != ss->pos)
        return df_io(err, s->name, EINVAL, "internal: stream gap at %llu",
                     (unsigned long long)off);
    while (len) {
        size_t n = (size_t)min_u64(len, sizeof(zeros));
        if (df_file_write_stream(&ss->f, zeros, n, err) < 0)
            return -1;
        len -= n;
        ss->pos += n;
        s->bytes_zeroed += n;
    }
    return 0;
}

static int sink_stream_finish(struct sink *s, struct df_error *err)
{
    struct sink_stream *ss = s->priv;
    /* fsync works on a file or device redirected to stdout; a pipe
     * says EINVAL, which is fine. */
    if (s->durable && fsync(ss->f.fd) < 0 && errno != EINVAL &&
        errno != EROFS)
        return df_io(err, s->name, errno, "fsync failed");
    return 0;
}

static void sink_stream_free(struct sink *s)
{
    free(s->priv);
    free(s);
}

static const struct sink_ops sink_stream_ops = {
    .name = "stream",
    .write = sink_stream_write,
    .zero = sink_stream_zero,
    .finish = sink_stream_finish,
    .free = sink_stream_free,
};

struct sink *sink_stream_new(int fd, const char *name, struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    struct sink_stream *ss = calloc(1, sizeof(*ss));
    if (!s || !ss) {
        free(s);
        free(ss);
        df_io(err, name, ENOMEM, "cannot allocate sink");
        return NULL;
    }
    df_file_init(&ss->f);
    ss->f.fd = fd;
    snprintf(ss->f.name, sizeof(ss->f.name), "%s", name);
    s->ops = &sink_stream_ops;
    s->priv = ss;
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

void sink_free(struct sink *s)
{
    if (s)
        s->ops->free(s);
}
