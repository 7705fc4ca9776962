/*
 * safety_int.h: what the files of src/safety/ share; not an API (the
 * API is safety.h).  Exposed for tests/unit/test_safety.c.
 */
#ifndef DF_SAFETY_INT_H
#define DF_SAFETY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "safety/safety.h"

/* What a file or device is, for "is it the same object": a block
 * device by its device number, anything else by st_dev and st_ino. */
struct safety_id {
    bool is_blk;
    uint64_t dev;       /* st_rdev for block devices, else st_dev */
    uint64_t ino;       /* 0 for block devices */
};

void safety_id_from_stat(const struct stat *st, struct safety_id *id);
bool safety_id_eq(const struct safety_id *a, const struct safety_id *b);

/* inuse.c: checks 1 (same as the source) and 2-4 (held, open, locked). */
int inuse_check_source(const struct safety_req *req, struct df_error *err);
int inuse_check_holders(const struct safety_req *req, struct df_error *err);


/*
 * Is the block device rdev mounted (this mount namespace; with rw_only,
 * mounted with a read-write superblock)?  1 and the mount point in mnt,
 * 0, or -1 when mountinfo cannot be read.
 */
int inuse_mount_point(const char *mountinfo, uint64_t rdev, bool rw_only,
                      char *mnt, size_t len);

/*
 * Is a file of the open chain src (each layer, each VMDK extent) being
 * written by someone else: QEMU's write lock byte held, a block device
 * (or a partition or loop device of it) mounted read-write, or an fd
 * open for writing in another process (our own never count)?  1 with
 * the reason in why ("open for writing by qemu-io (pid 42)") and the
 * file in who, 0 when not, -1 with err set.
 */
int inuse_source_writer(const struct image *src, char *why, size_t len,
                        char *who, size_t wlen, struct df_error *err);

/* emptiness.c: check 6.  1 with a description ("an ext4 filesystem",
 * "non-zero data at offset 4096") in desc, 0 when empty, -1 on error. */
int emptiness_probe(const struct df_file *f, const struct extent_list *ours,
                    char *desc, size_t len, struct df_error *err);
/* The same, sampled, for an image with no local file (read through it). */
int emptiness_probe_image(struct image *img, char *desc, size_t len,
                          struct df_error *err);

/* confirm.c: ask on a terminal to type the destination's name.  0 when
 * typed, -1 DF_REFUSED otherwise. */
int confirm_by_name(const struct safety_req *req, const char *desc,
                    struct df_error *err);
/* The name the user must type: the last component of path. */
const char *confirm_expected_name(const char *path);

/*
 * undo.c: what `undo` checks before writing, on a journal and a
 * destination held in memory (the fuzz target, tests): header, records,
 * identity (invariant 7).  0 when undo would go ahead; stats may be NULL.
 */
int undo_check_mem(const uint8_t *journal, size_t jlen, const uint8_t *dst,
                   size_t dlen, struct undo_stats *stats,
                   struct df_error *err);

#endif
