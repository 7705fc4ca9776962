/*
 * cmd_plan.c: `diskferry plan [OPTIONS] SRC DST`: measure, predict,
 * recommend; write nothing (engine/forecast.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/report.h"
#include "engine/forecast.h"
#include "util/size.h"

static const char plan_usage[] =
    "usage: diskferry plan [OPTIONS] SRC DST\n"
    "\n"
    "Measure, before the job, how long `diskferry copy SRC DST` (or sync)\n"
    "would take and why: the source's read rate (timed reads spread over "
    "its\n"
    "data), what must travel (allocation, zeros, holes, blocks free in "
    "its\n"
    "filesystems), the digest's and the compressors' rate on this CPU, "
    "the link\n"
    "to DST's host (round trip, both directions, through ssh and serve, "
    "or\n"
    "tcp streams), and a local DST's write rate on a scratch file beside "
    "it.\n"
    "Then, for each way to do it, the predicted time of each stage and in "
    "all,\n"
    "the bottleneck, a band, and the command to run.  Writes nothing "
    "(the\n"
    "scratch file is removed; a device is never written).  A destination "
    "the\n"
    "copy would refuse: exit 3, saying why.\n"
    "\n"
    "  -f, --format FMT        read SRC as FMT instead of probing\n"
    "      --parent-dir DIR, --parent C=P, --force-share   as for copy\n"
    "      --sync              plan a sync of an earlier copy: the pass "
    "that hashes\n"
    "                          SRC to find what changed\n"
    "      --changes SPEC      a sync whose changes metadata names "
    "(lvm-cow:,\n"
    "                          lvm-thin:, bitmap:, top-layer; as for "
    "sync): they\n"
    "                          are read now, and the plan is of sending "
    "them\n"
    "      --budget SECS       measure for about SECS seconds (default "
    "10)\n"
    "      --fsync             as the copy would: DST durable before "
    "verifying\n"
    "      --digest ALG, --threads N   as for copy\n"
    "      --json              one JSON object on stdout\n"
    "  -q, --quiet             no warnings\n"
    "  -h, --help              this help\n"
    "\n"
    "remote DST ([user@]host:PATH):\n"
    "      --rsh CMD, --remote-path P, --timeout SECS, --compress MODE,\n"
    "      --bwlimit RATE, --transport T, --streams N   as for copy\n";

enum { OPT_SYNC = 256, OPT_BUDGET, OPT_JSON, OPT_FSYNC, OPT_DIGEST,
       OPT_THREADS, OPT_CHANGES };

struct plan_opts {
    struct cli c;
    struct cli_image_opts io;
    struct job_spec spec;
    bool json;
    double budget;
};

static int plan_parse(int argc, char **argv, struct plan_opts *o)
{
    static const struct option longopts[] = {
        CLI_IMAGE_LONGOPTS,
        CLI_REMOTE_LONGOPTS,
        { "sync", no_argument, NULL, OPT_SYNC },
        { "changes", required_argument, NULL, OPT_CHANGES },
        { "budget", required_argument, NULL, OPT_BUDGET },
        { "fsync", no_argument, NULL, OPT_FSYNC },
        { "digest", required_argument, NULL, OPT_DIGEST },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "json", no_argument, NULL, OPT_JSON },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli *c = &o->c;
    int opt, r;
    unsigned n;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "f:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_SYNC: o->spec.kind = JOB_SYNC; break;
        case OPT_CHANGES:
            if (cli_changes_option(c, optarg) < 0)
                return DF_USAGE;
            o->spec.kind = JOB_SYNC;
            o->spec.changes = optarg;
            break;
        case OPT_BUDGET: {
            char *end;
            o->budget = strtod(optarg, &end);
            if (*end || !(o->budget >= 1 && o->budget <= 600))
                return cli_usage(c, "--budget: seconds, from 1 to 600");
            break;
        }
        case OPT_FSYNC: o->spec.fsync = true; break;
        case OPT_DIGEST:
            if (digest_alg_parse(optarg, &o->spec.jo.digest) < 0)
                return cli_usage(c, "--digest: xxh128 or sha256");
            break;
        case OPT_THREADS:
            if (cli_parse_uint(c, "--threads", optarg, 1, 64, &n))
                return DF_USAGE;
            o->spec.jo.threads = n;
            break;
        case OPT_JSON: o->json = true; break;
        case 'q': c->quiet = true; break;
        case 'h': fputs(plan_usage, stdout); return -1;
        default:
            if (!(r = cli_image_option(c, &o->io, opt, optarg)))
                r = cli_remote_option(c, &o->spec, opt, optarg);
            if (r <= 0)
                return r ? DF_USAGE : cli_bad_option(c, argv);
        }
    }
    if (o->spec.resume)
        return cli_usage(c, "--resume: a plan has nothing to resume");
    if (argc - optind != 2)
        return cli_usage(c, "expected SRC and DST");
    return 0;
}

static void rate(char *b, size_t n, double r)
{
    if (r <= 0) {
        snprintf(b, n, "not measured");
        return;
    }
    size_format((uint64_t)r, b, n);
    strncat(b, "/s", n - strlen(b) - 1);
}

static void print_text(const struct plan_opts *o, const struct forecast *fc)
{
    char a[32], b[32], c[32], d[32], e[32];
    const struct job_spec *s = &o->spec;
    printf("plan: %s %s -> %s (measured in %.1f s)\n",
           s->kind == JOB_SYNC ? "sync" : "copy", s->src, s->dst,
           fc->seconds);
    size_format(fc->size, a, sizeof(a));
    size_format(fc->data + fc->free, b, sizeof(b));
    size_format(fc->free, c, sizeof(c));
    size_format(fc->zero, d, sizeof(d));
    size_format(fc->hole, e, sizeof(e));
    printf("disk: %s: data %s (of which free in filesystems %s), zero %s, "
           "holes %s\n", a, b, c, d, e);
    if (fc->sync_known) {
        size_format(fc->sync_changed, a, sizeof(a));
        printf("changed (%s): %s\n", s->changes, a);
    }
    rate(a, sizeof(a), fc->read_rate);
    rate(b, sizeof(b), fc->hash_rate);
    if (fc->pull)
        printf("source: on the other host, not sampled; digest %s per "
               "core x %u here\n", b, fc->cores);
    else
        printf("source: read %s (%u samples of 1 MiB, %.0f%% zero), "
               "digest %s per core x %u\n", a, fc->samples,
               fc->zero_share * 100, b, fc->cores);
    if (fc->remote) {
        rate(a, sizeof(a), fc->zstd_rate);
        rate(b, sizeof(b), fc->lz4_rate);
        printf("compression: zstd %s per core (%.2fx), lz4 %s (%.2fx)\n", a,
               fc->zstd_ratio, b, fc->lz4_ratio);
        rate(a, sizeof(a), fc->up_rate);
        rate(b, sizeof(b), fc->down_rate);
        printf("link: round trip %.1f ms, up %s, down %s", fc->rtt * 1e3, a,
               b);
        if (fc->up_rate_streams > 0) {
            rate(c, sizeof(c), fc->pull ? fc->down_rate_streams
                                        : fc->up_rate_streams);
            printf(", %u tcp streams %s", fc->streams, c);
        }
        if (fc->iface[0])
            printf("; interface %s%s", fc->iface,
                   fc->iface_bps > 0 ? "" : " (speed unknown)");
        if (fc->iface_bps > 0)
            printf(" %.0f Mbit/s", fc->iface_bps * 8 / 1e6);
        putchar('\n');
    }
    if (!fc->remote || fc->pull) {
        rate(a, sizeof(a), fc->write_rate);
        rate(b, sizeof(b), fc->readback_rate);
        printf("destination: write %s, read-back %s\n", a, b);
    }
    printf("\n%-24s %10s %10s %9s %17s  %s\n", "strategy", "read", "send",
           "time", "band", "bottleneck");
    for (unsigned i = 0; i < fc->n; i++) {
        const struct fc_strategy *v = &fc->v[i];
        char band[48];
        size_format(v->bytes_read, a, sizeof(a));
        size_format(v->bytes_sent, b, sizeof(b));
        snprintf(band, sizeof(band), "%.1f-%.1f s", v->low, v->high);
        printf("%-22s%s %10s %10s %7.1f s %17s  %s\n", v->name,
               i == fc->best ? " *" : "  ", a, b, v->total, band,
               v->why);
    }
    for (unsigned i = 0; i < fc->nnotes; i++)
        printf("note: %s\n", fc->notes[i]);
    if (fc->n)
        printf("recommended: %s\n", fc->v[fc->best].command);
}

static void print_json(const struct plan_opts *o, const struct forecast *fc)
{
    struct json j;
    const struct job_spec *s = &o->spec;
    json_begin(&j, stdout);
    json_str(&j, "command", "plan");
    json_str(&j, "job", s->kind == JOB_SYNC ? "sync" : "copy");
    json_str(&j, "source", s->src);
    json_str(&j, "destination", s->dst);
    json_dbl(&j, "seconds", fc->seconds);
    json_dbl(&j, "budget", fc->budget);
    json_u64(&j, "disk_size", fc->size);
    json_u64(&j, "data_bytes", fc->data + fc->free);
    json_u64(&j, "free_bytes", fc->free);
    for (int k = FS_NONE + 1; k < FS_KINDS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "free_%s", fs_kind_name(k));
        json_u64(&j, key, fc->free_by[k]);
    }
    if (fc->sync_known)
        json_u64(&j, "changed_bytes", fc->sync_changed);
    json_u64(&j, "zero_bytes", fc->zero);
    json_u64(&j, "hole_bytes", fc->hole);
    json_obj(&j, "measured");
    json_u64(&j, "samples", fc->samples);
    json_dbl(&j, "zero_share", fc->zero_share);
    json_dbl(&j, "source_read", fc->read_rate);
    json_dbl(&j, "digest_per_core", fc->hash_rate);
    json_u64(&j, "cores", fc->cores);
    if (fc->remote) {
        json_dbl(&j, "zstd_per_core", fc->zstd_rate);
        json_dbl(&j, "zstd_ratio", fc->zstd_ratio);
        json_dbl(&j, "lz4_per_core", fc->lz4_rate);
        json_dbl(&j, "lz4_ratio", fc->lz4_ratio);
        json_dbl(&j, "rtt", fc->rtt);
        json_dbl(&j, "link_up", fc->up_rate);
        json_dbl(&j, "link_down", fc->down_rate);
        json_dbl(&j, "link_up_streams", fc->up_rate_streams);
        json_dbl(&j, "link_down_streams", fc->down_rate_streams);
        json_bool(&j, "source_remote", fc->pull);
        json_u64(&j, "streams", fc->streams);
        json_str(&j, "interface", fc->iface);
        json_dbl(&j, "interface_speed", fc->iface_bps);
    }
    if (!fc->remote || fc->pull) {
        json_dbl(&j, "destination_write", fc->write_rate);
        json_dbl(&j, "destination_read_back", fc->readback_rate);
    }
    json_close_obj(&j);
    json_arr(&j, "strategies");
    for (unsigned i = 0; i < fc->n; i++) {
        const struct fc_strategy *v = &fc->v[i];
        json_obj(&j, NULL);
        json_str(&j, "name", v->name);
        json_bool(&j, "recommended", i == fc->best);
        json_bool(&j, "fs_aware", v->fs_aware);
        json_bool(&j, "compress", v->compress);
        json_bool(&j, "tcp", v->tcp);
        json_u64(&j, "bytes_read", v->bytes_read);
        json_u64(&j, "bytes_sent", v->bytes_sent);
        json_obj(&j, "stages");
        for (int k = 0; k < FC_STAGES; k++)
            if (v->stage[k] > 0)
                json_dbl(&j, fc_stage_name(k), v->stage[k]);
        json_close_obj(&j);
        json_dbl(&j, "fixed", v->fixed);
        json_dbl(&j, "predicted_seconds", v->total);
        json_dbl(&j, "low", v->low);
        json_dbl(&j, "high", v->high);
        json_str(&j, "bottleneck", v->why);
        json_str(&j, "command", v->command);
        json_close_obj(&j);
    }
    json_close_arr(&j);
    json_arr(&j, "notes");
    for (unsigned i = 0; i < fc->nnotes; i++)
        json_str(&j, NULL, fc->notes[i]);
    json_close_arr(&j);
    json_end(&j);
}

int cmd_plan(int argc, char **argv)
{
    struct plan_opts o;
    struct df_error err;
    struct forecast *fc;
    int rc;

    memset(&o, 0, sizeof(o));
    o.c.cmd = "plan";
    o.spec.kind = JOB_COPY;
    cli_image_opts_init(&o.io);
    job_opts_init(&o.spec.jo);
    if ((rc = plan_parse(argc, argv, &o)) != 0)
        return rc < 0 ? 0 : rc;
    o.spec.cmd = "plan";
    o.spec.src = argv[optind];
    o.spec.dst = argv[optind + 1];
    o.spec.src_open = o.io.open;
    o.spec.force_share = o.io.force_share;
    o.spec.dry_run = true;
    o.spec.msgs = o.c.quiet ? NULL : stderr;
    fc = calloc(1, sizeof(*fc));
    if (!fc) {
        fputs("diskferry: plan: out of memory\n", stderr);
        return DF_IO;
    }
    fc->budget = o.budget;
    df_error_init(&err);
    if (job_plan(&o.spec, fc, &err) < 0) {
        cli_print_error(&o.c, &err);
        free(fc);
        return err.cat;
    }
    if (o.json)
        print_json(&o, fc);
    else
        print_text(&o, fc);
    free(fc);
    return 0;
}
