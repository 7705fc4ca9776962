/*
 * vmdk_sparse.c: the binary VMDK extents: header ladders, grain
 * directories, grain lookup through a bounded GT cache, and compressed
 * (streamOptimized) grains.
 *
 * Spec: docs/formats.md sections 2.2 to 2.5.  All little endian.
 *
 *   KDMV (hosted sparse, streamOptimized), 512-byte header at 0:
 *     0 magic  4 version 1..3  8 flags  12 capacity  20 grainSize
 *     28 descriptorOffset  36 descriptorSize  44 numGTEsPerGT (512)
 *     48 rgdOffset  56 gdOffset (~0 = GD_AT_END: the footer at
 *     size-1024 is the real header)  73 check bytes 0a 20 0d 0a
 *     77 compressAlgorithm (1 = deflate)
 *     GD: u32 GT sectors; GT: 512 u32 GTEs; GTE 0 unallocated (parent),
 *     1 zeroed grain when flags bit 2, else the grain's sector (of its
 *     marker when compressed: u64 lba, u32 size, zlib data).
 *   COWD (vmfsSparse delta), 2048-byte header at 0:
 *     0 magic  4 version 1  12 numSectors  16 grainSize  20 gdOffset
 *     24 numGDEntries  32 parentFileName[1024]
 *     GD: u32 GT sectors; GT: 4096 u32 GTEs; 0 = parent, else sector.
 *   seSparse, 512-byte header at 0 (u64 fields):
 *     0 magic cafebabe  8 version 0x200000001  16 capacity
 *     24 grain_size (8)  32 grain_table_size (64)  40 flags (0)
 *     80 volatile header  128/136 GD  144/152 GTs  192 grains (sectors)
 *     GD: u64, 0 = none, 0x10000000_iiiiiiii = GT index i
 *     GT: u64 by top nibble: 0 parent, 1/2 zeros, 3 grain (swizzled)
 *
 * Refused (exit 5): a truncated header, a bad magic/version, grain sizes
 * that are not a power of two within limits (KDMV 16..2048 sectors,
 * COWD 1..2048), numGTEsPerGT != 512, a GD or GT outside the file, a GD
 * too small for the capacity, bad check bytes, a dirty seSparse journal,
 * a GD, GT or grain over the header, the embedded descriptor or the GD
 * (a grain also over its own GT),
 * a GTE that points outside the file, a compressed grain whose marker
 * names another LBA or which does not inflate to the grain.
 *
 * Threads: only the GT cache is shared (under its lock); a lookup
 * checks its copy of the entries, and inflating uses the caller's
 * vmdk_gctx, so lookups and reads of one image run concurrently.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image/vmdk.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define VMDK_SECTOR 512u

#define KDMV_MAGIC 0x564d444bu          /* "KDMV" */
#define KDMV_HEADER_LEN 512u
#define KDMV_OFF_VERSION 4
#define KDMV_OFF_FLAGS 8
#define KDMV_OFF_CAPACITY 12
#define KDMV_OFF_GRAIN 20
#define KDMV_OFF_DESC_OFF 28
#define KDMV_OFF_DESC_SIZE 36
#define KDMV_OFF_NUM_GTES 44
#define KDMV_OFF_GD 56
#define KDMV_OFF_CHECK 73
#define KDMV_OFF_COMPRESS 77
#define KDMV_FLAG_NL_CHECK (1u << 0)
#define KDMV_FLAG_ZEROED (1u << 2)
#define KDMV_FLAG_COMPRESSED (1u << 16)
#define KDMV_GD_AT_END UINT64_MAX
#define KDMV_GTES 512u
#define KDMV_MARKER_LEN 12u
#define KDMV_MARKER_FOOTER 3u

#define COWD_MAGIC 0x44574f43u          /* "COWD" */
#define COWD_HEADER_LEN 2048u
#define COWD_OFF_VERSION 4
#define COWD_OFF_SECTORS 12
#define COWD_OFF_GRAIN 16
#define COWD_OFF_GD 20
#define COWD_OFF_GD_ENTRIES 24
#define COWD_OFF_PARENT 32
#define COWD_PARENT_LEN 1024u
#define COWD_GTES 4096u

#define SESP_MAGIC 0xcafebabeull
#define SESP_VERSION 0x0000000200000001ull
#define SESP_VOLATILE_MAGIC 0xcafecafeull
#define SESP_HEADER_LEN 512u
#define SESP_OFF_VERSION 8
#define SESP_OFF_CAPACITY 16
#define SESP_OFF_GRAIN 24
#define SESP_OFF_GT_SIZE 32
#define SESP_OFF_FLAGS 40
#define SESP_OFF_VOLATILE 80
#define SESP_OFF_GD 128
#define SESP_OFF_GD_SIZE 136
#define SESP_OFF_GTS 144
#define SESP_OFF_GTS_SIZE 152
#define SESP_OFF_GRAINS 192
#define SESP_VOL_OFF_REPLAY 24
#define SESP_GRAIN_SECTORS 8u
#define SESP_GT_SECTORS 64u
#define SESP_GTES 4096u
#define SESP_GD_ALLOCATED 0x10000000u

