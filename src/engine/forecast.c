/*
 * forecast.c: `diskferry plan` (forecast.h): measure each stage of a
 * copy for a bounded time, then predict.
 *
 * Invariants:
 *  1. Nothing is written but a scratch file beside a local file DST,
 *     created O_EXCL under a name of our own and removed before return;
 *     a device DST is only read.
 *  2. Every measurement has a share of the budget and stops at it: a
 *     slow source is sampled less, not longer.
 *  3. A stage not measured is not guessed at: its rate is 0, it is left
 *     out of the model, and the band widens.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <libgen.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dest.h"
#include "engine/endpoint.h"
#include "engine/forecast.h"
#include "engine/job_int.h"
#include "engine/pipeline.h"
#include "engine/plan.h"
#include "engine/source.h"
#include "engine/sync_int.h"
#include "proto/compress.h"
#include "proto/remote.h"
#include "util/file.h"
#include "util/fmap.h"
#include "util/overflow.h"
#include "util/progress.h"
#include "util/size.h"
#include "util/zero.h"

#define LEAF DIGEST_LEAF_SIZE
#define SAMPLE (1u << 20)
#define SAMPLES_MAX 64
#define SCRATCH_MAX (64u << 20)
#define MAP_WINDOW (64ull << 30)
/* A rate above this is the page cache's, not a disk's: the CPU's work. */
#define CACHE_SPEED 1.5e9
/* The CPU time the pipeline spends per CPU-second of work the plan
 * measures piece by piece on one core (calibrated on 2 cores, warm
 * copies of 512 MiB to 1 GiB mixed images: from 0.8 to 1.4 of it, the
 * threads sharing the memory's bandwidth; 1 is the middle). */
#define CPU_SHARE 1.0
/* Seconds a copy spends starting and committing beyond what the plan
 * sees of it (exec, the destination's checks, the rename). */
#define FIXED_START 0.01

/* Shares of the budget (invariant 2). */
#define SHARE_SOURCE 0.25
#define SHARE_CPU 0.10
#define SHARE_LINK 0.45
#define SHARE_DEST 0.15

const char *fc_stage_name(enum fc_stage s)
{
    static const char *const names[FC_STAGES] = {
        "source read", "hashing", "compression", "link",
        "destination write", "read-back",
    };
    return s < FC_STAGES ? names[s] : "?";
}

static void fc_note(struct forecast *fc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fc_note(struct forecast *fc, const char *fmt, ...)
{
    va_list ap;
    if (fc->nnotes >= sizeof(fc->notes) / sizeof(fc->notes[0]))
        return;
    va_start(ap, fmt);
    vsnprintf(fc->notes[fc->nnotes++], sizeof(fc->notes[0]), fmt, ap);
    va_end(ap);
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), dbl_cmp);
    return v[n / 2];
}

/* ---- the map ---- */

/*
 * The plan of the whole disk, as a copy lays it (plan_window over
 * image_map, fs's used map on top), a window at a time: fn(ctx, e) for
 * each extent in order; fn returns 1 to stop early.  0 or -1 with err.
 */
static int plan_walk(struct image *img, const struct fs_layout *fs,
                     int (*fn)(void *ctx, const struct extent *e),
                     void *ctx, struct df_error *err)
{
    struct extent_list raw, pl;
    struct used_map *used[1] = { fs ? fs->used : NULL };
    struct plan_inputs in = { .used = used, .nused = fs && fs->used };
    int ret = -1;

    extent_list_init(&raw, EXTENT_LIST_DEFAULT_CAP);
    extent_list_init(&pl, EXTENT_LIST_DEFAULT_CAP);
    for (uint64_t off = 0; off < img->size;) {
        uint64_t len = min_u64(MAP_WINDOW, img->size - off);
        extent_list_clear(&raw);
        if (image_map(img, off, len, &raw, err) < 0)
            goto out;
        uint64_t end = extent_list_end(&raw, off);
        if (end <= off)
            break;
        if (plan_window(&raw, &in, off, end - off, &pl, err) < 0)
            goto out;
        end = extent_list_end(&pl, off);
        for (size_t i = 0; i < pl.n; i++)
            if (fn(ctx, &pl.v[i]))
                goto done;
        off = end;
    }
done:
    ret = 0;
out:
    extent_list_release(&raw);
    extent_list_release(&pl);
    return ret;
}

struct map_sums {
    struct forecast *fc;
    const struct fs_layout *fs;
    uint64_t size;
};

/* Sum one extent of the plan, in whole leaves as the pipeline skips
 * them: the rest is read. */
static int sum_extent(void *ctx, const struct extent *e)
{
    struct map_sums *m = ctx;
    struct forecast *fc = m->fc;
    uint64_t a = div_round_up(e->off, LEAF) * LEAF;
    uint64_t b = e->off + e->len;
    if (b < m->size)
        b &= ~(uint64_t)(LEAF - 1);
    uint64_t whole = b > a && e->state != EXT_DATA ? b - a : 0;
    fc->data += e->len - whole;
    switch (e->state) {
    case EXT_DATA: break;
    case EXT_ZERO: fc->zero += whole; break;
    case EXT_FREE:
        fc->free += whole;
        if (m->fs)
            fc->free_by[fs_layout_kind_at(m->fs, e->off)] += whole;
        break;
    default: fc->hole += whole; break;
    }
    return 0;
}

static int measure_map(struct image *img, const struct fs_layout *fs,
                       struct forecast *fc, struct df_error *err)
{
    struct map_sums m = { .fc = fc, .fs = fs, .size = img->size };
    return plan_walk(img, fs, sum_extent, &m, err);
}

/* Where the samples are: the offset of each wanted byte counted over
 * what a plain copy reads (DATA, and FREE: free blocks are read). */
struct sampler {
    uint64_t want[SAMPLES_MAX];
    uint64_t off[SAMPLES_MAX];
    bool free[SAMPLES_MAX];     /* in a free extent */
    unsigned n, found;
    uint64_t seen;
};

