/*
 * test_proto.c: message encoding and hostile decoding, sealed channels
 * (wrong key, tampering, replay), compression round trips, the sender
 * and session over a socketpair, ssh quoting and splitting, the resume
 * journal.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/chan.h"
#include "proto/compress.h"
#include "proto/journal.h"
#include "proto/msg.h"
#include "proto/sender.h"
#include "proto/session.h"
#include "test.h"
#include "transport/bwlimit.h"
#include "transport/transport.h"
#include "util/bytes.h"
#include "util/progress.h"

static struct msg m;        /* large: keep off the stack */

static int dec(uint8_t type, const struct msg_buf *b)
{
    struct df_error err;
    df_error_init(&err);
    return msg_decode(type, b->p, b->len, &m, "peer", &err);
}

static void test_roundtrip(void)
{
    struct msg_buf b;
    struct df_error err;
    msg_buf_init(&b);

    msg_enc_hello(&b, MSG_FEAT_ALL);
    CHECK(dec(MSG_HELLO, &b) == 0);
    CHECK(m.magic == MSG_MAGIC && m.ver_min == MSG_VERSION_MIN &&
          m.features == MSG_FEAT_ALL);

    msg_enc_open(&b, OPEN_CREATE | OPEN_RESUME, 1ull << 40, 77, "qcow2",
                 "/srv/vm 1.img", true);
    CHECK(dec(MSG_OPEN_DST, &b) == 0);
    CHECK(m.flags == (OPEN_CREATE | OPEN_RESUME) && m.size == 1ull << 40);
    CHECK(m.src_id == 77 && !strcmp(m.s1, "qcow2"));
    CHECK(!strcmp(m.s2, "/srv/vm 1.img"));

    /* --fsync and the read-back's digest name; a flag or an option
     * kind past the known ones is refused */
    {
        uint8_t kinds[1] = { OPT_VERIFY };
        const char *vals[1] = { "xxh128" };
        msg_enc_open(&b, OPEN_CREATE | OPEN_FSYNC, 4096, 0, "raw", "/d",
                     true);
        msg_enc_open_opts(&b, 1, kinds, vals);
        CHECK(dec(MSG_OPEN_DST, &b) == 0);
        CHECK(m.flags == (OPEN_CREATE | OPEN_FSYNC));
        uint8_t kind = 0;
        char val[MSG_MAX_STR + 1];
        size_t pos = 0;
        CHECK(msg_open_opt(&m, &pos, &kind, val) && kind == OPT_VERIFY &&
              !strcmp(val, "xxh128"));
        kinds[0] = OPT_VERIFY + 1;
        msg_enc_open(&b, OPEN_CREATE, 4096, 0, "raw", "/d", true);
        msg_enc_open_opts(&b, 1, kinds, vals);
        CHECK(dec(MSG_OPEN_DST, &b) < 0);
        msg_enc_open(&b, OPEN_FLAGS_ALL + 1, 4096, 0, "raw", "/d", true);
        CHECK(dec(MSG_OPEN_DST, &b) < 0);
    }

    msg_enc_write_hdr(&b, 5, 4096, COMP_NONE, 3);
    msg_put_bytes(&b, "abc", 3);
    CHECK(dec(MSG_WRITE, &b) == 0);
    CHECK(m.seq == 5 && m.off == 4096 && m.raw_len == 3 &&
          m.data_len == 3 && !memcmp(m.data, "abc", 3));

    /* raw length disagreeing with the payload */
    msg_enc_write_hdr(&b, 5, 4096, COMP_NONE, 4);
    msg_put_bytes(&b, "abc", 3);
    CHECK(dec(MSG_WRITE, &b) < 0);
    /* offset + length overflowing */
    msg_enc_write_hdr(&b, 5, UINT64_MAX - 1, COMP_NONE, 3);
    msg_put_bytes(&b, "abc", 3);
    CHECK(dec(MSG_WRITE, &b) < 0);
    /* unknown compression */
    msg_enc_write_hdr(&b, 5, 0, 9, 3);
    msg_put_bytes(&b, "abc", 3);
    CHECK(dec(MSG_WRITE, &b) < 0);

    msg_enc_zero(&b, 1, 10, 0);
    CHECK(dec(MSG_ZERO, &b) < 0);               /* empty range */
    msg_enc_zero(&b, 1, 10, 20);
    CHECK(dec(MSG_ZERO, &b) == 0 && m.len == 20);
    msg_put_u8(&b, 0);
    CHECK(dec(MSG_ZERO, &b) < 0);               /* trailing byte */

    /* every prefix of a valid message is refused, never read past */
    msg_enc_open(&b, 0, 1, 2, "raw", "/x", true);
    for (size_t n = 0; n < b.len; n++) {
        df_error_init(&err);
        CHECK(msg_decode(MSG_OPEN_DST, b.p, n, &m, "peer", &err) < 0);
        CHECK(err.cat == DF_NET);
    }

    /* a string with a NUL inside */
    msg_buf_reset(&b);
    msg_put_u32(&b, 0);
    msg_put_u64(&b, 1);
    msg_put_u64(&b, 1);
    msg_put_str(&b, "raw");
    msg_put_u16(&b, 3);
    msg_put_bytes(&b, "a\0b", 3);
    CHECK(dec(MSG_OPEN_DST, &b) < 0);

    /* range counts that do not fit the payload */
    msg_buf_reset(&b);
    msg_put_u32(&b, 1000);
    msg_put_u8(&b, 1);
    CHECK(dec(MSG_RESUME_RANGES, &b) < 0);
    CHECK(dec(MSG_LEAF_HASHES, &b) < 0);

    /* LEAF_HASHES: n records of leaf u64 + 16 bytes, the last flag */
    {
        uint8_t h[16], got[16];
        uint64_t leaf;
        for (unsigned i = 0; i < 16; i++)
            h[i] = (uint8_t)(i * 17);
        msg_buf_reset(&b);
        msg_put_u32(&b, 2);
        msg_put_u8(&b, 1);
        msg_put_u64(&b, 3);
        msg_put_bytes(&b, h, 16);
        msg_put_u64(&b, 9);
        msg_put_bytes(&b, h, 16);
        CHECK(dec(MSG_LEAF_HASHES, &b) == 0 && m.n == 2 && m.last);
        msg_leaf_hash(&m, 1, &leaf, got);
        CHECK(leaf == 9 && !memcmp(got, h, 16));
        b.len--;                        /* one byte short */
        CHECK(dec(MSG_LEAF_HASHES, &b) < 0);
        CHECK(!strcmp(msg_type_name(MSG_LEAF_HASHES), "LEAF_HASHES"));
    }

    /* error message travels with its category */
    df_error_init(&err);
    df_refuse(&err, "/dev/vg0/vm", "refusing to write: mounted on /srv");
    msg_enc_error(&b, &err);
    CHECK(dec(MSG_ERROR, &b) == 0);
    CHECK(m.cat == DF_REFUSED && !strcmp(m.s1, "/dev/vg0/vm"));
    CHECK(!strcmp(m.s2, "refusing to write: mounted on /srv"));

    CHECK(dec(0, &b) < 0);
    CHECK(dec(200, &b) < 0);
    msg_buf_release(&b);
}

