/*
 * vmdk_desc.c: the VMDK text descriptor, strictly and boundedly.
 *
 * Spec: docs/formats.md section 2.1.  A descriptor is a small text file or
 * text embedded in a KDMV extent (NUL padded):
 *
 *   # Disk DescriptorFile                 comment ('#' to end of line)
 *   version=1                             key=value, spaces allowed
 *   CID=fe7f4de3                          32-bit hex
 *   parentCID=ffffffff
 *   createType="monolithicSparse"         values may be "quoted"
 *   parentFileNameHint="base dir/b.vmdk"  (quoted values keep spaces)
 *   RW 16384 SPARSE "base.vmdk"           ACCESS SECTORS TYPE "FILE" [START]
 *   ddb.adapterType = "ide"               other keys: ignored
 *
 * Lines end in LF or CR LF; a UTF-8 byte order mark is skipped.  A
 * missing version line means version 1 (qemu reads such descriptors).
 * Refused (exit 5, naming the line): text over 1 MiB, a line over 4 KiB,
 * more than 4096 extents, NUL inside the text, any line that is not a
 * comment, key=value or extent line, an unknown ACCESS or TYPE, a bad
 * number, a FLAT extent without its start sector, and a repeated or
 * malformed version / CID / parentCID / createType / parentFileNameHint.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/vmdk.h"

static const struct {
    const char *word;
    enum vmdk_type type;
} vmdk_types[] = {
    { "FLAT", VMDK_T_FLAT },
    { "SPARSE", VMDK_T_SPARSE },
    { "ZERO", VMDK_T_ZERO },
    { "VMFS", VMDK_T_VMFS },
    { "VMFSSPARSE", VMDK_T_VMFSSPARSE },
    { "SESPARSE", VMDK_T_SESPARSE },
    { "VMFSRDM", VMDK_T_VMFSRDM },
    { "VMFSRAW", VMDK_T_VMFSRAW },
};

const char *vmdk_type_name(enum vmdk_type t)
{
    for (size_t i = 0; i < sizeof(vmdk_types) / sizeof(vmdk_types[0]); i++)
        if (vmdk_types[i].type == t)
            return vmdk_types[i].word;
    return "?";
}

void vmdk_desc_release(struct vmdk_desc *d)
{
    for (size_t i = 0; i < d->n_ext; i++)
        free(d->ext[i].file);
    free(d->ext);
    free(d->parent_hint);
    memset(d, 0, sizeof(*d));
    d->parent_cid = VMDK_NO_PARENT_CID;
}

/* A cursor over one line (NUL terminated copy). */
struct vmdk_line {
    char *p;
    const char *what;
    unsigned no;
};

static void vmdk_skip_space(struct vmdk_line *l)
{
    while (*l->p == ' ' || *l->p == '\t')
        l->p++;
}

/* A bare word: up to whitespace, '=' or '"'.  Returns "" if none. */
static char *vmdk_word(struct vmdk_line *l)
{
    char *s = l->p;
    while (*l->p && *l->p != ' ' && *l->p != '\t' && *l->p != '=' &&
           *l->p != '"')
        l->p++;
    return s;
}

/* A "quoted" string (no escapes): terminated in place, or NULL. */
static char *vmdk_quoted(struct vmdk_line *l)
{
    if (*l->p != '"')
        return NULL;
    char *s = ++l->p;
    char *q = strchr(s, '"');
    if (!q)
        return NULL;
    *q = '\0';
    l->p = q + 1;
    return s;
}

static int vmdk_bad(struct vmdk_line *l, struct df_error *err,
                    const char *why)
{
    return df_corrupt(err, l->what, -1, "descriptor line %u: %s", l->no,
                      why);
}

