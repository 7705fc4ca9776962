/*
 * progress.h: the progress line on stderr.
 *
 * Drawn only when enabled (a terminal, or --progress), first after about
 * a second, redrawn a few times a second; a NULL progress is a no-op so
 * callers never test.  Thread-safe: workers add bytes, one thread draws.
 * The line fits the terminal's width, asked at every redraw (so a
 * resized window is followed); it never wraps.
 */
#ifndef DF_PROGRESS_H
#define DF_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress;

/* NULL when not enabled.  total = 0: unknown (a stream). */
struct progress *progress_new(const char *title, uint64_t total,
                              bool enabled);
/* done: bytes of the disk dealt with; sent: bytes on the wire (or
 * written); skipped: bytes not read or not written. */
void progress_update(struct progress *p, uint64_t done, uint64_t sent,
                     uint64_t skipped);
/* Draw the final line and a newline (if anything was drawn). */
void progress_finish(struct progress *p);
void progress_free(struct progress *p);

/* What one progress line shows. */
struct progress_view {
    const char *title;          /* "copy" */
    uint64_t total;             /* disk size; 0 = unknown (a stream) */
    uint64_t done, sent, skipped;
    double secs;                /* since the start */
};

/*
 * The line for a terminal `width` columns wide (0: unknown, taken as
 * 80), into buf (len bytes; no carriage return, no escape codes):
 *
 *   copy:  42.1% [#######.........] 1.2 GiB, 120.0 MiB/s, sent 1.0 GiB,
 *   skipped 200.0 MiB, ETA 0:00:12                   (one line)
 *
 * At most width - 1 columns (the last one stays free: a terminal may
 * wrap after writing it).  What does not fit goes, least useful first:
 * skipped, sent, the rate, the ETA, the title, the size done; the bar
 * only takes the columns left over (none when fewer than 11 are).
 * Under 20 columns only the percentage (the size done for an unknown
 * total).  Returns the line's length.
 */
size_t progress_format(const struct progress_view *v, unsigned width,
                       char *buf, size_t len);

/* Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double time_now(void);
/* Nanoseconds since an arbitrary start (CLOCK_MONOTONIC). */
uint64_t time_now_ns(void);

#endif