static int place_samples(void *ctx, const struct extent *e)
{
    struct sampler *s = ctx;
    if (e->state != EXT_DATA && e->state != EXT_FREE)
        return 0;
    while (s->found < s->n && s->want[s->found] < s->seen + e->len) {
        uint64_t at = e->off + (s->want[s->found] - s->seen);
        s->free[s->found] = e->state == EXT_FREE;
        s->off[s->found++] = at & ~(uint64_t)(LEAF - 1);
    }
    s->seen += e->len;
    return s->found == s->n;
}

/* ---- the source and the CPU ---- */

struct samples {
    uint8_t *buf;               /* n * SAMPLE bytes read */
    size_t len;
    size_t nonzero;             /* bytes in non-zero leaves */
};

struct view_scan {
    const uint8_t *p;
    size_t len;
    size_t zero;
};

/* The bytes of [p, p+len) in leaves that are all zeros. */
static size_t zero_leaf_bytes(const uint8_t *p, size_t len)
{
    size_t zero = 0;
    for (size_t o = 0; o < len; o += LEAF) {
        size_t k = (size_t)min_u64(LEAF, len - o);
        if (zero_is_zero(p + o, k))
            zero += k;
    }
    return zero;
}

static void view_scan_fn(void *ctx)
{
    struct view_scan *v = ctx;
    v->zero = zero_leaf_bytes(v->p, v->len);
}

/* The rate at which the first n pieces at s->off read through views of
 * img's file, scanned for zeros as the copy's workers scan them (0: no
 * view could be made). */
static double measure_views(struct image *img, const struct sampler *s,
                            unsigned n)
{
    double r[SAMPLES_MAX];
    unsigned k = 0;
    struct fmap m;
    fmap_init(&m);
    for (unsigned i = 0; i < n && i < SAMPLES_MAX; i++) {
        size_t len = (size_t)min_u64(SAMPLE, img->size - s->off[i]);
        double a = time_now();
        if (fmap_map(&m, &img->file, s->off[i], len) != 0)
            continue;
        struct view_scan v = { .p = m.p, .len = len };
        if (fmap_run(&m, view_scan_fn, &v) < 0)
            continue;
        double t = time_now() - a;
        r[k++] = t > 0 ? len / t : 0;
    }
    fmap_unmap(&m);
    return k ? median(r, k) : 0;
}

/* Samples spread over every byte a plain copy reads (free blocks too:
 * the plain strategy reads them). */
static int measure_source(struct image *img, const struct fs_layout *fs,
                          struct forecast *fc, struct samples *sm,
                          struct df_error *err)
{
    uint64_t total = fc->data + fc->free;
    struct sampler s = { .n = 0 };
    double rates[SAMPLES_MAX], t_all = 0;

    s.n = (unsigned)min_u64(fc->max_samples ? fc->max_samples
                                             : SAMPLES_MAX,
                            div_round_up(total, SAMPLE));
    for (unsigned i = 0; i < s.n; i++)
        s.want[i] = total / s.n * i + total / s.n / 2;
    if (s.n && plan_walk(img, fs, place_samples, &s, err) < 0)
        return -1;
    sm->buf = malloc((size_t)s.found * SAMPLE + 1);
    if (!sm->buf)
        return df_io(err, img->name, ENOMEM, "out of memory");
    /* touched first: the copy reads into buffers it reuses, and a page
     * faulted in would be counted as the source's time */
    memset(sm->buf, 0, (size_t)s.found * SAMPLE);
    double limit = fc->budget * SHARE_SOURCE, t0 = time_now();
    unsigned done = 0;
    uint64_t used_len = 0, used_zero = 0;
    for (unsigned i = 0; i < s.found; i++) {
        if (i >= 4 && time_now() - t0 > limit)
            break;
        size_t n = (size_t)min_u64(SAMPLE, img->size - s.off[i]);
        double a = time_now();
        if (image_read(img, sm->buf + sm->len, n, s.off[i], err) < 0)
            return -1;
        double t = time_now() - a;
        t_all += t;
        rates[done++] = t > 0 ? n / t : 0;
        if (!s.free[i]) {
            used_len += n;
            used_zero += zero_leaf_bytes(sm->buf + sm->len, n);
        }
        sm->len += n;
    }
    fc->zero_share_used = used_len ? (double)used_zero / used_len : 0;
    fc->samples = done;
    if (done > 1) {
        double mean = 0, var = 0;
        for (unsigned i = 0; i < done; i++)
            mean += rates[i] / done;
        for (unsigned i = 0; i < done; i++)
            var += (rates[i] - mean) * (rates[i] - mean) / (done - 1);
        fc->read_cv = mean > 0 ? sqrt(var) / mean : 0;
    }
    /* the median piece: one read that waited for someone else's I/O is
     * not the source's rate */
    fc->read_rate = median(rates, done);
    if (!fc->read_rate && t_all > 0)
        fc->read_rate = sm->len / t_all;
    /* a source the copy reads through views (pipeline.c 6): their rate,
     * faults and the zero scan included, over the same pieces */
    double vr = engine_can_view(img) ? measure_views(img, &s, done) : 0;
    if (vr > 0)
        fc->read_rate = vr;
    /* zero leaves are not sent: keep the others at the front */
    size_t zero = 0, w = 0;
    for (size_t o = 0; o < sm->len; o += LEAF) {
        size_t n = (size_t)min_u64(LEAF, sm->len - o);
        if (zero_is_zero(sm->buf + o, n)) {
            zero += n;
            continue;
        }
        memmove(sm->buf + w, sm->buf + o, n);
        w += n;
    }
    sm->nonzero = w;
    fc->zero_share = sm->len ? (double)zero / sm->len : 0;
    return 0;
}

/* Run fn over the non-zero sample until it took `limit` seconds (at
 * least once): bytes per second on one core. */
