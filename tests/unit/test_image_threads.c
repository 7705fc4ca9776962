/*
 * test_image_threads.c: the readers that are IMG_THREAD_SAFE although
 * they keep caches (qcow2, vmdk, vhdx) read the same image from four
 * threads at once, at scattered and overlapping offsets, and every byte
 * must be the raw file's; map() runs beside them and must agree with a
 * map made alone.  Under ThreadSanitizer (make check-tsan) a data race
 * fails the test.  Also: util/pool.h never has more than max contexts
 * out, and a qcow2 this build wrote reads back from threads after its
 * flush.
 *
 * The images are made by qemu-img in a temporary directory (skipped,
 * exit 77, without it): compressed qcow2 (zlib, zstd, 1 KiB clusters so
 * that the L2 cache evicts), plain and extended-L2 qcow2, VMDK
 * streamOptimized and monolithicSparse, dynamic VHDX with 1 MiB blocks.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/image.h"
#include "test.h"
#include "util/pool.h"

#define KIB 1024u
#define MIB (1024u * 1024)
#define DISK (24 * MIB)
#define SEG (96 * KIB)
#define THREADS 4
#define ROUNDS 120

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* DISK bytes in SEG pieces: random, text, zeros, or zeros with a few
 * bytes set, so that clusters and grains are whole, partial, empty. */
static uint8_t *make_raw(void)
{
    static const char *const words[] = {
        "ferry ", "disk ", "cluster ", "grain ", "block ", "thread ",
        "qcow2 ", "vmdk ", "vhdx ", "zero ", "copy\n",
    };
    uint8_t *b = calloc(1, DISK);
    uint64_t s = 0x9e3779b97f4a7c15ull;

    if (!b)
        return NULL;
    for (uint64_t off = 0; off < DISK; off += SEG) {
        uint8_t *p = b + off;
        switch (rng_next(&s) % 4) {
        case 0:
            for (size_t i = 0; i < SEG; i += 8) {
                uint64_t v = rng_next(&s);
                memcpy(p + i, &v, 8);
            }
            break;
        case 1:
            for (size_t i = 0; i < SEG;) {
                const char *w = words[rng_next(&s) % 11];
                size_t n = strlen(w);
                if (n > SEG - i)
                    n = SEG - i;
                memcpy(p + i, w, n);
                i += n;
            }
            break;
        case 2:
            break;
        default:
            for (int i = 0; i < 16; i++)
                p[rng_next(&s) % SEG] = (uint8_t)rng_next(&s) | 1;
            break;
        }
    }
    return b;
}

/* The state the reference map gives byte off. */
static enum extent_state state_at(const struct extent_list *ref,
                                  uint64_t off)
{
    size_t i = extent_list_find(ref, off);
    return i < ref->n ? ref->v[i].state : EXT_PARENT;
}

struct reader {
    struct image *img;
    const uint8_t *raw;
    const struct extent_list *ref;
    pthread_barrier_t *start;
    uint64_t seed;
    int bad_reads;
    int bad_maps;
    int errors;
    char first_error[512];
};

static void reader_error(struct reader *r, const struct df_error *err)
{
    if (!r->errors++)
        df_error_format(err, r->first_error, sizeof(r->first_error));
}

/* A range to read or map: often a 64 KiB-aligned MiB or so (what the
 * pipeline asks), else anything from one byte up; a few hot spots all
 * threads come back to, so that their reads overlap. */
