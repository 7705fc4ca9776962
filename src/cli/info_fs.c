/*
 * info_fs.c: `diskferry info`'s partitions and filesystems, and the map
 * of the disk (`info --map`, `--map=svg FILE`); info_fs.h.
 *
 * The map is built from two extent lists walked together in windows:
 * what the image stores (image_map) and what the filesystems use (the
 * layout's used map).  Within a window [off, end):
 *
 *   image  |####DATA####|..ZERO..|####DATA####|  hole  |
 *   used   |==used==|          |=====used=====|
 *   class   data     free free  data           hole
 *
 * a byte the used map does not name is free; the others take the
 * image's state.  Nothing is read but metadata, so a 4 TiB image costs
 * what its extents cost.
 */
#include "cli/info_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/overflow.h"
#include "util/size.h"

#define MAP_LIST_CAP 65536u

/* ---- the listing ---- */

static const char *region_fs(const struct fs_region *r)
{
    if (r->kind == FS_NONE)
        return NULL;
    return r->why.fs[0] ? r->why.fs : fs_kind_name(r->kind);
}

void info_fs_print(FILE *f, const struct fs_layout *l)
{
    char a[32], b[32];
    if (l->table_error[0])
        fprintf(f, "partition table: not read, the disk is copied whole: "
                   "%s\n", l->table_error);
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_region *r = &l->v[i];
        const char *fs = region_fs(r);
        size_format(r->part.len, a, sizeof(a));
        if (r->part.number)
            fprintf(f, "partition %u: offset %" PRIu64 ", size %s, %s, %s",
                    r->part.number, r->part.off, a, r->part.type,
                    fs ? fs : "-");
        else
            fprintf(f, "whole disk: offset %" PRIu64 ", size %s, %s",
                    r->part.off, a, fs ? fs : "-");
        if (fs && r->trusted) {
            size_format(r->why.used_bytes, b, sizeof(b));
            fprintf(f, ", used %s", b);
        } else if (fs) {
            fprintf(f, ", copied whole: %s", r->why.reason);
        }
        fputc('\n', f);
    }
    if (l->used) {
        size_format(l->free_bytes, a, sizeof(a));
        fprintf(f, "free in filesystems: %s (%" PRIu64 " bytes)\n", a,
                l->free_bytes);
    }
}

void info_fs_json(struct json *j, const struct fs_layout *l)
{
    if (l->table_error[0])
        json_str(j, "partition_table_error", l->table_error);
    json_arr(j, "partitions");
    for (unsigned i = 0; i < l->n; i++) {
        const struct fs_region *r = &l->v[i];
        const char *fs = region_fs(r);
        json_obj(j, NULL);
        json_u64(j, "number", r->part.number);
        json_str(j, "type", r->part.type);
        json_u64(j, "offset", r->part.off);
        json_u64(j, "size", r->part.len);
        json_str(j, "filesystem", fs);
        json_bool(j, "trusted", fs && r->trusted);
        if (fs && r->trusted)
            json_u64(j, "used_bytes", r->why.used_bytes);
        else if (fs)
            json_str(j, "copied_whole", r->why.reason);
        json_close_obj(j);
    }
    json_close_arr(j);
    if (l->used)
        json_u64(j, "fs_free_bytes", l->free_bytes);
}

/* ---- building the map ---- */

static void map_add(struct info_map *m, uint64_t off, uint64_t len,
                    enum info_map_class c)
{
    if (off >= m->size)
        return;
    len = min_u64(len, m->size - off);
    m->total[c] += len;
    while (len) {
        uint64_t i = off / m->cell;
        uint64_t n = min_u64(len, m->cell - off % m->cell);
        m->bytes[i][c] += n;
        off += n;
        len -= n;
    }
}

static enum info_map_class map_class(enum extent_state s)
{
    switch (s) {
    case EXT_ZERO: return MAP_ZERO;
    case EXT_HOLE: return MAP_HOLE;
    default: return MAP_DATA;
    }
}

static void map_init(struct info_map *m, uint64_t size, bool has_free)
{
    memset(m, 0, sizeof(*m));
    m->size = size;
    m->has_free = has_free;
    if (!size)
        return;
    uint64_t row = (uint64_t)INFO_MAP_COLS * INFO_MAP_CELL_MIN;
    uint64_t rows = (size - 1) / row + 1;
    m->rows = (unsigned)min_u64(rows, INFO_MAP_ROWS);
    uint64_t cell = (size - 1) / ((uint64_t)INFO_MAP_COLS * m->rows) + 1;
    /* a whole number of 64 KiB: round row labels */
    m->cell = ((cell - 1) / INFO_MAP_CELL_MIN + 1) * INFO_MAP_CELL_MIN;
    m->ncells = (unsigned)((size - 1) / m->cell + 1);
    m->rows = (m->ncells - 1) / INFO_MAP_COLS + 1;
}

