/*
 * cmd_undo.c: `diskferry undo JOURNAL [DST]`: put back what a copy made
 * with --undo JOURNAL overwrote.
 *
 * Options in, a job spec out; job_undo() (engine/job.h) does the work,
 * here or, for a journal on another host, through that host's serve.
 * Rerunning after an interruption is safe.
 */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/report.h"

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

enum { OPT_DRY_RUN = 256, OPT_YES };

int cmd_undo(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_HOST_LONGOPTS,
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "yes", no_argument, NULL, OPT_YES },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "undo" };
    struct job_spec spec;
    struct job_report rep;
    struct df_error err;
    int opt, r;

    memset(&spec, 0, sizeof(spec));
    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_DRY_RUN: spec.dry_run = true; break;
        case OPT_YES: spec.yes = true; break;
        case 'q': c.quiet = true; break;
        case 'v': c.verbose++; break;
        case 'h': fputs(undo_usage, stdout); return 0;
        default:
            if ((r = cli_remote_option(&c, &spec, opt, optarg)) <= 0)
                return r ? DF_USAGE : cli_bad_option(&c, argv);
        }
    }
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage(&c, "expected JOURNAL [DST]");
    spec.cmd = "undo";
    spec.src = argv[optind];
    spec.dst = argc - optind == 2 ? argv[optind + 1] : NULL;
    spec.interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    spec.verbose = c.verbose;
    spec.msgs = stderr;

    df_error_init(&err);
    if (job_undo(&spec, &rep, &err) < 0) {
        if (rep.usage_hint)
            return cli_usage(&c, "%s", err.msg);
        cli_print_error(&c, &err);
        return err.cat;
    }
    if (c.verbose)
        report_undo_line(&spec, &rep);
    return 0;
}
