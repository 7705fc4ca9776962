/*
 * lvm_thin.c: the lvm-thin:META,OLD,NEW change source: what changed
 * between two thin devices of one LVM thin pool, from the pool's block
 * mappings (docs/formats.md section 9).
 *
 * A thin device maps its blocks to the pool's data blocks; a snapshot
 * starts by sharing all of its origin's, and a write to either side
 * remaps the block it lands in.  So where OLD (what DST holds) and NEW
 * (SRC) map a block to the same data block, the bytes are the same.
 * thin_delta (thin-provisioning-tools, run here as a child: no shell,
 * META one argument after "--") reads the mappings of both from the
 * pool's metadata and prints the runs that agree and those that do not;
 * lvm_thin.h reads that output, strictly.
 *
 * META is a file holding the metadata (a copy, or a test's
 * thin_restore), or the pool's metadata device (/dev/mapper/VG-POOL_tmeta).
 * The metadata of a live pool changes under the reader, so a block
 * device is read through its metadata snapshot (--metadata-snap), which
 * the user reserves first and releases after:
 *
 *   dmsetup message VG-POOL-tpool 0 reserve_metadata_snap
 *   diskferry sync --changes lvm-thin:/dev/mapper/VG-POOL_tmeta,OLD,NEW ...
 *   dmsetup message VG-POOL-tpool 0 release_metadata_snap
 *
 * OLD and NEW are thin ids (lvs -o+thin_id), not names.  Without a
 * reserved snapshot thin_delta fails and so does the open, saying so.
 *
 * Refused: thin_delta missing (DF_USAGE), thin_delta failing (DF_CORRUPT
 * with the first line it printed on stderr), and output lvm_thin.h does
 * not accept (DF_CORRUPT naming the line).
 */
#define _GNU_SOURCE             /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "track/lvm_thin.h"
#include "track/track.h"
#include "util/interrupt.h"
#include "util/overflow.h"

extern char **environ;

#define THIN_NAME "lvm-thin"
#define THIN_MAX_ATTRS 8
#define THIN_NAME_MAX 16
#define THIN_STDERR_MAX 1024
#define THIN_CHUNK (64u << 10)

enum thin_state {
    THIN_ST_START,              /* before <superblock> */
    THIN_ST_SB,                 /* before <diff> */
    THIN_ST_DIFF,               /* ranges, until </diff> */
    THIN_ST_AFTER_DIFF,         /* before </superblock> */
    THIN_ST_END,                /* only blank lines may follow */
};

struct thin_attr {
    const char *k, *v;
    size_t klen, vlen;
};

/* One line's element: <name a="v" ...>, <name .../> or </name>. */
struct thin_tag {
    const char *name;
    size_t nlen;
    bool is_close, is_empty;
    size_t nattr;
    struct thin_attr a[THIN_MAX_ATTRS];
};

static bool thin_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool thin_is_name(char c)
{
    return (c >= 'a' && c <= 'z') || c == '_';
}

/* What an attribute value may hold: printable ASCII but the quote and
 * markup (no entities: thin_delta prints numbers and an empty uuid). */
static bool thin_is_value(char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '<' && c != '&';
}

static int thin_fail(struct lvm_thin_parser *p, struct df_error *err,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* DF_CORRUPT "thin_delta output line N: ..." naming p->what. */
static int thin_fail(struct lvm_thin_parser *p, struct df_error *err,
                     const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->failed = true;
    return df_corrupt(err, p->what, -1, "thin_delta output line %zu: %s",
                      p->line_no, msg);
}

static size_t thin_name_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && thin_is_name(s[i]))
        i++;
    return i;
}

/*
 * Split line s[0..n) into t: 1 for a blank line, 0 for one element, -1
 * with err set for anything else.
 */
static int thin_tag_parse(struct lvm_thin_parser *p, const char *s, size_t n,
                          struct thin_tag *t, struct df_error *err)
{
    size_t i = 0;

