/*
 * cmd_copy.c: `diskferry copy SRC DST`: full copy or conversion, zero-
 * and hole-aware, verified end to end; and `diskferry sync SRC DST`,
 * which takes the same options and a few of its own (the job is
 * engine/sync.c's).
 *
 * Options in, a job spec out (engine/job.h; the options of images and
 * remote endpoints are cli.c's); job_run() does the work (the source,
 * the destination's life in engine/dest.h, the remote host); the report
 * comes back and report.c prints it: one line with -v, one JSON object
 * with --json.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/report.h"
#include "engine/job.h"
#include "util/interrupt.h"
#include "util/progress.h"

static const char copy_usage[] =
    "usage: diskferry copy [OPTIONS] SRC DST\n"
    "\n"
    "Copy the disk SRC to DST, converting the format if asked.  Holes and "
    "zero\nblocks are neither read (where the format says so) nor "
    "written; the copy is\nverified end to end: a hash tree of what was "
    "read is compared with one of\nwhat DST holds afterwards (exit 7 on "
    "a mismatch).\n"
    "\n"
    "SRC  an image file or block device (raw, qcow2, vmdk, vdi, vhd, "
    "vhdx; a file's\n     format is probed from the content, a block "
    "device is raw unless -f\n     says), or - for a raw stream on stdin\n"
    "DST  a new file (never replaces one), an existing file or device "
    "with\n     --overwrite, or - for raw bytes on stdout\n"
    "SRC and DST may be an NBD export: nbd://HOST[:PORT]/EXPORT,\n"
    "     nbd+unix:///EXPORT?socket=PATH, nbds://... (TLS); a non-empty "
    "export\n     as DST needs --overwrite\n"
    "\n"
    "options:\n"
    "  -f, --format FMT        read SRC as FMT instead of probing "
    "(-f raw copies\n"
    "                          the bytes of any file as they are); "
    "needed to read\n"
    "                          a block device that carries an image "
    "signature and\n"
    "                          to follow the backing chain a probed "
    "image records\n"
    "  -O, --output-format FMT raw or qcow2 (default: raw, or the format "
    "of an\n"
    "                          existing image file DST); a DST of "
    "another format\n"
    "                          is replaced whole (--overwrite)\n"
    "  -c, --compress-image    qcow2 output: compress clusters (zstd)\n"
    "      --overwrite         write over a disk that holds data or a "
    "signature\n"
    "      --yes               do not ask before overwriting\n"
    "      --dry-run           run every check, print what would be "
    "written,\n"
    "                          write nothing\n"
    "      --undo FILE         save what is overwritten in the journal "
    "FILE first\n"
    "                          ('diskferry undo FILE' puts it back)\n"
    "      --write-manifest FILE  keep the hash of every 64 KiB block "
    "written in\n"
    "                          FILE (for sync --changes manifest:FILE and "
    "verify\n"
    "                          --manifest); a raw file or device DST here "
    "also\n"
    "                          gets a state record (see sync --help)\n"
    "      --no-verify         skip the read-back verification\n"
    "      --salvage           go on past source read errors: unreadable "
    "ranges\n"
    "                          (narrowed to 4 KiB) are written as zeros "
    "and listed;\n"
    "                          DST is completed and kept, the exit code "
    "is 4\n"
    "      --fsync             wait until DST is on stable storage before "
    "verifying\n"
    "                          (and report write-back errors); without it, "
    "as cp,\n"
    "                          dd and qemu-img, DST may still be in the "
    "page cache\n"
    "      --digest ALG        xxh128 (default) or sha256 (a "
    "cryptographic digest)\n"
    "      --threads N         reader (and compression) threads "
    "(default: cores)\n"
    "      --parent-dir DIR    look for parents by name in DIR "
    "(repeatable; without\n"
    "                          -f, the only place a probed chain's "
    "parents are\n"
    "                          looked for)\n"
    "      --parent C=P        use P as the parent of layer C "
    "(repeatable)\n"
    "      --force-share       copy a source that is being written (a "
    "running VM,\n"
    "                          a read-write mount): the copy may be "
    "inconsistent\n"
    "      --fs-aware          neither read nor send the blocks that "
    "ext2/3/4, XFS,\n"
    "                          NTFS and swap (whole disk or partitions of "
    "MBR/GPT)\n"
    "                          mark free; DST holds zeros there; a "
    "filesystem that\n"
    "                          is not clean is copied whole, with a "
    "warning\n"
    "      --json              one JSON report on stdout at the end\n"
    "\n"
    "remote endpoints ([user@]host:PATH, [user@][IPv6]:PATH; SRC or "
    "DST, not\n"
    "both: run diskferry on one of the two hosts; a local name with a "
    "colon\n"
    "before any slash is written ./a:b):\n"
    "      --rsh CMD           how to reach the host (default ssh; split "
    "like\n"
    "                          rsync's -e: 'ssh -p 2222 -i key')\n"
    "      --remote-path P     diskferry on the remote host (default "
    "diskferry)\n"
    "      --compress MODE     auto (default), zstd, zstd:LEVEL, lz4, none\n"
    "      --bwlimit RATE      at most RATE bytes/s on the wire (20M, "
    "500K)\n"
    "      --transport T       ssh (default) or tcp: data on --streams "
    "TCP\n"
    "                          connections, AES-256-GCM, key sent over "
    "ssh\n"
    "      --streams N         TCP streams (default 4)\n"
    "      --resume            continue an interrupted copy (either "
    "direction)\n"
    "                          from the receiving side's journal; "
    "verified in full\n"
    "      --timeout SECS      give up on a host that answers nothing for "
    "SECS\n"
    "                          seconds (default 60)\n"
    "      --progress          draw progress (default: when stderr is a "
    "terminal)\n"
    "      --progress=json     instead, one JSON line a second on stderr "
    "(time,\n"
    "                          bytes done and sent, rate, ETA) and a last "
    "one\n"
    "      --progress-fd N     the JSON lines to file descriptor N as "
    "well\n"
    "      --no-progress       never draw progress (SIGUSR1 still prints "
    "a line)\n"
    "  -q, --quiet             no warnings\n"
    "  -v, --verbose           a summary line at the end; -vv: where "
    "errors arose\n"
    "  -h, --help              this text\n";

static const char sync_usage[] =
    "usage: diskferry sync [OPTIONS] SRC DST\n"
    "\n"
    "Bring DST, an earlier copy of SRC, up to date: only the 64 KiB "
    "blocks that\ndiffer are written, and DST is verified end to end "
    "afterwards (exit 7 on a\nmismatch).  A DST that does not exist is "
    "copied whole.\n"
    "\n"
    "How sync learns what changed (--changes):\n"
    "  (default)          the state record the last copy or sync to DST "
    "left in\n"
    "                     diskferry's state directory on DST's host; "
    "reads SRC\n"
    "                     once, DST only to prove it is that copy; "
    "without a\n"
    "                     record: compare\n"
    "  compare            hash both SRC and DST where they are and "
    "compare the\n"
    "                     hash trees (holes are not read)\n"
    "  manifest:FILE      the leaf hashes a copy or sync --write-manifest "
    "FILE kept\n"
    "  lvm-cow:COW        an LVM snapshot's copy-on-write store (the "
    "-cow device,\n"
    "                     or the snapshot LV, whose store is found): the "
    "chunks of\n"
    "                     SRC (the origin) written since the snapshot; "
    "the store's\n"
    "                     saved chunks prove DST is the origin as the "
    "snapshot saw it\n"
    "  lvm-thin:META,OLD,NEW  the blocks thin device NEW maps "
    "differently from\n"
    "                     OLD, from the pool metadata META (thin_delta)\n"
    "  bitmap:NAME        the qcow2 SRC's persistent dirty bitmap NAME "
    "(read\n"
    "                     offline; one that QEMU left in use: compare)\n"
    "  top-layer          SRC is a delta image (qcow2 overlay, VMDK "
    "child or\n"
    "                     delta, VHD/VHDX/VDI differencing) whose parent "
    "DST\n"
    "                     holds: what the delta holds is written, its "
    "parent is\n"
    "                     not needed; DST's record must show it was "
    "written from\n"
    "                     that parent (else --trust-base)\n"
    "The metadata sources read SRC only where it changed; but for "
    "lvm-cow they\nneed DST's state record (proved as above).  With "
    "lvm-cow and no record,\nverification covers the changed ranges.\n"
    "A record or manifest is proved before anything is written: DST's "
    "identity\nand its blocks at 64 spread places and wherever the sync "
    "will write must\nmatch it, else the sync is refused (exit 3): run "
    "with --changes compare.\nA DST recorded as a copy of this SRC is "
    "written without --overwrite; any\nother DST needs it, as for "
    "copy.  A regular file DST takes SRC's size.\n"
    "\n"
    "SRC  an image file, block device or NBD export (as for copy), or\n"
    "     [user@]host:PATH: its tree is hashed there\n"
    "DST  a raw file or block device, written in place, here or\n"
    "     [user@]host:PATH: hashed there, its state record kept there\n"
    "\n"
    "options:\n"
    "      --changes HOW       how to learn what changed (above)\n"
    "      --write-manifest FILE  keep the leaf hashes of what DST holds "
    "in FILE\n"
    "      --passes N          sync N times in a row (pre-copy while the "
    "VM runs;\n"
    "                          a source in use is read); each pass says "
    "what it sent\n"
    "      --until SIZE        sync again until a pass sends at most SIZE "
    "(at most\n"
    "                          20 passes)\n"
    "      --block-size SIZE   compare in blocks of SIZE (64K, the "
    "default, to 64M)\n"
    "      --trust-base        --changes top-layer: apply the delta to a "
    "DST no\n"
    "                          record shows to be its parent (the user "
    "vouches;\n"
    "                          verification covers what is written)\n"
    "      --resume            (accepted) an interrupted sync is finished "
    "by running\n"
    "                          it again: its record is marked busy, so it "
    "compares\n"
    "                          and sends only what still differs\n"
    "      --overwrite         write into a DST that is not a recorded "
    "copy of SRC\n"
    "      --yes               do not ask before overwriting\n"
    "      --dry-run           find what changed, list the ranges that "
    "would be\n"
    "                          written, write nothing\n"
    "      --undo FILE         save what is overwritten in the journal "
    "FILE first\n"
    "      --no-verify         skip the read-back verification\n"
    "      --fsync             wait until DST is on stable storage before "
    "verifying\n"
    "      --digest ALG        xxh128 (default) or sha256\n"
    "      --threads N         reader threads (default: cores)\n"
    "  -f, --format FMT        read SRC as FMT instead of probing\n"
    "      --parent-dir DIR, --parent C=P, --force-share   as for copy\n"    "      --fs-aware          as for copy: free blocks neither read nor "
    "sent\n"
    "      --json              one JSON report on stdout at the end\n"
    "      --progress, --progress=json, --progress-fd N, --no-progress,\n"
    "      -q, -v, -h          as for copy\n"
    "\n"
    "remote endpoints (SRC or DST, not both):\n"
    "      --rsh CMD, --remote-path P, --timeout SECS, --compress MODE,\n"
    "      --bwlimit RATE   as for copy; only hashes of what differs and "
    "the\n"
    "                       changed blocks cross\n";

struct copy_opts {
    struct cli c;
    struct cli_image_opts src_io;
    struct job_spec spec;
    bool json;
    struct cli_progress progress;
    struct extent_list salvaged;    /* --salvage */
};

