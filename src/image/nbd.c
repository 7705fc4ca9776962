/*
 * nbd.c: an NBD export as an image, over libnbd (see nbd.h).
 *
 * map() asks base:allocation block status (when the server negotiated
 * it; otherwise all is data), read/write/zero/flush are the NBD
 * commands.  Requests are cut to NBD_MAX_REQ (libnbd and servers limit
 * one request; 32 MiB is below every limit we know of) and zero
 * requests to NBD_MAX_ZERO (the protocol's length is 32 bits).
 *
 * A dirty bitmap (image_open_opts.nbd_bitmap): its context is asked for on every
 * connection besides base:allocation, and nbd_image_dirty() asks block
 * status and reads only its entries (map() only base:allocation's).
 */
#include "image/nbd.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "image/nbd_dl.h"
#include "util/overflow.h"

#define NBD_MAX_REQ (32u << 20)
#define NBD_MAX_ZERO (1u << 30)
#define NBD_MAX_STATUS (1u << 30)
#define NBD_CTX_MAX (sizeof(NBD_CONTEXT_DIRTY_BITMAP) + NBD_BITMAP_NAME_MAX)

struct nbd_priv {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct nbd_handle *h[NBD_POOL_MAX];
    bool busy[NBD_POOL_MAX];
    unsigned n;                 /* handles open */
    unsigned max;               /* 1, or NBD_POOL_MAX with multi-conn */
    bool has_alloc;             /* base:allocation negotiated */
    char bitmap_ctx[NBD_CTX_MAX];   /* qemu:dirty-bitmap:NAME, or "" */
    bool has_bitmap;            /* ... negotiated */
    bool can_zero, can_fast_zero, can_flush;
    bool fast_zero_failed;      /* the server said no once: plain zero */
    bool inited;
    /* One connection: reads and writes go through libnbd's aio calls,
     * so that every worker has its request in flight at once; one
     * waiting thread at a time drives the socket (poll_lock), woken
     * by wake (an eventfd) when a request is issued or completes. */
    bool aio;
    pthread_mutex_t poll_lock;  /* held to issue, to ask the state and to
                                   notify; not across poll() */
    pthread_cond_t poll_cond;   /* a request done, or nobody driving */
    bool driving;               /* a thread is in poll() for the socket */
    int wake;
};

/* One aio request: set by its completion callback (under poll_lock). */
struct nbd_req {
    struct nbd_priv *p;
    int done;
    int error;                  /* errno of a failed request, or 0 */
};

/* One NBD command, for either path (nbd_exec). */
enum nbd_op { NBD_OP_READ, NBD_OP_WRITE, NBD_OP_ZERO, NBD_OP_FLUSH,
              NBD_OP_STATUS };

struct nbd_cmd {
    enum nbd_op op;
    void *buf;                  /* READ */
    const void *wbuf;           /* WRITE */
    uint64_t len, off;
    uint32_t flags;
    nbd_extent_callback ext;    /* STATUS */
    const char *what;           /* "write failed", said on failure */
    bool quiet;                 /* a refusal the caller handles: no err */
};

bool image_is_nbd_uri(const char *arg)
{
    static const char *const schemes[] = {
        "nbd:", "nbds:", "nbd+unix:", "nbds+unix:", "nbd+vsock:",
        "nbds+vsock:",
    };
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (!strncasecmp(arg, schemes[i], strlen(schemes[i])))
            return true;
    return false;
}

/* err from libnbd's last error in this thread (its message names the
 * errno already). */
static int nbd_fail(struct df_error *err, enum df_cat cat, struct image *img,
                    int64_t off, const char *what)
{
    const char *msg = nbd_get_error();
    return df_fail(err, cat, 0, img->name, off, "%s: %s", what,
                   msg ? msg : "unknown error");
}