static void pick(uint64_t *s, uint64_t *off, uint64_t *len)
{
    unsigned kind = (unsigned)(rng_next(s) % 8);
    uint64_t size = DISK;

    if (kind < 3) {
        *off = rng_next(s) % (size / (64 * KIB)) * 64 * KIB;
        *len = (1 + rng_next(s) % 24) * 64 * KIB;
    } else if (kind < 5) {
        *off = rng_next(s) % size;
        *len = 1 + rng_next(s) % 8192;
    } else if (kind < 7) {
        *off = rng_next(s) % size;
        *len = 1 + rng_next(s) % (3 * MIB / 2);
    } else {
        static const uint64_t hot[] = { 0, 5 * MIB + 123, 12 * MIB - 4096,
                                        DISK - 70 * KIB };
        *off = hot[rng_next(s) % 4] + rng_next(s) % (64 * KIB);
        *len = 1 + rng_next(s) % MIB;
    }
    if (*off >= size)
        *off = size - 1;
    if (*len > size - *off)
        *len = size - *off;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint8_t *buf = malloc(3 * MIB / 2);
    struct extent_list l;
    uint64_t s = r->seed;

    extent_list_init(&l, 1u << 20);
    pthread_barrier_wait(r->start);
    for (int i = 0; buf && i < ROUNDS; i++) {
        uint64_t off, len;
        struct df_error err;
        df_error_init(&err);
        pick(&s, &off, &len);
        if (rng_next(&s) % 4) {
            if (image_read(r->img, buf, (size_t)len, off, &err) < 0)
                reader_error(r, &err);
            else if (memcmp(buf, r->raw + off, (size_t)len))
                r->bad_reads++;
            continue;
        }
        extent_list_clear(&l);
        if (image_map(r->img, off, len, &l, &err) < 0) {
            reader_error(r, &err);
            continue;
        }
        if (!l.n || l.v[0].off != off ||
            extent_list_end(&l, off) != off + len)
            r->bad_maps++;
        for (size_t k = 0; k < l.n; k++)
            if (state_at(r->ref, l.v[k].off) != l.v[k].state ||
                state_at(r->ref, l.v[k].off + l.v[k].len - 1) !=
                    l.v[k].state)
                r->bad_maps++;
    }
    if (!buf)
        r->errors++;
    extent_list_release(&l);
    free(buf);
    return NULL;
}