static double rate_of(void (*fn)(void *ctx, const uint8_t *b, size_t n),
                      void *ctx, const struct samples *sm, double limit)
{
    if (!sm->nonzero)
        return 0;
    size_t done = 0;
    double t0 = time_now(), t;
    do {
        for (size_t o = 0; o < sm->nonzero; o += LEAF) {
            size_t n = (size_t)min_u64(LEAF, sm->nonzero - o);
            fn(ctx, sm->buf + o, n);
            done += n;
        }
        t = time_now() - t0;
    } while (t < limit / 4 && done < (64u << 20));
    return t > 0 ? done / t : 0;
}

static void hash_fn(void *ctx, const uint8_t *b, size_t n)
{
    uint8_t h[DIGEST_MAX_LEN];
    digest_leaf(*(enum digest_alg *)ctx, b, n, h);
}

struct comp_probe {
    struct comp_ctl ctl;
    struct comp_worker w;
    uint8_t *out;
    uint64_t in_bytes, out_bytes;
};

static void comp_fn(void *ctx, const uint8_t *b, size_t n)
{
    struct comp_probe *c = ctx;
    size_t len = n;
    if (comp_block(&c->ctl, &c->w, b, n, c->out, comp_bound(LEAF),
                   &len) == 0)
        len = n;                /* sent as it is */
    c->in_bytes += n;
    c->out_bytes += len;
}

static void measure_comp(enum comp_mode mode, int level,
                         const struct samples *sm, double limit,
                         double *rate, double *ratio)
{
    struct comp_probe c;
    memset(&c, 0, sizeof(c));
    comp_ctl_init(&c.ctl, mode, level);
    comp_worker_init(&c.w);
    c.out = malloc(comp_bound(LEAF));
    if (c.out) {
        *rate = rate_of(comp_fn, &c, sm, limit);
        *ratio = c.out_bytes ? (double)c.in_bytes / c.out_bytes : 1;
    }
    free(c.out);
    comp_worker_release(&c.w);
}

static void measure_cpu(const struct job_spec *spec, struct forecast *fc,
                        const struct samples *sm)
{
    double limit = fc->budget * SHARE_CPU / 3;
    enum digest_alg alg = spec->jo.digest;
    fc->hash_rate = rate_of(hash_fn, &alg, sm, limit);
    if (!fc->remote)
        return;
    measure_comp(COMPRESS_ZSTD, 1, sm, limit, &fc->zstd_rate,
                 &fc->zstd_ratio);
    measure_comp(COMPRESS_LZ4, 0, sm, limit, &fc->lz4_rate, &fc->lz4_ratio);
}

/* ---- the destination ---- */

/* Where the copy will put SRC's data runs with copy_file_range (a raw
 * source file into a raw file, engine_can_view): that rate, copying
 * pieces spread over SRC into the scratch file fd; 0 when the kernel
 * refuses (another file system: the copy then writes). */
static double measure_copy_range(const struct image *src, int fd,
                                 double limit)
{
    double r[SCRATCH_MAX / SAMPLE], t0 = time_now();
    unsigned n = 0;
    uint64_t pieces = src->size / SAMPLE;
    for (uint64_t done = 0; pieces && done < SCRATCH_MAX &&
                            time_now() - t0 < limit; done += SAMPLE) {
        loff_t so = (loff_t)((n * 7919ull % pieces) * SAMPLE);
        loff_t doff = (loff_t)done;
        double a = time_now();
        ssize_t w = copy_file_range(src->file.fd, &so, fd, &doff, SAMPLE,
                                    0);
        if (w <= 0)
            break;
        double t = time_now() - a;
        r[n++] = t > 0 ? w / t : 0;
    }
    return n ? median(r, n) : 0;
}

/* A local file DST: write and read back a scratch file beside it. */
static void measure_dest_file(const struct job_spec *spec,
                              const struct image *srcimg,
                              struct forecast *fc, const struct samples *sm)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    snprintf(dir, sizeof(dir), "%s", spec->dst);
    snprintf(path, sizeof(path), "%s/.diskferry-plan-%d", dirname(dir),
             (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fc_note(fc, "destination write rate not measured: %s: %s", path,
                strerror(errno));
        return;
    }
    /* 1 MiB writes of the sampled data (zeros if all of it was); the
     * median piece's rate: a stall of the page cache's writeback for
     * someone else's data is not this copy's */
    uint8_t *fill = calloc(1, SAMPLE);
    double r[SCRATCH_MAX / SAMPLE], limit = fc->budget * SHARE_DEST / 2;
    double t0 = time_now();
    uint64_t done = 0;
    unsigned n = 0;
    while (fill && done < SCRATCH_MAX && time_now() - t0 < limit) {
        const uint8_t *src = fill;
        if (sm->nonzero >= SAMPLE)
            src = sm->buf + (n * (uint64_t)SAMPLE) %
                                (sm->nonzero / SAMPLE * SAMPLE);
        double a = time_now();
        ssize_t w = pwrite(fd, src, SAMPLE, (off_t)done);
        if (w <= 0)
            break;
        double t = time_now() - a;
        r[n++] = t > 0 ? w / t : 0;
        done += (uint64_t)w;
    }
    if (spec->fsync && n) {     /* the flush, spread over the pieces */
        double a = time_now();
        fdatasync(fd);
        double t = (time_now() - a) / n;
        for (unsigned i = 0; i < n; i++)
            r[i] = SAMPLE / (SAMPLE / r[i] + t);
    }
    fc->write_rate = median(r, n);
    if (srcimg && engine_can_view(srcimg) &&
        (!spec->out_format || !strcmp(spec->out_format, "raw"))) {
        double c = measure_copy_range(srcimg, fd, limit);
        if (c > 0)
            fc->write_rate = c;
    }
    /* the read-back, as the verification reads it */
    uint8_t *rb = malloc(SAMPLE);
    t0 = time_now();
    uint64_t rd = 0;
    while (rb && rd < done) {
        ssize_t k = pread(fd, rb, SAMPLE, (off_t)rd);
        if (k <= 0)
            break;
        rd += (uint64_t)k;
    }
    double t = time_now() - t0;
    if (rd && t > 0)
        fc->readback_rate = rd / t;
    free(rb);
    free(fill);
    close(fd);
    unlink(path);
}

