/*
 * chain.h: completing a child image with its parents.
 *
 * A child records its parent by path (qcow2 backing file, VMDK
 * parentFileNameHint, VHD parent locators) or only by identifier (VDI
 * uuidLinkage).  chain_open_parents() finds each parent, in this order:
 *
 *   1. --parent CHILD=PARENT naming this layer (how = "--parent");
 *   2. the recorded path, relative to the child's directory, when it
 *      exists (how = "recorded");
 *   3. the recorded file name in each --parent-dir (how = "--parent-dir"),
 *      and for identifier-only parents every image in the child's
 *      directory and each --parent-dir whose identity matches.
 *
 * Steps 2 and 3's child's directory apply only when -f named the top's
 * format (img->format_named): the path or identifier a probed image
 * records is data its writer chose, so a probed chain is completed only
 * by --parent and --parent-dir (none of them: refused, DF_CORRUPT,
 * asking for -f FMT or -f raw; with opts->inspect the chain stops there
 * and top->probe_note says so).  Parents are opened by probing, trusted
 * as the top is.
 *
 * It never guesses: no candidate, or two different files, is an error
 * listing where it looked.  Before a byte is read through a parent, the
 * child's driver checks the parent's identity (check_parent); a loop in
 * the chain or a chain deeper than CHAIN_MAX_DEPTH is refused.
 */
#ifndef DF_CHAIN_H
#define DF_CHAIN_H

#include "image/image.h"

#define CHAIN_MAX_DEPTH 64

int chain_open_parents(struct image *img, const struct image_open_opts *opts,
                       struct df_error *err);

/* Make `parent` (opened by the caller, owned by child from now on) the
 * parent of child, opened without its parents: no identity check (the
 * caller proved it otherwise: sync --changes top-layer reads a delta
 * over the DST that holds its parent).  `how` is said by info. */
void chain_attach_parent(struct image *child, struct image *parent,
                         const char *how);

#endif
