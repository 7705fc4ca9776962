/*
 * progress.c: progress, rate and ETA on stderr, JSON lines for programs,
 * a line on SIGUSR1 (see progress.h).
 */
#define _GNU_SOURCE
#include "progress.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "size.h"

/* The recent rate: samples of (time, done) at least PROGRESS_SAMPLE_GAP
 * seconds apart; the rate is taken from the oldest kept to now, a
 * window of a few seconds. */
#define PROGRESS_SAMPLES 8
#define PROGRESS_SAMPLE_GAP 0.5

struct progress_sample {
    double t;
    uint64_t done;
};

struct progress {
    char title[32];
    uint64_t total;
    struct progress_out out;
    bool json_stderr_dead;      /* a write to stderr failed */
    bool json_fd_dead;          /* a write to out.fd failed */
    double predicted;           /* seconds; 0: none */
    double (*clock)(void);
    double start, last_draw, last_json;
    bool drawn;                 /* the bar is on the screen */
    pthread_mutex_t lock;
    uint64_t done, sent, skipped;
    struct progress_sample samples[PROGRESS_SAMPLES];
    unsigned nsamples, head;    /* head: the oldest */
};

/* Set by the SIGUSR1 handler, taken by the next update. */
static volatile sig_atomic_t progress_asked;
static struct sigaction progress_old_usr1;

double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* (Re)start the clocks at now. */
static void progress_start(struct progress *p)
{
    p->start = p->clock();
    p->last_draw = p->last_json = p->start;
    p->samples[0] = (struct progress_sample){ p->start, p->done };
    p->nsamples = 1;
    p->head = 0;
}

struct progress *progress_new(const char *title, uint64_t total,
                              const struct progress_out *out)
{
    if (!out)
        return NULL;
    struct progress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->title, sizeof(p->title), "%s", title);
    p->total = total;
    p->out = *out;
    p->clock = time_now;
    progress_start(p);
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void progress_set_prediction(struct progress *p, double seconds)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->predicted = seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&p->lock);
}

void progress_set_clock(struct progress *p, double (*clock)(void))
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->clock = clock;
    progress_start(p);
    pthread_mutex_unlock(&p->lock);
}

double progress_eta(uint64_t total, uint64_t done, double secs, double rate,
                    double predicted)
{
    if (!total)
        return -1;
    if (done >= total)
        return 0;
    double left = (double)(total - done);
    double measured = rate > 0 ? left / rate : -1;
    if (predicted <= 0)
        return measured;
    double frac = (double)done / (double)total;
    double guess = predicted * (1.0 - frac);
    double warm = secs / PROGRESS_WARM_SECS;
    if (frac / PROGRESS_WARM_FRACTION > warm)
        warm = frac / PROGRESS_WARM_FRACTION;
    if (warm <= 1.0)
        return guess;
    double w = (warm - 1.0) / PROGRESS_BLEND;
    if (w >= 1.0)
        return measured;
    if (measured < 0)
        return guess;
    return w * measured + (1.0 - w) * guess;
}

/* The fields of the line, in the order they are printed. */
enum { PF_TITLE, PF_PCT, PF_BAR, PF_DONE, PF_RATE, PF_SENT, PF_SKIPPED,
       PF_ETA, PF_N };
/* Printed before a field that is not the first. */
static const char *const progress_sep[PF_N] = {
    "", " ", " ", " ", ", ", ", ", ", ", ", ",
};
/* What goes when the line is too long, first to last. */
static const int progress_drop[] = {
    PF_SKIPPED, PF_SENT, PF_RATE, PF_ETA, PF_TITLE, PF_DONE,
};
#define PROGRESS_MIN_WIDTH 20       /* below: the percentage alone */
#define PROGRESS_BAR_MIN 10         /* "[" 8 cells "]" */
#define PROGRESS_BAR_MAX 32
#define PROGRESS_FIELD 48

/* Length of the line with the fields in on[] (the bar counted as bar_w
 * columns when on). */
