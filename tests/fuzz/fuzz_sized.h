/*
 * fuzz_sized.h: a file described by a fuzz input, for targets whose
 * files are mostly zeros (fuzz_lvm_cow, fuzz_parts):
 *
 *   u32le    the file's size in bytes (mod max + 1)
 *   records  u32le offset (mod max), u16le length, then that many
 *            bytes, until the input ends; clipped to the size
 *
 * and the rest of the file is zeros.
 */
#ifndef DF_FUZZ_SIZED_H
#define DF_FUZZ_SIZED_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"

/* The file the input describes (*len bytes, caller frees), or NULL. */
static inline uint8_t *fuzz_sized_file(const uint8_t *data, size_t size,
                                       size_t max, size_t *len)
{
    if (size < 4)
        return NULL;
    size_t flen = get_le32(data) % (max + 1), pos = 4;
    uint8_t *buf = calloc(1, flen ? flen : 1);
    if (!buf)
        return NULL;
    while (pos + 6 <= size) {
        size_t off = get_le32(data + pos) % max;
        size_t n = get_le16(data + pos + 4);
        pos += 6;
        n = n < size - pos ? n : size - pos;
        if (off < flen)
            memcpy(buf + off, data + pos, n < flen - off ? n : flen - off);
        pos += n;
    }
    *len = flen;
    return buf;
}

#endif
