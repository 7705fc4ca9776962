/*
 * vhdx_int.h: what vhdx.c (headers, regions, metadata, BAT, map and
 * read) and vhdx_log.c (log replay) share: the on-disk constants, the
 * per-image state and the reads through the replayed log.  Layout and
 * spec: see the comment atop vhdx.c.
 */
#ifndef DF_VHDX_INT_H
#define DF_VHDX_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

#define VHDX_KIB 1024u
#define VHDX_MIB (1024u * 1024)

#define VHDX_SIGNATURE "vhdxfile"
#define VHDX_SIGNATURE_LEN 8

/* Headers. */
#define VHDX_HEADER1_OFF (64 * VHDX_KIB)
#define VHDX_HEADER2_OFF (128 * VHDX_KIB)
#define VHDX_HEADER_LEN (4 * VHDX_KIB)
#define VHDX_HDR_OFF_CRC 4
#define VHDX_HDR_OFF_SEQ 8
#define VHDX_HDR_OFF_FILE_WRITE_GUID 16
#define VHDX_HDR_OFF_DATA_WRITE_GUID 32
#define VHDX_HDR_OFF_LOG_GUID 48
#define VHDX_HDR_OFF_LOG_VERSION 64
#define VHDX_HDR_OFF_VERSION 66
#define VHDX_HDR_OFF_LOG_LENGTH 68
#define VHDX_HDR_OFF_LOG_OFFSET 72
#define VHDX_VERSION 1

/* Region tables. */
#define VHDX_RT1_OFF (192 * VHDX_KIB)
#define VHDX_RT2_OFF (256 * VHDX_KIB)
#define VHDX_RT_LEN (64 * VHDX_KIB)
#define VHDX_RT_OFF_CRC 4
#define VHDX_RT_OFF_COUNT 8
#define VHDX_RT_HEADER_LEN 16
#define VHDX_RT_ENTRY_LEN 32
#define VHDX_RT_MAX_ENTRIES 2047
#define VHDX_RTE_OFF_FILE_OFF 16
#define VHDX_RTE_OFF_LENGTH 24
#define VHDX_RTE_OFF_REQUIRED 28
#define VHDX_ALIGN (1 * VHDX_MIB)      /* regions and the log */
#define VHDX_HDR_FIELDS_LEN 80          /* the header's defined fields */
/* Where regions and payload blocks may start: past the header section. */
#define VHDX_HEADER_SECTION (1 * VHDX_MIB)

/* Metadata region. */
#define VHDX_META_SIGNATURE "metadata"
#define VHDX_META_TABLE_LEN (64 * VHDX_KIB)
#define VHDX_META_OFF_COUNT 10
#define VHDX_META_HEADER_LEN 32
#define VHDX_META_ENTRY_LEN 32
#define VHDX_META_MAX_ENTRIES 2047
#define VHDX_ME_OFF_OFFSET 16
#define VHDX_ME_OFF_LENGTH 20
#define VHDX_ME_OFF_FLAGS 24
#define VHDX_ME_FLAG_REQUIRED (1u << 2)
#define VHDX_META_ITEM_MIN_OFF (64 * VHDX_KIB)
#define VHDX_META_ITEM_MAX_LEN (1 * VHDX_MIB)

/* File parameters item. */
#define VHDX_FP_LEAVE_ALLOCATED (1u << 0)
#define VHDX_FP_HAS_PARENT (1u << 1)
#define VHDX_MIN_BLOCK_SIZE (1 * VHDX_MIB)
#define VHDX_MAX_BLOCK_SIZE (256 * VHDX_MIB)
#define VHDX_MAX_SIZE (64ull << 40)     /* [MS-VHDX] 2.6.2.2: 64 TiB */

/* Parent locator item. */
#define VHDX_PL_OFF_COUNT 18
#define VHDX_PL_HEADER_LEN 20
#define VHDX_PL_ENTRY_LEN 12

/* BAT entries. */
#define VHDX_BAT_STATE_MASK 7u
#define VHDX_BAT_OFF_MASK 0xFFFFFFFFFFF00000ull
#define VHDX_PAYLOAD_NOT_PRESENT 0
#define VHDX_PAYLOAD_UNDEFINED 1
#define VHDX_PAYLOAD_ZERO 2
#define VHDX_PAYLOAD_UNMAPPED 3
#define VHDX_PAYLOAD_UNMAPPED_V095 5    /* the v0.95 draft's UNMAPPED */
#define VHDX_PAYLOAD_FULLY_PRESENT 6
#define VHDX_PAYLOAD_PARTIALLY_PRESENT 7
#define VHDX_SB_NOT_PRESENT 0
#define VHDX_SB_PRESENT 6
#define VHDX_SB_BLOCK_LEN (1 * VHDX_MIB)
#define VHDX_CHUNK_SECTORS (1ull << 23)  /* sectors one bitmap block covers */

