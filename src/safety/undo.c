/*
 * undo.c: the undo journal (--undo FILE) and `diskferry undo FILE`.
 *
 * While a job writes a destination, the journal keeps the old contents
 * of every range it overwrites; `undo` puts them back.  The writer is a
 * sink wrapper (undo_sink_wrap): the engine's writes pass through it to
 * the real sink.
 *
 * Layout (integers little endian; UNDO_HDR_LEN bytes of header, then
 * records back to back):
 *
 *   header  0    8  magic "DFUNDO\r\n"
 *           8    4  version (1)
 *           12   4  header length (512)
 *           16   8  destination size before the job, bytes
 *           24   8  id_len = min(size, 1 MiB)
 *           32  32  SHA-256 of the destination's first id_len bytes
 *                   before the job
 *           64  16  journal uuid (random)
 *           80   8  created, seconds since the epoch
 *           88  16  image format of the destination ("raw"), NUL padded
 *           104  4  flags: bit 0 = the destination was a regular file
 *           108  4  length of the recorded path (0: none)
 *           112 384 absolute destination path, NUL padded
 *           496 16  XXH3-128 of bytes 0..495
 *   record  0    4  magic "DFUR"
 *           4    4  type: 1 DATA (payload: the old bytes of the range)
 *                         2 ZERO (the old bytes were all zero; no payload)
 *                         3 END  (the job finished what came before;
 *                                 no range.  A sink may be finished
 *                                 more than once (serve does it every
 *                                 second to commit its resume journal),
 *                                 so records may follow an END: the
 *                                 journal is complete when its last
 *                                 record is an END)
 *                         4 NEW  (payload: the bytes the job writes
 *                                 over a range of the first id_len
 *                                 bytes; written just before its DATA
 *                                 or ZERO record)
 *           8    8  offset in the destination
 *           16   8  length of the range (1..1 MiB; 0 for END)
 *           24   8  sequence number: 0, 1, 2, ...
 *           32  16  journal uuid (as in the header)
 *           48  16  XXH3-128 of bytes 0..47 of the record, then payload
 *           64      payload (DATA, NEW: `length` bytes)
 *
 * Invariants (cited by number below):
 *  1. The header is written and fsynced, and so is the journal's
 *     directory entry, before any record is appended (and so before any
 *     byte of the destination is written).
 *  2. A record holds the destination's contents of its range as they
 *     were before the job wrote any byte of it.  The engine's writes
 *     never overlap (sink.h contract 1), so each byte is journaled at
 *     most once, and it is read before it is forwarded.
 *  3. A write or zero of the destination is forwarded only after every
 *     record covering it has been written and the journal fdatasync'ed.
 *     Ranges whose old bytes equal the new ones (or are zero and being
 *     zeroed) need no record: writing them changes nothing.
 *  4. Records have consecutive sequence numbers.  Replay stops at the
 *     first record that is short, has a bad magic, type, uuid, sequence,
 *     range or checksum: that record and everything after it belong to a
 *     batch whose fdatasync never returned, so by 3 none of their
 *     destination writes were issued; ignoring them loses nothing.
 *  5. Records cover only [0, size before the job).  A regular file that
 *     grew is cut back to that size by undo; a block device cannot grow.
 *  6. Undo writes old contents only, replaying records newest first, so
 *     the result is the pre-job content whatever was written in between,
 *     and running undo again (after an interrupted undo) gives the same
 *     result.  The journal is never modified by undo.
 *  7. The destination matches the journal when its size is the recorded
 *     size (a regular file: at least that), its first id_len bytes with
 *     the old contents laid over them hash to the header's SHA-256, and
 *     each 4 KiB sector of them that a record covers holds either its
 *     old bytes or the job's new bytes (NEW records): true after the
 *     job, after an interrupted job (a torn data write leaves each page
 *     old or new), after a partial undo and after a full one (by 2, 3,
 *     6); false for a disk that was reformatted or swapped since, even
 *     when the job overwrote all of the first MiB.  Undo refuses
 *     otherwise.
 *
 * States of a journal:
 *
 *   (none) --create O_EXCL, header, fsync (1)--> OPEN
 *   OPEN --batch: records, fdatasync, then writes (3)--> OPEN
 *   OPEN --job done: END record, fdatasync--> COMPLETE
 *   OPEN --kill -9 / crash--> INTERRUPTED (torn tail, 4)
 *   OPEN | INTERRUPTED | COMPLETE --undo: check (7), replay (6)--> same
 *                                   state, destination restored
 *
 * Hostile journals: every field is checked before use (range inside
 * the recorded size, length <= UNDO_REC_MAX, payload inside the file);
 * buffers are UNDO_REC_MAX, the record index grows with the records
 * actually found (each takes at least UNDO_REC_HDR journal bytes).
 *
 * Test hook (built only with meson -Dtesting=true, as `make check`
 * does): DF_TEST_UNDO_KILL_AFTER=N makes the writer raise SIGKILL
 * right after forwarding its Nth write or zero, to test invariants 3-4
 * with a real kill -9 at a known point (tests/e2e/test_undo.py).
 */
#define _GNU_SOURCE
#include "safety/safety_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "util/bytes.h"
#include "util/hash.h"
#include "util/overflow.h"
#include "util/size.h"
#include "util/zero.h"

