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
#include <unistd.h>
#include <xxhash.h>

#include "util/file.h"
#include "util/overflow.h"

#define RJOURNAL_MAX_LOAD (1u << 20)     /* ranges read back, a ceiling */

void rjournal_path(const char *dst, bool is_regular, const char *state_dir,
                   char *out, size_t len)
{
    if (is_regular) {
        snprintf(out, len, "%s.diskferry-resume", dst);
        return;
    }
    snprintf(out, len, "%s/diskferry-resume-%016llx",
             state_dir ? state_dir : "/var/tmp",
             (unsigned long long)XXH64(dst, strlen(dst), 0));
}

struct rj_range {
    uint64_t off, len;
};

static int rj_cmp(const void *a, const void *b)
{
    const struct rj_range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

int rjournal_load(const char *path, uint64_t size, uint64_t src_id,
                  struct extent_list *done, struct df_error *err)
{
    FILE *f = fopen(path, "re");
    struct rj_range *v = NULL;
    size_t n = 0, cap = 0;
    int ret = 1;
    char line[256];
    if (!f)
        return 1;
    unsigned long long jsize, jsrc;
    if (!fgets(line, sizeof(line), f) ||
        sscanf(line, "diskferry-resume 1 size=%llu src=%llx", &jsize,
               &jsrc) != 2 ||
        jsize != size || jsrc != src_id)
        goto out;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long o, l;
        char tail;
        if (!strchr(line, '\n') ||
            sscanf(line, "%llu %llu%c", &o, &l, &tail) != 3 || tail != '\n')
            break;                                  /* invariant 2 */
        if (l == 0 || o > size || l > size - o)
            break;
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
    ret = 0;
out:
    free(v);
    fclose(f);
    return ret;
}

int rjournal_open(struct rjournal *j, const char *path, uint64_t size,
                  uint64_t src_id, bool keep, struct df_error *err)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->path, sizeof(j->path), "%s", path);
    j->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC |
                           (keep ? O_APPEND : O_TRUNC), 0600);
    if (j->fd < 0)
        return df_io(err, path, errno, "cannot open the resume journal");
    if (!keep) {
        char hdr[96];
        int n = snprintf(hdr, sizeof(hdr),
                         "diskferry-resume 1 size=%" PRIu64 " src=%016"
                         PRIx64 "\n", size, src_id);
        if (write(j->fd, hdr, (size_t)n) != n || fdatasync(j->fd) < 0) {
            int e = errno;
            close(j->fd);
            j->fd = -1;
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

bool rjournal_full(const struct rjournal *j)
{
    return j->npend >= RJOURNAL_MAX_PENDING - 1;
}

int rjournal_commit(struct rjournal *j, struct df_error *err)
{
    if (j->fd < 0 || !j->npend)
        return 0;
    char *buf = malloc((size_t)j->npend * 48);
    size_t n = 0;
    if (!buf)
        return df_io(err, j->path, ENOMEM, "cannot commit");
    for (unsigned i = 0; i < j->npend; i++)
        n += (size_t)sprintf(buf + n, "%" PRIu64 " %" PRIu64 "\n",
                             j->pend_off[i], j->pend_len[i]);
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
}

void rjournal_remove(struct rjournal *j)
{
    rjournal_close(j);
    if (j->path[0])
        unlink(j->path);
}

int rskip_each(struct rskip *k, uint64_t off, uint64_t len,
               const uint8_t *buf, rskip_fn fn, void *ctx,
               struct df_error *err)
{
    const uint64_t start = off, end = off + len;
    const struct extent_list *d = k->done;
    while (off < end) {
        /* Ascending delivery: the cursor only moves forward. */
        while (d && k->i < d->n && d->v[k->i].off + d->v[k->i].len <= off)
            k->i++;
        uint64_t next = end;
        if (d && k->i < d->n) {
            const struct extent *e = &d->v[k->i];
            if (e->off <= off) {
                uint64_t skip_end = min_u64(e->off + e->len, end);
                k->skipped += skip_end - off;
                off = skip_end;
                continue;
            }
            next = min_u64(e->off, end);
        }
        if (fn(ctx, off, next - off, buf ? buf + (off - start) : NULL,
               err) < 0)
            return -1;
        off = next;
    }
    return 0;
}

int partial_path(const char *path, char *out, size_t len,
                 struct df_error *err)
{
    char dir[PATH_MAX];
    path_dirname(path, dir, sizeof(dir));
    if (snprintf(out, len, "%s/.%s.diskferry-partial", dir,
                 path_basename(path)) >= (int)len)
        return df_fail(err, DF_USAGE, 0, path, -1, "path too long");
    return 0;
}

int partial_commit(const char *partial, const char *path,
                   struct df_error *err)
{
    if (renameat2(AT_FDCWD, partial, AT_FDCWD, path,
                  RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return df_refuse(err, path, "refusing to write: it appeared "
                         "while copying (the copy is left in %s)", partial);
    if (errno != EINVAL && errno != ENOSYS)
        return df_io(err, path, errno, "cannot rename %s", partial);
    /* No RENAME_NOREPLACE here: link() refuses to replace too. */
    if (link(partial, path) < 0)
        return df_io(err, path, errno, "cannot link %s", partial);
    unlink(partial);
    return 0;
}
