/*
 * qcow2_bitmap.c: the persistent dirty bitmaps of a qcow2 file, read
 * offline, on their own (image/qcow2.c reads the guest data and skips
 * them): the change source `bitmap:NAME` and the list `info` prints.
 *
 * Spec: qemu docs/interop/qcow2.txt (summary: docs/formats.md section 3.5).
 *   header        autoclear_features (offset 88, v3) bit 0: the bitmaps
 *                 were kept by the last writer; extensions after the
 *                 header (u32 type, u32 len, data padded to 8)
 *   extension     type 0x23852875, 24 bytes: u32 nb_bitmaps, u32 0,
 *                 u64 directory size, u64 directory offset (cluster
 *                 aligned)
 *   directory     nb_bitmaps entries, each padded to 8 with zeros:
 *                 u64 table offset, u32 table entries, u32 flags (0
 *                 in_use, 1 auto, 2 extra_data_compatible), u8 type
 *                 (1), u8 granularity_bits, u16 name_size, u32
 *                 extra_data_size, extra data, name
 *   bitmap table  u64 per cluster of bitmap data: bits 9..55 its host
 *                 offset; offset 0: bit 0 set = all ones, clear = zeros
 *   bitmap data   bit i of byte j: guest bytes [(8j+i) 2^g, +2^g)
 *
 * Refused with exit 5 (DF_CORRUPT): anything outside the spec or past
 * the end of the file, a directory over 64 MiB, more than 65535
 * bitmaps, bitmap data over 512 MiB (QEMU's own limits: it writes
 * nothing larger), unknown incompatible feature bits, extra data the
 * bitmap says must be understood.  When the metadata is sound but not
 * to be trusted, open says why with DF_REFUSED (qcow2_bitmap.h,
 * invariant 2).
 *
 * Memory: cluster 0, the directory, the one bitmap's table (at most
 * 8 MiB by the data limit), one cluster of bitmap data, and the ranges
 * (at most QCOW2_BITMAP_MAX_EXTENTS, invariant 4).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/qcow2_int.h"
#include "safety/safety.h"
#include "track/qcow2_bitmap.h"
#include "util/bytes.h"
#include "util/overflow.h"

#define QBM_EXT_LEN 24
#define QBM_ENTRY_LEN 24                /* fixed part of an entry */
#define QBM_OFF_NB_BITMAPS 0            /* in the extension */
#define QBM_OFF_EXT_RESERVED 4
#define QBM_OFF_DIR_SIZE 8
#define QBM_OFF_DIR_OFFSET 16
#define QBM_OFF_TABLE_OFFSET 0          /* in a directory entry */
#define QBM_OFF_TABLE_SIZE 8
#define QBM_OFF_FLAGS 12
#define QBM_OFF_TYPE 16
#define QBM_OFF_GRANULARITY 17
#define QBM_OFF_NAME_SIZE 18
#define QBM_OFF_EXTRA_SIZE 20

#define QBM_FLAG_IN_USE (1u << 0)
#define QBM_FLAG_AUTO (1u << 1)
#define QBM_FLAG_EXTRA_COMPAT (1u << 2)
#define QBM_FLAGS_KNOWN 0x7u
#define QBM_TYPE_DIRTY 1
#define QBM_GRANULARITY_MIN 9
#define QBM_GRANULARITY_MAX 31
#define QBM_AUTOCLEAR_BITMAPS (1ull << 0)

/* Table entry: bit 0 all ones (offset 0 only), bits 1..8 and 56..63
 * reserved, bits 9..55 the offset (QCOW2_OFFSET_MASK). */
#define QBM_TE_ALL_ONES (1ull << 0)
#define QBM_TE_RESERVED UINT64_C(0xff000000000001fe)

/* QEMU's limits (block/qcow2-bitmap.c): nothing larger is written. */
#define QBM_MAX_BITMAPS 65535u
#define QBM_MAX_DIR_BYTES (64u << 20)
#define QBM_MAX_DATA_BYTES (512u << 20)

struct qbm_entry {
    uint64_t at;                /* file offset of the entry */
    uint64_t table_off;
    uint32_t table_size;        /* entries */
    uint32_t flags;
    unsigned type;
    unsigned gbits;
    uint32_t extra_size;
    const uint8_t *name;        /* into qbm_image.dir */
    uint16_t name_size;
};

