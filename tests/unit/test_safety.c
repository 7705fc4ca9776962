/*
 * test_safety.c: safety_check_destination() on real files in a scratch
 * directory: new paths, same-as-source (hard link, symlink), holders
 * (a child process with the file open, OFD locks laid like QEMU's),
 * size, content sampling, the typed confirmation, mountinfo parsing and
 * the dry-run sink.  Loop devices, mounts, mkfs and QEMU itself are
 * exercised end to end (tests/e2e/test_safety.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "safety/safety_int.h"
#include "test.h"

static char dir[PATH_MAX];

static void path_in(char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

/* A sparse file of `size` bytes, with `data` at `off` when data. */
static void make_file(const char *p, uint64_t size, uint64_t off,
                      const char *data)
{
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        abort();
    if (data && pwrite(fd, data, strlen(data), (off_t)off) < 0)
        abort();
    close(fd);
}

/* Check req; return the category, msg copied to msg. */
static int run(struct safety_req *req, char *msg, size_t len)
{
    struct df_error err;
    df_error_init(&err);
    int r = safety_check_destination(req, &err);
    snprintf(msg, len, "%s", err.msg);
    CHECK((r == 0) == (err.cat == DF_OK));
    return err.cat;
}

static void open_dst(struct df_file *f, const char *p)
{
    struct df_error err;
    df_error_init(&err);
    if (df_file_open(f, p, O_RDWR, &err) < 0)
        abort();
}

static void test_new_paths(void)
{
    char p[PATH_MAX], msg[256];
    struct safety_req req = { .need_size = 1 << 20 };

    path_in(p, "new.img");
    req.dst_path = p;
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);

    make_file(p, 4096, 0, NULL);
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(strstr(msg, "file exists") != NULL);
    unlink(p);

    /* A dangling symlink is not created through. */
    CHECK(symlink("/nonexistent/target", p) == 0);
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    unlink(p);

    req.dst_path = "/dev/diskferry-test-no-such-device";
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(strstr(msg, "under /dev") != NULL);
    req.dst_path = "/dev/../dev/./diskferry-test-none";
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);

    /* A missing directory is the create's to report. */
    path_in(p, "no-such-dir/new.img");
    req.dst_path = p;
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
}

static void test_same_source(void)
{
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], msg[256];
    struct df_file fa, fb;

    path_in(a, "src.img");
    path_in(b, "hardlink.img");
    path_in(c, "symlink.img");
    make_file(a, 1 << 20, 0, NULL);
    CHECK(link(a, b) == 0);
    CHECK(symlink(a, c) == 0);

    open_dst(&fa, a);
    open_dst(&fb, b);
    struct safety_req req = { .dst_path = b, .dst = &fb, .src_file = &fa,
                              .need_size = 1 << 20 };
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(!strcmp(msg, "refusing to write: same file as the source"));

    req.src_file = NULL;
    req.src_path = c;
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(!strcmp(msg, "refusing to write: same file as the source"));

    /* A different file of the same size is fine (and empty). */
    path_in(c, "other.img");
    make_file(c, 1 << 20, 0, NULL);
    req.src_path = c;
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
    df_file_close(&fa);
    df_file_close(&fb);
}

static void test_size(void)
{
    char p[PATH_MAX], msg[256], *warn = NULL;
    size_t wlen = 0;
    struct df_file f;

    path_in(p, "small.img");
    make_file(p, 64 << 20, 0, NULL);
    open_dst(&f, p);
    struct safety_req req = { .dst_path = p, .dst = &f,
                              .need_size = 128 << 20 };
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(!strcmp(msg, "refusing to write: 64.0 MiB is smaller than the "
                       "source (128.0 MiB)"));
    req.need_size = (64 << 20) + 1;
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(strstr(msg, "67108864 bytes is smaller") != NULL);

    req.need_size = 32 << 20;
    req.msgs = open_memstream(&warn, &wlen);
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
    fclose(req.msgs);
    CHECK(warn && strstr(warn, "larger than the source") != NULL);
    free(warn);
    df_file_close(&f);

    /* An empty regular file grows. */
    path_in(p, "empty.img");
    make_file(p, 0, 0, NULL);
    open_dst(&f, p);
    req.dst_path = p;
    req.dst = &f;
    req.msgs = NULL;
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
    df_file_close(&f);
}

