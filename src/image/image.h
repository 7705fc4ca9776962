/*
 * image.h: the image driver interface and the calls the rest of
 * diskferry makes on an image.
 *
 * One driver per format (raw.c, qcow2.c, vmdk.c, vdi.c, vhd.c, vhdx.c)
 * fills a const struct image_driver; image.c probes, allocates the
 * driver's private state, checks each request before the driver sees it
 * and each answer after; chain.c layers a child on its parents.
 *
 * Contract between image.c and a driver:
 *  1. open() runs the driver's whole validation ladder: after it returns
 *     0, img->size is set and every offset the driver will follow has
 *     been or will be bounds-checked before use.  Nothing is written
 *     anywhere before open() succeeded on every chain member.
 *  2. map(off, len) describes [off, off+len) of THIS layer: extents in
 *     ascending order, contiguous, starting at off.  It may stop early
 *     (the list cap, or a driver-chosen limit) but must describe at
 *     least one byte; image.c loops.  Where the layer defers to its
 *     parent it says EXT_PARENT, never EXT_ZERO.  Without a parent the
 *     driver may still say EXT_PARENT: image.c turns it into EXT_HOLE.
 *  3. read(buf, len, off) fills [off, off+len) of THIS layer: data as
 *     stored; EXT_ZERO/EXT_HOLE ranges as zeros.  image.c never asks a
 *     driver to read a range it mapped EXT_PARENT while a parent exists
 *     (it splits the request by map() first).
 *  4. image.c clamps every request to [0, img->size) and serialises
 *     calls on one image with img->lock unless the driver sets
 *     IMG_THREAD_SAFE.  That covers every slot, write/zero/flush/
 *     set_size too: a thread-safe driver that writes serialises its
 *     writes itself (qcow2: an rwlock, reads shared).
 *  5. write/zero are called with offsets ascending when the driver sets
 *     IMG_SEQUENTIAL_WRITE (the qcow2 writer): the engine's sinks
 *     deliver in order.
 */
#ifndef DF_IMAGE_H
#define DF_IMAGE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"
#include "util/file.h"

struct image;

/* Options for a new image (-O FMT, -c). */
struct image_create_opts {
    bool compress;              /* compress data (qcow2: zstd clusters) */
    unsigned cluster_bits;      /* 0 = the format's default */
};

/* What probe() sees: the first and last bytes of the file. */
struct image_probe {
    const uint8_t *head;    /* up to IMAGE_PROBE_HEAD bytes from 0 */
    size_t head_len;
    const uint8_t *tail;    /* up to IMAGE_PROBE_TAIL bytes before EOF */
    size_t tail_len;
    uint64_t file_size;
};
#define IMAGE_PROBE_HEAD (64 * 1024)
#define IMAGE_PROBE_TAIL (64 * 1024)

enum image_caps {
    IMG_CAN_WRITE = 1u << 0,        /* write/zero/flush work */
    IMG_CAN_CREATE = 1u << 1,       /* create() makes a new image */
    IMG_THREAD_SAFE = 1u << 2,      /* map/read may run concurrently */
    IMG_SEQUENTIAL_WRITE = 1u << 3, /* writes must come in offset order */
    IMG_CAN_COMPRESS = 1u << 4,     /* create() honours copts->compress */
    IMG_SIZE_AT_END = 1u << 5,      /* set_size(): made for a stream */
};

struct image_driver {
    const char *name;       /* "qcow2": -f/-O value, messages */
    size_t priv_size;       /* per-image state image.c allocates (zeroed) */
    unsigned caps;

