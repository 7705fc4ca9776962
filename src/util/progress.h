/*
 * progress.h: the progress line on stderr.
 *
 * Drawn only when enabled (a terminal, or --progress), first after about
 * a second, redrawn a few times a second; a NULL progress is a no-op so
 * callers never test.  Thread-safe: workers add bytes, one thread draws.
 */
#ifndef DF_PROGRESS_H
#define DF_PROGRESS_H

#include <stdbool.h>
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

/* Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double time_now(void);
/* Nanoseconds since an arbitrary start (CLOCK_MONOTONIC). */
uint64_t time_now_ns(void);

#endif