#define UNDO_MAGIC "DFUNDO\r\n"
#define UNDO_VERSION 1
#define UNDO_HDR_LEN 512
#define UNDO_OFF_MAGIC 0
#define UNDO_OFF_VERSION 8
#define UNDO_OFF_HDR_LEN 12
#define UNDO_OFF_SIZE 16
#define UNDO_OFF_ID_LEN 24
#define UNDO_OFF_ID_SHA 32
#define UNDO_OFF_UUID 64
#define UNDO_OFF_CTIME 80
#define UNDO_OFF_FORMAT 88
#define UNDO_FORMAT_LEN 16
#define UNDO_OFF_FLAGS 104
#define UNDO_OFF_PATH_LEN 108
#define UNDO_OFF_PATH 112
#define UNDO_PATH_MAX 384
#define UNDO_OFF_HDR_SUM 496
#define UNDO_FLAG_REGULAR 1u
#define UNDO_ID_MAX (1024 * 1024)

#define UNDO_REC_MAGIC "DFUR"
#define UNDO_REC_HDR 64
#define UNDO_ROFF_TYPE 4
#define UNDO_ROFF_OFFSET 8
#define UNDO_ROFF_LEN 16
#define UNDO_ROFF_SEQ 24
#define UNDO_ROFF_UUID 32
#define UNDO_ROFF_SUM 48
#define UNDO_REC_DATA 1
#define UNDO_REC_ZERO 2
#define UNDO_REC_END 3
#define UNDO_REC_NEW 4
#define UNDO_SECTOR 4096
#define UNDO_REC_MAX (1024 * 1024)
/* Old contents are compared and classified in blocks of this size. */
#define UNDO_BLOCK (64 * 1024)
/* A batch: this many bytes or ops of the engine's writes share one
 * journal fdatasync (invariant 3). */
#define UNDO_BATCH_BYTES (8u * 1024 * 1024)
#define UNDO_BATCH_OPS 64

