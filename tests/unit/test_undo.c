/*
 * test_undo.c: the undo journal through the real image sink: a job
 * journals and writes, undo_apply() restores byte for byte (twice: it
 * can be rerun), a torn tail is ignored, a destination changed since is
 * refused, a grown file is cut back, hostile headers are DF_CORRUPT.
 * kill -9 in the middle of a real copy is tests/e2e/test_undo.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/job.h"
#include "safety/safety_int.h"
#include "test.h"
#include "util/bytes.h"

#define MIB (1024 * 1024)
#define DISK (6 * MIB)

static char dir[PATH_MAX];
static char dst[PATH_MAX], journal[PATH_MAX];
static uint8_t orig[DISK];

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
    srand(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rand();
}

/* The destination: random data, a zero MiB at 4..5 MiB. */
static void make_dst(uint64_t size)
{
    fill_random(orig, sizeof(orig), 1);
    memset(orig + 4 * MIB, 0, MIB);
    int fd = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || pwrite(fd, orig, size, 0) != (ssize_t)size)
        abort();
    close(fd);
}

static bool dst_equals(const uint8_t *want, size_t size)
{
    static uint8_t got[DISK + MIB];
    struct stat st;
    int fd = open(dst, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size != size ||
        pread(fd, got, size, 0) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    close(fd);
    for (size_t i = 0; i < size; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "  differs at %zu\n", i);
            return false;
        }
    return true;
}

/* Open dst as a writable raw image and wrap its sink. */
static struct sink *start(struct image **img, uint64_t orig_size,
                          struct df_error *err)
{
    struct image_open_opts oo = { .format = "raw", .writable = true,
                                  .no_parents = true };
    df_error_init(err);
    if (image_open(dst, &oo, img, err) < 0)
        return NULL;
    struct sink *inner = sink_image_new(*img, false, err);
    if (!inner)
        return NULL;
    return undo_sink_wrap(inner, *img, orig_size, dst, journal, err);
}

/* The job: new data over 0..1.5 MiB, zeros over 2..3 MiB, the same
 * bytes as before over 3..3.5 MiB, zeros over the zero MiB 4..5, new
 * data in many small writes over 5..6 MiB.  Returns what dst holds
 * after a complete job. */
static int job(struct sink *s, uint8_t *after, bool finish,
               struct df_error *err)
{
    static uint8_t data[DISK];
    fill_random(data, sizeof(data), 2);
    memcpy(after, orig, DISK);
    if (s->ops->write(s, 0, data, 3 * MIB / 2, err) < 0)
        return -1;
    memcpy(after, data, 3 * MIB / 2);
    if (s->ops->zero(s, 2 * MIB, MIB, err) < 0)
        return -1;
    memset(after + 2 * MIB, 0, MIB);
    if (s->ops->write(s, 3 * MIB, orig + 3 * MIB, MIB / 2, err) < 0)
        return -1;
    if (s->ops->zero(s, 4 * MIB, MIB, err) < 0)
        return -1;
    for (uint64_t off = 5 * MIB; off < DISK; off += 4096) {
        if (s->ops->write(s, off, data + off, 4096, err) < 0)
            return -1;
        memcpy(after + off, data + off, 4096);
    }
    return finish ? s->ops->finish(s, err) : 0;
}

static int undo(const char *d, bool dry_run, struct undo_stats *st,
                char *msg)
{
    struct df_error err;
    char *out = NULL, *warn = NULL;
    size_t olen = 0, wlen = 0;
    struct undo_opts o = { .dry_run = dry_run };
    o.out = open_memstream(&out, &olen);
    o.msgs = open_memstream(&warn, &wlen);
    df_error_init(&err);
    int r = undo_apply(journal, d, &o, st, &err);
    fclose(o.out);
    fclose(o.msgs);
    if (msg)
        snprintf(msg, 256, "%s", err.msg);
    free(out);
    free(warn);
    CHECK((r == 0) == (err.cat == DF_OK));
    return err.cat;
}

