/*
 * vhdx.c: VHDX (Hyper-V) images, fixed, dynamic and differencing:
 * probe, open, map, read.  Read-only.  The log replay is vhdx_log.c's
 * (shared state and constants: vhdx_int.h).
 *
 * Spec: Microsoft [MS-VHDX] (summary: docs/formats.md section 5.4).  All
 * little endian; checksums are CRC-32C over the structure with its
 * checksum field zeroed.
 *
 *   0         file identifier "vhdxfile" (+ UTF-16 creator)
 *   64 KiB    header 1  "head", 4 KiB checksummed: sequence number,
 *   128 KiB   header 2  FileWriteGuid, DataWriteGuid, LogGuid, Version
 *   192 KiB   region table "regi", 64 KiB checksummed, 32-byte entries:
 *   256 KiB   its copy      GUID, u64 file offset, u32 length, u32 required
 *   >= 1 MiB  log, BAT and metadata regions, payload blocks
 *
 *   metadata region: table "metadata" (64 KiB) of 32-byte entries naming
 *     items by GUID: file parameters (block size, LeaveBlockAllocated,
 *     HasParent), virtual disk size, virtual disk id, logical and
 *     physical sector size, parent locator (UTF-16LE key/value pairs)
 *   BAT: u64 entries, bits 0..2 state, bits 20..63 file offset in MiB.
 *     Payload block b is entry b + b / chunk_ratio; every chunk_ratio
 *     payload entries are followed by the sector bitmap entry of that
 *     chunk (differencing images: one bit per logical sector, LSB first,
 *     1 = in this file, 0 = in the parent).
 *   log region: a ring of 4 KiB sectors; an entry is a "loge" header
 *     and 32-byte descriptors ("desc": one 4 KiB write, "zero": a
 *     range), then one "data" sector per "desc"; all carry the entry's
 *     sequence number, the entry a CRC-32C.
 *
 * The current header is the valid one (signature, checksum) with the
 * higher sequence number; the region table is the first valid copy.
 * Disk2VHD writes both headers alike, sequence numbers included: equal
 * sequence numbers are accepted when the headers' fields (the first 80
 * bytes, checksum included) are identical, and header 1 is used (as
 * qemu); otherwise neither is current and the file is refused.
 *
 * Placement ([MS-VHDX] 2.2, 2.3): the log and every region start at a
 * multiple of 1 MiB past the header section, have a length that is a
 * multiple of 1 MiB, lie inside the file and overlap neither each other
 * nor the header section; metadata items lie inside their region, past
 * the table, without overlapping each other; a payload or sector bitmap
 * block lies inside the file and overlaps none of these (checked when
 * its BAT entry is first used, as the BAT is not loaded whole).  The
 * virtual disk size is above 0; one that is not a multiple of 512 reads
 * as its whole 512-byte sectors (as qemu).
 *
 * A non-zero LogGuid means the log holds metadata writes that may not
 * have reached their place: vhdx_log.c replays it into memory and
 * every read of the file goes through vhdx_pread(), or refuses it.
 *
 * Also refused with exit 5: Version != 1, unknown regions or metadata
 * items flagged required, parent locators of a type other than VHDX's,
 * BAT states outside the spec, anything that points outside the file.
 *
 * The BAT is not loaded whole (64 TiB at 1 MiB blocks is 512 MiB of
 * BAT): map and read go through a one-page cache of BAT entries and a
 * cache of one payload block's sector bitmap, which sequential access
 * (the engine's) keeps warm.
 *
 * Threads (IMG_THREAD_SAFE): map and read run concurrently.  The two
 * caches are under s->lock, held only while runs are looked up (reading
 * a BAT page or a bitmap on a miss); a lookup copies out what it found
 * (state, length, file offset), and the data is read with no lock held,
 * one pread per stretch contiguous in the file.  The replayed log is
 * read-only after open.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/runs.h"
#include "image/vhdx_int.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/guid.h"
#include "util/overflow.h"
#include "util/utf16.h"

static const uint8_t vhdx_guid_bat[16] = GUID_MIXED(0x2DC27766u, 0xF623,
    0x4200, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
static const uint8_t vhdx_guid_metadata[16] = GUID_MIXED(0x8B7CA206u, 0x4790,
    0x4B9A, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
static const uint8_t vhdx_guid_parent_type[16] = GUID_MIXED(0xB04AEFB7u,
    0xD19E, 0x4A81, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13);

enum vhdx_item {
    VHDX_ITEM_FILE_PARAMS,
    VHDX_ITEM_DISK_SIZE,
    VHDX_ITEM_DISK_ID,
    VHDX_ITEM_LOGICAL_SECTOR,
    VHDX_ITEM_PHYSICAL_SECTOR,
    VHDX_ITEM_PARENT_LOCATOR,
    VHDX_NITEMS
};

static const struct vhdx_item_desc {
    const char *name;
    uint8_t guid[16];
    uint32_t len;           /* exact length; 0 = variable */
    bool required;          /* must be present in every image */
} vhdx_items[VHDX_NITEMS] = {
    [VHDX_ITEM_FILE_PARAMS] = { "file parameters", GUID_MIXED(0xCAA16737u,
        0xFA36, 0x4D43, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B),
        8, true },
    [VHDX_ITEM_DISK_SIZE] = { "virtual disk size", GUID_MIXED(0x2FA54224u,
        0xCD1B, 0x4876, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8),
        8, true },
    [VHDX_ITEM_DISK_ID] = { "virtual disk id", GUID_MIXED(0xBECA12ABu,
        0xB2E6, 0x4523, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46),
        16, true },
    [VHDX_ITEM_LOGICAL_SECTOR] = { "logical sector size", GUID_MIXED(
        0x8141BF1Du, 0xA96F, 0x4709, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA,
        0xAB, 0x5F), 4, true },
    [VHDX_ITEM_PHYSICAL_SECTOR] = { "physical sector size", GUID_MIXED(
        0xCDA348C7u, 0x445D, 0x4471, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51,
        0xC5, 0x56), 4, true },
    [VHDX_ITEM_PARENT_LOCATOR] = { "parent locator", GUID_MIXED(0xA8D35F2Du,
        0xB30B, 0x454D, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C),
        0, false },
};

