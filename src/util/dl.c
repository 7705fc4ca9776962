/*
 * dl.c: loading a library on first use (see dl.h).
 */
#include "util/dl.h"

#include <dlfcn.h>
#include <pthread.h>

static pthread_mutex_t dl_lock = PTHREAD_MUTEX_INITIALIZER;

/* state: 0 not tried, 1 loaded, -1 failed (err says why, once more). */
int dl_load(const char *soname, const char *package,
            const char *const *names, void **ptrs, size_t n, int *state,
            struct df_error *err)
{
    int ret = 0;
    pthread_mutex_lock(&dl_lock);
    if (*state == 0) {
        void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
        const char *why = NULL;
        for (size_t i = 0; h && i < n && !why; i++)
            if (!(ptrs[i] = dlsym(h, names[i])))
                why = names[i];
        *state = h && !why ? 1 : -1;
        if (*state < 0)
            df_fail(err, DF_USAGE, 0, soname, -1, "cannot load (install "
                    "the %s package): %s", package,
                    why ? why : dlerror());
    } else if (*state < 0) {
        df_fail(err, DF_USAGE, 0, soname, -1, "cannot load (install the "
                "%s package)", package);
    }
    ret = *state > 0 ? 0 : -1;
    pthread_mutex_unlock(&dl_lock);
    return ret;
}
