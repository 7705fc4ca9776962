/*
 * inuse.c: is the destination the source, or in use by anyone else?
 * (safety.h checks 1-4).
 *
 * Everything is learnt from the kernel's own tables, read-only:
 *   /proc/self/mountinfo   field 3 is the mount's device (maj:min); the
 *                          field after " - " and the type is the source
 *                          (a /dev path: btrfs reports an anonymous
 *                          device in field 3, so the source is stat'ed)
 *   /sys/dev/block/M:m/    holders/ (device-mapper, md, bcache stacked
 *                          on it), partition (present on a partition),
 *                          <part>/dev (its partitions), ../dev (the
 *                          whole disk of a partition)
 *   /sys/block/loopN/      loop/backing_file (present while attached),
 *                          dev
 *   /proc/swaps            active swap files and devices
 *   /proc/PID/fd/N         stat() follows the link to the object
 *   /proc/PID/fdinfo/N     "lock:" lines (the holder of OFD locks)
 *   F_OFD_GETLK            QEMU's lock bytes (docs/formats.md section 7)
 *   open(O_EXCL)           a block device claimed by the kernel
 *                          (mounted in another namespace, md, dm)
 *
 * An object's "family" is what writing to it would also write to, or
 * what would write to it: its partitions, its whole disk (for the
 * source check), loop devices over it, and for a loop device its
 * backing file.  Two objects overlap when their families meet.
 *
 * The caller opens a block device destination without O_EXCL; the
 * O_EXCL probe here is then the claim test.  Our own fds never count
 * (/proc/self is skipped: the source and the destination are open).
 */
#define _GNU_SOURCE
#include "safety/safety_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* A disk has at most a few hundred partitions and loop devices. */
#define INUSE_FAMILY_MAX 1024
#define INUSE_NAME_LEN 256

enum inuse_rel {
    REL_SELF,           /* the object itself */
    REL_PARTITION,      /* a partition of it */
    REL_WHOLE_DISK,     /* the disk it is a partition of */
    REL_LOOP_OVER,      /* a loop device whose backing is a member */
    REL_BACKING,        /* it is a loop device: its backing object */
};

struct inuse_member {
    struct safety_id id;
    enum inuse_rel rel;
    size_t owner;                   /* the object it was added for */
    char name[INUSE_NAME_LEN];      /* "/dev/loop3", a path */
};

/* The members of one or more objects (the source check puts every file
 * of a chain in one family, so /proc is scanned once). */
struct inuse_family {
    struct inuse_member *v;
    size_t n;
    size_t cur_owner;               /* owner of the members added now */
};

void safety_id_from_stat(const struct stat *st, struct safety_id *id)
{
    id->is_blk = S_ISBLK(st->st_mode);
    id->dev = id->is_blk ? st->st_rdev : st->st_dev;
    id->ino = id->is_blk ? 0 : st->st_ino;
}

bool safety_id_eq(const struct safety_id *a, const struct safety_id *b)
{
    return a->is_blk == b->is_blk && a->dev == b->dev && a->ino == b->ino;
}

static void inuse_id_from_file(const struct df_file *f, struct safety_id *id)
{
    id->is_blk = f->is_blockdev;
    id->dev = f->dev;
    id->ino = f->ino;
}

static int inuse_parse_devnum(const char *s, uint64_t *rdev)
{
    unsigned ma, mi;
    char tail;
    if (sscanf(s, "%u:%u%c", &ma, &mi, &tail) != 2)
        return -1;
    *rdev = makedev(ma, mi);
    return 0;
}

static void inuse_sysdir(uint64_t rdev, char *buf, size_t len)
{
    snprintf(buf, len, "/sys/dev/block/%u:%u", major(rdev), minor(rdev));
}

/* "sdb1" for a device number, from the sysfs link; "M:m" if unknown. */
static void inuse_blk_name(uint64_t rdev, char *buf, size_t len)
{
    char link[PATH_MAX], target[PATH_MAX];
    inuse_sysdir(rdev, link, sizeof(link));
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0) {
        snprintf(buf, len, "%u:%u", major(rdev), minor(rdev));
        return;
    }
    target[n] = '\0';
    snprintf(buf, len, "%s", path_basename(target));
}