/* Where a metadata item lies inside the metadata region. */
struct vhdx_item_loc {
    bool found;
    uint32_t off;
    uint32_t len;
    uint64_t entry_off;     /* file offset of its table entry (messages) */
    enum vhdx_item item;
};

/* What one virtual offset maps to: a run inside one payload block. */
struct vhdx_run {
    enum extent_state state;
    uint64_t len;
    uint64_t file_off;              /* EXT_DATA: where the bytes are */
};

static int vhdx_probe(const struct image_probe *p)
{
    if (p->head_len >= VHDX_SIGNATURE_LEN &&
        !memcmp(p->head, VHDX_SIGNATURE, VHDX_SIGNATURE_LEN))
        return 100;
    return 0;
}

/* Is the structure at buf (len bytes) intact: signature and CRC-32C? */
bool vhdx_crc_ok(const uint8_t *buf, size_t len, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t c = crc32c(0, buf, crc_off);
    c = crc32c(c, zero, 4);
    c = crc32c(c, buf + crc_off + 4, len - crc_off - 4);
    return c == get_le32(buf + crc_off);
}

/*
 * Read a header or region table copy at off; says in *why what is wrong
 * with it, or returns true when its signature and checksum are good.
 */
static int vhdx_read_checked(struct image *img, uint8_t *buf, size_t len,
                             uint64_t off, const char *sig, size_t crc_off,
                             const char **why, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;

    *why = NULL;
    if (!range_within(off, len, s->file_size)) {
        *why = "truncated";
        return 0;
    }
    if (vhdx_pread(img, buf, len, off, err) < 0)
        return -1;
    if (memcmp(buf, sig, 4))
        *why = "bad signature";
    else if (!vhdx_crc_ok(buf, len, crc_off))
        *why = "checksum mismatch";
    return 0;
}

/* Pick the current header (module comment); refuse a dirty log. */
static int vhdx_open_header(struct image *img, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint8_t *h[2] = { NULL, NULL };
    const char *why[2];
    static const uint64_t offs[2] = { VHDX_HEADER1_OFF, VHDX_HEADER2_OFF };
    int ret = -1, cur = -1;

    for (int i = 0; i < 2; i++) {
        h[i] = malloc(VHDX_HEADER_LEN);
        if (!h[i]) {
            df_io(err, img->name, ENOMEM, "cannot allocate header");
            goto out;
        }
        if (vhdx_read_checked(img, h[i], VHDX_HEADER_LEN, offs[i], "head",
                              VHDX_HDR_OFF_CRC, &why[i], err) < 0)
            goto out;
    }
    if (why[0] && why[1]) {
        df_corrupt(err, img->name, VHDX_HEADER1_OFF,
                   "no valid header (header 1: %s, header 2: %s)", why[0],
                   why[1]);
        goto out;
    }
    if (why[0]) {
        cur = 1;
    } else if (why[1]) {
        cur = 0;
    } else {
        uint64_t seq1 = get_le64(h[0] + VHDX_HDR_OFF_SEQ);
        uint64_t seq2 = get_le64(h[1] + VHDX_HDR_OFF_SEQ);
        /* [MS-VHDX] 2.2.2: then neither is current, unless they are
         * the same header (Disk2VHD; module comment). */
        if (seq1 == seq2 && memcmp(h[0], h[1], VHDX_HDR_FIELDS_LEN)) {
            df_corrupt(err, img->name, VHDX_HEADER1_OFF + VHDX_HDR_OFF_SEQ,
                       "both headers have sequence number %" PRIu64
                       " and differ", seq1);
            goto out;
        }
        cur = seq2 > seq1 ? 1 : 0;
    }

    const uint8_t *hd = h[cur];
    uint64_t hoff = offs[cur];
    uint16_t version = get_le16(hd + VHDX_HDR_OFF_VERSION);
    if (version != VHDX_VERSION) {
        df_corrupt(err, img->name, (int64_t)(hoff + VHDX_HDR_OFF_VERSION),
                   "header %d: version %u is not 1", cur + 1, version);
        goto out;
    }
    if (!guid_is_zero(hd + VHDX_HDR_OFF_LOG_GUID) &&
        vhdx_replay_log(img, hd, hoff, err) < 0)
        goto out;
    memcpy(s->data_write_guid, hd + VHDX_HDR_OFF_DATA_WRITE_GUID, 16);
    s->log_off = get_le64(hd + VHDX_HDR_OFF_LOG_OFFSET);
    s->log_len = get_le32(hd + VHDX_HDR_OFF_LOG_LENGTH);
    s->log_field_off = hoff + VHDX_HDR_OFF_LOG_LENGTH;
    ret = 0;
out:
    free(h[0]);
    free(h[1]);
    return ret;
}

/* The first span of s->spans [off, +len) overlaps, or NULL. */
static const struct vhdx_span *vhdx_span_hit(const struct vhdx_priv *s,
                                             uint64_t off, uint64_t len)
{
    for (size_t i = 0; i < s->nspans; i++)
        if (ranges_overlap(off, len, s->spans[i].off, s->spans[i].len))
            return &s->spans[i];
    return NULL;
}

/*
 * Check the placement of the log or a region (module comment), then
 * add it to s->spans (room for it is the caller's).  field_off: where
 * the file says it (messages).
 */
