/*
 * fs_xfs.c: the used-block map of an XFS filesystem (fs.h).
 *
 * Free space is what the by-block-number free-space B+tree (bnobt) of
 * each allocation group names; everything else of the filesystem is
 * used: AG headers, the AG free list, inodes, btrees, the internal log,
 * data.  The map is given only when the filesystem can be trusted: every
 * feature known, no realtime device, an internal log whose last record
 * is an unmount record (clean), each AG's free tree well formed and its
 * sum equal to the AGF's free count.  Anything else: NULL with
 * why->reason set (the caller copies the region whole).
 *
 * On-disk facts (big endian throughout; docs/formats.md, XFS):
 *   superblock at 0, AGF at sector 1 of each AG, short-form btree
 *   blocks (16-byte header, 56 with CRCs), log of 512-byte basic blocks
 *   whose first word is the cycle number (or a record header's magic).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "track/fs_xfs.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/overflow.h"

#define XFS_SB_MAGIC 0x58465342u        /* "XFSB" */
#define XFS_AGF_MAGIC 0x58414746u       /* "XAGF" */
#define XFS_ABTB_MAGIC 0x41425442u      /* "ABTB": bnobt, v4 */
#define XFS_AB3B_MAGIC 0x41423342u      /* "AB3B": bnobt, v5 */
#define XLOG_MAGIC 0xFEEDBABEu

#define XFS_MAX_LEVELS 9                /* deeper than any real bnobt */
#define XFS_MIN_AG_BLOCKS 64
#define BB 512u
#define LOG_CHUNK (1u << 20)

/* Superblock offsets. */
#define SB_BLOCKSIZE 4
#define SB_DBLOCKS 8
#define SB_RBLOCKS 16
#define SB_LOGSTART 48
#define SB_AGBLOCKS 84
#define SB_AGCOUNT 88
#define SB_LOGBLOCKS 96
#define SB_VERSIONNUM 100
#define SB_SECTSIZE 102
#define SB_BLOCKLOG 120
#define SB_SECTLOG 121
#define SB_AGBLKLOG 124
#define SB_INPROGRESS 126
#define SB_FEATURES2 200
#define SB_FEAT_RO_COMPAT 212
#define SB_FEAT_INCOMPAT 216
#define SB_FEAT_LOG_INCOMPAT 220
#define SB_CRC 224

/* v4 version bits diskferry knows (all but SHARED, never supported). */
#define V4_SHARED 0x0200u
#define V4_MOREBITS 0x8000u
/* features2: lazysbcount, attr2, parent, projid32, crc, ftype */
#define F2_KNOWN 0x039Au
/* v5: finobt, rmapbt, reflink, inobtcnt */
#define RO_COMPAT_KNOWN 0x0000000Fu
/* v5: ftype, spinodes, meta_uuid, bigtime, nrext64, exchange, parent */
#define INCOMPAT_NEEDSREPAIR 0x10u
#define INCOMPAT_KNOWN 0x000000EFu

/* AGF offsets. */
#define AGF_VERSION 4
#define AGF_SEQNO 8
#define AGF_LENGTH 12
#define AGF_BNOROOT 16
#define AGF_BNOLEVEL 28
#define AGF_FREEBLKS 52
#define AGF_CRC 216

#define BT_CRC 52                       /* bb_crc of a short-form block */

struct xfs {
    fs_read_fn rd;
    void *rctx;
    uint64_t off, len;
    struct fs_why *why;
    struct df_error *err;

    uint32_t bs, sectsize, agblocks, agcount, agblklog;
    uint64_t dblocks;
    bool v5;
    uint64_t log_blk, log_blocks;       /* linear fs blocks */

    /* the AG being walked */
    uint32_t agno, ag_len, first_free;
    uint64_t ag_start;                  /* fs block */
    uint64_t ag_free, prev_end;
    uint64_t visits, max_visits;

    uint8_t *lvl[XFS_MAX_LEVELS];       /* one block per tree level */
    uint8_t *buf;                       /* LOG_CHUNK bytes */
    struct extent_list free;
};

