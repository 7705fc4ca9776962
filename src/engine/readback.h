/*
 * readback.h: the verification's read-back of a destination, taken while
 * the destination is still being written.
 *
 * A copy ends by reading its destination back and hashing it (sink.h
 * contract 3).  Where the ranges arrive in ascending order (a session's
 * applier, engine/apply.h), everything below the highest end applied is
 * final: nothing later writes there.  A read-back runs the digest
 * pipeline (engine_digest) over the destination image in a thread of its
 * own, held behind that frontier (job_opts.gate), so that by the time
 * the last range lands, most of the destination has been read back and
 * hashed, from the page cache it was just written into.  The end of the
 * copy then waits only for the last stretch, and a destination larger
 * than the page cache is not read from the medium again at the end.
 *
 * Invariants:
 *  1. The pipeline maps and reads only whole leaves below the frontier
 *     (or all of the disk once readback_finish() opened the gate).
 *  2. A range noted below the frontier (out of order: nothing the
 *     appliers send, but nothing here relies on it) spoils the read-back:
 *     it stops, and readback_finish() answers 1, so the caller reads the
 *     destination back as it would have without one.
 *  3. The digest is what engine_digest() of the image would give once
 *     every range is applied: the same pipeline, on the same image, with
 *     the same leaf_fn, only earlier.
 *
 * Threads: readback_note() from the one applying thread; the others from
 * the thread that owns the read-back.  The image must stay open and its
 * size unchanged until readback_free().
 */
#ifndef DF_READBACK_H
#define DF_READBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "track/htree.h"
#include "util/error.h"
#include "util/hash.h"

struct image;
struct readback;

/*
 * Start reading img back behind the frontier, hashing with alg on
 * threads workers (0: cores).  With tree, every leaf's hash is kept as
 * well (an htree of img's size: a state record's).  NULL with err on
 * failure (nothing started).
 */
struct readback *readback_start(struct image *img, enum digest_alg alg,
                                unsigned threads, bool tree,
                                struct df_error *err);

/*
 * As readback_start, over the image sink k would read back whole at the
 * end (sink.h readback_image) when it is `size` bytes: NULL when k
 * offers none, or it cannot start (the end then reads back as before).
 */
struct sink;
struct readback *readback_for_sink(struct sink *k, uint64_t size,
                                   enum digest_alg alg, unsigned threads,
                                   bool tree);

/* [off, off+len) was applied to the image. */
void readback_note(struct readback *rb, uint64_t off, uint64_t len);

/* Stop it: its result will not be asked for (a sync's tree walk needs
 * no read of what it did not write).  It is freed by readback_free(). */
void readback_stop(struct readback *rb);

/*
 * Everything is applied: read the rest and wait for the digest of
 * [0, size) in alg.  0: *out holds it (and with tree, *t the leaves:
 * moved to the caller, who releases it); 1: there is none (stopped,
 * spoiled, failed, or another alg or size asked): read the destination
 * back instead.
 */
int readback_finish(struct readback *rb, enum digest_alg alg, uint64_t size,
                    struct digest *out, struct htree *t);

/* Stop (if running) and free; NULL is fine. */
void readback_free(struct readback *rb);

/*
 * Test hook (built only with meson -Dtesting=true; otherwise nothing):
 * DF_TEST_READBACK_LOG names a file to which a verification appends how
 * it read the destination back ("digest=readback": as it was written;
 * "digest=end": after), which no report shows (serve's is on another
 * host).
 */
void readback_test_log(const char *how);

#endif
