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

#define TCP_ACCEPT_TIMEOUT_MS 10000
#define TCP_SERVER_BIT 0x80000000u

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
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return df_net(err, "client", "no TCP connection within %d s",
                      timeout_ms / 1000);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return df_fail(err, DF_NET, errno, "client", -1, "accept");
    tcp_tune(fd);
    *fdp = fd;
    return 0;
}

int tcp_connect(const char *host, uint16_t port, int *fdp,
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
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
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
    /* A bracketed IPv6 literal was unbracketed by the endpoint parser. */
    for (unsigned i = 0; i < n; i++) {
        int fd;
        if (tcp_connect(host, f->m.port, &fd, err) < 0)
            goto out;
        struct chan *c = &s->streams[i];
        chan_init(c, fd, fd, s->peer);
        c->bw = s->bw;
        s->nstreams = i + 1;
        uint8_t id[4];
        put_le32(id, i);
        if (chan_write_full(fd, id, 4) < 0) {
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

int session_tcp_server(struct session *s, const struct msg *req,
                       struct df_error *err)
{
    struct msg_buf b;
    uint8_t key[32];
    char addr[128];
    int lfd = -1, ret = -1;
    uint16_t port;
    unsigned n = req->streams;
    bool *seen = NULL;
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
    if (session_send(s, MSG_TCP_OFFER, &b, err) < 0)
        goto out;
    seen = calloc(n, sizeof(*seen));
    if (!seen || tcp_add_streams(s, n, err) < 0)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        int fd;
        uint8_t idb[4];
        struct rx_frame *f = NULL;
        if (tcp_accept(lfd, TCP_ACCEPT_TIMEOUT_MS, &fd, err) < 0)
            goto out;
        struct chan *c = &s->streams[i];
        chan_init(c, fd, fd, s->peer);
        c->bw = s->bw;
        s->nstreams = i + 1;
        if (chan_read_full(fd, idb, 4) != 4) {
            df_net(err, s->peer, "TCP stream closed before its hello");
            goto out;
        }
        uint32_t id = get_le32(idb);
        if (id >= n || seen[id]) {
            df_net(err, s->peer, "TCP stream with a bad id %u: connection "
                   "refused", id);
            goto out;
        }
        if (chan_seal(c, key, id | TCP_SERVER_BIT, id, err) < 0)
            goto out;
        uint8_t type;
        uint8_t *buf = NULL;
        size_t len;
        int r = chan_recv(c, &type, &buf, &len, err);
        if (r == 1)
            df_net(err, s->peer, "TCP stream closed before its hello");
        if (r != 0)
            goto out;
        f = calloc(1, sizeof(*f));
        if (!f) {
            free(buf);
            df_net(err, s->peer, "out of memory");
            goto out;
        }
        f->buf = buf;
        f->len = len;
        r = type == MSG_STREAM_HELLO
                ? msg_decode(type, buf, len, &f->m, s->peer, err)
                : df_net(err, s->peer, "protocol error: TCP stream did "
                         "not start with STREAM_HELLO");
        bool ok = r == 0 && f->m.stream_id == id;
        rx_frame_free(f);
        if (!ok) {
            df_net(err, s->peer, "TCP stream hello does not match its id");
            goto out;
        }
        seen[id] = true;
    }
    for (unsigned i = 0; i < n; i++)
        s->data_out[i] = &s->streams[i];
    s->ndata = n;
    ret = 0;
out:
    OPENSSL_cleanse(key, sizeof(key));
    if (lfd >= 0)
        close(lfd);
    free(seen);
    msg_buf_release(&b);
    return ret;
}
