/*
 * sync_int.h: what sync.c and sync_meta.c share (not an API).
 */
#ifndef DF_SYNC_INT_H
#define DF_SYNC_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/dest.h"
#include "engine/job.h"
#include "track/htree.h"
#include "track/manifest.h"
#include "track/track.h"
#include "util/extent.h"

struct source;
struct endpoint;
struct image_open_opts;
struct source_opts;

/* One local sync (or a push's metadata source): its ends and its base. */
struct sync_state {
    const struct job_spec *spec;
    struct job_report *rep;
    struct source *src;
    struct dest d;
    uint64_t size;              /* SRC's */
    char id[256];               /* DST's identity */
    char srcname[PATH_MAX];
    int sfd;                    /* state directory, or -1 */
    struct manifest base;       /* record or manifest */
    bool have_base;
    const char *base_what;      /* "the state record", "manifest FILE" */
    struct htree prev;          /* what DST holds after the last pass */
    bool have_prev;
    unsigned block_level;
    uint64_t copy_read;         /* SRC read by the passes' copies */
    struct change_source *meta; /* --changes from metadata, or NULL */
    bool resumed;               /* the record's last job did not end */
    struct fs_layout *fs;       /* --fs-aware's (job_fs_begin), or NULL */
};

/* sync.c: the base's tree at SRC's size (a grown SRC: zero leaves after
 * it), built. */
int sync_base_resized(struct sync_state *s, struct htree *bt,
                      struct df_error *err);

/* sync_meta.c: changes read from metadata (--changes lvm-cow:, lvm-thin:,
 * bitmap:, top-layer) */
bool sync_meta_spec(const char *ch);
bool sync_top_layer(const char *ch);
/* SRC, a delta on this host, opened alone: so->open becomes *top. */
int sync_top_layer_open_opts(const struct job_spec *spec,
                             const struct endpoint *sep,
                             struct image_open_opts *top,
                             struct source_opts *so,
                             struct job_report *rep, struct df_error *err);
/* To another host: every range whole 64 KiB leaves (usage error). */
int sync_top_layer_whole_leaves(const struct job_spec *spec,
                                const struct extent_list *changed,
                                uint64_t size, struct df_error *err);
/* DST (read-only, raw) attached as the delta's parent. */
int sync_top_layer_attach(struct sync_state *s, struct df_error *err);
/* s->meta opened: 0; 1 when it cannot be trusted (said: compare); -1. */
int sync_meta_open(struct sync_state *s, struct df_error *err);
/* What s->meta names over the whole disk, into changed. */
int sync_meta_changed(struct sync_state *s, struct extent_list *changed,
                      struct df_error *err);
/* The first pass's change set from s->meta, the base proved (a store's
 * old contents, or the record's tree, then src_t). */
int sync_meta_diff(struct sync_state *s, struct htree *src_t,
                   struct extent_list *changed, struct df_error *err);

#endif