/* A batch of compressed grains is read this much at a time (or one
 * grain's most, if larger). */
#define VMDK_SPAN_BYTES (1u << 20)

/* Largest grain (1 MiB) and the GD bytes one image may hold in memory. */
#define VMDK_MAX_GRAIN_SECTORS 2048u
#define VMDK_MAX_GD_BYTES (256ull << 20)

enum vmdk_kind vmdk_sparse_kind(const uint8_t *head, size_t len)
{
    if (len >= 4 && get_le32(head) == KDMV_MAGIC)
        return VMDK_K_KDMV;
    if (len >= 4 && get_le32(head) == COWD_MAGIC)
        return VMDK_K_COWD;
    if (len >= 16 && get_le64(head) == SESP_MAGIC &&
        get_le64(head + SESP_OFF_VERSION) == SESP_VERSION)
        return VMDK_K_SESPARSE;
    return VMDK_K_FLAT;
}

enum { VMDK_META_HEADER, VMDK_META_DESC, VMDK_META_GD };
static const char *const vmdk_meta_name[3] = {
    "header", "embedded descriptor", "grain directory",
};

/* The structure of e->meta [off, +len) overlaps, or NULL. */
static const char *vmdk_meta_hit(const struct vmdk_extent *e, uint64_t off,
                                 uint64_t len)
{
    for (int i = 0; i < 3; i++)
        if (ranges_overlap(off, len, e->meta[i][0], e->meta[i][1]))
            return vmdk_meta_name[i];
    return NULL;
}

/*
 * Load `n` GD entries of `esize` bytes from byte offset gd_off into
 * e->gd as GT byte offsets, each checked to hold a whole GT of gt_bytes
 * inside the file.  decode turns a raw entry into a GT sector (0 none).
 */
static int vmdk_load_gd(struct vmdk_extent *e, uint64_t gd_off, uint64_t n,
                        unsigned esize, uint64_t *total_gd,
                        int (*decode)(const struct vmdk_extent *, uint64_t,
                                      uint64_t, uint64_t, uint64_t *,
                                      struct df_error *),
                        uint64_t ctx, struct df_error *err)
{
    struct df_file *f = e->file;
    uint64_t bytes = n * esize;           /* n <= file size: no overflow */
    uint64_t gt_bytes = (uint64_t)e->gt_entries * e->gte_size;
    uint8_t *raw = NULL;
    int ret = -1;

    if (!range_within(gd_off, bytes, f->size))
        return df_corrupt(err, f->name, (int64_t)min_u64(gd_off, INT64_MAX),
                          "grain directory (%" PRIu64 " entries) runs past "
                          "the end of the file (%" PRIu64 " bytes)", n,
                          f->size);
    if (bytes > VMDK_MAX_GD_BYTES - *total_gd)
        return df_corrupt(err, f->name, (int64_t)gd_off,
                          "grain directories larger than %llu MiB",
                          VMDK_MAX_GD_BYTES >> 20);
    const char *hit = vmdk_meta_hit(e, gd_off, bytes);
    if (hit)
        return df_corrupt(err, f->name, (int64_t)gd_off, "grain directory "
                          "at byte %" PRIu64 " (%" PRIu64 " bytes) overlaps "
                          "the %s", gd_off, bytes, hit);
    e->meta[VMDK_META_GD][0] = gd_off;
    e->meta[VMDK_META_GD][1] = bytes;
    *total_gd += bytes;
    raw = malloc(bytes ? bytes : 1);
    e->gd = calloc(n ? n : 1, sizeof(*e->gd));
    if (!raw || !e->gd) {
        df_io(err, f->name, ENOMEM, "cannot allocate grain directory");
        goto out;
    }
    if (df_file_pread(f, raw, bytes, gd_off, err) < 0)
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = esize == 4 ? get_le32(raw + i * 4) : get_le64(raw + i * 8);
        uint64_t sector;
        int64_t where = (int64_t)(gd_off + i * esize);
        if (decode(e, v, ctx, (uint64_t)where, &sector, err) < 0)
            goto out;
        if (!sector)
            continue;
        if (sector > f->size / VMDK_SECTOR ||
            !range_within(sector * VMDK_SECTOR, gt_bytes, f->size)) {
            df_corrupt(err, f->name, where, "grain table %" PRIu64 " at "
                       "sector %" PRIu64 " runs past the end of the file",
                       i, sector);
            goto out;
        }
        if ((hit = vmdk_meta_hit(e, sector * VMDK_SECTOR, gt_bytes))) {
            df_corrupt(err, f->name, where, "grain table %" PRIu64 " at "
                       "sector %" PRIu64 " overlaps the %s", i, sector, hit);
            goto out;
        }
        e->gd[i] = sector * VMDK_SECTOR;
    }
    e->gd_entries = n;
    ret = 0;
out:
    free(raw);
    return ret;
}

static int vmdk_gd_plain(const struct vmdk_extent *e, uint64_t v,
                         uint64_t ctx, uint64_t where, uint64_t *sector,
                         struct df_error *err)
{
    *sector = v;
    return 0;
}

