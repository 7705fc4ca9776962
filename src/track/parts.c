/*
 * parts.c: the partition table of a disk, read through the image layer
 * (fs.h, parts_read).
 *
 * MBR (sector 0, 512-byte sectors): four primary entries numbered 1-4;
 * an extended entry (0x05, 0x0f, 0x85) starts a chain of EBRs whose data
 * entries are the logical partitions, numbered from 5 as Linux does.
 * The extended entry itself is a region of at most 1 KiB, as the kernel
 * shows it (its EBRs are table sectors, not a filesystem).  A protective
 * entry (0xee) means GPT.
 *
 * GPT: the header at LBA 1 (512- or 4096-byte sectors), its CRC and its
 * entry array's CRC checked; when either fails, the backup header at the
 * disk's last LBA (or where the primary says it is).  Both bad: corrupt.
 *
 * Everything read is hostile: every entry is checked against the disk's
 * size, partitions may not overlap one another nor a sector of the table
 * (MBR, EBRs, GPT headers and entry arrays): a region the fs-aware copy
 * might skip must never hold the table itself.  The EBR chain is capped
 * and loops are refused.
 *
 * No table (no 55 aa, a FAT/NTFS boot sector, entries that are all
 * garbage, or a table with no partition): the whole disk, number 0.
 * MBR entries are read in 512-byte sectors (4Kn disks with an MBR are
 * not handled); GPT in 512- or 4096-byte ones.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/guid.h"
#include "util/overflow.h"

#define MBR_SECTOR 512u
#define MBR_ENTRIES 446u
#define MBR_SIG 510u
#define GPT_ENTRY_MIN 128u
#define GPT_ENTRY_MAX 4096u             /* bytes per entry, at most */
#define GPT_ARRAY_MAX (4u << 20)        /* bytes of the entry array, at most */
#define PARTS_TABLE_MAX (PARTS_MAX + 8) /* table ranges remembered */

/* A byte range holding part of the table: no partition may overlap it. */
struct parts_range {
    uint64_t off, len;
};

struct parts_ctx {
    struct image *img;
    uint64_t size;
    struct part *v;
    unsigned *n;
    uint64_t entry_at[PARTS_MAX];   /* byte offset of each region's entry */
    bool container[PARTS_MAX];      /* an extended entry: no overlap check */
    struct parts_range table[PARTS_TABLE_MAX];
    unsigned ntable;
    unsigned next_logical;          /* the number of the next logical */
    struct df_error *err;
};

static int parts_fail(struct parts_ctx *c, uint64_t at, const char *msg)
{
    return df_corrupt(c->err, c->img->name, (int64_t)at, "%s", msg);
}

static int parts_add(struct parts_ctx *c, uint64_t off, uint64_t len,
                     unsigned number, const char *type, uint64_t entry_at,
                     bool container)
{
    if (*c->n >= PARTS_MAX)
        return df_corrupt(c->err, c->img->name, (int64_t)entry_at,
                          "more than %u partitions", PARTS_MAX);
    if (!range_within(off, len, c->size) || len == 0)
        return parts_fail(c, entry_at, "partition outside the disk");
    struct part *p = &c->v[*c->n];
    p->off = off;
    p->len = len;
    p->number = number;
    snprintf(p->type, sizeof(p->type), "%s", type);
    c->entry_at[*c->n] = entry_at;
    c->container[*c->n] = container;
    (*c->n)++;
    return 0;
}

static void parts_table(struct parts_ctx *c, uint64_t off, uint64_t len)
{
    if (c->ntable < PARTS_TABLE_MAX)
        c->table[c->ntable++] = (struct parts_range){ off, len };
}