/* ---- the link ---- */

/* The interface a connection to host leaves by, and its speed (sysfs,
 * Mbit/s; none for loopback or a virtual one that does not say). */
static void link_interface(const char *host, struct forecast *fc)
{
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai = NULL;
    struct sockaddr_storage me;
    socklen_t melen = sizeof(me);
    struct ifaddrs *ifs = NULL;

    if (getaddrinfo(host, "22", &hints, &ai) != 0 || !ai)
        return;
    int s = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(s, (struct sockaddr *)&me, &melen) == 0 &&
        getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr || i->ifa_addr->sa_family != me.ss_family)
                continue;
            /* sin_addr / sin6_addr */
            size_t off = me.ss_family == AF_INET ? 4 : 8;
            size_t alen = me.ss_family == AF_INET ? 4 : 16;
            if (memcmp((char *)i->ifa_addr + off, (char *)&me + off, alen))
                continue;
            snprintf(fc->iface, sizeof(fc->iface), "%s", i->ifa_name);
            break;
        }
    }
    if (s >= 0)
        close(s);
    freeaddrinfo(ai);
    if (ifs)
        freeifaddrs(ifs);
    if (!fc->iface[0])
        return;
    char p[128], buf[32];
    snprintf(p, sizeof(p), "/sys/class/net/%s/speed", fc->iface);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (r > 0) {
        buf[r] = 0;
        long mbit = strtol(buf, NULL, 10);
        if (mbit > 0)
            fc->iface_bps = mbit * 1e6 / 8;
    }
}

/* ---- the model ---- */

static void strategy(const struct job_spec *spec, struct forecast *fc,
                     bool fs_aware, bool compress, bool tcp)
{
    if (fc->n >= FC_MAX_STRATEGIES)
        return;
    struct fc_strategy *s = &fc->v[fc->n++];
    memset(s, 0, sizeof(*s));
    s->fs_aware = fs_aware;
    s->compress = compress;
    s->tcp = tcp;
    snprintf(s->name, sizeof(s->name), "%s%s%s",
             fs_aware ? "fs-aware" : "plain",
             fc->remote ? compress ? ", zstd" : ", uncompressed" : "",
             tcp ? ", tcp" : "");
    uint64_t rd = fc->data + (fs_aware ? 0 : fc->free);
    /* a sync whose changes metadata names reads and sends only them */
    if (spec->kind == JOB_SYNC && fc->sync_known)
        rd = fc->sync_changed;
    /* the share of zero leaves among what this strategy reads */
    uint64_t nonzero = (uint64_t)(rd * (1 - (fs_aware ? fc->zero_share_used
                                                      : fc->zero_share)));
    s->bytes_read = rd;
    double ratio = compress && fc->zstd_ratio > 1 ? fc->zstd_ratio : 1;
    s->bytes_sent = fc->remote ? (uint64_t)(nonzero / ratio) : nonzero;
    unsigned cores = fc->cores ? fc->cores : 1;
    if (fc->read_rate > 0)
        s->stage[FC_READ] = rd / fc->read_rate;
    if (fc->hash_rate > 0)
        s->stage[FC_HASH] = nonzero / fc->hash_rate / cores;
    if (compress && fc->zstd_rate > 0)
        s->stage[FC_COMPRESS] = nonzero / fc->zstd_rate / cores;
    if (fc->remote) {
        double up = tcp && fc->up_rate_streams > 0 ? fc->up_rate_streams
                                                   : fc->up_rate;
        if (fc->pull)           /* the data comes this way */
            up = tcp && fc->down_rate_streams > 0 ? fc->down_rate_streams
                                                  : fc->down_rate;
        if (spec->remote.bwlimit && (up <= 0 || spec->remote.bwlimit < up))
            up = (double)spec->remote.bwlimit;
        if (up > 0)
            s->stage[FC_LINK] = s->bytes_sent / up;
        /* serve reads back what it wrote, as fast as it was read here
         * (not measured there); a pull reads back here.  Both as it is
         * written (engine/readback.h): below, alongside the copy */
        double rb = fc->pull ? fc->readback_rate : fc->read_rate;
        if (rb > 0)
            s->stage[FC_VERIFY] = nonzero / rb;
        if (fc->pull && fc->write_rate > 0)
            s->stage[FC_WRITE] = nonzero / fc->write_rate;
        s->fixed = fc->fixed_local + fc->fixed_remote;
    } else {
        if (fc->write_rate > 0)
            s->stage[FC_WRITE] = nonzero / fc->write_rate;
        double rb = fc->readback_rate > 0 ? fc->readback_rate
                                          : fc->read_rate;
        if (rb > 0)
            s->stage[FC_VERIFY] = nonzero / rb;
        s->fixed = fc->fixed_local;
    }
    /* A sync that compares, or takes its base from a record, hashes SRC
     * whole (and DST at the same time when it compares); what it then
     * writes is known only after: taken as little.  A sync from
     * metadata: the change set, as a copy of just that. */
    if (spec->kind == JOB_SYNC && !fc->sync_known) {
        s->stage[FC_COMPRESS] = s->stage[FC_LINK] = 0;
        s->stage[FC_WRITE] = s->stage[FC_VERIFY] = 0;
        s->bytes_sent = 0;
    }
    /* The copy's stages overlap: the slowest sets the pace, unless the
     * CPU's work spread over the cores takes longer still.  The CPU's
     * work: hashing and compressing, and reading and writing at the
     * page cache's speed (the workers read, and write a file, each its
     * own block, in parallel). */
    double slowest = 0, cpu = s->stage[FC_HASH] * cores +
                              s->stage[FC_COMPRESS] * cores;
    /* A link on loopback is the CPU too: the transport's two ends (ssh
     * and sshd, or the AES-GCM streams and serve) each as busy as the
     * probe saw them, and serve's decompression and writes into the
     * cache besides. */
    bool loop = fc->remote && !strcmp(fc->iface, "lo");
    if (loop && fc->read_rate > 0)
        cpu += nonzero / fc->read_rate;
    if (loop && compress && fc->zstd_rate > 0)    /* serve decompresses
                                                   * about 3x as fast */
        cpu += s->bytes_sent / (3 * fc->zstd_rate);
    s->bottleneck = FC_READ;
    for (int k = FC_READ; k < FC_VERIFY; k++) {
        bool mem = (k == FC_READ && fc->read_rate > CACHE_SPEED) ||
                   (k == FC_WRITE && fc->write_rate > CACHE_SPEED);
        if (mem || (loop && k == FC_LINK)) {
            cpu += s->stage[k] * (k == FC_LINK ? 2 : 1);
            continue;
        }
        if (s->stage[k] > slowest) {
            slowest = s->stage[k];
            s->bottleneck = k;
        }
    }
    cpu *= CPU_SHARE / cores;
    double copy = slowest;
    if (cpu > slowest) {
        copy = cpu;
        s->cpu_bound = true;
        s->bottleneck = s->stage[FC_READ] >= s->stage[FC_WRITE] &&
                        s->stage[FC_READ] >= s->stage[FC_HASH] * cores
                            ? FC_READ
                            : s->stage[FC_WRITE] >= s->stage[FC_HASH] * cores
                                  ? FC_WRITE : FC_HASH;
    }
    /* A remote copy's read-back runs behind the writes, on the far
     * host (a pull's here): it adds only where it is the slower.  On
     * loopback the same two cores do both, and it was measured to cost
     * what it cost at the end (a push of bench/corpus_real.sh's disk
     * over ssh: 0.99x the time with it as without): after the copy, as
     * a local one's. */
    if (!fc->remote || loop)
        s->total = s->fixed + copy + s->stage[FC_VERIFY];
    else
        s->total = s->fixed + (copy > s->stage[FC_VERIFY]
                                   ? copy : s->stage[FC_VERIFY]);
    double band = 0.15 + (fc->read_cv > 0.5 ? 0.15 : fc->read_cv * 0.3);
    if (fc->remote && fc->up_rate <= 0)
        band += 0.3;
    s->low = s->total * (1 - band);
    s->high = s->total * (1 + band);
    /* the command */
    snprintf(s->command, sizeof(s->command), "diskferry %s%s%s%s%s%s %s %s",
             spec->kind == JOB_SYNC ? "sync" : "copy",
             spec->changes ? " --changes " : "",
             spec->changes ? spec->changes : "",
             fs_aware ? " --fs-aware" : "",
             fc->remote && !compress ? " --compress none" : "",
             tcp ? " --transport tcp" : "", spec->src, spec->dst);
}

