/*
 * manifest.c: reading and writing manifests and state records
 * (manifest.h has the layout).
 */
#define _GNU_SOURCE
#include "track/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bytes.h"
#include "util/file.h"
#include "util/overflow.h"

/* A manifest of a 64 TiB disk with SHA-256 is 32 GiB: refuse beyond. */
#define MANIFEST_MAX_FILE (34ull << 30)

void manifest_release(struct manifest *m)
{
    htree_release(&m->tree);
}

/* The digest the leaves make (util/hash.h). */
void manifest_leaves_digest(const struct htree *t, struct digest *out)
{
    struct digest_tree dt;
    digest_tree_init(&dt, t->alg);
    for (uint64_t i = 0; i < t->nleaves;) {
        uint64_t z = htree_zero_run(t, i, t->nleaves - i);
        if (z) {
            digest_tree_add_zero_leaves(&dt, z);
            i += z;
            continue;
        }
        digest_tree_add_leaf(&dt, htree_leaf(t, i));
        i++;
    }
    digest_tree_final(&dt, t->size, out);
}

int manifest_parse(const uint8_t *buf, uint64_t len, const char *name,
                   struct manifest *m, struct df_error *err)
{
    memset(m, 0, sizeof(*m));
    if (len < MANIFEST_HDR_LEN || memcmp(buf, MANIFEST_MAGIC, 8))
        return df_corrupt(err, name, 0, "not a diskferry manifest");
    if (get_le32(buf + 8) != MANIFEST_VERSION)
        return df_corrupt(err, name, 8, "manifest version %u is not "
                          "supported", get_le32(buf + 8));
    uint32_t alg = get_le32(buf + 12);
    if (alg != DIGEST_XXH128 && alg != DIGEST_SHA256)
        return df_corrupt(err, name, 12, "unknown hash algorithm %u", alg);
    uint64_t size = get_le64(buf + 16), nleaves = get_le64(buf + 24);
    uint64_t want = size ? div_round_up(size, DIGEST_LEAF_SIZE) : 1;
    if (get_le32(buf + 32) != DIGEST_LEAF_SIZE)
        return df_corrupt(err, name, 32, "leaf size %u is not 65536",
                          get_le32(buf + 32));
    if (nleaves != want)
        return df_corrupt(err, name, 24, "%llu leaves for a disk of %llu "
                          "bytes", (unsigned long long)nleaves,
                          (unsigned long long)size);
    uint32_t ilen = get_le32(buf + 36), slen = get_le32(buf + 40);
    uint32_t llen = get_le32(buf + 44);
    if (ilen > MANIFEST_MAX_STR || slen > MANIFEST_MAX_STR ||
        llen > MANIFEST_MAX_STR)
        return df_corrupt(err, name, 36, "name longer than %d bytes",
                          MANIFEST_MAX_STR);
    size_t hl = digest_len((enum digest_alg)alg);
    uint64_t start = MANIFEST_HDR_LEN + (uint64_t)ilen + slen + llen;
    if (len < start + hl)
        return df_corrupt(err, name, len, "manifest cut short");
    uint8_t check[DIGEST_MAX_LEN];
    digest_buf((enum digest_alg)alg, buf, (size_t)(len - hl), check);
    if (memcmp(check, buf + len - hl, hl))
        return df_corrupt(err, name, len - hl, "manifest checksum does "
                          "not match: the file was damaged or edited");
    /* Every run must fit in what is left before the check and tell at
     * most the leaves left.  The tree is mapped untouched: a huge leaf
     * count costs address space (refused by mmap past what fits), not
     * memory. */
    uint64_t end = len - hl, pos = start, told = 0;
    if (htree_init(&m->tree, (enum digest_alg)alg, size, err) < 0)
        return -1;
    while (told < nleaves) {
        uint64_t n;
        if (pos >= end)
            goto cut;
        uint8_t kind = buf[pos];
        if (kind == 0) {
            if (end - pos < 9)
                goto cut;
            n = get_le64(buf + pos + 1);
            pos += 9;
            if (n == 0 || n > nleaves - told)
                goto bad_run;
        } else if (kind == 1) {
            if (end - pos < 5)
                goto cut;
            n = get_le32(buf + pos + 1);
            pos += 5;
            if (n == 0 || n > nleaves - told || n > (end - pos) / hl)
                goto bad_run;
            for (uint64_t i = 0; i < n; i++) {
                const uint8_t *h = buf + pos + i * hl;
                if (htree_is_zero(&m->tree, h))
                    goto bad_run;
                memcpy(htree_leaf_slot(&m->tree, told + i, 1), h, hl);
            }
            pos += n * hl;
        } else {
            manifest_release(m);
            return df_corrupt(err, name, pos, "unknown leaf run kind %u",
                              kind);
        }
        told += n;
    }
    if (pos != end) {
        manifest_release(m);
        return df_corrupt(err, name, pos, "%llu bytes after the last leaf",
                          (unsigned long long)(end - pos));
    }
    const uint8_t *p = buf + MANIFEST_HDR_LEN;
    memcpy(m->id, p, ilen);
    m->id[ilen] = '\0';
    memcpy(m->src, p + ilen, slen);
    m->src[slen] = '\0';
    memcpy(m->src_layer, p + ilen + slen, llen);
    m->src_layer[llen] = '\0';
    m->digest.alg = (enum digest_alg)alg;
    m->digest.len = hl;
    memcpy(m->digest.bytes, buf + 48, hl);
    struct digest d;
    manifest_leaves_digest(&m->tree, &d);
    if (memcmp(d.bytes, m->digest.bytes, hl)) {
        manifest_release(m);
        return df_corrupt(err, name, 48, "the manifest's digest is not the "
                          "one its leaves make");
    }
    if (htree_build(&m->tree, err) < 0) {
        manifest_release(m);
        return -1;
    }
    return 0;
cut:
    manifest_release(m);
    return df_corrupt(err, name, pos, "manifest cut short: %llu of %llu "
                      "leaves told", (unsigned long long)told,
                      (unsigned long long)nleaves);
bad_run:
    manifest_release(m);
    return df_corrupt(err, name, pos, "bad run of leaves (at leaf %llu)",
                      (unsigned long long)told);
}

