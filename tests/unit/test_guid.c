/* test_guid.c: GUID text in both byte orders (util/guid.h). */
#include <string.h>

#include "test.h"
#include "util/guid.h"

/* The VHDX BAT region GUID, as the spec writes it and as it lies on
 * disk (first three groups little endian). */
static const char bat_text[] = "2dc27766-f623-4200-9d64-115e9bfd4a08";
static const uint8_t bat_disk[16] = {
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
    0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
};
static const uint8_t bat_macro[16] = GUID_MIXED(0x2DC27766u, 0xF623,
    0x4200, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);

static int parses_mixed(const char *s, const uint8_t *want)
{
    uint8_t g[16];
    return guid_parse_mixed(s, g) && !memcmp(g, want, 16);
}

static int refused(const char *s)
{
    uint8_t g[16], before[16];
    memset(g, 0xa5, sizeof(g));
    memcpy(before, g, sizeof(g));
    return !guid_parse_mixed(s, g) && !guid_parse_plain(s, g) &&
           !memcmp(g, before, sizeof(g));
}

int main(void)
{
    char buf[GUID_STR_LEN];
    uint8_t g[16];

    CHECK(!memcmp(bat_macro, bat_disk, 16));

    /* mixed order: format and parse are inverse */
    guid_format_mixed(bat_disk, buf, sizeof(buf));
    CHECK(!strcmp(buf, bat_text));
    CHECK(parses_mixed(bat_text, bat_disk));
    CHECK(parses_mixed("{2DC27766-F623-4200-9D64-115E9BFD4A08}", bat_disk));

    /* plain order: the text is the bytes */
    guid_format_plain(bat_disk, buf, sizeof(buf));
    CHECK(!strcmp(buf, "6677c22d-23f6-0042-9d64-115e9bfd4a08"));
    CHECK(guid_parse_plain(buf, g) && !memcmp(g, bat_disk, 16));

    /* every byte value survives both round trips */
    uint8_t all[16];
    for (int i = 0; i < 16; i++)
        all[i] = (uint8_t)(i * 17 + 3);
    guid_format_mixed(all, buf, sizeof(buf));
    CHECK(strlen(buf) == 36);
    CHECK(parses_mixed(buf, all));
    guid_format_plain(all, buf, sizeof(buf));
    CHECK(guid_parse_plain(buf, g) && !memcmp(g, all, 16));

    /* a short buffer is cut, not overrun */
    char small[9];
    guid_format_mixed(bat_disk, small, sizeof(small));
    CHECK(!strcmp(small, "2dc27766"));

    CHECK(refused(""));
    CHECK(refused("{}"));
    CHECK(refused("{2dc27766-f623-4200-9d64-115e9bfd4a08"));
    CHECK(refused("2dc27766-f623-4200-9d64-115e9bfd4a08}"));
    CHECK(refused("2dc27766-f623-4200-9d64-115e9bfd4a0"));
    CHECK(refused("2dc27766-f623-4200-9d64-115e9bfd4a088"));
    CHECK(refused("2dc27766f623-4200-9d64-115e9bfd4a08-"));
    CHECK(refused("2dc27766-f623-4200-9d64-115e9bfd4a0g"));
    CHECK(refused("2dc27766-f623-4200-9d64 115e9bfd4a08"));

    CHECK(guid_is_zero((const uint8_t[16]){0}));
    CHECK(!guid_is_zero(bat_disk));

    CHECK(hex_digit('0') == 0 && hex_digit('9') == 9);
    CHECK(hex_digit('a') == 10 && hex_digit('F') == 15);
    CHECK(hex_digit('g') == -1 && hex_digit('/') == -1 &&
          hex_digit(':') == -1 && hex_digit('@') == -1);

    return test_result("guid");
}
