/*
 * serve_int.h: what the parts of serve share (serve.c: dispatch,
 * confinement, TCP, undo; serve_dst.c: a destination; serve_src.c: a
 * source).  Internal to proto/.
 */
#ifndef DF_SERVE_INT_H
#define DF_SERVE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/apply.h"
#include "engine/dest.h"
#include "image/image.h"
#include "msg.h"
#include "serve.h"
#include "session.h"
#include "util/error.h"

struct serve {
    const struct serve_opts *o;
    struct session s;
    struct image *img;          /* the source */
    char path[PATH_MAX];        /* the file named, resolved */

    struct dest d;              /* the destination (engine/dest.h) */
    struct sink *sink;          /* d.sink, or open_dst_hook's */
    struct apply ap;            /* the applier's, under sink_lock */

    pthread_mutex_t sink_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t applier;
    bool applier_started;
    uint64_t applied_seq, applied_bytes, acked_bytes;
    bool applier_done;
    struct df_error aerr;
};

/* TCP_REQ (serve.c): listen, hand back port and key. */
int serve_tcp(struct serve *sv, const struct msg *m, struct df_error *err);
/* After OPEN_DST (serve_dst.c): the destination until DONE. */
int serve_dst(struct serve *sv, const struct msg *open,
              struct df_error *err);
/* After OPEN_SRC (serve_src.c): the source until DONE. */
int serve_src(struct serve *sv, const struct msg *open,
              struct df_error *err);

#endif
