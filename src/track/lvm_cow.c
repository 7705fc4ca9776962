/*
 * lvm_cow.c: the lvm-cow change source: the exception table of a
 * device-mapper persistent snapshot store (an LVM "old-style" snapshot's
 * -cow device), read offline.
 *
 * Spec: linux drivers/md/dm-snap-persistent.c (summary and our reading:
 * docs/formats.md section 8).  All fields little endian, C = chunk bytes:
 *
 *   chunk 0              header: u32 magic 0x70416e53, u32 valid (1),
 *                        u32 version (1), u32 chunk size in sectors
 *   chunk 1 + k*(E+1)    metadata area k: E = C/16 exceptions of
 *                        { u64 old_chunk (origin), u64 new_chunk (store) }
 *   the E chunks after   data chunks: each holds the pre-write contents
 *                        of the origin chunk an exception names
 *
 * The table ends at the first exception whose new_chunk is 0, for the
 * whole store; a full area continues in the next one (the kernel zeroes
 * area k+1 before it commits a full area k, so a valid store always has
 * an end marker inside the device).
 *
 * Refused, DF_CORRUPT naming the store and the offset: a short header,
 * magic 0 (never initialised) or another magic, version other than 1,
 * valid 0 (overflowed or dropped: the list is incomplete, so the
 * message names --changes compare) or any value but 0 and 1, a chunk
 * size that is not a power of two in 4 KiB..512 KiB, a table that runs
 * past the end of the store with no end marker, a new_chunk past the
 * store's last whole chunk or on the header or a metadata area, an
 * old_chunk whose first byte lies past the origin's end, and an origin
 * chunk or a data chunk named by two exceptions.
 *
 * Duplicates: the kernel makes one exception per origin chunk (a later
 * write finds the existing one) and hands out each data chunk once, so
 * two exceptions for one origin chunk cannot come from it.  Which of
 * the two would hold the old contents is unknowable (the kernel's own
 * lookup takes whichever its hash list meets first), so rather than
 * guess, such a store is refused (track.h contract 2: a source that
 * cannot be trusted says so when opened).
 *
 * Memory: the exceptions are kept as one array of (old_chunk,
 * new_chunk) pairs sorted by old_chunk, 16 bytes each: 1/256 of the
 * store's used bytes with 4 KiB chunks (a 1 TiB origin written all
 * over: 268M exceptions, 4 GiB; up to twice that while the array
 * grows), 1/32768 with 512 KiB chunks.  The changed list is not kept a
 * second time: changed() walks the sorted pairs and extent_list_append
 * merges neighbouring chunks into one range.  The table's size is
 * bounded by the store's (each area read is one chunk of it).
 *
 * Reading a live store: the kernel commits exceptions in batches and
 * writes the store beneath the page cache of the -cow device node.  The
 * caller should read after the origin's writers have stopped (a write
 * in flight may be missing); a block device's cached pages are dropped
 * when it is opened (posix_fadvise DONTNEED, lvmsync's drop_caches), so
 * an earlier buffered read cannot hide later commits.  O_DIRECT is not
 * used.
 *
 * base_read gives what the store keeps for an origin chunk: the
 * origin's contents when the snapshot was taken, unless the snapshot
 * device itself was written there (mounted read-write, a journal
 * replayed on mount): then it is the snapshot's contents.  A caller
 * that proves the destination with it finds that out.
 */
#define _GNU_SOURCE
#include "track/lvm_cow.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/bytes.h"
#include "util/overflow.h"

#define COW_SECTOR 512u
#define COW_DM_NAME_MAX 128     /* the kernel's DM_NAME_LEN, NUL included */

struct cow_pair {
    uint64_t old_chunk;         /* on the origin */
    uint64_t new_chunk;         /* on the store */
};

struct cow_source {
    struct change_source cs;
    struct df_file f;
    uint64_t size;              /* the origin's bytes */
    uint64_t chunk_bytes;
    uint64_t per_area;          /* E: exceptions in one metadata area */
    uint64_t nchunks;           /* whole chunks in the store */
    struct cow_pair *map;       /* sorted by old_chunk, no two alike */
    size_t n, alloc;
    uint8_t *area;              /* one chunk; only while opening */
};

