/*
 * dl.h: libraries loaded when first needed.
 *
 * libnbd (through gnutls, p11-kit, libxml2 and ICU) and libarchive cost
 * every process that links them about 13 ms of start-up on this kind of
 * machine, a copy that touches neither NBD nor a compressed or tarred
 * stream included (and serve, started for every remote copy).  They are
 * opened with dlopen() by the code that needs them (image/nbd_dl.c,
 * engine/archive_dl.c), which then calls through pointers.
 */
#ifndef DF_DL_H
#define DF_DL_H

#include <stddef.h>

#include "util/error.h"

/*
 * Open `soname` once (later calls return the first result) and fill
 * ptrs[i] with the symbol names[i], for n names.  0, or -1 with err
 * naming the library, the Debian package that has it, and dlerror().
 * Thread-safe.
 */
int dl_load(const char *soname, const char *package,
            const char *const *names, void **ptrs, size_t n, int *state,
            struct df_error *err);

#endif
