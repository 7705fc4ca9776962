/*
 * fs_swap.c: the used-block map of a Linux swap area (fs.h).
 *
 * The first page holds the header; the rest holds nothing that outlives
 * a reboot, so only that page is used.  A hibernation image replaces the
 * signature at the end of the first page: then the whole area matters,
 * and the map is refused so the region is copied whole.
 *
 * Signature at page_size - 10 (SWAPSPACE2, or the old SWAP-SPACE);
 * page sizes 4, 8, 16 and 64 KiB are probed, as util-linux does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "track/fs.h"
#include "util/bytes.h"
#include "util/extent.h"
#include "util/overflow.h"

#define SWAP_PAGE_MAX 65536u

static const char *const hibernation_sigs[] = {
    "S1SUSPEND", "S2SUSPEND", "ULSUSPEND", "LINHIB0001",
    "\xed\xc3\x02\xe9\x98\x56\xe5\x0c",
};

/* 1: a swap signature at the end of a page of size ps; 2: a
 * hibernation marker there; 0: neither. */
static int signature_at(const uint8_t *page, unsigned ps)
{
    const uint8_t *s = page + ps - 10;
    if (!memcmp(s, "SWAPSPACE2", 10) || !memcmp(s, "SWAP-SPACE", 10))
        return 1;
    for (size_t i = 0; i < sizeof(hibernation_sigs) / sizeof(*hibernation_sigs);
         i++) {
        size_t n = strlen(hibernation_sigs[i]);
        if (!memcmp(s, hibernation_sigs[i], n))
            return 2;
    }
    return 0;
}

struct used_map *fs_swap_open(struct image *img, uint64_t off, uint64_t len,
                              struct fs_why *why, struct df_error *err)
{
    uint8_t *page = NULL;
    struct used_map *um = NULL;
    struct extent_list l;
    unsigned ps = 0;
    int kind = 0;

    memset(why, 0, sizeof(*why));
    snprintf(why->fs, sizeof(why->fs), "swap");
    extent_list_init(&l, 1);

    uint64_t want = min_u64(len, SWAP_PAGE_MAX);
    if (want < 4096) {
        snprintf(why->reason, sizeof(why->reason),
                 "swap area shorter than a page");
        goto out;
    }
    page = malloc(SWAP_PAGE_MAX);
    if (!page) {
        df_io(err, "swap", ENOMEM, "cannot read the swap header");
        goto out;
    }
    if (image_read(img, page, (size_t)want, off, err) < 0)
        goto out;
    for (unsigned p = 4096; p <= want && !kind; p <<= 1) {
        if (p == 32768)
            continue;
        kind = signature_at(page, p);
        ps = p;
    }
    if (kind == 2) {
        snprintf(why->reason, sizeof(why->reason),
                 "swap holds a hibernation image");
        goto out;
    }
    if (kind != 1) {
        snprintf(why->reason, sizeof(why->reason), "no swap signature");
        goto out;
    }
    /* version 1 in the creator's byte order (v1 headers only) */
    if (!memcmp(page + ps - 10, "SWAPSPACE2", 10) &&
        get_le32(page + 1024) != 1 && get_be32(page + 1024) != 1) {
        snprintf(why->reason, sizeof(why->reason),
                 "swap header version not understood");
        goto out;
    }
    if (extent_list_append(&l, off, ps, EXT_DATA, "swap", err) < 0)
        goto out;
    um = used_map_from_list("swap", &l, err);
    if (um)
        why->used_bytes = ps;
out:
    free(page);
    extent_list_release(&l);
    return um;
}
