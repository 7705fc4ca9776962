/*
 * overflow.h: checked arithmetic on sizes and offsets read from hostile
 * input.  Each returns true when the result overflowed (and then *r is
 * unspecified), as GCC's and clang's builtins do.
 */
#ifndef DF_OVERFLOW_H
#define DF_OVERFLOW_H

#include <stdbool.h>
#include <stdint.h>

static inline bool ovf_add(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}
static inline bool ovf_mul(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}
/* off + len <= limit, without overflow. */
static inline bool range_within(uint64_t off, uint64_t len, uint64_t limit)
{
    return len <= limit && off <= limit - len;
}
/* [a, a+alen) and [b, b+blen) share a byte (no overflow either way). */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
                                  uint64_t blen)
{
    return alen && blen && (a >= b ? a - b < blen : b - a < alen);
}
static inline uint64_t div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}
static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}
static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}
static inline bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

#endif
