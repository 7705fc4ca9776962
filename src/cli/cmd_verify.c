/*
 * cmd_verify.c: `diskferry verify A B`: are two disks identical?
 *
 * Options in, a job spec out (JOB_VERIFY, engine/job.h); job_run()
 * opens and checks both disks and compares them; report.c prints the
 * report.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/report.h"
#include "engine/job.h"
#include "util/progress.h"

static const char verify_usage[] =
    "usage: diskferry verify [OPTIONS] A B\n"
    "       diskferry verify [OPTIONS] --manifest FILE A\n"
    "\n"
    "Compare the disks A and B as a guest sees them (any formats, chains "
    "flattened).\nExit 0 when identical; exit 1 when they differ, "
    "printing the differing ranges.\n"
    "With --manifest, compare A with what a copy or sync --write-manifest "
    "FILE\nrecorded (a backup checked against the manifest of what was "
    "written): only A\nis read; differing 64 KiB blocks are listed, and a "
    "size that differs is said.\n"
    "\n"
    "One of A and B may be [user@]host:PATH: `diskferry serve` there "
    "reads that disk\nand builds its hash tree while this side builds "
    "the other's; only hashes\ncross the wire, and the differing "
    "ranges are whole 64 KiB blocks (the\nhash tree's leaves), not "
    "bytes.\n"
    "\n"
    "options:\n"
    "      --manifest FILE     check A against FILE\n"
    "  -f, --format FMT        read A as FMT\n"
    "  -F, --other-format FMT  read B as FMT\n"
    "                          (without them a file's format is probed, "
    "a block\n"
    "                          device is raw and one carrying an image "
    "signature is\n"
    "                          refused, and a probed image's chain is "
    "followed only\n"
    "                          through --parent-dir/--parent)\n"
    "      --parent-dir DIR    look for parents by name in DIR\n"
    "      --parent C=P        use P as the parent of layer C\n"
    "      --force-share       compare disks that are being written (a "
    "running VM):\n"
    "                          the result may be inconsistent\n"
    "      --threads N         reader threads (default: cores)\n"
    "      --digest ALG        xxh128 (default) or sha256\n"
    "      --json              one JSON report on stdout\n"
    "      --rsh CMD           how to reach a host (default ssh)\n"
    "      --remote-path P     diskferry on the remote host (default "
    "diskferry)\n"
    "      --timeout SECS      give up on a host that answers nothing "
    "for SECS\n"
    "      --progress, --progress=json, --progress-fd N, --no-progress\n"
    "                          as for copy\n"
    "  -q, --quiet             print nothing; the exit code answers\n"
    "  -h, --help              this text\n";

int cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_IMAGE_LONGOPTS,
        CLI_HOST_LONGOPTS,
        { "other-format", required_argument, NULL, 'F' },
        { "manifest", required_argument, NULL, 'm' },
        { "threads", required_argument, NULL, 't' },
        { "digest", required_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        CLI_PROGRESS_LONGOPTS,
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "verify" };
    struct cli_image_opts io;
    struct job_spec spec;
    struct job_report rep;
    struct job_opts *jo = &spec.jo;
    const char *fmt_b = NULL;
    bool json = false;
    struct cli_progress progress;
    int opt, r;

    memset(&spec, 0, sizeof(spec));
    cli_image_opts_init(&io);
    job_opts_init(jo);
    cli_progress_init(&progress);
    jo->title = "verify";
    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "f:F:qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'F': fmt_b = optarg; break;
        case 'm': spec.manifest = optarg; break;
        case 't':
            if (cli_parse_uint(&c, "--threads", optarg, 1, 64, &jo->threads))
                return DF_USAGE;
            break;
        case 'd':
            if (digest_alg_parse(optarg, &jo->digest) < 0)
                return cli_usage(&c, "--digest: unknown algorithm '%s' "
                                 "(xxh128, sha256)", optarg);
            break;
        case 'j': json = true; break;
        case 'q': c.quiet = true; progress.mode = 0; break;
        case 'v': c.verbose++; break;
        case 'h': fputs(verify_usage, stdout); return 0;
        default:
            r = cli_image_option(&c, &io, opt, optarg);
            if (r == 0)
                r = cli_progress_option(&c, &progress, opt, optarg);
            switch (r) {
            case 1: break;
            case 0:
                switch (cli_remote_option(&c, &spec, opt, optarg)) {
                case 1: break;
                case 0: return cli_bad_option(&c, argv);
                default: return DF_USAGE;
                }
                break;
            default: return DF_USAGE;
            }
        }
    }
    if (spec.manifest && argc - optind != 1)
        return cli_usage(&c, "--manifest FILE: expected one disk");
    if (!spec.manifest && argc - optind != 2)
        return cli_usage(&c, "expected two disks A and B");
    if (cli_progress_apply(&c, &progress,
                           json ? "the JSON report"
                           : c.quiet ? NULL : "the report", jo))
        return DF_USAGE;

    struct df_error err;
    int rc;
    df_error_init(&err);
    spec.kind = JOB_VERIFY;
    spec.cmd = "verify";
    spec.src = argv[optind];
    spec.dst = spec.manifest ? spec.manifest : argv[optind + 1];
    spec.src_open = io.open;
    spec.dst_open = io.open;
    spec.dst_open.format = fmt_b;
    spec.force_share = io.force_share;
    spec.verbose = c.verbose;
    spec.msgs = c.quiet ? NULL : stderr;
    progress_signal_install();          /* SIGUSR1: a progress line */
    int jr = job_run(&spec, &rep, &err);
    progress_signal_restore();
    if (jr < 0) {
        rc = rep.usage_hint ? cli_usage(&c, "%s", err.msg)
                            : (cli_print_error(&c, &err), (int)err.cat);
        job_report_release(&rep);
        return rc;
    }
    rc = rep.identical ? DF_OK : DF_DIFFER;
    if (json)
        report_verify_json(stdout, &spec, &rep);
    else if (!c.quiet)
        report_verify_text(stdout, &spec, &rep);
    job_report_release(&rep);
    return rc;
}
