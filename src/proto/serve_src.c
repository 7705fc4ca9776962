/*
 * serve_src.c: the source side of serve (OPEN_SRC until DONE): the
 * engine reads the source here and a sink sends what it delivers
 * (through the ordered sender); what the client holds already
 * (RESUME_RANGES) is the engine's plan (engine/plan.h, resume_plan):
 * neither read nor sent, but to hash it for the digest.  MAP_REQ
 * answers what is where.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress.h"
#include "engine/job.h"
#include "engine/plan.h"
#include "safety/safety.h"
#include "sender.h"
#include "serve_int.h"
#include "transport/bwlimit.h"
#include "util/overflow.h"

#define SERVE_MAX_BLOCK (1u << 20)
#define SERVE_MAP_MAX 65536

/* ---- source: the engine reads, this sink sends ---- */

struct serve_src_sink {
    struct sender *snd;
};

static int serve_src_write(struct sink *s, uint64_t off, const void *buf,
                           size_t len, struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    s->bytes_written += len;
    return sender_write(ss->snd, off, buf, len, err);
}

static int serve_src_zero(struct sink *s, uint64_t off, uint64_t len,
                          struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    return sender_zero(ss->snd, MSG_ZERO, off, len, err);
}

static int serve_src_finish(struct sink *s, struct df_error *err)
{
    struct serve_src_sink *ss = s->priv;
    return sender_drain(ss->snd, err);
}

static void serve_src_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops serve_src_ops = {
    .name = "remote-stream",
    .write = serve_src_write,
    .zero = serve_src_zero,
    .finish = serve_src_finish,
    .free = serve_src_free,
};

/*
 * Test hook (built only with meson -Dtesting=true): DF_TEST_SERVE_STATS
 * names a file to which serve appends what its engine read for the
 * stream ("bytes_read=N bytes_read_for_digest=M"): the client's report
 * cannot show the far side's reads.
 */
static void serve_test_stats(const struct job_stats *st)
{
#ifdef DF_TESTING
    const char *path = getenv("DF_TEST_SERVE_STATS");
    FILE *f = path ? fopen(path, "ae") : NULL;
    if (f) {
        fprintf(f, "bytes_read=%llu bytes_read_for_digest=%llu\n",
                (unsigned long long)st->bytes_read,
                (unsigned long long)st->bytes_read_for_digest);
        fclose(f);
    }
#else
    (void)st;
#endif
}

