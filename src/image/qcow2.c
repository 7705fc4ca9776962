/*
 * qcow2.c: QCOW2 v2/v3: probe, open, map, read; the driver table.  The
 * writer for new images is qcow2_write.c.
 *
 * Spec: qemu docs/interop/qcow2.rst (summary: docs/formats.md section 3).
 *   cluster 0   header, big endian (72 bytes in v2, header_length in
 *               v3), then extensions (u32 type, u32 len, data padded to
 *               8) up to the backing file name or the end of cluster 0
 *   L1 table    l1_size u64 at l1_table_offset: L2 table offsets
 *               (bits 9..55), bit 63 COPIED
 *   L2 table    one cluster; u64 entries, or 128-bit ones with extended
 *               L2 (second word: subcluster bitmap, bits 0..31 allocated,
 *               32..63 reads as zeros, 32 subclusters per cluster)
 *   L2 entry    bit 62 compressed: bits 0..x-1 host byte offset, x..61
 *               additional 512-byte sectors, x = 62 - (cluster_bits - 8);
 *               else bits 9..55 host cluster, bit 0 (v3) reads as zeros
 *
 * What a virtual cluster reads as: offset 0 = this layer defers to its
 * backing file (EXT_PARENT); zero flag = zeros even over a backing file
 * (EXT_ZERO); host cluster = data; compressed = data, one raw deflate
 * stream (compression type 0) or zstd frame (type 1, header byte 104)
 * that must inflate to at least one whole cluster.
 *
 * Only the active L1 table is read: internal snapshots are ignored.
 * Refcounts are not read (nothing here writes to an existing image).
 *
 * The virtual size is the header's rounded down to a multiple of 512, as
 * qemu reads it (a size of 1 is an empty disk).
 *
 * Placement: cluster 0, the L1 table, the refcount table and the L2
 * tables in use lie inside the file without overlapping each other; no
 * data cluster lies on one of them.
 *
 * Refused with exit 5: versions other than 2 and 3 (qcow v1 included),
 * cluster_bits outside 9..21, encryption, external data files, unknown
 * incompatible feature bits (named from the feature table when it has
 * them), json:/protocol backing names, a backing file whose format is not
 * the recorded backing format; any L1/L2 entry with reserved bits set, an
 * unaligned offset or one past the end of the file, naming the table and
 * the index; a compressed cluster that does not inflate to a whole
 * cluster.  Dirty and corrupt-flagged images are read as they are (the
 * L1/L2 tables stay valid; only refcounts may be stale).
 *
 * Memory: the active L1 table (at most 32 MiB, as QEMU), an LRU cache of
 * at most 32 L2 tables (and at most 32 MiB), and per thread reading at
 * once a context of one span of compressed bytes (1 MiB, or the largest
 * compressed cluster) and one decompressed cluster: at most 16
 * contexts and 32 MiB of their buffers (a reader past that waits for
 * one), besides each one's zlib or zstd state.
 *
 * Threads (IMG_THREAD_SAFE): map and read run concurrently.  The L2
 * cache is under l2_lock, held only to look a table up (reading it on a
 * miss) and copy out the entries a walk needs; data preads and
 * inflating happen with no lock held, each reader with its own context
 * (util/pool.h).  A read fetches each run of host-contiguous clusters,
 * and each batch of compressed clusters lying close together, with one
 * pread.  The writer's calls (qcow2_write.c) hold rw exclusive, map and
 * read hold it shared.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "image/qcow2_int.h"
#include "image/runs.h"
#include "util/bytes.h"
#include "util/overflow.h"

/* A read fetches the compressed clusters it needs QCOW2_SPAN_BYTES at a
 * time (or one cluster's at most, if larger); the contexts that hold
 * those bytes (one per thread reading at once) take at most
 * QCOW2_DCTX_BYTES together, and at least one exists. */
#define QCOW2_SPAN_BYTES (1u << 20)
#define QCOW2_DCTX_BYTES (32u << 20)

/* Largest zstd window accepted from a compressed cluster (2 MiB clusters
 * need 2^21; a larger window only costs memory). */
#define QCOW2_ZSTD_WINDOW_LOG_MAX 24

/* Header facts needed only while opening. */
struct qcow2_hdr {
    uint64_t backing_off;
    uint32_t backing_len;
    uint32_t header_length;
    uint32_t crypt;
    uint64_t reftable_off;
    uint32_t reftable_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_off;
    uint32_t refcount_order;
    const uint8_t *features;        /* feature name table, or NULL */
    uint32_t features_len;
    bool has_data_file_ext;
};

enum qcow2_cl_type {
    QCOW2_CL_UNALLOC,       /* defer to the backing file */
    QCOW2_CL_ZERO,
    QCOW2_CL_DATA,
    QCOW2_CL_COMPRESSED,
    QCOW2_CL_SUB,           /* extended L2: see alloc/zero bitmaps */
};

/* One decoded L2 entry. */
struct qcow2_cl {
    enum qcow2_cl_type type;
    uint64_t host;          /* host cluster (DATA, SUB) */
    uint64_t desc;          /* compressed descriptor (COMPRESSED) */
    uint32_t alloc;         /* SUB: subclusters stored at host */
    uint32_t zero;          /* SUB: subclusters reading as zeros */
};

static int qcow2_probe(const struct image_probe *p)
{
    if (p->head_len >= 4 && get_be32(p->head) == QCOW2_MAGIC)
        return 100;
    return 0;
}

/* The name of incompatible feature `bit` from the feature table. */
static void qcow2_feature_name(const struct qcow2_hdr *h, unsigned bit,
                               char *name, size_t len)
{
    snprintf(name, len, "unnamed");
    for (uint32_t i = 0; h->features && i + 48 <= h->features_len;
         i += 48) {
        const uint8_t *e = h->features + i;
        if (e[0] != 0 || e[1] != bit)
            continue;
        size_t n = 0;
        for (; n < 46 && n + 1 < len && e[2 + n]; n++)
            name[n] = (e[2 + n] >= 0x20 && e[2 + n] < 0x7f) ? (char)e[2 + n]
                                                             : '?';
        name[n] = '\0';
        return;
    }
}

/*
 * Walk the header extensions in [start, end) of cluster 0 (hdr holds
 * `have` bytes of it).  Unknown types are skipped.
 */