/* seSparse GD entry: 0, or 0x10000000 in the top half and a GT index. */
static int vmdk_gd_sesparse(const struct vmdk_extent *e, uint64_t v,
                            uint64_t hdr_gts, uint64_t where,
                            uint64_t *sector, struct df_error *err)
{
    *sector = 0;
    if (!v)
        return 0;
    uint64_t idx = v & 0xffffffffu;
    uint64_t gts = hdr_gts >> 32, gts_size = hdr_gts & 0xffffffffu;
    if (v >> 32 != SESP_GD_ALLOCATED)
        return df_corrupt(err, e->file->name, (int64_t)where,
                          "grain directory entry %#" PRIx64 " has an "
                          "unknown type", v);
    if ((idx + 1) * SESP_GT_SECTORS > gts_size)
        return df_corrupt(err, e->file->name, (int64_t)where,
                          "grain table index %" PRIu64 " outside the grain "
                          "table area (%" PRIu64 " sectors)", idx, gts_size);
    *sector = gts + idx * SESP_GT_SECTORS;
    return 0;
}

static int vmdk_check_grain(struct vmdk_extent *e, uint64_t grain_sectors,
                            uint64_t min, int64_t where,
                            struct df_error *err)
{
    if (!is_pow2(grain_sectors) || grain_sectors < min ||
        grain_sectors > VMDK_MAX_GRAIN_SECTORS)
        return df_corrupt(err, e->file->name, where, "grainSize %" PRIu64
                          " is not a power of two in %" PRIu64 "..%u",
                          grain_sectors, min, VMDK_MAX_GRAIN_SECTORS);
    e->grain_bytes = grain_sectors * VMDK_SECTOR;
    return 0;
}

static int vmdk_check_capacity(struct vmdk_extent *e, uint64_t cap,
                               int64_t where, struct df_error *err)
{
    if (cap > VMDK_MAX_SECTORS)
        return df_corrupt(err, e->file->name, where, "capacity %" PRIu64
                          " sectors above the limit of 2^44", cap);
    e->capacity = cap;
    return 0;
}

/* The footer of a GD_AT_END stream: marker at size-1536, then header. */
static int vmdk_kdmv_footer(struct vmdk_extent *e, uint8_t *hdr,
                            struct df_error *err)
{
    struct df_file *f = e->file;
    uint8_t marker[VMDK_SECTOR], eos[KDMV_MARKER_LEN + 4];
    static const uint8_t zero[sizeof(eos)];

    if (f->size < 3 * VMDK_SECTOR + KDMV_HEADER_LEN)
        return df_corrupt(err, f->name, KDMV_OFF_GD, "gdOffset is "
                          "GD_AT_END but the file is too small for a footer");
    uint64_t foot = f->size - 2 * VMDK_SECTOR;
    if (df_file_pread(f, marker, sizeof(marker), foot - VMDK_SECTOR,
                      err) < 0 ||
        df_file_pread(f, hdr, KDMV_HEADER_LEN, foot, err) < 0 ||
        df_file_pread(f, eos, sizeof(eos), foot + VMDK_SECTOR, err) < 0)
        return -1;
    if (get_le32(marker + 8) != 0 ||
        get_le32(marker + 12) != KDMV_MARKER_FOOTER)
        return df_corrupt(err, f->name, (int64_t)(foot - VMDK_SECTOR),
                          "gdOffset is GD_AT_END but no footer marker "
                          "precedes the footer");
    if (memcmp(eos, zero, sizeof(eos)))
        return df_corrupt(err, f->name, (int64_t)(foot + VMDK_SECTOR),
                          "gdOffset is GD_AT_END but the file does not end "
                          "with an end-of-stream marker");
    if (get_le32(hdr) != KDMV_MAGIC)
        return df_corrupt(err, f->name, (int64_t)foot,
                          "footer has no KDMV magic");
    if (get_le64(hdr + KDMV_OFF_GD) == KDMV_GD_AT_END)
        return df_corrupt(err, f->name, (int64_t)(foot + KDMV_OFF_GD),
                          "footer gdOffset is GD_AT_END too");
    return 0;
}

