/*
 * fs_ext.c: the used-block map of an ext2/ext3/ext4 filesystem (fs.h),
 * read with e2fsprogs' libext2fs through an io_manager of our own that
 * reads the region [off, off+len) of the image (image_read), so it
 * works inside any image format and partition.  Nothing is written:
 * the manager refuses writes with EROFS.
 *
 * The map is the block bitmap's set bits (clusters with bigalloc), which
 * already cover every group's metadata and the journal, plus the boot
 * block and primary superblock, plus whatever of the region lies past
 * the filesystem's end.  It is trusted only when the filesystem is clean
 * (no journal recovery pending, valid, no errors), libext2fs knows all
 * its features, its superblock, descriptors and bitmaps parse (checksums
 * included), and the superblock's free block count equals the bitmap's
 * (docs/formats.md section 10).
 *
 * The context reaches our manager's open through the device name
 * libext2fs passes it: "diskferry:<address>", checked by a magic.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define EXT_IO_MAGIC 0x64666578u       /* "dfex": a context we made */
#define EXT_SB_OFF 1024u
#define EXT_SB_SIZE 1024u

/* What the io channel reads: one region of one image. */
struct ext_io {
    uint32_t magic;
    struct image *img;
    uint64_t off, len;
    struct df_error *err;       /* the first I/O error, told to the caller */
    bool io_failed;
};

static errcode_t ext_io_open(const char *name, int flags, io_channel *out);
static errcode_t ext_io_close(io_channel ch);
static errcode_t ext_io_set_blksize(io_channel ch, int blksize);
static errcode_t ext_io_read_blk(io_channel ch, unsigned long block,
                                 int count, void *data);
static errcode_t ext_io_read_blk64(io_channel ch, unsigned long long block,
                                   int count, void *data);
static errcode_t ext_io_write_blk(io_channel ch, unsigned long block,
                                  int count, const void *data);
static errcode_t ext_io_write_blk64(io_channel ch, unsigned long long block,
                                    int count, const void *data);
static errcode_t ext_io_write_byte(io_channel ch, unsigned long off,
                                   int count, const void *data);
static errcode_t ext_io_flush(io_channel ch);
static errcode_t ext_io_set_option(io_channel ch, const char *opt,
                                   const char *arg);

static struct struct_io_manager ext_io_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "diskferry image I/O manager",
    .open = ext_io_open,
    .close = ext_io_close,
    .set_blksize = ext_io_set_blksize,
    .read_blk = ext_io_read_blk,
    .write_blk = ext_io_write_blk,
    .flush = ext_io_flush,
    .write_byte = ext_io_write_byte,
    .set_option = ext_io_set_option,
    .read_blk64 = ext_io_read_blk64,
    .write_blk64 = ext_io_write_blk64,
};

/* The name libext2fs hands back to open: our context's address. */
static errcode_t ext_io_open(const char *name, int flags, io_channel *out)
{
    void *p = NULL;
    char tail;
    if (!name || sscanf(name, "diskferry:%p%c", &p, &tail) != 1 || !p ||
        ((struct ext_io *)p)->magic != EXT_IO_MAGIC)
        return EXT2_ET_BAD_DEVICE_NAME;
    if (flags & IO_FLAG_RW)
        return EROFS;
    io_channel ch = calloc(1, sizeof(*ch));
    if (!ch)
        return EXT2_ET_NO_MEMORY;
    ch->name = strdup(name);
    if (!ch->name) {
        free(ch);
        return EXT2_ET_NO_MEMORY;
    }
    ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    ch->manager = &ext_io_manager;
    ch->block_size = 1024;
    ch->refcount = 1;
    ch->private_data = p;
    *out = ch;
    return 0;
}

static errcode_t ext_io_close(io_channel ch)
{
    if (--ch->refcount > 0)
        return 0;
    free(ch->name);
    free(ch);
    return 0;
}

