/*
 * test_apply.c: engine/apply.c, the writer both ends of a session
 * share: ranges reach the sink, the resume journal lists a range only
 * after the sink was flushed with it (journal.h invariant 1), commits
 * come at the byte threshold, a failed write is not noted; and the
 * read-back that ends a copy (engine_verify_sink).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/apply.h"
#include "test.h"

struct rec {
    const char *jpath;
    uint64_t applied;       /* bytes the sink accepted */
    uint64_t flushed;       /* of which the last finish() covered */
    unsigned finishes;
    bool listed_early;      /* the journal listed more than was flushed */
    bool fail_next;
    uint8_t digest;         /* what digest() says the destination is */
};

static uint64_t listed(const char *jpath)
{
    struct extent_list l;
    struct df_error err;
    uint64_t n = 0;
    extent_list_init(&l, 1000);
    df_error_init(&err);
    if (rjournal_load(AT_FDCWD, jpath, 64ull << 20, 7, &l, NULL, &err) == 0)
        n = extent_list_bytes(&l, EXT_DATA);
    extent_list_release(&l);
    return n;
}

static int rec_write(struct sink *s, uint64_t off, const void *buf,
                     size_t len, struct df_error *err)
{
    struct rec *r = s->priv;
    (void)off;
    (void)buf;
    if (r->fail_next) {
        r->fail_next = false;
        return df_io(err, "dst", 5, "write failed");
    }
    r->applied += len;
    s->bytes_written += len;
    return 0;
}

static int rec_zero(struct sink *s, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    struct rec *r = s->priv;
    (void)off;
    (void)err;
    r->applied += len;
    return 0;
}

static int rec_finish(struct sink *s, struct df_error *err)
{
    struct rec *r = s->priv;
    (void)err;
    r->finishes++;
    /* invariant 1: when the flush comes, the journal lists nothing it
     * did not cover before */
    if (listed(r->jpath) > r->flushed)
        r->listed_early = true;
    r->flushed = r->applied;
    return 0;
}

static int rec_digest(struct sink *s, uint64_t size, enum digest_alg alg,
                      unsigned threads, struct digest *out,
                      struct df_error *err)
{
    struct rec *r = s->priv;
    (void)size;
    (void)threads;
    (void)err;
    out->alg = alg;
    out->len = 16;
    memset(out->bytes, r->digest, out->len);
    return 0;
}

static void rec_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops rec_ops = {
    .name = "rec", .write = rec_write, .zero = rec_zero,
    .finish = rec_finish, .digest = rec_digest, .free = rec_free,
};

static void test_apply_journal(void)
{
    char jpath[] = "/tmp/test_apply_journalXXXXXX";
    char dpath[] = "/tmp/test_apply_dstXXXXXX";
    int jfd = mkstemp(jpath), dfd = mkstemp(dpath);
    struct rec r = {.jpath = jpath};
    struct sink k = {.ops = &rec_ops, .priv = &r, .size = 64ull << 20};
    struct rjournal j;
    struct apply a;
    struct df_error err;
    struct df_file dst;
    uint8_t buf[4096];
    close(jfd);
    close(dfd);
    unlink(jpath);
    memset(buf, 0xab, sizeof(buf));
    df_error_init(&err);
    CHECK(df_file_open(&dst, dpath, O_RDWR, &err) == 0);
    CHECK(rjournal_open(&j, AT_FDCWD, jpath, 64ull << 20, 7, &dst, false,
                        &err) == 0);
    apply_init(&a, &k, &j);
    /* below the thresholds: applied, noted, not committed */
    CHECK(apply_range(&a, 0, sizeof(buf), buf, &err) == 0);
    CHECK(apply_range(&a, 4096, 4096, NULL, &err) == 0);
    CHECK(r.applied == 8192 && a.bytes == 8192 && r.finishes == 0);
    CHECK(j.npend > 0 && listed(jpath) == 0);
    /* a failed write is not noted */
    unsigned npend = j.npend;
    r.fail_next = true;
    CHECK(apply_range(&a, 8192, sizeof(buf), buf, &err) < 0 &&
          err.cat == DF_IO);
    df_error_init(&err);
    CHECK(j.npend == npend && a.bytes == 8192);
    /* the byte threshold: flushed, then recorded */
    CHECK(apply_range(&a, 8192, APPLY_COMMIT_BYTES, NULL, &err) == 0);
    CHECK(r.finishes == 1 && !r.listed_early && j.npend == 0);
    CHECK(listed(jpath) == 8192 + APPLY_COMMIT_BYTES);
    /* the end: flushed and committed */
    CHECK(apply_range(&a, 8192 + APPLY_COMMIT_BYTES, 4096, buf, &err) == 0);
    CHECK(apply_finish(&a, &err) == 0);
    CHECK(r.finishes == 2 && !r.listed_early);
    CHECK(listed(jpath) == 12288 + APPLY_COMMIT_BYTES);
    /* nothing pending: apply_commit does not flush */
    CHECK(apply_commit(&a, &err) == 0 && r.finishes == 2);
    rjournal_close(&j);
    df_file_close(&dst);
    unlink(jpath);
    unlink(dpath);

    /* without a journal: written, never committed; finish still flushes */
    memset(&r, 0, sizeof(r));
    r.jpath = jpath;
    apply_init(&a, &k, NULL);
    CHECK(apply_range(&a, 0, APPLY_COMMIT_BYTES, NULL, &err) == 0);
    CHECK(r.finishes == 0 && apply_finish(&a, &err) == 0 &&
          r.finishes == 1);
}