int manifest_read(int dirfd, const char *name, struct manifest *m,
                  struct df_error *err)
{
    struct stat st;
    int fd = openat(dirfd >= 0 ? dirfd : AT_FDCWD, name,
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        return df_io(err, name, errno, "cannot open the manifest");
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return df_corrupt(err, name, 0, "not a regular file");
    }
    if ((uint64_t)st.st_size > MANIFEST_MAX_FILE) {
        close(fd);
        return df_corrupt(err, name, 0, "too large for a manifest");
    }
    uint64_t len = (uint64_t)st.st_size;
    uint8_t *buf = malloc(len ? (size_t)len : 1);
    if (!buf) {
        close(fd);
        return df_io(err, name, ENOMEM, "cannot read the manifest");
    }
    uint64_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, (size_t)(len - got), (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return df_io(err, name, e, "cannot read the manifest");
        }
        got += (uint64_t)r;
    }
    close(fd);
    int rc = manifest_parse(buf, len, name, m, err);
    free(buf);
    return rc;
}

int manifest_write(int dirfd, const char *name, const struct manifest *m,
                   struct df_error *err)
{
    const struct htree *t = &m->tree;
    size_t ilen = strlen(m->id), slen = strlen(m->src);
    size_t llen = strlen(m->src_layer);
    uint8_t hdr[MANIFEST_HDR_LEN];
    char tmp[PATH_MAX];
    int dfd = dirfd >= 0 ? dirfd : AT_FDCWD;
    int fd = -1;

    if (ilen > MANIFEST_MAX_STR || slen > MANIFEST_MAX_STR ||
        llen > MANIFEST_MAX_STR)
        return df_usage(err, "%s: name too long for a manifest", name);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", name, (long)getpid()) >=
        (int)sizeof(tmp))
        return df_usage(err, "%s: name too long", name);
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, MANIFEST_MAGIC, 8);
    put_le32(hdr + 8, MANIFEST_VERSION);
    put_le32(hdr + 12, (uint32_t)t->alg);
    put_le64(hdr + 16, t->size);
    put_le64(hdr + 24, t->nleaves);
    put_le32(hdr + 32, DIGEST_LEAF_SIZE);
    put_le32(hdr + 36, (uint32_t)ilen);
    put_le32(hdr + 40, (uint32_t)slen);
    put_le32(hdr + 44, (uint32_t)llen);
    memcpy(hdr + 48, m->digest.bytes, t->hlen);

    /* The check is over everything before it: build it in one buffer.
     * Worst case: a run header per leaf. */
    size_t cap = MANIFEST_HDR_LEN + ilen + slen + llen + t->hlen;
    for (uint64_t i = 0; i < t->nleaves;) {
        uint64_t z = htree_zero_run(t, i, t->nleaves - i);
        cap += z ? 9 : 5 + t->hlen;     /* at most: runs of one */
        i += z ? z : 1;
    }
    uint8_t *buf = malloc(cap);
    if (!buf)
        return df_io(err, name, ENOMEM, "cannot write the manifest");
    memcpy(buf, hdr, MANIFEST_HDR_LEN);
    memcpy(buf + MANIFEST_HDR_LEN, m->id, ilen);
    memcpy(buf + MANIFEST_HDR_LEN + ilen, m->src, slen);
    memcpy(buf + MANIFEST_HDR_LEN + ilen + slen, m->src_layer, llen);
    size_t body = MANIFEST_HDR_LEN + ilen + slen + llen;
    for (uint64_t i = 0; i < t->nleaves;) {
        uint64_t j = i + htree_zero_run(t, i, t->nleaves - i);
        bool zero = j > i;
        while (!zero && j < t->nleaves && j - i < UINT32_MAX &&
               !htree_zero_run(t, j, 1))
            j++;
        if (zero) {
            buf[body] = 0;
            put_le64(buf + body + 1, j - i);
            body += 9;
        } else {
            buf[body] = 1;
            put_le32(buf + body + 1, (uint32_t)(j - i));
            memcpy(buf + body + 5, t->level[0] + i * t->hlen,
                   (size_t)(j - i) * t->hlen);
            body += 5 + (size_t)(j - i) * t->hlen;
        }
        i = j;
    }
    digest_buf(t->alg, buf, body, buf + body);

    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        free(buf);
        return df_io(err, tmp, e, "cannot create the manifest");
    }
    if (fd_write_all(fd, buf, body + t->hlen) < 0 || fsync(fd) < 0) {
        int e = errno;
        free(buf);
        close(fd);
        unlinkat(dfd, tmp, 0);
        return df_io(err, tmp, e, "cannot write the manifest");
    }
    free(buf);
    close(fd);
    if (renameat(dfd, tmp, dfd, name) < 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        return df_io(err, name, e, "cannot write the manifest");
    }
    if (dirfd >= 0)
        fsync(dirfd);
    return 0;
}

void manifest_record_name(const char *id, char *out, size_t len)
{
    uint8_t h[DIGEST_MAX_LEN];
    digest_buf(DIGEST_XXH128, id, strlen(id), h);
    snprintf(out, len, "record-%02x%02x%02x%02x%02x%02x%02x%02x"
             "%02x%02x%02x%02x%02x%02x%02x%02x.dfm", h[0], h[1], h[2], h[3],
             h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
             h[14], h[15]);
}