static errcode_t ext_io_set_blksize(io_channel ch, int blksize)
{
    if (blksize < 1024 || blksize > 65536)
        return EXT2_ET_INVALID_ARGUMENT;
    ch->block_size = blksize;
    return 0;
}

static errcode_t ext_io_read_blk64(io_channel ch, unsigned long long block,
                                   int count, void *data)
{
    struct ext_io *io = ch->private_data;
    uint64_t size, at;
    /* count < 0: that many bytes; else that many blocks. */
    if (count < 0)
        size = (uint64_t)-(int64_t)count;
    else if (ovf_mul((uint64_t)count, (uint64_t)ch->block_size, &size))
        return EXT2_ET_SHORT_READ;
    if (size == 0)
        return 0;
    if (size > SIZE_MAX ||
        ovf_mul(block, (uint64_t)ch->block_size, &at) ||
        !range_within(at, size, io->len))
        return EXT2_ET_SHORT_READ;      /* past the region: does not parse */
    if (image_read(io->img, data, (size_t)size, io->off + at, io->err) < 0) {
        io->io_failed = true;
        return EIO;
    }
    return 0;
}

static errcode_t ext_io_read_blk(io_channel ch, unsigned long block,
                                 int count, void *data)
{
    return ext_io_read_blk64(ch, block, count, data);
}

static errcode_t ext_io_write_blk64(io_channel ch, unsigned long long block,
                                    int count, const void *data)
{
    return EROFS;
}

static errcode_t ext_io_write_blk(io_channel ch, unsigned long block,
                                  int count, const void *data)
{
    return EROFS;
}

static errcode_t ext_io_write_byte(io_channel ch, unsigned long off,
                                   int count, const void *data)
{
    return EROFS;
}

static errcode_t ext_io_flush(io_channel ch)
{
    return 0;
}

static errcode_t ext_io_set_option(io_channel ch, const char *opt,
                                   const char *arg)
{
    return EXT2_ET_INVALID_ARGUMENT;
}

static pthread_once_t ext_err_once = PTHREAD_ONCE_INIT;

static void ext_err_init(void)
{
    initialize_ext2_error_table();
}

static const char *ext_strerror(errcode_t e)
{
    pthread_once(&ext_err_once, ext_err_init);
    return error_message(e);
}

/* "ext2", "ext3" or "ext4", as blkid tells them apart. */
static const char *ext_kind(uint32_t compat, uint32_t incompat,
                            uint32_t ro_compat)
{
    const uint32_t old_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE |
        EXT3_FEATURE_INCOMPAT_RECOVER | EXT2_FEATURE_INCOMPAT_META_BG;
    const uint32_t old_ro = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
        EXT2_FEATURE_RO_COMPAT_LARGE_FILE | 0x0004u /* btree_dir */;
    if ((incompat & ~old_incompat) || (ro_compat & ~old_ro))
        return "ext4";
    return (compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL) ? "ext3" : "ext2";
}

/* The used ranges being built, coalesced as they come (ascending). */
struct used_acc {
    struct extent_list l;
    uint64_t cur, end;          /* the pending range, end == cur: none */
    bool full;                  /* the list reached its cap: the rest
                                 * is not added */
};

static int acc_flush(struct used_acc *a, const char *what,
                     struct df_error *err)
{
    if (a->end == a->cur)
        return 0;
    int r = extent_list_append(&a->l, a->cur, a->end - a->cur, EXT_DATA,
                               what, err);
    if (r == 1)
        a->full = true;
    a->cur = a->end;
    return r < 0 ? -1 : 0;
}

/* Add [s, e) (s no lower than any range added before). */
static int acc_add(struct used_acc *a, uint64_t s, uint64_t e,
                   const char *what, struct df_error *err)
{
    if (e <= s || a->full)
        return 0;
    if (a->end > a->cur && s <= a->end) {
        a->end = max_u64(a->end, e);
        return 0;
    }
    if (acc_flush(a, what, err) < 0)
        return -1;
    a->cur = s;
    a->end = e;
    return 0;
}

