/*
 * fs_why.c: saying why a filesystem is not trusted (fs.h), shared by the
 * used-block maps.
 */
#include <stdarg.h>
#include <stdio.h>

#include "track/fs.h"

struct used_map *fs_untrusted(struct fs_why *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->reason, sizeof(why->reason), fmt, ap);
    va_end(ap);
    why->used_bytes = 0;
    return NULL;
}