struct qbm_image {
    struct df_file *f;
    const char *n;              /* f->name, for messages */
    uint64_t cluster_size;
    uint64_t size;              /* virtual size, whole sectors (as qemu) */
    uint64_t incompat;
    bool consistent;            /* autoclear bit 0 (v3 only) */
    bool has_ext;
    uint64_t ext_at;            /* file offset of the extension's data */
    uint32_t nb;
    uint64_t dir_off, dir_size;
    uint8_t *dir;
    struct qbm_entry *e;        /* nb entries once loaded */
};

static void qbm_release(struct qbm_image *q)
{
    free(q->dir);
    free(q->e);
    q->dir = NULL;
    q->e = NULL;
}

/* The name of e for messages: control bytes shown as '?'. */
static void qbm_name_print(const struct qbm_entry *e, char *buf, size_t len)
{
    size_t i = 0;
    for (; i < e->name_size && i + 1 < len; i++)
        buf[i] = e->name[i] < 0x20 || e->name[i] == 0x7f ? '?'
                                                         : (char)e->name[i];
    buf[i] = '\0';
}

/* Bitmap table entries a disk of `size` bytes needs at granularity 2^g. */
static uint64_t qbm_table_entries(uint64_t size, unsigned gbits,
                                  uint64_t cluster_size)
{
    uint64_t bits = div_round_up(size, 1ull << gbits);
    return div_round_up(div_round_up(bits, 8), cluster_size);
}

/* The bitmaps extension (data at `at`, QBM_EXT_LEN bytes at p). */
static int qbm_parse_ext(struct qbm_image *q, const uint8_t *p, uint64_t at,
                         struct df_error *err)
{
    const char *n = q->n;

    if (q->has_ext)
        return df_corrupt(err, n, (int64_t)at - 8, "a second bitmaps "
                          "extension");
    q->has_ext = true;
    q->ext_at = at;
    q->nb = get_be32(p + QBM_OFF_NB_BITMAPS);
    q->dir_size = get_be64(p + QBM_OFF_DIR_SIZE);
    q->dir_off = get_be64(p + QBM_OFF_DIR_OFFSET);
    if (get_be32(p + QBM_OFF_EXT_RESERVED))
        return df_corrupt(err, n, (int64_t)(at + QBM_OFF_EXT_RESERVED),
                          "bitmaps extension: reserved field not zero");
    if (q->nb == 0 || q->nb > QBM_MAX_BITMAPS)
        return df_corrupt(err, n, (int64_t)(at + QBM_OFF_NB_BITMAPS),
                          "nb_bitmaps %" PRIu32 " outside 1..%u", q->nb,
                          QBM_MAX_BITMAPS);
    if (q->dir_size < QBM_ENTRY_LEN || q->dir_size > QBM_MAX_DIR_BYTES)
        return df_corrupt(err, n, (int64_t)(at + QBM_OFF_DIR_SIZE),
                          "bitmap directory size %" PRIu64 " outside %d.."
                          "%u", q->dir_size, QBM_ENTRY_LEN,
                          QBM_MAX_DIR_BYTES);
    if (q->dir_off == 0 || q->dir_off % q->cluster_size)
        return df_corrupt(err, n, (int64_t)(at + QBM_OFF_DIR_OFFSET),
                          "bitmap directory offset 0x%" PRIx64 " is %s",
                          q->dir_off, q->dir_off ? "not cluster aligned"
                                                 : "the header");
    if (!range_within(q->dir_off, q->dir_size, q->f->size))
        return df_corrupt(err, n, (int64_t)(at + QBM_OFF_DIR_OFFSET),
                          "bitmap directory at 0x%" PRIx64 " (%" PRIu64
                          " bytes) runs past end of file (%" PRIu64 ")",
                          q->dir_off, q->dir_size, q->f->size);
    return 0;
}

/*
 * Cluster 0: the fixed header, then the extensions up to the backing
 * name or the end of the cluster, looking for the bitmaps extension.
 */