static int qcow2_parse_extensions(struct image *img, struct qcow2 *q,
                                  struct qcow2_hdr *h, const uint8_t *hdr,
                                  uint64_t have, uint64_t start,
                                  uint64_t end, struct df_error *err)
{
    uint64_t off = start;

    while (off + 8 <= end) {
        if (off + 8 > have)
            return df_corrupt(err, img->name, (int64_t)off,
                              "header extension runs past end of file");
        uint32_t type = get_be32(hdr + off);
        uint32_t len = get_be32(hdr + off + 4);
        if (type == QCOW2_EXT_END)
            return 0;
        uint64_t data = off + 8;
        if (len > end - data)
            return df_corrupt(err, img->name, (int64_t)off,
                              "header extension 0x%08" PRIx32 " length %"
                              PRIu32 " runs past %" PRIu64, type, len, end);
        if (data + len > have)
            return df_corrupt(err, img->name, (int64_t)off,
                              "header extension runs past end of file");
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (len >= sizeof(q->backing_fmt))
                return df_corrupt(err, img->name, (int64_t)off,
                                  "backing format name of %" PRIu32
                                  " bytes (at most %zu)", len,
                                  sizeof(q->backing_fmt) - 1);
            for (uint32_t i = 0; i < len; i++) {
                uint8_t c = hdr[data + i];
                if (c < 0x20 || c >= 0x7f)
                    return df_corrupt(err, img->name, (int64_t)(data + i),
                                      "backing format name is not "
                                      "printable");
            }
            memcpy(q->backing_fmt, hdr + data, len);
            q->backing_fmt[len] = '\0';
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            h->features = hdr + data;
            h->features_len = len;
            break;
        case QCOW2_EXT_DATA_FILE:
            h->has_data_file_ext = true;
            break;
        default:
            break;          /* bitmaps, crypto header, unknown: skip */
        }
        uint64_t next = data + ((uint64_t)len + 7) / 8 * 8;
        if (next <= off)
            break;
        off = next;
    }
    return 0;
}

/* Fields every version has, up to and including the v3 tail. */
static int qcow2_parse_fixed(struct image *img, struct qcow2 *q,
                             struct qcow2_hdr *h, const uint8_t *hdr,
                             uint64_t have, struct df_error *err)
{
    const char *n = img->name;

    h->backing_off = get_be64(hdr + QCOW2_OFF_BACKING_OFFSET);
    h->backing_len = get_be32(hdr + QCOW2_OFF_BACKING_SIZE);
    h->crypt = get_be32(hdr + QCOW2_OFF_CRYPT_METHOD);
    h->reftable_off = get_be64(hdr + QCOW2_OFF_REFTABLE_OFFSET);
    h->reftable_clusters = get_be32(hdr + QCOW2_OFF_REFTABLE_CLUSTERS);
    h->nb_snapshots = get_be32(hdr + QCOW2_OFF_NB_SNAPSHOTS);
    h->snapshots_off = get_be64(hdr + QCOW2_OFF_SNAPSHOTS_OFFSET);
    q->l1_size = get_be32(hdr + QCOW2_OFF_L1_SIZE);
    q->l1_offset = get_be64(hdr + QCOW2_OFF_L1_OFFSET);
    /* Whole sectors only (module comment). */
    img->size = get_be64(hdr + QCOW2_OFF_SIZE) / 512 * 512;

    if (q->version == 2) {
        h->header_length = QCOW2_V2_HEADER_LEN;
        h->refcount_order = 4;
        return 0;
    }
    if (have < QCOW2_V3_HEADER_MIN)
        return df_corrupt(err, n, 0, "version 3 header truncated (%" PRIu64
                          " bytes, need %d)", have, QCOW2_V3_HEADER_MIN);
    q->incompat = get_be64(hdr + QCOW2_OFF_INCOMPAT);
    h->refcount_order = get_be32(hdr + QCOW2_OFF_REFCOUNT_ORDER);
    h->header_length = get_be32(hdr + QCOW2_OFF_HEADER_LENGTH);
    if (h->header_length < QCOW2_V3_HEADER_MIN ||
        h->header_length % 8 != 0)
        return df_corrupt(err, n, QCOW2_OFF_HEADER_LENGTH,
                          "header_length %" PRIu32 " (must be a multiple "
                          "of 8, at least %d)", h->header_length,
                          QCOW2_V3_HEADER_MIN);
    if (h->header_length > q->cluster_size)
        return df_corrupt(err, n, QCOW2_OFF_HEADER_LENGTH,
                          "header_length %" PRIu32 " larger than a cluster"
                          " (%" PRIu64 ")", h->header_length,
                          q->cluster_size);
    if (h->header_length > have)
        return df_corrupt(err, n, QCOW2_OFF_HEADER_LENGTH,
                          "header_length %" PRIu32 " runs past end of "
                          "file (%" PRIu64 ")", h->header_length, have);
    if (h->refcount_order > 6)
        return df_corrupt(err, n, QCOW2_OFF_REFCOUNT_ORDER,
                          "refcount_order %" PRIu32 " outside 0..6",
                          h->refcount_order);
    if (h->header_length > QCOW2_OFF_COMPRESSION_TYPE)
        q->compression = hdr[QCOW2_OFF_COMPRESSION_TYPE];
    return 0;
}

/* Feature bits, compression type, encryption. */
static int qcow2_check_features(struct image *img, struct qcow2 *q,
                                const struct qcow2_hdr *h,
                                struct df_error *err)
{
    const char *n = img->name;
    uint64_t unknown = q->incompat & ~QCOW2_INCOMPAT_KNOWN;

    if (unknown) {
        char name[48];
        unsigned bit = (unsigned)__builtin_ctzll(unknown);
        qcow2_feature_name(h, bit, name, sizeof(name));
        return df_corrupt(err, n, QCOW2_OFF_INCOMPAT,
                          "unknown incompatible feature bit %u (%s): not "
                          "supported", bit, name);
    }
    if (h->crypt != 0)
        return df_corrupt(err, n, QCOW2_OFF_CRYPT_METHOD,
                          "encrypted image (crypt_method %" PRIu32 ", %s): "
                          "not supported", h->crypt,
                          h->crypt == 1 ? "aes" : h->crypt == 2 ? "luks"
                                                                : "unknown");
    if ((q->incompat & QCOW2_INCOMPAT_DATA_FILE) || h->has_data_file_ext)
        return df_corrupt(err, n, QCOW2_OFF_INCOMPAT,
                          "image keeps its data in an external data file "
                          "(incompatible bit 2): not supported");
    if (q->incompat & QCOW2_INCOMPAT_COMPRESSION) {
        if (q->compression == QCOW2_COMPRESS_ZLIB)
            return df_corrupt(err, n, QCOW2_OFF_INCOMPAT,
                              "compression type bit set but "
                              "compression_type is zlib");
    } else if (q->compression != QCOW2_COMPRESS_ZLIB) {
        return df_corrupt(err, n, QCOW2_OFF_COMPRESSION_TYPE,
                          "compression_type %" PRIu32 " without the "
                          "compression type bit", q->compression);
    }
    if (q->compression > QCOW2_COMPRESS_ZSTD)
        return df_corrupt(err, n, QCOW2_OFF_COMPRESSION_TYPE,
                          "unknown compression_type %" PRIu32,
                          q->compression);
    q->extl2 = (q->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
    if (q->extl2 && q->cluster_bits < 14)
        return df_corrupt(err, n, QCOW2_OFF_CLUSTER_BITS,
                          "cluster_bits %" PRIu32 " below 14 with extended "
                          "L2 entries", q->cluster_bits);
    return 0;
}

/* The backing file name: img->parent_name, refusing non-file names. */
static int qcow2_parse_backing(struct image *img, const struct qcow2_hdr *h,
                               const uint8_t *hdr, uint64_t have,
                               struct df_error *err)
{
    const char *n = img->name;
    char name[QCOW2_BACKING_NAME_MAX + 1];

