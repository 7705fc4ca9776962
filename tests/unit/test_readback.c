/*
 * test_readback.c: engine/readback.c, the read-back taken behind the
 * writes.  A writer thread writes a raw file in ascending ranges (data,
 * holes left as they are, ranges that end inside a leaf, a gap nothing
 * writes) and tells each; the digest it gives is the one engine_digest
 * takes of the finished file, and so are its leaves (an htree).  A
 * range told below the frontier spoils it; a stopped one, or one asked
 * for another algorithm or size, answers 1; one freed while it waits
 * stops.  Runs under ThreadSanitizer in make check.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/job.h"
#include "engine/readback.h"
#include "image/image.h"
#include "test.h"

#define MIB (1ull << 20)
#define SIZE (40 * MIB + 12345)

struct writer {
    int fd;
    struct readback *rb;
    bool backwards;             /* tell one range below the frontier */
};

static void fill(uint8_t *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

/* Ranges [off, len): data, then a gap (left a hole, never told), then
 * data again in pieces that end inside leaves, up to the end. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = malloc(3 * MIB);
    uint64_t off = 0;
    unsigned seed = 1;
    while (off < SIZE) {
        uint64_t len = (seed % 3 + 1) * MIB - 4097 * (seed % 2);
        if (len > SIZE - off)
            len = SIZE - off;
        if (off >= 8 * MIB && off < 12 * MIB) {
            off = 12 * MIB + 100;       /* a gap: holes */
            continue;
        }
        fill(buf, (size_t)len, seed++);
        if (pwrite(w->fd, buf, (size_t)len, (off_t)off) != (ssize_t)len)
            abort();
        readback_note(w->rb, off, len);
        off += len;
        if (w->backwards && off > 20 * MIB) {
            readback_note(w->rb, off - 2 * MIB, 4096);
            w->backwards = false;
        }
    }
    free(buf);
    return NULL;
}

static struct image *open_raw(const char *path)
{
    struct image_open_opts oo = { .format = "raw", .no_parents = true };
    struct image *img = NULL;
    struct df_error err;
    df_error_init(&err);
    if (image_open(path, &oo, &img, &err) < 0)
        fprintf(stderr, "open: %s\n", err.msg);
    return img;
}

static int digest_of(struct image *img, struct digest *d, struct htree *t)
{
    struct job_opts o;
    struct df_error err;
    job_opts_init(&o);
    df_error_init(&err);
    o.verify = false;
    if (t) {
        if (htree_init(t, o.digest, img->size, &err) < 0)
            return -1;
        o.leaf_fn = htree_leaf_fn;
        o.leaf_ctx = t;
    }
    return engine_digest(img, &o, d, NULL, &err);
}

static void test_behind_the_writes(const char *path, bool tree)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, SIZE) == 0);
    struct image *img = open_raw(path);
    CHECK(img != NULL);
    if (!img)
        return;
    struct df_error err;
    df_error_init(&err);
    struct readback *rb = readback_start(img, DIGEST_XXH128, 2, tree, &err);
    CHECK(rb != NULL);
    struct writer w = { fd, rb, false };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
    pthread_join(th, NULL);

    struct digest got, want;
    struct htree t, wt;
    memset(&t, 0, sizeof(t));
    CHECK(readback_finish(rb, DIGEST_XXH128, SIZE, &got,
                          tree ? &t : NULL) == 0);
    CHECK(digest_of(img, &want, tree ? &wt : NULL) == 0);
    CHECK(got.len == want.len && !memcmp(got.bytes, want.bytes, got.len));
    if (tree) {
        CHECK(t.nleaves == wt.nleaves);
        for (uint64_t i = 0; i < t.nleaves && i < wt.nleaves; i++)
            CHECK(!memcmp(htree_leaf(&t, i), htree_leaf(&wt, i), t.hlen));
        htree_release(&t);
        htree_release(&wt);
    }
    readback_free(rb);
    image_close(img);
    close(fd);
}

static void test_refusals(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, SIZE) == 0);
    struct image *img = open_raw(path);
    if (!img)
        return;
    struct df_error err;
    struct digest d;
    df_error_init(&err);

    /* a range told below the frontier spoils it */
    struct readback *rb = readback_start(img, DIGEST_XXH128, 2, false, &err);
    struct writer w = { fd, rb, true };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
    pthread_join(th, NULL);
    CHECK(readback_finish(rb, DIGEST_XXH128, SIZE, &d, NULL) == 1);
    readback_free(rb);

    /* another algorithm, another size, or stopped: none */
    rb = readback_start(img, DIGEST_XXH128, 1, false, &err);
    readback_note(rb, 0, SIZE);
    CHECK(readback_finish(rb, DIGEST_SHA256, SIZE, &d, NULL) == 1);
    readback_free(rb);
    rb = readback_start(img, DIGEST_XXH128, 1, false, &err);
    CHECK(readback_finish(rb, DIGEST_XXH128, SIZE - 1, &d, NULL) == 1);
    readback_free(rb);
    rb = readback_start(img, DIGEST_XXH128, 1, false, &err);
    readback_note(rb, 0, MIB);
    readback_stop(rb);
    CHECK(readback_finish(rb, DIGEST_XXH128, SIZE, &d, NULL) == 1);
    readback_free(rb);
    /* freed while it waits at the gate: stops and joins */
    rb = readback_start(img, DIGEST_XXH128, 2, true, &err);
    readback_note(rb, 0, 3 * MIB);
    readback_free(rb);
    readback_free(NULL);

    /* what it read is what was there when it read it: a byte changed
     * before its leaf was read back is in the digest */
    uint8_t b = 0x5a;
    CHECK(pwrite(fd, &b, 1, 5 * MIB + 7) == 1);
    struct digest want;
    rb = readback_start(img, DIGEST_XXH128, 2, false, &err);
    readback_note(rb, 0, SIZE);
    CHECK(readback_finish(rb, DIGEST_XXH128, SIZE, &d, NULL) == 0);
    CHECK(digest_of(img, &want, NULL) == 0);
    CHECK(!memcmp(d.bytes, want.bytes, d.len));
    readback_free(rb);
    image_close(img);
    close(fd);
}

int main(void)
{
    char path[] = "/tmp/df-test-readback-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 77;
    close(fd);
    test_behind_the_writes(path, false);
    test_behind_the_writes(path, true);
    test_refusals(path);
    unlink(path);
    return test_result("readback");
}
