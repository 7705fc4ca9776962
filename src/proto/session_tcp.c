/*
 * session_tcp.c: --transport tcp, the session half: ask for or offer N
 * data streams over the control channel (TCP_REQ, TCP_OFFER: port, a
 * fresh 256-bit key, the address to connect to), then open each stream
 * with its clear u32 id and a sealed STREAM_HELLO naming the same id.
 * The sockets are transport/tcp.c's; the sealing is chan.c's.
 *
 *   stream opening   u32 LE stream id (clear)
 *                    sealed frame: clen u32, type STREAM_HELLO,
 *                    stream id u32, GCM tag
 *
 * The client seals its direction with nonce prefix id, the server with
 * id | TCP_SERVER_BIT, so the two directions never share a nonce.
 */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"
#include "util/bytes.h"

#define TCP_SERVER_BIT 0x80000000u
#define TCP_HELLO_MS 5000           /* a connection's time to say hello */
/* What a stream's opening holds: clear id, then the sealed STREAM_HELLO
 * (clen u32, type, stream id u32, tag). */
#define TCP_HELLO_CLEN (1 + 4 + MSG_TAG_LEN)
#define TCP_HELLO_LEN (4 + 4 + TCP_HELLO_CLEN)

static int session_tcp_add_streams(struct session *s, unsigned n,
                                   struct df_error *err)
{
    s->streams = calloc(n, sizeof(*s->streams));
    if (!s->streams)
        return df_net(err, s->peer, "out of memory");
    return 0;
}

/* The n streams, all set up, carry the data from now on. */
static void session_tcp_use_streams(struct session *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        s->data_out[i] = &s->streams[i];
    s->ndata = n;
}

