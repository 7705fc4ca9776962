/*
 * cmd_info.c: `diskferry info IMAGE`: format, virtual size, allocation,
 * the chain with each layer's identity, a qcow2 image's dirty bitmaps,
 * the partitions and filesystems (info_fs.c), and with --map a picture
 * of the disk.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/info_fs.h"
#include "cli/report.h"
#include "track/qcow2_bitmap.h"
#include "util/size.h"

static const char info_usage[] =
    "usage: diskferry info [OPTIONS] IMAGE\n"
    "\n"
    "Show what IMAGE is: its format (probed from the content), virtual "
    "size,\nbytes allocated on storage, how much of the disk is data, "
    "zeros or holes,\nevery layer of its backing chain with the "
    "identity fields checked, and the\npartitions and filesystems on the "
    "disk: each one's used bytes, or why a\nfilesystem would be copied "
    "whole.\n"
    "\n"
    "A guest writes the content, so probing trusts it only so far: a "
    "block device\nis shown as raw (and any image signature it carries is "
    "named), and a probed\nimage's recorded parent is shown but not "
    "opened.  -f FMT reads the device as\nFMT and follows the chain; "
    "--parent / --parent-dir name parents to open.\n"
    "\n"
    "options:\n"
    "  -f, --format FMT        read IMAGE as FMT instead of probing "
    "(raw, qcow2, ...)\n"
    "      --parent-dir DIR    look for moved parents by name in DIR "
    "(repeatable)\n"
    "      --parent C=P        use P as the parent of layer C "
    "(repeatable)\n"
    "      --force-share       accepted as qemu-img's -U (info reads a "
    "disk in use\n"
    "                          without asking)\n"
    "      --json              one JSON object on stdout\n"
    "      --map               draw the disk: a grid of cells, each showing "
    "what\n"
    "                          most of it is (data, zero or hole, free in a\n"
    "                          filesystem), where partitions start, and "
    "totals\n"
    "      --map=svg FILE      the same picture as an SVG file (FILE must "
    "not exist)\n"
    "  -h, --help              this text\n";

static int info_map(struct image *img, struct info_counts *c,
                    struct df_error *err)
{
    struct extent_list l;
    uint64_t off = 0;
    int ret = -1;

    extent_list_init(&l, 65536);
    while (off < img->size) {
        extent_list_clear(&l);
        if (image_map(img, off, img->size - off, &l, err) < 0)
            goto out;
        c->data += extent_list_bytes(&l, EXT_DATA);
        c->zero += extent_list_bytes(&l, EXT_ZERO);
        c->hole += extent_list_bytes(&l, EXT_HOLE);
        off = extent_list_end(&l, img->size);
    }
    ret = 0;
out:
    extent_list_release(&l);
    return ret;
}

/*
 * The dirty bitmaps of a qcow2 top layer into c (free with
 * qcow2_bitmap_list_free).  A directory that cannot be read is a
 * warning: the rest of what info shows does not depend on it.
 */
static void info_bitmaps(const struct cli *cl, struct image *img,
                         struct info_counts *c)
{
    struct qcow2_bitmap_info *v;
    struct df_error err;
    size_t n;

    if (strcmp(image_format_name(img), "qcow2") != 0 || img->file.fd < 0)
        return;
    df_error_init(&err);
    if (qcow2_bitmap_list_file(&img->file, &v, &n, &err) < 0) {
        char msg[PATH_MAX + 2400];
        df_error_format(&err, msg, sizeof(msg));
        cli_warn(cl, "bitmaps not shown: %s", msg);
        return;
    }
    c->has_bitmaps = true;
    c->bitmaps = v;
    c->nbitmaps = n;
}