/* The bottleneck as said: the CPU's where it is (hashing, compression,
 * the page cache, a loopback link), else its stage's name. */
static void strategy_why(const struct forecast *fc, struct fc_strategy *v)
{
    bool loop = !strcmp(fc->iface, "lo");
    if (loop && v->bottleneck == FC_LINK)
        snprintf(v->why, sizeof(v->why), "CPU (loopback: the "
                 "transport's work)");
    else if (v->bottleneck == FC_COMPRESS)
        snprintf(v->why, sizeof(v->why), "CPU (compression)");
    else if (v->cpu_bound || v->bottleneck == FC_HASH)
        snprintf(v->why, sizeof(v->why), "CPU (%s)",
                 v->bottleneck == FC_HASH ? "hashing"
                 : v->bottleneck == FC_WRITE ? "writing to the cache"
                 : "reading from the cache");
    else
        snprintf(v->why, sizeof(v->why), "%s",
                 fc_stage_name(v->bottleneck));
}

static void predict(const struct job_spec *spec, struct forecast *fc)
{
    bool has_free = fc->free > 0;
    for (int fsa = has_free ? 1 : 0; fsa >= 0; fsa--) {
        if (!fc->remote) {
            strategy(spec, fc, fsa, false, false);
            continue;
        }
        strategy(spec, fc, fsa, true, false);
        strategy(spec, fc, fsa, false, false);
        if (spec->remote.tcp || fc->up_rate_streams > 0)
            strategy(spec, fc, fsa, true, true);
    }
    for (unsigned i = 0; i < fc->n; i++)
        strategy_why(fc, &fc->v[i]);
    fc->best = 0;
    for (unsigned i = 1; i < fc->n; i++)
        if (fc->v[i].total < fc->v[fc->best].total)
            fc->best = i;
    if (fc->remote && fc->iface_bps > 0 && fc->up_rate > 0 &&
        fc->up_rate < fc->iface_bps / 4)
        fc_note(fc, "link measured at %.0f Mbit/s on a %.0f Mbit/s "
                "interface (%s): a shaper or a slow route is in the way",
                fc->up_rate * 8 / 1e6, fc->iface_bps * 8 / 1e6, fc->iface);
}

/* ---- the job ---- */