/* The free ranges of [off, end): those the used list u does not name. */
static void map_add_free(struct info_map *m, const struct extent_list *u,
                         uint64_t off, uint64_t end)
{
    uint64_t at = off;
    for (size_t k = 0; k < u->n && at < end; k++) {
        uint64_t a = u->v[k].off, b = u->v[k].off + u->v[k].len;
        if (b <= at)
            continue;
        if (a > at)
            map_add(m, at, min_u64(a, end) - at, MAP_FREE);
        at = b;
    }
    if (at < end)
        map_add(m, at, end - at, MAP_FREE);
}

int info_map_build(struct image *img, const struct fs_layout *l,
                   struct info_map *m, struct df_error *err)
{
    struct used_map *um = l ? l->used : NULL;
    struct extent_list il, ul, xl;
    uint64_t off = 0;
    int ret = -1;

    map_init(m, img->size, um != NULL);
    extent_list_init(&il, MAP_LIST_CAP);
    extent_list_init(&ul, MAP_LIST_CAP);
    /* an intersection has at most as many pieces as both lists */
    extent_list_init(&xl, 2 * MAP_LIST_CAP + 1);
    while (off < img->size) {
        extent_list_clear(&il);
        if (image_map(img, off, img->size - off, &il, err) < 0)
            goto out;
        uint64_t end = min_u64(extent_list_end(&il, img->size), img->size);
        if (end <= off)
            break;              /* image.c guarantees progress */
        if (!um) {
            for (size_t k = 0; k < il.n; k++)
                map_add(m, il.v[k].off, il.v[k].len,
                        map_class(il.v[k].state));
            off = end;
            continue;
        }
        extent_list_clear(&ul);
        int rc = um->used(um, off, end - off, &ul, err);
        if (rc < 0)
            goto out;
        if (rc == 1 && extent_list_end(&ul, end) > off)
            end = min_u64(extent_list_end(&ul, end), end);
        rc = extent_list_intersect(&il, &ul, &xl, err);
        if (rc < 0)
            goto out;
        for (size_t k = 0; k < xl.n; k++) {
            uint64_t a = xl.v[k].off, b = xl.v[k].off + xl.v[k].len;
            if (a >= end)
                break;
            map_add(m, a, min_u64(b, end) - a, map_class(xl.v[k].state));
        }
        map_add_free(m, &ul, off, end);
        off = end;
    }
    ret = 0;
out:
    extent_list_release(&il);
    extent_list_release(&ul);
    extent_list_release(&xl);
    return ret;
}

/* ---- drawing it ---- */

static enum info_map_class map_cell_class(const struct info_map *m,
                                          unsigned i)
{
    enum info_map_class best = MAP_DATA;
    for (int c = 1; c < MAP_CLASSES; c++)
        if (m->bytes[i][c] > m->bytes[i][best])
            best = c;
    return best;
}

/* The partition whose start is in each cell: its mark, or 0. */
static void map_marks(const struct info_map *m, const struct fs_layout *l,
                      char *mark)
{
    memset(mark, 0, m->ncells);
    for (unsigned i = 0; l && i < l->n; i++) {
        unsigned no = l->v[i].part.number;
        uint64_t c = l->v[i].part.off / m->cell;
        if (!no || c >= m->ncells)
            continue;
        mark[c] = no < 10 ? (char)('0' + no)
                : no < 36 ? (char)('a' + no - 10) : '+';
    }
}

static const char map_char[MAP_CLASSES] = { '#', '-', '.', '.' };
static const char *const map_name[MAP_CLASSES] = {
    "data", "free", "zero", "hole"
};
static const char *const map_ansi[MAP_CLASSES] = {
    "\033[33m", "\033[32m", "\033[2m", "\033[2m"
};
static const char *const map_desc[MAP_CLASSES] = {
    "data", "free in a filesystem", "zero", "hole"
};

/* The order of the totals: the image's classes, then the free. */
static const enum info_map_class map_order[MAP_CLASSES] = {
    MAP_DATA, MAP_ZERO, MAP_HOLE, MAP_FREE
};