/* No two regions overlap, none covers a sector of the table. */
static int parts_check(struct parts_ctx *c)
{
    for (unsigned i = 0; i < *c->n; i++) {
        const struct part *a = &c->v[i];
        for (unsigned t = 0; t < c->ntable && !c->container[i]; t++)
            if (ranges_overlap(a->off, a->len, c->table[t].off,
                               c->table[t].len))
                return parts_fail(c, c->entry_at[i],
                                  "partition overlaps the partition table");
        for (unsigned j = 0; j < i; j++) {
            const struct part *b = &c->v[j];
            if (!c->container[i] && !c->container[j] &&
                ranges_overlap(a->off, a->len, b->off, b->len))
                return df_corrupt(c->err, c->img->name,
                                  (int64_t)c->entry_at[i],
                                  "partition %u overlaps partition %u",
                                  a->number, b->number);
        }
    }
    return 0;
}

static int parts_whole(struct parts_ctx *c)
{
    *c->n = 0;
    c->v[0] = (struct part){ .off = 0, .len = c->size, .number = 0 };
    snprintf(c->v[0].type, sizeof(c->v[0].type), "disk");
    *c->n = 1;
    return 0;
}

/* ---- GPT ---- */

struct gpt_hdr {
    uint64_t my_lba, alt_lba, first, last, entries_lba;
    uint32_t count, esize;
    uint64_t at;                    /* byte offset of the header */
    bool hdr_ok;                    /* the header itself checked out */
};

/*
 * Read and check the header at `lba` with sectors of `ss` bytes, and its
 * entry array into *arr (malloc'd).  1: good; 0: bad (a damaged copy);
 * -1: I/O error (err set).
 */
static int gpt_load(struct parts_ctx *c, uint64_t lba, uint32_t ss,
                    struct gpt_hdr *h, uint8_t **arr)
{
    uint8_t sec[4096];
    uint64_t at;

    *arr = NULL;
    memset(h, 0, sizeof(*h));
    if (ovf_mul(lba, ss, &at) || !range_within(at, ss, c->size))
        return 0;
    if (image_read(c->img, sec, ss, at, c->err) < 0)
        return -1;
    if (memcmp(sec, "EFI PART", 8))
        return 0;
    uint32_t hsize = get_le32(sec + 12);
    if (hsize < 92 || hsize > ss)
        return 0;
    uint32_t crc = get_le32(sec + 16);
    put_le32(sec + 16, 0);
    if ((uint32_t)crc32(0, sec, hsize) != crc)
        return 0;
    h->at = at;
    h->my_lba = get_le64(sec + 24);
    h->alt_lba = get_le64(sec + 32);
    h->first = get_le64(sec + 40);
    h->last = get_le64(sec + 48);
    h->entries_lba = get_le64(sec + 72);
    h->count = get_le32(sec + 80);
    h->esize = get_le32(sec + 84);
    if (h->my_lba != lba || h->first > h->last)
        return 0;
    h->hdr_ok = true;
    if (h->esize < GPT_ENTRY_MIN || h->esize % 8 || h->esize > GPT_ENTRY_MAX)
        return 0;
    uint64_t bytes = (uint64_t)h->count * h->esize, eoff;
    if (bytes > GPT_ARRAY_MAX || ovf_mul(h->entries_lba, ss, &eoff) ||
        !range_within(eoff, bytes, c->size))
        return 0;
    uint8_t *a = malloc(bytes ? bytes : 1);
    if (!a)
        return df_fail(c->err, DF_IO, ENOMEM, c->img->name, -1,
                       "out of memory");
    if (bytes && image_read(c->img, a, (size_t)bytes, eoff, c->err) < 0) {
        free(a);
        return -1;
    }
    if ((uint32_t)crc32(0, a, (uInt)bytes) != get_le32(sec + 88)) {
        free(a);
        return 0;
    }
    *arr = a;
    return 1;
}