static int plan_dest_local(const struct job_spec *spec, struct source *src,
                           bool nbd, struct forecast *fc,
                           const struct samples *sm, struct df_error *err)
{
    struct dest d;
    struct dest_opts o;
    uint64_t size = 0;
    struct stat st;

    job_dest_opts(spec, &o);
    o.dry_run = true;
    o.msgs = NULL;
    o.interactive = false;
    o.grow = spec->kind == JOB_SYNC;
    dest_init(&d);
    bool known = source_size(src, &size);
    bool exists = !nbd && stat(spec->dst, &st) == 0;
    /* a sync's DST must be there and is written in place: its checks
     * are the copy's with consent (a record) or --overwrite */
    if (spec->kind == JOB_SYNC && !exists)
        fc_note(fc, "%s does not exist: the sync is a copy", spec->dst);
    if (!(spec->kind == JOB_SYNC && exists) &&
        dest_open(&d, &o, spec->dst, src->img, size, known, err) < 0) {
        dest_close(&d);
        return -1;
    }
    dest_abort(&d);
    dest_close(&d);
    if (nbd)
        fc_note(fc, "%s is an NBD export: not written; its write rate is "
                "not measured", spec->dst);
    else if (!exists || S_ISREG(st.st_mode))
        measure_dest_file(spec, src->img, fc, sm);
    else
        fc_note(fc, "%s is a device: not written; its write rate is not "
                "measured", spec->dst);
    return 0;
}

/* plan --sync: the change set, where metadata names it (read now, as the
 * sync would read it first); else the sync hashes SRC to find it. */
static int plan_sync_changes(const struct job_spec *spec,
                             struct source *src, struct forecast *fc,
                             struct df_error *err)
{
    struct sync_state ms;
    struct job_report rep;
    struct extent_list changed;
    int ret = -1;

    if (!sync_meta_spec(spec->changes)) {
        fc_note(fc, "what changed is known once SRC is hashed (%s): the "
                "time is that pass's; what it then writes comes on top",
                spec->changes ? spec->changes : "the state record, else a "
                "comparison");
        return 0;
    }
    memset(&ms, 0, sizeof(ms));
    memset(&rep, 0, sizeof(rep));
    extent_list_init(&changed, EXTENT_LIST_DEFAULT_CAP);
    ms.spec = spec;
    ms.rep = &rep;
    ms.src = src;
    ms.size = fc->size;
    ms.sfd = -1;
    if (sync_meta_open(&ms, err) < 0 ||
        sync_meta_changed(&ms, &changed, err) < 0)
        goto out;
    fc->sync_known = true;
    fc->sync_changed = 0;
    for (size_t i = 0; i < changed.n; i++)
        fc->sync_changed += changed.v[i].len;
    ret = 0;
out:
    change_source_close(ms.meta);
    extent_list_release(&changed);
    return ret;
}

/* One session to DST's host: its probe (share of the budget), and with
 * check the destination's checks there, as a dry run. */
static int probe_once(const struct job_spec *spec,
                      const struct endpoint *dep, const struct source *src,
                      bool tcp, double share, bool check,
                      struct link_probe *lp, double *connect,
                      struct df_error *err)
{
    struct remote_opts ro;
    struct job_report rep;
    struct remote *r = NULL;
    struct sink *sink = NULL;
    uint64_t size = 0;
    bool created = false;
    int ret = -1;

    memset(&rep, 0, sizeof(rep));
    job_copy_remote_opts(spec, dep, &ro, &rep);
    ro.tcp = tcp;
    ro.dry_run = true;
    ro.ask = false;
    double t0 = time_now();
    if (remote_connect(&ro, &r, err) < 0)
        goto out;
    *connect = time_now() - t0;
    if (remote_probe(r, share, lp, err) < 0)
        goto out;
    if (check) {
        source_size(src, &size);
        if (remote_open_dst(r, size, source_id(src), &sink, &created,
                            err) < 0)
            goto out;
    }
    ret = 0;
out:
    if (ret < 0)
        remote_explain(r, err);
    remote_close(r);
    return ret;
}

/* The rates of a probe over the copy's transport (lp); over ssh, the
 * tcp streams measured besides as the alternative (a failure there is
 * only a note). */
static void link_rates(const struct job_spec *spec, const struct endpoint *ep,
                       bool tcp, const struct link_probe *lp, double share,
                       struct forecast *fc)
{
    struct link_probe t;
    struct df_error e;
    double connect;

    fc->up_rate = lp->up;
    fc->down_rate = lp->down;
    if (tcp) {
        fc->up_rate_streams = lp->up;
        fc->down_rate_streams = lp->down;
        fc->streams = lp->streams;
        return;
    }
    df_error_init(&e);
    memset(&t, 0, sizeof(t));
    if (probe_once(spec, ep, NULL, true, share / 2, false, &t, &connect,
                   &e) == 0) {
        fc->up_rate_streams = t.up;
        fc->down_rate_streams = t.down;
        fc->streams = t.streams;
    } else {
        fc_note(fc, "tcp streams not measured: %s", e.msg);
    }
}

/* DST on another host: the link over the transport the copy would use
 * and, over ssh, the tcp streams too; DST checked there. */
static int plan_link(const struct job_spec *spec, const struct endpoint *dep,
                     const struct source *src, struct forecast *fc,
                     struct df_error *err)
{
    struct link_probe lp;
    double share = fc->budget * SHARE_LINK, connect = 0;
    bool tcp = spec->remote.tcp;

    memset(&lp, 0, sizeof(lp));
    if (probe_once(spec, dep, src, tcp, tcp ? share : share / 2, true,
                   &lp, &connect, err) < 0)
        return -1;
    fc->fixed_remote = connect;
    fc->rtt = lp.rtt;
    link_rates(spec, dep, tcp, &lp, share, fc);
    link_interface(dep->host, fc);
    struct link_figures lk = { .up = fc->up_rate, .rtt = fc->rtt,
                               .up_streams = fc->up_rate_streams,
                               .connect = fc->fixed_remote };
    struct df_error e;
    df_error_init(&e);
    if (fc->up_rate > 0 && link_figures_save(dep->host, &lk, &e) < 0)
        fc_note(fc, "the link's figures are not kept: %s", e.msg);
    return 0;
}

/*
 * plan host:SRC DST: the link (both transports), SRC's map through its
 * serve, the local DST's checks and rates.  SRC's reads are not sampled
 * (serve has no random reads): its read rate, its zero leaves inside
 * data and its compressibility are not measured, and the notes say so.
 */
