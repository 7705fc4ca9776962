/*
 * fuzz_manifest.c: the manifest and state record reader
 * (track/manifest.c) on hostile files: header, lengths, leaf runs, the
 * checksum and the digest the leaves must make.
 *
 * Each input is parsed as it is, and again with its checksum made
 * right (the last hash over everything before it), so that mutations
 * reach the leaf runs behind the checksum.  A manifest that parses is
 * compared with itself through its hash tree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "track/htree.h"
#include "track/manifest.h"
#include "util/bytes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse(const uint8_t *buf, size_t len)
{
    struct manifest m;
    struct df_error err;
    struct extent_list l;
    df_error_init(&err);
    if (manifest_parse(buf, len, "fuzz", &m, &err) != 0)
        return;
    extent_list_init(&l, 1024);
    if (htree_diff(&m.tree, &m.tree, 0, &l, &err) != 0 || l.n)
        abort();                /* a tree differs from itself */
    extent_list_release(&l);
    manifest_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse(data, size);
    if (size < MANIFEST_HDR_LEN + 16 || size > (64u << 20))
        return 0;
    uint32_t alg = get_le32(data + 12);
    if (alg != DIGEST_XXH128 && alg != DIGEST_SHA256)
        return 0;
    size_t hl = digest_len((enum digest_alg)alg);
    if (size < MANIFEST_HDR_LEN + hl)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    digest_buf((enum digest_alg)alg, copy, size - hl, copy + size - hl);
    parse(copy, size);
    free(copy);
    return 0;
}
