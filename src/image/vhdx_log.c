/*
 * vhdx_log.c: replaying a VHDX log into memory, and reading the file
 * as the replay leaves it.
 *
 * Spec: Microsoft [MS-VHDX] 2.3 (summary: formats.md section 5.4).
 *   log region: a ring of 4 KiB sectors; an entry is a "loge" header
 *     and 32-byte descriptors ("desc": one 4 KiB write, "zero": a
 *     range), then one "data" sector per "desc"; all carry the entry's
 *     sequence number, the entry a CRC-32C.
 *
 * A non-zero LogGuid means the log holds metadata writes that may not
 * have reached their place ([MS-VHDX] 2.3.3).  diskferry never writes
 * to a source, so it replays the log into memory: it finds the active
 * sequence (valid entries with consecutive sequence numbers whose head
 * has the highest number and whose head's tail lies in the run), keeps
 * its data and zero writes as ops, and lays them over every read of the
 * file (vhdx_pread), which also grows to LastFileOffset.  A log it
 * cannot replay (no valid sequence, log version not 0, a log region
 * outside the file or above 32 MiB, a file shorter than the log's
 * FlushedFileOffset) is refused with exit 5, advising a replay.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/vhdx_int.h"
#include "util/bytes.h"
#include "util/overflow.h"

/*
 * Read len bytes at off of the file as the replayed log leaves it: the
 * file's bytes (zeros between its end and the size the log extends it
 * to), then each log write over them, in log order.
 */
int vhdx_pread(struct image *img, void *buf, size_t len, uint64_t off,
               struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    uint8_t *p = buf;

    if (!s->nops && s->file_size == img->file.size)
        return df_file_pread(&img->file, buf, len, off, err);
    if (!range_within(off, len, s->file_size))
        return df_corrupt(err, img->name, (int64_t)off,
                          "truncated: %zu bytes wanted, file ends at %"
                          PRIu64 " after log replay", len, s->file_size);
    uint64_t in_file = off < img->file.size ?
                       min_u64(len, img->file.size - off) : 0;
    if (in_file && df_file_pread(&img->file, p, in_file, off, err) < 0)
        return -1;
    memset(p + in_file, 0, len - in_file);
    for (size_t i = 0; i < s->nops; i++) {
        const struct vhdx_log_op *op = &s->ops[i];
        uint64_t lo = max_u64(op->off, off);
        uint64_t hi = min_u64(op->off + op->len, off + len);
        if (lo >= hi)
            continue;
        if (op->data)
            memcpy(p + (lo - off), op->data + (lo - op->off), hi - lo);
        else
            memset(p + (lo - off), 0, hi - lo);
    }
    return 0;
}

/* What the scan of the log learnt about the entry at one position. */
struct vhdx_log_entry {
    bool valid;
    uint32_t len;
    uint32_t tail;
    uint64_t seq;
};

/*
 * Is there a valid log entry at e (the log is mapped twice in a row, so
 * an entry that wraps around its end is contiguous)?  Valid: signature,
 * length, LogGuid, CRC-32C, and every descriptor and data sector
 * carrying the entry's sequence number ([MS-VHDX] 2.3.1).
 */
static bool vhdx_log_entry_ok(const uint8_t *e, uint64_t log_len,
                              const uint8_t *log_guid,
                              struct vhdx_log_entry *out)
{
    uint32_t len = get_le32(e + VHDX_LE_OFF_LENGTH);
    uint32_t tail = get_le32(e + VHDX_LE_OFF_TAIL);
    uint64_t seq = get_le64(e + VHDX_LE_OFF_SEQ);
    uint32_t ndesc = get_le32(e + VHDX_LE_OFF_DESC_COUNT);

    if (memcmp(e, "loge", 4) || !seq || !len || len % VHDX_LOG_SECTOR ||
        len > log_len || tail % VHDX_LOG_SECTOR || tail >= log_len ||
        memcmp(e + VHDX_LE_OFF_LOG_GUID, log_guid, 16))
        return false;
    uint64_t desc_area = (uint64_t)VHDX_LE_HEADER_LEN +
                         (uint64_t)ndesc * VHDX_LD_LEN;
    desc_area = div_round_up(desc_area, VHDX_LOG_SECTOR) * VHDX_LOG_SECTOR;
    if (desc_area > len || !vhdx_crc_ok(e, len, VHDX_LE_OFF_CRC))
        return false;
    uint64_t ndata = 0;
    for (uint32_t i = 0; i < ndesc; i++) {
        const uint8_t *d = e + VHDX_LE_HEADER_LEN + (uint64_t)i * VHDX_LD_LEN;
        uint64_t foff = get_le64(d + VHDX_LD_OFF_FILE_OFF);
        if (get_le64(d + VHDX_LD_OFF_SEQ) != seq ||
            foff % VHDX_LOG_SECTOR)
            return false;
        if (!memcmp(d, "zero", 4)) {
            uint64_t zlen = get_le64(d + VHDX_LD_OFF_ZERO_LEN);
            uint64_t end;
            if (zlen % VHDX_LOG_SECTOR || ovf_add(foff, zlen, &end))
                return false;
            continue;
        }
        if (memcmp(d, "desc", 4))
            return false;
        const uint8_t *sec = e + desc_area + ndata * VHDX_LOG_SECTOR;
        if (desc_area + (ndata + 1) * VHDX_LOG_SECTOR > len ||
            memcmp(sec, "data", 4) ||
            get_le32(sec + VHDX_LS_OFF_SEQ_HIGH) != (uint32_t)(seq >> 32) ||
            get_le32(sec + VHDX_LS_OFF_SEQ_LOW) != (uint32_t)seq)
            return false;
        ndata++;
    }
    if (desc_area + ndata * VHDX_LOG_SECTOR != len)
        return false;
    *out = (struct vhdx_log_entry){ true, len, tail, seq };
    return true;
}