static int qbm_read_header(struct qbm_image *q, struct df_error *err)
{
    const char *n = q->n;
    uint64_t fsize = q->f->size;
    uint8_t *hdr = NULL;
    int ret = -1;

    if (fsize < QCOW2_V2_HEADER_LEN)
        return df_corrupt(err, n, 0, "header truncated (%" PRIu64 " bytes,"
                          " need %d)", fsize, QCOW2_V2_HEADER_LEN);
    uint8_t fixed[QCOW2_V2_HEADER_LEN];
    if (df_file_pread(q->f, fixed, sizeof(fixed), 0, err) < 0)
        return -1;
    if (get_be32(fixed + QCOW2_OFF_MAGIC) != QCOW2_MAGIC)
        return df_corrupt(err, n, 0, "not a qcow2 image (bad magic)");
    uint32_t version = get_be32(fixed + QCOW2_OFF_VERSION);
    if (version != 2 && version != 3)
        return df_corrupt(err, n, QCOW2_OFF_VERSION, "qcow version %"
                          PRIu32 ": only 2 and 3 are supported", version);
    uint32_t bits = get_be32(fixed + QCOW2_OFF_CLUSTER_BITS);
    if (bits < 9 || bits > 21)
        return df_corrupt(err, n, QCOW2_OFF_CLUSTER_BITS, "cluster_bits %"
                          PRIu32 " outside 9..21", bits);
    q->cluster_size = 1ull << bits;
    q->size = get_be64(fixed + QCOW2_OFF_SIZE) / 512 * 512;

    uint64_t have = min_u64(q->cluster_size, fsize);
    hdr = malloc(have);
    if (!hdr)
        return df_io(err, n, ENOMEM, "cannot allocate header buffer");
    if (df_file_pread(q->f, hdr, have, 0, err) < 0)
        goto out;
    uint64_t start = QCOW2_V2_HEADER_LEN;
    if (version == 3) {
        if (have < QCOW2_V3_HEADER_MIN) {
            df_corrupt(err, n, 0, "version 3 header truncated (%" PRIu64
                       " bytes, need %d)", have, QCOW2_V3_HEADER_MIN);
            goto out;
        }
        q->incompat = get_be64(hdr + QCOW2_OFF_INCOMPAT);
        q->consistent = get_be64(hdr + QCOW2_OFF_AUTOCLEAR) &
                        QBM_AUTOCLEAR_BITMAPS;
        start = get_be32(hdr + QCOW2_OFF_HEADER_LENGTH);
        if (start < QCOW2_V3_HEADER_MIN || start % 8 || start > have) {
            df_corrupt(err, n, QCOW2_OFF_HEADER_LENGTH, "header_length %"
                       PRIu64 " (a multiple of 8, %d..%" PRIu64 ")", start,
                       QCOW2_V3_HEADER_MIN, have);
            goto out;
        }
    }
    if (q->incompat & ~QCOW2_INCOMPAT_KNOWN) {
        df_corrupt(err, n, QCOW2_OFF_INCOMPAT, "unknown incompatible "
                   "feature bit %d: not supported",
                   __builtin_ctzll(q->incompat & ~QCOW2_INCOMPAT_KNOWN));
        goto out;
    }

    uint64_t end = q->cluster_size;
    uint64_t backing = get_be64(hdr + QCOW2_OFF_BACKING_OFFSET);
    if (backing && backing < end)
        end = backing;
    for (uint64_t off = start; off + 8 <= end;) {
        if (off + 8 > have) {
            df_corrupt(err, n, (int64_t)off, "header extension runs past "
                       "end of file");
            goto out;
        }
        uint32_t type = get_be32(hdr + off);
        uint32_t len = get_be32(hdr + off + 4);
        uint64_t data = off + 8;
        if (type == QCOW2_EXT_END)
            break;
        if (len > end - data || len > have - data) {
            df_corrupt(err, n, (int64_t)off, "header extension 0x%08" PRIx32
                       " of %" PRIu32 " bytes runs past %" PRIu64, type, len,
                       min_u64(end, have));
            goto out;
        }
        if (type == QCOW2_EXT_BITMAPS) {
            if (len != QBM_EXT_LEN) {
                df_corrupt(err, n, (int64_t)off, "bitmaps extension of %"
                           PRIu32 " bytes (must be %d)", len, QBM_EXT_LEN);
                goto out;
            }
            if (qbm_parse_ext(q, hdr + data, data, err) < 0)
                goto out;
        }
        off = data + ((uint64_t)len + 7) / 8 * 8;
    }
    ret = 0;
out:
    free(hdr);
    return ret;
}