/*
 * Walk the block bitmap over [first, nblocks): add the used runs (in the
 * disk's bytes) and count the free blocks as the superblock counts them
 * (whole clusters with bigalloc).  0, or an ext2fs error code.
 */
static errcode_t walk_bitmap(ext2_filsys fs, uint64_t off, struct used_acc *a,
                             uint64_t *free_blocks, const char *what,
                             struct df_error *err, bool *failed)
{
    uint64_t bs = fs->blocksize;
    uint64_t n = ext2fs_blocks_count(fs->super);
    unsigned cbits = (unsigned)fs->cluster_ratio_bits;
    uint64_t first = fs->super->s_first_data_block;
    uint64_t last = n - 1;
    /* One past the last cluster's last block: a partial last cluster
     * counts whole, as the kernel and e2fsck count it. */
    uint64_t cend = ((last >> cbits) + 1) << cbits;
    uint64_t pos = first, nfree = 0;
    ext2fs_block_bitmap bm = fs->block_map;

    while (pos <= last) {
        blk64_t s, z;
        errcode_t e = ext2fs_find_first_set_block_bitmap2(bm, pos, last, &s);
        if (e == ENOENT) {
            nfree += cend - pos;
            break;
        }
        if (e)
            return e;
        nfree += s - pos;
        e = ext2fs_find_first_zero_block_bitmap2(bm, s, last, &z);
        if (e == ENOENT)
            z = cend;
        else if (e)
            return e;
        if (z <= s)
            return EXT2_ET_INVALID_ARGUMENT;
        uint64_t zb = min_u64(z, n);
        if (acc_add(a, off + s * bs, off + zb * bs, what, err) < 0) {
            *failed = true;
            return EXT2_ET_NO_MEMORY;
        }
        pos = z;
    }
    *free_blocks = nfree;
    return 0;
}

struct used_map *fs_ext_open(struct image *img, uint64_t off, uint64_t len,
                             struct fs_why *why, struct df_error *err)
{
    struct ext_io io = { .magic = EXT_IO_MAGIC, .img = img, .off = off,
                         .len = len, .err = err };
    struct used_acc acc = { 0 };
    uint8_t sb[EXT_SB_SIZE];
    char name[64];
    ext2_filsys fs = NULL;
    struct used_map *um = NULL;
    errcode_t e;

    if (fs_region_begin(img, off, len, "ext", why, err) < 0)
        return NULL;

    /* The superblock as stored: its kind and the features we are told of
     * by name before libext2fs refuses them without saying which. */
    if (len < EXT_SB_OFF + EXT_SB_SIZE)
        return fs_untrusted(why, "region too small for an ext superblock");
    if (image_read(img, sb, sizeof(sb), off + EXT_SB_OFF, err) < 0)
        return NULL;
    if (get_le16(sb + 0x38) != EXT2_SUPER_MAGIC)
        return fs_untrusted(why, "no ext2/3/4 superblock at offset %" PRIu64
                            " (bad magic)", off + EXT_SB_OFF);
    uint32_t compat = get_le32(sb + 0x5c), incompat = get_le32(sb + 0x60),
             ro_compat = get_le32(sb + 0x64);
    const char *kind = ext_kind(compat, incompat, ro_compat);
    snprintf(why->fs, sizeof(why->fs), "%s", kind);
    if (incompat & EXT3_FEATURE_INCOMPAT_RECOVER)
        return fs_untrusted(why, "%s needs journal recovery", kind);
    if (incompat & ~(uint32_t)EXT2_LIB_FEATURE_INCOMPAT_SUPP)
        return fs_untrusted(why, "%s: unknown incompatible feature 0x%" PRIx32,
                            kind, incompat & ~(uint32_t)EXT2_LIB_FEATURE_INCOMPAT_SUPP);
    if (ro_compat & ~(uint32_t)EXT2_LIB_FEATURE_RO_COMPAT_SUPP)
        return fs_untrusted(why, "%s: unknown read-only feature 0x%" PRIx32,
                            kind, ro_compat & ~(uint32_t)EXT2_LIB_FEATURE_RO_COMPAT_SUPP);

