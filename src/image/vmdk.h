/*
 * vmdk.h: what the VMDK driver's three files share: the parsed
 * descriptor (vmdk_desc.c, also called alone by fuzz_vmdk_desc.c) and
 * the binary extent readers (vmdk_sparse.c) behind vmdk.c.
 *
 * Spec summary: docs/formats.md section 2.  The virtual disk is the
 * concatenation of the descriptor's extents; each extent is a FLAT
 * range of a file, a ZERO range, or a sparse file of one of three
 * binary kinds (KDMV hosted sparse / streamOptimized, COWD vmfsSparse,
 * seSparse) that maps grains through a grain directory (GD) of grain
 * tables (GT).
 */
#ifndef DF_IMAGE_VMDK_H
#define DF_IMAGE_VMDK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"

/* Ceilings on descriptor text (refused above, exit 5). */
#define VMDK_DESC_MAX (1u << 20)        /* bytes of descriptor text */
#define VMDK_LINE_MAX 4096              /* bytes per line, CR LF excluded */
#define VMDK_MAX_EXTENTS 4096
/* Largest extent or disk, in sectors (8 PiB): keeps byte math in u64. */
#define VMDK_MAX_SECTORS (1ull << 44)
#define VMDK_NO_PARENT_CID 0xffffffffu

enum vmdk_access { VMDK_ACC_RW, VMDK_ACC_RDONLY, VMDK_ACC_NOACCESS };

enum vmdk_type {
    VMDK_T_FLAT,
    VMDK_T_SPARSE,
    VMDK_T_ZERO,
    VMDK_T_VMFS,
    VMDK_T_VMFSSPARSE,
    VMDK_T_SESPARSE,
    VMDK_T_VMFSRDM,
    VMDK_T_VMFSRAW,
};

/* One extent line: ACCESS SECTORS TYPE ["FILE" [START]]. */
struct vmdk_desc_extent {
    enum vmdk_access access;
    enum vmdk_type type;
    uint64_t sectors;
    uint64_t start;             /* FLAT: first sector inside file */
    char *file;                 /* NULL for ZERO without a file */
};

struct vmdk_desc {
    unsigned version;           /* 1..3 */
    bool has_cid;
    uint32_t cid;
    uint32_t parent_cid;        /* VMDK_NO_PARENT_CID when absent */
    char create_type[64];
    char *parent_hint;          /* parentFileNameHint, or NULL */
    struct vmdk_desc_extent *ext;
    size_t n_ext;
    size_t ext_alloc;
};

/*
 * Parse descriptor text buf[0..len) into d (which it initialises; free
 * with vmdk_desc_release() whatever the result).  Text ends at the first
 * NUL (an embedded descriptor is NUL padded); only NULs may follow it.
 * Refuses (DF_CORRUPT, naming `what` and the line) text over
 * VMDK_DESC_MAX, lines over VMDK_LINE_MAX, more than VMDK_MAX_EXTENTS
 * extents, a line that is neither comment, key=value nor extent, a
 * repeated or malformed version/CID/parentCID/createType/
 * parentFileNameHint, and a missing version or createType.
 * With need_extents, a descriptor without extent lines is refused too.
 */
int vmdk_desc_parse(const char *buf, size_t len, const char *what,
                    bool need_extents, struct vmdk_desc *d,
                    struct df_error *err);
void vmdk_desc_release(struct vmdk_desc *d);
const char *vmdk_type_name(enum vmdk_type t);

/* How an extent stores its sectors. */
enum vmdk_kind {
    VMDK_K_FLAT,                /* bytes at file_off of file */
    VMDK_K_ZERO,                /* no file, reads zeros */
    VMDK_K_KDMV,                /* hosted sparse, maybe compressed */
    VMDK_K_COWD,                /* vmfsSparse delta */
    VMDK_K_SESPARSE,
};

struct vmdk_extent {
    enum vmdk_kind kind;
    uint64_t vstart;            /* first byte in the virtual disk */
    uint64_t vlen;              /* bytes */
    struct df_file *file;       /* NULL for ZERO; owned by the image */
    uint64_t file_off;          /* FLAT: byte offset of sector 0 */

    /* Sparse kinds, filled by vmdk_sparse_open(). */
    uint64_t capacity;          /* sectors, from the extent's header */
    uint64_t grain_bytes;
    uint32_t gt_entries;        /* entries per grain table */
    uint32_t gte_size;          /* 4 (KDMV, COWD) or 8 (seSparse) */
    uint64_t gd_entries;
    uint64_t *gd;               /* byte offset of each GT, 0 = none */
    bool zeroed_grains;         /* KDMV flags bit 2: GTE 1 = zeros */
    bool compressed;            /* KDMV flags bit 16, deflate grains */
    uint64_t se_grains_off;     /* seSparse: byte offset of grain 0 */
    /* What no grain table or grain may overlap: the header, the
     * embedded descriptor, the grain directory (byte offset, length). */
    uint64_t meta[3][2];
};

/*
 * Bounded cache of grain tables, shared by all extents of an image and
 * by the threads reading it: under `lock`, held only to find (or read)
 * a GT and copy out the entries a lookup needs (vmdk_sparse_grains), so
 * a slot is never in use when it is evicted.
 */
