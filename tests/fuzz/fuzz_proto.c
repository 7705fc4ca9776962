/*
 * fuzz_proto.c: the fuzzer plays the client: its bytes are what `serve`
 * reads on stdin (framing, decoding, the session loop, decompression,
 * the applier), with the destination replaced by a sink that only checks
 * bounds.  Sources are confined to a --root holding one 64 KiB image
 * (a.img), TCP is refused.
 * Each message type's decoder is also fed the input directly.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/msg.h"
#include "proto/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int null_write(struct sink *s, uint64_t off, const void *buf,
                      size_t len, struct df_error *err)
{
    (void)buf;
    if (off > s->size || len > s->size - off)
        return df_io(err, s->name, 0, "write past the end");
    return 0;
}

static int null_zero(struct sink *s, uint64_t off, uint64_t len,
                     struct df_error *err)
{
    if (off > s->size || len > s->size - off)
        return df_io(err, s->name, 0, "zero past the end");
    return 0;
}

static int null_finish(struct sink *s, struct df_error *err)
{
    (void)s;
    (void)err;
    return 0;
}

static int null_digest(struct sink *s, uint64_t size, enum digest_alg alg,
                       unsigned threads, struct digest *out,
                       struct df_error *err)
{
    (void)threads;
    if (size != s->size)
        return df_fail(err, DF_VERIFY, 0, s->name, -1, "size differs");
    memset(out, 0, sizeof(*out));
    out->alg = alg;
    out->len = digest_len(alg);
    return 0;
}

static void null_free(struct sink *s)
{
    free(s);
}

static const struct sink_ops null_ops = {
    .name = "null",
    .write = null_write,
    .zero = null_zero,
    .finish = null_finish,
    .digest = null_digest,
    .free = null_free,
};

static struct sink *null_open(const char *path, uint64_t size,
                              struct df_error *err)
{
    struct sink *s = calloc(1, sizeof(*s));
    if (!s) {
        df_io(err, path, 0, "out of memory");
        return NULL;
    }
    s->ops = &null_ops;
    s->size = size;
    strcpy(s->name, "null");
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct msg m;
    static char root[] = "/tmp/fuzz_proto_rootXXXXXX";
    static bool have_root;
    struct df_error err;

    for (uint8_t t = 0; t <= MSG_TYPE_MAX + 1; t++) {
        df_error_init(&err);
        msg_decode(t, data, size, &m, "fuzz", &err);
    }
    if (!have_root && mkdtemp(root)) {
        /* one small source the fuzzer may OPEN_SRC, MAP and stream */
        char path[sizeof(root) + 8];
        snprintf(path, sizeof(path), "%s/a.img", root);
        FILE *f = fopen(path, "wb");
        if (f) {
            for (int i = 0; i < 64 * 1024; i++)
                fputc(i < 4096 ? 0 : "diskferry"[i % 9], f);
            fclose(f);
        }
        have_root = true;
    }

    int in = memfd_create("fuzz_proto", MFD_CLOEXEC);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0 || write(in, data, size) != (ssize_t)size ||
        lseek(in, 0, SEEK_SET) != 0) {
        if (in >= 0)
            close(in);
        if (out >= 0)
            close(out);
        return 0;
    }
    struct serve_opts o;
    memset(&o, 0, sizeof(o));
    o.root = root;
    o.no_tcp = true;
    o.no_bwlimit = true;
    o.threads = 1;
    o.open_dst_hook = null_open;
    df_error_init(&err);
    serve_run(in, out, &o, &err);      /* takes both fds */
    return 0;
}
