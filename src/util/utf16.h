/*
 * utf16.h: UTF-16 (as VHD and VHDX store parent paths) to UTF-8.
 */
#ifndef DF_UTF16_H
#define DF_UTF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum utf16_flags {
    UTF16_BIG_ENDIAN = 1u << 0, /* else little endian */
    UTF16_STOP_AT_NUL = 1u << 1,/* a NUL ends the string (else: invalid) */
};

/*
 * Decode len bytes of UTF-16 into NUL-terminated UTF-8 in out (olen
 * bytes).  Returns the UTF-8 length, or -1 for an odd length (without
 * UTF16_STOP_AT_NUL), a lone or reversed surrogate, a NUL where none is
 * allowed, or no room in out.
 */
long utf16_to_utf8(const uint8_t *in, size_t len, unsigned flags, char *out,
                   size_t olen);

#endif