/* PROBE, PROBE_DATA, PROBE_DONE (the link probe): fields and limits. */
static void test_probe_msgs(void)
{
    struct msg_buf b;
    msg_buf_init(&b);

    msg_enc_probe(&b, 7, PROBE_UP, 1ull << 33, 500);
    CHECK(dec(MSG_PROBE, &b) == 0);
    CHECK(m.seq == 7 && m.flags == PROBE_UP && m.len == 1ull << 33 &&
          m.probe_ms == 500);
    msg_enc_probe(&b, 1, PROBE_DOWN + 1, 0, 500);
    CHECK(dec(MSG_PROBE, &b) < 0);                  /* no such direction */
    msg_enc_probe(&b, 1, PROBE_ECHO, 0, 0);
    CHECK(dec(MSG_PROBE, &b) < 0);                  /* no time limit */
    msg_enc_probe(&b, 1, PROBE_ECHO, 0, MSG_PROBE_MAX_MS + 1);
    CHECK(dec(MSG_PROBE, &b) < 0);
    msg_put_u8(&b, 0);
    CHECK(dec(MSG_PROBE, &b) < 0);                  /* trailing */

    msg_buf_reset(&b);
    msg_put_u32(&b, 3);
    CHECK(dec(MSG_PROBE_DATA, &b) < 0);             /* no data */
    msg_put_bytes(&b, "xyz", 3);
    CHECK(dec(MSG_PROBE_DATA, &b) == 0);
    CHECK(m.seq == 3 && m.data_len == 3 && !memcmp(m.data, "xyz", 3));

    msg_enc_probe_done(&b, 9, 1000, 900, 12345);
    CHECK(dec(MSG_PROBE_DONE, &b) == 0);
    CHECK(m.seq == 9 && m.len == 1000 && m.span_bytes == 900 &&
          m.span_us == 12345);
    msg_enc_probe_done(&b, 9, 10, 11, 1);
    CHECK(dec(MSG_PROBE_DONE, &b) < 0);             /* span > bytes */
    b.len--;
    CHECK(dec(MSG_PROBE_DONE, &b) < 0);             /* short */
    CHECK(!strcmp(msg_type_name(MSG_PROBE_DONE), "PROBE_DONE"));
    msg_buf_release(&b);
}

