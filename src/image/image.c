/*
 * image.c: probing, opening and the checked wrappers every caller uses
 * to reach a driver (contract in image.h).
 */
#define _GNU_SOURCE
#include "image.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/chain.h"
#include "image/foreign.h"
#include "util/overflow.h"

extern const struct image_driver raw_driver;
extern const struct image_driver qcow2_driver;
extern const struct image_driver vdi_driver;
extern const struct image_driver vhd_driver;
extern const struct image_driver vhdx_driver;
extern const struct image_driver vmdk_driver;

/* Probe order: formats with a certain magic first, raw last. */
const struct image_driver *const image_drivers[] = {
    &qcow2_driver,
    &vdi_driver,
    &vhdx_driver,
    &vmdk_driver,
    &vhd_driver,
    &raw_driver,
    NULL,
};

const struct image_driver *image_driver_by_name(const char *name)
{
    /* qemu-img's names for the same formats. */
    if (!strcmp(name, "vpc"))
        name = "vhd";
    for (size_t i = 0; image_drivers[i]; i++)
        if (!strcmp(image_drivers[i]->name, name))
            return image_drivers[i];
    return NULL;
}

const char *image_format_name(const struct image *img)
{
    return img->drv->name;
}

unsigned image_caps(const struct image *img)
{
    return img->drv->caps;
}

int image_format_caps(const char *name, unsigned *caps)
{
    const struct image_driver *d = image_driver_by_name(name);
    if (!d)
        return -1;
    *caps = d->caps;
    return 0;
}

void image_set_prop(struct image *img, const char *key, const char *fmt, ...)
{
    struct image_prop *p = NULL;
    for (unsigned i = 0; i < img->nprops; i++)
        if (!strcmp(img->props[i].key, key))
            p = &img->props[i];
    if (!p) {
        if (img->nprops == IMAGE_MAX_PROPS)
            return;
        p = &img->props[img->nprops++];
        snprintf(p->key, sizeof(p->key), "%s", key);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->val, sizeof(p->val), fmt, ap);
    va_end(ap);
}

const char *image_get_prop(const struct image *img, const char *key)
{
    for (unsigned i = 0; i < img->nprops; i++)
        if (!strcmp(img->props[i].key, key))
            return img->props[i].val;
    return NULL;
}

/* The driver whose probe scores p highest, or NULL (then *unsupported:
 * a container diskferry knows but does not read, or NULL). */
static const struct image_driver *image_probe_best(const struct image_probe *p,
                                                   const char **unsupported)
{
    const struct image_driver *best = NULL;
    int best_score = 0;

    *unsupported = NULL;
    for (size_t i = 0; image_drivers[i]; i++) {
        const struct image_driver *d = image_drivers[i];
        if (!d->probe || !strcmp(d->name, "raw"))
            continue;
        int s = d->probe(p);
        if (s > best_score) {
            best_score = s;
            best = d;
        }
    }
    if (!best)
        *unsupported = foreign_format(p);
    return best;
}

const char *image_probe_head(const uint8_t *head, size_t len)
{
    const char *unsupported;
    struct image_probe p = { .head = head, .head_len = len,
                             .file_size = UINT64_MAX };
    const struct image_driver *d = image_probe_best(&p, &unsupported);
    return d ? d->name : unsupported;
}

const struct image_driver *image_probe_file(struct df_file *f,
                                            const char **unsupported,
                                            struct df_error *err)
{
    static const size_t head_max = IMAGE_PROBE_HEAD;
    static const size_t tail_max = IMAGE_PROBE_TAIL;
    const struct image_driver *best = NULL;
    uint8_t *head = NULL, *tail = NULL;

    *unsupported = NULL;
    head = malloc(head_max);
    tail = malloc(tail_max);
    if (!head || !tail) {
        df_io(err, f->name, ENOMEM, "cannot allocate probe buffer");
        goto out;
    }
    struct image_probe p = { .head = head, .tail = tail,
                             .file_size = f->size };
    p.head_len = (size_t)min_u64(head_max, f->size);
    p.tail_len = (size_t)min_u64(tail_max, f->size);
    if (df_file_pread(f, head, p.head_len, 0, err) < 0 ||
        df_file_pread(f, tail, p.tail_len, f->size - p.tail_len, err) < 0)
        goto out;
    best = image_probe_best(&p, unsupported);
out:
    free(head);
    free(tail);
    return best;
}