    if (h->backing_off == 0 || h->backing_len == 0)
        return 0;
    if (h->backing_len > QCOW2_BACKING_NAME_MAX)
        return df_corrupt(err, n, QCOW2_OFF_BACKING_SIZE,
                          "backing_file_size %" PRIu32 " (at most %d)",
                          h->backing_len, QCOW2_BACKING_NAME_MAX);
    if (!range_within(h->backing_off, h->backing_len, have))
        return df_corrupt(err, n, QCOW2_OFF_BACKING_OFFSET,
                          "backing file name at %" PRIu64 " (%" PRIu32
                          " bytes) outside cluster 0 or the file",
                          h->backing_off, h->backing_len);
    memcpy(name, hdr + h->backing_off, h->backing_len);
    name[h->backing_len] = '\0';
    if (strlen(name) != h->backing_len)
        return df_corrupt(err, n, (int64_t)h->backing_off,
                          "backing file name contains a NUL byte");
    const char *p = name;
    if (!strncmp(p, "json:", 5))
        return df_corrupt(err, n, (int64_t)h->backing_off,
                          "backing file is a json: specification, not a "
                          "file name: not supported");
    if (!strncmp(p, "file:", 5))
        p += 5;
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    if (colon && (!slash || colon < slash))
        return df_corrupt(err, n, (int64_t)h->backing_off,
                          "backing file '%.200s' names a protocol (%.*s): "
                          "not supported", name, (int)(colon - p), p);
    if (!*p)
        return df_corrupt(err, n, (int64_t)h->backing_off,
                          "empty backing file name");
    snprintf(img->parent_name, sizeof(img->parent_name), "%s", p);
    snprintf(img->parent_id, sizeof(img->parent_id), "qcow2 backing %s", p);
    img->has_parent_ref = true;
    return 0;
}

/* Refcount table and snapshot table: only their placement is checked. */
static int qcow2_check_tables(struct image *img, const struct qcow2 *q,
                              const struct qcow2_hdr *h,
                              struct df_error *err)
{
    const char *n = img->name;
    uint64_t fsize = img->file.size;
    uint64_t rt_bytes = (uint64_t)h->reftable_clusters * q->cluster_size;

    if (h->reftable_off == 0 || h->reftable_off % q->cluster_size)
        return df_corrupt(err, n, QCOW2_OFF_REFTABLE_OFFSET,
                          "refcount_table_offset 0x%" PRIx64 " not a "
                          "cluster after the header", h->reftable_off);
    if (h->reftable_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES)
        return df_corrupt(err, n, QCOW2_OFF_REFTABLE_CLUSTERS,
                          "refcount_table_clusters %" PRIu32 " outside 1.."
                          "%" PRIu64, h->reftable_clusters,
                          QCOW2_MAX_REFTABLE_BYTES / q->cluster_size);
    if (!range_within(h->reftable_off, rt_bytes, fsize))
        return df_corrupt(err, n, QCOW2_OFF_REFTABLE_OFFSET,
                          "refcount table at 0x%" PRIx64 " (%" PRIu64
                          " bytes) runs past end of file (%" PRIu64 ")",
                          h->reftable_off, rt_bytes, fsize);
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return df_corrupt(err, n, QCOW2_OFF_NB_SNAPSHOTS,
                          "nb_snapshots %" PRIu32 " (at most %u)",
                          h->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
    if (h->nb_snapshots &&
        (h->snapshots_off == 0 || h->snapshots_off % q->cluster_size ||
         h->snapshots_off >= fsize))
        return df_corrupt(err, n, QCOW2_OFF_SNAPSHOTS_OFFSET,
                          "snapshots_offset 0x%" PRIx64 " not a cluster "
                          "inside the file (%" PRIu64 " bytes)",
                          h->snapshots_off, fsize);
    return 0;
}

static int qcow2_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The table [off, +len) overlaps (L1, refcount, or an L2 table once
 * they are known), or NULL.  An L2 table at skip is not counted. */
static const char *qcow2_meta_hit(const struct qcow2 *q, uint64_t off,
                                  uint64_t len, uint64_t skip)
{
    if (ranges_overlap(off, len, q->l1_offset, (uint64_t)q->l1_size * 8))
        return "L1 table";
    if (ranges_overlap(off, len, q->reftable_off, q->reftable_len))
        return "refcount table";
    /* The last L2 table starting below off + len. */
    size_t lo = 0, hi = q->n_l2;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (q->l2_offs[mid] < off + len)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo && q->l2_offs[lo - 1] != skip &&
        ranges_overlap(off, len, q->l2_offs[lo - 1], q->cluster_size))
        return "L2 table";
    return NULL;
}

/* Read the active L1 table and check every entry that maps the disk. */
static int qcow2_load_l1(struct image *img, struct qcow2 *q,
                         struct df_error *err)
{
    const char *n = img->name;
    uint64_t fsize = img->file.size;
    uint64_t cover = q->l2_entries * q->cluster_size;
    uint64_t need = div_round_up(img->size, cover);
    uint64_t bytes = (uint64_t)q->l1_size * 8;

