/*
 * test_pipeline.c: the engine against an in-memory raw image and a
 * recording sink: every byte is delivered exactly once, in order (sink
 * contract 1), zero leaves become zero runs, the digest does not depend
 * on the thread count or unit size and equals the digest of the
 * delivered bytes; a failing sink stops the job with its error.
 *
 * Plans (opts.plan): a sparse source file, a destination holding the
 * source's bytes except in the changed ranges, change sources over
 * lists (with and without a leaf-hash provider) and used maps: the
 * copy verifies, reads exactly the leaves a brute-force classification
 * says, and never writes or zeroes a leaf the plan keeps.
 * Run under TSan as well (make check).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/job.h"
#include "engine/plan.h"
#include "test.h"

#define LEAF DIGEST_LEAF_SIZE

struct rec {
    uint8_t *disk;          /* what was delivered */
    uint64_t next;          /* contract 1: next expected offset */
    int order_errors;
    uint64_t written, zeroed;
    int fail_after;         /* fail the Nth write (0 = never) */
    int writes;
    bool parallel;          /* writes come from workers, any order */
    pthread_mutex_t lock;
};

static int rec_write(struct sink *s, uint64_t off, const void *buf,
                     size_t len, struct df_error *err)
{
    struct rec *r = s->priv;
    int ret = 0;
    pthread_mutex_lock(&r->lock);
    if (!r->parallel && off != r->next)
        r->order_errors++;
    if (r->fail_after && ++r->writes == r->fail_after) {
        ret = df_io(err, "rec", 5, "injected write failure");
    } else {
        memcpy(r->disk + off, buf, len);
        if (!r->parallel)
            r->next = off + len;
        r->written += len;
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

static int rec_zero(struct sink *s, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    struct rec *r = s->priv;
    (void)err;
    pthread_mutex_lock(&r->lock);
    if (!r->parallel && off != r->next)
        r->order_errors++;
    memset(r->disk + off, 0, len);
    if (!r->parallel)
        r->next = off + len;
    r->zeroed += len;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int rec_finish(struct sink *s, struct df_error *err)
{
    (void)s;
    (void)err;
    return 0;
}

static void rec_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops rec_ops = {
    .name = "rec", .write = rec_write, .zero = rec_zero,
    .finish = rec_finish, .free = rec_free,
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- plans ---- */

/* A change source over a list that also knows the hashes of the leaves
 * its list leaves out, from the source's own bytes. */
struct hashed_cs {
    struct change_source cs;
    struct change_source *list;
    const uint8_t *disk;
    uint64_t size;
    const uint8_t *named;       /* one flag per byte: in the list */
    bool provide;
    uint64_t next;              /* leaf_hash calls ascend */
    int order_errors;
    uint64_t answered;          /* leaves whose hash it gave */
};

static int hcs_changed(struct change_source *cs, uint64_t off, uint64_t len,
                       struct extent_list *out, struct df_error *err)
{
    struct hashed_cs *h = cs->priv;
    return h->list->changed(h->list, off, len, out, err);
}

static int hcs_leaf_hash(struct change_source *cs, enum digest_alg alg,
                         uint64_t off, uint8_t *out, struct df_error *err)
{
    struct hashed_cs *h = cs->priv;
    (void)err;
    if (off < h->next || off % LEAF || off >= h->size) {
        h->order_errors++;
        return 0;
    }
    h->next = off + LEAF;
    uint64_t end = off + LEAF < h->size ? off + LEAF : h->size;
    for (uint64_t x = off; x < end; x++)
        if (h->named[x])
            return 0;
    digest_leaf(alg, h->disk + off, (size_t)(end - off), out);
    h->answered++;
    return 1;
}

static void hcs_close(struct change_source *cs)
{
    struct hashed_cs *h = cs->priv;
    change_source_close(h->list);
}

/* A sink that notes every byte written or zeroed and passes it on. */
struct wrap {
    struct sink *inner;
    uint8_t *touched;
    pthread_mutex_t lock;
};

static void wrap_note(struct wrap *w, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&w->lock);
    memset(w->touched + off, 1, len);
    pthread_mutex_unlock(&w->lock);
}

static int wrap_write(struct sink *s, uint64_t off, const void *buf,
                      size_t len, struct df_error *err)
{
    struct wrap *w = s->priv;
    wrap_note(w, off, len);
    return w->inner->ops->write(w->inner, off, buf, len, err);
}

static int wrap_zero(struct sink *s, uint64_t off, uint64_t len,
                     struct df_error *err)
{
    struct wrap *w = s->priv;
    wrap_note(w, off, len);
    return w->inner->ops->zero(w->inner, off, len, err);
}

static int wrap_finish(struct sink *s, struct df_error *err)
{
    struct wrap *w = s->priv;
    return w->inner->ops->finish(w->inner, err);
}

static int wrap_digest(struct sink *s, uint64_t size, enum digest_alg alg,
                       unsigned threads, struct digest *out,
                       struct df_error *err)
{
    struct wrap *w = s->priv;
    return w->inner->ops->digest(w->inner, size, alg, threads, out, err);
}

static const struct sink_ops wrap_ops = {
    .name = "wrap", .write = wrap_write, .zero = wrap_zero,
    .finish = wrap_finish, .digest = wrap_digest, .free = rec_free,
};

/* One planned copy and its brute-force expectations. */
struct plan_case {
    const uint8_t *disk;        /* the source's bytes */
    uint64_t size;
    const char *src_path;       /* a sparse file holding them */
    const char *dst_path;       /* scratch */
    const struct extent_list *changes;
    size_t nchanges;
    const struct extent_list *used;     /* or NULL */
    bool provide;               /* change sources know leaf hashes */
    unsigned threads;
    uint64_t unit;
    struct digest full;         /* engine_digest of the source */
};

static void mark(uint8_t *flags, const struct extent_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        memset(flags + l->v[i].off, 1, l->v[i].len);
}

static void run_plan_case(const struct plan_case *c)
{
    struct df_error err;
    uint64_t size = c->size, nleaves = (size + LEAF - 1) / LEAF;
    uint8_t *hole = calloc(1, size), *changed = malloc(size);
    uint8_t *used = malloc(size), *touched = calloc(1, size);
    uint8_t *named[4] = { NULL };
    uint8_t *back = malloc(size);
    struct image_open_opts ro = { .format = "raw" };
    struct image_open_opts rw = { .format = "raw", .writable = true };
    struct image *src = NULL, *dst = NULL;

    df_error_init(&err);
    CHECK(image_open(c->src_path, &ro, &src, &err) == 0);

    /* Brute force: the state of every byte, then of every leaf. */
    struct extent_list map;
    extent_list_init(&map, EXTENT_LIST_DEFAULT_CAP);
    CHECK(image_map(src, 0, size, &map, &err) == 0);
    for (size_t i = 0; i < map.n; i++)
        if (map.v[i].state != EXT_DATA)
            memset(hole + map.v[i].off, 1, map.v[i].len);
    extent_list_release(&map);
    memset(changed, 1, size);
    for (size_t k = 0; k < c->nchanges; k++) {
        named[k] = calloc(1, size);
        mark(named[k], &c->changes[k]);
        for (uint64_t x = 0; x < size; x++)
            changed[x] &= named[k][x];
    }
    memset(used, 1, size);
    if (c->used) {
        memset(used, 0, size);
        mark(used, c->used);
    }
    uint64_t want_read = 0, want_unch = 0, want_free = 0, want_skip = 0;
    uint64_t want_digest_read = 0;
    uint8_t *keep = calloc(1, nleaves);
    uint8_t *freed = calloc(1, nleaves);
    /* What DST holds after the copy: the source, zeros in free leaves. */
    uint8_t *want_dst = malloc(size);
    memcpy(want_dst, c->disk, size);
    for (uint64_t l = 0; l < nleaves; l++) {
        uint64_t a = l * LEAF, b = a + LEAF < size ? a + LEAF : size;
        /* The leaf's bits, as pipeline.c leaf_state() reads them: data
         * a used map leaves out is free, changed or not (plan.h). */
        bool any_data = false, any_zero = false, any_free = false;
        bool any_unch = false;  /* the rest: unchanged, known zero */
        for (uint64_t x = a; x < b; x++) {
            if (!hole[x] && !used[x])
                any_free = true;
            else if (!changed[x] && hole[x])
                continue;
            else if (!changed[x])
                any_unch = true;
            else if (hole[x])
                any_zero = true;
            else
                any_data = true;
        }
        if (any_data || (any_unch && any_zero)) {
            want_read += b - a;
        } else if (any_unch) {
            keep[l] = 1;
            want_unch += b - a;
            bool known = false;
            for (size_t k = 0; c->provide && k < c->nchanges && !known;
                 k++) {
                known = true;
                for (uint64_t x = a; x < b; x++)
                    if (named[k][x])
                        known = false;
            }
            if (!known)
                want_digest_read += b - a;
        } else if (any_free) {
            /* zeroed on DST but where a change source knows it is zero
             * there already (the source leaf is all zero, unnamed) */
            freed[l] = 1;
            want_free += b - a;
            memset(want_dst + a, 0, b - a);
            bool zero = true;
            for (uint64_t x = a; x < b && zero; x++)
                zero = !c->disk[x];
            for (size_t k = 0; zero && c->provide && k < c->nchanges;
                 k++) {
                bool unnamed = true;
                for (uint64_t x = a; x < b; x++)
                    if (named[k][x])
                        unnamed = false;
                if (unnamed) {
                    keep[l] = 1;
                    break;
                }
            }
        } else if (any_zero) {
            want_skip += b - a;
        } else {
            keep[l] = 1;        /* unchanged and known zero */
            want_unch += b - a;
        }
    }
    /* The digest: the source's, free leaves as zeros. */
    struct digest want_digest;
    {
        char mpath[64];
        snprintf(mpath, sizeof(mpath), "%s.m", c->dst_path);
        FILE *mf = fopen(mpath, "w");
        CHECK(mf && fwrite(want_dst, 1, size, mf) == size);
        fclose(mf);
        struct image *mi = NULL;
        struct job_opts mo;
        job_opts_init(&mo);
        CHECK(image_open(mpath, &ro, &mi, &err) == 0);
        CHECK(engine_digest(mi, &mo, &want_digest, NULL, &err) == 0);
        image_close(mi);
        unlink(mpath);
    }

    /* The destination: the source's bytes, garbage where changed or
     * free (free leaves are zeroed, whatever DST held). */
    memcpy(back, c->disk, size);
    for (uint64_t x = 0; x < size; x++)
        if (changed[x] || (!hole[x] && !used[x]))
            back[x] = (uint8_t)(0xa5 ^ x);
    /* ... but a leaf the plan keeps holds what it should */
    for (uint64_t l = 0; l < nleaves; l++)
        if (keep[l]) {
            uint64_t a = l * LEAF, b = a + LEAF < size ? a + LEAF : size;
            memcpy(back + a, want_dst + a, b - a);
        }
    FILE *f = fopen(c->dst_path, "w");
    CHECK(f && fwrite(back, 1, size, f) == size);
    fclose(f);
    CHECK(image_open(c->dst_path, &rw, &dst, &err) == 0);

    struct hashed_cs hcs[4];
    struct change_source *csv[4];
    for (size_t k = 0; k < c->nchanges; k++) {
        hcs[k] = (struct hashed_cs){
            .cs = { .name = "list", .priv = &hcs[k],
                    .changed = hcs_changed, .close = hcs_close },
            .disk = c->disk, .size = size, .named = named[k],
        };
        if (c->provide)
            hcs[k].cs.leaf_hash = hcs_leaf_hash;
        hcs[k].list = change_source_from_list("list", &c->changes[k], &err);
        CHECK(hcs[k].list != NULL);
        csv[k] = &hcs[k].cs;
    }
    struct used_map *umv[1] = { NULL };
    if (c->used) {
        umv[0] = used_map_from_list("used", c->used, &err);
        CHECK(umv[0] != NULL);
    }
    struct plan_inputs in = { .changes = csv, .nchanges = c->nchanges,
                              .used = umv, .nused = c->used ? 1 : 0 };
    struct sink *inner = sink_image_new(dst, false, &err);
    CHECK(inner != NULL);
    struct wrap w = { .inner = inner, .touched = touched,
                      .lock = PTHREAD_MUTEX_INITIALIZER };
    struct sink s = { .ops = &wrap_ops, .priv = &w, .size = size,
                      .parallel_write = inner->parallel_write };
    struct job_opts o;
    struct job_stats st;
    job_opts_init(&o);
    o.threads = c->threads;
    o.unit = c->unit;
    o.plan = &in;
    memset(&st, 0, sizeof(st));
    int rc = engine_copy(src, &s, &o, &st, &err);
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "engine_copy: %s\n", err.msg);
    CHECK(st.verified);
    CHECK(!memcmp((c->used ? &want_digest : &c->full)->bytes,
                  st.src_digest.bytes, c->full.len));
    CHECK(st.bytes_read == want_read);
    CHECK(st.bytes_unchanged == want_unch);
    CHECK(st.bytes_free == want_free);
    CHECK(st.skipped_unallocated == want_skip);
    CHECK(st.bytes_read_for_digest == want_digest_read);
    if (st.bytes_read != want_read || st.bytes_read_for_digest !=
                                          want_digest_read)
        fprintf(stderr, "read %llu want %llu, for digest %llu want %llu\n",
                (unsigned long long)st.bytes_read,
                (unsigned long long)want_read,
                (unsigned long long)st.bytes_read_for_digest,
                (unsigned long long)want_digest_read);
    /* Nothing written or zeroed in a kept leaf; all the rest covered. */
    int bad_touch = 0, untouched = 0;
    for (uint64_t x = 0; x < size; x++) {
        if (keep[x / LEAF] && touched[x])
            bad_touch++;
        if (!keep[x / LEAF] && !touched[x])
            untouched++;
    }
    CHECK(bad_touch == 0);
    CHECK(untouched == 0);
    for (size_t k = 0; k < c->nchanges; k++) {
        CHECK(hcs[k].order_errors == 0);
        change_source_close(&hcs[k].cs);
    }
    used_map_close(umv[0]);
    sink_free(inner);
    image_close(dst);
    f = fopen(c->dst_path, "r");
    CHECK(f && fread(back, 1, size, f) == size);
    fclose(f);
    CHECK(!memcmp(back, want_dst, size));
    for (uint64_t x = 0; x < size; x++)
        if (back[x] != want_dst[x]) {
            fprintf(stderr, "first difference at %llu (leaf %llu, keep %d, "
                    "changed %d touched %d hole %d)\n", (unsigned long long)x,
                    (unsigned long long)(x / LEAF), keep[x / LEAF],
                    changed[x], touched[x], hole[x]);
            break;
        }
    image_close(src);
    for (size_t k = 0; k < 4; k++)
        free(named[k]);
    free(keep);
    free(freed);
    free(want_dst);
    free(hole);
    free(changed);
    free(used);
    free(touched);
    free(back);
}

/* A sparse source file: leaves of holes, of data, or of 4 KiB blocks
 * of data, of zeros written, or holes. */
static uint8_t *make_source(const char *path, uint64_t size, uint64_t *seed)
{
    uint8_t *disk = calloc(1, size);
    FILE *f = fopen(path, "w");
    unsigned leaf_kind = 0;
    CHECK(f != NULL);
    for (uint64_t b = 0; b < size; b += 4096) {
        uint64_t n = size - b < 4096 ? size - b : 4096;
        if (b % LEAF == 0)
            leaf_kind = (unsigned)(rnd(seed) % 4);
        unsigned kind = leaf_kind == 0 ? 0 : leaf_kind == 1 ? 9
                      : (unsigned)(rnd(seed) % 10);
        if (kind < 3)
            continue;                           /* a hole */
        if (kind >= 5)
            for (uint64_t i = 0; i < n; i++)
                disk[b + i] = (uint8_t)rnd(seed);
        CHECK(fseek(f, (long)b, SEEK_SET) == 0);
        CHECK(fwrite(disk + b, 1, n, f) == n);
    }
    CHECK(ftruncate(fileno(f), (off_t)size) == 0);
    fclose(f);
    return disk;
}

static void random_ranges(struct extent_list *l, uint64_t size,
                          uint64_t *seed)
{
    struct df_error err;
    df_error_init(&err);
    extent_list_clear(l);
    unsigned shape = (unsigned)(rnd(seed) % 8);
    if (shape == 0)
        return;                                 /* nothing changed */
    if (shape == 1) {
        CHECK(extent_list_append(l, 0, size, EXT_DATA, "t", &err) == 0);
        return;
    }
    uint64_t pos = rnd(seed) % (size / 4);
    while (pos < size) {
        uint64_t len = 1 + rnd(seed) % (rnd(seed) % 2 ? 3 * LEAF : 9000);
        if (len > size - pos)
            len = size - pos;
        CHECK(extent_list_append(l, pos, len, EXT_DATA, "t", &err) == 0);
        pos += len + 1 + rnd(seed) % (4 * LEAF);
    }
}

static void test_plans(void)
{
    char src_path[] = "/tmp/test_pipeline_srcXXXXXX";
    char dst_path[] = "/tmp/test_pipeline_dstXXXXXX";
    int sfd = mkstemp(src_path), dfd = mkstemp(dst_path);
    const uint64_t size = 9 * LEAF + 5000;
    uint64_t seed = 7;
    struct df_error err;
    struct extent_list ch[3], used;
    struct image_open_opts ro = { .format = "raw" };
    struct image *img = NULL;

    CHECK(sfd >= 0 && dfd >= 0);
    close(sfd);
    close(dfd);
    df_error_init(&err);
    for (size_t k = 0; k < 3; k++)
        extent_list_init(&ch[k], 4096);
    extent_list_init(&used, 4096);

    uint8_t *disk = make_source(src_path, size, &seed);
    struct plan_case c = { .disk = disk, .size = size,
                           .src_path = src_path, .dst_path = dst_path,
                           .changes = ch, .nchanges = 1, .threads = 3,
                           .unit = 2 * LEAF };
    struct job_opts o;
    job_opts_init(&o);
    CHECK(image_open(src_path, &ro, &img, &err) == 0);
    CHECK(engine_digest(img, &o, &c.full, NULL, &err) == 0);

    /* Fixed: a change inside one leaf, one across a leaf boundary, the
     * short last leaf; with and without the provider. */
    CHECK(extent_list_append(&ch[0], 3 * LEAF + 100, 10, EXT_DATA, "t",
                             &err) == 0);
    CHECK(extent_list_append(&ch[0], 6 * LEAF - 7, 20, EXT_DATA, "t",
                             &err) == 0);
    CHECK(extent_list_append(&ch[0], 9 * LEAF + 4000, 3, EXT_DATA, "t",
                             &err) == 0);
    for (int prov = 0; prov < 2; prov++) {
        c.provide = prov;
        run_plan_case(&c);
    }

    /* A stream takes no plan. */
    struct plan_inputs in = { 0 };
    struct rec r = { .disk = disk, .lock = PTHREAD_MUTEX_INITIALIZER };
    struct sink s = { .ops = &rec_ops, .priv = &r };
    struct df_file f;
    struct job_stats st;
    memset(&st, 0, sizeof(st));
    df_file_init_mem(&f, "stdin", disk, size);
    o.plan = &in;
    CHECK(engine_copy_stream(&f, &s, &o, &st, &err) == -1);
    CHECK(err.cat == DF_USAGE && strstr(err.msg, "stream") != NULL);
    CHECK(r.written == 0 && r.zeroed == 0);
    o.plan = NULL;
    df_error_init(&err);

    /* A change source never keeps ranges of a new (all zero)
     * destination: refused before anything is read or delivered.  A
     * used map alone may (free blocks stay zero). */
    {
        struct extent_list done;
        struct resume_plan rp;
        extent_list_init(&done, 4);
        CHECK(extent_list_append(&done, 0, 4 * LEAF, EXT_DATA, "t",
                                 &err) == 0);
        CHECK(resume_plan_init(&rp, size, &done, &err) == 0);
        CHECK(resume_plan_get(&rp) != NULL && rp.kept == 4 * LEAF);
        struct sink zs = { .ops = &rec_ops, .priv = &r, .size = size,
                           .dst_is_zero = true };
        o.plan = resume_plan_get(&rp);
        memset(&st, 0, sizeof(st));
        CHECK(engine_copy(img, &zs, &o, &st, &err) == -1);
        CHECK(err.cat == DF_REFUSED && strstr(err.msg, "new destination"));
        CHECK(r.written == 0 && r.zeroed == 0 && st.bytes_read == 0);
        o.plan = NULL;
        df_error_init(&err);
        resume_plan_release(&rp);
        CHECK(resume_plan_init(&rp, size, NULL, &err) == 0);
        CHECK(resume_plan_get(&rp) == NULL);
        resume_plan_release(&rp);
        extent_list_release(&done);
    }

    /* Random change lists (one to three sources), used maps, threads
     * and units, against the brute force of run_plan_case. */
    for (unsigned t = 0; t < 200; t++) {
        if (t % 50 == 49) {     /* a new source now and then */
            free(disk);
            image_close(img);
            disk = make_source(src_path, size, &seed);
            c.disk = disk;
            CHECK(image_open(src_path, &ro, &img, &err) == 0);
            CHECK(engine_digest(img, &o, &c.full, NULL, &err) == 0);
        }
        c.nchanges = 1 + (size_t)(rnd(&seed) % 3);
        for (size_t k = 0; k < c.nchanges; k++)
            random_ranges(&ch[k], size, &seed);
        c.used = NULL;
        if (rnd(&seed) % 3 == 0) {
            random_ranges(&used, size, &seed);
            c.used = &used;
        }
        c.provide = rnd(&seed) % 2;
        c.threads = 1 + (unsigned)(rnd(&seed) % 4);
        uint64_t units[] = { LEAF, 3 * LEAF, JOB_DEFAULT_UNIT };
        c.unit = units[rnd(&seed) % 3];
        run_plan_case(&c);
    }
    image_close(img);
    free(disk);
    for (size_t k = 0; k < 3; k++)
        extent_list_release(&ch[k]);
    extent_list_release(&used);
    unlink(src_path);
    unlink(dst_path);
}

int main(void)
{
    const size_t size = 37 * LEAF + 1234;
    uint8_t *disk = calloc(1, size);
    uint8_t *out = malloc(size);
    uint64_t seed = 42;
    struct digest first = { 0 };

    /* Data leaves, zero leaves, and leaves with a single byte set. */
    for (size_t leaf = 0; leaf * LEAF < size; leaf++) {
        size_t n = size - leaf * LEAF < LEAF ? size - leaf * LEAF : LEAF;
        switch (rnd(&seed) % 3) {
        case 0:
            for (size_t i = 0; i < n; i++)
                disk[leaf * LEAF + i] = (uint8_t)rnd(&seed);
            break;
        case 1:
            disk[leaf * LEAF + rnd(&seed) % n] = 1;
            break;
        default:
            break;
        }
    }
    unsigned threads[] = { 1, 2, 3, 8 };
    uint64_t units[] = { LEAF, 3 * LEAF, JOB_DEFAULT_UNIT };
    for (size_t t = 0; t < 4; t++) {
        for (size_t u = 0; u < 6; u++) {
            bool par = u >= 3;
            struct df_file f;
            struct image *img = NULL;
            struct df_error err;
            struct image_open_opts oo = { .format = "raw" };
            struct rec r = { .disk = out, .parallel = par,
                             .lock = PTHREAD_MUTEX_INITIALIZER };
            struct sink s = { .ops = &rec_ops, .priv = &r,
                              .parallel_write = par };
            struct job_opts o;
            struct job_stats st;

            df_error_init(&err);
            memset(&st, 0, sizeof(st));
            memset(out, 0xee, size);
            df_file_init_mem(&f, "mem", disk, size);
            CHECK(image_open_file(&f, "mem", "mem", &oo, &img, &err) == 0);
            job_opts_init(&o);
            o.threads = threads[t];
            o.unit = units[u % 3];
            o.verify = false;
            CHECK(engine_copy(img, &s, &o, &st, &err) == 0);
            CHECK(r.order_errors == 0);
            CHECK(r.parallel || r.next == size);
            CHECK(!memcmp(out, disk, size));
            CHECK(st.disk_size == size);
            CHECK(st.bytes_written == r.written);
            CHECK(st.skipped_zero == r.zeroed);
            CHECK(r.zeroed > 0 && r.written > 0);
            if (!first.len)
                first = st.src_digest;
            CHECK(!memcmp(first.bytes, st.src_digest.bytes, first.len));

            /* The digest of the delivered bytes is the same. */
            struct digest d2;
            struct image *img2 = NULL;
            df_file_init_mem(&f, "out", out, size);
            CHECK(image_open_file(&f, "out", "out", &oo, &img2, &err) == 0);
            CHECK(engine_digest(img2, &o, &d2, NULL, &err) == 0);
            CHECK(!memcmp(first.bytes, d2.bytes, first.len));
            image_close(img2);

            /* A failing sink stops the job with its error. */
            struct rec r2 = { .disk = out, .fail_after = 2, .parallel = par,
                              .lock = PTHREAD_MUTEX_INITIALIZER };
            s.priv = &r2;
            memset(&st, 0, sizeof(st));
            CHECK(engine_copy(img, &s, &o, &st, &err) == -1);
            CHECK(err.cat == DF_IO && strstr(err.msg, "injected"));
            image_close(img);
        }
    }
    free(disk);
    free(out);
    test_plans();
    return test_result("pipeline");
}
