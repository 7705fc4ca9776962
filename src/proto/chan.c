/*
 * chan.c: framed, optionally sealed, rate-limited I/O (see chan.h).
 */
#include "chan.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg.h"
#include "transport/bwlimit.h"
#include "util/bytes.h"
#include "util/file.h"

void chan_init(struct chan *c, int rfd, int wfd, const char *peer)
{
    memset(c, 0, sizeof(*c));
    c->rfd = rfd;
    c->wfd = wfd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    pthread_mutex_init(&c->wlock, NULL);
    df_error_init(&c->werr);
    c->rd_timeout_ms = c->wr_timeout_ms = -1;
}

void chan_set_timeouts(struct chan *c, int rd_ms, int wr_ms)
{
    c->rd_timeout_ms = rd_ms;
    c->wr_timeout_ms = wr_ms;
    if (wr_ms >= 0 && c->wfd >= 0) {
        int fl = fcntl(c->wfd, F_GETFL);
        if (fl >= 0)
            fcntl(c->wfd, F_SETFL, fl | O_NONBLOCK);
    }
}

void chan_release(struct chan *c)
{
    if (c->rfd >= 0)
        close(c->rfd);
    if (c->wfd >= 0 && c->wfd != c->rfd)
        close(c->wfd);
    c->rfd = c->wfd = -1;
    EVP_CIPHER_CTX_free(c->ectx);
    EVP_CIPHER_CTX_free(c->dctx);
    c->ectx = c->dctx = NULL;
    free(c->sbuf);
    c->sbuf = NULL;
    pthread_mutex_destroy(&c->wlock);
}

int chan_seal(struct chan *c, const uint8_t key[32], uint32_t send_id,
              uint32_t recv_id, struct df_error *err)
{
    c->ectx = EVP_CIPHER_CTX_new();
    c->dctx = EVP_CIPHER_CTX_new();
    if (!c->ectx || !c->dctx ||
        !EVP_EncryptInit_ex(c->ectx, EVP_aes_256_gcm(), NULL, key, NULL) ||
        !EVP_DecryptInit_ex(c->dctx, EVP_aes_256_gcm(), NULL, key, NULL))
        return df_net(err, c->peer, "cannot set up AES-256-GCM");
    c->sealed = true;
    c->send_id = send_id;
    c->recv_id = recv_id;
    c->send_ctr = c->recv_ctr = 0;
    return 0;
}

int chan_write_full(int fd, const void *buf, size_t len, int timeout_ms)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (fd_wait(fd, POLLOUT, timeout_ms) < 0)
                    return -1;
                continue;
            }
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

long chan_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        /* poll first: a blocking fd then never blocks in read(2) */
        if (timeout_ms >= 0 && fd_wait(fd, POLLIN, timeout_ms) < 0)
            return -1;
        ssize_t r = read(fd, p + got, len - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (fd_wait(fd, POLLIN, timeout_ms) < 0)
                    return -1;
                continue;
            }
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

static void chan_nonce(uint8_t nonce[12], uint32_t id, uint64_t ctr)
{
    put_le32(nonce, id);
    put_le64(nonce + 4, ctr);
}

/* An unsealed payload this large is not copied into the frame buffer. */
#define CHAN_DIRECT_MIN (64u * 1024)

static int chan_write_limited(struct chan *c, const uint8_t *p, size_t len,
                              struct df_error *err)
{
    while (len) {
        size_t n = c->bw ? (len < BWLIMIT_CHUNK ? len : BWLIMIT_CHUNK)
                         : len;
        bwlimit_take(c->bw, n);
        if (chan_write_full(c->wfd, p, n, c->wr_timeout_ms) < 0) {
            if (errno == ETIMEDOUT) {
                c->timed_out = true;
                return df_net(err, c->peer, "no answer for %d s",
                              (c->wr_timeout_ms + 999) / 1000);
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return df_net(err, c->peer, "connection closed by the "
                              "remote side");
            return df_fail(err, DF_NET, errno, c->peer, -1,
                           "send failed");
        }
        c->bytes_out += n;
        p += n;
        len -= n;
    }
    return 0;
}

int chan_send(struct chan *c, uint8_t type, const void *hdr, size_t hlen,
              const void *data, size_t dlen, struct df_error *err)
{
    int ret = -1;
    size_t plen = hlen + dlen;
    if (plen > MSG_MAX_PAYLOAD)
        return df_net(err, c->peer, "internal: frame of %zu bytes", plen);
    pthread_mutex_lock(&c->wlock);
    if (c->wdead) {
        if (c->werr.cat != DF_OK)
            df_error_copy(err, &c->werr);
        else
            df_net(err, c->peer, "connection closed after an earlier "
                   "error");
        goto out;
    }
    /* unsealed, a large payload: written from where it is, after the
     * length, type and header (the lock keeps them together) */
    bool direct = !c->sealed && dlen >= CHAN_DIRECT_MIN;
    size_t total = 4 + 1 + (direct ? hlen : plen) +
                   (c->sealed ? MSG_TAG_LEN : 0);
    if (total > c->scap) {
        uint8_t *nb = realloc(c->sbuf, total);
        if (!nb) {
            df_net(err, c->peer, "out of memory for a frame");
            goto out;
        }
        c->sbuf = nb;
        c->scap = total;
    }
    uint8_t *f = c->sbuf;
    f[4] = type;
    if (hlen)
        memcpy(f + 5, hdr, hlen);
    if (!c->sealed) {
        put_le32(f, (uint32_t)plen);
        if (direct) {
            ret = chan_write_limited(c, f, total, err);
            if (ret == 0)
                ret = chan_write_limited(c, data, dlen, err);
            goto written;
        }
        if (dlen)
            memcpy(f + 5 + hlen, data, dlen);
        ret = chan_write_limited(c, f, total, err);
        goto written;
    }
    uint32_t clen = (uint32_t)(1 + plen + MSG_TAG_LEN);
    put_le32(f, clen);
    uint8_t nonce[12];
    int outl = 0, dl = 0, fl = 0;
    chan_nonce(nonce, c->send_id, c->send_ctr++);
    EVP_CIPHER_CTX *x = c->ectx;
    /* type and header in place, the payload encrypted from where it is
     * straight into the frame (GCM streams across the calls) */
    if (!EVP_EncryptInit_ex(x, NULL, NULL, NULL, nonce) ||
        !EVP_EncryptUpdate(x, NULL, &outl, f, 4) ||
        !EVP_EncryptUpdate(x, f + 4, &outl, f + 4, (int)(1 + hlen)) ||
        (dlen && !EVP_EncryptUpdate(x, f + 4 + outl, &dl, data,
                                    (int)dlen)) ||
        !EVP_EncryptFinal_ex(x, f + 4 + outl + dl, &fl) ||
        !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, MSG_TAG_LEN,
                             f + 5 + plen)) {
        df_net(err, c->peer, "AES-GCM encryption failed");
        goto out;
    }
    ret = chan_write_limited(c, f, total, err);
written:
    if (ret < 0) {
        c->wdead = true;
        df_error_copy(&c->werr, err);
    }
out:
    pthread_mutex_unlock(&c->wlock);
    return ret;
}

