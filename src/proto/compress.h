/*
 * compress.h: per-block compression for the wire: --compress
 * auto|zstd|lz4|none.
 *
 * auto: zstd at a fast level, per block.  A block that does not shrink
 *   by at least COMP_MIN_GAIN_PCT percent is sent raw and marks the data
 *   incompressible; while it is, every block gets only a probe (a
 *   COMP_SAMPLE-byte sample from its middle at the fastest level), and
 *   every COMP_PROBE_EVERY-th block a full try, so random or already
 *   compressed data costs little CPU and compressible data is noticed
 *   again at once.  The level follows the bottleneck: comp_ctl_adjust() raises
 *   it when the link is the bottleneck (the sender's queue of compressed
 *   frames is full while workers wait) and lowers it when the CPU is
 *   (the link waits for compressed frames), within 0..COMP_AUTO_MAX;
 *   level 0 sends every block raw: a link that outruns level 1 on this
 *   CPU (loopback, a LAN) is better served without compression, whose
 *   cores then read, hash and encrypt.
 * zstd / lz4: every block at the given level (zstd default 3), still
 *   sent raw when compression does not pay.
 *
 * A comp_ctl is shared by the sender's worker threads (atomics); each
 * worker owns a comp_worker (contexts and an output buffer).
 */
#ifndef DF_COMPRESS_H
#define DF_COMPRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

enum comp_mode { COMPRESS_AUTO, COMPRESS_ZSTD, COMPRESS_LZ4, COMPRESS_NONE };

#define COMP_MIN_GAIN_PCT 3
#define COMP_PROBE_EVERY 16
#define COMP_SAMPLE (16u * 1024)
#define COMP_AUTO_MAX 15

struct comp_ctl {
    enum comp_mode mode;
    _Atomic int level;
    _Atomic bool incompressible;
    _Atomic uint64_t skipped;       /* blocks not tried since marked */
    _Atomic uint64_t raw_in;        /* bytes offered */
    _Atomic uint64_t comp_out;      /* bytes after compression (or raw) */
    _Atomic int level_max_seen;
    /* controller state (one thread: the producer) */
    double last_rate;
    int last_dir;
    int hold;
};
#define COMP_HOLD_PERIODS 8

/* "auto", "zstd", "zstd:5", "lz4", "none"; -1 when unknown. */
int comp_mode_parse(const char *s, enum comp_mode *mode, int *level);
const char *comp_mode_name(enum comp_mode mode);

void comp_ctl_init(struct comp_ctl *ctl, enum comp_mode mode, int level);
/*
 * One control period is over (sender.c): link_bound / cpu_bound say who
 * waited, rate is the bytes per second that went on the wire.  A level
 * raised because the link looked like the bottleneck is taken back, and
 * not tried again for COMP_HOLD_PERIODS, when the wire rate then fell:
 * a real link carries the same bytes per second whatever the level, but
 * on loopback or a busy host the "link" is ssh's CPU, which a higher
 * level starves.  (The wire rate, not the payload rate, because the
 * payload rate swings with the content: random data, then text.)
 * starved: the machine had no CPU time to spare in the period while
 * compression took a good share of it: the level goes down and is held
 * there, link or not.  On loopback or a fast LAN the "link" is ssh's
 * crypto and the far end's work on the same cores, which compression
 * starves; a slow link leaves cores idle and is not affected.
 */
void comp_ctl_adjust(struct comp_ctl *ctl, bool link_bound, bool cpu_bound,
                     bool starved, double rate);

struct comp_worker {
    void *zc, *zd;          /* ZSTD_CCtx, ZSTD_DCtx */
};
void comp_worker_init(struct comp_worker *w);
void comp_worker_release(struct comp_worker *w);

/* dst capacity comp_block needs for len bytes. */
size_t comp_bound(size_t len);
/*
 * Compress src[len] into dst[dst_cap >= comp_bound(len)]: returns the
 * msg_comp used and *out_len; COMP_NONE: send src as is (dst unused).
 */
int comp_block(struct comp_ctl *ctl, struct comp_worker *w,
               const void *src, size_t len, void *dst, size_t dst_cap,
               size_t *out_len);
/*
 * Decompress a WRITE payload into dst[raw_len]: the result must be
 * exactly raw_len bytes.  DF_NET "protocol error" otherwise (peer names
 * the remote).
 */
int comp_unblock(struct comp_worker *w, uint8_t comp, const void *src,
                 size_t len, void *dst, size_t raw_len, const char *peer,
                 struct df_error *err);

struct msg;
/*
 * The raw_len bytes a WRITE frame m carries: its payload, or what
 * comp_unblock() made of it in buf (MSG_MAX_DATA bytes).  NULL with
 * err.
 */
const void *comp_frame_data(struct comp_worker *w, const struct msg *m,
                            void *buf, const char *peer,
                            struct df_error *err);

#endif