/* Strict decimal: digits only, <= max. */
static bool vmdk_parse_dec(const char *s, size_t n, uint64_t max,
                           uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (dgt > max || v > (max - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    *out = v;
    return true;
}

static bool vmdk_parse_hex32(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    uint32_t v = 0;
    if (n == 0 || n > 8)
        return false;
    for (size_t i = 0; i < n; i++) {
        int c = tolower((unsigned char)s[i]);
        unsigned dgt;
        if (c >= '0' && c <= '9')
            dgt = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            dgt = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | dgt;
    }
    *out = v;
    return true;
}

/* After the last token: only spaces, or a comment. */
static bool vmdk_at_end(struct vmdk_line *l)
{
    vmdk_skip_space(l);
    return *l->p == '\0' || *l->p == '#';
}

static int vmdk_parse_extent(struct vmdk_line *l, enum vmdk_access acc,
                             struct vmdk_desc *d, struct df_error *err)
{
    struct vmdk_desc_extent x = { .access = acc };
    char buf[32];

    if (d->n_ext == VMDK_MAX_EXTENTS)
        return vmdk_bad(l, err, "more than 4096 extents");
    vmdk_skip_space(l);
    char *s = vmdk_word(l);
    if (!vmdk_parse_dec(s, (size_t)(l->p - s), VMDK_MAX_SECTORS,
                        &x.sectors))
        return vmdk_bad(l, err, "extent size is not a sector count "
                        "below 2^44");
    vmdk_skip_space(l);
    s = vmdk_word(l);
    size_t n = (size_t)(l->p - s);
    snprintf(buf, sizeof(buf), "%.*s", (int)(n < 31 ? n : 31), s);
    size_t t;
    for (t = 0; t < sizeof(vmdk_types) / sizeof(vmdk_types[0]); t++)
        if (strlen(vmdk_types[t].word) == n &&
            !memcmp(vmdk_types[t].word, s, n))
            break;
    if (t == sizeof(vmdk_types) / sizeof(vmdk_types[0]))
        return df_corrupt(err, l->what, -1,
                          "descriptor line %u: unknown extent type '%s'",
                          l->no, buf);
    x.type = vmdk_types[t].type;
    vmdk_skip_space(l);
    const char *file = NULL;
    if (*l->p == '"') {
        file = vmdk_quoted(l);
        if (!file)
            return vmdk_bad(l, err, "unterminated file name");
        if (!file[0])
            return vmdk_bad(l, err, "empty extent file name");
        if (strlen(file) >= PATH_MAX)
            return vmdk_bad(l, err, "extent file name too long");
    } else if (x.type != VMDK_T_ZERO) {
        return vmdk_bad(l, err, "extent without a \"file name\"");
    }
    vmdk_skip_space(l);
    if (*l->p && *l->p != '#') {
        s = vmdk_word(l);
        if (x.type != VMDK_T_FLAT ||
            !vmdk_parse_dec(s, (size_t)(l->p - s), VMDK_MAX_SECTORS,
                            &x.start))
            return vmdk_bad(l, err, "unexpected text after the file name "
                            "(only FLAT extents take a start sector)");
    } else if (x.type == VMDK_T_FLAT) {
        return vmdk_bad(l, err, "FLAT extent without a start sector");
    }
    if (!vmdk_at_end(l))
        return vmdk_bad(l, err, "unexpected text after the extent");
    if (file) {
        x.file = strdup(file);
        if (!x.file)
            return df_io(err, l->what, ENOMEM, "out of memory");
    }
    if (d->n_ext == d->ext_alloc) {
        size_t na = d->ext_alloc ? d->ext_alloc * 2 : 4;
        void *v = realloc(d->ext, na * sizeof(*d->ext));
        if (!v) {
            free(x.file);
            return df_io(err, l->what, ENOMEM, "out of memory");
        }
        d->ext = v;
        d->ext_alloc = na;
    }
    d->ext[d->n_ext++] = x;
    return 0;
}

static int vmdk_parse_pair(struct vmdk_line *l, struct vmdk_desc *d,
                           unsigned *seen, struct df_error *err)
{
    char *key = vmdk_word(l);
    size_t klen = (size_t)(l->p - key);
    char *val;

    if (klen == 0)
        return vmdk_bad(l, err, "neither key=value nor an extent");
    char *kend = l->p;
    vmdk_skip_space(l);
    if (*l->p != '=')
        return vmdk_bad(l, err, "neither key=value nor an extent");
    *kend = '\0';
    l->p++;
    vmdk_skip_space(l);
    if (*l->p == '"') {
        val = vmdk_quoted(l);
        if (!val)
            return vmdk_bad(l, err, "unterminated quoted value");
    } else {
        val = vmdk_word(l);
        char *vend = l->p;
        if (!vmdk_at_end(l))
            return vmdk_bad(l, err, "unexpected text after the value");
        *vend = '\0';
    }
    if (!vmdk_at_end(l))
        return vmdk_bad(l, err, "unexpected text after the value");

    static const char *const known[] = { "version", "CID", "parentCID",
                                         "createType",
                                         "parentFileNameHint" };
    unsigned k;
    for (k = 0; k < 5; k++)
        if (!strcmp(key, known[k]))
            break;
    if (k == 5)
        return 0;           /* ddb.*, encoding, changeTrackPath, ... */
    if (*seen & 1u << k)
        return df_corrupt(err, l->what, -1,
                          "descriptor line %u: %s given twice", l->no, key);
    *seen |= 1u << k;
    uint64_t v;
    switch (k) {
    case 0:
        if (!vmdk_parse_dec(val, strlen(val), 3, &v) || v < 1)
            return df_corrupt(err, l->what, -1, "descriptor line %u: "
                              "version '%.16s' is not 1, 2 or 3", l->no,
                              val);
        d->version = (unsigned)v;
        break;
    case 1:
    case 2:
        if (!vmdk_parse_hex32(val, k == 1 ? &d->cid : &d->parent_cid))
            return df_corrupt(err, l->what, -1, "descriptor line %u: %s "
                              "'%.16s' is not a 32-bit hex number", l->no,
                              key, val);
        d->has_cid |= k == 1;
        break;
    case 3:
        if (!val[0] || strlen(val) >= sizeof(d->create_type))
            return df_corrupt(err, l->what, -1, "descriptor line %u: "
                              "createType '%.32s' invalid", l->no, val);
        snprintf(d->create_type, sizeof(d->create_type), "%s", val);
        break;
    case 4:
        if (!val[0] || strlen(val) >= PATH_MAX)
            return vmdk_bad(l, err, "parentFileNameHint empty or too long");
        d->parent_hint = strdup(val);
        if (!d->parent_hint)
            return df_io(err, l->what, ENOMEM, "out of memory");
        break;
    }
    return 0;
}

static int vmdk_parse_line(struct vmdk_line *l, struct vmdk_desc *d,
                           unsigned *seen, struct df_error *err)
{
    static const struct {
        const char *word;
        enum vmdk_access acc;
    } acc[] = { { "RW", VMDK_ACC_RW }, { "RDONLY", VMDK_ACC_RDONLY },
                { "NOACCESS", VMDK_ACC_NOACCESS } };

    vmdk_skip_space(l);
    if (*l->p == '\0' || *l->p == '#')
        return 0;
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(acc[i].word);
        if (!strncmp(l->p, acc[i].word, n) &&
            (l->p[n] == ' ' || l->p[n] == '\t')) {
            l->p += n;
            return vmdk_parse_extent(l, acc[i].acc, d, err);
        }
    }
    return vmdk_parse_pair(l, d, seen, err);
}

int vmdk_desc_parse(const char *buf, size_t len, const char *what,
                    bool need_extents, struct vmdk_desc *d,
                    struct df_error *err)
{
    char line[VMDK_LINE_MAX + 2];
    unsigned seen = 0;
    struct vmdk_line l = { .what = what };

    memset(d, 0, sizeof(*d));
    d->parent_cid = VMDK_NO_PARENT_CID;
    if (len > VMDK_DESC_MAX)
        return df_corrupt(err, what, -1, "descriptor of %zu bytes is "
                          "larger than %u", len, VMDK_DESC_MAX);
    /* The text ends at the first NUL, as qemu reads it: an embedded
     * descriptor is NUL padded, and qemu rewrites a descriptor file with
     * a new CID printed without leading zeros, so a shorter text leaves
     * a NUL and then a stray byte of the old one ("\n\0\n"). */
    const char *nul = memchr(buf, '\0', len);
    if (nul)
        len = (size_t)(nul - buf);
    size_t pos = 0;
    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
        pos = 3;                /* a UTF-8 byte order mark */
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        size_t next = pos + n + (nl != NULL);
        l.no++;
        if (n && buf[pos + n - 1] == '\r')
            n--;
        if (n > VMDK_LINE_MAX)
            return df_corrupt(err, what, -1, "descriptor line %u longer "
                              "than %u bytes", l.no, VMDK_LINE_MAX);
        memcpy(line, buf + pos, n);
        line[n] = '\0';
        l.p = line;
        if (vmdk_parse_line(&l, d, &seen, err) < 0)
            return -1;
        pos = next;
    }
    if (!(seen & 1u))
        d->version = 1;
    if (!(seen & 8u))
        return df_corrupt(err, what, -1, "descriptor has no createType");
    if (need_extents && d->n_ext == 0)
        return df_corrupt(err, what, -1, "descriptor lists no extents");
    return 0;
}
