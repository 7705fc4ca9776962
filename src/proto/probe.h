/*
 * probe.h: the link probe of `diskferry plan` (issue 19): round trips
 * and throughput both ways through a live session with `diskferry
 * serve`, on the channels a copy's data would take (the ssh pipe, or
 * the N sealed TCP streams in parallel), within a time budget.
 * Messages PROBE, PROBE_DATA, PROBE_DONE in msg.h (MSG_FEAT_PROBE).
 *
 * How it measures (probe_run):
 *  - rtt: the median of up to PROBE_ECHOES PROBE(ECHO) round trips on
 *    the control channel;
 *  - down, then up: steps that grow from PROBE_FIRST bytes, each sized
 *    from the rate seen so far to take about PROBE_AIM seconds, until
 *    one takes PROBE_GOOD seconds or the direction's share of the budget
 *    is used.  A step's rate is measured where the data arrives (the
 *    sender's buffers make its own clock optimistic): bytes after the
 *    first frame over the time from the first frame to the last; the
 *    longest such span of a direction is its figure.
 *
 * Invariants:
 *  1. The payload is incompressible (one MiB of PRNG output, made
 *     once) and never compressed: the probe measures the link, plan
 *     measures compressibility on its own.
 *  2. Bounded: every step carries a time limit (the share's end) that
 *     serve honours and the sender stops at, and every wait has a
 *     deadline: the probe ends within about budget + 0.2 s, also on a
 *     slow link; data still in flight from a step cut short belongs to
 *     an older step and is dropped by the receiver.
 *  3. serve opens nothing for a probe.
 */
#ifndef DF_PROBE_H
#define DF_PROBE_H

#include <stdint.h>

#include "msg.h"
#include "util/error.h"

struct session;

struct link_probe {
    double rtt;            /* seconds, median of several small round trips */
    double up;             /* bytes/s of payload this host -> serve */
    double down;           /* bytes/s serve -> this host */
    unsigned streams;      /* tcp streams used for up/down (1 over ssh) */
    double seconds;        /* time the probe took */
    uint64_t bytes_up, bytes_down;
};

#define PROBE_ECHOES 5
#define PROBE_FIRST (64u * 1024)   /* bytes of a direction's first step */
#define PROBE_AIM 0.7               /* seconds a grown step aims at */
#define PROBE_GOOD 0.5              /* a step this long ends the ramp */

/*
 * Client: measure on s (after the handshake, its data channels set up
 * and its readers started), from t0 (time_now()) to at most t0 +
 * budget.  0, or -1 with err (the session failed; DF_NET).
 */
int probe_run(struct session *s, double t0, double budget,
              struct link_probe *out, struct df_error *err);

/* serve: answer one PROBE (session started). */
int probe_answer(struct session *s, const struct msg *m,
                 struct df_error *err);

#endif
