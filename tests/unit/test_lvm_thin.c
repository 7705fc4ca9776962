/*
 * test_lvm_thin.c: the reader of thin_delta's output (track/lvm_thin.h)
 * on hand-written outputs: every element kind, coalescing, left_only,
 * the last block clipped, the list's cap, pieces split anywhere, and
 * each refusal naming its line.
 */
#include <stdarg.h>
#include <string.h>

#include "test.h"
#include "track/lvm_thin.h"

#define KIB 1024ull
#define BLK (64 * KIB)          /* data_block_size="128" */
#define SZ (64 * BLK)

static const char head[] =
    "<superblock uuid=\"\" time=\"1\" transaction=\"2\" "
    "data_block_size=\"128\" nr_data_blocks=\"1000\">\n"
    "  <diff left=\"1\" right=\"2\">\n";
static const char tail[] = "  </diff>\n</superblock>\n";

static struct extent_list out;
static struct df_error err;

/* head + body + tail, parsed over `size` bytes: the return code. */
static int parse_body(const char *body, uint64_t size)
{
    static char buf[16384];
    snprintf(buf, sizeof(buf), "%s%s%s", head, body, tail);
    df_error_init(&err);
    return lvm_thin_parse("meta.bin", buf, strlen(buf), 1, 2, size, &out,
                          &err);
}

static int parse_all(const char *xml, uint64_t size)
{
    df_error_init(&err);
    return lvm_thin_parse("meta.bin", xml, strlen(xml), 1, 2, size, &out,
                          &err);
}

/* out is exactly the n (off, len) pairs that follow. */
static int list_is(size_t n, ...)
{
    va_list ap;
    int ok = out.n == n;
    va_start(ap, n);
    for (size_t i = 0; i < n && ok; i++) {
        uint64_t off = va_arg(ap, uint64_t), len = va_arg(ap, uint64_t);
        ok = out.v[i].off == off && out.v[i].len == len &&
             out.v[i].state == EXT_DATA;
    }
    va_end(ap);
    if (!ok)
        for (size_t i = 0; i < out.n; i++)
            fprintf(stderr, "  got %llu+%llu\n",
                    (unsigned long long)out.v[i].off,
                    (unsigned long long)out.v[i].len);
    return ok;
}

/* The refusal is DF_CORRUPT naming meta.bin and containing `needle`. */
static int refused(int rc, const char *needle)
{
    int ok = rc == -1 && err.cat == DF_CORRUPT &&
             !strcmp(err.what, "meta.bin") && strstr(err.msg, needle);
    if (!ok)
        fprintf(stderr, "  rc %d cat %d msg '%s' (wanted '%s')\n", rc,
                (int)err.cat, err.msg, needle);
    return ok;
}

/* The output thin_delta 0.9.0 printed for a pool made by thin_restore. */
static const char real[] =
    "<superblock uuid=\"\" time=\"1\" transaction=\"2\" "
    "data_block_size=\"128\" nr_data_blocks=\"1000\">\n"
    "  <diff left=\"1\" right=\"2\">\n"
    "    <same begin=\"0\" length=\"4\"/>\n"
    "    <different begin=\"4\" length=\"2\"/>\n"
    "    <same begin=\"6\" length=\"4\"/>\n"
    "    <same begin=\"20\" length=\"1\"/>\n"
    "    <left_only begin=\"30\" length=\"1\"/>\n"
    "    <right_only begin=\"40\" length=\"5\"/>\n"
    "  </diff>\n"
    "</superblock>\n";

static void test_kinds(void)
{
    CHECK(parse_all(real, SZ) == 0);
    CHECK(list_is(3, 4 * BLK, 2 * BLK, 30 * BLK, 1 * BLK, 40 * BLK,
                  5 * BLK));
    /* nothing changed */
    CHECK(parse_body("    <same begin=\"0\" length=\"10\"/>\n", 10 * BLK)
          == 0);
    CHECK(out.n == 0);
    CHECK(parse_body("", 10 * BLK) == 0);
    CHECK(out.n == 0);
    /* left_only alone: discarded in NEW, named */
    CHECK(parse_body("    <left_only begin=\"0\" length=\"3\"/>\n", 3 * BLK)
          == 0);
    CHECK(list_is(1, 0ull, 3 * BLK));
}