static struct nbd_handle *nbd_connect_one(struct image *img,
                                          struct df_error *err)
{
    struct nbd_handle *h = nbd_create();
    if (!h) {
        nbd_fail(err, DF_NET, img, -1, "cannot create an NBD handle");
        return NULL;
    }
    /* The URI is the user's own argument: its tls-psk-file is a path
     * they named, like any other on the command line. */
    struct nbd_priv *p = img->priv;
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        (p->bitmap_ctx[0] && nbd_add_meta_context(h, p->bitmap_ctx) < 0) ||
        nbd_set_uri_allow_local_file(h, true) < 0 ||
        nbd_connect_uri(h, img->path) < 0) {
        nbd_fail(err, DF_NET, img, -1, "cannot connect");
        nbd_close(h);
        return NULL;
    }
    return h;
}

/* A handle for one request: a free one, a new one while the pool may
 * grow, else wait for one. */
static struct nbd_handle *nbd_take(struct image *img, unsigned *slot,
                                   struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        for (unsigned i = 0; i < p->n; i++) {
            if (!p->busy[i]) {
                p->busy[i] = true;
                *slot = i;
                pthread_mutex_unlock(&p->lock);
                return p->h[i];
            }
        }
        if (p->n < p->max) {
            unsigned i = p->n++;
            p->busy[i] = true;
            p->h[i] = NULL;
            pthread_mutex_unlock(&p->lock);
            struct nbd_handle *h = nbd_connect_one(img, err);
            pthread_mutex_lock(&p->lock);
            if (!h) {
                /* Connected fewer than offered: stay with those. */
                p->busy[i] = false;
                p->n--;
                p->max = p->n;
                pthread_mutex_unlock(&p->lock);
                if (p->n == 0)
                    return NULL;
                df_error_reset(err);
                pthread_mutex_lock(&p->lock);
                continue;
            }
            p->h[i] = h;
            *slot = i;
            pthread_mutex_unlock(&p->lock);
            return h;
        }
        pthread_cond_wait(&p->cond, &p->lock);
    }
}

static void nbd_give(struct image *img, unsigned slot)
{
    struct nbd_priv *p = img->priv;
    pthread_mutex_lock(&p->lock);
    p->busy[slot] = false;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static int nbd_drv_open(struct image *img, struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    struct nbd_handle *h;

    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->inited = true;
    if (img->open_opts && img->open_opts->nbd_bitmap)
        snprintf(p->bitmap_ctx, sizeof(p->bitmap_ctx), "%s%s",
                 NBD_CONTEXT_DIRTY_BITMAP, img->open_opts->nbd_bitmap);
    h = nbd_create();
    if (!h)
        return nbd_fail(err, DF_NET, img, -1, "cannot create an NBD handle");
    bool uri = nbd_supports_uri(h) == 1;
    bool tls = nbd_supports_tls(h) == 1;
    nbd_close(h);
    if (!uri)
        return df_fail(err, DF_USAGE, 0, img->name, -1, "this libnbd "
                       "cannot parse NBD URIs");
    if (!strncasecmp(img->path, "nbds", 4) && !tls)
        return df_fail(err, DF_USAGE, 0, img->name, -1, "this libnbd has "
                       "no TLS support: use nbd:// or nbd+unix://");
    h = nbd_connect_one(img, err);
    if (!h)
        return -1;
    p->h[0] = h;
    p->n = 1;
    int64_t size = nbd_get_size(h);
    if (size < 0)
        return nbd_fail(err, DF_NET, img, -1, "cannot get the export size");
    img->size = (uint64_t)size;
    if (img->writable && nbd_is_read_only(h) != 0)
        return df_refuse(err, img->name, "refusing to write: the export is "
                         "read-only");
    p->has_alloc = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION)
                   == 1;
    p->has_bitmap = p->bitmap_ctx[0] &&
                    nbd_can_meta_context(h, p->bitmap_ctx) == 1;
    p->can_zero = nbd_can_zero(h) == 1;
    p->can_fast_zero = nbd_can_fast_zero(h) == 1;
    p->can_flush = nbd_can_flush(h) == 1;
    p->max = nbd_can_multi_conn(h) == 1 ? NBD_POOL_MAX : 1;
    p->wake = -1;
    if (p->max == 1) {
        p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->wake < 0)
            return df_io(err, img->name, errno, "cannot create an eventfd");
        pthread_mutex_init(&p->poll_lock, NULL);
        pthread_cond_init(&p->poll_cond, NULL);
        p->aio = true;
    }
    image_set_prop(img, "multi-conn", "%s", p->max > 1 ? "yes" : "no");
    image_set_prop(img, "block-status", "%s", p->has_alloc ? "yes" : "no");
    return 0;
}

