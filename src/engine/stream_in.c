/*
 * stream_in.c: sniffing and decompressing a stream source (see
 * stream_in.h).
 *
 * Signatures (the first bytes of the stream):
 *   gzip   1f 8b 08                   (RFC 1952, deflate only)
 *   xz     fd 37 7a 58 5a 00          (xz file format 1.0.4, 2.1.1.1)
 *   zstd   28 b5 2f fd                (RFC 8878, 3.1.1)
 *   bzip2  "BZh" '1'..'9' 31 41 59 26 53 59
 *   lz4    04 22 4d 18                (LZ4 frame format)
 *   tar    "ustar" at 257 (POSIX "ustar\0", GNU "ustar  \0") and the
 *          header's checksum (bytes 148..155 counted as spaces) right
 *          (POSIX.1-2017 pax, ustar Interchange Format)
 *   images image_probe_head(); a dynamic VHD's footer copy at 0
 *          ("conectix")
 */
#define _GNU_SOURCE
#include "engine/stream_in.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/archive_dl.h"
#include "image/image.h"

#define STREAM_CHUNK (1u << 20)

static bool has(const uint8_t *h, size_t len, size_t at, const void *magic,
                size_t n)
{
    return len >= at + n && !memcmp(h + at, magic, n);
}

static bool is_tar(const uint8_t *h, size_t len)
{
    if (len < 512 || !(has(h, len, 257, "ustar\0", 6) ||
                       has(h, len, 257, "ustar  \0", 8)))
        return false;
    unsigned long want = 0, sum = 0;
    size_t i = 148;
    while (i < 156 && h[i] == ' ')
        i++;
    for (; i < 156 && h[i] >= '0' && h[i] <= '7'; i++)
        want = want * 8 + (unsigned long)(h[i] - '0');
    for (i = 0; i < 512; i++)
        sum += i >= 148 && i < 156 ? ' ' : h[i];
    return sum == want;
}

const char *stream_sniff(const uint8_t *h, size_t len, bool *filter)
{
    *filter = true;
    if (has(h, len, 0, "\x1f\x8b\x08", 3))
        return "gzip";
    if (has(h, len, 0, "\xfd" "7zXZ\0", 6))
        return "xz";
    if (has(h, len, 0, "\x28\xb5\x2f\xfd", 4))
        return "zstd";
    if (len >= 10 && has(h, len, 0, "BZh", 3) && h[3] >= '1' &&
        h[3] <= '9' && has(h, len, 4, "\x31\x41\x59\x26\x53\x59", 6))
        return "bzip2";
    if (has(h, len, 0, "\x04\x22\x4d\x18", 4))
        return "lz4";
    *filter = false;
    if (is_tar(h, len))
        return "tar";
    if (has(h, len, 0, "conectix", 8))
        return "vhd";
    return image_probe_head(h, len);
}

/* Read up to cap bytes of fd into buf, retrying short reads. */
static long read_head(int fd, uint8_t *buf, size_t cap, const char *name,
                      struct df_error *err)
{
    struct df_file f;
    df_file_init(&f);
    f.fd = fd;
    snprintf(f.name, sizeof(f.name), "%s", name);
    return df_file_read_stream(&f, buf, cap, err);
}

/* ---- the decompressor thread ---- */

struct pump_io {
    struct stream_in *s;
    bool head_given;
    uint8_t *buf;
};

static la_ssize_t pump_read(struct archive *a, void *ctx, const void **out)
{
    struct pump_io *io = ctx;
    (void)a;
    if (!io->head_given) {
        io->head_given = true;
        if (io->s->head_len) {
            *out = io->s->head;
            io->s->bytes_in += io->s->head_len;
            return (la_ssize_t)io->s->head_len;
        }
    }
    for (;;) {
        /* wait for the stream, or for stream_in_close() to stop us */
        struct pollfd pf[2] = { { io->s->src_fd, POLLIN, 0 },
                                { io->s->stop_fd, POLLIN, 0 } };
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            archive_set_error(a, errno, "poll failed");
            return -1;
        }
        if (pf[1].revents) {
            archive_set_error(a, ECANCELED, "stopped");
            return -1;
        }
        ssize_t r = read(io->s->src_fd, io->buf, STREAM_CHUNK);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0) {
            archive_set_error(a, errno, "read failed");
            return -1;
        }
        io->s->bytes_in += (uint64_t)r;
        *out = io->buf;
        return r;
    }
}

/* "./a/b" and "a/b" name the same member. */
static const char *member_name(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    while (*p == '/')
        p++;
    return p;
}

/* Pass on n zero bytes (a sparse member's hole). */
static int write_zeros(int fd, uint64_t n)
{
    static const uint8_t zeros[64 * 1024];
    while (n) {
        size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
        if (fd_write_all(fd, zeros, k) < 0)
            return -1;
        n -= k;
    }
    return 0;
}

