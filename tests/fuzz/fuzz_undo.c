/*
 * fuzz_undo.c: the undo journal reader (safety/undo.c) on hostile
 * journals: header, record scan, identity check against a destination.
 *
 * Input: u32le L (capped at 1 MiB), then L bytes of the destination as
 * it is now, then the journal.  Seeds (corpus/undo/) are real journals
 * from `diskferry copy --undo` with the destination they were made on,
 * so the fuzzer starts past the identity check.
 */
#include <stdint.h>
#include <string.h>

#include "safety/safety_int.h"
#include "util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct df_error err;
    struct undo_stats st;
    if (size < 4)
        return 0;
    size_t dlen = get_le32(data);
    if (dlen > 1024 * 1024 || dlen > size - 4)
        return 0;
    df_error_init(&err);
    undo_check_mem(data + 4 + dlen, size - 4 - dlen, data + 4, dlen, &st,
                   &err);
    return 0;
}
