/*
 * size.c: byte counts (see size.h).
 */
#include "size.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int size_parse(const char *s, uint64_t *out)
{
    uint64_t whole = 0, frac = 0, frac_div = 1;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (whole > (UINT64_MAX - 9) / 10)
            return -1;
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (frac_div < 1000000000ull) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                frac_div *= 10;
            }
        }
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0': break;
    case 'b': case 'B': shift = 0; p++; break;
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    case 'p': case 'P': shift = 50; p++; break;
    case 'e': case 'E': shift = 60; p++; break;
    default: return -1;
    }
    if (shift && (!strcmp(p, "iB") || !strcmp(p, "ib") || !strcmp(p, "B")))
        p += strlen(p);
    if (*p)
        return -1;
    if (frac_div > 1 && !shift)
        return -1;              /* "1.5" bytes */
    if (shift && whole > (UINT64_MAX >> shift))
        return -1;
    uint64_t v = whole << shift;
    if (frac_div > 1) {
        unsigned __int128 f = ((unsigned __int128)frac << shift) / frac_div;
        if (v + (uint64_t)f < v)
            return -1;
        v += (uint64_t)f;
    }
    *out = v;
    return 0;
}

void size_format(uint64_t bytes, char *buf, size_t len)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB",
                                   "EiB" };
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}
