/*
 * guid.h: 16-byte GUIDs/UUIDs as the image formats store them, and
 * their 8-4-4-4-12 text.
 *
 * Two byte orders are in use:
 *   mixed (Microsoft GUID, IPRT RTUUID: VHDX, VDI)
 *     bytes 0-3 a little-endian u32, 4-5 and 6-7 little-endian u16s,
 *     8-15 as stored; the text prints the u32 and u16s as numbers, so
 *     disk 33 22 11 00 55 44 77 66 88 .. reads "00112233-4455-6677-88..".
 *   plain (RFC 4122 on the wire: VHD)
 *     the text is the bytes in stored order.
 * Text is lowercase on output; parsing takes either case and optional
 * braces ("{...}", as VHDX parent locators write it).
 */
#ifndef DF_GUID_H
#define DF_GUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUID_LEN 16
#define GUID_STR_LEN 37         /* 36 characters and the NUL */

/* Initialiser of the mixed-order bytes of the GUID written
 * {a-b-c-d0d1-d2d3d4d5d6d7}, for constant tables. */
#define GUID_MIXED(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                \
    { (a) & 0xff, ((a) >> 8) & 0xff, ((a) >> 16) & 0xff, (a) >> 24,        \
      (b) & 0xff, (b) >> 8, (c) & 0xff, (c) >> 8,                          \
      d0, d1, d2, d3, d4, d5, d6, d7 }

/* The value of hex digit c, or -1. */
int hex_digit(char c);

bool guid_is_zero(const uint8_t g[GUID_LEN]);
/* Text of g into buf (GUID_STR_LEN bytes for all of it). */
void guid_format_mixed(const uint8_t g[GUID_LEN], char *buf, size_t len);
void guid_format_plain(const uint8_t g[GUID_LEN], char *buf, size_t len);
/* Parse s, 8-4-4-4-12 hex digits with optional braces, into g; false
 * (g untouched) when s is anything else. */
bool guid_parse_mixed(const char *s, uint8_t g[GUID_LEN]);
bool guid_parse_plain(const char *s, uint8_t g[GUID_LEN]);

#endif
