/*
 * tcp.c: --transport tcp: sockets, and setting up sealed data streams
 * beside the ssh channel (see transport.h; frame sealing in
 * proto/chan.c).
 */
#define _GNU_SOURCE
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/session.h"
#include "util/bytes.h"
#include "util/progress.h"

#define TCP_SERVER_BIT 0x80000000u
#define TCP_HELLO_MS 5000           /* a connection's time to say hello */
#define TCP_MAX_PENDING 64          /* connections not yet authenticated */
/* What a stream's opening holds: clear id, then the sealed STREAM_HELLO
 * (clen u32, type, stream id u32, tag). */
#define TCP_HELLO_CLEN (1 + 4 + MSG_TAG_LEN)
#define TCP_HELLO_LEN (4 + 4 + TCP_HELLO_CLEN)

static void tcp_tune(int fd)
{
    int one = 1, buf = 4 * 1024 * 1024;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

int tcp_listen(const char *addr, int *fdp, uint16_t *port,
               struct df_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    int fd = -1;
    if (getaddrinfo(addr, "0", &hints, &ai) != 0)
        return df_net(err, addr, "cannot listen: bad address");
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, 64) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return df_fail(err, DF_NET, e, addr, -1, "cannot listen");
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
    *fdp = fd;
    return 0;
}

int tcp_accept(int lfd, int timeout_ms, int *fdp, struct df_error *err)
{
    if (chan_wait(lfd, POLLIN, timeout_ms) < 0)
        return df_net(err, "client", "no TCP connection within %d s",
                      (timeout_ms + 999) / 1000);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return df_fail(err, DF_NET, errno, "client", -1, "accept");
    tcp_tune(fd);
    *fdp = fd;
    return 0;
}

/* connect(2) that gives up after timeout_ms; 0 or -1 with errno. */
static int tcp_connect_one(int fd, const struct sockaddr *a, socklen_t len,
                           int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, a, len) == 0)
        return 0;
    if (errno != EINPROGRESS || chan_wait(fd, POLLOUT, timeout_ms) < 0)
        return -1;
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
        return -1;
    errno = e;
    return e ? -1 : 0;
}