/* Find s->member; 1 found, 0 with s->terr set. */
static int pump_find_member(struct stream_in *s, struct archive *a)
{
    struct archive_entry *e;
    const char *want = member_name(s->member);
    char seen[160] = "";
    unsigned nseen = 0;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(e);
        if (!name)
            continue;
        if (!strcmp(member_name(name), want)) {
            if (archive_entry_filetype(e) != AE_IFREG) {
                df_usage(&s->terr, "%s: %s is not a regular file in the "
                         "archive", s->name, s->member);
                return 0;
            }
            s->member_size = archive_entry_size_is_set(e)
                                 ? (uint64_t)archive_entry_size(e) : 0;
            return 1;
        }
        if (archive_entry_filetype(e) == AE_IFREG && nseen < 3) {
            size_t n = strlen(seen);
            snprintf(seen + n, sizeof(seen) - n, "%s%s", nseen ? ", " : "",
                     name);
            nseen++;
        }
    }
    if (r != ARCHIVE_EOF)
        df_corrupt(&s->terr, s->name, -1, "not a readable tar archive: %s",
                   archive_error_string(a) ? archive_error_string(a)
                                           : "corrupt");
    else
        df_usage(&s->terr, "%s: no member %s in the archive%s%s%s",
                 s->name, s->member, nseen ? " (it has " : "", seen,
                 nseen ? (nseen == 3 ? ", ...)" : ")") : "");
    return 0;
}

/* What the pump holds, freed when it ends. */
struct pump_res {
    struct stream_in *s;
    struct archive *a;
    struct pump_io io;
};

static void pump_release(void *arg)
{
    struct pump_res *r = arg;
    close(r->s->pipe_w);
    r->s->pipe_w = -1;
    if (r->a)
        archive_read_free(r->a);
    free(r->io.buf);
}

static void pump_run(struct pump_res *r)
{
    struct stream_in *s = r->s;
    struct archive *a = r->a;
    struct archive_entry *e;
    uint64_t at = 0;

    if (!a || !r->io.buf) {
        df_io(&s->terr, s->name, ENOMEM, "cannot allocate the "
              "decompressor");
        return;
    }
    archive_read_support_filter_all(a);
    if (s->member[0])
        archive_read_support_format_tar(a);
    else
        archive_read_support_format_raw(a);
    if (archive_read_open(a, &r->io, NULL, pump_read, NULL) != ARCHIVE_OK) {
        df_corrupt(&s->terr, s->name, -1, "cannot be read: %s",
                   archive_error_string(a) ? archive_error_string(a)
                                           : "unknown format");
        return;
    }
    if (s->member[0] ? !pump_find_member(s, a)
                  : archive_read_next_header(a, &e) != ARCHIVE_OK) {
        if (s->terr.cat == DF_OK)
            df_corrupt(&s->terr, s->name, -1, "%s stream: %s", s->filter,
                       archive_error_string(a) ? archive_error_string(a)
                                               : "cannot be read");
        return;
    }
    for (;;) {
        const void *buf;
        size_t n;
        la_int64_t off;
        int rc = archive_read_data_block(a, &buf, &n, &off);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            df_corrupt(&s->terr, s->name, -1, "%s%s: %s after %llu bytes "
                       "of it", s->member[0] ? "tar archive" : s->filter,
                       s->member[0] ? "" : " stream",
                       archive_error_string(a) ? archive_error_string(a)
                                               : "corrupt",
                       (unsigned long long)s->bytes_in);
            break;
        }
        /* libarchive leaves a sparse member's holes out: off jumps */
        if (off < 0 || (uint64_t)off < at) {
            df_corrupt(&s->terr, s->name, -1, "tar archive: member data "
                       "out of order at %lld", (long long)off);
            break;
        }
        if (write_zeros(s->pipe_w, (uint64_t)off - at) < 0 ||
            fd_write_all(s->pipe_w, buf, n) < 0)
            goto write_failed;
        at = (uint64_t)off + n;
    }
    /* a sparse member may end in a hole */
    if (s->terr.cat == DF_OK && s->member[0] && at < s->member_size &&
        write_zeros(s->pipe_w, s->member_size - at) < 0)
        goto write_failed;
    return;
write_failed:
    if (errno != EPIPE)         /* EPIPE: the copy stopped */
        df_io(&s->terr, s->name, errno, "cannot pass on the data");
}

static void *pump_main(void *arg)
{
    struct pump_res r = { .s = arg };
    r.io.s = r.s;
    r.a = archive_read_new();
    r.io.buf = malloc(STREAM_CHUNK);
    pump_run(&r);
    pump_release(&r);
    return NULL;
}

static int refuse(const struct stream_in *s, const char *what,
                  struct df_error *err)
{
    char noun[sizeof(s->member) + 32];
    if (s->member[0])
        snprintf(noun, sizeof(noun), "member %s", s->member);
    else
        snprintf(noun, sizeof(noun), "the stream%s",
                 s->filter ? " (decompressed)" : "");
    if (!strcmp(what, "tar"))
        return df_corrupt(err, s->name, -1, "%s is a tar archive: name the "
                          "disk in it as tar:-//MEMBER, or give -f raw to "
                          "write the archive itself", noun);
    return df_corrupt(err, s->name, -1, "%s is a %s image, which cannot be "
                      "read from a stream: save it to a file and copy "
                      "that%s", noun, what,
                      s->member[0] ? "" : ", or give -f raw to write the "
                                       "container itself");
}

