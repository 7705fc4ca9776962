/*
 * dest.c: the destination of a job: open (the safety gate, the claim,
 * a temporary name or the existing file), commit, abort (see dest.h for
 * the scheme and its invariants).
 */
#define _GNU_SOURCE
#include "dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/nbd.h"

#include "engine/job.h"
#include "safety/safety.h"
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

static int dest_tmp_create(int dirfd, const char *path, const char *fmt,
                           uint64_t size,
                           const struct image_create_opts *copts,
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

void dest_test_kill(const char *step)
{
#ifdef DF_TESTING
    const char *at = getenv("DF_TEST_DEST_KILL_AT");
    if (at && !strcmp(at, step))
        raise(SIGKILL);
#else
    (void)step;
#endif
}

int dest_partial_path(const char *path, char *out, size_t len,
                      struct df_error *err)
{
    char dir[PATH_MAX];
    path_dirname(path, dir, sizeof(dir));
    if (snprintf(out, len, "%s/.%s" DEST_TMP_TAG "partial", dir,
                 path_basename(path)) >= (int)len)
        return df_fail(err, DF_USAGE, 0, path, -1, "path too long");
    return 0;
}

static const char *dest_name(int dirfd, const char *path)
{
    return dirfd == AT_FDCWD ? path : path_basename(path);
}

int dest_rename_new(int dirfd, const char *tmp, const char *path,
                    struct df_error *err)
{
    const char *from = dest_name(dirfd, tmp), *to = dest_name(dirfd, path);
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return df_refuse(err, path, "refusing to write: it appeared "
                         "while copying (the copy is left in %s)", tmp);
    if (errno != EINVAL && errno != ENOSYS)
        return df_io(err, path, errno, "cannot rename %s", tmp);
    /* No RENAME_NOREPLACE here: link() refuses to replace too. */
    if (linkat(dirfd, from, dirfd, to, 0) < 0)
        return df_io(err, path, errno, "cannot link %s", tmp);
    unlinkat(dirfd, from, 0);
    return 0;
}

int dest_resume_partial(int dirfd, const char *part, uint64_t size,
                        const struct rjournal_info *ji,
                        const struct extent_list *done, bool overwrite,
                        struct image **img, struct df_error *err)
{
    struct image_open_opts oo = { .format = "raw", .writable = true,
                                  .no_parents = true };
    struct df_file f;
    if (df_file_openat(&f, dirfd, part, O_RDWR | O_NOFOLLOW, err) < 0 ||
        image_open_file(&f, part, part, &oo, img, err) < 0)
        return -1;
    if ((*img)->size != size)
        return df_refuse(err, part, "refusing to resume: %llu bytes, "
                         "the source has %llu",
                         (unsigned long long)(*img)->size,
                         (unsigned long long)size);
    /* journal.h invariant 5: still the partial we left */
    struct safety_req req = {
        .dst_path = part, .dst = &(*img)->file, .need_size = size,
        .op = SAFETY_OP_WRITE, .ours = done, .overwrite = overwrite,
        .yes = true,
    };
    if (rjournal_check_dst(ji, &(*img)->file, err) < 0 ||
        safety_check_destination(&req, err) < 0)
        return -1;
    return 0;
}

int dest_grow(struct image *img, uint64_t need, const char *path,
              struct df_error *err)
{
    if (img->size >= need || !img->file.is_regular)
        return 0;
    if (ftruncate(img->file.fd, (off_t)need) < 0)
        return df_io(err, path, errno, "cannot grow to %llu bytes",
                     (unsigned long long)need);
    img->file.size = img->size = need;
    return 0;
}

/* ---- struct dest ---- */

void dest_init(struct dest *d)
{
    memset(d, 0, sizeof(*d));
    d->dirfd = -1;
    d->claim_fd = -1;
    d->j.fd = -1;
    d->statefd = -1;
    extent_list_init(&d->done, EXTENT_LIST_DEFAULT_CAP);
}

void dest_close(struct dest *d)
{
    rjournal_close(&d->j);
    extent_list_release(&d->done);
    sink_free(d->sink);
    d->sink = NULL;
    image_close(d->img);
    image_close(d->old);
    d->img = d->old = NULL;
    if (d->claim_fd >= 0)
        close(d->claim_fd);
    if (d->dirfd >= 0)
        close(d->dirfd);
    if (d->statefd >= 0)
        close(d->statefd);
    d->claim_fd = d->dirfd = d->statefd = -1;
}

void dest_warn_undo_new(const struct dest_opts *o, const char *path)
{
    if (o->msgs)
        fprintf(o->msgs, "diskferry: %s: warning: --undo: %s is new: there "
                "is nothing to save (to undo, delete it)\n", o->cmd, path);
}

/* The one safety gate (safety/safety.h): dst NULL for a new file;
 * replace: dst is replaced whole by a new file. */
static int dest_check(const struct dest_opts *o, struct image *src,
                      const char *path, const struct df_file *dst,
                      uint64_t need, bool replace, struct df_error *err)
{
    struct safety_req req = {
        .dst_path = path, .dst = dst, .src_image = src,
        .need_size = need, .op = SAFETY_OP_WRITE, .replace = replace,
        .grow = o->grow, .overwrite = o->overwrite, .yes = o->yes, .dry_run = o->dry_run,
        .interactive = o->interactive,
        .confirm = o->confirm, .confirm_ctx = o->confirm_ctx,
    };
    return safety_check_destination(&req, err);
}

/* The same for an existing destination a resume journal lists done
 * ranges of: those are ours (journal.h invariant 5), and nobody is
 * asked again about a destination they already confirmed. */
static int dest_check_resumed(const struct dest_opts *o, const char *path,
                              const struct df_file *dst, uint64_t need,
                              const struct extent_list *done,
                              struct df_error *err)
{
    struct safety_req req = {
        .dst_path = path, .dst = dst, .need_size = need,
        .op = SAFETY_OP_WRITE, .overwrite = o->overwrite, .ours = done,
        .yes = true, .dry_run = o->dry_run,
    };
    return safety_check_destination(&req, err);
}

/* A dry run's sink: prints what would be written, where the report is
 * not. */
static int dest_dry_sink(struct dest *d, const struct dest_opts *o,
                         uint64_t size, bool dst_is_zero,
                         struct df_error *err)
{
    d->sink = dryrun_sink_new(d->path, size,
                              o->report_on_stdout ? stderr : stdout, err);
    if (d->sink && dst_is_zero)
        d->sink->dst_is_zero = true;
    return d->sink ? 0 : -1;
}

/* A stream (size unknown until its end) can become an fmt image only
 * when fmt takes its size at the end (IMG_SIZE_AT_END). */
static int dest_stream_fmt(const char *fmt, struct df_error *err)
{
    unsigned caps;
    if (image_format_caps(fmt, &caps) == 0 && (caps & IMG_SIZE_AT_END))
        return 0;
    return df_usage(err, "a stream on stdin has no size known in advance: "
                    "-O %s needs a file or device as SRC", fmt);
}

/* The size a new fmt image is created with: need, or for a stream
 * nothing (raw grows) or the most a stream may hold (set at its end). */
static uint64_t dest_new_size(const char *fmt, uint64_t need,
                              bool need_known)
{
    if (need_known)
        return need;
    return strcmp(fmt, "raw") ? IMAGE_STREAM_MAX_SIZE : 0;
}

/* Create the new destination under a hidden temporary name, after
 * removing those that killed jobs left (invariant 3). */
static int dest_create_tmp(struct dest *d, const struct dest_opts *o,
                           const char *fmt, uint64_t size,
                           struct df_error *err)
{
    if (d->dirfd < 0 && (d->dirfd = dest_dir_open(d->path, err)) < 0)
        return -1;
    dest_clean_stale(d->dirfd, d->path, o->msgs);
    if (dest_tmp_create(d->dirfd, d->path, fmt, size, &o->copts, &d->img,
                        d->tmp_path, sizeof(d->tmp_path), err) < 0)
        return -1;
    d->created = true;
    snprintf(d->img->name, sizeof(d->img->name), "%s", d->path);
    dest_test_kill("open");
    return 0;
}

/*
 * An existing file replaced whole by a new one of format fmt
 * (image_dest_plan()): after the checks on the existing file, the new
 * one is made under a temporary name beside it, like a new file, and
 * renamed over it at commit; until then the old file stays open and
 * claimed (QEMU's lock bytes), so a QEMU cannot start on it meanwhile.
 */
static int dest_open_replace(struct dest *d, const struct dest_opts *o,
                             struct image *src, uint64_t need,
                             bool need_known, const char *fmt,
                             struct df_error *err)
{
    struct stat st;

    if (o->undo)
        return df_usage(err, "--undo: %s is replaced whole by a new %s "
                        "file, which a journal cannot put back; keep a "
                        "copy of it instead", d->path, fmt);
    if (!need_known && dest_stream_fmt(fmt, err) < 0)
        return -1;
    /* The rename would replace the link, not the file it names. */
    if (lstat(d->path, &st) == 0 && S_ISLNK(st.st_mode))
        return df_usage(err, "%s is a symbolic link: a %s file replaces "
                        "it whole; name the file it points to", d->path,
                        fmt);
    if (dest_check(o, src, d->path, &d->img->file, need, true, err) < 0)
        return -1;
    if (o->dry_run)
        return dest_dry_sink(d, o, need, true, err);
    if (safety_claim(&d->img->file, &d->claim_fd, err) < 0 ||
        fstat(d->img->file.fd, &st) < 0)
        return err->cat ? -1 : df_io(err, d->path, errno, "cannot stat");
    d->old = d->img;
    d->img = NULL;
    if (dest_create_tmp(d, o, fmt, dest_new_size(fmt, need, need_known),
                        err) < 0)
        return -1;
    /* The new file takes the old one's place: its mode and owner too
     * (a VM's disk is often readable by the hypervisor's user only). */
    if (fchmod(d->img->file.fd, st.st_mode & 07777) < 0 ||
        (fchown(d->img->file.fd, st.st_uid, st.st_gid) < 0 &&
         errno != EPERM))
        return df_io(err, d->tmp_path, errno, "cannot set mode and owner");
    d->sink = need_known ? sink_image_new(d->img, true, err)
                         : sink_image_new_growing(d->img, err);
    return d->sink ? 0 : -1;
}

/* Write the existing destination d->img in place, after its checks:
 * claimed, grown to need, its old contents saved for --undo, and with
 * guard every range checked to read as zeros before it is written. */
static int dest_in_place(struct dest *d, const struct dest_opts *o,
                         uint64_t orig_size, uint64_t need, bool need_known,
                         bool guard, uint64_t guard_from,
                         struct df_error *err)
{
    if (safety_claim(&d->img->file, &d->claim_fd, err) < 0 ||
        (need_known && dest_grow(d->img, need, d->path, err) < 0))
        return -1;
    d->sink = sink_image_new(d->img, false, err);
    if (d->sink && need_known)
        d->sink->size = need;
    if (d->sink && o->undo)
        d->sink = undo_sink_wrap(d->sink, d->img, orig_size, d->path,
                                 o->undo, err);
    if (d->sink && guard)
        d->sink = sink_guard_wrap_from(d->sink, d->img, true, guard_from,
                                       err);
    return d->sink ? 0 : -1;
}

static int dest_open_existing(struct dest *d, const struct dest_opts *o,
                              struct image *src, uint64_t need,
                              bool need_known, struct df_error *err)
{
    struct image_open_opts oo = { .format = "raw", .writable = !o->dry_run,
                                  .no_parents = true };
    const char *fmt;
    bool replace;

    if (image_open(d->path, &oo, &d->img, err) < 0 ||
        image_dest_plan(&d->img->file, o->out_format, &fmt, &replace,
                        err) < 0)
        return -1;
    if (replace)
        return dest_open_replace(d, o, src, need, need_known, fmt, err);
    uint64_t orig_size = d->img->size;
    if (dest_check(o, src, d->path, &d->img->file,
                   need_known ? need : orig_size, false, err) < 0)
        return -1;
    /* Without --overwrite the whole destination must read as zeros:
     * check 6 sampled it, the guard covers the rest as the job goes. */
    bool guard = !o->overwrite && orig_size > 0;
    if (o->dry_run) {
        if (dest_dry_sink(d, o, need_known ? need : orig_size, false,
                          err) == 0 && guard)
            d->sink = sink_guard_wrap(d->sink, d->img, false, err);
        return d->sink ? 0 : -1;
    }
    return dest_in_place(d, o, orig_size, need, need_known, guard, 0, err);
}

/*
 * An NBD export (image/nbd.h): written raw in place.  Of the safety
 * checks, size (5) and content (6, sampled through the export) apply,
 * and without --overwrite the guard reads every range before it is
 * written; there is no local file to look for holders of.
 */
static int dest_open_nbd(struct dest *d, const struct dest_opts *o,
                         struct image *src, uint64_t need, bool need_known,
                         struct df_error *err)
{
    struct image_open_opts oo = { .writable = !o->dry_run };

    if (!need_known)
        return df_usage(err, "a stream on stdin has no size known in "
                        "advance: an NBD export as DST needs a file or "
                        "device as SRC");
    if (o->out_format && strcmp(o->out_format, "raw"))
        return df_usage(err, "%s: an NBD export is written raw: -O %s "
                        "needs a file", d->path, o->out_format);
    if (o->undo)
        return df_usage(err, "--undo: not for an NBD export");
    if (image_open_nbd(d->path, &oo, &d->img, err) < 0)
        return -1;
    struct safety_req req = {
        .dst_path = d->path, .dst_image = d->img, .src_image = src,
        .need_size = need, .op = SAFETY_OP_WRITE,
        .overwrite = o->overwrite, .yes = o->yes, .dry_run = o->dry_run,
        .interactive = o->interactive,
        .confirm = o->confirm, .confirm_ctx = o->confirm_ctx,
    };
    if (safety_check_destination(&req, err) < 0)
        return -1;
    bool guard = !o->overwrite && d->img->size > 0;
    if (o->dry_run) {
        if (dest_dry_sink(d, o, need, false, err) == 0 && guard)
            d->sink = sink_guard_wrap(d->sink, d->img, false, err);
        return d->sink ? 0 : -1;
    }
    d->sink = sink_image_new(d->img, false, err);
    if (d->sink)
        d->sink->size = need;
    if (d->sink && guard)
        d->sink = sink_guard_wrap(d->sink, d->img, true, err);
    return d->sink ? 0 : -1;
}

int dest_open(struct dest *d, const struct dest_opts *o, const char *path,
              struct image *src, uint64_t need, bool need_known,
              struct df_error *err)
{
    struct stat st;

    d->path = path;
    if (image_is_nbd_uri(path))
        return dest_open_nbd(d, o, src, need, need_known, err);
    if (!strcmp(path, "-")) {
        if (o->report_on_stdout)
            return df_usage(err, "--json cannot share stdout with the disk "
                            "data (DST is -)");
        if (o->out_format && strcmp(o->out_format, "raw"))
            return df_usage(err, "DST - is a raw stream: -O %s needs a file",
                            o->out_format);
        if (o->undo)
            return df_usage(err, "--undo: DST - is a stream: nothing to "
                            "save");
        d->sink = sink_stream_new(STDOUT_FILENO, "-", err);
        return d->sink ? 0 : -1;
    }
    if (lstat(path, &st) == 0 || errno != ENOENT) {
        /* A dangling symlink is not a file we may create through. */
        return dest_open_existing(d, o, src, need, need_known, err);
    }
    const char *fmt = o->out_format ? o->out_format : "raw";
    if (!need_known && dest_stream_fmt(fmt, err) < 0)
        return -1;
    if (dest_check(o, src, path, NULL, need, false, err) < 0)
        return -1;
    if (o->dry_run)
        return dest_dry_sink(d, o, need, true, err);
    if (o->undo)
        dest_warn_undo_new(o, path);
    if (dest_create_tmp(d, o, fmt, dest_new_size(fmt, need, need_known),
                        err) < 0)
        return -1;
    d->sink = need_known ? sink_image_new(d->img, true, err)
                         : sink_image_new_growing(d->img, err);
    return d->sink ? 0 : -1;
}

int dest_open_partial(struct dest *d, const struct dest_opts *o,
                      const char *path, uint64_t size, uint64_t src_id,
                      bool resume, struct df_error *err)
{
    char jpath[PATH_MAX];
    struct stat st;
    struct rjournal_info ji;
    const char *fmt = o->out_format ? o->out_format : "raw";
    bool raw = !strcmp(fmt, "raw");

    d->path = path;
    d->partial = true;
    if (dest_check(o, NULL, path, NULL, size, false, err) < 0 ||
        dest_partial_path(path, d->part, sizeof(d->part), err) < 0 ||
        (d->dirfd < 0 && (d->dirfd = dest_dir_open(path, err)) < 0))
        return -1;
    const char *pname = path_basename(d->part);
    rjournal_path(d->part, true, jpath, sizeof(jpath));
    bool have = fstatat(d->dirfd, pname, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode);
    if (have && resume && raw &&
        rjournal_load(d->dirfd, jpath, size, src_id, &d->done, &ji,
                      err) == 0) {
        if (dest_resume_partial(d->dirfd, d->part, size, &ji, &d->done,
                                o->overwrite, &d->img, err) < 0)
            return -1;
        d->resumed = true;
    } else {
        if (err->cat != DF_OK)
            return -1;
        if (have && !o->dry_run)
            unlinkat(d->dirfd, pname, 0);   /* ours, stale: start again */
        if (o->dry_run)
            return 0;
        if (image_create_at(d->dirfd, d->part, fmt, size, &o->copts,
                            &d->img, err) < 0)
            return -1;
        dest_test_kill("open");
    }
    snprintf(d->img->name, sizeof(d->img->name), "%s", path);
    d->sink = sink_image_new(d->img, !d->resumed, err);
    if (!d->sink)
        return -1;
    if (!raw)
        return 0;
    return rjournal_open(&d->j, d->dirfd, jpath, size, src_id,
                         &d->img->file, d->resumed, err);
}

/* An existing destination of a session: raw in place, with its resume
 * journal (dest_open_session). */
static int dest_open_session_existing(struct dest *d,
                                      const struct dest_opts *o,
                                      uint64_t size, uint64_t src_id,
                                      bool resume, struct df_error *err)
{
    struct image_open_opts oo = { .format = "raw", .writable = !o->dry_run,
                                  .no_parents = true };
    struct rjournal_info ji;
    char jpath[PATH_MAX];
    int jdir = -1;

    if (o->out_format && strcmp(o->out_format, "raw"))
        return df_usage(err, "-O %s writes only new files: %s exists",
                        o->out_format, d->path);
    if (image_open(d->path, &oo, &d->img, err) < 0)
        return -1;
    bool regular = d->img->file.is_regular;
    if (resume || !o->dry_run) {        /* a dry run creates nothing */
        rjournal_path(d->path, regular, jpath, sizeof(jpath));
        if (regular)
            jdir = d->dirfd;
        else if ((jdir = d->statefd = state_dir_open(o->state_dir,
                                                     err)) < 0)
            return -1;
    }
    if (resume && rjournal_load(jdir, jpath, size, src_id, &d->done, &ji,
                                err) == 0)
        d->resumed = true;
    if (err->cat != DF_OK)
        return -1;
    uint64_t orig_size = d->img->size;
    if (d->resumed ? rjournal_check_dst(&ji, &d->img->file, err) < 0 ||
                     dest_check_resumed(o, d->path, &d->img->file, size,
                                        &d->done, err) < 0
                   : dest_check(o, NULL, d->path, &d->img->file, size,
                                false, err) < 0)
        return -1;
    /* A dry run here writes nowhere (the client shows what would
     * travel): the guard's full check runs in one pass instead. */
    if (o->dry_run)
        return !o->overwrite && orig_size > 0 && !d->resumed
                   ? guard_check_empty(d->img, size, d->path, err)
                   : 0;
    /* Without --overwrite the whole destination must read as zeros, as
     * for a local copy (dest_open_existing).  Resuming, what the last
     * run wrote after its last commit is ours but listed nowhere: the
     * guard starts at the journal's mark, past which nothing was
     * written (journal.h invariant 8); a journal without one (an older
     * diskferry's) gets the checks above only. */
    bool guard = !o->overwrite && orig_size > 0 &&
                 (!d->resumed || ji.has_hw);
    if (dest_in_place(d, o, orig_size, size, true, guard,
                      d->resumed ? ji.hw : 0, err) < 0 ||
        rjournal_open(&d->j, jdir, jpath, size, src_id, &d->img->file,
                      d->resumed, err) < 0)
        return -1;
    if (d->resumed && ji.has_hw)
        d->j.hw = ji.hw;
    return 0;
}

int dest_open_session(struct dest *d, const struct dest_opts *o,
                      const char *path, int dirfd, uint64_t size,
                      uint64_t src_id, bool resume, struct df_error *err)
{
    struct stat st;
    d->path = path;
    d->dirfd = dirfd;
    if (fstatat(dirfd, path_basename(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return dest_open_partial(d, o, path, size, src_id, resume, err);
    return dest_open_session_existing(d, o, size, src_id, resume, err);
}

/*
 * Replace the destination by the verified copy (dest_open_replace): the
 * rename replaces the file the checks ran on, and only that one.
 */
static int dest_commit_replace(struct dest *d, struct df_error *err)
{
    struct stat st;
    const char *name = path_basename(d->path);
    if (fstatat(d->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        (uint64_t)st.st_dev != d->old->file.dev ||
        (uint64_t)st.st_ino != d->old->file.ino) {
        d->created = false;             /* keep it: the message names it */
        return df_refuse(err, d->path, "refusing to write: it was replaced "
                         "while copying (the copy is left in %s)",
                         d->tmp_path);
    }
    if (renameat(d->dirfd, path_basename(d->tmp_path), d->dirfd, name) < 0)
        return df_io(err, d->path, errno, "cannot rename %s", d->tmp_path);
    d->created = false;
    return 0;
}

int dest_commit(struct dest *d, struct df_error *err)
{
    dest_test_kill("verified");
    if (d->created) {
        int r = d->old ? dest_commit_replace(d, err)
                       : dest_rename_new(d->dirfd, d->tmp_path, d->path,
                                         err);
        if (r < 0) {
            if (err->cat == DF_REFUSED)
                d->created = false;     /* keep it: the message names it */
            return -1;
        }
        d->created = false;
    }
    if (d->partial && dest_rename_new(d->dirfd, d->part, d->path, err) < 0)
        return -1;
    dest_test_kill("committed");
    return 0;
}

void dest_abort(struct dest *d)
{
    if (d->created)
        unlinkat(d->dirfd, path_basename(d->tmp_path), 0);
    d->created = false;
}

int dest_create(const char *path, const char *fmt, uint64_t size,
                struct df_error *err)
{
    struct image *img = NULL;
    struct safety_req req = { .dst_path = path, .dst = NULL,
                              .need_size = size, .op = SAFETY_OP_CREATE };
    if (safety_check_destination(&req, err) < 0 ||
        image_create(path, fmt, size, NULL, &img, err) < 0 ||
        image_flush(img, true, err) < 0) {
        if (img) {
            image_close(img);
            unlink(path);
        }
        return -1;
    }
    image_close(img);
    return 0;
}
