/*
 * cmd_serve.c: `diskferry serve`: the remote end of a copy, speaking
 * the protocol (proto/msg.h) on stdin/stdout.  Started by the client
 * over ssh (`--rsh`, `--remote-path`); rarely typed by hand.  An
 * administrator can pin it in authorized_keys:
 *   command="diskferry serve --root /srv/vms" ssh-ed25519 AAAA...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "proto/serve.h"

static const char serve_usage[] =
    "usage: diskferry serve [OPTIONS]\n"
    "\n"
    "The remote end of `diskferry copy host:PATH ...`: speaks the "
    "diskferry\nprotocol on stdin and stdout.  Errors travel back to the "
    "client.\n"
    "\n"
    "options:\n"
    "      --root DIR        every path resolves inside DIR; `..` and "
    "symlinks\n"
    "                        leading outside are refused\n"
    "      --allow PATH      write only to PATH or below it (repeatable)\n"
    "      --state-dir DIR   resume journals of devices (default "
    "$DISKFERRY_STATE_DIR,\n"
    "                        else /var/lib/diskferry; root-only)\n"
    "      --threads N       digest and read threads (default: cores)\n"
    "      --no-tcp          refuse --transport tcp (data only over "
    "ssh)\n"
    "      --timeout SECS    give up on a client that answers nothing for "
    "SECS\n"
    "                        seconds (default 60)\n"
    "  -v, --verbose         also print errors on stderr\n"
    "  -h, --help            this text\n";

enum { OPT_ROOT = 256, OPT_ALLOW, OPT_STATE_DIR, OPT_THREADS, OPT_NO_TCP,
       OPT_TIMEOUT };

int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "root", required_argument, NULL, OPT_ROOT },
        { "allow", required_argument, NULL, OPT_ALLOW },
        { "state-dir", required_argument, NULL, OPT_STATE_DIR },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "no-tcp", no_argument, NULL, OPT_NO_TCP },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "serve" };
    struct serve_opts o;
    struct df_error err;
    int opt;

    memset(&o, 0, sizeof(o));
    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_ROOT: o.root = optarg; break;
        case OPT_ALLOW:
            if (o.nallow == SERVE_MAX_ALLOW)
                return cli_usage(&c, "--allow: at most %d paths",
                                 SERVE_MAX_ALLOW);
            o.allow[o.nallow++] = optarg;
            break;
        case OPT_STATE_DIR: o.state_dir = optarg; break;
        case OPT_NO_TCP: o.no_tcp = true; break;
        case OPT_TIMEOUT:
            if (cli_parse_uint(&c, "--timeout", optarg, 1, 86400,
                               &o.timeout))
                return DF_USAGE;
            break;
        case OPT_THREADS:
            if (cli_parse_uint(&c, "--threads", optarg, 1, 64, &o.threads))
                return DF_USAGE;
            break;
        case 'v': c.verbose++; break;
        case 'h': fputs(serve_usage, stdout); return 0;
        default: return cli_bad_option(&c, argv);
        }
    }
    if (optind != argc)
        return cli_usage(&c, "serve takes no arguments");
    if (isatty(STDIN_FILENO) || isatty(STDOUT_FILENO))
        return cli_usage(&c, "serve speaks the diskferry protocol on "
                         "stdin/stdout; it is started by `diskferry copy "
                         "host:PATH`, not by hand");
    df_error_init(&err);
    /* Bigger pipes to and from sshd (no-op on a socket). */
    fcntl(STDIN_FILENO, F_SETPIPE_SZ, 1 << 20);
    fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
    /* stdout carries the protocol: nothing else may print there. */
    int out = dup(STDOUT_FILENO);
    if (out < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
        return DF_NET;
    if (serve_run(STDIN_FILENO, out, &o, &err) < 0) {
        if (c.verbose)
            cli_print_error(&c, &err);
        return err.cat;
    }
    return 0;
}
