/*
 * job_int.h: what job.c and sync.c share (not for cli/).
 */
#ifndef DF_JOB_INT_H
#define DF_JOB_INT_H

#include <stdio.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/job.h"
#include "track/manifest.h"

void job_dest_opts(const struct job_spec *spec, struct dest_opts *o);
/* DF_INTERRUPTED: say how far it got and how to go on. */
void job_interrupted(struct df_error *err, uint64_t written, uint64_t total,
                     bool resumable);
void job_set_format(char *out, const char *fmt);
int job_copy(const struct job_spec *spec, const struct endpoint *sep,
             const struct endpoint *dep, struct job_report *rep,
             struct df_error *err);
int job_sync(const struct job_spec *spec, const struct endpoint *sep,
             const struct endpoint *dep, struct job_report *rep,
             struct df_error *err);

/* A destination's identity (a file's device and inode, a device's
 * number): what its state record is named after. */
void sync_identity(const struct df_file *f, char *out, size_t len);
/* SRC as a record names it: its real path, else as given. */
void sync_source_name(const char *arg, char *out, size_t len);
/* The state directory for records, or -1 (warned on msgs: none kept). */
int sync_record_open(FILE *msgs, const char *cmd);
/* Mark id's record busy before writing its destination (a job killed
 * after it leaves the record untrusted); 0 or -1. */
int sync_record_begin(int sfd, const char *id, struct df_error *err);
/* Write id's record m and clear busy; a failure is warned, not fatal. */
int sync_record_commit(int sfd, const char *id, const struct manifest *m,
                       FILE *msgs, const char *cmd);

#endif
