/*
 * foreign.c: recognising image containers diskferry does not read.
 *
 *   QED        "QED\0" at 0 (qemu docs/interop/qed_spec.txt)
 *   Parallels  "WithoutFreeSpace" or "WithouFreSpacExt" at 0
 *              (qemu docs/interop/parallels.txt)
 *   Bochs      "Bochs Virtual HD Image" at 0 (qemu block/bochs.c)
 *   cloop      "#!/bin/sh" then a line with "#V2.0 Format" in the
 *              first 128 bytes (qemu block/cloop.c)
 *   DMG        "koly" trailer in the last 512 bytes, 512 bytes long,
 *              version 4 (Apple UDIF)
 */
#include "image/foreign.h"

#include <string.h>

#include "util/bytes.h"

static bool foreign_head_has(const struct image_probe *p, const char *magic)
{
    size_t n = strlen(magic);
    return p->head_len >= n && !memcmp(p->head, magic, n);
}

static bool foreign_is_cloop(const struct image_probe *p)
{
    if (!foreign_head_has(p, "#!/bin/sh"))
        return false;
    size_t n = p->head_len < 128 ? p->head_len : 128;
    for (size_t i = 0; i + 12 <= n; i++)
        if (!memcmp(p->head + i, "#V2.0 Format", 12))
            return true;
    return false;
}

static bool foreign_is_dmg(const struct image_probe *p)
{
    if (p->tail_len < 512 || p->file_size < 512)
        return false;
    const uint8_t *k = p->tail + p->tail_len - 512;
    return !memcmp(k, "koly", 4) && get_be32(k + 4) == 4 &&
           get_be32(k + 8) == 512;
}

const char *foreign_format(const struct image_probe *p)
{
    if (p->head_len >= 4 && !memcmp(p->head, "QED\0", 4))
        return "qed";
    if (foreign_head_has(p, "WithoutFreeSpace") ||
        foreign_head_has(p, "WithouFreSpacExt"))
        return "parallels";
    if (foreign_head_has(p, "Bochs Virtual HD Image"))
        return "bochs";
    if (foreign_is_cloop(p))
        return "cloop";
    if (foreign_is_dmg(p))
        return "dmg";
    return NULL;
}