/*
 * Turn the entries of the active sequence, tail to head, into ops
 * (pos: their positions in the log, n of them); grow s->file_size to
 * cover them.
 */
static int vhdx_log_make_ops(struct image *img, const uint8_t *log,
                             const uint64_t *pos, size_t n,
                             struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    size_t nops = 0, npages = 0;

    for (size_t k = 0; k < n; k++) {
        const uint8_t *e = log + pos[k];
        uint32_t ndesc = get_le32(e + VHDX_LE_OFF_DESC_COUNT);
        nops += ndesc;
        for (uint32_t i = 0; i < ndesc; i++)
            npages += !memcmp(e + VHDX_LE_HEADER_LEN + i * VHDX_LD_LEN,
                              "desc", 4);
    }
    /* Bounded by the log's length (each op is 32 bytes of it). */
    s->ops = calloc(nops ? nops : 1, sizeof(*s->ops));
    s->op_pages = malloc(npages ? npages * VHDX_LOG_SECTOR : 1);
    if (!s->ops || !s->op_pages)
        return df_io(err, img->name, ENOMEM, "cannot allocate log replay");
    uint8_t *page = s->op_pages;
    for (size_t k = 0; k < n; k++) {
        const uint8_t *e = log + pos[k];
        uint32_t ndesc = get_le32(e + VHDX_LE_OFF_DESC_COUNT);
        uint64_t desc_area = div_round_up(VHDX_LE_HEADER_LEN +
                                          (uint64_t)ndesc * VHDX_LD_LEN,
                                          VHDX_LOG_SECTOR) * VHDX_LOG_SECTOR;
        const uint8_t *sec = e + desc_area;
        for (uint32_t i = 0; i < ndesc; i++) {
            const uint8_t *d = e + VHDX_LE_HEADER_LEN + i * VHDX_LD_LEN;
            struct vhdx_log_op *op = &s->ops[s->nops];
            op->off = get_le64(d + VHDX_LD_OFF_FILE_OFF);
            if (!memcmp(d, "zero", 4)) {
                op->len = get_le64(d + VHDX_LD_OFF_ZERO_LEN);
                op->data = NULL;
            } else {
                /* The sector: 8 leading bytes, 4084 logged, 4 trailing. */
                memcpy(page, d + VHDX_LD_OFF_LEADING, 8);
                memcpy(page + 8, sec + 8, VHDX_LS_DATA_LEN);
                memcpy(page + 8 + VHDX_LS_DATA_LEN, d + VHDX_LD_OFF_TRAILING,
                       4);
                op->len = VHDX_LOG_SECTOR;
                op->data = page;
                page += VHDX_LOG_SECTOR;
                sec += VHDX_LOG_SECTOR;
            }
            /* Writes past the end extend the file ([MS-VHDX] 2.3.3). */
            if (!range_within(op->off, op->len, VHDX_MAX_FILE_SIZE))
                return df_corrupt(err, img->name, -1,
                                  "log entry %" PRIu64 " writes [%" PRIu64
                                  ", +%" PRIu64 ") beyond 128 TiB",
                                  get_le64(e + VHDX_LE_OFF_SEQ), op->off,
                                  op->len);
            s->file_size = max_u64(s->file_size, op->off + op->len);
            s->nops++;
        }
    }
    return 0;
}

/*
 * Replay the log into memory ([MS-VHDX] 2.3.3): find the active
 * sequence, the run of valid entries with consecutive sequence numbers
 * whose head has the highest sequence number and whose head's tail
 * points into the run, and keep its writes as ops that vhdx_pread()
 * lays over the file.  The file itself is never written.
 */
