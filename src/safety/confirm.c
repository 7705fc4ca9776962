/*
 * confirm.c: asking the user, and showing what would be written.
 *
 * The question (safety.h check 6): with --overwrite on a terminal and
 * without --yes, a destination that holds something is written only
 * after the user types its name, the last component of the path as
 * given ("sdb" for /dev/sdb, "vm.img" for /srv/vm.img) or the path
 * itself.  Typing a name makes the user read which disk it is, which
 * "y" does not.  End of input or anything else refuses.
 *
 * The dry-run sink (--dry-run): the engine runs its whole plan into it;
 * it prints each run of consecutive writes or zeroes once, merged, then
 * the totals, and writes nothing.
 */
#define _GNU_SOURCE
#include "safety/safety_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/size.h"

const char *confirm_expected_name(const char *path)
{
    const char *b = path_basename(path);
    return b[0] ? b : path;
}

int safety_confirm_overwrite(const char *shown, const char *path,
                             const char *desc, FILE *msgs, FILE *answers,
                             struct df_error *err)
{
    FILE *out = msgs ? msgs : stderr;
    FILE *in = answers ? answers : stdin;
    const char *want = confirm_expected_name(path);
    char *line = NULL, *d = strdup(desc);
    size_t cap = 0;
    int ret = -1;

    for (char *p = d; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(out, "diskferry: %s holds %s; its contents will be "
            "overwritten.\ndiskferry: type '%s' to go ahead: ",
            shown, d ? d : "data", want);
    fflush(out);
    ssize_t n = getline(&line, &cap, in);
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    if (n > 0 && (!strcmp(line, want) || !strcmp(line, path) ||
                  !strcmp(line, shown)))
        ret = 0;
    else
        df_refuse(err, shown, "refusing to write: not confirmed "
                  "(the answer was not '%s')", want);
    free(line);
    free(d);
    return ret;
}

int confirm_by_name(const struct safety_req *req, const char *desc,
                    struct df_error *err)
{
    return safety_confirm_overwrite(req->dst_path, req->dst_path, desc,
                                    req->msgs, req->answers, err);
}

/* ------------------------------------------------------------------ */
/* The dry-run sink.                                                   */

enum dryrun_kind { DRYRUN_NONE, DRYRUN_WRITE, DRYRUN_ZERO };

struct dryrun {
    FILE *out;
    enum dryrun_kind kind;      /* the run being merged */
    uint64_t run_off, run_len;
    uint64_t ranges, wbytes, zbytes;
};

static void dryrun_emit(struct dryrun *d)
{
    char sz[32];
    if (d->kind == DRYRUN_NONE)
        return;
    size_format(d->run_len, sz, sizeof(sz));
    fprintf(d->out, "would %s %" PRIu64 "..%" PRIu64 " (%s)\n",
            d->kind == DRYRUN_WRITE ? "write" : "zero ", d->run_off,
            d->run_off + d->run_len, sz);
    d->ranges++;
    d->kind = DRYRUN_NONE;
}

static void dryrun_add(struct dryrun *d, enum dryrun_kind kind, uint64_t off,
                       uint64_t len)
{
    if (d->kind == kind && d->run_off + d->run_len == off) {
        d->run_len += len;
        return;
    }
    dryrun_emit(d);
    d->kind = kind;
    d->run_off = off;
    d->run_len = len;
}

static int dryrun_write(struct sink *s, uint64_t off, const void *buf,
                        size_t len, struct df_error *err)
{
    struct dryrun *d = s->priv;
    dryrun_add(d, DRYRUN_WRITE, off, len);
    d->wbytes += len;
    return 0;
}

void dryrun_sink_range(struct sink *s, uint64_t off, uint64_t len)
{
    struct dryrun *d = s->priv;
    dryrun_add(d, DRYRUN_WRITE, off, len);
    d->wbytes += len;
}

static int dryrun_zero(struct sink *s, uint64_t off, uint64_t len,
                       struct df_error *err)
{
    struct dryrun *d = s->priv;
    if (s->dst_is_zero)
        return 0;
    dryrun_add(d, DRYRUN_ZERO, off, len);
    d->zbytes += len;
    return 0;
}

static int dryrun_finish(struct sink *s, struct df_error *err)
{
    struct dryrun *d = s->priv;
    char w[32], z[32];
    dryrun_emit(d);
    size_format(d->wbytes, w, sizeof(w));
    size_format(d->zbytes, z, sizeof(z));
    fprintf(d->out, "dry run: %s: would write %" PRIu64 " bytes (%s) and "
            "zero %" PRIu64 " bytes (%s) in %" PRIu64 " ranges; nothing "
            "written\n", s->name, d->wbytes, w, d->zbytes, z, d->ranges);
    fflush(d->out);
    return 0;
}

static void dryrun_free(struct sink *s)
{
    if (!s)
        return;
    free(s->priv);
    free(s);
}

static const struct sink_ops dryrun_ops = {
    .name = "dry-run",
    .write = dryrun_write,
    .zero = dryrun_zero,
    .finish = dryrun_finish,
    .digest = NULL,
    .abort_job = NULL,
    .free = dryrun_free,
};

struct sink *dryrun_sink_new(const char *name, uint64_t size, FILE *out,
                             struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    struct dryrun *d = calloc(1, sizeof(*d));
    if (!s || !d) {
        free(s);
        free(d);
        df_io(err, name, ENOMEM, "cannot start the dry run");
        return NULL;
    }
    d->out = out ? out : stdout;
    s->ops = &dryrun_ops;
    s->priv = d;
    s->size = size;
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}
