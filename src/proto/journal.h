/*
 * journal.h: the receiver's resume journal: which ranges of a raw
 * destination are known to be written and durable.
 *
 * File (text, one record a line, appended):
 *   diskferry-resume 1 size=<bytes> src=<16 hex digits>
 *   <off> <len>
 *   ...
 *
 * Invariants:
 *  1. A range is appended only after the destination was fsync'ed with
 *     its bytes in it (rjournal_commit's caller flushes first), and the
 *     journal is fdatasync'ed after the append: after a crash or kill -9
 *     of either side, every range listed holds the source's bytes.
 *  2. A torn last line (a crash mid-append) is ignored: loading stops at
 *     the first line that does not parse.
 *  3. The journal is valid for a session only when size and src id
 *     match the ones the client sends; otherwise it is ignored and
 *     replaced.
 *  4. The journal is removed after the session's DONE (the client
 *     verified the whole disk, or chose --no-verify after a complete
 *     copy).  The final verification covers the whole disk whatever the
 *     journal said.
 */
#ifndef DF_JOURNAL_H
#define DF_JOURNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"

#define RJOURNAL_MAX_PENDING 4096

struct rjournal {
    int fd;
    char path[PATH_MAX];
    uint64_t pend_off[RJOURNAL_MAX_PENDING];
    uint64_t pend_len[RJOURNAL_MAX_PENDING];
    unsigned npend;
    uint64_t pend_bytes;
};

/* Where the journal of dst lives: next to a regular file, else in
 * state_dir (default /var/tmp). */
void rjournal_path(const char *dst, bool is_regular, const char *state_dir,
                   char *out, size_t len);
/* Read a journal: 0 with the ranges (sorted, merged, EXT_DATA) when it
 * is valid for size/src_id, 1 when absent or not for this copy. */
int rjournal_load(const char *path, uint64_t size, uint64_t src_id,
                  struct extent_list *done, struct df_error *err);
/* Start a journal: keep = append to the valid existing one, else a new
 * file with a fresh header. */
int rjournal_open(struct rjournal *j, const char *path, uint64_t size,
                  uint64_t src_id, bool keep, struct df_error *err);
/* [off, off+len) has been applied (not yet durable). */
void rjournal_note(struct rjournal *j, uint64_t off, uint64_t len);
/* Must the caller flush and commit now (pending list full)? */
bool rjournal_full(const struct rjournal *j);
/* The destination is flushed: append the pending ranges durably. */
int rjournal_commit(struct rjournal *j, struct df_error *err);
void rjournal_close(struct rjournal *j);
void rjournal_remove(struct rjournal *j);

/*
 * The ranges a resumed copy skips, walked by a writer that delivers in
 * ascending order (sink.h contract 1): rskip_each() calls fn for each
 * piece of [off, off+len) not in done (buf, if not NULL, is the data of
 * [off, off+len)) and counts the rest in skipped.  done may be NULL.
 */
struct rskip {
    const struct extent_list *done;
    size_t i;
    uint64_t skipped;
};
typedef int (*rskip_fn)(void *ctx, uint64_t off, uint64_t len,
                        const uint8_t *p, struct df_error *err);
int rskip_each(struct rskip *k, uint64_t off, uint64_t len,
               const uint8_t *buf, rskip_fn fn, void *ctx,
               struct df_error *err);

/* A new destination is written as .NAME.diskferry-partial next to NAME
 * (partial_path) and renamed into place only when complete
 * (partial_commit), never replacing a file that appeared meanwhile. */
int partial_path(const char *path, char *out, size_t len,
                 struct df_error *err);
int partial_commit(const char *partial, const char *path,
                   struct df_error *err);

#endif
