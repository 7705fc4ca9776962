/*
 * progress.h: progress for people (a line on stderr) and for programs
 * (JSON lines, as nbdcopy --progress=FD; a line on SIGUSR1, as
 * qemu-img).
 *
 * The outputs (struct progress_out):
 *
 *   the bar    drawn on stderr (a terminal, or --progress), first after
 *              about a second, redrawn a few times a second.  The line
 *              fits the terminal's width, asked at every redraw (so a
 *              resized window is followed); it never wraps.
 *   JSON       on stderr instead of the bar (--progress=json), and/or
 *              on a file descriptor (--progress-fd N): one line a second
 *              at most, the first after a second, and a last one with
 *              "done": true when the job's data is all dealt with (a
 *              verification read-back may follow; the exit status is
 *              the job's answer).  progress_json_format() gives the
 *              fields.  Each line is one write() (shorter than PIPE_BUF:
 *              a reader of a pipe gets whole lines).  A write that fails
 *              (EPIPE: the reader left; EBADF) ends that output for the
 *              rest of the object's life, never the job; SIGPIPE is
 *              blocked in the writing thread around the write and a
 *              pending one taken back, so a reader that leaves does not
 *              kill us whatever SIGPIPE's disposition.  A reader must
 *              read: a full pipe blocks the thread that writes.
 *   SIGUSR1    between progress_signal_install() and
 *              progress_signal_restore(), a SIGUSR1 asks for one line
 *              in the bar's words on stderr, whatever the outputs (none
 *              too).  The handler only sets a flag (async-signal-safe);
 *              the next progress_update() or progress_finish() prints
 *              the line, so it comes within the time one unit of work
 *              takes.  NEEDSWORK: while no progress object exists (a
 *              sync's hashing, the read-back) the line waits for the
 *              next one; a ticker thread would answer at once.
 *
 * The ETA (progress_eta): the rate of the last few seconds, or, with a
 * prediction (progress_set_prediction: the plan's), the prediction
 * first, turning to the measured rate as the job runs.  The bar and the
 * JSON lines show the same estimate.
 *
 * A NULL progress is a no-op, so callers never test.  Thread-safe:
 * workers add bytes, one thread draws.
 */
#ifndef DF_PROGRESS_H
#define DF_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress;

/* What goes to stderr. */
enum progress_show {
    PROGRESS_SHOW_BAR,          /* the drawn line */
    PROGRESS_SHOW_JSON,         /* JSON lines */
    PROGRESS_SHOW_NONE,         /* nothing but on SIGUSR1 */
};

/* Where progress goes.  Zeroed: the bar on stderr, no fd. */
struct progress_out {
    enum progress_show show;
    bool has_fd;                /* JSON lines to fd as well */
    int fd;                     /* open for writing; not closed here */
};

/* NULL when out is NULL (no progress at all).  total = 0: unknown (a
 * stream).  out is copied. */
struct progress *progress_new(const char *title, uint64_t total,
                              const struct progress_out *out);
/* The predicted length of the job in seconds (0: none): the ETA starts
 * from it (progress_eta).  Call it before the first update. */
void progress_set_prediction(struct progress *p, double seconds);
/* Test hook: read the time from clock (seconds, as time_now) instead;
 * the start is taken again from it. */
void progress_set_clock(struct progress *p, double (*clock)(void));
/* done: bytes of the disk dealt with; sent: bytes on the wire (or
 * written); skipped: bytes not read or not written. */
void progress_update(struct progress *p, uint64_t done, uint64_t sent,
                     uint64_t skipped);
/* Draw the final line and a newline (if anything was drawn); the last
 * JSON line ("done": true). */
void progress_finish(struct progress *p);
void progress_free(struct progress *p);

/* SIGUSR1 asks for a progress line (above), from install to restore
 * (which puts back the disposition found).  Not nested. */
void progress_signal_install(void);
void progress_signal_restore(void);

/*
 * The ETA in seconds, or -1 when unknown (no total, no rate yet), of a
 * job `total` bytes long with `done` dealt with after `secs` seconds,
 * going at `rate` bytes a second lately, predicted to take `predicted`
 * seconds in all (0: no prediction).
 *
 * Without a prediction: what is left at the recent rate.  With one, the
 * measured rate is not trusted until the job has run
 * PROGRESS_WARM_SECS or done PROGRESS_WARM_FRACTION of the disk
 * (whichever comes first): until then the ETA is the prediction for
 * what is left, predicted x (1 - done/total) (so it starts at the
 * prediction).  Then the two are blended linearly, the measured one's
 * weight growing from 0 to 1 while that warm-up measure (the larger of
 * secs / PROGRESS_WARM_SECS and fraction / PROGRESS_WARM_FRACTION)
 * goes from 1 to 1 + PROGRESS_BLEND: by 12 s or 20% of the disk the
 * ETA is the measured one.  A stalled job (rate 0) keeps the
 * prediction's share while it has one, else -1.
 */
#define PROGRESS_WARM_SECS 3.0
#define PROGRESS_WARM_FRACTION 0.05
#define PROGRESS_BLEND 3.0
double progress_eta(uint64_t total, uint64_t done, double secs, double rate,
                    double predicted);

/* What one progress line shows. */
struct progress_view {
    const char *title;          /* "copy" */
    uint64_t total;             /* disk size; 0 = unknown (a stream) */
    uint64_t done, sent, skipped;
    double secs;                /* since the start */
    /* estimated: rate and eta are given (eta < 0: unknown); else the
     * rate is the average since the start and the ETA follows from it */
    bool estimated;
    double rate;                /* bytes of the disk a second, lately */
    double eta;                 /* seconds */
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

/*
 * One JSON line, newline included, into buf (PROGRESS_JSON_MAX bytes
 * suffice):
 *
 *   {"time":3.002,"bytes_done":4194304,"bytes_total":12582912,
 *    "bytes_sent":4200000,"bytes_skipped":0,"rate":1398101,"eta":6.0,
 *    "percent":33.3,"done":false}                      (one line)
 *
 * time: seconds since the start; bytes_done: bytes of the disk dealt
 * with (read and sent, found zero, kept); bytes_sent: written, or on
 * the wire to a remote host; bytes_skipped: neither read nor written
 * (holes, zeros, unchanged, free); rate: bytes of the disk a second,
 * lately; eta: seconds (v->eta, or the average's for a view not
 * estimated); bytes_total, eta and percent are null when unknown.
 * Returns the length (0 if len is too small).
 */
#define PROGRESS_JSON_MAX 320
size_t progress_json_format(const struct progress_view *v, bool done,
                            char *buf, size_t len);

/* Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double time_now(void);
/* Nanoseconds since an arbitrary start (CLOCK_MONOTONIC). */
uint64_t time_now_ns(void);

#endif
