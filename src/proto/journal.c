/*
 * journal.c: the receiver's resume journal (see journal.h).
 */
#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/file.h"
#include "util/overflow.h"

#define RJOURNAL_MAX_LOAD (1u << 20)     /* ranges read back, a ceiling */

void rjournal_path(const char *dst, bool is_regular, char *out,
                   size_t len)
{
    if (is_regular) {
        snprintf(out, len, "%s.diskferry-resume", dst);
        return;
    }
    snprintf(out, len, "diskferry-resume-%016llx",
             (unsigned long long)XXH64(dst, strlen(dst), 0));
}

/* The name to use with dirfd (journal.h: "relative to dirfd"). */
static const char *rj_name(int dirfd, const char *path)
{
    return dirfd == AT_FDCWD ? path : path_basename(path);
}

struct rj_range {
    uint64_t off, len;
};

static int rj_cmp(const void *a, const void *b)
{
    const struct rj_range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* A sample line "s OFF LEN HASH" into info (a ring of the last ones). */
static bool rj_sample(const char *line, uint64_t size,
                      struct rjournal_info *info, unsigned *seen)
{
    unsigned long long o, l, h;
    char tail;
    if (sscanf(line, "s %llu %llu %16llx%c", &o, &l, &h, &tail) != 4 ||
        tail != '\n' || l == 0 || l > RJOURNAL_SAMPLE_LEN || o > size ||
        l > size - o)
        return false;
    if (info) {
        unsigned at = *seen % RJOURNAL_SAMPLES;
        info->s[at] = (struct rjournal_sample){o, l, h};
    }
    (*seen)++;
    return true;
}

enum rj_kind { RJ_STOP, RJ_RANGE, RJ_SAMPLE, RJ_LEAF, RJ_HW };

/* A hex digit's value, or -1. */
static int rj_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * One line after the header: a range (o, l), a sample or a high-water
 * mark (into info, may be NULL), a leaf hash (leaf number in o, the hash in lf), or RJ_STOP
 * at the first line that does not parse (invariant 2).
 */
static enum rj_kind rj_line(const char *line, uint64_t size, uint64_t *o,
                            uint64_t *l, struct rjournal_leaf *lf,
                            struct rjournal_info *info, unsigned *seen)
{
    unsigned long long a, b;
    char tail, hex[2 * RJOURNAL_HASH_LEN + 1];
    if (!strchr(line, '\n'))
        return RJ_STOP;
    if (line[0] == 's')
        return rj_sample(line, size, info, seen) ? RJ_SAMPLE : RJ_STOP;
    if (line[0] == 'w') {
        if (sscanf(line, "w %llu%c", &a, &tail) != 2 || tail != '\n' ||
            a > size)
            return RJ_STOP;
        if (info) {
            info->has_hw = true;
            if (a > info->hw)
                info->hw = a;
        }
        return RJ_HW;
    }
    if (line[0] == 'h') {
        if (sscanf(line, "h %llu %32[0-9a-f]%c", &a, hex, &tail) != 3 ||
            tail != '\n' || strlen(hex) != 2 * RJOURNAL_HASH_LEN ||
            a >= div_round_up(size, DIGEST_LEAF_SIZE))
            return RJ_STOP;
        lf->leaf = a;
        for (unsigned i = 0; i < RJOURNAL_HASH_LEN; i++)
            lf->hash[i] = (uint8_t)(rj_hex(hex[2 * i]) << 4 |
                                    rj_hex(hex[2 * i + 1]));
        return RJ_LEAF;
    }
    if (sscanf(line, "%llu %llu%c", &a, &b, &tail) != 3 || tail != '\n' ||
        b == 0 || a > size || b > size - a)
        return RJ_STOP;
    *o = a;
    *l = b;
    return RJ_RANGE;
}

int rjournal_load(int dirfd, const char *path, uint64_t size,
                  uint64_t src_id, struct extent_list *done,
                  struct rjournal_info *info, struct df_error *err)
{
    struct rj_range *v = NULL;
    size_t n = 0, cap = 0;
    unsigned seen = 0;
    int ret = 1;
    char line[256];
    struct stat st;
    struct rjournal_info ring;
    int fd = openat(dirfd, rj_name(dirfd, path),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 1;                       /* none (or a symlink: not ours) */
    FILE *f = fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
                  ? fdopen(fd, "re") : NULL;
    if (!f) {
        close(fd);
        return 1;
    }
    memset(&ring, 0, sizeof(ring));
    unsigned ver;
    unsigned long long jsize, jsrc, jdev, jino;
    if (!fgets(line, sizeof(line), f) ||
        sscanf(line, "diskferry-resume %u ", &ver) != 1)
        goto out;                       /* not a journal: not ours */
    if (ver != RJOURNAL_VERSION) {
        ret = df_refuse(err, path, "refusing to resume: a resume journal "
                        "of format %u (this diskferry writes %u); run "
                        "without --resume", ver, RJOURNAL_VERSION);
        goto out;
    }
    if (sscanf(line, "diskferry-resume %*u size=%llu src=%16llx dev=%llu "
               "ino=%llu", &jsize, &jsrc, &jdev, &jino) != 4)
        goto out;
    if (jsize != size || jsrc != src_id) {
        ret = df_refuse(err, path, "refusing to resume: the source "
                        "changed since the interrupted copy; run without "
                        "--resume");
        goto out;
    }
    ring.dev = jdev;
    ring.ino = jino;
    while (fgets(line, sizeof(line), f)) {
        uint64_t o, l;
        struct rjournal_leaf lf;
        enum rj_kind k = rj_line(line, size, &o, &l, &lf, &ring, &seen);
        if (k == RJ_STOP)
            break;                                  /* invariant 2 */
        if (k != RJ_RANGE)
            continue;
        if (n == cap) {
            if (cap >= RJOURNAL_MAX_LOAD)
                break;
            cap = cap ? 2 * cap : 256;
            struct rj_range *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                ret = df_io(err, path, ENOMEM, "cannot load");
                goto out;
            }
            v = nv;
        }
        v[n++] = (struct rj_range){o, l};
    }
    if (n)
        qsort(v, n, sizeof(*v), rj_cmp);
    uint64_t co = 0, cl = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && cl && v[i].off <= co + cl) {
            uint64_t end = v[i].off + v[i].len;
            if (end > co + cl)
                cl = end - co;
            continue;
        }
        if (cl && extent_list_append(done, co, cl, EXT_DATA, path, err) < 0) {
            ret = -1;
            goto out;
        }
        if (i < n) {
            co = v[i].off;
            cl = v[i].len;
        }
    }
    if (info) {
        /* The ring, oldest first. */
        unsigned k = seen < RJOURNAL_SAMPLES ? seen : RJOURNAL_SAMPLES;
        *info = ring;
        info->nsamples = k;
        for (unsigned i = 0; i < k; i++)
            info->s[i] = ring.s[(seen - k + i) % RJOURNAL_SAMPLES];
    }
    ret = 0;