static int vhdx_check_region(struct image *img, const char *what,
                             uint64_t field_off, uint64_t off, uint64_t len,
                             struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    int64_t fo = (int64_t)field_off;
    const struct vhdx_span *hit;

    if (off < VHDX_HEADER_SECTION)
        return df_corrupt(err, img->name, fo,
                          "%s at offset %" PRIu64 " is inside the "
                          "header section (first 1 MiB)", what, off);
    if (off % VHDX_ALIGN || len % VHDX_ALIGN || !len)
        return df_corrupt(err, img->name, fo,
                          "%s [%" PRIu64 ", +%" PRIu64 ") is not "
                          "aligned to 1 MiB (offset and length multiples "
                          "of 1 MiB, length above 0)", what, off, len);
    if (!range_within(off, len, s->file_size))
        return df_corrupt(err, img->name, fo,
                          "%s [%" PRIu64 ", +%" PRIu64 ") runs past "
                          "end of file (%" PRIu64 " bytes)", what, off, len,
                          s->file_size);
    if ((hit = vhdx_span_hit(s, off, len)))
        return df_corrupt(err, img->name, fo,
                          "%s [%" PRIu64 ", +%" PRIu64 ") overlaps "
                          "the %s [%" PRIu64 ", +%" PRIu64 ")", what, off,
                          len, hit->what, hit->off, hit->len);
    s->spans[s->nspans++] = (struct vhdx_span){ off, len, what };
    return 0;
}

/* Find the BAT and metadata regions in the first valid region table. */
static int vhdx_open_regions(struct image *img, uint64_t *meta_off,
                             uint64_t *meta_len, uint64_t *bat_len,
                             struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    static const uint64_t offs[2] = { VHDX_RT1_OFF, VHDX_RT2_OFF };
    uint8_t *rt = NULL;
    const char *why[2] = { NULL, NULL };
    bool have_bat = false, have_meta = false;
    int ret = -1, cur = -1;

    rt = malloc(VHDX_RT_LEN);
    if (!rt) {
        df_io(err, img->name, ENOMEM, "cannot allocate region table");
        goto out;
    }
    for (int i = 0; i < 2 && cur < 0; i++) {
        if (vhdx_read_checked(img, rt, VHDX_RT_LEN, offs[i], "regi",
                              VHDX_RT_OFF_CRC, &why[i], err) < 0)
            goto out;
        if (!why[i])
            cur = i;
    }
    if (cur < 0) {
        df_corrupt(err, img->name, VHDX_RT1_OFF,
                   "no valid region table (table 1: %s, table 2: %s)",
                   why[0], why[1]);
        goto out;
    }
    uint32_t count = get_le32(rt + VHDX_RT_OFF_COUNT);
    if (count > VHDX_RT_MAX_ENTRIES) {
        df_corrupt(err, img->name, (int64_t)(offs[cur] + VHDX_RT_OFF_COUNT),
                   "region table entry count %" PRIu32 " above %d", count,
                   VHDX_RT_MAX_ENTRIES);
        goto out;
    }
    /* The header section, the log and every region, without overlap. */
    s->spans = malloc((count + 2) * sizeof(*s->spans));
    if (!s->spans) {
        df_io(err, img->name, ENOMEM, "cannot allocate region list");
        goto out;
    }
    s->spans[s->nspans++] = (struct vhdx_span){ 0, VHDX_HEADER_SECTION,
                                                "header section" };
    if (s->log_len &&
        vhdx_check_region(img, "log region", s->log_field_off, s->log_off,
                          s->log_len, err) < 0)
        goto out;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = rt + VHDX_RT_HEADER_LEN + i * VHDX_RT_ENTRY_LEN;
        uint64_t eoff = offs[cur] + VHDX_RT_HEADER_LEN +
                        (uint64_t)i * VHDX_RT_ENTRY_LEN;
        uint64_t off = get_le64(e + VHDX_RTE_OFF_FILE_OFF);
        uint64_t len = get_le32(e + VHDX_RTE_OFF_LENGTH);
        bool is_bat = !memcmp(e, vhdx_guid_bat, 16);
        bool is_meta = !memcmp(e, vhdx_guid_metadata, 16);
        char gs[40];

        if (!is_bat && !is_meta) {
            if (get_le32(e + VHDX_RTE_OFF_REQUIRED) & 1) {
                guid_format_mixed(e, gs, sizeof(gs));
                df_corrupt(err, img->name, (int64_t)eoff,
                           "unknown required region %s", gs);
                goto out;
            }
            /* Ignored, but it must not lie over the others. */
            if (vhdx_check_region(img, "unknown region", eoff, off, len,
                                  err) < 0)
                goto out;
            continue;
        }
        if ((is_bat && have_bat) || (is_meta && have_meta)) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "region table lists the %s region twice",
                       is_bat ? "BAT" : "metadata");
            goto out;
        }
        if (vhdx_check_region(img, is_bat ? "BAT region" :
                              "metadata region", eoff, off, len, err) < 0)
            goto out;
        if (is_bat) {
            have_bat = true;
            s->bat_off = off;
            *bat_len = len;
        } else {
            have_meta = true;
            *meta_off = off;
            *meta_len = len;
        }
    }
    if (!have_bat || !have_meta) {
        df_corrupt(err, img->name, (int64_t)offs[cur],
                   "region table has no %s region",
                   have_bat ? "metadata" : "BAT");
        goto out;
    }
    ret = 0;
out:
    free(rt);
    return ret;
}

/*
 * UTF-16LE (len bytes) to UTF-8 in out (olen bytes, NUL-terminated).
 * Returns false on an odd length, a lone surrogate, a NUL or no room.
 */
static bool vhdx_utf16_to_utf8(const uint8_t *in, size_t len, char *out,
                               size_t olen)
{
    return utf16_to_utf8(in, len, 0, out, olen) >= 0;
}

