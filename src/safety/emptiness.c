/*
 * emptiness.c: does the destination hold anything? (safety.h check 6)
 *
 * Three looks, the first that finds something wins (the second: a
 * regular file holding an image container, "a qcow2 image"):
 *  1. libblkid, partitions and superblocks chains: a partition table
 *     (PTTYPE: gpt, dos, ...) or a filesystem / LVM PV / md member /
 *     swap / LUKS signature (TYPE, USAGE).  libblkid knows far more
 *     signatures than we would (and knows where each lives: the LVM2
 *     label in sectors 0-3, md 1.0 at the end, GPT's backup header).
 *  2. Non-zero bytes in sampled regions (a raw disk with data and no
 *     signature: a database on a bare device, an image of a disk whose
 *     first sector was wiped):
 *       - the first and the last MiB (partition tables, boot code,
 *         GPT backup, md 0.9/1.0 superblocks, ZFS labels);
 *       - EMPTINESS_SPREAD windows of 64 KiB spread evenly over the device;
 *       - regular files only: the first 64 KiB of each of the first
 *         EMPTINESS_SPREAD data extents found with SEEK_DATA (a sparse file
 *         with a few written blocks anywhere is found for the price of
 *         a few reads; a fully sparse file reads nothing).
 *     An image with no local file (an NBD export) gets only these two
 *     samples, read through the image (emptiness_probe_image).
 *     Resuming (ours != NULL), bytes in ranges an interrupted copy of
 *     ours wrote are not looked at, nor a signature whose magic lies
 *     there: they came from the source.
 *     This is the early refusal, a sample: data between the samples
 *     is found while the job runs by the guard in front of the sink
 *     (engine/sink_guard.c), which reads every range before it is
 *     written and rolls back if it finds data.
 */
#define _GNU_SOURCE
#include "safety/safety_int.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/zero.h"

#define EMPTINESS_EDGE (1024 * 1024)
#define EMPTINESS_WINDOW (64 * 1024)
#define EMPTINESS_SPREAD 16

/* "a" or "an" before a type spoken as letters or as a word. */
static const char *emptiness_article(const char *word)
{
    return strchr("aefhilmnorsxAEFHILMNORSX", word[0]) ? "an" : "a";
}

static void emptiness_describe(const char *type, const char *usage,
                               char *desc, size_t len)
{
    static const struct {
        const char *type, *desc;
    } known[] = {
        { "LVM2_member", "an LVM physical volume" },
        { "LVM1_member", "an LVM physical volume" },
        { "linux_raid_member", "an md RAID member" },
        { "isw_raid_member", "an Intel RAID member" },
        { "ddf_raid_member", "a DDF RAID member" },
        { "crypto_LUKS", "a LUKS volume" },
        { "swap", "a swap area" },
        { "zfs_member", "a ZFS pool member" },
        { "BitLocker", "a BitLocker volume" },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(type, known[i].type)) {
            snprintf(desc, len, "%s", known[i].desc);
            return;
        }
    const char *what = "signature";
    if (usage && !strcmp(usage, "filesystem"))
        what = "filesystem";
    else if (usage && !strcmp(usage, "raid"))
        what = "RAID member";
    else if (usage && !strcmp(usage, "crypto"))
        what = "encrypted volume";
    snprintf(desc, len, "%s %s %s", emptiness_article(type), type, what);
}

/* Is [off, off+len) entirely inside ours (sorted, merged)? */
static bool emptiness_ours(const struct extent_list *ours, uint64_t off,
                           uint64_t len)
{
    if (!ours)
        return false;
    size_t lo = extent_list_find(ours, off);
    return lo < ours->n && ours->v[lo].off <= off &&
           ours->v[lo].off + ours->v[lo].len - off >= len;
}

/* The signature just found lies in a range of ours (its magic's offset,
 * libblkid's name for it in key)? */
static bool emptiness_magic_ours(blkid_probe pr, const char *key,
                                 const struct extent_list *ours)
{
    const char *val = NULL;
    if (!ours || blkid_probe_lookup_value(pr, key, &val, NULL) != 0 ||
        !val)
        return false;
    char *end;
    unsigned long long at = strtoull(val, &end, 10);
    return end != val && emptiness_ours(ours, at, 1);
}

/* 1 with desc set when libblkid finds a signature, 0 if none, -1 on
 * error (libblkid could not start: reported as DF_IO). */
static int emptiness_blkid(const struct df_file *f,
                           const struct extent_list *ours, char *desc,
                           size_t len, struct df_error *err)
{
    blkid_probe pr = blkid_new_probe();
    const char *val = NULL;
    int found = 0;
    if (!pr)
        return df_io(err, f->name, ENOMEM, "cannot probe signatures");
    if (blkid_probe_set_device(pr, f->fd, 0, 0) < 0) {
        blkid_free_probe(pr);
        return df_io(err, f->name, EIO, "cannot probe signatures");
    }
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE |
                                      BLKID_SUBLKS_USAGE |
                                      BLKID_SUBLKS_MAGIC);
    /* Each call reports the next thing found, until 1 (done) or -1. */
    while (!found && blkid_do_probe(pr) == 0) {
        if (blkid_probe_lookup_value(pr, "PTTYPE", &val, NULL) == 0 &&
            val && !emptiness_magic_ours(pr, "PTMAGIC_OFFSET", ours)) {
            snprintf(desc, len, "%s %s partition table", emptiness_article(val),
                     val);
            found = 1;
        } else if (blkid_probe_lookup_value(pr, "TYPE", &val, NULL) == 0 &&
                   val && !emptiness_magic_ours(pr, "SBMAGIC_OFFSET", ours)) {
            const char *usage = NULL;
            blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
            emptiness_describe(val, usage, desc, len);
            found = 1;
        }
    }
    blkid_free_probe(pr);
    return found;
}

