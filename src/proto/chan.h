/*
 * chan.h: one framed byte stream: the ssh pipe pair (control channel)
 * or one TCP stream (sealed with AES-256-GCM).  Frame layouts in msg.h.
 *
 * Invariants:
 *  1. chan_send() is safe from several threads (one lock per channel);
 *     chan_recv() has one caller at a time.
 *  2. chan_recv() never allocates from an unchecked length: the length
 *     is compared with MSG_MAX_PAYLOAD first.  It returns a frame in a
 *     buffer the caller then owns (free()).
 *  3. On a sealed channel nothing of a frame is returned before its tag
 *     verified; a bad tag is DF_NET "authentication failed" and the
 *     receiving direction is dead (every later chan_recv fails; an
 *     ERROR can still be sent).
 *  4. Sent frames pass the session's bwlimit (may be NULL) in chunks.
 *  5. No wait is endless when a timeout is set: a write that cannot go
 *     on for wr_timeout_ms, or a read that sees no byte for
 *     rd_timeout_ms, fails with DF_NET "no answer for N s" and sets
 *     timed_out (the peer is stopped or gone, not merely slow).
 */
#ifndef DF_CHAN_H
#define DF_CHAN_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct bwlimit;

struct chan {
    int rfd, wfd;
    char peer[PATH_MAX];        /* "host" for messages */
    pthread_mutex_t wlock;
    struct bwlimit *bw;         /* borrowed; NULL = unlimited */
    /* sealing (tcp) */
    bool sealed;
    void *ectx, *dctx;          /* EVP_CIPHER_CTX */
    uint32_t send_id, recv_id;  /* nonce prefixes */
    uint64_t send_ctr, recv_ctr;
    uint8_t *sbuf;              /* seal buffer */
    size_t scap;
    bool rdead, wdead;          /* a direction failed: it stays failed */
    struct df_error werr;       /* why wdead */
    int rd_timeout_ms, wr_timeout_ms;   /* -1: none (chan_init) */
    _Atomic bool timed_out;
    _Atomic uint64_t bytes_out, bytes_in;
};

/* Adopt rfd/wfd (closed by chan_release; they may be equal). */
void chan_init(struct chan *c, int rfd, int wfd, const char *peer);
void chan_release(struct chan *c);
/* Seal the channel: every frame from now on is AES-256-GCM with key;
 * send_id/recv_id are the nonce prefixes of the two directions. */
int chan_seal(struct chan *c, const uint8_t key[32], uint32_t send_id,
              uint32_t recv_id, struct df_error *err);

/* Send one frame: type, then hdr[hlen] and data[dlen] as its payload. */
int chan_send(struct chan *c, uint8_t type, const void *hdr, size_t hlen,
              const void *data, size_t dlen, struct df_error *err);
/*
 * Receive one frame.  Returns 0 with *buf (caller frees), *type and
 * *len set; 1 at a clean end of stream (between frames); -1 on error
 * (DF_NET: truncated, oversized, authentication failed, read error).
 */
int chan_recv(struct chan *c, uint8_t *type, uint8_t **buf, size_t *len,
              struct df_error *err);

/* Timeouts (invariant 5), in ms, -1 for none.  A write timeout makes
 * wfd non-blocking (the fd is ours alone). */
void chan_set_timeouts(struct chan *c, int rd_ms, int wr_ms);

/* write(2)/read(2) loops: -1 with errno set (ETIMEDOUT when nothing
 * moved for timeout_ms; -1: wait for ever); chan_read_full returns the
 * bytes read (< len only at EOF). */
int chan_write_full(int fd, const void *buf, size_t len, int timeout_ms);
long chan_read_full(int fd, void *buf, size_t len, int timeout_ms);

#endif
