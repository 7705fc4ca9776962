/*
 * test_lvm_cow.c: the lvm-cow change source (track/lvm_cow.c) on
 * exception stores built here in the kernel's layout (header in chunk
 * 0, area k at chunk 1 + k*(E+1), data chunks handed out in order
 * skipping the areas, as dm-snap-persistent.c's skip_metadata does):
 * chunk sizes 4 KiB, 64 KiB and 512 KiB, one area partly filled, full
 * areas and a partly filled last one, coalescing, base_read, every
 * refusal, and the LV lookup through a fake sysfs tree.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "track/lvm_cow.h"
#include "util/bytes.h"

#define KIB 1024ull

struct store {
    uint8_t *buf;
    size_t len;
    uint64_t cb;
};

/* The byte at j of origin chunk old's saved contents (tag picks the
 * store, so two stores differ). */
static uint8_t old_byte(uint64_t old, uint64_t j, unsigned tag)
{
    return (uint8_t)(old * 131 + j * 7 + (j >> 8) + tag);
}

static uint8_t *entry_at(struct store *st, uint64_t i)
{
    uint64_t e = st->cb / 16;
    return st->buf + (1 + (i / e) * (e + 1)) * st->cb + (i % e) * 16;
}

/*
 * A valid store of cb-byte chunks holding exceptions for olds[0..n) in
 * that order, each data chunk filled by old_byte(), plus `spare` free
 * chunks at the end.  A full last area gets the zeroed area after it,
 * as the kernel writes it.
 */
static struct store build(uint64_t cb, const uint64_t *olds, size_t n,
                          unsigned spare, unsigned tag)
{
    uint64_t e = cb / 16, stride = e + 1;
    uint64_t next = 2, last = 1;            /* header, area 0 */
    uint64_t *newc = calloc(n ? n : 1, sizeof(*newc));
    for (size_t i = 0; i < n; i++) {
        newc[i] = next;
        last = next;
        next++;
        if (next % stride == 1)
            next++;
    }
    uint64_t areas = n / e + 1;             /* the one holding the end */
    uint64_t end = 1 + (areas - 1) * stride + 1;
    if (last + 1 > end)
        end = last + 1;
    end += spare;
    struct store st = { calloc(end, cb), (size_t)(end * cb), cb };
    put_le32(st.buf, LVM_COW_MAGIC);
    put_le32(st.buf + 4, 1);
    put_le32(st.buf + 8, 1);
    put_le32(st.buf + 12, (uint32_t)(cb / 512));
    for (size_t i = 0; i < n; i++) {
        put_le64(entry_at(&st, i), olds[i]);
        put_le64(entry_at(&st, i) + 8, newc[i]);
        for (uint64_t j = 0; j < cb; j++)
            st.buf[newc[i] * cb + j] = old_byte(olds[i], j, tag);
    }
    free(newc);
    return st;
}

static struct change_source *open_mem(struct store *st, uint64_t size,
                                      struct df_error *err)
{
    struct df_file f;
    df_error_init(err);
    df_file_init_mem(&f, "mem.cow", st->buf, st->len);
    return lvm_cow_open_file(&f, size, err);
}

/* The whole change list of cs over [0, size). */
static void changed_all(struct change_source *cs, uint64_t size,
                        struct extent_list *l)
{
    struct df_error err;
    df_error_init(&err);
    extent_list_init(l, 1 << 20);
    CHECK(cs->changed(cs, 0, size, l, &err) == 0);
}

/* base_read of [off, off+len) matches the saved contents. */
static int base_ok(struct change_source *cs, uint64_t cb, uint64_t off,
                   size_t len, unsigned tag)
{
    struct df_error err;
    uint8_t *b = malloc(len);
    int ok = 1;
    df_error_init(&err);
    if (cs->base_read(cs, off, len, b, &err) != 0) {
        fprintf(stderr, "base_read: %s\n", err.msg);
        ok = 0;
    }
    for (size_t i = 0; ok && i < len; i++)
        if (b[i] != old_byte((off + i) / cb, (off + i) % cb, tag))
            ok = 0;
    free(b);
    return ok;
}

