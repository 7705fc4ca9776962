/*
 * fs_xfs.h: the XFS used-block reader behind fs_xfs_open (fs.h), over a
 * read callback so that a fuzz target can feed it an image in memory.
 */
#ifndef DF_FS_XFS_H
#define DF_FS_XFS_H

#include <stddef.h>
#include <stdint.h>

#include "track/fs.h"
#include "util/extent.h"

/* Fill buf with [off, off+len) of the disk: 0, or -1 with err set. */
typedef int (*fs_read_fn)(void *ctx, void *buf, size_t len, uint64_t off,
                          struct df_error *err);

/*
 * The ranges the XFS in [off, off+len) uses, appended to `out` (empty,
 * its cap large enough: EXTENT_LIST_DEFAULT_CAP), in disk coordinates.
 * 0 when trusted (why->used_bytes set); 1 when not (why->reason set,
 * out emptied); -1 with err set for I/O errors and out of memory.
 */
int xfs_used_ranges(fs_read_fn rd, void *ctx, uint64_t off, uint64_t len,
                    struct fs_why *why, struct extent_list *out,
                    struct df_error *err);

#endif
