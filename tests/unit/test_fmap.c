/*
 * test_fmap.c: views of a file (util/fmap.h): the bytes are the file's,
 * a window is reused for ranges inside it and moved for those past it,
 * ranges past the file's end are not mapped (rule 1), and a view whose
 * file shrank after it was mapped gives -1 from fmap_run instead of
 * ending the process (rule 2), on any thread; a SIGBUS that is not a
 * view's still ends the process (rule 3).
 * Also the engine over a raw file that shrinks while it is read through
 * views: a clean error, no crash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/job.h"
#include "test.h"
#include "util/fmap.h"

static char dir[] = "/tmp/test_fmap.XXXXXX";

static void make_file(const char *path, size_t size, unsigned seed)
{
    uint8_t *b = malloc(size);
    for (size_t i = 0; i < size; i++)
        b[i] = (uint8_t)(i * 7 + seed + (i >> 12));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, b, size) != (ssize_t)size)
        abort();
    close(fd);
    free(b);
}

struct sum_ctx {
    const uint8_t *p;
    size_t len;
    uint64_t sum;
};

static void sum_fn(void *ctx)
{
    struct sum_ctx *c = ctx;
    uint64_t s = 0;
    for (size_t i = 0; i < c->len; i += 512)
        s += c->p[i];
    c->sum = s;
}

static uint64_t sum_of(int fd, uint64_t off, size_t len)
{
    uint8_t *b = malloc(len);
    if (pread(fd, b, len, (off_t)off) != (ssize_t)len)
        abort();
    uint64_t s = 0;
    for (size_t i = 0; i < len; i += 512)
        s += b[i];
    free(b);
    return s;
}

static void test_views(void)
{
    char path[256];
    struct df_file f;
    struct df_error err;
    struct fmap m;
    size_t size = FMAP_WINDOW + 3 * 65536 + 100;

    snprintf(path, sizeof(path), "%s/a", dir);
    make_file(path, size, 3);
    df_error_init(&err);
    CHECK(df_file_open(&f, path, O_RDONLY, &err) == 0);
    fmap_init(&m);

    /* The bytes are the file's. */
    CHECK(fmap_map(&m, &f, 65536, 65536) == 0);
    struct sum_ctx c = { m.p, m.len, 0 };
    CHECK(fmap_run(&m, sum_fn, &c) == 0);
    CHECK(c.sum == sum_of(f.fd, 65536, 65536));
    void *first = m.base;
    CHECK(m.start == 65536);

    /* Inside the window: the same mapping. */
    CHECK(fmap_map(&m, &f, 65536 * 5, 1000) == 0);
    CHECK(m.base == first);
    c = (struct sum_ctx){ m.p, m.len, 0 };
    CHECK(fmap_run(&m, sum_fn, &c) == 0);
    CHECK(c.sum == sum_of(f.fd, 65536 * 5, 1000));

    /* Past it: a new window, to the file's end (an unaligned end). */
    CHECK(fmap_map(&m, &f, FMAP_WINDOW + 65536, 2 * 65536 + 100) == 0);
    CHECK(m.start == FMAP_WINDOW + 65536);
    CHECK(m.maplen == 2 * 65536 + 100);
    c = (struct sum_ctx){ m.p, m.len, 0 };
    CHECK(fmap_run(&m, sum_fn, &c) == 0);
    CHECK(c.sum == sum_of(f.fd, FMAP_WINDOW + 65536, 2 * 65536 + 100));

    /* Rule 1: not past the end, not empty, not from memory. */
    CHECK(fmap_map(&m, &f, size - 10, 11) == 1);
    CHECK(fmap_map(&m, &f, size + 4096, 1) == 1);
    CHECK(fmap_map(&m, &f, 0, 0) == 1);
    struct df_file mem;
    df_file_init_mem(&mem, "mem", path, 5);
    CHECK(fmap_map(&m, &mem, 0, 5) == 1);
    fmap_unmap(&m);
    CHECK(m.base == NULL);

    /* Rule 2: the file shrinks under a view. */
    CHECK(fmap_map(&m, &f, 0, 4 * 65536) == 0);
    CHECK(truncate(path, 4096) == 0);
    c = (struct sum_ctx){ m.p, m.len, 0 };
    CHECK(fmap_run(&m, sum_fn, &c) == -1);
    /* ... and again (the handler stays), then a page still there. */
    CHECK(fmap_run(&m, sum_fn, &c) == -1);
    c = (struct sum_ctx){ m.p, 4096, 0 };
    CHECK(fmap_run(&m, sum_fn, &c) == 0);
    fmap_unmap(&m);
    df_file_close(&f);
}