static int untrusted(struct xfs *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int untrusted(struct xfs *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->why->reason, sizeof(x->why->reason), fmt, ap);
    va_end(ap);
    return 1;
}

/* Read [pos, pos+n) of the filesystem: 0, 1 (beyond the region:
 * untrusted), -1. */
static int xread(struct xfs *x, void *b, size_t n, uint64_t pos)
{
    if (!range_within(pos, n, x->len))
        return untrusted(x, "XFS structure at %llu lies outside the "
                         "partition", (unsigned long long)pos);
    return x->rd(x->rctx, b, n, x->off + pos, x->err);
}

/* The CRC-32C at crc_off of b[0..n) matches (stored little endian). */
static bool crc_ok(const uint8_t *b, size_t n, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t c = crc32c(0, b, crc_off);
    c = crc32c(c, zero, 4);
    c = crc32c(c, b + crc_off + 4, n - crc_off - 4);
    return c == get_le32(b + crc_off);
}

static unsigned log2_exact(uint64_t v)
{
    unsigned l = 0;
    while ((1ull << l) < v)
        l++;
    return l;
}

static int parse_sb(struct xfs *x)
{
    uint8_t *sb = x->buf;
    int r = xread(x, sb, BB, 0);
    if (r)
        return r;
    if (get_be32(sb) != XFS_SB_MAGIC)
        return untrusted(x, "no XFS superblock");
    unsigned ver = get_be16(sb + SB_VERSIONNUM);
    x->bs = get_be32(sb + SB_BLOCKSIZE);
    x->dblocks = get_be64(sb + SB_DBLOCKS);
    x->agblocks = get_be32(sb + SB_AGBLOCKS);
    x->agcount = get_be32(sb + SB_AGCOUNT);
    x->agblklog = sb[SB_AGBLKLOG];
    x->sectsize = get_be16(sb + SB_SECTSIZE);
    x->v5 = (ver & 0xf) == 5;

    if ((ver & 0xf) != 4 && (ver & 0xf) != 5)
        return untrusted(x, "unknown XFS version %u", ver & 0xf);
    if (!is_pow2(x->bs) || x->bs < 512 || x->bs > 65536 ||
        sb[SB_BLOCKLOG] != log2_exact(x->bs))
        return untrusted(x, "XFS block size %u not understood", x->bs);
    if (!is_pow2(x->sectsize) || x->sectsize < 512 || x->sectsize > x->bs ||
        sb[SB_SECTLOG] != log2_exact(x->sectsize))
        return untrusted(x, "XFS sector size %u not understood", x->sectsize);
    if (x->v5) {
        r = xread(x, sb, x->sectsize, 0);
        if (r)
            return r;
        if (!crc_ok(sb, x->sectsize, SB_CRC))
            return untrusted(x, "XFS superblock checksum does not match");
    }
    if (sb[SB_INPROGRESS])
        return untrusted(x, "XFS superblock says mkfs is in progress");
    if (get_be64(sb + SB_RBLOCKS))
        return untrusted(x, "XFS has a realtime device");
    if (ver & V4_SHARED)
        return untrusted(x, "XFS shared-filesystem bit set");
    uint32_t f2 = (ver & V4_MOREBITS) ? get_be32(sb + SB_FEATURES2) : 0;
    if (f2 & ~F2_KNOWN)
        return untrusted(x, "unknown XFS features2 0x%x", f2 & ~F2_KNOWN);
    if (x->v5) {
        uint32_t ro = get_be32(sb + SB_FEAT_RO_COMPAT);
        uint32_t in = get_be32(sb + SB_FEAT_INCOMPAT);
        uint32_t li = get_be32(sb + SB_FEAT_LOG_INCOMPAT);
        /* compat features are by definition safe to ignore */
        if (in & INCOMPAT_NEEDSREPAIR)
            return untrusted(x, "XFS needs repair");
        if (in & ~INCOMPAT_KNOWN)
            return untrusted(x, "unknown XFS incompat feature 0x%x",
                             in & ~INCOMPAT_KNOWN);
        if (ro & ~RO_COMPAT_KNOWN)
            return untrusted(x, "unknown XFS ro-compat feature 0x%x",
                             ro & ~RO_COMPAT_KNOWN);
        if (li)
            return untrusted(x, "XFS log has incompat features 0x%x "
                             "(needs recovery)", li);
    }
    if (x->agblocks < XFS_MIN_AG_BLOCKS || x->agcount == 0 ||
        x->agblklog >= 32 || (1ull << x->agblklog) < x->agblocks ||
        (x->agblklog && (1ull << (x->agblklog - 1)) >= x->agblocks))
        return untrusted(x, "XFS allocation group geometry not understood");
    uint64_t full = (uint64_t)x->agcount * x->agblocks;
    if (x->dblocks > full || x->dblocks <= full - x->agblocks)
        return untrusted(x, "XFS size disagrees with its allocation groups");
    uint64_t bytes;
    if (ovf_mul(x->dblocks, x->bs, &bytes) || bytes > x->len)
        return untrusted(x, "XFS is larger than its partition");

    uint64_t ls = get_be64(sb + SB_LOGSTART);
    x->log_blocks = get_be32(sb + SB_LOGBLOCKS);
    if (ls == 0)
        return untrusted(x, "XFS has an external log");
    uint64_t lag = ls >> x->agblklog, lbno = ls & ((1ull << x->agblklog) - 1);
    if (lag >= x->agcount || lbno >= x->agblocks || x->log_blocks == 0)
        return untrusted(x, "XFS log position not understood");
    x->log_blk = lag * x->agblocks + lbno;
    if (x->log_blocks > x->dblocks - x->log_blk ||
        lbno + x->log_blocks > x->agblocks)
        return untrusted(x, "XFS log lies outside its allocation group");
    return 0;
}