    memset(t, 0, sizeof(*t));
    while (i < n && thin_is_blank(s[i]))
        i++;
    if (i == n)
        return 1;
    if (s[i] != '<')
        return thin_fail(p, err, "expected an element, found text");
    i++;
    if (i < n && s[i] == '/') {
        t->is_close = true;
        i++;
    }
    t->name = s + i;
    t->nlen = thin_name_len(s + i, n - i);
    if (t->nlen == 0 || t->nlen > THIN_NAME_MAX)
        return thin_fail(p, err, "element name missing or not known");
    i += t->nlen;
    for (;;) {
        size_t blanks = i;
        while (i < n && thin_is_blank(s[i]))
            i++;
        blanks = i - blanks;
        if (i == n)
            return thin_fail(p, err, "element <%.*s> not closed on its "
                             "line", (int)t->nlen, t->name);
        if (s[i] == '>') {
            i++;
            break;
        }
        if (t->is_close)
            return thin_fail(p, err, "unexpected text in </%.*s>",
                             (int)t->nlen, t->name);
        if (s[i] == '/') {
            if (i + 1 == n || s[i + 1] != '>')
                return thin_fail(p, err, "stray '/' in <%.*s>",
                                 (int)t->nlen, t->name);
            t->is_empty = true;
            i += 2;
            break;
        }
        if (!blanks)
            return thin_fail(p, err, "no blank before an attribute of "
                             "<%.*s>", (int)t->nlen, t->name);
        if (t->nattr == THIN_MAX_ATTRS)
            return thin_fail(p, err, "too many attributes in <%.*s>",
                             (int)t->nlen, t->name);
        struct thin_attr *a = &t->a[t->nattr++];
        a->k = s + i;
        a->klen = thin_name_len(s + i, n - i);
        i += a->klen;
        if (a->klen == 0 || i + 1 >= n || s[i] != '=' || s[i + 1] != '"')
            return thin_fail(p, err, "malformed attribute in <%.*s>",
                             (int)t->nlen, t->name);
        i += 2;
        a->v = s + i;
        while (i < n && thin_is_value(s[i]))
            i++;
        a->vlen = (size_t)(s + i - a->v);
        if (i == n || s[i] != '"')
            return thin_fail(p, err, "attribute %.*s of <%.*s> not "
                             "closed by a quote", (int)a->klen, a->k,
                             (int)t->nlen, t->name);
        i++;
    }
    while (i < n && thin_is_blank(s[i]))
        i++;
    if (i != n)
        return thin_fail(p, err, "text after <%s%.*s>",
                         t->is_close ? "/" : "", (int)t->nlen, t->name);
    return 0;
}

static bool thin_is(const struct thin_tag *t, const char *name)
{
    return t->nlen == strlen(name) && !memcmp(t->name, name, t->nlen);
}

static bool thin_attr_is(const struct thin_attr *a, const char *name)
{
    return a->klen == strlen(name) && !memcmp(a->k, name, a->klen);
}

/* Every attribute of t is one of `known` (NULL-terminated), at most
 * once. */
static int thin_attrs_check(struct lvm_thin_parser *p,
                            const struct thin_tag *t,
                            const char *const *known, struct df_error *err)
{
    for (size_t i = 0; i < t->nattr; i++) {
        const struct thin_attr *a = &t->a[i];
        size_t k = 0;
        while (known[k] && !thin_attr_is(a, known[k]))
            k++;
        if (!known[k])
            return thin_fail(p, err, "unknown attribute %.*s in <%.*s>",
                             (int)a->klen, a->k, (int)t->nlen, t->name);
        for (size_t j = 0; j < i; j++)
            if (thin_attr_is(&t->a[j], known[k]))
                return thin_fail(p, err, "attribute %s repeated in <%.*s>",
                                 known[k], (int)t->nlen, t->name);
    }
    return 0;
}

/*
 * The decimal attribute `name` of t into *v: 1 when absent, 0, or -1
 * with err set when it is not a plain decimal number or overflows.
 */
static int thin_num_opt(struct lvm_thin_parser *p, const struct thin_tag *t,
                        const char *name, uint64_t *v, struct df_error *err)
{
    const struct thin_attr *a = NULL;
    for (size_t i = 0; i < t->nattr && !a; i++)
        if (thin_attr_is(&t->a[i], name))
            a = &t->a[i];
    if (!a)
        return 1;
    uint64_t x = 0;
    if (a->vlen == 0)
        return thin_fail(p, err, "%s=\"\" in <%.*s> is not a number", name,
                         (int)t->nlen, t->name);
    for (size_t i = 0; i < a->vlen; i++) {
        char c = a->v[i];
        if (c < '0' || c > '9')
            return thin_fail(p, err, "%s=\"%.*s\" in <%.*s> is not a "
                             "number", name, (int)min_u64(a->vlen, 32),
                             a->v, (int)t->nlen, t->name);
        if (ovf_mul(x, 10, &x) || ovf_add(x, (uint64_t)(c - '0'), &x))
            return thin_fail(p, err, "%s=\"%.*s\" in <%.*s> overflows",
                             name, (int)min_u64(a->vlen, 32), a->v,
                             (int)t->nlen, t->name);
    }
    *v = x;
    return 0;
}

