/* fuzz_raw.c: the probe of every driver and the raw driver. */
#include <string.h>

#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct df_file f;
    struct df_error err;
    const char *unsupported;
    df_error_init(&err);
    df_file_init_mem(&f, "fuzz", data, size);
    image_probe_file(&f, &unsupported, &err);
    return fuzz_image(NULL, data, size);
}