    /* 0 = not mine .. 100 = certain.  Must not read beyond p. */
    int (*probe)(const struct image_probe *p);
    /*
     * Validate all metadata (contract 1).  img->file is open; fill
     * img->size, and img->parent_name when the image records a parent
     * by path (img->parent_by_id when only by an identifier), and
     * img->layer_id / img->parent_id where the format has them.
     */
    int (*open)(struct image *img, struct df_error *err);
    /* Contract 2. */
    int (*map)(struct image *img, uint64_t off, uint64_t len,
               struct extent_list *out, struct df_error *err);
    /* Contract 3. */
    int (*read)(struct image *img, void *buf, size_t len, uint64_t off,
                struct df_error *err);
    /* IMG_CAN_WRITE: store data / make a range read as zeros. */
    int (*write)(struct image *img, const void *buf, size_t len,
                 uint64_t off, struct df_error *err);
    int (*zero)(struct image *img, uint64_t off, uint64_t len,
                struct df_error *err);
    /* Write out buffered data and metadata (no fsync: image_flush does
     * that when asked for durability).  NULL = nothing buffered. */
    int (*flush)(struct image *img, struct df_error *err);
    /* IMG_CAN_CREATE: img->file is a new, empty, writable file; copts
     * is never NULL. */
    int (*create)(struct image *img, uint64_t size,
                  const struct image_create_opts *copts,
                  struct df_error *err);
    /*
     * IMG_CAN_CREATE: the virtual size of an image this handle created
     * becomes `size`, at most the size create() was given (a stream's
     * end: the image was made for the most a stream may hold).
     */
    int (*set_size)(struct image *img, uint64_t size, struct df_error *err);
    /*
     * Is `parent` the image `child` was made on?  Compare identity
     * fields (CID, UUID, unique id, timestamps) and fail with
     * DF_CORRUPT naming both files and the field.  NULL: no identity
     * recorded (image.c checks sizes for every format).  Return -1 when
     * `parent` is not the image the child names, -2 when it is (its
     * identifier matches) but a later check fails (modified since,
     * other size): an identifier search then reports that error
     * instead of "not found".
     */
    int (*check_parent)(struct image *child, struct image *parent,
                        struct df_error *err);
    /*
     * Optional: is [off, off+len) of this layer stored as it reads, one
     * contiguous stretch of img->file?  1 with *file_off the offset of
     * off's byte there; 0 when not (compressed, zero, unallocated, a
     * parent's, in several places); -1 with err.  The engine then scans
     * those bytes through a view of the file's pages and may have the
     * kernel copy them (engine/pipeline.c invariant 6).  NULL: never.
     */
    int (*host_run)(struct image *img, uint64_t off, uint64_t len,
                    uint64_t *file_off, struct df_error *err);
    /* Free priv's contents and any files the driver opened. */
    void (*close)(struct image *img);
};

/* Identity and layout facts a driver wants `info` to show. */
#define IMAGE_MAX_PROPS 16
struct image_prop {
    char key[32];
    char val[128];
};

/* Sizes of struct image's identity strings: parent_id also holds a
 * qcow2 backing file name (at most 1023 bytes). */
#define IMAGE_LAYER_ID_MAX 160
#define IMAGE_PARENT_ID_MAX (IMAGE_LAYER_ID_MAX + 1024)

struct image {
    const struct image_driver *drv;
    void *priv;
    struct df_file file;        /* the image's own file */
    /* The options of the open under way: set for drv->open only (NULL
     * before and after). */
    const struct image_open_opts *open_opts;
    char name[PATH_MAX];        /* as named by the user or the chain */
    char path[PATH_MAX];        /* the path opened (relative names resolve
                                   against its directory) */
    uint64_t size;              /* virtual size in bytes */
    bool writable;
    /*
     * The command line named this image's format (-f), or it is a parent
     * in a chain whose top's format -f named.  A probed image (false)
     * never opens a file the command line did not name: its parents come
     * only from --parent / --parent-dir, and a VMDK descriptor's extents
     * only from its own directory (see image_open_opts).
     */
    bool format_named;
    /* inspect only: what a guest-controlled probe held back, "" = none */
    char probe_note[256];