/* Keys of the VHDX parent locator ([MS-VHDX] 2.6.2.6.3). */
enum vhdx_pl_key {
    VHDX_PL_LINKAGE,
    VHDX_PL_LINKAGE2,
    VHDX_PL_RELATIVE,
    VHDX_PL_VOLUME,
    VHDX_PL_ABSOLUTE,
    VHDX_PL_NKEYS
};
static const char *const vhdx_pl_keys[VHDX_PL_NKEYS] = {
    "parent_linkage", "parent_linkage2", "relative_path", "volume_path",
    "absolute_win32_path",
};

/*
 * Parse the parent locator item (buf, len bytes, read from file offset
 * foff): linkage GUIDs into priv, the parent's path into
 * img->parent_name.
 */
static int vhdx_parse_locator(struct image *img, const uint8_t *buf,
                              uint32_t len, uint64_t foff,
                              struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    char *vals[VHDX_PL_NKEYS] = { NULL };
    char key[64];
    int ret = -1;

    if (len < VHDX_PL_HEADER_LEN) {
        df_corrupt(err, img->name, (int64_t)foff,
                   "parent locator length %" PRIu32 " below %d", len,
                   VHDX_PL_HEADER_LEN);
        goto out;
    }
    if (memcmp(buf, vhdx_guid_parent_type, 16)) {
        char gs[40];
        guid_format_mixed(buf, gs, sizeof(gs));
        df_corrupt(err, img->name, (int64_t)foff,
                   "parent locator type %s is not VHDX's", gs);
        goto out;
    }
    uint32_t count = get_le16(buf + VHDX_PL_OFF_COUNT);
    if (!range_within(VHDX_PL_HEADER_LEN,
                      (uint64_t)count * VHDX_PL_ENTRY_LEN, len)) {
        df_corrupt(err, img->name, (int64_t)(foff + VHDX_PL_OFF_COUNT),
                   "parent locator: %" PRIu32 " entries do not fit in "
                   "%" PRIu32 " bytes", count, len);
        goto out;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = buf + VHDX_PL_HEADER_LEN + i * VHDX_PL_ENTRY_LEN;
        uint64_t eoff = foff + VHDX_PL_HEADER_LEN +
                        (uint64_t)i * VHDX_PL_ENTRY_LEN;
        uint32_t koff = get_le32(e), voff = get_le32(e + 4);
        uint32_t klen = get_le16(e + 8), vlen = get_le16(e + 10);
        char val[PATH_MAX];

        if (!klen || !range_within(koff, klen, len) ||
            !range_within(voff, vlen, len)) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "parent locator entry %" PRIu32 ": key or value "
                       "outside the item (%" PRIu32 " bytes)", i, len);
            goto out;
        }
        if (!vhdx_utf16_to_utf8(buf + koff, klen, key, sizeof(key)))
            continue;       /* a key longer than ours is not ours */
        int k = -1;
        for (int j = 0; j < VHDX_PL_NKEYS; j++)
            if (!strcmp(key, vhdx_pl_keys[j]))
                k = j;
        if (k < 0)
            continue;
        if (vals[k]) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "parent locator: key %s appears twice", key);
            goto out;
        }
        if (!vhdx_utf16_to_utf8(buf + voff, vlen, val, sizeof(val))) {
            df_corrupt(err, img->name, (int64_t)(foff + voff),
                       "parent locator: %s is not valid UTF-16 or longer "
                       "than %d bytes", key, PATH_MAX - 1);
            goto out;
        }
        vals[k] = strdup(val);
        if (!vals[k]) {
            df_io(err, img->name, ENOMEM, "cannot allocate locator");
            goto out;
        }
    }
    if (!vals[VHDX_PL_LINKAGE]) {
        df_corrupt(err, img->name, (int64_t)foff,
                   "parent locator has no parent_linkage");
        goto out;
    }
    if (!guid_parse_mixed(vals[VHDX_PL_LINKAGE], s->linkage)) {
        df_corrupt(err, img->name, (int64_t)foff,
                   "parent_linkage '%.64s' is not a GUID",
                   vals[VHDX_PL_LINKAGE]);
        goto out;
    }
    if (vals[VHDX_PL_LINKAGE2]) {
        if (!guid_parse_mixed(vals[VHDX_PL_LINKAGE2], s->linkage2)) {
            df_corrupt(err, img->name, (int64_t)foff,
                       "parent_linkage2 '%.64s' is not a GUID",
                       vals[VHDX_PL_LINKAGE2]);
            goto out;
        }
        s->has_linkage2 = true;
    }
    /*
     * The relative path first (it survives moving the pair together),
     * then the Windows absolute and volume paths, which on Linux only
     * lend their last component to --parent-dir.
     */
    static const int order[3] = { VHDX_PL_RELATIVE, VHDX_PL_ABSOLUTE,
                                  VHDX_PL_VOLUME };
    for (int j = 0; j < 3 && !img->parent_name[0]; j++) {
        const char *v = vals[order[j]];
        if (!v || !v[0])
            continue;
        snprintf(img->parent_name, sizeof(img->parent_name), "%s", v);
        for (char *c = img->parent_name; *c; c++)
            if (*c == '\\')
                *c = '/';
    }
    /* No usable path: find the parent by its DataWriteGuid. */
    img->parent_by_id = !img->parent_name[0];
    ret = 0;
out:
    for (int j = 0; j < VHDX_PL_NKEYS; j++)
        free(vals[j]);
    return ret;
}

/* Read a (small, fixed-length) metadata item into buf. */
static int vhdx_read_item(struct image *img, uint64_t meta_off,
                          const struct vhdx_item_loc *loc, void *buf,
                          struct df_error *err)
{
    return vhdx_pread(img, buf, loc->len, meta_off + loc->off,
                         err);
}

