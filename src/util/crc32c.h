/*
 * crc32c.h: CRC-32C (Castagnoli), as VHDX checksums its headers, region
 * tables and log entries ([MS-VHDX] 2.2.2).  Not zlib's crc32, which
 * uses the IEEE polynomial.
 *
 * Reflected polynomial 0x82F63B78, initial value and final xor all ones
 * (RFC 3720 B.4): crc32c(0, "123456789", 9) == 0xE3069283.
 */
#ifndef DF_CRC32C_H
#define DF_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue the CRC `crc` (0 to start) over len bytes of buf:
 * crc32c(crc32c(0, a, n), b, m) == crc32c(0, a || b, n + m).
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