static void test_coalesce(void)
{
    /* touching ranges of different kinds make one extent */
    CHECK(parse_body("    <different begin=\"0\" length=\"3\"/>\n"
                     "    <right_only begin=\"3\" length=\"2\"/>\n"
                     "    <left_only begin=\"5\" length=\"1\"/>\n"
                     "    <same begin=\"6\" length=\"1\"/>\n"
                     "    <right_only begin=\"7\" length=\"1\"/>\n",
                     8 * BLK) == 0);
    CHECK(list_is(2, 0ull, 6 * BLK, 7 * BLK, 1 * BLK));
}

static void test_clip(void)
{
    /* a device of 2.5 blocks: its last block is partly past the end */
    uint64_t size = 2 * BLK + BLK / 2;
    CHECK(parse_body("    <right_only begin=\"1\" length=\"2\"/>\n", size)
          == 0);
    CHECK(list_is(1, BLK, BLK + BLK / 2));
    CHECK(refused(parse_body("    <right_only begin=\"1\" length=\"3\"/>\n",
                             size), "past the device's end"));
    CHECK(refused(parse_body("    <same begin=\"3\" length=\"1\"/>\n", size),
                  "past the device's end"));
    CHECK(refused(parse_body("    <different begin=\"0\" length=\"1\"/>\n", 0),
                  "past the device's end"));
    /* a block of 1 GiB, near the top of u64 */
    const char *big =
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" "
        "data_block_size=\"2097152\" nr_data_blocks=\"1\">\n"
        "<diff left=\"1\" right=\"2\">\n"
        "<right_only begin=\"17179869183\" length=\"1\"/>\n"
        "</diff>\n</superblock>";
    CHECK(parse_all(big, UINT64_MAX) == 0);
    CHECK(list_is(1, 17179869183ull << 30,
                  UINT64_MAX - (17179869183ull << 30)));
}

static void test_blanks_and_layout(void)
{
    /* no indentation, CRLF, a blank line, no final newline */
    const char *xml =
        "<superblock uuid=\"\" data_block_size=\"256\" version=\"2\" "
        "flags=\"0\">\r\n"
        "\n"
        "<diff left=\"1\" right=\"2\" >\r\n"
        "\t<right_only begin=\"1\" length=\"1\" />\n"
        "</diff>\n"
        "</superblock >";
    CHECK(parse_all(xml, 10 * 128 * KIB) == 0);
    CHECK(list_is(1, 128 * KIB, 128 * KIB));
}

/* Fed in pieces of every size, the answer is the same. */
static void test_pieces(void)
{
    size_t len = strlen(real);
    for (size_t step = 1; step < 40; step++) {
        struct lvm_thin_parser p;
        df_error_init(&err);
        lvm_thin_parser_init(&p, "meta.bin", 1, 2, SZ, &out);
        int rc = 0;
        for (size_t i = 0; i < len && !rc; i += step)
            rc = lvm_thin_parser_feed(&p, real + i,
                                      len - i < step ? len - i : step, &err);
        if (!rc)
            rc = lvm_thin_parser_finish(&p, &err);
        CHECK(rc == 0);
        CHECK(list_is(3, 4 * BLK, 2 * BLK, 30 * BLK, 1 * BLK, 40 * BLK,
                      5 * BLK));
    }
}

/* At the list's cap the last range reaches the device's end. */
static void test_cap(void)
{
    struct extent_list small;
    extent_list_init(&small, 2);
    const char *xml =
        "<superblock uuid=\"\" data_block_size=\"128\">\n"
        "<diff left=\"1\" right=\"2\">\n"
        "<right_only begin=\"0\" length=\"1\"/>\n"
        "<right_only begin=\"2\" length=\"1\"/>\n"
        "<right_only begin=\"4\" length=\"1\"/>\n"
        "<same begin=\"5\" length=\"1\"/>\n"
        "</diff>\n</superblock>\n";
    df_error_init(&err);
    CHECK(lvm_thin_parse("meta.bin", xml, strlen(xml), 1, 2, 10 * BLK,
                         &small, &err) == 0);
    CHECK(small.n == 2 && small.v[0].off == 0 && small.v[0].len == BLK &&
          small.v[1].off == 2 * BLK && small.v[1].len == 8 * BLK);
    /* still checked after the cap */
    const char *bad =
        "<superblock uuid=\"\" data_block_size=\"128\">\n"
        "<diff left=\"1\" right=\"2\">\n"
        "<right_only begin=\"0\" length=\"1\"/>\n"
        "<right_only begin=\"2\" length=\"1\"/>\n"
        "<right_only begin=\"4\" length=\"1\"/>\n"
        "<same begin=\"50\" length=\"1\"/>\n"
        "</diff>\n</superblock>\n";
    df_error_init(&err);
    CHECK(refused(lvm_thin_parse("meta.bin", bad, strlen(bad), 1, 2,
                                 10 * BLK, &small, &err),
                  "line 6: <same> range past the device's end"));
    extent_list_release(&small);
}

