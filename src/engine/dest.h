/*
 * dest.h: a new destination file under a temporary name, shared by copy
 * (and, later, every job that creates a file).
 *
 * A new file NAME is written as .NAME.diskferry-XXXXXXXXXXXX (a random
 * suffix, created O_EXCL|O_NOFOLLOW in the directory opened once by
 * dest_dir_open, so neither a planted symlink nor a guessed name can
 * redirect it) and renamed to NAME when complete, never replacing a
 * file (partial_commit, proto/journal.h).
 *
 * While it is written the temporary file holds flock(LOCK_EX).  A copy
 * that was killed leaves its file unlocked: before creating a new one
 * for NAME, dest_clean_stale() removes every unlocked file of that
 * naming (a live copy's file is locked and is left alone).
 */
#ifndef DF_DEST_H
#define DF_DEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image/image.h"
#include "util/error.h"

/* An fd on the directory path is in (O_DIRECTORY), or -1 with err. */
int dest_dir_open(const char *path, struct df_error *err);

/* Remove stale temporary files of path in dirfd, saying one line on msgs
 * (NULL: quiet) for each. */
void dest_clean_stale(int dirfd, const char *path, FILE *msgs);

/* Create the temporary file of path in dirfd as a new `fmt` image of
 * size bytes, locked; its path (for messages, and dest_commit) in tmp. */
int dest_tmp_create(int dirfd, const char *path, const char *fmt,
                    uint64_t size, const struct image_create_opts *copts,
                    struct image **img, char *tmp, size_t tmplen,
                    struct df_error *err);

#endif