int chan_recv(struct chan *c, uint8_t *type, uint8_t **bufp, size_t *lenp,
              struct df_error *err)
{
    uint8_t hdr[5];
    uint8_t *buf = NULL;
    *bufp = NULL;
    if (c->rdead)
        return df_net(err, c->peer, "connection closed after an earlier "
                      "error");
    long r = chan_read_full(c->rfd, hdr, c->sealed ? 4 : 5,
                            c->rd_timeout_ms);
    if (r == 0)
        return 1;
    if (r < 0)
        goto ioerr;
    if (r < (c->sealed ? 4 : 5))
        goto trunc;
    c->bytes_in += (uint64_t)r;
    uint32_t len = get_le32(hdr);
    if (!c->sealed) {
        if (len > MSG_MAX_PAYLOAD) {
            c->rdead = true;
            return df_net(err, c->peer, "protocol error: frame of %u "
                          "bytes over the limit of %u (not a diskferry "
                          "peer?)", len, (unsigned)MSG_MAX_PAYLOAD);
        }
        buf = malloc(len ? len : 1);
        if (!buf)
            return df_net(err, c->peer, "out of memory for a frame");
        r = chan_read_full(c->rfd, buf, len, c->rd_timeout_ms);
        if (r < 0)
            goto ioerr;
        if ((uint32_t)r < len)
            goto trunc;
        c->bytes_in += len;
        *type = hdr[4];
        *bufp = buf;
        *lenp = len;
        return 0;
    }
    if (len < 1 + MSG_TAG_LEN || len > 1 + MSG_MAX_PAYLOAD + MSG_TAG_LEN) {
        c->rdead = true;
        return df_net(err, c->peer, "protocol error: sealed frame of %u "
                      "bytes outside %u..%u", len, 1 + MSG_TAG_LEN,
                      (unsigned)(1 + MSG_MAX_PAYLOAD + MSG_TAG_LEN));
    }
    buf = malloc(len);
    if (!buf)
        return df_net(err, c->peer, "out of memory for a frame");
    r = chan_read_full(c->rfd, buf, len, c->rd_timeout_ms);
    if (r < 0)
        goto ioerr;
    if ((uint32_t)r < len)
        goto trunc;
    c->bytes_in += len;
    uint8_t nonce[12];
    int outl = 0;
    size_t clen = len - MSG_TAG_LEN;
    chan_nonce(nonce, c->recv_id, c->recv_ctr++);
    EVP_CIPHER_CTX *x = c->dctx;
    if (!EVP_DecryptInit_ex(x, NULL, NULL, NULL, nonce) ||
        !EVP_DecryptUpdate(x, NULL, &outl, hdr, 4) ||
        !EVP_DecryptUpdate(x, buf, &outl, buf, (int)clen) ||
        !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, MSG_TAG_LEN,
                             buf + clen) ||
        EVP_DecryptFinal_ex(x, buf + outl, &outl) <= 0) {
        free(buf);
        c->rdead = true;
        return df_net(err, c->peer, "frame authentication failed "
                      "(tampered, replayed or wrong key): connection "
                      "refused");
    }
    *type = buf[0];
    memmove(buf, buf + 1, clen - 1);
    *bufp = buf;
    *lenp = clen - 1;
    return 0;
trunc:
    free(buf);
    c->rdead = true;
    return df_net(err, c->peer, "connection closed by the remote side "
                  "(truncated frame)");
ioerr:
    free(buf);
    c->rdead = true;
    if (errno == ETIMEDOUT) {
        c->timed_out = true;
        return df_net(err, c->peer, "no answer for %d s",
                      (c->rd_timeout_ms + 999) / 1000);
    }
    return df_fail(err, DF_NET, errno, c->peer, -1, "receive failed");
}
