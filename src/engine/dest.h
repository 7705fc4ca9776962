/*
 * dest.h: the destination of a job, from open to commit or abort: one
 * scheme for the local job (job.c) and for serve (proto/serve_dst.c).
 *
 * What a destination is, and what happens to it:
 *
 *   DST          exists?  written                       at commit
 *   -            -        stdout (sink_stream_new)      nothing
 *   NAME         no       .NAME.diskferry-XXXXXXXXXXXX  renamed to NAME,
 *                         (a new raw or -O file)        never replacing
 *   NAME         no       .NAME.diskferry-partial and   renamed to NAME,
 *                         its resume journal (a remote  never replacing;
 *                         source, dest_open_partial)    journal removed
 *   NAME         yes      in place (raw file, device;   nothing
 *                         an empty file grows)
 *   NAME         yes      a temporary name beside it    renamed over NAME
 *                         (an image container, or -O)   if still the same
 *                                                       inode
 *
 * The far end of a session (serve, dest_open_session) writes a new file
 * as the partial (in any format the client asks, with a journal when
 * raw) and an existing one raw in place with a resume journal (beside a
 * regular file, in the state directory for a device), removed after
 * the session's DONE.
 *
 * Invariants:
 *  1. Nothing is created, opened for writing or claimed before
 *     safety_check_destination() (safety/safety.h) passed on the
 *     destination (docs/design.md promise 1).
 *  2. A new file is never written under the name the user gave: it is
 *     renamed there only at dest_commit(), after the job verified, with
 *     RENAME_NOREPLACE (or link()): a file that appeared meanwhile is
 *     never replaced.  A failed or killed job leaves nothing under NAME.
 *  3. Temporary files are created O_EXCL|O_NOFOLLOW relative to the
 *     directory opened once (dest_dir_open), so neither a planted
 *     symlink nor a guessed name can redirect them.  While written a
 *     random-named one holds flock(LOCK_EX); one a killed job left is
 *     unlocked, and dest_clean_stale() removes it before a new one for
 *     the same NAME is made (a live job's file is left alone).
 *  4. dest_abort() removes a random-named temporary file; a partial
 *     (and its journal) stays for --resume.
 *
 * Test hook (built only with meson -Dtesting=true):
 * DF_TEST_DEST_KILL_AT=open|verified|committed raises SIGKILL when a
 * new file was created under its temporary name, when the job verified
 * it (dest_commit entered), and right after the rename: invariant 2
 * with a real kill -9 (tests/e2e/test_dest.py).
 */
#ifndef DF_DEST_H
#define DF_DEST_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/sink.h"
#include "image/image.h"
#include "proto/journal.h"
#include "util/error.h"
#include "util/extent.h"

/* How to open a destination: the options of the job that writes it. */
struct dest_opts {
    const char *cmd;            /* "copy": the prefix of warnings */
    FILE *msgs;                 /* warnings and notes; NULL: quiet */
    const char *out_format;     /* -O, or NULL: raw, or the existing
                                 * image file's own format */
    struct image_create_opts copts;
    bool overwrite;             /* safety.h: may replace data */
    bool yes;                   /* do not ask */
    bool interactive;           /* a user can be asked (stdin, stderr) */
    bool dry_run;               /* check everything, write nothing */
    bool report_on_stdout;      /* --json: stdout is taken; a dry run
                                 * prints on stderr, DST - is refused */
    const char *undo;           /* --undo journal, or NULL */
    bool grow;                  /* sync: a regular file takes the
                                 * source's size (safety.h req.grow) */
    /* Check 6's question asked elsewhere (serve: on the client's
     * terminal; safety.h confirm); NULL: on ours. */
    int (*confirm)(void *ctx, const char *desc, struct df_error *err);
    void *confirm_ctx;
    const char *state_dir;      /* dest_open_session: device journals */
};

struct dest {
    const char *path;           /* as named (borrowed) */
    struct image *img;          /* written; NULL for a stream, dry run */
    struct sink *sink;          /* what the job writes to */
    int dirfd;                  /* the directory of a new file, or -1 */
    int claim_fd;               /* safety_claim(): O_EXCL on a device */
    char tmp_path[PATH_MAX];    /* a new file's temporary name */
    bool created;               /* tmp_path is ours: renamed or removed */
    struct image *old;          /* replaced whole: the file renamed over */
    /* dest_open_partial() */
    bool partial;               /* written as part, renamed at commit */
    bool resumed;               /* part continued from its journal */
    char part[PATH_MAX];
    struct rjournal j;
    struct extent_list done;    /* resumed: ranges the journal lists */
    int statefd;                /* the state directory, or -1 */
};

