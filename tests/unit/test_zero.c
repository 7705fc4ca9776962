/*
 * test_zero.c: zero detection against the plain loop: random lengths
 * and alignments, and a single non-zero byte at every position of a
 * block (the vector code's head, body and tail must all see it).
 */
#include <stdint.h>
#include <string.h>

#include "test.h"
#include "util/zero.h"

int main(void)
{
    enum { N = 64 * 1024 + 128 };
    uint8_t *buf = aligned_alloc(64, N);
    uint64_t seed = 88172645463325252ull;

    memset(buf, 0, N);
    CHECK(zero_is_zero(buf, 0));
    CHECK(zero_is_zero(buf, N));
    /* One non-zero byte at every position of a 4 KiB block, for several
     * misalignments of the block start. */
    for (size_t align = 0; align < 64; align += 7) {
        uint8_t *b = buf + align;
        size_t len = 4096;
        for (size_t pos = 0; pos < len; pos++) {
            b[pos] = (uint8_t)(1 + pos % 255);
            CHECK(!zero_is_zero(b, len));
            CHECK(zero_is_zero(b, pos));         /* before it: zero */
            b[pos] = 0;
        }
        CHECK(zero_is_zero(b, len));
    }
    /* Random lengths, offsets and contents against the plain loop. */
    for (int i = 0; i < 20000; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t off = seed % 97;
        size_t len = (seed >> 8) % (N - off);
        memset(buf, 0, N);
        if (seed & 1)
            buf[off + ((seed >> 24) % (len + 1))] = (uint8_t)(seed >> 40) | 1;
        CHECK(zero_is_zero(buf + off, len) ==
              zero_is_zero_plain(buf + off, len));
    }
    printf("zero detection: %s\n", zero_impl_name());
    free(buf);
    return test_result("zero");
}
