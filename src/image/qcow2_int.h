/*
 * qcow2_int.h: what qcow2.c (reader, driver table) and qcow2_write.c
 * (writer for new images) share: the on-disk constants and the
 * per-image state.  Layout and spec: see the comment atop qcow2.c.
 */
#ifndef DF_QCOW2_INT_H
#define DF_QCOW2_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "image/image.h"
#include "util/pool.h"

#define QCOW2_MAGIC 0x514649fbu         /* "QFI\xfb" */

/* Header fields (big endian). */
#define QCOW2_OFF_MAGIC 0
#define QCOW2_OFF_VERSION 4
#define QCOW2_OFF_BACKING_OFFSET 8
#define QCOW2_OFF_BACKING_SIZE 16
#define QCOW2_OFF_CLUSTER_BITS 20
#define QCOW2_OFF_SIZE 24
#define QCOW2_OFF_CRYPT_METHOD 32
#define QCOW2_OFF_L1_SIZE 36
#define QCOW2_OFF_L1_OFFSET 40
#define QCOW2_OFF_REFTABLE_OFFSET 48
#define QCOW2_OFF_REFTABLE_CLUSTERS 56
#define QCOW2_OFF_NB_SNAPSHOTS 60
#define QCOW2_OFF_SNAPSHOTS_OFFSET 64
#define QCOW2_OFF_INCOMPAT 72               /* v3 from here */
#define QCOW2_OFF_COMPAT 80
#define QCOW2_OFF_AUTOCLEAR 88
#define QCOW2_OFF_REFCOUNT_ORDER 96
#define QCOW2_OFF_HEADER_LENGTH 100
#define QCOW2_OFF_COMPRESSION_TYPE 104      /* if header_length > 104 */

#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_MIN 104
#define QCOW2_V3_HEADER_LEN 112     /* what qemu 7.2 and our writer write */

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full

#define QCOW2_COMPRESS_ZLIB 0
#define QCOW2_COMPRESS_ZSTD 1

/* Header extension types. */
#define QCOW2_EXT_END 0u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_BACKING_NAME_MAX 1023

/* L1 and L2 entries. */
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00)     /* bits 9..55 */
#define QCOW2_COPIED (1ull << 63)
#define QCOW2_COMPRESSED (1ull << 62)
#define QCOW2_ZERO (1ull << 0)
/* bits 0..8 and 56..62 */
#define QCOW2_L1_RESERVED UINT64_C(0x7f000000000001ff)
/* bits 1..8 and 56..61 */
#define QCOW2_L2_RESERVED UINT64_C(0x3f000000000001fe)

/* Limits QEMU also applies; nothing larger is allocated from a header. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u

#define QCOW2_L2_CACHE_MAX 32           /* tables */
#define QCOW2_L2_CACHE_BYTES (32u << 20)

struct qcow2_l2_slot {
    uint64_t off;           /* host offset of the table, 0 = empty slot */
    uint64_t used;          /* LRU tick */
    uint8_t *tbl;           /* cluster_size bytes, as on disk */
};

struct qcow2_writer;

struct qcow2 {
    /* Header, validated by qcow2_open(). */
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint64_t incompat;
    uint32_t compression;           /* QCOW2_COMPRESS_* */
    bool extl2;                     /* 128-bit L2 entries, subclusters */
    uint64_t l2_entries;            /* entries per L2 table */
    uint64_t sub_size;              /* subcluster size (extl2) */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint8_t *l1;                    /* l1_size entries, big endian */
    uint64_t reftable_off;          /* refcount table, for overlaps */
    uint64_t reftable_len;
    uint64_t *l2_offs;              /* the L2 tables in use, sorted */
    size_t n_l2;
    char backing_fmt[32];           /* backing format extension, or "" */
    unsigned csize_shift;           /* compressed descriptor: x */
    uint64_t coff_mask;             /* host offset bits */
    uint64_t csect_mask;            /* additional sector count bits */

    /* L2 table cache (LRU), under l2_lock: a reader copies the entries
     * it needs out of a slot before letting the lock go. */
    pthread_mutex_t l2_lock;
    struct qcow2_l2_slot l2c[QCOW2_L2_CACHE_MAX];
    unsigned l2c_n;
    uint64_t tick;

    /* Decompression: one context (struct qcow2_dctx, qcow2.c) per
     * thread reading at once, each with a span of compressed bytes and
     * one decompressed cluster. */
    struct ctx_pool dctx;
    size_t cbuf_len;                /* largest compressed cluster */
    size_t span_cap;                /* bytes of a context's span */

    /* map/read hold rw shared for the whole call, the writer's calls
     * (write, zero, flush, set_size) exclusive: a flush reloads the
     * reader state. */
    pthread_rwlock_t rw;
    bool locks_ready;

    /* Reading is possible (open, or a writer after flush). */
    bool can_read;
    struct qcow2_writer *w;         /* images made by create() */
};

/* qcow2.c: set up l2_lock and rw (open and create call it first). */
void qcow2_locks_init(struct qcow2 *q);
/* qcow2.c: parse the header of img->file into img->priv (reader state). */
int qcow2_load(struct image *img, struct df_error *err);
/* qcow2.c: free the reader state (the writer's is freed separately). */
void qcow2_unload(struct qcow2 *q);

/* qcow2_write.c: the writer slots of the driver. */
int qcow2_create(struct image *img, uint64_t size,
                 const struct image_create_opts *copts, struct df_error *err);
int qcow2_write(struct image *img, const void *buf, size_t len, uint64_t off,
                struct df_error *err);
int qcow2_zero(struct image *img, uint64_t off, uint64_t len,
               struct df_error *err);
int qcow2_flush(struct image *img, struct df_error *err);
int qcow2_set_size(struct image *img, uint64_t size, struct df_error *err);
void qcow2_writer_free(struct qcow2_writer *w);

#endif
