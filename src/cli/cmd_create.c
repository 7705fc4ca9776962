/*
 * cmd_create.c: `diskferry create --size SIZE DST`: a new empty disk.
 * It never replaces anything: job_create() (engine/job.h) runs the
 * safety gate and creates the file O_EXCL.
 */
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"

static const char create_usage[] =
    "usage: diskferry create --size SIZE [-O FMT] DST\n"
    "\n"
    "Create DST as a new, empty (all zero) disk of SIZE bytes.  DST must "
    "not exist:\ncreate never replaces a file, and refuses a path under "
    "/dev that is not a device.\n"
    "\n"
    "options:\n"
    "  -s, --size SIZE         virtual size, a multiple of 512 bytes: "
    "4096, 64K,\n"
    "                          20M, 10G, 1.5T\n"
    "  -O, --output-format FMT raw (default, a sparse file) or qcow2\n"
    "  -h, --help              this text\n";

int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "size", required_argument, NULL, 's' },
        { "output-format", required_argument, NULL, 'O' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "create" };
    const char *fmt = "raw";
    const char *size_arg = NULL;
    uint64_t size = 0;
    int opt;

    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "s:O:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': size_arg = optarg; break;
        case 'O': fmt = optarg; break;
        case 'h': fputs(create_usage, stdout); return 0;
        default: return cli_bad_option(&c, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage(&c, "expected one DST");
    if (!size_arg)
        return cli_usage(&c, "--size is required");
    if (cli_parse_size(&c, "--size", size_arg, &size))
        return DF_USAGE;
    if (size == 0)
        return cli_usage(&c, "--size: must be more than 0");
    if (size % 512)
        return cli_usage(&c, "--size %s: not a multiple of 512 bytes",
                         size_arg);
    unsigned caps;
    if (image_format_caps(fmt, &caps) < 0)
        return cli_usage(&c, "-O: unknown format '%s'", fmt);

    struct df_error err;
    df_error_init(&err);
    if (job_create(argv[optind], fmt, size, &err) < 0) {
        cli_print_error(&c, &err);
        return err.cat;
    }
    return 0;
}