    /* The parent as recorded in this image (set by open). */
    char parent_name[PATH_MAX]; /* "" = none recorded by path */
    bool parent_by_id;          /* recorded only by identifier (VDI) */
    bool has_parent_ref;        /* the image is a child layer */
    /*
     * Identities, set by open (both "" when the format has none):
     * layer_id is this layer as a child of it would name it, parent_id
     * the parent as this child names it, in the same text, so that
     * strcmp(child->parent_id, parent->layer_id) == 0 when the child
     * was made on that parent and the parent has not changed since
     * (as far as the format's identity tells: see each form).
     *   vmdk  "vmdk CID %08x": the descriptor's CID / parentCID
     *         (parentCID ffffffff, or no descriptor: no parent_id).
     *         Writers change the CID on the first write after opening.
     *   vhd   "vhd uuid <uuid>": the footer's unique id / the dynamic
     *         header's parent unique id.  Writes do not change it.
     *   vhdx  "vhdx <guid>": the header's DataWriteGuid / the locator's
     *         parent_linkage (parent_linkage2, rarely written, is not
     *         in parent_id).  Changes whenever the disk's data does.
     *   vdi   "vdi <uuidCreate> <uuidModify>" / "vdi <uuidLinkage>
     *         <uuidParentModify>".  uuidModify changes on writes.
     *   qcow2 no layer_id (a qcow2 records no identity of its own);
     *         parent_id "qcow2 backing <name>": the backing file name as
     *         recorded ("file:" prefix dropped, as parent_name), so a
     *         qcow2 overlay's parent is proved by name only.
     *   raw, nbd: none.
     */
    char layer_id[IMAGE_LAYER_ID_MAX];
    char parent_id[IMAGE_PARENT_ID_MAX];
    /* Set by chain.c when it opened the parent. */
    struct image *parent;
    char parent_how[24];        /* "recorded", "--parent-dir", "--parent" */
    unsigned depth;             /* 0 for the top layer */

    /* Other files this layer reads (VMDK extent files), set by the
     * driver's open and owned by it: the source safety check looks at
     * each (safety.h). */
    const struct df_file *aux_files;
    size_t n_aux_files;

    struct image_prop props[IMAGE_MAX_PROPS];
    unsigned nprops;

    pthread_mutex_t lock;       /* contract 4 */
};

/* How to open an image and complete its chain. */
struct parent_override {
    const char *child;          /* file name or path of the child layer */
    const char *parent;         /* path to use as its parent */
};
/*
 * Probing is never guest-controlled.  Without `format`:
 *  - a block device is read as raw; one whose first or last bytes carry
 *    an image signature is refused (DF_CORRUPT) asking for -f FMT or
 *    -f raw;
 *  - a probed image that records a parent opens it only where the
 *    command line says (--parent, --parent-dir), never at the path or
 *    identifier the image records: without them it is refused asking
 *    for -f FMT (follow the chain) or -f raw (its bytes);
 *  - a probed VMDK descriptor opens extents only inside its directory.
 * With `inspect` (info) the first two open what is safe instead of
 * refusing (the device as raw, the child without its parents) and say
 * what was held back in img->probe_note.
 */
struct image_open_opts {
    const char *format;         /* -f FMT, NULL = probe */
    bool writable;
    bool no_parents;            /* open only this layer */
    bool inspect;               /* info: see the comment above */
    bool named_chain;           /* chain.c: a parent in a chain whose
                                   top's format was named (probed, and
                                   trusted as the top's -f says) */
    const char *const *parent_dirs;     /* --parent-dir, repeatable */
    size_t n_parent_dirs;
    const struct parent_override *parent_overrides;   /* --parent */
    size_t n_parent_overrides;
    /* nbd: also ask for the meta context qemu:dirty-bitmap:NAME on every
     * connection (nbd.h); NULL = none */
    const char *nbd_bitmap;
};

/* Record a property for `info` (silently dropped past IMAGE_MAX_PROPS). */
void image_set_prop(struct image *img, const char *key, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));
const char *image_get_prop(const struct image *img, const char *key);

/* The drivers image.c knows, in probe order; NULL-terminated. */
extern const struct image_driver *const image_drivers[];
const struct image_driver *image_driver_by_name(const char *name);
/* The format an open image was read as ("qcow2"; a chain: its top). */
const char *image_format_name(const struct image *img);
/* The IMG_* capabilities of an open image's format. */
unsigned image_caps(const struct image *img);
/* The capabilities of the format called name (qemu-img's names too), or
 * -1 if diskferry does not know it: what -O and -f ask before opening. */
int image_format_caps(const char *name, unsigned *caps);

/*
 * Open `path` and, unless opts->no_parents, its whole chain (chain.c).
 * On failure *out is NULL and err says which member and why.
 */
int image_open(const char *path, const struct image_open_opts *opts,
               struct image **out, struct df_error *err);
/* Open a single layer over an already-open file (takes f's contents). */
int image_open_file(struct df_file *f, const char *name, const char *path,
                    const struct image_open_opts *opts, struct image **out,
                    struct df_error *err);
/* Open an image that has no local file (img->file stays closed: an
 * NBD export): drv's open() reaches it by name (img->path). */