/* Lines between <diff> and </diff> (from line 3) and what is said. */
static const struct {
    const char *body, *needle;
} bad_bodies[] = {
    /* unknown or misplaced elements, broken markup */
    { "<range begin=\"0\" length=\"1\"/>\n",
      "line 3: unexpected element <range/>" },
    { "<different>\n", "line 3: unexpected element <different>" },
    { "<diff left=\"1\" right=\"2\">\n", "line 3: unexpected element <diff>" },
    { "  text\n", "line 3: expected an element" },
    { "<same begin=\"0\" length=\"1\"/> x\n", "line 3: text after <same>" },
    { "<same begin=\"0\" length=\"1\"\n", "line 3: element <same> not closed" },
    { "<same begin=\"0\"length=\"1\"/>\n", "line 3: no blank before" },
    { "<same begin=\"0\" length=\"1\"/ >\n", "line 3: stray '/'" },
    { "<same begin=0 length=\"1\"/>\n", "line 3: malformed attribute" },
    { "<same begin=\"0 length=\"1\"/>\n",
      "line 3: no blank before an attribute of <same>" },
    { "<same begin=\"0\" length=\"1/>\n", "not closed by a quote" },
    { "<same begin=\"&amp;\" length=\"1\"/>\n", "not closed by a quote" },
    { "<same begin=\"0\" length=\"1\" a=\"\" b=\"\" c=\"\" d=\"\" e=\"\" "
      "f=\"\" g=\"\"/>\n", "too many attributes" },
    { "</same begin=\"0\">\n", "unexpected text in </same>" },
    /* attributes: unknown, missing, repeated, not numbers, overflow */
    { "<same begin=\"0\" length=\"1\" data_begin=\"0\"/>\n",
      "line 3: unknown attribute data_begin in <same>" },
    { "<different begin=\"0\"/>\n",
      "line 3: <different> has no length attribute" },
    { "<right_only length=\"1\"/>\n",
      "line 3: <right_only> has no begin attribute" },
    { "<same begin=\"0\" begin=\"1\" length=\"1\"/>\n",
      "attribute begin repeated" },
    { "<same begin=\"0x1\" length=\"1\"/>\n",
      "begin=\"0x1\" in <same> is not a number" },
    { "<same begin=\"-1\" length=\"1\"/>\n", "is not a number" },
    { "<same begin=\"\" length=\"1\"/>\n",
      "begin=\"\" in <same> is not a number" },
    { "<same begin=\" 1\" length=\"1\"/>\n", "is not a number" },
    { "<same begin=\"18446744073709551616\" length=\"1\"/>\n", "overflows" },
    { "<same begin=\"18446744073709551615\" length=\"1\"/>\n",
      "range 18446744073709551615+1 overflows" },
    { "<same begin=\"0\" length=\"0\"/>\n", "empty <same> range" },
    /* order */
    { "<same begin=\"4\" length=\"2\"/>\n<different begin=\"0\" "
      "length=\"1\"/>\n", "line 4: <different> range at block 0 out of "
      "order" },
    { "<same begin=\"4\" length=\"2\"/>\n<different begin=\"5\" "
      "length=\"1\"/>\n", "overlapping (previous ends at 6)" },
    /* past the end of a device of 64 blocks */
    { "<left_only begin=\"63\" length=\"2\"/>\n",
      "line 3: <left_only> range past the device's end" },
};

