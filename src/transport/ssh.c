/*
 * ssh.c: start `diskferry serve` on another host through --rsh
 * (see transport.h for the quoting rules).
 */
#define _GNU_SOURCE
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#define SSH_MAX_ARGS 64

int ssh_quote(char *buf, size_t len, const char *word)
{
    size_t n = strlen(buf);
    bool plain = *word != '\0';
    for (const char *p = word; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_./=:,+@%-", *p))
            plain = false;
    /* A word starting with '-' or '~' is safe for the shell, but quote
     * '~' so that it is not expanded differently from what was typed. */
    if (plain && word[0] != '~') {
        if (n + strlen(word) + 1 > len)
            return -1;
        strcpy(buf + n, word);
        return 0;
    }
    if (n + 3 > len)
        return -1;
    buf[n++] = '\'';
    for (const char *p = word; *p; p++) {
        if (*p == '\'') {
            if (n + 5 > len)
                return -1;
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            if (n + 3 > len)
                return -1;
            buf[n++] = *p;
        }
    }
    buf[n++] = '\'';
    buf[n] = '\0';
    return 0;
}

int ssh_split(const char *cmd, char **argv, int max, char *storage)
{
    int argc = 0;
    const char *p = cmd;
    char *o = storage;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        if (argc >= max)
            return -1;
        argv[argc++] = o;
        char quote = 0;
        while (*p && (quote || (*p != ' ' && *p != '\t' && *p != '\n'))) {
            if (quote) {
                if (*p == quote) {
                    quote = 0;
                } else if (*p == '\\' && quote == '"' && p[1]) {
                    *o++ = *++p;
                } else {
                    *o++ = *p;
                }
            } else if (*p == '\'' || *p == '"') {
                quote = *p;
            } else if (*p == '\\' && p[1]) {
                *o++ = *++p;
            } else {
                *o++ = *p;
            }
            p++;
        }
        if (quote)
            return -1;
        *o++ = '\0';
    }
    argv[argc] = NULL;
    return argc;
}

/*
 * OpenSSH's first choice is chacha20-poly1305; with AES instructions
 * AES-GCM moves two to three times the bytes per CPU second, and on a
 * fast link ssh's CPU is the bottleneck.  So when the command is plain
 * `ssh` and the user chose no cipher (-c, -o Ciphers), AES-GCM is put
 * first ("^": ahead of the defaults, which stay as fallbacks).
 */
#define SSH_PREFER_CIPHERS                                                 \
    "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com"

static bool ssh_cpu_has_aes(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("aes");
#elif defined(__aarch64__)
    return getauxval(AT_HWCAP) & HWCAP_AES;
#else
    return false;
#endif
}

static bool ssh_prefer_aes(char **argv, int argc)
{
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strcmp(base, "ssh") || !ssh_cpu_has_aes())
        return false;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "-c", 2) || strcasestr(argv[i], "ciphers"))
            return false;
        if (!strcmp(argv[i], "-F"))     /* a config file may choose */
            return false;
    }
    return true;
}

/* Keep one line of the child's stderr; relay it with -v, and always
 * when it is a warning of the remote diskferry (the user must see that
 * the remote source is in use, say). */
static void ssh_err_line(struct ssh_conn *c, const char *line, size_t len)
{
    static const char ours[] = "diskferry: ";
    bool warning = len > sizeof(ours) - 1 &&
                   !memcmp(line, ours, sizeof(ours) - 1) &&
                   memmem(line, len, ": warning: ", 11);
    if (c->relay || warning) {
        fwrite(line, 1, len, stderr);
        fputc('\n', stderr);
    }
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (!len)
        return;
    if (len >= SSH_ERR_LINE_MAX)
        len = SSH_ERR_LINE_MAX - 1;
    pthread_mutex_lock(&c->lock);
    char *d = c->lines[c->nlines++ % SSH_ERR_LINES];
    for (size_t i = 0; i < len; i++)    /* no terminal control codes */
        d[i] = (unsigned char)line[i] < 0x20 || line[i] == 0x7f ? '?'
                                                               : line[i];
    d[len] = '\0';
    pthread_mutex_unlock(&c->lock);
}

