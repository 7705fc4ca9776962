/*
 * fuzz_vmdk.c: the VMDK driver over a binary extent held in memory
 * (KDMV incl. streamOptimized and an embedded descriptor, COWD,
 * seSparse).  A text descriptor naming other files cannot open them in
 * memory: that path fails cleanly and fuzz_vmdk_desc covers its parser.
 */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_image("vmdk", data, size);
}