static void test_roundtrip(void)
{
    static uint8_t after[DISK];
    struct image *img = NULL;
    struct df_error err;
    struct undo_stats st;

    make_dst(DISK);
    unlink(journal);
    struct sink *s = start(&img, DISK, &err);
    CHECK(s != NULL);
    CHECK(job(s, after, true, &err) == 0);
    CHECK(s->bytes_written > 0);
    s->ops->free(s);
    image_close(img);
    CHECK(dst_equals(after, DISK));

    /* The same checks on the files held in memory. */
    {
        static uint8_t jbuf[8 * MIB];
        int fd = open(journal, O_RDONLY);
        ssize_t jlen = read(fd, jbuf, sizeof(jbuf));
        close(fd);
        CHECK(jlen > 512);
        df_error_init(&err);
        CHECK(undo_check_mem(jbuf, (size_t)jlen, after, DISK, &st,
                             &err) == 0);
        CHECK(st.complete && st.bytes == 3 * MIB + MIB / 2);
        CHECK(undo_check_mem(jbuf, (size_t)jlen, orig, DISK, &st,
                             &err) == 0);
        after[7] ^= 1;
        CHECK(undo_check_mem(jbuf, (size_t)jlen, after, DISK, &st,
                             &err) < 0 && err.cat == DF_REFUSED);
        after[7] ^= 1;
    }

    /* Dry run: nothing changes. */
    CHECK(undo(NULL, true, &st, NULL) == DF_OK);
    CHECK(dst_equals(after, DISK));
    CHECK(st.complete && st.records > 0);

    CHECK(undo(NULL, false, &st, NULL) == DF_OK);
    CHECK(dst_equals(orig, DISK));
    CHECK(st.complete && st.torn_bytes == 0);
    /* 1.5 MiB data + 1 MiB zeroed + 1 MiB of small writes; the unchanged
     * and already-zero ranges need nothing. */
    CHECK(st.bytes == 3 * MIB + MIB / 2);
    /* Rerun: the same result. */
    CHECK(undo(dst, false, &st, NULL) == DF_OK);
    CHECK(dst_equals(orig, DISK));

    /* A journal that exists is never replaced. */
    s = start(&img, DISK, &err);
    CHECK(s == NULL && err.cat == DF_REFUSED);
    CHECK(strstr(err.msg, "undo journal exists") != NULL);
    image_close(img);
}

/* serve finishes the sink every second to commit its resume journal:
 * records that follow an END record still count (a remote --undo lost
 * everything after the first commit before this). */
static void test_finished_twice(void)
{
    static uint8_t data[DISK];
    struct image *img = NULL;
    struct df_error err;
    struct undo_stats st;

    make_dst(DISK);
    unlink(journal);
    fill_random(data, sizeof(data), 5);
    struct sink *s = start(&img, DISK, &err);
    CHECK(s != NULL);
    CHECK(s->ops->write(s, 0, data, MIB, &err) == 0);
    CHECK(s->ops->finish(s, &err) == 0);        /* a mid-job commit */
    CHECK(s->ops->write(s, 2 * MIB, data + 2 * MIB, MIB, &err) == 0);
    CHECK(s->ops->finish(s, &err) == 0);
    CHECK(s->ops->write(s, 4 * MIB, data + 4 * MIB, MIB, &err) == 0);
    s->ops->free(s);                            /* killed: no last END */
    image_close(img);

    CHECK(undo(NULL, false, &st, NULL) == DF_OK);
    CHECK(st.torn_bytes == 0 && st.records == 2);
    CHECK(dst_equals(orig, DISK));
}

static void test_interrupted(void)
{
    static uint8_t after[DISK];
    struct image *img = NULL;
    struct df_error err;
    struct undo_stats st;

    make_dst(DISK);
    unlink(journal);
    struct sink *s = start(&img, DISK, &err);
    CHECK(s != NULL);
    CHECK(job(s, after, false, &err) == 0);
    /* The job dies: the last batch is journaled but maybe not all of it
     * forwarded; abort drops what was queued. */
    s->ops->abort_job(s);
    s->ops->free(s);
    image_close(img);

    /* A torn record at the tail: a header and half a payload. */
    int fd = open(journal, O_WRONLY | O_APPEND);
    uint8_t torn[100] = { 'D', 'F', 'U', 'R', 1 };
    CHECK(write(fd, torn, sizeof(torn)) == (ssize_t)sizeof(torn));
    close(fd);

    CHECK(undo(NULL, false, &st, NULL) == DF_OK);
    CHECK(!st.complete);
    CHECK(st.torn_bytes == sizeof(torn));
    CHECK(dst_equals(orig, DISK));
}

