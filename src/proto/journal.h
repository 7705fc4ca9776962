/*
 * journal.h: the receiver's resume journal: which ranges of a raw
 * destination are known to be written and durable.
 *
 * File (text, one record a line, appended):
 *   diskferry-resume 2 size=<bytes> src=<16 hex> dev=<dec> ino=<dec>
 *   <off> <len>                   a range written and durable
 *   s <off> <len> <16 hex>        XXH64 of that block of the destination
 *   h <leaf> <32 hex>             digest leaf hash (util/hash.h, xxh128)
 *                                 of the DIGEST_LEAF_SIZE leaf number
 *                                 <leaf>, written whole with data
 *   w <end>                       nothing at or past <end> has been
 *                                 written yet (the high-water mark)
 *   ...
 *
 * dev/ino name the destination file written (st_rdev for a device);
 * the sample lines ("s") are taken at each commit from blocks of the
 * ranges just committed, so that a destination reused for other data
 * since the interruption is told from the one we left (invariant 5).
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
 *  5. Resuming re-checks the destination: same dev/ino, the last
 *     RJOURNAL_SAMPLES sampled blocks unchanged (rjournal_check_dst),
 *     and the safety check with only the journal's ranges counted as
 *     ours.  A journal of another format version is refused, never
 *     guessed at; one written for another source (src id: path, size,
 *     and the source's identity, remote_src_id) is refused with "the
 *     source changed".
 *  6. Every journal is opened O_NOFOLLOW relative to a directory fd the
 *     caller checked (serve: inside --root), and a new one is created
 *     O_EXCL after removing the old name: a symlink planted at the
 *     journal's name is never followed.
 *  7. A leaf hash ("h") is appended in the same commit as the range
 *     that wrote the leaf, and is used only for a leaf that the loaded
 *     ranges cover whole (rjournal_leaves): it says what the
 *     destination holds there, as durable as the range.  A reader of
 *     an older diskferry stops at the first "h" line (invariant 2) and
 *     so merely resends what follows.
 *  8. Nothing is written at or past the last "w" mark: a write that
 *     would is preceded by a new mark, durable first (rjournal_reserve).
 *     Resuming, a destination written without --overwrite is guarded
 *     again from the mark on (sink_guard_wrap_from): below it, what is
 *     not listed may be the interrupted run's own uncommitted writes;
 *     past it, anything but zeros is somebody else's data.
 */
#ifndef DF_JOURNAL_H
#define DF_JOURNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"
#include "util/hash.h"

#define RJOURNAL_MAX_PENDING 4096
#define RJOURNAL_VERSION 2
#define RJOURNAL_SAMPLES 16
#define RJOURNAL_SAMPLE_LEN (64u << 10)
#define RJOURNAL_HASH_ALG DIGEST_XXH128
#define RJOURNAL_HASH_LEN 16
#define RJOURNAL_HW_STEP (256ull << 20)   /* a "w" mark every 256 MiB */

struct rjournal_sample {
    uint64_t off, len, hash;
};

/* What a loaded journal says about the destination it was written to. */
struct rjournal_info {
    uint64_t dev, ino;
    bool has_hw;                    /* a "w" mark was read */
    uint64_t hw;                    /* the highest one */
    unsigned nsamples;              /* the last ones, oldest first */
    struct rjournal_sample s[RJOURNAL_SAMPLES];
};

/* The leaf hashes of a journal (rjournal_leaves), ascending leaves. */
struct rjournal_leaf {
    uint64_t leaf;
    uint8_t hash[RJOURNAL_HASH_LEN];
};
struct rjournal_leaves {
    struct rjournal_leaf *v;
    size_t n;
};

struct rjournal {
    int fd;
    int dst_fd;                     /* borrowed: samples are read here */
    char path[PATH_MAX];            /* for messages */
    int dirfd;                      /* a dup when own_dir, else unused */
    bool own_dir;
    uint64_t pend_off[RJOURNAL_MAX_PENDING];
    uint64_t pend_len[RJOURNAL_MAX_PENDING];
    unsigned npend;
    uint64_t pend_bytes;
    struct rjournal_leaves pend_h;  /* leaf hashes to commit */
    uint64_t hw;                    /* the durable "w" mark (0: none) */
    uint64_t size;                  /* of the destination journaled */
    size_t pend_hcap;
};

/* Where the journal of dst lives: next to a regular file, else in
 * diskferry's state directory (state_dir_open(); only the name is
 * used there). */
void rjournal_path(const char *dst, bool is_regular, char *out,
                   size_t len);
/*
 * Paths given to the functions below are relative to dirfd (AT_FDCWD:
 * as given); with a directory fd only their last component is used, so
 * the caller may pass the full path for messages.
 *
 * Read a journal: 0 with the ranges (sorted, merged, EXT_DATA) and the
 * destination's recorded identity (info, may be NULL) when it is valid
 * for size/src_id; 1 when there is none (or it is not a regular file);
 * -1 DF_REFUSED when it is of another format version or was written for
 * another source ("the source changed since the interrupted copy").
 */
int rjournal_load(int dirfd, const char *path, uint64_t size,
                  uint64_t src_id, struct extent_list *done,
                  struct rjournal_info *info, struct df_error *err);
/* The destination still is the one the journal was written to: same
 * dev/ino, every sample reads back the same; else -1 DF_REFUSED
 * "refusing to resume: DST changed since the interrupted copy (...)". */
int rjournal_check_dst(const struct rjournal_info *info,
                       const struct df_file *dst, struct df_error *err);
/* Start a journal for the destination dst (its fd is borrowed for
 * samples): keep = append to the valid existing one, else a new file
 * (created O_EXCL) with a fresh header. */
int rjournal_open(struct rjournal *j, int dirfd, const char *path,
                  uint64_t size, uint64_t src_id, const struct df_file *dst,
                  bool keep, struct df_error *err);
/* [off, off+len) has been applied (not yet durable). */
void rjournal_note(struct rjournal *j, uint64_t off, uint64_t len);
/* The leaf number `leaf` (DIGEST_LEAF_SIZE bytes, the last one short)
 * was written whole by ranges noted and has the digest leaf hash h in
 * RJOURNAL_HASH_ALG: recorded at the next commit (dropped if memory is
 * short: that leaf is then read to hash it). */
void rjournal_note_leaf(struct rjournal *j, uint64_t leaf, const uint8_t *h);
/* Before writing below end: 0 when the durable mark covers it, else a
 * new mark past it (at most the journal's size) is appended and
 * fdatasync'ed first (invariant 8); -1 with err. */
int rjournal_reserve(struct rjournal *j, uint64_t end, struct df_error *err);
/* Must the caller flush and commit now (pending list full)? */
bool rjournal_full(const struct rjournal *j);
/* The destination is flushed: append the pending ranges durably. */
int rjournal_commit(struct rjournal *j, struct df_error *err);
void rjournal_close(struct rjournal *j);
/* The leaf hashes of the open journal j of a size-byte destination
 * whose leaves `done` (what rjournal_load gave) covers whole: 0 with
 * out filled (release with rjournal_leaves_release), -1 with err. */
int rjournal_leaves(const struct rjournal *j, uint64_t size,
                    const struct extent_list *done,
                    struct rjournal_leaves *out, struct df_error *err);
void rjournal_leaves_release(struct rjournal_leaves *l);
void rjournal_remove(struct rjournal *j);

#endif
