/*
 * fuzz_rjournal.c: the resume journal reader (proto/journal.c) on
 * hostile journals: header, version, ranges, sample lines.
 *
 * Input: the journal, as it would sit beside a destination of 1 MiB
 * copied from source id 0x2a.  It is written to a file in a private
 * directory (the reader takes a directory fd and a name, as serve does).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_dir = -1;
static char fuzz_path[] = "/tmp/fuzz_rjournalXXXXXX";

static void fuzz_cleanup(void)
{
    unlinkat(fuzz_dir, "j", 0);
    rmdir(fuzz_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct df_error err;
    struct extent_list l;
    struct rjournal_info ji;
    if (fuzz_dir < 0) {
        if (!mkdtemp(fuzz_path))
            abort();
        fuzz_dir = open(fuzz_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fuzz_dir < 0)
            abort();
        atexit(fuzz_cleanup);
    }
    int fd = openat(fuzz_dir, "j", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                    0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);
    df_error_init(&err);
    extent_list_init(&l, 4096);
    int r = rjournal_load(fuzz_dir, "j", 1 << 20, 0x2a, &l, &ji, &err);
    if (r == 0) {
        /* sorted, merged, inside the destination */
        uint64_t end = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (l.v[i].off < end || l.v[i].len == 0 ||
                l.v[i].off + l.v[i].len > (1u << 20))
                abort();
            end = l.v[i].off + l.v[i].len;
        }
        if (ji.nsamples > RJOURNAL_SAMPLES)
            abort();
        for (unsigned i = 0; i < ji.nsamples; i++)
            if (ji.s[i].len == 0 || ji.s[i].len > RJOURNAL_SAMPLE_LEN ||
                ji.s[i].off + ji.s[i].len > (1u << 20))
                abort();
    } else if (r < 0 && err.cat == DF_OK) {
        abort();
    }
    extent_list_release(&l);
    return 0;
}
