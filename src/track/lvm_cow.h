/*
 * lvm_cow.h: the parts of the lvm-cow change source (lvm_cow.c) below
 * lvm_cow_open() (track.h), for the fuzz target and the unit tests.
 */
#ifndef DF_LVM_COW_H
#define DF_LVM_COW_H

#include <stddef.h>
#include <stdint.h>

#include "track/track.h"
#include "util/file.h"

/* The store's header (docs/formats.md section 8). */
#define LVM_COW_MAGIC 0x70416e53u      /* "SnAp" little endian */
#define LVM_COW_VERSION 1u
#define LVM_COW_OFF_MAGIC 0
#define LVM_COW_OFF_VALID 4
#define LVM_COW_OFF_VERSION 8
#define LVM_COW_OFF_CHUNK_SIZE 12      /* in 512-byte sectors */
#define LVM_COW_HEADER_LEN 16
#define LVM_COW_ENTRY_LEN 16           /* u64le old_chunk, u64le new_chunk */
#define LVM_COW_CHUNK_MIN (4u << 10)   /* bytes: lvcreate's range */
#define LVM_COW_CHUNK_MAX (512u << 10)

/*
 * lvm_cow_open over a store already opened as f (a file, a device or
 * memory), for an origin of `size` bytes.  Takes f: the source closes
 * it, and so does a failure.  Validates the whole table first (see
 * lvm_cow.c for what is refused).
 */
struct change_source *lvm_cow_open_file(struct df_file *f, uint64_t size,
                                        struct df_error *err);

/*
 * The store of the snapshot LV `lv` (/dev/VG/LV, VG/LV,
 * /dev/mapper/VG-LV, /dev/dm-N, or the -cow device's own name) into
 * path: ROOT/dev/dm-N of the dm device "<vg>-<lv>-cow" (each '-' of
 * VG and LV doubled) found in ROOT/sys/block/dm-* /dm/name.  0, or -1
 * with err set: DF_USAGE naming lv when it is no LV name, no such LV,
 * an origin or not a classic snapshot; DF_IO when ROOT/sys/block
 * cannot be read.
 */
int lvm_cow_find(const char *lv, const char *root, char *path, size_t len,
                 struct df_error *err);

#endif
