/*
 * cli.h: what the subcommands share: the command table entry, error
 * and usage printing, strict option parsing (the options of images and
 * of remote endpoints).  The reports are in report.h.
 *
 * Subcommands know options and reports; the core knows disks (they use
 * engine/job.h and image/image.h, never a driver).
 */
#ifndef DF_CLI_H
#define DF_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/job.h"
#include "image/image.h"
#include "util/error.h"

struct cli {
    const char *cmd;            /* "copy": prefix of every message */
    int verbose;
    bool quiet;
};

/* Print "diskferry: CMD: <error>" once (with -vv, where it was raised). */
void cli_print_error(const struct cli *c, const struct df_error *err);
/* A usage error: one line plus the --help hint; returns DF_USAGE. */
int cli_usage(const struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* getopt's '?': the offending argument, as a usage error (DF_USAGE). */
int cli_bad_option(const struct cli *c, char **argv);
void cli_warn(const struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Strict numbers: return 0 or a usage error naming the option. */
int cli_parse_size(const struct cli *c, const char *opt, const char *arg,
                   uint64_t *out);
int cli_parse_uint(const struct cli *c, const char *opt, const char *arg,
                   unsigned min, unsigned max, unsigned *out);

/* --parent-dir / --parent / -f collected for image_open(). */
#define CLI_MAX_PARENTS 32
struct cli_image_opts {
    struct image_open_opts open;
    bool force_share;           /* --force-share: read a source in use */
    const char *dirs[CLI_MAX_PARENTS];
    struct parent_override overrides[CLI_MAX_PARENTS];
};
void cli_image_opts_init(struct cli_image_opts *o);

/* The long options of every command that opens images (-f is the short
 * one); cli_image_option() handles what they return. */
enum {
    CLI_OPT_PARENT_DIR = 1001, CLI_OPT_PARENT, CLI_OPT_FORCE_SHARE,
    CLI_OPT_RSH, CLI_OPT_REMOTE_PATH, CLI_OPT_TIMEOUT, CLI_OPT_COMPRESS,
    CLI_OPT_BWLIMIT, CLI_OPT_TRANSPORT, CLI_OPT_STREAMS, CLI_OPT_RESUME,
    CLI_OPT_PROGRESS, CLI_OPT_NO_PROGRESS, CLI_OPT_PROGRESS_FD,
};
#define CLI_IMAGE_LONGOPTS                                                 \
    { "format", required_argument, NULL, 'f' },                            \
    { "parent-dir", required_argument, NULL, CLI_OPT_PARENT_DIR },         \
    { "parent", required_argument, NULL, CLI_OPT_PARENT },                 \
    { "force-share", no_argument, NULL, CLI_OPT_FORCE_SHARE }
/* 1: opt was one of CLI_IMAGE_LONGOPTS and is recorded; 0: not one of
 * them; -1: a usage error was printed. */
int cli_image_option(const struct cli *c, struct cli_image_opts *o, int opt,
                     char *arg);
/* How to reach another host: every command that takes a host:PATH. */
#define CLI_HOST_LONGOPTS                                                  \
    { "rsh", required_argument, NULL, CLI_OPT_RSH },                       \
    { "remote-path", required_argument, NULL, CLI_OPT_REMOTE_PATH },       \
    { "timeout", required_argument, NULL, CLI_OPT_TIMEOUT }
/* ... and what to do on the way: commands that move a disk to or from
 * it (copy, and later sync and plan). */
#define CLI_REMOTE_LONGOPTS                                                \
    CLI_HOST_LONGOPTS,                                                     \
    { "compress", required_argument, NULL, CLI_OPT_COMPRESS },             \
    { "bwlimit", required_argument, NULL, CLI_OPT_BWLIMIT },               \
    { "transport", required_argument, NULL, CLI_OPT_TRANSPORT },           \
    { "streams", required_argument, NULL, CLI_OPT_STREAMS },               \
    { "resume", no_argument, NULL, CLI_OPT_RESUME }
/* 1: opt was one of CLI_REMOTE_LONGOPTS and is recorded in spec (its
 * remote part, and resume); 0: not one of them; -1: a usage error was
 * printed. */
int cli_remote_option(const struct cli *c, struct job_spec *spec, int opt,
                      char *arg);

int cli_add_parent_dir(const struct cli *c, struct cli_image_opts *o,
                       const char *dir);
int cli_add_parent(const struct cli *c, struct cli_image_opts *o,
                   char *arg);

/* --changes SPEC: a kind this build knows, with its argument (the
 * source itself checks the argument when it opens): 0, or -1 after a
 * usage error was printed. */
int cli_changes_option(const struct cli *c, const char *s);

/* Should progress be drawn?  mode: -1 auto (stderr is a tty), 0, 1. */
bool cli_progress_enabled(int mode);

/* --progress[=bar|json], --no-progress, --progress-fd N: the commands
 * that show progress (copy, sync, verify). */
#define CLI_PROGRESS_LONGOPTS                                              \
    { "progress", optional_argument, NULL, CLI_OPT_PROGRESS },             \
    { "no-progress", no_argument, NULL, CLI_OPT_NO_PROGRESS },             \
    { "progress-fd", required_argument, NULL, CLI_OPT_PROGRESS_FD }
struct cli_progress {
    int mode;                   /* -1 auto (a terminal), 0 none, 1 the
                                 * bar, 2 JSON lines on stderr */
    int fd;                     /* --progress-fd, or -1 */
};
void cli_progress_init(struct cli_progress *p);
/* 1: opt was one of CLI_PROGRESS_LONGOPTS and is recorded (an fd is
 * checked to be open for writing); 0: not one of them; -1: a usage
 * error was printed. */
int cli_progress_option(const struct cli *c, struct cli_progress *p,
                        int opt, const char *arg);
/* Into jo: progress on (a line on SIGUSR1 whatever the rest), and where
 * it goes.  stdout_holds: what stdout carries ("the JSON report", "the
 * data"), so that --progress-fd 1 is refused; NULL: nothing.  0, or a
 * usage error (DF_USAGE). */
int cli_progress_apply(const struct cli *c, const struct cli_progress *p,
                       const char *stdout_holds, struct job_opts *jo);

/* Subcommands: argc/argv start at the subcommand name. */
int cmd_info(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_undo(int argc, char **argv);
int cmd_plan(int argc, char **argv);

#endif