int image_dest_plan(struct df_file *f, const char *out_format,
                    const char **fmt, bool *replace, struct df_error *err)
{
    const struct image_driver *have = NULL;
    const char *unsupported = NULL;

    *replace = false;
    *fmt = out_format ? out_format : "raw";
    if (!f->is_regular) {
        /* A device's content is its guest's: never probed (docs/design.md). */
        if (strcmp(*fmt, "raw"))
            return df_fail(err, DF_USAGE, 0, f->name, -1, "-O %s: "
                           "diskferry writes %s images into files; a "
                           "device is written raw", *fmt, *fmt);
        return 0;
    }
    if (f->size) {
        have = image_probe_file(f, &unsupported, err);
        if (err->cat != DF_OK)
            return -1;
    }
    const char *is = have ? have->name : unsupported;
    if (!out_format && is) {
        if (!have || !(have->caps & IMG_CAN_CREATE))
            return df_fail(err, DF_USAGE, 0, f->name, -1, "a %s image: "
                           "diskferry writes raw and qcow2; give -O raw or "
                           "-O qcow2 to replace it whole (--overwrite)", is);
        *fmt = have->name;
    }
    *replace = is || strcmp(*fmt, "raw");
    return 0;
}

static struct image *image_alloc(const struct image_driver *drv,
                                 struct df_error *err)
{
    struct image *img = calloc(1, sizeof(*img));
    if (!img) {
        df_io(err, "", ENOMEM, "cannot allocate image");
        return NULL;
    }
    df_file_init(&img->file);
    img->drv = drv;
    if (drv->priv_size) {
        img->priv = calloc(1, drv->priv_size);
        if (!img->priv) {
            free(img);
            df_io(err, "", ENOMEM, "cannot allocate image state");
            return NULL;
        }
    }
    pthread_mutex_init(&img->lock, NULL);
    return img;
}

static void image_free_one(struct image *img)
{
    if (img->drv && img->drv->close && img->priv)
        img->drv->close(img);
    df_file_close(&img->file);
    pthread_mutex_destroy(&img->lock);
    free(img->priv);
    free(img);
}

void image_close(struct image *img)
{
    while (img) {
        struct image *parent = img->parent;
        image_free_one(img);
        img = parent;
    }
}

/* A block device's content is its guest's: never let it pick a format. */
static int block_signature_refusal(const char *name, const char *fmt,
                                   bool readable, struct df_error *err)
{
    if (readable)
        return df_corrupt(err, name, -1, "holds a %s image header: give "
                          "-f %s to read it as %s, or -f raw to copy its "
                          "bytes as they are", fmt, fmt, fmt);
    return df_corrupt(err, name, -1, "holds a %s image header (a format "
                      "diskferry does not read): give -f raw to copy its "
                      "bytes as they are", fmt);
}

int image_open_file(struct df_file *f, const char *name, const char *path,
                    const struct image_open_opts *opts, struct image **out,
                    struct df_error *err)
{
    const struct image_driver *drv = NULL;
    struct image *img = NULL;
    char note[sizeof(img->probe_note)] = "";

    *out = NULL;
    if (f->is_stream) {
        df_file_close(f);
        return df_fail(err, DF_USAGE, 0, name, -1,
                       "is not a regular file or block device");
    }
    if (opts && opts->format) {
        drv = image_driver_by_name(opts->format);
        if (!drv) {
            df_file_close(f);
            return df_usage(err, "unknown format '%s'", opts->format);
        }
    } else {
        const char *unsupported = NULL;
        drv = image_probe_file(f, &unsupported, err);
        if (err->cat != DF_OK) {
            df_file_close(f);
            return -1;
        }
        bool named = opts && opts->named_chain;
        const char *sig = drv ? drv->name : unsupported;
        if (f->is_blockdev && !named && sig) {
            /* The guest wrote these bytes: raw unless -f says. */
            if (!(opts && opts->inspect)) {
                df_file_close(f);
                return block_signature_refusal(name, sig, drv != NULL, err);
            }
            if (drv)
                snprintf(note, sizeof(note), "carries a %s signature; -f %s "
                         "to read it", sig, sig);
            else
                snprintf(note, sizeof(note), "carries a %s signature, a "
                         "format diskferry does not read", sig);
            drv = NULL;
            unsupported = NULL;
        }
        if (unsupported) {
            df_file_close(f);
            return df_corrupt(err, name, -1,
                              "%s image: format not supported (convert it "
                              "with qemu-img, or copy its bytes with -f raw)",
                              unsupported);
        }
        if (!drv)
            drv = image_driver_by_name("raw");
    }
    img = image_alloc(drv, err);
    if (!img) {
        df_file_close(f);
        return -1;
    }
    img->file = *f;
    df_file_init(f);
    snprintf(img->name, sizeof(img->name), "%s", name);
    snprintf(img->path, sizeof(img->path), "%s", path ? path : name);
    img->writable = opts && opts->writable;
    img->format_named = opts && (opts->format || opts->named_chain);
    snprintf(img->probe_note, sizeof(img->probe_note), "%s", note);
    if (img->writable && !(drv->caps & IMG_CAN_WRITE)) {
        df_fail(err, DF_USAGE, 0, name, -1,
                "diskferry cannot write %s images", drv->name);
        goto fail;
    }
    if (drv->open(img, err) < 0)
        goto fail;
    assert(err->cat == DF_OK);
    *out = img;
    return 0;
fail:
    image_free_one(img);
    return -1;
}