static void test_negotiate(void)
{
    struct df_error err;
    uint16_t v;
    uint32_t f;
    memset(&m, 0, sizeof(m));
    m.ver_min = 1;
    m.ver_max = 7;
    m.features = MSG_FEAT_ZSTD | (1u << 30);
    df_error_init(&err);
    CHECK(msg_negotiate(&m, MSG_FEAT_ALL, "h", &v, &f, &err) == 0);
    CHECK(v == MSG_VERSION_MAX && f == MSG_FEAT_ZSTD);
    m.ver_min = 5;
    strcpy(m.s1, "diskferry 9.0");
    CHECK(msg_negotiate(&m, MSG_FEAT_ALL, "h", &v, &f, &err) < 0);
    CHECK(err.cat == DF_NET && strstr(err.msg, "5..7") &&
          strstr(err.msg, "1..1"));
}

static void test_compress(void)
{
    static uint8_t src[1 << 20], dst[1 << 20];
    uint8_t *z = malloc(comp_bound(sizeof(src)));
    struct comp_ctl ctl;
    struct comp_worker w;
    struct df_error err;
    size_t n;
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)("hello world "[i % 12]);
    enum comp_mode modes[] = {COMPRESS_AUTO, COMPRESS_ZSTD, COMPRESS_LZ4};
    for (int k = 0; k < 3; k++) {
        comp_ctl_init(&ctl, modes[k], 0);
        comp_worker_init(&w);
        int c = comp_block(&ctl, &w, src, sizeof(src), z,
                           comp_bound(sizeof(src)), &n);
        CHECK(c == (modes[k] == COMPRESS_LZ4 ? COMP_LZ4 : COMP_ZSTD));
        CHECK(n < sizeof(src) / 10);
        df_error_init(&err);
        CHECK(comp_unblock(&w, (uint8_t)c, z, n, dst, sizeof(dst), "p",
                           &err) == 0);
        CHECK(!memcmp(src, dst, sizeof(src)));
        /* wrong declared size, truncated input, flipped bits */
        CHECK(comp_unblock(&w, (uint8_t)c, z, n, dst, sizeof(dst) - 1, "p",
                           &err) < 0);
        CHECK(comp_unblock(&w, (uint8_t)c, z, n / 2, dst, sizeof(dst), "p",
                           &err) < 0);
        comp_worker_release(&w);
    }
    /* auto: random data is sent raw and marks the stream incompressible;
     * compressible data after it is noticed again at once (probe). */
    srand(1);
    for (size_t i = 0; i < sizeof(src); i++)
        dst[i] = (uint8_t)rand();
    comp_ctl_init(&ctl, COMPRESS_AUTO, 0);
    comp_worker_init(&w);
    CHECK(comp_block(&ctl, &w, dst, sizeof(dst), z, comp_bound(sizeof(dst)),
                     &n) == COMP_NONE);
    CHECK(ctl.incompressible);
    CHECK(comp_block(&ctl, &w, src, sizeof(src), z, comp_bound(sizeof(src)),
                     &n) == COMP_ZSTD);
    CHECK(!ctl.incompressible);
    /* the level follows the bottleneck, within bounds */
    for (int i = 0; i < 100; i++)
        comp_ctl_adjust(&ctl, true, false, false, 100.0 + i);
    CHECK(ctl.level == COMP_AUTO_MAX);
    for (int i = 0; i < 100; i++)
        comp_ctl_adjust(&ctl, false, true, false, 100.0);
    CHECK(ctl.level == 0);
    /* level 0: compressible data goes raw */
    CHECK(comp_block(&ctl, &w, src, sizeof(src), z, comp_bound(sizeof(src)),
                     &n) == COMP_NONE && n == sizeof(src));
    comp_ctl_adjust(&ctl, true, false, false, 100.0);
    CHECK(ctl.level == 1);
    /* a raise that lowers the rate is taken back and held off */
    comp_ctl_adjust(&ctl, true, false, false, 100.0);
    CHECK(ctl.level == 2);
    comp_ctl_adjust(&ctl, true, false, false, 50.0);
    CHECK(ctl.level == 1);
    for (int i = 0; i < COMP_HOLD_PERIODS - 1; i++)
        comp_ctl_adjust(&ctl, true, false, false, 50.0);
    CHECK(ctl.level == 1);
    comp_ctl_adjust(&ctl, true, false, false, 50.0);
    CHECK(ctl.level == 2);
    /* no CPU to spare: down, link or not, and held there */
    comp_ctl_adjust(&ctl, true, false, true, 50.0);
    CHECK(ctl.level == 1);
    comp_ctl_adjust(&ctl, true, false, true, 50.0);
    CHECK(ctl.level == 0);
    for (int i = 0; i < COMP_HOLD_PERIODS - 1; i++)
        comp_ctl_adjust(&ctl, true, false, false, 50.0);
    CHECK(ctl.level == 0);
    comp_ctl_adjust(&ctl, true, false, false, 50.0);
    CHECK(ctl.level == 1);
    comp_worker_release(&w);
    free(z);
}

