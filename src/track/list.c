/*
 * list.c: a change source or a used-block map over an extent list held
 * in memory (the resume journal's missing ranges, a test's fixed change
 * set or used blocks).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "track/htree.h"
#include "track/track.h"

struct list_source {
    struct change_source cs;    /* or: */
    struct used_map um;
    struct extent_list l;
    size_t hint;                /* index to start the next search at */
    const struct htree *tree;   /* leaf hashes of what is not in l */
    size_t hhint;               /* leaf_hash's search start */
};

/* The ranges of ls in [off, off+len), into out (track.h contract 1). */
static int list_query(struct list_source *ls, const char *name, uint64_t off,
                      uint64_t len, struct extent_list *out,
                      struct df_error *err)
{
    const struct extent_list *l = &ls->l;
    uint64_t end = off + len;
    size_t i = ls->hint < l->n && l->v[ls->hint].off <= off ? ls->hint : 0;

    while (i < l->n && l->v[i].off + l->v[i].len <= off)
        i++;
    ls->hint = i;
    for (; i < l->n && l->v[i].off < end; i++) {
        uint64_t a = l->v[i].off > off ? l->v[i].off : off;
        uint64_t b = l->v[i].off + l->v[i].len;
        if (b > end)
            b = end;
        int rc = extent_list_append(out, a, b - a, EXT_DATA, name, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int list_changed(struct change_source *cs, uint64_t off,
                        uint64_t len, struct extent_list *out,
                        struct df_error *err)
{
    return list_query(cs->priv, cs->name, off, len, out, err);
}

static int list_used(struct used_map *um, uint64_t off, uint64_t len,
                     struct extent_list *out, struct df_error *err)
{
    return list_query(um->priv, um->name, off, len, out, err);
}

static void list_free(struct list_source *ls)
{
    extent_list_release(&ls->l);
    free(ls);
}

static void list_close(struct change_source *cs)
{
    list_free(cs->priv);
}

static void list_used_close(struct used_map *um)
{
    list_free(um->priv);
}

/* A list_source holding a copy of `ranges`, or NULL with err set. */
static struct list_source *list_new(const char *name,
                                    const struct extent_list *ranges,
                                    struct df_error *err)
{
    struct list_source *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        df_fail(err, DF_IO, 0, name, -1, "out of memory");
        return NULL;
    }
    extent_list_init(&ls->l, ranges->n ? ranges->n : 1);
    for (size_t i = 0; i < ranges->n; i++)
        if (extent_list_append(&ls->l, ranges->v[i].off, ranges->v[i].len,
                               EXT_DATA, name, err) < 0) {
            list_free(ls);
            return NULL;
        }
    return ls;
}

struct change_source *change_source_from_list(const char *name,
                                              const struct extent_list *changed,
                                              struct df_error *err)
{
    struct list_source *ls = list_new(name, changed, err);
    if (!ls)
        return NULL;
    ls->cs = (struct change_source){ .name = name, .priv = ls,
                                     .changed = list_changed,
                                     .close = list_close };
    return &ls->cs;
}

/* Whether the DIGEST_LEAF_SIZE leaf at leaf_off lies wholly outside
 * ls's ranges (asked in ascending order: the search starts at hhint). */
static bool leaf_outside(struct list_source *ls, uint64_t leaf_off)
{
    const struct extent_list *l = &ls->l;
    size_t k = ls->hhint;
    /* a few steps from the hint; else a binary search (the two sides'
     * digests ask in turn, each ascending) */
    for (unsigned steps = 0; k < l->n && l->v[k].off + l->v[k].len <=
                                          leaf_off; steps++, k++)
        if (steps == 8) {
            k = extent_list_find(l, leaf_off);
            break;
        }
    if (k > 0 && k <= l->n && l->v[k - 1].off + l->v[k - 1].len > leaf_off)
        k = extent_list_find(l, leaf_off);      /* asked behind the hint */
    ls->hhint = k;
    return !(k < l->n && l->v[k].off < leaf_off + DIGEST_LEAF_SIZE);
}

/* A leaf outside the changed ranges is the same on both sides: its
 * hash is the tree's. */
static int tree_leaf_hash(struct change_source *cs, enum digest_alg alg,
                          uint64_t leaf_off, uint8_t *out,
                          struct df_error *err)
{
    struct list_source *ls = cs->priv;
    uint64_t i = leaf_off / DIGEST_LEAF_SIZE;
    (void)err;
    if (alg != ls->tree->alg || i >= ls->tree->nleaves ||
        !leaf_outside(ls, leaf_off))
        return 0;
    htree_leaf_hash(ls->tree, i, out);
    return 1;
}

/* A leaf outside the changed ranges is taken to be the same on both
 * sides, unread: it hashes as a zero leaf on both (as a range the plan
 * knows to be zero does on either), so the digests compare only the
 * changed leaves. */
static int unverified_leaf_hash(struct change_source *cs,
                                enum digest_alg alg, uint64_t leaf_off,
                                uint8_t *out, struct df_error *err)
{
    (void)err;
    if (!leaf_outside(cs->priv, leaf_off))
        return 0;
    memcpy(out, digest_zero_node(alg, 0), digest_len(alg));
    return 1;
}

struct change_source *change_source_unverified(const char *name,
                                               const struct extent_list *changed,
                                               struct df_error *err)
{
    struct change_source *cs = change_source_from_list(name, changed, err);
    if (cs)
        cs->leaf_hash = unverified_leaf_hash;
    return cs;
}

struct change_source *change_source_from_tree(const char *name,
                                              const struct extent_list *changed,
                                              const struct htree *tree,
                                              struct df_error *err)
{
    struct change_source *cs = change_source_from_list(name, changed, err);
    if (!cs)
        return NULL;
    ((struct list_source *)cs->priv)->tree = tree;
    cs->leaf_hash = tree_leaf_hash;
    return cs;
}

struct change_source *change_source_missing_tree(const char *name,
                                                 uint64_t size,
                                                 const struct extent_list *done,
                                                 const struct htree *tree,
                                                 struct df_error *err)
{
    struct change_source *cs = change_source_missing(name, size, done, err);
    if (!cs)
        return NULL;
    ((struct list_source *)cs->priv)->tree = tree;
    cs->leaf_hash = tree_leaf_hash;
    return cs;
}

struct change_source *change_source_missing(const char *name, uint64_t size,
                                            const struct extent_list *done,
                                            struct df_error *err)
{
    struct extent_list disk, missing;
    struct change_source *cs = NULL;

    extent_list_init(&disk, 1);
    extent_list_init(&missing, done->n + 1);   /* never reached */
    if (size && extent_list_append(&disk, 0, size, EXT_DATA, name, err) < 0)
        goto out;
    if (extent_list_subtract(&disk, done, &missing, err) != 0) {
        df_fail(err, DF_CORRUPT, 0, name, -1, "cannot list missing ranges");
        goto out;
    }
    cs = change_source_from_list(name, &missing, err);
out:
    extent_list_release(&disk);
    extent_list_release(&missing);
    return cs;
}

struct used_map *used_map_from_list(const char *name,
                                    const struct extent_list *used,
                                    struct df_error *err)
{
    struct list_source *ls = list_new(name, used, err);
    if (!ls)
        return NULL;
    ls->um = (struct used_map){ .name = name, .priv = ls, .used = list_used,
                                .close = list_used_close };
    return &ls->um;
}

void change_source_close(struct change_source *cs)
{
    if (cs)
        cs->close(cs);
}

void used_map_close(struct used_map *um)
{
    if (um)
        um->close(um);
}
