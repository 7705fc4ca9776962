/*
 * fmap.c: read-only views of file ranges under a SIGBUS guard (see
 * fmap.h for the rules).
 *
 * The guard is one process-wide SIGBUS handler, installed at the first
 * fmap_run(), and a per-thread pointer to the view being read with the
 * place to jump back to.  A fault inside that view jumps (siglongjmp
 * restores the signal mask the handler ran under); any other SIGBUS goes
 * to the handler that was there before, or ends the process as it would
 * have without us.
 */
#define _GNU_SOURCE
#include "fmap.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct fmap_arm {
    sigjmp_buf jb;
    const uint8_t *lo, *hi;     /* the pages whose faults are ours */
};

static __thread struct fmap_arm *volatile fmap_armed;
static struct sigaction fmap_old;
static pthread_once_t fmap_once = PTHREAD_ONCE_INIT;

static void fmap_sigbus(int sig, siginfo_t *si, void *uc)
{
    struct fmap_arm *a = fmap_armed;
    const uint8_t *addr = si ? si->si_addr : NULL;

    if (a && addr >= a->lo && addr < a->hi)
        siglongjmp(a->jb, 1);
    /* Not a view's page: what SIGBUS meant before (rule 3). */
    if ((fmap_old.sa_flags & SA_SIGINFO) && fmap_old.sa_sigaction) {
        fmap_old.sa_sigaction(sig, si, uc);
        return;
    }
    if (fmap_old.sa_handler != SIG_DFL && fmap_old.sa_handler != SIG_IGN) {
        fmap_old.sa_handler(sig);
        return;
    }
    /* The default action: once this handler returns, the signal (raised
     * again, or the fault repeated) ends the process. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    raise(SIGBUS);
}

static void fmap_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = fmap_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &fmap_old);
}

void fmap_init(struct fmap *m)
{
    memset(m, 0, sizeof(*m));
    m->fd = -1;
}

int fmap_map(struct fmap *m, const struct df_file *f, uint64_t off,
             size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    struct stat st;

    if (f->fd < 0 || f->mem || !f->is_regular || len == 0 || page <= 0)
        return 1;
    if (m->base && m->fd == f->fd && off >= m->start &&
        off - m->start <= m->maplen && len <= m->maplen - (off - m->start))
        goto view;
    fmap_unmap(m);
    /* Rule 1: below the size the file has now. */
    if (fstat(f->fd, &st) < 0 || st.st_size < 0 ||
        off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off)
        return 1;
    uint64_t start = off - off % (uint64_t)page;
    uint64_t end = (uint64_t)st.st_size - start > FMAP_WINDOW
                       ? start + FMAP_WINDOW : (uint64_t)st.st_size;
    if (end < off + len)
        end = off + len;
    if (end - start > SIZE_MAX)
        return 1;
    void *b = mmap(NULL, (size_t)(end - start), PROT_READ, MAP_SHARED,
                   f->fd, (off_t)start);
    if (b == MAP_FAILED)
        return 1;
    m->base = b;
    m->maplen = (size_t)(end - start);
    m->start = start;
    m->fd = f->fd;
    /* Advice: read ahead far on a file not in the page cache, and let
     * what was read go first when memory is short. */
    madvise(b, m->maplen, MADV_SEQUENTIAL);
view:
    m->p = (const uint8_t *)m->base + (off - m->start);
    m->len = len;
    return 0;
}

void fmap_populate(const struct fmap *m)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!m->base || page <= 0)
        return;
    uintptr_t a = (uintptr_t)m->p - (uintptr_t)m->p % (uintptr_t)page;
    madvise((void *)a, (size_t)((uintptr_t)m->p + m->len - a),
            MADV_POPULATE_READ);
}

void fmap_unmap(struct fmap *m)
{
    if (m->base)
        munmap(m->base, m->maplen);
    fmap_init(m);
}

int fmap_run(const struct fmap *m, void (*fn)(void *ctx), void *ctx)
{
    struct fmap_arm a;

    pthread_once(&fmap_once, fmap_install);
    a.lo = m->base;
    a.hi = (const uint8_t *)m->base + m->maplen;
    if (sigsetjmp(a.jb, 1)) {
        fmap_armed = NULL;
        return -1;
    }
    fmap_armed = &a;
    fn(ctx);
    fmap_armed = NULL;
    return 0;
}