static int vmdk_open_kdmv(struct vmdk_extent *e, struct vmdk_sparse_meta *m,
                          uint64_t *total_gd, struct df_error *err)
{
    struct df_file *f = e->file;
    uint8_t hdr[KDMV_HEADER_LEN];
    const char *name = f->name;

    if (df_file_pread(f, hdr, sizeof(hdr), 0, err) < 0)
        return -1;
    /* The embedded descriptor is read from the header, not the footer. */
    uint64_t doff = get_le64(hdr + KDMV_OFF_DESC_OFF);
    uint64_t dsize = get_le64(hdr + KDMV_OFF_DESC_SIZE);
    if (get_le64(hdr + KDMV_OFF_GD) == KDMV_GD_AT_END &&
        vmdk_kdmv_footer(e, hdr, err) < 0)
        return -1;
    uint32_t version = get_le32(hdr + KDMV_OFF_VERSION);
    if (version < 1 || version > 3)
        return df_corrupt(err, name, KDMV_OFF_VERSION, "KDMV version %"
                          PRIu32 " outside 1..3", version);
    uint32_t flags = get_le32(hdr + KDMV_OFF_FLAGS);
    if ((flags & KDMV_FLAG_NL_CHECK) &&
        memcmp(hdr + KDMV_OFF_CHECK, "\n \r\n", 4))
        return df_corrupt(err, name, KDMV_OFF_CHECK, "newline check bytes "
                          "damaged (file transferred in text mode?)");
    e->zeroed_grains = flags & KDMV_FLAG_ZEROED;
    e->compressed = flags & KDMV_FLAG_COMPRESSED;
    uint16_t alg = get_le16(hdr + KDMV_OFF_COMPRESS);
    if (e->compressed && alg != 1)
        return df_corrupt(err, name, KDMV_OFF_COMPRESS, "compressAlgorithm "
                          "%u is not 1 (deflate)", alg);
    if (vmdk_check_capacity(e, get_le64(hdr + KDMV_OFF_CAPACITY),
                            KDMV_OFF_CAPACITY, err) < 0 ||
        vmdk_check_grain(e, get_le64(hdr + KDMV_OFF_GRAIN), 16,
                         KDMV_OFF_GRAIN, err) < 0)
        return -1;
    uint32_t gtes = get_le32(hdr + KDMV_OFF_NUM_GTES);
    if (gtes != KDMV_GTES)
        return df_corrupt(err, name, KDMV_OFF_NUM_GTES, "numGTEsPerGT %"
                          PRIu32 " is not 512", gtes);
    e->gt_entries = KDMV_GTES;
    e->gte_size = 4;
    if (doff || dsize) {
        if (dsize > VMDK_DESC_MAX / VMDK_SECTOR || doff == 0 ||
            doff > f->size / VMDK_SECTOR ||
            !range_within(doff * VMDK_SECTOR, dsize * VMDK_SECTOR, f->size))
            return df_corrupt(err, name, KDMV_OFF_DESC_OFF, "embedded "
                              "descriptor (sector %" PRIu64 ", %" PRIu64
                              " sectors) outside the file or over 1 MiB",
                              doff, dsize);
        m->desc_off = doff * VMDK_SECTOR;
        m->desc_len = dsize * VMDK_SECTOR;
        e->meta[VMDK_META_DESC][0] = m->desc_off;
        e->meta[VMDK_META_DESC][1] = m->desc_len;
    }
    uint64_t gt_cover = (uint64_t)KDMV_GTES * (e->grain_bytes / VMDK_SECTOR);
    uint64_t n = div_round_up(e->capacity, gt_cover);
    uint64_t gd = get_le64(hdr + KDMV_OFF_GD);
    if (n && (gd == 0 || gd > f->size / VMDK_SECTOR))
        return df_corrupt(err, name, KDMV_OFF_GD, "gdOffset %" PRIu64
                          " outside the file (%" PRIu64 " bytes)", gd,
                          f->size);
    return vmdk_load_gd(e, gd * VMDK_SECTOR, n, 4, total_gd, vmdk_gd_plain,
                        0, err);
}

static int vmdk_open_cowd(struct vmdk_extent *e, struct vmdk_sparse_meta *m,
                          uint64_t *total_gd, struct df_error *err)
{
    struct df_file *f = e->file;
    uint8_t hdr[COWD_HEADER_LEN];
    const char *name = f->name;

    if (df_file_pread(f, hdr, sizeof(hdr), 0, err) < 0)
        return -1;
    uint32_t version = get_le32(hdr + COWD_OFF_VERSION);
    if (version != 1)
        return df_corrupt(err, name, COWD_OFF_VERSION, "COWD version %"
                          PRIu32 " is not 1", version);
    if (vmdk_check_capacity(e, get_le32(hdr + COWD_OFF_SECTORS),
                            COWD_OFF_SECTORS, err) < 0 ||
        vmdk_check_grain(e, get_le32(hdr + COWD_OFF_GRAIN), 1,
                         COWD_OFF_GRAIN, err) < 0)
        return -1;
    e->gt_entries = COWD_GTES;
    e->gte_size = 4;
    uint64_t gt_cover = (uint64_t)COWD_GTES * (e->grain_bytes / VMDK_SECTOR);
    uint64_t need = div_round_up(e->capacity, gt_cover);
    uint64_t n = get_le32(hdr + COWD_OFF_GD_ENTRIES);
    if (n < need)
        return df_corrupt(err, name, COWD_OFF_GD_ENTRIES, "numGDEntries %"
                          PRIu64 " below the %" PRIu64 " that %" PRIu64
                          " sectors need", n, need, e->capacity);
    uint64_t gd = get_le32(hdr + COWD_OFF_GD);
    if (need && gd == 0)
        return df_corrupt(err, name, COWD_OFF_GD, "gdOffset is 0");
    memcpy(m->parent, hdr + COWD_OFF_PARENT, COWD_PARENT_LEN);
    m->parent[COWD_PARENT_LEN] = '\0';
    /* Entries past `need` cover no sector: not loaded, not followed. */
    return vmdk_load_gd(e, gd * VMDK_SECTOR, need, 4, total_gd,
                        vmdk_gd_plain, 0, err);
}

