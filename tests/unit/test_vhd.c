/*
 * test_vhd.c: the VHD driver's probe (fixed images are found by their
 * footer at EOF) and identity properties, and the virtual size rule of
 * QEMU 10.0 (CHS for "qemu"/"vpc " creators, current size otherwise).
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

#define DATA (64 * 1024)

/* A fixed VHD: DATA bytes, then a footer; CHS 2/4/17 = 69632 bytes. */
static void make_fixed(uint8_t *b, const char *creator, uint64_t cur)
{
    uint8_t *f = b + DATA + 8192;
    memset(b, 0, DATA + 8192 + 512);
    memcpy(f, "conectix", 8);
    put_be32(f + 8, 2);
    put_be32(f + 12, 0x00010000);
    put_be64(f + 16, ~0ull);
    memcpy(f + 28, creator, 4);
    put_be64(f + 48, cur);
    put_be16(f + 56, 2);
    f[58] = 4;
    f[59] = 17;
    put_be32(f + 60, 2);
    for (int i = 0; i < 16; i++)
        f[68 + i] = (uint8_t)(0xa0 + i);
    uint32_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum += f[i];
    put_be32(f + 64, ~sum);
}

static struct image *open_mem(const uint8_t *b, size_t len)
{
    struct image_open_opts opts = { .no_parents = true };
    struct df_file f;
    struct df_error err;
    struct image *img = NULL;

    df_error_init(&err);
    df_file_init_mem(&f, "mem.vhd", b, len);
    if (image_open_file(&f, "mem.vhd", "mem.vhd", &opts, &img, &err) < 0)
        fprintf(stderr, "open: %s\n", err.msg);
    return img;
}

int main(void)
{
    static uint8_t b[DATA + 8192 + 512];

    make_fixed(b, "qemu", DATA);
    struct image *img = open_mem(b, sizeof(b));
    CHECK(img && !strcmp(img->drv->name, "vhd"));
    if (img) {
        CHECK(img->size == 2 * 4 * 17 * 512);       /* CHS */
        CHECK(!strcmp(image_get_prop(img, "type"), "fixed"));
        CHECK(!strncmp(image_get_prop(img, "creator"), "qemu ", 5));
        CHECK(!strcmp(image_get_prop(img, "unique_id"),
                      "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf"));
        image_close(img);
    }

    make_fixed(b, "wa\0\0", DATA);      /* Azure: current size */
    img = open_mem(b, sizeof(b));
    CHECK(img && img->size == DATA);
    image_close(img);

    make_fixed(b, "win ", DATA + 100);  /* rounded down to a sector */
    img = open_mem(b, sizeof(b));
    CHECK(img && img->size == DATA);
    image_close(img);

    make_fixed(b, "win ", DATA + 8192 + 512);   /* past the footer */
    img = open_mem(b, sizeof(b));
    CHECK(img == NULL);
    return failures ? 1 : 0;
}