static void test_sealed(void)
{
    int sv[2];
    uint8_t key[32] = {1}, bad[32] = {2};
    struct chan a, b, c;
    struct df_error err;
    uint8_t type, *buf;
    size_t len;

    /* a frame sealed with the right key arrives; a wrong key does not */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    chan_init(&a, sv[0], sv[0], "a");
    chan_init(&b, sv[1], sv[1], "b");
    df_error_init(&err);
    CHECK(chan_seal(&a, key, 1, 2, &err) == 0);
    CHECK(chan_seal(&b, key, 2, 1, &err) == 0);
    CHECK(chan_send(&a, MSG_FLUSH, "12345678", 8, NULL, 0, &err) == 0);
    CHECK(chan_recv(&b, &type, &buf, &len, &err) == 0);
    CHECK(type == MSG_FLUSH && len == 8 && !memcmp(buf, "12345678", 8));
    free(buf);
    chan_release(&a);
    chan_release(&b);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    chan_init(&a, sv[0], sv[0], "a");
    chan_init(&b, sv[1], sv[1], "b");
    CHECK(chan_seal(&a, key, 1, 2, &err) == 0);
    CHECK(chan_seal(&b, bad, 2, 1, &err) == 0);
    CHECK(chan_send(&a, MSG_FLUSH, "12345678", 8, NULL, 0, &err) == 0);
    df_error_init(&err);
    CHECK(chan_recv(&b, &type, &buf, &len, &err) < 0);
    CHECK(err.cat == DF_NET && strstr(err.msg, "authentication failed"));
    chan_release(&a);
    chan_release(&b);

    /* a tampered byte, and a replayed frame, are refused */
    for (int mode = 0; mode < 2; mode++) {
        uint8_t raw[64];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        int sv2[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
        chan_init(&a, sv[0], sv[0], "a");
        chan_init(&c, sv2[1], sv2[1], "c");
        df_error_init(&err);
        CHECK(chan_seal(&a, key, 1, 2, &err) == 0);
        CHECK(chan_seal(&c, key, 2, 1, &err) == 0);
        CHECK(chan_send(&a, MSG_FLUSH, "12345678", 8, NULL, 0, &err) == 0);
        long n = read(sv[1], raw, sizeof(raw));
        CHECK(n == 4 + 1 + 8 + 16);
        if (mode == 0) {
            raw[7] ^= 1;
            CHECK(write(sv2[0], raw, (size_t)n) == n);
        } else {
            CHECK(write(sv2[0], raw, (size_t)n) == n);
            CHECK(write(sv2[0], raw, (size_t)n) == n);    /* replay */
            CHECK(chan_recv(&c, &type, &buf, &len, &err) == 0);
            free(buf);
        }
        CHECK(chan_recv(&c, &type, &buf, &len, &err) < 0);
        CHECK(err.cat == DF_NET);
        chan_release(&a);
        chan_release(&c);
        close(sv[1]);
        close(sv2[0]);
    }

    /* an oversized length is refused before any allocation */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    chan_init(&b, sv[1], sv[1], "b");
    uint8_t hdr[5];
    put_le32(hdr, 0xfffffff0u);
    hdr[4] = MSG_WRITE;
    CHECK(write(sv[0], hdr, 5) == 5);
    df_error_init(&err);
    CHECK(chan_recv(&b, &type, &buf, &len, &err) < 0);
    CHECK(strstr(err.msg, "over the limit") != NULL);
    /* a clean end between frames is 1; inside a frame an error */
    close(sv[0]);
    chan_release(&b);
}

/* A sender on one end, a session on the other: data arrives in order,
 * intact, over 3 channels, compressed. */
static void test_sender_session(void)
{
    enum { N = 3, BLOCKS = 40, BS = 100000 };
    int sv[N][2];
    struct chan out[N];
    struct chan *outp[N];
    struct session s;
    struct comp_ctl ctl;
    struct df_error err;
    uint8_t *data = malloc((size_t)BLOCKS * BS);
    for (size_t i = 0; i < (size_t)BLOCKS * BS; i++)
        data[i] = (uint8_t)(i % 251 < 100 ? (int)(i / 4096) : rand());
    df_error_init(&err);
    int ctlp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, ctlp) == 0);
    session_init(&s, ctlp[1], ctlp[1], "peer", true);
    s.streams = calloc(N, sizeof(*s.streams));
    for (int i = 0; i < N; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) == 0);
        chan_init(&out[i], sv[i][0], sv[i][0], "out");
        chan_init(&s.streams[i], sv[i][1], sv[i][1], "in");
        outp[i] = &out[i];
    }
    s.nstreams = N;
    CHECK(session_start(&s, &err) == 0);
    comp_ctl_init(&ctl, COMPRESS_AUTO, 0);
    struct sender *snd = sender_new(outp, N, &ctl, 2, 65536, 0, &err);
    CHECK(snd != NULL);
    for (int i = 0; i < BLOCKS; i++) {
        if (i % 7 == 3)
            CHECK(sender_zero(snd, MSG_ZERO, (uint64_t)i * BS, BS, &err)
                  == 0);
        else
            CHECK(sender_write(snd, (uint64_t)i * BS, data + (size_t)i * BS,
                               BS, &err) == 0);
    }
    CHECK(sender_drain(snd, &err) == 0);
    uint64_t total = sender_next_seq(snd);
    sender_free(snd);
    struct comp_worker w;
    comp_worker_init(&w);
    uint8_t *dbuf = malloc(MSG_MAX_DATA);
    uint64_t pos = 0;
    bool ok = true;
    for (uint64_t k = 0; k < total; k++) {
        struct rx_frame *f;
        CHECK(session_recv_data(&s, &f, &err) == 0);
        if (!f)
            break;
        ok &= f->m.seq == k && f->m.off == pos;
        if (f->m.type == MSG_WRITE) {
            CHECK(comp_unblock(&w, f->m.comp, f->m.data, f->m.data_len,
                               dbuf, f->m.raw_len, "p", &err) == 0);
            ok &= !memcmp(dbuf, data + pos, f->m.raw_len);
        }
        pos += f->m.len;
        rx_frame_free(f);
    }
    CHECK(ok);
    CHECK(pos == (uint64_t)BLOCKS * BS);
    CHECK(ctl.comp_out < ctl.raw_in);
    for (int i = 0; i < N; i++)
        chan_release(&out[i]);
    close(ctlp[0]);
    session_release(&s);
    comp_worker_release(&w);
    free(dbuf);
    free(data);
}