int image_open_nofile(const struct image_driver *drv, const char *name,
                      const struct image_open_opts *opts, struct image **out,
                      struct df_error *err);
/* Create a new image of `format` at path (O_EXCL); copts may be NULL.
 * A file that exists is refused (DF_REFUSED) and left alone. */
int image_create(const char *path, const char *format, uint64_t size,
                 const struct image_create_opts *copts, struct image **out,
                 struct df_error *err);
/* The same in the directory dirfd (only path's last component is used
 * there; the whole names it in messages), O_NOFOLLOW. */
int image_create_at(int dirfd, const char *path, const char *format,
                    uint64_t size, const struct image_create_opts *copts,
                    struct image **out, struct df_error *err);
/* Close the image and its parents.  NULL is a no-op. */
void image_close(struct image *img);

/*
 * Probe the file's content: the driver that claims it, or NULL for raw
 * content; *unsupported is set to the name of a recognised container
 * diskferry does not read (QED, Parallels, ...) or NULL.
 */
const struct image_driver *image_probe_file(struct df_file *f,
                                            const char **unsupported,
                                            struct df_error *err);

/*
 * The format named by the first len bytes of something that has no end
 * to look at (a stream): a driver's name, a recognised container's
 * (foreign.h), or NULL for raw content.  Formats recognised only by
 * their end (a fixed VHD, DMG) are not seen.
 */
const char *image_probe_head(const uint8_t *head, size_t len);

/*
 * What a copy writes into the existing destination f: the format *fmt
 * (-O out_format, or NULL) and whether the file is replaced whole by a
 * new file of that format (*replace) instead of written in place as
 * raw.  A regular file holding an image container keeps its format
 * when -O is absent (refused, DF_USAGE, when diskferry cannot create
 * that format); any -O other than raw replaces the file.  A block
 * device is never probed and is written raw (-O qcow2 is DF_USAGE).
 */
int image_dest_plan(struct df_file *f, const char *out_format,
                    const char **fmt, bool *replace, struct df_error *err);
/*
 * Map [off, off+len) through the whole chain: EXT_DATA, EXT_ZERO or
 * EXT_HOLE only (parents resolved; beyond a shorter parent reads as
 * EXT_HOLE).  Appends to out until len is covered or out is at its cap.
 */
int image_map(struct image *img, uint64_t off, uint64_t len,
              struct extent_list *out, struct df_error *err);
/* Map only this layer (EXT_PARENT kept): change sources use this. */
int image_map_layer(struct image *img, uint64_t off, uint64_t len,
                    struct extent_list *out, struct df_error *err);
/* Read through the chain. */
int image_read(struct image *img, void *buf, size_t len, uint64_t off,
               struct df_error *err);
/*
 * The driver's host_run (image_driver), for a range inside the image: a
 * raw image's own bytes are at their offset.  1, 0 or -1 as there; 0
 * for an image whose file is not a regular file read through the page
 * cache (nothing to view).
 */
int image_host_run(struct image *img, uint64_t off, uint64_t len,
                   uint64_t *file_off, struct df_error *err);
/* Can image_host_run() ever answer 1 for img? */
bool image_has_host_runs(const struct image *img);
int image_write(struct image *img, const void *buf, size_t len, uint64_t off,
                struct df_error *err);
int image_zero(struct image *img, uint64_t off, uint64_t len,
               struct df_error *err);
/* Write out what the driver buffers; with durable, also fsync the file
 * (reporting write-back errors). */
int image_flush(struct image *img, bool durable, struct df_error *err);
/* The most a stream may write into an image made before its size is
 * known (IMG_SIZE_AT_END): create() gets this, set_size() the real one. */
#define IMAGE_STREAM_MAX_SIZE (16ull << 40)
/* A created image's final virtual size (driver set_size). */
int image_set_size(struct image *img, uint64_t size, struct df_error *err);

/*
 * Open a file named inside an image (a VMDK extent, a parent):
 * relative names resolve against the directory of img->path.  Fails for
 * images held in memory.  resolved (may be NULL) receives the path.
 */
int image_open_related(struct image *img, const char *rel, int flags,
                       struct df_file *f, char *resolved, size_t rlen,
                       struct df_error *err);

/* Bytes the image occupies on its storage (st_blocks, or size). */
uint64_t image_allocated_bytes(const struct image *img);

#endif
