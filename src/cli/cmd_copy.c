/*
 * cmd_copy.c: `diskferry copy SRC DST`: full copy or conversion, zero-
 * and hole-aware, verified end to end.
 *
 * SRC: an image file or block device (any format diskferry reads, its
 * chain flattened) or `-` (a raw stream on stdin).  DST: a new file
 * (created O_EXCL: raw, or qcow2 with -O qcow2), an existing file or
 * device with --overwrite, or `-` (raw bytes on stdout).  An existing
 * file is written in place when it is raw and the output is raw;
 * otherwise (an image container, or -O qcow2) it is replaced whole:
 * a new file written like a new DST and renamed over it at the end
 * (image_dest_plan(), copy_open_replace()).  An existing destination
 * written without --overwrite goes through the emptiness guard
 * (engine/sink_guard.c).
 *
 * Order of work (DESIGN.md promise 1 and 5): the source is opened and
 * validated, chain and all, before the destination is created or
 * opened.  A new file is written under a hidden temporary name in the
 * destination's directory (.NAME.diskferry-XXXXXX) and renamed to NAME
 * (never replacing a file that appeared meanwhile) only after the copy
 * verified; a failed or killed copy never leaves a file that looks
 * complete under the name the user gave.  Before that, and before any
 * byte goes into an existing destination, safety_check_destination()
 * (safety/safety.h) runs on it.  --dry-run swaps the real sink for one
 * that prints; --undo wraps the real sink in the journal writer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/endpoint.h"
#include "engine/dest.h"
#include "engine/job.h"
#include "proto/journal.h"
#include "proto/remote.h"
#include "safety/safety.h"
#include "util/interrupt.h"
#include "util/progress.h"
#include "util/size.h"

static const char copy_usage[] =
    "usage: diskferry copy [OPTIONS] SRC DST\n"
    "\n"
    "Copy the disk SRC to DST, converting the format if asked.  Holes and "
    "zero\nblocks are neither read (where the format says so) nor "
    "written; the copy is\nverified end to end: a hash tree of what was "
    "read is compared with one of\nwhat DST holds afterwards (exit 7 on "
    "a mismatch).\n"
    "\n"
    "SRC  an image file or block device (raw, qcow2, vmdk, vdi, vhd, "
    "vhdx; a file's\n     format is probed from the content, a block "
    "device is raw unless -f\n     says), or - for a raw stream on stdin\n"
    "DST  a new file (never replaces one), an existing file or device "
    "with\n     --overwrite, or - for raw bytes on stdout\n"
    "\n"
    "options:\n"
    "  -f, --format FMT        read SRC as FMT instead of probing "
    "(-f raw copies\n"
    "                          the bytes of any file as they are); "
    "needed to read\n"
    "                          a block device that carries an image "
    "signature and\n"
    "                          to follow the backing chain a probed "
    "image records\n"
    "  -O, --output-format FMT raw or qcow2 (default: raw, or the format "
    "of an\n"
    "                          existing image file DST); a DST of "
    "another format\n"
    "                          is replaced whole (--overwrite)\n"
    "  -c, --compress-image    qcow2 output: compress clusters (zstd)\n"
    "      --overwrite         write over a disk that holds data or a "
    "signature\n"
    "      --yes               do not ask before overwriting\n"
    "      --dry-run           run every check, print what would be "
    "written,\n"
    "                          write nothing\n"
    "      --undo FILE         save what is overwritten in the journal "
    "FILE first\n"
    "                          ('diskferry undo FILE' puts it back)\n"
    "      --no-verify         skip the read-back verification\n"
    "      --fsync             wait until DST is on stable storage before "
    "verifying\n"
    "                          (and report write-back errors); without it, "
    "as cp,\n"
    "                          dd and qemu-img, DST may still be in the "
    "page cache\n"
    "      --digest ALG        xxh128 (default) or sha256 (a "
    "cryptographic digest)\n"
    "      --threads N         reader (and compression) threads "
    "(default: cores)\n"
    "      --parent-dir DIR    look for parents by name in DIR "
    "(repeatable; without\n"
    "                          -f, the only place a probed chain's "
    "parents are\n"
    "                          looked for)\n"
    "      --parent C=P        use P as the parent of layer C "
    "(repeatable)\n"
    "      --force-share       copy a source that is being written (a "
    "running VM,\n"
    "                          a read-write mount): the copy may be "
    "inconsistent\n"
    "      --json              one JSON report on stdout at the end\n"
    "\n"
    "remote endpoints ([user@]host:PATH, [user@][IPv6]:PATH; SRC or "
    "DST, not\n"
    "both: run diskferry on one of the two hosts; a local name with a "
    "colon\n"
    "before any slash is written ./a:b):\n"
    "      --rsh CMD           how to reach the host (default ssh; split "
    "like\n"
    "                          rsync's -e: 'ssh -p 2222 -i key')\n"
    "      --remote-path P     diskferry on the remote host (default "
    "diskferry)\n"
    "      --compress MODE     auto (default), zstd, zstd:LEVEL, lz4, none\n"
    "      --bwlimit RATE      at most RATE bytes/s on the wire (20M, "
    "500K)\n"
    "      --transport T       ssh (default) or tcp: data on --streams "
    "TCP\n"
    "                          connections, AES-256-GCM, key sent over "
    "ssh\n"
    "      --streams N         TCP streams (default 4)\n"
    "      --resume            continue an interrupted copy (either "
    "direction)\n"
    "                          from the receiving side's journal; "
    "verified in full\n"
    "      --timeout SECS      give up on a host that answers nothing for "
    "SECS\n"
    "                          seconds (default 60)\n"
    "      --progress          draw progress (default: when stderr is a "
    "terminal)\n"
    "      --no-progress       never draw progress\n"
    "  -q, --quiet             no warnings\n"
    "  -v, --verbose           a summary line at the end; -vv: where "
    "errors arose\n"
    "  -h, --help              this text\n";

struct copy_opts {
    struct cli c;
    struct cli_image_opts src_io;
    const char *out_format;
    struct image_create_opts copts;
    bool overwrite;
    bool yes;
    bool dry_run;
    const char *undo;           /* --undo journal, or NULL */
    bool json;
    bool fsync;
    int progress;
    struct job_opts jo;
    struct remote_opts ro;
    uint64_t remote_size;       /* copy host:SRC DST: the source's size */
    bool remote_src;
};

