/*
 * msg.c: encoding and hostile-input decoding of protocol messages
 * (layout and rules in msg.h).
 */
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"

static const char *const msg_names[] = {
    [MSG_HELLO] = "HELLO",
    [MSG_ERROR] = "ERROR",
    [MSG_OPEN_DST] = "OPEN_DST",
    [MSG_OPEN_SRC] = "OPEN_SRC",
    [MSG_OPENED] = "OPENED",
    [MSG_MAP_REQ] = "MAP_REQ",
    [MSG_MAP_REPLY] = "MAP_REPLY",
    [MSG_RESUME_RANGES] = "RESUME_RANGES",
    [MSG_LEAF_HASHES] = "LEAF_HASHES",
    [MSG_SET_SIZE] = "SET_SIZE",
    [MSG_TREE_REQ] = "TREE_REQ",
    [MSG_TREE] = "TREE",
    [MSG_TREE_HASHES] = "TREE_HASHES",
    [MSG_TREE_BITS] = "TREE_BITS",
    [MSG_TREE_REQ_RECORD] = "TREE_REQ_RECORD",
    [MSG_TREE_CHANGES] = "TREE_CHANGES",
    [MSG_TREE_PROVED] = "TREE_PROVED",
    [MSG_WRITE] = "WRITE",
    [MSG_ZERO] = "ZERO",
    [MSG_TRIM] = "TRIM",
    [MSG_ACK] = "ACK",
    [MSG_FLUSH] = "FLUSH",
    [MSG_FLUSHED] = "FLUSHED",
    [MSG_DIGEST_REQ] = "DIGEST_REQ",
    [MSG_DIGEST] = "DIGEST",
    [MSG_READ_STREAM] = "READ_STREAM",
    [MSG_STREAM_END] = "STREAM_END",
    [MSG_TCP_REQ] = "TCP_REQ",
    [MSG_TCP_OFFER] = "TCP_OFFER",
    [MSG_STREAM_HELLO] = "STREAM_HELLO",
    [MSG_DONE] = "DONE",
    [MSG_KEEPALIVE] = "KEEPALIVE",
    [MSG_ASK] = "ASK",
    [MSG_ANSWER] = "ANSWER",
    [MSG_UNDO] = "UNDO",
    [MSG_UNDONE] = "UNDONE",
    [MSG_PROBE] = "PROBE",
    [MSG_PROBE_DATA] = "PROBE_DATA",
    [MSG_PROBE_DONE] = "PROBE_DONE",
};

const char *msg_type_name(uint8_t type)
{
    if (type >= 1 && type <= MSG_TYPE_MAX && msg_names[type])
        return msg_names[type];
    return "unknown";
}

/* ---- building ---- */