/* Chunks 2, 5..7, 10 (given out of order): three ranges. */
static void test_small(uint64_t cb)
{
    const uint64_t olds[] = { 7, 2, 5, 10, 6 };
    uint64_t size = 64 * cb;
    struct store st = build(cb, olds, 5, 3, 0);
    struct df_error err;
    struct extent_list l;
    struct change_source *cs = open_mem(&st, size, &err);
    CHECK(cs != NULL);
    if (!cs) {
        fprintf(stderr, "open: %s\n", err.msg);
        free(st.buf);
        return;
    }
    CHECK(!strcmp(cs->name, "lvm-cow"));
    changed_all(cs, size, &l);
    CHECK(l.n == 3);
    if (l.n == 3) {
        CHECK(l.v[0].off == 2 * cb && l.v[0].len == cb);
        CHECK(l.v[1].off == 5 * cb && l.v[1].len == 3 * cb);
        CHECK(l.v[2].off == 10 * cb && l.v[2].len == cb);
    }
    /* a window: clipped at both ends */
    extent_list_clear(&l);
    df_error_init(&err);
    CHECK(cs->changed(cs, 6 * cb + 1, 4 * cb, &l, &err) == 0);
    CHECK(l.n == 2 && l.v[0].off == 6 * cb + 1 && l.v[0].len == 2 * cb - 1 &&
          l.v[1].off == 10 * cb && l.v[1].len == 1);
    /* a window with nothing in it */
    extent_list_clear(&l);
    CHECK(cs->changed(cs, 11 * cb, 20 * cb, &l, &err) == 0 && l.n == 0);
    /* at the cap: 1, then on from where it stopped */
    extent_list_release(&l);
    extent_list_init(&l, 1);
    CHECK(cs->changed(cs, 0, size, &l, &err) == 1 && l.n == 1);
    uint64_t from = extent_list_end(&l, 0);
    extent_list_clear(&l);
    CHECK(cs->changed(cs, from, size - from, &l, &err) == 1 &&
          l.v[0].off == 5 * cb);
    extent_list_release(&l);

    CHECK(base_ok(cs, cb, 2 * cb, (size_t)cb, 0));
    CHECK(base_ok(cs, cb, 5 * cb + 100, (size_t)(2 * cb), 0));
    CHECK(base_ok(cs, cb, 10 * cb + cb - 1, 1, 0));
    /* outside the changed ranges: an error, not a guess */
    uint8_t b[16];
    df_error_init(&err);
    CHECK(cs->base_read(cs, 3 * cb, 16, b, &err) < 0 && err.cat == DF_USAGE);
    df_error_init(&err);
    CHECK(cs->base_read(cs, 8 * cb - 8, 16, b, &err) < 0);
    df_error_init(&err);
    CHECK(cs->base_read(cs, size - 8, 16, b, &err) < 0);
    change_source_close(cs);
    free(st.buf);
}

/* n exceptions over 4 KiB chunks (E = 256): full areas and a partly
 * filled (or, n % 256 == 0, empty) last one. */
static void test_areas(size_t n)
{
    uint64_t cb = 4 * KIB, nch = 1000, size = nch * cb;
    uint64_t *olds = malloc(n * sizeof(*olds));
    uint8_t seen[1000] = { 0 };
    for (size_t i = 0; i < n; i++) {
        olds[i] = (i * 37 + 11) % nch;      /* all different, scattered */
        seen[olds[i]] = 1;
    }
    struct store st = build(cb, olds, n, 0, 1);
    struct df_error err;
    struct extent_list l;
    struct change_source *cs = open_mem(&st, size, &err);
    CHECK(cs != NULL);
    if (!cs) {
        fprintf(stderr, "open %zu: %s\n", n, err.msg);
        goto out;
    }
    changed_all(cs, size, &l);
    /* the list is exactly the chunks written, coalesced */
    size_t runs = 0, bad = 0;
    for (uint64_t c = 0; c < nch; c++)
        runs += seen[c] && (c == 0 || !seen[c - 1]);
    CHECK(l.n == runs);
    CHECK(extent_list_bytes(&l, EXT_DATA) == n * cb);
    for (size_t i = 0; i < l.n; i++)
        for (uint64_t c = l.v[i].off / cb; c < (l.v[i].off + l.v[i].len) / cb;
             c++)
            bad += !seen[c];
    CHECK(bad == 0);
    extent_list_release(&l);
    CHECK(base_ok(cs, cb, olds[0] * cb, (size_t)cb, 1));
    CHECK(base_ok(cs, cb, olds[n - 1] * cb, (size_t)cb, 1));
    if (n > 300)
        CHECK(base_ok(cs, cb, olds[300] * cb + 5, 100, 1));
    change_source_close(cs);
out:
    free(olds);
    free(st.buf);
}