enum {
    OPT_OVERWRITE = 256, OPT_YES, OPT_NO_VERIFY, OPT_DIGEST, OPT_THREADS,
    OPT_JSON, OPT_PROGRESS, OPT_NO_PROGRESS,
    OPT_RSH, OPT_REMOTE_PATH, OPT_COMPRESS, OPT_BWLIMIT, OPT_TRANSPORT,
    OPT_STREAMS, OPT_RESUME,
    OPT_FSYNC, OPT_DRY_RUN, OPT_UNDO, OPT_TIMEOUT,
};

static int copy_parse(int argc, char **argv, struct copy_opts *o)
{
    static const struct option longopts[] = {
        CLI_IMAGE_LONGOPTS,
        { "output-format", required_argument, NULL, 'O' },
        { "compress-image", no_argument, NULL, 'c' },
        { "overwrite", no_argument, NULL, OPT_OVERWRITE },
        { "yes", no_argument, NULL, OPT_YES },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "undo", required_argument, NULL, OPT_UNDO },
        { "no-verify", no_argument, NULL, OPT_NO_VERIFY },
        { "fsync", no_argument, NULL, OPT_FSYNC },
        { "digest", required_argument, NULL, OPT_DIGEST },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "json", no_argument, NULL, OPT_JSON },
        { "progress", no_argument, NULL, OPT_PROGRESS },
        { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
        { "rsh", required_argument, NULL, OPT_RSH },
        { "remote-path", required_argument, NULL, OPT_REMOTE_PATH },
        { "compress", required_argument, NULL, OPT_COMPRESS },
        { "bwlimit", required_argument, NULL, OPT_BWLIMIT },
        { "transport", required_argument, NULL, OPT_TRANSPORT },
        { "streams", required_argument, NULL, OPT_STREAMS },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli *c = &o->c;
    int opt;

    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "f:O:cqvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'O': o->out_format = optarg; break;
        case 'c': o->copts.compress = true; break;
        case OPT_OVERWRITE: o->overwrite = true; break;
        case OPT_YES: o->yes = true; break;
        case OPT_DRY_RUN: o->dry_run = true; break;
        case OPT_UNDO: o->undo = optarg; break;
        case OPT_NO_VERIFY: o->jo.verify = false; break;
        case OPT_FSYNC: o->fsync = true; break;
        case OPT_DIGEST:
            if (digest_alg_parse(optarg, &o->jo.digest) < 0)
                return cli_usage(c, "--digest: unknown algorithm '%s' "
                                 "(xxh128, sha256)", optarg);
            break;
        case OPT_THREADS:
            if (cli_parse_uint(c, "--threads", optarg, 1, 64,
                               &o->jo.threads))
                return DF_USAGE;
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_PROGRESS: o->progress = 1; break;
        case OPT_NO_PROGRESS: o->progress = 0; break;
        case OPT_RSH: o->ro.rsh = optarg; break;
        case OPT_REMOTE_PATH: o->ro.remote_path = optarg; break;
        case OPT_COMPRESS:
            if (comp_mode_parse(optarg, &o->ro.comp, &o->ro.level) < 0)
                return cli_usage(c, "--compress: expected auto, zstd, "
                                 "zstd:1..19, lz4 or none, got '%s'",
                                 optarg);
            break;
        case OPT_BWLIMIT:
            if (cli_parse_size(c, "--bwlimit", optarg, &o->ro.bwlimit))
                return DF_USAGE;
            if (o->ro.bwlimit && o->ro.bwlimit < 1024)
                return cli_usage(c, "--bwlimit: at least 1K per second");
            break;
        case OPT_TRANSPORT:
            if (!strcmp(optarg, "tcp"))
                o->ro.tcp = true;
            else if (!strcmp(optarg, "ssh"))
                o->ro.tcp = false;
            else
                return cli_usage(c, "--transport: expected ssh or tcp, "
                                 "got '%s'", optarg);
            break;
        case OPT_STREAMS:
            if (cli_parse_uint(c, "--streams", optarg, 1, 64,
                               &o->ro.streams))
                return DF_USAGE;
            break;
        case OPT_RESUME: o->ro.resume = true; break;
        case OPT_TIMEOUT:
            if (cli_parse_uint(c, "--timeout", optarg, 1, 86400,
                               &o->ro.timeout))
                return DF_USAGE;
            o->ro.pass_timeout = true;
            break;
        case 'q': c->quiet = true; break;
        case 'v': c->verbose++; break;
        case 'h': fputs(copy_usage, stdout); return -1;
        default:
            switch (cli_image_option(c, &o->src_io, opt, optarg)) {
            case 1: break;
            case 0: return cli_bad_option(c, argv);
            default: return DF_USAGE;
            }
        }
    }
    if (argc - optind != 2)
        return cli_usage(c, "expected SRC and DST");
    unsigned caps = 0;
    if (o->out_format && image_format_caps(o->out_format, &caps) < 0)
        return cli_usage(c, "-O: unknown format '%s'", o->out_format);
    if (o->out_format && !(caps & IMG_CAN_CREATE))
        return cli_usage(c, "-O: diskferry does not write %s images "
                         "(raw, qcow2)", o->out_format);
    if (o->copts.compress && !(caps & IMG_CAN_COMPRESS))
        return cli_usage(c, "-c compresses qcow2 output: give -O qcow2");
    if (o->dry_run && o->undo)
        return cli_usage(c, "--dry-run writes nothing: --undo has nothing "
                         "to save");
    o->jo.progress = cli_progress_enabled(o->progress);
    return 0;
}

