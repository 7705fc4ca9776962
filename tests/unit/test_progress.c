/* test_progress.c: the progress line fits every terminal width
 * (util/progress.h progress_format). */
#include <string.h>

#include "test.h"
#include "util/progress.h"

#define GIB (1ull << 30)

static const struct progress_view views[] = {
    /* Known total, mid-way, large numbers in every field. */
    { "copy", 1000 * GIB, 421 * GIB, 300 * GIB, 99 * GIB, 12345.0 },
    /* Just started: no rate yet, so no ETA. */
    { "verify", 8 * GIB, 0, 0, 0, 0.0 },
    /* Done. */
    { "copy", 4096, 4096, 4096, 0, 1.0 },
    /* A stream: no total, no percentage, no bar. */
    { "copy", 0, 77 * GIB, 70 * GIB, 7 * GIB, 100.0 },
};

int main(void)
{
    char line[512];
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        const struct progress_view *v = &views[i];
        size_t prev = 0;
        for (unsigned w = 1; w <= 200; w++) {
            size_t n = progress_format(v, w, line, sizeof(line));
            CHECK(n == strlen(line));
            /* Never the last column: the terminal would wrap. */
            CHECK(n <= w - 1);
            CHECK(!strchr(line, '\n') && !strchr(line, '\r'));
            /* Wider never shows less. */
            CHECK(n >= prev || w < 20);
            prev = n;
            if (w < 20) {
                /* The one number alone. */
                CHECK(!strchr(line, ' ') || !v->total);
                /* whole, or cut at the terminal's edge */
                CHECK(!v->total || (n && line[n - 1] == '%') ||
                      n == w - 1);
            } else {
                CHECK(n > 0);
                if (v->total)
                    CHECK(strchr(line, '%') != NULL);
            }
        }
    }
    /* Wide: everything, the bar included; narrow: the least useful go
     * first. */
    progress_format(&views[0], 200, line, sizeof(line));
    CHECK(!strncmp(line, "copy:  42.1% [", 14));
    CHECK(strstr(line, "] 421.0 GiB, ") != NULL);
    CHECK(strstr(line, "skipped 99.0 GiB, ETA ") != NULL);
    progress_format(&views[0], 40, line, sizeof(line));
    CHECK(strstr(line, "skipped") == NULL && strstr(line, "sent") == NULL);
    CHECK(strstr(line, "ETA") != NULL);
    progress_format(&views[0], 19, line, sizeof(line));
    CHECK(!strcmp(line, "42.1%"));
    progress_format(&views[3], 19, line, sizeof(line));
    CHECK(!strcmp(line, "77.0 GiB"));
    /* Unknown width: as 80 columns. */
    CHECK(progress_format(&views[0], 0, line, sizeof(line)) <= 79);
    /* A small buffer is cut, never overrun. */
    char small[8];
    CHECK(progress_format(&views[0], 200, small, sizeof(small)) <= 7);
    CHECK(strlen(small) <= 7);
    return test_result("progress");
}
