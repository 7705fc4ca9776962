/*
 * transport.h: how a client reaches `diskferry serve` on another host.
 *
 * ssh (ssh.c): fork/exec `RSH [user@]host REMOTE_PATH serve ARGS...`
 *   where RSH is --rsh CMD split into words like rsync's -e (quotes and
 *   backslashes honoured, no shell), REMOTE_PATH is --remote-path P
 *   (default "diskferry").  The remote side joins the words with spaces
 *   and hands them to a shell, so every word after the host is quoted
 *   with ssh_quote() (single quotes; a ' becomes '\'').  The child's
 *   stdin/stdout are the control channel; its stderr is ours.  A plain
 *   `ssh` without a cipher choice gets AES-GCM first when the CPU has
 *   AES instructions (ssh.c says why).
 * tcp (tcp.c): data streams beside the ssh channel: serve listens on an
 *   ephemeral port of the address the ssh connection arrived on
 *   (SSH_CONNECTION; loopback when absent), sends port + a fresh 256-bit
 *   key over the ssh channel (TCP_OFFER), accepts exactly N streams for
 *   10 s, each opened by a clear u32 stream id followed by a sealed
 *   STREAM_HELLO naming the same id.  Every frame is AES-256-GCM sealed
 *   (proto/chan.c); a wrong key or a tampered frame ends the session
 *   with exit 6 before anything of that frame is used.
 */
#ifndef DF_TRANSPORT_H
#define DF_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

struct ssh_conn {
    pid_t pid;
    int rfd, wfd;           /* the child's stdout, stdin */
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
              size_t nargs, struct ssh_conn *conn, struct df_error *err);
/* Reap the child: wait up to timeout_ms, then SIGTERM, then SIGKILL. */
void ssh_close(struct ssh_conn *conn, int timeout_ms);

/* TCP sockets. */
int tcp_listen(const char *addr, int *fd, uint16_t *port,
               struct df_error *err);
int tcp_accept(int lfd, int timeout_ms, int *fd, struct df_error *err);
int tcp_connect(const char *host, uint16_t port, int *fd,
                struct df_error *err);

#endif