static void test_quote(void)
{
    char buf[256];
    buf[0] = '\0';
    CHECK(ssh_quote(buf, sizeof(buf), "plain/path-1.img") == 0);
    CHECK(!strcmp(buf, "plain/path-1.img"));
    buf[0] = '\0';
    CHECK(ssh_quote(buf, sizeof(buf), "a b'c$d;e") == 0);
    CHECK(!strcmp(buf, "'a b'\\''c$d;e'"));
    buf[0] = '\0';
    CHECK(ssh_quote(buf, sizeof(buf), "") == 0);
    CHECK(!strcmp(buf, "''"));
    char st[128], *argv[8];
    CHECK(ssh_split("ssh -p 22 -o 'A B' \"c\\\"d\" e\\ f", argv, 7, st)
          == 7);
    CHECK(!strcmp(argv[4], "A B") && !strcmp(argv[5], "c\"d"));
    CHECK(!strcmp(argv[6], "e f") && argv[7] == NULL);
    CHECK(ssh_split("ssh 'open", argv, 7, st) < 0);
}

static void test_journal(void)
{
    char path[] = "/tmp/test_proto_journalXXXXXX";
    char dpath[] = "/tmp/test_proto_journal_dstXXXXXX";
    char target[] = "/tmp/test_proto_journal_tgtXXXXXX";
    int fd = mkstemp(path);
    int dfd = mkstemp(dpath);
    int tfd = mkstemp(target);
    struct rjournal j;
    struct rjournal_info ji;
    struct extent_list l;
    struct df_error err;
    struct df_file dst;
    uint8_t data[1000];
    close(fd);
    close(dfd);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);
    CHECK(write(tfd, "keep", 4) == 4);
    close(tfd);
    df_error_init(&err);
    CHECK(df_file_open(&dst, dpath, O_RDWR, &err) == 0);
    CHECK(df_file_pwrite(&dst, data, sizeof(data), 0, &err) == 0);
    /* invariant 6: a symlink at the journal's name is replaced, its
     * target left alone */
    unlink(path);
    CHECK(symlink(target, path) == 0);
    CHECK(rjournal_open(&j, AT_FDCWD, path, 1000, 42, &dst, false,
                        &err) == 0);
    rjournal_note(&j, 0, 100);
    rjournal_note(&j, 100, 50);
    rjournal_note(&j, 500, 100);
    CHECK(rjournal_commit(&j, &err) == 0);
    rjournal_note(&j, 150, 10);
    CHECK(rjournal_commit(&j, &err) == 0);
    rjournal_close(&j);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(stat(target, &st) == 0 && st.st_size == 4);
    /* a torn last line is ignored */
    FILE *f = fopen(path, "a");
    fputs("700 10", f);
    fclose(f);
    extent_list_init(&l, 100);
    CHECK(rjournal_load(AT_FDCWD, path, 1000, 42, &l, &ji, &err) == 0);
    CHECK(l.n == 2 && l.v[0].off == 0 && l.v[0].len == 160);
    CHECK(l.v[1].off == 500 && l.v[1].len == 100);
    CHECK(ji.nsamples == 3 && ji.dev == dst.dev && ji.ino == dst.ino);
    /* invariant 5: the destination we left passes, a changed one not */
    CHECK(rjournal_check_dst(&ji, &dst, &err) == 0);
    data[550] ^= 1;
    CHECK(df_file_pwrite(&dst, data, sizeof(data), 0, &err) == 0);
    CHECK(rjournal_check_dst(&ji, &dst, &err) < 0 &&
          err.cat == DF_REFUSED && strstr(err.msg, "DST changed"));
    df_error_init(&err);
    extent_list_clear(&l);
    /* another source or size: "the source changed" */
    CHECK(rjournal_load(AT_FDCWD, path, 1001, 42, &l, NULL, &err) < 0 &&
          err.cat == DF_REFUSED && strstr(err.msg, "source changed"));
    df_error_init(&err);
    CHECK(rjournal_load(AT_FDCWD, path, 1000, 43, &l, NULL, &err) < 0);
    df_error_init(&err);
    /* another format version is refused, never guessed at */
    f = fopen(path, "w");
    fputs("diskferry-resume 1 size=1000 src=000000000000002a\n0 100\n", f);
    fclose(f);
    CHECK(rjournal_load(AT_FDCWD, path, 1000, 42, &l, NULL, &err) < 0 &&
          err.cat == DF_REFUSED && strstr(err.msg, "format 1"));
    df_error_init(&err);
    /* none, or a symlink: nothing to resume */
    unlink(path);
    CHECK(rjournal_load(AT_FDCWD, path, 1000, 42, &l, NULL, &err) == 1);
    CHECK(symlink(dpath, path) == 0);
    CHECK(rjournal_load(AT_FDCWD, path, 1000, 42, &l, NULL, &err) == 1);
    extent_list_release(&l);
    df_file_close(&dst);
    unlink(path);
    unlink(dpath);
    unlink(target);
}

static void test_bwlimit(void)
{
    struct bwlimit *bw = bwlimit_new(4 << 20);
    double t0 = time_now();
    for (int i = 0; i < 64; i++)
        bwlimit_take(bw, 16384);
    double dt = time_now() - t0;
    /* 1 MiB at 4 MiB/s: about 0.25 s less the burst; generous bounds */
    CHECK(dt > 0.1);
    bwlimit_free(bw);
    CHECK(bwlimit_new(0) == NULL);
    bwlimit_take(NULL, 100);
}

int main(void)
{
    test_roundtrip();
    test_probe_msgs();
    test_negotiate();
    test_compress();
    test_sealed();
    test_sender_session();
    test_quote();
    test_journal();
    test_bwlimit();
    return test_result("proto");
}