/* Read img from THREADS threads at once and compare with raw. */
static void read_together(const char *what, struct image *img,
                          const uint8_t *raw)
{
    struct reader r[THREADS];
    pthread_t tid[THREADS];
    pthread_barrier_t start;
    struct extent_list ref;
    struct df_error err;

    CHECK(img->size == DISK);
    if (img->size != DISK)
        return;
    df_error_init(&err);
    extent_list_init(&ref, 1u << 20);
    CHECK(image_map(img, 0, DISK, &ref, &err) == 0 &&
          extent_list_end(&ref, 0) == DISK);
    pthread_barrier_init(&start, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        memset(&r[t], 0, sizeof(r[t]));
        r[t].img = img;
        r[t].raw = raw;
        r[t].ref = &ref;
        r[t].start = &start;
        r[t].seed = 0x1234567ull * (uint64_t)(t + 1) + DISK;
        CHECK(pthread_create(&tid[t], NULL, reader_main, &r[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        if (r[t].errors || r[t].bad_reads || r[t].bad_maps)
            fprintf(stderr, "%s: thread %d: %d errors (%s), %d reads and "
                    "%d maps wrong\n", what, t, r[t].errors,
                    r[t].first_error, r[t].bad_reads, r[t].bad_maps);
        CHECK(r[t].errors == 0);
        CHECK(r[t].bad_reads == 0);
        CHECK(r[t].bad_maps == 0);
    }
    pthread_barrier_destroy(&start);
    extent_list_release(&ref);
}

static void test_qemu_image(const char *dir, const char *raw_path,
                            const uint8_t *raw, const char *name,
                            const char *fmt, const char *args)
{
    char path[600], cmd[1600];
    struct image *img = NULL;
    struct df_error err;
    struct image_open_opts opts = { .format = fmt, .no_parents = true };

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(cmd, sizeof(cmd), "qemu-img convert -f raw -O %s %s '%s' '%s'",
             fmt, args, raw_path, path);
    int rc = system(cmd);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        return;
    }
    df_error_init(&err);
    CHECK(image_open(path, &opts, &img, &err) == 0);
    if (!img) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return;
    }
    CHECK(image_caps(img) & IMG_THREAD_SAFE);
    read_together(name, img, raw);
    image_close(img);
}

/* A compressed qcow2 written by this build, read from threads once
 * flushed (the reader state is loaded by the flush). */
static void test_own_qcow2(const char *dir, const uint8_t *raw)
{
    char path[600];
    struct image_create_opts copts = { .compress = true };
    struct image *img = NULL;
    struct df_error err;

    snprintf(path, sizeof(path), "%s/own.qcow2", dir);
    df_error_init(&err);
    CHECK(image_create(path, "qcow2", DISK, &copts, &img, &err) == 0);
    if (!img)
        return;
    for (uint64_t off = 0; off < DISK; off += MIB)
        CHECK(image_write(img, raw + off, MIB, off, &err) == 0);
    CHECK(image_flush(img, false, &err) == 0);
    read_together("own.qcow2", img, raw);
    image_close(img);
}

/* util/pool.h: at most max contexts out at once, each back in the pool. */
struct pool_user {
    struct ctx_pool *pool;
    int *out;                   /* contexts out now (atomic) */
    int most;
    int missing;
};

static void *pool_make(void *arg)
{
    return malloc(64);
}

static void *pool_main(void *arg)
{
    struct pool_user *u = arg;
    for (int i = 0; i < 2000; i++) {
        void *c = ctx_pool_take(u->pool);
        if (!c) {
            u->missing++;
            continue;
        }
        int n = __atomic_add_fetch(u->out, 1, __ATOMIC_SEQ_CST);
        if (n > u->most)
            u->most = n;
        if (i % 7 == 0)
            sched_yield();
        __atomic_sub_fetch(u->out, 1, __ATOMIC_SEQ_CST);
        ctx_pool_give(u->pool, c);
    }
    return NULL;
}

static void test_pool(unsigned max)
{
    struct ctx_pool pool;
    struct pool_user u[THREADS];
    pthread_t tid[THREADS];
    int out = 0;

    ctx_pool_init(&pool, max, pool_make, free, NULL);
    for (int t = 0; t < THREADS; t++) {
        u[t] = (struct pool_user){ &pool, &out, 0, 0 };
        CHECK(pthread_create(&tid[t], NULL, pool_main, &u[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        CHECK(u[t].missing == 0);
        CHECK(u[t].most <= (int)max);
    }
    CHECK(pool.live <= max && pool.n_idle == pool.live);
    ctx_pool_release(&pool);
    ctx_pool_release(&pool);        /* a second release does nothing */
}

int main(void)
{
    static const struct {
        const char *name, *fmt, *args;
    } imgs[] = {
        { "zlib.qcow2", "qcow2", "-c" },
        { "zstd.qcow2", "qcow2", "-c -o compression_type=zstd" },
        { "small.qcow2", "qcow2", "-c -o cluster_size=1024" },
        { "plain.qcow2", "qcow2", "-o cluster_size=4096" },
        { "extl2.qcow2", "qcow2", "-o extended_l2=on" },
        { "stream.vmdk", "vmdk", "-o subformat=streamOptimized" },
        { "sparse.vmdk", "vmdk", "-o subformat=monolithicSparse" },
        { "dyn.vhdx", "vhdx", "-o block_size=1M" },
    };
    char dir[512], raw_path[600], cmd[700];
    uint8_t *raw = NULL;
    FILE *f = NULL;

    test_pool(1);
    test_pool(3);
    if (system("qemu-img --version >/dev/null 2>&1") != 0) {
        printf("qemu-img not found: skipping the image tests\n");
        test_result("test_image_threads");
        return test_failures ? 1 : 77;
    }
    snprintf(dir, sizeof(dir), "%s/df-image-threads-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    raw = make_raw();
    if (!raw || !mkdtemp(dir)) {
        perror("setup");
        return 1;
    }
    snprintf(raw_path, sizeof(raw_path), "%s/disk.raw", dir);
    f = fopen(raw_path, "wb");
    CHECK(f && fwrite(raw, 1, DISK, f) == DISK);
    if (f)
        CHECK(fclose(f) == 0);
    for (size_t i = 0; i < sizeof(imgs) / sizeof(imgs[0]); i++)
        test_qemu_image(dir, raw_path, raw, imgs[i].name, imgs[i].fmt,
                        imgs[i].args);
    test_own_qcow2(dir, raw);

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(raw);
    return test_result("test_image_threads");
}
