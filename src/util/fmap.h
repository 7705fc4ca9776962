/*
 * fmap.h: a read-only view of a range of a regular file through
 * mmap(2), read under a SIGBUS guard.
 *
 * Why: a copy reads each block of a raw file only to look for zeros and
 * to hash it; pread() would first copy it out of the page cache into a
 * buffer of ours.  A view reads the page cache where it is.
 *
 * The hazard: a page of a view that lies past the file's end (the file
 * was truncated after it was mapped) raises SIGBUS when touched.  So:
 *  1. fmap_map() maps only below the size fstat() gives at that moment,
 *     and answers 1 (read it another way) for anything else.
 *  2. The view is read only inside fmap_run(), which turns a SIGBUS on
 *     the view's own pages into -1: the thread's handler jumps back out
 *     of fn.  fn must therefore be a computation over the bytes that
 *     takes no lock and allocates nothing (the zero scan, the hash).
 *     Handing the view's bytes to a system call (pwrite) needs no
 *     guard: the kernel answers EFAULT instead.
 *  3. A SIGBUS anywhere else keeps the meaning it had (the handler
 *     found at first use, or the default: the process ends).
 * A view is a window of FMAP_WINDOW bytes (or to the file's end) that
 * moves along as ranges past it are asked for: one mmap and one munmap
 * per window, not per range (both take the process's mmap lock for
 * writing and munmap interrupts every other CPU running one of its
 * threads).  One view per thread, so what the process maps stays
 * bounded (threads x FMAP_WINDOW) whatever the file's size.
 */
#ifndef DF_FMAP_H
#define DF_FMAP_H

#include <stddef.h>
#include <stdint.h>

#include "util/file.h"

/* 16 MiB: as fast as 32 MiB for a local raw copy (1.02x, medians of 7),
 * and what is mapped counts in the process's RSS: a pull over 64 TCP
 * streams, which reads its destination back with two more views,
 * peaked at 123 MB with 32 MiB windows, 115 MB with these (8 MiB:
 * 109 MB, but 1.08x the copy's time). */
#define FMAP_WINDOW (16u << 20)

struct fmap {
    void *base;                 /* mmap's address; NULL: nothing mapped */
    size_t maplen;
    uint64_t start;             /* the file offset base maps */
    int fd;                     /* the file mapped */
    const uint8_t *p;           /* the bytes last asked for */
    size_t len;
};

void fmap_init(struct fmap *m);
/*
 * View [off, off+len) of f, a regular file open for reading, at m->p:
 * within m's window if it covers the range, else in a new window from
 * off.  0, or 1 when the range is not mapped (not a regular file on a
 * descriptor, not wholly below the file's size now, len 0, mmap
 * refused): the caller reads it with pread.  Never fails otherwise.
 */
int fmap_map(struct fmap *m, const struct df_file *f, uint64_t off,
             size_t len);
/*
 * Enter the pages of the range last mapped into the page tables now (a
 * hint: where refused, they fault in when touched).  For a view handed
 * to a system call: write() copies from it with page faults disabled,
 * and each page not entered costs a short copy, zeroing the rest of
 * the destination's page-cache folio, a fault and a retry.
 */
void fmap_populate(const struct fmap *m);
/* Unmap the window (m may hold nothing). */
void fmap_unmap(struct fmap *m);
/*
 * fn(ctx), reading m's bytes (rule 2): 0, or -1 when a page of m's
 * window could not be read (SIGBUS: the file shrank) and fn was cut
 * short.
 */
int fmap_run(const struct fmap *m, void (*fn)(void *ctx), void *ctx);

#endif