/* A sector-unit region of the seSparse header, checked inside the file. */
static int vmdk_se_region(const struct vmdk_extent *e, const uint8_t *hdr,
                          unsigned off, const char *what, uint64_t *start,
                          uint64_t *size, struct df_error *err)
{
    *start = get_le64(hdr + off);
    *size = get_le64(hdr + off + 8);
    if (*start == 0 || *start > e->file->size / VMDK_SECTOR ||
        *size > e->file->size / VMDK_SECTOR ||
        !range_within(*start * VMDK_SECTOR, *size * VMDK_SECTOR,
                      e->file->size))
        return df_corrupt(err, e->file->name, off, "%s (sector %" PRIu64
                          ", %" PRIu64 " sectors) outside the file", what,
                          *start, *size);
    return 0;
}

static int vmdk_open_sesparse(struct vmdk_extent *e, uint64_t *total_gd,
                              struct df_error *err)
{
    struct df_file *f = e->file;
    uint8_t hdr[SESP_HEADER_LEN], vol[VMDK_SECTOR];
    const char *name = f->name;
    uint64_t vs, vn, gd, gdn, gts, gtn;

    if (df_file_pread(f, hdr, sizeof(hdr), 0, err) < 0)
        return -1;
    if (get_le64(hdr) != SESP_MAGIC ||
        get_le64(hdr + SESP_OFF_VERSION) != SESP_VERSION)
        return df_corrupt(err, name, 0, "not a seSparse version 2.1 "
                          "header");
    if (get_le64(hdr + SESP_OFF_GRAIN) != SESP_GRAIN_SECTORS ||
        get_le64(hdr + SESP_OFF_GT_SIZE) != SESP_GT_SECTORS ||
        get_le64(hdr + SESP_OFF_FLAGS) != 0)
        return df_corrupt(err, name, SESP_OFF_GRAIN, "seSparse grain size "
                          "%" PRIu64 " / grain table size %" PRIu64 " / "
                          "flags %#" PRIx64 " not 8 / 64 / 0",
                          get_le64(hdr + SESP_OFF_GRAIN),
                          get_le64(hdr + SESP_OFF_GT_SIZE),
                          get_le64(hdr + SESP_OFF_FLAGS));
    if (vmdk_check_capacity(e, get_le64(hdr + SESP_OFF_CAPACITY),
                            SESP_OFF_CAPACITY, err) < 0)
        return -1;
    e->grain_bytes = SESP_GRAIN_SECTORS * VMDK_SECTOR;
    e->gt_entries = SESP_GTES;
    e->gte_size = 8;
    if (vmdk_se_region(e, hdr, SESP_OFF_VOLATILE, "volatile header", &vs,
                       &vn, err) < 0 ||
        vmdk_se_region(e, hdr, SESP_OFF_GD, "grain directory", &gd, &gdn,
                       err) < 0 ||
        vmdk_se_region(e, hdr, SESP_OFF_GTS, "grain tables", &gts, &gtn,
                       err) < 0)
        return -1;
    if (df_file_pread(f, vol, sizeof(vol), vs * VMDK_SECTOR, err) < 0)
        return -1;
    if (get_le64(vol) != SESP_VOLATILE_MAGIC)
        return df_corrupt(err, name, (int64_t)(vs * VMDK_SECTOR),
                          "seSparse volatile header has a bad magic");
    if (get_le64(vol + SESP_VOL_OFF_REPLAY))
        return df_corrupt(err, name,
                          (int64_t)(vs * VMDK_SECTOR + SESP_VOL_OFF_REPLAY),
                          "seSparse journal needs replay (dirty; open the "
                          "disk in ESXi once to clean it)");
    uint64_t grains = get_le64(hdr + SESP_OFF_GRAINS);
    if (grains == 0 || grains > f->size / VMDK_SECTOR)
        return df_corrupt(err, name, SESP_OFF_GRAINS, "grains offset %"
                          PRIu64 " outside the file", grains);
    e->se_grains_off = grains * VMDK_SECTOR;
    uint64_t need = div_round_up(e->capacity,
                                 (uint64_t)SESP_GTES * SESP_GRAIN_SECTORS);
    if (gdn * VMDK_SECTOR / 8 < need)
        return df_corrupt(err, name, SESP_OFF_GD_SIZE, "grain directory of "
                          "%" PRIu64 " sectors too small for %" PRIu64
                          " sectors", gdn, e->capacity);
    if (gtn > 0xffffffffu || gts > 0xffffffffu)
        return df_corrupt(err, name, SESP_OFF_GTS, "grain table area too "
                          "large");
    return vmdk_load_gd(e, gd * VMDK_SECTOR, need, 8, total_gd,
                        vmdk_gd_sesparse, gts << 32 | gtn, err);
}

