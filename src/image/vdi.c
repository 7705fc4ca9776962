/*
 * vdi.c: VirtualBox VDI images, version 1.1: fixed, dynamic and
 * differencing; probe, open, map, read; identity of a parent.
 *
 * Spec: VirtualBox src/VBox/Storage/VDICore.h and VDI.cpp (read path);
 * summary and pitfalls in docs/formats.md section 4.  All little endian.
 *
 *   0     64   pre-header text (ignored)
 *   64    u32  signature 0xbeda107f
 *   68    u32  version 0x00010001 (1.1)
 *   72    u32  cbHeader: 384, or >= 400 (LCHS geometry follows)
 *   76    u32  type: 1 normal (dynamic), 2 fixed, 3 undo, 4 diff
 *   340   u32  offBlocks: block map, cBlocks u32 entries
 *   344   u32  offData: first data block
 *   360   u32  legacy geometry sector size (512)
 *   368   u64  cbDisk          376  u32 cbBlock      380 u32 cbBlockExtra
 *   384   u32  cBlocks         388  u32 cBlocksAllocated
 *   392   16   uuidCreate      408  16  uuidModify
 *   424   16   uuidLinkage     440  16  uuidParentModify (diff only)
 *
 *   map[b] == 0xffffffff  FREE: the parent's (diff), else a hole
 *   map[b] == 0xfffffffe  ZERO: reads as zeros, never from the parent
 *   otherwise             data at offData + e*(cbBlock+cbBlockExtra)
 *                                 + cbBlockExtra + off % cbBlock
 *
 * The virtual size is cbDisk rounded up to a sector, as QEMU does
 * (VBoxManage convertfromraw writes sizes that are not): the tail of the
 * last sector reads from the last block as stored.
 *
 * Undo images (type 3, legacy) carry the same linkage as differencing
 * images and VirtualBox reads them the same way: they are opened as
 * differencing images.  Refused with exit 5: other versions (0.x has
 * another layout), other types, a block size that is not a power of two
 * in 512 B..256 MiB, a map entry that is neither a marker nor below
 * cBlocks, two entries naming one block, any block or table outside the
 * file, more than VDI_MAX_BLOCKS entries (64 TiB at 1 MiB blocks).
 *
 * Parents are recorded only by UUID (no path in the file): open()
 * sets parent_by_id and chain.c scans directories, asking
 * vdi_check_parent() about each VDI it finds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/runs.h"
#include "util/bytes.h"
#include "util/guid.h"
#include "util/overflow.h"

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_HEADER_LEN 512          /* we read this much of the header */

#define VDI_OFF_SIGNATURE 64
#define VDI_OFF_VERSION 68
#define VDI_OFF_CBHEADER 72
#define VDI_OFF_TYPE 76
#define VDI_OFF_OFFBLOCKS 340
#define VDI_OFF_OFFDATA 344
#define VDI_OFF_SECTOR_SIZE 360
#define VDI_OFF_CBDISK 368
#define VDI_OFF_CBBLOCK 376
#define VDI_OFF_CBBLOCKEXTRA 380
#define VDI_OFF_CBLOCKS 384
#define VDI_OFF_UUID_CREATE 392
#define VDI_OFF_UUID_MODIFY 408
#define VDI_OFF_UUID_LINKAGE 424
#define VDI_OFF_UUID_PARENT_MODIFY 440

#define VDI_HEADER1_LEN 384         /* cbHeader of QEMU's images */
#define VDI_HEADER1PLUS_LEN 400     /* VirtualBox: + LCHS geometry */
#define VDI_PREHEADER_LEN 72        /* cbHeader counts from here */

#define VDI_TYPE_NORMAL 1
#define VDI_TYPE_FIXED 2
#define VDI_TYPE_UNDO 3
#define VDI_TYPE_DIFF 4

#define VDI_BLOCK_FREE 0xffffffffu
#define VDI_BLOCK_ZERO 0xfffffffeu

#define VDI_MIN_BLOCK 512u
#define VDI_MAX_BLOCK (256u << 20)
#define VDI_MAX_BLOCK_EXTRA (1u << 20)
#define VDI_MAX_BLOCKS (1u << 26)   /* 256 MiB of map in memory */
#define VDI_SECTOR 512u

