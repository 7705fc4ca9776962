/* test_progress.c: the progress line fits every terminal width
 * (util/progress.h progress_format); the ETA starts from a prediction
 * and turns to the measured rate (progress_eta, and the JSON lines of a
 * progress under a fake clock); a reader that leaves ends the JSON
 * lines, not the process. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "util/progress.h"

#define GIB (1ull << 30)

static const struct progress_view views[] = {
    /* Known total, mid-way, large numbers in every field. */
    { "copy", 1000 * GIB, 421 * GIB, 300 * GIB, 99 * GIB, 12345.0, false, 0, 0 },
    /* Just started: no rate yet, so no ETA. */
    { "verify", 8 * GIB, 0, 0, 0, 0.0, false, 0, 0 },
    /* Done. */
    { "copy", 4096, 4096, 4096, 0, 1.0, false, 0, 0 },
    /* A stream: no total, no percentage, no bar. */
    { "copy", 0, 77 * GIB, 70 * GIB, 7 * GIB, 100.0, false, 0, 0 },
};

#define MIB (1ull << 20)

static bool near(double a, double b)
{
    return fabs(a - b) <= 0.01 * fabs(b) + 0.05;
}

static void test_eta(void)
{
    /* Unknown total; done. */
    CHECK(progress_eta(0, 5, 10, 1, 0) < 0);
    CHECK(progress_eta(100, 100, 10, 0, 50) == 0);
    /* No prediction: what is left at the recent rate; no rate: -1. */
    CHECK(near(progress_eta(1000, 200, 3, 100, 0), 8.0));
    CHECK(progress_eta(1000, 200, 3, 0, 0) < 0);
    /* A prediction of 100 s: the ETA starts there ... */
    CHECK(progress_eta(1000, 0, 0, 0, 100) == 100);
    /* ... and is the prediction for what is left until 3 s or 5% ... */
    CHECK(near(progress_eta(1000, 10, 1, 10, 100), 99.0));
    CHECK(near(progress_eta(1000, 40, 2.9, 1000, 100), 96.0));
    /* ... then blends: at 6 s (1% done) a third measured ... */
    double m = 990.0 / 5.0, g = 99.0;
    CHECK(near(progress_eta(1000, 10, 6, 5, 100), m / 3 + 2 * g / 3));
    /* ... by 12 s or 20% of the disk, the measured one alone. */
    CHECK(near(progress_eta(1000, 10, 12, 5, 100), m));
    CHECK(near(progress_eta(1000, 200, 1, 400, 100), 2.0));
    /* A stall keeps the prediction's share, then says unknown. */
    CHECK(near(progress_eta(1000, 10, 6, 0, 100), g));
    CHECK(progress_eta(1000, 10, 20, 0, 100) < 0);
}

/* The number after "key": in a JSON line; NAN for null or missing. */
static double json_num(const char *line, const char *key)
{
    char k[40];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p || !strncmp(p + strlen(k), "null", 4))
        return NAN;
    return strtod(p + strlen(k), NULL);
}

static void test_json_format(void)
{
    char line[PROGRESS_JSON_MAX];
    /* A stream: no total, no percentage, no ETA. */
    size_t n = progress_json_format(&views[3], false, line, sizeof(line));
    CHECK(n == strlen(line) && n > 0 && line[n - 1] == '\n');
    CHECK(strstr(line, "\"bytes_total\":null,") != NULL);
    CHECK(strstr(line, "\"eta\":null,\"percent\":null,\"done\":false}"));
    CHECK(json_num(line, "bytes_done") == (double)(77 * GIB));
    CHECK(near(json_num(line, "rate"), 77.0 * GIB / 100.0));
    /* The biggest numbers fit. */
    struct progress_view big = { "copy", UINT64_MAX, UINT64_MAX - 1,
                                 UINT64_MAX, UINT64_MAX, 1e12, true,
                                 1e30, 1e30 };
    CHECK(progress_json_format(&big, true, line, sizeof(line)) > 0);
    CHECK(strstr(line, "\"done\":true}\n") != NULL);
    /* A small buffer: nothing. */
    CHECK(progress_json_format(&views[0], false, line, 16) == 0);
}

static double fake_now;
static double fake_clock(void)
{
    return fake_now;
}

/* 400 MiB predicted to take 20 s, going at 10 MiB/s (40 s): the JSON
 * lines start at the prediction and end at the measured rate. */
static void test_json_lines(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    struct progress_out out = { PROGRESS_SHOW_NONE, true, fds[1] };
    struct progress *p = progress_new("copy", 400 * MIB, &out);
    progress_set_clock(p, fake_clock);
    progress_set_prediction(p, 20);
    for (unsigned i = 1; i <= 160; i++) {
        fake_now = i * 0.25;
        progress_update(p, i * 10 * MIB / 4, i * MIB, 0);
    }
    progress_finish(p);
    progress_free(p);
    close(fds[1]);

    static char text[65536];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], text + len, sizeof(text) - 1 - len)) > 0)
        len += (size_t)r;
    text[len] = '\0';
    close(fds[0]);

    unsigned lines = 0;
    double last_t = -1, last_done = -1;
    for (char *l = text, *nl; (nl = strchr(l, '\n')); l = nl + 1) {
        *nl = '\0';
        bool done = strstr(l, "\"done\":true}") != NULL;
        double t = json_num(l, "time"), d = json_num(l, "bytes_done");
        double eta = json_num(l, "eta");
        CHECK(l[0] == '{');
        CHECK(t >= 1.0);
        CHECK(d >= last_done);
        if (!done)
            CHECK(t - last_t >= 1.0 - 1e-9);
        double frac = d / (400.0 * MIB);
        double measured = (400.0 * MIB - d) / (10.0 * MIB);
        if (done) {
            CHECK(d == 400.0 * MIB && eta == 0 &&
                  json_num(l, "percent") == 100.0);
        } else if (t < 3.0 - 1e-9) {
            CHECK(near(eta, 20.0 * (1 - frac)));  /* the prediction */
        } else if (t >= 12.0) {
            CHECK(near(eta, measured));           /* the measured one */
            CHECK(near(json_num(l, "rate"), 10.0 * MIB));
        } else {
            CHECK(eta >= 20.0 * (1 - frac) - 0.01 && eta <= measured + 0.01);
        }
        last_t = t;
        last_done = d;
        lines++;
    }
    CHECK(lines == 41);         /* 1 s .. 40 s, and the last */
}

/* The reader left (EPIPE: SIGPIPE must not kill us) or the fd is gone
 * (EBADF): the lines stop, nothing fails. */
static void test_reader_leaves(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    close(fds[0]);
    struct progress_out out = { PROGRESS_SHOW_NONE, true, fds[1] };
    struct progress *p = progress_new("copy", 100, &out);
    progress_set_clock(p, fake_clock);
    for (unsigned i = 1; i <= 5; i++) {
        fake_now += 1.5;
        progress_update(p, i * 10, 0, 0);
    }
    progress_finish(p);
    progress_free(p);
    close(fds[1]);
    out.fd = fds[1];            /* closed now */
    p = progress_new("copy", 100, &out);
    progress_set_clock(p, fake_clock);
    fake_now += 2;
    progress_update(p, 50, 0, 0);
    progress_finish(p);
    progress_free(p);
    CHECK(progress_new("copy", 100, NULL) == NULL);
    progress_update(NULL, 1, 1, 1);
    progress_finish(NULL);
    progress_free(NULL);
}

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
    test_eta();
    test_json_format();
    test_json_lines();
    test_reader_leaves();
    return test_result("progress");
}