int vmdk_sparse_open(struct vmdk_extent *e, struct vmdk_sparse_meta *meta,
                     uint64_t *total_gd, struct df_error *err)
{
    memset(meta, 0, sizeof(*meta));
    memset(e->meta, 0, sizeof(e->meta));
    e->meta[VMDK_META_HEADER][1] = e->kind == VMDK_K_COWD ? COWD_HEADER_LEN
                                 : e->kind == VMDK_K_KDMV ? KDMV_HEADER_LEN
                                                          : SESP_HEADER_LEN;
    switch (e->kind) {
    case VMDK_K_KDMV:
        return vmdk_open_kdmv(e, meta, total_gd, err);
    case VMDK_K_COWD:
        return vmdk_open_cowd(e, meta, total_gd, err);
    case VMDK_K_SESPARSE:
        return vmdk_open_sesparse(e, total_gd, err);
    default:
        return df_corrupt(err, e->file->name, 0, "not a sparse extent");
    }
}

/* The cached GT `gti` of e (loading it on a miss); under c->lock. */
static const uint8_t *vmdk_gt_get(struct vmdk_gt_cache *c,
                                  const struct vmdk_extent *e, uint64_t gti,
                                  struct df_error *err)
{
    struct vmdk_gt_slot *victim = &c->slot[0];
    size_t gt_bytes = (size_t)e->gt_entries * e->gte_size;

    c->clock++;
    if (c->last && c->last->ext == e && c->last->gti == gti) {
        c->last->stamp = c->clock;
        return c->last->buf;
    }
    for (size_t i = 0; i < VMDK_GT_CACHE_SLOTS; i++) {
        struct vmdk_gt_slot *s = &c->slot[i];
        if (s->ext == e && s->gti == gti) {
            s->stamp = c->clock;
            c->last = s;
            return s->buf;
        }
        if (s->stamp < victim->stamp)
            victim = s;
    }
    if (gt_bytes > c->buf_size) {
        /* Slots grow to the largest GT seen: all are refilled anyway. */
        for (size_t i = 0; i < VMDK_GT_CACHE_SLOTS; i++) {
            free(c->slot[i].buf);
            c->slot[i] = (struct vmdk_gt_slot){ 0 };
        }
        c->buf_size = gt_bytes;
        victim = &c->slot[0];
    }
    if (!victim->buf) {
        victim->buf = malloc(c->buf_size);
        if (!victim->buf) {
            df_io(err, e->file->name, ENOMEM, "cannot allocate grain table");
            return NULL;
        }
    }
    victim->ext = NULL;
    if (df_file_pread(e->file, victim->buf, gt_bytes, e->gd[gti], err) < 0)
        return NULL;
    victim->ext = e;
    victim->gti = gti;
    victim->stamp = c->clock;
    c->last = victim;
    return victim->buf;
}

/* Check grain table entry `gte` (a copy) of grain g into *out. */
static int vmdk_gte_decode(const struct vmdk_extent *e, uint64_t g,
                           const uint8_t *gte, struct vmdk_grain *out,
                           struct df_error *err)
{
    uint64_t gti = g / e->gt_entries, i = g % e->gt_entries;
    struct df_file *f = e->file;
    int64_t where = (int64_t)(e->gd[gti] + i * e->gte_size);
    /* Bytes of this grain inside the extent (the last may be short). */
    uint64_t need = min_u64(e->grain_bytes,
                            e->capacity * VMDK_SECTOR - g * e->grain_bytes);
    uint64_t off;

    out->host = 0;
    out->n = 1;
    if (e->kind == VMDK_K_SESPARSE) {
        uint64_t v = get_le64(gte);
        switch (v >> 60) {
        case 0:
            if (v)
                return df_corrupt(err, f->name, where, "unallocated grain "
                                  "table entry %#" PRIx64 " not zero", v);
            out->state = EXT_PARENT;
            return 0;
        case 1:
        case 2:
            out->state = EXT_ZERO;
            return 0;
        case 3: {
            uint64_t idx = ((v >> 48) & 0xfff) | (v & 0xffffffffffffull) << 12;
            if (idx > (f->size - e->se_grains_off) / e->grain_bytes)
                return df_corrupt(err, f->name, where, "grain index %"
                                  PRIu64 " past the end of the file", idx);
            off = e->se_grains_off + idx * e->grain_bytes;
            break;
        }
        default:
            return df_corrupt(err, f->name, where, "grain table entry %#"
                              PRIx64 " has an unknown type", v);
        }
    } else {
        uint64_t v = get_le32(gte);
        if (v == 0) {
            out->state = EXT_PARENT;
            return 0;
        }
        if (v == 1 && e->zeroed_grains) {
            out->state = EXT_ZERO;
            return 0;
        }
        off = v * VMDK_SECTOR;
        if (e->compressed)
            need = KDMV_MARKER_LEN;
    }
    if (!range_within(off, need, f->size))
        return df_corrupt(err, f->name, where, "grain %" PRIu64 " at byte %"
                          PRIu64 " runs past the end of the file (%" PRIu64
                          " bytes)", g, off, f->size);
    const char *hit = vmdk_meta_hit(e, off, need);
    if (!hit && ranges_overlap(off, need, e->gd[gti],
                               (uint64_t)e->gt_entries * e->gte_size))
        hit = "grain table that maps it";
    if (hit)
        return df_corrupt(err, f->name, where, "grain %" PRIu64 " at byte %"
                          PRIu64 " overlaps the %s", g, off, hit);
    out->state = EXT_DATA;
    out->host = off;
    return 0;
}

