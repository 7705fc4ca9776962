/*
 * apply.c: ranges in order into a destination, with the resume journal
 * (see apply.h).
 */
#include "apply.h"

#include "util/progress.h"

void apply_init(struct apply *a, struct sink *k, struct rjournal *j)
{
    a->sink = k;
    a->j = j;
    a->since_commit = 0;
    a->last_commit = time_now();
    a->bytes = 0;
}

int apply_commit(struct apply *a, struct df_error *err)
{
    a->since_commit = 0;
    a->last_commit = time_now();
    if (!a->j || !a->j->npend)
        return 0;
    /* journal.h invariant 1: flush, then record */
    if (a->sink->ops->finish(a->sink, err) < 0)
        return -1;
    return rjournal_commit(a->j, err);
}

int apply_finish(struct apply *a, struct df_error *err)
{
    a->since_commit = 0;
    a->last_commit = time_now();
    if (a->sink->ops->finish(a->sink, err) < 0)
        return -1;
    return a->j ? rjournal_commit(a->j, err) : 0;
}

int apply_range(struct apply *a, uint64_t off, uint64_t len,
                const void *data, struct df_error *err)
{
    struct sink *k = a->sink;
    if (data ? k->ops->write(k, off, data, (size_t)len, err)
             : k->ops->zero(k, off, len, err))
        return -1;
    a->bytes += len;
    if (!a->j)
        return 0;
    rjournal_note(a->j, off, len);
    a->since_commit += len;
    if (a->since_commit >= APPLY_COMMIT_BYTES || rjournal_full(a->j) ||
        time_now() - a->last_commit > APPLY_COMMIT_SECONDS)
        return apply_commit(a, err);
    return 0;
}
