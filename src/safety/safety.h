/*
 * safety.h: the one check that runs before the first byte is written to
 * a destination (docs/design.md promise 1), the dry-run sink, and the undo
 * journal.
 *
 * Every path that writes a disk (copy, sync, undo, create, and the
 * remote `serve` on its host) calls safety_check_destination() once,
 * after opening the destination and before writing anything.  A refusal
 * is DF_REFUSED (exit 3) with one line naming the reason and the holder:
 *
 *   refusing to write: mounted on /mnt/x
 *   refusing to write: open by qemu-system-x86_64 (pid 4242)
 *   refusing to write: locked by QEMU (write lock held)
 *   refusing to write: same file as the source
 *   refusing to write: 64.0 MiB is smaller than the source (128.0 MiB)
 *   refusing to write: holds an ext4 filesystem (give --overwrite)
 *
 * The checks, in the order they run (first refusal wins):
 *  0. Does not exist yet (req->dst == NULL): the path must still not
 *     exist (it will be created O_EXCL, never replacing a file), its
 *     directory must exist, and it must not be under /dev (a missing
 *     device node would otherwise become a regular file in /dev).
 *     Nothing else applies to a file that is about to be created.
 *  1. Same as the source: same inode (symlinks and hard links resolve
 *     to it), same block device, a partition of it or its whole disk,
 *     or a loop device over it (either way round).  Every member of the
 *     source's chain counts (writing over a backing file corrupts the
 *     child).
 *  2. Mounted or held: mounted (mountinfo; also a partition of the
 *     device, or a loop device backed by the file), held by
 *     device-mapper / md / another stacking driver (sysfs holders),
 *     active swap, or a block device that cannot be opened O_EXCL.
 *  3. Open by another process: any process but this one with an fd on
 *     the destination (or one of its partitions, or a loop device over
 *     it), named by command and pid.
 *  4. Locked by QEMU: the OFD lock bytes 100..104 / 200..204
 *     (docs/formats.md section 7), probed with F_OFD_GETLK.
 *  5. Too small (op SAFETY_OP_WRITE only): smaller than req->need_size
 *     (an empty regular file is allowed: it grows).  Larger is allowed
 *     with a warning: the tail beyond need_size is left alone.
 *  6. Not empty (op SAFETY_OP_WRITE only): a partition table or a
 *     filesystem / LVM / RAID / swap / crypto signature (libblkid), or
 *     non-zero bytes in the sampled regions (emptiness.c says which);
 *     refused unless req->overwrite (data in req->ours does not
 *     count).  The rest of the destination is checked while the job
 *     runs (sink_guard_wrap(), engine/job.h).  With req->overwrite on a
 *     terminal
 *     (req->interactive) and neither req->yes nor req->dry_run, the
 *     user must type the destination's name.
 *
 * Checks 2-4 read /proc and /sys of this host: a process of another
 * user is only visible to root, and a host sharing the disk over a
 * network is not visible at all, so a pass is not a proof of non-use.
 * A check is a snapshot: safety_claim() then holds the destination
 * until the job ends.
 *
 * NEEDSWORK: a file mapped (mmap) by a process that closed its fd is
 * not seen (/proc/PID/maps would show it); nested loop devices are
 * followed one level.
 */
#ifndef DF_SAFETY_H
#define DF_SAFETY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/sink.h"
#include "image/image.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"

enum safety_op {
    SAFETY_OP_WRITE,        /* copy, sync: check 6 applies */
    SAFETY_OP_RESTORE,      /* undo: the journal judges the content */
    SAFETY_OP_CREATE,       /* create: only a new file (check 0), and
                               its refusal does not offer --overwrite */
};