size_t vmdk_sparse_grains(struct vmdk_gt_cache *c,
                          const struct vmdk_extent *e, uint64_t g,
                          uint64_t want, struct vmdk_grain *out, size_t cap,
                          struct df_error *err)
{
    uint64_t gti = g / e->gt_entries, i0 = g % e->gt_entries;
    uint64_t n = min_u64(want, e->gt_entries - i0);
    uint8_t gtes[VMDK_GRAINS_MAX * 8];

    if (gti >= e->gd_entries || !e->gd[gti]) {
        out[0] = (struct vmdk_grain){ .state = EXT_PARENT, .n = n };
        return 1;
    }
    n = min_u64(n, min_u64(cap, VMDK_GRAINS_MAX));
    pthread_mutex_lock(&c->lock);
    const uint8_t *gt = vmdk_gt_get(c, e, gti, err);
    if (gt)
        memcpy(gtes, gt + i0 * e->gte_size, (size_t)n * e->gte_size);
    pthread_mutex_unlock(&c->lock);
    if (!gt)
        return 0;
    for (uint64_t i = 0; i < n; i++)
        if (vmdk_gte_decode(e, g + i, gtes + i * e->gte_size, &out[i],
                            err) < 0)
            return (size_t)i;
    return (size_t)n;
}

static int vmdk_grow(uint8_t **buf, size_t *cap, size_t want)
{
    if (*cap >= want)
        return 0;
    uint8_t *p = realloc(*buf, want);
    if (!p)
        return -1;
    *buf = p;
    *cap = want;
    return 0;
}

/* The most compressed bytes a grain of e may have: deflate grows
 * incompressible data by well under 1 %. */
static uint64_t vmdk_cmax(const struct vmdk_extent *e)
{
    return e->grain_bytes + e->grain_bytes / 8 + 1024;
}

uint64_t vmdk_sparse_span_cap(const struct vmdk_extent *e)
{
    return max_u64(VMDK_SPAN_BYTES, KDMV_MARKER_LEN + vmdk_cmax(e));
}

/*
 * zlib's uncompress() (zlib format, the result codes it gives) with the
 * caller's stream, reset instead of set up anew for every grain.
 */
static int vmdk_uncompress(struct vmdk_gctx *gc, uint8_t *dst, uLongf *dlen,
                           const uint8_t *src, uLong slen)
{
    z_stream *zs = gc->zs;

    if (!zs) {
        zs = calloc(1, sizeof(*zs));
        if (!zs)
            return Z_MEM_ERROR;
        int r = inflateInit(zs);
        if (r != Z_OK) {
            free(zs);
            return r;
        }
        gc->zs = zs;
    } else if (inflateReset(zs) != Z_OK) {
        return Z_STREAM_ERROR;
    }
    zs->next_in = (Bytef *)src;
    zs->avail_in = (uInt)slen;
    zs->next_out = dst;
    zs->avail_out = (uInt)*dlen;
    int r = inflate(zs, Z_FINISH);
    *dlen = zs->total_out;
    if (r == Z_STREAM_END)
        return Z_OK;
    if (r == Z_NEED_DICT || (r == Z_BUF_ERROR && zs->avail_out))
        return Z_DATA_ERROR;    /* the input ended first */
    return r;
}

/*
 * Inflate grain g of e, whose marker is at `host`, into out
 * (grain_bytes).  have: the file's bytes from host on (have_len of
 * them, maybe none); what it lacks is read.
 */
static int vmdk_inflate(struct vmdk_gctx *gc, const struct vmdk_extent *e,
                        uint64_t g, uint64_t host, const uint8_t *have,
                        uint64_t have_len, uint8_t *out,
                        struct df_error *err)
{
    struct df_file *f = e->file;
    uint8_t m[KDMV_MARKER_LEN];
    uint64_t sectors = e->grain_bytes / VMDK_SECTOR;
    uint64_t cmax = vmdk_cmax(e);
    const uint8_t *mk = have, *cdata = NULL;