/* st opens for an origin of `size` bytes and names just [off, off+len)
 * (nothing when len is 0); the source, or NULL. */
static struct change_source *opens_with(struct store *st, uint64_t size,
                                        uint64_t off, uint64_t len)
{
    struct df_error err;
    struct extent_list l;
    struct change_source *cs = open_mem(st, size, &err);
    CHECK(cs != NULL);
    if (!cs) {
        fprintf(stderr, "open: %s\n", err.msg);
        return NULL;
    }
    changed_all(cs, size, &l);
    CHECK(len ? l.n == 1 && l.v[0].off == off && l.v[0].len == len : !l.n);
    extent_list_release(&l);
    return cs;
}

/* The origin's last chunk is partial: its range is clipped. */
static void test_partial_last(void)
{
    uint64_t cb = 64 * KIB, size = 10 * cb + 1000;
    const uint64_t olds[] = { 9, 10 };
    struct store st = build(cb, olds, 2, 0, 2);
    struct change_source *cs = opens_with(&st, size, 9 * cb, cb + 1000);
    if (cs) {
        CHECK(base_ok(cs, cb, 10 * cb, 1000, 2));
        CHECK(base_ok(cs, cb, 9 * cb + 5, (size_t)(cb + 995), 2));
        change_source_close(cs);
    }
    free(st.buf);
}

/* An empty store (just made): nothing changed. */
static void test_empty(void)
{
    struct store st = build(4 * KIB, NULL, 0, 0, 0);
    CHECK(st.len == 2 * 4 * KIB);
    change_source_close(opens_with(&st, 1 << 20, 0, 0));
    free(st.buf);
}

/* Opening st fails with DF_CORRUPT at `off` (-2: any) saying `says`. */
static void refused(struct store *st, uint64_t size, int64_t off,
                    const char *says, int line)
{
    struct df_error err;
    struct change_source *cs = open_mem(st, size, &err);
    int ok = !cs && err.cat == DF_CORRUPT && (off == -2 || err.offset == off)
             && strstr(err.msg, says) && !strcmp(err.what, "mem.cow");
    if (!ok)
        fprintf(stderr, "line %d: want refusal at %lld with \"%s\", got "
                "cat %d at %lld: %s\n", line, (long long)off, says,
                (int)err.cat, (long long)err.offset, err.msg);
    CHECK(ok);
    change_source_close(cs);
}
#define REFUSED(st, size, off, says) refused(st, size, off, says, __LINE__)