static void inuse_family_add(struct inuse_family *f,
                             const struct safety_id *id, enum inuse_rel rel,
                             const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (safety_id_eq(&f->v[i].id, id))
            return;
    if (f->n == INUSE_FAMILY_MAX)
        return;
    struct inuse_member *m = &f->v[f->n++];
    m->id = *id;
    m->rel = rel;
    m->owner = f->cur_owner;
    snprintf(m->name, sizeof(m->name), "%s", name);
}

static void inuse_add_blk(struct inuse_family *f, uint64_t rdev,
                          enum inuse_rel rel)
{
    char name[INUSE_NAME_LEN], dev[INUSE_NAME_LEN + 8];
    struct safety_id id = { .is_blk = true, .dev = rdev, .ino = 0 };
    inuse_blk_name(rdev, name, sizeof(name));
    snprintf(dev, sizeof(dev), "/dev/%s", name);
    inuse_family_add(f, &id, rel, dev);
}

/* The partitions of block device rdev (sysfs subdirectories that have a
 * "partition" file). */
static void inuse_add_partitions(struct inuse_family *f, uint64_t rdev)
{
    char dir[PATH_MAX], path[PATH_MAX], buf[64];
    inuse_sysdir(rdev, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t prdev;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/partition", dir, e->d_name);
        if (access(path, F_OK) < 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s/dev", dir, e->d_name);
        if (read_small_file(path, buf, sizeof(buf)) == 0 &&
            inuse_parse_devnum(buf, &prdev) == 0)
            inuse_add_blk(f, prdev, REL_PARTITION);
    }
    closedir(d);
}

static void inuse_add_whole_disk(struct inuse_family *f, uint64_t rdev)
{
    char dir[PATH_MAX], path[PATH_MAX], buf[64];
    uint64_t wrdev;
    inuse_sysdir(rdev, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/partition", dir);
    if (access(path, F_OK) < 0)
        return;
    snprintf(path, sizeof(path), "%s/../dev", dir);
    if (read_small_file(path, buf, sizeof(buf)) == 0 &&
        inuse_parse_devnum(buf, &wrdev) == 0)
        inuse_add_blk(f, wrdev, REL_WHOLE_DISK);
}

/*
 * Loop devices: for each attached one, add it when its backing object
 * is already a member, and add its backing object when the loop device
 * is a member.  One level: a loop over a loop over a file is not
 * followed (NEEDSWORK: iterate to a fixed point if anyone stacks them).
 */
static void inuse_add_loops(struct inuse_family *f)
{
    char path[PATH_MAX], backing[PATH_MAX], buf[64];
    DIR *d = opendir("/sys/block");
    if (!d)
        return;
    size_t n0 = f->n;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t rdev;
        struct stat st;
        struct safety_id bid, lid;
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file",
                 e->d_name);
        if (read_small_file(path, backing, sizeof(backing)) < 0)
            continue;
        snprintf(path, sizeof(path), "/sys/block/%s/dev", e->d_name);
        if (read_small_file(path, buf, sizeof(buf)) < 0 ||
            inuse_parse_devnum(buf, &rdev) < 0)
            continue;
        /* " (deleted)": the backing file has no name any more. */
        if (stat(backing, &st) < 0)
            continue;
        safety_id_from_stat(&st, &bid);
        lid = (struct safety_id){ .is_blk = true, .dev = rdev, .ino = 0 };
        for (size_t i = 0; i < n0; i++) {
            f->cur_owner = f->v[i].owner;
            if (safety_id_eq(&f->v[i].id, &bid)) {
                char dev[INUSE_NAME_LEN];
                snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
                inuse_family_add(f, &lid, REL_LOOP_OVER, dev);
                break;
            }
            if (safety_id_eq(&f->v[i].id, &lid)) {
                inuse_family_add(f, &bid, REL_BACKING, backing);
                break;
            }
        }
    }
    closedir(d);
}

static int inuse_family_init(struct inuse_family *f, const char *name,
                             struct df_error *err)
{
    f->n = 0;
    f->cur_owner = 0;
    f->v = calloc(INUSE_FAMILY_MAX, sizeof(*f->v));
    if (!f->v)
        return df_io(err, name, ENOMEM, "cannot check for use");
    return 0;
}

/* Add an object, its partitions and (with_parent) the whole disk of a
 * partition, owned by `owner`.  Loop devices come last, for all objects
 * at once (inuse_add_loops). */
