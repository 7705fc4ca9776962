/*
 * endpoint.h: what a SRC or DST argument names: a local path, or `-`
 * (a raw byte stream on stdin / stdout).
 */
#ifndef DF_ENDPOINT_H
#define DF_ENDPOINT_H

#include <limits.h>
#include <stdbool.h>

#include "util/error.h"

enum endpoint_kind { EP_LOCAL, EP_STREAM };

struct endpoint {
    enum endpoint_kind kind;
    const char *path;           /* borrowed from argv */
};

int endpoint_parse(const char *arg, struct endpoint *ep,
                   struct df_error *err);

/*
 * A path diskferry is about to create: refuse a path under /dev (a
 * mistyped device name would become a regular file on the devtmpfs).
 */
int endpoint_check_new_path(const char *path, struct df_error *err);

#endif
