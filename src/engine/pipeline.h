/*
 * pipeline.h: engine-internal entry points (not for cli/).
 */
#ifndef DF_PIPELINE_H
#define DF_PIPELINE_H

#include "engine/job.h"

/* Run the pipeline over a into a comparing sink (verify.c). */
int engine_compare_run(struct image *a, struct sink *cmp,
                       const struct job_opts *opts, struct job_stats *st,
                       struct df_error *err);

/* Is img read through views (a raw single layer on a regular file),
 * and so copied by copy_from into a local raw file (pipeline.c 6, 7)? */
bool engine_can_view(const struct image *img);

#endif