/* A sector size item: 512 or 4096. */
static int vhdx_read_sector_size(struct image *img, uint64_t meta_off,
                                 const struct vhdx_item_loc *loc,
                                 uint32_t *out, struct df_error *err)
{
    uint8_t item[4];

    if (vhdx_read_item(img, meta_off, loc, item, err) < 0)
        return -1;
    *out = get_le32(item);
    if (*out != 512 && *out != 4096)
        return df_corrupt(err, img->name, (int64_t)(meta_off + loc->off),
                          "%s %" PRIu32 " is not 512 or 4096",
                          vhdx_items[loc->item].name, *out);
    return 0;
}

/* The metadata table and the items diskferry needs. */
static int vhdx_open_metadata(struct image *img, uint64_t meta_off,
                              uint64_t meta_len, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    struct vhdx_item_loc loc[VHDX_NITEMS];
    struct vhdx_span *items = NULL;     /* every item's bytes so far */
    size_t nitems = 0;
    uint8_t *tab = NULL, *pl = NULL;
    uint8_t item[16];
    int ret = -1;

    memset(loc, 0, sizeof(loc));
    tab = malloc(VHDX_META_TABLE_LEN);
    if (!tab) {
        df_io(err, img->name, ENOMEM, "cannot allocate metadata table");
        goto out;
    }
    if (vhdx_pread(img, tab, VHDX_META_TABLE_LEN, meta_off,
                      err) < 0)
        goto out;
    if (memcmp(tab, VHDX_META_SIGNATURE, 8)) {
        df_corrupt(err, img->name, (int64_t)meta_off,
                   "metadata table signature is not 'metadata'");
        goto out;
    }
    uint32_t count = get_le16(tab + VHDX_META_OFF_COUNT);
    if (count > VHDX_META_MAX_ENTRIES) {
        df_corrupt(err, img->name, (int64_t)(meta_off + VHDX_META_OFF_COUNT),
                   "metadata entry count %" PRIu32 " above %d", count,
                   VHDX_META_MAX_ENTRIES);
        goto out;
    }
    items = malloc((count + 1) * sizeof(*items));
    if (!items) {
        df_io(err, img->name, ENOMEM, "cannot allocate metadata items");
        goto out;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = tab + VHDX_META_HEADER_LEN +
                           i * VHDX_META_ENTRY_LEN;
        uint64_t eoff = meta_off + VHDX_META_HEADER_LEN +
                        (uint64_t)i * VHDX_META_ENTRY_LEN;
        uint32_t off = get_le32(e + VHDX_ME_OFF_OFFSET);
        uint32_t len = get_le32(e + VHDX_ME_OFF_LENGTH);
        uint32_t flags = get_le32(e + VHDX_ME_OFF_FLAGS);
        char gs[40];
        int k = -1;

        for (int j = 0; j < VHDX_NITEMS; j++)
            if (!memcmp(e, vhdx_items[j].guid, 16))
                k = j;
        const char *name = k < 0 ? "unknown" : vhdx_items[k].name;
        if (len > VHDX_META_ITEM_MAX_LEN ||
            (len && off < VHDX_META_ITEM_MIN_OFF) ||
            !range_within(off, len, meta_len)) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "metadata item '%s' [%" PRIu32 ", +%" PRIu32 ") "
                       "outside the metadata region (%" PRIu64 " bytes)",
                       name, off, len, meta_len);
            goto out;
        }
        for (size_t j = 0; j < nitems; j++)
            if (ranges_overlap(off, len, items[j].off, items[j].len)) {
                df_corrupt(err, img->name, (int64_t)eoff,
                           "metadata item '%s' [%" PRIu32 ", +%" PRIu32
                           ") overlaps item '%s' [%" PRIu64 ", +%" PRIu64
                           ")", name, off, len, items[j].what,
                           items[j].off, items[j].len);
                goto out;
            }
        if (len)
            items[nitems++] = (struct vhdx_span){ off, len, name };
        if (k < 0) {
            if (flags & VHDX_ME_FLAG_REQUIRED) {
                guid_format_mixed(e, gs, sizeof(gs));
                df_corrupt(err, img->name, (int64_t)eoff,
                           "unknown required metadata item %s", gs);
                goto out;
            }
            continue;
        }
        const struct vhdx_item_desc *d = &vhdx_items[k];
        if (loc[k].found) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "metadata item '%s' appears twice", d->name);
            goto out;
        }
        if (d->len && len != d->len) {
            df_corrupt(err, img->name, (int64_t)eoff,
                       "metadata item '%s' length %" PRIu32 " is not %"
                       PRIu32, d->name, len, d->len);
            goto out;
        }
        loc[k] = (struct vhdx_item_loc){ true, off, len, eoff, k };
    }
    for (int j = 0; j < VHDX_NITEMS; j++)
        if (vhdx_items[j].required && !loc[j].found) {
            df_corrupt(err, img->name, (int64_t)meta_off,
                       "metadata item '%s' missing", vhdx_items[j].name);
            goto out;
        }

    /* File parameters. */
    const struct vhdx_item_loc *l = &loc[VHDX_ITEM_FILE_PARAMS];
    if (vhdx_read_item(img, meta_off, l, item, err) < 0)
        goto out;
    uint64_t foff = meta_off + l->off;
    s->block_size = get_le32(item);
    uint32_t fp = get_le32(item + 4);
    if (!is_pow2(s->block_size) || s->block_size < VHDX_MIN_BLOCK_SIZE ||
        s->block_size > VHDX_MAX_BLOCK_SIZE) {
        df_corrupt(err, img->name, (int64_t)foff,
                   "block size %" PRIu32 " is not a power of two in "
                   "1 MiB..256 MiB", s->block_size);
        goto out;
    }
    s->is_fixed = fp & VHDX_FP_LEAVE_ALLOCATED;
    s->has_parent = fp & VHDX_FP_HAS_PARENT;

    l = &loc[VHDX_ITEM_DISK_SIZE];
    if (vhdx_read_item(img, meta_off, l, item, err) < 0)
        goto out;
    img->size = get_le64(item);
    if (img->size > VHDX_MAX_SIZE || img->size < 512) {
        df_corrupt(err, img->name, (int64_t)(meta_off + l->off),
                   "virtual disk size %" PRIu64 " is %s", img->size,
                   img->size < 512 ? "below 512" : "above 64 TiB");
        goto out;
    }
    /* Whole sectors only (module comment). */
    img->size -= img->size % 512;

    if (vhdx_read_sector_size(img, meta_off, &loc[VHDX_ITEM_LOGICAL_SECTOR],
                              &s->logical_sector, err) < 0 ||
        vhdx_read_sector_size(img, meta_off,
                              &loc[VHDX_ITEM_PHYSICAL_SECTOR],
                              &s->physical_sector, err) < 0)
        goto out;

    l = &loc[VHDX_ITEM_PARENT_LOCATOR];
    if (s->has_parent) {
        if (!l->found) {
            df_corrupt(err, img->name, (int64_t)meta_off,
                       "differencing image without a parent locator");
            goto out;
        }
        pl = malloc(l->len ? l->len : 1);
        if (!pl) {
            df_io(err, img->name, ENOMEM, "cannot allocate locator");
            goto out;
        }
        if (vhdx_pread(img, pl, l->len, meta_off + l->off,
                          err) < 0 ||
            vhdx_parse_locator(img, pl, l->len, meta_off + l->off, err) < 0)
            goto out;
        img->has_parent_ref = true;
    }
    ret = 0;