static double map_pct(const struct info_map *m, uint64_t n)
{
    return m->size ? 100.0 * (double)n / (double)m->size : 0.0;
}

void info_map_print(FILE *f, const struct info_map *m,
                    const struct fs_layout *l, bool colour)
{
    char a[32];
    char mark[INFO_MAP_COLS * INFO_MAP_ROWS];

    if (!m->ncells) {
        fprintf(f, "map: empty disk\n");
        return;
    }
    map_marks(m, l, mark);
    size_format(m->cell, a, sizeof(a));
    fprintf(f, "map: %u cells of %s, each showing what most of it is\n",
            m->ncells, a);
    for (unsigned r = 0; r < m->rows; r++) {
        const char *cur = NULL;
        size_format((uint64_t)r * INFO_MAP_COLS * m->cell, a, sizeof(a));
        fprintf(f, "%10s |", a);
        for (unsigned k = 0; k < INFO_MAP_COLS; k++) {
            unsigned i = r * INFO_MAP_COLS + k;
            if (i >= m->ncells)
                break;
            enum info_map_class c = map_cell_class(m, i);
            const char *want = mark[i] ? "\033[1;7m" : map_ansi[c];
            if (colour && want != cur) {
                fputs("\033[0m", f);
                fputs(want, f);
                cur = want;
            }
            fputc(mark[i] ? mark[i] : map_char[c], f);
        }
        if (colour)
            fputs("\033[0m", f);
        fputs("|\n", f);
    }
    fprintf(f, "legend: %s#%s data  %s.%s zero or hole",
            colour ? map_ansi[MAP_DATA] : "", colour ? "\033[0m" : "",
            colour ? map_ansi[MAP_ZERO] : "", colour ? "\033[0m" : "");
    if (m->has_free)
        fprintf(f, "  %s-%s free in a filesystem",
                colour ? map_ansi[MAP_FREE] : "", colour ? "\033[0m" : "");
    if (l && l->n && l->v[0].part.number)
        fprintf(f, "  1-9 partition starts");
    fputc('\n', f);
    for (int k = 0; k < MAP_CLASSES; k++) {
        enum info_map_class c = map_order[k];
        if (c == MAP_FREE && !m->has_free)
            continue;
        size_format(m->total[c], a, sizeof(a));
        fprintf(f, "  %-5s %10s %5.1f%%  (%" PRIu64 " bytes)\n", map_name[c],
                a, map_pct(m, m->total[c]), m->total[c]);
    }
    size_format(m->size, a, sizeof(a));
    fprintf(f, "  %-5s %10s %5.1f%%  (%" PRIu64 " bytes)\n", "total", a,
            100.0, m->size);
}

/* ---- SVG ---- */

int info_map_svg_create(const char *path, int *fd, struct df_error *err)
{
    *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY,
               0666);
    if (*fd >= 0)
        return 0;
    if (errno == EEXIST)
        return df_refuse(err, path, "refusing to overwrite: it exists");
    return df_io(err, path, errno, "cannot create the map");
}

/* Text in XML: markup escaped, and only printable ASCII (a file name
 * may hold any byte; XML 1.0 refuses control characters). */
static void svg_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p < 0x20 || *p >= 0x7f ? '?' : *p, f);
        }
    }
}

#define SVG_LEFT 90u
#define SVG_TOP 40u
#define SVG_CW 10u
#define SVG_CH 16u

static const char *const svg_fill[MAP_CLASSES] = {
    "#e08a1e", "#8fd18f", "#d8d8d8", "#f0f0f0"
};

