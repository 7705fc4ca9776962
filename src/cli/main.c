/*
 * main.c: the command table.  The only place in diskferry that exits.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#ifndef DF_VERSION
#define DF_VERSION "unknown"
#endif

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    { "info", cmd_info, "what is this disk: format, size, allocation, chain" },
    { "create", cmd_create, "a new empty disk; never replaces a file" },
    { "copy", cmd_copy, "copy or convert a disk, verified end to end" },
    { "sync", cmd_sync, "bring an earlier copy up to date: only what "
      "changed" },
    { "verify", cmd_verify, "are two disks identical?" },
    { "plan", cmd_plan, "how long would a copy take, and why? (writes "
      "nothing)" },
    { "serve", cmd_serve, "the remote end (started over ssh)" },
    { "undo", cmd_undo, "put back what a copy --undo JOURNAL overwrote" },
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: diskferry COMMAND [OPTIONS] ARGS...\n"
            "\n"
            "Move virtual-machine disks between hosts, sending only what "
            "must travel,\nrefusing to write where it would destroy, and "
            "verifying every byte.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n'diskferry COMMAND --help' explains a command.\n"
            "exit codes: 0 done, 1 verify found differences, 2 usage, "
            "3 refused for safety,\n4 I/O error, 5 corrupt or unsupported "
            "image, 6 network, 7 verification failed\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DF_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("diskferry %s\n", DF_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "diskferry: unknown command '%s'\n"
                    "diskferry: try 'diskferry --help'\n", argv[1]);
    return DF_USAGE;
}
