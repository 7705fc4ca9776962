/*
 * utf16.c: UTF-16 to UTF-8 (see utf16.h).
 */
#include "utf16.h"

#include <string.h>

#include "bytes.h"

static size_t utf8_encode(uint32_t c, uint8_t *b)
{
    if (c < 0x80) {
        b[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        b[0] = (uint8_t)(0xc0 | c >> 6);
        b[1] = (uint8_t)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        b[0] = (uint8_t)(0xe0 | c >> 12);
        b[1] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
        b[2] = (uint8_t)(0x80 | (c & 0x3f));
        return 3;
    }
    b[0] = (uint8_t)(0xf0 | c >> 18);
    b[1] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
    b[2] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
    b[3] = (uint8_t)(0x80 | (c & 0x3f));
    return 4;
}

long utf16_to_utf8(const uint8_t *in, size_t len, unsigned flags, char *out,
                   size_t olen)
{
    bool be = flags & UTF16_BIG_ENDIAN;
    size_t o = 0;

    if (!olen)
        return -1;
    if (len % 2 && !(flags & UTF16_STOP_AT_NUL))
        return -1;
    for (size_t i = 0; i + 1 < len; i += 2) {
        uint32_t c = be ? get_be16(in + i) : get_le16(in + i);
        if (c == 0) {
            if (flags & UTF16_STOP_AT_NUL)
                break;
            return -1;
        }
        if (c >= 0xdc00 && c <= 0xdfff)
            return -1;
        if (c >= 0xd800 && c <= 0xdbff) {
            if (i + 3 >= len)
                return -1;
            uint32_t lo = be ? get_be16(in + i + 2) : get_le16(in + i + 2);
            if (lo < 0xdc00 || lo > 0xdfff)
                return -1;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            i += 2;
        }
        uint8_t u[4];
        size_t k = utf8_encode(c, u);
        if (o + k >= olen)
            return -1;
        memcpy(out + o, u, k);
        o += k;
    }
    out[o] = '\0';
    return (long)o;
}
