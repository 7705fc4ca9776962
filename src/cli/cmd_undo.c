/*
 * cmd_undo.c: `diskferry undo JOURNAL [DST]`: put back what a copy made
 * with --undo JOURNAL overwrote.
 *
 * The work is undo_apply() (safety/undo.c, where the journal format and
 * its guarantees are): the same safety checks as any write, a refusal
 * when DST no longer matches the journal, then the old contents newest
 * first.  Rerunning after an interruption is safe.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/endpoint.h"
#include "proto/remote.h"
#include "safety/safety.h"
#include "util/size.h"

static const char undo_usage[] =
    "usage: diskferry undo [OPTIONS] JOURNAL [DST]\n"
    "\n"
    "Put back the contents that the copy made with --undo JOURNAL "
    "overwrote.\nDST defaults to the destination recorded in the "
    "journal.  The destination\nmust still be the one the journal was "
    "made for (same size, first MiB\nconsistent with the journal); an "
    "interrupted undo can be run again.\n"
    "\n"
    "options:\n"
    "      --dry-run           check and print what would be restored, "
    "write nothing\n"
    "      --yes               do not ask\n"
    "\n"
    "JOURNAL may be [user@]host:PATH (made by a copy to that host): the "
    "undo runs\nthere, through `diskferry serve` (--rsh, --remote-path, "
    "--timeout as for copy).\n"
    "  -q, --quiet             no warnings\n"
    "  -v, --verbose           a summary line at the end; -vv: where "
    "errors arose\n"
    "  -h, --help              this text\n";

enum { OPT_DRY_RUN = 256, OPT_YES, OPT_RSH, OPT_REMOTE_PATH, OPT_TIMEOUT };

/* JOURNAL on another host: serve runs undo_apply() there. */
static int undo_remote(struct cli *c, const struct endpoint *ep,
                       struct remote_opts *ro, const char *dst,
                       const struct undo_opts *uo)
{
    struct remote *r = NULL;
    struct undo_result st;
    struct df_error err;
    df_error_init(&err);
    if (uo->dry_run)
        return cli_usage(c, "--dry-run: not for a journal on another host");
    ro->user = ep->has_user ? ep->user : NULL;
    ro->host = ep->host;
    ro->path = ep->rpath;
    ro->verbose = c->verbose;
    if (remote_connect(ro, &r, &err) < 0 ||
        remote_undo(r, dst, &st, &err) < 0) {
        remote_explain(r, &err);
        remote_close(r);
        cli_print_error(c, &err);
        return err.cat;
    }
    remote_done(r, true, &err);
    remote_close(r);
    if (c->verbose) {
        char sz[32];
        size_format(st.bytes, sz, sizeof(sz));
        fprintf(stderr, "diskferry: undo: %" PRIu64 " ranges, %s put "
                "back%s%s\n", st.records, sz,
                st.truncated ? ", cut back to its old size" : "",
                st.complete ? "" : " (the copy had been interrupted)");
    }
    return 0;
}

int cmd_undo(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "yes", no_argument, NULL, OPT_YES },
        { "rsh", required_argument, NULL, OPT_RSH },
        { "remote-path", required_argument, NULL, OPT_REMOTE_PATH },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "undo" };
    struct undo_opts uo = { 0 };
    struct undo_stats st;
    struct df_error err;
    struct remote_opts ro = { 0 };
    struct endpoint ep;
    int opt;

    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_DRY_RUN: uo.dry_run = true; break;
        case OPT_YES: uo.yes = true; break;
        case OPT_RSH: ro.rsh = optarg; break;
        case OPT_REMOTE_PATH: ro.remote_path = optarg; break;
        case OPT_TIMEOUT:
            if (cli_parse_uint(&c, "--timeout", optarg, 1, 86400,
                               &ro.timeout))
                return DF_USAGE;
            ro.pass_timeout = true;
            break;
        case 'q': c.quiet = true; break;
        case 'v': c.verbose++; break;
        case 'h': fputs(undo_usage, stdout); return 0;
        default: return cli_bad_option(&c, argv);
        }
    }
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage(&c, "expected JOURNAL [DST]");
    const char *journal = argv[optind];
    const char *dst = argc - optind == 2 ? argv[optind + 1] : NULL;
    uo.interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);

    df_error_init(&err);
    if (endpoint_parse(journal, &ep, &err) < 0) {
        cli_print_error(&c, &err);
        return err.cat;
    }
    if (ep.kind == EP_REMOTE)
        return undo_remote(&c, &ep, &ro, dst, &uo);
    if (undo_apply(journal, dst, &uo, &st, &err) < 0) {
        cli_print_error(&c, &err);
        return err.cat;
    }
    if (c.verbose) {
        char sz[32];
        size_format(st.bytes, sz, sizeof(sz));
        fprintf(stderr, "diskferry: undo: %s%" PRIu64 " ranges, %s put "
                "back%s%s\n", uo.dry_run ? "dry run: " : "", st.records, sz,
                st.truncated ? ", cut back to its old size" : "",
                st.complete ? "" : " (the copy had been interrupted)");
    }
    return 0;
}
