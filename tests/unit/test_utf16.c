/* test_utf16.c: UTF-16 to UTF-8 (util/utf16.h). */
#include <string.h>

#include "test.h"
#include "util/utf16.h"

int main(void)
{
    char out[64];
    /* "a\" in LE, "é" (U+00E9), "€" (U+20AC), U+1F600 as a pair. */
    static const uint8_t le[] = { 'a', 0, '\\', 0, 0xe9, 0, 0xac, 0x20,
                                  0x3d, 0xd8, 0x00, 0xde };
    CHECK(utf16_to_utf8(le, sizeof(le), 0, out, sizeof(out)) == 11);
    CHECK(!strcmp(out, "a\\\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
    static const uint8_t be[] = { 0, 'x', 0, 'y', 0, 0, 0, 'z' };
    CHECK(utf16_to_utf8(be, sizeof(be), UTF16_BIG_ENDIAN | UTF16_STOP_AT_NUL,
                        out, sizeof(out)) == 2);
    CHECK(!strcmp(out, "xy"));
    CHECK(utf16_to_utf8(be, sizeof(be), UTF16_BIG_ENDIAN, out,
                        sizeof(out)) == -1);          /* NUL not allowed */
    CHECK(utf16_to_utf8(le, 3, 0, out, sizeof(out)) == -1);   /* odd */
    static const uint8_t lone[] = { 0x00, 0xdc };
    CHECK(utf16_to_utf8(lone, 2, 0, out, sizeof(out)) == -1);
    static const uint8_t cut[] = { 0x3d, 0xd8 };
    CHECK(utf16_to_utf8(cut, 2, 0, out, sizeof(out)) == -1);
    static const uint8_t bad[] = { 0x3d, 0xd8, 'a', 0 };
    CHECK(utf16_to_utf8(bad, 4, 0, out, sizeof(out)) == -1);
    CHECK(utf16_to_utf8(le, sizeof(le), 0, out, 11) == -1);   /* no room */
    CHECK(utf16_to_utf8(le, 0, 0, out, sizeof(out)) == 0 && !out[0]);
    return test_result("utf16");
}