struct vdi {
    uint32_t type;
    uint64_t cb_disk;
    uint32_t cb_block;
    unsigned block_shift;
    uint32_t cb_block_extra;
    uint32_t n_blocks;
    uint64_t off_data;
    uint32_t *map;              /* n_blocks entries, validated by open */
    bool is_diff;
    uint8_t uuid_create[16];
    uint8_t uuid_modify[16];
    uint8_t uuid_linkage[16];
    uint8_t uuid_parent_modify[16];
};

extern const struct image_driver vdi_driver;

static int vdi_probe(const struct image_probe *p)
{
    if (p->head_len < VDI_OFF_SIGNATURE + 4 ||
        get_le32(p->head + VDI_OFF_SIGNATURE) != VDI_SIGNATURE)
        return 0;
    return 100;
}

static void vdi_set_uuid_prop(struct image *img, const char *key,
                              const uint8_t u[16])
{
    char s[40];
    guid_format_mixed(u, s, sizeof(s));
    image_set_prop(img, key, "%s", s);
}

/* An identity string (image.h): "vdi <uuid> <modify uuid>", the two
 * fields vdi_check_parent() compares. */
static void vdi_format_id(char *buf, size_t len, const uint8_t create[16],
                          const uint8_t modify[16])
{
    char c[40], m[40];
    guid_format_mixed(create, c, sizeof(c));
    guid_format_mixed(modify, m, sizeof(m));
    snprintf(buf, len, "vdi %s %s", c, m);
}

/* The file offset of allocated block e, with the extra prefix skipped. */
static uint64_t vdi_block_off(const struct vdi *v, uint32_t e)
{
    /* open() checked that this cannot overflow for e < n_blocks. */
    return v->off_data + (uint64_t)e * ((uint64_t)v->cb_block +
                                        v->cb_block_extra) +
           v->cb_block_extra;
}

/*
 * Read and check the block map: every entry a marker or a distinct
 * block below cBlocks whose bytes (as far as the disk needs them) lie
 * inside the file.
 */
static int vdi_load_map(struct image *img, uint64_t off_blocks,
                        struct df_error *err)
{
    struct vdi *v = img->priv;
    uint8_t *seen = NULL;
    int ret = -1;

    v->map = malloc((size_t)v->n_blocks * 4);
    seen = calloc(v->n_blocks / 8 + 1, 1);
    if (!v->map || !seen) {
        df_io(err, img->name, ENOMEM, "cannot allocate block map of %"
              PRIu32 " entries", v->n_blocks);
        goto out;
    }
    if (df_file_pread(&img->file, v->map, (size_t)v->n_blocks * 4,
                      off_blocks, err) < 0)
        goto out;
    for (uint32_t b = 0; b < v->n_blocks; b++) {
        uint32_t e = get_le32(&v->map[b]);
        int64_t where = (int64_t)(off_blocks + (uint64_t)b * 4);
        v->map[b] = e;
        if (e == VDI_BLOCK_FREE || e == VDI_BLOCK_ZERO)
            continue;
        if (e >= v->n_blocks) {
            df_corrupt(err, img->name, where, "block map entry %" PRIu32
                       " is %" PRIu32 ", not below cBlocks %" PRIu32,
                       b, e, v->n_blocks);
            goto out;
        }
        if (seen[e / 8] & (1u << (e % 8))) {
            df_corrupt(err, img->name, where, "block map entry %" PRIu32
                       ": block %" PRIu32 " is used twice", b, e);
            goto out;
        }
        seen[e / 8] |= (uint8_t)(1u << (e % 8));
        /* Blocks wholly beyond the disk are never read. */
        uint64_t start = (uint64_t)b << v->block_shift;
        if (start >= img->size)
            continue;
        uint64_t need = min_u64(v->cb_block, img->size - start);
        if (!range_within(vdi_block_off(v, e), need, img->file.size)) {
            df_corrupt(err, img->name, where, "block map entry %" PRIu32
                       ": block %" PRIu32 " at %" PRIu64 " is past the "
                       "end of the file (%" PRIu64 " bytes)", b, e,
                       vdi_block_off(v, e), img->file.size);
            goto out;
        }
    }
    ret = 0;
out:
    free(seen);
    return ret;
}

