/*
 * error.c: filling and formatting struct df_error (see error.h).
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

void df_error_init(struct df_error *err)
{
    memset(err, 0, sizeof(*err));
    err->offset = -1;
}

int df_vfail_at(struct df_error *err, const char *src_file, int src_line,
                enum df_cat cat, int errnum, const char *what,
                int64_t offset, const char *fmt, va_list ap)
{
    if (err->cat != DF_OK)          /* invariant 2: first failure wins */
        return -1;
    err->cat = cat;
    err->errnum = errnum;
    snprintf(err->what, sizeof(err->what), "%s", what ? what : "");
    err->offset = offset;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    err->src_file = src_file;
    err->src_line = src_line;
    return -1;
}

int df_fail_at(struct df_error *err, const char *src_file, int src_line,
               enum df_cat cat, int errnum, const char *what,
               int64_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = df_vfail_at(err, src_file, src_line, cat, errnum, what, offset,
                        fmt, ap);
    va_end(ap);
    return r;
}

void df_error_format(const struct df_error *err, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
#define PUT(...)                                                           \
    do {                                                                   \
        if (n < len) {                                                     \
            int w = snprintf(buf + n, len - n, __VA_ARGS__);               \
            if (w > 0)                                                     \
                n += (size_t)w;                                            \
        }                                                                  \
    } while (0)
    if (err->what[0])
        PUT("%s: ", err->what);
    if (err->offset >= 0)
        PUT("offset %lld: ", (long long)err->offset);
    PUT("%s", err->msg[0] ? err->msg : "unknown error");
    if (err->errnum)
        PUT(": %s", strerror(err->errnum));
#undef PUT
}

void df_error_copy(struct df_error *dst, const struct df_error *src)
{
    memcpy(dst, src, sizeof(*dst));
}