static void nbd_drv_close(struct image *img)
{
    struct nbd_priv *p = img->priv;
    for (unsigned i = 0; i < p->n; i++)
        if (p->h[i]) {
            /* A clean NBD_CMD_DISC; nbd_close alone drops the socket. */
            nbd_shutdown(p->h[i], 0);
            nbd_close(p->h[i]);
        }
    p->n = 0;
    if (p->aio) {
        close(p->wake);
        pthread_mutex_destroy(&p->poll_lock);
        pthread_cond_destroy(&p->poll_cond);
    }
    if (p->inited) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
    }
}

int64_t nbd_extents_convert(const char *what, uint64_t off, uint64_t len,
                            const uint32_t *entries, size_t nr_entries,
                            struct extent_list *out, struct df_error *err)
{
    uint64_t done = 0;
    for (size_t i = 0; i + 1 < nr_entries && done < len; i += 2) {
        uint64_t n = entries[i];
        uint32_t flags = entries[i + 1];
        if (n == 0)
            break;
        if (n > len - done)
            n = len - done;
        enum extent_state st = EXT_DATA;
        if ((flags & (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)) ==
            (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO))
            st = EXT_HOLE;
        else if (flags & LIBNBD_STATE_ZERO)
            st = EXT_ZERO;
        int r = extent_list_append(out, off + done, n, st, what, err);
        if (r < 0)
            return -1;
        if (r > 0)
            break;          /* the list is full: image.c loops */
        done += n;
    }
    if (done == 0 && len > 0)
        return df_corrupt(err, what, (int64_t)off, "NBD server answered "
                          "block status with no extent");
    return (int64_t)done;
}

