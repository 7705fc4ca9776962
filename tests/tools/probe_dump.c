/*
 * probe_dump.c: test tool: connect to `diskferry serve` as a copy would
 * and run the link probe (remote_probe), then print its result as
 * `key value` lines (rtt, up, down in seconds and bytes/s).  On failure
 * it prints the error as the CLI would and exits with its category.
 *
 *   probe_dump [--rsh CMD] [--remote-path P] [--transport ssh|tcp]
 *              [--streams N] [--timeout S] [--then-write PATH]
 *              HOST BUDGET
 *
 * --then-write PATH: after the probe, on the same session, copy 1 MiB
 * (bytes i * 7 mod 251) to a new file PATH on the remote host, as a
 * copy to it would (a job after a probe).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/remote.h"

static int usage(void)
{
    fprintf(stderr, "usage: probe_dump [--rsh CMD] [--remote-path P] "
            "[--transport ssh|tcp] [--streams N] [--timeout S] HOST "
            "BUDGET\n");
    return 2;
}

static int fail(struct df_error *err)
{
    char buf[4096];
    df_error_format(err, buf, sizeof(buf));
    fprintf(stderr, "probe_dump: %s\n", buf);
    return err->cat;
}

#define WRITE_LEN (1u << 20)

static int then_write(struct remote *r, struct df_error *err)
{
    static uint8_t buf[WRITE_LEN];
    struct sink *s;
    bool created;
    for (size_t i = 0; i < WRITE_LEN; i++)
        buf[i] = (uint8_t)(i * 7 % 251);
    if (remote_open_dst(r, WRITE_LEN, 1, &s, &created, err) < 0 ||
        s->ops->write(s, 0, buf, WRITE_LEN, err) < 0 ||
        s->ops->finish(s, err) < 0 || remote_done(r, true, err) < 0)
        return -1;
    printf("written %u\n", WRITE_LEN);
    return 0;
}

int main(int argc, char **argv)
{
    struct remote_opts o;
    struct df_error err;
    struct remote *r = NULL;
    struct link_probe lp;
    const char *pos[2], *then = NULL;
    int npos = 0;
    memset(&o, 0, sizeof(o));
    df_error_init(&err);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--rsh") && more)
            o.rsh = argv[++i];
        else if (!strcmp(a, "--remote-path") && more)
            o.remote_path = argv[++i];
        else if (!strcmp(a, "--transport") && more)
            o.tcp = !strcmp(argv[++i], "tcp");
        else if (!strcmp(a, "--streams") && more)
            o.streams = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--timeout") && more)
            o.timeout = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--then-write") && more)
            then = argv[++i];
        else if (a[0] == '-' || npos == 2)
            return usage();
        else
            pos[npos++] = a;
    }
    if (npos != 2)
        return usage();
    o.host = pos[0];
    o.path = then ? then : "-";
    double budget = strtod(pos[1], NULL);
    if (remote_connect(&o, &r, &err) < 0)
        return fail(&err);
    if (remote_probe(r, budget, &lp, &err) < 0) {
        remote_explain(r, &err);
        remote_close(r);
        return fail(&err);
    }
    printf("rtt %.6f\nup %.0f\ndown %.0f\nstreams %u\nseconds %.3f\n"
           "bytes_up %" PRIu64 "\nbytes_down %" PRIu64 "\n", lp.rtt, lp.up,
           lp.down, lp.streams, lp.seconds, lp.bytes_up, lp.bytes_down);
    fflush(stdout);
    if (then) {
        int ret = then_write(r, &err);
        if (ret < 0)
            remote_explain(r, &err);
        remote_close(r);
        return ret < 0 ? fail(&err) : 0;
    }
    struct df_error e;
    df_error_init(&e);
    remote_done(r, false, &e);
    remote_close(r);
    return 0;
}
