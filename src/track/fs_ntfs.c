/*
 * fs_ntfs.c: the used-block map of an NTFS volume (fs.h), read with
 * libntfs-3g through a device of our own (struct ntfs_device_operations)
 * that reads the region [off, off+len) of the image (image_read), so it
 * works inside any image format and partition.  The volume is mounted
 * read-only and nothing is ever written: the device refuses opening for
 * writing and every write with EROFS, and a write the library even tries
 * makes the volume untrusted.
 *
 * The map is the clusters $Bitmap marks in use (every metadata file,
 * $MFT, $LogFile, $Bitmap itself, lives in clusters it marks), plus the
 * boot sector, the backup boot sector (the region's last sector) and
 * whatever of the region lies past the last cluster.  It is trusted only
 * when the volume is not BitLocker-encrypted, mounts, is not marked
 * dirty, is not hibernated (hiberfil.sys), its $LogFile is clean, the
 * volume fits its region, the free count libntfs-3g makes of the whole
 * $Bitmap equals the free clusters inside the volume (the padding past
 * the last cluster is marked used), and the clusters of $Boot, $MFT,
 * $MFTMirr, $LogFile and $Bitmap are all marked used
 * (docs/formats.md section 13).
 *
 * libntfs-3g logs to stderr by default: its log is silenced once, for
 * the process (it never prints during a copy).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/fs.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logfile.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/runlist.h>
#include <ntfs-3g/volume.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define NTFS_BOOT_LEN 512u
#define NTFS_CHUNK (64u * 1024u)        /* $Bitmap bytes read at a time */

/* What the device reads: one region of one image. */
struct ntfs_io {
    struct image *img;
    uint64_t off, len;
    uint64_t pos;               /* for seek/read */
    struct df_error *err;       /* the first I/O error, told to the caller */
    bool io_failed;
    bool write_tried;           /* the library tried to write: refused */
};

static int dev_open(struct ntfs_device *dev, int flags)
{
    if ((flags & O_ACCMODE) != O_RDONLY) {
        errno = EROFS;
        return -1;
    }
    NDevSetOpen(dev);
    NDevSetReadOnly(dev);
    return 0;
}

static int dev_close(struct ntfs_device *dev)
{
    NDevClearOpen(dev);
    return 0;
}

static s64 dev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 at)
{
    struct ntfs_io *io = dev->d_private;
    if (count < 0 || at < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)at >= io->len || count == 0)
        return 0;
    uint64_t n = min_u64((uint64_t)count, io->len - (uint64_t)at);
    if (n > SIZE_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (image_read(io->img, buf, (size_t)n, io->off + (uint64_t)at,
                   io->err) < 0) {
        io->io_failed = true;
        errno = EIO;
        return -1;
    }
    return (s64)n;
}

static s64 dev_read(struct ntfs_device *dev, void *buf, s64 count)
{
    struct ntfs_io *io = dev->d_private;
    s64 n = dev_pread(dev, buf, count, (s64)io->pos);
    if (n > 0)
        io->pos += (uint64_t)n;
    return n;
}

static s64 dev_seek(struct ntfs_device *dev, s64 to, int whence)
{
    struct ntfs_io *io = dev->d_private;
    int64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)io->pos; break;
    case SEEK_END: base = (int64_t)io->len; break;
    default: errno = EINVAL; return -1;
    }
    int64_t at;
    if (__builtin_add_overflow(base, (int64_t)to, &at) || at < 0 ||
        (uint64_t)at > io->len) {
        errno = EINVAL;
        return -1;
    }
    io->pos = (uint64_t)at;
    return at;
}

static s64 dev_write(struct ntfs_device *dev, const void *buf, s64 count)
{
    (void)buf;
    (void)count;
    ((struct ntfs_io *)dev->d_private)->write_tried = true;
    errno = EROFS;
    return -1;
}

static s64 dev_pwrite(struct ntfs_device *dev, const void *buf, s64 count,
                      s64 at)
{
    (void)at;
    return dev_write(dev, buf, count);
}

static int dev_sync(struct ntfs_device *dev)
{
    (void)dev;
    return 0;
}

static int dev_stat(struct ntfs_device *dev, struct stat *st)
{
    struct ntfs_io *io = dev->d_private;
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFREG | 0400;
    st->st_size = (off_t)io->len;
    return 0;
}

static int dev_ioctl(struct ntfs_device *dev, unsigned long req, void *argp)
{
    struct ntfs_io *io = dev->d_private;
    if (req == BLKGETSIZE64) {
        *(uint64_t *)argp = io->len;
        return 0;
    }
    if (req == BLKGETSIZE) {
        *(unsigned long *)argp = (unsigned long)(io->len / 512);
        return 0;
    }
    errno = ENOTTY;
    return -1;
}

