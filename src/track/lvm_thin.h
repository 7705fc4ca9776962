/*
 * lvm_thin.h: the reader of thin_delta's output behind the lvm-thin
 * change source (lvm_thin_open in track.h; docs/formats.md section 9).
 *
 * thin_delta (thin-provisioning-tools) compares the block mappings of
 * two thin devices of one pool and prints, without --verbose:
 *
 *   <superblock uuid="" time="1" transaction="2" data_block_size="128"
 *               nr_data_blocks="1000">        (one line)
 *     <diff left="OLD" right="NEW">
 *       <same begin="0" length="4"/>
 *       <different begin="4" length="2"/>     remapped in NEW
 *       <left_only begin="30" length="1"/>    mapped in OLD only
 *       <right_only begin="40" length="5"/>   mapped in NEW only
 *     </diff>
 *   </superblock>
 *
 * begin and length count pool data blocks of data_block_size sectors of
 * 512 bytes.  Blocks that no element names are unmapped in both: zeros
 * on both sides, unchanged.
 *
 * The reader takes one element per line (leading and trailing blanks
 * and blank lines allowed) and refuses with DF_CORRUPT, naming the line,
 * anything else: an unknown element or attribute, a missing or repeated
 * one, a number that is not decimal or overflows, a data_block_size the
 * kernel would not use (128..2097152 sectors, a multiple of 128), ids
 * other than the ones asked for, the needs_check flag, ranges out of
 * order or overlapping, a range past the device's end, a line longer
 * than LVM_THIN_LINE_MAX, and output that stops before </superblock>.
 *
 * What it names as changed: different, right_only, and left_only (the
 * block was discarded in NEW, which reads zeros there); same is
 * skipped.  Ranges become bytes, the last block clipped to `size`,
 * appended ascending and coalesced to `out` in EXT_DATA.  When `out`
 * reaches its cap the last range is stretched to the device's end: a
 * superset, which track.h allows, the rest still checked.
 */
#ifndef DF_LVM_THIN_H
#define DF_LVM_THIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extent.h"

#define LVM_THIN_LINE_MAX 4096

/* kernel dm-thin limits on a pool's data block, in 512-byte sectors */
#define LVM_THIN_BLOCK_MIN_SECTORS 128
#define LVM_THIN_BLOCK_MAX_SECTORS 2097152

/* The reader's state: fed the output in pieces as it arrives (any
 * split), or at once by lvm_thin_parse.  The fields are private. */
struct lvm_thin_parser {
    const char *what;           /* borrowed: names the source in errors */
    uint64_t old_id, new_id;
    uint64_t size;              /* bytes of the device */
    struct extent_list *out;    /* borrowed */
    int state;
    size_t line_no;             /* of the line in `line` (1-based) */
    size_t line_len;
    uint64_t block_bytes;       /* from <superblock> */
    uint64_t next_block;        /* ranges so far end here */
    bool saturated;             /* out reached its cap */
    bool failed;
    char line[LVM_THIN_LINE_MAX];
};

/*
 * Start reading into out (cleared here; the caller initialised it and
 * chose its cap).  what, and out, are borrowed until the end.
 */
void lvm_thin_parser_init(struct lvm_thin_parser *p, const char *what,
                          uint64_t old_id, uint64_t new_id, uint64_t size,
                          struct extent_list *out);
/* The next len bytes of the output: 0, or -1 with err set (and every
 * later call fails too). */
int lvm_thin_parser_feed(struct lvm_thin_parser *p, const char *buf,
                         size_t len, struct df_error *err);
/* End of output: 0 when it was complete, or -1 with err set.  On -1 out
 * holds no meaning (the caller releases it). */
int lvm_thin_parser_finish(struct lvm_thin_parser *p, struct df_error *err);

/*
 * The whole output xml[0..len) of `thin_delta --snap1 old_id --snap2
 * new_id`, over a device of `size` bytes, into out: 0, or -1 with err
 * set (DF_CORRUPT naming `what` and the line; DF_IO when memory ran
 * out).
 */
int lvm_thin_parse(const char *what, const char *xml, size_t len,
                   uint64_t old_id, uint64_t new_id, uint64_t size,
                   struct extent_list *out, struct df_error *err);

#endif