#define VMDK_GT_CACHE_SLOTS 64
struct vmdk_gt_slot {
    uint8_t *buf;
    const struct vmdk_extent *ext;
    uint64_t gti;
    uint64_t stamp;
};
struct vmdk_gt_cache {
    pthread_mutex_t lock;
    bool lock_ready;
    struct vmdk_gt_slot slot[VMDK_GT_CACHE_SLOTS];
    size_t buf_size;            /* bytes per slot (largest GT) */
    uint64_t clock;
    struct vmdk_gt_slot *last;  /* most recent hit: map walks one GT */
};

/*
 * A reader's inflate state for compressed (streamOptimized) grains: one
 * per thread reading at once (an image's ctx_pool, util/pool.h), so no
 * lock covers it.  Buffers grow to what the grains need.
 */
struct vmdk_gctx {
    void *zs;                   /* z_stream *, lazily */
    uint8_t *buf;               /* the last grain inflated in pieces */
    size_t cap;
    const struct vmdk_extent *ext;
    uint64_t grain;             /* buf holds it when ext != NULL */
    uint8_t *cbuf;              /* one grain's compressed bytes */
    size_t ccap;
    uint8_t *span;              /* the bytes of a batch of grains */
    size_t span_len;
};

/*
 * Is this the start of a binary extent?  Returns its kind (KDMV, COWD,
 * SESPARSE) or VMDK_K_FLAT for none.  head holds len bytes.
 */
enum vmdk_kind vmdk_sparse_kind(const uint8_t *head, size_t len);

/* What a binary extent's header says beyond its mapping. */
struct vmdk_sparse_meta {
    uint64_t desc_off;          /* KDMV embedded descriptor, bytes; */
    uint64_t desc_len;          /* 0 when none */
    char parent[1024 + 1];      /* COWD parentFileName, or "" */
};

/*
 * Validate the header of binary extent `e` (e->kind and e->file set) and
 * load its grain directory, every GT offset bounds-checked against the
 * file.  *total_gd counts GD bytes across an image's extents, refused
 * past a ceiling.  Errors name e->file.
 */
int vmdk_sparse_open(struct vmdk_extent *e, struct vmdk_sparse_meta *meta,
                     uint64_t *total_gd, struct df_error *err);

/* Where one grain (or a run of grains of a missing GT) lives. */
struct vmdk_grain {
    enum extent_state state;    /* EXT_DATA, EXT_ZERO or EXT_PARENT */
    uint64_t host;              /* EXT_DATA: byte offset of the grain (of
                                 * its marker when compressed) */
    uint64_t n;                 /* grains: 1, or the rest of a missing
                                 * GT (EXT_PARENT) */
};
#define VMDK_GRAINS_MAX 256     /* entries one lookup fills at most */

/*
 * Where grains g, g+1, ... of sparse extent e live: out[] (at most cap
 * entries, VMDK_GRAINS_MAX) covers at most `want` grains, none past the
 * GT holding g.  The GT's entries are copied out under c->lock and
 * checked (every offset against the file size) with no lock held.
 * Returns how many entries were filled; the lookup of the grain after
 * them failed when err is set (the caller passes a clean one).
 */
size_t vmdk_sparse_grains(struct vmdk_gt_cache *c,
                          const struct vmdk_extent *e, uint64_t g,
                          uint64_t want, struct vmdk_grain *out, size_t cap,
                          struct df_error *err);

/* The span of file bytes one batch of compressed grains of e may take. */
uint64_t vmdk_sparse_span_cap(const struct vmdk_extent *e);

/*
 * Compressed grains read together: grains whose markers lie close
 * together and ascending in one extent's file are fetched with one
 * pread into gc->span, then inflated in order, a whole grain straight
 * into place.  Pieces are queued in the order of the virtual disk; gc
 * is the caller's (from the pool) for the whole batch.
 */
#define VMDK_ZBATCH 64
struct vmdk_zbatch {
    struct vmdk_gctx *gc;
    const struct vmdk_extent *e;
    unsigned nz;
    uint64_t lo, hi, last;      /* file bytes [lo, hi); last marker */
    struct vmdk_zpiece {
        uint8_t *dst;
        uint64_t g;
        uint64_t host;
        size_t in, n;           /* bytes [in, in+n) of the grain */
    } z[VMDK_ZBATCH];
};
/* Queue bytes [in, in+n) of grain g (marker at host) for dst. */
int vmdk_zbatch_add(struct vmdk_zbatch *b, const struct vmdk_extent *e,
                    uint64_t g, uint64_t host, uint8_t *dst, size_t in,
                    size_t n, struct df_error *err);
/* Read and inflate what is queued (empty after, even on failure). */
int vmdk_zbatch_flush(struct vmdk_zbatch *b, struct df_error *err);

void vmdk_gt_cache_init(struct vmdk_gt_cache *c);
void vmdk_gt_cache_release(struct vmdk_gt_cache *c);
void *vmdk_gctx_new(void *arg);
void vmdk_gctx_free(void *ctx);

#endif