/* ---- reading the store ---- */

static int cow_check_header(struct cow_source *s, struct df_error *err)
{
    const char *name = s->f.name;
    uint8_t h[LVM_COW_HEADER_LEN];

    if (s->f.size < LVM_COW_HEADER_LEN)
        return df_corrupt(err, name, 0, "not a snapshot exception store: "
                          "%llu bytes, shorter than its %d-byte header",
                          (unsigned long long)s->f.size, LVM_COW_HEADER_LEN);
    if (df_file_pread(&s->f, h, sizeof(h), 0, err) < 0)
        return -1;
    uint32_t magic = get_le32(h + LVM_COW_OFF_MAGIC);
    uint32_t valid = get_le32(h + LVM_COW_OFF_VALID);
    uint32_t version = get_le32(h + LVM_COW_OFF_VERSION);
    uint32_t sectors = get_le32(h + LVM_COW_OFF_CHUNK_SIZE);
    if (magic == 0)
        return df_corrupt(err, name, LVM_COW_OFF_MAGIC, "snapshot "
                          "exception store never initialised (magic 0): "
                          "no snapshot has used it yet");
    if (magic != LVM_COW_MAGIC)
        return df_corrupt(err, name, LVM_COW_OFF_MAGIC, "not a snapshot "
                          "exception store (magic 0x%08x, want 0x%08x)",
                          magic, LVM_COW_MAGIC);
    if (version != LVM_COW_VERSION)
        return df_corrupt(err, name, LVM_COW_OFF_VERSION, "exception store "
                          "version %u is not supported (only %u)", version,
                          LVM_COW_VERSION);
    if (valid == 0)
        return df_corrupt(err, name, LVM_COW_OFF_VALID, "the snapshot is "
                          "invalid (overflowed or dropped): its list of "
                          "changes is incomplete; use --changes compare");
    if (valid != 1)
        return df_corrupt(err, name, LVM_COW_OFF_VALID, "valid field %u "
                          "is neither 0 nor 1", valid);
    uint64_t cb = (uint64_t)sectors * COW_SECTOR;
    if (!is_pow2(sectors) || cb < LVM_COW_CHUNK_MIN || cb > LVM_COW_CHUNK_MAX)
        return df_corrupt(err, name, LVM_COW_OFF_CHUNK_SIZE, "chunk size "
                          "%u sectors is not a power of two from %u to %u "
                          "(4 KiB to 512 KiB)", sectors,
                          LVM_COW_CHUNK_MIN / COW_SECTOR,
                          LVM_COW_CHUNK_MAX / COW_SECTOR);
    s->chunk_bytes = cb;
    s->per_area = cb / LVM_COW_ENTRY_LEN;
    s->nchunks = s->f.size / cb;
    return 0;
}

/* Called for each exception in table order, already checked; returns
 * 0 to go on, 1 to stop, -1 with err set. */
typedef int (*cow_entry_fn)(struct cow_source *s, uint64_t old_chunk,
                            uint64_t new_chunk, uint64_t entry_off, void *ctx,
                            struct df_error *err);

/* Each exception of the table up to its end marker, checked, into fn:
 * 0 at the end marker or when fn stops, -1 with err set. */
static int cow_walk(struct cow_source *s, cow_entry_fn fn, void *ctx,
                    struct df_error *err)
{
    const char *name = s->f.name;
    uint64_t cb = s->chunk_bytes, stride = s->per_area + 1;

