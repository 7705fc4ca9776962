/*
 * forecast.h: `diskferry plan SRC DST` (docs/design.md, plan): measure
 * before the job, write nothing.
 *
 * What it measures, each stage for a bounded share of the budget:
 *
 *   the map          image_map and, fs-aware, the filesystems' used
 *                    maps, laid over it as a copy would (plan_window):
 *                    data, zero, hole and free bytes, none read
 *   the source       timed 1 MiB reads at offsets spread evenly over
 *                    the data to be read; of those bytes, the share of
 *                    zero leaves and, on this CPU, the rate of the
 *                    digest and of the compressors a remote copy uses
 *   the link         a remote DST: remote_probe() through the real
 *                    transport and serve (round trip, both directions,
 *                    1 and N tcp streams), and the interface's speed
 *                    from sysfs
 *   the destination  checked as a dry run would (a refusal is the
 *                    answer, exit 3); a local file's write and read-back
 *                    rate on a scratch file beside it (removed); a
 *                    device is never written
 *
 * The answer, for each strategy that applies (plain, compressed, with
 * or without --fs-aware, tcp streams): the bytes to read and to send,
 * the time of each stage, the total (the stages of the copy overlap, the
 * read-back follows: total = fixed costs + the slowest copy stage, or
 * the CPU stages' sum over the cores when that is more, + the
 * read-back), the bottleneck, a band, and the command to run.
 */
#ifndef DF_FORECAST_H
#define DF_FORECAST_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/job.h"

enum fc_stage { FC_READ, FC_HASH, FC_COMPRESS, FC_LINK, FC_WRITE,
                FC_VERIFY, FC_STAGES };

struct fc_strategy {
    char name[48];              /* "plain", "fs-aware, zstd" ... */
    char command[1024];         /* ready to paste */
    bool fs_aware, compress, tcp;
    uint64_t bytes_read;        /* from the source */
    uint64_t bytes_sent;        /* written locally, or on the wire */
    double stage[FC_STAGES];    /* seconds each stage would take alone */
    double fixed;               /* start, checks, connection */
    double total, low, high;    /* seconds: the prediction and its band */
    enum fc_stage bottleneck;
    bool cpu_bound;             /* the cores' work, not one stage */
    char why[64];               /* the bottleneck as said: its stage's
                                 * name, or "CPU (...)" for a link on
                                 * loopback, which is ssh's and serve's
                                 * CPU, not a wire */
};

#define FC_MAX_STRATEGIES 8

struct forecast {
    double budget;              /* seconds allowed */
    double seconds;             /* what the plan took */
    bool remote;
    /* what must travel */
    uint64_t size, data, zero, hole, free;
    uint64_t free_by[FS_KINDS];
    bool sync_known;            /* plan --sync from metadata: */
    uint64_t sync_changed;      /* ... the bytes it names */
    double zero_share;          /* of sampled data leaves, all zero */
    double zero_share_used;     /* ... of those not free */
    /* rates, bytes/s (0: not measured) */
    double read_rate, hash_rate, zstd_rate, zstd_ratio, lz4_rate,
           lz4_ratio, write_rate, readback_rate;
    unsigned cores, samples;
    unsigned max_samples;       /* 0: the default */
    double read_cv;             /* spread of the sampled read rates */
    /* the link (remote) */
    bool pull;                  /* SRC is on the other host */
    double rtt, up_rate, down_rate, up_rate_streams, down_rate_streams;
    unsigned streams;
    double iface_bps;           /* 0: unknown */
    char iface[32];
    double fixed_local, fixed_remote;
    char notes[4][256];         /* warnings: "link measured at ..." */
    unsigned nnotes;
    struct fc_strategy v[FC_MAX_STRATEGIES];
    unsigned n, best;
};

/*
 * Plan spec->kind (JOB_COPY or JOB_SYNC) of spec->src to spec->dst,
 * writing nothing, in about budget seconds (fc->budget, set first; 0:
 * 10).  A destination the job would refuse: -1 with err (DF_REFUSED).
 * 0 or -1 with err.
 */
int job_plan(const struct job_spec *spec, struct forecast *fc,
             struct df_error *err);

const char *fc_stage_name(enum fc_stage s);

/* What a plan measured of a link, kept for the copies after it. */
struct link_figures {
    double up, up_streams, rtt, connect;
};

/* The figures the last plan to host measured (the state directory's
 * plan-links): 1, or 0 (none; *lk zero). */
int link_figures_load(const char *host, struct link_figures *lk);
/* Keep them for host (a plan to another host): 0 or -1 with err. */
int link_figures_save(const char *host, const struct link_figures *lk,
                      struct df_error *err);

/*
 * The prediction a copy or sync starts with, in about a hundredth of a
 * second: img's map (laid over fs when spec->jo.fs is fs and not a
 * hint), a few samples of it, the digest's rate; to another host (lk
 * not NULL) only with the link's figures from a plan (lk->up > 0),
 * else out->total is 0: none.  0 or -1 with err.
 */
int forecast_quick(const struct job_spec *spec, struct image *img,
                   const struct fs_layout *fs, const struct link_figures *lk,
                   struct fc_strategy *out, struct df_error *err);

#endif
