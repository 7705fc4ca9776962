/*
 * serve_tree.c: serve's side of the hash-tree comparison (msg.h,
 * "Hash-tree comparison"; track/htree.h): the tree of the open
 * endpoint, built once on TREE_REQ, and the walk taken in step with
 * the client, one TREE_BITS for each TREE_HASHES.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/job.h"
#include "engine/sync.h"
#include "serve_int.h"

int serve_tree_req(struct serve *sv, struct image *img, const struct msg *m,
                   struct df_error *err)
{
    struct job_opts jo;
    struct job_stats st;
    struct digest d;
    struct msg_buf b;
    int ret = -1;

    if (!(sv->s.features & MSG_FEAT_TREE))
        return df_net(err, sv->s.peer, "protocol error: TREE_REQ without "
                      "the feature");
    if (sv->have_tree)
        return df_net(err, sv->s.peer, "protocol error: a second "
                      "TREE_REQ");
    job_opts_init(&jo);
    jo.threads = sv->o->threads;
    jo.digest = (enum digest_alg)m->alg;
    memset(&st, 0, sizeof(st));
    if (engine_tree(img, &jo, &sv->tree, &d, &st, err) < 0)
        return -1;
    sv->have_tree = true;
    extent_list_init(&sv->tree_diff, EXTENT_LIST_DEFAULT_CAP);
    if (htree_walk_start(&sv->walk, &sv->tree, m->level, err) < 0)
        return -1;
    msg_buf_init(&b);
    msg_put_u64(&b, sv->tree.size);
    msg_put_u8(&b, (uint8_t)d.alg);
    msg_put_u8(&b, (uint8_t)d.len);
    msg_put_bytes(&b, d.bytes, d.len);
    msg_put_u64(&b, st.bytes_read);
    ret = session_send(&sv->s, MSG_TREE, &b, err);
    msg_buf_release(&b);
    return ret;
}

static int serve_tree_prove(struct serve *sv, struct df_error *err);

/* The round is answered: both sides move on (htree_walk_next); no
 * nodes left, or the block level passed, ends the walk. */
static int serve_tree_round(struct serve *sv, struct df_error *err)
{
    if (htree_walk_next(&sv->walk, sv->walk_bits, err) < 0)
        return -1;
    free(sv->walk_bits);
    sv->walk_bits = NULL;
    sv->walk_pos = 0;
    if (!sv->walk.done && sv->walk.n)
        return 0;
    sv->walk_over = true;
    if (htree_walk_ranges(&sv->walk, &sv->tree_diff, err) < 0)
        return -1;
    return sv->tree_from_record ? serve_tree_prove(sv, err) : 0;
}

/* The record is proved on the disk before the client hears the walk's
 * end (or that its changes are taken), so before any data frame. */
static int serve_tree_prove(struct serve *sv, struct df_error *err)
{
    uint64_t leaves = 0, bytes = 0;
    struct image *img = sv->d.img;
    if (!img)
        return df_net(err, sv->s.peer, "protocol error: a record's walk "
                      "with no destination");
    pthread_mutex_lock(&sv->sink_lock);
    int r = sync_base_prove(img, &sv->tree, &sv->tree_diff,
                            sv->tree_changes && sv->rec_resumed,
                            "the state record", &leaves, &bytes, err);
    pthread_mutex_unlock(&sv->sink_lock);
    return r;
}

int serve_tree_hashes(struct serve *sv, const struct msg *m,
                      struct df_error *err)
{
    struct htree_walk *w = &sv->walk;
    uint8_t bits[MSG_TREE_MAX_NODES / 8];
    struct msg_buf b;
    int ret;

    if (!sv->have_tree)
        return df_net(err, sv->s.peer, "protocol error: TREE_HASHES "
                      "before TREE_REQ");
    if (sv->walk_over)
        return df_net(err, sv->s.peer, "protocol error: TREE_HASHES after "
                      "the walk ended");
    if (m->data_len != (size_t)m->n * sv->tree.hlen)
        return df_net(err, sv->s.peer, "protocol error: TREE_HASHES of "
                      "%zu-byte hashes (the tree's are %zu)",
                      m->data_len / m->n, sv->tree.hlen);
    if (m->off != sv->walk_pos || m->n > w->n - sv->walk_pos)
        return df_net(err, sv->s.peer, "protocol error: TREE_HASHES for "
                      "nodes [%llu, +%u) (expected from %zu, %zu in the "
                      "round)", (unsigned long long)m->off, m->n,
                      sv->walk_pos, w->n);
    if (!sv->walk_bits &&
        !(sv->walk_bits = calloc((w->n + 7) / 8, 1)))
        return df_net(err, sv->s.peer, "out of memory");
    htree_walk_compare(w, sv->walk_pos, m->n, m->data, bits);
    for (uint32_t i = 0; i < m->n; i++)
        if (bits[i / 8] >> (i % 8) & 1) {
            size_t k = sv->walk_pos + i;
            sv->walk_bits[k / 8] |= (uint8_t)(1u << (k % 8));
        }
    /* The round's end first (with a record, its proof): its last bits
     * go out after it. */
    sv->walk_pos += m->n;
    if (sv->walk_pos == w->n && serve_tree_round(sv, err) < 0)
        return -1;
    msg_buf_init(&b);
    msg_enc_tree_nodes(&b, m->off, m->n, bits, ((size_t)m->n + 7) / 8);
    ret = session_send(&sv->s, MSG_TREE_BITS, &b, err);
    msg_buf_release(&b);
    return ret;
}

int serve_tree_changes(struct serve *sv, const struct msg *m,
                       struct df_error *err)
{
    if (!(sv->s.features & MSG_FEAT_CHANGES) || !sv->have_tree ||
        !sv->tree_from_record || sv->walk_over || sv->walk_pos)
        return df_net(err, sv->s.peer, "protocol error: TREE_CHANGES "
                      "without a record's tree to take them against");
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t off, len;
        msg_range(m, i, &off, &len, NULL);
        if (!len || off > sv->tree.size || len > sv->tree.size - off ||
            off < extent_list_end(&sv->tree_diff, 0) ||
            extent_list_append(&sv->tree_diff, off, len, EXT_DATA,
                               sv->path, err) != 0) {
            df_error_init(err);
            return df_net(err, sv->s.peer, "protocol error: bad changed "
                          "range [%llu, +%llu)", (unsigned long long)off,
                          (unsigned long long)len);
        }
    }
    if (!m->last)
        return 0;
    sv->walk_over = true;
    sv->tree_changes = true;
    if (serve_tree_prove(sv, err) < 0)
        return -1;
    return session_send(&sv->s, MSG_TREE_PROVED, NULL, err);
}

const struct extent_list *serve_tree_diff(const struct serve *sv)
{
    return sv->walk_over ? &sv->tree_diff : NULL;
}

void serve_tree_release(struct serve *sv)
{
    if (!sv->have_tree)
        return;
    htree_walk_release(&sv->walk);
    htree_release(&sv->tree);
    extent_list_release(&sv->tree_diff);
    free(sv->walk_bits);
    sv->walk_bits = NULL;
    sv->have_tree = false;
}
