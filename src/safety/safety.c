/*
 * safety.c: safety_check_destination(), the one gate before the first
 * byte is written (safety.h lists the checks and their order).
 *
 * The order puts the most specific reason first: a destination that is
 * the source is also "open" (by us) and "not empty"; a mounted one is
 * also open by the kernel.  Size comes before content so that a disk
 * too small is refused without asking the user to type its name.
 */
#define _GNU_SOURCE
#include "safety/safety_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/size.h"

/* Check 0: a destination that does not exist yet. */
static int safety_check_new(const struct safety_req *req,
                            struct df_error *err)
{
    char dir[PATH_MAX], real[PATH_MAX];
    struct stat st;

    if (lstat(req->dst_path, &st) == 0 && req->op == SAFETY_OP_CREATE)
        return df_refuse(err, "", "refusing to create %s: it exists "
                         "(create never replaces a file; delete it first, "
                         "or use copy --overwrite to write over it)",
                         req->dst_path);
    if (lstat(req->dst_path, &st) == 0)
        return df_refuse(err, req->dst_path, "refusing to write: file "
                         "exists (give --overwrite to write over it)");
    if (errno != ENOENT)
        return df_io(err, req->dst_path, errno, "cannot check");
    /* Resolve the directory so /dev/../dev/sdx and symlinks into /dev
     * are caught too.  A directory that does not resolve is left to the
     * create, which fails naming the path. */
    path_dirname(req->dst_path, dir, sizeof(dir));
    if (!realpath(dir, real))
        snprintf(real, sizeof(real), "%s", dir);
    if (!strcmp(real, "/dev") || !strncmp(real, "/dev/", 5))
        return df_refuse(err, req->dst_path, "refusing to write: no such "
                         "device (a new file is never created under /dev)");
    return 0;
}

/* Check 5. */
static int safety_check_size(const struct safety_req *req,
                             struct df_error *err)
{
    const struct df_file *d = req->dst;
    uint64_t size = req->dst_image ? req->dst_image->size : d->size;
    char have[32], need[32];
    FILE *msgs = req->msgs ? req->msgs : stderr;

    if (size == req->need_size ||
        (d && d->is_regular && (size == 0 || req->grow)))
        return 0;
    size_format(size, have, sizeof(have));
    size_format(req->need_size, need, sizeof(need));
    if (!strcmp(have, need)) {
        snprintf(have, sizeof(have), "%llu bytes",
                 (unsigned long long)size);
        snprintf(need, sizeof(need), "%llu bytes",
                 (unsigned long long)req->need_size);
    }
    if (size < req->need_size)
        return df_refuse(err, req->dst_path, "refusing to write: %s is "
                         "smaller than the source (%s)", have, need);
    fprintf(msgs, "diskferry: warning: %s: %s is larger than the source "
            "(%s); the bytes past %llu are left as they are\n",
            req->dst_path, have, need,
            (unsigned long long)req->need_size);
    return 0;
}

/* Check 6. */
static int safety_check_content(const struct safety_req *req,
                                struct df_error *err)
{
    char desc[256];
    int r = req->dst_image
            ? emptiness_probe_image(req->dst_image, desc, sizeof(desc), err)
            : emptiness_probe(req->dst, req->ours, desc, sizeof(desc), err);
    if (r < 0)
        return r;
    if (r == 0 && req->replace && !req->overwrite)
        return df_refuse(err, req->dst_path, "refusing to write: file "
                         "exists (give --overwrite to replace it)");
    if (r == 0)
        return 0;
    if (!req->overwrite)
        return df_refuse(err, req->dst_path, "refusing to write: holds %s "
                         "(give --overwrite)", desc);
    if (req->interactive && !req->yes && !req->dry_run)
        return req->confirm ? req->confirm(req->confirm_ctx, desc, err)
                            : confirm_by_name(req, desc, err);
    return 0;
}

int safety_check_destination(const struct safety_req *req,
                             struct df_error *err)
{
    if (!req->dst_path || !req->dst_path[0])
        return df_usage(err, "no destination given");
    if (req->dst_image) {
        /* No local file: nothing of this host to look for holders of. */
        if (req->op == SAFETY_OP_WRITE && (safety_check_size(req, err) < 0 ||
                                           safety_check_content(req, err) < 0))
            return -1;
        return 0;
    }
    if (!req->dst)
        return safety_check_new(req, err);
    if (req->dst->is_stream || req->dst->fd < 0)
        return 0;
    if (inuse_check_source(req, err) < 0)
        return -1;
    if (inuse_check_holders(req, err) < 0)
        return -1;
    /* Restoring: the journal judges size and content (undo.c). */
    if (req->op == SAFETY_OP_WRITE && !req->replace &&
        safety_check_size(req, err) < 0)
        return -1;
    if (req->op == SAFETY_OP_WRITE && safety_check_content(req, err) < 0)
        return -1;
    return 0;
}

int safety_check_source(const struct safety_src_req *req,
                        struct df_error *err)
{
    char why[PATH_MAX + 128], who[PATH_MAX];
    const char *result = req->result ? req->result : "copy";
    FILE *msgs = req->msgs ? req->msgs : stderr;

    if (!req->src)
        return 0;
    int r = inuse_source_writer(req->src, why, sizeof(why), who,
                                sizeof(who), err);
    if (r <= 0)
        return r;
    if (!req->force_share)
        return df_refuse(err, who, "refusing to read: %s: the %s would be "
                         "inconsistent (--force-share reads it anyway)",
                         why, result);
    if (!req->quiet)
        fprintf(msgs, "diskferry: %s: warning: %s is in use (%s): the %s "
                "may be inconsistent\n", req->cmd ? req->cmd : "diskferry",
                who, why, result);
    return 0;
}