static int vdi_open(struct image *img, struct df_error *err)
{
    struct vdi *v = img->priv;
    uint8_t h[VDI_HEADER_LEN];
    const char *n = img->name;

    if (img->file.size < VDI_PREHEADER_LEN + VDI_HEADER1_LEN)
        return df_corrupt(err, n, 0, "header truncated (%" PRIu64
                          " bytes, need %d)", img->file.size,
                          VDI_PREHEADER_LEN + VDI_HEADER1_LEN);
    memset(h, 0, sizeof(h));
    if (df_file_pread(&img->file, h,
                      (size_t)min_u64(sizeof(h), img->file.size), 0,
                      err) < 0)
        return -1;

    uint32_t sig = get_le32(h + VDI_OFF_SIGNATURE);
    if (sig != VDI_SIGNATURE)
        return df_corrupt(err, n, VDI_OFF_SIGNATURE, "signature 0x%08"
                          PRIx32 " is not 0x%08x", sig, VDI_SIGNATURE);
    uint32_t ver = get_le32(h + VDI_OFF_VERSION);
    if (ver != VDI_VERSION_1_1)
        return df_corrupt(err, n, VDI_OFF_VERSION, "version %" PRIu32
                          ".%" PRIu32 " not supported (only 1.1)",
                          ver >> 16, ver & 0xffff);
    uint32_t cb_header = get_le32(h + VDI_OFF_CBHEADER);
    if (cb_header != VDI_HEADER1_LEN && cb_header < VDI_HEADER1PLUS_LEN)
        return df_corrupt(err, n, VDI_OFF_CBHEADER, "cbHeader %" PRIu32
                          " is neither %d nor at least %d", cb_header,
                          VDI_HEADER1_LEN, VDI_HEADER1PLUS_LEN);
    uint64_t header_end = VDI_PREHEADER_LEN + (uint64_t)cb_header;
    if (header_end > img->file.size)
        return df_corrupt(err, n, VDI_OFF_CBHEADER, "cbHeader %" PRIu32
                          " runs past the end of the file (%" PRIu64
                          " bytes)", cb_header, img->file.size);

    v->type = get_le32(h + VDI_OFF_TYPE);
    switch (v->type) {
    case VDI_TYPE_NORMAL:
    case VDI_TYPE_FIXED:
        break;
    case VDI_TYPE_UNDO:     /* legacy; VirtualBox reads it as a diff */
    case VDI_TYPE_DIFF:
        v->is_diff = true;
        break;
    default:
        return df_corrupt(err, n, VDI_OFF_TYPE, "image type %" PRIu32
                          " unknown (1 normal, 2 fixed, 3 undo, 4 diff)",
                          v->type);
    }

    uint32_t sector = get_le32(h + VDI_OFF_SECTOR_SIZE);
    if (sector != VDI_SECTOR)
        return df_corrupt(err, n, VDI_OFF_SECTOR_SIZE, "sector size %"
                          PRIu32 " is not %u", sector, VDI_SECTOR);

    v->cb_block = get_le32(h + VDI_OFF_CBBLOCK);
    if (!is_pow2(v->cb_block) || v->cb_block < VDI_MIN_BLOCK ||
        v->cb_block > VDI_MAX_BLOCK)
        return df_corrupt(err, n, VDI_OFF_CBBLOCK, "cbBlock %" PRIu32
                          " is not a power of two in %u..%u", v->cb_block,
                          VDI_MIN_BLOCK, VDI_MAX_BLOCK);
    v->block_shift = (unsigned)__builtin_ctz(v->cb_block);
    v->cb_block_extra = get_le32(h + VDI_OFF_CBBLOCKEXTRA);
    if (v->cb_block_extra > VDI_MAX_BLOCK_EXTRA)
        return df_corrupt(err, n, VDI_OFF_CBBLOCKEXTRA, "cbBlockExtra %"
                          PRIu32 " above %u", v->cb_block_extra,
                          VDI_MAX_BLOCK_EXTRA);

    v->cb_disk = get_le64(h + VDI_OFF_CBDISK);
    v->n_blocks = get_le32(h + VDI_OFF_CBLOCKS);
    if (v->n_blocks > VDI_MAX_BLOCKS)
        return df_corrupt(err, n, VDI_OFF_CBLOCKS, "cBlocks %" PRIu32
                          " above %u", v->n_blocks, VDI_MAX_BLOCKS);
    /* n_blocks < 2^26 and cb_block <= 2^28: no overflow. */
    uint64_t capacity = (uint64_t)v->n_blocks << v->block_shift;
    if (v->cb_disk > capacity)
        return df_corrupt(err, n, VDI_OFF_CBDISK, "cbDisk %" PRIu64
                          " larger than cBlocks %" PRIu32 " * cbBlock %"
                          PRIu32, v->cb_disk, v->n_blocks, v->cb_block);
    uint64_t needed = div_round_up(v->cb_disk, v->cb_block);
    if (v->n_blocks > needed + 1 && v->n_blocks > 2 * needed)
        return df_corrupt(err, n, VDI_OFF_CBLOCKS, "cBlocks %" PRIu32
                          " far more than the %" PRIu64 " blocks cbDisk %"
                          PRIu64 " needs", v->n_blocks, needed, v->cb_disk);
    /* The virtual size: whole sectors (see the top of the file). */
    img->size = div_round_up(v->cb_disk, VDI_SECTOR) * VDI_SECTOR;
    if (img->size > capacity)
        return df_corrupt(err, n, VDI_OFF_CBDISK, "cbDisk %" PRIu64
                          " rounded to sectors exceeds the blocks",
                          v->cb_disk);

    uint64_t off_blocks = get_le32(h + VDI_OFF_OFFBLOCKS);
    v->off_data = get_le32(h + VDI_OFF_OFFDATA);
    uint64_t map_len = (uint64_t)v->n_blocks * 4;
    if (off_blocks < header_end)
        return df_corrupt(err, n, VDI_OFF_OFFBLOCKS, "offBlocks %" PRIu64
                          " inside the header (ends at %" PRIu64 ")",
                          off_blocks, header_end);
    if (!range_within(off_blocks, map_len, img->file.size))
        return df_corrupt(err, n, VDI_OFF_OFFBLOCKS, "block map at %"
                          PRIu64 " (%" PRIu64 " bytes) past the end of "
                          "the file (%" PRIu64 " bytes)", off_blocks,
                          map_len, img->file.size);
    if (v->off_data < off_blocks + map_len)
        return df_corrupt(err, n, VDI_OFF_OFFDATA, "offData %" PRIu64
                          " inside the block map (ends at %" PRIu64 ")",
                          v->off_data, off_blocks + map_len);
    if (v->off_data > img->file.size)
        return df_corrupt(err, n, VDI_OFF_OFFDATA, "offData %" PRIu64
                          " past the end of the file (%" PRIu64 " bytes)",
                          v->off_data, img->file.size);

    memcpy(v->uuid_create, h + VDI_OFF_UUID_CREATE, 16);
    memcpy(v->uuid_modify, h + VDI_OFF_UUID_MODIFY, 16);
    memcpy(v->uuid_linkage, h + VDI_OFF_UUID_LINKAGE, 16);
    memcpy(v->uuid_parent_modify, h + VDI_OFF_UUID_PARENT_MODIFY, 16);

    if (vdi_load_map(img, off_blocks, err) < 0)
        return -1;

    image_set_prop(img, "type", "%s", v->is_diff ? "diff" :
                   v->type == VDI_TYPE_FIXED ? "fixed" : "dynamic");
    vdi_set_uuid_prop(img, "uuid", v->uuid_create);
    vdi_set_uuid_prop(img, "modify_uuid", v->uuid_modify);
    vdi_format_id(img->layer_id, sizeof(img->layer_id), v->uuid_create,
                  v->uuid_modify);
    if (v->is_diff) {
        vdi_set_uuid_prop(img, "parent_uuid", v->uuid_linkage);
        vdi_format_id(img->parent_id, sizeof(img->parent_id),
                      v->uuid_linkage, v->uuid_parent_modify);
        img->has_parent_ref = true;
        img->parent_by_id = true;
    }
    image_set_prop(img, "block_size", "%" PRIu32, v->cb_block);
    return 0;
}