/* The destination end of a local copy. */
struct copy_dst {
    struct image *img;
    struct sink *sink;
    bool created;               /* we made tmp_path: rename or remove it */
    const char *path;
    char tmp_path[PATH_MAX];
    int dirfd;                  /* the directory of a new file, or -1 */
    int claim_fd;               /* safety_claim(): O_EXCL on a device */
    struct image *old;          /* replaced whole: the file renamed over */
};

/* Create the new destination under a hidden temporary name
 * (engine/dest.h), after removing those that killed copies left. */
static int copy_create_tmp(struct copy_opts *o, struct copy_dst *d,
                           const char *fmt, uint64_t size,
                           struct df_error *err)
{
    if (d->dirfd < 0 && (d->dirfd = dest_dir_open(d->path, err)) < 0)
        return -1;
    dest_clean_stale(d->dirfd, d->path, o->c.quiet ? NULL : stderr);
    if (dest_tmp_create(d->dirfd, d->path, fmt, size, &o->copts, &d->img,
                        d->tmp_path, sizeof(d->tmp_path), err) < 0)
        return -1;
    d->created = true;
    snprintf(d->img->name, sizeof(d->img->name), "%s", d->path);
    return 0;
}

/* Give the verified copy its name, never replacing a file. */
static int copy_commit(struct copy_dst *d, struct df_error *err)
{
    if (partial_commit(d->dirfd, d->tmp_path, d->path, err) < 0) {
        if (err->cat == DF_REFUSED)
            d->created = false;         /* keep it: the message names it */
        return -1;
    }
    d->created = false;
    return 0;
}

/* A failed copy: the temporary file goes. */
static void copy_abort(struct copy_dst *d)
{
    if (d->created)
        unlinkat(d->dirfd, path_basename(d->tmp_path), 0);
    d->created = false;
}

