/*
 * fuzz_vmdk_desc.c: the VMDK descriptor parser alone (vmdk_desc.c).
 */
#include "image/vmdk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmdk_desc d;
    struct df_error err;

    df_error_init(&err);
    vmdk_desc_parse((const char *)data, size, "fuzz", size & 1, &d, &err);
    vmdk_desc_release(&d);
    return 0;
}
