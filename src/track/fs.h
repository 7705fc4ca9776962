/*
 * fs.h: where filesystems are on a disk, and which of their blocks they
 * use (sync/copy --fs-aware; docs/design.md, filesystem-aware).
 *
 * Everything here reads through the image layer (image_read of `img`),
 * so it works inside any image format, partition and endpoint, and
 * treats what it reads as hostile: every offset and count is checked.
 *
 * Partitions (parts.c): the table of the disk, MBR (with extended and
 * logical partitions) or GPT (header and entry CRCs checked; the backup
 * header when the primary is damaged).  No table: the whole disk is one
 * region.
 *
 * Used-block maps (fs_ext.c, fs_xfs.c, fs_swap.c): each opens the
 * filesystem in [off, off+len) of img and, when it can be trusted,
 * returns a used_map (track.h) whose ranges, in the DISK's coordinates
 * and inside [off, off+len), are every byte the filesystem uses:
 * metadata always (superblocks, group descriptors, bitmaps, inode
 * tables, journals, logs, AG headers), data where allocated.  A range it
 * does not name is free and need not be read or sent.
 *
 * Trust (docs/design.md): a filesystem is skipped only when it is clean,
 * its free counts agree with its bitmaps, and its features are known.
 * Otherwise open returns NULL with err untouched and why->reason set to
 * one line naming the cause ("ext4 needs journal recovery", "XFS log is
 * dirty", "unknown feature 0x..."): the caller copies that region whole
 * and warns once.  Structures that do not parse are the same (never a
 * wrong skip, never a failed copy).  -1 / NULL with err set only for I/O
 * errors and out of memory.
 */
#ifndef DF_FS_H
#define DF_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "track/track.h"
#include "util/error.h"

struct image;

#define FS_REASON_LEN 256

struct fs_why {
    char fs[16];                /* "ext4", "xfs", "swap", ... */
    char reason[FS_REASON_LEN]; /* "" when trusted */
    uint64_t used_bytes;        /* what the map names (when trusted) */
};

/* The filesystem is not trusted: why->reason set from fmt (one line),
 * used_bytes 0; returns NULL (err untouched), for `return
 * fs_untrusted(why, ...)`. */
struct used_map *fs_untrusted(struct fs_why *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The start of every fs_*_open: why cleared and named `name`; 0, or -1
 * with err (DF_USAGE) when [off, off+len) is not inside img. */
int fs_region_begin(struct image *img, uint64_t off, uint64_t len,
                    const char *name, struct fs_why *why,
                    struct df_error *err);

struct used_map *fs_ext_open(struct image *img, uint64_t off, uint64_t len,
                             struct fs_why *why, struct df_error *err);
struct used_map *fs_xfs_open(struct image *img, uint64_t off, uint64_t len,
                             struct fs_why *why, struct df_error *err);
struct used_map *fs_ntfs_open(struct image *img, uint64_t off, uint64_t len,
                              struct fs_why *why, struct df_error *err);
struct used_map *fs_swap_open(struct image *img, uint64_t off, uint64_t len,
                              struct fs_why *why, struct df_error *err);

/* One region of the disk: a partition, or the whole disk. */
struct part {
    uint64_t off, len;          /* bytes */
    unsigned number;            /* 1.. as the kernel numbers them; 0: the
                                 * whole disk (no table) */
    char type[48];              /* "mbr 0x83", "gpt <type guid>" */
};
#define PARTS_MAX 256
/* The regions of img: 0 (*n set; a disk without a table gives one
 * region, number 0), or -1 with err: DF_CORRUPT for a table that does
 * not parse (overlapping or out-of-disk entries, bad CRCs on both GPT
 * headers), naming the offset; DF_IO. */
int parts_read(struct image *img, struct part *v, unsigned *n,
               struct df_error *err);

/*
 * The layout of a disk (fs_layout.c): its regions (parts_read) and the
 * filesystem found in each, and one used map over the whole disk.
 *
 * A region's filesystem is recognised by its magic (ext: 0xef53 at
 * 0x438; XFS: "XFSB"; NTFS: "NTFS    " at 3; swap: its signature) and
 * opened by the matching fs_*_open.  The disk's used map names every
 * byte outside the trusted filesystems (the table, gaps, unknown and
 * untrusted regions) and, inside each trusted one, the ranges it uses:
 * a range it does not name is free in a filesystem that can be trusted.
 * A table that does not parse leaves the whole disk used (table_error
 * says why).
 */
enum fs_kind { FS_NONE, FS_EXT, FS_NTFS, FS_XFS, FS_SWAP, FS_KINDS };

struct fs_region {
    struct part part;
    enum fs_kind kind;          /* FS_NONE: nothing recognised */
    struct fs_why why;          /* why.reason "" and trusted: skipped */
    bool trusted;
};

struct fs_layout {
    struct fs_region v[PARTS_MAX];
    unsigned n;
    char table_error[FS_REASON_LEN];    /* "" unless the table is bad */
    struct used_map *used;      /* NULL: no filesystem can be trusted */
    uint64_t size;              /* the disk's */
    uint64_t free_bytes;        /* what used does not name */
};

/* 0 (l filled; release it), or -1 with err (I/O, memory). */
int fs_layout_read(struct image *img, struct fs_layout *l,
                   struct df_error *err);
void fs_layout_release(struct fs_layout *l);
/* The kind of filesystem whose region holds off (FS_NONE: none). */
enum fs_kind fs_layout_kind_at(const struct fs_layout *l, uint64_t off);
const char *fs_kind_name(enum fs_kind k);       /* "ext", "ntfs", ... */

#endif