static void inuse_family_add_object(struct inuse_family *f,
                                    const struct safety_id *id,
                                    const char *name, bool with_parent,
                                    size_t owner)
{
    f->cur_owner = owner;
    inuse_family_add(f, id, REL_SELF, name);
    if (id->is_blk) {
        inuse_add_partitions(f, id->dev);
        if (with_parent)
            inuse_add_whole_disk(f, id->dev);
    }
}

/* The family of one object (see the top of the file).  with_parent:
 * include the whole disk of a partition (the source check: a disk and
 * its partition overlap; the holder check: a mounted sibling partition
 * does not matter). */
static int inuse_family_build(struct inuse_family *f,
                              const struct safety_id *id, const char *name,
                              bool with_parent, struct df_error *err)
{
    if (inuse_family_init(f, name, err) < 0)
        return -1;
    inuse_family_add_object(f, id, name, with_parent, 0);
    inuse_add_loops(f);
    return 0;
}

static void inuse_family_release(struct inuse_family *f)
{
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

/* ------------------------------------------------------------------ */
/* Check 1: the same object as the source.                             */

/* d and s are the members where the two families meet; src_name names
 * the source itself. */
static int inuse_refuse_same(const struct inuse_member *d,
                             const struct inuse_member *s,
                             const char *src_name, const char *dst_path,
                             struct df_error *err)
{
    if (d->rel == REL_SELF && s->rel == REL_SELF)
        return df_refuse(err, dst_path, "refusing to write: same %s as "
                         "the source", d->id.is_blk ? "device" : "file");
    if ((d->rel == REL_SELF && s->rel == REL_LOOP_OVER) ||
        (d->rel == REL_BACKING && s->rel == REL_SELF))
        return df_refuse(err, dst_path, "refusing to write: a loop device "
                         "over the source");
    if ((d->rel == REL_LOOP_OVER && s->rel == REL_SELF) ||
        (d->rel == REL_SELF && s->rel == REL_BACKING))
        return df_refuse(err, dst_path, "refusing to write: the backing "
                         "file of the source (loop device %s)",
                         d->rel == REL_LOOP_OVER ? d->name : src_name);
    if (d->rel == REL_SELF && s->rel == REL_PARTITION)
        return df_refuse(err, dst_path, "refusing to write: the source "
                         "%s is a partition of it", s->name);
    if (d->rel == REL_SELF && s->rel == REL_WHOLE_DISK)
        return df_refuse(err, dst_path, "refusing to write: a partition "
                         "of the source");
    return df_refuse(err, dst_path, "refusing to write: overlaps the "
                     "source through %s", d->name);
}

static int inuse_against(const struct inuse_family *dst,
                         const struct safety_id *sid, const char *sname,
                         const char *dst_path, struct df_error *err)
{
    struct inuse_family sf;
    int ret = 0;
    if (inuse_family_build(&sf, sid, sname, true, err) < 0)
        return -1;
    for (size_t i = 0; i < dst->n && !ret; i++)
        for (size_t j = 0; j < sf.n; j++)
            if (safety_id_eq(&dst->v[i].id, &sf.v[j].id)) {
                ret = inuse_refuse_same(&dst->v[i], &sf.v[j], sname,
                                        dst_path, err);
                break;
            }
    inuse_family_release(&sf);
    return ret;
}

int inuse_check_source(const struct safety_req *req, struct df_error *err)
{
    struct inuse_family df;
    struct safety_id did, sid;
    struct stat st;
    int ret = -1;

    if (!req->dst || req->dst->fd < 0 || req->dst->is_stream)
        return 0;
    inuse_id_from_file(req->dst, &did);
    if (inuse_family_build(&df, &did, req->dst_path, true, err) < 0)
        return -1;
    if (req->src_file && req->src_file->fd >= 0 &&
        !req->src_file->is_stream) {
        inuse_id_from_file(req->src_file, &sid);
        if (inuse_against(&df, &sid, req->src_file->name, req->dst_path,
                          err) < 0)
            goto out;
    }
    for (const struct image *m = req->src_image; m; m = m->parent) {
        if (m->file.fd < 0 || m->file.is_stream)
            continue;
        inuse_id_from_file(&m->file, &sid);
        if (inuse_against(&df, &sid, m->name, req->dst_path, err) < 0)
            goto out;
    }
    if (req->src_path && stat(req->src_path, &st) == 0 &&
        (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        safety_id_from_stat(&st, &sid);
        if (inuse_against(&df, &sid, req->src_path, req->dst_path, err) < 0)
            goto out;
    }
    ret = 0;
out:
    inuse_family_release(&df);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Check 2: mounted, held, swap.                                       */

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void inuse_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' &&
            p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 +
                          (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

int inuse_mount_point(const char *mountinfo, uint64_t rdev, bool rw_only,
                      char *mnt, size_t len)
{
    FILE *fp = fopen(mountinfo, "re");
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    if (!fp)
        return -1;
    while (!found && getline(&line, &cap, fp) > 0) {
        /* id parent maj:min root mountpoint opts [optional...] - type
         * source superopts */
        char *save = NULL, *field[6] = { 0 };
        char *tok = strtok_r(line, " \n", &save);
        int i = 0;
        while (tok && i < 5) {
            field[i++] = tok;
            tok = strtok_r(NULL, " \n", &save);
        }
        if (i < 5)
            continue;
        while (tok && strcmp(tok, "-") != 0)
            tok = strtok_r(NULL, " \n", &save);
        char *type = tok ? strtok_r(NULL, " \n", &save) : NULL;
        char *source = type ? strtok_r(NULL, " \n", &save) : NULL;
        char *super = source ? strtok_r(NULL, " \n", &save) : NULL;
        uint64_t mdev;
        struct stat st;
        bool hit = inuse_parse_devnum(field[2], &mdev) == 0 && mdev == rdev;
        if (!hit && source && !strncmp(source, "/dev/", 5)) {
            inuse_unescape(source);
            hit = stat(source, &st) == 0 && S_ISBLK(st.st_mode) &&
                  st.st_rdev == rdev;
        }
        /* The superblock's options say whether the filesystem writes
         * to the device (a read-only bind of a read-write mount still
         * writes: its other mount has its own line). */
        if (hit && rw_only)
            hit = super && !strncmp(super, "rw", 2) &&
                  (super[2] == ',' || super[2] == '\0');
        if (hit) {
            inuse_unescape(field[4]);
            snprintf(mnt, len, "%s", field[4]);
            found = 1;
        }
    }
    free(line);
    fclose(fp);
    return found;
}

/* The first holder of block device rdev (sysfs holders/), described as
 * "device-mapper vg-lv (dm-3)" or "md RAID md0" or its name. */
static bool inuse_sysfs_holder(uint64_t rdev, char *desc, size_t len)
{
    char dir[PATH_MAX], path[PATH_MAX], name[256];
    bool found = false;
    inuse_sysdir(rdev, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/holders", dir);
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        found = true;
        snprintf(path, sizeof(path), "/sys/class/block/%s/dm/name",
                 e->d_name);
        if (read_small_file(path, name, sizeof(name)) == 0) {
            snprintf(desc, len, "device-mapper %s (%s)", name, e->d_name);
            continue;
        }
        snprintf(path, sizeof(path), "/sys/class/block/%s/md", e->d_name);
        if (access(path, F_OK) == 0)
            snprintf(desc, len, "md RAID %s", e->d_name);
        else
            snprintf(desc, len, "%s", e->d_name);
    }
    closedir(d);
    return found;
}

/* Is a member of the family an active swap area? */
static const struct inuse_member *
inuse_swap(const struct inuse_family *f)
{
    FILE *fp = fopen("/proc/swaps", "re");
    char *line = NULL;
    size_t cap = 0;
    const struct inuse_member *hit = NULL;
    if (!fp)
        return NULL;
    /* "Filename Type Size Used Priority"; the first line is a title. */
    while (!hit && getline(&line, &cap, fp) > 0) {
        char *sp = strpbrk(line, " \t");
        struct stat st;
        struct safety_id id;
        if (line[0] != '/' || !sp)
            continue;
        *sp = '\0';
        inuse_unescape(line);
        if (stat(line, &st) < 0)
            continue;
        safety_id_from_stat(&st, &id);
        for (size_t i = 0; i < f->n && !hit; i++)
            if (safety_id_eq(&f->v[i].id, &id))
                hit = &f->v[i];
    }
    free(line);
    fclose(fp);
    return hit;
}

/* " (via /dev/loop3)" for a member that is not the object itself. */
static void inuse_via(const struct inuse_member *m, char *buf, size_t len)
{
    if (m->rel == REL_SELF)
        buf[0] = '\0';
    else
        snprintf(buf, len, " (via %s)", m->name);
}

static int inuse_check_mounted_held(const struct inuse_family *f,
                                    const char *dst_path,
                                    struct df_error *err)
{
    char mnt[PATH_MAX], desc[512], via[INUSE_NAME_LEN + 16];
    for (size_t i = 0; i < f->n; i++) {
        const struct inuse_member *m = &f->v[i];
        if (!m->id.is_blk || m->rel == REL_BACKING)
            continue;
        int r = inuse_mount_point("/proc/self/mountinfo", m->id.dev, false,
                                  mnt, sizeof(mnt));
        if (r < 0)
            return df_io(err, "/proc/self/mountinfo", errno,
                         "cannot check mounts");
        inuse_via(m, via, sizeof(via));
        if (r > 0)
            return df_refuse(err, dst_path, "refusing to write: mounted "
                             "on %s%s", mnt, via);
        if (inuse_sysfs_holder(m->id.dev, desc, sizeof(desc)))
            return df_refuse(err, dst_path, "refusing to write: held by "
                             "%s%s", desc, via);
    }
    const struct inuse_member *sw = inuse_swap(f);
    if (sw) {
        inuse_via(sw, via, sizeof(via));
        return df_refuse(err, dst_path, "refusing to write: in use as "
                         "swap%s", via);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Check 3: open by another process.                                   */

struct inuse_holder {
    bool found;
    bool has_locks;         /* its fd carries locks (fdinfo "lock:") */
    long pid;
    char cmd[256];
    const struct inuse_member *via;
};

/* The command of pid: argv[0]'s last component, else comm. */
static void inuse_command(long pid, char *buf, size_t len)
{
    char path[64], arg[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    FILE *fp = fopen(path, "re");
    size_t n = 0;
    if (fp) {
        n = fread(arg, 1, sizeof(arg) - 1, fp);
        fclose(fp);
    }
    arg[n] = '\0';
    if (n && arg[0]) {
        snprintf(buf, len, "%s", path_basename(arg));
        return;
    }
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    if (read_small_file(path, buf, len) < 0)
        snprintf(buf, len, "?");
}

/* What /proc/PID/fdinfo/FD says: does the fd carry locks ("lock:"
 * lines), and was it opened for writing ("flags:", octal open flags)? */
static void inuse_fdinfo(long pid, const char *fd, bool *locks,
                         bool *writes)
{
    char path[96], *line = NULL;
    size_t cap = 0;
    *locks = *writes = false;
    snprintf(path, sizeof(path), "/proc/%ld/fdinfo/%s", pid, fd);
    FILE *fp = fopen(path, "re");
    if (!fp)
        return;
    while (getline(&line, &cap, fp) > 0) {
        if (!strncmp(line, "lock:", 5)) {
            *locks = true;
        } else if (!strncmp(line, "flags:", 6)) {
            unsigned long fl = strtoul(line + 6, NULL, 8);
            *writes = (fl & O_ACCMODE) == O_WRONLY ||
                      (fl & O_ACCMODE) == O_RDWR;
        }
    }
    free(line);
    fclose(fp);
}

/* Scan /proc/PID/fd of every other process for a member of f (with
 * writers_only, only fds open for writing; with owner != SIZE_MAX,
 * only members of that object).  The first holder whose fd carries
 * locks wins, else the first holder.  Our own fds never count. */
static void inuse_find_process(const struct inuse_family *f,
                               bool writers_only, size_t owner,
                               struct inuse_holder *h)
{
    long self = (long)getpid();
    DIR *proc = opendir("/proc");
    memset(h, 0, sizeof(*h));
    if (!proc)
        return;
    struct dirent *pe;
    while ((pe = readdir(proc)) && !h->has_locks) {
        char path[PATH_MAX];
        char *end;
        long pid = strtol(pe->d_name, &end, 10);
        if (!isdigit((unsigned char)pe->d_name[0]) || *end || pid == self)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
        DIR *fds = opendir(path);
        if (!fds)
            continue;       /* gone, or another user's (not root) */
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            struct stat st;
            struct safety_id id;
            const struct inuse_member *m = NULL;
            if (fe->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/%ld/fd/%s", pid,
                     fe->d_name);
            if (stat(path, &st) < 0)
                continue;
            safety_id_from_stat(&st, &id);
            for (size_t i = 0; i < f->n && !m; i++)
                if (safety_id_eq(&f->v[i].id, &id) &&
                    (owner == SIZE_MAX || f->v[i].owner == owner))
                    m = &f->v[i];
            if (!m)
                continue;
            bool locks, writes;
            inuse_fdinfo(pid, fe->d_name, &locks, &writes);
            if (writers_only && !writes)
                continue;
            if (!h->found || locks) {
                h->found = true;
                h->has_locks = locks;
                h->pid = pid;
                h->via = m;
                inuse_command(pid, h->cmd, sizeof(h->cmd));
            }
            if (locks)
                break;
        }
        closedir(fds);
    }
    closedir(proc);
}

/* ------------------------------------------------------------------ */
/* Check 4: QEMU's OFD lock bytes.                                     */

static bool inuse_byte_locked(int fd, off_t off)
{
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return false;
    return fl.l_type != F_UNLCK;
}

unsigned inuse_qemu_locks(int fd)
{
    unsigned mask = 0;
    for (int i = 0; i <= 4; i++) {
        if (inuse_byte_locked(fd, 100 + i))
            mask |= INUSE_LOCK_PERM(i);
        if (inuse_byte_locked(fd, 200 + i))
            mask |= INUSE_LOCK_SHARED(i);
    }
    return mask;
}

static const char *inuse_lock_desc(unsigned mask)
{
    if (mask & INUSE_LOCK_PERM(1))
        return "write lock held";
    if (mask & INUSE_LOCK_SHARED(1))
        return "read lock held, writers refused";
    return "read lock held";
}

/* ------------------------------------------------------------------ */

/* Is block device fd claimed exclusively (O_EXCL open gives EBUSY)? */
static bool inuse_blk_busy(const struct df_file *dst)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", dst->fd);
    int fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return false;
    }
    return errno == EBUSY;
}

int inuse_check_holders(const struct safety_req *req, struct df_error *err)
{
    const struct df_file *dst = req->dst;
    struct inuse_family f = { 0 };
    struct inuse_holder h;
    struct safety_id did;
    char via[INUSE_NAME_LEN + 16];
    int ret = -1;

    if (!dst || dst->fd < 0 || dst->is_stream)
        return 0;
    inuse_id_from_file(dst, &did);
    if (inuse_family_build(&f, &did, req->dst_path, false, err) < 0)
        return -1;
    if (inuse_check_mounted_held(&f, req->dst_path, err) < 0)
        goto out;

    inuse_find_process(&f, false, SIZE_MAX, &h);
    via[0] = '\0';
    if (h.found)
        inuse_via(h.via, via, sizeof(via));
    unsigned locks = inuse_qemu_locks(dst->fd);
    if (locks && h.found) {
        df_refuse(err, req->dst_path, "refusing to write: locked by QEMU "
                  "(%s) by %s (pid %ld)", inuse_lock_desc(locks), h.cmd,
                  h.pid);
        goto out;
    }
    if (locks) {
        df_refuse(err, req->dst_path, "refusing to write: locked by QEMU "
                  "(%s)", inuse_lock_desc(locks));
        goto out;
    }
    if (h.found) {
        df_refuse(err, req->dst_path, "refusing to write: open by %s "
                  "(pid %ld)%s", h.cmd, h.pid, via);
        goto out;
    }
    for (size_t i = 0; i < f.n; i++)
        if (f.v[i].rel == REL_LOOP_OVER) {
            df_refuse(err, req->dst_path, "refusing to write: open by "
                      "loop device %s", f.v[i].name);
            goto out;
        }
    if (dst->is_blockdev && inuse_blk_busy(dst)) {
        df_refuse(err, req->dst_path, "refusing to write: device is "
                  "claimed exclusively (busy: mounted elsewhere or in "
                  "use by the kernel)");
        goto out;
    }
    ret = 0;
out:
    inuse_family_release(&f);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Holding the destination for the job.                                */

int safety_claim(const struct df_file *dst, int *claim_fd,
                 struct df_error *err)
{
    static const int qemu_bytes[] = { 100, 101, 201 };
    *claim_fd = -1;
    if (!dst || dst->fd < 0 || dst->is_stream)
        return 0;
    if (dst->is_blockdev) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", dst->fd);
        *claim_fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
        if (*claim_fd < 0 && errno == EBUSY)
            return df_refuse(err, dst->name, "refusing to write: device "
                             "is claimed exclusively (busy: mounted "
                             "elsewhere or in use by the kernel)");
        if (*claim_fd < 0)
            return df_io(err, dst->name, errno, "cannot claim the device");
    }
    /* As QEMU does for a writer that shares no writes (docs/formats.md
     * section 7): shared locks, which conflict with QEMU's exclusive
     * probes.  Advisory: a failure here (NFS without lock support) does
     * not stop the job. */
    for (size_t i = 0; i < sizeof(qemu_bytes) / sizeof(qemu_bytes[0]); i++) {
        struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
                            .l_start = qemu_bytes[i], .l_len = 1 };
        (void)fcntl(dst->fd, F_OFD_SETLK, &fl);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* A source in use by a writer (safety_check_source).                  */

struct inuse_obj {
    const struct df_file *file;
    const char *name;
};

/* Every file the open chain reads: each layer's own file and the files
 * its driver opened (VMDK extents).  Past cap, the rest is not seen. */
static size_t inuse_src_objects(const struct image *src,
                                struct inuse_obj *v, size_t cap)
{
    size_t n = 0;
    for (const struct image *m = src; m; m = m->parent) {
        if (n < cap && m->file.fd >= 0 && !m->file.is_stream)
            v[n++] = (struct inuse_obj){ &m->file, m->name };
        for (size_t i = 0; i < m->n_aux_files; i++) {
            const struct df_file *f = &m->aux_files[i];
            if (n < cap && f->fd >= 0 && !f->is_stream)
                v[n++] = (struct inuse_obj){ f, f->name };
        }
    }
    return n;
}

int inuse_source_writer(const struct image *src, char *why, size_t len,
                        char *who, size_t wlen, struct df_error *err)
{
    struct inuse_obj *obj = calloc(INUSE_FAMILY_MAX, sizeof(*obj));
    struct inuse_family f = { 0 };
    struct inuse_holder h;
    struct safety_id id;
    char mnt[PATH_MAX], via[INUSE_NAME_LEN + 16];
    size_t n, qemu = SIZE_MAX;
    int ret = -1;

    if (!obj)
        return df_io(err, src->name, ENOMEM, "cannot check for use");
    n = inuse_src_objects(src, obj, INUSE_FAMILY_MAX);
    if (inuse_family_init(&f, src->name, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        /* Byte 101 is QEMU's "write" permission: a running VM or a
         * qemu-io without -r holds it; a reader (qemu-img info, qemu-io
         * -r) holds 100 and maybe 201, and changes nothing. */
        if (qemu == SIZE_MAX &&
            (inuse_qemu_locks(obj[i].file->fd) & INUSE_LOCK_PERM(1)))
            qemu = i;
        inuse_id_from_file(obj[i].file, &id);
        inuse_family_add_object(&f, &id, obj[i].name, true, i);
    }
    inuse_add_loops(&f);
    ret = 1;
    if (qemu != SIZE_MAX) {
        inuse_find_process(&f, false, qemu, &h);
        snprintf(who, wlen, "%s", obj[qemu].name);
        if (h.found)
            snprintf(why, len, "QEMU's write lock is held by %s (pid %ld)",
                     h.cmd, h.pid);
        else
            snprintf(why, len, "QEMU's write lock is held");
        goto out;
    }
    for (size_t i = 0; i < f.n; i++) {
        const struct inuse_member *m = &f.v[i];
        if (!m->id.is_blk)
            continue;
        int r = inuse_mount_point("/proc/self/mountinfo", m->id.dev, true,
                                  mnt, sizeof(mnt));
        if (r < 0) {
            ret = df_io(err, "/proc/self/mountinfo", errno,
                        "cannot check mounts");
            goto out;
        }
        if (r > 0) {
            inuse_via(m, via, sizeof(via));
            snprintf(who, wlen, "%s", obj[m->owner].name);
            snprintf(why, len, "mounted read-write on %s%s", mnt, via);
            goto out;
        }
    }
    inuse_find_process(&f, true, SIZE_MAX, &h);
    if (h.found) {
        inuse_via(h.via, via, sizeof(via));
        snprintf(who, wlen, "%s", obj[h.via->owner].name);
        snprintf(why, len, "open for writing by %s (pid %ld)%s", h.cmd,
                 h.pid, via);
        goto out;
    }
    ret = 0;
out:
    inuse_family_release(&f);
    free(obj);
    return ret;
}