out:
    free(items);
    free(tab);
    free(pl);
    return ret;
}

static int vhdx_open(struct image *img, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint64_t meta_off = 0, meta_len = 0, bat_len = 0;
    uint8_t ident[VHDX_SIGNATURE_LEN];
    char gs[40];

    pthread_mutex_init(&s->lock, NULL);
    s->lock_ready = true;
    s->bat_page_no = UINT64_MAX;
    s->bitmap_block = UINT64_MAX;
    s->file_size = img->file.size;
    if (vhdx_pread(img, ident, sizeof(ident), 0, err) < 0)
        return -1;
    if (memcmp(ident, VHDX_SIGNATURE, VHDX_SIGNATURE_LEN))
        return df_corrupt(err, img->name, 0,
                          "file identifier is not 'vhdxfile'");
    if (vhdx_open_header(img, err) < 0 ||
        vhdx_open_regions(img, &meta_off, &meta_len, &bat_len, err) < 0 ||
        vhdx_open_metadata(img, meta_off, meta_len, err) < 0)
        return -1;

    /* The BAT's shape ([MS-VHDX] 2.5). */
    s->chunk_ratio = VHDX_CHUNK_SECTORS * s->logical_sector / s->block_size;
    s->data_blocks = div_round_up(img->size, s->block_size);
    if (s->has_parent)
        s->bat_entries = div_round_up(s->data_blocks, s->chunk_ratio) *
                         (s->chunk_ratio + 1);
    else
        s->bat_entries = s->data_blocks +
                         (s->data_blocks ? (s->data_blocks - 1) /
                                           s->chunk_ratio : 0);
    /* bat_entries <= 64 TiB / 1 MiB * 2: no overflow below. */
    if (s->bat_entries * 8 > bat_len)
        return df_corrupt(err, img->name, (int64_t)s->bat_off,
                          "BAT region of %" PRIu64 " bytes is smaller than "
                          "its %" PRIu64 " entries", bat_len,
                          s->bat_entries);

    s->bat_page = malloc(VHDX_BAT_PAGE_ENTRIES * sizeof(uint64_t));
    s->bitmap = malloc(s->block_size / s->logical_sector / 8);
    if (!s->bat_page || !s->bitmap)
        return df_io(err, img->name, ENOMEM, "cannot allocate BAT cache");

    image_set_prop(img, "type", "%s", s->has_parent ? "differencing" :
                   s->is_fixed ? "fixed" : "dynamic");
    image_set_prop(img, "block_size", "%" PRIu32, s->block_size);
    image_set_prop(img, "logical_sector_size", "%" PRIu32,
                   s->logical_sector);
    image_set_prop(img, "physical_sector_size", "%" PRIu32,
                   s->physical_sector);
    guid_format_mixed(s->data_write_guid, gs, sizeof(gs));
    image_set_prop(img, "data_write_guid", "%s", gs);
    snprintf(img->layer_id, sizeof(img->layer_id), "vhdx %s", gs);
    if (s->has_parent) {
        guid_format_mixed(s->linkage, gs, sizeof(gs));
        image_set_prop(img, "parent_linkage", "%s", gs);
        snprintf(img->parent_id, sizeof(img->parent_id), "vhdx %s", gs);
    }
    return 0;
}

/* BAT entry idx (< bat_entries), through the one-page cache. */
static int vhdx_bat_get(struct image *img, uint64_t idx, uint64_t *entry,
                        struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint64_t page = idx / VHDX_BAT_PAGE_ENTRIES;

    if (idx >= s->bat_entries)
        return df_corrupt(err, img->name, -1,
                          "internal: BAT index %" PRIu64 " past %" PRIu64,
                          idx, s->bat_entries);
    if (page != s->bat_page_no) {
        uint64_t first = page * VHDX_BAT_PAGE_ENTRIES;
        uint64_t n = min_u64(VHDX_BAT_PAGE_ENTRIES, s->bat_entries - first);
        s->bat_page_no = UINT64_MAX;
        if (vhdx_pread(img, s->bat_page, n * 8,
                          s->bat_off + first * 8, err) < 0)
            return -1;
        for (uint64_t i = 0; i < n; i++)
            s->bat_page[i] = get_le64((uint8_t *)s->bat_page + i * 8);
        s->bat_page_no = page;
    }
    *entry = s->bat_page[idx % VHDX_BAT_PAGE_ENTRIES];
    return 0;
}