int image_open_nofile(const struct image_driver *drv, const char *name,
                      const struct image_open_opts *opts, struct image **out,
                      struct df_error *err)
{
    struct image *img = image_alloc(drv, err);

    *out = NULL;
    if (!img)
        return -1;
    snprintf(img->name, sizeof(img->name), "%s", name);
    snprintf(img->path, sizeof(img->path), "%s", name);
    img->writable = opts && opts->writable;
    img->format_named = true;
    img->open_opts = opts;
    int r = drv->open(img, err);
    img->open_opts = NULL;
    if (r < 0) {
        image_free_one(img);
        return -1;
    }
    *out = img;
    return 0;
}

int image_open(const char *path, const struct image_open_opts *opts,
               struct image **out, struct df_error *err)
{
    struct df_file f;
    struct image *img = NULL;
    bool writable = opts && opts->writable;

    *out = NULL;
    if (df_file_open(&f, path, writable ? O_RDWR : O_RDONLY, err) < 0)
        return -1;
    if (image_open_file(&f, path, path, opts, &img, err) < 0)
        return -1;
    if (!(opts && opts->no_parents) &&
        chain_open_parents(img, opts, err) < 0) {
        image_close(img);
        return -1;
    }
    *out = img;
    return 0;
}

int image_create(const char *path, const char *format, uint64_t size,
                 const struct image_create_opts *copts, struct image **out,
                 struct df_error *err)
{
    return image_create_at(AT_FDCWD, path, format, size, copts, out, err);
}

int image_create_at(int dirfd, const char *path, const char *format,
                    uint64_t size, const struct image_create_opts *copts,
                    struct image **out, struct df_error *err)
{
    const char *name = dirfd == AT_FDCWD ? path : path_basename(path);
    static const struct image_create_opts no_copts;
    const struct image_driver *drv = image_driver_by_name(format);
    struct image *img = NULL;
    struct df_file f;

    *out = NULL;
    if (!drv)
        return df_usage(err, "unknown output format '%s'", format);
    if (!(drv->caps & IMG_CAN_CREATE))
        return df_usage(err, "diskferry cannot create %s images", format);
    if (df_file_openat(&f, dirfd, path, O_RDWR | O_CREAT | O_EXCL |
                                            O_NOFOLLOW, err) < 0) {
        if (err->errnum == EEXIST) {
            df_error_reset(err);
            return df_refuse(err, path, "refusing to write: file exists "
                             "(give --overwrite to replace its contents)");
        }
        return -1;
    }
    img = image_alloc(drv, err);
    if (!img) {
        df_file_close(&f);
        unlinkat(dirfd, name, 0);
        return -1;
    }
    img->file = f;
    snprintf(img->name, sizeof(img->name), "%s", path);
    snprintf(img->path, sizeof(img->path), "%s", path);
    img->writable = true;
    if (drv->create(img, size, copts ? copts : &no_copts, err) < 0) {
        image_free_one(img);
        unlinkat(dirfd, name, 0);
        return -1;
    }
    img->size = size;
    *out = img;
    return 0;
}

static void image_lock(struct image *img)
{
    if (!(img->drv->caps & IMG_THREAD_SAFE))
        pthread_mutex_lock(&img->lock);
}