int tcp_connect(const char *host, uint16_t port, int timeout_ms, int *fdp,
                struct df_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL, *a;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int e = getaddrinfo(host, ps, &hints, &ai);
    if (e)
        return df_net(err, host, "cannot resolve: %s", gai_strerror(e));
    int fd = -1, saved = 0;
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        tcp_tune(fd);
        if (tcp_connect_one(fd, a->ai_addr, a->ai_addrlen, timeout_ms) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return df_fail(err, DF_NET, saved, host, -1,
                       "cannot connect to port %u", port);
    *fdp = fd;
    return 0;
}

/* The address the ssh connection arrived on, else loopback. */
static void tcp_bind_addr(char *buf, size_t len)
{
    const char *sc = getenv("SSH_CONNECTION");
    char a[4][128];
    if (sc && sscanf(sc, "%127s %127s %127s %127s", a[0], a[1], a[2],
                     a[3]) == 4) {
        snprintf(buf, len, "%s", a[2]);
        return;
    }
    snprintf(buf, len, "127.0.0.1");
}

static int tcp_add_streams(struct session *s, unsigned n,
                           struct df_error *err)
{
    s->streams = calloc(n, sizeof(*s->streams));
    if (!s->streams)
        return df_net(err, s->peer, "out of memory");
    return 0;
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
    if (tcp_add_streams(s, n, err) < 0)
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
    for (unsigned i = 0; i < n; i++)
        s->data_out[i] = &s->streams[i];
    s->ndata = n;
    ret = 0;
out:
    if (f)
        OPENSSL_cleanse(f->m.key, sizeof(f->m.key));
    rx_frame_free(f);
    msg_buf_release(&b);
    return ret;
}

/* A connection accepted but not yet authenticated. */
struct tcp_pending {
    int fd;
    double deadline;
    bool partial;           /* some of its hello arrived, not all */
};

static void tcp_drop(struct tcp_pending *p, unsigned *np, unsigned i)
{
    close(p[i].fd);
    p[i] = p[--*np];
}

/*
 * The whole hello of pending connection fd has arrived (peeked): read
 * it, seal the channel and check it.  0: c is stream `*id`; -1: drop
 * it (why in `why`).  Never blocks: every byte read is already there.
 */
static int tcp_hello(struct session *s, struct chan *c, int fd,
                     const uint8_t key[32], const bool *seen, unsigned n,
                     uint32_t *idp, char *why, size_t wlen)
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

int session_tcp_server(struct session *s, const struct msg *req,
                       struct df_error *err)
{
    struct msg_buf b;
    uint8_t key[32];
    char addr[128], why[256] = "";
    struct tcp_pending pend[TCP_MAX_PENDING];
    unsigned npend = 0, nok = 0;
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
    if (!seen || tcp_add_streams(s, n, err) < 0)
        goto out;
    /* Accept until n streams have authenticated: anyone may connect to
     * the port, so a connection that says nothing, says garbage or
     * fails the key check is dropped, never waited on. */
    double end = time_now() + wait_ms / 1000.0;
    while (nok < n) {
        double now = time_now();
        if (now > end) {
            df_net(err, s->peer, "%u of %u TCP streams authenticated "
                   "within %d s%s%s%s", nok, n, (wait_ms + 999) / 1000,
                   why[0] ? " (" : "", why, why[0] ? ")" : "");
            goto out;
        }
        struct pollfd pfd[TCP_MAX_PENDING + 1];
        unsigned np = 0;
        pfd[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (unsigned i = 0; i < npend; i++)
            if (!pend[i].partial)
                pfd[np++] = (struct pollfd){.fd = pend[i].fd,
                                            .events = POLLIN};
        if (poll(pfd, np, 50) < 0 && errno != EINTR) {
            df_fail(err, DF_NET, errno, s->peer, -1, "poll");
            goto out;
        }
        if (pfd[0].revents & POLLIN) {
            int fd;
            struct df_error ignored;
            df_error_init(&ignored);
            if (npend == TCP_MAX_PENDING)
                tcp_drop(pend, &npend, 0);      /* the oldest */
            if (tcp_accept(lfd, 0, &fd, &ignored) == 0)
                pend[npend++] = (struct tcp_pending){
                    .fd = fd, .deadline = now + hello_ms / 1000.0};
        }
        for (unsigned i = 0; i < npend;) {
            uint8_t peek[TCP_HELLO_LEN];
            ssize_t got = recv(pend[i].fd, peek, sizeof(peek),
                               MSG_PEEK | MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                snprintf(why, sizeof(why), "a connection closed before "
                         "its hello");
                tcp_drop(pend, &npend, i);
                continue;
            }
            if (got == TCP_HELLO_LEN) {
                uint32_t id;
                struct chan *c = &s->streams[nok];
                if (tcp_hello(s, c, pend[i].fd, key, seen, n, &id, why,
                              sizeof(why)) < 0) {
                    tcp_drop(pend, &npend, i);
                    continue;
                }
                chan_set_timeouts(c, -1, s->timeout_ms);
                c->bw = s->bw;
                seen[id] = true;
                s->nstreams = ++nok;
                pend[i] = pend[--npend];
                continue;
            }
            pend[i].partial = got > 0;
            if (now > pend[i].deadline) {
                snprintf(why, sizeof(why), "a connection sent no hello "
                         "within %d s", (hello_ms + 999) / 1000);
                tcp_drop(pend, &npend, i);
                continue;
            }
            i++;
        }
    }
    for (unsigned i = 0; i < n; i++)
        s->data_out[i] = &s->streams[i];
    s->ndata = n;
    ret = 0;
out:
    OPENSSL_cleanse(key, sizeof(key));
    while (npend)
        tcp_drop(pend, &npend, 0);
    if (lfd >= 0)
        close(lfd);
    free(seen);
    msg_buf_release(&b);
    return ret;
}
