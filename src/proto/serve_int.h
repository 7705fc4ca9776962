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
#include "track/htree.h"
#include "track/manifest.h"
#include "util/error.h"

struct serve {
    const struct serve_opts *o;
    struct session s;
    struct image *img;          /* the source */
    struct extent_list client_done; /* source: ranges the client holds */
    char path[PATH_MAX];        /* the file named, resolved */

    struct dest d;              /* the destination (engine/dest.h) */
    struct sink *sink;          /* d.sink, or open_dst_hook's */
    struct apply ap;            /* the applier's, under sink_lock */
    bool size_unknown;          /* OPEN_SIZE_UNKNOWN: a stream */
    bool have_final_size;       /* SET_SIZE came: the stream ended */
    uint64_t final_size;

    pthread_mutex_t sink_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t applier;
    bool applier_started;
    uint64_t applied_seq, applied_bytes, acked_bytes;
    bool applier_done;
    bool data_seen;             /* a data frame arrived (applier's) */
    bool rec_marked;            /* this session marked the record busy */
    bool rec_was_busy;          /* ... or a job before it had */
    struct df_error aerr;

    /* TREE_REQ (serve_tree.c): the endpoint's hash tree and the walk
     * taken in step with the client, until the session ends */
    bool have_tree;
    struct htree tree;
    struct htree_walk walk;
    size_t walk_pos;            /* nodes of this round answered */
    uint8_t *walk_bits;         /* this round's bits, (walk.n + 7) / 8 */
    bool walk_over;             /* tree_diff holds the result */
    struct extent_list tree_diff;
    bool tree_from_record;      /* TREE_REQ_RECORD: tree is rec's */
    bool tree_changes;          /* TREE_CHANGES gave tree_diff: the
                                 * digest compares only those leaves */

    /* The destination's state record (serve_dst.c, engine/sync.h) */
    char sync_src[MSG_MAX_STR + 1]; /* OPT_SYNC_SRC; "": keep none */
    char sync_parent[MSG_MAX_STR + 1];  /* OPT_SYNC_PARENT, or "" */
    char sync_layer[MSG_MAX_STR + 1];   /* OPT_SYNC_LAYER, or "" */
    bool rec_resumed;           /* the base is a busy record (--resume) */
    int rec_fd;                 /* the state directory, or -1 */
    char rec_id[256];           /* an existing destination's identity */
    bool have_rec, rec_usable;  /* rec loaded; says what DST holds */
    struct manifest rec;
    /* OPT_VERIFY: the destination is read back as the applier writes
     * it (engine/readback.h), for DIGEST_REQ; stopped by a tree walk
     * (a sync reads back only what it wrote).  Freed after the
     * applier ends. */
    bool rb_want;
    enum digest_alg rb_alg;
    struct readback *rb;
    bool rb_tree;               /* rb keeps the record's leaves */
    bool have_newtree;          /* DIGEST_REQ's leaves of what DST holds */
    struct htree newtree;
    struct digest newdigest;
};

/* A control message a role answers, and how; a table ends with type 0. */
struct serve_handler {
    uint8_t type;               /* enum msg_type */
    int (*fn)(struct serve *sv, const struct msg *m, struct df_error *err);
};

/*
 * The control loop of a session, for either role (serve.c): each
 * message goes to its handler in h; TCP_REQ is answered for both roles;
 * DONE runs done() (NULL: nothing to do) and ends the loop with its
 * result; anything else is a protocol error naming the message.
 */
int serve_loop(struct serve *sv, const struct serve_handler *h,
               int (*done)(struct serve *sv, struct df_error *err),
               struct df_error *err);
/*
 * The hash-tree comparison (serve_tree.c, msg.h): TREE_REQ builds the
 * tree of img (the open source, or the destination before it is
 * written); TREE_HASHES answers one round's chunk.  Both roles' handler
 * tables name them; serve_tree_release() (serve_run) frees the state.
 */
int serve_tree_req(struct serve *sv, struct image *img, const struct msg *m,
                   struct df_error *err);
/* TREE_CHANGES: the client's changed ranges instead of a walk. */
int serve_tree_changes(struct serve *sv, const struct msg *m,
                       struct df_error *err);
int serve_tree_hashes(struct serve *sv, const struct msg *m,
                      struct df_error *err);
void serve_tree_release(struct serve *sv);
/* TREE_REQ_RECORD (serve_dst.c): the record's tree, not the disk's. */
int serve_tree_req_record(struct serve *sv, const struct msg *m,
                          struct df_error *err);
/* Free the record state (serve_run). */
void serve_record_release(struct serve *sv);
/* After the walk: the ranges where the client's disk differs from this
 * end's (block granularity, ascending, merged); NULL while the walk is
 * not over (or never began). */
const struct extent_list *serve_tree_diff(const struct serve *sv);

/* After OPEN_DST (serve_dst.c): the destination until DONE. */
int serve_dst(struct serve *sv, const struct msg *open,
              struct df_error *err);
/* After OPEN_SRC (serve_src.c): the source until DONE. */
int serve_src(struct serve *sv, const struct msg *open,
              struct df_error *err);

#endif