static void image_unlock(struct image *img)
{
    if (!(img->drv->caps & IMG_THREAD_SAFE))
        pthread_mutex_unlock(&img->lock);
}

/* Check a driver's map answer against contract 2. */
static int image_map_checked(struct image *img, uint64_t off, uint64_t len,
                             struct extent_list *out, struct df_error *err)
{
    size_t n0 = out->n;
    uint64_t end0 = extent_list_end(out, off);
    if (end0 != off)       /* caller appends contiguously */
        return df_corrupt(err, img->name, (int64_t)off,
                          "internal: map not contiguous with list");
    image_lock(img);
    int r = img->drv->map(img, off, len, out, err);
    image_unlock(img);
    if (r < 0)
        return -1;
    if (out->n == n0 && out->n < out->cap)
        return df_corrupt(err, img->name, (int64_t)off,
                          "%s driver mapped nothing", img->drv->name);
    /* Clip an answer that ran past the request. */
    if (out->n > n0) {
        struct extent *last = &out->v[out->n - 1];
        if (last->off + last->len > off + len) {
            if (last->off >= off + len)
                return df_corrupt(err, img->name, (int64_t)last->off,
                                  "%s driver mapped beyond request",
                                  img->drv->name);
            last->len = off + len - last->off;
        }
    }
    return 0;
}

/* Every request must lie inside [0, img->size): a caller's offset may
 * come from input (a stream longer than the destination, a peer's
 * message), so this is an error, never an assertion. */
static int image_range_ok(struct image *img, uint64_t off, uint64_t len,
                          struct df_error *err)
{
    if (off <= img->size && len <= img->size - off)
        return 0;
    return df_fail(err, DF_IO, 0, img->name, (int64_t)off,
                   "%llu bytes at this offset lie past the end (%llu)",
                   (unsigned long long)len,
                   (unsigned long long)img->size);
}

int image_map_layer(struct image *img, uint64_t off, uint64_t len,
                    struct extent_list *out, struct df_error *err)
{
    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    uint64_t end = off + len;
    while (off < end) {
        size_t n0 = out->n;
        if (image_map_checked(img, off, end - off, out, err) < 0)
            return -1;
        if (out->n == n0 || out->n == out->cap)
            break;          /* list full */
        off = extent_list_end(out, off);
    }
    return 0;
}

int image_map(struct image *img, uint64_t off, uint64_t len,
              struct extent_list *out, struct df_error *err)
{
    struct extent_list layer;
    int ret = -1;

    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    extent_list_init(&layer, 4096);
    uint64_t end = off + len;
    while (off < end && out->n < out->cap) {
        extent_list_clear(&layer);
        if (image_map_checked(img, off, end - off, &layer, err) < 0)
            goto out;
        for (size_t i = 0; i < layer.n; i++) {
            struct extent e = layer.v[i];
            int r;
            if (e.state != EXT_PARENT) {
                r = extent_list_append(out, e.off, e.len, e.state,
                                       img->name, err);
            } else if (!img->parent || e.off >= img->parent->size) {
                r = extent_list_append(out, e.off, e.len, EXT_HOLE,
                                       img->name, err);
            } else {
                uint64_t plen = min_u64(e.len, img->parent->size - e.off);
                uint64_t before = extent_list_end(out, e.off);
                r = image_map(img->parent, e.off, plen, out, err);
                if (r == 0 && extent_list_end(out, before) < e.off + plen)
                    goto done;          /* out is full */
                if (r == 0 && plen < e.len)
                    r = extent_list_append(out, e.off + plen, e.len - plen,
                                           EXT_HOLE, img->name, err);
            }
            if (r < 0)
                goto out;
            if (r > 0)
                goto done;
        }
        off = layer.v[layer.n - 1].off + layer.v[layer.n - 1].len;
    }
done:
    ret = 0;
out:
    extent_list_release(&layer);
    return ret;
}

static int image_read_layer(struct image *img, void *buf, size_t len,
                            uint64_t off, struct df_error *err)
{
    image_lock(img);
    int r = img->drv->read(img, buf, len, off, err);
    image_unlock(img);
    assert(r == 0 || err->cat != DF_OK);
    return r;
}

bool image_has_host_runs(const struct image *img)
{
    return img && img->file.fd >= 0 && !img->file.mem &&
           img->file.is_regular && !img->file.direct &&
           (img->drv->host_run || (!img->parent &&
                                   !strcmp(img->drv->name, "raw")));
}