/* Entry e: the fields every bitmap must get right. */
static int qbm_check_entry(const struct qbm_image *q,
                           const struct qbm_entry *e, struct df_error *err)
{
    const char *n = q->n;
    char name[64];
    int64_t at = (int64_t)e->at;

    qbm_name_print(e, name, sizeof(name));
    if (e->flags & ~QBM_FLAGS_KNOWN)
        return df_corrupt(err, n, at + QBM_OFF_FLAGS, "bitmap '%s': "
                          "reserved flags 0x%" PRIx32 " set", name,
                          e->flags & ~QBM_FLAGS_KNOWN);
    if (e->type != QBM_TYPE_DIRTY)
        return df_corrupt(err, n, at + QBM_OFF_TYPE, "bitmap '%s': type %u"
                          " (only 1, dirty tracking, is defined)", name,
                          e->type);
    if (e->gbits < QBM_GRANULARITY_MIN || e->gbits > QBM_GRANULARITY_MAX)
        return df_corrupt(err, n, at + QBM_OFF_GRANULARITY, "bitmap '%s': "
                          "granularity_bits %u outside %d..%d", name,
                          e->gbits, QBM_GRANULARITY_MIN,
                          QBM_GRANULARITY_MAX);
    uint64_t need = qbm_table_entries(q->size, e->gbits, q->cluster_size);
    if (e->table_size != need)
        return df_corrupt(err, n, at + QBM_OFF_TABLE_SIZE, "bitmap '%s': %"
                          PRIu32 " table entries, but a disk of %" PRIu64
                          " bytes at granularity %" PRIu64 " needs %"
                          PRIu64, name, e->table_size, q->size,
                          (uint64_t)1 << e->gbits, need);
    uint64_t data = (uint64_t)e->table_size * q->cluster_size;
    if (data > QBM_MAX_DATA_BYTES)
        return df_corrupt(err, n, at + QBM_OFF_TABLE_SIZE, "bitmap '%s': %"
                          PRIu64 " bytes of bitmap data (QEMU writes at most"
                          " %u): not supported", name, data,
                          QBM_MAX_DATA_BYTES);
    if (e->table_off % q->cluster_size ||
        (e->table_size && e->table_off == 0))
        return df_corrupt(err, n, at + QBM_OFF_TABLE_OFFSET, "bitmap '%s':"
                          " table offset 0x%" PRIx64 " is %s", name,
                          e->table_off, e->table_off ? "not cluster aligned"
                                                     : "the header");
    if (!range_within(e->table_off, (uint64_t)e->table_size * 8,
                      q->f->size))
        return df_corrupt(err, n, at + QBM_OFF_TABLE_OFFSET, "bitmap '%s':"
                          " table at 0x%" PRIx64 " (%" PRIu32 " entries) "
                          "runs past end of file (%" PRIu64 ")", name,
                          e->table_off, e->table_size, q->f->size);
    return 0;
}

static int qbm_name_cmp(const void *a, const void *b)
{
    const struct qbm_entry *x = *(const struct qbm_entry *const *)a;
    const struct qbm_entry *y = *(const struct qbm_entry *const *)b;
    if (x->name_size != y->name_size)
        return x->name_size < y->name_size ? -1 : 1;
    return memcmp(x->name, y->name, x->name_size);
}

/* Names are unique (the spec says so; a lookup must not pick one of
 * two at random). */
static int qbm_check_unique(const struct qbm_image *q, struct df_error *err)
{
    const struct qbm_entry **v = malloc(q->nb * sizeof(*v));
    int ret = 0;

    if (!v)
        return df_io(err, q->n, ENOMEM, "cannot allocate bitmap names");
    for (uint32_t i = 0; i < q->nb; i++)
        v[i] = &q->e[i];
    qsort(v, q->nb, sizeof(*v), qbm_name_cmp);
    for (uint32_t i = 1; i < q->nb; i++)
        if (qbm_name_cmp(&v[i - 1], &v[i]) == 0) {
            char name[64];
            const struct qbm_entry *later =
                v[i]->at > v[i - 1]->at ? v[i] : v[i - 1];
            qbm_name_print(later, name, sizeof(name));
            ret = df_corrupt(err, q->n, (int64_t)later->at, "two bitmaps "
                             "named '%s'", name);
            break;
        }
    free(v);
    return ret;
}

