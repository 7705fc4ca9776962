/*
 * info_fs.h: what `diskferry info` shows of a disk's partitions and
 * filesystems (the listing, its --json array) and the map of the disk
 * that `info --map` draws on the terminal or writes as SVG.
 *
 * The map is a grid of at most INFO_MAP_COLS x INFO_MAP_ROWS cells of
 * at least INFO_MAP_CELL_MIN bytes each.  Every byte of the disk falls
 * in exactly one class: free (in a filesystem that can be trusted, per
 * the layout's used map, whatever the image stores there), else data,
 * zero or hole as the image maps it.  The class totals therefore add up
 * to the disk size.  Building it walks extent lists in windows, never
 * reads data: its cost is the number of extents plus the cells, and
 * its memory the grid, whatever the disk's size.
 */
#ifndef DF_INFO_FS_H
#define DF_INFO_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/report.h"
#include "image/image.h"
#include "track/fs.h"
#include "util/error.h"

/* The regions of l, one line each, after info's other lines. */
void info_fs_print(FILE *f, const struct fs_layout *l);
/* "partitions": [...] (and "partition_table_error", "fs_free_bytes")
 * into the open top-level object of j. */
void info_fs_json(struct json *j, const struct fs_layout *l);

/* Classes of bytes; on a tie a cell shows the earlier one. */
enum info_map_class { MAP_DATA, MAP_FREE, MAP_ZERO, MAP_HOLE, MAP_CLASSES };

#define INFO_MAP_COLS 64u
#define INFO_MAP_ROWS 16u
#define INFO_MAP_CELL_MIN (64u * 1024)

struct info_map {
    uint64_t size;              /* the disk's */
    uint64_t cell;              /* bytes per cell (the last may be short) */
    unsigned ncells, rows;
    uint64_t bytes[INFO_MAP_COLS * INFO_MAP_ROWS][MAP_CLASSES];
    uint64_t total[MAP_CLASSES];
    bool has_free;              /* some filesystem could be trusted */
};

/* Fill m (caller-allocated) for img; l may be NULL (no layout read:
 * nothing is free).  0, or -1 with err. */
int info_map_build(struct image *img, const struct fs_layout *l,
                   struct info_map *m, struct df_error *err);
/* The grid, a legend and the totals for an 80-column terminal; colour
 * escapes only when `colour`. */
void info_map_print(FILE *f, const struct info_map *m,
                    const struct fs_layout *l, bool colour);
/* The same picture as an SVG file at path, which must not exist:
 * DF_REFUSED naming it when it does; DF_IO. */
int info_map_svg_create(const char *path, int *fd, struct df_error *err);
int info_map_svg_write(int fd, const char *path, const char *title,
                       const struct info_map *m, const struct fs_layout *l,
                       struct df_error *err);

#endif