/* Leaf hashes (apply.h, journal.h invariant 7): a leaf covered whole by
 * contiguous ranges with data is hashed and recorded with its range;
 * one with a gap, or only zeroed, is not; a hash whose leaf the loaded
 * ranges do not cover whole, or on a torn line, is never used. */
static void test_apply_leaf_hashes(void)
{
    const uint64_t L = DIGEST_LEAF_SIZE, size = 5 * L + 1000;
    char jpath[] = "/tmp/test_apply_leavesXXXXXX";
    char dpath[] = "/tmp/test_apply_ldstXXXXXX";
    int jfd = mkstemp(jpath), dfd = mkstemp(dpath);
    struct rec r = {.jpath = jpath};
    struct sink k = {.ops = &rec_ops, .priv = &r, .size = size};
    struct rjournal j;
    struct rjournal_leaves lv;
    struct apply a;
    struct df_error err;
    struct df_file dst;
    struct extent_list done;
    uint8_t *disk = malloc(size), h[DIGEST_MAX_LEN];
    close(jfd);
    close(dfd);
    unlink(jpath);
    CHECK(disk != NULL);
    for (uint64_t i = 0; i < size; i++)
        disk[i] = (uint8_t)(i * 7 + i / 251);
    memset(disk + 2 * L, 0, L);
    df_error_init(&err);
    extent_list_init(&done, 100);
    CHECK(df_file_open(&dst, dpath, O_RDWR, &err) == 0);
    CHECK(rjournal_open(&j, AT_FDCWD, jpath, size, 7, &dst, false,
                        &err) == 0);
    apply_init(&a, &k, &j);
    a.hash_leaves = true;
    CHECK(apply_range(&a, 0, L + 100, disk, &err) == 0);     /* 0 whole */
    CHECK(apply_range(&a, L + 100, L - 100, disk + L + 100, &err) == 0);
    CHECK(apply_range(&a, 2 * L, L, NULL, &err) == 0);      /* zeroed */
    CHECK(apply_range(&a, 3 * L + 10, L - 10, disk + 3 * L + 10,
                      &err) == 0);                          /* a gap */
    CHECK(apply_range(&a, 4 * L, L + 1000, disk + 4 * L, &err) == 0);
    CHECK(apply_finish(&a, &err) == 0);
    CHECK(rjournal_load(AT_FDCWD, jpath, size, 7, &done, NULL, &err) == 0);
    CHECK(rjournal_leaves(&j, size, &done, &lv, &err) == 0);
    const uint64_t want[] = {0, 1, 4, 5};
    CHECK(lv.n == 4);
    for (size_t i = 0; i < lv.n && i < 4; i++) {
        uint64_t off = want[i] * L, len = size - off < L ? size - off : L;
        digest_leaf(RJOURNAL_HASH_ALG, disk + off, (size_t)len, h);
        CHECK(lv.v[i].leaf == want[i]);
        CHECK(!memcmp(lv.v[i].hash, h, RJOURNAL_HASH_LEN));
    }
    rjournal_leaves_release(&lv);

    /* Loaded ranges that cover leaf 1 only in part: its hash is not
     * used; a torn line at the end is not read. */
    extent_list_clear(&done);
    CHECK(extent_list_append(&done, 0, L + 5, EXT_DATA, "t", &err) == 0);
    FILE *f = fopen(jpath, "a");
    CHECK(f != NULL);
    fputs("h 2 00112233445566778899aabbccddeeff\nh 3 0011", f);
    fclose(f);
    CHECK(rjournal_leaves(&j, size, &done, &lv, &err) == 0);
    CHECK(lv.n == 1 && lv.v[0].leaf == 0);
    rjournal_leaves_release(&lv);
    extent_list_clear(&done);
    CHECK(extent_list_append(&done, 0, size, EXT_DATA, "t", &err) == 0);
    CHECK(rjournal_leaves(&j, size, &done, &lv, &err) == 0);
    CHECK(lv.n == 5 && lv.v[2].leaf == 2 && lv.v[3].leaf == 4);
    rjournal_leaves_release(&lv);
    /* the ranges still load past the hash lines */
    extent_list_clear(&done);
    CHECK(rjournal_load(AT_FDCWD, jpath, size, 7, &done, NULL, &err) == 0);
    CHECK(extent_list_bytes(&done, EXT_DATA) == size - 10);

    rjournal_close(&j);
    df_file_close(&dst);
    extent_list_release(&done);
    free(disk);
    unlink(jpath);
    unlink(dpath);
}

static void test_verify_sink(void)
{
    struct rec r = {.digest = 5};
    struct sink k = {.ops = &rec_ops, .priv = &r, .size = 4096,
                     .name = "dst"};
    struct job_opts o;
    struct job_stats st;
    struct df_error err;
    df_error_init(&err);
    job_opts_init(&o);
    o.verify = true;
    o.digest = DIGEST_XXH128;
    memset(&st, 0, sizeof(st));
    st.disk_size = 4096;
    st.src_digest.alg = DIGEST_XXH128;
    st.src_digest.len = 16;
    memset(st.src_digest.bytes, 5, 16);
    CHECK(engine_verify_sink(&k, &o, &st, &err) == 0 && st.verified);
    r.digest = 6;
    st.verified = false;
    CHECK(engine_verify_sink(&k, &o, &st, &err) < 0 &&
          err.cat == DF_VERIFY && !st.verified &&
          strstr(err.msg, "verification failed: destination digest "
                 "differs from the source's"));
    df_error_init(&err);
    o.verify = false;
    CHECK(engine_verify_sink(&k, &o, &st, &err) == 0 && !st.verified);
}

int main(void)
{
    test_apply_journal();
    test_apply_leaf_hashes();
    test_verify_sink();
    return test_result("apply");
}