static int serve_read_stream(struct serve *sv, const struct msg *rs,
                             struct df_error *err)
{
    struct comp_ctl ctl;
    struct serve_src_sink ss = {0};
    struct sink k = {0};
    struct job_opts jo;
    struct job_stats st;
    struct resume_plan rp;
    struct msg_buf b;
    struct change_source *tcs = NULL;   /* a sync's kept ranges */
    struct change_source *tcsv[1];
    struct plan_inputs tin = { .changes = tcsv, .nchanges = 1 };
    int ret = -1;
    msg_buf_init(&b);
    memset(&rp, 0, sizeof(rp));
    enum comp_mode mode = rs->comp == COMP_NONE   ? COMPRESS_NONE
                          : rs->comp == COMP_ZSTD ? COMPRESS_ZSTD
                          : rs->comp == COMP_LZ4  ? COMPRESS_LZ4
                                                  : COMPRESS_AUTO;
    comp_ctl_init(&ctl, mode, rs->level);
    if (rs->size && rs->size < 1024) {
        df_net(err, sv->s.peer, "protocol error: bwlimit of %llu bytes/s "
               "(at least 1024)", (unsigned long long)rs->size);
        goto out;
    }
    if (rs->size && !sv->s.bw && !sv->o->no_bwlimit) {  /* --bwlimit */
        sv->s.bw = bwlimit_new(rs->size);
        for (unsigned i = 0; i < sv->s.ndata; i++)
            sv->s.data_out[i]->bw = sv->s.bw;
    }
    unsigned cores = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    ss.snd = sender_new(sv->s.data_out, sv->s.ndata, &ctl, cores,
                        SERVE_MAX_BLOCK, 0, err);
    if (!ss.snd)
        goto out;
    pthread_mutex_lock(&sv->s.lock);
    sv->s.ack_sender = ss.snd;
    pthread_mutex_unlock(&sv->s.lock);
    k.ops = &serve_src_ops;
    k.priv = &ss;
    k.size = sv->img->size;
    snprintf(k.name, sizeof(k.name), "%s", sv->s.peer);
    job_opts_init(&jo);
    jo.verify = false;
    jo.threads = sv->o->threads;
    /* the digest the client asked for (READ_STREAM flags bits 0-7) */
    unsigned alg = rs->flags & 0xffu;
    if (alg == DIGEST_XXH128 || alg == DIGEST_SHA256)
        jo.digest = (enum digest_alg)alg;
    else if (alg) {
        df_net(err, sv->s.peer, "protocol error: digest algorithm %u", alg);
        goto out;
    }
    /* --resume: the client's partial file holds client_done (its journal,
     * re-checked there): only the rest is read and sent. */
    if (resume_plan_init(&rp, k.size, &sv->client_done, err) < 0)
        goto out;
    jo.plan = resume_plan_get(&rp);
    /* A sync's: after the walk, the leaves the client keeps are those
     * the tree says are the same on both sides: their hashes are the
     * tree's, not read again. */
    if (jo.plan && sv->walk_over && sv->tree.alg == jo.digest &&
        sv->tree.size == k.size) {
        if (!(tcs = change_source_missing_tree("compare", k.size,
                                               &sv->client_done,
                                               &sv->tree, err)))
            goto out;
        tcsv[0] = tcs;
        jo.plan = &tin;
    }
    memset(&st, 0, sizeof(st));
    if (engine_copy(sv->img, &k, &jo, &st, err) < 0)
        goto out;
    serve_test_stats(&st);
    msg_enc_digest(&b, MSG_STREAM_END, sender_next_seq(ss.snd),
                   (uint8_t)st.src_digest.alg, st.src_digest.bytes,
                   (uint8_t)st.src_digest.len);
    if (session_send(&sv->s, MSG_STREAM_END, &b, err) < 0)
        goto out;
    ret = 0;
out:
    pthread_mutex_lock(&sv->s.lock);
    sv->s.ack_sender = NULL;
    pthread_mutex_unlock(&sv->s.lock);
    sender_free(ss.snd);
    resume_plan_release(&rp);
    change_source_close(tcs);
    msg_buf_release(&b);
    return ret;
}

/* RESUME_RANGES from the client: ranges to leave out of the stream. */
static int serve_add_ranges(struct serve *sv, const struct msg *m,
                            struct df_error *err)
{
    struct extent_list *l = &sv->client_done;
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t off, len;
        msg_range(m, i, &off, &len, NULL);
        if (!len || !range_within(off, len, sv->img->size) ||
            extent_list_append(l, off, len, EXT_DATA, sv->path, err) != 0) {
            df_error_init(err);
            return df_net(err, sv->s.peer, "protocol error: bad resume "
                          "range");
        }
    }
    return 0;
}

/* MAP_REQ: what is where in [off, off+len) of the source, as the chain
 * resolves it (EXT_DATA / EXT_ZERO / EXT_HOLE); the reply may stop
 * short (SERVE_MAP_MAX extents): the client asks again from its end. */
static int serve_map(struct serve *sv, const struct msg *m,
                     struct df_error *err)
{
    struct extent_list l;
    struct msg_buf b;
    int ret = -1;
    extent_list_init(&l, SERVE_MAP_MAX);
    msg_buf_init(&b);
    if (!range_within(m->off, m->len, sv->img->size) || !m->len) {
        df_net(err, sv->s.peer, "protocol error: MAP_REQ [%llu, +%llu) "
               "outside the source (%llu bytes)",
               (unsigned long long)m->off, (unsigned long long)m->len,
               (unsigned long long)sv->img->size);
        goto out;
    }
    if (image_map(sv->img, m->off, m->len, &l, err) < 0)
        goto out;
    msg_enc_ranges(&b, &l, 0, l.n, true, true);
    ret = session_send(&sv->s, MSG_MAP_REPLY, &b, err);
out:
    msg_buf_release(&b);
    extent_list_release(&l);
    return ret;
}