struct safety_req {
    const char *dst_path;           /* as the user gave it; never NULL */
    /* The opened destination, or NULL when it does not exist yet and
     * will be created O_EXCL.  A stream (stdout, a pipe) passes. */
    const struct df_file *dst;
    /* A destination with no local file (an NBD export), instead of dst:
     * only checks 5 and 6 apply, read through it. */
    struct image *dst_image;
    /* The source, as much as is known (each may be NULL; all NULL for
     * stdin or a remote source): its file, its open image (the whole
     * chain is checked), its path. */
    const struct df_file *src_file;
    const struct image *src_image;
    const char *src_path;
    uint64_t need_size;             /* bytes the destination must hold */
    enum safety_op op;
    bool overwrite;                 /* --overwrite */
    /* Resuming: the ranges an interrupted copy of ours wrote (sorted,
     * as rjournal_load gives them).  Check 6 does not count what lies
     * there (nor a signature whose magic is there); what lies outside
     * is foreign as ever.  NULL: nothing is ours. */
    const struct extent_list *ours;
    bool yes;                       /* --yes: no question asked */
    bool dry_run;                   /* --dry-run: no question asked */
    /* The file will be replaced whole by a new one (another format):
     * its size does not matter (no check 5), and it is refused without
     * req->overwrite even when it holds nothing. */
    bool replace;
    /* A regular file of another size takes need_size (sync: the source
     * grew or shrank since the last copy): grown, or cut after the job
     * verified; neither refused nor warned about. */
    bool grow;
    bool interactive;               /* stdin and stderr are a terminal */
    FILE *msgs;                     /* warnings, the question; NULL=stderr */
    FILE *answers;                  /* the typed answer; NULL = stdin */
    /* Check 6's question asked elsewhere (serve asks the client's
     * user): called instead of the terminal question with what the
     * destination holds; 0 = go ahead, -1 with err.  May be NULL. */
    int (*confirm)(void *ctx, const char *desc, struct df_error *err);
    void *confirm_ctx;
};

/*
 * The question of check 6, for a destination checked elsewhere: on
 * `msgs`, "SHOWN holds DESC; its contents will be overwritten", then
 * type the last component of `path` (or SHOWN, or path) to go ahead,
 * read from `answers` (NULL: stderr, stdin).  desc comes from another
 * host: control characters are shown as '?'.  0 when typed, -1
 * DF_REFUSED (what = SHOWN) otherwise.
 */
int safety_confirm_overwrite(const char *shown, const char *path,
                             const char *desc, FILE *msgs, FILE *answers,
                             struct df_error *err);

/*
 * Run checks 0-6 on req (all borrowed).  0 = go ahead; -1 with err set:
 * DF_REFUSED ("refusing to write: ..."), DF_IO when /proc, /sys or the
 * destination cannot be read, DF_USAGE for a bad request.
 */
int safety_check_destination(const struct safety_req *req,
                             struct df_error *err);

/*
 * A source that someone else is writing (docs/design.md promise 1): a copy
 * or comparison of it would mix old and new blocks.  Every file the
 * open chain reads is checked (each layer, each VMDK extent file):
 *
 *   refusing to read: QEMU's write lock is held by qemu-io (pid 42)
 *   refusing to read: mounted read-write on /mnt/x (via /dev/loop3)
 *   refusing to read: open for writing by python3 (pid 4242)
 *
 * Readers are fine (qemu-io -r, a read-only mount, a process holding it
 * open read-only), and so are device-mapper / md holders (they stack on
 * it; whether they write is the mount or process check's business).
 * Our own fds never count.  With force_share the job goes on with one
 * warning line on msgs instead:
 *
 *   diskferry: copy: warning: vm.qcow2 is in use (...): the copy may
 *   be inconsistent
 *
 * As for the destination, a pass is a snapshot of this host, not a
 * proof (a writer on another host sharing the disk is not seen).
 */
struct safety_src_req {
    const struct image *src;        /* the open chain; NULL: nothing */
    const char *cmd;                /* "copy": prefix of the warning */
    const char *result;             /* "copy", "comparison" */
    bool force_share;               /* --force-share */
    bool quiet;                     /* no warning */
    FILE *msgs;                     /* the warning; NULL = stderr */
};