static int gpt_parse(struct parts_ctx *c, uint32_t ss, const struct gpt_hdr *h,
                     const uint8_t *arr)
{
    uint64_t lbas = c->size / ss;
    uint64_t eoff = h->entries_lba * ss;    /* checked by gpt_load */

    parts_table(c, 0, (uint64_t)ss * 2);
    parts_table(c, h->at, ss);
    parts_table(c, eoff, (uint64_t)h->count * h->esize);
    if (h->alt_lba < lbas)
        parts_table(c, h->alt_lba * ss, ss);
    for (uint32_t i = 0; i < h->count; i++) {
        const uint8_t *e = arr + (size_t)i * h->esize;
        uint64_t at = eoff + (uint64_t)i * h->esize;
        if (guid_is_zero(e))
            continue;
        uint64_t first = get_le64(e + 32), last = get_le64(e + 40);
        if (first > last || last >= lbas || first < h->first ||
            last > h->last)
            return parts_fail(c, at, "GPT partition outside the disk's "
                                      "usable sectors");
        char g[GUID_STR_LEN], type[sizeof(c->v[0].type)];
        guid_format_mixed(e, g, sizeof(g));
        snprintf(type, sizeof(type), "gpt %s", g);
        if (parts_add(c, first * ss, (last - first + 1) * ss, i + 1, type,
                      at, false) < 0)
            return -1;
    }
    if (*c->n == 0)
        return parts_whole(c);      /* a table without partitions */
    return parts_check(c);
}

static int gpt_read(struct parts_ctx *c, uint64_t mbr_at)
{
    static const uint32_t sizes[] = { 512, 4096 };
    struct gpt_hdr h;
    uint8_t *arr;

    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint32_t ss = sizes[s];
        uint64_t last = c->size / ss;
        if (last < 2)
            continue;
        last--;
        int r = gpt_load(c, 1, ss, &h, &arr);
        uint64_t alt = h.hdr_ok ? h.alt_lba : 0;
        if (r == 0)
            r = gpt_load(c, last, ss, &h, &arr);
        if (r == 0 && alt && alt != last && alt != 1)
            r = gpt_load(c, alt, ss, &h, &arr);
        if (r < 0)
            return -1;
        if (r > 0) {
            int rc = gpt_parse(c, ss, &h, arr);
            free(arr);
            return rc;
        }
    }
    return parts_fail(c, mbr_at, "protective MBR but both GPT headers "
                                 "(or their entry arrays) are damaged");
}

/* ---- MBR ---- */

static bool mbr_extended(uint8_t type)
{
    return type == 0x05 || type == 0x0f || type == 0x85;
}

/* A FAT/NTFS/exFAT boot sector, which also ends in 55 aa. */
static bool mbr_is_vbr(const uint8_t *s)
{
    if (!memcmp(s + 3, "NTFS    ", 8) || !memcmp(s + 3, "EXFAT   ", 8))
        return true;
    if (s[0] != 0xeb && s[0] != 0xe9)
        return false;
    return !memcmp(s + 54, "FAT", 3) || !memcmp(s + 82, "FAT32", 5);
}

static int mbr_logicals(struct parts_ctx *c, uint64_t ext, uint64_t ext_len)
{
    uint64_t visited[PARTS_MAX];
    unsigned nvisited = 0;
    uint64_t cur = ext, link_at = 0;
    uint8_t s[MBR_SECTOR];

    while (1) {
        for (unsigned k = 0; k < nvisited; k++)
            if (visited[k] == cur)
                return parts_fail(c, link_at, "EBR chain loops");
        if (nvisited == PARTS_MAX)
            return parts_fail(c, link_at, "EBR chain too long");
        visited[nvisited++] = cur;
        uint64_t at = cur * MBR_SECTOR;
        if (!range_within(at, MBR_SECTOR, c->size))
            return parts_fail(c, link_at, "EBR outside the disk");
        if (image_read(c->img, s, MBR_SECTOR, at, c->err) < 0)
            return -1;
        parts_table(c, at, MBR_SECTOR);
        if (s[MBR_SIG] != 0x55 || s[MBR_SIG + 1] != 0xaa)
            return 0;       /* the chain ends, as Linux ends it */
        int data = -1, link = -1;
        for (int i = 0; i < 4; i++) {
            const uint8_t *e = s + MBR_ENTRIES + 16 * i;
            if (e[4] == 0 || get_le32(e + 12) == 0)
                continue;
            if (mbr_extended(e[4]) ? link < 0 : data < 0)
                *(mbr_extended(e[4]) ? &link : &data) = i;
        }
        if (data >= 0) {
            const uint8_t *e = s + MBR_ENTRIES + 16 * data;
            uint64_t eat = at + MBR_ENTRIES + 16u * (unsigned)data;
            uint64_t start = cur + get_le32(e + 8), len = get_le32(e + 12);
            if (start < ext || start - ext >= ext_len ||
                len > ext_len - (start - ext))
                return parts_fail(c, eat, "logical partition outside its "
                                          "extended partition");
            char type[16];
            snprintf(type, sizeof(type), "mbr 0x%02x", e[4]);
            if (parts_add(c, start * MBR_SECTOR, len * MBR_SECTOR, c->next_logical++,
                          type, eat, false) < 0)
                return -1;
        }
        if (link < 0)
            return 0;
        const uint8_t *e = s + MBR_ENTRIES + 16 * link;
        link_at = at + MBR_ENTRIES + 16u * (unsigned)link;
        uint64_t rel = get_le32(e + 8);
        if (rel >= ext_len)
            return parts_fail(c, link_at, "EBR outside its extended "
                                          "partition");
        cur = ext + rel;
    }
}