/* DF_INTERRUPTED: say how far it got and how to go on (DESIGN.md). */
static void copy_interrupted(struct df_error *err, uint64_t written,
                             uint64_t total, bool resumable)
{
    char done[32], all[32];
    if (err->cat != DF_INTERRUPTED)
        return;
    size_format(written, done, sizeof(done));
    size_format(total, all, sizeof(all));
    df_error_reset(err);
    df_fail(err, DF_INTERRUPTED, 0, "", -1, "interrupted: %s of %s "
            "written; run the same command %s", done, all, resumable
            ? "with --resume to continue" : "again");
}

/*
 * Replace the destination by the verified copy (copy_open_replace): the
 * rename replaces the file the checks ran on, and only that one.
 */
static int copy_commit_replace(struct copy_dst *d, struct df_error *err)
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

static int copy_commit_dst(struct copy_dst *d, struct df_error *err)
{
    if (!d->created)
        return 0;
    return d->old ? copy_commit_replace(d, err) : copy_commit(d, err);
}

/* The one safety gate (safety/safety.h): dst NULL for a new file;
 * replace: dst is replaced whole by a new file. */
static int copy_check(const struct copy_opts *o, struct image *src,
                      const char *path, const struct df_file *dst,
                      uint64_t need, bool replace, struct df_error *err)
{
    struct safety_req req = {
        .dst_path = path, .dst = dst, .src_image = src,
        .need_size = need, .op = SAFETY_OP_WRITE, .replace = replace,
        .overwrite = o->overwrite, .yes = o->yes, .dry_run = o->dry_run,
        .interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO),
    };
    return safety_check_destination(&req, err);
}

/*
 * An existing file replaced whole by a new one of format fmt
 * (image_dest_plan()): after the checks on the existing file, the new
 * one is made under a temporary name beside it, like a new file, and
 * renamed over it at commit; until then the old file stays open and
 * claimed (QEMU's lock bytes), so a QEMU cannot start on it meanwhile.
 */
static int copy_open_replace(struct copy_opts *o, struct image *src,
                             uint64_t need, bool need_known,
                             const char *fmt, struct copy_dst *d,
                             struct df_error *err)
{
    struct stat st;

    if (o->undo)
        return df_usage(err, "--undo: %s is replaced whole by a new %s "
                        "file, which a journal cannot put back; keep a "
                        "copy of it instead", d->path, fmt);
    if (!need_known && strcmp(fmt, "raw"))
        return df_usage(err, "a stream on stdin has no size known in "
                        "advance: -O %s needs a file or device as SRC", fmt);
    /* The rename would replace the link, not the file it names. */
    if (lstat(d->path, &st) == 0 && S_ISLNK(st.st_mode))
        return df_usage(err, "%s is a symbolic link: a %s file replaces "
                        "it whole; name the file it points to", d->path,
                        fmt);
    if (copy_check(o, src, d->path, &d->img->file, need, true, err) < 0)
        return -1;
    if (o->dry_run) {
        d->sink = dryrun_sink_new(d->path, need, o->json ? stderr : stdout,
                                  err);
        if (d->sink)
            d->sink->dst_is_zero = true;
        return d->sink ? 0 : -1;
    }
    if (safety_claim(&d->img->file, &d->claim_fd, err) < 0 ||
        fstat(d->img->file.fd, &st) < 0)
        return err->cat ? -1 : df_io(err, d->path, errno, "cannot stat");
    d->old = d->img;
    d->img = NULL;
    if (copy_create_tmp(o, d, fmt, need, err) < 0)
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

static int copy_open_existing(struct copy_opts *o, struct image *src,
                              uint64_t need, bool need_known,
                              struct copy_dst *d, struct df_error *err)
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
        return copy_open_replace(o, src, need, need_known, fmt, d, err);
    uint64_t orig_size = d->img->size;
    if (copy_check(o, src, d->path, &d->img->file,
                   need_known ? need : orig_size, false, err) < 0)
        return -1;
    /* Without --overwrite the whole destination must read as zeros:
     * check 6 sampled it, the guard covers the rest as the job goes. */
    bool guard = !o->overwrite && orig_size > 0;
    if (o->dry_run) {
        d->sink = dryrun_sink_new(d->path, need_known ? need : orig_size,
                                  o->json ? stderr : stdout, err);
        if (d->sink && guard)
            d->sink = sink_guard_wrap(d->sink, d->img, false, err);
        return d->sink ? 0 : -1;
    }
    if (safety_claim(&d->img->file, &d->claim_fd, err) < 0)
        return -1;
    if (need_known && d->img->size < need) {
        /* Only an empty regular file gets here (safety check 5): it
         * grows to hold the copy. */
        if (ftruncate(d->img->file.fd, (off_t)need) < 0)
            return df_io(err, d->path, errno, "cannot grow to %llu bytes",
                         (unsigned long long)need);
        d->img->file.size = d->img->size = need;
    }
    d->sink = sink_image_new(d->img, false, err);
    if (d->sink && need_known)
        d->sink->size = need;
    if (d->sink && o->undo)
        d->sink = undo_sink_wrap(d->sink, d->img, orig_size, d->path,
                                 o->undo, err);
    if (d->sink && guard)
        d->sink = sink_guard_wrap(d->sink, d->img, true, err);
    return d->sink ? 0 : -1;
}

