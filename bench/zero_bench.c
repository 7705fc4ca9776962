/*
 * zero_bench.c: zero-detection throughput on one core, GB/s.
 *
 *   bench_zero [MiB]
 *
 * Scans an all-zero buffer (the worst case: every byte must be looked
 * at) of 64 KiB (one leaf, in L1/L2 as in the pipeline, where the
 * block was just read), 1 MiB and 256 MiB (memory bound), with the
 * dispatched implementation and the plain word loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/progress.h"
#include "util/zero.h"

static double bench(bool (*fn)(const void *, size_t), const uint8_t *buf,
                    size_t len, uint64_t total)
{
    uint64_t done = 0;
    unsigned long n = 0;
    double t0 = time_now();
    while (done < total) {
        n += fn(buf, len);
        done += len;
    }
    double dt = time_now() - t0;
    if (n != total / len)
        fprintf(stderr, "unexpected result\n");
    return (double)done / dt / 1e9;
}

int main(int argc, char **argv)
{
    size_t big = (size_t)(argc > 1 ? atoi(argv[1]) : 256) << 20;
    size_t sizes[] = { 64 << 10, 1 << 20, big };
    uint8_t *buf = aligned_alloc(4096, big);
    memset(buf, 0, big);
    printf("zero detection (%s), one core, all-zero buffers:\n",
           zero_impl_name());
    for (size_t i = 0; i < 3; i++) {
        uint64_t total = 16ull << 30;
        double v = bench(zero_is_zero, buf, sizes[i], total);
        double p = bench(zero_is_zero_plain, buf, sizes[i], total / 4);
        printf("  %8zu KiB buffer: %6.1f GB/s  (plain loop %5.1f GB/s)\n",
               sizes[i] >> 10, v, p);
    }
    free(buf);
    return 0;
}