/* The directory: nb_bitmaps entries filling exactly dir_size bytes. */
static int qbm_read_dir(struct qbm_image *q, struct df_error *err)
{
    const char *n = q->n;
    uint64_t pos = 0;

    q->dir = malloc(q->dir_size);
    q->e = calloc(q->nb, sizeof(*q->e));
    if (!q->dir || !q->e)
        return df_io(err, n, ENOMEM, "cannot allocate the bitmap "
                     "directory");
    if (df_file_pread(q->f, q->dir, q->dir_size, q->dir_off, err) < 0)
        return -1;
    for (uint32_t i = 0; i < q->nb; i++) {
        struct qbm_entry *e = &q->e[i];
        const uint8_t *p = q->dir + pos;
        e->at = q->dir_off + pos;
        if (q->dir_size - pos < QBM_ENTRY_LEN)
            return df_corrupt(err, n, (int64_t)e->at, "nb_bitmaps %" PRIu32
                              " but the directory (%" PRIu64 " bytes) "
                              "ends after %" PRIu32 " entries", q->nb,
                              q->dir_size, i);
        e->table_off = get_be64(p + QBM_OFF_TABLE_OFFSET);
        e->table_size = get_be32(p + QBM_OFF_TABLE_SIZE);
        e->flags = get_be32(p + QBM_OFF_FLAGS);
        e->type = p[QBM_OFF_TYPE];
        e->gbits = p[QBM_OFF_GRANULARITY];
        e->name_size = get_be16(p + QBM_OFF_NAME_SIZE);
        e->extra_size = get_be32(p + QBM_OFF_EXTRA_SIZE);
        if (e->name_size == 0 || e->name_size > QCOW2_BITMAP_NAME_MAX)
            return df_corrupt(err, n, (int64_t)e->at + QBM_OFF_NAME_SIZE,
                              "bitmap directory entry %" PRIu32 ": name_size"
                              " %u outside 1..%d", i, e->name_size,
                              QCOW2_BITMAP_NAME_MAX);
        uint64_t used = QBM_ENTRY_LEN + (uint64_t)e->extra_size +
                        e->name_size;
        uint64_t len = (used + 7) / 8 * 8;
        if (len > q->dir_size - pos)
            return df_corrupt(err, n, (int64_t)e->at, "bitmap directory "
                              "entry %" PRIu32 " (%" PRIu64 " bytes) runs "
                              "past the end of the directory", i, len);
        e->name = p + QBM_ENTRY_LEN + e->extra_size;
        for (uint64_t k = used; k < len; k++)
            if (p[k])
                return df_corrupt(err, n, (int64_t)(e->at + k), "bitmap "
                                  "directory entry %" PRIu32 ": padding "
                                  "not zero", i);
        if (qbm_check_entry(q, e, err) < 0)
            return -1;
        pos += len;
    }
    if (pos != q->dir_size)
        return df_corrupt(err, n, (int64_t)(q->dir_off + pos), "bitmap "
                          "directory of %" PRIu64 " bytes holds more than "
                          "nb_bitmaps (%" PRIu32 ") entries", q->dir_size,
                          q->nb);
    return qbm_check_unique(q, err);
}

/* Header and directory of the qcow2 file f (borrowed). */
static int qbm_load(struct qbm_image *q, struct df_file *f,
                    struct df_error *err)
{
    memset(q, 0, sizeof(*q));
    q->f = f;
    q->n = f->name;
    if (qbm_read_header(q, err) < 0)
        return -1;
    if (!q->has_ext)
        return 0;
    return qbm_read_dir(q, err);
}

static bool qbm_usable(const struct qbm_entry *e)
{
    return e->extra_size == 0 || (e->flags & QBM_FLAG_EXTRA_COMPAT);
}

void qcow2_bitmap_list_free(struct qcow2_bitmap_info *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].name);
    free(v);
}