static struct ntfs_device_operations dev_ops = {
    .open = dev_open,
    .close = dev_close,
    .seek = dev_seek,
    .read = dev_read,
    .write = dev_write,
    .pread = dev_pread,
    .pwrite = dev_pwrite,
    .sync = dev_sync,
    .stat = dev_stat,
    .ioctl = dev_ioctl,
};

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_silence(void)
{
    ntfs_log_set_handler(ntfs_log_handler_null);
    ntfs_log_clear_levels(~(u32)0);
}

/*
 * A libntfs-3g call failed with errno e: our device's I/O error (err
 * already holds it), out of memory (err set here), or a volume that does
 * not parse (untrusted, saying what failed).
 */
static struct used_map *lib_failed(struct ntfs_io *io, struct fs_why *why,
                                   int e, const char *what)
{
    if (io->io_failed)
        return NULL;
    if (e == ENOMEM) {
        df_fail(io->err, DF_IO, ENOMEM, io->img->name, -1, "out of memory");
        return NULL;
    }
    return fs_untrusted(why, "NTFS at offset %" PRIu64 ": %s (libntfs-3g: %s)",
                        io->off, what, strerror(e ? e : EIO));
}

/* Used ranges as they come (ascending; one may overlap the last). */
struct ntfs_used {
    struct extent_list l;
    bool full;                  /* at the list's cap: the rest not added */
};

static int used_add(struct ntfs_used *u, uint64_t s, uint64_t e,
                    const char *what, struct df_error *err)
{
    if (e <= s || u->full)
        return 0;
    if (u->l.n) {
        struct extent *x = &u->l.v[u->l.n - 1];
        uint64_t xe = x->off + x->len;
        if (s <= xe) {
            if (e > xe)
                x->len = e - x->off;
            return 0;
        }
    }
    int r = extent_list_append(&u->l, s, e - s, EXT_DATA, what, err);
    if (r == 1)
        u->full = true;
    return r < 0 ? -1 : 0;
}

/*
 * Walk $Bitmap over the volume's nc clusters: add the used runs (in the
 * disk's bytes) to u and count the free clusters.  0; 1 when $Bitmap
 * does not read whole (errno kept in *e); -1 with err (memory).
 */
static int walk_bitmap(ntfs_attr *na, uint64_t nc, uint64_t cs, uint64_t off,
                       struct ntfs_used *u, uint64_t *nfree, int *e,
                       const char *what, struct df_error *err)
{
    uint8_t *buf = malloc(NTFS_CHUNK);
    if (!buf) {
        df_fail(err, DF_IO, ENOMEM, what, -1, "out of memory");
        return -1;
    }
    uint64_t lcn = 0, run = 0, free_n = 0;
    bool in_run = false;
    int rc = 0;
    while (lcn < nc) {
        uint64_t want = min_u64(NTFS_CHUNK, (nc - lcn + 7) / 8);
        s64 got = ntfs_attr_pread(na, (s64)(lcn / 8), (s64)want, buf);
        if (got != (s64)want) {
            *e = got < 0 ? errno : EIO;
            rc = 1;
            goto out;
        }
        for (uint64_t i = 0; i < want && lcn < nc; i++) {
            uint8_t b = buf[i];
            unsigned bits = (unsigned)min_u64(8, nc - lcn);
            if ((b == 0xff && bits == 8 && in_run) ||
                (b == 0 && bits == 8 && !in_run)) {
                free_n += b ? 0 : 8;
                lcn += 8;
                continue;
            }
            for (unsigned k = 0; k < bits; k++, lcn++) {
                bool set = (b >> k) & 1;
                if (set && !in_run) {
                    run = lcn;
                    in_run = true;
                } else if (!set) {
                    free_n++;
                    if (in_run) {
                        in_run = false;
                        if (used_add(u, off + run * cs, off + lcn * cs, what,
                                     err) < 0) {
                            rc = -1;
                            goto out;
                        }
                    }
                }
            }
        }
    }
    if (in_run && used_add(u, off + run * cs, off + nc * cs, what, err) < 0)
        rc = -1;
    *nfree = free_n;
out:
    free(buf);
    return rc;
}

/*
 * Whether $Bitmap marks every cluster of [lcn, lcn+n) used: 1 yes, 0 no
 * (or outside the volume), -1 it does not read (errno set).
 */