    if (q->l1_size < need)
        return df_corrupt(err, n, QCOW2_OFF_L1_SIZE,
                          "l1_size %" PRIu32 " too small for a %" PRIu64
                          "-byte disk (need %" PRIu64 ")", q->l1_size,
                          img->size, need);
    if (bytes > QCOW2_MAX_L1_BYTES)
        return df_corrupt(err, n, QCOW2_OFF_L1_SIZE,
                          "l1_size %" PRIu32 " above %u entries",
                          q->l1_size, QCOW2_MAX_L1_BYTES / 8);
    if (q->l1_size == 0)
        return 0;
    if (q->l1_offset == 0 || q->l1_offset % q->cluster_size)
        return df_corrupt(err, n, QCOW2_OFF_L1_OFFSET,
                          "l1_table_offset 0x%" PRIx64 " not a cluster "
                          "after the header", q->l1_offset);
    if (!range_within(q->l1_offset, bytes, fsize))
        return df_corrupt(err, n, QCOW2_OFF_L1_OFFSET,
                          "L1 table at 0x%" PRIx64 " (%" PRIu64 " bytes) "
                          "runs past end of file (%" PRIu64 ")",
                          q->l1_offset, bytes, fsize);
    if (ranges_overlap(q->l1_offset, bytes, q->reftable_off,
                       q->reftable_len))
        return df_corrupt(err, n, QCOW2_OFF_L1_OFFSET,
                          "L1 table at 0x%" PRIx64 " (%" PRIu64 " bytes) "
                          "overlaps the refcount table at 0x%" PRIx64,
                          q->l1_offset, bytes, q->reftable_off);
    q->l1 = malloc(bytes);
    q->l2_offs = malloc(need * sizeof(*q->l2_offs) + 1);
    if (!q->l1 || !q->l2_offs)
        return df_io(err, n, ENOMEM, "cannot allocate L1 table");
    if (df_file_pread(&img->file, q->l1, bytes, q->l1_offset, err) < 0)
        return -1;
    size_t nl2 = 0;
    for (uint64_t i = 0; i < need; i++) {
        uint64_t e = get_be64(q->l1 + i * 8);
        uint64_t at = q->l1_offset + i * 8;
        uint64_t l2 = e & QCOW2_OFFSET_MASK;
        if (e & QCOW2_L1_RESERVED)
            return df_corrupt(err, n, (int64_t)at,
                              "L1 table entry %" PRIu64 ": reserved bits "
                              "0x%" PRIx64 " set", i,
                              (uint64_t)(e & QCOW2_L1_RESERVED));
        if (l2 % q->cluster_size)
            return df_corrupt(err, n, (int64_t)at,
                              "L1 table entry %" PRIu64 ": L2 table offset "
                              "0x%" PRIx64 " not cluster aligned", i, l2);
        if (l2 && !range_within(l2, q->cluster_size, fsize))
            return df_corrupt(err, n, (int64_t)at,
                              "L1 table entry %" PRIu64 ": L2 table at 0x%"
                              PRIx64 " past end of file (%" PRIu64 ")", i,
                              l2, fsize);
        const char *hit = l2 ? qcow2_meta_hit(q, l2, q->cluster_size, 0)
                             : NULL;
        if (hit)
            return df_corrupt(err, n, (int64_t)at,
                              "L1 table entry %" PRIu64 ": L2 table at 0x%"
                              PRIx64 " overlaps the %s", i, l2, hit);
        if (l2)
            q->l2_offs[nl2++] = l2;
    }
    /* Tables shared by several entries are fine: keep each once. */
    qsort(q->l2_offs, nl2, sizeof(*q->l2_offs), qcow2_cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < nl2; i++)
        if (!k || q->l2_offs[k - 1] != q->l2_offs[i])
            q->l2_offs[k++] = q->l2_offs[i];
    q->n_l2 = k;
    return 0;
}

static void qcow2_set_props(struct image *img, const struct qcow2 *q)
{
    image_set_prop(img, "version", "%" PRIu32, q->version);
    image_set_prop(img, "cluster_size", "%" PRIu64, q->cluster_size);
    if (q->version >= 3)
        image_set_prop(img, "compression", "%s",
                       q->compression == QCOW2_COMPRESS_ZSTD ? "zstd"
                                                             : "zlib");
    if (q->backing_fmt[0])
        image_set_prop(img, "backing_format", "%s", q->backing_fmt);
    if (q->extl2)
        image_set_prop(img, "extended_l2", "yes");
    if (q->incompat & QCOW2_INCOMPAT_DIRTY)
        image_set_prop(img, "dirty", "yes");
    if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
        image_set_prop(img, "corrupt", "yes");
}

/*
 * A reader's decompression state, from q->dctx for one read call (so
 * no lock covers it): the compressed bytes of one or more clusters
 * (span, q->span_cap bytes), one cluster of output cached by descriptor
 * so that a cluster read in pieces inflates once, and the inflaters.
 */
struct qcow2_dctx {
    uint8_t *span;
    uint8_t *dbuf;
    uint64_t dbuf_desc;
    bool dbuf_valid;
    z_stream *zs;                   /* lazily */
    ZSTD_DCtx *zd;                  /* lazily */
};

static void qcow2_dctx_free(void *ctx)
{
    struct qcow2_dctx *dc = ctx;

    free(dc->span);
    free(dc->dbuf);
    if (dc->zs) {
        inflateEnd(dc->zs);
        free(dc->zs);
    }
    ZSTD_freeDCtx(dc->zd);
    free(dc);
}

static void *qcow2_dctx_new(void *arg)
{
    const struct qcow2 *q = arg;
    struct qcow2_dctx *dc = calloc(1, sizeof(*dc));

    if (!dc)
        return NULL;
    dc->span = malloc(q->span_cap);
    dc->dbuf = malloc(q->cluster_size);
    if (!dc->span || !dc->dbuf) {
        qcow2_dctx_free(dc);
        return NULL;
    }
    return dc;
}

void qcow2_unload(struct qcow2 *q)
{
    free(q->l1);
    q->l1 = NULL;
    free(q->l2_offs);
    q->l2_offs = NULL;
    q->n_l2 = 0;
    for (unsigned i = 0; i < q->l2c_n; i++)
        free(q->l2c[i].tbl);
    memset(q->l2c, 0, sizeof(q->l2c));
    q->l2c_n = 0;
    ctx_pool_release(&q->dctx);
    q->can_read = false;
}

int qcow2_load(struct image *img, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_hdr h;
    const char *n = img->name;
    uint64_t fsize = img->file.size;
    uint8_t fixed[QCOW2_V2_HEADER_LEN];
    uint8_t *hdr = NULL;
    int ret = -1;

    qcow2_unload(q);
    memset(&h, 0, sizeof(h));
    q->backing_fmt[0] = '\0';
    q->incompat = 0;
    q->compression = QCOW2_COMPRESS_ZLIB;
    img->parent_name[0] = '\0';
    img->parent_id[0] = '\0';
    img->has_parent_ref = false;

    if (fsize < QCOW2_V2_HEADER_LEN)
        return df_corrupt(err, n, 0, "header truncated (%" PRIu64 " bytes,"
                          " need %d)", fsize, QCOW2_V2_HEADER_LEN);
    if (df_file_pread(&img->file, fixed, sizeof(fixed), 0, err) < 0)
        return -1;
    if (get_be32(fixed + QCOW2_OFF_MAGIC) != QCOW2_MAGIC)
        return df_corrupt(err, n, 0, "not a qcow2 image (bad magic)");
    q->version = get_be32(fixed + QCOW2_OFF_VERSION);
    if (q->version != 2 && q->version != 3)
        return df_corrupt(err, n, QCOW2_OFF_VERSION,
                          "qcow version %" PRIu32 ": only 2 and 3 are "
                          "supported", q->version);
    q->cluster_bits = get_be32(fixed + QCOW2_OFF_CLUSTER_BITS);
    if (q->cluster_bits < 9 || q->cluster_bits > 21)
        return df_corrupt(err, n, QCOW2_OFF_CLUSTER_BITS,
                          "cluster_bits %" PRIu32 " outside 9..21",
                          q->cluster_bits);
    q->cluster_size = 1ull << q->cluster_bits;

    /* Cluster 0 holds the header, its extensions and the backing name. */
    uint64_t have = min_u64(q->cluster_size, fsize);
    hdr = calloc(1, q->cluster_size);
    if (!hdr) {
        df_io(err, n, ENOMEM, "cannot allocate header buffer");
        goto out;
    }
    if (df_file_pread(&img->file, hdr, have, 0, err) < 0 ||
        qcow2_parse_fixed(img, q, &h, hdr, have, err) < 0)
        goto out;
    uint64_t ext_end = q->cluster_size;
    if (h.backing_off && h.backing_off < ext_end)
        ext_end = h.backing_off;
    if (qcow2_parse_extensions(img, q, &h, hdr, have, h.header_length,
                               ext_end, err) < 0 ||
        qcow2_check_features(img, q, &h, err) < 0 ||
        qcow2_parse_backing(img, &h, hdr, have, err) < 0 ||
        qcow2_check_tables(img, q, &h, err) < 0)
        goto out;
    q->reftable_off = h.reftable_off;
    q->reftable_len = (uint64_t)h.reftable_clusters * q->cluster_size;

    q->l2_entries = q->cluster_size / (q->extl2 ? 16 : 8);
    q->sub_size = q->cluster_size / 32;
    q->csize_shift = 62 - (q->cluster_bits - 8);
    q->coff_mask = (1ull << q->csize_shift) - 1;
    q->csect_mask = (1ull << (q->cluster_bits - 8)) - 1;
    if (qcow2_load_l1(img, q, err) < 0)
        goto out;

    q->cbuf_len = (size_t)(q->csect_mask + 1) * 512;
    q->span_cap = max_u64(q->cbuf_len, QCOW2_SPAN_BYTES);
    ctx_pool_init(&q->dctx, (unsigned)(QCOW2_DCTX_BYTES /
                                       (q->span_cap + q->cluster_size)),
                  qcow2_dctx_new, qcow2_dctx_free, q);
    qcow2_set_props(img, q);
    q->can_read = true;
    ret = 0;
out:
    free(hdr);
    if (ret < 0)
        qcow2_unload(q);
    return ret;
}

void qcow2_locks_init(struct qcow2 *q)
{
    if (q->locks_ready)
        return;
    pthread_mutex_init(&q->l2_lock, NULL);
    pthread_rwlock_init(&q->rw, NULL);
    q->locks_ready = true;
}

static int qcow2_open(struct image *img, struct df_error *err)
{
    struct qcow2 *q = img->priv;

    qcow2_locks_init(q);
    if (img->writable)
        return df_fail(err, DF_USAGE, 0, img->name, -1,
                       "diskferry writes qcow2 only as a new image");
    return qcow2_load(img, err);
}

/*
 * Copy entries [first, first+n) of the L2 table L1 entry l1i points at
 * into out (n * entry size bytes), through the cache, under l2_lock:
 * the caller decodes its copy with no lock held, so a slot is never in
 * use when it is evicted.  *toff is the table's offset, 0 when the entry
 * is unallocated (out untouched).
 */
static int qcow2_l2_copy(struct image *img, struct qcow2 *q, uint64_t l1i,
                         uint64_t first, uint64_t n, uint8_t *out,
                         uint64_t *toff, struct df_error *err)
{
    uint64_t off = get_be64(q->l1 + l1i * 8) & QCOW2_OFFSET_MASK;
    unsigned cap = (unsigned)min_u64(QCOW2_L2_CACHE_MAX,
                                     max_u64(1, QCOW2_L2_CACHE_BYTES /
                                                    q->cluster_size));
    size_t esz = q->extl2 ? 16 : 8;
    struct qcow2_l2_slot *s = NULL;
    int ret = -1;

    *toff = off;
    if (!off)
        return 0;
    pthread_mutex_lock(&q->l2_lock);
    for (unsigned i = 0; i < q->l2c_n && !s; i++)
        if (q->l2c[i].off == off)
            s = &q->l2c[i];
    if (!s) {
        if (q->l2c_n < cap) {
            uint8_t *t = malloc(q->cluster_size);
            if (!t) {
                df_io(err, img->name, ENOMEM, "cannot allocate L2 cache");
                goto out;
            }
            s = &q->l2c[q->l2c_n++];
            s->tbl = t;
        } else {
            s = &q->l2c[0];
            for (unsigned i = 1; i < q->l2c_n; i++)
                if (q->l2c[i].used < s->used)
                    s = &q->l2c[i];
        }
        /* Metadata, one table per L1 entry: read under the lock. */
        s->off = 0;
        if (df_file_pread(&img->file, s->tbl, q->cluster_size, off,
                          err) < 0)
            goto out;
        s->off = off;
    }
    s->used = ++q->tick;
    memcpy(out, s->tbl + first * esz, n * esz);
    ret = 0;
out:
    pthread_mutex_unlock(&q->l2_lock);
    return ret;
}

/* Decode and check L2 entry idx (at ent, a copy) of the table at toff. */
static int qcow2_decode(struct image *img, const struct qcow2 *q,
                        const uint8_t *ent, uint64_t toff, uint64_t idx,
                        struct qcow2_cl *cl, struct df_error *err)
{
    unsigned esz = q->extl2 ? 16 : 8;
    uint64_t e = get_be64(ent);
    int64_t at = (int64_t)(toff + idx * esz);
    uint64_t fsize = img->file.size;
    const char *n = img->name;