out:
    free(v);
    fclose(f);
    return ret;
}

static int rj_hash(int fd, uint64_t off, uint64_t len, uint64_t *h)
{
    uint8_t buf[RJOURNAL_SAMPLE_LEN];
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, (size_t)(len - got),
                          (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    *h = XXH64(buf, (size_t)len, 0);
    return 0;
}

int rjournal_check_dst(const struct rjournal_info *info,
                       const struct df_file *dst, struct df_error *err)
{
    if (dst->dev != info->dev || dst->ino != info->ino)
        return df_refuse(err, dst->name, "refusing to resume: DST changed "
                         "since the interrupted copy (it is another file "
                         "or device now)");
    for (unsigned i = 0; i < info->nsamples; i++) {
        const struct rjournal_sample *s = &info->s[i];
        uint64_t h;
        if (rj_hash(dst->fd, s->off, s->len, &h) < 0 || h != s->hash)
            return df_refuse(err, dst->name, "refusing to resume: DST "
                             "changed since the interrupted copy (the "
                             "block at offset %llu holds other data)",
                             (unsigned long long)s->off);
    }
    return 0;
}

int rjournal_open(struct rjournal *j, int dirfd, const char *path,
                  uint64_t size, uint64_t src_id, const struct df_file *dst,
                  bool keep, struct df_error *err)
{
    memset(j, 0, sizeof(*j));
    j->fd = -1;
    j->size = size;
    j->dst_fd = dst->fd;
    j->dirfd = AT_FDCWD;
    snprintf(j->path, sizeof(j->path), "%s", path);
    if (dirfd != AT_FDCWD) {
        j->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (j->dirfd < 0) {
            j->dirfd = AT_FDCWD;
            return df_io(err, path, errno, "cannot open the resume "
                         "journal");
        }
        j->own_dir = true;
    }
    const char *name = rj_name(j->dirfd, j->path);
    if (keep) {
        j->fd = openat(j->dirfd, name, O_WRONLY | O_APPEND | O_NOFOLLOW |
                                           O_CLOEXEC);
    } else {
        /* Invariant 6: the old name goes (a symlink itself, not what it
         * points to), the new journal is created, never opened. */
        if (unlinkat(j->dirfd, name, 0) < 0 && errno != ENOENT)
            return df_io(err, path, errno, "cannot replace the resume "
                         "journal");
        j->fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL |
                                           O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (j->fd < 0)
        return df_io(err, path, errno, "cannot open the resume journal");
    if (!keep) {
        char hdr[160];
        int n = snprintf(hdr, sizeof(hdr),
                         "diskferry-resume %d size=%" PRIu64 " src=%016"
                         PRIx64 " dev=%" PRIu64 " ino=%" PRIu64 "\n",
                         RJOURNAL_VERSION, size, src_id, dst->dev,
                         dst->ino);
        if (write(j->fd, hdr, (size_t)n) != n || fdatasync(j->fd) < 0) {
            int e = errno;
            rjournal_close(j);
            return df_io(err, path, e, "cannot write the resume journal");
        }
    }
    return 0;
}

void rjournal_note(struct rjournal *j, uint64_t off, uint64_t len)
{
    if (j->fd < 0 || !len)
        return;
    if (j->npend && j->pend_off[j->npend - 1] + j->pend_len[j->npend - 1]
                        == off) {
        j->pend_len[j->npend - 1] += len;
    } else if (j->npend < RJOURNAL_MAX_PENDING) {
        j->pend_off[j->npend] = off;
        j->pend_len[j->npend++] = len;
    }
    /* A full list drops the range: it is simply sent again on resume. */
    j->pend_bytes += len;
}

void rjournal_note_leaf(struct rjournal *j, uint64_t leaf, const uint8_t *h)
{
    struct rjournal_leaves *p = &j->pend_h;
    if (j->fd < 0)
        return;
    if (p->n == j->pend_hcap) {
        size_t nc = j->pend_hcap ? 2 * j->pend_hcap : 256;
        struct rjournal_leaf *nv = realloc(p->v, nc * sizeof(*nv));
        if (!nv)
            return;                 /* read for the digest instead */
        p->v = nv;
        j->pend_hcap = nc;
    }
    p->v[p->n].leaf = leaf;
    memcpy(p->v[p->n++].hash, h, RJOURNAL_HASH_LEN);
}

int rjournal_reserve(struct rjournal *j, uint64_t end, struct df_error *err)
{
    char line[32];
    if (j->fd < 0 || end <= j->hw)
        return 0;
    uint64_t hw = min_u64(j->size, max_u64(end, j->hw) + RJOURNAL_HW_STEP);
    if (hw < end)
        return df_io(err, j->path, EINVAL, "write at %" PRIu64 " past the "
                     "journaled size %" PRIu64, end, j->size);
    int n = snprintf(line, sizeof(line), "w %" PRIu64 "\n", hw);
    if (write(j->fd, line, (size_t)n) != n || fdatasync(j->fd) < 0)
        return df_io(err, j->path, errno, "cannot write the resume journal");
    j->hw = hw;
    return 0;
}

bool rjournal_full(const struct rjournal *j)
{
    return j->npend >= RJOURNAL_MAX_PENDING - 1;
}

int rjournal_commit(struct rjournal *j, struct df_error *err)
{
    if (j->fd < 0 || !j->npend)
        return 0;
    /* invariant 7: the leaf hashes go with their ranges, after them */
    char *buf = malloc((size_t)j->npend * 48 + 2 * 64 +
                       j->pend_h.n * (24 + 2 * RJOURNAL_HASH_LEN));
    size_t n = 0;
    if (!buf)
        return df_io(err, j->path, ENOMEM, "cannot commit");
    for (unsigned i = 0; i < j->npend; i++)
        n += (size_t)sprintf(buf + n, "%" PRIu64 " %" PRIu64 "\n",
                             j->pend_off[i], j->pend_len[i]);
    /* Invariant 5: the first and the last block of this batch, as the
     * (flushed) destination holds them now. */
    for (unsigned k = 0; k < 2 && j->dst_fd >= 0; k++) {
        unsigned i = k ? j->npend - 1 : 0;
        uint64_t len = min_u64(j->pend_len[i], RJOURNAL_SAMPLE_LEN);
        uint64_t off = k ? j->pend_off[i] + j->pend_len[i] - len
                         : j->pend_off[i];
        uint64_t h;
        if ((k && i == 0 && j->pend_len[i] <= RJOURNAL_SAMPLE_LEN) ||
            rj_hash(j->dst_fd, off, len, &h) < 0)
            continue;
        n += (size_t)sprintf(buf + n, "s %" PRIu64 " %" PRIu64 " %016"
                             PRIx64 "\n", off, len, h);
    }
    for (size_t i = 0; i < j->pend_h.n; i++) {
        n += (size_t)sprintf(buf + n, "h %" PRIu64 " ", j->pend_h.v[i].leaf);
        for (unsigned k = 0; k < RJOURNAL_HASH_LEN; k++)
            n += (size_t)sprintf(buf + n, "%02x", j->pend_h.v[i].hash[k]);
        buf[n++] = '\n';
    }
    j->pend_h.n = 0;
    int ret = 0;
    if (write(j->fd, buf, n) != (ssize_t)n || fdatasync(j->fd) < 0)
        ret = df_io(err, j->path, errno, "cannot write the resume journal");
    free(buf);
    j->npend = 0;
    j->pend_bytes = 0;
    return ret;
}

void rjournal_close(struct rjournal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    rjournal_leaves_release(&j->pend_h);
    j->pend_hcap = 0;
    if (j->own_dir)
        close(j->dirfd);
    j->own_dir = false;
    j->dirfd = AT_FDCWD;
}

void rjournal_remove(struct rjournal *j)
{
    int dirfd = j->own_dir ? j->dirfd : AT_FDCWD;
    if (j->path[0])
        unlinkat(dirfd, rj_name(dirfd, j->path), 0);
    rjournal_close(j);
}

static int rj_leaf_cmp(const void *a, const void *b)
{
    const struct rjournal_leaf *x = a, *y = b;
    return x->leaf < y->leaf ? -1 : x->leaf > y->leaf;
}

int rjournal_leaves(const struct rjournal *j, uint64_t size,
                    const struct extent_list *done,
                    struct rjournal_leaves *out, struct df_error *err)
{
    char line[256];
    unsigned seen = 0;
    size_t cap = 0, k = 0, di = 0;
    const uint64_t nleaves = div_round_up(size, DIGEST_LEAF_SIZE);
    int ret = -1;
    memset(out, 0, sizeof(*out));
    int dirfd = j->own_dir ? j->dirfd : AT_FDCWD;
    int fd = openat(dirfd, rj_name(dirfd, j->path),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return 0;                       /* none: every leaf is read */
    }
    if (!fgets(line, sizeof(line), f))  /* the header: rjournal_load's */
        goto done;
    while (fgets(line, sizeof(line), f)) {
        uint64_t o, l;
        struct rjournal_leaf lf;
        enum rj_kind kind = rj_line(line, size, &o, &l, &lf, NULL, &seen);
        if (kind == RJ_STOP)
            break;                                  /* invariant 2 */
        if (kind != RJ_LEAF)
            continue;
        if (out->n == cap) {
            if (cap >= 2 * nleaves)     /* repeats: enough is known */
                break;
            cap = cap ? 2 * cap : 256;
            struct rjournal_leaf *nv = realloc(out->v, cap * sizeof(*nv));
            if (!nv) {
                df_io(err, j->path, ENOMEM, "cannot load");
                goto out;
            }
            out->v = nv;
        }
        out->v[out->n++] = lf;
    }
done:
    if (out->n)
        qsort(out->v, out->n, sizeof(*out->v), rj_leaf_cmp);
    /* Invariant 7: only leaves the loaded ranges cover whole, once. */
    for (size_t i = 0; i < out->n; i++) {
        uint64_t a = out->v[i].leaf * DIGEST_LEAF_SIZE;
        uint64_t b = min_u64(a + DIGEST_LEAF_SIZE, size);
        while (di < done->n && done->v[di].off + done->v[di].len <= a)
            di++;
        if (di == done->n || done->v[di].off > a ||
            done->v[di].off + done->v[di].len < b ||
            (k && out->v[k - 1].leaf == out->v[i].leaf))
            continue;
        out->v[k++] = out->v[i];
    }
    out->n = k;
    ret = 0;
out:
    if (ret < 0)
        rjournal_leaves_release(out);
    fclose(f);
    return ret;
}

void rjournal_leaves_release(struct rjournal_leaves *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