static void test_content(void)
{
    static const struct {
        uint64_t off;
        const char *what;
    } at[] = {
        { 0, "non-zero data at offset 0" },
        { 777, "non-zero data at offset 777" },
        /* last MiB */
        { (256 << 20) - 3, "non-zero data at offset 268435453" },
        /* found through SEEK_DATA, between the samples */
        { (100 << 20) + 12345, "non-zero data at offset 104869945" },
    };
    char p[PATH_MAX], msg[256];
    struct df_file f;

    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        path_in(p, "data.img");
        make_file(p, 256 << 20, at[i].off, "x");
        open_dst(&f, p);
        struct safety_req req = { .dst_path = p, .dst = &f,
                                  .need_size = 256 << 20 };
        CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
        char want[128];
        snprintf(want, sizeof(want), "refusing to write: holds %s (give "
                 "--overwrite)", at[i].what);
        CHECK(!strcmp(msg, want));
        if (strcmp(msg, want))
            fprintf(stderr, "  got '%s'\n", msg);
        req.overwrite = true;
        CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
        /* Restoring is the journal's business: no content check. */
        req.overwrite = false;
        req.op = SAFETY_OP_RESTORE;
        CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
        df_file_close(&f);
    }

    /* All zeros, sparse: fine without --overwrite. */
    make_file(p, 256 << 20, 0, NULL);
    open_dst(&f, p);
    struct safety_req req = { .dst_path = p, .dst = &f,
                              .need_size = 256 << 20 };
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);
    df_file_close(&f);
}

static int confirm_with(const char *answer, bool yes, bool interactive,
                        char *msg, char **prompt)
{
    char p[PATH_MAX];
    size_t plen = 0;
    struct df_file f;
    path_in(p, "vm-disk.img");
    make_file(p, 1 << 20, 4096, "data");
    open_dst(&f, p);
    struct safety_req req = {
        .dst_path = p, .dst = &f, .need_size = 1 << 20, .overwrite = true,
        .yes = yes, .interactive = interactive,
        .answers = fmemopen((void *)answer, strlen(answer), "r"),
        .msgs = open_memstream(prompt, &plen),
    };
    int cat = run(&req, msg, 256);
    fclose(req.answers);
    fclose(req.msgs);
    df_file_close(&f);
    return cat;
}

static void test_confirm(void)
{
    char msg[256], *prompt = NULL;

    CHECK(confirm_with("vm-disk.img\n", false, true, msg, &prompt) == DF_OK);
    CHECK(prompt && strstr(prompt, "type 'vm-disk.img'") != NULL);
    free(prompt);
    prompt = NULL;
    CHECK(confirm_with("y\n", false, true, msg, &prompt) == DF_REFUSED);
    CHECK(strstr(msg, "not confirmed") != NULL);
    free(prompt);
    prompt = NULL;
    CHECK(confirm_with("", false, true, msg, &prompt) == DF_REFUSED);
    free(prompt);
    prompt = NULL;
    /* --yes, or not a terminal: no question. */
    CHECK(confirm_with("", true, true, msg, &prompt) == DF_OK);
    CHECK(!prompt || !prompt[0]);
    free(prompt);
    prompt = NULL;
    CHECK(confirm_with("", false, false, msg, &prompt) == DF_OK);
    free(prompt);
    CHECK(!strcmp(confirm_expected_name("/dev/sdb"), "sdb"));
}

/* A child that opens p (and takes OFD read locks on the given bytes),
 * then waits until its pipe closes.  Returns its pid; *wfd is the pipe. */
