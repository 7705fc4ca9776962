/*
 * nbd.h: an export of an NBD server as an image (libnbd): the "nbd"
 * driver, which image.c does not probe for (an NBD URI names it).
 *
 * The image has no local file (img->file.fd is -1 and img->file.mem
 * NULL): everything reads and writes through the driver.  Sizes and
 * block-status replies come from the server and are checked as input.
 *
 * Concurrency (image.h contract 4): the driver is IMG_THREAD_SAFE.  A
 * libnbd handle serialises the synchronous calls made on it (each holds
 * the handle's lock until its reply), so:
 *  - when the server offers multi-conn (its connections see each
 *    other's writes and a flush on one covers all), up to NBD_POOL_MAX
 *    connections are opened as the workers ask for them, one
 *    synchronous request in flight on each;
 *  - without multi-conn one connection is used (qemu-nbd accepts one
 *    client by default), and reads and writes go through libnbd's aio
 *    calls: every worker issues its request, and one waiting thread at
 *    a time drives the socket for all (nbd.c, nbd_aio_wait), so the
 *    requests of all workers are in flight together.  Block status,
 *    write-zeroes and flush stay synchronous on it.
 */
#ifndef DF_IMAGE_NBD_H
#define DF_IMAGE_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

#define NBD_POOL_MAX 8

extern const struct image_driver image_driver_nbd;

/* Is arg an NBD URI (nbd:, nbds:, nbd+unix:, ...; any case)? */
bool image_is_nbd_uri(const char *arg);

/*
 * Open the export uri (nbd://host[:port]/export, nbd+unix:///export?
 * socket=PATH, nbds:// when libnbd has TLS).  opts->writable asks for
 * a destination (a read-only export is refused, DF_REFUSED); the other
 * options do not apply.  Connection failures are DF_NET.
 */
int image_open_nbd(const char *uri, const struct image_open_opts *opts,
                   struct image **out, struct df_error *err);

/*
 * The base:allocation entries of one block-status reply (pairs of
 * length, flags) as extents of [off, off+len), appended to out: a
 * hole that reads as zeros is EXT_HOLE, zeros EXT_ZERO, the rest
 * EXT_DATA.  The reply is clipped to the request; an empty reply or a
 * zero-length first entry is DF_CORRUPT, a zero-length later entry
 * ends it.  Returns the bytes described (>= 1) or -1.
 */
int64_t nbd_extents_convert(const char *what, uint64_t off, uint64_t len,
                            const uint32_t *entries, size_t nr_entries,
                            struct extent_list *out, struct df_error *err);

/*
 * Dirty bitmaps over NBD (qemu-nbd -B NAME exports the bitmap NAME as
 * the meta context "qemu:dirty-bitmap:NAME"; its flag bit 0,
 * NBD_STATE_DIRTY, marks a range written since the bitmap began).  A
 * meta context is asked for before connecting, so the open asks for it:
 * image_open_opts.nbd_bitmap = NAME asks for "qemu:dirty-bitmap:NAME"
 * besides base:allocation, on every connection the image opens.  A
 * name of more than NBD_BITMAP_NAME_MAX bytes is DF_USAGE.
 */
#define NBD_BITMAP_NAME_MAX 1023
#define NBD_CONTEXT_DIRTY_BITMAP "qemu:dirty-bitmap:"
#define NBD_STATE_DIRTY 1u

/*
 * One block-status request on the bitmap context of img (an open NBD
 * image whose open asked for it): the dirty ranges of [off, off+len)
 * appended to out (EXT_DATA, coalesced), from off up to what the reply
 * describes (len is cut to 1 GiB).  Returns the bytes described (>= 1);
 * 0 when out reached its cap (the ranges before are appended, the rest
 * is unknown); -1 with err: DF_REFUSED when the server did not agree to
 * the context (no such bitmap, or not exported), DF_CORRUPT for a bad
 * reply, DF_IO when the request failed.
 */
int64_t nbd_image_dirty(struct image *img, uint64_t off, uint64_t len,
                        struct extent_list *out, struct df_error *err);

/*
 * The entries of one reply on a dirty-bitmap context (pairs of length,
 * flags, for [off, off+len) from off) folded into out: each entry with
 * NBD_STATE_DIRTY set is appended as EXT_DATA (adjacent ones coalesce).
 * Stricter than nbd_extents_convert, since a range left out here is
 * never read: no entries, an odd count, a zero-length entry, or an
 * entry after one that reached off+len is DF_CORRUPT; the last entry
 * may run past the request (the NBD spec allows it) and is clipped.
 * Returns the bytes described (>= 1), 0 when out reached its cap, -1.
 */
int64_t nbd_dirty_fold(const char *what, uint64_t off, uint64_t len,
                       const uint32_t *entries, size_t nr_entries,
                       struct extent_list *out, struct df_error *err);

#endif
