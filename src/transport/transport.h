/*
 * transport.h: how a client reaches `diskferry serve` on another host.
 *
 * ssh (ssh.c): fork/exec `RSH [user@]host REMOTE_PATH serve ARGS...`
 *   where RSH is --rsh CMD split into words like rsync's -e (quotes and
 *   backslashes honoured, no shell), REMOTE_PATH is --remote-path P
 *   (default "diskferry").  The remote side joins the words with spaces
 *   and hands them to a shell, so every word after the host is quoted
 *   with ssh_quote() (single quotes; a ' becomes '\'').  The child's
 *   stdin/stdout are the control channel; its stderr comes through a
 *   pipe to a thread that keeps the last lines (relayed to ours with
 *   -v), so that a session that ends before it began can say why:
 *   ssh_explain() turns "connection closed" into "diskferry not found
 *   on the remote host", "unknown host", "login refused" or the
 *   remote's last line.  A plain
 *   `ssh` without a cipher choice gets AES-GCM first when the CPU has
 *   AES instructions (ssh.c says why).
 * tcp (tcp.c): the sockets of the data streams beside the ssh channel:
 *   listen on an ephemeral port of the address the ssh connection
 *   arrived on (tcp_bind_addr: SSH_CONNECTION, loopback when absent),
 *   connect with a deadline, and accept until N connections have been
 *   taken or a deadline passed (tcp_accept_n).  A connection whose
 *   opening does not arrive within its own deadline, or that the caller
 *   refuses, is dropped, and the real ones are still accepted.  The
 *   session half (proto/session_tcp.c) offers port + a fresh 256-bit
 *   key and that address over the ssh channel (TCP_OFFER; the client
 *   connects to the address, so an ssh_config alias or a jump through
 *   NAT works, and falls back to the host name); each stream opens with
 *   a clear u32 stream id followed by a sealed STREAM_HELLO naming the
 *   same id.  Every frame is AES-256-GCM sealed (proto/chan.c); a wrong
 *   key or a tampered frame ends the session with exit 6 before
 *   anything of that frame is used.
 */
#ifndef DF_TRANSPORT_H
#define DF_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#include <pthread.h>

#define SSH_ERR_LINES 4
#define SSH_ERR_LINE_MAX 256

struct ssh_conn {
    pid_t pid;
    int rfd, wfd;           /* the child's stdout, stdin */
    /* the child's stderr, read by a thread (ssh.c) */
    int errfd;
    bool relay;             /* copy each line to our stderr */
    pthread_t errthr;
    bool errthr_started;
    pthread_mutex_t lock;
    bool err_eof, err_stop;
    char lines[SSH_ERR_LINES][SSH_ERR_LINE_MAX];
    unsigned nlines;        /* lines seen in all */
    bool exited;            /* reaped by ssh_wait() */
    int status;
};

/* Append word quoted for a POSIX shell to buf (always single quotes
 * unless the word is plain [A-Za-z0-9_./=:,+@%-]). -1 when too long. */
int ssh_quote(char *buf, size_t len, const char *word);
/* Split an --rsh command like rsync's -e: whitespace separates words;
 * '...' and "..." group; backslash escapes.  Returns the count or -1.
 * The words point into storage (at least strlen(cmd)+1 bytes). */
int ssh_split(const char *cmd, char **argv, int max, char *storage);

/*
 * Start `rsh [user@]host remote_path serve args...`.  user may be NULL.
 * args are quoted for the remote shell.  On success conn holds the
 * child and the two pipe ends.
 */
int ssh_spawn(const char *rsh, const char *user, const char *host,
              const char *remote_path, const char *const *args,
              size_t nargs, bool relay_stderr, struct ssh_conn *conn,
              struct df_error *err);
/* Wait up to timeout_ms for the child to exit; true when it has. */
bool ssh_wait(struct ssh_conn *conn, int timeout_ms);
/*
 * The session with host ended before or without a word from serve (err
 * is the local "connection closed"): when the child has exited (after
 * ssh_wait()), replace err with what its exit status and stderr say.
 * remote_path as given (NULL: "diskferry").
 */
void ssh_explain(struct ssh_conn *conn, const char *host,
                 const char *remote_path, struct df_error *err);
/* Reap the child: wait up to timeout_ms, then SIGTERM, then SIGKILL. */
void ssh_close(struct ssh_conn *conn, int timeout_ms);

/* TCP sockets.  Each returns 0, or -1 with err (DF_NET). */
int tcp_listen(const char *addr, int *fd, uint16_t *port,
               struct df_error *err);
int tcp_accept(int lfd, int timeout_ms, int *fd, struct df_error *err);
/* Connect, giving up after timeout_ms; the socket is non-blocking. */
int tcp_connect(const char *host, uint16_t port, int timeout_ms, int *fd,
                struct df_error *err);
/* The address to listen on: where the ssh connection arrived
 * (SSH_CONNECTION), else loopback. */
void tcp_bind_addr(char *buf, size_t len);

struct tcp_accept_opts {
    const char *what;       /* names the peer in errors ("client") */
    unsigned want;          /* connections to take */
    size_t hello_len;       /* opening bytes take() needs, 1..256 */
    int hello_ms;           /* a connection's time to send them */
    int wait_ms;            /* for all `want` */
    /* The first hello_len bytes of fd have arrived (peek them; nothing
     * was read).  0: taken, fd is now the caller's; -1: drop it (closed
     * by tcp_accept_n), why says why in up to wlen bytes. */
    int (*take)(void *ctx, int fd, char *why, size_t wlen);
    void *ctx;
};
/*
 * Accept on lfd until o->want connections have been taken: 0; 1 when
 * o->wait_ms passed first (why: the last connection dropped and its
 * reason, or untouched); -1 with err.  *ntaken counts those taken
 * either way.  At most 64 connections wait for their opening at once
 * (the oldest is dropped for a new one); lfd stays open.
 */
int tcp_accept_n(int lfd, const struct tcp_accept_opts *o, unsigned *ntaken,
                 char *why, size_t wlen, struct df_error *err);

#endif
