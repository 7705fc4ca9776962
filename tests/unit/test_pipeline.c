/*
 * test_pipeline.c: the engine against an in-memory raw image and a
 * recording sink: every byte is delivered exactly once, in order (sink
 * contract 1), zero leaves become zero runs, the digest does not depend
 * on the thread count or unit size and equals the digest of the
 * delivered bytes; a failing sink stops the job with its error.
 * Run under TSan as well (make check).
 */
#include <string.h>

#include "engine/job.h"
#include "test.h"

#define LEAF DIGEST_LEAF_SIZE

struct rec {
    uint8_t *disk;          /* what was delivered */
    uint64_t next;          /* contract 1: next expected offset */
    int order_errors;
    uint64_t written, zeroed;
    int fail_after;         /* fail the Nth write (0 = never) */
    int writes;
};

static int rec_write(struct sink *s, uint64_t off, const void *buf,
                     size_t len, struct df_error *err)
{
    struct rec *r = s->priv;
    if (off != r->next)
        r->order_errors++;
    if (r->fail_after && ++r->writes == r->fail_after)
        return df_io(err, "rec", 5, "injected write failure");
    memcpy(r->disk + off, buf, len);
    r->next = off + len;
    r->written += len;
    return 0;
}

static int rec_zero(struct sink *s, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    struct rec *r = s->priv;
    (void)err;
    if (off != r->next)
        r->order_errors++;
    memset(r->disk + off, 0, len);
    r->next = off + len;
    r->zeroed += len;
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
        for (size_t u = 0; u < 3; u++) {
            struct df_file f;
            struct image *img = NULL;
            struct df_error err;
            struct image_open_opts oo = { .format = "raw" };
            struct rec r = { .disk = out };
            struct sink s = { .ops = &rec_ops, .priv = &r };
            struct job_opts o;
            struct job_stats st;

            df_error_init(&err);
            memset(&st, 0, sizeof(st));
            memset(out, 0xee, size);
            df_file_init_mem(&f, "mem", disk, size);
            CHECK(image_open_file(&f, "mem", "mem", &oo, &img, &err) == 0);
            job_opts_init(&o);
            o.threads = threads[t];
            o.unit = units[u];
            o.verify = false;
            CHECK(engine_copy(img, &s, &o, &st, &err) == 0);
            CHECK(r.order_errors == 0);
            CHECK(r.next == size);
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
            struct rec r2 = { .disk = out, .fail_after = 2 };
            s.priv = &r2;
            memset(&st, 0, sizeof(st));
            CHECK(engine_copy(img, &s, &o, &st, &err) == -1);
            CHECK(err.cat == DF_IO && strstr(err.msg, "injected"));
            image_close(img);
        }
    }
    free(disk);
    free(out);
    return test_result("pipeline");
}