static int plan_pull(const struct job_spec *spec, const struct endpoint *sep,
                     const struct endpoint *dep, struct forecast *fc,
                     struct df_error *err)
{
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct source *src = NULL;
    struct remote_opts ro;
    struct job_report rep;
    struct link_probe lp;
    struct extent_list l;
    struct samples sm = { 0 };
    double share = fc->budget * SHARE_LINK, connect = 0;
    bool tcp = spec->remote.tcp;
    int ret = -1;

    if (spec->kind == JOB_SYNC && spec->changes)
        return df_usage(err, "--changes: plan reads a change set on the "
                        "source's host: run it there");
    fc->remote = fc->pull = true;
    memset(&lp, 0, sizeof(lp));
    extent_list_init(&l, EXTENT_LIST_DEFAULT_CAP);
    if (probe_once(spec, sep, NULL, tcp, tcp ? share : share / 2, false,
                   &lp, &connect, err) < 0)
        goto out;
    fc->fixed_remote = connect;
    fc->rtt = lp.rtt;
    link_rates(spec, sep, tcp, &lp, share, fc);
    memset(&rep, 0, sizeof(rep));
    job_copy_remote_opts(spec, sep, &ro, &rep);
    so.remote = &ro;
    double t0 = time_now();
    if (source_open(sep, &so, &src, err) < 0 ||
        source_check(src, spec->cmd, "copy", spec->force_share, true,
                     err) < 0) {
        if (src)
            remote_explain(src->session, err);
        goto out;
    }
    fc->fixed_local = time_now() - t0 + FIXED_START;
    if (!source_size(src, &fc->size) || !src->ops->map) {
        df_usage(err, "%s: not a disk whose size and map are known",
                 spec->src);
        goto out;
    }
    for (uint64_t off = 0; off < fc->size;) {
        extent_list_clear(&l);
        if (src->ops->map(src, off, fc->size - off, &l, err) < 0)
            goto out;
        uint64_t end = extent_list_end(&l, off);
        if (end <= off)
            break;
        for (size_t i = 0; i < l.n; i++)
            *(l.v[i].state == EXT_DATA ? &fc->data
              : l.v[i].state == EXT_ZERO ? &fc->zero : &fc->hole) +=
                l.v[i].len;
        off = end;
    }
    fc_note(fc, "%s is on %s: its read rate, the zeros inside its data and "
            "how well it compresses are not sampled; its filesystems are "
            "read there (--fs-aware on that host)", spec->src, sep->host);
    /* the digest's rate on this CPU, on bytes that do not compress */
    sm.nonzero = sm.len = 4u << 20;
    sm.buf = malloc(sm.len);
    if (!sm.buf) {
        df_io(err, spec->src, ENOMEM, "out of memory");
        goto out;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 8 <= sm.len; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(sm.buf + i, &x, 8);
    }
    measure_cpu(spec, fc, &sm);
    fc->zstd_ratio = fc->lz4_ratio = 1;
    if (plan_dest_local(spec, src, dep->kind == EP_NBD, fc, &sm, err) < 0)
        goto out;
    link_interface(sep->host, fc);
    predict(spec, fc);
    ret = 0;
out:
    free(sm.buf);
    extent_list_release(&l);
    source_close(src);
    return ret;
}

int job_plan(const struct job_spec *spec, struct forecast *fc,
             struct df_error *err)
{
    struct endpoint sep, dep;
    struct source_opts so = { .open = &spec->src_open, .arg = spec->src };
    struct source *src = NULL;
    struct fs_layout *fs = NULL;
    struct job_spec fsspec;
    struct samples sm = { 0 };
    int ret = -1;
    double t0 = time_now();

    double budget = fc->budget > 0 ? fc->budget : 10;
    memset(fc, 0, sizeof(*fc));
    fc->budget = budget;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    fc->cores = spec->jo.threads ? spec->jo.threads
                                 : nc < 1 ? 1 : nc > 64 ? 64 : (unsigned)nc;
    if (endpoint_parse(spec->src, &sep, err) < 0 ||
        endpoint_parse(spec->dst, &dep, err) < 0)
        return -1;
    if (sep.kind == EP_REMOTE && dep.kind != EP_REMOTE) {
        int r = plan_pull(spec, &sep, &dep, fc, err);
        fc->seconds = time_now() - t0;
        return r;
    }
    if (sep.kind != EP_LOCAL && sep.kind != EP_NBD)
        return df_usage(err, "%s: plan measures a disk image, device, NBD "
                        "export or another host's disk", spec->src);
    if (dep.kind != EP_LOCAL && dep.kind != EP_REMOTE && dep.kind != EP_NBD)
        return df_usage(err, "%s: plan predicts a copy into a file, a "
                        "device, an NBD export or another host's",
                        spec->dst);
    fc->remote = dep.kind == EP_REMOTE;
    struct image_open_opts top = spec->src_open;
    struct job_report rep;
    memset(&rep, 0, sizeof(rep));
    if (spec->kind == JOB_SYNC &&
        sync_top_layer_open_opts(spec, &sep, &top, &so, &rep, err) < 0)
        return -1;
    if (source_open(&sep, &so, &src, err) < 0 ||
        source_check(src, spec->cmd, "copy", spec->force_share, true,
                     err) < 0)
        goto out;
    /* the filesystems, read whatever the strategy: the plan compares */
    fsspec = *spec;
    fsspec.fs_aware = true;
    fsspec.msgs = NULL;
    if (job_fs_begin(&fsspec, src, &fsspec, &fs, err) < 0)
        goto out;
    for (unsigned i = 0; fs && i < fs->n; i++)
        if (!fs->v[i].trusted && fs->v[i].kind != FS_NONE)
            fc_note(fc, "%s %u (%s) would be copied whole: %s",
                    fs->v[i].part.number ? "partition" : "disk",
                    fs->v[i].part.number, fs->v[i].why.fs,
                    fs->v[i].why.reason);
    /* what the copy pays before its first byte, as measured here, and
     * its start (exec, the destination's checks) */
    fc->fixed_local = time_now() - t0 + FIXED_START;
    fc->size = src->img->size;
    if (measure_map(src->img, fs, fc, err) < 0 ||
        measure_source(src->img, fs, fc, &sm, err) < 0)
        goto out;
    measure_cpu(spec, fc, &sm);
    if (spec->kind == JOB_SYNC && plan_sync_changes(spec, src, fc, err) < 0)
        goto out;
    if (fc->remote) {
        if (plan_link(spec, &dep, src, fc, err) < 0)
            goto out;
    } else if (plan_dest_local(spec, src, dep.kind == EP_NBD, fc, &sm,
                               err) < 0) {
        goto out;
    }
    predict(spec, fc);
    ret = 0;
out:
    fc->seconds = time_now() - t0;
    free(sm.buf);
    fs_layout_free(fs);
    source_close(src);
    return ret;
}

