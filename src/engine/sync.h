/*
 * sync.h: state records and base proofs, for the local job (sync.c,
 * job.c) and for serve, which keeps the records of the destinations on
 * its host (proto/serve_dst.c).
 *
 * A state record is a manifest (track/manifest.h) in diskferry's state
 * directory, named after the destination's identity: what the last
 * copy or sync wrote there, and from which source.  It is marked busy
 * (NAME.busy) before a job writes the destination and rewritten when
 * the job verified: a busy record still says who wrote the destination
 * (consent to write it again), not what it holds.
 */
#ifndef DF_SYNC_H
#define DF_SYNC_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "image/image.h"
#include "track/htree.h"
#include "track/manifest.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"

/* A destination's identity (a file's device, inode and birth; a
 * device's number and what the kernel says it is: a dm uuid, a loop
 * device's backing file): what its record is named after. */
void sync_identity(const struct df_file *f, char *out, size_t len);
/* An NBD export's: "nbd URI", no more is known of it (a record of it
 * is proved by its leaves like any other). */
void sync_nbd_identity(const char *uri, char *out, size_t len);
/* img's: an NBD export's or its file's */
void sync_image_identity(const struct image *img, char *out, size_t len);
/* name in dirfd (symlinks followed), not opened */
void sync_identity_at(int dirfd, const char *name, char *out, size_t len);
/* The state directory for records (dir, or util/file.h's default), or
 * -1 (said on msgs, if not NULL: no record kept).  create false (a dry
 * run): one that does not exist is not made. */
int sync_record_open(const char *dir, bool create, FILE *msgs,
                     const char *cmd);
/* The record of id: 0 (m filled; *busy: a job that wrote since did not
 * end), 1 none, -1 unreadable (said on msgs). */
int sync_record_load(int sfd, const char *id, struct manifest *m,
                     bool *busy, FILE *msgs);
/* Mark id's record busy before writing its destination; 0 or -1. */
int sync_record_begin(int sfd, const char *id, struct df_error *err);
/* The busy mark taken back by a job that wrote nothing (refused before
 * its first write): the record is the truth again. */
void sync_record_unbusy(int sfd, const char *id);
/* Write id's record m and clear busy; a failure is said on msgs. */
int sync_record_commit(int sfd, const char *id, const struct manifest *m,
                       FILE *msgs, const char *cmd);
/*
 * The base proof: dst's leaves at SYNC_PROOF_SAMPLES spread places and
 * under every range of `changed` (those a sync overwrites) must hash as
 * base says (resumed: a killed sync may have written some of `changed`
 * already, all written again: only the samples outside it).  0, or -1:
 * DF_REFUSED naming the first that does not
 * (`what`: "the state record"), or an I/O error.  *leaves and *bytes
 * count what was read.
 */
#define SYNC_PROOF_SAMPLES 64
struct image;
int sync_base_prove(struct image *dst, const struct htree *base,
                    const struct extent_list *changed, bool resumed,
                    const char *what, uint64_t *leaves, uint64_t *bytes,
                    struct df_error *err);
/*
 * Whether rec, DST's record, shows DST to hold the parent of a delta
 * (sync --changes top-layer) that names its parent parent_id and is
 * itself layer_id (image.h): the image DST was written from is that
 * parent (its layer identity: a CID, UUID or DataWriteGuid; a qcow2
 * overlay names its backing file only, compared by file name), or DST
 * was written from this very delta before (srcname, the sync again).
 */
bool sync_layer_base(const struct manifest *rec, const char *parent_id,
                     const char *layer_id, const char *srcname);

#endif