/* Fuzzing builds skip checksum checks so the fuzzer reaches the fields
 * behind them (the libFuzzer convention); everywhere else they hold. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define UNDO_FUZZING 1
#else
#define UNDO_FUZZING 0
#endif

struct undo_hdr {
    uint64_t size;
    uint64_t id_len;
    uint8_t id_sha[32];
    uint8_t uuid[16];
    char format[UNDO_FORMAT_LEN + 1];
    uint32_t flags;
    char path[UNDO_PATH_MAX + 1];
};

static void undo_sum(const uint8_t *head, size_t hlen, const uint8_t *payload,
                     size_t plen, uint8_t *out)
{
    XXH3_state_t st;
    XXH128_canonical_t c;
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, head, hlen);
    if (plen)
        XXH3_128bits_update(&st, payload, plen);
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
    memcpy(out, c.digest, 16);
}

/* Full pwrite or DF_IO. */
static int undo_pwrite(int fd, const char *name, const void *buf, size_t len,
                       uint64_t off, struct df_error *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return df_io(err, name, r < 0 ? errno : ENOSPC,
                         "cannot write the undo journal");
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The writer: a sink wrapper.                                         */

struct undo_op {
    uint64_t off, len;
    uint8_t *data;          /* a copy of the engine's buffer; NULL: zero */
};

struct undo_sink {
    struct sink *inner;
    struct image *dst;
    int jfd;
    char jpath[PATH_MAX];
    uint8_t uuid[16];
    uint64_t orig_size;
    uint64_t seq;
    uint64_t jend;          /* journal bytes written */
    bool unsynced;          /* records written since the last fdatasync */
    struct undo_op ops[UNDO_BATCH_OPS];
    size_t nops;
    uint64_t batch_bytes;
    uint8_t *old;           /* UNDO_REC_MAX: old contents being saved */
    uint8_t *zeros;         /* UNDO_ID_MAX: NEW payload of a zero op */
    uint64_t id_len;        /* min(orig_size, UNDO_ID_MAX) */
    uint64_t forwarded;     /* ops forwarded to inner */
    uint64_t kill_after;    /* test hook, 0 = off (undo_sink_wrap) */
};

static int undo_emit(struct undo_sink *u, uint32_t type, uint64_t off,
                     uint64_t len, const uint8_t *payload,
                     struct df_error *err)
{
    uint8_t h[UNDO_REC_HDR] = { 0 };
    size_t plen = type == UNDO_REC_DATA || type == UNDO_REC_NEW ? (size_t)len
                                                                : 0;
    memcpy(h, UNDO_REC_MAGIC, 4);
    put_le32(h + UNDO_ROFF_TYPE, type);
    put_le64(h + UNDO_ROFF_OFFSET, off);
    put_le64(h + UNDO_ROFF_LEN, len);
    put_le64(h + UNDO_ROFF_SEQ, u->seq);
    memcpy(h + UNDO_ROFF_UUID, u->uuid, 16);
    undo_sum(h, UNDO_ROFF_SUM, payload, plen, h + UNDO_ROFF_SUM);
    if (undo_pwrite(u->jfd, u->jpath, h, sizeof(h), u->jend, err) < 0)
        return -1;
    if (plen && undo_pwrite(u->jfd, u->jpath, payload, plen,
                            u->jend + UNDO_REC_HDR, err) < 0)
        return -1;
    u->jend += UNDO_REC_HDR + plen;
    u->seq++;
    u->unsynced = true;
    return 0;
}

enum undo_class { UNDO_SKIP, UNDO_ZERO, UNDO_DATA };

/* A block needs no record when writing it changes nothing. */
static enum undo_class undo_classify(const uint8_t *old, const uint8_t *new,
                                     size_t len)
{
    bool ozero = zero_is_zero(old, len);
    if (new ? !memcmp(old, new, len) : ozero)
        return UNDO_SKIP;
    return ozero ? UNDO_ZERO : UNDO_DATA;
}

/* Emit one run; in the first id_len bytes, its NEW record first. */
static int undo_emit_run(struct undo_sink *u, enum undo_class cls,
                         uint64_t off, uint64_t len, const uint8_t *old,
                         const uint8_t *new, struct df_error *err)
{
    if (cls == UNDO_SKIP || len == 0)
        return 0;
    if (off < u->id_len) {
        uint64_t n = u->id_len - off < len ? u->id_len - off : len;
        const uint8_t *p = new;
        if (!p) {
            memset(u->zeros, 0, (size_t)n);
            p = u->zeros;
        }
        if (undo_emit(u, UNDO_REC_NEW, off, n, p, err) < 0)
            return -1;
    }
    return undo_emit(u, cls == UNDO_ZERO ? UNDO_REC_ZERO : UNDO_REC_DATA,
                     off, len, old, err);
}

/*
 * Save the old contents of [off, off+len) (invariant 2), clipped to the
 * original size (invariant 5).  new_data: what will be written there,
 * or NULL for a zero.  Unchanged blocks are not saved (invariant 3).
 */
static int undo_save_range(struct undo_sink *u, uint64_t off, uint64_t len,
                           const uint8_t *new_data, struct df_error *err)
{
    uint64_t end = off + len;
    if (end > u->orig_size)
        end = u->orig_size;
    for (uint64_t pos = off; pos < end;) {
        size_t chunk = end - pos < UNDO_REC_MAX ? (size_t)(end - pos)
                                                : UNDO_REC_MAX;
        if (image_read(u->dst, u->old, chunk, pos, err) < 0)
            return -1;
        /* Classify each block, emit each run of one class. */
#define NEW_AT(b) (new_data ? new_data + (pos - off) + (b) : NULL)
        size_t run = 0;
        enum undo_class run_cls = UNDO_SKIP;
        for (size_t b = 0; b < chunk;) {
            size_t blen = chunk - b < UNDO_BLOCK ? chunk - b : UNDO_BLOCK;
            enum undo_class cls = undo_classify(u->old + b, NEW_AT(b), blen);
            if (cls != run_cls) {
                if (undo_emit_run(u, run_cls, pos + run, b - run,
                                  u->old + run, NEW_AT(run), err) < 0)
                    return -1;
                run = b;
                run_cls = cls;
            }
            b += blen;
        }
        if (undo_emit_run(u, run_cls, pos + run, chunk - run, u->old + run,
                          NEW_AT(run), err) < 0)
            return -1;
#undef NEW_AT
        pos += chunk;
    }
    return 0;
}

static void undo_sync_counters(struct sink *s)
{
    struct undo_sink *u = s->priv;
    s->size = u->inner->size;
    s->bytes_written = u->inner->bytes_written;
    s->bytes_wire = u->inner->bytes_wire;
    s->bytes_zeroed = u->inner->bytes_zeroed;
}

static void undo_drop_batch(struct undo_sink *u)
{
    for (size_t i = 0; i < u->nops; i++)
        free(u->ops[i].data);
    u->nops = 0;
    u->batch_bytes = 0;
}

static int undo_forward(struct sink *s, const struct undo_op *op,
                        const uint8_t *data, struct df_error *err)
{
    struct undo_sink *u = s->priv;
    int r = data ? u->inner->ops->write(u->inner, op->off, data,
                                        (size_t)op->len, err)
                 : u->inner->ops->zero(u->inner, op->off, op->len, err);
    undo_sync_counters(s);
    u->forwarded++;
#ifdef DF_TESTING
    /* Test hook: die like kill -9 mid-job, after the Nth forwarded op,
     * to prove invariants 3-4 (tests/e2e/test_undo.py). */
    if (u->kill_after && u->forwarded >= u->kill_after)
        raise(SIGKILL);
#endif
    return r;
}

/* Journal every queued op, make the journal durable, then forward the
 * ops (invariant 3). */
static int undo_flush_batch(struct sink *s, struct df_error *err)
{
    struct undo_sink *u = s->priv;
    int ret = -1;
    for (size_t i = 0; i < u->nops; i++)
        if (undo_save_range(u, u->ops[i].off, u->ops[i].len,
                            u->ops[i].data, err) < 0)
            goto out;
    if (u->unsynced && fdatasync(u->jfd) < 0) {
        df_io(err, u->jpath, errno, "cannot sync the undo journal");
        goto out;
    }
    u->unsynced = false;
    for (size_t i = 0; i < u->nops; i++)
        if (undo_forward(s, &u->ops[i], u->ops[i].data, err) < 0)
            goto out;
    ret = 0;
out:
    undo_drop_batch(u);
    return ret;
}

static int undo_queue(struct sink *s, uint64_t off, uint64_t len,
                      const void *buf, struct df_error *err)
{
    struct undo_sink *u = s->priv;
    uint64_t cost = buf ? len : 0;
    if (u->nops == UNDO_BATCH_OPS ||
        (u->nops && u->batch_bytes + cost > UNDO_BATCH_BYTES))
        if (undo_flush_batch(s, err) < 0)
            return -1;
    if (cost > UNDO_BATCH_BYTES) {
        /* Too big to copy: journal, sync and forward on its own. */
        struct undo_op op = { .off = off, .len = len, .data = NULL };
        if (undo_save_range(u, off, len, buf, err) < 0)
            return -1;
        if (u->unsynced && fdatasync(u->jfd) < 0)
            return df_io(err, u->jpath, errno,
                         "cannot sync the undo journal");
        u->unsynced = false;
        return undo_forward(s, &op, buf, err);
    }
    struct undo_op *op = &u->ops[u->nops];
    op->off = off;
    op->len = len;
    op->data = NULL;
    if (buf) {
        op->data = malloc((size_t)len);
        if (!op->data)
            return df_io(err, s->name, ENOMEM, "cannot queue a write");
        memcpy(op->data, buf, (size_t)len);
    }
    u->nops++;
    u->batch_bytes += cost;
    return 0;
}

static int undo_write(struct sink *s, uint64_t off, const void *buf,
                      size_t len, struct df_error *err)
{
    return undo_queue(s, off, len, buf, err);
}

static int undo_zero(struct sink *s, uint64_t off, uint64_t len,
                     struct df_error *err)
{
    struct undo_sink *u = s->priv;
    if (u->inner->dst_is_zero) {
        /* The inner sink does nothing: nothing changes, nothing to save,
         * but it may still count. */
        struct undo_op op = { .off = off, .len = len, .data = NULL };
        if (undo_flush_batch(s, err) < 0)
            return -1;
        return undo_forward(s, &op, NULL, err);
    }
    return undo_queue(s, off, len, NULL, err);
}

static int undo_finish(struct sink *s, struct df_error *err)
{
    struct undo_sink *u = s->priv;
    if (undo_flush_batch(s, err) < 0)
        return -1;
    u->inner->durable = s->durable;
    int r = u->inner->ops->finish(u->inner, err);
    undo_sync_counters(s);
    if (r < 0)
        return -1;
    if (undo_emit(u, UNDO_REC_END, 0, 0, NULL, err) < 0)
        return -1;
    if (fdatasync(u->jfd) < 0)
        return df_io(err, u->jpath, errno, "cannot sync the undo journal");
    u->unsynced = false;
    return 0;
}

static int undo_digest(struct sink *s, uint64_t size, enum digest_alg alg,
                       unsigned threads, struct digest *out,
                       struct df_error *err)
{
    struct undo_sink *u = s->priv;
    if (!u->inner->ops->digest)
        return df_fail(err, DF_USAGE, 0, s->name, -1,
                       "cannot be read back");
    u->inner->known = s->known;
    u->inner->fs = s->fs;
    u->inner->leaf_fn = s->leaf_fn;
    u->inner->leaf_ctx = s->leaf_ctx;
    return u->inner->ops->digest(u->inner, size, alg, threads, out, err);
}

static void undo_abort(struct sink *s)
{
    struct undo_sink *u = s->priv;
    /* Queued ops were never forwarded: their ranges are untouched. */
    undo_drop_batch(u);
    if (u->jfd >= 0)
        fdatasync(u->jfd);
    if (u->inner->ops->abort_job)
        u->inner->ops->abort_job(u->inner);
}

static void undo_free(struct sink *s)
{
    if (!s)
        return;
    struct undo_sink *u = s->priv;
    if (u) {
        undo_drop_batch(u);
        if (u->inner)
            u->inner->ops->free(u->inner);
        if (u->jfd >= 0)
            close(u->jfd);
        free(u->old);
        free(u->zeros);
        free(u);
    }
    free(s);
}

static const struct sink_ops undo_ops = {
    .name = "undo",
    .write = undo_write,
    .zero = undo_zero,
    .finish = undo_finish,
    .digest = undo_digest,
    .abort_job = undo_abort,
    .free = undo_free,
};

/* fsync the directory holding path, so a new file's name is durable. */
static int undo_sync_dir(const char *path, struct df_error *err)
{
    char dir[PATH_MAX];
    path_dirname(path, dir, sizeof(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return df_io(err, dir, errno, "cannot open the journal's directory");
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r < 0)
        return df_io(err, dir, e, "cannot sync the journal's directory");
    return 0;
}

/* Build and write the header (invariant 1). */
static int undo_write_header(struct undo_sink *u, const char *dst_path,
                             struct df_error *err)
{
    uint8_t h[UNDO_HDR_LEN] = { 0 };
    uint8_t *first = NULL;
    char real[PATH_MAX];
    uint64_t id_len = u->orig_size < UNDO_ID_MAX ? u->orig_size : UNDO_ID_MAX;
    int ret = -1;

    if (getrandom(u->uuid, sizeof(u->uuid), 0) != sizeof(u->uuid))
        return df_io(err, u->jpath, errno, "cannot make a journal uuid");
    first = malloc(id_len ? (size_t)id_len : 1);
    if (!first)
        return df_io(err, u->jpath, ENOMEM, "cannot start the journal");
    if (id_len && image_read(u->dst, first, (size_t)id_len, 0, err) < 0)
        goto out;
    memcpy(h + UNDO_OFF_MAGIC, UNDO_MAGIC, 8);
    put_le32(h + UNDO_OFF_VERSION, UNDO_VERSION);
    put_le32(h + UNDO_OFF_HDR_LEN, UNDO_HDR_LEN);
    put_le64(h + UNDO_OFF_SIZE, u->orig_size);
    put_le64(h + UNDO_OFF_ID_LEN, id_len);
    digest_buf(DIGEST_SHA256, first, (size_t)id_len, h + UNDO_OFF_ID_SHA);
    memcpy(h + UNDO_OFF_UUID, u->uuid, 16);
    put_le64(h + UNDO_OFF_CTIME, (uint64_t)time(NULL));
    strncpy((char *)h + UNDO_OFF_FORMAT, image_format_name(u->dst),
            UNDO_FORMAT_LEN);
    put_le32(h + UNDO_OFF_FLAGS,
             u->dst->file.is_regular ? UNDO_FLAG_REGULAR : 0);
    /* A path too long to record means `undo` needs DST spelled out. */
    if (realpath(dst_path, real) && strlen(real) <= UNDO_PATH_MAX) {
        put_le32(h + UNDO_OFF_PATH_LEN, (uint32_t)strlen(real));
        memcpy(h + UNDO_OFF_PATH, real, strlen(real));
    }
    undo_sum(h, UNDO_OFF_HDR_SUM, NULL, 0, h + UNDO_OFF_HDR_SUM);
    if (undo_pwrite(u->jfd, u->jpath, h, sizeof(h), 0, err) < 0)
        goto out;
    if (fsync(u->jfd) < 0) {
        df_io(err, u->jpath, errno, "cannot sync the undo journal");
        goto out;
    }
    if (undo_sync_dir(u->jpath, err) < 0)
        goto out;
    u->jend = UNDO_HDR_LEN;
    ret = 0;
out:
    free(first);
    return ret;
}

struct sink *undo_sink_wrap(struct sink *inner, struct image *dst,
                            uint64_t orig_size, const char *dst_path,
                            const char *journal_path, struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    struct undo_sink *u = calloc(1, sizeof(*u));
    bool created = false;

    if (!s || !u) {
        df_io(err, journal_path, ENOMEM, "cannot start the undo journal");
        goto fail;
    }
    s->ops = &undo_ops;
    s->priv = u;
    u->inner = inner;
    inner = NULL;
    u->jfd = -1;
    u->dst = dst;
    u->orig_size = orig_size < dst->size ? orig_size : dst->size;
    snprintf(u->jpath, sizeof(u->jpath), "%s", journal_path);
    snprintf(s->name, sizeof(s->name), "%s", u->inner->name);
    s->size = u->inner->size;
    s->dst_is_zero = u->inner->dst_is_zero;
#ifdef DF_TESTING
    const char *hook = getenv("DF_TEST_UNDO_KILL_AFTER");
    if (hook)
        u->kill_after = strtoull(hook, NULL, 10);
#endif
    u->id_len = u->orig_size < UNDO_ID_MAX ? u->orig_size : UNDO_ID_MAX;
    u->old = malloc(UNDO_REC_MAX);
    u->zeros = malloc(UNDO_ID_MAX);
    if (!u->old || !u->zeros) {
        df_io(err, journal_path, ENOMEM, "cannot start the undo journal");
        goto fail;
    }
    /* O_EXCL: never replaced, never through a symlink at its name. */
    u->jfd = open(journal_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                    O_CLOEXEC, 0600);
    if (u->jfd < 0) {
        if (errno == EEXIST)
            df_refuse(err, journal_path, "refusing to write: undo journal "
                      "exists (it may be the only way back: move it away)");
        else
            df_io(err, journal_path, errno, "cannot create the undo "
                  "journal");
        goto fail;
    }
    created = true;
    if (undo_write_header(u, dst_path, err) < 0)
        goto fail;
    return s;
fail:
    if (created)
        unlink(journal_path);
    if (inner)
        inner->ops->free(inner);
    if (s && u)
        undo_free(s);
    else {
        free(s);
        free(u);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The reader: `diskferry undo JOURNAL`.                               */

struct undo_rec {
    uint64_t joff;          /* payload offset in the journal */
    uint32_t type;
    uint64_t off, len;
};

struct undo_journal {
    struct df_file f;
    struct undo_hdr h;
    struct undo_rec *recs;
    size_t nrecs;
    bool complete;
    size_t nrestore;        /* DATA and ZERO records */
    uint64_t torn;          /* bytes ignored at the tail (invariant 4) */
};

static int undo_read_header(struct undo_journal *j, struct df_error *err)
{
    uint8_t h[UNDO_HDR_LEN], sum[16];
    const char *name = j->f.name;
    if (j->f.size < UNDO_HDR_LEN)
        return df_corrupt(err, name, 0, "undo journal header truncated "
                          "(%llu bytes): the job wrote nothing",
                          (unsigned long long)j->f.size);
    if (df_file_pread(&j->f, h, sizeof(h), 0, err) < 0)
        return -1;
    if (memcmp(h + UNDO_OFF_MAGIC, UNDO_MAGIC, 8) != 0)
        return df_corrupt(err, name, 0, "not a diskferry undo journal");
    uint32_t v = get_le32(h + UNDO_OFF_VERSION);
    if (v != UNDO_VERSION)
        return df_corrupt(err, name, UNDO_OFF_VERSION, "journal version "
                          "%" PRIu32 " not supported (only %d)", v,
                          UNDO_VERSION);
    uint32_t hl = get_le32(h + UNDO_OFF_HDR_LEN);
    if (hl != UNDO_HDR_LEN)
        return df_corrupt(err, name, UNDO_OFF_HDR_LEN, "header length "
                          "%" PRIu32 " is not %d", hl, UNDO_HDR_LEN);
    undo_sum(h, UNDO_OFF_HDR_SUM, NULL, 0, sum);
    if (memcmp(sum, h + UNDO_OFF_HDR_SUM, 16) != 0 && !UNDO_FUZZING)
        return df_corrupt(err, name, UNDO_OFF_HDR_SUM, "header checksum "
                          "mismatch");
    j->h.size = get_le64(h + UNDO_OFF_SIZE);
    j->h.id_len = get_le64(h + UNDO_OFF_ID_LEN);
    uint64_t want = j->h.size < UNDO_ID_MAX ? j->h.size : UNDO_ID_MAX;
    if (j->h.id_len != want)
        return df_corrupt(err, name, UNDO_OFF_ID_LEN, "identity length "
                          "%" PRIu64 " is not min(size, 1 MiB) = %" PRIu64,
                          j->h.id_len, want);
    memcpy(j->h.id_sha, h + UNDO_OFF_ID_SHA, 32);
    memcpy(j->h.uuid, h + UNDO_OFF_UUID, 16);
    memcpy(j->h.format, h + UNDO_OFF_FORMAT, UNDO_FORMAT_LEN);
    j->h.format[UNDO_FORMAT_LEN] = '\0';
    if (!image_driver_by_name(j->h.format))
        return df_corrupt(err, name, UNDO_OFF_FORMAT, "unknown destination "
                          "format '%s'", j->h.format);
    j->h.flags = get_le32(h + UNDO_OFF_FLAGS);
    uint32_t pl = get_le32(h + UNDO_OFF_PATH_LEN);
    if (pl > UNDO_PATH_MAX)
        return df_corrupt(err, name, UNDO_OFF_PATH_LEN, "path length "
                          "%" PRIu32 " over %d", pl, UNDO_PATH_MAX);
    memcpy(j->h.path, h + UNDO_OFF_PATH, pl);
    j->h.path[pl] = '\0';
    if (strlen(j->h.path) != pl)
        return df_corrupt(err, name, UNDO_OFF_PATH, "path holds a NUL byte");
    return 0;
}

static size_t undo_payload_len(const struct undo_rec *r)
{
    return r->type == UNDO_REC_DATA || r->type == UNDO_REC_NEW
               ? (size_t)r->len : 0;
}

/* Why the record at pos is not valid (invariant 4), or NULL if it is;
 * rec is filled when valid.  buf has room for UNDO_REC_MAX. */
static const char *undo_check_rec(struct undo_journal *j, uint64_t pos,
                                  uint64_t seq, uint8_t *buf,
                                  struct undo_rec *rec, struct df_error *err)
{
    uint8_t h[UNDO_REC_HDR], sum[16];
    if (j->f.size - pos < UNDO_REC_HDR)
        return "short record header";
    if (df_file_pread(&j->f, h, sizeof(h), pos, err) < 0)
        return "unreadable";
    if (memcmp(h, UNDO_REC_MAGIC, 4) != 0)
        return "bad record magic";
    rec->type = get_le32(h + UNDO_ROFF_TYPE);
    rec->off = get_le64(h + UNDO_ROFF_OFFSET);
    rec->len = get_le64(h + UNDO_ROFF_LEN);
    rec->joff = pos + UNDO_REC_HDR;
    if (get_le64(h + UNDO_ROFF_SEQ) != seq)
        return "out of sequence";
    if (memcmp(h + UNDO_ROFF_UUID, j->h.uuid, 16) != 0)
        return "from another journal";
    if (rec->type == UNDO_REC_END) {
        if (rec->off || rec->len)
            return "end record with a range";
    } else if (rec->type == UNDO_REC_DATA || rec->type == UNDO_REC_ZERO ||
               rec->type == UNDO_REC_NEW) {
        if (rec->len == 0 || rec->len > UNDO_REC_MAX)
            return "record length out of range";
        if (!range_within(rec->off, rec->len,
                          rec->type == UNDO_REC_NEW ? j->h.id_len
                                                    : j->h.size))
            return "range past the destination size";
    } else {
        return "unknown record type";
    }
    size_t plen = undo_payload_len(rec);
    if (plen > j->f.size - rec->joff)
        return "short payload";
    if (plen && df_file_pread(&j->f, buf, plen, rec->joff, err) < 0)
        return "unreadable";
    undo_sum(h, UNDO_ROFF_SUM, buf, plen, sum);
    if (memcmp(sum, h + UNDO_ROFF_SUM, 16) != 0 && !UNDO_FUZZING)
        return "record checksum mismatch";
    return NULL;
}

static int undo_scan(struct undo_journal *j, uint8_t *buf,
                     struct df_error *err)
{
    uint64_t pos = UNDO_HDR_LEN, seq = 0;
    size_t cap = 0;
    while (pos < j->f.size) {
        struct undo_rec rec;
        const char *why = undo_check_rec(j, pos, seq, buf, &rec, err);
        if (err->cat != DF_OK)
            return -1;
        if (why)
            break;
        if (j->nrecs == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct undo_rec *v = realloc(j->recs, ncap * sizeof(*v));
            if (!v)
                return df_io(err, j->f.name, ENOMEM,
                             "cannot read the journal");
            j->recs = v;
            cap = ncap;
        }
        pos = rec.joff + undo_payload_len(&rec);
        seq++;
        j->complete = rec.type == UNDO_REC_END;
        if (rec.type != UNDO_REC_END)
            j->recs[j->nrecs++] = rec;
        if (rec.type == UNDO_REC_DATA || rec.type == UNDO_REC_ZERO)
            j->nrestore++;
    }
    j->torn = j->f.size - pos;
    return 0;
}

/* The old bytes of record r into buf (r->len bytes).  The scan checked
 * the payload's checksum. */
static int undo_rec_data(struct undo_journal *j, const struct undo_rec *r,
                         uint8_t *buf, struct df_error *err)
{
    if (r->type == UNDO_REC_ZERO) {
        memset(buf, 0, (size_t)r->len);
        return 0;
    }
    return df_file_pread(&j->f, buf, (size_t)r->len, r->joff, err);
}

/* Lay the payloads of `type` records over buf = [0, id_len), marking
 * each sector they touch in `mark` (may be NULL).  Newest first, so the
 * oldest contents win (invariant 6). */
static int undo_overlay(struct undo_journal *j, uint32_t type, uint8_t *buf,
                        uint8_t *tmp, bool *mark, struct df_error *err)
{
    for (size_t i = j->nrecs; i-- > 0;) {
        const struct undo_rec *r = &j->recs[i];
        bool is_old = r->type == UNDO_REC_DATA || r->type == UNDO_REC_ZERO;
        if ((type == UNDO_REC_NEW) != (r->type == UNDO_REC_NEW) ||
            (type != UNDO_REC_NEW && !is_old) || r->off >= j->h.id_len)
            continue;
        if (undo_rec_data(j, r, tmp, err) < 0)
            return -1;
        uint64_t n = min_u64(r->len, j->h.id_len - r->off);
        memcpy(buf + r->off, tmp, (size_t)n);
        for (uint64_t s = r->off / UNDO_SECTOR;
             mark && s <= (r->off + n - 1) / UNDO_SECTOR; s++)
            mark[s] = true;
    }
    return 0;
}

/* Invariant 7. */
static int undo_check_identity(struct undo_journal *j, struct image *img,
                               const char *dst, uint8_t *tmp,
                               struct df_error *err)
{
    uint8_t *cur = NULL, *old = NULL, *new = NULL, sha[32];
    bool covered[UNDO_ID_MAX / UNDO_SECTOR] = { false };
    bool grown_ok = (j->h.flags & UNDO_FLAG_REGULAR) && img->file.is_regular;
    size_t n = (size_t)j->h.id_len;
    int ret = -1;

    if (img->size < j->h.size || (img->size > j->h.size && !grown_ok))
        return df_refuse(err, dst, "refusing to write: the journal is for "
                         "a destination of %" PRIu64 " bytes, this one has "
                         "%" PRIu64, j->h.size, img->size);
    cur = malloc(n + 1);
    old = malloc(n + 1);
    new = malloc(n + 1);
    if (!cur || !old || !new) {
        df_io(err, dst, ENOMEM, "cannot check the destination");
        goto out;
    }
    if (n && image_read(img, cur, n, 0, err) < 0)
        goto out;
    memcpy(old, cur, n);
    memcpy(new, cur, n);
    if (undo_overlay(j, UNDO_REC_DATA, old, tmp, covered, err) < 0 ||
        undo_overlay(j, UNDO_REC_NEW, new, tmp, NULL, err) < 0)
        goto out;
    digest_buf(DIGEST_SHA256, old, n, sha);
    bool ok = !memcmp(sha, j->h.id_sha, 32);
    for (size_t sct = 0; ok && sct * UNDO_SECTOR < n; sct++) {
        size_t at = sct * UNDO_SECTOR, len = min_u64(UNDO_SECTOR, n - at);
        ok = !covered[sct] || !memcmp(cur + at, old + at, len) ||
             !memcmp(cur + at, new + at, len);
    }
    if (!ok) {
        df_refuse(err, dst, "refusing to write: does not match the undo "
                  "journal (its first MiB holds neither the old nor the "
                  "copied data)");
        goto out;
    }
    ret = 0;
out:
    free(cur);
    free(old);
    free(new);
    return ret;
}

static void undo_print_plan(const struct undo_journal *j, uint64_t cur_size,
                            FILE *out)
{
    char sz[32];
    for (size_t i = j->nrecs; i-- > 0;) {
        const struct undo_rec *r = &j->recs[i];
        if (r->type == UNDO_REC_NEW)
            continue;
        size_format(r->len, sz, sizeof(sz));
        fprintf(out, "would restore %" PRIu64 "..%" PRIu64 " (%s%s)\n",
                r->off, r->off + r->len, sz,
                r->type == UNDO_REC_ZERO ? ", zeros" : "");
    }
    if (cur_size > j->h.size)
        fprintf(out, "would truncate to %" PRIu64 " bytes\n", j->h.size);
}

int undo_apply(const char *journal, const char *dst,
               const struct undo_opts *opts, struct undo_stats *stats,
               struct df_error *err)
{
    static const struct undo_opts no_opts;
    struct undo_journal j;
    struct image *img = NULL;
    struct undo_stats st = { 0 };
    uint8_t *buf = NULL;
    char resolved[PATH_MAX];
    int claim_fd = -1;
    int ret = -1;

    if (!opts)
        opts = &no_opts;
    memset(&j, 0, sizeof(j));
    df_file_init(&j.f);
    FILE *msgs = opts->msgs ? opts->msgs : stderr;
    if (df_file_open(&j.f, journal, O_RDONLY, err) < 0)
        goto out;
    if (undo_read_header(&j, err) < 0)
        goto out;
    if (!dst || !dst[0])
        dst = j.h.path;
    if (!dst[0]) {
        df_usage(err, "%s records no destination path: name it", journal);
        goto out;
    }
    if (opts->resolve_dst) {
        if (opts->resolve_dst(opts->resolve_ctx, dst, resolved, err) < 0)
            goto out;
        dst = resolved;
    }
    buf = malloc(UNDO_REC_MAX);
    if (!buf) {
        df_io(err, journal, ENOMEM, "cannot read the journal");
        goto out;
    }
    if (undo_scan(&j, buf, err) < 0)
        goto out;

    struct image_open_opts oo = {
        .format = j.h.format, .writable = !opts->dry_run, .no_parents = true,
    };
    if (image_open(dst, &oo, &img, err) < 0)
        goto out;
    struct safety_req req = {
        .dst_path = dst, .dst = &img->file, .src_file = &j.f,
        .need_size = j.h.size, .op = SAFETY_OP_RESTORE, .yes = opts->yes,
        .dry_run = opts->dry_run, .interactive = opts->interactive,
        .msgs = opts->msgs,
    };
    if (safety_check_destination(&req, err) < 0)
        goto out;
    if (!opts->dry_run && safety_claim(&img->file, &claim_fd, err) < 0)
        goto out;
    if (undo_check_identity(&j, img, dst, buf, err) < 0)
        goto out;

    st.complete = j.complete;
    st.torn_bytes = j.torn;
    st.records = j.nrestore;
    if (j.torn)
        fprintf(msgs, "diskferry: undo: %s: ignoring the last %" PRIu64
                " bytes of the journal (a write the job never finished)\n",
                journal, j.torn);
    if (opts->dry_run) {
        undo_print_plan(&j, img->size, opts->out ? opts->out : stdout);
        ret = 0;
        goto out;
    }
    /* Invariant 6: newest first. */
    for (size_t i = j.nrecs; i-- > 0;) {
        const struct undo_rec *r = &j.recs[i];
        if (r->type == UNDO_REC_NEW)
            continue;
        if (undo_rec_data(&j, r, buf, err) < 0 ||
            image_write(img, buf, (size_t)r->len, r->off, err) < 0)
            goto out;
        st.bytes += r->len;
    }
    if (img->size > j.h.size) {
        if (ftruncate(img->file.fd, (off_t)j.h.size) < 0) {
            df_io(err, dst, errno, "cannot cut back to %" PRIu64 " bytes",
                  j.h.size);
            goto out;
        }
        st.truncated = true;
    }
    if (image_flush(img, true, err) < 0)
        goto out;
    ret = 0;
out:
    if (stats)
        *stats = st;
    image_close(img);
    if (claim_fd >= 0)
        close(claim_fd);
    df_file_close(&j.f);
    free(j.recs);
    free(buf);
    return ret;
}

int undo_check_mem(const uint8_t *journal, size_t jlen, const uint8_t *dst,
                   size_t dlen, struct undo_stats *stats,
                   struct df_error *err)
{
    struct undo_journal j;
    struct image *img = NULL;
    struct df_file df;
    uint8_t *buf = NULL;
    int ret = -1;

    memset(&j, 0, sizeof(j));
    df_file_init_mem(&j.f, "journal", journal, jlen);
    if (undo_read_header(&j, err) < 0)
        goto out;
    buf = malloc(UNDO_REC_MAX);
    if (!buf) {
        df_io(err, "journal", ENOMEM, "cannot read the journal");
        goto out;
    }
    if (undo_scan(&j, buf, err) < 0)
        goto out;
    struct image_open_opts oo = { .format = j.h.format, .no_parents = true };
    df_file_init_mem(&df, "dst", dst, dlen);
    if (image_open_file(&df, "dst", NULL, &oo, &img, err) < 0)
        goto out;
    if (undo_check_identity(&j, img, "dst", buf, err) < 0)
        goto out;
    if (stats) {
        memset(stats, 0, sizeof(*stats));
        stats->records = j.nrestore;
        stats->torn_bytes = j.torn;
        stats->complete = j.complete;
        for (size_t i = 0; i < j.nrecs; i++)
            if (j.recs[i].type != UNDO_REC_NEW)
                stats->bytes += j.recs[i].len;
    }
    ret = 0;
out:
    image_close(img);
    free(j.recs);
    free(buf);
    return ret;
}