int vhdx_replay_log(struct image *img, const uint8_t *hd, uint64_t hoff,
                    struct df_error *err)
{
    struct vhdx_priv *s = img->priv;
    const uint8_t *log_guid = hd + VHDX_HDR_OFF_LOG_GUID;
    uint64_t log_len = get_le32(hd + VHDX_HDR_OFF_LOG_LENGTH);
    uint64_t log_off = get_le64(hd + VHDX_HDR_OFF_LOG_OFFSET);
    uint8_t *log = NULL;
    struct vhdx_log_entry *ents = NULL;
    uint64_t *run = NULL, *best = NULL;
    size_t best_n = 0;
    uint64_t best_seq = 0;
    int ret = -1;

    if (get_le16(hd + VHDX_HDR_OFF_LOG_VERSION) != 0) {
        df_corrupt(err, img->name, (int64_t)(hoff + VHDX_HDR_OFF_LOG_VERSION),
                   "vhdx log is dirty and cannot be replayed here (log "
                   "version %u is not 0): " VHDX_LOG_ADVICE,
                   get_le16(hd + VHDX_HDR_OFF_LOG_VERSION));
        goto out;
    }
    if (!log_len || log_len % VHDX_LOG_SECTOR ||
        log_len > VHDX_LOG_MAX_LEN || log_off < VHDX_HEADER_SECTION ||
        log_off % VHDX_LOG_SECTOR ||
        !range_within(log_off, log_len, img->file.size)) {
        df_corrupt(err, img->name, (int64_t)(hoff + VHDX_HDR_OFF_LOG_LENGTH),
                   "vhdx log is dirty and cannot be replayed here (log "
                   "[%" PRIu64 ", +%" PRIu64 ") is not 4 KiB-aligned, past "
                   "the header section, inside the file and at most "
                   "32 MiB): " VHDX_LOG_ADVICE, log_off, log_len);
        goto out;
    }
    size_t nsec = log_len / VHDX_LOG_SECTOR;
    log = malloc(2 * log_len);
    ents = calloc(nsec, sizeof(*ents));
    run = malloc(nsec * sizeof(*run));
    best = malloc(nsec * sizeof(*best));
    if (!log || !ents || !run || !best) {
        df_io(err, img->name, ENOMEM, "cannot allocate the log");
        goto out;
    }
    if (df_file_pread(&img->file, log, log_len, log_off, err) < 0)
        goto out;
    memcpy(log + log_len, log, log_len);
    for (size_t i = 0; i < nsec; i++)
        vhdx_log_entry_ok(log + i * VHDX_LOG_SECTOR, log_len, log_guid,
                          &ents[i]);

    /* Each valid entry starts a run; keep the best complete one. */
    for (size_t start = 0; start < nsec; start++) {
        size_t n = 0, i = start;
        uint64_t total = 0;
        while (ents[i].valid && total + ents[i].len <= log_len &&
               (n == 0 || ents[i].seq == ents[run[n - 1]].seq + 1)) {
            run[n++] = i;
            total += ents[i].len;
            i = (i + ents[i].len / VHDX_LOG_SECTOR) % nsec;
        }
        if (!n || (best_n && ents[run[n - 1]].seq <= best_seq))
            continue;
        /* The head's tail must be one of the run's entries. */
        size_t t = 0;
        uint64_t tail = ents[run[n - 1]].tail / VHDX_LOG_SECTOR;
        while (t < n && run[t] != tail)
            t++;
        if (t == n)
            continue;
        best_n = n - t;
        best_seq = ents[run[n - 1]].seq;
        for (size_t k = 0; k < best_n; k++)
            best[k] = run[t + k] * VHDX_LOG_SECTOR;
    }
    if (!best_n) {
        df_corrupt(err, img->name, (int64_t)(hoff + VHDX_HDR_OFF_LOG_GUID),
                   "vhdx log is dirty and cannot be replayed here (no "
                   "valid sequence of entries): " VHDX_LOG_ADVICE);
        goto out;
    }

    const uint8_t *head = log + best[best_n - 1];
    uint64_t flushed = get_le64(head + VHDX_LE_OFF_FLUSHED);
    uint64_t last = get_le64(head + VHDX_LE_OFF_LAST);
    if (flushed > img->file.size) {
        df_corrupt(err, img->name, (int64_t)(log_off + best[best_n - 1]),
                   "file is %" PRIu64 " bytes, shorter than the %" PRIu64
                   " its log says were flushed (truncated copy?)",
                   img->file.size, flushed);
        goto out;
    }
    /* The file as replay leaves it: at least LastFileOffset long. */
    s->file_size = max_u64(img->file.size, min_u64(last, VHDX_MAX_FILE_SIZE));
    if (vhdx_log_make_ops(img, log, best, best_n, err) < 0)
        goto out;
    image_set_prop(img, "log", "replayed in memory (%zu entries, %zu "
                   "writes)", best_n, s->nops);
    ret = 0;
out:
    free(log);
    free(ents);
    free(run);
    free(best);
    return ret;
}
