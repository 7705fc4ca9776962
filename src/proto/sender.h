/*
 * sender.h: the sending half of a data stream: ordered WRITE/ZERO/TRIM
 * frames, compressed by worker threads, sent on one or more channels.
 *
 *   sender_write() --copy--> ring of jobs --workers compress-->
 *       --> one output thread per channel sends jobs seq = c, c+N, ...
 *
 * Used by the client's remote sink (copy to host:PATH) and by serve's
 * read stream (copy from host:PATH): the same code on both ends.
 *
 * Invariants:
 *  1. Sequence numbers are assigned in call order; job seq goes on
 *     channel seq % nchans, so each channel carries ascending seqs.
 *  2. With acks (ack_window > 0), at most ack_window payload bytes are
 *     sent and not yet acknowledged; sender_ack() moves the window.
 *  3. The first error (a send failure, or sender_fail() from the ack
 *     reader) stops everything: later calls return -1 with it.
 *  4. Auto compression (compress.h): every control period (about
 *     SENDER_PERIOD seconds) the time the output threads waited for
 *     compressed jobs (CPU-bound) is compared with the time the producer
 *     waited for a free slot whose job was already compressed, or for
 *     the ack window (link-bound), and the rate on the wire is measured.
 */
#ifndef DF_SENDER_H
#define DF_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compress.h"
#include "util/error.h"

struct chan;
struct sender;

#define SENDER_ADJUST_EVERY 64      /* jobs, or: */
#define SENDER_PERIOD 0.5           /* seconds per control period */
#define SENDER_IDLE_MIN 0.10        /* of the machine's CPU: "no time to
                                       spare" below (compress.h starved) */
#define SENDER_COMP_SHARE 0.25      /* cores compressing: "a good share" */

/*
 * Memory (peak RSS stays bounded whatever --streams says): the jobs'
 * buffers (a block and its compressed copy each) stay within
 * SENDER_MEM_MAX, and over more than SENDER_MANY_CHANS channels a frame
 * carries at most SENDER_MANY_BLOCK, so that each channel's frame
 * buffer (chan.c) and the receiver's frame in hand per stream stay
 * small.  Fewer jobs than channels is fine: a job lives in slot
 * seq % nslots and each output thread sends its seqs in order.
 */
#define SENDER_MEM_MAX (48u << 20)
#define SENDER_MANY_CHANS 8
#define SENDER_MANY_BLOCK (256u << 10)

/* chans are borrowed; nworkers compression threads (0: compress in the
 * output threads); frames of at most max_block payload bytes (less with
 * many channels, above). */
struct sender *sender_new(struct chan **chans, unsigned nchans,
                          struct comp_ctl *ctl, unsigned nworkers,
                          size_t max_block, uint64_t ack_window,
                          struct df_error *err);
/* Queue data (copied) / a zero or trim range; may block (window). */
int sender_write(struct sender *s, uint64_t off, const void *buf,
                 size_t len, struct df_error *err);
int sender_zero(struct sender *s, uint8_t type, uint64_t off, uint64_t len,
                struct df_error *err);
/* Wait until every queued frame is on the wire (not acknowledged). */
int sender_drain(struct sender *s, struct df_error *err);
/* Acknowledged through seq (exclusive), bytes cumulative. */
void sender_ack(struct sender *s, uint64_t seq, uint64_t bytes);
/* Wait until every frame is acknowledged (sender_ack). */
int sender_wait_acked(struct sender *s, struct df_error *err);
/* Data bytes the receiver acknowledged as applied (a lower bound: acks
 * come every MSG_ACK_EVERY bytes). */
uint64_t sender_acked_bytes(struct sender *s);
/* Record an error from elsewhere (the ack reader): wakes everyone. */
void sender_fail(struct sender *s, const struct df_error *e);
uint64_t sender_next_seq(const struct sender *s);
/* Payload bytes given to sender_write so far. */
uint64_t sender_bytes_in(const struct sender *s);
/* Stop threads (after drain or on error) and free.  NULL is a no-op. */
void sender_free(struct sender *s);

#endif