/* Check that len bytes at the file offset of BAT entry idx are in the
 * file, past the header section. */
static int vhdx_check_block(struct image *img, const char *what,
                            uint64_t idx, uint64_t off, uint64_t len,
                            struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    int64_t eoff = (int64_t)(s->bat_off + idx * 8);

    if (off < VHDX_HEADER_SECTION)
        return df_corrupt(err, img->name, eoff,
                          "BAT entry %" PRIu64 ": %s at offset %" PRIu64
                          " is inside the header section", idx, what, off);
    if (!range_within(off, len, s->file_size))
        return df_corrupt(err, img->name, eoff,
                          "BAT entry %" PRIu64 ": %s [%" PRIu64 ", +%"
                          PRIu64 ") runs past end of file (%" PRIu64
                          " bytes)", idx, what, off, len, s->file_size);
    const struct vhdx_span *hit = vhdx_span_hit(s, off, len);
    if (hit)
        return df_corrupt(err, img->name, eoff,
                          "BAT entry %" PRIu64 ": %s [%" PRIu64 ", +%"
                          PRIu64 ") overlaps the %s [%" PRIu64
                          ", +%" PRIu64 ")", idx, what, off, len, hit->what,
                          hit->off, hit->len);
    return 0;
}

/* Load the sector bitmap bits of payload block b (partially present). */
static int vhdx_load_bitmap(struct image *img, uint64_t b,
                            struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint64_t chunk = b / s->chunk_ratio;
    uint64_t idx = chunk * (s->chunk_ratio + 1) + s->chunk_ratio;
    uint64_t entry;
    uint64_t nbytes = s->block_size / s->logical_sector / 8;

    if (s->bitmap_block == b)
        return 0;
    if (vhdx_bat_get(img, idx, &entry, err) < 0)
        return -1;
    unsigned state = entry & VHDX_BAT_STATE_MASK;
    uint64_t off = entry & VHDX_BAT_OFF_MASK;
    if (state != VHDX_SB_PRESENT)
        return df_corrupt(err, img->name, (int64_t)(s->bat_off + idx * 8),
                          "BAT entry %" PRIu64 ": sector bitmap state %u "
                          "(block %" PRIu64 " is partially present)", idx,
                          state, b);
    if (vhdx_check_block(img, "sector bitmap", idx, off, VHDX_SB_BLOCK_LEN,
                         err) < 0)
        return -1;
    s->bitmap_block = UINT64_MAX;
    if (vhdx_pread(img, s->bitmap, nbytes,
                      off + (b % s->chunk_ratio) * nbytes, err) < 0)
        return -1;
    s->bitmap_block = b;
    return 0;
}

static bool vhdx_bit(const uint8_t *bm, uint64_t sector)
{
    return bm[sector / 8] >> (sector % 8) & 1;
}

/*
 * What [off, off+len) of this layer starts with: the longest run of one
 * state inside one payload block.  off + len <= img->size.
 */
static int vhdx_lookup(struct image *img, uint64_t off, uint64_t len,
                       struct vhdx_run *run, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint64_t b = off / s->block_size;
    uint64_t in = off % s->block_size;
    uint64_t idx = b + b / s->chunk_ratio;
    uint64_t entry;

    run->len = min_u64(len, s->block_size - in);
    run->file_off = 0;
    if (vhdx_bat_get(img, idx, &entry, err) < 0)
        return -1;
    unsigned state = entry & VHDX_BAT_STATE_MASK;
    uint64_t boff = entry & VHDX_BAT_OFF_MASK;
    /* The bytes of the block the virtual disk uses (the last is short). */
    uint64_t used = min_u64(s->block_size, img->size - b * s->block_size);

    switch (state) {
    case VHDX_PAYLOAD_NOT_PRESENT:
        run->state = s->has_parent ? EXT_PARENT : EXT_HOLE;
        return 0;
    case VHDX_PAYLOAD_UNDEFINED:
    case VHDX_PAYLOAD_ZERO:
    case VHDX_PAYLOAD_UNMAPPED:
    case VHDX_PAYLOAD_UNMAPPED_V095:
        run->state = EXT_ZERO;
        return 0;
    case VHDX_PAYLOAD_FULLY_PRESENT:
        if (vhdx_check_block(img, "block", idx, boff, used, err) < 0)
            return -1;
        run->state = EXT_DATA;
        run->file_off = boff + in;
        return 0;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT:
        if (!s->has_parent)
            break;
        if (vhdx_check_block(img, "block", idx, boff, used, err) < 0 ||
            vhdx_load_bitmap(img, b, err) < 0)
            return -1;
        uint64_t ss = s->logical_sector;
        bool bit = vhdx_bit(s->bitmap, in / ss);
        uint64_t end = (in / ss + 1) * ss;
        while (end < in + run->len && vhdx_bit(s->bitmap, end / ss) == bit)
            end += ss;
        run->len = min_u64(end, in + run->len) - in;
        run->state = bit ? EXT_DATA : EXT_PARENT;
        run->file_off = boff + in;
        return 0;
    default:
        break;
    }
    return df_corrupt(err, img->name, (int64_t)(s->bat_off + idx * 8),
                      "BAT entry %" PRIu64 ": payload state %u is not "
                      "valid in a %s image", idx, state,
                      s->has_parent ? "differencing" : "non-differencing");
}

/*
 * The runs [off, off+len) of this layer starts with, up to cap of them,
 * looked up under s->lock (the BAT page and sector bitmap caches):
 * returns how many were filled; the lookup after them failed when err
 * is set (the caller passes a clean one).
 */
