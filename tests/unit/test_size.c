/* test_size.c: strict size parsing (util/size.h). */
#include <string.h>

#include "test.h"
#include "util/size.h"

static int ok(const char *s, uint64_t want)
{
    uint64_t v = 0;
    return size_parse(s, &v) == 0 && v == want;
}

static int bad(const char *s)
{
    uint64_t v;
    return size_parse(s, &v) < 0;
}

int main(void)
{
    CHECK(ok("4096", 4096));
    CHECK(ok("0", 0));
    CHECK(ok("4K", 4096));
    CHECK(ok("4k", 4096));
    CHECK(ok("4KiB", 4096));
    CHECK(ok("4KB", 4096));
    CHECK(ok("20M", 20u << 20));
    CHECK(ok("4G", 4ull << 30));
    CHECK(ok("4GiB", 4ull << 30));
    CHECK(ok("1.5G", 3ull << 29));
    CHECK(ok("2T", 2ull << 40));
    CHECK(ok("512b", 512));
    CHECK(ok("15E", 15ull << 60));
    CHECK(bad(""));
    CHECK(bad("-1"));
    CHECK(bad("4GB2"));
    CHECK(bad("0x10"));
    CHECK(bad("4 G"));
    CHECK(bad("G"));
    CHECK(bad("1.5"));
    CHECK(bad("1."));
    CHECK(bad("16E"));
    CHECK(bad("99999999999999999999"));
    CHECK(bad("4Gx"));
    CHECK(bad("4iB"));

    char buf[32];
    size_format(1536, buf, sizeof(buf));
    CHECK(!strcmp(buf, "1.5 KiB"));
    size_format(100, buf, sizeof(buf));
    CHECK(!strcmp(buf, "100 B"));
    return test_result("size");
}