#define VHDX_BAT_PAGE_ENTRIES 4096       /* one 32 KiB page of the BAT */

/* Log ([MS-VHDX] 2.3): entries of 4 KiB sectors in a circular region. */
#define VHDX_LOG_SECTOR 4096u
#define VHDX_LOG_MAX_LEN (32 * VHDX_MIB)  /* held in memory (twice) */
/* No VHDX file is larger (64 TiB of blocks plus metadata). */
#define VHDX_MAX_FILE_SIZE (1ull << 47)
#define VHDX_LOG_ADVICE "replay it with Hyper-V or qemu-img check -r all first"
#define VHDX_LE_OFF_CRC 4
#define VHDX_LE_OFF_LENGTH 8
#define VHDX_LE_OFF_TAIL 12
#define VHDX_LE_OFF_SEQ 16
#define VHDX_LE_OFF_DESC_COUNT 24
#define VHDX_LE_OFF_LOG_GUID 32
#define VHDX_LE_OFF_FLUSHED 48
#define VHDX_LE_OFF_LAST 56
#define VHDX_LE_HEADER_LEN 64
#define VHDX_LD_LEN 32                  /* a zero or data descriptor */
#define VHDX_LD_OFF_TRAILING 4          /* data: last 4 bytes of the sector */
#define VHDX_LD_OFF_LEADING 8           /* data: first 8 bytes */
#define VHDX_LD_OFF_ZERO_LEN 8          /* zero: bytes to zero */
#define VHDX_LD_OFF_FILE_OFF 16
#define VHDX_LD_OFF_SEQ 24
#define VHDX_LS_OFF_SEQ_HIGH 4          /* data sector */
#define VHDX_LS_OFF_SEQ_LOW 4092
#define VHDX_LS_DATA_LEN 4084           /* bytes 8..4091 of the write */

/* One write of the replayed log, applied over the file as it is read. */
struct vhdx_log_op {
    uint64_t off;
    uint64_t len;
    const uint8_t *data;            /* len bytes, or NULL: zeros */
};

struct vhdx_priv {
    uint64_t file_size;             /* the file's size after log replay */
    struct vhdx_log_op *ops;        /* the replayed log, in order */
    size_t nops;
    uint8_t *op_pages;              /* the data the ops point into */

    uint8_t data_write_guid[16];
    uint8_t linkage[16];            /* parent_linkage (differencing) */
    uint8_t linkage2[16];
    bool has_linkage2;
    bool has_parent;
    bool is_fixed;
    uint32_t block_size;
    uint32_t logical_sector;
    uint32_t physical_sector;
    uint64_t chunk_ratio;           /* payload blocks per bitmap block */
    uint64_t data_blocks;
    uint64_t bat_off;               /* BAT region in the file */
    uint64_t bat_entries;

    pthread_mutex_t lock;           /* the two caches below */
    bool lock_ready;
    uint64_t *bat_page;             /* VHDX_BAT_PAGE_ENTRIES entries */
    uint64_t bat_page_no;           /* UINT64_MAX: none cached */
    uint8_t *bitmap;                /* one payload block's sector bits */
    uint64_t bitmap_block;          /* UINT64_MAX: none cached */

    uint64_t log_off;               /* the current header's log */
    uint64_t log_len;
    uint64_t log_field_off;         /* its LogLength field (messages) */
    struct vhdx_span *spans;        /* header section, log, regions */
    size_t nspans;
};

/* A structure of the file no payload block or other structure may
 * overlap. */
struct vhdx_span {
    uint64_t off;
    uint64_t len;
    const char *what;
};

/* Is the structure at buf (len bytes) intact: CRC-32C over it with the
 * checksum field at crc_off taken as zero? */
bool vhdx_crc_ok(const uint8_t *buf, size_t len, size_t crc_off);

/*
 * Replay the log the current header hd (read from file offset hoff)
 * names into memory: fills s->ops, s->op_pages and s->file_size, sets
 * the "log" property.  -1 with err (DF_CORRUPT advising a replay
 * elsewhere, or DF_IO) when it cannot.  Never writes to the file.
 */
int vhdx_replay_log(struct image *img, const uint8_t *hd, uint64_t hoff,
                    struct df_error *err);
/* Read len bytes at off of the file as the replayed log leaves it. */
int vhdx_pread(struct image *img, void *buf, size_t len, uint64_t off,
               struct df_error *err);

#endif