    memset(cl, 0, sizeof(*cl));
    if (e & QCOW2_COMPRESSED) {
        uint64_t coff = e & q->coff_mask;
        uint64_t nsect = (e >> q->csize_shift) & q->csect_mask;
        uint64_t sect_end = (coff >> 9) + nsect + 1;
        if (coff < q->cluster_size || sect_end > div_round_up(fsize, 512))
            return df_corrupt(err, n, at,
                              "L2 table at 0x%" PRIx64 " entry %" PRIu64
                              ": compressed data at 0x%" PRIx64 " (%" PRIu64
                              " sectors) outside the file (%" PRIu64 ")",
                              toff, idx, coff, nsect + 1, fsize);
        cl->type = QCOW2_CL_COMPRESSED;
        cl->desc = e;
        return 0;
    }
    if (e & QCOW2_L2_RESERVED)
        return df_corrupt(err, n, at,
                          "L2 table at 0x%" PRIx64 " entry %" PRIu64
                          ": reserved bits 0x%" PRIx64 " set", toff, idx,
                          (uint64_t)(e & QCOW2_L2_RESERVED));
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if (host % q->cluster_size)
        return df_corrupt(err, n, at,
                          "L2 table at 0x%" PRIx64 " entry %" PRIu64
                          ": host offset 0x%" PRIx64 " not cluster aligned",
                          toff, idx, host);
    cl->host = host;
    if (q->extl2) {
        uint64_t bm = get_be64(ent + 8);
        cl->alloc = (uint32_t)bm;
        cl->zero = (uint32_t)(bm >> 32);
        if (e & QCOW2_ZERO)
            return df_corrupt(err, n, at,
                              "L2 table at 0x%" PRIx64 " entry %" PRIu64
                              ": zero flag set in an extended L2 entry",
                              toff, idx);
        if (cl->alloc & cl->zero)
            return df_corrupt(err, n, at + 8,
                              "L2 table at 0x%" PRIx64 " entry %" PRIu64
                              ": subclusters 0x%08" PRIx32 " both allocated"
                              " and zero", toff, idx, cl->alloc & cl->zero);
        if (cl->alloc && !host)
            return df_corrupt(err, n, at + 8,
                              "L2 table at 0x%" PRIx64 " entry %" PRIu64
                              ": allocated subclusters without a host "
                              "cluster", toff, idx);
    } else if (e & QCOW2_ZERO) {
        if (q->version < 3)
            return df_corrupt(err, n, at,
                              "L2 table at 0x%" PRIx64 " entry %" PRIu64
                              ": zero flag in a version 2 image", toff, idx);
        cl->type = QCOW2_CL_ZERO;
        return 0;
    }
    if (host && host >= fsize && (!q->extl2 || cl->alloc))
        return df_corrupt(err, n, at,
                          "L2 table at 0x%" PRIx64 " entry %" PRIu64
                          ": data cluster 0x%" PRIx64 " past end of file (%"
                          PRIu64 ")", toff, idx, host, fsize);
    const char *hit = host && (!q->extl2 || cl->alloc)
                      ? qcow2_meta_hit(q, host, q->cluster_size, UINT64_MAX)
                      : NULL;
    if (hit)
        return df_corrupt(err, n, at,
                          "L2 table at 0x%" PRIx64 " entry %" PRIu64
                          ": data cluster 0x%" PRIx64 " overlaps the %s",
                          toff, idx, host, hit);
    if (q->extl2)
        cl->type = QCOW2_CL_SUB;
    else
        cl->type = host ? QCOW2_CL_DATA : QCOW2_CL_UNALLOC;
    return 0;
}

static enum extent_state qcow2_state(enum qcow2_cl_type t)
{
    switch (t) {
    case QCOW2_CL_ZERO:
        return EXT_ZERO;
    case QCOW2_CL_DATA:
    case QCOW2_CL_COMPRESSED:
        return EXT_DATA;
    default:
        return EXT_PARENT;
    }
}

static enum extent_state qcow2_sub_state(const struct qcow2_cl *cl,
                                         unsigned s)
{
    if (cl->alloc & (1u << s))
        return EXT_DATA;
    if (cl->zero & (1u << s))
        return EXT_ZERO;
    return EXT_PARENT;
}

/*
 * Call fn for each cluster piece [off, end) of [off, off+len) in order,
 * with the cluster's decoded entry and its first byte; a whole
 * unallocated L2 range comes as one piece.  fn returns 0 to go on, 1 to
 * stop (not an error) or -1.  fn runs with no lock held: the entries
 * are decoded from a copy (qcow2_l2_copy), up to QCOW2_WALK_CHUNK at a
 * time.
 */
typedef int qcow2_walk_fn(struct image *img, struct qcow2 *q,
                          const struct qcow2_cl *cl, uint64_t cstart,
                          uint64_t off, uint64_t end, void *ctx,
                          struct df_error *err);

#define QCOW2_WALK_CHUNK 256

static int qcow2_walk(struct image *img, uint64_t off, uint64_t len,
                      qcow2_walk_fn *fn, void *ctx, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    uint64_t end = off + len;
    uint64_t cover = q->l2_entries * q->cluster_size;
    unsigned esz = q->extl2 ? 16 : 8;
    static const struct qcow2_cl unalloc = { .type = QCOW2_CL_UNALLOC };
    uint8_t ents[QCOW2_WALK_CHUNK * 16];

    if (!q->can_read)
        return df_fail(err, DF_IO, EINVAL, img->name, -1,
                       "qcow2 image being written: flush it before reading");
    while (off < end) {
        uint64_t l1i = off / cover;
        uint64_t l2end = min_u64(end, (l1i + 1) * cover);
        uint64_t first = (off >> q->cluster_bits) % q->l2_entries;
        uint64_t n = min_u64(QCOW2_WALK_CHUNK,
                             ((l2end - 1) >> q->cluster_bits) -
                             (off >> q->cluster_bits) + 1);
        uint64_t toff;
        int r;

        if (qcow2_l2_copy(img, q, l1i, first, n, ents, &toff, err) < 0)
            return -1;
        if (!toff) {
            r = fn(img, q, &unalloc, off, off, l2end, ctx, err);
            if (r)
                return r < 0 ? -1 : 0;
            off = l2end;
            continue;
        }
        uint64_t cend_all = min_u64(l2end, ((off >> q->cluster_bits) + n)
                                               << q->cluster_bits);
        for (uint64_t i = 0; off < cend_all; i++) {
            uint64_t ci = off >> q->cluster_bits;
            uint64_t cstart = ci << q->cluster_bits;
            uint64_t cend = min_u64(cend_all, cstart + q->cluster_size);
            struct qcow2_cl cl;
            if (qcow2_decode(img, q, ents + i * esz, toff, first + i, &cl,
                             err) < 0)
                return -1;
            r = fn(img, q, &cl, cstart, off, cend, ctx, err);
            if (r)
                return r < 0 ? -1 : 0;
            off = cend;
        }
    }
    return 0;
}

/* qcow2_walk_fn: append the piece to the extent list ctx. */
static int qcow2_map_piece(struct image *img, struct qcow2 *q,
                           const struct qcow2_cl *cl, uint64_t cstart,
                           uint64_t off, uint64_t end, void *ctx,
                           struct df_error *err)
{
    struct extent_list *out = ctx;

