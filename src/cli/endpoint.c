/*
 * endpoint.c: parsing SRC/DST arguments (see endpoint.h).
 */
#include "cli/endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/file.h"

int endpoint_parse(const char *arg, struct endpoint *ep,
                   struct df_error *err)
{
    if (!*arg)
        return df_usage(err, "empty path");
    ep->path = arg;
    ep->kind = strcmp(arg, "-") ? EP_LOCAL : EP_STREAM;
    return 0;
}

int endpoint_check_new_path(const char *path, struct df_error *err)
{
    char dir[PATH_MAX], real[PATH_MAX];

    /* Resolve the directory so /dev/../dev/sdx and symlinks into /dev
     * are caught too; an unresolvable directory fails later at open. */
    path_dirname(path, dir, sizeof(dir));
    if (!realpath(dir, real))
        snprintf(real, sizeof(real), "%s", dir);
    if (!strcmp(real, "/dev") || !strncmp(real, "/dev/", 5))
        return df_refuse(err, path, "refusing to write: no such device "
                         "(diskferry does not create files under /dev)");
    return 0;
}
