/*
 * test_source.c: the source ops table (engine/source.h).  One disk of
 * data, a hole and data again, as a sparse raw file, as a qcow2 image
 * and as a raw stream through a pipe: each delivered into a memory sink
 * gives the disk's bytes and the same digest; the images map their
 * hole and read at an offset, the stream has neither op.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/source.h"
#include "test.h"

#define MIB (1u << 20)
#define DISK (4 * MIB)
#define HOLE_OFF (1 * MIB)
#define HOLE_LEN (2 * MIB)

struct mem {
    uint8_t *disk;
    uint64_t cap;
    int order_errors;
    uint64_t next;
};

static int mem_write(struct sink *s, uint64_t off, const void *buf,
                     size_t len, struct df_error *err)
{
    struct mem *m = s->priv;
    if (off > m->cap || len > m->cap - off)
        return df_io(err, "mem", 28, "beyond the end");
    if (off != m->next)
        m->order_errors++;
    memcpy(m->disk + off, buf, len);
    m->next = off + len;
    return 0;
}

static int mem_zero(struct sink *s, uint64_t off, uint64_t len,
                    struct df_error *err)
{
    struct mem *m = s->priv;
    if (off > m->cap || len > m->cap - off)
        return df_io(err, "mem", 28, "beyond the end");
    if (off != m->next)
        m->order_errors++;
    memset(m->disk + off, 0, len);
    m->next = off + len;
    return 0;
}

static int mem_finish(struct sink *s, struct df_error *err)
{
    (void)s;
    (void)err;
    return 0;
}

static void mem_free(struct sink *s)
{
    (void)s;
}

static const struct sink_ops mem_ops = {
    .name = "mem", .write = mem_write, .zero = mem_zero,
    .finish = mem_finish, .free = mem_free,
};

/* Deliver s into memory: the bytes must be data's, *dg the digest. */
static void deliver_check(struct source *s, const uint8_t *data,
                          struct digest *dg)
{
    struct mem m = { .disk = malloc(DISK), .cap = DISK };
    struct sink k = { .ops = &mem_ops, .priv = &m, .size = DISK };
    struct job_opts jo;
    struct job_stats st;
    struct df_error err;

    df_error_init(&err);
    memset(&st, 0, sizeof(st));
    job_opts_init(&jo);
    jo.threads = 2;
    jo.unit = 256 * 1024;
    memset(m.disk, 0xaa, DISK);         /* zero runs must be delivered */
    snprintf(k.name, sizeof(k.name), "mem");
    int rc = source_deliver(s, NULL, &k, &jo, &st, &err);
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", s->ops->kind, err.msg);
    CHECK(rc == 0);
    CHECK(st.disk_size == DISK);
    CHECK(m.order_errors == 0);
    CHECK(m.next == DISK);
    CHECK(memcmp(m.disk, data, DISK) == 0);
    *dg = st.src_digest;
    free(m.disk);
}

/* An image source maps its hole and reads at an offset. */
static void random_access_check(struct source *s, const uint8_t *data)
{
    struct extent_list l;
    struct df_error err;
    uint8_t buf[4096];
    uint64_t size = 0;
    bool hole = false;

    df_error_init(&err);
    extent_list_init(&l, 0);
    CHECK(source_size(s, &size) && size == DISK);
    CHECK(s->ops->map && s->ops->read);
    CHECK(s->ops->map(s, 0, DISK, &l, &err) == 0);
    for (size_t i = 0; i < l.n; i++) {
        CHECK(l.v[i].state != EXT_DATA ||
              l.v[i].off + l.v[i].len <= HOLE_OFF ||
              l.v[i].off >= HOLE_OFF + HOLE_LEN);
        if (l.v[i].state == EXT_HOLE && l.v[i].off <= HOLE_OFF &&
            l.v[i].off + l.v[i].len >= HOLE_OFF + HOLE_LEN)
            hole = true;
    }
    CHECK(hole);
    CHECK(s->ops->read(s, 3 * MIB + 512, sizeof(buf), buf, &err) == 0);
    CHECK(memcmp(buf, data + 3 * MIB + 512, sizeof(buf)) == 0);
    extent_list_release(&l);
}

