/*
 * vhd.c: Microsoft VHD (Virtual PC / Hyper-V "vpc") images: fixed,
 * dynamic and differencing; probe, open, map, read; parent identity.
 *
 * Spec: Microsoft "Virtual Hard Disk Image Format Specification" 1.0;
 * summary and pitfalls in docs/formats.md sections 5.1-5.3.  Big endian.
 *
 *   fixed:    data (virtual size bytes) | footer (512)
 *   dynamic:  footer copy (512) | dynamic header (1024, at footer's data
 *             offset) | BAT | blocks | footer (512)
 *   footer    0 "conectix", 16 u64 data offset, 24 u32 timestamp,
 *             28 creator app, 48 u64 current size, 56 CHS geometry,
 *             60 u32 disk type (2 fixed, 3 dynamic, 4 differencing),
 *             64 u32 checksum (~ byte sum, field zeroed), 68 unique id
 *   header    0 "cxsparse", 16 u64 table offset, 24 u32 version,
 *             28 u32 max table entries, 32 u32 block size, 36 checksum,
 *             40 parent unique id, 56 u32 parent timestamp,
 *             64 parent name (UTF-16BE, 512 bytes), 576 8 locators of 24
 *   BAT       u32 sector of each block, 0xffffffff = not allocated
 *   block     sector bitmap (ceil(sectors/8) rounded up to 512; MSB
 *             first, 1 = sector stored here) | block size bytes of data
 *
 * Virtual size: QEMU 10.0's rule (docs/formats.md 5.1): CHS * 512 for
 * creators "vpc " and "qemu" unless the geometry is the maximum
 * 65535/16/255, else current size (rounded down to a sector).  QEMU 9.2
 * and older, Debian 12's 7.2 included, use CHS for every creator but
 * "win ", "qem2", "d2v ", "tap\0" and "CTXS": an Azure ("wa\0\0") or
 * unknown creator's image is sized differently by them.
 *
 * Unallocated blocks are holes in a dynamic image and the parent's in a
 * differencing one, where an allocated block holds only the sectors its
 * bitmap marks; a dynamic image's allocated block is data whatever its
 * bitmap says (QEMU writes it all ones and reads it so).
 *
 * The footer at EOF rules; the copy at offset 0 stands in for it when
 * EOF holds none (a dynamic image cut short after its last block).  A
 * footer of pre-2004 Virtual PC is 511 bytes long: accepted at EOF-511.
 * Refused with exit 5: a bad cookie or checksum, a format or header
 * version other than 1.x, other disk types, a block size that is not a
 * power of two in 512 B..256 MiB, a BAT that does not cover the disk,
 * more than VHD_MAX_ENTRIES BAT entries, any table or block outside the
 * file, the dynamic header or BAT over the footer, its copy or each
 * other, a block over any of them or another block.
 *
 * NEEDSWORK: blktap images with creator "tap\0" version 0x00000001 keep
 * their bitmaps as little-endian u32 words (docs/formats.md 5.3); they are
 * read MSB first like every other, which is wrong for their
 * differencing images.  A sample from an old XenServer would settle it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "image/runs.h"
#include "util/bytes.h"
#include "util/guid.h"
#include "util/overflow.h"
#include "util/utf16.h"

#define VHD_FOOTER_LEN 512
#define VHD_OLD_FOOTER_LEN 511      /* pre-2004 Virtual PC */
#define VHD_HEADER_LEN 1024
#define VHD_SECTOR 512u

#define VHD_FOOTER_COOKIE "conectix"
#define VHD_OFF_F_VERSION 12
#define VHD_OFF_F_DATA_OFFSET 16
#define VHD_OFF_F_TIMESTAMP 24
#define VHD_OFF_F_CREATOR 28
#define VHD_OFF_F_CREATOR_VER 32
#define VHD_OFF_F_CUR_SIZE 48
#define VHD_OFF_F_GEOMETRY 56
#define VHD_OFF_F_DISK_TYPE 60
#define VHD_OFF_F_CHECKSUM 64
#define VHD_OFF_F_UNIQUE_ID 68