static pid_t hold(const char *p, const int *lock_bytes, size_t n, int *wfd)
{
    int ready[2], go[2];
    if (pipe(ready) < 0 || pipe(go) < 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        int fd = open(p, O_RDONLY);
        for (size_t i = 0; i < n; i++) {
            struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
                                .l_start = lock_bytes[i], .l_len = 1 };
            if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
                _exit(2);
        }
        close(ready[0]);
        close(go[1]);
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        while (read(go[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    char c;
    close(ready[1]);
    close(go[0]);
    if (read(ready[0], &c, 1) != 1)
        abort();
    close(ready[0]);
    *wfd = go[1];
    return pid;
}

static void release(pid_t pid, int wfd)
{
    int st;
    close(wfd);
    waitpid(pid, &st, 0);
}

static void test_holders(void)
{
    static const int qemu_rw[] = { 100, 101, 103, 201, 203 };
    static const int qemu_ro[] = { 100, 201, 203 };
    char p[PATH_MAX], msg[256], want[256];
    struct df_file f;
    int wfd;

    path_in(p, "held.img");
    make_file(p, 1 << 20, 0, NULL);
    open_dst(&f, p);
    struct safety_req req = { .dst_path = p, .dst = &f,
                              .need_size = 1 << 20 };
    /* Our own fd does not count. */
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);

    pid_t pid = hold(p, NULL, 0, &wfd);
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    snprintf(want, sizeof(want), "refusing to write: open by test_safety "
             "(pid %ld)", (long)pid);
    CHECK(!strcmp(msg, want));
    release(pid, wfd);
    CHECK(run(&req, msg, sizeof(msg)) == DF_OK);

    pid = hold(p, qemu_rw, 5, &wfd);
    CHECK(inuse_qemu_locks(f.fd) ==
          (INUSE_LOCK_PERM(0) | INUSE_LOCK_PERM(1) | INUSE_LOCK_PERM(3) |
           INUSE_LOCK_SHARED(1) | INUSE_LOCK_SHARED(3)));
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    snprintf(want, sizeof(want), "refusing to write: locked by QEMU (write "
             "lock held) by test_safety (pid %ld)", (long)pid);
    CHECK(!strcmp(msg, want));
    release(pid, wfd);

    pid = hold(p, qemu_ro, 3, &wfd);
    CHECK(run(&req, msg, sizeof(msg)) == DF_REFUSED);
    CHECK(strstr(msg, "locked by QEMU (read lock held, writers refused)"));
    release(pid, wfd);
    CHECK(inuse_qemu_locks(f.fd) == 0);

    /* Our claim: QEMU's writer bytes, seen from another open file
     * description (which is how QEMU itself probes). */
    int claim = 0;
    struct df_error err;
    df_error_init(&err);
    CHECK(safety_claim(&f, &claim, &err) == 0 && claim == -1);
    int other = open(p, O_RDONLY);
    CHECK(inuse_qemu_locks(other) == (INUSE_LOCK_PERM(0) |
                                      INUSE_LOCK_PERM(1) |
                                      INUSE_LOCK_SHARED(1)));
    CHECK(inuse_qemu_locks(f.fd) == 0);     /* not against ourselves */
    close(other);
    df_file_close(&f);
}

static void test_mountinfo(void)
{
    char p[PATH_MAX], mnt[PATH_MAX];
    path_in(p, "mountinfo");
    FILE *fp = fopen(p, "w");
    fputs("22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
          "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - "
          "ext3 /dev/root rw,errors=continue\n"
          "37 35 7:3 / /srv/x rw shared:5 master:2 - ext4 /dev/loop3 rw\n"
          "38 35 7:4 / /srv/ro ro,relatime - ext4 /dev/loop4 ro\n"
          "39 35 7:5 / /srv/ro5 ro - ext4 /dev/loop5 ro,data=ordered\n"
          "40 35 7:5 / /srv/rw5 rw - ext4 /dev/loop5 rw,data=ordered\n"
          "garbage\n", fp);
    fclose(fp);
    CHECK(inuse_mount_point(p, makedev(98, 0), false, mnt, sizeof(mnt)) == 1);
    CHECK(!strcmp(mnt, "/mnt/with space"));
    CHECK(inuse_mount_point(p, makedev(7, 3), false, mnt, sizeof(mnt)) == 1);
    CHECK(!strcmp(mnt, "/srv/x"));
    CHECK(inuse_mount_point(p, makedev(8, 1), false, mnt, sizeof(mnt)) == 0);
    /* Read-write only: a read-only superblock does not count; a second
     * mount of the same device that is read-write does. */
    CHECK(inuse_mount_point(p, makedev(7, 3), true, mnt, sizeof(mnt)) == 1);
    CHECK(inuse_mount_point(p, makedev(7, 4), false, mnt, sizeof(mnt)) == 1);
    CHECK(inuse_mount_point(p, makedev(7, 4), true, mnt, sizeof(mnt)) == 0);
    CHECK(inuse_mount_point(p, makedev(7, 5), true, mnt, sizeof(mnt)) == 1);
    CHECK(!strcmp(mnt, "/srv/rw5"));
    path_in(p, "no-such-mountinfo");
    CHECK(inuse_mount_point(p, makedev(8, 1), false, mnt, sizeof(mnt)) == -1);
}

static void test_dry_run_sink(void)
{
    char *out = NULL;
    size_t len = 0;
    struct df_error err;
    df_error_init(&err);
    FILE *fp = open_memstream(&out, &len);
    struct sink *s = dryrun_sink_new("dst.img", 8 << 20, fp, &err);
    static char buf[1 << 20];
    CHECK(s != NULL);
    CHECK(s->ops->write(s, 0, buf, 1 << 20, &err) == 0);
    CHECK(s->ops->write(s, 1 << 20, buf, 1 << 20, &err) == 0);
    CHECK(s->ops->zero(s, 2 << 20, 4 << 20, &err) == 0);
    CHECK(s->ops->write(s, 6 << 20, buf, 4096, &err) == 0);
    CHECK(s->ops->finish(s, &err) == 0);
    CHECK(s->ops->digest == NULL);
    s->ops->free(s);
    fclose(fp);
    CHECK(strstr(out, "would write 0..2097152 (2.0 MiB)\n"
                      "would zero  2097152..6291456 (4.0 MiB)\n"
                      "would write 6291456..6295552 (4.0 KiB)\n") == out);
    CHECK(strstr(out, "would write 2101248 bytes (2.0 MiB) and zero "
                      "4194304 bytes (4.0 MiB) in 3 ranges; nothing "
                      "written") != NULL);
    free(out);
}

int main(void)
{
    char tmpl[] = "/tmp/test_safety.XXXXXX";
    if (!mkdtemp(tmpl))
        return 77;
    snprintf(dir, sizeof(dir), "%s", tmpl);

    test_new_paths();
    test_same_source();
    test_size();
    test_content();
    test_confirm();
    test_holders();
    test_mountinfo();
    test_dry_run_sink();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_result("safety");
}
