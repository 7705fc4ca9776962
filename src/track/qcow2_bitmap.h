/*
 * qcow2_bitmap.h: the persistent dirty bitmaps of a qcow2 file, read
 * offline: the `bitmap:NAME` change source and the list `info` shows.
 *
 * Invariants:
 *  1. Nothing is trusted before all of the bitmap directory is checked:
 *     the extension, every entry, the table of the bitmap asked for and
 *     each of its entries.  Metadata that breaks the format (a
 *     granularity outside 9..31, a table past the end of the file, a
 *     count that does not match the entries, a truncated file) is
 *     DF_CORRUPT (exit 5) naming the file and the offset.
 *  2. A well-formed bitmap is used only when it can be trusted: no QEMU
 *     holds the image's write lock (a running QEMU keeps its bitmaps in
 *     memory and writes them back on close), the header's autoclear bit
 *     0 is set (the last writer kept the bitmaps: a QEMU that does not
 *     know them clears it), and the bitmap's in_use flag is clear (set
 *     while a QEMU has it open, left set by a crash).  Otherwise open
 *     fails with DF_REFUSED and the reason in err->msg, e.g.
 *       bitmap 'b0' is in use (a QEMU has it open or crashed)
 *       the image's bitmaps were not kept by the last writer (autoclear
 *         bit clear)
 *       QEMU holds the image's write lock (it is running)
 *     The caller (sync --changes bitmap:NAME) turns DF_REFUSED into a
 *     one-line warning and compares instead; no other category falls
 *     back.  A disabled bitmap (auto flag clear) is trusted: it names
 *     what was written while it was enabled, and the user chose it.
 *  3. A NAME the image does not have is DF_USAGE, naming the bitmaps it
 *     has.
 *  4. The changed ranges are the dirty bits as byte ranges (2^g each),
 *     clipped to the disk size, ascending, coalesced: a superset of
 *     the writes.  At most QCOW2_BITMAP_MAX_EXTENTS ranges are kept:
 *     past that, ranges closer than a growing gap are merged (still a
 *     superset, never fewer bytes).
 *
 * Spec: qemu docs/interop/qcow2.txt "Bitmaps extension", "Bitmap
 * directory", "Bitmap table" (summary: docs/formats.md).
 */
#ifndef DF_QCOW2_BITMAP_H
#define DF_QCOW2_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "track/track.h"
#include "util/error.h"
#include "util/file.h"

#define QCOW2_BITMAP_NAME_MAX 1023
#define QCOW2_BITMAP_MAX_EXTENTS EXTENT_LIST_DEFAULT_CAP

struct qcow2_bitmap_info {
    char *name;                 /* owned, NUL-terminated; the stored bytes
                                   (UTF-8, unchecked; may hold a NUL) */
    size_t name_len;            /* stored length, 1..1023 */
    unsigned granularity_bits;  /* 9..31: a bit covers 2^g bytes */
    bool in_use;                /* flag bit 0: may be inconsistent */
    bool enabled;               /* flag bit 1 "auto": tracks writes */
    bool consistent;            /* the header's autoclear bit 0 */
    bool usable;                /* false: extra data this reader does not
                                   know and is told not to ignore */
};

/*
 * The bitmaps of the qcow2 file `image`, in directory order, into
 * *out (free with qcow2_bitmap_list_free) and *n.  An image without
 * bitmaps (v2 included) gives *n = 0 and *out NULL.  0, or -1 with err
 * set (DF_CORRUPT for a malformed directory, DF_IO).  Takes no lock and
 * reads a file in use as it is.
 */
int qcow2_bitmap_list(const char *image, struct qcow2_bitmap_info **out,
                      size_t *n, struct df_error *err);
/* As qcow2_bitmap_list on an open file (borrowed). */
int qcow2_bitmap_list_file(struct df_file *f, struct qcow2_bitmap_info **out,
                           size_t *n, struct df_error *err);
void qcow2_bitmap_list_free(struct qcow2_bitmap_info *v, size_t n);

/*
 * "in use", "consistent" or "not kept" (the autoclear bit is clear): a
 * bitmap's state as `info` prints it, the first that applies of not
 * kept, in use, consistent.
 */
const char *qcow2_bitmap_state(const struct qcow2_bitmap_info *b);

/*
 * The change source "bitmap" over the bitmap `name` of `image`, whose
 * virtual disk is `size` bytes (it must be the image's own size, else
 * DF_REFUSED: the bitmap would not cover the disk).  Declared in
 * track/track.h; invariants 1-4 above.  The ranges are read at open;
 * the file is not kept open.
 *
 *   struct change_source *qcow2_bitmap_open(const char *image,
 *                                           const char *name,
 *                                           uint64_t size,
 *                                           struct df_error *err);
 *
 * qcow2_bitmap_open_file is the same on an open file (borrowed; the
 * lock check is skipped for a file in memory): for the fuzz target.
 */
struct change_source *qcow2_bitmap_open_file(struct df_file *f,
                                             const char *name, uint64_t size,
                                             struct df_error *err);

#endif