static int copy_open_dst(struct copy_opts *o, struct image *src,
                         const char *path, struct copy_dst *d,
                         struct df_error *err)
{
    struct stat st;
    bool stream_src = !src && !o->remote_src;
    uint64_t need = src ? src->size : o->remote_size;

    d->path = path;
    if (!strcmp(path, "-")) {
        if (o->json)
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
        return copy_open_existing(o, src, need, !stream_src, d, err);
    }
    const char *fmt = o->out_format ? o->out_format : "raw";
    if (stream_src && strcmp(fmt, "raw"))
        return df_usage(err, "a stream on stdin has no size known in "
                        "advance: -O %s needs a file or device as SRC", fmt);
    if (copy_check(o, src, path, NULL, need, false, err) < 0)
        return -1;
    if (o->dry_run) {
        d->sink = dryrun_sink_new(path, need, o->json ? stderr : stdout,
                                  err);
        if (d->sink)
            d->sink->dst_is_zero = true;
        return d->sink ? 0 : -1;
    }
    if (o->undo)
        cli_warn(&o->c, "--undo: %s is new: there is nothing to save (to "
                 "undo, delete it)", path);
    if (copy_create_tmp(o, d, fmt, need, err) < 0)
        return -1;
    d->sink = stream_src ? sink_image_new_growing(d->img, err)
                         : sink_image_new(d->img, true, err);
    return d->sink ? 0 : -1;
}

static void copy_report_json(const struct copy_opts *o, const char *src,
                             const char *dst, const char *src_fmt,
                             const char *dst_fmt,
                             const struct job_stats *st,
                             const struct remote_stats *rs)
{
    struct json j;
    char hex[2 * DIGEST_MAX_LEN + 1];
    json_begin(&j, stdout);
    json_str(&j, "command", "copy");
    json_str(&j, "source", src);
    json_str(&j, "destination", dst);
    json_str(&j, "source_format", src_fmt);
    json_str(&j, "destination_format", dst_fmt);
    json_u64(&j, "disk_size", st->disk_size);
    json_u64(&j, "bytes_read", st->bytes_read);
    json_u64(&j, "bytes_written", st->bytes_written);
    json_u64(&j, "bytes_sent", st->bytes_wire);
    json_u64(&j, "bytes_zeroed", st->bytes_zeroed);
    json_obj(&j, "skipped");
    json_u64(&j, "unallocated", st->skipped_unallocated);
    json_u64(&j, "zero", st->skipped_zero);
    if (rs)
        json_u64(&j, "resumed", rs->skipped_resumed);
    json_close_obj(&j);
    if (rs) {
        json_obj(&j, "remote");
        json_str(&j, "transport", o->ro.tcp ? "tcp" : "ssh");
        json_str(&j, "compression", comp_mode_name(o->ro.comp));
        json_u64(&j, "bytes_wire", rs->bytes_wire);
        json_u64(&j, "payload_bytes", rs->raw_in);
        json_u64(&j, "payload_bytes_compressed", rs->comp_out);
        json_dbl(&j, "compression_ratio", rs->comp_out
                 ? (double)rs->raw_in / (double)rs->comp_out : 1.0);
        if (rs->zstd_level_max)
            json_u64(&j, "zstd_level_max", (uint64_t)rs->zstd_level_max);
        json_close_obj(&j);
    }
    json_dbl(&j, "seconds", st->seconds);
    json_dbl(&j, "verify_seconds", st->verify_seconds);
    json_bool(&j, "verified", st->verified);
    json_obj(&j, "digest");
    json_str(&j, "algorithm", digest_alg_name(o->jo.digest));
    digest_hex(&st->src_digest, hex);
    json_str(&j, "source", hex);
    if (st->verified) {
        digest_hex(&st->dst_digest, hex);
        json_str(&j, "destination", hex);
    }
    json_close_obj(&j);
    json_end(&j);
}

