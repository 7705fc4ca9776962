/* fuzz_vhd.c: the VHD driver's open, map and read (one layer). */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vhd", data, size);
}