/* Rule 2 on other threads, at once. */
struct thr {
    const char *path;
    int result;
};

static pthread_mutex_t thr_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thr_cond = PTHREAD_COND_INITIALIZER;
static int thr_mapped;          /* threads holding their view */

static void thr_note(void)
{
    pthread_mutex_lock(&thr_lock);
    thr_mapped++;
    pthread_cond_broadcast(&thr_cond);
    pthread_mutex_unlock(&thr_lock);
}

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    struct df_file f;
    struct df_error err;
    struct fmap m;
    df_error_init(&err);
    fmap_init(&m);
    t->result = 0;
    if (df_file_open(&f, t->path, O_RDONLY, &err) < 0) {
        thr_note();
        return NULL;
    }
    int r = fmap_map(&m, &f, 0, 8 * 65536);
    thr_note();
    if (r == 0) {
        struct sum_ctx c = { m.p, m.len, 0 };
        while (fmap_run(&m, sum_fn, &c) == 0)
            usleep(1000);
        t->result = -1;
    }
    fmap_unmap(&m);
    df_file_close(&f);
    return NULL;
}

static void test_threads(void)
{
    char path[256];
    pthread_t tid[3];
    struct thr t[3];
    snprintf(path, sizeof(path), "%s/b", dir);
    make_file(path, 8 * 65536, 5);
    for (int i = 0; i < 3; i++) {
        t[i].path = path;
        t[i].result = 1;
        pthread_create(&tid[i], NULL, thr_main, &t[i]);
    }
    /* every thread holds its view (or failed to make one) */
    pthread_mutex_lock(&thr_lock);
    while (thr_mapped < 3)
        pthread_cond_wait(&thr_cond, &thr_lock);
    pthread_mutex_unlock(&thr_lock);
    CHECK(truncate(path, 0) == 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        CHECK(t[i].result == -1);
    }
}

/* Rule 3: a SIGBUS outside any view keeps its meaning. */
static void test_other_sigbus(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/c", dir);
    make_file(path, 65536, 1);
    pid_t pid = fork();
    if (pid == 0) {
        struct df_file f;
        struct df_error err;
        struct fmap m;
        df_error_init(&err);
        fmap_init(&m);
        /* install the guard, then fault outside it */
        if (df_file_open(&f, path, O_RDONLY, &err) < 0 ||
            fmap_map(&m, &f, 0, 4096) != 0)
            _exit(12);
        struct sum_ctx c = { m.p, m.len, 0 };
        if (fmap_run(&m, sum_fn, &c) != 0)
            _exit(13);
        if (truncate(path, 0) < 0)
            _exit(14);
        volatile uint8_t x = m.p[0];
        (void)x;
        _exit(10);              /* survived: the guard swallowed it */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    /* killed by SIGBUS (or, under a sanitizer, ended by its report) */
    CHECK(WIFSIGNALED(st) ? WTERMSIG(st) == SIGBUS ||
                                WTERMSIG(st) == SIGABRT
                          : WIFEXITED(st) && (WEXITSTATUS(st) < 10 ||
                                              WEXITSTATUS(st) > 14));
}

/* The engine reading a raw file through views while it shrinks: the
 * first leaf delivered truncates it; a later item's view faults and is
 * read again, which says the file is truncated. */
struct shrink {
    const char *path;
    bool done;
};

static void shrink_leaf(void *ctx, uint64_t leaf, const uint8_t *hash)
{
    struct shrink *s = ctx;
    (void)leaf;
    (void)hash;
    if (!s->done && truncate(s->path, 65536) == 0)
        s->done = true;
}

static void test_engine_shrink(void)
{
    char path[256];
    struct image *img = NULL;
    struct image_open_opts oo = { .format = "raw", .no_parents = true };
    struct df_error err;
    struct job_opts o;
    struct digest d;
    struct shrink sh = { path, false };

    snprintf(path, sizeof(path), "%s/d", dir);
    make_file(path, 24u << 20, 9);
    df_error_init(&err);
    CHECK(image_open(path, &oo, &img, &err) == 0);
    if (!img)
        return;
    job_opts_init(&o);
    o.threads = 1;
    o.leaf_fn = shrink_leaf;
    o.leaf_ctx = &sh;
    CHECK(engine_digest(img, &o, &d, NULL, &err) == -1);
    CHECK(sh.done);
    CHECK(err.cat == DF_CORRUPT || err.cat == DF_IO);
    CHECK(strstr(err.msg, "truncated") != NULL);
    image_close(img);
}

int main(void)
{
    char cmd[300];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 77;
    }
    test_views();
    test_threads();
    test_other_sigbus();
    test_engine_shrink();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return test_result("fmap");
}
