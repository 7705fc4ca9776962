/*
 * runs.h: map() and read() for drivers that can say, for any offset,
 * what the run starting there is (state, end, where its data lies).
 *
 * A driver writes one locate function; these turn it into the two
 * interface slots, so the walk over runs, the extent appends and the
 * zero filling are written once.
 */
#ifndef DF_RUNS_H
#define DF_RUNS_H

#include "image/image.h"

/*
 * What [off, end) starts with: *state, the end of that run (off <
 * *run_end <= end) and, for EXT_DATA, the file offset holding off (data
 * is contiguous in the file up to *run_end).  0, or -1 with err set.
 */
typedef int (*runs_locate_fn)(struct image *img, uint64_t off, uint64_t end,
                              enum extent_state *state, uint64_t *run_end,
                              uint64_t *file_off, struct df_error *err);

/* The map() slot: append runs from off until len is covered or the
 * list is full. */
int runs_map(struct image *img, uint64_t off, uint64_t len,
             struct extent_list *out, runs_locate_fn locate,
             struct df_error *err);

/* The read() slot: EXT_DATA runs from img->file, every other state
 * (zero, hole, parent) as zeros. */
int runs_read(struct image *img, void *buf, size_t len, uint64_t off,
              runs_locate_fn locate, struct df_error *err);

#endif