static void nbd_wake(struct nbd_priv *p)
{
    uint64_t one = 1;
    if (write(p->wake, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already set, the poller will wake */
    }
}

static int nbd_req_done(void *user, int *error)
{
    struct nbd_req *r = user;
    r->error = *error;
    r->done = 1;
    return 1;           /* retire the command */
}

/*
 * Wait for r.  One waiter at a time drives the socket (driving): it
 * asks libnbd which way it waits, polls without poll_lock (so others
 * can issue meanwhile; an issue that could not be sent at once wakes
 * it through the eventfd), then, under poll_lock again, notifies only
 * what libnbd still waits for: an issue while it polled may have moved
 * the state on, and a notification the state does not expect is an
 * error of libnbd's ("external event ... is invalid in state READY").
 * The others sleep on poll_cond until their request is done or nobody
 * drives.
 */
static int nbd_aio_wait(struct image *img, struct nbd_handle *h,
                        struct nbd_req *r, uint64_t off,
                        struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    int ret = 0;

    pthread_mutex_lock(&p->poll_lock);
    while (!r->done) {
        if (p->driving) {
            pthread_cond_wait(&p->poll_cond, &p->poll_lock);
            continue;
        }
        if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            ret = df_fail(err, DF_IO, 0, img->name, (int64_t)off,
                          "the NBD connection was lost");
            break;
        }
        unsigned dir = nbd_aio_get_direction(h);
        struct pollfd fds[2] = {
            { .fd = nbd_aio_get_fd(h),
              .events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN
                                                                   : 0) |
                                ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT
                                                                    : 0)) },
            { .fd = p->wake, .events = POLLIN },
        };
        p->driving = true;
        pthread_mutex_unlock(&p->poll_lock);
        int pr = poll(fds, 2, -1);
        int perr = errno;
        pthread_mutex_lock(&p->poll_lock);
        p->driving = false;
        if (pr < 0 && perr != EINTR) {
            ret = df_io(err, img->name, perr, "poll failed");
            break;
        }
        if (pr > 0 && (fds[1].revents & POLLIN)) {
            uint64_t v;
            if (read(p->wake, &v, sizeof(v)) < 0) {
                /* EAGAIN: another wake-up drained it */
            }
        }
        short ev = pr > 0 ? fds[0].revents : 0;
        dir = nbd_aio_get_direction(h);
        int n = 0;
        if ((ev & POLLIN) && (dir & LIBNBD_AIO_DIRECTION_READ))
            n = nbd_aio_notify_read(h);
        else if ((ev & POLLOUT) && (dir & LIBNBD_AIO_DIRECTION_WRITE))
            n = nbd_aio_notify_write(h);
        else if (ev & (POLLHUP | POLLERR))
            n = (dir & LIBNBD_AIO_DIRECTION_WRITE) ? nbd_aio_notify_write(h)
                                                   : nbd_aio_notify_read(h);
        pthread_cond_broadcast(&p->poll_cond);
        if (n < 0) {
            ret = nbd_fail(err, DF_IO, img, (int64_t)off, "NBD I/O failed");
            break;
        }
    }
    pthread_cond_broadcast(&p->poll_cond);
    pthread_mutex_unlock(&p->poll_lock);
    /* A waiter that stopped early must not return while libnbd may
     * still write into its buffer: the connection is dead then, and a
     * dead handle completes nothing more. */
    return ret;
}

/* c, issued on h: synchronously on a handle of the pool, or as an aio
 * request on the one shared connection (issued under poll_lock, then
 * waited for).  0, or -1 with err (not filled for c->quiet when the
 * server refused). */
static int nbd_exec(struct image *img, struct nbd_handle *h,
                    const struct nbd_cmd *c, struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    int64_t r;

    if (!p->aio) {
        switch (c->op) {
        case NBD_OP_READ:
            r = nbd_pread(h, c->buf, c->len, c->off, c->flags);
            break;
        case NBD_OP_WRITE:
            r = nbd_pwrite(h, c->wbuf, c->len, c->off, c->flags);
            break;
        case NBD_OP_ZERO:
            r = nbd_zero(h, c->len, c->off, c->flags);
            break;
        case NBD_OP_FLUSH:
            r = nbd_flush(h, c->flags);
            break;
        default:
            r = nbd_block_status(h, c->len, c->off, c->ext, c->flags);
            break;
        }
        if (r < 0 && !c->quiet)
            nbd_fail(err, DF_IO, img, (int64_t)c->off, c->what);
        return r < 0 ? -1 : 0;
    }
    struct nbd_req q = { .p = p };
    nbd_completion_callback cb = { .callback = nbd_req_done,
                                   .user_data = &q };
    pthread_mutex_lock(&p->poll_lock);
    switch (c->op) {
    case NBD_OP_READ:
        r = nbd_aio_pread(h, c->buf, c->len, c->off, cb, c->flags);
        break;
    case NBD_OP_WRITE:
        r = nbd_aio_pwrite(h, c->wbuf, c->len, c->off, cb, c->flags);
        break;
    case NBD_OP_ZERO:
        r = nbd_aio_zero(h, c->len, c->off, cb, c->flags);
        break;
    case NBD_OP_FLUSH:
        r = nbd_aio_flush(h, cb, c->flags);
        break;
    default:
        r = nbd_aio_block_status(h, c->len, c->off, c->ext, cb, c->flags);
        break;
    }
    pthread_mutex_unlock(&p->poll_lock);
    if (r < 0)
        return c->quiet ? -1 : nbd_fail(err, DF_IO, img, (int64_t)c->off,
                                        c->what);
    nbd_wake(p);        /* the driver: maybe something to write now */
    if (nbd_aio_wait(img, h, &q, c->off, err) < 0)
        return -1;
    if (q.error)
        return c->quiet ? -1 : df_fail(err, DF_IO, q.error, img->name,
                                       (int64_t)c->off, "%s", c->what);
    return 0;
}