    if (cl->type != QCOW2_CL_SUB)
        return extent_list_append(out, off, end - off, qcow2_state(cl->type),
                                  img->name, err);
    while (off < end) {
        unsigned s = (unsigned)((off - cstart) / q->sub_size);
        uint64_t send = min_u64(end, cstart + (s + 1) * q->sub_size);
        int r = extent_list_append(out, off, send - off,
                                   qcow2_sub_state(cl, s), img->name, err);
        if (r)
            return r;
        off = send;
    }
    return 0;
}

static int qcow2_map(struct image *img, uint64_t off, uint64_t len,
                     struct extent_list *out, struct df_error *err)
{
    struct qcow2 *q = img->priv;

    pthread_rwlock_rdlock(&q->rw);
    int r = qcow2_walk(img, off, len, qcow2_map_piece, out, err);
    pthread_rwlock_unlock(&q->rw);
    return r;
}

/* qcow2_host_run's walk: the range is so far one stretch of the file. */
struct qcow2_host {
    uint64_t off0, file_off;
    bool ok;
};

/* qcow2_walk_fn: does the piece continue the stretch?  1 (stop): no. */
static int qcow2_host_piece(struct image *img, struct qcow2 *q,
                            const struct qcow2_cl *cl, uint64_t cstart,
                            uint64_t off, uint64_t end, void *ctx,
                            struct df_error *err)
{
    struct qcow2_host *h = ctx;
    (void)img;
    (void)err;
    if (cl->type == QCOW2_CL_SUB) {
        unsigned s0 = (unsigned)((off - cstart) / q->sub_size);
        unsigned s1 = (unsigned)((end - 1 - cstart) / q->sub_size);
        for (unsigned s = s0; s <= s1; s++)
            if (!(cl->alloc & (1u << s)))
                goto no;
    } else if (cl->type != QCOW2_CL_DATA) {
        goto no;
    }
    uint64_t host = cl->host + (off - cstart);
    if (off == h->off0)
        h->file_off = host;
    else if (host != h->file_off + (off - h->off0))
        goto no;
    return 0;
no:
    h->ok = false;
    return 1;
}

/* image_driver.host_run: data clusters (or allocated subclusters) at
 * consecutive host offsets. */
static int qcow2_host_run(struct image *img, uint64_t off, uint64_t len,
                          uint64_t *file_off, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_host h = { .off0 = off, .ok = true };

    pthread_rwlock_rdlock(&q->rw);
    int r = qcow2_walk(img, off, len, qcow2_host_piece, &h, err);
    pthread_rwlock_unlock(&q->rw);
    if (r < 0)
        return -1;
    *file_off = h.file_off;
    return h.ok ? 1 : 0;
}

/* The bytes of compressed cluster `desc` in the file: [*lo, *hi), hi a
 * sector end that may lie past EOF (read as zeros). */
static void qcow2_zrange(const struct qcow2 *q, uint64_t desc, uint64_t *lo,
                         uint64_t *hi)
{
    uint64_t coff = desc & q->coff_mask;
    uint64_t nsect = (desc >> q->csize_shift) & q->csect_mask;

    *lo = coff;
    *hi = ((coff >> 9) + nsect + 1) * 512;
}

/* Inflate compressed cluster `desc`, whose clen bytes are at in, into
 * out (one cluster). */
static int qcow2_inflate(struct image *img, struct qcow2 *q,
                         struct qcow2_dctx *dc, uint64_t desc,
                         const uint8_t *in, size_t clen, uint8_t *out,
                         struct df_error *err)
{
    uint64_t coff = desc & q->coff_mask;
    size_t got = 0;
    const char *n = img->name;