void dest_init(struct dest *d);
/* Free what d holds; a temporary file left (not committed, not aborted)
 * stays. */
void dest_close(struct dest *d);

/*
 * Open path for a job writing need bytes (need_known false: a stream of
 * unknown size) read from src (the open source image for the safety
 * check, or NULL).  d->sink is then ready: the real one, the dry run's,
 * wrapped by the emptiness guard and the undo journal as the options
 * ask.  0, or -1 with err (d then holds what needs dest_abort()).
 */
int dest_open(struct dest *d, const struct dest_opts *o, const char *path,
              struct image *src, uint64_t need, bool need_known,
              struct df_error *err);
/*
 * A new file of size bytes from a source known by src_id (a remote
 * one): written as .NAME.diskferry-partial (raw, or o->out_format) with
 * a resume journal beside it when raw, so that a broken link or a kill
 * of either side leaves something --resume continues.  resume: continue
 * the raw partial its journal lists.  A dry run checks, creates nothing
 * and leaves d->sink NULL.  d->dirfd, if set, is path's directory.
 */
int dest_open_partial(struct dest *d, const struct dest_opts *o,
                      const char *path, uint64_t size, uint64_t src_id,
                      bool resume, struct df_error *err);
/*
 * The destination of a session on this host (proto/serve_dst.c), size
 * bytes from a source known by src_id: dirfd is path's directory,
 * checked by the caller (d owns it from here).  A new file as
 * dest_open_partial() (in o->out_format); an existing one raw in place,
 * with its resume journal (resume: continue what it lists) and,
 * without --overwrite and not resuming, the emptiness guard as
 * dest_open() has it.  A dry run checks and leaves d->sink NULL.
 */
int dest_open_session(struct dest *d, const struct dest_opts *o,
                      const char *path, int dirfd, uint64_t size,
                      uint64_t src_id, bool resume, struct df_error *err);
/* The job verified: give the new file its name (invariant 2), or
 * rename the replacement over the file the checks ran on. */
int dest_commit(struct dest *d, struct df_error *err);
/* The job failed: remove the temporary file (invariant 4). */
void dest_abort(struct dest *d);

/* An fd on the directory path is in (O_DIRECTORY), or -1 with err. */
int dest_dir_open(const char *path, struct df_error *err);

/* Remove stale temporary files of path in dirfd, saying one line on msgs
 * (NULL: quiet) for each. */
void dest_clean_stale(int dirfd, const char *path, FILE *msgs);

/* The partial file of path: .NAME.diskferry-partial beside it. */
int dest_partial_path(const char *path, char *out, size_t len,
                      struct df_error *err);

/*
 * Rename tmp to path, never replacing a file (invariant 2).  Both names
 * in dirfd (AT_FDCWD: as given; else their last components).
 */
int dest_rename_new(int dirfd, const char *tmp, const char *path,
                    struct df_error *err);

/*
 * Open the partial file part (in dirfd) that a resume journal lists
 * done ranges of, as a writable raw image of size bytes, and check it
 * is still the one left (journal.h invariant 5): same inode and samples,
 * and the safety check with only done counted as ours.
 */
int dest_resume_partial(int dirfd, const char *part, uint64_t size,
                        const struct rjournal_info *ji,
                        const struct extent_list *done, bool overwrite,
                        struct image **img, struct df_error *err);

/* Grow an empty regular file (the only kind safety check 5 lets through
 * smaller than the copy) to need bytes. */
int dest_grow(struct image *img, uint64_t need, const char *path,
              struct df_error *err);

/* --undo given for a new file (local or on a remote host): say there is
 * nothing to save, on o->msgs. */
void dest_warn_undo_new(const struct dest_opts *o, const char *path);

/*
 * A new, empty image of size bytes in format fmt at path (`diskferry
 * create`): the safety gate (SAFETY_OP_CREATE), then image_create(),
 * which never replaces a file (O_EXCL), made durable.  On failure
 * nothing is left at path.
 */
int dest_create(const char *path, const char *fmt, uint64_t size,
                struct df_error *err);

/* The test hook of the header comment (a no-op without -Dtesting). */
void dest_test_kill(const char *step);

#endif
