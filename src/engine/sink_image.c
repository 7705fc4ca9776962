/*
 * sink_image.c: the local sinks: an image (raw file or block device, a
 * new qcow2) and a raw byte stream (stdout).
 *
 * The image sink relies on sink.h contract 2 for speed: a destination
 * created by us reads as zeros, so zero runs cost nothing; on an
 * existing destination they become punched holes or BLKZEROOUT (raw.c),
 * never written zero bytes unless the storage offers nothing better.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/job.h"
#include "util/overflow.h"
#include "util/size.h"

struct sink_image {
    struct image *img;
    bool growing;               /* size unknown until finish */
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
    s->ops = &sink_image_ops;
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