/* A handle for one command: the shared one (aio), or one of the pool. */
static struct nbd_handle *nbd_get(struct image *img, unsigned *slot,
                                  struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    *slot = 0;
    return p->aio ? p->h[0] : nbd_take(img, slot, err);
}

static void nbd_put(struct image *img, unsigned slot)
{
    struct nbd_priv *p = img->priv;
    if (!p->aio)
        nbd_give(img, slot);
}

/* One block-status request: map()'s, or nbd_image_dirty()'s. */
struct nbd_status_ctx {
    struct image *img;
    uint64_t off, len;
    struct extent_list *out;
    struct df_error *err;
    int64_t got;            /* bytes described, -1 on error */
    bool seen;
};

static int nbd_status_cb(void *user, const char *metacontext, uint64_t off,
                         uint32_t *entries, size_t nr_entries, int *error)
{
    struct nbd_status_ctx *c = user;
    (void)error;
    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) || c->seen)
        return 0;
    c->seen = true;
    if (off != c->off) {
        df_corrupt(c->err, c->img->name, (int64_t)off, "NBD server answered "
                   "block status for another offset than asked (%llu)",
                   (unsigned long long)c->off);
        c->got = -1;
        return 0;
    }
    c->got = nbd_extents_convert(c->img->name, c->off, c->len, entries,
                                 nr_entries, c->out, c->err);
    return 0;
}

/* Ask block status of c->off, c->len on a handle of the pool, its
 * entries to cb (with c): 0, or -1 with c->err (the callback's error
 * first). */
static int nbd_status_request(struct nbd_status_ctx *c,
                              int (*cb)(void *, const char *, uint64_t,
                                        uint32_t *, size_t, int *))
{
    unsigned slot;
    struct nbd_handle *h = nbd_get(c->img, &slot, c->err);
    if (!h)
        return -1;
    struct nbd_cmd cmd = {
        .op = NBD_OP_STATUS, .len = c->len, .off = c->off,
        .ext = { .callback = cb, .user_data = c },
        .what = "block status failed",
    };
    int r = nbd_exec(c->img, h, &cmd, c->err);
    nbd_put(c->img, slot);
    return r < 0 || c->got < 0 ? -1 : 0;
}

static int nbd_drv_map(struct image *img, uint64_t off, uint64_t len,
                       struct extent_list *out, struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    if (!p->has_alloc)
        return extent_list_append(out, off, len, EXT_DATA, img->name, err)
               < 0 ? -1 : 0;
    if (len > NBD_MAX_STATUS)
        len = NBD_MAX_STATUS;
    struct nbd_status_ctx c = { .img = img, .off = off, .len = len,
                                .out = out, .err = err };
    if (nbd_status_request(&c, nbd_status_cb) < 0)
        return -1;
    if (!c.seen)
        return extent_list_append(out, off, len, EXT_DATA, img->name, err)
               < 0 ? -1 : 0;
    return 0;
}

int64_t nbd_dirty_fold(const char *what, uint64_t off, uint64_t len,
                       const uint32_t *entries, size_t nr_entries,
                       struct extent_list *out, struct df_error *err)
{
    if (nr_entries == 0 || nr_entries % 2)
        return df_corrupt(err, what, (int64_t)off, "NBD server answered "
                          "dirty-bitmap status with %zu entries (pairs of "
                          "length and flags expected)", nr_entries);
    uint64_t done = 0;
    for (size_t i = 0; i < nr_entries; i += 2) {
        uint64_t n = entries[i];
        if (done >= len)
            return df_corrupt(err, what, (int64_t)(off + done), "NBD "
                              "server answered dirty-bitmap status past "
                              "the %llu bytes asked",
                              (unsigned long long)len);
        if (n == 0)
            return df_corrupt(err, what, (int64_t)(off + done), "NBD "
                              "server answered dirty-bitmap status with an "
                              "empty extent");
        if (n > len - done)
            n = len - done;
        if (entries[i + 1] & NBD_STATE_DIRTY) {
            int r = extent_list_append(out, off + done, n, EXT_DATA, what,
                                       err);
            if (r != 0)
                return r < 0 ? -1 : 0;
        }
        done += n;
    }
    return (int64_t)done;
}