enum {
    OPT_OVERWRITE = 256, OPT_YES, OPT_NO_VERIFY, OPT_DIGEST, OPT_THREADS,
    OPT_JSON, OPT_FSYNC, OPT_DRY_RUN, OPT_UNDO,
    OPT_SALVAGE, OPT_CHANGES, OPT_WRITE_MANIFEST, OPT_PASSES, OPT_UNTIL,
    OPT_BLOCK_SIZE, OPT_TRUST_BASE, OPT_FS_AWARE,
};

static int copy_parse(int argc, char **argv, struct copy_opts *o)
{
    static const struct option longopts[] = {
        CLI_IMAGE_LONGOPTS,
        CLI_REMOTE_LONGOPTS,
        { "output-format", required_argument, NULL, 'O' },
        { "compress-image", no_argument, NULL, 'c' },
        { "overwrite", no_argument, NULL, OPT_OVERWRITE },
        { "yes", no_argument, NULL, OPT_YES },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "undo", required_argument, NULL, OPT_UNDO },
        { "no-verify", no_argument, NULL, OPT_NO_VERIFY },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "changes", required_argument, NULL, OPT_CHANGES },
        { "write-manifest", required_argument, NULL, OPT_WRITE_MANIFEST },
        { "passes", required_argument, NULL, OPT_PASSES },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
        { "trust-base", no_argument, NULL, OPT_TRUST_BASE },
        { "fs-aware", no_argument, NULL, OPT_FS_AWARE },
        { "fsync", no_argument, NULL, OPT_FSYNC },
        { "digest", required_argument, NULL, OPT_DIGEST },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "json", no_argument, NULL, OPT_JSON },
        CLI_PROGRESS_LONGOPTS,
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli *c = &o->c;
    bool sync = o->spec.kind == JOB_SYNC;
    const char *only = NULL;    /* an option of the other command */
    int opt, r;

    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "f:O:cqvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'O': o->spec.out_format = optarg; break;
        case 'c': o->spec.copts.compress = true; break;
        case OPT_OVERWRITE: o->spec.overwrite = true; break;
        case OPT_YES: o->spec.yes = true; break;
        case OPT_DRY_RUN: o->spec.dry_run = true; break;
        case OPT_UNDO: o->spec.undo = optarg; break;
        case OPT_NO_VERIFY: o->spec.jo.verify = false; break;
        case OPT_SALVAGE: o->spec.jo.salvaged = &o->salvaged; break;
        case OPT_CHANGES:
            if (cli_changes_option(c, optarg) < 0)
                return DF_USAGE;
            o->spec.changes = optarg;
            break;
        case OPT_WRITE_MANIFEST: o->spec.write_manifest = optarg; break;
        case OPT_TRUST_BASE: o->spec.trust_base = true; break;
        case OPT_FS_AWARE: o->spec.fs_aware = true; break;
        case OPT_PASSES:
            if (cli_parse_uint(c, "--passes", optarg, 1, 1000,
                               &o->spec.passes))
                return DF_USAGE;
            break;
        case OPT_UNTIL:
            if (cli_parse_size(c, "--until", optarg, &o->spec.until))
                return DF_USAGE;
            if (!o->spec.until)
                return cli_usage(c, "--until: more than 0, e.g. 64M");
            break;
        case OPT_BLOCK_SIZE:
            if (cli_parse_size(c, "--block-size", optarg,
                               &o->spec.block_size))
                return DF_USAGE;
            break;
        case OPT_FSYNC: o->spec.fsync = true; break;
        case OPT_DIGEST:
            if (digest_alg_parse(optarg, &o->spec.jo.digest) < 0)
                return cli_usage(c, "--digest: unknown algorithm '%s' "
                                 "(xxh128, sha256)", optarg);
            break;
        case OPT_THREADS:
            if (cli_parse_uint(c, "--threads", optarg, 1, 64,
                               &o->spec.jo.threads))
                return DF_USAGE;
            break;
        case OPT_JSON: o->json = true; break;
        case 'q': c->quiet = true; break;
        case 'v': c->verbose++; break;
        case 'h': fputs(sync ? sync_usage : copy_usage, stdout); return -1;
        default:
            if (!(r = cli_image_option(c, &o->src_io, opt, optarg)) &&
                !(r = cli_progress_option(c, &o->progress, opt, optarg)))
                r = cli_remote_option(c, &o->spec, opt, optarg);
            if (r <= 0)
                return r ? DF_USAGE : cli_bad_option(c, argv);
        }
        if (sync ? opt == 'O' || opt == 'c' || opt == OPT_SALVAGE ||
                       opt == CLI_OPT_TRANSPORT
                 : opt == OPT_CHANGES || opt == OPT_PASSES ||
                       opt == OPT_UNTIL || opt == OPT_BLOCK_SIZE ||
                       opt == OPT_TRUST_BASE)
            only = argv[optind - 1];
    }
    if (only)
        return cli_usage(c, "%s: not an option of %s", only, c->cmd);
    if (o->spec.trust_base &&
        (!o->spec.changes || strcmp(o->spec.changes, "top-layer")))
        return cli_usage(c, "--trust-base: only with --changes top-layer");
    if (o->spec.passes && o->spec.until)
        return cli_usage(c, "--passes and --until: one or the other");
    if (o->spec.undo && (o->spec.passes > 1 || o->spec.until))
        return cli_usage(c, "--undo keeps what one sync overwrote: not "
                         "with --passes or --until");
    if (argc - optind != 2)
        return cli_usage(c, "expected SRC and DST");
    const char *ofmt = o->spec.out_format;
    unsigned caps = 0;
    if (ofmt && image_format_caps(ofmt, &caps) < 0)
        return cli_usage(c, "-O: unknown format '%s'", ofmt);
    if (ofmt && !(caps & IMG_CAN_CREATE))
        return cli_usage(c, "-O: diskferry does not write %s images "
                         "(raw, qcow2)", ofmt);
    if (o->spec.copts.compress && !(caps & IMG_CAN_COMPRESS))
        return cli_usage(c, "-c compresses qcow2 output: give -O qcow2");
    if (o->spec.dry_run && o->spec.undo)
        return cli_usage(c, "--dry-run writes nothing: --undo has nothing "
                         "to save");
    return cli_progress_apply(c, &o->progress,
                              o->json ? "the JSON report"
                              : !strcmp(argv[optind + 1], "-") ? "the data"
                                                               : NULL,
                              &o->spec.jo);
}