/* runs_locate_fn: one block at a time; never fails. */
static int vdi_locate(struct image *img, uint64_t off, uint64_t end,
                      enum extent_state *state, uint64_t *run_end,
                      uint64_t *file_off, struct df_error *err)
{
    const struct vdi *v = img->priv;
    uint64_t b = off >> v->block_shift;
    uint32_t e = v->map[b];

    *run_end = min_u64((b + 1) << v->block_shift, end);
    if (e == VDI_BLOCK_FREE)
        *state = v->is_diff ? EXT_PARENT : EXT_HOLE;
    else if (e == VDI_BLOCK_ZERO)
        *state = EXT_ZERO;
    else {
        *state = EXT_DATA;
        *file_off = vdi_block_off(v, e) + (off & (v->cb_block - 1));
    }
    return 0;
}

static int vdi_map(struct image *img, uint64_t off, uint64_t len,
                   struct extent_list *out, struct df_error *err)
{
    return runs_map(img, off, len, out, vdi_locate, err);
}

static int vdi_read(struct image *img, void *buf, size_t len, uint64_t off,
                    struct df_error *err)
{
    return runs_read(img, buf, len, off, vdi_locate, err);
}

/*
 * The child names its parent by uuidLinkage (the parent's uuidCreate)
 * and records the parent's uuidModify when it was made: a parent written
 * since then no longer matches what the child's blocks were taken over,
 * so it is refused too.  Returns -2 (not -1) when the parent is the one
 * named but fails a later check, so that an identifier search reports
 * that failure rather than "not found".
 */
