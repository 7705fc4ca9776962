/*
 * serve.h: the remote end: `diskferry serve` runs one session on its
 * stdin/stdout (started over ssh by the client; see msg.h).
 *
 * Confinement (what a client may name):
 *  --root DIR     every path resolves inside DIR (relative paths are
 *                 taken from DIR); the path is resolved with realpath()
 *                 (its directory, for a file still to be created) so
 *                 `..` and symlinks that lead outside are refused.
 *  --allow PATH   (repeatable) a destination must be PATH or lie under
 *                 it (after resolving both).  Sources are limited by
 *                 --root only.
 * Without either, serve may touch what its user may (as ssh would).
 * Refusals are DF_REFUSED and travel back as an ERROR message.
 *
 * Destination checks on this host, before the first write (serve.c):
 * safety_check_destination() and safety_claim() (safety/safety.h); its
 * question (check 6) is asked on the client's terminal (OPEN_ASK, ASK,
 * ANSWER in msg.h).  An --undo journal (OPEN_DST option) and the
 * journal and destination of an UNDO request are confined as the
 * destination is (--root, and --allow since they are written); the
 * parents of a source (--parent-dir, --parent) as the source is.
 */
#ifndef DF_SERVE_H
#define DF_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/sink.h"
#include "util/error.h"

#define SERVE_MAX_ALLOW 32

struct serve_opts {
    const char *root;
    const char *allow[SERVE_MAX_ALLOW];
    size_t nallow;
    /* Resume journals of devices; NULL: state_dir_open()'s default. */
    const char *state_dir;
    unsigned threads;           /* digest / read threads; 0: cores */
    bool no_tcp;                /* --no-tcp: refuse TCP_REQ */
    bool no_bwlimit;            /* fuzzing: ignore the client's rate */
    unsigned timeout;           /* --timeout seconds; 0: the default */
    /* Tests and fuzzing: open the destination here instead (returns a
     * sink the server frees). */
    struct sink *(*open_dst_hook)(const char *path, uint64_t size,
                                  struct df_error *err);
};

/* Run one session; returns 0, or -1 with err (already sent to the
 * client when it could be). */
int serve_run(int rfd, int wfd, const struct serve_opts *o,
              struct df_error *err);

/* Resolve path under the confinement rules into out (PATH_MAX). */
int serve_confine(const struct serve_opts *o, const char *path,
                  bool for_write, char *out, struct df_error *err);

#endif