/* As thin_num_opt, the attribute required. */
static int thin_num(struct lvm_thin_parser *p, const struct thin_tag *t,
                    const char *name, uint64_t *v, struct df_error *err)
{
    int r = thin_num_opt(p, t, name, v, err);
    if (r > 0)
        return thin_fail(p, err, "<%.*s> has no %s attribute", (int)t->nlen,
                         t->name, name);
    return r;
}

static int thin_superblock(struct lvm_thin_parser *p,
                           const struct thin_tag *t, struct df_error *err)
{
    static const char *const known[] = {
        "uuid", "time", "transaction", "flags", "version",
        "data_block_size", "nr_data_blocks", "metadata_snap", NULL };
    static const char *const numeric[] = {
        "time", "transaction", "nr_data_blocks", "metadata_snap", NULL };
    uint64_t v, dbs;

    if (thin_attrs_check(p, t, known, err) < 0)
        return -1;
    for (size_t k = 0; numeric[k]; k++)
        if (thin_num_opt(p, t, numeric[k], &v, err) < 0)
            return -1;
    int r = thin_num_opt(p, t, "flags", &v, err);
    if (r < 0)
        return -1;
    if (r == 0 && v != 0)           /* bit 0: needs_check */
        return thin_fail(p, err, "the pool's metadata is flagged "
                         "needs_check: run thin_check, or use --changes "
                         "compare");
    r = thin_num_opt(p, t, "version", &v, err);
    if (r < 0)
        return -1;
    if (r == 0 && v != 2)
        return thin_fail(p, err, "version %" PRIu64 " is not known (2 is)",
                         v);
    if (thin_num(p, t, "data_block_size", &dbs, err) < 0)
        return -1;
    if (dbs < LVM_THIN_BLOCK_MIN_SECTORS ||
        dbs > LVM_THIN_BLOCK_MAX_SECTORS ||
        dbs % LVM_THIN_BLOCK_MIN_SECTORS)
        return thin_fail(p, err, "data_block_size %" PRIu64 " outside "
                         "%u..%u sectors or not a multiple of %u", dbs,
                         LVM_THIN_BLOCK_MIN_SECTORS,
                         LVM_THIN_BLOCK_MAX_SECTORS,
                         LVM_THIN_BLOCK_MIN_SECTORS);
    p->block_bytes = dbs * 512;
    return 0;
}

static int thin_diff(struct lvm_thin_parser *p, const struct thin_tag *t,
                     struct df_error *err)
{
    static const char *const known[] = { "left", "right", NULL };
    uint64_t left, right;

    if (thin_attrs_check(p, t, known, err) < 0 ||
        thin_num(p, t, "left", &left, err) < 0 ||
        thin_num(p, t, "right", &right, err) < 0)
        return -1;
    if (left != p->old_id || right != p->new_id)
        return thin_fail(p, err, "compares thin ids %" PRIu64 " and %"
                         PRIu64 ", not %" PRIu64 " and %" PRIu64, left,
                         right, p->old_id, p->new_id);
    return 0;
}