/* The cycle of one log basic block; *hdr: it starts a record. */
static uint32_t bb_cycle(const uint8_t *b, bool *hdr)
{
    *hdr = get_be32(b) == XLOG_MAGIC;
    return *hdr ? get_be32(b + 4) : get_be32(b);
}

/*
 * The log is clean when its blocks carry cycle C up to the head and C-1
 * after it (one boundary, nothing else), and the last record before the
 * head is a lone unmount record ending exactly at the head.  Anything
 * else, including what a torn or in-flight write leaves: not clean.
 */
static int check_log(struct xfs *x)
{
    uint64_t n = x->log_blocks * (x->bs / BB);   /* basic blocks */
    uint64_t base = x->log_blk * x->bs;
    uint64_t head = n, hdr_c = n, hdr_prev = n;
    uint32_t c0 = 0;
    const char *dirty = "XFS log is dirty (needs recovery)";

    for (uint64_t i = 0; i < n;) {
        uint64_t m = min_u64(n - i, LOG_CHUNK / BB);
        int r = xread(x, x->buf, (size_t)(m * BB), base + i * BB);
        if (r)
            return r;
        for (uint64_t j = 0; j < m; j++, i++) {
            bool hdr;
            uint32_t c = bb_cycle(x->buf + j * BB, &hdr);
            if (i == 0) {
                c0 = c;
                if (c0 == 0)
                    return untrusted(x, "%s", dirty);
            }
            if (head == n && c == c0) {
                if (hdr)
                    hdr_c = i;
            } else if (c == c0 - 1) {
                if (head == n)
                    head = i;
                if (hdr)
                    hdr_prev = i;
            } else {
                return untrusted(x, "%s", dirty);
            }
        }
    }
    /* The last record: its header before the head in cycle C, or (it
     * wrapped round the end) after the head in cycle C-1. */
    uint64_t h = hdr_c != n ? hdr_c : hdr_prev;
    uint32_t hc = hdr_c != n ? c0 : c0 - 1;
    if (h == n)
        return untrusted(x, "%s", dirty);
    uint8_t rh[BB];
    int r = xread(x, rh, BB, base + h * BB);
    if (r)
        return r;
    uint32_t ver = get_be32(rh + 8), len = get_be32(rh + 12);
    uint32_t size = get_be32(rh + 320);
    if (get_be32(rh + 4) != hc || (ver != 1 && ver != 2) ||
        get_be64(rh + 16) != ((uint64_t)hc << 32 | h) || len > (1u << 20))
        return untrusted(x, "%s", dirty);
    uint64_t hblks = 1;
    if (ver == 2 && size > 32768) {
        if (size > (1u << 20))
            return untrusted(x, "%s", dirty);
        hblks = div_round_up(size, 32768);
    }
    uint64_t end = h + hblks + div_round_up(len, BB);
    if (end - h > n || end % n != head % n || get_be32(rh + 40) != 1)
        return untrusted(x, "%s", dirty);
    r = xread(x, rh, BB, base + (h + hblks) % n * BB);
    if (r)
        return r;
    /* op header: tid (the cycle), len, client id XFS_LOG, flags */
    if (rh[8] != 0xAA || !(rh[9] & 0x20))
        return untrusted(x, "%s", dirty);
    return 0;
}