/* Start the pump (s->filter or s->member set, s->head read ahead) and
 * look at what it delivers first. */
static int stream_in_pump(struct stream_in *s, struct df_error *err)
{
    bool filter;
    int p[2];

    if (archive_dl_load(err) < 0)
        return -1;
    if ((s->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0)
        return df_io(err, s->name, errno, "cannot create an eventfd");
    if (pipe2(p, O_CLOEXEC) < 0)
        return df_io(err, s->name, errno, "cannot create a pipe");
    s->pipe_w = p[1];
    s->in.fd = p[0];
    s->in.owns_fd = true;
    /* A copy that stops early closes the read end: the pump gets EPIPE,
     * not a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&s->thread, NULL, pump_main, s)) {
        close(p[1]);
        s->pipe_w = -1;
        return df_io(err, s->name, EAGAIN, "cannot start the "
                     "decompressor");
    }
    s->started = true;
    /* What it delivers is looked at too: a .tar.gz is a tar. */
    s->dhead = malloc(STREAM_SNIFF);
    if (!s->dhead)
        return df_io(err, s->name, ENOMEM, "cannot allocate");
    long n = read_head(s->in.fd, s->dhead, STREAM_SNIFF, s->name, err);
    if (n < 0)
        return -1;
    s->dhead_len = (size_t)n;
    if (s->dhead_len < STREAM_SNIFF && stream_in_finish(s, err) < 0)
        return -1;              /* failed at its start */
    const char *what = stream_sniff(s->dhead, s->dhead_len, &filter);
    if (what)                   /* compressed twice, or a container */
        return filter ? df_corrupt(err, s->name, -1, "%s is %s "
                                   "compressed: not read",
                                   s->member[0] ? "the member" : "the stream",
                                   what)
                      : refuse(s, what, err);
    s->in.unread = s->dhead;
    s->in.unread_len = s->dhead_len;
    return 0;
}

static void stream_in_init(struct stream_in *s, int fd, const char *name)
{
    memset(s, 0, sizeof(*s));
    s->src_fd = fd;
    s->pipe_w = -1;
    s->stop_fd = -1;
    df_file_init(&s->in);
    df_error_init(&s->terr);
    snprintf(s->name, sizeof(s->name), "%s", name);
}

int stream_in_open(struct stream_in *s, int fd, const char *name,
                   bool as_raw, struct df_error *err)
{
    bool filter;

    stream_in_init(s, fd, name);
    if (df_file_from_fd(&s->in, fd, name, false, err) < 0)
        return -1;
    if (as_raw)
        return 0;
    s->head = malloc(STREAM_SNIFF);
    if (!s->head)
        return df_io(err, name, ENOMEM, "cannot allocate");
    long n = read_head(fd, s->head, STREAM_SNIFF, name, err);
    if (n < 0)
        return -1;
    s->head_len = (size_t)n;
    const char *what = stream_sniff(s->head, s->head_len, &filter);
    if (!what) {
        s->in.unread = s->head;
        s->in.unread_len = s->head_len;
        return 0;
    }
    if (!filter)
        return refuse(s, what, err);
    s->filter = what;
    return stream_in_pump(s, err);
}

int stream_in_open_tar(struct stream_in *s, const char *archive,
                       const char *member, const char *name,
                       struct df_error *err)
{
    int fd = STDIN_FILENO;
    stream_in_init(s, -1, name);
    if (strcmp(archive, "-") &&
        (fd = open(archive, O_RDONLY | O_CLOEXEC)) < 0)
        return df_io(err, archive, errno, "cannot open");
    s->src_fd = fd;
    s->own_src = fd != STDIN_FILENO;
    snprintf(s->member, sizeof(s->member), "%s", member);
    s->filter = "tar";
    return stream_in_pump(s, err);
}

int stream_in_finish(struct stream_in *s, struct df_error *err)
{
    if (s->started) {
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    if (s->terr.cat != DF_OK) {
        df_error_copy(err, &s->terr);
        return -1;
    }
    return 0;
}

void stream_in_close(struct stream_in *s)
{
    /* Closing the read end first: a pump blocked on a full pipe gets
     * EPIPE and ends; one waiting for the stream is woken by stop_fd:
     * the copy has failed or stopped. */
    df_file_close(&s->in);
    if (s->started) {
        uint64_t one = 1;
        if (write(s->stop_fd, &one, sizeof(one)) < 0)
            (void)0;            /* an eventfd write cannot fail here */
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    s->stop_fd = -1;
    free(s->head);
    free(s->dhead);
    s->head = s->dhead = NULL;
    if (s->own_src)
        close(s->src_fd);
    s->own_src = false;
}