int session_tcp_client(struct session *s, const char *host, unsigned n,
                       struct df_error *err)
{
    struct msg_buf b;
    struct rx_frame *f = NULL;
    int ret = -1;
    msg_buf_init(&b);
    if (!(s->features & MSG_FEAT_TCP)) {
        df_net(err, s->peer, "the remote diskferry has no TCP transport");
        goto out;
    }
    msg_buf_reset(&b);
    msg_put_u32(&b, n);
    if (session_send(s, MSG_TCP_REQ, &b, err) < 0 ||
        session_expect(s, MSG_TCP_OFFER, &f, err) < 0)
        goto out;
    if (session_tcp_add_streams(s, n, err) < 0)
        goto out;
    /* The address serve listens on (where ssh arrived: an ssh_config
     * alias need not resolve here), else the host name.  A bracketed
     * IPv6 literal was unbracketed by the endpoint parser. */
    const char *addr = f->m.s1[0] ? f->m.s1 : host;
    for (unsigned i = 0; i < n; i++) {
        int fd;
        if (tcp_connect(addr, f->m.port, s->timeout_ms, &fd, err) < 0) {
            if (addr == host || i)
                goto out;
            df_error_init(err);     /* not reachable from here: NAT */
            addr = host;
            if (tcp_connect(addr, f->m.port, s->timeout_ms, &fd, err) < 0)
                goto out;
        }
        struct chan *c = &s->streams[i];
        chan_init(c, fd, fd, s->peer);
        chan_set_timeouts(c, -1, s->timeout_ms);
        c->bw = s->bw;
        s->nstreams = i + 1;
        uint8_t id[4];
        put_le32(id, i);
        if (chan_write_full(fd, id, 4, s->timeout_ms) < 0) {
            df_fail(err, DF_NET, errno, s->peer, -1, "send failed");
            goto out;
        }
        if (chan_seal(c, f->m.key, i, i | TCP_SERVER_BIT, err) < 0)
            goto out;
        msg_buf_reset(&b);
        msg_put_u32(&b, i);
        if (chan_send(c, MSG_STREAM_HELLO, b.p, b.len, NULL, 0, err) < 0)
            goto out;
    }
    session_tcp_use_streams(s, n);
    ret = 0;
out:
    if (f)
        OPENSSL_cleanse(f->m.key, sizeof(f->m.key));
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

/*
 * The whole hello of pending connection fd has arrived (peeked): read
 * it, seal the channel and check it.  0: c is stream `*id`; -1: drop
 * it (why in `why`).  Never blocks: every byte read is already there.
 */
static int session_tcp_hello(struct session *s, struct chan *c, int fd,
                             const uint8_t key[32], const bool *seen,
                             unsigned n, uint32_t *idp, char *why,
                             size_t wlen)
{
    uint8_t head[8], type, *buf = NULL;
    size_t len;
    struct df_error e;
    struct msg m;
    df_error_init(&e);
    if (recv(fd, head, 8, MSG_PEEK) != 8)
        return snprintf(why, wlen, "closed before its hello"), -1;
    uint32_t id = get_le32(head);
    if (id >= n || seen[id] || get_le32(head + 4) != TCP_HELLO_CLEN)
        return snprintf(why, wlen, "not a stream hello"), -1;
    if (recv(fd, head, 4, 0) != 4)
        return snprintf(why, wlen, "closed before its hello"), -1;
    chan_init(c, fd, fd, s->peer);
    int r = chan_seal(c, key, id | TCP_SERVER_BIT, id, &e);
    if (r == 0)
        r = chan_recv(c, &type, &buf, &len, &e) == 0 ? 0 : -1;
    if (r == 0 && (type != MSG_STREAM_HELLO ||
                   msg_decode(type, buf, len, &m, s->peer, &e) < 0 ||
                   m.stream_id != id)) {
        df_net(&e, s->peer, "TCP stream hello does not match its id");
        r = -1;
    }
    free(buf);
    if (r < 0) {
        snprintf(why, wlen, "%s", e.msg);
        c->rfd = c->wfd = -1;       /* the caller closes fd */
        chan_release(c);
        return -1;
    }
    *idp = id;
    return 0;
}

/* What session_tcp_hello() needs from the accept loop. */
struct session_tcp_accept {
    struct session *s;
    const uint8_t *key;
    bool *seen;
    unsigned n;
};

/* tcp_accept_n's take(): authenticate fd as the next stream. */
static int session_tcp_take(void *ctx, int fd, char *why, size_t wlen)
{
    struct session_tcp_accept *a = ctx;
    struct session *s = a->s;
    uint32_t id;
    struct chan *c = &s->streams[s->nstreams];
    if (session_tcp_hello(s, c, fd, a->key, a->seen, a->n, &id, why,
                          wlen) < 0)
        return -1;
    chan_set_timeouts(c, -1, s->timeout_ms);
    c->bw = s->bw;
    a->seen[id] = true;
    s->nstreams++;
    return 0;
}

int session_tcp_server(struct session *s, const struct msg *req,
                       struct df_error *err)
{
    struct msg_buf b;
    uint8_t key[32];
    char addr[128], why[256] = "";
    unsigned nok = 0;
    int lfd = -1, ret = -1;
    uint16_t port;
    unsigned n = req->streams;
    bool *seen = NULL;
    int wait_ms = s->timeout_ms >= 0 ? s->timeout_ms
                                     : SESSION_TIMEOUT_S * 1000;
    int hello_ms = wait_ms < TCP_HELLO_MS ? wait_ms : TCP_HELLO_MS;
    msg_buf_init(&b);
    if (s->nstreams) {
        df_net(err, s->peer, "protocol error: a second TCP_REQ");
        goto out;
    }
    if (RAND_bytes(key, sizeof(key)) != 1) {
        df_net(err, s->peer, "no random bytes for a session key");
        goto out;
    }
    tcp_bind_addr(addr, sizeof(addr));
    if (tcp_listen(addr, &lfd, &port, err) < 0)
        goto out;
    msg_enc_tcp_offer(&b, port, key);
    if (s->features & MSG_FEAT_TCP_ADDR)
        msg_put_str(&b, addr);
    if (session_send(s, MSG_TCP_OFFER, &b, err) < 0)
        goto out;
    seen = calloc(n, sizeof(*seen));
    if (!seen || session_tcp_add_streams(s, n, err) < 0)
        goto out;
    /* Accept until n streams have authenticated: a connection that
     * fails the key check is dropped by the loop, never waited on. */
    struct session_tcp_accept acc = {.s = s, .key = key, .seen = seen,
                                     .n = n};
    struct tcp_accept_opts o = {.what = s->peer, .want = n,
                                .hello_len = TCP_HELLO_LEN,
                                .hello_ms = hello_ms, .wait_ms = wait_ms,
                                .take = session_tcp_take, .ctx = &acc};
    int r = tcp_accept_n(lfd, &o, &nok, why, sizeof(why), err);
    if (r < 0)
        goto out;
    if (r > 0) {
        df_net(err, s->peer, "%u of %u TCP streams authenticated "
               "within %d s%s%s%s", nok, n, (wait_ms + 999) / 1000,
               why[0] ? " (" : "", why, why[0] ? ")" : "");
        goto out;
    }
    session_tcp_use_streams(s, n);
    ret = 0;
out:
    OPENSSL_cleanse(key, sizeof(key));
    if (lfd >= 0)
        close(lfd);
    free(seen);
    msg_buf_release(&b);
    return ret;
}
