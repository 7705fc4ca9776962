/*
 * foreign.h: containers diskferry recognises but does not read.
 *
 * A file carrying one of these signatures is refused (exit 5, naming the
 * format) instead of being copied as if it were a raw disk; `-f raw`
 * copies its bytes on purpose.  Content inside a raw disk (a partition
 * table, LUKS, a filesystem) is not a container and is not listed here.
 */
#ifndef DF_FOREIGN_H
#define DF_FOREIGN_H

#include "image/image.h"

/* The name of the unread container p holds, or NULL. */
const char *foreign_format(const struct image_probe *p);

#endif
