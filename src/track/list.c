/*
 * list.c: a change source over an extent list held in memory (the
 * resume journal's missing ranges, a test's fixed change set).
 */
#include <stdlib.h>

#include "track/track.h"

struct list_source {
    struct change_source cs;
    struct extent_list l;
    size_t hint;                /* index to start the next search at */
};

static int list_changed(struct change_source *cs, uint64_t off,
                        uint64_t len, struct extent_list *out,
                        struct df_error *err)
{
    struct list_source *ls = cs->priv;
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
        int rc = extent_list_append(out, a, b - a, EXT_DATA, cs->name, err);
        if (rc)
            return rc;
    }
    return 0;
}

static void list_close(struct change_source *cs)
{
    struct list_source *ls = cs->priv;
    extent_list_release(&ls->l);
    free(ls);
}

struct change_source *change_source_from_list(const char *name,
                                              const struct extent_list *changed,
                                              struct df_error *err)
{
    struct list_source *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        df_fail(err, DF_IO, 0, name, -1, "out of memory");
        return NULL;
    }
    ls->cs = (struct change_source){ .name = name, .priv = ls,
                                     .changed = list_changed,
                                     .close = list_close };
    extent_list_init(&ls->l, changed->n ? changed->n : 1);
    for (size_t i = 0; i < changed->n; i++)
        if (extent_list_append(&ls->l, changed->v[i].off, changed->v[i].len,
                               EXT_DATA, name, err) < 0) {
            list_close(&ls->cs);
            return NULL;
        }
    return &ls->cs;
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