static void copy_report_line(const struct copy_opts *o,
                             const struct job_stats *st)
{
    char size[32], written[32], skipped[32];
    size_format(st->disk_size, size, sizeof(size));
    size_format(st->bytes_written, written, sizeof(written));
    size_format(st->skipped_unallocated + st->skipped_zero, skipped,
                sizeof(skipped));
    fprintf(stderr, "diskferry: copy: %s disk, %s written, %s of zeros and "
            "holes skipped, %.2f s%s\n", size, written, skipped, st->seconds,
            st->verified ? ", verified" : o->jo.verify ? "" :
            ", not verified (--no-verify)");
}

/*
 * A remote source into a new raw file: written as .NAME.diskferry-partial
 * with a resume journal beside it (proto/journal.h), so that a broken
 * link or a kill of either side leaves something --resume continues.
 */
static int copy_open_partial(struct copy_opts *o, const char *path,
                             const char *src_name, char *part,
                             struct copy_dst *d, struct rjournal *j,
                             struct extent_list *done, bool *resumed,
                             struct df_error *err)
{
    char jpath[PATH_MAX];
    struct stat st;
    struct rjournal_info ji;
    uint64_t size = o->remote_size, id = remote_src_id(src_name, size, NULL);

    *resumed = false;
    if (copy_check(o, NULL, path, NULL, size, false, err) < 0 ||
        partial_path(path, part, PATH_MAX, err) < 0 ||
        (d->dirfd = dest_dir_open(path, err)) < 0)
        return -1;
    const char *pname = path_basename(part);
    rjournal_path(part, true, jpath, sizeof(jpath));
    bool have = fstatat(d->dirfd, pname, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode);
    if (have && o->ro.resume &&
        rjournal_load(d->dirfd, jpath, size, id, done, &ji, err) == 0) {
        struct image_open_opts oo = { .format = "raw", .writable = true,
                                      .no_parents = true };
        struct df_file f;
        if (df_file_openat(&f, d->dirfd, part, O_RDWR | O_NOFOLLOW,
                           err) < 0 ||
            image_open_file(&f, part, part, &oo, &d->img, err) < 0)
            return -1;
        if (d->img->size != size)
            return df_refuse(err, part, "refusing to resume: %llu bytes, "
                             "the source has %llu",
                             (unsigned long long)d->img->size,
                             (unsigned long long)size);
        /* journal.h invariant 5: still the partial we left */
        struct safety_req req = {
            .dst_path = part, .dst = &d->img->file, .need_size = size,
            .op = SAFETY_OP_WRITE, .ours = done, .overwrite = o->overwrite,
            .yes = true,
        };
        if (rjournal_check_dst(&ji, &d->img->file, err) < 0 ||
            safety_check_destination(&req, err) < 0)
            return -1;
        *resumed = true;
    } else {
        if (err->cat != DF_OK)
            return -1;
        if (have)
            unlinkat(d->dirfd, pname, 0);   /* ours, stale: start again */
        if (image_create_at(d->dirfd, part, "raw", size, &o->copts, &d->img,
                            err) < 0)
            return -1;
    }
    snprintf(d->img->name, sizeof(d->img->name), "%s", path);
    d->sink = sink_image_new(d->img, !*resumed, err);
    if (!d->sink)
        return -1;
    return rjournal_open(j, d->dirfd, jpath, size, id, &d->img->file,
                         *resumed, err);
}

/*
 * One side is [user@]host:PATH.  Copying between two remote hosts is
 * refused (exit 2): diskferry moves a disk between the host it runs on
 * and one other; run it on one of the two hosts instead.
 */
