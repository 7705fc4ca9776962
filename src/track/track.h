/*
 * track.h: what changed, and what is in use.
 *
 * Two kinds of answer feed a plan (engine/plan.h), both as extent lists
 * over the source's virtual disk:
 *
 *   struct change_source   "which ranges may differ from the
 *                          destination": the resume journal's not-yet-
 *                          written ranges, a compare of hash trees, a
 *                          manifest, an LVM snapshot's exception table, a
 *                          delta image's allocated blocks, a dirty bitmap.
 *                          A range it does not name is unchanged: the
 *                          destination already holds those bytes.
 *   struct used_map        "which ranges a filesystem uses": a range it
 *                          does not name is free there and need not be
 *                          read or sent.
 *
 * Contract for both:
 *  1. query(off, len, out) appends to `out` (already cleared by the
 *     caller) the ranges of [off, off+len) it names, ascending, in any
 *     state (the plan ignores their states), and returns 0; 1 when out
 *     reached its cap (the caller asks again from extent_list_end(out));
 *     -1 with err set.  off and len lie inside the disk.
 *  2. A source that cannot be trusted says so when it is opened, not
 *     by answering wrong: when in doubt, it names the whole range.
 *  3. close() frees everything; the object is not used afterwards.
 *
 * A change source may also know the digest leaf hash (util/hash.h) of a
 * leaf it leaves out: leaf_hash(alg, leaf_off, out) fills out with the
 * hash in `alg` of the DIGEST_LEAF_SIZE leaf at leaf_off (the last one
 * of the disk short, as digest_leaf() pads it) and returns 1 only when
 * that is the leaf's content on BOTH sides (a compare of hash trees, a
 * manifest, a resume journal that recorded what it wrote); 0 when it
 * does not know (another alg, a leaf it names as changed); -1 with err
 * set.  The pipeline asks only for leaves the plan keeps whole, in
 * ascending order, one call at a time (under its cursor's lock), and
 * feeds the answer to the verification digest instead of reading the
 * leaf.  NULL: never knows; the pipeline reads such a leaf to hash it.
 */
#ifndef DF_TRACK_H
#define DF_TRACK_H

#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"
#include "util/hash.h"

struct change_source {
    const char *name;           /* "resume", "compare", "lvm-cow", ... */
    void *priv;
    int (*changed)(struct change_source *cs, uint64_t off, uint64_t len,
                   struct extent_list *out, struct df_error *err);
    int (*leaf_hash)(struct change_source *cs, enum digest_alg alg,
                     uint64_t leaf_off, uint8_t *out, struct df_error *err);
    /* What the base (DST before the sync) held at [off, off+len), a
     * range inside one the source names as changed, into buf: 0, or -1
     * with err set.  NULL: the source does not know (only lvm-cow does:
     * its store keeps each changed chunk's old contents).  The sync
     * proves DST with it before writing and keeps it for --undo. */
    int (*base_read)(struct change_source *cs, uint64_t off, size_t len,
                     uint8_t *buf, struct df_error *err);
    void (*close)(struct change_source *cs);
};

struct used_map {
    const char *name;           /* "ext4", "ntfs", "xfs", "swap" */
    void *priv;
    int (*used)(struct used_map *um, uint64_t off, uint64_t len,
                struct extent_list *out, struct df_error *err);
    void (*close)(struct used_map *um);
};

/*
 * A change source over a fixed list: the ranges of `changed` are the
 * changed ones.  The list is copied.  For the resume journal, pass the
 * complement of what was written (extent_list_subtract of the whole
 * disk and the done list).
 */
struct change_source *change_source_from_list(const char *name,
                                              const struct extent_list *changed,
                                              struct df_error *err);

/*
 * A change source over `changed` whose leaf_hash answers, for every
 * leaf outside it, the hash in `tree` (borrowed, built; its leaves are
 * the content of both sides there: a sync's comparison or manifest).
 */
struct htree;
struct change_source *change_source_from_tree(const char *name,
                                              const struct extent_list *changed,
                                              const struct htree *tree,
                                              struct df_error *err);