    if (q->compression == QCOW2_COMPRESS_ZLIB) {
        z_stream *zs = dc->zs;
        if (!zs) {
            zs = calloc(1, sizeof(*zs));
            if (!zs || inflateInit2(zs, -15) != Z_OK) {
                free(zs);
                return df_io(err, n, ENOMEM, "cannot set up zlib");
            }
            dc->zs = zs;
        } else if (inflateReset(zs) != Z_OK) {
            return df_io(err, n, ENOMEM, "cannot reset zlib");
        }
        zs->next_in = (Bytef *)in;
        zs->avail_in = (uInt)clen;
        zs->next_out = out;
        zs->avail_out = (uInt)q->cluster_size;
        int r = inflate(zs, Z_FINISH);
        got = q->cluster_size - zs->avail_out;
        if (r != Z_STREAM_END && r != Z_BUF_ERROR && r != Z_OK)
            return df_corrupt(err, n, (int64_t)coff,
                              "compressed cluster: deflate data invalid "
                              "(%s)", zs->msg ? zs->msg : "zlib error");
    } else {
        if (!dc->zd) {
            dc->zd = ZSTD_createDCtx();
            if (!dc->zd)
                return df_io(err, n, ENOMEM, "cannot set up zstd");
            ZSTD_DCtx_setParameter(dc->zd, ZSTD_d_windowLogMax,
                                   QCOW2_ZSTD_WINDOW_LOG_MAX);
        }
        ZSTD_DCtx_reset(dc->zd, ZSTD_reset_session_only);
        ZSTD_inBuffer zin = { in, clen, 0 };
        ZSTD_outBuffer o = { out, (size_t)q->cluster_size, 0 };
        while (o.pos < o.size) {
            size_t in0 = zin.pos, out0 = o.pos;
            size_t r = ZSTD_decompressStream(dc->zd, &o, &zin);
            if (ZSTD_isError(r))
                return df_corrupt(err, n, (int64_t)coff,
                                  "compressed cluster: zstd data invalid "
                                  "(%s)", ZSTD_getErrorName(r));
            if (zin.pos == in0 && o.pos == out0)
                break;      /* input used up */
        }
        got = o.pos;
    }
    if (got != q->cluster_size)
        return df_corrupt(err, n, (int64_t)coff,
                          "compressed cluster inflates to %zu bytes, not "
                          "one cluster (%" PRIu64 ")", got, q->cluster_size);
    return 0;
}

/* A piece of a compressed cluster waiting for its batch. */
struct qcow2_zpiece {
    uint8_t *dst;
    uint64_t desc;
    size_t in;                      /* offset in the cluster */
    size_t n;
};

#define QCOW2_ZBATCH 64

/* What qcow2_read_piece fills: buf holds [off0, ...). */
struct qcow2_read_ctx {
    uint8_t *buf;
    uint64_t off0;
    struct runs_batch run;          /* data clusters */
    struct qcow2_dctx *dc;          /* taken at the first compressed one */
    /* Compressed clusters whose bytes lie close together in the file,
     * ascending: one pread of [zlo, zhi) fetches them all. */
    struct qcow2_zpiece z[QCOW2_ZBATCH];
    unsigned nz;
    uint64_t zlo, zhi, zlast;
};

/* Read the batch's bytes in one go, then inflate its clusters in order. */
static int qcow2_zflush(struct image *img, struct qcow2 *q,
                        struct qcow2_read_ctx *rc, struct df_error *err)
{
    struct qcow2_dctx *dc = rc->dc;
    unsigned nz = rc->nz;

    rc->nz = 0;
    if (!nz)
        return 0;
    /* The last sector of the last compressed cluster may end past EOF. */
    if (df_file_pread_zfill(&img->file, dc->span, rc->zhi - rc->zlo,
                            rc->zlo, err) < 0)
        return -1;
    for (unsigned i = 0; i < nz; i++) {
        const struct qcow2_zpiece *p = &rc->z[i];
        uint64_t lo, hi;
        qcow2_zrange(q, p->desc, &lo, &hi);
        const uint8_t *in = dc->span + (lo - rc->zlo);
        if (p->n == q->cluster_size) {
            /* Whole: straight into place (dbuf keeps what it holds). */
            if (qcow2_inflate(img, q, dc, p->desc, in, hi - lo, p->dst,
                              err) < 0)
                return -1;
            continue;
        }
        dc->dbuf_valid = false;
        if (qcow2_inflate(img, q, dc, p->desc, in, hi - lo, dc->dbuf,
                          err) < 0)
            return -1;
        dc->dbuf_desc = p->desc;
        dc->dbuf_valid = true;
        memcpy(p->dst, dc->dbuf + p->in, p->n);
    }
    return 0;
}

/* Queue n bytes from offset in of compressed cluster desc for dst. */
static int qcow2_zadd(struct image *img, struct qcow2 *q,
                      struct qcow2_read_ctx *rc, uint64_t desc, uint8_t *dst,
                      uint64_t in, size_t n, struct df_error *err)
{
    uint64_t lo, hi;

    if (!rc->dc && !(rc->dc = ctx_pool_take(&q->dctx)))
        return df_io(err, img->name, ENOMEM,
                     "cannot allocate cluster buffers");
    struct qcow2_dctx *dc = rc->dc;
    if (dc->dbuf_valid && dc->dbuf_desc == desc) {
        memcpy(dst, dc->dbuf + in, n);
        return 0;
    }
    qcow2_zrange(q, desc, &lo, &hi);
    /* Ascending, at most a cluster apart, inside one span buffer. */
    if (rc->nz && (rc->nz == QCOW2_ZBATCH || lo < rc->zlast ||
                   lo > rc->zhi + q->cluster_size ||
                   max_u64(hi, rc->zhi) - rc->zlo > q->span_cap) &&
        qcow2_zflush(img, q, rc, err) < 0)
        return -1;
    if (!rc->nz) {
        rc->zlo = lo;
        rc->zhi = hi;
    }
    rc->zhi = max_u64(rc->zhi, hi);
    rc->zlast = lo;
    rc->z[rc->nz++] = (struct qcow2_zpiece){ dst, desc, (size_t)in, n };
    return 0;
}

/* qcow2_walk_fn: fill the piece into the read buffer. */
static int qcow2_read_piece(struct image *img, struct qcow2 *q,
                            const struct qcow2_cl *cl, uint64_t cstart,
                            uint64_t off, uint64_t end, void *ctx,
                            struct df_error *err)
{
    struct qcow2_read_ctx *rc = ctx;
    uint8_t *dst = rc->buf + (off - rc->off0);
    size_t n = (size_t)(end - off);
    uint64_t in = off - cstart;