static void test_refusals(void)
{
    uint64_t cb = 4 * KIB, size = 100 * cb;
    const uint64_t olds[] = { 1, 2, 3 };
    struct store st = build(cb, olds, 3, 300, 0);  /* past area 1 */
    uint8_t *e1 = entry_at(&st, 1);

#define FIELD(off, v, says, at)                                            \
    do {                                                                   \
        uint32_t keep = get_le32(st.buf + (off));                          \
        put_le32(st.buf + (off), (v));                                     \
        REFUSED(&st, size, (at), (says));                                  \
        put_le32(st.buf + (off), keep);                                    \
    } while (0)
    FIELD(0, 0x70416e54, "not a snapshot exception store", 0);
    FIELD(0, 0x536e4170, "not a snapshot exception store", 0); /* BE */
    FIELD(0, 0, "never initialised", 0);
    FIELD(4, 0, "--changes compare", 4);
    FIELD(4, 0, "invalid (overflowed", 4);
    FIELD(4, 2, "neither 0 nor 1", 4);
    FIELD(8, 2, "version 2", 8);
    FIELD(8, 0, "version 0", 8);
    FIELD(12, 0, "chunk size 0", 12);
    FIELD(12, 24, "not a power of two", 12);
    FIELD(12, 4, "chunk size 4 sectors", 12);       /* 2 KiB */
    FIELD(12, 2048, "chunk size 2048 sectors", 12); /* 1 MiB */
    FIELD(12, 0x80000000u, "not a power of two", 12);
#undef FIELD

    /* new_chunk on the header is the end marker: entries 1, 2 unread */
    uint64_t keep = get_le64(e1 + 8);
    put_le64(e1 + 8, 0);
    change_source_close(opens_with(&st, size, cb, cb));
    int64_t at = (int64_t)(e1 - st.buf);
    put_le64(e1 + 8, 1);                    /* metadata area 0 */
    REFUSED(&st, size, at + 8, "metadata area 0");
    put_le64(e1 + 8, 258);                  /* metadata area 1 */
    REFUSED(&st, size, at + 8, "metadata area 1");
    put_le64(e1 + 8, st.len / cb);          /* first chunk past EOF */
    REFUSED(&st, size, at + 8, "past the end of the store");
    put_le64(e1 + 8, UINT64_MAX);
    REFUSED(&st, size, at + 8, "past the end of the store");
    put_le64(e1 + 8, 2);                    /* entry 0's data chunk */
    REFUSED(&st, size, at + 8, "named by two exceptions");
    put_le64(e1 + 8, keep);

    keep = get_le64(e1);
    put_le64(e1, 100);                      /* origin is 100 chunks */
    REFUSED(&st, size, at, "chunk index past the origin's end");
    put_le64(e1, UINT64_MAX / 2);           /* chunk * cb overflows */
    REFUSED(&st, size, at, "chunk index past the origin's end");
    put_le64(e1, 1);                        /* entry 0's origin chunk */
    REFUSED(&st, size, at, "origin chunk 1 has two exceptions");
    put_le64(e1, keep);
    /* the origin ends inside chunk 3: still fine; at its start: not */
    change_source_close(opens_with(&st, 3 * cb + 1, cb, 2 * cb + 1));
    REFUSED(&st, 3 * cb, (int64_t)(entry_at(&st, 2) - st.buf),
            "chunk index past the origin's end");

    /* short files */
    size_t len = st.len;
    st.len = 12;
    REFUSED(&st, size, 0, "shorter than its 16-byte header");
    st.len = 2 * cb - 1;                    /* area 0 cut */
    REFUSED(&st, size, (int64_t)cb, "without an end marker");
    st.len = len;
    free(st.buf);

    /* a full area 0 and no area 1 in the file: no end marker */
    uint64_t full[256];
    for (int i = 0; i < 256; i++)
        full[i] = (uint64_t)i;
    st = build(cb, full, 256, 0, 0);
    CHECK(st.len == 259 * cb);              /* area 1 at chunk 258 */
    change_source_close(opens_with(&st, 256 * cb, 0, 256 * cb));
    st.len = 258 * cb;
    REFUSED(&st, 256 * cb, (int64_t)(258 * cb), "without an end marker");
    st.len = 258 * cb + 100;                /* a partial chunk: no area */
    REFUSED(&st, 256 * cb, (int64_t)(258 * cb), "without an end marker");
    free(st.buf);
}

/* ---- the LV lookup over a fake tree ---- */

static char root[256];

static void put_file(const char *rel, const void *data, size_t len)
{
    char path[512], dir[512];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(p - path), path);
        mkdir(dir, 0755);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static void dm(int n, const char *name)
{
    char rel[64], text[160];
    snprintf(rel, sizeof(rel), "/sys/block/dm-%d/dm/name", n);
    snprintf(text, sizeof(text), "%s\n", name);
    put_file(rel, text, strlen(text));
}

/* Opening `cow` under the fake root finds the store whose first
 * changed chunk is `first`. */
static void finds(const char *cow, uint64_t first, int line)
{
    struct df_error err;
    struct extent_list l;
    df_error_init(&err);
    struct change_source *cs = lvm_cow_open(cow, root, 1 << 24, &err);
    if (!cs) {
        fprintf(stderr, "line %d: %s: %s: %s\n", line, cow, err.what,
                err.msg);
        CHECK(cs != NULL);
        return;
    }
    changed_all(cs, 1 << 24, &l);
    CHECK(l.n && l.v[0].off == first * 4 * KIB);
    extent_list_release(&l);
    change_source_close(cs);
}
#define FINDS(cow, first) finds(cow, first, __LINE__)

static void fails(const char *cow, enum df_cat cat, const char *says,
                  int line)
{
    struct df_error err;
    df_error_init(&err);
    struct change_source *cs = lvm_cow_open(cow, root, 1 << 24, &err);
    int ok = !cs && err.cat == cat && strstr(err.msg, says) &&
             strstr(err.what, cow);
    if (!ok)
        fprintf(stderr, "line %d: %s: want cat %d \"%s\", got %d %s: %s\n",
                line, cow, (int)cat, says, (int)err.cat, err.what, err.msg);
    CHECK(ok);
    change_source_close(cs);
}
#define FAILS(cow, cat, says) fails(cow, cat, says, __LINE__)

