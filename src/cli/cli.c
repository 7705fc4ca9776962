/*
 * cli.c: messages, option parsing and JSON shared by the subcommands.
 */
#include "cli/cli.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/job.h"
#include "util/size.h"

void cli_print_error(const struct cli *c, const struct df_error *err)
{
    char msg[PATH_MAX + 2400];
    df_error_format(err, msg, sizeof(msg));
    fprintf(stderr, "diskferry: %s: %s\n", c->cmd, msg);
    if (c->verbose >= 2 && err->src_file)
        fprintf(stderr, "diskferry: %s: (raised at %s:%d)\n", c->cmd,
                err->src_file, err->src_line);
}

int cli_usage(const struct cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "diskferry: %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ndiskferry: try 'diskferry %s --help'\n", c->cmd);
    return DF_USAGE;
}

int cli_bad_option(const struct cli *c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (optopt && arg[0] == '-' && arg[1] != '-')
        return cli_usage(c, "unknown option or missing argument: -%c",
                         optopt);
    return cli_usage(c, "unknown option or missing argument: %s", arg);
}

void cli_warn(const struct cli *c, const char *fmt, ...)
{
    va_list ap;
    if (c->quiet)
        return;
    fprintf(stderr, "diskferry: %s: warning: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_parse_size(const struct cli *c, const char *opt, const char *arg,
                   uint64_t *out)
{
    if (size_parse(arg, out) < 0)
        return cli_usage(c, "%s: invalid size '%s' (examples: 4096, 64K, "
                         "20M, 1.5G)", opt, arg);
    return 0;
}

int cli_parse_uint(const struct cli *c, const char *opt, const char *arg,
                   unsigned min, unsigned max, unsigned *out)
{
    char *end;
    if (!*arg || *arg < '0' || *arg > '9')
        goto bad;
    unsigned long v = strtoul(arg, &end, 10);
    if (*end || v < min || v > max)
        goto bad;
    *out = (unsigned)v;
    return 0;
bad:
    return cli_usage(c, "%s: expected a number from %u to %u, got '%s'", opt,
                     min, max, arg);
}

void cli_image_opts_init(struct cli_image_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->open.parent_dirs = o->dirs;
    o->open.parent_overrides = o->overrides;
}

int cli_add_parent_dir(const struct cli *c, struct cli_image_opts *o,
                       const char *dir)
{
    if (o->open.n_parent_dirs == CLI_MAX_PARENTS)
        return cli_usage(c, "--parent-dir: at most %d", CLI_MAX_PARENTS);
    o->dirs[o->open.n_parent_dirs++] = dir;
    return 0;
}

int cli_add_parent(const struct cli *c, struct cli_image_opts *o, char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return cli_usage(c, "--parent: expected CHILD=PARENT, got '%s'",
                         arg);
    if (o->open.n_parent_overrides == CLI_MAX_PARENTS)
        return cli_usage(c, "--parent: at most %d", CLI_MAX_PARENTS);
    *eq = '\0';
    o->overrides[o->open.n_parent_overrides].child = arg;
    o->overrides[o->open.n_parent_overrides].parent = eq + 1;
    o->open.n_parent_overrides++;
    return 0;
}

int cli_image_option(const struct cli *c, struct cli_image_opts *o, int opt,
                     char *arg)
{
    switch (opt) {
    case 'f':
        o->open.format = arg;
        return 1;
    case CLI_OPT_PARENT_DIR:
        return cli_add_parent_dir(c, o, arg) ? -1 : 1;
    case CLI_OPT_PARENT:
        return cli_add_parent(c, o, arg) ? -1 : 1;
    case CLI_OPT_FORCE_SHARE:
        o->force_share = true;
        return 1;
    }
    return 0;
}

int cli_remote_option(const struct cli *c, struct job_spec *spec, int opt,
                      char *arg)
{
    struct job_remote *r = &spec->remote;
    switch (opt) {
    case CLI_OPT_RSH: r->rsh = arg; return 1;
    case CLI_OPT_REMOTE_PATH: r->remote_path = arg; return 1;
    case CLI_OPT_TIMEOUT:
        if (cli_parse_uint(c, "--timeout", arg, 1, 86400, &r->timeout))
            return -1;
        r->pass_timeout = true;
        return 1;
    case CLI_OPT_COMPRESS:
        r->compress = arg;
        if (job_compress_check(arg) < 0) {
            cli_usage(c, "--compress: expected auto, zstd, zstd:1..19, lz4 "
                      "or none, got '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_BWLIMIT:
        if (cli_parse_size(c, "--bwlimit", arg, &r->bwlimit))
            return -1;
        if (r->bwlimit && r->bwlimit < 1024) {
            cli_usage(c, "--bwlimit: at least 1K per second");
            return -1;
        }
        return 1;
    case CLI_OPT_TRANSPORT:
        if (strcmp(arg, "tcp") && strcmp(arg, "ssh")) {
            cli_usage(c, "--transport: expected ssh or tcp, got '%s'", arg);
            return -1;
        }
        r->tcp = !strcmp(arg, "tcp");
        return 1;
    case CLI_OPT_STREAMS:
        return cli_parse_uint(c, "--streams", arg, 1, 64, &r->streams)
                   ? -1 : 1;
    case CLI_OPT_RESUME:
        spec->resume = true;
        return 1;
    }
    return 0;
}

bool cli_progress_enabled(int mode)
{
    if (mode >= 0)
        return mode == 1;
    return isatty(STDERR_FILENO);
}

void cli_progress_init(struct cli_progress *p)
{
    p->mode = -1;
    p->fd = -1;
}

int cli_progress_option(const struct cli *c, struct cli_progress *p,
                        int opt, const char *arg)
{
    unsigned fd = 0;
    switch (opt) {
    case CLI_OPT_PROGRESS:
        if (!arg || !strcmp(arg, "bar"))
            p->mode = 1;
        else if (!strcmp(arg, "json"))
            p->mode = 2;
        else {
            cli_usage(c, "--progress: expected bar or json, got '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_NO_PROGRESS:
        p->mode = 0;
        return 1;
    case CLI_OPT_PROGRESS_FD:
        if (cli_parse_uint(c, "--progress-fd", arg, 0, INT_MAX, &fd))
            return -1;
        int fl = fcntl((int)fd, F_GETFL);
        if (fcntl((int)fd, F_GETFD) < 0 || fl < 0) {
            cli_usage(c, "--progress-fd %u: not an open file descriptor",
                      fd);
            return -1;
        }
        if ((fl & O_ACCMODE) == O_RDONLY) {
            cli_usage(c, "--progress-fd %u: not open for writing", fd);
            return -1;
        }
        p->fd = (int)fd;
        return 1;
    }
    return 0;
}

int cli_progress_apply(const struct cli *c, const struct cli_progress *p,
                       const char *stdout_holds, struct job_opts *jo)
{
    if (p->fd == STDOUT_FILENO && stdout_holds)
        return cli_usage(c, "--progress-fd 1: stdout carries %s",
                         stdout_holds);
    jo->progress = true;
    jo->progress_out.show = p->mode == 2 ? PROGRESS_SHOW_JSON
                            : cli_progress_enabled(p->mode)
                                ? PROGRESS_SHOW_BAR
                                : PROGRESS_SHOW_NONE;
    jo->progress_out.has_fd = p->fd >= 0;
    jo->progress_out.fd = p->fd;
    return 0;
}

int cli_changes_option(const struct cli *c, const char *s)
{
    static const char *const kinds[] = { "manifest:", "lvm-cow:",
                                         "lvm-thin:", "bitmap:" };
    if (!strcmp(s, "compare") || !strcmp(s, "top-layer"))
        return 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i]);
        if (!strncmp(s, kinds[i], n) && s[n])
            return 0;
    }
    cli_usage(c, "--changes: expected compare, manifest:FILE, lvm-cow:COW, "
              "lvm-thin:METADATA,OLD,NEW, bitmap:NAME or top-layer, got "
              "'%s'", s);
    return -1;
}