/* One <same|different|left_only|right_only begin= length=/>. */
static int thin_range(struct lvm_thin_parser *p, const struct thin_tag *t,
                      bool changed, struct df_error *err)
{
    static const char *const known[] = { "begin", "length", NULL };
    uint64_t begin, length, end;

    if (thin_attrs_check(p, t, known, err) < 0 ||
        thin_num(p, t, "begin", &begin, err) < 0 ||
        thin_num(p, t, "length", &length, err) < 0)
        return -1;
    if (length == 0)
        return thin_fail(p, err, "empty <%.*s> range", (int)t->nlen,
                         t->name);
    if (ovf_add(begin, length, &end))
        return thin_fail(p, err, "<%.*s> range %" PRIu64 "+%" PRIu64
                         " overflows", (int)t->nlen, t->name, begin, length);
    if (begin < p->next_block)
        return thin_fail(p, err, "<%.*s> range at block %" PRIu64 " out of "
                         "order or overlapping (previous ends at %" PRIu64
                         ")", (int)t->nlen, t->name, begin, p->next_block);
    uint64_t nblocks = div_round_up(p->size, p->block_bytes);
    if (end > nblocks)
        return thin_fail(p, err, "<%.*s> range past the device's end "
                         "(blocks %" PRIu64 "..%" PRIu64 ", the device has %"
                         PRIu64 " of %" PRIu64 " bytes)", (int)t->nlen,
                         t->name, begin, end, nblocks, p->block_bytes);
    p->next_block = end;
    if (!changed || p->saturated)
        return 0;
    /* begin < end <= nblocks: begin * block_bytes < size */
    uint64_t off = begin * p->block_bytes, stop;
    if (ovf_mul(end, p->block_bytes, &stop) || stop > p->size)
        stop = p->size;         /* the last block, clipped */
    int r = extent_list_append(p->out, off, stop - off, EXT_DATA, p->what,
                               err);
    if (r < 0)
        p->failed = true;
    else if (r > 0)
        p->saturated = true;
    return r < 0 ? -1 : 0;
}

static int thin_unexpected(struct lvm_thin_parser *p,
                           const struct thin_tag *t, const char *expected,
                           struct df_error *err)
{
    return thin_fail(p, err, "unexpected element <%s%.*s%s> (expected %s)",
                     t->is_close ? "/" : "", (int)t->nlen, t->name,
                     t->is_empty ? "/" : "", expected);
}

/* One complete line, without its newline. */
static int thin_line(struct lvm_thin_parser *p, const char *s, size_t n,
                     struct df_error *err)
{
    struct thin_tag t;
    int r = thin_tag_parse(p, s, n, &t, err);
    if (r != 0)
        return r < 0 ? -1 : 0;
    bool open = !t.is_close && !t.is_empty;

    switch (p->state) {
    case THIN_ST_START:
        if (!open || !thin_is(&t, "superblock"))
            return thin_unexpected(p, &t, "<superblock>", err);
        if (thin_superblock(p, &t, err) < 0)
            return -1;
        p->state = THIN_ST_SB;
        return 0;
    case THIN_ST_SB:
        if (!open || !thin_is(&t, "diff"))
            return thin_unexpected(p, &t, "<diff>", err);
        if (thin_diff(p, &t, err) < 0)
            return -1;
        p->state = THIN_ST_DIFF;
        return 0;
    case THIN_ST_DIFF:
        if (t.is_close && thin_is(&t, "diff")) {
            p->state = THIN_ST_AFTER_DIFF;
            return 0;
        }
        if (t.is_empty && thin_is(&t, "same"))
            return thin_range(p, &t, false, err);
        if (t.is_empty && (thin_is(&t, "different") ||
                           thin_is(&t, "left_only") ||
                           thin_is(&t, "right_only")))
            return thin_range(p, &t, true, err);
        return thin_unexpected(p, &t, "a range or </diff>", err);
    case THIN_ST_AFTER_DIFF:
        if (!t.is_close || !thin_is(&t, "superblock"))
            return thin_unexpected(p, &t, "</superblock>", err);
        p->state = THIN_ST_END;
        return 0;
    default:
        return thin_fail(p, err, "element after </superblock>");
    }
}

void lvm_thin_parser_init(struct lvm_thin_parser *p, const char *what,
                          uint64_t old_id, uint64_t new_id, uint64_t size,
                          struct extent_list *out)
{
    p->what = what;
    p->old_id = old_id;
    p->new_id = new_id;
    p->size = size;
    p->out = out;
    p->state = THIN_ST_START;
    p->line_no = 1;
    p->line_len = 0;
    p->block_bytes = 0;
    p->next_block = 0;
    p->saturated = false;
    p->failed = false;
    extent_list_clear(out);
}