    if (have_len < sizeof(m)) {
        if (df_file_pread(f, m, sizeof(m), host, err) < 0)
            return -1;
        mk = m;
    }
    uint64_t lba = get_le64(mk);
    uint32_t csize = get_le32(mk + 8);
    if (lba != g * sectors)
        return df_corrupt(err, f->name, (int64_t)host, "grain marker names "
                          "sector %" PRIu64 ", grain table says %" PRIu64,
                          lba, g * sectors);
    if (csize == 0 || csize > cmax)
        return df_corrupt(err, f->name, (int64_t)host + 8, "compressed "
                          "grain size %" PRIu32 " outside 1..%" PRIu64,
                          csize, cmax);
    if (have_len >= KDMV_MARKER_LEN + (uint64_t)csize) {
        cdata = have + KDMV_MARKER_LEN;
    } else {
        if (vmdk_grow(&gc->cbuf, &gc->ccap, csize) < 0)
            return df_io(err, f->name, ENOMEM, "cannot allocate grain "
                         "buffer");
        if (df_file_pread(f, gc->cbuf, csize, host + KDMV_MARKER_LEN,
                          err) < 0)
            return -1;
        cdata = gc->cbuf;
    }
    uLongf len = (uLongf)e->grain_bytes;
    int z = vmdk_uncompress(gc, out, &len, cdata, csize);
    uint64_t need = min_u64(e->grain_bytes,
                            e->capacity * VMDK_SECTOR - g * e->grain_bytes);
    if (z != Z_OK)
        return df_corrupt(err, f->name, (int64_t)host, "compressed grain %"
                          PRIu64 " does not inflate (zlib error %d)", g, z);
    if (len < need)
        return df_corrupt(err, f->name, (int64_t)host, "compressed grain %"
                          PRIu64 " inflates to %lu bytes, not %" PRIu64, g,
                          (unsigned long)len, need);
    memset(out + len, 0, e->grain_bytes - len);
    return 0;
}

int vmdk_zbatch_flush(struct vmdk_zbatch *b, struct df_error *err)
{
    struct vmdk_gctx *gc = b->gc;
    const struct vmdk_extent *e = b->e;
    unsigned nz = b->nz;

    b->nz = 0;
    if (!nz)
        return 0;
    size_t len = (size_t)(b->hi - b->lo);
    if (vmdk_grow(&gc->span, &gc->span_len, len) < 0)
        return df_io(err, e->file->name, ENOMEM, "cannot allocate grain "
                     "buffer");
    if (df_file_pread(e->file, gc->span, len, b->lo, err) < 0)
        return -1;
    for (unsigned i = 0; i < nz; i++) {
        const struct vmdk_zpiece *p = &b->z[i];
        const uint8_t *have = gc->span + (p->host - b->lo);
        uint64_t have_len = b->hi - p->host;
        if (p->n == e->grain_bytes) {
            /* Whole: straight into place (buf keeps what it holds). */
            if (vmdk_inflate(gc, e, p->g, p->host, have, have_len, p->dst,
                             err) < 0)
                return -1;
            continue;
        }
        gc->ext = NULL;
        if (vmdk_grow(&gc->buf, &gc->cap, e->grain_bytes) < 0)
            return df_io(err, e->file->name, ENOMEM, "cannot allocate "
                         "grain buffer");
        if (vmdk_inflate(gc, e, p->g, p->host, have, have_len, gc->buf,
                         err) < 0)
            return -1;
        gc->ext = e;
        gc->grain = p->g;
        memcpy(p->dst, gc->buf + p->in, p->n);
    }
    return 0;
}

int vmdk_zbatch_add(struct vmdk_zbatch *b, const struct vmdk_extent *e,
                    uint64_t g, uint64_t host, uint8_t *dst, size_t in,
                    size_t n, struct df_error *err)
{
    struct vmdk_gctx *gc = b->gc;

    if (gc->ext == e && gc->grain == g) {
        memcpy(dst, gc->buf + in, n);
        return 0;
    }
    /* The marker is inside the file (vmdk_gte_decode); the grain's
     * bytes end before host + marker + cmax or at EOF. */
    uint64_t hi = min_u64(host + KDMV_MARKER_LEN + vmdk_cmax(e),
                          e->file->size);
    if (b->nz && (b->nz == VMDK_ZBATCH || e != b->e || host < b->last ||
                  host > b->hi + e->grain_bytes ||
                  max_u64(hi, b->hi) - b->lo > vmdk_sparse_span_cap(e)) &&
        vmdk_zbatch_flush(b, err) < 0)
        return -1;
    if (!b->nz) {
        b->e = e;
        b->lo = host;
        b->hi = hi;
    }
    b->hi = max_u64(b->hi, hi);
    b->last = host;
    b->z[b->nz++] = (struct vmdk_zpiece){ dst, g, host, in, n };
    return 0;
}

void vmdk_gt_cache_init(struct vmdk_gt_cache *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->lock_ready = true;
}

void vmdk_gt_cache_release(struct vmdk_gt_cache *c)
{
    for (size_t i = 0; i < VMDK_GT_CACHE_SLOTS; i++)
        free(c->slot[i].buf);
    if (c->lock_ready)
        pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof(*c));
}

void *vmdk_gctx_new(void *arg)
{
    return calloc(1, sizeof(struct vmdk_gctx));
}

void vmdk_gctx_free(void *ctx)
{
    struct vmdk_gctx *gc = ctx;

    if (gc->zs) {
        inflateEnd(gc->zs);
        free(gc->zs);
    }
    free(gc->buf);
    free(gc->cbuf);
    free(gc->span);
    free(gc);
}