static void test_mismatch(void)
{
    static uint8_t after[DISK];
    struct image *img = NULL;
    struct df_error err;
    char msg[256];

    make_dst(DISK);
    unlink(journal);
    struct sink *s = start(&img, DISK, &err);
    CHECK(job(s, after, true, &err) == 0);
    s->ops->free(s);
    image_close(img);

    /* Something else wrote the first MiB, which the job overwrote
     * entirely: the byte is now neither old nor new. */
    int fd = open(dst, O_RDWR);
    uint8_t b = (uint8_t)(after[100] ^ orig[100] ^ 0x5a);
    if (b == after[100] || b == orig[100])
        b ^= 0x81;
    CHECK(pwrite(fd, &b, 1, 100) == 1);
    close(fd);
    CHECK(undo(NULL, false, NULL, msg) == DF_REFUSED);
    CHECK(strstr(msg, "does not match the undo journal") != NULL);

    /* A different size. */
    fd = open(dst, O_RDWR);
    CHECK(pwrite(fd, after + 100, 1, 100) == 1);
    CHECK(ftruncate(fd, DISK - 4096) == 0);
    close(fd);
    CHECK(undo(NULL, false, NULL, msg) == DF_REFUSED);
    CHECK(strstr(msg, "the journal is for a destination of") != NULL);
}

static void test_grown(void)
{
    static uint8_t after[DISK];
    struct image *img = NULL;
    struct df_error err;
    struct undo_stats st;

    /* 3 MiB of the destination; the caller grows it to hold 6. */
    make_dst(3 * MIB);
    unlink(journal);
    CHECK(truncate(dst, DISK) == 0);
    struct sink *s = start(&img, 3 * MIB, &err);
    CHECK(s != NULL);
    CHECK(job(s, after, true, &err) == 0);
    s->ops->free(s);
    image_close(img);
    CHECK(undo(NULL, false, &st, NULL) == DF_OK);
    CHECK(st.truncated);
    CHECK(dst_equals(orig, 3 * MIB));
}

static void test_hostile(void)
{
    static uint8_t after[DISK];
    static const struct {
        size_t off, len;
        uint64_t val;
    } pokes[] = {
        { 0, 1, 'X' },          /* magic */
        { 8, 4, 2 },            /* version */
        { 12, 4, 0 },           /* header length */
        { 16, 8, 1 },           /* size (checksum catches it) */
        { 496, 1, 0x5a },       /* checksum */
    };
    struct image *img = NULL;
    struct df_error err;
    uint8_t hdr[512];

    make_dst(DISK);
    unlink(journal);
    struct sink *s = start(&img, DISK, &err);
    CHECK(job(s, after, true, &err) == 0);
    s->ops->free(s);
    image_close(img);
    int fd = open(journal, O_RDWR);
    CHECK(pread(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr));
    for (size_t i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
        uint8_t b[512];
        memcpy(b, hdr, sizeof(b));
        if (pokes[i].len == 8)
            put_le64(b + pokes[i].off, pokes[i].val);
        else if (pokes[i].len == 4)
            put_le32(b + pokes[i].off, (uint32_t)pokes[i].val);
        else
            b[pokes[i].off] = (uint8_t)pokes[i].val;
        CHECK(pwrite(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b));
        CHECK(undo(NULL, false, NULL, NULL) == DF_CORRUPT);
    }
    CHECK(ftruncate(fd, 100) == 0);
    CHECK(undo(dst, false, NULL, NULL) == DF_CORRUPT);
    close(fd);
    CHECK(dst_equals(after, DISK));
    /* The journal itself as the destination. */
    unlink(journal);
    s = start(&img, DISK, &err);
    s->ops->free(s);
    image_close(img);
    char msg[256];
    CHECK(undo(journal, false, NULL, msg) == DF_REFUSED);
}

int main(void)
{
    char tmpl[] = "/var/tmp/test_undo.XXXXXX";
    if (!mkdtemp(tmpl))
        return 77;
    snprintf(dir, sizeof(dir), "%s", tmpl);
    snprintf(dst, sizeof(dst), "%s/dst.img", dir);
    snprintf(journal, sizeof(journal), "%s/undo.journal", dir);

    test_roundtrip();
    test_finished_twice();
    test_interrupted();
    test_mismatch();
    test_grown();
    test_hostile();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_result("undo");
}