static int copy_remote(struct copy_opts *o, const struct endpoint *sep,
                       const struct endpoint *dep, const char *src_path,
                       const char *dst_path)
{
    struct remote *r = NULL;
    struct image *src = NULL;
    struct copy_dst d = { .claim_fd = -1, .dirfd = -1 };
    struct job_stats st;
    struct remote_stats rs;
    struct df_error err;
    struct sink *sink = NULL;
    bool partial = false;
    char fmt[64] = "raw";
    char part[PATH_MAX];
    struct rjournal j = { .fd = -1 };
    struct extent_list done;
    bool resumed = false;
    int rc;
    const struct endpoint *rep = dep->kind == EP_REMOTE ? dep : sep;

    extent_list_init(&done, EXTENT_LIST_DEFAULT_CAP);

    memset(&st, 0, sizeof(st));
    df_error_init(&err);
    o->ro.user = rep->has_user ? rep->user : NULL;
    o->ro.host = rep->host;
    o->ro.path = rep->rpath;
    o->ro.overwrite = o->overwrite;
    o->ro.verbose = o->c.verbose;
    o->ro.threads = o->jo.threads;      /* compression workers too */
    o->ro.dry_run = o->dry_run;
    o->ro.force_share = o->src_io.force_share;
    /* The same question as a local overwrite, asked here for the
     * remote host's check (safety.h check 6). */
    o->ro.ask = o->overwrite && !o->yes && !o->dry_run &&
                isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    if (o->undo && dep->kind != EP_REMOTE) {
        df_usage(&err, "--undo: the journal is kept on the destination's "
                 "host; this destination is local");
        goto fail;
    }
    o->ro.undo = o->undo;
    if (dep->kind == EP_REMOTE) {
        bool created = false;
        if (sep->kind == EP_STREAM) {
            df_usage(&err, "a stream on stdin cannot go to a remote host "
                     "yet: give a file or device as SRC");
            goto fail;
        }
        o->ro.format = o->out_format;
        if (image_open(src_path, &o->src_io.open, &src, &err) < 0 ||
            cli_check_source(&o->c, &o->src_io, src, "copy", &err) < 0 ||
            remote_connect(&o->ro, &r, &err) < 0 ||
            remote_open_dst(r, src->size,
                            remote_src_id(src->path, src->size,
                                          &src->file), &sink,
                            &created, &err) < 0)
            goto fail;
        if (o->undo && created)
            cli_warn(&o->c, "--undo: %s is new: there is nothing to save "
                     "(to undo, delete it)", dst_path);
        if (o->dry_run) {
            /* The remote host ran its checks; show what would travel. */
            d.sink = dryrun_sink_new(dst_path, src->size,
                                     o->json ? stderr : stdout, &err);
            o->jo.verify = false;
            if (!d.sink || engine_copy(src, d.sink, &o->jo, &st, &err) < 0)
                goto fail;
        } else if (engine_copy(src, sink, &o->jo, &st, &err) < 0 ||
                   remote_done(r, st.verified, &err) < 0) {
            goto fail;
        }
    } else {
        o->ro.format = o->src_io.open.format;
        o->ro.parent_dirs = o->src_io.open.parent_dirs;
        o->ro.n_parent_dirs = o->src_io.open.n_parent_dirs;
        o->ro.parents = o->src_io.open.parent_overrides;
        o->ro.n_parents = o->src_io.open.n_parent_overrides;
        if (remote_connect(&o->ro, &r, &err) < 0 ||
            remote_open_src(r, &o->remote_size, fmt, sizeof(fmt),
                            &err) < 0)
            goto fail;
        o->remote_src = true;
        struct stat lst;
        partial = !o->dry_run && strcmp(dst_path, "-") &&
                       lstat(dst_path, &lst) < 0 && errno == ENOENT &&
                       (!o->out_format || !strcmp(o->out_format, "raw"));
        if (o->ro.resume && !partial) {
            df_usage(&err, "--resume from a remote host continues into a "
                     "new raw file: %s exists or is not one", dst_path);
            goto fail;
        }
        if (partial ? copy_open_partial(o, dst_path, src_path, part, &d, &j,
                                        &done, &resumed, &err) < 0
                    : copy_open_dst(o, NULL, dst_path, &d, &err) < 0)
            goto fail;
        d.sink->durable = o->fsync;
        if (remote_copy_from(r, d.sink, partial ? &j : NULL,
                             resumed ? &done : NULL, &o->jo, &st,
                             &err) < 0 ||
            copy_commit_dst(&d, &err) < 0 ||
            (partial && partial_commit(d.dirfd, part, dst_path, &err) < 0) ||
            remote_done(r, st.verified, &err) < 0)
            goto fail;
        if (partial)
            rjournal_remove(&j);
    }
    remote_get_stats(r, &rs);
    st.bytes_wire = rs.bytes_wire;
    if (o->json)
        copy_report_json(o, src_path, dst_path, src ? image_format_name(src) : fmt,
                         d.img ? image_format_name(d.img) : o->out_format
                         ? o->out_format : "raw", &st, &rs);
    if (o->c.verbose) {
        copy_report_line(o, &st);
        fprintf(stderr, "diskferry: copy: %llu bytes on the wire, "
                "compression %.2fx%s\n", (unsigned long long)rs.bytes_wire,
                rs.comp_out ? (double)rs.raw_in / (double)rs.comp_out : 1.0,
                rs.skipped_resumed ? ", resumed" : "");
    }
    rc = 0;
    goto out;
fail:
    remote_explain(r, &err);
    /* A remote raw destination and a partial file here are journaled:
     * --resume continues them; they stay.  Written, to a remote host:
     * what it acknowledged. */
    if (r)
        remote_get_stats(r, &rs);
    copy_interrupted(&err, dep->kind == EP_REMOTE ? r ? rs.bytes_acked : 0
                           : d.sink ? d.sink->bytes_written : 0,
                     src ? src->size : o->remote_size,
                     dep->kind == EP_REMOTE
                         ? !o->out_format || !strcmp(o->out_format, "raw")
                         : partial);
    if (err.cat == DF_VERIFY && r) {
        /* A resumed copy that does not verify: the source changed in a
         * way its id did not show (a remote source is known by path and
         * size).  Its journal would resume into the same failure. */
        if (resumed || rs.skipped_resumed) {
            if (resumed)
                rjournal_remove(&j);
            size_t n = strlen(err.msg);
            snprintf(err.msg + n, sizeof(err.msg) - n, "; the source "
                     "changed since the interrupted copy: run without "
                     "--resume");
        }
    }
    rc = err.cat;
    cli_print_error(&o->c, &err);
    copy_abort(&d);
out:
    rjournal_close(&j);
    extent_list_release(&done);
    remote_close(r);
    sink_free(d.sink);
    image_close(d.img);
    image_close(d.old);
    if (d.claim_fd >= 0)
        close(d.claim_fd);
    if (d.dirfd >= 0)
        close(d.dirfd);
    image_close(src);
    return rc;
}