    switch (cl->type) {
    case QCOW2_CL_DATA:
        return runs_batch_add(&rc->run, runs_file_pread, &img->file, dst,
                              cl->host + in, n, err);
    case QCOW2_CL_COMPRESSED:
        return qcow2_zadd(img, q, rc, cl->desc, dst, in, n, err);
    case QCOW2_CL_SUB:
        while (off < end) {
            unsigned s = (unsigned)((off - cstart) / q->sub_size);
            uint64_t send = min_u64(end, cstart + (s + 1) * q->sub_size);
            size_t sn = (size_t)(send - off);
            if (cl->alloc & (1u << s)) {
                if (runs_batch_add(&rc->run, runs_file_pread, &img->file,
                                   dst, cl->host + (off - cstart), sn,
                                   err) < 0)
                    return -1;
            } else {
                memset(dst, 0, sn);
            }
            dst += sn;
            off = send;
        }
        return 0;
    default:
        memset(dst, 0, n);  /* zero, or unallocated (contract 3) */
        return 0;
    }
}

/*
 * Walk the whole range first (entries copied out under l2_lock), then
 * read each run of host-contiguous clusters with one pread and each
 * batch of compressed clusters with one, inflating with this call's
 * own context: no lock is held across a data read or an inflate.
 */
static int qcow2_read(struct image *img, void *buf, size_t len, uint64_t off,
                      struct df_error *err)
{
    struct qcow2 *q = img->priv;
    struct qcow2_read_ctx rc;
    int ret = -1;

    rc.buf = buf;
    rc.off0 = off;
    rc.run.len = 0;
    rc.dc = NULL;
    rc.nz = 0;
    pthread_rwlock_rdlock(&q->rw);
    if (qcow2_walk(img, off, len, qcow2_read_piece, &rc, err) < 0) {
        /* A compressed cluster queued before the failing entry would
         * have been inflated before it was reached: its error first. */
        struct df_error zerr;
        df_error_init(&zerr);
        if (qcow2_zflush(img, q, &rc, &zerr) < 0)
            df_error_copy(err, &zerr);
        goto out;
    }
    if (qcow2_zflush(img, q, &rc, err) < 0 ||
        runs_batch_flush(&rc.run, err) < 0)
        goto out;
    ret = 0;
out:
    ctx_pool_give(&q->dctx, rc.dc);
    pthread_rwlock_unlock(&q->rw);
    return ret;
}

/*
 * qcow2 records no identity of its backing file, only its name and
 * optionally its format: a parent of another format than recorded is
 * refused (QEMU would read it as the recorded format, not probe it).
 * Size differences are allowed: past a shorter parent's end reads zeros.
 */
static int qcow2_check_parent(struct image *child, struct image *parent,
                              struct df_error *err)
{
    const struct qcow2 *q = child->priv;
    const char *fmt = q->backing_fmt;

    if (!fmt[0])
        return 0;
    if (!strcmp(fmt, "file") || !strcmp(fmt, "host_device"))
        fmt = "raw";
    if (strcmp(fmt, parent->drv->name))
        return df_corrupt(err, child->name, -1,
                          "backing file %s is a %s image but the backing "
                          "format recorded is '%s'", parent->name,
                          parent->drv->name, q->backing_fmt);
    return 0;
}

/*
 * The writer's slots (qcow2_write.c) run with rw held exclusive: image.c
 * does not serialise an IMG_THREAD_SAFE driver, and a write or flush
 * changes what a reader would look at.  Writes come one at a time
 * anyway (IMG_SEQUENTIAL_WRITE).
 */
static int qcow2_drv_write(struct image *img, const void *buf, size_t len,
                           uint64_t off, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    pthread_rwlock_wrlock(&q->rw);
    int r = qcow2_write(img, buf, len, off, err);
    pthread_rwlock_unlock(&q->rw);
    return r;
}

static int qcow2_drv_zero(struct image *img, uint64_t off, uint64_t len,
                          struct df_error *err)
{
    struct qcow2 *q = img->priv;
    pthread_rwlock_wrlock(&q->rw);
    int r = qcow2_zero(img, off, len, err);
    pthread_rwlock_unlock(&q->rw);
    return r;
}

static int qcow2_drv_flush(struct image *img, struct df_error *err)
{
    struct qcow2 *q = img->priv;
    pthread_rwlock_wrlock(&q->rw);
    int r = qcow2_flush(img, err);
    pthread_rwlock_unlock(&q->rw);
    return r;
}

static int qcow2_drv_set_size(struct image *img, uint64_t size,
                              struct df_error *err)
{
    struct qcow2 *q = img->priv;
    pthread_rwlock_wrlock(&q->rw);
    int r = qcow2_set_size(img, size, err);
    pthread_rwlock_unlock(&q->rw);
    return r;
}

static int qcow2_drv_create(struct image *img, uint64_t size,
                            const struct image_create_opts *copts,
                            struct df_error *err)
{
    qcow2_locks_init(img->priv);
    return qcow2_create(img, size, copts, err);
}

static void qcow2_close(struct image *img)
{
    struct qcow2 *q = img->priv;
    qcow2_unload(q);
    qcow2_writer_free(q->w);
    q->w = NULL;
    if (q->locks_ready) {
        pthread_rwlock_destroy(&q->rw);
        pthread_mutex_destroy(&q->l2_lock);
        q->locks_ready = false;
    }
}

/* map and read run concurrently (see the module comment). */
const struct image_driver qcow2_driver = {
    .name = "qcow2",
    .priv_size = sizeof(struct qcow2),
    .caps = IMG_CAN_WRITE | IMG_CAN_CREATE | IMG_SEQUENTIAL_WRITE |
            IMG_CAN_COMPRESS | IMG_SIZE_AT_END | IMG_THREAD_SAFE,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .map = qcow2_map,
    .read = qcow2_read,
    .host_run = qcow2_host_run,
    .write = qcow2_drv_write,
    .zero = qcow2_drv_zero,
    .flush = qcow2_drv_flush,
    .create = qcow2_drv_create,
    .set_size = qcow2_drv_set_size,
    .check_parent = qcow2_check_parent,
    .close = qcow2_close,
};