static int walk(struct xfs *x, uint32_t agbno, unsigned level)
{
    if (++x->visits > x->max_visits)
        return untrusted(x, "XFS free-space tree of AG %u loops", x->agno);
    if (agbno < x->first_free || agbno >= x->ag_len)
        return untrusted(x, "XFS free-space tree of AG %u points outside "
                         "it", x->agno);
    uint8_t *b = x->lvl[level];
    uint64_t blk = x->ag_start + agbno;
    int r = xread(x, b, x->bs, blk * x->bs);
    if (r)
        return r;
    unsigned hdr = x->v5 ? 56 : 16;
    if (get_be32(b) != (x->v5 ? XFS_AB3B_MAGIC : XFS_ABTB_MAGIC) ||
        get_be16(b + 4) != level)
        return untrusted(x, "XFS free-space tree block %llu not understood",
                         (unsigned long long)blk);
    if (x->v5 && (get_be64(b + 16) != blk * (x->bs / BB) ||
                  get_be32(b + 48) != x->agno || !crc_ok(b, x->bs, BT_CRC)))
        return untrusted(x, "XFS free-space tree block %llu checksum or "
                         "owner does not match", (unsigned long long)blk);
    unsigned nrec = get_be16(b + 6);
    if (level == 0) {
        if (nrec > (x->bs - hdr) / 8)
            return untrusted(x, "XFS free-space tree block %llu overfull",
                             (unsigned long long)blk);
        for (unsigned i = 0; i < nrec; i++) {
            uint64_t s = get_be32(b + hdr + 8 * i);
            uint64_t c = get_be32(b + hdr + 8 * i + 4);
            if (c == 0 || s < x->first_free || s < x->prev_end ||
                s + c > x->ag_len)
                return untrusted(x, "XFS free extent %llu+%llu of AG %u "
                                 "out of order or range",
                                 (unsigned long long)s, (unsigned long long)c,
                                 x->agno);
            if (ranges_overlap(x->ag_start + s, c, x->log_blk, x->log_blocks))
                return untrusted(x, "XFS free space overlaps its log");
            x->prev_end = s + c;
            x->ag_free += c;
            r = extent_list_append(&x->free, x->off + (x->ag_start + s) * x->bs,
                                   c * x->bs, EXT_DATA, "xfs", x->err);
            if (r == 1)
                return untrusted(x, "XFS free space too fragmented to map");
            if (r < 0)
                return -1;
        }
        return 0;
    }
    unsigned maxr = (x->bs - hdr) / 12;
    if (nrec == 0 || nrec > maxr)
        return untrusted(x, "XFS free-space tree block %llu not understood",
                         (unsigned long long)blk);
    for (unsigned i = 0; i < nrec; i++) {
        /* the block is reread by the child's level only: b stays valid */
        r = walk(x, get_be32(b + hdr + maxr * 8 + 4 * i), level - 1);
        if (r)
            return r;
    }
    return 0;
}

