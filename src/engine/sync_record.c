/*
 * sync_record.c: a destination's identity, its state record in the
 * state directory (engine/sync.h), and the record every copy keeps.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/job_int.h"
#include "engine/source.h"
#include "engine/sync.h"
#include "image/nbd.h"
#include "track/htree.h"
#include "track/manifest.h"
#include "util/file.h"

/* "DEV:INO", and "@SEC.NSEC" when the filesystem keeps the birth: an
 * inode number is reused as soon as its file is removed, and what was
 * said of the old file must not describe the new one. */
static void identity_inode(const struct statx *sx, char *out, size_t len)
{
    unsigned long long dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
    if (sx->stx_mask & STATX_BTIME)
        snprintf(out, len, "%llu:%llu@%lld.%09u", dev,
                 (unsigned long long)sx->stx_ino,
                 (long long)sx->stx_btime.tv_sec, sx->stx_btime.tv_nsec);
    else
        snprintf(out, len, "%llu:%llu", dev,
                 (unsigned long long)sx->stx_ino);
}

/*
 * A block device's number is reused too (a loop device attached to
 * another file, an LV removed and another created), so what the kernel
 * says the device is joins it: a dm device's uuid (LVM's names the LV),
 * a loop device's backing file; nothing for others, whose number stays
 * with the hardware.
 */
static void identity_blk(unsigned maj, unsigned min, char *out, size_t len)
{
    char path[128], buf[PATH_MAX], ino[128];
    struct statx sx;
    size_t n = (size_t)snprintf(out, len, "block device %u:%u", maj, min);
    if (n >= len)
        return;
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/uuid", maj, min);
    if (read_small_file(path, buf, sizeof(buf)) == 0 && buf[0]) {
        snprintf(out + n, len - n, " dm %s", buf);
        return;
    }
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/loop/backing_file",
             maj, min);
    if (read_small_file(path, buf, sizeof(buf)) == 0 && buf[0] &&
        statx(AT_FDCWD, buf, 0, STATX_INO | STATX_BTIME, &sx) == 0) {
        identity_inode(&sx, ino, sizeof(ino));
        snprintf(out + n, len - n, " loop over %s", ino);
    }
}

static void identity_statx(const struct statx *sx, char *out, size_t len)
{
    char ino[128];
    if (S_ISBLK(sx->stx_mode)) {
        identity_blk(sx->stx_rdev_major, sx->stx_rdev_minor, out, len);
        return;
    }
    identity_inode(sx, ino, sizeof(ino));
    snprintf(out, len, "file %s", ino);
}

static void identity_at(int dirfd, const char *name, int flags, char *out,
                        size_t len)
{
    struct statx sx;
    if (statx(dirfd, name, flags, STATX_TYPE | STATX_INO | STATX_BTIME,
              &sx) < 0)
        snprintf(out, len, "unknown: %s", strerror(errno));
    else
        identity_statx(&sx, out, len);
}

void sync_identity_at(int dirfd, const char *name, char *out, size_t len)
{
    identity_at(dirfd, name, 0, out, len);
}

void sync_identity(const struct df_file *f, char *out, size_t len)
{
    identity_at(f->fd, "", AT_EMPTY_PATH, out, len);
}

void sync_nbd_identity(const char *uri, char *out, size_t len)
{
    snprintf(out, len, "nbd %s", uri);
}

void sync_image_identity(const struct image *img, char *out, size_t len)
{
    if (img->drv == &image_driver_nbd)
        sync_nbd_identity(img->name, out, len);
    else
        sync_identity(&img->file, out, len);
}

void sync_source_name(const char *arg, char *out, size_t len)
{
    char *rp = realpath(arg, NULL);
    snprintf(out, len, "%s", rp ? rp : arg);
    free(rp);
}

void sync_remote_source_name(const char *arg, char *out, size_t len)
{
    char host[256], path[PATH_MAX];
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    sync_source_name(arg, path, sizeof(path));
    snprintf(out, len, "%s:%s", host, path);
}

/* ---- state records ---- */

int sync_record_open(const char *dir, bool create, FILE *msgs,
                     const char *cmd)
{
    struct df_error e;
    df_error_init(&e);
    int fd = create ? state_dir_open(dir, &e)
                    : state_dir_open_existing(dir, &e);
    if (fd < 0 && msgs && (create || e.errnum != ENOENT)) {
        char msg[PATH_MAX + 256];
        df_error_format(&e, msg, sizeof(msg));
        fprintf(msgs, "diskferry: %s: warning: no state record kept: %s\n",
                cmd, msg);
    }
    return fd;
}

static void busy_name(const char *id, char *out, size_t len)
{
    char rec[128];
    manifest_record_name(id, rec, sizeof(rec));
    snprintf(out, len, "%s.busy", rec);
}

/* Before the first write: a record is no longer the truth until the
 * job that writes the destination ends. */