/*
 * The prediction a copy or sync starts with (forecast.h): the map, a few
 * samples, the digest's rate; the destination's write and read-back at
 * the rate the source was read (both are the page cache's for a file),
 * and the link of the last plan to that host, if any (else none).
 */
int forecast_quick(const struct job_spec *spec, struct image *img,
                   const struct fs_layout *fs, const struct link_figures *lk,
                   struct fc_strategy *out, struct df_error *err)
{
    struct forecast *fc = calloc(1, sizeof(*fc));
    struct samples sm = { 0 };
    bool remote = lk != NULL;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    if (!fc)
        return df_io(err, img->name, ENOMEM, "out of memory");
    fc->budget = 0.2;
    fc->max_samples = 8;
    fc->remote = remote;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    fc->cores = spec->jo.threads ? spec->jo.threads
                                 : nc < 1 ? 1 : nc > 64 ? 64 : (unsigned)nc;
    fc->size = img->size;
    bool fsa = fs && !spec->jo.fs_hint;
    if (measure_map(img, fsa ? fs : NULL, fc, err) < 0 ||
        measure_source(img, fsa ? fs : NULL, fc, &sm, err) < 0)
        goto out;
    measure_cpu(spec, fc, &sm);
    fc->fixed_local = FIXED_START;
    if (remote) {
        if (lk->up <= 0) {
            ret = 0;            /* no figures of that link: no guess */
            goto out;
        }
        fc->up_rate = lk->up;
        fc->up_rate_streams = lk->up_streams;
        fc->rtt = lk->rtt;
        fc->fixed_remote = lk->connect;
    } else {
        fc->write_rate = fc->read_rate;
        fc->readback_rate = fc->read_rate;
    }
    bool compress = remote && (!spec->remote.compress ||
                               strcmp(spec->remote.compress, "none"));
    strategy(spec, fc, fsa, compress, remote && spec->remote.tcp);
    strategy_why(fc, &fc->v[0]);
    *out = fc->v[0];
    ret = 0;
out:
    free(sm.buf);
    free(fc);
    return ret;
}

/* ---- a link's figures, kept for the copies after a plan ---- */

#define LINKS_FILE "plan-links"
#define LINKS_MAX 64
#define LINKS_LINE 384

int link_figures_load(const char *host, struct link_figures *lk)
{
    struct df_error e;
    char line[LINKS_LINE], name[260];
    int found = 0;

    memset(lk, 0, sizeof(*lk));
    df_error_init(&e);
    int dfd = state_dir_open_existing(NULL, &e);
    if (dfd < 0)
        return 0;
    int fd = openat(dfd, LINKS_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    close(dfd);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        struct link_figures v;
        if (sscanf(line, "%259s %lf %lf %lf %lf", name, &v.up,
                   &v.up_streams, &v.rtt, &v.connect) == 5 &&
            !strcmp(name, host) && v.up > 0 && v.up < 1e12 &&
            v.up_streams >= 0 && v.rtt >= 0 && v.connect >= 0 &&
            v.connect < 600) {
            *lk = v;            /* the last line of host wins */
            found = 1;
        }
    }
    fclose(f);
    return found;
}

int link_figures_save(const char *host, const struct link_figures *lk,
                      struct df_error *err)
{
    char buf[LINKS_MAX * LINKS_LINE], name[260];
    size_t len = 0;
    int ret = -1;

    if (strlen(host) >= sizeof(name) || strpbrk(host, " \t\n"))
        return 0;               /* not a name a line can hold */
    int dfd = state_dir_open(NULL, err);
    if (dfd < 0)
        return -1;
    /* the other hosts' lines, the newest LINKS_MAX - 1 */
    int fd = openat(dfd, LINKS_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        char all[LINKS_MAX * LINKS_LINE];
        ssize_t n = read(fd, all, sizeof(all) - 1);
        close(fd);
        all[n > 0 ? n : 0] = 0;
        char *lines[LINKS_MAX * 2];
        unsigned nl = 0;
        for (char *save = NULL, *l = strtok_r(all, "\n", &save);
             l && nl < LINKS_MAX * 2; l = strtok_r(NULL, "\n", &save))
            if (sscanf(l, "%259s", name) == 1 && strcmp(name, host))
                lines[nl++] = l;
        for (unsigned i = nl > LINKS_MAX - 1 ? nl - (LINKS_MAX - 1) : 0;
             i < nl; i++)
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\n",
                                    lines[i]);
    }
    len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                            "%s %.0f %.0f %.6f %.3f\n", host, lk->up,
                            lk->up_streams, lk->rtt, lk->connect);
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.%d", LINKS_FILE, (int)getpid());
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                              O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len ||
        renameat(dfd, tmp, dfd, LINKS_FILE) < 0) {
        df_io(err, LINKS_FILE, errno, "cannot keep the link's figures");
        if (fd >= 0)
            unlinkat(dfd, tmp, 0);
    } else {
        ret = 0;
    }
    if (fd >= 0)
        close(fd);
    close(dfd);
    return ret;
}
