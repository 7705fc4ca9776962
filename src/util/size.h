/*
 * size.h: strict parsing and printing of byte counts and rates.
 *
 * "4096", "4K", "4KiB", "4k", "1.5G" and "20M" pass (binary units:
 * K = 1024); "4GB2", "-1", "", "0x10", "4 G" and overflow fail.
 */
#ifndef DF_SIZE_H
#define DF_SIZE_H

#include <stddef.h>
#include <stdint.h>

int size_parse(const char *s, uint64_t *out);
/* "1.5 GiB" style into buf. */
void size_format(uint64_t bytes, char *buf, size_t len);

#endif