#define VHD_HEADER_COOKIE "cxsparse"
#define VHD_OFF_H_TABLE_OFFSET 16
#define VHD_OFF_H_VERSION 24
#define VHD_OFF_H_MAX_ENTRIES 28
#define VHD_OFF_H_BLOCK_SIZE 32
#define VHD_OFF_H_CHECKSUM 36
#define VHD_OFF_H_PARENT_ID 40
#define VHD_OFF_H_PARENT_TIME 56
#define VHD_OFF_H_PARENT_NAME 64
#define VHD_PARENT_NAME_LEN 512
#define VHD_OFF_H_LOCATORS 576
#define VHD_LOCATOR_LEN 24
#define VHD_N_LOCATORS 8

#define VHD_TYPE_FIXED 2
#define VHD_TYPE_DYNAMIC 3
#define VHD_TYPE_DIFF 4

#define VHD_BAT_FREE 0xffffffffu
#define VHD_MAX_GEOMETRY (65535ull * 16 * 255)
#define VHD_MIN_BLOCK 512u
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_MAX_ENTRIES (1u << 24)  /* 64 MiB of BAT in memory */
#define VHD_MAX_LOCATOR (4u * PATH_MAX)
#define VHD_BITMAP_CHUNK 512        /* bitmap bytes examined at a time */

struct vhd {
    uint32_t disk_type;
    uint64_t footer_off;        /* where the footer in use lies */
    uint32_t block_size;
    unsigned block_shift;
    uint32_t bitmap_len;        /* bytes before each block's data */
    uint32_t n_entries;
    uint32_t *bat;              /* n_entries sectors, validated by open */
    uint32_t timestamp;
    uint8_t unique_id[16];
    uint8_t parent_id[16];
    uint32_t parent_timestamp;
};

extern const struct image_driver vhd_driver;

static uint32_t vhd_checksum(const uint8_t *b, size_t len, size_t csum_off)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < csum_off || i >= csum_off + 4)
            sum += b[i];
    return ~sum;
}

/* A footer at the end is less certain than a magic at offset 0 (guest
 * data can end with anything): 80 with a valid checksum, else 50, so
 * that a driver matching the head wins. */
static int vhd_probe_footer(const uint8_t *f, size_t len)
{
    uint8_t buf[VHD_FOOTER_LEN] = { 0 };
    memcpy(buf, f, len);
    if (memcmp(buf, VHD_FOOTER_COOKIE, strlen(VHD_FOOTER_COOKIE)))
        return 0;
    return get_be32(buf + VHD_OFF_F_CHECKSUM) ==
                   vhd_checksum(buf, sizeof(buf), VHD_OFF_F_CHECKSUM)
               ? 80 : 50;
}

static int vhd_probe(const struct image_probe *p)
{
    if (p->head_len >= VHD_FOOTER_LEN &&
        !memcmp(p->head, VHD_FOOTER_COOKIE, strlen(VHD_FOOTER_COOKIE)))
        return 100;
    if (p->tail_len < VHD_FOOTER_LEN)
        return 0;
    int s = vhd_probe_footer(p->tail + p->tail_len - VHD_FOOTER_LEN,
                             VHD_FOOTER_LEN);
    if (!s)
        s = vhd_probe_footer(p->tail + p->tail_len - VHD_OLD_FOOTER_LEN,
                             VHD_OLD_FOOTER_LEN);
    return s;
}

/*
 * Find the footer: EOF-512, EOF-511, then the copy at 0 (which must be
 * of a dynamic or differencing image).  The first place holding the
 * cookie is the footer; its checksum must hold.
 */
static int vhd_read_footer(struct image *img, uint8_t f[VHD_FOOTER_LEN],
                           struct df_error *err)
{
    struct vhd *v = img->priv;
    uint64_t fs = img->file.size;
    uint64_t where[3];
    size_t flen[3], n = 0;