static void svg_picture(FILE *f, const char *title,
                        const struct info_map *m, const struct fs_layout *l)
{
    char a[32];
    char mark[INFO_MAP_COLS * INFO_MAP_ROWS];
    unsigned w = SVG_LEFT + INFO_MAP_COLS * SVG_CW + 20;
    unsigned gy = SVG_TOP + m->rows * SVG_CH;
    unsigned h = gy + 40 + (MAP_CLASSES + 2) * 18 + 20 +
                 (l ? l->n : 0) * 18;

    map_marks(m, l, mark);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" "
               "height=\"%u\" viewBox=\"0 0 %u %u\" font-family=\"monospace\""
               " font-size=\"12\">\n", w, h, w, h);
    fprintf(f, "<title>diskferry map: ");
    svg_text(f, title);
    fprintf(f, "</title>\n<rect width=\"%u\" height=\"%u\" fill=\"white\"/>\n"
               "<text x=\"10\" y=\"20\">", w, h);
    svg_text(f, title);
    size_format(m->cell, a, sizeof(a));
    fprintf(f, ": %u cells of %s</text>\n", m->ncells, a);
    /* rows: one rect per run of cells of one class */
    for (unsigned r = 0; r < m->rows; r++) {
        unsigned y = SVG_TOP + r * SVG_CH;
        size_format((uint64_t)r * INFO_MAP_COLS * m->cell, a, sizeof(a));
        fprintf(f, "<text x=\"%u\" y=\"%u\" text-anchor=\"end\">%s</text>\n",
                SVG_LEFT - 6, y + SVG_CH - 4, a);
        unsigned k = 0, n = m->ncells - r * INFO_MAP_COLS;
        n = n < INFO_MAP_COLS ? n : INFO_MAP_COLS;
        while (k < n) {
            enum info_map_class c = map_cell_class(m, r * INFO_MAP_COLS + k);
            unsigned e = k + 1;
            while (e < n && map_cell_class(m, r * INFO_MAP_COLS + e) == c)
                e++;
            fprintf(f, "<rect class=\"%s\" x=\"%u\" y=\"%u\" width=\"%u\" "
                       "height=\"%u\" fill=\"%s\"/>\n", map_name[c],
                    SVG_LEFT + k * SVG_CW, y, (e - k) * SVG_CW, SVG_CH,
                    svg_fill[c]);
            k = e;
        }
    }
    fprintf(f, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" "
               "fill=\"none\" stroke=\"#444\"/>\n", SVG_LEFT, SVG_TOP,
            INFO_MAP_COLS * SVG_CW, m->rows * SVG_CH);
    /* partition starts: a line and the number */
    for (unsigned i = 0; i < m->ncells; i++) {
        if (!mark[i])
            continue;
        unsigned x = SVG_LEFT + (i % INFO_MAP_COLS) * SVG_CW;
        unsigned y = SVG_TOP + (i / INFO_MAP_COLS) * SVG_CH;
        fprintf(f, "<line x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\" "
                   "stroke=\"#b00000\" stroke-width=\"2\"/>\n"
                   "<text class=\"partition\" x=\"%u\" y=\"%u\" "
                   "font-size=\"10\" fill=\"#b00000\">%c</text>\n",
                x, y, x, y + SVG_CH, x + 2, y + SVG_CH - 4, mark[i]);
    }
    /* legend and totals */
    unsigned y = gy + 30;
    fprintf(f, "<g class=\"legend\">\n");
    for (int k = 0; k < MAP_CLASSES; k++, y += 18) {
        enum info_map_class c = map_order[k];
        size_format(m->total[c], a, sizeof(a));
        fprintf(f, "<rect x=\"10\" y=\"%u\" width=\"12\" height=\"12\" "
                   "fill=\"%s\" stroke=\"#444\"/>\n"
                   "<text x=\"30\" y=\"%u\">%-20s %10s %5.1f%% (%" PRIu64
                   " bytes)</text>\n", y - 10, svg_fill[c], y,
                map_desc[c], a, map_pct(m, m->total[c]), m->total[c]);
    }
    size_format(m->size, a, sizeof(a));
    fprintf(f, "<text x=\"30\" y=\"%u\">%-20s %10s 100.0%% (%" PRIu64
               " bytes)</text>\n</g>\n", y, "total", a, m->size);
    y += 28;
    for (unsigned i = 0; l && i < l->n; i++, y += 18) {
        const struct fs_region *r = &l->v[i];
        const char *fs = region_fs(r);
        size_format(r->part.len, a, sizeof(a));
        fprintf(f, "<text class=\"partition\" x=\"10\" y=\"%u\">", y);
        if (r->part.number)
            fprintf(f, "%u: ", r->part.number);
        else
            fprintf(f, "whole disk: ");
        fprintf(f, "offset %" PRIu64 ", size %s, ", r->part.off, a);
        svg_text(f, r->part.type);
        fprintf(f, ", ");
        svg_text(f, fs ? fs : "-");
        if (fs && !r->trusted) {
            fprintf(f, ", copied whole: ");
            svg_text(f, r->why.reason);
        }
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
}

int info_map_svg_write(int fd, const char *path, const char *title,
                       const struct info_map *m, const struct fs_layout *l,
                       struct df_error *err)
{
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        return df_io(err, path, e, "cannot write the map");
    }
    svg_picture(f, title, m, l);
    int bad = ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad)
        return df_io(err, path, e ? e : EIO, "cannot write the map");
    return 0;
}
