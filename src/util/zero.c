/*
 * zero.c: zero detection (see zero.h).
 *
 * The hot loop ORs 256 bytes into two vector accumulators and tests
 * them once per iteration: random data leaves after the first 256
 * bytes, zero data streams at load bandwidth.  Head and tail bytes that
 * do not fill a vector go through the word loop.
 */
#include "zero.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

bool zero_is_zero_plain(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len && ((uintptr_t)p & 7)) {
        if (*p)
            return false;
        p++;
        len--;
    }
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w)
            return false;
    }
    while (len--)
        if (*p++)
            return false;
    return true;
}

__attribute__((target("avx2")))
static bool zero_is_zero_avx2(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    /* Align to 32 so every load in the loop is aligned. */
    size_t head = (32 - ((uintptr_t)p & 31)) & 31;
    if (head > len)
        head = len;
    if (!zero_is_zero_plain(p, head))
        return false;
    p += head;
    len -= head;
    while (len >= 256) {
        const __m256i *v = (const __m256i *)p;
        __m256i a = _mm256_or_si256(_mm256_load_si256(v + 0),
                                    _mm256_load_si256(v + 1));
        __m256i b = _mm256_or_si256(_mm256_load_si256(v + 2),
                                    _mm256_load_si256(v + 3));
        __m256i c = _mm256_or_si256(_mm256_load_si256(v + 4),
                                    _mm256_load_si256(v + 5));
        __m256i d = _mm256_or_si256(_mm256_load_si256(v + 6),
                                    _mm256_load_si256(v + 7));
        a = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        if (!_mm256_testz_si256(a, a))
            return false;
        p += 256;
        len -= 256;
    }
    while (len >= 32) {
        __m256i a = _mm256_load_si256((const __m256i *)p);
        if (!_mm256_testz_si256(a, a))
            return false;
        p += 32;
        len -= 32;
    }
    return zero_is_zero_plain(p, len);
}

static bool zero_is_zero_sse2(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t head = (16 - ((uintptr_t)p & 15)) & 15;
    if (head > len)
        head = len;
    if (!zero_is_zero_plain(p, head))
        return false;
    p += head;
    len -= head;
    const __m128i z = _mm_setzero_si128();
    while (len >= 128) {
        const __m128i *v = (const __m128i *)p;
        __m128i a = _mm_or_si128(_mm_or_si128(_mm_load_si128(v + 0),
                                              _mm_load_si128(v + 1)),
                                 _mm_or_si128(_mm_load_si128(v + 2),
                                              _mm_load_si128(v + 3)));
        __m128i b = _mm_or_si128(_mm_or_si128(_mm_load_si128(v + 4),
                                              _mm_load_si128(v + 5)),
                                 _mm_or_si128(_mm_load_si128(v + 6),
                                              _mm_load_si128(v + 7)));
        a = _mm_or_si128(a, b);
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(a, z)) != 0xffff)
            return false;
        p += 128;
        len -= 128;
    }
    return zero_is_zero_plain(p, len);
}

static bool (*zero_impl)(const void *, size_t);

__attribute__((constructor)) static void zero_choose(void)
{
    __builtin_cpu_init();
    zero_impl = __builtin_cpu_supports("avx2") ? zero_is_zero_avx2
                                               : zero_is_zero_sse2;
}

bool zero_is_zero(const void *buf, size_t len)
{
    return zero_impl(buf, len);     /* set before main() runs */
}

const char *zero_impl_name(void)
{
    return zero_impl == zero_is_zero_avx2 ? "avx2" : "sse2";
}