static int bits_all_set(ntfs_attr *bm, uint64_t nc, uint64_t lcn, uint64_t n)
{
    uint8_t buf[4096];
    if (n > nc || lcn > nc - n)
        return 0;
    while (n) {
        uint64_t first = lcn / 8;
        uint64_t nbytes = min_u64(sizeof(buf), (lcn % 8 + n + 7) / 8);
        if (ntfs_attr_pread(bm, (s64)first, (s64)nbytes, buf) != (s64)nbytes)
            return -1;
        uint64_t limit = first * 8 + nbytes * 8;
        for (; n && lcn < limit; lcn++, n--)
            if (!((buf[lcn / 8 - first] >> (lcn % 8)) & 1))
                return 0;
    }
    return 1;
}

/* Whether every cluster of attribute na's runlist is marked used: 1 yes,
 * 0 no, -1 it does not read (errno set).  A resident one has none. */
static int runs_marked(ntfs_attr *na, ntfs_attr *bm, uint64_t nc)
{
    if (!NAttrNonResident(na))
        return 1;
    if (ntfs_attr_map_whole_runlist(na) < 0)
        return -1;
    for (runlist_element *rl = na->rl; rl && rl->length; rl++) {
        if (rl->lcn < 0)
            continue;           /* a hole, or the runlist's end */
        if (rl->length < 0)
            return 0;
        int r = bits_all_set(bm, nc, (uint64_t)rl->lcn, (uint64_t)rl->length);
        if (r <= 0)
            return r;
    }
    return 1;
}

/* The $LogFile checks libntfs-3g makes only for read-write mounts.  NULL
 * reason: clean; else why not (errno kept in *e when it did not read). */
static const char *logfile_state(ntfs_volume *vol, ntfs_attr *bm, int *e)
{
    const char *why = NULL;
    RESTART_PAGE_HEADER *rp = NULL;
    ntfs_attr *na = NULL;
    ntfs_inode *ni = ntfs_inode_open(vol, FILE_LogFile);
    if (!ni) {
        *e = errno;
        return "$LogFile does not open";
    }
    na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
    if (!na) {
        *e = errno;
        why = "$LogFile data does not open";
        goto out;
    }
    int r = runs_marked(na, bm, (uint64_t)vol->nr_clusters);
    if (r < 0) {
        *e = errno;
        why = "$LogFile's runlist does not read";
        goto out;
    }
    if (r == 0) {
        why = "$Bitmap marks clusters of $LogFile free";
        goto out;
    }
    if (!ntfs_check_logfile(na, &rp)) {
        *e = errno == ENOMEM ? ENOMEM : 0;
        why = "journal ($LogFile) does not parse";
    } else if (rp && get_le16((const uint8_t *)&rp->major_ver) == 2 &&
               get_le16((const uint8_t *)&rp->minor_ver) == 0) {
        why = "metadata kept in Windows' cache (fast restart)";
    } else if (!ntfs_is_logfile_clean(na, rp)) {
        why = "unclean journal ($LogFile)";
    }
out:
    free(rp);
    if (na)
        ntfs_attr_close(na);
    ntfs_inode_close(ni);
    return why;
}

/*
 * The checks and the map on a mounted volume: NULL with why->reason or
 * err, or the map.
 */
static struct used_map *ntfs_map(ntfs_volume *vol, struct ntfs_io *io,
                                 struct fs_why *why)
{
    const char *name = io->img->name;
    struct df_error *err = io->err;
    uint64_t off = io->off, len = io->len;
    struct ntfs_used u = { 0 };
    struct used_map *um = NULL;
    int e = 0;

    if (vol->flags & VOLUME_IS_DIRTY)
        return fs_untrusted(why, "NTFS volume is dirty (needs chkdsk)");
    if (ntfs_volume_check_hiberfile(vol, 0) < 0) {
        e = errno;
        if (e == EPERM)
            return fs_untrusted(why, "NTFS is hibernated (hiberfil.sys)");
        return lib_failed(io, why, e, "hiberfil.sys does not read");
    }
    uint64_t cs = vol->cluster_size, ss = vol->sector_size, fs_bytes;
    if (vol->nr_clusters <= 0 || cs == 0 || ss < NTFS_BOOT_LEN ||
        ovf_mul((uint64_t)vol->nr_clusters, cs, &fs_bytes) || fs_bytes > len ||
        ss > len)
        return fs_untrusted(why, "NTFS of %" PRId64 " clusters of %" PRIu64
                            " bytes is larger than its region (%" PRIu64
                            " bytes)", (int64_t)vol->nr_clusters, cs, len);
    uint64_t nc = (uint64_t)vol->nr_clusters;
    ntfs_attr *bm = vol->lcnbmp_na;
    if (!bm || bm->data_size < 0 || (uint64_t)bm->data_size < (nc + 7) / 8)
        return fs_untrusted(why, "NTFS $Bitmap is shorter than the volume "
                            "(%" PRIu64 " clusters)", nc);