/* TREE_REQ: the source's hash tree (serve_tree.c). */
static int serve_src_tree(struct serve *sv, const struct msg *m,
                          struct df_error *err)
{
    return serve_tree_req(sv, sv->img, m, err);
}

static const struct serve_handler serve_src_handlers[] = {
    {MSG_RESUME_RANGES, serve_add_ranges},
    {MSG_MAP_REQ, serve_map},
    {MSG_READ_STREAM, serve_read_stream},
    {MSG_TREE_REQ, serve_src_tree},
    {MSG_TREE_HASHES, serve_tree_hashes},
    {0, NULL},
};

/* The options tail of OPEN_SRC: --parent-dir, --parent, confined. */
struct serve_src_opts {
    char (*paths)[PATH_MAX];    /* resolved dirs and parents */
    const char *dirs[MSG_MAX_OPEN_OPTS];
    struct parent_override ov[MSG_MAX_OPEN_OPTS];
    size_t ndirs, nov;
};

static int serve_src_opts(struct serve *sv, const struct msg *m,
                          struct serve_src_opts *so,
                          struct image_open_opts *oo, struct df_error *err)
{
    char val[MSG_MAX_STR + 1];
    uint8_t kind;
    size_t pos = 0, n = 0;
    if (!m->n)
        return 0;
    so->paths = calloc(2 * (size_t)m->n, PATH_MAX);
    if (!so->paths)
        return df_net(err, sv->s.peer, "out of memory");
    while (msg_open_opt(m, &pos, &kind, val)) {
        if (kind == OPT_UNDO)
            return df_usage(err, "--undo applies to a destination");
        char *eq = kind == OPT_PARENT ? strchr(val, '=') : NULL;
        if (kind == OPT_PARENT && (!eq || eq == val || !eq[1]))
            return df_usage(err, "--parent: expected CHILD=PARENT");
        if (serve_confine(sv->o, eq ? eq + 1 : val, false, so->paths[n],
                          err) < 0)
            return -1;
        if (kind == OPT_PARENT_DIR) {
            so->dirs[so->ndirs++] = so->paths[n++];
        } else {
            *eq = '\0';        /* the child is a name to match, kept */
            snprintf(so->paths[n + 1], PATH_MAX, "%s", val);
            so->ov[so->nov].child = so->paths[n + 1];
            so->ov[so->nov++].parent = so->paths[n];
            n += 2;
        }
    }
    oo->parent_dirs = so->dirs;
    oo->n_parent_dirs = so->ndirs;
    oo->parent_overrides = so->ov;
    oo->n_parent_overrides = so->nov;
    return 0;
}

int serve_src(struct serve *sv, const struct msg *open,
              struct df_error *err)
{
    struct msg_buf b;
    struct image_open_opts oo = {.format = open->s1[0] ? open->s1 : NULL};
    struct serve_src_opts so;
    int ret = -1;
    msg_buf_init(&b);
    /* A source being written on this host (safety.h): refused unless
     * the client said --force-share; the warning goes to our stderr,
     * which ssh carries to the user. */
    struct safety_src_req sreq = {
        .cmd = "serve", .result = "copy",
        .force_share = open->flags & OPEN_FORCE_SHARE,
    };
    memset(&so, 0, sizeof(so));
    if (serve_confine(sv->o, open->s2, false, sv->path, err) < 0 ||
        serve_src_opts(sv, open, &so, &oo, err) < 0 ||
        image_open(sv->path, &oo, &sv->img, err) < 0)
        goto out;
    sreq.src = sv->img;
    if (safety_check_source(&sreq, err) < 0)
        goto out;
    msg_enc_opened(&b, 0, sv->img->size, image_format_name(sv->img), sv->path);
    if (session_send(&sv->s, MSG_OPENED, &b, err) < 0 ||
        session_start(&sv->s, err) < 0)
        goto out;
    ret = serve_loop(sv, serve_src_handlers, NULL, err);
out:
    msg_buf_release(&b);
    free(so.paths);
    return ret;
}