int qcow2_bitmap_list_file(struct df_file *f, struct qcow2_bitmap_info **out,
                           size_t *n, struct df_error *err)
{
    struct qbm_image q;
    struct qcow2_bitmap_info *v = NULL;
    size_t k = 0;
    int ret = -1;

    *out = NULL;
    *n = 0;
    if (qbm_load(&q, f, err) < 0)
        goto out;
    if (q.has_ext) {
        v = calloc(q.nb, sizeof(*v));
        if (!v) {
            df_io(err, q.n, ENOMEM, "cannot allocate the bitmap list");
            goto out;
        }
    }
    for (; q.has_ext && k < q.nb; k++) {
        const struct qbm_entry *e = &q.e[k];
        v[k].name = malloc((size_t)e->name_size + 1);
        if (!v[k].name) {
            df_io(err, q.n, ENOMEM, "cannot allocate the bitmap list");
            goto out;
        }
        memcpy(v[k].name, e->name, e->name_size);
        v[k].name[e->name_size] = '\0';
        v[k].name_len = e->name_size;
        v[k].granularity_bits = e->gbits;
        v[k].in_use = e->flags & QBM_FLAG_IN_USE;
        v[k].enabled = e->flags & QBM_FLAG_AUTO;
        v[k].consistent = q.consistent;
        v[k].usable = qbm_usable(e);
    }
    *out = v;
    *n = k;
    v = NULL;
    ret = 0;
out:
    qcow2_bitmap_list_free(v, k);
    qbm_release(&q);
    return ret;
}

int qcow2_bitmap_list(const char *image, struct qcow2_bitmap_info **out,
                      size_t *n, struct df_error *err)
{
    struct df_file f;
    *out = NULL;
    *n = 0;
    if (df_file_open(&f, image, O_RDONLY, err) < 0)
        return -1;
    int ret = qcow2_bitmap_list_file(&f, out, n, err);
    df_file_close(&f);
    return ret;
}

const char *qcow2_bitmap_state(const struct qcow2_bitmap_info *b)
{
    if (!b->consistent)
        return "not kept";
    return b->in_use ? "in use" : "consistent";
}

/* The entry named `name`, or NULL with DF_USAGE naming those there are. */
static const struct qbm_entry *qbm_find(const struct qbm_image *q,
                                        const char *name,
                                        struct df_error *err)
{
    size_t len = strlen(name);
    char have[1024] = "";
    const size_t room = sizeof(have) - 8;   /* keeps space for ", ..." */
    size_t used = 0;

    for (uint32_t i = 0; q->has_ext && i < q->nb; i++)
        if (q->e[i].name_size == len && !memcmp(q->e[i].name, name, len))
            return &q->e[i];
    for (uint32_t i = 0; q->has_ext && i < q->nb; i++) {
        char one[64];
        qbm_name_print(&q->e[i], one, sizeof(one));
        int w = snprintf(have + used, room - used, "%s'%s'", i ? ", " : "",
                         one);
        if (w < 0 || (size_t)w >= room - used) {
            strcpy(have + used, ", ...");
            break;
        }
        used += (size_t)w;
    }
    df_fail(err, DF_USAGE, 0, q->n, -1, "no bitmap '%s' in the image (%s%s)",
            name, q->has_ext ? "it has " : "it has no bitmaps", have);
    return NULL;
}

/*
 * Invariant 2 of qcow2_bitmap.h: 0 when e may be trusted, else -1 with
 * DF_REFUSED and the reason.  The lock first: a running QEMU has set
 * in_use too, and the lock says more.
 */
static int qbm_trust(const struct qbm_image *q, const struct qbm_entry *e,
                     struct df_error *err)
{
    char name[64];

    qbm_name_print(e, name, sizeof(name));
    if (q->f->fd >= 0 &&
        (inuse_qemu_locks(q->f->fd) & INUSE_LOCK_PERM(1)))
        return df_refuse(err, q->n, "QEMU holds the image's write lock (it "
                         "is running: bitmap '%s' lives in its memory)",
                         name);
    if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
        return df_refuse(err, q->n, "the image is marked corrupt "
                         "(incompatible bit 1): its bitmaps are not "
                         "trusted");
    if (!q->consistent)
        return df_refuse(err, q->n, "the image's bitmaps were not kept by "
                         "the last writer (autoclear bit clear)");
    if (e->flags & QBM_FLAG_IN_USE)
        return df_refuse(err, q->n, "bitmap '%s' is in use (a QEMU has it "
                         "open or crashed)", name);
    return 0;
}

/*
 * Building the ranges: one pending range grows while bits touch (or lie
 * closer than min_gap, once the list was full); it goes to the list when
 * a gap ends it.  At the cap, coarsen: double min_gap and merge the
 * list's neighbours closer than that, until it is half full
 * (invariant 4).
 */
struct qbm_builder {
    struct extent_list *l;
    const char *what;
    uint64_t ps, pe;            /* pending [ps, pe); ps == pe: none */
    uint64_t min_gap;           /* gaps up to this are merged */
    uint64_t gran;
};