static int open_path(const char *path, struct source **out)
{
    struct endpoint ep;
    struct image_open_opts oo;
    struct source_opts so = { .open = &oo, .arg = path };
    struct df_error err;

    memset(&oo, 0, sizeof(oo));
    df_error_init(&err);
    if (endpoint_parse(path, &ep, &err) < 0 ||
        source_open(&ep, &so, out, &err) < 0 ||
        source_check(*out, "test", "copy", false, true, &err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return -1;
    }
    return 0;
}

int main(void)
{
    char dir[] = "/tmp/test_source_XXXXXX";
    char raw[PATH_MAX], qcow[PATH_MAX];
    uint8_t *data = malloc(DISK);
    struct digest d_raw, d_qcow, d_stream;
    struct source *s = NULL;
    struct image *img = NULL;
    struct df_error err;
    uint64_t seed = 0x9e3779b97f4a7c15ull;

    df_error_init(&err);
    if (!data || !mkdtemp(dir))
        return 77;
    for (size_t i = 0; i < DISK; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        data[i] = (uint8_t)seed;
    }
    memset(data + HOLE_OFF, 0, HOLE_LEN);

    /* A sparse raw file: the hole is never written. */
    snprintf(raw, sizeof(raw), "%s/a.raw", dir);
    int fd = open(raw, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, data, HOLE_OFF, 0) == HOLE_OFF);
    CHECK(pwrite(fd, data + HOLE_OFF + HOLE_LEN, DISK - HOLE_OFF - HOLE_LEN,
                 HOLE_OFF + HOLE_LEN) == DISK - HOLE_OFF - HOLE_LEN);
    close(fd);

    /* The same disk as qcow2. */
    snprintf(qcow, sizeof(qcow), "%s/b.qcow2", dir);
    CHECK(image_create(qcow, "qcow2", DISK, NULL, &img, &err) == 0);
    CHECK(img && image_write(img, data, HOLE_OFF, 0, &err) == 0);
    CHECK(img && image_write(img, data + HOLE_OFF + HOLE_LEN,
                             DISK - HOLE_OFF - HOLE_LEN,
                             HOLE_OFF + HOLE_LEN, &err) == 0);
    CHECK(img && image_flush(img, false, &err) == 0);
    image_close(img);

    CHECK(open_path(raw, &s) == 0);
    if (s) {
        CHECK(!strcmp(s->ops->kind, "image") && !strcmp(s->format, "raw"));
        random_access_check(s, data);
        deliver_check(s, data, &d_raw);
        source_close(s);
    }
    s = NULL;
    CHECK(open_path(qcow, &s) == 0);
    if (s) {
        CHECK(!strcmp(s->format, "qcow2"));
        random_access_check(s, data);
        deliver_check(s, data, &d_qcow);
        source_close(s);
    }

    /* The raw file through a pipe: a stream, read once, in order. */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        for (size_t off = 0; off < DISK;) {
            ssize_t n = write(p[1], data + off, DISK - off);
            if (n <= 0)
                _exit(1);
            off += (size_t)n;
        }
        _exit(0);
    }
    close(p[1]);
    s = NULL;
    CHECK(source_stream_new(p[0], "pipe", false, &s, &err) == 0);
    if (s) {
        uint64_t size = 1;
        CHECK(!source_size(s, &size));
        CHECK(!s->ops->map && !s->ops->read && !s->img);
        CHECK(source_check(s, "test", "copy", false, true, &err) == 0);
        deliver_check(s, data, &d_stream);
        source_close(s);
    }
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    CHECK(d_raw.len && d_raw.len == d_qcow.len && d_raw.len == d_stream.len);
    CHECK(!memcmp(d_raw.bytes, d_qcow.bytes, d_raw.len));
    CHECK(!memcmp(d_raw.bytes, d_stream.bytes, d_raw.len));

    unlink(raw);
    unlink(qcow);
    rmdir(dir);
    free(data);
    return test_result("source");
}
