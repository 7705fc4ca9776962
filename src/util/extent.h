/*
 * extent.h: the extent list, the one currency of diskferry.
 *
 * An extent list is a sorted run of non-overlapping byte ranges, each
 * with a state.  Image drivers answer "what is where" with one, change
 * sources answer "what changed" with one, and the engine intersects them
 * into the plan of what to read and send.
 *
 * Invariants:
 *  1. Extents are sorted by offset and never overlap; every extent has
 *     len > 0 and off + len does not overflow.
 *  2. Adjacent extents of the same state are merged on append, so a
 *     list never holds two touching extents of one state.
 *  3. A list never grows past the cap given to extent_list_init(); an
 *     append at the cap is refused with 1 (not an error: a driver stops
 *     mapping there and the caller continues from the end of the list).
 */
#ifndef DF_EXTENT_H
#define DF_EXTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum extent_state {
    EXT_DATA = 0,   /* stored data: must be read */
    EXT_ZERO = 1,   /* reads as zeros, known without reading */
    EXT_HOLE = 2,   /* unallocated, reads as zeros, no parent to consult */
    EXT_PARENT = 3, /* unallocated in this layer: defer to the parent */
    EXT_UNCHANGED = 4, /* a plan's: the same as on the destination, not sent */
    EXT_FREE = 5,   /* a plan's: free in the filesystem there, not sent */
    EXT_UNCHANGED_ZERO = 6, /* a plan's: unchanged and known zero: nothing
                               read, nothing sent, hashed as zeros */
};

struct extent {
    uint64_t off;
    uint64_t len;
    enum extent_state state;
};

struct extent_list {
    struct extent *v;
    size_t n;
    size_t alloc;
    size_t cap;     /* most extents this list may hold */
};

#define EXTENT_LIST_DEFAULT_CAP (1u << 20)

void extent_list_init(struct extent_list *l, size_t cap);
void extent_list_release(struct extent_list *l);
void extent_list_clear(struct extent_list *l);

/*
 * Append [off, off+len) in state.  Returns 0 when appended (or merged
 * into the last extent), 1 when the list is at its cap (nothing added),
 * -1 with err set (DF_CORRUPT) when the extent is empty, overflows, or
 * is out of order or overlapping (invariant 1), or memory ran out.
 * `what` names the image for the message.
 */
int extent_list_append(struct extent_list *l, uint64_t off, uint64_t len,
                       enum extent_state state, const char *what,
                       struct df_error *err);

/* The index of the first extent of l (sorted) that ends after off
 * (l->n: none), by binary search. */
size_t extent_list_find(const struct extent_list *l, uint64_t off);

/* One past the last byte described, or `dflt` when empty. */
uint64_t extent_list_end(const struct extent_list *l, uint64_t dflt);

/* Sum of lengths of the extents in `state`. */
uint64_t extent_list_bytes(const struct extent_list *l,
                           enum extent_state state);

const char *extent_state_name(enum extent_state s);

/*
 * Set operations for building plans (engine/plan.c).  `b` is a set of
 * ranges: its states are ignored.  `out` is cleared first and filled
 * with pieces of `a`, each keeping the state it has in `a`:
 *
 *   extent_list_intersect   the parts of a inside b
 *   extent_list_subtract    the parts of a outside b
 *   extent_list_mask        all of a; the parts outside b whose state
 *                           is in the bit set `which` (1u << EXT_DATA
 *                           ...) take the state `outside`
 *
 * Return 0, 1 when out reached its cap (out then describes a prefix of
 * the answer, up to extent_list_end(out)), or -1 with err set.
 */
int extent_list_intersect(const struct extent_list *a,
                          const struct extent_list *b,
                          struct extent_list *out, struct df_error *err);
int extent_list_subtract(const struct extent_list *a,
                         const struct extent_list *b,
                         struct extent_list *out, struct df_error *err);
int extent_list_mask(const struct extent_list *a,
                     const struct extent_list *b, enum extent_state outside,
                     unsigned which, struct extent_list *out,
                     struct df_error *err);

#define EXT_ALL_STATES 0x7fu

#endif
