/*
 * chain.c: finding, checking and opening the parents of a child image
 * (see chain.h for the search order and what is refused).
 */
#define _GNU_SOURCE
#include "image/chain.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Most files an identifier search opens in one directory. */
#define CHAIN_MAX_SCAN 4096

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static const char *find_override(const struct image *img,
                                 const struct image_open_opts *opts)
{
    if (!opts)
        return NULL;
    for (size_t i = 0; i < opts->n_parent_overrides; i++) {
        const struct parent_override *o = &opts->parent_overrides[i];
        if (!strcmp(o->child, img->path) || same_file(o->child, img->path))
            return o->parent;
    }
    return NULL;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Append "dir" to a "looked in" list for messages. */
static void looked_add(char *buf, size_t len, const char *what)
{
    size_t n = strlen(buf);
    if (n < len)
        snprintf(buf + n, len - n, "%s%s", n ? ", " : "", what);
}

/* named: the top's format was named, so this parent is trusted as it
 * was before the probing rule (image.h). */
static int open_candidate(const char *path, bool named, struct image **out,
                          struct df_error *err)
{
    struct image_open_opts oo = { .named_chain = named };
    struct df_file f;
    if (df_file_open(&f, path, O_RDONLY, err) < 0)
        return -1;
    return image_open_file(&f, path, path, &oo, out, err);
}

/* What cur records as its parent, for messages. */
static void describe_parent(const struct image *cur, char *buf, size_t len)
{
    snprintf(buf, len, "a %s with a %s (%s)", cur->drv->name,
             strcmp(cur->drv->name, "qcow2") ? "parent" : "backing file",
             cur->parent_name[0] ? cur->parent_name
                                 : "recorded by identifier");
}

/*
 * The top's format was probed and the command line names no parent for
 * cur: refuse (or, for info, stop here and say why).
 */
static int probed_parent(struct image *top, struct image *cur,
                         const struct image_open_opts *opts,
                         struct df_error *err)
{
    char what[PATH_MAX + 64];
    if (opts && opts->inspect) {
        snprintf(top->probe_note, sizeof(top->probe_note),
                 "%s %.160s not opened: the format was probed; -f %s "
                 "shows the chain",
                 strcmp(cur->drv->name, "qcow2") ? "parent" : "backing file",
                 cur->parent_name[0] ? cur->parent_name
                                     : "(recorded by identifier)",
                 top->drv->name);
        return 0;
    }
    describe_parent(cur, what, sizeof(what));
    if (cur == top)
        return df_corrupt(err, cur->name, -1, "%s: give -f %s to follow "
                          "its chain, or -f raw to copy its bytes", what,
                          top->drv->name);
    return df_corrupt(err, cur->name, -1, "%s, in the chain of %s whose "
                      "format was probed: give -f %s to follow the chain, "
                      "or name this parent with --parent", what, top->name,
                      top->drv->name);
}

/*
 * Parents recorded only by identifier: open every regular file in the
 * child's directory and each --parent-dir with the child's format and
 * keep those the child's driver accepts.
 */
static int find_by_id(struct image *child, const struct image_open_opts *opts,
                      bool trusted, struct image **out, const char **how,
                      struct df_error *err)
{
    char dirs[1 + 16][PATH_MAX];
    size_t ndirs = 0;
    char looked[512] = "";
    struct image *found = NULL;
    char found_path[PATH_MAX] = "";
    struct df_error near;       /* a candidate named but refused (-2) */

    df_error_init(&near);

    /* A probed child's own directory is not named by the user. */
    if (trusted)
        path_dirname(child->path, dirs[ndirs++], PATH_MAX);
    for (size_t i = 0; opts && i < opts->n_parent_dirs && ndirs < 17; i++)
        snprintf(dirs[ndirs++], PATH_MAX, "%s", opts->parent_dirs[i]);

    for (size_t d = 0; d < ndirs; d++) {
        DIR *dir = opendir(dirs[d]);
        looked_add(looked, sizeof(looked), dirs[d]);
        if (!dir)
            continue;
        struct dirent *de;
        unsigned scanned = 0;
        while ((de = readdir(dir)) && scanned < CHAIN_MAX_SCAN) {
            char path[PATH_MAX];
            struct stat st;
            if (de->d_name[0] == '.')
                continue;
            if (path_join(path, sizeof(path), dirs[d], de->d_name) < 0 ||
                stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
                same_file(path, child->path))
                continue;
            scanned++;
            struct df_error e2;
            struct image *cand = NULL;
            df_error_init(&e2);
            if (open_candidate(path, trusted, &cand, &e2) < 0)
                continue;
            df_error_init(&e2);
            int r = cand->drv != child->drv ? -1 :
                    child->drv->check_parent(child, cand, &e2);
            if (r == -2 && near.cat == DF_OK)
                df_error_copy(&near, &e2);
            if (r < 0) {
                image_close(cand);
                continue;
            }
            if (found && !same_file(found_path, path)) {
                df_corrupt(err, child->name, -1,
                           "two candidate parents match: %s and %s",
                           found_path, path);
                image_close(cand);
                closedir(dir);
                image_close(found);
                return -1;
            }
            if (found) {
                image_close(cand);
                continue;
            }
            found = cand;
            snprintf(found_path, sizeof(found_path), "%s", path);
            *how = d == 0 && trusted ? "identifier" : "--parent-dir";
        }
        closedir(dir);
    }
    if (!found && near.cat != DF_OK) {
        df_error_copy(err, &near);
        return -1;
    }
    if (!found)
        return df_fail(err, DF_IO, ENOENT, child->name, -1,
                       "parent image not found (looked for a matching "
                       "identifier in %s; name it with --parent)", looked);
    *out = found;
    return 0;
}

static int find_by_name(struct image *child,
                        const struct image_open_opts *opts, bool trusted,
                        char *path, size_t plen, const char **how,
                        struct df_error *err)
{
    char dir[PATH_MAX], looked[1024] = "";
    const char *base = path_basename(child->parent_name);
    bool found = false;

    /* A probed child's recorded path is guest data, not the user's. */
    path_dirname(child->path, dir, sizeof(dir));
    if (trusted && path_join(path, plen, dir, child->parent_name) == 0 &&
        exists(path)) {
        *how = "recorded";
        return 0;
    }
    if (trusted)
        looked_add(looked, sizeof(looked), child->parent_name);
    for (size_t i = 0; opts && i < opts->n_parent_dirs; i++) {
        char cand[PATH_MAX];
        if (path_join(cand, sizeof(cand), opts->parent_dirs[i], base) < 0)
            continue;
        looked_add(looked, sizeof(looked), cand);
        if (!exists(cand))
            continue;
        if (found && !same_file(cand, path))
            return df_corrupt(err, child->name, -1,
                              "parent '%s' is ambiguous: %s and %s "
                              "(name it with --parent)", base, path, cand);
        if (!found) {
            snprintf(path, plen, "%s", cand);
            found = true;
            *how = "--parent-dir";
        }
    }
    if (found)
        return 0;
    if (!trusted)
        return df_fail(err, DF_IO, ENOENT, child->name, -1,
                       "parent image not found (looked at %s; the recorded "
                       "path %s is followed only when -f names the format)",
                       looked, child->parent_name);
    return df_fail(err, DF_IO, ENOENT, child->name, -1,
                   "parent image not found (looked at %s; give --parent-dir "
                   "or --parent)", looked);
}

int chain_open_parents(struct image *img, const struct image_open_opts *opts,
                       struct df_error *err)
{
    struct image *cur = img;
    bool trusted = img->format_named;
    bool dirs = opts && opts->n_parent_dirs;

    while (cur->has_parent_ref) {
        struct image *parent = NULL;
        const char *how = NULL;
        char path[PATH_MAX];

        if (cur->depth + 1 >= CHAIN_MAX_DEPTH)
            return df_corrupt(err, img->name, -1,
                              "backing chain deeper than %d layers",
                              CHAIN_MAX_DEPTH);
        const char *ovr = find_override(cur, opts);
        if (ovr) {
            snprintf(path, sizeof(path), "%s", ovr);
            how = "--parent";
            if (open_candidate(path, trusted, &parent, err) < 0)
                return -1;
        } else if (!trusted && !dirs) {
            return probed_parent(img, cur, opts, err);
        } else if (cur->parent_name[0]) {
            if (find_by_name(cur, opts, trusted, path, sizeof(path), &how,
                             err) < 0)
                return -1;
            if (open_candidate(path, trusted, &parent, err) < 0)
                return -1;
        } else if (cur->parent_by_id && cur->drv->check_parent) {
            if (find_by_id(cur, opts, trusted, &parent, &how, err) < 0)
                return -1;
        } else {
            return df_corrupt(err, cur->name, -1,
                              "image has a parent but records no way to "
                              "find it (give --parent)");
        }

        /* A loop: the parent is a file already in the chain. */
        for (struct image *m = img; m; m = m->parent) {
            if (m->file.dev == parent->file.dev &&
                m->file.ino == parent->file.ino) {
                df_corrupt(err, cur->name, -1,
                           "backing chain loop: %s is already in the chain",
                           parent->name);
                image_close(parent);
                return -1;
            }
        }
        if (cur->drv->check_parent &&
            cur->drv->check_parent(cur, parent, err) < 0) {
            image_close(parent);
            return -1;
        }
        snprintf(cur->parent_how, sizeof(cur->parent_how), "%s", how);
        parent->depth = cur->depth + 1;
        cur->parent = parent;
        cur = parent;
    }
    return 0;
}

void chain_attach_parent(struct image *child, struct image *parent,
                         const char *how)
{
    snprintf(child->parent_how, sizeof(child->parent_how), "%s", how);
    parent->depth = child->depth + 1;
    child->parent = parent;
}
