/* fuzz_qcow2.c: the qcow2 reader: open, map and read one layer. */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("qcow2", data, size);
}
