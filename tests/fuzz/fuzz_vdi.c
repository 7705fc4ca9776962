/* fuzz_vdi.c: the VDI driver's open, map and read (one layer). */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vdi", data, size);
}
