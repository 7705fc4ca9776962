/*
 * zero.h: is a buffer all zero bytes?  At memory speed: AVX2 where the
 * CPU has it (chosen once at run time), SSE2 otherwise, and a plain
 * word loop kept as the reference the tests compare against.
 */
#ifndef DF_ZERO_H
#define DF_ZERO_H

#include <stdbool.h>
#include <stddef.h>

bool zero_is_zero(const void *buf, size_t len);
/* The reference implementation (tests, benchmarks). */
bool zero_is_zero_plain(const void *buf, size_t len);
/* Which implementation zero_is_zero() uses: "avx2", "sse2". */
const char *zero_impl_name(void);

#endif
