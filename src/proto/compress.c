/*
 * compress.c: block compression and the auto controller (compress.h).
 */
#include "compress.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "msg.h"

int comp_mode_parse(const char *s, enum comp_mode *mode, int *level)
{
    *level = 0;
    if (!strcmp(s, "auto"))
        *mode = COMPRESS_AUTO;
    else if (!strcmp(s, "lz4"))
        *mode = COMPRESS_LZ4;
    else if (!strcmp(s, "none") || !strcmp(s, "no"))
        *mode = COMPRESS_NONE;
    else if (!strcmp(s, "zstd"))
        *mode = COMPRESS_ZSTD;
    else if (!strncmp(s, "zstd:", 5)) {
        char *end;
        long l = strtol(s + 5, &end, 10);
        if (*end || end == s + 5 || l < 1 || l > 19)
            return -1;
        *mode = COMPRESS_ZSTD;
        *level = (int)l;
    } else
        return -1;
    return 0;
}

const char *comp_mode_name(enum comp_mode mode)
{
    switch (mode) {
    case COMPRESS_AUTO: return "auto";
    case COMPRESS_ZSTD: return "zstd";
    case COMPRESS_LZ4: return "lz4";
    default: return "none";
    }
}

void comp_ctl_init(struct comp_ctl *ctl, enum comp_mode mode, int level)
{
    memset(ctl, 0, sizeof(*ctl));
    ctl->mode = mode;
    if (!level)
        level = mode == COMPRESS_AUTO ? 1 : 3;
    ctl->level = level;
    ctl->level_max_seen = level;
}

void comp_ctl_adjust(struct comp_ctl *ctl, bool link_bound, bool cpu_bound,
                     bool starved, double rate)
{
    if (ctl->mode != COMPRESS_AUTO)
        return;
    int l = ctl->level;
    if (ctl->last_dir > 0 && rate < ctl->last_rate * 0.97) {
        l--;                            /* it did not pay: back, hold */
        ctl->hold = COMP_HOLD_PERIODS;
        ctl->last_dir = 0;
    } else if (starved && l > 0) {
        l--;                            /* the CPU the "link" needs */
        ctl->hold = COMP_HOLD_PERIODS;
        ctl->last_dir = 0;
    } else if (link_bound && !ctl->hold && l < COMP_AUTO_MAX) {
        l++;
        ctl->last_dir = 1;
    } else if (cpu_bound && l > 0) {
        l--;
        ctl->last_dir = -1;
    } else {
        ctl->last_dir = 0;
    }
    if (ctl->hold)
        ctl->hold--;
    if (l < 0)
        l = 0;
    ctl->last_rate = rate;
    ctl->level = l;
    if (l > ctl->level_max_seen)
        ctl->level_max_seen = l;
}

void comp_worker_init(struct comp_worker *w)
{
    memset(w, 0, sizeof(*w));
}

void comp_worker_release(struct comp_worker *w)
{
    ZSTD_freeCCtx(w->zc);
    ZSTD_freeDCtx(w->zd);
    comp_worker_init(w);
}

size_t comp_bound(size_t len)
{
    size_t a = ZSTD_compressBound(len);
    size_t b = (size_t)LZ4_compressBound((int)len);
    return a > b ? a : b;
}

/* A cheap look at incompressible-marked data: does a sample of the
 * block shrink at the fastest level? */
static bool comp_probe(struct comp_worker *w, const uint8_t *src,
                       size_t len, void *dst, size_t dst_cap)
{
    size_t n = len < COMP_SAMPLE ? len : COMP_SAMPLE;
    if (!w->zc && !(w->zc = ZSTD_createCCtx()))
        return false;
    ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, 1);
    size_t r = ZSTD_compress2(w->zc, dst, dst_cap, src + len / 2 - n / 2,
                              n);
    return !ZSTD_isError(r) && r < n - n * COMP_MIN_GAIN_PCT / 100;
}

int comp_block(struct comp_ctl *ctl, struct comp_worker *w, const void *src,
               size_t len, void *dst, size_t dst_cap, size_t *out_len)
{
    *out_len = len;
    ctl->raw_in += len;
    if (ctl->mode == COMPRESS_NONE || len < 512 ||
        (ctl->mode == COMPRESS_AUTO && ctl->level == 0))
        goto raw;
    if (ctl->mode == COMPRESS_AUTO && ctl->incompressible &&
        ++ctl->skipped % COMP_PROBE_EVERY != 0 &&
        !comp_probe(w, src, len, dst, dst_cap))
        goto raw;
    size_t limit = len - len * COMP_MIN_GAIN_PCT / 100;
    size_t n;
    uint8_t comp;
    if (ctl->mode == COMPRESS_LZ4) {
        int r = LZ4_compress_default(src, dst, (int)len, (int)dst_cap);
        n = r > 0 ? (size_t)r : len;
        comp = COMP_LZ4;
    } else {
        if (!w->zc && !(w->zc = ZSTD_createCCtx()))
            return -1;
        ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, ctl->level);
        size_t r = ZSTD_compress2(w->zc, dst, dst_cap, src, len);
        n = ZSTD_isError(r) ? len : r;
        comp = COMP_ZSTD;
    }
    if (n >= limit) {
        if (ctl->mode == COMPRESS_AUTO && !ctl->incompressible) {
            ctl->incompressible = true;
            ctl->skipped = 0;
        }
        goto raw;
    }
    if (ctl->incompressible)
        ctl->incompressible = false;
    *out_len = n;
    ctl->comp_out += n;
    return comp;
raw:
    ctl->comp_out += len;
    return COMP_NONE;
}

int comp_unblock(struct comp_worker *w, uint8_t comp, const void *src,
                 size_t len, void *dst, size_t raw_len, const char *peer,
                 struct df_error *err)
{
    if (comp == COMP_NONE) {
        if (len != raw_len)
            goto bad;
        memcpy(dst, src, len);
        return 0;
    }
    if (raw_len > MSG_MAX_DATA || len > MSG_MAX_PAYLOAD)
        goto bad;
    if (comp == COMP_LZ4) {
        int r = LZ4_decompress_safe(src, dst, (int)len, (int)raw_len);
        if (r < 0 || (size_t)r != raw_len)
            goto bad;
        return 0;
    }
    if (comp == COMP_ZSTD) {
        if (!w->zd && !(w->zd = ZSTD_createDCtx()))
            return df_net(err, peer, "out of memory for decompression");
        /* Bound the window the peer may ask us to allocate. */
        ZSTD_DCtx_setParameter(w->zd, ZSTD_d_windowLogMax, 25);
        size_t r = ZSTD_decompressDCtx(w->zd, dst, raw_len, src, len);
        if (ZSTD_isError(r) || r != raw_len)
            goto bad;
        return 0;
    }
bad:
    return df_net(err, peer, "protocol error: compressed block does not "
                  "decode to %zu bytes", raw_len);
}

const void *comp_frame_data(struct comp_worker *w, const struct msg *m,
                            void *buf, const char *peer,
                            struct df_error *err)
{
    if (m->comp == COMP_NONE)
        return m->data;
    if (comp_unblock(w, m->comp, m->data, m->data_len, buf, m->raw_len,
                     peer, err) < 0)
        return NULL;
    return buf;
}
