/*
 * report.h: what a subcommand prints when its job is over, in one
 * place: the JSON object of --json and the human lines of -v, for
 * every subcommand, so that the same thing is spelled the same way in
 * each.  The digest is always
 *
 *   "digest": {"algorithm": ..., "source": HEX, "destination": HEX}
 *
 * ("destination" only where it was computed: a verified copy, disks
 * found identical; verify's A is the source, B the destination).
 *
 * Below the reports, the minimal JSON writer they use.
 */
#ifndef DF_REPORT_H
#define DF_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/job.h"
#include "image/image.h"
#include "util/extent.h"

/* copy (and later sync): --json on f, the -v lines on stderr. */
void report_copy_json(FILE *f, const struct job_spec *spec,
                      const struct job_report *rep);
/* --salvage: each unreadable range on f, one line each. */
/* A dry run: what the job would take (the quick prediction). */
void report_dry_plan(FILE *f, const struct job_spec *spec,
                     const struct job_report *rep);
/* Without --fs-aware: one line when the copy read stale free blocks. */
void report_fs_hint(FILE *f, const struct job_spec *spec,
                    const struct job_report *rep);
void report_salvaged_text(FILE *f, const char *cmd,
                          const struct extent_list *l);
void report_copy_line(const struct job_spec *spec,
                      const struct job_report *rep);

/* verify A B (spec->src, spec->dst): identical, or the ranges in
 * rep->differ (the disks' sizes named when they differ). */
void report_verify_json(FILE *f, const struct job_spec *spec,
                        const struct job_report *rep);
void report_verify_text(FILE *f, const struct job_spec *spec,
                        const struct job_report *rep);

/* info IMAGE: the chain and how much of the disk is data, zero, hole;
 * a qcow2 top layer's dirty bitmaps (has_bitmaps: read, maybe none). */
struct qcow2_bitmap_info;
struct info_counts {
    uint64_t data, zero, hole;
    bool has_bitmaps;
    struct qcow2_bitmap_info *bitmaps;      /* cmd_info's, freed there */
    size_t nbitmaps;
    const struct fs_layout *layout;         /* partitions, or NULL */
};
void report_info_json(FILE *f, const struct image *img,
                      const struct info_counts *c);

/* undo: the -v line on stderr. */
void report_undo_line(const struct job_spec *spec,
                      const struct job_report *rep);

/* A minimal JSON writer, to a FILE. */
struct json {
    FILE *f;
    int depth;
    bool first[16];
};
void json_begin(struct json *j, FILE *f);
void json_end(struct json *j);          /* closes the top object, "\n" */
void json_obj(struct json *j, const char *key);   /* key NULL in arrays */
void json_arr(struct json *j, const char *key);
void json_close_obj(struct json *j);
void json_close_arr(struct json *j);
void json_str(struct json *j, const char *key, const char *val);
void json_u64(struct json *j, const char *key, uint64_t val);
void json_dbl(struct json *j, const char *key, double val);
void json_bool(struct json *j, const char *key, bool val);

#endif
