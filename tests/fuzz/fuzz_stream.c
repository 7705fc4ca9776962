/* fuzz_stream.c: a stream source's sniffing and decompression
 * (engine/stream_in.c), and a tar member's: whatever arrives is
 * refused, or read to its end, or ends in an error; never a crash or a hang. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/stream_in.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stream_in s;
    struct df_error err;
    bool filter;
    static uint8_t buf[1 << 16];
    int fd = memfd_create("fuzz", MFD_CLOEXEC);

    stream_sniff(data, size, &filter);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    /* each input both ways: as a stream, and as a tar archive */
    for (int tar = 0; tar < 2; tar++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        df_error_init(&err);
        if (lseek(fd, 0, SEEK_SET) != 0)
            break;
        int r = tar ? stream_in_open_tar(&s, path, "vm.raw", "fuzz", &err)
                    : stream_in_open(&s, fd, "fuzz", false, &err);
        if (r == 0) {
            while (df_file_read_stream(&s.in, buf, sizeof(buf), &err) > 0)
                ;
            stream_in_finish(&s, &err);
        }
        stream_in_close(&s);
    }
    close(fd);
    return 0;
}
