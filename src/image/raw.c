/*
 * raw.c: raw images: regular files (sparse or not) and block devices.
 *
 * The virtual disk is the file's bytes.  map() answers from the file
 * system: SEEK_DATA/SEEK_HOLE for regular files (a hole is EXT_HOLE),
 * and all EXT_DATA for block devices, which have no holes to report.
 * zero() never writes zero bytes when the storage can do better:
 * fallocate(PUNCH_HOLE) on files (ZERO_RANGE where punching is not
 * supported), BLKZEROOUT on block devices, and only then a loop of
 * zero writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "image/image.h"
#include "util/overflow.h"

static int raw_probe(const struct image_probe *p)
{
    (void)p;
    return 1;       /* anything; image.c tries raw only when nothing else */
}

static int raw_open(struct image *img, struct df_error *err)
{
    (void)err;
    img->size = img->file.size;
    return 0;
}

static int raw_map(struct image *img, uint64_t off, uint64_t len,
                   struct extent_list *out, struct df_error *err)
{
    uint64_t end = off + len;

    while (off < end) {
        bool data;
        uint64_t next;
        df_file_data_run(&img->file, off, end, &data, &next);
        int r = extent_list_append(out, off, next - off,
                                   data ? EXT_DATA : EXT_HOLE, img->name,
                                   err);
        if (r)
            return r < 0 ? -1 : 0;
        off = next;
    }
    return 0;
}

/*
 * A file opened O_DIRECT (the read-back after --fsync, sink_image.c)
 * takes only aligned reads.  The engine's buffers and offsets are
 * aligned except at the end of an odd-sized disk: such a request goes
 * through an aligned bounce buffer, whose read may end short at EOF.
 */
#define RAW_DIRECT_ALIGN 4096u
#define RAW_DIRECT_BOUNCE (1u << 20)

static int raw_read_direct(struct image *img, void *buf, size_t len,
                           uint64_t off, struct df_error *err)
{
    const uint64_t a = RAW_DIRECT_ALIGN;
    uint8_t *p = buf, *b = NULL;
    int ret = -1;

    if ((uintptr_t)buf % a == 0 && off % a == 0 && len % a == 0)
        return df_file_pread(&img->file, buf, len, off, err);
    if (posix_memalign((void **)&b, a, RAW_DIRECT_BOUNCE) != 0)
        return df_io(err, img->name, ENOMEM, "cannot allocate");
    while (len) {
        uint64_t start = off - off % a;
        size_t skip = (size_t)(off - start);
        size_t want = (size_t)min_u64(len + skip, RAW_DIRECT_BOUNCE);
        want = (size_t)div_round_up(want, a) * a;
        ssize_t r = pread(img->file.fd, b, want, (off_t)start);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            df_fail(err, DF_IO, errno, img->name, (int64_t)off,
                    "read failed");
            goto out;
        }
        if ((size_t)r <= skip) {
            df_corrupt(err, img->name, (int64_t)off,
                       "truncated: file ended while reading");
            goto out;
        }
        size_t n = (size_t)min_u64((uint64_t)r - skip, len);
        memcpy(p, b + skip, n);
        p += n;
        off += n;
        len -= n;
    }
    ret = 0;
out:
    free(b);
    return ret;
}

static int raw_read(struct image *img, void *buf, size_t len, uint64_t off,
                    struct df_error *err)
{
    if (img->file.direct)
        return raw_read_direct(img, buf, len, off, err);
    /* The file may have shrunk under us: read what is there, zero-fill
     * nothing silently: a short file is an I/O error on a raw source. */
    return df_file_pread(&img->file, buf, len, off, err);
}

static int raw_write(struct image *img, const void *buf, size_t len,
                     uint64_t off, struct df_error *err)
{
    return df_file_pwrite(&img->file, buf, len, off, err);
}

static int raw_write_zeros(struct image *img, uint64_t off, uint64_t len,
                           struct df_error *err)
{
    static const uint8_t zeros[64 * 1024];
    while (len) {
        size_t n = (size_t)min_u64(len, sizeof(zeros));
        if (df_file_pwrite(&img->file, zeros, n, off, err) < 0)
            return -1;
        off += n;
        len -= n;
    }
    return 0;
}

static int raw_zero(struct image *img, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    int fd = img->file.fd;
    if (img->file.is_blockdev) {
        uint64_t range[2] = { off, len };
        if (ioctl(fd, BLKZEROOUT, range) == 0)
            return 0;
    } else if (img->file.is_regular) {
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)off, (off_t)len) == 0)
            return 0;
        if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
            return 0;
    }
    return raw_write_zeros(img, off, len, err);
}

static int raw_create(struct image *img, uint64_t size,
                      const struct image_create_opts *copts,
                      struct df_error *err)
{
    (void)copts;
    if (ftruncate(img->file.fd, (off_t)size) < 0)
        return df_io(err, img->name, errno, "cannot set size");
    img->file.size = size;
    return 0;
}

static int raw_set_size(struct image *img, uint64_t size,
                        struct df_error *err)
{
    return raw_create(img, size, NULL, err);
}

const struct image_driver raw_driver = {
    .name = "raw",
    .caps = IMG_CAN_WRITE | IMG_CAN_CREATE | IMG_THREAD_SAFE |
            IMG_SIZE_AT_END,
    .probe = raw_probe,
    .open = raw_open,
    .map = raw_map,
    .read = raw_read,
    .write = raw_write,
    .zero = raw_zero,
    .create = raw_create,
    .set_size = raw_set_size,
};
