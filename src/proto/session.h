/*
 * session.h: one protocol session, as seen from either end: the control
 * channel, the data channels (the control channel itself over ssh, or N
 * sealed TCP streams), reader threads, and the in-order data queue.
 *
 * Reader threads (one per channel) decode every frame (msg_decode) and
 * route it:
 *   data (WRITE/ZERO/TRIM) -> the reorder queue, popped in seq order by
 *                             session_recv_data();
 *   ACK                    -> sender_ack() on the attached sender;
 *   ERROR, EOF, bad frame  -> the session fails: every waiter wakes and
 *                             returns the error (a remote ERROR keeps
 *                             the remote's category, what = "host:path");
 *   STREAM_END             -> records the end seq and the digest;
 *   anything else          -> the control queue, session_recv_ctl().
 *
 * Invariants:
 *  1. The reorder queue holds at most SESSION_RXQ_SLOTS frames and about
 *     SESSION_RXQ_BYTES payload bytes; a reader waits for room, except
 *     for the frame the consumer needs next (so streams cannot deadlock).
 *  2. A seq already consumed or already queued is a protocol error.
 *  3. After the first failure every call returns -1 with that error.
 *  4. Every wait on the peer ends (docs/design.md promise 5): the control
 *     channel's writes, the TCP streams' writes and the handshake's
 *     reads give up after timeout_ms ("host: no answer for N s"); after
 *     the handshake, when both sides have MSG_FEAT_KEEPALIVE, each side
 *     sends a KEEPALIVE every SESSION_KEEPALIVE_MS (from its own thread,
 *     also while the side is busy hashing or asking its user), and the
 *     control channel's reads give up after timeout_ms of silence.
 *     Without the feature (an older peer) reads wait as long as it
 *     takes: a long digest says nothing until it is done.
 */
#ifndef DF_SESSION_H
#define DF_SESSION_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "chan.h"
#include "msg.h"
#include "util/error.h"

struct sender;
struct bwlimit;

#define SESSION_RXQ_SLOTS 256
#define SESSION_RXQ_BYTES (48u * 1024 * 1024)
#define SESSION_MAX_STREAMS 64
#define SESSION_TIMEOUT_S 60            /* --timeout default */
#define SESSION_KEEPALIVE_MS 5000       /* at most; timeout/4 if shorter */

struct rx_frame {
    uint8_t *buf;           /* owns the payload; m's pointers borrow it */
    size_t len;
    struct msg m;
    struct rx_frame *next;
};
void rx_frame_free(struct rx_frame *f);

/* What the receiving end counted of one probe step's PROBE_DATA
 * (probe.h): bytes, and from the first frame to the last the bytes
 * after the first frame and the time (ns, time_now_ns()). */
struct session_probe_count {
    uint32_t step;
    uint64_t bytes, span_bytes;
    uint64_t t_first, t_last;
    unsigned frames;
};

struct session {
    char peer[PATH_MAX];        /* "host" (client) or "client" (serve) */
    bool is_server;
    struct chan ctl;
    struct chan *streams;       /* TCP streams, or NULL */
    unsigned nstreams;
    struct chan *data_out[SESSION_MAX_STREAMS];    /* for a sender */
    unsigned ndata;
    struct bwlimit *bw;         /* owned */
    uint16_t version;
    uint32_t features;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct rx_frame *ctlq_head, **ctlq_tail;
    struct rx_frame *rxq[SESSION_RXQ_SLOTS];
    uint64_t rx_next;           /* next seq the consumer takes */
    uint64_t rx_bytes;          /* payload bytes queued */
    bool has_end;
    struct msg end;             /* STREAM_END */
    bool ctl_eof;
    bool ctl_dead;              /* the control reader stopped on an error */
    struct df_error err;
    bool has_peer_err;          /* an ERROR message arrived: */
    struct df_error peer_err;   /* the remote's own account */
    /* Receives ACKs and failures; may be NULL.  Set and cleared under
     * lock; clear it before freeing the sender (session.c). */
    struct sender *ack_sender;

