/*
 * tcp.c: --transport tcp, the socket half: listen, connect and accept
 * with deadlines, and the accept loop that hands each new connection's
 * opening bytes to the caller to judge (see transport.h).  What those
 * bytes mean, the key and the sealing are the session's
 * (proto/session_tcp.c, proto/chan.c).
 */
#define _GNU_SOURCE
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/file.h"
#include "util/progress.h"

#define TCP_MAX_PENDING 64          /* connections not yet taken */
#define TCP_MAX_HELLO 256           /* longest opening tcp_accept_n peeks */

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
    if (fd_wait(lfd, POLLIN, timeout_ms) < 0)
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
    if (errno != EINPROGRESS || fd_wait(fd, POLLOUT, timeout_ms) < 0)
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

void tcp_bind_addr(char *buf, size_t len)
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

/* A connection accepted but not yet taken. */
struct tcp_pending {
    int fd;
    double deadline;
    bool partial;           /* some of its opening arrived, not all */
};

static void tcp_drop(struct tcp_pending *p, unsigned *np, unsigned i)
{
    close(p[i].fd);
    p[i] = p[--*np];
}

int tcp_accept_n(int lfd, const struct tcp_accept_opts *o, unsigned *ntaken,
                 char *why, size_t wlen, struct df_error *err)
{
    struct tcp_pending pend[TCP_MAX_PENDING];
    unsigned npend = 0;
    int ret = -1;
    *ntaken = 0;
    if (o->hello_len == 0 || o->hello_len > TCP_MAX_HELLO) {
        df_net(err, o->what, "opening of %zu bytes outside 1..%d",
               o->hello_len, TCP_MAX_HELLO);
        goto out;
    }
    /* Anyone may connect to the port, so a connection that says nothing,
     * says garbage or is refused by take() is dropped, never waited on. */
    double end = time_now() + o->wait_ms / 1000.0;
    while (*ntaken < o->want) {
        double now = time_now();
        if (now > end) {
            ret = 1;
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
            df_fail(err, DF_NET, errno, o->what, -1, "poll");
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
                    .fd = fd, .deadline = now + o->hello_ms / 1000.0};
        }
        for (unsigned i = 0; i < npend;) {
            uint8_t peek[TCP_MAX_HELLO];
            ssize_t got = recv(pend[i].fd, peek, o->hello_len,
                               MSG_PEEK | MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                snprintf(why, wlen, "a connection closed before "
                         "its hello");
                tcp_drop(pend, &npend, i);
                continue;
            }
            if ((size_t)got == o->hello_len) {
                if (o->take(o->ctx, pend[i].fd, why, wlen) < 0) {
                    tcp_drop(pend, &npend, i);
                    continue;
                }
                ++*ntaken;
                pend[i] = pend[--npend];
                continue;
            }
            pend[i].partial = got > 0;
            if (now > pend[i].deadline) {
                snprintf(why, wlen, "a connection sent no hello "
                         "within %d s", (o->hello_ms + 999) / 1000);
                tcp_drop(pend, &npend, i);
                continue;
            }
            i++;
        }
    }
    ret = 0;
out:
    while (npend)
        tcp_drop(pend, &npend, 0);
    return ret;
}
