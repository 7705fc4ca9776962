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

#endif
