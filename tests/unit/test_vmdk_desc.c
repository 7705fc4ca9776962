/* test_vmdk_desc.c: the VMDK descriptor parser (image/vmdk_desc.c). */
#include <string.h>

#include "image/vmdk.h"
#include "test.h"

static const char sample[] =
    "\r\n# Disk DescriptorFile\r\n"
    "version=1\r\n"
    "encoding=\"windows-1252\"\r\n"
    "CID=3aa6ae7\r\n"
    "parentCID = \"FE7F4DE3\"   # quoted, upper case\r\n"
    "createType=\"vmfsSparse\"\r\n"
    "parentFileNameHint=\"My VMs/base disk.vmdk\"\r\n"
    "RW 16384 FLAT \"base dir/a b-flat.vmdk\" 2048\r\n"
    "RDONLY 8 VMFSSPARSE \"d-delta.vmdk\"\r\n"
    "RW 1024 ZERO\r\n"
    "NOACCESS 1 SESPARSE \"x\"   # comment\r\n"
    "ddb.uuid.image = \"60 00 C2 9a\"\r\n"
    "ddb.empty = \"\"\r\n";

static int parse(const char *text, bool need_extents, struct vmdk_desc *d,
                 struct df_error *err)
{
    df_error_init(err);
    return vmdk_desc_parse(text, strlen(text), "t.vmdk", need_extents, d,
                           err);
}

/* text must be refused with a message containing `word`. */
static int refused(const char *text, const char *word)
{
    struct vmdk_desc d;
    struct df_error err;
    int r = parse(text, true, &d, &err);
    vmdk_desc_release(&d);
    if (r == 0 || err.cat != DF_CORRUPT || !strstr(err.msg, word)) {
        fprintf(stderr, "not refused as '%s': %s\n", word, err.msg);
        return 0;
    }
    return 1;
}

#define HEAD "version=1\ncreateType=\"custom\"\n"

int main(void)
{
    struct vmdk_desc d;
    struct df_error err;

    CHECK(parse(sample, true, &d, &err) == 0);
    CHECK(d.version == 1);
    CHECK(d.has_cid && d.cid == 0x3aa6ae7);
    CHECK(d.parent_cid == 0xfe7f4de3);
    CHECK(!strcmp(d.create_type, "vmfsSparse"));
    CHECK(d.parent_hint && !strcmp(d.parent_hint, "My VMs/base disk.vmdk"));
    CHECK(d.n_ext == 4);
    if (d.n_ext == 4) {
        CHECK(d.ext[0].access == VMDK_ACC_RW);
        CHECK(d.ext[0].type == VMDK_T_FLAT);
        CHECK(d.ext[0].sectors == 16384 && d.ext[0].start == 2048);
        CHECK(!strcmp(d.ext[0].file, "base dir/a b-flat.vmdk"));
        CHECK(d.ext[1].access == VMDK_ACC_RDONLY);
        CHECK(d.ext[1].type == VMDK_T_VMFSSPARSE);
        CHECK(d.ext[2].type == VMDK_T_ZERO && d.ext[2].file == NULL);
        CHECK(d.ext[3].access == VMDK_ACC_NOACCESS);
        CHECK(d.ext[3].type == VMDK_T_SESPARSE);
    }
    vmdk_desc_release(&d);

    /* Embedded descriptors are NUL padded; no extents needed there. */
    static const char padded[] = HEAD "CID=1\n\0\0\0\0";
    df_error_init(&err);
    CHECK(vmdk_desc_parse(padded, sizeof(padded), "t", false, &d,
                          &err) == 0);
    CHECK(d.has_cid && d.cid == 1);
    CHECK(d.parent_cid == VMDK_NO_PARENT_CID && !d.parent_hint);
    vmdk_desc_release(&d);
    CHECK(refused(HEAD "CID=1\n", "no extents"));

    /* No version line: version 1, as qemu reads it. */
    static const char nover[] = "createType=\"custom\"\nRW 1 ZERO\n";
    df_error_init(&err);
    CHECK(vmdk_desc_parse(nover, sizeof(nover) - 1, "t", true, &d,
                          &err) == 0);
    CHECK(d.version == 1 && d.n_ext == 1);
    vmdk_desc_release(&d);

    static const struct {
        const char *text, *word;
    } bad[] = {
        { "version=1\nRW 1 ZERO\n", "no createType" },
        { HEAD "version=2\nRW 1 ZERO\n", "twice" },
        { "version=4\ncreateType=\"c\"\nRW 1 ZERO\n", "version" },
        { "version=01x\ncreateType=\"c\"\nRW 1 ZERO\n", "version" },
        { HEAD "CID=123456789\nRW 1 ZERO\n", "CID" },
        { HEAD "parentCID=\nRW 1 ZERO\n", "parentCID" },
        { HEAD "RW 1 ZERO\nRW 1 FLAT \"a\"\n", "start sector" },
        { HEAD "RW 1 VMFS \"a\" 0\n", "only FLAT" },
        { HEAD "RW 17592186044417 ZERO\n", "sector count" },
        { HEAD "RW -1 ZERO\n", "sector count" },
        { HEAD "RW 1 FLAT \"\" 0\n", "empty" },
        { HEAD "RW 1 Flat \"a\" 0\n", "unknown extent type" },
        { HEAD "RW 1 ZERO\nkey value\n", "neither" },
        { HEAD "RW 1 ZERO\nkey=a b\n", "unexpected text" },
        { HEAD "RW 1 ZERO\nkey=\"a\" b\n", "unexpected text" },
        { HEAD "RW 1 ZERO\nkey=\"a\n", "unterminated" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(refused(bad[i].text, bad[i].word));
    /* The text ends at the first NUL (qemu's rewritten descriptors
     * leave a stray byte of the old text after it). */
    static const char nul[] = HEAD "RW 1 ZERO\n\0\nx";
    df_error_init(&err);
    CHECK(vmdk_desc_parse(nul, sizeof(nul) - 1, "t", true, &d, &err) == 0 &&
          d.n_ext == 1);
    vmdk_desc_release(&d);
    CHECK(refused(HEAD "parentFileNameHint=\"\"\nRW 1 ZERO\n", "empty"));

    /* Line and extent ceilings. */
    static char big[VMDK_DESC_MAX + 64];
    memset(big, '#', sizeof(big) - 1);
    memcpy(big, HEAD "RW 1 ZERO\n#", sizeof(HEAD "RW 1 ZERO\n#") - 1);
    big[VMDK_LINE_MAX + 100] = '\0';
    CHECK(refused(big, "longer than 4096"));
    big[VMDK_LINE_MAX + 100] = '#';
    for (size_t i = 40; i < sizeof(big) - 1; i += 40)
        big[i] = '\n';
    big[sizeof(big) - 1] = '\0';
    CHECK(refused(big, "larger than"));
    size_t n = 0;
    n += (size_t)snprintf(big, sizeof(big), HEAD);
    for (int i = 0; i < VMDK_MAX_EXTENTS; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "RW 1 ZERO\n");
    CHECK(parse(big, true, &d, &err) == 0 && d.n_ext == VMDK_MAX_EXTENTS);
    vmdk_desc_release(&d);
    snprintf(big + n, sizeof(big) - n, "RW 1 ZERO\n");
    CHECK(refused(big, "4096 extents"));
    return test_result("vmdk_desc");
}
