/*
 * job_int.h: what job.c and sync.c share (not for cli/).
 */
#ifndef DF_JOB_INT_H
#define DF_JOB_INT_H

#include <stdio.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/job.h"
#include "engine/source.h"
#include "engine/sync.h"
#include "track/manifest.h"

void job_dest_opts(const struct job_spec *spec, struct dest_opts *o);
struct remote_opts;
/* The options of a copy to or from the remote endpoint ep. */
void job_copy_remote_opts(const struct job_spec *spec,
                          const struct endpoint *ep, struct remote_opts *ro,
                          struct job_report *rep);
/* DF_INTERRUPTED: say how far it got and how to go on. */
void job_interrupted(struct df_error *err, uint64_t written, uint64_t total,
                     bool resumable);
void job_set_format(char *out, const char *fmt);
int job_copy(const struct job_spec *spec, const struct endpoint *sep,
             const struct endpoint *dep, struct job_report *rep,
             struct df_error *err);
int job_verify_manifest(const struct job_spec *spec, struct job_report *rep,
                        struct df_error *err);
int job_sync(const struct job_spec *spec, const struct endpoint *sep,
             const struct endpoint *dep, struct job_report *rep,
             struct df_error *err);

/*
 * --fs-aware on an open source: its layout read (track/fs.h), a line on
 * spec->msgs for each region copied whole and why, and *spec_out a copy
 * of *spec whose jo.fs is it (borrowed from *fs: fs_layout_free it
 * after the job).  Refused (DF_REFUSED) on a source in use, even with
 * --force-share: a live filesystem's free blocks do not stay free.
 * Without --fs-aware, a copy's layout is read for the hint alone
 * (jo.fs_hint), and nothing is said.  A source with no local image
 * (a stream, another host's disk) is a usage error with --fs-aware, and
 * gets no hint.  0 or -1 with err.
 */
int job_fs_begin(const struct job_spec *spec, const struct source *src,
                 struct job_spec *spec_out, struct fs_layout **fs,
                 struct df_error *err);
void fs_layout_free(struct fs_layout *fs);
/* The prediction a job on src starts with (forecast_quick): into
 * jo->predicted_seconds (the progress's first ETA) and the report; host:
 * DST's when it is another host's.  Quietly none when it cannot be made
 * (a remote or stream source, a link no plan measured).  A dry run
 * gets one too: it says what the job would take. */
void job_predict(const struct job_spec *spec, const struct source *src,
                 const char *host, struct job_opts *jo,
                 struct job_report *rep);

/* SRC as a record names it: its real path, else as given; on another
 * host's record, this host's name, a colon and that. */
void sync_source_name(const char *arg, char *out, size_t len);
void sync_remote_source_name(const char *arg, char *out, size_t len);

/*
 * A copy's state record (and --write-manifest): the leaf hashes of what
 * it delivers, kept while it runs (job_opts.leaf_hashes), written when
 * it committed.  Only for a local image source into a local file or
 * device (the record of a remote destination is its host's).
 */
struct copy_record {
    bool on;
    int sfd;
    struct htree t;
    char id[256];
    char src[PATH_MAX];
    char layer[160];            /* the source's layer_id (image.h) */
};
void copy_record_init(struct copy_record *r);
/* After the destination opened, before the copy: 0 or -1 (a usage
 * error: --write-manifest where no record can be kept). */
int copy_record_start(const struct job_spec *spec,
                      const struct endpoint *dep, const struct source *src,
                      const struct dest *d, struct job_opts *jo,
                      struct copy_record *r, struct df_error *err);
/* The copy committed: write the record and the manifest. */
int copy_record_end(const struct job_spec *spec, struct copy_record *r,
                    const struct job_stats *st, struct df_error *err);
void copy_record_release(struct copy_record *r);

#endif
