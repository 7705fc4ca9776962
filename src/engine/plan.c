/*
 * plan.c: the source's map with change sources and used-block maps laid
 * over it (plan.h).
 */
#include "engine/plan.h"

#include <string.h>

#define PLAN_QUERY_CAP 65536

/* Cut every extent of l at `end` and drop what lies past it. */
static void extent_list_truncate(struct extent_list *l, uint64_t end)
{
    while (l->n && l->v[l->n - 1].off >= end)
        l->n--;
    if (l->n && l->v[l->n - 1].off + l->v[l->n - 1].len > end)
        l->v[l->n - 1].len = end - l->v[l->n - 1].off;
}

/* Lay one query's answer over cur: mask it, shrink *end to what the
 * answer covers when its list filled up. */
static int overlay(struct extent_list *cur, struct extent_list *tmp,
                   struct extent_list *q, int qrc, enum extent_state outside,
                   unsigned which, uint64_t off, uint64_t *end,
                   struct df_error *err)
{
    if (qrc < 0)
        return -1;
    if (qrc == 1) {             /* answered a prefix: plan only that */
        uint64_t qend = extent_list_end(q, off);
        if (qend <= off)
            return df_fail(err, DF_CORRUPT, 0, "plan", (int64_t)off,
                           "a change or used-block list holds no extent");
        if (qend < *end)
            *end = qend;
    }
    int rc = extent_list_mask(cur, q, outside, which, tmp, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        *end = extent_list_end(tmp, off);
    struct extent_list swap = *cur;
    *cur = *tmp;
    *tmp = swap;
    extent_list_truncate(cur, *end);
    return 0;
}

int plan_window(const struct extent_list *map, const struct plan_inputs *in,
                uint64_t off, uint64_t len, struct extent_list *out,
                struct df_error *err)
{
    struct extent_list tmp, q;
    uint64_t end = off + len;
    int ret = -1;

    extent_list_init(&tmp, out->cap);
    extent_list_init(&q, PLAN_QUERY_CAP);
    extent_list_clear(out);
    for (size_t i = 0; i < map->n && map->v[i].off < end; i++) {
        int rc = extent_list_append(out, map->v[i].off, map->v[i].len,
                                    map->v[i].state, "plan", err);
        if (rc < 0)
            goto done;
        if (rc == 1) {
            end = extent_list_end(out, off);
            break;
        }
    }
    extent_list_truncate(out, end);
    for (size_t i = 0; i < in->nchanges && out->n; i++) {
        struct change_source *cs = in->changes[i];
        extent_list_clear(&q);
        int qrc = cs->changed(cs, off, end - off, &q, err);
        /* Unchanged where the map says zero: nothing at all to do (a
         * sparse disk's holes cost no leaf-by-leaf work). */
        if (overlay(out, &tmp, &q, qrc, EXT_UNCHANGED_ZERO,
                    1u << EXT_ZERO | 1u << EXT_HOLE, off, &end, err) < 0)
            goto done;
        if (overlay(out, &tmp, &q, qrc, EXT_UNCHANGED,
                    EXT_ALL_STATES & ~(1u << EXT_UNCHANGED_ZERO), off,
                    &end, err) < 0)
            goto done;
    }
    for (size_t i = 0; i < in->nused && out->n; i++) {
        struct used_map *um = in->used[i];
        extent_list_clear(&q);
        int qrc = um->used(um, off, end - off, &q, err);
        if (overlay(out, &tmp, &q, qrc, EXT_FREE,
                    1u << EXT_DATA | 1u << EXT_UNCHANGED, off, &end,
                    err) < 0)
            goto done;
    }
    ret = 0;
done:
    extent_list_release(&tmp);
    extent_list_release(&q);
    return ret;
}

static int resume_changed(struct change_source *cs, uint64_t off,
                          uint64_t len, struct extent_list *out,
                          struct df_error *err)
{
    struct resume_plan *rp = cs->priv;
    return rp->cs->changed(rp->cs, off, len, out, err);
}

static int resume_leaf_hash(struct change_source *cs, enum digest_alg alg,
                            uint64_t leaf_off, uint8_t *out,
                            struct df_error *err)
{
    struct resume_plan *rp = cs->priv;
    uint64_t leaf = leaf_off / DIGEST_LEAF_SIZE;
    (void)err;
    if (alg != RJOURNAL_HASH_ALG)
        return 0;
    /* asked in ascending order (track.h) */
    while (rp->leaf_i < rp->nleaves && rp->leaves[rp->leaf_i].leaf < leaf)
        rp->leaf_i++;
    if (rp->leaf_i == rp->nleaves || rp->leaves[rp->leaf_i].leaf != leaf)
        return 0;
    memcpy(out, rp->leaves[rp->leaf_i].hash, RJOURNAL_HASH_LEN);
    return 1;
}

static void resume_close(struct change_source *cs)
{
    (void)cs;       /* resume_plan_release() closes */
}

int resume_plan_init(struct resume_plan *rp, uint64_t size,
                     const struct extent_list *done, struct df_error *err)
{
    memset(rp, 0, sizeof(*rp));
    if (!done || !done->n)
        return 0;
    rp->cs = change_source_missing("resume", size, done, err);
    if (!rp->cs)
        return -1;
    rp->wrap = (struct change_source){ .name = "resume", .priv = rp,
                                       .changed = resume_changed,
                                       .close = resume_close };
    rp->changes[0] = &rp->wrap;
    rp->in = (struct plan_inputs){ .changes = rp->changes, .nchanges = 1 };
    rp->kept = extent_list_bytes(done, EXT_DATA);
    return 0;
}

void resume_plan_use_leaves(struct resume_plan *rp,
                            const struct rjournal_leaf *v, size_t n)
{
    rp->leaves = v;
    rp->nleaves = n;
    rp->leaf_i = 0;
    rp->wrap.leaf_hash = n ? resume_leaf_hash : NULL;
}

const struct plan_inputs *resume_plan_get(const struct resume_plan *rp)
{
    return rp->cs ? &rp->in : NULL;
}

void resume_plan_release(struct resume_plan *rp)
{
    change_source_close(rp->cs);
    rp->cs = NULL;
}