static int nbd_dirty_cb(void *user, const char *metacontext, uint64_t off,
                        uint32_t *entries, size_t nr_entries, int *error)
{
    struct nbd_status_ctx *c = user;
    struct nbd_priv *p = c->img->priv;
    (void)error;
    if (strcmp(metacontext, p->bitmap_ctx) || c->got < 0)
        return 0;
    if (c->seen)
        c->got = df_corrupt(c->err, c->img->name, (int64_t)off, "NBD "
                            "server answered dirty-bitmap status twice");
    else if (off != c->off)
        c->got = df_corrupt(c->err, c->img->name, (int64_t)off, "NBD "
                            "server answered dirty-bitmap status for "
                            "another offset than asked (%llu)",
                            (unsigned long long)c->off);
    else
        c->got = nbd_dirty_fold(c->img->name, c->off, c->len, entries,
                                nr_entries, c->out, c->err);
    c->seen = true;
    return 0;
}

int64_t nbd_image_dirty(struct image *img, uint64_t off, uint64_t len,
                        struct extent_list *out, struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    if (img->drv != &image_driver_nbd || !p->has_bitmap) {
        const char *name = img->drv == &image_driver_nbd && p->bitmap_ctx[0]
            ? p->bitmap_ctx + strlen(NBD_CONTEXT_DIRTY_BITMAP) : "";
        return df_refuse(err, img->name, "the NBD server does not export "
                         "the dirty bitmap '%s' (qemu-nbd -B %s exports "
                         "it); run with --changes compare", name, name);
    }
    assert(len > 0 && off <= img->size && len <= img->size - off);
    if (len > NBD_MAX_STATUS)
        len = NBD_MAX_STATUS;
    struct nbd_status_ctx c = { .img = img, .off = off, .len = len,
                                .out = out, .err = err };
    if (nbd_status_request(&c, nbd_dirty_cb) < 0)
        return -1;
    if (!c.seen)
        return df_corrupt(err, img->name, (int64_t)off, "NBD server sent "
                          "no status for %s", p->bitmap_ctx);
    return c.got;
}

/* Read into buf, or write wbuf (NULL: read), in NBD_MAX_REQ pieces. */
static int nbd_rw(struct image *img, void *buf, const void *wbuf,
                  size_t len, uint64_t off, struct df_error *err)
{
    unsigned slot;
    struct nbd_handle *h = nbd_get(img, &slot, err);
    if (!h)
        return -1;
    int r = 0;
    for (size_t done = 0; r == 0 && done < len;) {
        size_t n = len - done < NBD_MAX_REQ ? len - done : NBD_MAX_REQ;
        struct nbd_cmd c = {
            .op = wbuf ? NBD_OP_WRITE : NBD_OP_READ,
            .buf = buf ? (char *)buf + done : NULL,
            .wbuf = wbuf ? (const char *)wbuf + done : NULL,
            .len = n, .off = off + done,
            .what = wbuf ? "write failed" : "read failed",
        };
        r = nbd_exec(img, h, &c, err);
        done += n;
    }
    nbd_put(img, slot);
    return r;
}

static int nbd_drv_read(struct image *img, void *buf, size_t len,
                        uint64_t off, struct df_error *err)
{
    return nbd_rw(img, buf, NULL, len, off, err);
}