void msg_buf_init(struct msg_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void msg_buf_release(struct msg_buf *b)
{
    free(b->p);
    msg_buf_init(b);
}

void msg_buf_reset(struct msg_buf *b)
{
    b->len = 0;
    b->failed = false;
}

static uint8_t *msg_buf_grow(struct msg_buf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (n > MSG_MAX_PAYLOAD || b->len > MSG_MAX_PAYLOAD - n) {
        b->failed = true;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *r = b->p + b->len;
    b->len += n;
    return r;
}

void msg_put_u8(struct msg_buf *b, uint8_t v)
{
    uint8_t *p = msg_buf_grow(b, 1);
    if (p)
        *p = v;
}

void msg_put_u16(struct msg_buf *b, uint16_t v)
{
    uint8_t *p = msg_buf_grow(b, 2);
    if (p)
        put_le16(p, v);
}

void msg_put_u32(struct msg_buf *b, uint32_t v)
{
    uint8_t *p = msg_buf_grow(b, 4);
    if (p)
        put_le32(p, v);
}

void msg_put_u64(struct msg_buf *b, uint64_t v)
{
    uint8_t *p = msg_buf_grow(b, 8);
    if (p)
        put_le64(p, v);
}

void msg_put_bytes(struct msg_buf *b, const void *src, size_t len)
{
    uint8_t *p = msg_buf_grow(b, len);
    if (p && len)
        memcpy(p, src, len);
}

void msg_put_str(struct msg_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > MSG_MAX_STR)
        n = MSG_MAX_STR;
    msg_put_u16(b, (uint16_t)n);
    msg_put_bytes(b, s, n);
}

void msg_enc_hello(struct msg_buf *b, uint32_t features)
{
    msg_buf_reset(b);
    msg_put_u32(b, MSG_MAGIC);
    msg_put_u16(b, MSG_VERSION_MIN);
    msg_put_u16(b, MSG_VERSION_MAX);
    msg_put_u32(b, features);
    msg_put_u32(b, MSG_MAX_PAYLOAD);
    msg_put_str(b, "diskferry 0.1");
}

void msg_enc_error(struct msg_buf *b, const struct df_error *e)
{
    char text[MSG_MAX_STR];
    struct df_error tmp = *e;
    tmp.what[0] = '\0';     /* what travels on its own */
    df_error_format(&tmp, text, sizeof(text));
    msg_buf_reset(b);
    msg_put_u8(b, (uint8_t)e->cat);
    msg_put_u64(b, (uint64_t)(int64_t)-1);
    msg_put_u32(b, 0);
    msg_put_str(b, e->what);
    msg_put_str(b, text);
}

void msg_enc_open(struct msg_buf *b, uint32_t flags, uint64_t size,
                  uint64_t src_id, const char *format, const char *path,
                  bool dst)
{
    msg_buf_reset(b);
    msg_put_u32(b, flags);
    if (dst) {
        msg_put_u64(b, size);
        msg_put_u64(b, src_id);
    }
    msg_put_str(b, format ? format : "");
    msg_put_str(b, path);
}

void msg_enc_opened(struct msg_buf *b, uint32_t flags, uint64_t size,
                    const char *format, const char *name)
{
    msg_buf_reset(b);
    msg_put_u32(b, flags);
    msg_put_u64(b, size);
    msg_put_str(b, format);
    msg_put_str(b, name);
}

void msg_enc_range_hdr(struct msg_buf *b, uint32_t n, bool last)
{
    msg_buf_reset(b);
    msg_put_u32(b, n);
    msg_put_u8(b, last);
}

void msg_enc_ranges(struct msg_buf *b, const struct extent_list *l,
                    size_t first, size_t n, bool last, bool with_state)
{
    msg_buf_reset(b);
    msg_put_u32(b, (uint32_t)n);
    if (!with_state)
        msg_put_u8(b, last);
    for (size_t i = first; i < first + n; i++) {
        msg_put_u64(b, l->v[i].off);
        msg_put_u64(b, l->v[i].len);
        if (with_state)
            msg_put_u8(b, (uint8_t)l->v[i].state);
    }
}

void msg_enc_write_hdr(struct msg_buf *b, uint64_t seq, uint64_t off,
                       uint8_t comp, uint32_t raw_len)
{
    msg_buf_reset(b);
    msg_put_u64(b, seq);
    msg_put_u64(b, off);
    msg_put_u8(b, comp);
    msg_put_u32(b, raw_len);
}

void msg_enc_zero(struct msg_buf *b, uint64_t seq, uint64_t off,
                  uint64_t len)
{
    msg_buf_reset(b);
    msg_put_u64(b, seq);
    msg_put_u64(b, off);
    msg_put_u64(b, len);
}

void msg_enc_u64(struct msg_buf *b, uint64_t v)
{
    msg_buf_reset(b);
    msg_put_u64(b, v);
}

void msg_enc_ack(struct msg_buf *b, uint64_t seq, uint64_t bytes)
{
    msg_buf_reset(b);
    msg_put_u64(b, seq);
    msg_put_u64(b, bytes);
}

void msg_enc_digest_req(struct msg_buf *b, uint8_t alg, uint32_t threads,
                        uint64_t size)
{
    msg_buf_reset(b);
    msg_put_u8(b, alg);
    msg_put_u32(b, threads);
    msg_put_u64(b, size);
}

void msg_enc_digest(struct msg_buf *b, uint8_t type, uint64_t seq,
                    uint8_t alg, const uint8_t *d, uint8_t len)
{
    msg_buf_reset(b);
    if (type == MSG_STREAM_END)
        msg_put_u64(b, seq);
    msg_put_u8(b, alg);
    msg_put_u8(b, len);
    msg_put_bytes(b, d, len);
}

void msg_enc_read_stream(struct msg_buf *b, uint32_t flags, uint8_t comp,
                         uint8_t level, uint32_t streams, uint64_t bwlimit)
{
    msg_buf_reset(b);
    msg_put_u32(b, flags);
    msg_put_u8(b, comp);
    msg_put_u8(b, level);
    msg_put_u32(b, streams);
    msg_put_u64(b, bwlimit);
}

void msg_enc_probe(struct msg_buf *b, uint32_t step, uint8_t dir,
                   uint64_t bytes, uint32_t ms)
{
    msg_buf_reset(b);
    msg_put_u32(b, step);
    msg_put_u8(b, dir);
    msg_put_u64(b, bytes);
    msg_put_u32(b, ms);
}

void msg_enc_probe_done(struct msg_buf *b, uint32_t step, uint64_t bytes,
                        uint64_t span_bytes, uint64_t span_us)
{
    msg_buf_reset(b);
    msg_put_u32(b, step);
    msg_put_u64(b, bytes);
    msg_put_u64(b, span_bytes);
    msg_put_u64(b, span_us);
}

void msg_enc_tcp_offer(struct msg_buf *b, uint16_t port,
                       const uint8_t key[32])
{
    msg_buf_reset(b);
    msg_put_u16(b, port);
    msg_put_bytes(b, key, 32);
}

void msg_enc_open_opts(struct msg_buf *b, size_t n, const uint8_t *kinds,
                       const char *const *vals)
{
    if (n > MSG_MAX_OPEN_OPTS) {
        b->failed = true;
        return;
    }
    msg_put_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        msg_put_u8(b, kinds[i]);
        msg_put_str(b, vals[i]);
    }
}