int lvm_thin_parser_feed(struct lvm_thin_parser *p, const char *buf,
                         size_t len, struct df_error *err)
{
    if (p->failed)
        return df_corrupt(err, p->what, -1, "thin_delta output refused");
    while (len) {
        const char *nl = memchr(buf, '\n', len);
        size_t piece = nl ? (size_t)(nl - buf) : len;
        if (piece > sizeof(p->line) - p->line_len)
            return thin_fail(p, err, "line longer than %d bytes",
                             LVM_THIN_LINE_MAX);
        memcpy(p->line + p->line_len, buf, piece);
        p->line_len += piece;
        if (!nl)
            break;
        if (thin_line(p, p->line, p->line_len, err) < 0)
            return -1;
        p->line_no++;
        p->line_len = 0;
        buf += piece + 1;
        len -= piece + 1;
    }
    return 0;
}

int lvm_thin_parser_finish(struct lvm_thin_parser *p, struct df_error *err)
{
    if (p->failed)
        return df_corrupt(err, p->what, -1, "thin_delta output refused");
    if (p->line_len) {          /* the last line, without its newline */
        if (thin_line(p, p->line, p->line_len, err) < 0)
            return -1;
        p->line_len = 0;
    }
    if (p->state == THIN_ST_START) {
        p->failed = true;
        return df_corrupt(err, p->what, -1, "thin_delta printed nothing");
    }
    if (p->state != THIN_ST_END)
        return thin_fail(p, err, "output ends before </superblock>");
    if (p->saturated) {
        /* at the cap: everything from the last range on is named */
        struct extent *last = &p->out->v[p->out->n - 1];
        last->len = p->size - last->off;
    }
    return 0;
}

int lvm_thin_parse(const char *what, const char *xml, size_t len,
                   uint64_t old_id, uint64_t new_id, uint64_t size,
                   struct extent_list *out, struct df_error *err)
{
    struct lvm_thin_parser *p = malloc(sizeof(*p));
    if (!p)
        return df_fail(err, DF_IO, ENOMEM, what, -1, "out of memory");
    lvm_thin_parser_init(p, what, old_id, new_id, size, out);
    int r = lvm_thin_parser_feed(p, xml, len, err);
    if (r == 0)
        r = lvm_thin_parser_finish(p, err);
    free(p);
    return r;
}

/* ---- running thin_delta ---- */

struct thin_run {
    pid_t pid;
    int out_fd, err_fd;
    char errbuf[THIN_STDERR_MAX];
    size_t errlen;
};

/* Start thin_delta on meta with stdout and stderr piped to r. */
static int thin_spawn(struct thin_run *r, const char *meta, bool is_dev,
                      uint64_t old_id, uint64_t new_id, struct df_error *err)
{
    char snap1[24], snap2[24];
    char *argv[10];
    int n = 0, out[2] = { -1, -1 }, ep[2] = { -1, -1 }, ret = -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, def;

    snprintf(snap1, sizeof(snap1), "%" PRIu64, old_id);
    snprintf(snap2, sizeof(snap2), "%" PRIu64, new_id);
    argv[n++] = (char *)"thin_delta";
    argv[n++] = (char *)"--snap1";
    argv[n++] = snap1;
    argv[n++] = (char *)"--snap2";
    argv[n++] = snap2;
    if (is_dev)
        argv[n++] = (char *)"--metadata-snap";
    argv[n++] = (char *)"--";           /* META may start with '-' */
    argv[n++] = (char *)meta;
    argv[n] = NULL;

    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
        df_io(err, meta, errno, "cannot create a pipe for thin_delta");
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
    posix_spawnattr_init(&attr);
    /* a stream copy ignores SIGPIPE; the child gets it back, and no
     * signal blocked by a thread of ours */
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(&r->pid, argv[0], &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc == ENOENT) {
        df_usage(err, "lvm-thin: thin_delta not found (install "
                 "thin-provisioning-tools)");
        goto out;
    }
    if (rc) {
        df_io(err, meta, rc, "cannot run thin_delta");
        goto out;
    }
    r->out_fd = out[0];
    r->err_fd = ep[0];
    out[0] = ep[0] = -1;
    ret = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    return ret;
}

/*
 * Read r's stdout into p and its stderr into r->errbuf until both end.
 * A refusal by p is kept in perr and the rest is drained, so that
 * thin_delta's own failure, if any, is the one told.  -1 with err set
 * only for a failure to read (or an interrupt).
 */
static int thin_collect(struct thin_run *r, struct lvm_thin_parser *p,
                        const char *meta, struct df_error *perr,
                        struct df_error *err)
{
    char *buf = malloc(THIN_CHUNK);
    int ret = -1;