/*
 * As change_source_from_list, whose leaf_hash answers for every leaf
 * outside `changed` the hash of a zero leaf, on both sides alike (a
 * range either side's plan knows to be zero hashes so too): the digests
 * then compare only the changed leaves (a sync whose base is proved by
 * its change source alone: nothing says what the rest of DST holds).
 */
struct change_source *change_source_unverified(const char *name,
                                               const struct extent_list *changed,
                                               struct df_error *err);

/*
 * What a resumed copy still has to send: the change source naming every
 * range of [0, size) outside `done` (the resume journal's written and
 * durable ranges, sorted, states ignored).
 */
struct change_source *change_source_missing(const char *name, uint64_t size,
                                            const struct extent_list *done,
                                            struct df_error *err);

/* As change_source_missing, whose leaf_hash answers from tree (as
 * change_source_from_tree): a sync's kept ranges, sent by the client. */
struct change_source *change_source_missing_tree(const char *name,
                                                 uint64_t size,
                                                 const struct extent_list *done,
                                                 const struct htree *tree,
                                                 struct df_error *err);

/* A used-block map over a fixed list (copied): its ranges are used. */
struct used_map *used_map_from_list(const char *name,
                                    const struct extent_list *used,
                                    struct df_error *err);

/*
 * Change sources read from metadata (sync --changes SPEC; each in a file
 * of its own).  Each names, over SRC's virtual disk of `size` bytes,
 * every range that may differ from the base DST holds (a superset is
 * allowed: a chunk written twice, a write of the same bytes), clipped to
 * size, ascending, coalesced.  Opening one validates all of its metadata
 * first: corrupt, truncated or out-of-range metadata is DF_CORRUPT (exit
 * 5) naming the file and the offset.  Metadata that is well formed but
 * cannot be trusted: an overflowed snapshot is DF_CORRUPT too, with the
 * fallback (--changes compare) named; a dirty bitmap that QEMU holds or
 * left in use is DF_REFUSED with the reason, and the sync compares
 * instead (qcow2_bitmap.h).
 *
 *   lvm-cow:COW      lvm_cow.c: a device-mapper persistent snapshot
 *                    exception store (docs/formats.md section 1); COW is
 *                    the -cow device or a file holding the store, or an
 *                    LV (/dev/VG/LV, VG/LV, /dev/mapper/VG-LV) whose
 *                    store is found as lvmsync does: its dm name + "-cow"
 *                    through sysfs (root: "/" normally; tests give a fake
 *                    tree).  base_read gives the old contents.
 *   lvm-thin:META,OLD,NEW  lvm_thin.c: thin_delta on the pool metadata
 *                    META (a file or device) between thin ids OLD and
 *                    NEW; ranges mapped in OLD only (discarded) are
 *                    named too: SRC reads zeros there.
 *   bitmap:NAME      qcow2_bitmap.c: the persistent dirty bitmap NAME of
 *                    the qcow2 file `image` (SRC), read offline; on an
 *                    NBD SRC, nbd_bitmap.c: the export's meta context
 *                    qemu:dirty-bitmap:NAME (qemu-nbd -B NAME), which
 *                    the open of `img` asked for (image/nbd.h:
 *                    image_open_opts.nbd_bitmap); not offered is
 *                    DF_REFUSED.
 */
struct change_source *lvm_cow_open(const char *cow, const char *root,
                                   uint64_t size, struct df_error *err);
struct change_source *lvm_thin_open(const char *meta, uint64_t old_id,
                                    uint64_t new_id, uint64_t size,
                                    struct df_error *err);
struct change_source *qcow2_bitmap_open(const char *image, const char *name,
                                        uint64_t size, struct df_error *err);
struct image;
struct change_source *nbd_bitmap_open(struct image *img, uint64_t size,
                                      struct df_error *err);
/*   top-layer        top_layer.c: what the delta image `delta` (opened
 *                    without its parents) holds itself, mapped at open;
 *                    the sync proves DST is its parent. */
struct change_source *top_layer_open(struct image *delta, uint64_t size,
                                     struct df_error *err);

void change_source_close(struct change_source *cs);
void used_map_close(struct used_map *um);

#endif