static int nbd_drv_write(struct image *img, const void *buf, size_t len,
                         uint64_t off, struct df_error *err)
{
    return nbd_rw(img, NULL, buf, len, off, err);
}

/* Zeros written as data, for a server without write-zeroes. */
static int nbd_write_zeros(struct image *img, uint64_t off, uint64_t len,
                           struct df_error *err)
{
    size_t bl = len < NBD_MAX_REQ ? (size_t)len : NBD_MAX_REQ;
    void *z = calloc(1, bl);
    if (!z)
        return df_io(err, img->name, ENOMEM, "cannot allocate");
    int r = 0;
    for (uint64_t done = 0; r == 0 && done < len;) {
        size_t n = len - done < bl ? (size_t)(len - done) : bl;
        r = nbd_rw(img, NULL, z, n, off + done, err);
        done += n;
    }
    free(z);
    return r;
}

static int nbd_drv_zero(struct image *img, uint64_t off, uint64_t len,
                        struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    if (!p->can_zero)
        return nbd_write_zeros(img, off, len, err);
    unsigned slot;
    struct nbd_handle *h = nbd_get(img, &slot, err);
    if (!h)
        return -1;
    int r = 0;
    for (uint64_t done = 0; r == 0 && done < len;) {
        uint64_t n = len - done < NBD_MAX_ZERO ? len - done : NBD_MAX_ZERO;
        struct nbd_cmd c = { .op = NBD_OP_ZERO, .len = n, .off = off + done,
                             .what = "write-zeroes failed" };
        /* Without NO_HOLE the server may trim; FAST_ZERO fails at once
         * where zeroing would be slow: then a plain write-zeroes. */
        if (p->can_fast_zero && !__atomic_load_n(&p->fast_zero_failed,
                                                  __ATOMIC_RELAXED)) {
            struct nbd_cmd f = c;
            f.flags = LIBNBD_CMD_FLAG_FAST_ZERO;
            f.quiet = true;
            if (nbd_exec(img, h, &f, err) == 0) {
                done += n;
                continue;
            }
            __atomic_store_n(&p->fast_zero_failed, true, __ATOMIC_RELAXED);
        }
        r = nbd_exec(img, h, &c, err);
        done += n;
    }
    nbd_put(img, slot);
    return r;
}

static int nbd_drv_flush(struct image *img, struct df_error *err)
{
    struct nbd_priv *p = img->priv;
    if (!img->writable || !p->can_flush)
        return 0;
    /* With multi-conn a flush on one connection covers all; without,
     * there is one. */
    unsigned slot;
    struct nbd_handle *h = nbd_get(img, &slot, err);
    if (!h)
        return -1;
    struct nbd_cmd c = { .op = NBD_OP_FLUSH, .what = "flush failed" };
    int r = nbd_exec(img, h, &c, err);
    nbd_put(img, slot);
    return r;
}

const struct image_driver image_driver_nbd = {
    .name = "nbd",
    .priv_size = sizeof(struct nbd_priv),
    .caps = IMG_CAN_WRITE | IMG_THREAD_SAFE,
    .open = nbd_drv_open,
    .map = nbd_drv_map,
    .read = nbd_drv_read,
    .write = nbd_drv_write,
    .zero = nbd_drv_zero,
    .flush = nbd_drv_flush,
    .close = nbd_drv_close,
};

int image_open_nbd(const char *uri, const struct image_open_opts *opts,
                   struct image **out, struct df_error *err)
{
    const char *bm = opts ? opts->nbd_bitmap : NULL;
    if (bm && (!*bm || strlen(bm) > NBD_BITMAP_NAME_MAX))
        return df_usage(err, "bitmap name of %zu bytes: 1 to %d expected",
                        strlen(bm), NBD_BITMAP_NAME_MAX);
    if (strlen(uri) >= PATH_MAX)
        return df_usage(err, "NBD URI too long");
    if (nbd_dl_load(err) < 0)
        return -1;
    return image_open_nofile(&image_driver_nbd, uri, opts, out, err);
}
