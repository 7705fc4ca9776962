/*
 * fs_why.c: saying why a filesystem is not trusted (fs.h), shared by the
 * used-block maps.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/overflow.h"

int fs_region_begin(struct image *img, uint64_t off, uint64_t len,
                    const char *name, struct fs_why *why,
                    struct df_error *err)
{
    memset(why, 0, sizeof(*why));
    snprintf(why->fs, sizeof(why->fs), "%s", name);
    if (!range_within(off, len, img->size))
        return df_usage(err, "%s: region %" PRIu64 "+%" PRIu64 " outside "
                        "the disk", img->name, off, len);
    return 0;
}

struct used_map *fs_untrusted(struct fs_why *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->reason, sizeof(why->reason), fmt, ap);
    va_end(ap);
    why->used_bytes = 0;
    return NULL;
}