    for (uint64_t area = 0;; area++) {
        /* chunk < nchunks + stride here: no overflow below */
        uint64_t chunk = 1 + area * stride, off;
        if (chunk >= s->nchunks) {
            bool big = ovf_mul(chunk, cb, &off);
            return df_corrupt(err, name, big ? -1 : (int64_t)off,
                              "exception table runs past the end of the "
                              "store (%llu bytes) without an end marker: "
                              "metadata area %llu would start here",
                              (unsigned long long)s->f.size,
                              (unsigned long long)area);
        }
        off = chunk * cb;
        if (df_file_pread(&s->f, s->area, (size_t)cb, off, err) < 0)
            return -1;
        for (uint64_t i = 0; i < s->per_area; i++) {
            const uint8_t *e = s->area + i * LVM_COW_ENTRY_LEN;
            uint64_t old_chunk = get_le64(e), new_chunk = get_le64(e + 8);
            uint64_t eoff = off + i * LVM_COW_ENTRY_LEN, first;
            if (new_chunk == 0)
                return 0;
            if (new_chunk >= s->nchunks)
                return df_corrupt(err, name, (int64_t)(eoff + 8),
                                  "data chunk %llu lies past the end of the "
                                  "store (%llu chunks of %llu bytes)",
                                  (unsigned long long)new_chunk,
                                  (unsigned long long)s->nchunks,
                                  (unsigned long long)cb);
            if ((new_chunk - 1) % stride == 0)
                return df_corrupt(err, name, (int64_t)(eoff + 8),
                                  "data chunk %llu is metadata area %llu, "
                                  "not a data chunk",
                                  (unsigned long long)new_chunk,
                                  (unsigned long long)((new_chunk - 1) /
                                                       stride));
            if (ovf_mul(old_chunk, cb, &first) || first >= s->size)
                return df_corrupt(err, name, (int64_t)eoff,
                                  "chunk index past the origin's end: "
                                  "origin chunk %llu of %llu bytes, the "
                                  "origin is %llu bytes",
                                  (unsigned long long)old_chunk,
                                  (unsigned long long)cb,
                                  (unsigned long long)s->size);
            int rc = fn(s, old_chunk, new_chunk, eoff, ctx, err);
            if (rc)
                return rc < 0 ? -1 : 0;
        }
    }
}

static int cow_collect(struct cow_source *s, uint64_t old_chunk,
                       uint64_t new_chunk, uint64_t entry_off, void *ctx,
                       struct df_error *err)
{
    (void)entry_off;
    (void)ctx;
    if (s->n == s->alloc) {
        size_t na = s->alloc ? s->alloc * 2 : 1024;
        void *p = na < s->alloc || na > SIZE_MAX / sizeof(*s->map)
                      ? NULL : realloc(s->map, na * sizeof(*s->map));
        if (!p)
            return df_fail(err, DF_IO, ENOMEM, s->f.name, -1, "no memory "
                           "for %zu exceptions", na);
        s->map = p;
        s->alloc = na;
    }
    s->map[s->n++] = (struct cow_pair){ old_chunk, new_chunk };
    return 0;
}

/* For naming the second of two exceptions that share a chunk. */
struct cow_find_dup {
    bool by_new;                /* match new_chunk, else old_chunk */
    uint64_t chunk;
    unsigned seen;
    uint64_t off;               /* the second one's field */
};

static int cow_match(struct cow_source *s, uint64_t old_chunk,
                     uint64_t new_chunk, uint64_t entry_off, void *ctx,
                     struct df_error *err)
{
    struct cow_find_dup *d = ctx;
    (void)s;
    (void)err;
    if ((d->by_new ? new_chunk : old_chunk) != d->chunk || ++d->seen < 2)
        return 0;
    d->off = entry_off + (d->by_new ? 8 : 0);
    return 1;
}

static int cow_cmp_new(const void *a, const void *b)
{
    const struct cow_pair *x = a, *y = b;
    return (x->new_chunk > y->new_chunk) - (x->new_chunk < y->new_chunk);
}

static int cow_cmp_old(const void *a, const void *b)
{
    const struct cow_pair *x = a, *y = b;
    if (x->old_chunk != y->old_chunk)
        return (x->old_chunk > y->old_chunk) - (x->old_chunk < y->old_chunk);
    return cow_cmp_new(a, b);
}

/* Refuse a chunk named twice (see "Duplicates" above), naming the
 * second exception's offset; sorts map by new_chunk, then old_chunk. */