/* Whole outputs and what is said. */
static const struct {
    const char *xml, *needle;
} bad_outputs[] = {
    { "", "printed nothing" },
    { "\n  \n", "printed nothing" },
    { real + 1, "line 1: expected an element" },
    { "<?xml version=\"1.0\"?>\n", "line 1: element name" },
    { "<diff left=\"1\" right=\"2\">\n",
      "line 1: unexpected element <diff> (expected <superblock>)" },
    /* superblock and diff */
    { "<superblock uuid=\"\">\n",
      "line 1: <superblock> has no data_block_size" },
    { "<superblock data_block_size=\"64\">\n",
      "data_block_size 64 outside 128..2097152" },
    { "<superblock data_block_size=\"200\">\n", "not a multiple of 128" },
    { "<superblock data_block_size=\"4194304\">\n", "outside" },
    { "<superblock data_block_size=\"128\" flags=\"1\">\n", "needs_check" },
    { "<superblock data_block_size=\"128\" version=\"3\">\n", "version 3" },
    { "<superblock data_block_size=\"128\" time=\"x\">\n", "time=\"x\"" },
    { "<superblock data_block_size=\"128\" colour=\"red\">\n",
      "unknown attribute colour" },
    { "<superblock data_block_size=\"128\"/>\n",
      "unexpected element <superblock/>" },
    { "<superblock data_block_size=\"128\">\n<diff left=\"2\" right=\"1\">\n",
      "line 2: compares thin ids 2 and 1, not 1 and 2" },
    { "<superblock data_block_size=\"128\">\n<diff left=\"1\">\n",
      "<diff> has no right attribute" },
    { "<superblock data_block_size=\"128\">\n<diff left=\"1\" right=\"2\">\n"
      "</diff>\n</diff>\n",
      "line 4: unexpected element </diff> (expected </superblock>)" },
    { "<superblock data_block_size=\"128\">\n<diff left=\"1\" right=\"2\">\n"
      "</diff>\n", "line 4: output ends before </superblock>" },
};

static void test_refusals(void)
{
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(*bad_bodies); i++)
        CHECK(refused(parse_body(bad_bodies[i].body, SZ),
                      bad_bodies[i].needle));
    for (size_t i = 0; i < sizeof(bad_outputs) / sizeof(*bad_outputs); i++)
        CHECK(refused(parse_all(bad_outputs[i].xml, SZ),
                      bad_outputs[i].needle));

    /* truncated anywhere but its last '\n' */
    size_t len = strlen(real);
    for (size_t cut = 1; cut < len - 1; cut++) {
        df_error_init(&err);
        int rc = lvm_thin_parse("meta.bin", real, cut, 1, 2, SZ, &out, &err);
        CHECK(rc == -1 && err.cat == DF_CORRUPT);
    }
    /* an element after the end */
    char after[1024];
    snprintf(after, sizeof(after), "%s<same begin=\"0\" length=\"1\"/>\n",
             real);
    CHECK(refused(parse_all(after, SZ), "line 11: element after"));
    /* a NUL byte */
    const char nul[] = "<superblock uuid=\"\" data_block_size=\"128\">\n"
                       "<diff left=\"1\" right=\"2\">\n<same\0/>\n";
    df_error_init(&err);
    CHECK(refused(lvm_thin_parse("meta.bin", nul, sizeof(nul) - 1, 1, 2, SZ,
                                 &out, &err), "line 3: no blank before"));
    /* a line too long */
    static char longl[LVM_THIN_LINE_MAX + 64];
    memset(longl, ' ', sizeof(longl) - 1);
    longl[sizeof(longl) - 1] = '\0';
    CHECK(refused(parse_body(longl, SZ), "line 3: line longer than 4096"));

    /* after a refusal, the parser stays refused */
    struct lvm_thin_parser p;
    lvm_thin_parser_init(&p, "meta.bin", 1, 2, SZ, &out);
    df_error_init(&err);
    CHECK(lvm_thin_parser_feed(&p, "<x>\n", 4, &err) == -1);
    df_error_init(&err);
    CHECK(lvm_thin_parser_feed(&p, real, strlen(real), &err) == -1 &&
          err.cat == DF_CORRUPT);
    df_error_init(&err);
    CHECK(lvm_thin_parser_finish(&p, &err) == -1 && err.cat == DF_CORRUPT);
}

int main(void)
{
    extent_list_init(&out, 0);
    test_kinds();
    test_coalesce();
    test_clip();
    test_blanks_and_layout();
    test_pieces();
    test_cap();
    test_refusals();
    extent_list_release(&out);
    return test_result("lvm_thin");
}