int parts_read(struct image *img, struct part *v, unsigned *n,
               struct df_error *err)
{
    struct parts_ctx *c = calloc(1, sizeof(*c));
    uint8_t s[MBR_SECTOR];
    int rc;

    *n = 0;
    if (!c)
        return df_fail(err, DF_IO, ENOMEM, img->name, -1, "out of memory");
    c->img = img;
    c->size = img->size;
    c->v = v;
    c->n = n;
    c->err = err;
    if (c->size < MBR_SECTOR) {
        rc = parts_whole(c);
        goto out;
    }
    if (image_read(img, s, MBR_SECTOR, 0, err) < 0) {
        rc = -1;
        goto out;
    }
    if (s[MBR_SIG] != 0x55 || s[MBR_SIG + 1] != 0xaa || mbr_is_vbr(s)) {
        rc = parts_whole(c);
        goto out;
    }
    uint64_t sectors = c->size / MBR_SECTOR;
    unsigned valid = 0;
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_ENTRIES + 16 * i;
        if (e[0] != 0 && e[0] != 0x80) {
            rc = parts_whole(c);    /* boot code, not a table */
            goto out;
        }
        if (e[4] == 0xee) {
            rc = gpt_read(c, MBR_ENTRIES + 16 * i);
            goto out;
        }
        if (e[4] == 0 || get_le32(e + 12) == 0)
            continue;
        valid += range_within(get_le32(e + 8), get_le32(e + 12), sectors);
    }
    if (!valid) {
        rc = parts_whole(c);        /* empty, or nothing but garbage */
        goto out;
    }
    parts_table(c, 0, MBR_SECTOR);
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_ENTRIES + 16 * i;
        uint64_t start = get_le32(e + 8), len = get_le32(e + 12);
        if (e[4] == 0 || len == 0)
            continue;
        uint64_t eat = MBR_ENTRIES + 16 * i;
        if (!range_within(start, len, sectors)) {
            rc = parts_fail(c, eat, "partition outside the disk");
            goto out;
        }
        char type[16];
        snprintf(type, sizeof(type), "mbr 0x%02x", e[4]);
        bool ext = mbr_extended(e[4]);
        /* An extended entry shows as its first 1 KiB, as in Linux. */
        if (parts_add(c, start * MBR_SECTOR,
                      ext ? min_u64(len, 2) * MBR_SECTOR : len * MBR_SECTOR,
                      i + 1, type, eat, ext) < 0) {
            rc = -1;
            goto out;
        }
    }
    /* The logicals after the primaries, numbered on from 5 through
     * every extended entry in slot order, as Linux reads them. */
    c->next_logical = 5;
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = s + MBR_ENTRIES + 16 * i;
        if (mbr_extended(e[4]) && get_le32(e + 12) &&
            mbr_logicals(c, get_le32(e + 8), get_le32(e + 12)) < 0) {
            rc = -1;
            goto out;
        }
    }
    rc = parts_check(c);
out:
    if (rc < 0)
        *n = 0;
    free(c);
    return rc;
}
