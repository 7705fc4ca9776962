/*
 * progress.c: progress, rate and ETA on stderr (see progress.h).
 */
#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "size.h"

struct progress {
    char title[32];
    uint64_t total;
    double start, last_draw;
    bool drawn;
    pthread_mutex_t lock;
    uint64_t done, sent, skipped;
};

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

struct progress *progress_new(const char *title, uint64_t total,
                              bool enabled)
{
    if (!enabled)
        return NULL;
    struct progress *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->title, sizeof(p->title), "%s", title);
    p->total = total;
    p->start = time_now();
    p->last_draw = p->start;
    pthread_mutex_init(&p->lock, NULL);
    return p;
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

size_t progress_format(const struct progress_view *v, unsigned width,
                       char *buf, size_t len)
{
    char f[PF_N][PROGRESS_FIELD] = { { 0 } };
    char t[32];
    bool on[PF_N] = { false };
    double r = v->secs > 0 ? (double)v->done / v->secs : 0;
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
        if (r > 0 && v->done <= v->total) {
            unsigned s = (unsigned)((double)(v->total - v->done) / r);
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

/* The terminal's width, asked each time (a resized window is followed
 * without a SIGWINCH handler); 0 when stderr is not a terminal. */
static unsigned progress_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 0;
}

static void progress_draw(struct progress *p, double now)
{
    char line[512];
    struct progress_view v = {
        .title = p->title, .total = p->total, .done = p->done,
        .sent = p->sent, .skipped = p->skipped, .secs = now - p->start,
    };
    progress_format(&v, progress_width(), line, sizeof(line));
    fprintf(stderr, "\r%s\033[K", line);
    p->drawn = true;
    p->last_draw = now;
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
    double now = time_now();
    if (now - p->start >= 1.0 && now - p->last_draw >= 0.25)
        progress_draw(p, now);
    pthread_mutex_unlock(&p->lock);
}

void progress_finish(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        progress_draw(p, time_now());
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}