static size_t progress_line_len(char f[PF_N][PROGRESS_FIELD],
                                const bool on[PF_N], size_t bar_w)
{
    size_t n = 0;
    bool first = true;
    for (int i = 0; i < PF_N; i++) {
        if (!on[i])
            continue;
        if (!first)
            n += strlen(progress_sep[i]);
        n += i == PF_BAR ? bar_w : strlen(f[i]);
        first = false;
    }
    return n;
}

/* The view's ETA (-1: unknown); r: its rate. */
static double progress_view_eta(const struct progress_view *v, double r)
{
    if (v->estimated)
        return v->eta;
    if (!v->total || r <= 0 || v->done > v->total)
        return -1;
    return (double)(v->total - v->done) / r;
}

size_t progress_format(const struct progress_view *v, unsigned width,
                       char *buf, size_t len)
{
    char f[PF_N][PROGRESS_FIELD] = { { 0 } };
    char t[32];
    bool on[PF_N] = { false };
    double r = v->estimated ? v->rate
               : v->secs > 0 ? (double)v->done / v->secs : 0;
    double frac = 0;
    size_t avail = (width ? width : 80) - 1, bar_w = 0, n = 0;

    if (!len)
        return 0;
    buf[0] = '\0';
    snprintf(f[PF_TITLE], PROGRESS_FIELD, "%s:", v->title);
    size_format(v->done, t, sizeof(t));
    snprintf(f[PF_DONE], PROGRESS_FIELD, "%s", t);
    size_format((uint64_t)r, t, sizeof(t));
    snprintf(f[PF_RATE], PROGRESS_FIELD, "%s/s", t);
    size_format(v->sent, t, sizeof(t));
    snprintf(f[PF_SENT], PROGRESS_FIELD, "sent %s", t);
    size_format(v->skipped, t, sizeof(t));
    snprintf(f[PF_SKIPPED], PROGRESS_FIELD, "skipped %s", t);
    on[PF_TITLE] = on[PF_DONE] = on[PF_RATE] = on[PF_SENT] =
        on[PF_SKIPPED] = true;
    if (v->total) {
        frac = v->done >= v->total ? 1.0
                                   : (double)v->done / (double)v->total;
        snprintf(f[PF_PCT], PROGRESS_FIELD, "%5.1f%%", 100.0 * frac);
        on[PF_PCT] = on[PF_BAR] = true;
        double eta = progress_view_eta(v, r);
        if (eta >= 0) {
            unsigned s = eta < 359999.0 ? (unsigned)eta : 359999u;
            snprintf(f[PF_ETA], PROGRESS_FIELD, "ETA %u:%02u:%02u",
                     s / 3600, s / 60 % 60, s % 60);
            on[PF_ETA] = true;
        }
    }

    if (avail + 1 < PROGRESS_MIN_WIDTH) {
        /* The one number that matters, cut to what the terminal has. */
        const char *only = v->total ? f[PF_PCT] : f[PF_DONE];
        while (*only == ' ')
            only++;
        n = strlen(only);
        if (n > avail)
            n = avail;
        if (n >= len)
            n = len - 1;
        memcpy(buf, only, n);
        buf[n] = '\0';
        return n;
    }
    /* Drop fields until the line fits; the bar then takes the spare
     * columns, if there are enough of them. */
    bool want_bar = on[PF_BAR];
    on[PF_BAR] = false;
    for (size_t d = 0; progress_line_len(f, on, 0) > avail &&
                       d < sizeof(progress_drop) / sizeof(progress_drop[0]);
         d++)
        on[progress_drop[d]] = false;
    size_t used = progress_line_len(f, on, 0);
    if (want_bar && used + 1 + PROGRESS_BAR_MIN <= avail) {
        on[PF_BAR] = true;
        bar_w = avail - used - 1;
        if (bar_w > PROGRESS_BAR_MAX)
            bar_w = PROGRESS_BAR_MAX;
    }

    bool first = true;
    for (int i = 0; i < PF_N; i++) {
        if (!on[i])
            continue;
        char bar[PROGRESS_BAR_MAX + 1];
        const char *text = f[i];
        if (i == PF_BAR) {
            size_t cells = bar_w - 2;
            size_t full = (size_t)(frac * (double)cells);
            bar[0] = '[';
            for (size_t k = 0; k < cells; k++)
                bar[1 + k] = k < full ? '#' : '.';
            bar[bar_w - 1] = ']';
            bar[bar_w] = '\0';
            text = bar;
        }
        while (first && *text == ' ')
            text++;             /* the percentage's padding */
        int w = snprintf(buf + n, len - n, "%s%s",
                         first ? "" : progress_sep[i], text);
        if (w < 0 || (size_t)w >= len - n) {
            n = len - 1;
            break;
        }
        n += (size_t)w;
        first = false;
    }
    return n;
}

