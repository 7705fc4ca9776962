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

/* The host_run slot (image_driver): every run of [off, off+len)
 * EXT_DATA, each continuing the last in the file. */
int runs_host(struct image *img, uint64_t off, uint64_t len,
              uint64_t *file_off, runs_locate_fn locate,
              struct df_error *err);

/*
 * Reads of contiguous file bytes into contiguous memory, merged while
 * each continues the last (same source, next byte, next address): one
 * pread per run however many clusters or grains it spans.  A reader
 * adds pieces in order and flushes at the end; the pending run is the
 * caller's (a local), so threads never share one.
 */
typedef int (*runs_pread_fn)(void *src, void *buf, size_t len, uint64_t off,
                             struct df_error *err);

struct runs_batch {
    runs_pread_fn pread;
    void *src;
    uint8_t *dst;
    uint64_t off;
    size_t len;                 /* 0: nothing pending */
};

/* runs_pread_fn over df_file_pread (src: a struct df_file). */
int runs_file_pread(void *src, void *buf, size_t len, uint64_t off,
                    struct df_error *err);
/* Queue len bytes at off of src for dst, reading what was pending first
 * unless this continues it. */
int runs_batch_add(struct runs_batch *b, runs_pread_fn pread, void *src,
                   uint8_t *dst, uint64_t off, size_t len,
                   struct df_error *err);
/* Read what is pending (b is empty after, even on failure). */
int runs_batch_flush(struct runs_batch *b, struct df_error *err);

#endif
