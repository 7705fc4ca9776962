/*
 * test_crc32c.c: CRC-32C against published vectors (RFC 3720 B.4, the
 * "123456789" check value) and split-buffer continuation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"

static int failures;

static void expect(const char *what, uint32_t got, uint32_t want)
{
    if (got != want) {
        fprintf(stderr, "%s: got 0x%08x, want 0x%08x\n", what, got, want);
        failures++;
    }
}

int main(void)
{
    uint8_t buf[32];

    expect("check string", crc32c(0, "123456789", 9), 0xE3069283u);
    expect("empty", crc32c(0, "", 0), 0);
    memset(buf, 0, sizeof(buf));
    expect("32 zeros", crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    expect("32 ones", crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    expect("32 ascending", crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    expect("32 descending", crc32c(0, buf, 32), 0x113FDB5Cu);

    /* Any split gives the one-shot value (the 8-byte loop and the tail). */
    uint8_t big[1031];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 131 + 7);
    uint32_t whole = crc32c(0, big, sizeof(big));
    for (size_t cut = 0; cut <= sizeof(big); cut++) {
        uint32_t c = crc32c(crc32c(0, big, cut), big + cut,
                            sizeof(big) - cut);
        if (c != whole) {
            expect("split", c, whole);
            break;
        }
    }
    /* An unaligned start gives the same value as an aligned copy. */
    uint8_t *copy = malloc(sizeof(big) + 1);
    if (!copy)
        return 1;
    memcpy(copy + 1, big, sizeof(big));
    expect("unaligned", crc32c(0, copy + 1, sizeof(big)), whole);
    free(copy);

    if (failures)
        return 1;
    printf("crc32c: ok\n");
    return 0;
}