static void qbm_coarsen(struct qbm_builder *b)
{
    struct extent_list *l = b->l;
    do {
        uint64_t g = b->min_gap ? b->min_gap : b->gran / 2;
        b->min_gap = g > UINT64_MAX / 2 ? UINT64_MAX : g * 2;
        size_t k = 0;
        for (size_t i = 1; i < l->n; i++) {
            struct extent *x = &l->v[k];
            if (l->v[i].off - (x->off + x->len) <= b->min_gap)
                x->len = l->v[i].off + l->v[i].len - x->off;
            else
                l->v[++k] = l->v[i];
        }
        l->n = l->n ? k + 1 : 0;
    } while (l->n > 1 && l->n > l->cap / 2);
}

static int qbm_flush(struct qbm_builder *b, struct df_error *err)
{
    struct extent_list *l = b->l;
    if (b->ps == b->pe)
        return 0;
    for (;;) {
        if (l->n) {
            struct extent *x = &l->v[l->n - 1];
            if (b->ps - (x->off + x->len) <= b->min_gap) {
                x->len = b->pe - x->off;
                break;
            }
        }
        int rc = extent_list_append(l, b->ps, b->pe - b->ps, EXT_DATA,
                                    b->what, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        qbm_coarsen(b);
    }
    b->ps = b->pe = 0;
    return 0;
}

/* [off, off+len), ascending after what came before. */
static int qbm_add(struct qbm_builder *b, uint64_t off, uint64_t len,
                   struct df_error *err)
{
    if (b->ps != b->pe && off - b->pe <= b->min_gap) {
        b->pe = off + len;
        return 0;
    }
    if (qbm_flush(b, err) < 0)
        return -1;
    b->ps = off;
    b->pe = off + len;
    return 0;
}

/* Bits [first, first+count) of the bitmap as guest bytes, clipped. */
static int qbm_add_bits(struct qbm_builder *b, uint64_t first,
                        uint64_t count, uint64_t size, struct df_error *err)
{
    uint64_t off = first * b->gran;
    if (off >= size)
        return 0;           /* tail bits past the disk: ignored */
    uint64_t end = min_u64((first + count) * b->gran, size);
    return qbm_add(b, off, end - off, err);
}

/* The set bits of len bytes of bitmap data in buf, bit 0 = `first`. */
static int qbm_scan(struct qbm_builder *b, const uint8_t *buf, uint64_t len,
                    uint64_t first, uint64_t size, struct df_error *err)
{
    uint64_t j = 0;
    while (j < len) {
        if (len - j >= 8) {
            uint64_t w = get_le64(buf + j);
            if (w == 0) {
                j += 8;
                continue;
            }
            if (w == UINT64_MAX) {
                if (qbm_add_bits(b, first + 8 * j, 64, size, err) < 0)
                    return -1;
                j += 8;
                continue;
            }
        }
        for (unsigned k = 0; k < 8; k++)
            if ((buf[j] >> k & 1) &&
                qbm_add_bits(b, first + 8 * j + k, 1, size, err) < 0)
                return -1;
        j++;
    }
    return 0;
}

/* Read bitmap e's table and data into l (the changed ranges). */
static int qbm_build(const struct qbm_image *q, const struct qbm_entry *e,
                     struct extent_list *l, struct df_error *err)
{
    const char *n = q->n;
    uint64_t cs = q->cluster_size;
    uint64_t gran = 1ull << e->gbits;
    uint64_t nbytes = div_round_up(div_round_up(q->size, gran), 8);
    struct qbm_builder b = { .l = l, .what = n, .gran = gran };
    uint8_t *table = NULL, *buf = NULL;
    char name[64];
    int ret = -1;

    qbm_name_print(e, name, sizeof(name));
    table = malloc((size_t)e->table_size * 8 + 1);
    buf = malloc(cs);
    if (!table || !buf) {
        df_io(err, n, ENOMEM, "cannot allocate bitmap '%s'", name);
        goto out;
    }
    if (df_file_pread(q->f, table, (size_t)e->table_size * 8, e->table_off,
                      err) < 0)
        goto out;
    for (uint64_t i = 0; i < e->table_size; i++) {
        uint64_t te = get_be64(table + 8 * i);
        int64_t at = (int64_t)(e->table_off + 8 * i);
        uint64_t host = te & QCOW2_OFFSET_MASK;
        uint64_t boff = i * cs;                 /* bitmap byte offset */
        uint64_t blen = min_u64(cs, nbytes - boff);
        if (te & QBM_TE_RESERVED) {
            df_corrupt(err, n, at, "bitmap '%s': table entry %" PRIu64
                       " 0x%016" PRIx64 " has reserved bits set", name, i,
                       te);
            goto out;
        }
        if (host == 0) {
            if ((te & QBM_TE_ALL_ONES) &&
                qbm_add_bits(&b, boff * 8, blen * 8, q->size, err) < 0)
                goto out;
            continue;
        }
        if (te & QBM_TE_ALL_ONES) {
            df_corrupt(err, n, at, "bitmap '%s': table entry %" PRIu64
                       " 0x%016" PRIx64 " has bit 0 set with an offset",
                       name, i, te);
            goto out;
        }
        if (host % cs) {
            df_corrupt(err, n, at, "bitmap '%s': table entry %" PRIu64
                       ": offset 0x%" PRIx64 " not cluster aligned", name,
                       i, host);
            goto out;
        }
        if (!range_within(host, blen, q->f->size)) {
            df_corrupt(err, n, at, "bitmap '%s': table entry %" PRIu64
                       ": data at 0x%" PRIx64 " past end of file (%"
                       PRIu64 ")", name, i, host, q->f->size);
            goto out;
        }
        if (df_file_pread(q->f, buf, blen, host, err) < 0 ||
            qbm_scan(&b, buf, blen, boff * 8, q->size, err) < 0)
            goto out;
    }
    ret = qbm_flush(&b, err);
out:
    free(table);
    free(buf);
    return ret;
}

/* The cap on the ranges kept; a test hook lowers it to reach the
 * coarsening with small images. */
static size_t qbm_max_extents(void)
{
#ifdef DF_TESTING
    const char *s = getenv("DF_TEST_BITMAP_MAX_EXTENTS");
    if (s && *s) {
        unsigned long v = strtoul(s, NULL, 10);
        if (v > 0 && v < QCOW2_BITMAP_MAX_EXTENTS)
            return v;
    }
#endif
    return QCOW2_BITMAP_MAX_EXTENTS;
}

struct change_source *qcow2_bitmap_open_file(struct df_file *f,
                                             const char *name, uint64_t size,
                                             struct df_error *err)
{
    struct change_source *cs = NULL;
    struct qbm_image q;
    struct extent_list l;
    const struct qbm_entry *e;
    char pname[64];

    extent_list_init(&l, qbm_max_extents());
    if (qbm_load(&q, f, err) < 0) {
        /* A directory the last writer did not keep may have been
         * overwritten since: untrusted, not corrupt (the spec: "must be
         * considered inconsistent"). */
        if (q.has_ext && !q.consistent && err->cat == DF_CORRUPT) {
            char why[256];
            snprintf(why, sizeof(why), "%s", err->msg);
            df_error_reset(err);
            df_refuse(err, q.n, "the image's bitmaps were not kept by the "
                      "last writer (autoclear bit clear; %s)", why);
        }
        goto out;
    }
    if (!(e = qbm_find(&q, name, err)))
        goto out;
    qbm_name_print(e, pname, sizeof(pname));
    if (!qbm_usable(e)) {
        df_corrupt(err, q.n, (int64_t)e->at + QBM_OFF_EXTRA_SIZE, "bitmap "
                   "'%s' has %" PRIu32 " bytes of extra data it says must "
                   "be understood: not supported", pname, e->extra_size);
        goto out;
    }
    if (qbm_trust(&q, e, err) < 0)
        goto out;
    if (size != q.size) {
        df_refuse(err, q.n, "bitmap '%s' covers %" PRIu64 " bytes (the "
                  "image's size), not the %" PRIu64 " of the disk", pname,
                  q.size, size);
        goto out;
    }
    if (qbm_build(&q, e, &l, err) < 0)
        goto out;
    cs = change_source_from_list("bitmap", &l, err);
out:
    extent_list_release(&l);
    qbm_release(&q);
    return cs;
}

struct change_source *qcow2_bitmap_open(const char *image, const char *name,
                                        uint64_t size, struct df_error *err)
{
    struct df_file f;
    if (df_file_open(&f, image, O_RDONLY, err) < 0)
        return NULL;
    struct change_source *cs = qcow2_bitmap_open_file(&f, name, size, err);
    df_file_close(&f);
    return cs;
}