static int vdi_check_parent(struct image *child, struct image *parent,
                            struct df_error *err)
{
    const struct vdi *c = child->priv;
    char a[40], b[40];

    if (parent->drv != &vdi_driver)
        return df_corrupt(err, child->name, -1, "parent %s is a %s image, "
                          "not vdi", parent->name, parent->drv->name);
    const struct vdi *p = parent->priv;
    if (memcmp(p->uuid_create, c->uuid_linkage, 16)) {
        guid_format_mixed(c->uuid_linkage, a, sizeof(a));
        guid_format_mixed(p->uuid_create, b, sizeof(b));
        return df_corrupt(err, child->name, VDI_OFF_UUID_LINKAGE,
                          "uuidLinkage %s does not match %s (uuidCreate %s)",
                          a, parent->name, b);
    }
    if (memcmp(p->uuid_modify, c->uuid_parent_modify, 16)) {
        guid_format_mixed(c->uuid_parent_modify, a, sizeof(a));
        guid_format_mixed(p->uuid_modify, b, sizeof(b));
        df_corrupt(err, child->name, VDI_OFF_UUID_PARENT_MODIFY,
                   "uuidParentModify %s does not match %s (uuidModify %s): "
                   "the parent was modified after this image was made",
                   a, parent->name, b);
        return -2;
    }
    if (p->cb_disk != c->cb_disk) {
        df_corrupt(err, child->name, VDI_OFF_CBDISK, "cbDisk %" PRIu64
                   " differs from %s (cbDisk %" PRIu64 ")", c->cb_disk,
                   parent->name, p->cb_disk);
        return -2;
    }
    return 0;
}

static void vdi_close(struct image *img)
{
    struct vdi *v = img->priv;
    free(v->map);
    v->map = NULL;
}

const struct image_driver vdi_driver = {
    .name = "vdi",
    .priv_size = sizeof(struct vdi),
    .caps = IMG_THREAD_SAFE,
    .probe = vdi_probe,
    .open = vdi_open,
    .map = vdi_map,
    .read = vdi_read,
    .check_parent = vdi_check_parent,
    .close = vdi_close,
};