static void *ssh_err_reader(void *arg)
{
    struct ssh_conn *c = arg;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stop = c->err_stop;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            break;
        struct pollfd pfd = {.fd = c->errfd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t r = read(c->errfd, buf + have, sizeof(buf) - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        char *nl;
        while ((nl = memchr(buf, '\n', have))) {
            ssh_err_line(c, buf, (size_t)(nl - buf));
            have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have);
        }
        if (have == sizeof(buf)) {      /* a very long line: cut it */
            ssh_err_line(c, buf, have);
            have = 0;
        }
    }
    if (have)
        ssh_err_line(c, buf, have);
    pthread_mutex_lock(&c->lock);
    c->err_eof = true;
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int ssh_spawn(const char *rsh, const char *user, const char *host,
              const char *remote_path, const char *const *args,
              size_t nargs, bool relay_stderr, struct ssh_conn *conn,
              struct df_error *err)
{
    int ret = -1;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, ep[2] = {-1, -1};
    char *storage = NULL;
    char *argv[SSH_MAX_ARGS + 1];
    char target[1024];
    char remote[8192] = "";
    memset(conn, 0, sizeof(*conn));
    conn->pid = -1;
    conn->rfd = conn->wfd = conn->errfd = -1;
    conn->relay = relay_stderr;
    pthread_mutex_init(&conn->lock, NULL);

    /* A host or user starting with '-' would be an ssh option. */
    if (host[0] == '-' || (user && user[0] == '-'))
        return df_usage(err, "host name '%s' starts with '-'", host);
    storage = malloc(strlen(rsh) + 1);
    if (!storage)
        return df_net(err, host, "out of memory");
    int argc = ssh_split(rsh, argv, SSH_MAX_ARGS - 5, storage);
    if (argc <= 0) {
        df_usage(err, "--rsh '%s': cannot split into words", rsh);
        goto out;
    }
    if (ssh_prefer_aes(argv, argc)) {
        /* After argv[0]: the user's own options still come later. */
        memmove(argv + 3, argv + 1, (size_t)argc * sizeof(*argv));
        argv[1] = (char *)"-o";
        argv[2] = (char *)SSH_PREFER_CIPHERS;
        argc += 2;
    }
    if (user)
        snprintf(target, sizeof(target), "%s@%s", user, host);
    else
        snprintf(target, sizeof(target), "%s", host);
    argv[argc++] = target;
    /* One remote command line: quoted words joined by spaces. */
    if (ssh_quote(remote, sizeof(remote), remote_path) < 0)
        goto toolong;
    strcat(remote, " serve");
    for (size_t i = 0; i < nargs; i++) {
        strcat(remote, " ");
        if (ssh_quote(remote, sizeof(remote), args[i]) < 0)
            goto toolong;
    }
    argv[argc++] = remote;
    argv[argc] = NULL;

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(ep, O_CLOEXEC) < 0) {
        df_fail(err, DF_NET, errno, host, -1, "pipe");
        goto out;
    }
    /* Bigger pipes: fewer wake-ups per 1 MiB frame between us and ssh. */
    fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
    pid_t pid = fork();
    if (pid < 0) {
        df_fail(err, DF_NET, errno, host, -1, "fork");
        goto out;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(ep[1], 2);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "diskferry: cannot run %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(ep[1]);
    in[0] = out[1] = ep[1] = -1;
    conn->pid = pid;
    conn->rfd = out[0];
    conn->wfd = in[1];
    conn->errfd = ep[0];
    out[0] = in[1] = ep[0] = -1;
    if (pthread_create(&conn->errthr, NULL, ssh_err_reader, conn) == 0)
        conn->errthr_started = true;
    ret = 0;
    goto out;
toolong:
    df_usage(err, "remote command line too long");
out:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    free(storage);
    return ret;
}

bool ssh_wait(struct ssh_conn *conn, int timeout_ms)
{
    for (int waited = 0; conn->pid > 0; waited += 10) {
        int status;
        pid_t r = waitpid(conn->pid, &status, WNOHANG);
        if (r == conn->pid) {
            conn->exited = true;
            conn->status = status;
            conn->pid = -1;
            break;
        }
        if ((r < 0 && errno != EINTR) || waited >= timeout_ms)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (conn->exited && conn->errthr_started) {
        /* its last words may still be in the pipe: up to a second */
        for (int i = 0; i < 100; i++) {
            pthread_mutex_lock(&conn->lock);
            bool eof = conn->err_eof;
            pthread_mutex_unlock(&conn->lock);
            if (eof)
                break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return conn->exited;
}

/* The most recent kept line containing needle (NULL: the last one). */
static const char *ssh_err_find(const struct ssh_conn *c, const char *needle)
{
    unsigned n = c->nlines < SSH_ERR_LINES ? c->nlines : SSH_ERR_LINES;
    for (unsigned k = 0; k < n; k++) {
        const char *l = c->lines[(c->nlines - 1 - k) % SSH_ERR_LINES];
        if (!needle || strstr(l, needle))
            return l;
    }
    return NULL;
}

void ssh_explain(struct ssh_conn *c, const char *host,
                 const char *remote_path, struct df_error *err)
{
    const char *l;
    if (!c->exited)
        return;
    int code = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
    pthread_mutex_lock(&c->lock);
    if ((l = ssh_err_find(c, "diskferry: cannot run "))) {
        /* our own child could not start --rsh */
        df_error_init(err);
        df_usage(err, "--rsh: %s", l + strlen("diskferry: "));
    } else if (code == 127 || ssh_err_find(c, "command not found")) {
        df_error_init(err);
        df_net(err, host, "%s not found on the remote host (give "
               "--remote-path)", remote_path ? remote_path : "diskferry");
    } else if (code == 255 && (ssh_err_find(c, "Could not resolve "
                                            "hostname") ||
                               ssh_err_find(c, "Name or service not "
                                            "known"))) {
        df_error_init(err);
        df_net(err, host, "unknown host");
    } else if ((l = ssh_err_find(c, "Permission denied"))) {
        df_error_init(err);
        df_net(err, host, "login refused (%s)", l);
    } else if ((l = ssh_err_find(c, NULL))) {
        df_error_init(err);
        df_net(err, host, "%s", l);
    }
    pthread_mutex_unlock(&c->lock);
}

void ssh_close(struct ssh_conn *conn, int timeout_ms)
{
    if (conn->pid <= 0)
        goto reader;
    int status;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(conn->pid, &status, WNOHANG);
        if (r == conn->pid || (r < 0 && errno != EINTR))
            break;
        if (waited == timeout_ms)
            kill(conn->pid, SIGTERM);
        if (waited == timeout_ms + 2000)
            kill(conn->pid, SIGKILL);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    conn->pid = -1;
reader:
    if (conn->errthr_started) {
        pthread_mutex_lock(&conn->lock);
        conn->err_stop = true;
        pthread_mutex_unlock(&conn->lock);
        pthread_join(conn->errthr, NULL);
        conn->errthr_started = false;
    }
    if (conn->errfd >= 0)
        close(conn->errfd);
    conn->errfd = -1;
}
