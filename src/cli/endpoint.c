/*
 * endpoint.c: parsing SRC/DST arguments (see endpoint.h).
 */
#include "cli/endpoint.h"

#include <string.h>

int endpoint_parse(const char *arg, struct endpoint *ep,
                   struct df_error *err)
{
    if (!*arg)
        return df_usage(err, "empty path");
    ep->path = arg;
    ep->kind = strcmp(arg, "-") ? EP_LOCAL : EP_STREAM;
    return 0;
}