int sync_record_begin(int sfd, const char *id, struct df_error *err)
{
    char busy[160];
    if (sfd < 0)
        return 0;
    busy_name(id, busy, sizeof(busy));
    int fd = openat(sfd, busy, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                    0600);
    if (fd < 0)
        return df_io(err, busy, errno, "cannot mark the state record busy");
    close(fd);
    if (fsync(sfd) < 0)
        return df_io(err, busy, errno, "cannot mark the state record busy");
    return 0;
}

void sync_record_unbusy(int sfd, const char *id)
{
    char busy[160];
    if (sfd < 0)
        return;
    busy_name(id, busy, sizeof(busy));
    if (unlinkat(sfd, busy, 0) == 0)
        fsync(sfd);
}

int sync_record_commit(int sfd, const char *id, const struct manifest *m,
                       FILE *msgs, const char *cmd)
{
    char rec[128], busy[160];
    struct df_error e;
    if (sfd < 0)
        return 0;
    df_error_init(&e);
    manifest_record_name(id, rec, sizeof(rec));
    busy_name(id, busy, sizeof(busy));
    if (manifest_write(sfd, rec, m, &e) < 0) {
        if (msgs) {
            char msg[PATH_MAX + 256];
            df_error_format(&e, msg, sizeof(msg));
            fprintf(msgs, "diskferry: %s: warning: state record not "
                    "written: %s\n", cmd, msg);
        }
        return -1;
    }
    unlinkat(sfd, busy, 0);
    fsync(sfd);
    return 0;
}

int sync_record_load(int sfd, const char *id, struct manifest *m,
                     bool *busy, FILE *msgs)
{
    char rec[128], bn[160];
    struct stat st;
    struct df_error e;
    *busy = false;
    if (sfd < 0)
        return 1;
    manifest_record_name(id, rec, sizeof(rec));
    busy_name(id, bn, sizeof(bn));
    *busy = fstatat(sfd, bn, &st, AT_SYMLINK_NOFOLLOW) == 0;
    df_error_init(&e);
    int r = manifest_read(sfd, rec, m, &e);
    if (r < 0 && msgs) {
        char msg[PATH_MAX + 256];
        df_error_format(&e, msg, sizeof(msg));
        fprintf(msgs, "diskferry: sync: warning: state record ignored: %s\n",
                msg);
    }
    return r;
}

void copy_record_init(struct copy_record *r)
{
    memset(r, 0, sizeof(*r));
    r->sfd = -1;
}

int copy_record_start(const struct job_spec *spec,
                      const struct endpoint *dep, const struct source *src,
                      const struct dest *d, struct job_opts *jo,
                      struct copy_record *r, struct df_error *err)
{
    uint64_t size;
    if (spec->dry_run)
        return 0;
    bool pulled = src->session && !src->img;    /* a remote source */
    bool nbd = dep->kind == EP_NBD && d->img;
    if ((dep->kind != EP_LOCAL && !nbd) || (!src->img && !pulled) ||
        !d->img || !source_size(src, &size) ||
        (!nbd && (strcmp(image_format_name(d->img), "raw") ||
                  (!d->img->file.is_regular &&
                   !d->img->file.is_blockdev)))) {
        if (spec->write_manifest)
            return df_usage(err, "--write-manifest: for an image source "
                            "and a file or device DST on this host, or an "
                            "NBD export");
        return 0;
    }
    if (pulled && !jo->verify)
        return 0;               /* nothing read back: no record */
    if (htree_init(&r->t, jo->digest, size, err) < 0)
        return -1;
    if (pulled) {
        /* the leaves come from reading DST back (verification) */
        d->sink->leaf_fn = htree_leaf_fn;
        d->sink->leaf_ctx = &r->t;
    } else {
        jo->leaf_fn = htree_leaf_fn;
        jo->leaf_ctx = &r->t;
    }
    sync_image_identity(d->img, r->id, sizeof(r->id));
    sync_source_name(spec->src, r->src, sizeof(r->src));
    snprintf(r->layer, sizeof(r->layer), "%s",
             src->img ? src->img->layer_id : "");
    /* A copy keeps a record where it can, quietly (sync says when it
     * cannot). */
    r->sfd = sync_record_open(NULL, true, NULL, spec->cmd);
    r->on = true;
    return sync_record_begin(r->sfd, r->id, err);
}

int copy_record_end(const struct job_spec *spec, struct copy_record *r,
                    const struct job_stats *st, struct df_error *err)
{
    struct manifest m;
    if (!r->on)
        return 0;
    memset(&m, 0, sizeof(m));
    m.tree = r->t;
    m.digest = st->src_digest;
    snprintf(m.id, sizeof(m.id), "%s", r->id);
    snprintf(m.src, sizeof(m.src), "%s", r->src);
    snprintf(m.src_layer, sizeof(m.src_layer), "%s", r->layer);
    sync_record_commit(r->sfd, r->id, &m, spec->msgs, spec->cmd);
    if (spec->write_manifest &&
        manifest_write(-1, spec->write_manifest, &m, err) < 0)
        return -1;
    return 0;
}

void copy_record_release(struct copy_record *r)
{
    if (r->on)
        htree_release(&r->t);
    if (r->sfd >= 0)
        close(r->sfd);
    copy_record_init(r);
}