    if (fs >= VHD_FOOTER_LEN) {
        where[n] = fs - VHD_FOOTER_LEN;
        flen[n++] = VHD_FOOTER_LEN;
        where[n] = fs - VHD_OLD_FOOTER_LEN;
        flen[n++] = VHD_OLD_FOOTER_LEN;
        where[n] = 0;
        flen[n++] = VHD_FOOTER_LEN;
    }
    for (size_t i = 0; i < n; i++) {
        memset(f, 0, VHD_FOOTER_LEN);
        if (df_file_pread(&img->file, f, flen[i], where[i], err) < 0)
            return -1;
        if (memcmp(f, VHD_FOOTER_COOKIE, strlen(VHD_FOOTER_COOKIE)))
            continue;
        uint32_t want = get_be32(f + VHD_OFF_F_CHECKSUM);
        uint32_t got = vhd_checksum(f, VHD_FOOTER_LEN, VHD_OFF_F_CHECKSUM);
        if (want != got)
            return df_corrupt(err, img->name,
                              (int64_t)(where[i] + VHD_OFF_F_CHECKSUM),
                              "footer checksum 0x%08" PRIx32 " is wrong "
                              "(computed 0x%08" PRIx32 ")", want, got);
        v->footer_off = where[i];
        return 0;
    }
    return df_corrupt(err, img->name, fs >= VHD_FOOTER_LEN ?
                      (int64_t)(fs - VHD_FOOTER_LEN) : 0,
                      "no VHD footer (cookie \"conectix\") at the end of "
                      "the file or at offset 0 (%" PRIu64 " bytes)", fs);
}

/* The virtual size from the footer, QEMU 10.0's rule (top of file). */
static uint64_t vhd_virtual_size(const uint8_t *f)
{
    const uint8_t *creator = f + VHD_OFF_F_CREATOR;
    uint64_t chs = (uint64_t)get_be16(f + VHD_OFF_F_GEOMETRY) *
                   f[VHD_OFF_F_GEOMETRY + 2] * f[VHD_OFF_F_GEOMETRY + 3];
    bool use_chs = !memcmp(creator, "vpc ", 4) || !memcmp(creator, "qemu", 4);
    if (use_chs && chs != VHD_MAX_GEOMETRY)
        return chs * VHD_SECTOR;
    return get_be64(f + VHD_OFF_F_CUR_SIZE) / VHD_SECTOR * VHD_SECTOR;
}

/*
 * Decode a UTF-16 string (big or little endian, len bytes, stops at
 * NUL) into UTF-8 with '\' turned into '/'.  Returns 0, or -1 when it
 * is empty, not valid UTF-16 or does not fit.
 */
static int vhd_utf16_to_path(const uint8_t *s, size_t len, bool be,
                             char *out, size_t olen)
{
    long n = utf16_to_utf8(s, len, UTF16_STOP_AT_NUL |
                                   (be ? UTF16_BIG_ENDIAN : 0), out, olen);
    if (n <= 0)
        return -1;
    for (char *c = out; *c; c++)
        if (*c == '\\')
            *c = '/';
    return 0;
}