    if (!buf)
        return df_fail(err, DF_IO, ENOMEM, meta, -1, "out of memory");
    while (r->out_fd >= 0 || r->err_fd >= 0) {
        struct pollfd pf[2] = { { .fd = r->out_fd, .events = POLLIN },
                                { .fd = r->err_fd, .events = POLLIN } };
        if (poll(pf, 2, -1) < 0) {
            int e = errno;
            if (e != EINTR)
                df_io(err, meta, e, "cannot wait for thin_delta");
            else if (!interrupt_check(err))
                continue;
            goto out;
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i ? &r->err_fd : &r->out_fd;
            if (*fd < 0 || !pf[i].revents)
                continue;
            ssize_t n = read(*fd, buf, THIN_CHUNK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                df_io(err, meta, errno, "cannot read thin_delta's output");
                goto out;
            }
            if (n == 0) {
                close(*fd);
                *fd = -1;
            } else if (i) {
                size_t k = min_u64((uint64_t)n,
                                   sizeof(r->errbuf) - 1 - r->errlen);
                memcpy(r->errbuf + r->errlen, buf, k);
                r->errlen += k;
            } else if (!p->failed) {
                lvm_thin_parser_feed(p, buf, (size_t)n, perr);
            }
        }
    }
    ret = 0;
out:
    free(buf);
    return ret;
}

/* Wait for r's child: its wait status into *status. */
static void thin_reap(struct thin_run *r, int *status)
{
    while (waitpid(r->pid, status, 0) < 0 && errno == EINTR)
        ;
    r->pid = -1;
}

/* thin_delta's failure, told by the first line it printed on stderr. */
static int thin_failed(struct thin_run *r, const char *meta, bool is_dev,
                       int status, struct df_error *err)
{
    r->errbuf[r->errlen] = '\0';
    char *line = r->errbuf;
    line[strcspn(line, "\n")] = '\0';
    if (*line)
        return df_corrupt(err, meta, -1, "thin_delta: %s%s", line,
                          is_dev && strstr(line, "metadata snap")
                              ? " (reserve one: dmsetup message "
                                "VG-POOL-tpool 0 reserve_metadata_snap)"
                              : "");
    if (WIFSIGNALED(status))
        return df_corrupt(err, meta, -1, "thin_delta killed by signal %d",
                          WTERMSIG(status));
    return df_corrupt(err, meta, -1, "thin_delta failed with status %d",
                      WEXITSTATUS(status));
}

struct change_source *lvm_thin_open(const char *meta, uint64_t old_id,
                                    uint64_t new_id, uint64_t size,
                                    struct df_error *err)
{
    struct thin_run r = { .pid = -1, .out_fd = -1, .err_fd = -1 };
    struct lvm_thin_parser *p = NULL;
    struct change_source *cs = NULL;
    struct extent_list l;
    struct df_error perr;
    struct stat st;
    int status = 0;

    extent_list_init(&l, 0);
    df_error_init(&perr);
    if (stat(meta, &st) < 0) {
        df_io(err, meta, errno, "lvm-thin: cannot open the pool metadata");
        goto out;
    }
    bool is_dev = S_ISBLK(st.st_mode);
    if (!is_dev && !S_ISREG(st.st_mode)) {
        df_usage(err, "lvm-thin: %s is not a file or a block device", meta);
        goto out;
    }
    p = malloc(sizeof(*p));
    if (!p) {
        df_fail(err, DF_IO, ENOMEM, meta, -1, "out of memory");
        goto out;
    }
    lvm_thin_parser_init(p, meta, old_id, new_id, size, &l);
    if (thin_spawn(&r, meta, is_dev, old_id, new_id, err) < 0)
        goto out;
    if (thin_collect(&r, p, meta, &perr, err) < 0) {
        kill(r.pid, SIGTERM);   /* ours: started above */
        thin_reap(&r, &status);
        goto out;
    }
    thin_reap(&r, &status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        thin_failed(&r, meta, is_dev, status, err);
        goto out;
    }
    if (p->failed || lvm_thin_parser_finish(p, &perr) < 0) {
        df_error_copy(err, &perr);
        goto out;
    }
    cs = change_source_from_list(THIN_NAME, &l, err);
out:
    if (r.out_fd >= 0)
        close(r.out_fd);
    if (r.err_fd >= 0)
        close(r.err_fd);
    free(p);
    extent_list_release(&l);
    return cs;
}