    const char *bad = logfile_state(vol, bm, &e);
    if (bad) {
        if (e)
            return lib_failed(io, why, e, bad);
        return fs_untrusted(why, "NTFS %s", bad);
    }
    /* $Boot (cluster 0), $MFT, $MFTMirr and $Bitmap must be marked. */
    int r = bits_all_set(bm, nc, 0, 1);
    struct { ntfs_attr *na; const char *what; } sys[] = {
        { vol->mft_na, "$MFT" }, { vol->mftmirr_na, "$MFTMirr" },
        { bm, "$Bitmap" },
    };
    const char *which = "$Boot";
    for (size_t i = 0; r == 1 && i < sizeof(sys) / sizeof(sys[0]); i++) {
        which = sys[i].what;
        r = sys[i].na ? runs_marked(sys[i].na, bm, nc) : 0;
    }
    if (r < 0)
        return lib_failed(io, why, errno, "$Bitmap does not read");
    if (r == 0)
        return fs_untrusted(why, "NTFS $Bitmap marks clusters of %s free",
                            which);

    if (ntfs_volume_get_free_space(vol) < 0)
        return lib_failed(io, why, errno, "$Bitmap does not read");

    extent_list_init(&u.l, EXTENT_LIST_DEFAULT_CAP);
    uint64_t nfree = 0;
    if (used_add(&u, off, off + ss, name, err) < 0)
        goto out;
    r = walk_bitmap(bm, nc, cs, off, &u, &nfree, &e, name, err);
    if (r < 0)
        goto out;
    if (r > 0) {
        lib_failed(io, why, e, "$Bitmap does not read");
        goto out;
    }
    if (vol->free_clusters < 0 || (uint64_t)vol->free_clusters != nfree) {
        fs_untrusted(why, "NTFS free count disagrees with $Bitmap (%" PRId64
                     " free in all of $Bitmap, %" PRIu64 " in the volume's "
                     "clusters)", (int64_t)vol->free_clusters, nfree);
        goto out;
    }
    /* Past the last cluster (the backup boot sector there), and the
     * region's last sector (the backup when the volume fills it). */
    if (used_add(&u, off + fs_bytes, off + len, name, err) < 0 ||
        used_add(&u, off + len - ss, off + len, name, err) < 0)
        goto out;
    if (u.full) {
        /* Past the cap the last range runs to the region's end: more is
         * copied than needed, nothing used is missed. */
        struct extent *x = &u.l.v[u.l.n - 1];
        x->len = off + len - x->off;
    }
    um = used_map_from_list("ntfs", &u.l, err);
    if (um)
        why->used_bytes = extent_list_bytes(&u.l, EXT_DATA);
out:
    extent_list_release(&u.l);
    return um;
}

struct used_map *fs_ntfs_open(struct image *img, uint64_t off, uint64_t len,
                              struct fs_why *why, struct df_error *err)
{
    struct ntfs_io io = { .img = img, .off = off, .len = len, .err = err };
    uint8_t boot[NTFS_BOOT_LEN];

    if (fs_region_begin(img, off, len, "ntfs", why, err) < 0)
        return NULL;
    if (len < NTFS_BOOT_LEN)
        return fs_untrusted(why, "region too small for an NTFS boot sector");
    if (image_read(img, boot, sizeof(boot), off, err) < 0)
        return NULL;
    if (!memcmp(boot + 3, "-FVE-FS-", 8))
        return fs_untrusted(why, "BitLocker volume");
    if (memcmp(boot + 3, "NTFS    ", 8))
        return fs_untrusted(why, "no NTFS boot sector at offset %" PRIu64,
                            off);

    pthread_once(&log_once, log_silence);
    struct ntfs_device *dev = ntfs_device_alloc(img->name, 0, &dev_ops, &io);
    if (!dev) {
        df_fail(err, DF_IO, ENOMEM, img->name, -1, "out of memory");
        return NULL;
    }
    ntfs_volume *vol = ntfs_device_mount(dev, NTFS_MNT_RDONLY);
    if (!vol) {
        int e = errno;
        NDevClearOpen(dev);
        ntfs_device_free(dev);
        if (e == EPERM && !io.io_failed)
            return fs_untrusted(why, "NTFS is hibernated or its metadata is "
                                "cached by Windows (mount refused)");
        return lib_failed(&io, why, e, "does not mount");
    }
    struct used_map *um = ntfs_map(vol, &io, why);
    ntfs_umount(vol, FALSE);    /* closes and frees dev */
    if (um && io.write_tried) {
        used_map_close(um);
        return fs_untrusted(why, "libntfs-3g tried to write to the volume "
                            "(refused)");
    }
    return um;
}