/* 0 = go ahead; -1 with err set: DF_REFUSED, or DF_IO when /proc cannot
 * be read. */
int safety_check_source(const struct safety_src_req *req,
                        struct df_error *err);

/*
 * Hold the destination for the job, after the check passed and before
 * the first write, so nothing takes it in between: a block device is
 * opened O_EXCL (a mount, md or device-mapper cannot claim it while the
 * fd is open; *claim_fd, close it when the job is done, -1 for files),
 * and QEMU's lock bytes for "a writer that shares no writes" are taken
 * on dst's open file description (a QEMU started meanwhile refuses the
 * image; they go when dst is closed).  DF_REFUSED when the device is
 * claimed by someone else.
 */
int safety_claim(const struct df_file *dst, int *claim_fd,
                 struct df_error *err);

/*
 * A sink that writes nothing and prints what would be written: merged
 * ranges "would write OFF..END (SIZE)" / "would zero ...", then a total,
 * on `out` (borrowed).  It has no digest (nothing to verify).  `size` is
 * the destination size reported to the engine.  NULL on allocation
 * failure (err set).
 */
struct sink *dryrun_sink_new(const char *name, uint64_t size, FILE *out,
                             struct df_error *err);
/* Note [off, off+len) as a range that would be written, without its
 * data (a sync's dry run from another host: the data stays there). */
void dryrun_sink_range(struct sink *s, uint64_t off, uint64_t len);

/*
 * Wrap `inner` (ownership passes to the wrapper, also on failure) so
 * that the old contents of every range are saved in a new journal at
 * journal_path (created O_EXCL: an existing journal is refused, it may
 * be the only way back) and made durable before the range is forwarded
 * to `inner`.  `dst` is the destination image inner writes to
 * (borrowed: it must outlive the sink); old contents are read from it.
 * `orig_size` is the destination's size before the job (a regular
 * file the caller grew to hold the copy is cut back to it by undo).
 * `dst_path` is recorded for `diskferry undo JOURNAL` without a DST.
 * The journal format and its guarantees are at the top of undo.c.
 */
struct sink *undo_sink_wrap(struct sink *inner, struct image *dst,
                            uint64_t orig_size, const char *dst_path,
                            const char *journal_path, struct df_error *err);

struct undo_opts {
    bool dry_run;           /* check and print, write nothing */
    bool yes;
    bool interactive;
    FILE *msgs;             /* warnings; NULL = stderr */
    FILE *out;              /* the dry-run plan; NULL = stdout */
    /* Map the destination (given or recorded) to the path to open, or
     * refuse (serve's confinement); NULL: as it is.  out: PATH_MAX. */
    int (*resolve_dst)(void *ctx, const char *path, char *out,
                       struct df_error *err);
    void *resolve_ctx;
};

struct undo_stats {
    uint64_t records;       /* records replayed (or that would be) */
    uint64_t bytes;         /* bytes put back */
    uint64_t torn_bytes;    /* journal bytes ignored at its tail */
    bool complete;          /* the job that wrote the journal finished */
    bool truncated;         /* a grown regular file was cut back */
};

/*
 * Put back what the job recorded in `journal` overwrote in `dst` (NULL:
 * the path recorded in the journal).  Runs safety_check_destination()
 * (SAFETY_OP_RESTORE) and refuses a destination that does not match the
 * journal header (size, digest of the first MiB).  Safe to rerun after
 * an interruption.  stats may be NULL.
 */
int undo_apply(const char *journal, const char *dst,
               const struct undo_opts *opts, struct undo_stats *stats,
               struct df_error *err);

/*
 * The QEMU lock bytes held on fd by other open file descriptions: bit i
 * for byte 100+i, bit 8+i for byte 200+i (i = 0..4).  0 when none or
 * when the probe is not supported.
 */
unsigned inuse_qemu_locks(int fd);
#define INUSE_LOCK_PERM(i) (1u << (i))
#define INUSE_LOCK_SHARED(i) (1u << (8 + (i)))

#endif