    int timeout_ms;             /* invariant 4; -1: none */
    pthread_t keepalive;
    bool keepalive_started, keepalive_stop;

    /* Link probe (MSG_FEAT_PROBE): the readers count PROBE_DATA of the
     * newest step here and drop older steps'; a client's reader keeps
     * the newest PROBE_DONE (never queued as a control frame). */
    struct session_probe_count probe;
    bool has_probe_done;
    struct msg probe_done;

    pthread_t readers[SESSION_MAX_STREAMS + 1];
    unsigned nreaders;
    unsigned streams_started;
    bool started;
};

/* Adopt rfd/wfd as the control channel (closed by session_release). */
void session_init(struct session *s, int rfd, int wfd, const char *peer,
                  bool is_server);
/* Stop reader threads (shut the channels down first) and free. */
void session_release(struct session *s);
/* Give up on the peer after secs seconds of silence (invariant 4);
 * before session_hello().  0: never. */
void session_set_timeout(struct session *s, unsigned secs);
/* Stop sending KEEPALIVEs (before closing the control channel's write
 * end); session_release() does it too. */
void session_quiet(struct session *s);
/* Did a wait on the peer time out (it is stopped or gone)? */
bool session_timed_out(const struct session *s);

/* Handshake: the client sends HELLO first; both negotiate (msg.h). */
int session_hello(struct session *s, struct df_error *err);
/* Start the control reader and the readers of TCP streams not yet
 * started (after the handshake; again after TCP setup on the server). */
int session_start(struct session *s, struct df_error *err);

/* Send on the control channel. */
int session_send(struct session *s, uint8_t type, const struct msg_buf *b,
                 struct df_error *err);
/* Next control frame (caller frees); -1 on failure or EOF (then
 * *eof = true if it was a clean end of the control channel). */
int session_recv_ctl(struct session *s, struct rx_frame **out, bool *eof,
                     struct df_error *err);
/* Wait for a control frame of `type` (anything else is an error). */
int session_expect(struct session *s, uint8_t type, struct rx_frame **out,
                   struct df_error *err);
/* Next data frame in seq order: 0 with *out, 1 when the STREAM_END's seq
 * has been reached, -1 on failure. */
int session_recv_data(struct session *s, struct rx_frame **out,
                      struct df_error *err);
/* Fail the session (wakes everyone; the first error wins). */
void session_fail(struct session *s, const struct df_error *e);
/*
 * A local failure (a send that found the connection closed) often has a
 * cause the peer is about to tell: wait up to timeout seconds for the
 * control channel to deliver an ERROR or end, and if an ERROR came,
 * replace err (DF_NET only) with the peer's account.
 */
void session_explain(struct session *s, struct df_error *err,
                     double timeout);
/* Send an ERROR to the peer (best effort). */
void session_send_error(struct session *s, const struct df_error *e);
/* Total bytes sent/received on all channels. */
uint64_t session_bytes_out(const struct session *s);
uint64_t session_bytes_in(const struct session *s);

/*
 * Link probe (probe.c): count PROBE_DATA of `step` from now on (older
 * steps' frames are dropped); wait until `want` bytes of it arrived or
 * until deadline (time_now(), seconds): 0 with what came in *out (on
 * time or not), -1 when the session failed.
 */
void session_probe_arm(struct session *s, uint32_t step);
int session_probe_wait(struct session *s, uint32_t step, uint64_t want,
                       double deadline, struct session_probe_count *out,
                       struct df_error *err);
/* Client: wait for the PROBE_DONE of `step` until deadline: 0 with it
 * in *out, 1 if it did not come in time, -1 when the session failed. */
int session_probe_done(struct session *s, uint32_t step, double deadline,
                       struct msg *out, struct df_error *err);

/* TCP transport (session_tcp.c; transport/tcp.c does the sockets): */
/* client: after OPENED, ask for n streams, connect to host, seal. */
int session_tcp_client(struct session *s, const char *host, unsigned n,
                       struct df_error *err);
/* server: answer a TCP_REQ: listen, offer, accept, authenticate. */
int session_tcp_server(struct session *s, const struct msg *req,
                       struct df_error *err);

#endif