int cmd_copy(int argc, char **argv)
{
    struct copy_opts o;
    struct copy_dst d = { .claim_fd = -1, .dirfd = -1 };
    struct endpoint src_ep, dst_ep;
    struct image *src = NULL;
    struct df_file in;
    struct job_stats st;
    struct df_error err;
    int rc;

    memset(&o, 0, sizeof(o));
    o.c.cmd = "copy";
    o.progress = -1;
    cli_image_opts_init(&o.src_io);
    job_opts_init(&o.jo);
    o.jo.title = "copy";
    if ((rc = copy_parse(argc, argv, &o)) != 0)
        return rc < 0 ? 0 : rc;      /* -1: --help was printed */
    interrupt_install();
    const char *src_path = argv[optind], *dst_path = argv[optind + 1];

    memset(&st, 0, sizeof(st));
    df_error_init(&err);
    df_file_init(&in);
    if (endpoint_parse(src_path, &src_ep, &err) < 0 ||
        endpoint_parse(dst_path, &dst_ep, &err) < 0)
        goto fail;
    if (src_ep.kind == EP_REMOTE && dst_ep.kind == EP_REMOTE)
        return cli_usage(&o.c, "both SRC and DST are remote: run "
                         "diskferry on one of the two hosts");
    if (src_ep.kind == EP_REMOTE || dst_ep.kind == EP_REMOTE)
        return copy_remote(&o, &src_ep, &dst_ep, src_path, dst_path);
    if (o.ro.resume || o.ro.tcp || o.ro.bwlimit)
        return cli_usage(&o.c, "--resume, --transport and --bwlimit apply "
                         "to a remote SRC or DST");
    if (src_ep.kind == EP_STREAM) {
        if (df_file_from_fd(&in, STDIN_FILENO, "-", false, &err) < 0)
            goto fail;
    } else if (image_open(src_path, &o.src_io.open, &src, &err) < 0 ||
               cli_check_source(&o.c, &o.src_io, src, "copy", &err) < 0) {
        goto fail;
    }
    if (copy_open_dst(&o, src, dst_path, &d, &err) < 0)
        goto fail;
    d.sink->durable = o.fsync;
    rc = src ? engine_copy(src, d.sink, &o.jo, &st, &err)
             : engine_copy_stream(&in, d.sink, &o.jo, &st, &err);
    if (rc < 0 || copy_commit_dst(&d, &err) < 0)
        goto fail;
    if (o.json)
        copy_report_json(&o, src_path, dst_path,
                         src ? image_format_name(src) : "raw",
                         d.img ? image_format_name(d.img) : "raw", &st, NULL);
    if (o.c.verbose)
        copy_report_line(&o, &st);
    rc = 0;
    goto out;
fail:
    copy_interrupted(&err, d.sink ? d.sink->bytes_written : 0,
                     src ? src->size : st.disk_size, false);
    rc = err.cat;
    cli_print_error(&o.c, &err);
    copy_abort(&d);
out:
    sink_free(d.sink);
    image_close(d.img);
    image_close(d.old);
    if (d.claim_fd >= 0)
        close(d.claim_fd);
    if (d.dirfd >= 0)
        close(d.dirfd);
    image_close(src);
    return rc;
}