static int walk_ag(struct xfs *x, uint32_t agno)
{
    uint8_t *agf = x->buf;
    x->agno = agno;
    x->ag_start = (uint64_t)agno * x->agblocks;
    x->ag_len = (uint32_t)min_u64(x->agblocks, x->dblocks - x->ag_start);
    x->first_free = (uint32_t)div_round_up(4ull * x->sectsize, x->bs);
    x->ag_free = 0;
    x->prev_end = 0;
    x->visits = 0;
    x->max_visits = x->ag_len;
    int r = xread(x, agf, x->sectsize, x->ag_start * x->bs + x->sectsize);
    if (r)
        return r;
    if (get_be32(agf) != XFS_AGF_MAGIC || get_be32(agf + AGF_VERSION) != 1 ||
        get_be32(agf + AGF_SEQNO) != agno ||
        get_be32(agf + AGF_LENGTH) != x->ag_len)
        return untrusted(x, "XFS AGF of AG %u not understood", agno);
    if (x->v5 && !crc_ok(agf, x->sectsize, AGF_CRC))
        return untrusted(x, "XFS AGF of AG %u checksum does not match", agno);
    uint32_t root = get_be32(agf + AGF_BNOROOT);
    uint32_t levels = get_be32(agf + AGF_BNOLEVEL);
    uint32_t freeblks = get_be32(agf + AGF_FREEBLKS);
    if (levels == 0 || levels > XFS_MAX_LEVELS)
        return untrusted(x, "XFS AGF of AG %u: free-space tree depth %u",
                         agno, levels);
    r = walk(x, root, levels - 1);
    if (r)
        return r;
    if (x->ag_free != freeblks)
        return untrusted(x, "XFS free counts disagree in AG %u (tree %llu, "
                         "AGF %u)", agno, (unsigned long long)x->ag_free,
                         freeblks);
    return 0;
}

int xfs_used_ranges(fs_read_fn rd, void *ctx, uint64_t off, uint64_t len,
                    struct fs_why *why, struct extent_list *out,
                    struct df_error *err)
{
    struct xfs x = { .rd = rd, .rctx = ctx, .off = off, .len = len,
                     .why = why, .err = err };
    struct extent_list all;
    int r = -1;

    memset(why, 0, sizeof(*why));
    snprintf(why->fs, sizeof(why->fs), "xfs");
    extent_list_init(&x.free, out->cap ? out->cap - 1 : 0);
    extent_list_init(&all, 1);
    bool nomem = !(x.buf = malloc(LOG_CHUNK));
    for (unsigned i = 0; i < XFS_MAX_LEVELS; i++)
        nomem |= !(x.lvl[i] = malloc(65536));
    if (nomem) {
        df_io(err, "xfs", ENOMEM, "cannot read the XFS metadata");
        goto out;
    }
    if (!range_within(off, len, UINT64_MAX) || len == 0) {
        r = untrusted(&x, "empty XFS region");
        goto out;
    }
    r = parse_sb(&x);
    for (uint32_t ag = 0; r == 0 && ag < x.agcount; ag++)
        r = walk_ag(&x, ag);
    if (r == 0)
        r = check_log(&x);
    if (r == 0 && extent_list_append(&all, off, len, EXT_DATA, "xfs", err) < 0)
        r = -1;
    if (r == 0) {
        int s = extent_list_subtract(&all, &x.free, out, err);
        if (s < 0)
            r = -1;
        else if (s == 1)
            r = untrusted(&x, "XFS free space too fragmented to map");
    }
    if (r == 0)
        why->used_bytes = extent_list_bytes(out, EXT_DATA);
out:
    if (r != 0) {
        extent_list_clear(out);
        why->used_bytes = 0;
    }
    if (r < 0)
        why->reason[0] = 0;
    free(x.buf);
    for (unsigned i = 0; i < XFS_MAX_LEVELS; i++)
        free(x.lvl[i]);
    extent_list_release(&x.free);
    extent_list_release(&all);
    return r;
}

static int image_rd(void *ctx, void *buf, size_t len, uint64_t off,
                    struct df_error *err)
{
    return image_read(ctx, buf, len, off, err);
}

struct used_map *fs_xfs_open(struct image *img, uint64_t off, uint64_t len,
                             struct fs_why *why, struct df_error *err)
{
    struct extent_list used;
    struct used_map *um = NULL;

    extent_list_init(&used, EXTENT_LIST_DEFAULT_CAP);
    if (xfs_used_ranges(image_rd, img, off, len, why, &used, err) == 0)
        um = used_map_from_list("xfs", &used, err);
    extent_list_release(&used);
    return um;
}