    snprintf(name, sizeof(name), "diskferry:%p", (void *)&io);
    e = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS, 0, 0, &ext_io_manager,
                     &fs);
    if (e) {
        fs = NULL;
        goto ext_error;
    }
    struct ext2_super_block *s = fs->super;
    if (s->s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER) {
        fs_untrusted(why, "%s needs journal recovery", kind);
        goto out;
    }
    if (!(s->s_state & EXT2_VALID_FS)) {
        fs_untrusted(why, "%s was not cleanly unmounted", kind);
        goto out;
    }
    if (s->s_state & EXT2_ERROR_FS) {
        fs_untrusted(why, "%s has errors recorded (run e2fsck)", kind);
        goto out;
    }
    uint64_t nblocks = ext2fs_blocks_count(s), fs_bytes;
    if (nblocks <= s->s_first_data_block ||
        ovf_mul(nblocks, fs->blocksize, &fs_bytes) || fs_bytes > len) {
        fs_untrusted(why, "%s of %" PRIu64 " blocks of %u bytes is larger "
                     "than its region (%" PRIu64 " bytes)", kind, nblocks,
                     fs->blocksize, len);
        goto out;
    }
    e = ext2fs_check_desc(fs);
    if (e)
        goto ext_error;
    e = ext2fs_read_block_bitmap(fs);
    if (e)
        goto ext_error;

    /* Boot block, primary superblock (and with 1 KiB blocks, block 0). */
    extent_list_init(&acc.l, EXTENT_LIST_DEFAULT_CAP);
    uint64_t head = (uint64_t)s->s_first_data_block * fs->blocksize + 2048;
    if (acc_add(&acc, off, off + min_u64(head, len), img->name, err) < 0)
        goto out;
    uint64_t nfree = 0;
    bool failed = false;
    e = walk_bitmap(fs, off, &acc, &nfree, img->name, err, &failed);
    if (failed)
        goto out;
    if (e)
        goto ext_error;
    if (nfree != ext2fs_free_blocks_count(s)) {
        fs_untrusted(why, "%s free block count %" PRIu64 " disagrees with its "
                     "bitmap (%" PRIu64 " free)", kind,
                     (uint64_t)ext2fs_free_blocks_count(s), nfree);
        goto out;
    }
    /* Past the filesystem's end the region is not its: copied. */
    if (acc_add(&acc, off + fs_bytes, off + len, img->name, err) < 0 ||
        acc_flush(&acc, img->name, err) < 0)
        goto out;
    if (acc.full) {
        /* Past the list's cap the last range runs to the region's end:
         * more is copied than needed, nothing used is missed. */
        struct extent *x = &acc.l.v[acc.l.n - 1];
        x->len = off + len - x->off;
    }
    um = used_map_from_list(kind, &acc.l, err);
    if (um)
        why->used_bytes = extent_list_bytes(&acc.l, EXT_DATA);
    goto out;

ext_error:
    if (io.io_failed)
        goto out;               /* err holds the I/O error */
    if (e == EXT2_ET_NO_MEMORY) {
        df_fail(err, DF_IO, ENOMEM, img->name, -1, "out of memory");
        goto out;
    }
    if (e == EXT2_ET_UNSUPP_FEATURE || e == EXT2_ET_RO_UNSUPP_FEATURE)
        fs_untrusted(why, "%s: unsupported feature (%s)", kind,
                     ext_strerror(e));
    else
        fs_untrusted(why, "%s at offset %" PRIu64 " does not parse: %s", kind,
                     off, ext_strerror(e));
out:
    if (fs)
        ext2fs_free(fs);
    extent_list_release(&acc.l);
    return um;
}