static void test_lookup(void)
{
    snprintf(root, sizeof(root), "%s/dfcowXXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        CHECK(0);
        return;
    }
    const uint64_t a[] = { 3 }, b[] = { 9 }, c[] = { 12 };
    struct store sa = build(4 * KIB, a, 1, 0, 0);
    struct store sb = build(4 * KIB, b, 1, 0, 0);
    struct store sc = build(4 * KIB, c, 1, 0, 0);

    /* lvcreate -s -n snap vg/base; vg-a/lv-b a snapshot too; vg/thin
     * a thin LV (no -cow) */
    dm(0, "vg-base-real");
    dm(1, "vg-snap-cow");
    dm(2, "vg-snap");
    dm(3, "vg-base");
    dm(4, "vg--a-lv--b-cow");
    dm(5, "vg--a-lv--b");
    dm(6, "vg-thin");
    put_file("/dev/dm-1", sa.buf, sa.len);
    put_file("/dev/dm-2", "snapshot contents", 17);
    put_file("/dev/dm-4", sb.buf, sb.len);
    put_file("/srv/a.cow", sc.buf, sc.len);
    put_le32(sc.buf, 0);
    put_file("/srv/new.cow", sc.buf, sc.len);
    put_file("/srv/short", "Sn", 2);
    char path[512], want[512];
    snprintf(path, sizeof(path), "%s/srv/dir", root);
    mkdir(path, 0755);

    FINDS("vg/snap", 3);
    FINDS("/dev/vg/snap", 3);
    FINDS("/dev/mapper/vg-snap", 3);
    FINDS("/dev/mapper/vg-snap-cow", 3);
    FINDS("/dev/dm-2", 3);          /* the snapshot's own node */
    FINDS("/dev/dm-1", 3);          /* the store's node itself */
    FINDS("vg-a/lv-b", 9);
    FINDS("/dev/vg-a/lv-b", 9);
    FINDS("/dev/mapper/vg--a-lv--b", 9);
    FINDS("/srv/a.cow", 12);        /* a file holding a store */

    struct df_error err;
    df_error_init(&err);
    CHECK(lvm_cow_find("vg-a/lv-b", root, path, sizeof(path), &err) == 0);
    snprintf(want, sizeof(want), "%s/dev/dm-4", root);
    CHECK(!strcmp(path, want));

    FAILS("vg/base", DF_USAGE, "origin of a snapshot");
    FAILS("/dev/mapper/vg-base", DF_USAGE, "origin of a snapshot");
    FAILS("vg/thin", DF_USAGE, "not an old-style LVM snapshot");
    FAILS("vg/nosuch", DF_USAGE, "no dm device vg-nosuch");
    FAILS("/dev/mapper/vg-base-real", DF_USAGE, "hidden layer real");
    FAILS("/dev/dm-9", DF_USAGE, "no device-mapper device");
    FAILS("/srv/none.cow", DF_USAGE, "not an LV name");
    FAILS("vg/a/b", DF_USAGE, "not an LV name");
    FAILS("/srv/new.cow", DF_CORRUPT, "never initialised");
    FAILS("/srv/short", DF_CORRUPT, "shorter than");
    FAILS("/srv/dir", DF_USAGE, "not an LV name");

    /* root "/" and an absolute path: the file as it is */
    snprintf(path, sizeof(path), "%s/srv/a.cow", root);
    df_error_init(&err);
    struct change_source *cs = lvm_cow_open(path, "/", 1 << 24, &err);
    CHECK(cs != NULL);
    change_source_close(cs);

    /* ROOT/sys/block missing: an I/O error naming it */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/sys'", root);
    CHECK(system(cmd) == 0);
    df_error_init(&err);
    CHECK(lvm_cow_open("vg/snap", root, 1 << 24, &err) == NULL &&
          err.cat == DF_IO && strstr(err.what, "/sys/block"));

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    free(sa.buf);
    free(sb.buf);
    free(sc.buf);
}

int main(void)
{
    test_small(4 * KIB);
    test_small(64 * KIB);
    test_small(512 * KIB);
    test_areas(200);
    test_areas(256);
    test_areas(300);
    test_areas(600);
    test_partial_last();
    test_empty();
    test_refusals();
    test_lookup();
    return test_result("test_lvm_cow");
}