static int cow_check_duplicates(struct cow_source *s, struct df_error *err)
{
    struct cow_find_dup d = { .off = 0 };
    const struct cow_pair *p = NULL;

    if (s->n < 2)               /* qsort must not see a NULL map */
        return 0;
    qsort(s->map, s->n, sizeof(*s->map), cow_cmp_new);
    for (size_t i = 1; !p && i < s->n; i++)
        if (s->map[i].new_chunk == s->map[i - 1].new_chunk) {
            p = &s->map[i - 1];
            d = (struct cow_find_dup){ .by_new = true,
                                       .chunk = p->new_chunk };
        }
    if (!p) {
        qsort(s->map, s->n, sizeof(*s->map), cow_cmp_old);
        for (size_t i = 1; !p && i < s->n; i++)
            if (s->map[i].old_chunk == s->map[i - 1].old_chunk) {
                p = &s->map[i - 1];
                d = (struct cow_find_dup){ .chunk = p->old_chunk };
            }
    }
    if (!p)
        return 0;
    if (cow_walk(s, cow_match, &d, err) < 0)
        return -1;
    if (d.by_new)
        return df_corrupt(err, s->f.name, (int64_t)d.off, "data chunk %llu "
                          "is named by two exceptions (origin chunks %llu "
                          "and %llu): the table is damaged; use --changes "
                          "compare", (unsigned long long)p->new_chunk,
                          (unsigned long long)p[0].old_chunk,
                          (unsigned long long)p[1].old_chunk);
    return df_corrupt(err, s->f.name, (int64_t)d.off, "origin chunk %llu "
                      "has two exceptions (data chunks %llu and %llu): the "
                      "table is damaged; use --changes compare",
                      (unsigned long long)p->old_chunk,
                      (unsigned long long)p[0].new_chunk,
                      (unsigned long long)p[1].new_chunk);
}

/* ---- the change source ---- */

/* The first pair whose old_chunk is >= chunk (s->n if none). */
static size_t cow_lower_bound(const struct cow_source *s, uint64_t chunk)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->map[mid].old_chunk < chunk)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* track.h contract 1: the chunks with an exception, clipped to
 * [off, off+len) and to the origin; neighbours merge on append. */
static int cow_changed(struct change_source *cs, uint64_t off, uint64_t len,
                       struct extent_list *out, struct df_error *err)
{
    const struct cow_source *s = cs->priv;
    uint64_t cb = s->chunk_bytes;
    uint64_t end = range_within(off, len, s->size) ? off + len : s->size;

