/*
 * plan.h: what the job must do with each range of the disk.
 *
 * A plan is the source's map (image_map: data / zero / hole) with every
 * change source and used-block map (track/track.h) laid over it:
 *
 *   not named by every change source   -> EXT_UNCHANGED (nothing to do),
 *                                         EXT_UNCHANGED_ZERO where the
 *                                         map says zero or hole
 *   DATA or UNCHANGED not named by     -> EXT_FREE (neither read nor sent;
 *   every used map                        zero on the destination)
 *   everything else                    -> its state in the map
 *
 * Change sources narrow each other (a range is sent only when every one
 * of them says it may differ: a sync's change set and a resume's
 * missing ranges together).  Used maps turn data free, changed or not
 * (DST is zero at a free leaf whatever it held: job_opts.fs); a hole
 * stays a hole, which the report counts apart from free blocks.
 */
#ifndef DF_PLAN_H
#define DF_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "proto/journal.h"
#include "track/track.h"
#include "util/error.h"
#include "util/extent.h"

struct plan_inputs {
    struct change_source **changes;
    size_t nchanges;
    struct used_map **used;
    size_t nused;
};

/*
 * The plan of [off, off+len), given `map`, the source's map of that
 * range (contiguous from off).  `out` is cleared and describes a prefix
 * [off, extent_list_end(out)) of it: when a list fills up the caller
 * asks again from there.  0, or -1 with err set.
 */
int plan_window(const struct extent_list *map, const struct plan_inputs *in,
                uint64_t off, uint64_t len, struct extent_list *out,
                struct df_error *err);

/*
 * The plan of a resumed copy: every range of [0, size) outside `done`
 * (the resume journal's written and durable ranges, sorted, states
 * ignored) is to be sent, the rest is kept.  Only for the destination
 * the journal was written to, re-checked (journal.h invariant 5): a
 * plan that keeps ranges of a new file would leave them zero, and
 * engine_copy() refuses one into a sink known to read as zeros.
 *
 * A leaf the journal lists only in part is not kept (a plan keeps
 * whole leaves, pipeline.c invariant 3): it is read and sent again,
 * which costs at most two leaves per range the journal lists.
 */
struct resume_plan {
    struct change_source *cs;   /* what is missing */
    struct change_source wrap;  /* cs, and the journal's leaf hashes */
    struct change_source *changes[1];
    struct plan_inputs in;
    uint64_t kept;              /* bytes of done: what the journal holds */
    const struct rjournal_leaf *leaves; /* borrowed, ascending */
    size_t nleaves, leaf_i;
};

/* 0 (done NULL or empty: a plan that keeps nothing, resume_plan_get()
 * is NULL) or -1 with err set. */
int resume_plan_init(struct resume_plan *rp, uint64_t size,
                     const struct extent_list *done, struct df_error *err);
/*
 * The journal's leaf hashes (journal.h "h" lines, ascending, in
 * RJOURNAL_HASH_ALG; borrowed) answer the plan's leaf_hash (track.h),
 * so that the digest takes them instead of reading the kept leaves.
 * Only when the SOURCE is provably the one the interrupted run read:
 * the hashes are of what was written then.
 */
void resume_plan_use_leaves(struct resume_plan *rp,
                            const struct rjournal_leaf *v, size_t n);
/* The inputs for job_opts.plan, or NULL: nothing to keep. */
const struct plan_inputs *resume_plan_get(const struct resume_plan *rp);
void resume_plan_release(struct resume_plan *rp);

#endif