static void print_bitmaps(const struct info_counts *c)
{
    for (size_t i = 0; i < c->nbitmaps; i++) {
        const struct qcow2_bitmap_info *b = &c->bitmaps[i];
        /* A power of two from 512: exact in its unit ("64 KiB"). */
        static const char *const unit[] = { "B", "KiB", "MiB", "GiB" };
        unsigned k = b->granularity_bits / 10;
        printf("bitmap ");
        for (const char *p = b->name; *p; p++)
            putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
        printf(": granularity %llu %s, %s, %s%s\n",
               1ull << (b->granularity_bits - 10 * k), unit[k],
               b->enabled ? "enabled" : "disabled", qcow2_bitmap_state(b),
               b->usable ? "" : ", unusable (unknown extra data)");
    }
}

static void print_human(const struct image *img, const struct info_counts *c)
{
    char a[32], b[32];
    size_format(img->size, a, sizeof(a));
    printf("image: %s\nformat: %s", img->name, image_format_name(img));
    if (img->probe_note[0] && !img->has_parent_ref)
        printf(" (%s)", img->probe_note);
    printf("\nvirtual size: %s (%llu bytes)\n", a,
           (unsigned long long)img->size);
    size_format(image_allocated_bytes(img), b, sizeof(b));
    printf("allocated: %s\n", b);
    size_format(c->data, a, sizeof(a));
    printf("data: %s", a);
    size_format(c->zero, a, sizeof(a));
    size_format(c->hole, b, sizeof(b));
    printf(", zero: %s, holes: %s\n", a, b);
    for (unsigned i = 0; i < img->nprops; i++)
        printf("%s: %s\n", img->props[i].key, img->props[i].val);
    print_bitmaps(c);
    if (img->has_parent_ref && !img->parent) {
        printf("recorded parent: %s\n", img->parent_name[0]
               ? img->parent_name : "(identifier)");
        if (img->probe_note[0])
            printf("note: %s\n", img->probe_note);
    }
    if (!img->parent)
        return;
    printf("backing chain:\n");
    for (const struct image *m = img; m; m = m->parent) {
        size_format(m->size, a, sizeof(a));
        printf("  [%u] %s (%s, %s)\n", m->depth, m->name, image_format_name(m), a);
        if (m->depth) {
            const struct image *child = m;
            for (child = img; child->parent != m; child = child->parent)
                ;
            printf("      recorded as: %s\n      found by: %s\n",
                   child->parent_name[0] ? child->parent_name
                                         : "(identifier)",
                   child->parent_how);
            for (unsigned i = 0; i < m->nprops; i++)
                printf("      %s: %s\n", m->props[i].key, m->props[i].val);
        }
    }
}

/*
 * The partitions and filesystems of img (NULL when they cannot be
 * read: a warning, the rest of info goes on).
 */
static struct fs_layout *info_layout(const struct cli *cl, struct image *img)
{
    struct fs_layout *l = calloc(1, sizeof(*l));
    struct df_error err;
    df_error_init(&err);
    if (!l) {
        cli_warn(cl, "partitions not shown: out of memory");
        return NULL;
    }
    if (fs_layout_read(img, l, &err) < 0) {
        char msg[PATH_MAX + 2400];
        df_error_format(&err, msg, sizeof(msg));
        cli_warn(cl, "partitions not shown: %s", msg);
        fs_layout_release(l);
        free(l);
        return NULL;
    }
    return l;
}

/*
 * "--map=svg FILE": FILE is the argument after the option.  getopt
 * cannot say that of an optional argument, so the pair is taken out of
 * argv (up to "--") before it runs.  1: found, 0: not, -1: no FILE.
 */
static int info_take_svg(int *argc, char **argv, const char **file)
{
    for (int i = 1; i < *argc && strcmp(argv[i], "--"); i++) {
        if (strcmp(argv[i], "--map=svg"))
            continue;
        if (i + 1 >= *argc)
            return -1;
        *file = argv[i + 1];
        memmove(argv + i, argv + i + 2, (size_t)(*argc - i - 2) *
                sizeof(*argv));
        *argc -= 2;
        argv[*argc] = NULL;
        return 1;
    }
    return 0;
}