/* ---- decoding: a cursor that fails once and stays failed ---- */

struct msg_rd {
    const uint8_t *p;
    size_t len, pos;
    const char *bad;        /* first problem, or NULL */
};

static const uint8_t *rd_take(struct msg_rd *r, size_t n, const char *field)
{
    if (r->bad)
        return NULL;
    if (n > r->len - r->pos) {
        r->bad = field;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint8_t rd_u8(struct msg_rd *r, const char *field)
{
    const uint8_t *p = rd_take(r, 1, field);
    return p ? *p : 0;
}

static uint16_t rd_u16(struct msg_rd *r, const char *field)
{
    const uint8_t *p = rd_take(r, 2, field);
    return p ? get_le16(p) : 0;
}

static uint32_t rd_u32(struct msg_rd *r, const char *field)
{
    const uint8_t *p = rd_take(r, 4, field);
    return p ? get_le32(p) : 0;
}

static uint64_t rd_u64(struct msg_rd *r, const char *field)
{
    const uint8_t *p = rd_take(r, 8, field);
    return p ? get_le64(p) : 0;
}

static void rd_str(struct msg_rd *r, char *out, const char *field)
{
    out[0] = '\0';
    uint16_t n = rd_u16(r, field);
    if (n > MSG_MAX_STR && !r->bad)
        r->bad = field;
    const uint8_t *p = rd_take(r, n, field);
    if (!p)
        return;
    if (memchr(p, 0, n)) {
        r->bad = field;
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* The rest of the payload is the message's data (none once bad). */
static void rd_rest(struct msg_rd *r, struct msg *m)
{
    if (r->bad)
        return;
    m->data = r->p + r->pos;
    m->data_len = r->len - r->pos;
    r->pos = r->len;
}

static void rd_digest(struct msg_rd *r, struct msg *m)
{
    m->alg = rd_u8(r, "digest algorithm");
    m->digest_len = rd_u8(r, "digest length");
    if (!r->bad && m->digest_len > sizeof(m->digest))
        r->bad = "digest length";
    const uint8_t *p = rd_take(r, m->digest_len, "digest");
    if (p)
        memcpy(m->digest, p, m->digest_len);
}

static void rd_ranges(struct msg_rd *r, struct msg *m, size_t rec)
{
    m->n = rd_u32(r, "range count");
    if (!r->bad && m->n > MSG_MAX_RANGES_PER_MSG)
        r->bad = "range count";
    if (rec != 17)
        m->last = rd_u8(r, "last flag") != 0;
    m->data = rd_take(r, (size_t)m->n * rec, "ranges");
    m->data_len = (size_t)m->n * rec;
}

/* TREE_HASHES (n hashes of 16 or 32 bytes) and TREE_BITS (n bits):
 * first u64, n u32, the rest is data, of exactly its size. */
static void rd_tree_nodes(struct msg_rd *r, struct msg *m)
{
    m->off = rd_u64(r, "first node");
    m->n = rd_u32(r, "node count");
    if (r->bad)
        return;
    if (m->n == 0 || m->n > MSG_TREE_MAX_NODES || m->off + m->n < m->off) {
        r->bad = "node count";
        return;
    }
    rd_rest(r, m);
    if (m->type == MSG_TREE_BITS) {
        if (m->data_len != ((size_t)m->n + 7) / 8)
            r->bad = "bits length";
        else if (m->n % 8 && m->data[m->data_len - 1] >> (m->n % 8))
            r->bad = "unused bits";
    } else if (m->data_len != (size_t)m->n * 16 &&
               m->data_len != (size_t)m->n * 32) {
        r->bad = "hashes length";
    }
}

/* The options tail of OPEN_*: absent, or n entries (kind, string),
 * each checked here so that msg_open_opt() need not. */
static void rd_open_opts(struct msg_rd *r, struct msg *m)
{
    m->n = 0;
    if (r->bad || r->pos == r->len)
        return;
    m->n = rd_u16(r, "option count");
    if (!r->bad && m->n > MSG_MAX_OPEN_OPTS)
        r->bad = "option count";
    size_t start = r->pos;
    for (uint32_t i = 0; i < m->n && !r->bad; i++) {
        uint8_t kind = rd_u8(r, "option");
        uint16_t n = rd_u16(r, "option");
        if (!r->bad && (kind < OPT_UNDO || kind > OPT_VERIFY ||
                        n == 0 || n > MSG_MAX_STR))
            r->bad = "option";
        const uint8_t *p = rd_take(r, n, "option");
        if (p && memchr(p, 0, n))
            r->bad = "option";
    }
    m->data = r->p + start;
    m->data_len = r->pos - start;
}

int msg_open_opt(const struct msg *m, size_t *pos, uint8_t *kind,
                 char *out)
{
    if (*pos + 3 > m->data_len)
        return 0;
    const uint8_t *p = m->data + *pos;
    uint16_t n = get_le16(p + 1);
    *kind = p[0];
    memcpy(out, p + 3, n);
    out[n] = '\0';
    *pos += 3 + (size_t)n;
    return 1;
}

int msg_decode(uint8_t type, const uint8_t *p, size_t len, struct msg *m,
               const char *peer, struct df_error *err)
{
    struct msg_rd r = {.p = p, .len = len};
    m->type = type;
    m->s1[0] = m->s2[0] = '\0';
    m->data = NULL;
    m->data_len = 0;
    if (len > MSG_MAX_PAYLOAD)
        return df_net(err, peer, "protocol error: %s payload of %zu bytes "
                      "over the limit of %u", msg_type_name(type), len,
                      (unsigned)MSG_MAX_PAYLOAD);
    switch (type) {
    case MSG_HELLO:
        m->magic = rd_u32(&r, "magic");
        m->ver_min = rd_u16(&r, "version");
        m->ver_max = rd_u16(&r, "version");
        m->features = rd_u32(&r, "features");
        m->max_payload = rd_u32(&r, "max payload");
        rd_str(&r, m->s1, "software version");
        if (!r.bad && m->magic != MSG_MAGIC)
            return df_net(err, peer, "protocol error: not a diskferry peer "
                          "(magic 0x%08x)", m->magic);
        if (!r.bad && m->ver_min > m->ver_max)
            r.bad = "version range";
        break;
    case MSG_ERROR:
        m->cat = rd_u8(&r, "category");
        m->err_off = (int64_t)rd_u64(&r, "offset");
        m->errnum = rd_u32(&r, "errnum");
        rd_str(&r, m->s1, "what");
        rd_str(&r, m->s2, "message");
        if (!r.bad && (m->cat < DF_USAGE || m->cat > DF_VERIFY))
            r.bad = "error category";
        break;
    case MSG_OPEN_DST:
    case MSG_OPEN_SRC:
        m->flags = rd_u32(&r, "flags");
        if (type == MSG_OPEN_DST) {
            m->size = rd_u64(&r, "size");
            m->src_id = rd_u64(&r, "source id");
        }
        rd_str(&r, m->s1, "format");
        rd_str(&r, m->s2, "path");
        rd_open_opts(&r, m);
        if (!r.bad && (m->flags & ~OPEN_FLAGS_ALL))
            r.bad = "open flags";
        if (!r.bad && !m->s2[0])
            r.bad = "path";
        break;
    case MSG_OPENED:
        m->flags = rd_u32(&r, "flags");
        m->size = rd_u64(&r, "size");
        rd_str(&r, m->s1, "format");
        rd_str(&r, m->s2, "name");
        break;
    case MSG_MAP_REQ:
        m->off = rd_u64(&r, "offset");
        m->len = rd_u64(&r, "length");
        break;
    case MSG_MAP_REPLY:
        rd_ranges(&r, m, 17);
        break;
    case MSG_RESUME_RANGES:
    case MSG_TREE_CHANGES:
        rd_ranges(&r, m, 16);
        break;
    case MSG_LEAF_HASHES:
        rd_ranges(&r, m, 24);
        break;
    case MSG_WRITE:
        m->seq = rd_u64(&r, "sequence");
        m->off = rd_u64(&r, "offset");
        m->comp = rd_u8(&r, "compression");
        m->raw_len = rd_u32(&r, "raw length");
        if (r.bad)
            break;
        rd_rest(&r, m);
        if (m->comp > COMP_LZ4)
            r.bad = "compression";
        else if (m->raw_len == 0 || m->raw_len > MSG_MAX_DATA)
            r.bad = "raw length";
        else if (m->comp == COMP_NONE && m->data_len != m->raw_len)
            r.bad = "data length";
        else if (m->comp != COMP_NONE && m->data_len == 0)
            r.bad = "data length";
        else if (m->off + m->raw_len < m->off)
            r.bad = "offset";
        m->len = m->raw_len;
        break;
    case MSG_ZERO:
    case MSG_TRIM:
        m->seq = rd_u64(&r, "sequence");
        m->off = rd_u64(&r, "offset");
        m->len = rd_u64(&r, "length");
        if (!r.bad && (m->len == 0 || m->off + m->len < m->off))
            r.bad = "length";
        break;
    case MSG_ACK:
        m->seq = rd_u64(&r, "sequence");
        m->len = rd_u64(&r, "bytes");
        break;
    case MSG_FLUSH:
        m->seq = rd_u64(&r, "sequence");
        break;
    case MSG_SET_SIZE:
        m->size = rd_u64(&r, "size");
        break;
    case MSG_FLUSHED:
    case MSG_TREE_PROVED:
        break;
    case MSG_DIGEST_REQ:
        m->alg = rd_u8(&r, "digest algorithm");
        m->threads = rd_u32(&r, "threads");
        m->size = rd_u64(&r, "size");
        if (!r.bad && m->alg != 1 && m->alg != 2)
            r.bad = "digest algorithm";
        break;
    case MSG_DIGEST:
        rd_digest(&r, m);
        break;
    case MSG_STREAM_END:
        m->seq = rd_u64(&r, "sequence");
        rd_digest(&r, m);
        break;
    case MSG_READ_STREAM:
        m->flags = rd_u32(&r, "flags");
        m->comp = rd_u8(&r, "compression");
        m->level = rd_u8(&r, "level");
        m->streams = rd_u32(&r, "streams");
        m->size = rd_u64(&r, "bwlimit");
        if (!r.bad && m->comp > COMP_LZ4 + 1)   /* +1: auto */
            r.bad = "compression";
        if (!r.bad && m->level > 19)
            r.bad = "level";
        break;
    case MSG_TCP_REQ:
        m->streams = rd_u32(&r, "streams");
        if (!r.bad && (m->streams == 0 || m->streams > 64))
            r.bad = "stream count";
        break;
    case MSG_TCP_OFFER: {
        m->port = rd_u16(&r, "port");
        const uint8_t *k = rd_take(&r, 32, "key");
        if (k)
            memcpy(m->key, k, 32);
        if (!r.bad && r.pos < r.len)
            rd_str(&r, m->s1, "address");
        break;
    }
    case MSG_STREAM_HELLO:
        m->stream_id = rd_u32(&r, "stream id");
        break;
    case MSG_DONE:
    case MSG_ANSWER:
        m->flags = rd_u32(&r, "flags");
        break;
    case MSG_KEEPALIVE:
        break;
    case MSG_ASK:
        rd_str(&r, m->s1, "what");
        rd_str(&r, m->s2, "name");
        break;
    case MSG_UNDO:
        m->flags = rd_u32(&r, "flags");
        rd_str(&r, m->s1, "journal");
        rd_str(&r, m->s2, "destination");
        if (!r.bad && !m->s1[0])
            r.bad = "journal";
        break;
    case MSG_UNDONE:
        m->off = rd_u64(&r, "records");
        m->len = rd_u64(&r, "bytes");
        m->flags = rd_u32(&r, "flags");
        break;
    case MSG_TREE_REQ:
    case MSG_TREE_REQ_RECORD:
        m->alg = rd_u8(&r, "digest algorithm");
        m->level = rd_u8(&r, "block level");
        if (!r.bad && m->alg != 1 && m->alg != 2)
            r.bad = "digest algorithm";
        if (!r.bad && m->level > MSG_TREE_MAX_BLOCK_LEVEL)
            r.bad = "block level";
        break;
    case MSG_TREE:
        m->size = rd_u64(&r, "size");
        rd_digest(&r, m);
        m->len = rd_u64(&r, "bytes read");
        break;
    case MSG_TREE_HASHES:
    case MSG_TREE_BITS:
        rd_tree_nodes(&r, m);
        break;
    case MSG_PROBE:
        m->seq = rd_u32(&r, "step");
        m->flags = rd_u8(&r, "direction");
        m->len = rd_u64(&r, "bytes");
        m->probe_ms = rd_u32(&r, "time limit");
        if (!r.bad && m->flags > PROBE_DOWN)
            r.bad = "direction";
        if (!r.bad && (m->probe_ms == 0 || m->probe_ms > MSG_PROBE_MAX_MS))
            r.bad = "time limit";
        break;
    case MSG_PROBE_DATA:
        m->seq = rd_u32(&r, "step");
        if (r.bad)
            break;
        rd_rest(&r, m);
        if (m->data_len == 0 || m->data_len > MSG_MAX_DATA)
            r.bad = "data length";
        break;
    case MSG_PROBE_DONE:
        m->seq = rd_u32(&r, "step");
        m->len = rd_u64(&r, "bytes");
        m->span_bytes = rd_u64(&r, "span bytes");
        m->span_us = rd_u64(&r, "span time");
        if (!r.bad && m->span_bytes > m->len)
            r.bad = "span bytes";
        break;
    default:
        return df_net(err, peer, "protocol error: unknown message type %u",
                      (unsigned)type);
    }
    if (r.bad)
        return df_net(err, peer, "protocol error: %s: bad %s",
                      msg_type_name(type), r.bad);
    if (r.pos != r.len)
        return df_net(err, peer, "protocol error: %s: %zu trailing bytes",
                      msg_type_name(type), r.len - r.pos);
    return 0;
}

void msg_enc_tree_nodes(struct msg_buf *b, uint64_t first, uint32_t n,
                        const void *data, size_t len)
{
    msg_buf_reset(b);
    msg_put_u64(b, first);
    msg_put_u32(b, n);
    msg_put_bytes(b, data, len);
}

void msg_leaf_hash(const struct msg *m, uint32_t i, uint64_t *leaf,
                   uint8_t *hash)
{
    const uint8_t *p = m->data + (size_t)i * 24;
    *leaf = get_le64(p);
    memcpy(hash, p + 8, 16);
}

void msg_range(const struct msg *m, uint32_t i, uint64_t *off,
               uint64_t *len, uint8_t *state)
{
    size_t rec = m->type == MSG_MAP_REPLY ? 17 : 16;
    const uint8_t *p = m->data + (size_t)i * rec;
    *off = get_le64(p);
    *len = get_le64(p + 8);
    if (state)
        *state = rec == 17 ? p[16] : 0;
}

int msg_negotiate(const struct msg *h, uint32_t my_features,
                  const char *peer, uint16_t *version, uint32_t *features,
                  struct df_error *err)
{
    uint16_t lo = h->ver_min > MSG_VERSION_MIN ? h->ver_min
                                               : MSG_VERSION_MIN;
    uint16_t hi = h->ver_max < MSG_VERSION_MAX ? h->ver_max
                                               : MSG_VERSION_MAX;
    if (lo > hi)
        return df_net(err, peer, "protocol version mismatch: this "
                      "diskferry speaks version %u..%u, the remote (%s) "
                      "speaks %u..%u; install matching versions",
                      MSG_VERSION_MIN, MSG_VERSION_MAX, h->s1,
                      h->ver_min, h->ver_max);
    *version = hi;
    *features = my_features & h->features;
    return 0;
}

int msg_error_to_df(const struct msg *m, struct df_error *err)
{
    return df_fail(err, (enum df_cat)m->cat, 0, m->s1, -1, "%s", m->s2);
}