static size_t vhdx_lookups(struct image *img, uint64_t off, uint64_t len,
                           struct vhdx_run *runs, size_t cap,
                           struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    while (len && n < cap) {
        if (vhdx_lookup(img, off, len, &runs[n], err) < 0)
            break;
        off += runs[n].len;
        len -= runs[n].len;
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

#define VHDX_RUNS_MAX 64

static int vhdx_map(struct image *img, uint64_t off, uint64_t len,
                    struct extent_list *out, struct df_error *err)
{
    struct vhdx_run runs[VHDX_RUNS_MAX];
    uint64_t end = off + len;

    while (off < end) {
        struct df_error lerr;
        df_error_init(&lerr);
        size_t n = vhdx_lookups(img, off, end - off, runs, VHDX_RUNS_MAX,
                                &lerr);
        for (size_t i = 0; i < n; i++) {
            int r = extent_list_append(out, off, runs[i].len, runs[i].state,
                                       img->name, err);
            if (r)
                return r < 0 ? -1 : 0;
            off += runs[i].len;
        }
        if (lerr.cat != DF_OK) {
            df_error_copy(err, &lerr);
            return -1;
        }
    }
    return 0;
}

/* image_driver.host_run: payload runs at consecutive file offsets, where
 * the file holds what reads (no log replayed over it in memory). */
static int vhdx_host_run(struct image *img, uint64_t off, uint64_t len,
                         uint64_t *file_off, struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    struct vhdx_run runs[VHDX_RUNS_MAX];
    uint64_t a = off, end = off + len;

    if (s->nops || s->file_size != img->file.size)
        return 0;
    while (a < end) {
        struct df_error lerr;
        df_error_init(&lerr);
        size_t n = vhdx_lookups(img, a, end - a, runs, VHDX_RUNS_MAX, &lerr);
        for (size_t i = 0; i < n; i++) {
            if (runs[i].state != EXT_DATA)
                return 0;
            if (a == off)
                *file_off = runs[i].file_off;
            else if (runs[i].file_off != *file_off + (a - off))
                return 0;
            a += runs[i].len;
        }
        if (lerr.cat != DF_OK) {
            df_error_copy(err, &lerr);
            return -1;
        }
    }
    return 1;
}

/* runs_pread_fn over vhdx_pread (src: the image). */
static int vhdx_pread_run(void *src, void *buf, size_t len, uint64_t off,
                          struct df_error *err)
{
    return vhdx_pread(src, buf, len, off, err);
}

/*
 * Look runs up VHDX_RUNS_MAX at a time, then read them with no lock
 * held, one pread per stretch of data contiguous in the file (payload
 * blocks often follow each other).
 */
static int vhdx_read(struct image *img, void *buf, size_t len, uint64_t off,
                     struct df_error *err)
{
    struct vhdx_run runs[VHDX_RUNS_MAX];
    struct runs_batch rb = { .len = 0 };
    uint8_t *p = buf;

    while (len) {
        struct df_error lerr;
        df_error_init(&lerr);
        size_t n = vhdx_lookups(img, off, len, runs, VHDX_RUNS_MAX, &lerr);
        for (size_t i = 0; i < n; i++) {
            if (runs[i].state != EXT_DATA)
                memset(p, 0, runs[i].len);
            else if (runs_batch_add(&rb, vhdx_pread_run, img, p,
                                    runs[i].file_off, runs[i].len,
                                    err) < 0)
                return -1;
            p += runs[i].len;
            off += runs[i].len;
            len -= runs[i].len;
        }
        if (lerr.cat != DF_OK) {
            /* The runs before it were read before it was looked up. */
            if (runs_batch_flush(&rb, err) < 0)
                return -1;
            df_error_copy(err, &lerr);
            return -1;
        }
    }
    return runs_batch_flush(&rb, err);
}

extern const struct image_driver vhdx_driver;

static int vhdx_check_parent(struct image *child, struct image *parent,
                             struct df_error *err)
{
    struct vhdx_priv *c = child->priv;
    char want[40], got[40];

    if (parent->drv != &vhdx_driver)
        return df_corrupt(err, child->name, -1,
                          "parent %s is a %s image, not VHDX", parent->name,
                          parent->drv->name);
    struct vhdx_priv *p = parent->priv;
    if (memcmp(p->data_write_guid, c->linkage, 16) &&
        !(c->has_linkage2 && !memcmp(p->data_write_guid, c->linkage2, 16))) {
        guid_format_mixed(c->linkage, want, sizeof(want));
        guid_format_mixed(p->data_write_guid, got, sizeof(got));
        return df_corrupt(err, child->name, -1,
                          "parent %s has DataWriteGuid %s but the child's "
                          "parent_linkage is %s (the parent changed after "
                          "the child was made)", parent->name, got, want);
    }
    if (p->logical_sector != c->logical_sector)
        return df_corrupt(err, child->name, -1,
                          "parent %s has logical sector size %" PRIu32
                          ", the child %" PRIu32, parent->name,
                          p->logical_sector, c->logical_sector);
    if (parent->size != child->size)
        return df_corrupt(err, child->name, -1,
                          "parent %s has virtual size %" PRIu64 ", the "
                          "child %" PRIu64, parent->name, parent->size,
                          child->size);
    return 0;
}

static void vhdx_close(struct image *img)
{
    struct vhdx_priv *s = img->priv;
    if (s->lock_ready)
        pthread_mutex_destroy(&s->lock);
    free(s->bat_page);
    free(s->bitmap);
    free(s->ops);
    free(s->op_pages);
    free(s->spans);
}

const struct image_driver vhdx_driver = {
    .name = "vhdx",
    .priv_size = sizeof(struct vhdx_priv),
    .caps = IMG_THREAD_SAFE,
    .probe = vhdx_probe,
    .open = vhdx_open,
    .map = vhdx_map,
    .host_run = vhdx_host_run,
    .read = vhdx_read,
    .check_parent = vhdx_check_parent,
    .close = vhdx_close,
};
