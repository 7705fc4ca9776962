/*
 * apply.h: ranges arriving in order, applied to a destination: the
 * writer both ends of a session share (proto/serve_dst.c receives a push,
 * proto/remote.c a pull).
 *
 * The caller decodes what arrives (frames, decompression, the protocol
 * checks that name the peer) and hands each range here in the order it
 * was sent; apply writes or zeroes it on the sink, notes it in the
 * resume journal, and commits the journal every APPLY_COMMIT_BYTES or
 * APPLY_COMMIT_SECONDS (or when its pending list is full).
 *
 * It lives in engine/ and not in proto/ because nothing in it is wire
 * format: a sink (engine/sink.h) and a resume journal (proto/journal.h,
 * which engine/ may use, as dest.c does) are all it touches.
 *
 * Invariant (journal.h invariant 1): a range is noted only after the
 * sink accepted it, and a commit flushes the sink (finish()) before the
 * journal lists what was noted: every range the journal lists is on the
 * destination, durable.
 *
 * Not thread-safe: one thread applies; a caller that also flushes from
 * another thread (serve: FLUSH, DIGEST_REQ) serialises them itself.
 */
#ifndef DF_APPLY_H
#define DF_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/job.h"
#include "engine/sink.h"
#include "proto/journal.h"
#include "util/error.h"

struct readback;

#define APPLY_COMMIT_BYTES (32ull << 20)
#define APPLY_COMMIT_SECONDS 1.0

struct apply {
    struct sink *sink;
    struct rjournal *j;         /* NULL: nothing to resume from */
    uint64_t since_commit;      /* bytes noted since the last commit */
    double last_commit;
    uint64_t bytes;             /* applied: written or zeroed */
    /* Leaf hashes for the journal (set hash_leaves after apply_init):
     * every DIGEST_LEAF_SIZE leaf that contiguous ranges cover whole,
     * with some data in it, is hashed (RJOURNAL_HASH_ALG) and noted
     * with its range (journal.h invariant 7).  A leaf wholly zeroed is
     * not: it costs nothing to read back, and would bloat the journal. */
    bool hash_leaves;
    uint64_t leaf_off;          /* the leaf being gathered, or UINT64_MAX */
    uint64_t leaf_fill;         /* its bytes applied, from its start */
    bool leaf_data;             /* some of them data */
    uint8_t leaf_buf[DIGEST_LEAF_SIZE];
    /* The read-back that follows these ranges (engine/readback.h; set
     * after apply_init, borrowed; NULL: none): told each range the sink
     * accepted. */
    struct readback *rb;
};

/* Apply to k (borrowed), noting in j (borrowed, open; NULL: none). */
void apply_init(struct apply *a, struct sink *k, struct rjournal *j);

/* Write len bytes of data at off (data NULL: zero the range), note it,
 * and commit when a threshold is reached. */
int apply_range(struct apply *a, uint64_t off, uint64_t len,
                const void *data, struct df_error *err);

/* Flush the sink and commit what the journal has pending (nothing to do
 * without a journal or pending ranges). */
int apply_commit(struct apply *a, struct df_error *err);

/* Flush the sink (always) and commit the journal: the end of a stream,
 * or a FLUSH the peer asked for. */
int apply_finish(struct apply *a, struct df_error *err);

/*
 * The end of a copy whose source digest st->src_digest is known: with
 * opts->verify (and a sink that can be read back), read the destination
 * back and compare (DF_VERIFY "verification failed" on a mismatch).
 * Sets st->dst_digest, st->verify_seconds, st->verified.  The same
 * check engine_copy() ends with (verify.c).
 */
int engine_verify_sink(struct sink *dst, const struct job_opts *opts,
                       struct job_stats *st, struct df_error *err);

/* Its comparison alone, of st->dst_digest (read back otherwise: a
 * read-back taken as the destination was written, engine/readback.h)
 * with st->src_digest: sets st->verified, or DF_VERIFY. */
int engine_verify_compare(const struct sink *dst, struct job_stats *st,
                          struct df_error *err);

#endif