static int copy_or_sync(int argc, char **argv, enum job_kind kind)
{
    const char *cmd = kind == JOB_SYNC ? "sync" : "copy";
    struct copy_opts o;
    struct job_report rep;
    struct df_error err;
    int rc;

    memset(&o, 0, sizeof(o));
    extent_list_init(&o.salvaged, 100000);     /* listed ranges */
    o.c.cmd = cmd;
    o.spec.kind = kind;
    cli_progress_init(&o.progress);
    cli_image_opts_init(&o.src_io);
    job_opts_init(&o.spec.jo);
    o.spec.jo.title = cmd;
    if ((rc = copy_parse(argc, argv, &o)) != 0)
        return rc < 0 ? 0 : rc;      /* -1: --help was printed */
    interrupt_install();
    o.spec.cmd = cmd;
    o.spec.src = argv[optind];
    o.spec.dst = argv[optind + 1];
    o.spec.src_open = o.src_io.open;
    o.spec.force_share = o.src_io.force_share;
    o.spec.interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    o.spec.report_on_stdout = o.json;
    o.spec.verbose = o.c.verbose;
    o.spec.msgs = o.c.quiet ? NULL : stderr;

    df_error_init(&err);
    rc = 0;
    progress_signal_install();          /* SIGUSR1: a progress line */
    int jr = job_run(&o.spec, &rep, &err);
    progress_signal_restore();
    if (jr < 0) {
        if (rep.usage_hint) {
            rc = cli_usage(&o.c, "%s", err.msg);
            goto out;
        }
        cli_print_error(&o.c, &err);
        rc = err.cat;
        if (!rep.salvaged)
            goto out;
        if (!o.c.quiet)
            report_salvaged_text(stderr, o.spec.cmd, &o.salvaged);
    }
    if (o.json)
        report_copy_json(stdout, &o.spec, &rep);
    if (o.c.verbose)
        report_copy_line(&o.spec, &rep);
    if (!o.c.quiet && rc == 0)
        report_fs_hint(stderr, &o.spec, &rep);
    if (o.spec.dry_run && rc == 0 && rep.predicted_seconds > 0)
        report_dry_plan(o.json ? stderr : stdout, &o.spec, &rep);
out:
    extent_list_release(&o.salvaged);
    return rc;
}

int cmd_copy(int argc, char **argv)
{
    return copy_or_sync(argc, argv, JOB_COPY);
}

int cmd_sync(int argc, char **argv)
{
    return copy_or_sync(argc, argv, JOB_SYNC);
}
