/*
 * error.h: the error struct every library function fills and returns.
 *
 * Library code never exits: it fills a caller-owned struct df_error and
 * returns -1.  The category is the process exit code (docs/design.md,
 * "Errors and exit codes"), so cli/main.c can exit with err.cat and
 * print one line:
 *
 *     diskferry: copy: vm.qcow2: offset 20: cluster_bits 40 outside 9..21
 *
 * Invariants:
 *  1. A function that returns -1 has set err->cat != DF_OK.
 *  2. The first failure wins: df_fail() on an error that is already set
 *     keeps the earlier one (the root cause), unless df_error_reset().
 *  3. msg is lowercase, no full stop; what names the file, device or
 *     host:path; offset is a byte offset inside `what`, or -1.
 */
#ifndef DF_ERROR_H
#define DF_ERROR_H

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum df_cat {
    DF_OK = 0,
    DF_DIFFER = 1,   /* verify: the two differ */
    DF_USAGE = 2,    /* bad argument */
    DF_REFUSED = 3,  /* refused for safety, nothing written */
    DF_IO = 4,       /* I/O error on source or destination */
    DF_CORRUPT = 5,  /* corrupt or unsupported image / metadata */
    DF_NET = 6,      /* network or remote-side failure */
    DF_VERIFY = 7,   /* verification failed after writing */
    DF_INTERRUPTED = 130,  /* SIGINT / SIGTERM (util/interrupt.h) */
};

struct df_error {
    enum df_cat cat;
    int errnum;             /* errno, or 0 */
    char what[PATH_MAX];    /* file, device or host:path; may be "" */
    int64_t offset;         /* offset in `what`, or -1 */
    char msg[2048];         /* lowercase, no full stop; may name paths */
    const char *src_file;   /* where raised; shown with -vv */
    int src_line;
};

void df_error_init(struct df_error *err);
#define df_error_reset df_error_init

/* Fill err (unless already set, invariant 2) and return -1. */
int df_fail_at(struct df_error *err, const char *src_file, int src_line,
               enum df_cat cat, int errnum, const char *what,
               int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
int df_vfail_at(struct df_error *err, const char *src_file, int src_line,
                enum df_cat cat, int errnum, const char *what,
                int64_t offset, const char *fmt, va_list ap);

#define df_fail(err, cat, errnum, what, off, ...)                          \
    df_fail_at((err), __FILE__, __LINE__, (cat), (errnum), (what), (off),  \
               __VA_ARGS__)
/* Corrupt or unsupported metadata at `off` (-1: no offset) of `what`. */
#define df_corrupt(err, what, off, ...)                                    \
    df_fail((err), DF_CORRUPT, 0, (what), (off), __VA_ARGS__)
/* I/O failure; errnum is appended as ": strerror(errnum)". */
#define df_io(err, what, errnum, ...)                                      \
    df_fail((err), DF_IO, (errnum), (what), -1, __VA_ARGS__)
#define df_refuse(err, what, ...)                                          \
    df_fail((err), DF_REFUSED, 0, (what), -1, __VA_ARGS__)
#define df_usage(err, ...) df_fail((err), DF_USAGE, 0, "", -1, __VA_ARGS__)
#define df_net(err, what, ...)                                             \
    df_fail((err), DF_NET, 0, (what), -1, __VA_ARGS__)

/* "what: offset N: msg: strerror" (parts omitted when empty). */
void df_error_format(const struct df_error *err, char *buf, size_t len);

/* Copy src into dst (dst's own state is replaced). */
void df_error_copy(struct df_error *dst, const struct df_error *src);

#endif