int image_host_run(struct image *img, uint64_t off, uint64_t len,
                   uint64_t *file_off, struct df_error *err)
{
    if (!image_has_host_runs(img))
        return 0;
    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    if (!img->drv->host_run) {
        *file_off = off;
        return 1;
    }
    return img->drv->host_run(img, off, len, file_off, err);
}

int image_read(struct image *img, void *buf, size_t len, uint64_t off,
               struct df_error *err)
{
    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    if (!img->parent)
        return image_read_layer(img, buf, len, off, err);

    struct extent_list layer;
    int ret = -1;
    uint8_t *p = buf;
    uint64_t end = off + len;

    extent_list_init(&layer, 1024);
    while (off < end) {
        extent_list_clear(&layer);
        if (image_map_checked(img, off, end - off, &layer, err) < 0)
            goto out;
        for (size_t i = 0; i < layer.n; i++) {
            struct extent e = layer.v[i];
            uint8_t *dst = p + (e.off - (end - len));
            if (e.state != EXT_PARENT) {
                if (image_read_layer(img, dst, e.len, e.off, err) < 0)
                    goto out;
                continue;
            }
            uint64_t plen = 0;
            if (e.off < img->parent->size)
                plen = min_u64(e.len, img->parent->size - e.off);
            if (plen && image_read(img->parent, dst, plen, e.off, err) < 0)
                goto out;
            memset(dst + plen, 0, e.len - plen);
        }
        off = layer.v[layer.n - 1].off + layer.v[layer.n - 1].len;
    }
    ret = 0;
out:
    extent_list_release(&layer);
    return ret;
}

int image_write(struct image *img, const void *buf, size_t len, uint64_t off,
                struct df_error *err)
{
    if (!img->writable || !img->drv->write)
        return df_io(err, img->name, EBADF, "not open for writing");
    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    image_lock(img);
    int r = img->drv->write(img, buf, len, off, err);
    image_unlock(img);
    return r;
}

int image_zero(struct image *img, uint64_t off, uint64_t len,
               struct df_error *err)
{
    if (!img->writable || !img->drv->zero)
        return df_io(err, img->name, EBADF, "not open for writing");
    if (image_range_ok(img, off, len, err) < 0)
        return -1;
    image_lock(img);
    int r = img->drv->zero(img, off, len, err);
    image_unlock(img);
    return r;
}

int image_flush(struct image *img, bool durable, struct df_error *err)
{
    int r = 0;
    image_lock(img);
    if (img->drv->flush)
        r = img->drv->flush(img, err);
    if (r == 0 && durable && img->file.fd >= 0 && fsync(img->file.fd) < 0 &&
        errno != EINVAL && errno != EROFS)
        r = df_io(err, img->name, errno, "fsync failed");
    image_unlock(img);
    return r;
}

int image_set_size(struct image *img, uint64_t size, struct df_error *err)
{
    if (!img->drv->set_size)
        return df_usage(err, "%s: a %s image cannot take its size at the "
                        "end", img->name, img->drv->name);
    image_lock(img);
    int r = img->drv->set_size(img, size, err);
    if (r == 0)
        img->size = size;
    image_unlock(img);
    return r;
}

int image_open_related(struct image *img, const char *rel, int flags,
                       struct df_file *f, char *resolved, size_t rlen,
                       struct df_error *err)
{
    char dir[PATH_MAX], path[PATH_MAX];

    df_file_init(f);
    if (img->file.mem)
        return df_corrupt(err, img->name, -1,
                          "cannot open '%s' next to an in-memory image", rel);
    if (img->file.fd < 0)
        return df_corrupt(err, img->name, -1, "cannot open '%s' next to "
                          "an image with no local file", rel);
    path_dirname(img->path, dir, sizeof(dir));
    if (path_join(path, sizeof(path), dir, rel) < 0)
        return df_corrupt(err, img->name, -1, "file name too long: %.64s...",
                          rel);
    if (resolved)
        snprintf(resolved, rlen, "%s", path);
    return df_file_open(f, path, flags, err);
}

uint64_t image_allocated_bytes(const struct image *img)
{
    struct stat st;
    if (img->file.fd >= 0 && img->file.is_regular &&
        fstat(img->file.fd, &st) == 0)
        return (uint64_t)st.st_blocks * 512;
    if (img->file.fd < 0 && !img->file.mem)
        return img->size;       /* no local file (an NBD export) */
    return img->file.size;
}