/* What the sampled regions are read from: a file, or an image with no
 * local file (an NBD export). */
struct emptiness_src {
    const struct df_file *f;
    struct image *img;
    uint64_t size;
};

/* 1 with desc when [off, off+len) holds a non-zero byte outside ours
 * (looked at in 4 KiB pieces). */
static int emptiness_window(const struct emptiness_src *f,
                            const struct extent_list *ours, uint8_t *buf,
                            uint64_t off, uint64_t len, char *desc,
                            size_t dlen, struct df_error *err)
{
    if (off >= f->size)
        return 0;
    if (len > f->size - off)
        len = f->size - off;
    if (ours) {
        for (uint64_t p = 0; p < len; p += 4096) {
            uint64_t n = len - p < 4096 ? len - p : 4096;
            if (emptiness_ours(ours, off + p, n))
                continue;
            int r = emptiness_window(f, NULL, buf, off + p, n, desc, dlen, err);
            if (r != 0)
                return r;
        }
        return 0;
    }
    /* df_file_pread does not change f; it just is not declared const. */
    if (f->img ? image_read(f->img, buf, (size_t)len, off, err) < 0
               : df_file_pread((struct df_file *)f->f, buf, (size_t)len, off,
                               err) < 0)
        return -1;
    if (zero_is_zero(buf, (size_t)len))
        return 0;
    uint64_t at = off;
    while (!buf[at - off])
        at++;
    snprintf(desc, dlen, "non-zero data at offset %llu",
             (unsigned long long)at);
    return 1;
}

/* The first and last MiB and EMPTINESS_SPREAD windows between; buf:
 * EMPTINESS_EDGE bytes. */
static int emptiness_sample(const struct emptiness_src *es,
                            const struct extent_list *ours, uint8_t *buf,
                            char *desc, size_t len, struct df_error *err)
{
    int r = emptiness_window(es, ours, buf, 0, EMPTINESS_EDGE, desc, len,
                             err);
    if (r == 0 && es->size > EMPTINESS_EDGE)
        r = emptiness_window(es, ours, buf, es->size - EMPTINESS_EDGE,
                             EMPTINESS_EDGE, desc, len, err);
    for (uint64_t i = 1; r == 0 && i <= EMPTINESS_SPREAD; i++) {
        uint64_t off = es->size / (EMPTINESS_SPREAD + 1) * i;
        r = emptiness_window(es, ours, buf, off - off % 4096,
                             EMPTINESS_WINDOW, desc, len, err);
    }
    return r;
}

int emptiness_probe_image(struct image *img, char *desc, size_t len,
                          struct df_error *err)
{
    if (img->size == 0)
        return 0;
    uint8_t *buf = malloc(EMPTINESS_EDGE);
    if (!buf)
        return df_io(err, img->name, ENOMEM, "cannot check contents");
    struct emptiness_src es = { .img = img, .size = img->size };
    int r = emptiness_sample(&es, NULL, buf, desc, len, err);
    free(buf);
    return r;
}

int emptiness_probe(const struct df_file *f, const struct extent_list *ours,
                    char *desc, size_t len, struct df_error *err)
{
    uint8_t *buf = NULL;
    int r = 0;

    if (f->is_stream || f->size == 0)
        return 0;
    if (f->fd >= 0) {
        r = emptiness_blkid(f, ours, desc, len, err);
        if (r != 0)
            return r;
    }
    if (f->is_regular) {
        /* An image file says what it is (a device's content is its
         * guest's: not probed).  df_file_pread does not change f. */
        const char *other;
        const struct image_driver *d =
            image_probe_file((struct df_file *)f, &other, err);
        if (err->cat != DF_OK)
            return -1;
        if (d || other) {
            snprintf(desc, len, "a %s image", d ? d->name : other);
            return 1;
        }
    }
    buf = malloc(EMPTINESS_EDGE);
    if (!buf)
        return df_io(err, f->name, ENOMEM, "cannot check contents");
    struct emptiness_src es = { .f = f, .size = f->size };
    r = emptiness_sample(&es, ours, buf, desc, len, err);
    /* Regular files: the start of each of the first few data extents. */
    off_t pos = 0;
    for (int i = 0;
         r == 0 && f->fd >= 0 && f->is_regular && i < EMPTINESS_SPREAD;
         i++) {
        off_t data = lseek(f->fd, pos, SEEK_DATA);
        if (data < 0)
            break;          /* ENXIO: no more data; EINVAL: unsupported */
        r = emptiness_window(&es, ours, buf, (uint64_t)data,
                             EMPTINESS_WINDOW, desc, len, err);
        off_t hole = lseek(f->fd, data, SEEK_HOLE);
        if (hole <= data)
            break;
        pos = hole;
    }
    free(buf);
    return r;
}