/* A MacX locator: a UTF-8 file URL, "file://[localhost]/path". */
static int vhd_url_to_path(const uint8_t *s, size_t len, char *out,
                           size_t olen)
{
    static const char scheme[] = "file://";
    size_t i = 0, o = 0;
    if (len >= strlen(scheme) && !memcmp(s, scheme, strlen(scheme)))
        i = strlen(scheme);
    if (len - i >= 9 && !memcmp(s + i, "localhost", 9))
        i += 9;
    for (; i < len && s[i]; i++) {
        int c = s[i];
        if (c == '%' && i + 2 < len && hex_digit((char)s[i + 1]) >= 0 &&
            hex_digit((char)s[i + 2]) >= 0) {
            c = hex_digit((char)s[i + 1]) << 4 | hex_digit((char)s[i + 2]);
            i += 2;
        }
        if (c == 0 || o + 1 >= olen)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/*
 * Windows absolute paths (W2ku) name a drive: "C:/vms/base.vhd" becomes
 * "/vms/base.vhd", which rarely exists here either but whose file name
 * --parent-dir looks for.
 */
static void vhd_strip_drive(char *p)
{
    if (((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z')) &&
        p[1] == ':')
        memmove(p, p + 2, strlen(p + 2) + 1);
}

static bool vhd_exists_beside(const struct image *img, const char *name)
{
    char dir[PATH_MAX], path[PATH_MAX];
    struct stat st;
    if (img->file.mem)
        return false;
    path_dirname(img->path, dir, sizeof(dir));
    return path_join(path, sizeof(path), dir, name) == 0 &&
           stat(path, &st) == 0;
}

/*
 * The parent's name: from the locators, relative (W2ru) before absolute
 * (W2ku) before MacX, then the header's UTF-16BE parent name.  The
 * first that names an existing file (relative to this image) wins, else
 * the first decoded, so that errors and --parent-dir have a name.
 */
static int vhd_parent_name(struct image *img, const uint8_t *h,
                           struct df_error *err)
{
    static const char *const order[] = { "W2ru", "W2ku", "MacX" };
    char cand[4][PATH_MAX];
    bool have[4] = { false, false, false, false };
    uint8_t *buf = NULL;
    int ret = -1;

    buf = malloc(VHD_MAX_LOCATOR);
    if (!buf)
        return df_io(err, img->name, ENOMEM, "cannot allocate locator");
    for (int i = 0; i < VHD_N_LOCATORS; i++) {
        const uint8_t *l = h + VHD_OFF_H_LOCATORS + i * VHD_LOCATOR_LEN;
        int k;
        for (k = 0; k < 3; k++)
            if (!memcmp(l, order[k], 4))
                break;
        if (k == 3 || have[k])
            continue;
        uint32_t dlen = get_be32(l + 8);
        uint64_t doff = get_be64(l + 16);
        if (dlen == 0)
            continue;
        if (dlen > VHD_MAX_LOCATOR) {
            df_corrupt(err, img->name, -1, "parent locator %d (%s) length "
                       "%" PRIu32 " above %u", i, order[k], dlen,
                       VHD_MAX_LOCATOR);
            goto out;
        }
        if (!range_within(doff, dlen, img->file.size)) {
            df_corrupt(err, img->name, -1, "parent locator %d (%s) data at %"
                       PRIu64 " (%" PRIu32 " bytes) past the end of the "
                       "file (%" PRIu64 " bytes)", i, order[k], doff, dlen,
                       img->file.size);
            goto out;
        }
        if (df_file_pread(&img->file, buf, dlen, doff, err) < 0)
            goto out;
        int r = k == 2 ? vhd_url_to_path(buf, dlen, cand[k], PATH_MAX)
                       : vhd_utf16_to_path(buf, dlen, false, cand[k],
                                           PATH_MAX);
        if (r < 0)
            continue;       /* a broken hint: the others may do */
        if (k == 1)
            vhd_strip_drive(cand[k]);
        while (k == 0 && !strncmp(cand[k], "./", 2) && cand[k][2])
            memmove(cand[k], cand[k] + 2, strlen(cand[k] + 2) + 1);
        have[k] = true;
    }
    if (vhd_utf16_to_path(h + VHD_OFF_H_PARENT_NAME, VHD_PARENT_NAME_LEN,
                          true, cand[3], PATH_MAX) == 0) {
        vhd_strip_drive(cand[3]);
        have[3] = true;
    }
    int pick = -1;
    for (int k = 0; k < 4 && pick < 0; k++)
        if (have[k] && vhd_exists_beside(img, cand[k]))
            pick = k;
    for (int k = 0; k < 4 && pick < 0; k++)
        if (have[k])
            pick = k;
    if (pick >= 0)
        snprintf(img->parent_name, sizeof(img->parent_name), "%s",
                 cand[pick]);
    ret = 0;
out:
    free(buf);
    return ret;
}

/* Read the BAT; each allocated block the disk needs must be in the file
 * (before the footer at EOF). */
static int vhd_load_bat(struct image *img, uint64_t table_off,
                        struct df_error *err)
{
    struct vhd *v = img->priv;
    uint64_t limit = v->footer_off ? v->footer_off : img->file.size;
    uint64_t nblocks = div_round_up(img->size, v->block_size);

    v->bat = malloc((size_t)v->n_entries * 4 + 1);
    if (!v->bat)
        return df_io(err, img->name, ENOMEM, "cannot allocate BAT of %"
                     PRIu32 " entries", v->n_entries);
    if (df_file_pread(&img->file, v->bat, (size_t)v->n_entries * 4,
                      table_off, err) < 0)
        return -1;
    for (uint32_t b = 0; b < v->n_entries; b++) {
        uint32_t e = get_be32(&v->bat[b]);
        v->bat[b] = e;
        if (e == VHD_BAT_FREE || b >= nblocks)
            continue;
        uint64_t start = (uint64_t)b << v->block_shift;
        uint64_t need = v->bitmap_len +
                        min_u64(v->block_size, img->size - start);
        if (!range_within((uint64_t)e * VHD_SECTOR, need, limit))
            return df_corrupt(err, img->name,
                              (int64_t)(table_off + (uint64_t)b * 4),
                              "BAT entry %" PRIu32 ": block at sector %"
                              PRIu32 " (%" PRIu64 " bytes) past the end "
                              "of the data (%" PRIu64 " bytes)", b, e,
                              need, limit);
    }
    return 0;
}

static int vhd_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * No block may overlap the footer copy, the dynamic header, the BAT or
 * another block: writers never do that, and a file that does would
 * show its metadata, or one block's data, as disk content.  Sorts
 * (sector << 32 | entry) for the blocks the disk uses.
 */
static int vhd_check_overlaps(struct image *img, uint64_t hoff,
                              uint64_t toff, struct df_error *err)
{
    struct vhd *v = img->priv;
    uint64_t nblocks = div_round_up(img->size, v->block_size);
    uint64_t span = (uint64_t)v->bitmap_len + v->block_size;
    const uint64_t meta[3][2] = {
        { 0, VHD_FOOTER_LEN },
        { hoff, hoff + VHD_HEADER_LEN },
        { toff, toff + (uint64_t)v->n_entries * 4 },
    };
    static const char *const meta_name[3] = { "footer copy",
                                              "dynamic header", "BAT" };
    uint64_t *blk = NULL;
    size_t n = 0;
    int ret = -1;

    blk = malloc((size_t)nblocks * sizeof(*blk) + 1);
    if (!blk)
        return df_io(err, img->name, ENOMEM, "cannot allocate %" PRIu64
                     " block offsets", nblocks);
    for (uint64_t b = 0; b < nblocks; b++) {
        uint64_t e = v->bat[b];
        if (e == VHD_BAT_FREE)
            continue;
        uint64_t start = e * VHD_SECTOR;
        for (int m = 0; m < 3; m++) {
            if (start < meta[m][1] && meta[m][0] < start + span) {
                df_corrupt(err, img->name, (int64_t)(toff + b * 4),
                           "BAT entry %" PRIu64 ": block at sector %"
                           PRIu64 " overlaps the %s", b, e, meta_name[m]);
                goto out;
            }
        }
        blk[n++] = e << 32 | b;
    }
    qsort(blk, n, sizeof(*blk), vhd_cmp_u64);
    for (size_t i = 1; i < n; i++) {
        uint64_t prev = (blk[i - 1] >> 32) * VHD_SECTOR;
        uint64_t cur = (blk[i] >> 32) * VHD_SECTOR;
        if (prev + span > cur) {
            df_corrupt(err, img->name, -1, "BAT entries %" PRIu64 " and %"
                       PRIu64 ": blocks at sectors %" PRIu64 " and %" PRIu64
                       " overlap", blk[i - 1] & 0xffffffff,
                       blk[i] & 0xffffffff, blk[i - 1] >> 32, blk[i] >> 32);
            goto out;
        }
    }
    ret = 0;
out:
    free(blk);
    return ret;
}

static int vhd_open_dynamic(struct image *img, const uint8_t *f,
                            struct df_error *err)
{
    struct vhd *v = img->priv;
    uint8_t h[VHD_HEADER_LEN];
    const char *n = img->name;
    uint64_t hoff = get_be64(f + VHD_OFF_F_DATA_OFFSET);
    int64_t fo = (int64_t)v->footer_off;

    if (!range_within(hoff, VHD_HEADER_LEN, img->file.size))
        return df_corrupt(err, n, fo + VHD_OFF_F_DATA_OFFSET, "dynamic "
                          "header at %" PRIu64 " past the end of the file "
                          "(%" PRIu64 " bytes)", hoff, img->file.size);
    if (df_file_pread(&img->file, h, sizeof(h), hoff, err) < 0)
        return -1;
    int64_t ho = (int64_t)hoff;
    if (memcmp(h, VHD_HEADER_COOKIE, strlen(VHD_HEADER_COOKIE)))
        return df_corrupt(err, n, ho, "dynamic header cookie is not "
                          "\"cxsparse\"");
    uint32_t want = get_be32(h + VHD_OFF_H_CHECKSUM);
    uint32_t got = vhd_checksum(h, sizeof(h), VHD_OFF_H_CHECKSUM);
    if (want != got)
        return df_corrupt(err, n, ho + VHD_OFF_H_CHECKSUM, "dynamic header "
                          "checksum 0x%08" PRIx32 " is wrong (computed 0x%08"
                          PRIx32 ")", want, got);
    uint32_t ver = get_be32(h + VHD_OFF_H_VERSION);
    if (ver >> 16 != 1)
        return df_corrupt(err, n, ho + VHD_OFF_H_VERSION, "dynamic header "
                          "version 0x%08" PRIx32 " not supported (1.x)", ver);
    v->block_size = get_be32(h + VHD_OFF_H_BLOCK_SIZE);
    if (!is_pow2(v->block_size) || v->block_size < VHD_MIN_BLOCK ||
        v->block_size > VHD_MAX_BLOCK)
        return df_corrupt(err, n, ho + VHD_OFF_H_BLOCK_SIZE, "block size %"
                          PRIu32 " is not a power of two in %u..%u",
                          v->block_size, VHD_MIN_BLOCK, VHD_MAX_BLOCK);
    v->block_shift = (unsigned)__builtin_ctz(v->block_size);
    v->bitmap_len = (uint32_t)div_round_up(v->block_size / VHD_SECTOR / 8,
                                           VHD_SECTOR) * VHD_SECTOR;
    if (v->bitmap_len == 0)
        v->bitmap_len = VHD_SECTOR;
    v->n_entries = get_be32(h + VHD_OFF_H_MAX_ENTRIES);
    if (v->n_entries > VHD_MAX_ENTRIES)
        return df_corrupt(err, n, ho + VHD_OFF_H_MAX_ENTRIES, "max table "
                          "entries %" PRIu32 " above %u", v->n_entries,
                          VHD_MAX_ENTRIES);
    uint64_t cap = (uint64_t)v->n_entries << v->block_shift;
    if (cap < img->size)
        return df_corrupt(err, n, ho + VHD_OFF_H_MAX_ENTRIES, "max table "
                          "entries %" PRIu32 " * block size %" PRIu32
                          " does not cover the disk (%" PRIu64 " bytes)",
                          v->n_entries, v->block_size, img->size);
    uint64_t toff = get_be64(h + VHD_OFF_H_TABLE_OFFSET);
    if (!range_within(toff, (uint64_t)v->n_entries * 4, img->file.size))
        return df_corrupt(err, n, ho + VHD_OFF_H_TABLE_OFFSET, "BAT at %"
                          PRIu64 " (%" PRIu32 " entries) past the end of "
                          "the file (%" PRIu64 " bytes)", toff,
                          v->n_entries, img->file.size);
    /* The footer copy, the dynamic header, the BAT and the footer do
     * not overlap. */
    const uint64_t part[4][2] = {
        { 0, VHD_FOOTER_LEN }, { hoff, VHD_HEADER_LEN },
        { toff, (uint64_t)v->n_entries * 4 },
        { v->footer_off, VHD_FOOTER_LEN },
    };
    static const char *const part_name[4] = { "footer copy",
        "dynamic header", "BAT", "footer" };
    for (int i = 2; i >= 1; i--)         /* the BAT first: it moved */
        for (int j = 0; j < 4; j++)
            if (j != i && ranges_overlap(part[i][0], part[i][1], part[j][0],
                                         part[j][1]))
                return df_corrupt(err, n, i == 1 ? fo + VHD_OFF_F_DATA_OFFSET
                                  : ho + VHD_OFF_H_TABLE_OFFSET, "%s at %"
                                  PRIu64 " (%" PRIu64 " bytes) overlaps the "
                                  "%s at %" PRIu64, part_name[i], part[i][0],
                                  part[i][1], part_name[j], part[j][0]);
    if (vhd_load_bat(img, toff, err) < 0 ||
        vhd_check_overlaps(img, hoff, toff, err) < 0)
        return -1;

    image_set_prop(img, "block_size", "%" PRIu32, v->block_size);
    if (v->disk_type != VHD_TYPE_DIFF)
        return 0;
    memcpy(v->parent_id, h + VHD_OFF_H_PARENT_ID, 16);
    v->parent_timestamp = get_be32(h + VHD_OFF_H_PARENT_TIME);
    char s[40];
    guid_format_plain(v->parent_id, s, sizeof(s));
    image_set_prop(img, "parent_unique_id", "%s", s);
    snprintf(img->parent_id, sizeof(img->parent_id), "vhd uuid %s", s);
    img->has_parent_ref = true;
    img->parent_by_id = true;
    return vhd_parent_name(img, h, err);
}

static int vhd_open(struct image *img, struct df_error *err)
{
    struct vhd *v = img->priv;
    uint8_t f[VHD_FOOTER_LEN];
    const char *n = img->name;

    if (vhd_read_footer(img, f, err) < 0)
        return -1;
    int64_t fo = (int64_t)v->footer_off;
    uint32_t ver = get_be32(f + VHD_OFF_F_VERSION);
    if (ver >> 16 != 1)
        return df_corrupt(err, n, fo + VHD_OFF_F_VERSION, "format version "
                          "0x%08" PRIx32 " not supported (1.x)", ver);
    v->disk_type = get_be32(f + VHD_OFF_F_DISK_TYPE);
    if (v->disk_type != VHD_TYPE_FIXED && v->disk_type != VHD_TYPE_DYNAMIC &&
        v->disk_type != VHD_TYPE_DIFF)
        return df_corrupt(err, n, fo + VHD_OFF_F_DISK_TYPE, "disk type %"
                          PRIu32 " unknown (2 fixed, 3 dynamic, "
                          "4 differencing)", v->disk_type);
    if (v->footer_off == 0 && v->disk_type == VHD_TYPE_FIXED)
        return df_corrupt(err, n, 0, "fixed VHD footer at offset 0 and "
                          "none at the end of the file");
    v->timestamp = get_be32(f + VHD_OFF_F_TIMESTAMP);
    memcpy(v->unique_id, f + VHD_OFF_F_UNIQUE_ID, 16);
    img->size = vhd_virtual_size(f);

    char s[40];
    const uint8_t *c = f + VHD_OFF_F_CREATOR;
    int len = 4;
    while (len > 0 && (c[len - 1] == ' ' || c[len - 1] == '\0'))
        len--;          /* "win ", "tap\0", "wa\0\0" */
    for (int i = 0; i < len; i++)
        s[i] = c[i] >= 0x20 && c[i] < 0x7f ? (char)c[i] : '.';
    s[len] = '\0';
    uint32_t cver = get_be32(f + VHD_OFF_F_CREATOR_VER);
    image_set_prop(img, "type", "%s", v->disk_type == VHD_TYPE_FIXED ?
                   "fixed" : v->disk_type == VHD_TYPE_DYNAMIC ? "dynamic" :
                   "differencing");
    image_set_prop(img, "creator", "%s %" PRIu32 ".%" PRIu32, s, cver >> 16,
                   cver & 0xffff);
    guid_format_plain(v->unique_id, s, sizeof(s));
    image_set_prop(img, "unique_id", "%s", s);
    snprintf(img->layer_id, sizeof(img->layer_id), "vhd uuid %s", s);

    if (v->disk_type == VHD_TYPE_FIXED) {
        if (img->size > v->footer_off)
            return df_corrupt(err, n, fo + VHD_OFF_F_CUR_SIZE, "virtual "
                              "size %" PRIu64 " larger than the data before "
                              "the footer (%" PRIu64 " bytes)", img->size,
                              v->footer_off);
        return 0;
    }
    return vhd_open_dynamic(img, f, err);
}

/*
 * runs_locate_fn.  In a differencing image's allocated block the run
 * follows the sector bitmap, VHD_BITMAP_CHUNK bytes of it at most.
 */
static int vhd_locate(struct image *img, uint64_t off, uint64_t end,
                      enum extent_state *state, uint64_t *run_end,
                      uint64_t *file_off, struct df_error *err)
{
    struct vhd *v = img->priv;

    if (v->disk_type == VHD_TYPE_FIXED) {
        *state = EXT_DATA;
        *run_end = end;
        *file_off = off;
        return 0;
    }
    uint64_t b = off >> v->block_shift;
    uint64_t bstart = b << v->block_shift;
    uint32_t e = v->bat[b];
    *run_end = min_u64(bstart + v->block_size, end);
    if (e == VHD_BAT_FREE) {
        *state = v->disk_type == VHD_TYPE_DIFF ? EXT_PARENT : EXT_HOLE;
        return 0;
    }
    uint64_t boff = (uint64_t)e * VHD_SECTOR;
    *file_off = boff + v->bitmap_len + (off - bstart);
    *state = EXT_DATA;
    if (v->disk_type != VHD_TYPE_DIFF)
        return 0;

    uint8_t bm[VHD_BITMAP_CHUNK];
    uint64_t s = (off - bstart) / VHD_SECTOR;
    uint64_t s_end = div_round_up(*run_end - bstart, VHD_SECTOR);
    uint64_t byte0 = s / 8;
    uint64_t nbytes = min_u64(VHD_BITMAP_CHUNK, div_round_up(s_end, 8) -
                              byte0);
    if (df_file_pread(&img->file, bm, (size_t)nbytes, boff + byte0, err) < 0)
        return -1;
    s_end = min_u64(s_end, (byte0 + nbytes) * 8);
    bool set = bm[s / 8 - byte0] & (0x80u >> (s % 8));
    uint64_t t = s + 1;
    while (t < s_end &&
           !!(bm[t / 8 - byte0] & (0x80u >> (t % 8))) == set)
        t++;
    *run_end = min_u64(bstart + t * VHD_SECTOR, *run_end);
    *state = set ? EXT_DATA : EXT_PARENT;
    return 0;
}

static int vhd_map(struct image *img, uint64_t off, uint64_t len,
                   struct extent_list *out, struct df_error *err)
{
    return runs_map(img, off, len, out, vhd_locate, err);
}

static int vhd_read(struct image *img, void *buf, size_t len, uint64_t off,
                    struct df_error *err)
{
    return runs_read(img, buf, len, off, vhd_locate, err);
}

static int vhd_host_run(struct image *img, uint64_t off, uint64_t len,
                        uint64_t *file_off, struct df_error *err)
{
    return runs_host(img, off, len, file_off, vhd_locate, err);
}

/*
 * The child names its parent by the parent footer's unique id.  It also
 * records the parent's timestamp, but QEMU ignores it and copying or
 * touching a parent (Hyper-V rewrites footers) changes it while the data
 * stays valid: a mismatch is shown as the property
 * "parent_timestamp_mismatch", not refused.  Returns -2 (not -1) when
 * the parent is the one named but fails a later check (see image.h).
 */
static int vhd_check_parent(struct image *child, struct image *parent,
                            struct df_error *err)
{
    const struct vhd *c = child->priv;
    char a[40], b[40];

    if (parent->drv != &vhd_driver)
        return df_corrupt(err, child->name, -1, "parent %s is a %s image, "
                          "not vhd", parent->name, parent->drv->name);
    const struct vhd *p = parent->priv;
    if (memcmp(p->unique_id, c->parent_id, 16)) {
        guid_format_plain(c->parent_id, a, sizeof(a));
        guid_format_plain(p->unique_id, b, sizeof(b));
        return df_corrupt(err, child->name, -1, "parent unique id %s does "
                          "not match %s (unique id %s)", a, parent->name, b);
    }
    if (parent->size != child->size) {
        df_corrupt(err, child->name, -1, "virtual size %" PRIu64 " differs "
                   "from parent %s (%" PRIu64 ")", child->size, parent->name,
                   parent->size);
        return -2;
    }
    if (p->timestamp != c->parent_timestamp)
        image_set_prop(child, "parent_timestamp_mismatch", "child records %"
                       PRIu32 ", parent has %" PRIu32, c->parent_timestamp,
                       p->timestamp);
    return 0;
}

static void vhd_close(struct image *img)
{
    struct vhd *v = img->priv;
    free(v->bat);
    v->bat = NULL;
}

const struct image_driver vhd_driver = {
    .name = "vhd",
    .priv_size = sizeof(struct vhd),
    .caps = IMG_THREAD_SAFE,
    .probe = vhd_probe,
    .open = vhd_open,
    .map = vhd_map,
    .host_run = vhd_host_run,
    .read = vhd_read,
    .check_parent = vhd_check_parent,
    .close = vhd_close,
};