size_t progress_json_format(const struct progress_view *v, bool done,
                            char *buf, size_t len)
{
    double r = v->estimated ? v->rate
               : v->secs > 0 ? (double)v->done / v->secs : 0;
    double eta = progress_view_eta(v, r);
    char total[24] = "null", etas[32] = "null", pct[16] = "null";
    if (v->total) {
        double frac = v->done >= v->total
                          ? 1.0 : (double)v->done / (double)v->total;
        snprintf(total, sizeof(total), "%llu",
                 (unsigned long long)v->total);
        snprintf(pct, sizeof(pct), "%.1f", 100.0 * frac);
    }
    if (eta >= 0)
        snprintf(etas, sizeof(etas), "%.1f", eta < 1e9 ? eta : 1e9);
    int n = snprintf(buf, len,
                     "{\"time\":%.3f,\"bytes_done\":%llu,\"bytes_total\":%s,"
                     "\"bytes_sent\":%llu,\"bytes_skipped\":%llu,"
                     "\"rate\":%.0f,\"eta\":%s,\"percent\":%s,"
                     "\"done\":%s}\n",
                     v->secs > 0 ? v->secs : 0.0,
                     (unsigned long long)v->done, total,
                     (unsigned long long)v->sent,
                     (unsigned long long)v->skipped,
                     r > 0 && r < 1e18 ? r : 0.0, etas, pct,
                     done ? "true" : "false");
    if (n < 0 || (size_t)n >= len) {
        if (len)
            buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/*
 * One write() of buf to fd, SIGPIPE held off: blocked in this thread
 * for the write, and taken back if the write raised it (unless one was
 * pending already: that one is someone else's).  0, or -1 with errno.
 */
static int progress_write(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigemptyset(&pending);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    ssize_t w;
    do
        w = write(fd, buf, len);
    while (w < 0 && errno == EINTR);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        static const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (w < 0) {
        errno = e;
        return -1;
    }
    /* short: a full non-blocking pipe, or a file that filled up; the
     * reader would get half a line, so it gets no more */
    if ((size_t)w < len) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* The recent rate at now, after taking a sample if the last is old. */
static double progress_rate(struct progress *p, double now)
{
    unsigned last = (p->head + p->nsamples - 1) % PROGRESS_SAMPLES;
    if (now - p->samples[last].t >= PROGRESS_SAMPLE_GAP) {
        struct progress_sample s = { now, p->done };
        if (p->nsamples < PROGRESS_SAMPLES) {
            p->samples[(p->head + p->nsamples++) % PROGRESS_SAMPLES] = s;
        } else {
            p->samples[p->head] = s;
            p->head = (p->head + 1) % PROGRESS_SAMPLES;
        }
    }
    const struct progress_sample *o = &p->samples[p->head];
    double dt = now - o->t;
    if (dt <= 0 || p->done < o->done)
        return 0;
    return (double)(p->done - o->done) / dt;
}

static struct progress_view progress_view_at(struct progress *p, double now)
{
    struct progress_view v = {
        .title = p->title, .total = p->total, .done = p->done,
        .sent = p->sent, .skipped = p->skipped, .secs = now - p->start,
        .estimated = true,
    };
    v.rate = progress_rate(p, now);
    v.eta = progress_eta(p->total, p->done, v.secs, v.rate, p->predicted);
    return v;
}

/* The terminal's width, asked each time (a resized window is followed
 * without a SIGWINCH handler); 0 when stderr is not a terminal. */
static unsigned progress_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 0;
}

static void progress_draw(struct progress *p,
                          const struct progress_view *v, double now)
{
    char line[512];
    progress_format(v, progress_width(), line, sizeof(line));
    fprintf(stderr, "\r%s\033[K", line);
    p->drawn = true;
    p->last_draw = now;
}

static void progress_json(struct progress *p, const struct progress_view *v,
                          bool done, double now)
{
    char line[PROGRESS_JSON_MAX];
    size_t n = progress_json_format(v, done, line, sizeof(line));
    p->last_json = now;
    if (!n)
        return;
    if (p->out.show == PROGRESS_SHOW_JSON && !p->json_stderr_dead &&
        progress_write(STDERR_FILENO, line, n) < 0)
        p->json_stderr_dead = true;
    if (p->out.has_fd && !p->json_fd_dead &&
        !(p->out.fd == STDERR_FILENO &&
          p->out.show == PROGRESS_SHOW_JSON) &&
        progress_write(p->out.fd, line, n) < 0)
        p->json_fd_dead = true;
}

static bool progress_has_json(const struct progress *p)
{
    return p->out.show == PROGRESS_SHOW_JSON || p->out.has_fd;
}

/* SIGUSR1 asked: one line of its own on stderr (the bar, if drawn,
 * comes back below it at the next redraw). */
static void progress_answer(struct progress *p, const struct progress_view *v)
{
    char line[512];
    unsigned w = progress_width();
    size_t n = progress_format(v, w ? w : 200, line, sizeof(line) - 8);
    char out[520];
    int k = snprintf(out, sizeof(out), "%s%.*s%s\n",
                     p->drawn ? "\r" : "", (int)n, line,
                     p->drawn ? "\033[K" : "");
    if (k > 0)
        progress_write(STDERR_FILENO, out,
                       (size_t)k < sizeof(out) ? (size_t)k
                                               : sizeof(out) - 1);
}

/* Under the lock. */
static void progress_tick(struct progress *p, bool final)
{
    double now = p->clock();
    struct progress_view v = progress_view_at(p, now);
    if (progress_asked) {
        progress_asked = 0;
        progress_answer(p, &v);
    }
    if (final) {
        if (p->out.show == PROGRESS_SHOW_BAR && p->drawn) {
            progress_draw(p, &v, now);
            fputc('\n', stderr);
        }
        if (progress_has_json(p))
            progress_json(p, &v, true, now);
        return;
    }
    if (p->out.show == PROGRESS_SHOW_BAR && now - p->start >= 1.0 &&
        now - p->last_draw >= 0.25)
        progress_draw(p, &v, now);
    if (progress_has_json(p) && now - p->last_json >= 1.0)
        progress_json(p, &v, false, now);
}

void progress_update(struct progress *p, uint64_t done, uint64_t sent,
                     uint64_t skipped)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->done = done;
    p->sent = sent;
    p->skipped = skipped;
    progress_tick(p, false);
    pthread_mutex_unlock(&p->lock);
}

void progress_finish(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    progress_tick(p, true);
    pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void progress_sigusr1(int sig)
{
    (void)sig;
    progress_asked = 1;
}

void progress_signal_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = progress_sigusr1;
    sa.sa_flags = SA_RESTART;   /* a line asked for interrupts nothing */
    sigemptyset(&sa.sa_mask);
    progress_asked = 0;
    sigaction(SIGUSR1, &sa, &progress_old_usr1);
}

void progress_signal_restore(void)
{
    sigaction(SIGUSR1, &progress_old_usr1, NULL);
}