/* Draw img's map (text on stdout, or the SVG into svg_fd). */
static int info_draw(struct image *img, const struct fs_layout *l,
                     int svg_fd, const char *svg, struct df_error *err)
{
    struct info_map *m = calloc(1, sizeof(*m));
    int ret = -1;
    if (!m) {
        df_io(err, img->name, ENOMEM, "cannot draw the map");
        goto out;
    }
    if (info_map_build(img, l, m, err) < 0)
        goto out;
    if (svg) {
        ret = info_map_svg_write(svg_fd, svg, img->name, m, l, err);
        svg_fd = -1;            /* closed */
        goto out;
    }
    putchar('\n');
    info_map_print(stdout, m, l,
                   isatty(STDOUT_FILENO) && !getenv("NO_COLOR"));
    ret = 0;
out:
    if (svg_fd >= 0)
        close(svg_fd);
    free(m);
    return ret;
}

int cmd_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_IMAGE_LONGOPTS,
        { "json", no_argument, NULL, 'j' },
        { "map", optional_argument, NULL, 'm' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli c = { .cmd = "info" };
    struct cli_image_opts io;
    const char *svg = NULL;
    bool json = false, map = false;
    int opt;

    cli_image_opts_init(&io);
    if (info_take_svg(&argc, argv, &svg) < 0)
        return cli_usage(&c, "--map=svg needs a FILE to write");
    map = svg != NULL;
    optind = 1;
    opterr = 0;         /* cli_bad_option() says it in one line */
    while ((opt = getopt_long(argc, argv, "f:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'j': json = true; break;
        case 'm':
            if (optarg && strcmp(optarg, "text"))
                return cli_usage(&c, "--map=%s: expected --map, --map=text "
                                 "or --map=svg FILE", optarg);
            map = true;
            break;
        case 'v': c.verbose++; break;
        case 'h': fputs(info_usage, stdout); return 0;
        default:
            switch (cli_image_option(&c, &io, opt, optarg)) {
            case 1: break;
            case 0: return cli_bad_option(&c, argv);
            default: return DF_USAGE;
            }
        }
    }
    if (argc - optind != 1)
        return cli_usage(&c, "expected one IMAGE");
    if (json && map && !svg)
        return cli_usage(&c, "--map draws on the terminal: with --json, "
                         "use --map=svg FILE");

    struct df_error err;
    struct image *img = NULL;
    struct info_counts counts = { 0 };
    struct fs_layout *layout = NULL;
    int svg_fd = -1;
    bool created = false;
    df_error_init(&err);
    io.open.inspect = true;
    /* refuse an existing FILE before any work, and hold it */
    if (svg && info_map_svg_create(svg, &svg_fd, &err) < 0)
        goto fail;
    created = svg != NULL;
    if (image_open(argv[optind], &io.open, &img, &err) < 0 ||
        info_map(img, &counts, &err) < 0)
        goto fail;
    info_bitmaps(&c, img, &counts);
    layout = info_layout(&c, img);
    counts.layout = layout;
    if (json)
        report_info_json(stdout, img, &counts);
    else {
        print_human(img, &counts);
        if (layout)
            info_fs_print(stdout, layout);
    }
    if (map) {
        int fd = svg_fd;
        svg_fd = -1;            /* info_draw closes it */
        if (info_draw(img, layout, fd, svg, &err) < 0)
            goto fail;
    }
    fflush(stdout);
    qcow2_bitmap_list_free(counts.bitmaps, counts.nbitmaps);
    if (layout)
        fs_layout_release(layout);
    free(layout);
    image_close(img);
    return 0;
fail:
    cli_print_error(&c, &err);
    if (created) {
        if (svg_fd >= 0)
            close(svg_fd);
        unlink(svg);            /* ours: created with O_EXCL above */
    }
    qcow2_bitmap_list_free(counts.bitmaps, counts.nbitmaps);
    if (layout)
        fs_layout_release(layout);
    free(layout);
    image_close(img);
    return err.cat;
}