    for (size_t i = cow_lower_bound(s, off / cb); i < s->n; i++) {
        uint64_t a = s->map[i].old_chunk * cb;      /* < size: checked */
        if (a >= end)
            break;
        uint64_t b = min_u64(a + min_u64(cb, s->size - a), end);
        a = max_u64(a, off);
        if (b <= a)
            continue;
        int rc = extent_list_append(out, a, b - a, EXT_DATA, cs->name, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* track.h base_read: from the data chunks; only inside changed ranges.
 * Thread-safe (pread, no state changed). */
static int cow_base_read(struct change_source *cs, uint64_t off, size_t len,
                         uint8_t *buf, struct df_error *err)
{
    struct cow_source *s = cs->priv;
    uint64_t cb = s->chunk_bytes;

    if (!range_within(off, len, s->size))
        return df_fail(err, DF_USAGE, 0, s->f.name, -1, "origin bytes "
                       "%llu+%zu lie past the origin's end (%llu bytes)",
                       (unsigned long long)off, len,
                       (unsigned long long)s->size);
    while (len) {
        uint64_t chunk = off / cb, in = off % cb;
        size_t i = cow_lower_bound(s, chunk);
        if (i == s->n || s->map[i].old_chunk != chunk)
            return df_fail(err, DF_USAGE, 0, s->f.name, -1, "origin byte "
                           "%llu: chunk %llu has no exception in the store "
                           "(not a changed range)", (unsigned long long)off,
                           (unsigned long long)chunk);
        size_t n = (size_t)min_u64(len, cb - in);
        if (df_file_pread(&s->f, buf, n, s->map[i].new_chunk * cb + in,
                          err) < 0)
            return -1;
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static void cow_free(struct cow_source *s)
{
    df_file_close(&s->f);
    free(s->map);
    free(s->area);
    free(s);
}

static void cow_close(struct change_source *cs)
{
    cow_free(cs->priv);
}

struct change_source *lvm_cow_open_file(struct df_file *f, uint64_t size,
                                        struct df_error *err)
{
    struct cow_source *s = calloc(1, sizeof(*s));
    if (!s) {
        df_fail(err, DF_IO, ENOMEM, f->name, -1, "out of memory");
        df_file_close(f);
        return NULL;
    }
    s->f = *f;
    s->size = size;
    if (cow_check_header(s, err) < 0)
        goto fail;
    s->area = malloc((size_t)s->chunk_bytes);
    if (!s->area) {
        df_fail(err, DF_IO, ENOMEM, s->f.name, -1, "out of memory");
        goto fail;
    }
    if (cow_walk(s, cow_collect, NULL, err) < 0 ||
        cow_check_duplicates(s, err) < 0)
        goto fail;
    free(s->area);
    s->area = NULL;
    if (s->n < s->alloc) {      /* give back the growth slack */
        void *p = realloc(s->map, (s->n ? s->n : 1) * sizeof(*s->map));
        if (p)
            s->map = p;
    }
    s->cs = (struct change_source){ .name = "lvm-cow", .priv = s,
                                    .changed = cow_changed,
                                    .base_read = cow_base_read,
                                    .close = cow_close };
    return &s->cs;
fail:
    cow_free(s);
    return NULL;
}

/* ---- finding the store of an LV ---- */

/* path as this machine's tree under root has it: ROOT/path for an
 * absolute path unless root is "/" (or NULL or ""). */
static int cow_rooted(const char *root, const char *path, char *out,
                      size_t len)
{
    int w;
    if (root && root[0] && strcmp(root, "/") && path[0] == '/')
        w = snprintf(out, len, "%s%s", root, path);
    else
        w = snprintf(out, len, "%s", path);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

/* An LVM VG or LV name: [A-Za-z0-9+_.-]+, not "." or "..". */
static bool cow_lvm_name_ok(const char *p, size_t n)
{
    if (!n || (n == 1 && p[0] == '.') || (n == 2 && !memcmp(p, "..", 2)))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(p[i] >= 'a' && p[i] <= 'z') && !(p[i] >= 'A' && p[i] <= 'Z') &&
            !(p[i] >= '0' && p[i] <= '9') && !strchr("+_.-", p[i]))
            return false;
    return true;
}

/* "VG/LV" (a slash-free VG, the rest the LV) as the dm name
 * "<vg>-<lv>", each '-' of either doubled: 0, or -1 when not such a
 * name or too long. */
static int cow_dm_name_of(const char *vg_lv, char *out, size_t len)
{
    const char *slash = strchr(vg_lv, '/');
    size_t o = 0;
    if (!slash || strchr(slash + 1, '/') ||
        !cow_lvm_name_ok(vg_lv, (size_t)(slash - vg_lv)) ||
        !cow_lvm_name_ok(slash + 1, strlen(slash + 1)))
        return -1;
    for (const char *p = vg_lv; *p; p++) {
        const char *piece = *p == '-' ? "--" : *p == '/' ? "-" : NULL;
        size_t k = piece ? strlen(piece) : 1;
        if (o + k >= len)
            return -1;
        memcpy(out + o, piece ? piece : p, k);
        o += k;
    }
    out[o] = '\0';
    return 0;
}

/* Where the layer suffix of dm name `name` starts: after "<vg>-<lv>",
 * at its '-' (strlen(name) when it has none).  A '-' doubled belongs to
 * a name, a single one separates (libdm's dm_split_lvm_name). */
static size_t cow_layer_at(const char *name)
{
    unsigned seps = 0;
    size_t i = 0;
    for (; name[i]; i++) {
        if (name[i] != '-')
            continue;
        if (name[i + 1] == '-') {
            i++;
            continue;
        }
        if (++seps == 2)
            return i;
    }
    return i;
}

/*
 * The dm device named `name` in ROOT/sys/block/dm-* /dm/name: 1 with
 * its kernel name ("dm-7") in dev, 0 when there is none, -1 with err
 * set when the directory cannot be read.
 */
static int cow_dm_lookup(const char *root, const char *name, char *dev,
                         size_t len, struct df_error *err)
{
    char dir[PATH_MAX], path[PATH_MAX], got[COW_DM_NAME_MAX + 2];
    int found = 0;

    if (cow_rooted(root, "/sys/block", dir, sizeof(dir)) < 0)
        return df_fail(err, DF_USAGE, 0, root, -1, "root path too long");
    DIR *d = opendir(dir);
    if (!d)
        return df_io(err, dir, errno, "cannot list block devices");
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (strncmp(e->d_name, "dm-", 3))
            continue;
        int w = snprintf(path, sizeof(path), "%s/%s/dm/name", dir,
                         e->d_name);
        if (w < 0 || (size_t)w >= sizeof(path) ||
            read_small_file(path, got, sizeof(got)) < 0 || strcmp(got, name))
            continue;
        found = snprintf(dev, len, "%s", e->d_name) < (int)len;
    }
    closedir(d);
    return found;
}

/* cow_dm_lookup of the dm device base + layer ("-cow", "-real"). */
static int cow_dm_layer(const char *root, const char *base, const char *layer,
                        char *dev, size_t len, struct df_error *err)
{
    char want[COW_DM_NAME_MAX * 2 + 32];
    snprintf(want, sizeof(want), "%s%s", base, layer);
    return cow_dm_lookup(root, want, dev, len, err);
}

/*
 * The dm name `lv` gives, into name: 1, 0 when lv is no LV name at all,
 * -1 with err set.  /dev/mapper/NAME is NAME; /dev/dm-N is what sysfs
 * calls dm-N (-1 naming lv when it has none); /dev/VG/LV and VG/LV are
 * escaped.  Other paths (/dev/disk/by-id/..., other symlinks to the
 * node) are not followed: give one of these forms.
 */
static int cow_lv_dm_name(const char *lv, const char *root, char *name,
                          size_t len, bool *no_lv, struct df_error *err)
{
    const char *rest;

    if (!strncmp(lv, "/dev/mapper/", 12)) {
        rest = lv + 12;
        if (!*rest || strchr(rest, '/') || strlen(rest) >= COW_DM_NAME_MAX)
            return 0;
        snprintf(name, len, "%s", rest);
        return 1;
    }
    if (!strncmp(lv, "/dev/dm-", 8) && lv[8] &&
        strspn(lv + 8, "0123456789") == strlen(lv + 8) &&
        strlen(lv + 8) < 10) {
        char rel[64], path[PATH_MAX];
        snprintf(rel, sizeof(rel), "/sys/block/%s/dm/name", lv + 5);
        if (cow_rooted(root, rel, path, sizeof(path)) < 0 ||
            read_small_file(path, name, len) < 0 || !name[0]) {
            *no_lv = true;
            return df_fail(err, DF_USAGE, 0, lv, -1, "not a snapshot "
                           "exception store, and no device-mapper device "
                           "(no %s)", path);
        }
        return 1;
    }
    rest = !strncmp(lv, "/dev/", 5) ? lv + 5 : lv[0] != '/' ? lv : NULL;
    if (rest && cow_dm_name_of(rest, name, len) == 0)
        return 1;
    return 0;
}

/* lvm_cow_find, and whether it failed for want of such an LV. */
static int cow_find(const char *lv, const char *root, char *path,
                    size_t len, bool *no_lv, struct df_error *err)
{
    char name[COW_DM_NAME_MAX * 2 + 16], base[sizeof(name)];
    char dev[64], rel[80];

    *no_lv = false;
    int rc = cow_lv_dm_name(lv, root, name, sizeof(name), no_lv, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        *no_lv = true;
        return df_fail(err, DF_USAGE, 0, lv, -1, "no snapshot exception "
                       "store here, and not an LV name (/dev/VG/LV, VG/LV "
                       "or /dev/mapper/VG-LV)");
    }
    size_t at = cow_layer_at(name);
    snprintf(base, sizeof(base), "%.*s", (int)at, name);
    if (name[at] && strcmp(name + at, "-cow"))
        return df_fail(err, DF_USAGE, 0, lv, -1, "dm device %s is the "
                       "hidden layer %s of an LV, not a snapshot", name,
                       name + at + 1);
    if ((rc = cow_dm_lookup(root, name, dev, sizeof(dev), err)) <= 0) {
        if (rc == 0) {
            *no_lv = true;
            df_fail(err, DF_USAGE, 0, lv, -1, "no such file, and no active "
                    "LV of that name (no dm device %s)", name);
        }
        return -1;
    }
    if (!name[at]) {            /* the LV itself: its -cow layer */
        rc = cow_dm_layer(root, base, "-real", dev, sizeof(dev), err);
        if (rc > 0)
            return df_fail(err, DF_USAGE, 0, lv, -1, "is the origin of a "
                           "snapshot (dm device %s-real exists), not the "
                           "snapshot: give the snapshot LV", base);
        if (rc == 0)
            rc = cow_dm_layer(root, base, "-cow", dev, sizeof(dev), err);
        if (rc == 0)
            return df_fail(err, DF_USAGE, 0, lv, -1, "not an old-style LVM "
                           "snapshot: no dm device %s-cow (a thin "
                           "snapshot's changes are --changes lvm-thin's)",
                           base);
        if (rc < 0)
            return -1;
    }
    snprintf(rel, sizeof(rel), "/dev/%s", dev);
    if (cow_rooted(root, rel, path, len) < 0)
        return df_fail(err, DF_USAGE, 0, lv, -1, "root path too long");
    return 0;
}

int lvm_cow_find(const char *lv, const char *root, char *path, size_t len,
                 struct df_error *err)
{
    bool no_lv;
    return cow_find(lv, root, path, len, &no_lv, err);
}

/* Does path hold a store (a file or device starting with the magic)?
 * *exists: it is a regular file or a block device at all. */
static bool cow_is_store(const char *path, bool *exists)
{
    struct stat st;
    struct df_file f;
    struct df_error err;
    uint8_t b[4];

    *exists = stat(path, &st) == 0 &&
              (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
    if (!*exists)
        return false;
    df_error_init(&err);
    if (df_file_open(&f, path, O_RDONLY, &err) < 0)
        return false;
    bool yes = df_file_pread(&f, b, sizeof(b), 0, &err) == 0 &&
               get_le32(b) == LVM_COW_MAGIC;
    df_file_close(&f);
    return yes;
}

/*
 * COW is the store when it is a regular file or block device starting
 * with the magic; otherwise it names an LV (lvm_cow_find).  When that
 * finds no such LV but COW is a file or device, the file is read as a
 * store after all, so that its refusal (magic 0, a bad magic) is the
 * one shown.  Everything is opened O_RDONLY.
 */
struct change_source *lvm_cow_open(const char *cow, const char *root,
                                   uint64_t size, struct df_error *err)
{
    char path[PATH_MAX], store[PATH_MAX];
    const char *open_path = path;
    struct df_file f;
    bool exists, no_lv;

    if (cow_rooted(root, cow, path, sizeof(path)) < 0) {
        df_fail(err, DF_USAGE, 0, cow, -1, "path too long");
        return NULL;
    }
    if (!cow_is_store(path, &exists)) {
        struct df_error lerr;
        df_error_init(&lerr);
        if (cow_find(cow, root, store, sizeof(store), &no_lv, &lerr) == 0) {
            open_path = store;
        } else if (!(exists && no_lv)) {
            if (err->cat == DF_OK)
                df_error_copy(err, &lerr);
            return NULL;
        }
    }
    /* O_NONBLOCK: a FIFO put where the store was looked for must not
     * hang the open; it is refused below. */
    if (df_file_open(&f, open_path, O_RDONLY | O_NONBLOCK, err) < 0)
        return NULL;
    if (open_path == store)
        snprintf(f.name, sizeof(f.name), "%s (%s)", cow, store);
    if (!f.is_regular && !f.is_blockdev) {
        df_fail(err, DF_USAGE, 0, f.name, -1, "not a file or a block "
                "device");
        df_file_close(&f);
        return NULL;
    }
    if (f.is_blockdev)
        (void)posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED);
    return lvm_cow_open_file(&f, size, err);
}
