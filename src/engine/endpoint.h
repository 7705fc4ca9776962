/*
 * endpoint.h: what a SRC or DST argument names: a local path, `-` (a
 * raw byte stream on stdin / stdout), or `[user@]host:PATH` on another
 * host (rsync's rules: a colon before any slash makes it remote, so
 * `./a:b` and `/x/a:b` are local; an IPv6 address goes in brackets:
 * `[fe80::1]:/dev/vg0/vm`, `root@[::1]:vm.img`), or a member of a
 * tar archive, `tar:ARCHIVE//MEMBER` (ARCHIVE a path or `-`, split at
 * its first `//`; a source only), or an NBD export named by its URI
 * (`nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`,
 * `nbds://...`: image/nbd.h), opened as an image with no local file.
 */
#ifndef DF_ENDPOINT_H
#define DF_ENDPOINT_H

#include <limits.h>
#include <stdbool.h>

#include "util/error.h"

enum endpoint_kind { EP_LOCAL, EP_STREAM, EP_REMOTE, EP_TAR, EP_NBD };

struct endpoint {
    enum endpoint_kind kind;
    const char *path;           /* borrowed from argv, or rpath */
    /* EP_REMOTE */
    bool has_user;
    char user[256];
    char host[256];             /* brackets removed */
    char rpath[PATH_MAX];
    /* EP_TAR: tar:ARCHIVE//MEMBER (ARCHIVE a path, or - for stdin) */
    char archive[PATH_MAX];
    char member[PATH_MAX];
};

int endpoint_parse(const char *arg, struct endpoint *ep,
                   struct df_error *err);

#endif
