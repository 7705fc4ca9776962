/* guid.c: GUID text in the two byte orders (guid.h). */
#include "guid.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool guid_is_zero(const uint8_t g[GUID_LEN])
{
    for (int i = 0; i < GUID_LEN; i++)
        if (g[i])
            return false;
    return true;
}

void guid_format_mixed(const uint8_t g[GUID_LEN], char *buf, size_t len)
{
    snprintf(buf, len,
             "%08" PRIx32 "-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             get_le32(g), get_le16(g + 4), get_le16(g + 6), g[8], g[9],
             g[10], g[11], g[12], g[13], g[14], g[15]);
}

void guid_format_plain(const uint8_t g[GUID_LEN], char *buf, size_t len)
{
    snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", g[0], g[1], g[2], g[3], g[4], g[5],
             g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14],
             g[15]);
}

bool guid_parse_plain(const char *s, uint8_t g[GUID_LEN])
{
    static const int groups[5] = { 8, 4, 4, 4, 12 };
    uint8_t raw[GUID_LEN];
    size_t n = strlen(s), k = 0;

    if (n && s[0] == '{') {
        if (n < 2 || s[n - 1] != '}')
            return false;
        s++;
        n -= 2;
    }
    if (n != 36)
        return false;
    for (int gi = 0; gi < 5; gi++) {
        for (int i = 0; i < groups[gi]; i += 2) {
            int hi = hex_digit(*s++), lo = hex_digit(*s++);
            if (hi < 0 || lo < 0)
                return false;
            raw[k++] = (uint8_t)(hi << 4 | lo);
        }
        if (gi < 4 && *s++ != '-')
            return false;
    }
    memcpy(g, raw, GUID_LEN);
    return true;
}

bool guid_parse_mixed(const char *s, uint8_t g[GUID_LEN])
{
    uint8_t raw[GUID_LEN];
    if (!guid_parse_plain(s, raw))
        return false;
    /* Text is big endian throughout; disk has the first three LE. */
    uint8_t d[GUID_LEN] = { raw[3], raw[2], raw[1], raw[0], raw[5], raw[4],
                            raw[7], raw[6] };
    memcpy(d + 8, raw + 8, 8);
    memcpy(g, d, GUID_LEN);
    return true;
}
