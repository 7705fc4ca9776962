/*
 * test_vdi.c: the VDI driver's identity properties: UUIDs in their text
 * form (IPRT layout: first u32 and two u16 little endian), type, block
 * size, and that a differencing image asks for its parent by UUID.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "util/bytes.h"

static int failures;

#define CHECK(c)                                                           \
    do {                                                                   \
        if (!(c)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,         \
                    __LINE__, #c);                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static const uint8_t uuid_a[16] = { 0x67, 0x45, 0x23, 0x01, 0xab, 0x89,
                                    0xef, 0xcd, 0x01, 0x23, 0x45, 0x67,
                                    0x89, 0xab, 0xcd, 0xef };
#define UUID_A_TEXT "01234567-89ab-cdef-0123-456789abcdef"

/* A 1 MiB image of one 1 MiB block, type `type`, map entry FREE. */
static void make_vdi(uint8_t *b, uint32_t type)
{
    memset(b, 0, 1024);
    put_le32(b + 64, 0xbeda107f);
    put_le32(b + 68, 0x00010001);
    put_le32(b + 72, 384);
    put_le32(b + 76, type);
    put_le32(b + 340, 512);
    put_le32(b + 344, 1024);
    put_le32(b + 360, 512);
    put_le64(b + 368, 1 << 20);
    put_le32(b + 376, 1 << 20);
    put_le32(b + 384, 1);
    memcpy(b + 392, uuid_a, 16);
    memcpy(b + 424, uuid_a, 16);
    put_le32(b + 512, 0xffffffff);
}

static struct image *open_mem(const uint8_t *b, size_t len)
{
    struct image_open_opts opts = { .no_parents = true };
    struct df_file f;
    struct df_error err;
    struct image *img = NULL;

    df_error_init(&err);
    df_file_init_mem(&f, "mem.vdi", b, len);
    if (image_open_file(&f, "mem.vdi", "mem.vdi", &opts, &img, &err) < 0)
        fprintf(stderr, "open: %s\n", err.msg);
    return img;
}

int main(void)
{
    static uint8_t b[1024];

    make_vdi(b, 1);
    struct image *img = open_mem(b, sizeof(b));
    CHECK(img && !strcmp(img->drv->name, "vdi"));
    if (img) {
        CHECK(!strcmp(image_get_prop(img, "uuid"), UUID_A_TEXT));
        CHECK(!strcmp(image_get_prop(img, "type"), "dynamic"));
        CHECK(!strcmp(image_get_prop(img, "block_size"), "1048576"));
        CHECK(!image_get_prop(img, "parent_uuid"));
        CHECK(!img->has_parent_ref);
        CHECK(img->size == 1 << 20);
        image_close(img);
    }

    make_vdi(b, 4);
    img = open_mem(b, sizeof(b));
    CHECK(img != NULL);
    if (img) {
        CHECK(!strcmp(image_get_prop(img, "type"), "diff"));
        CHECK(!strcmp(image_get_prop(img, "parent_uuid"), UUID_A_TEXT));
        CHECK(img->has_parent_ref && img->parent_by_id);
        CHECK(img->parent_name[0] == '\0');
        image_close(img);
    }

    make_vdi(b, 2);
    img = open_mem(b, sizeof(b));
    CHECK(img && !strcmp(image_get_prop(img, "type"), "fixed"));
    image_close(img);
    return failures ? 1 : 0;
}
