/*
 * stream_in.h: a byte stream on stdin as a copy's source, looked at
 * before anything is written.
 *
 * `tar -cSf - vm.img | diskferry copy - /dev/X` must not write the tar
 * archive onto the device, nor a gzip stream, nor a qcow2 container.
 * stream_in_open() reads the stream's head (up to STREAM_SNIFF bytes)
 * and decides:
 *
 *   raw content        read as it is: the head is handed back first
 *                      (df_file.unread), then the rest of the fd
 *   gzip, xz, zstd,    decompressed on a thread of its own (libarchive's
 *   bzip2, lz4         filters) into a pipe the copy reads; the
 *                      decompressed head is looked at again (a tar.gz is
 *                      a tar archive)
 *   a tar archive      refused: name the member (tar:-//MEMBER), or give
 *                      -f raw to write the archive as it is
 *
 * A member of a tar archive (stream_in_open_tar) is read the same way:
 * libarchive finds it on the pump's thread and passes on its bytes.
 *   an image container refused: a container needs its end and random
 *                      access; save it to a file, or -f raw
 *
 * With `-f raw` nothing is looked at: the bytes are what the user says.
 *
 * A decompressor that fails (a truncated or corrupt stream) ends its
 * pipe early, which the copy cannot tell from a real end:
 * stream_in_finish() must be called after the copy and before anything
 * is committed; it reports the failure.
 */
#ifndef DF_STREAM_IN_H
#define DF_STREAM_IN_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "util/file.h"

#define STREAM_SNIFF (64u * 1024)

struct stream_in {
    struct df_file in;          /* what the copy reads */
    int src_fd;                 /* the stream itself */
    char name[PATH_MAX + 16];   /* for messages: "-", "tar:A//M" */
    const char *filter;         /* "gzip", ...: decompressing; or NULL */
    uint8_t *head;              /* the raw head (the decompressor's too) */
    size_t head_len;
    uint8_t *dhead;             /* the decompressed head */
    size_t dhead_len;
    pthread_t thread;
    bool started;
    int pipe_w;                 /* the decompressor's end */
    int stop_fd;                /* eventfd: stream_in_close stops it */
    struct df_error terr;       /* the decompressor's failure */
    uint64_t bytes_in;          /* compressed bytes consumed */
    char member[PATH_MAX];      /* tar: the member read, or "" */
    uint64_t member_size;       /* its size, once found */
    bool own_src;               /* src_fd is ours to close */
};

/*
 * Look at the stream on fd (borrowed; name for messages) and make
 * s->in the bytes to copy.  as_raw: -f raw, take it as it is.  0, or -1
 * with err: DF_CORRUPT for a tar archive or an image container (the
 * message says what to type), DF_IO for a failed read.
 */
int stream_in_open(struct stream_in *s, int fd, const char *name,
                   bool as_raw, struct df_error *err);

/*
 * tar:ARCHIVE//MEMBER: the member's bytes (ARCHIVE a path or "-" for
 * stdin, compressed or not; GNU and PAX sparse members' holes read as
 * zeros, which the copy does not write), looked at as a stream is.  A
 * missing member or a member that is not a regular file is DF_USAGE,
 * found before anything is written.
 */
int stream_in_open_tar(struct stream_in *s, const char *archive,
                       const char *member, const char *name,
                       struct df_error *err);

/* After the copy: 0, or -1 with err when the decompressor failed. */
int stream_in_finish(struct stream_in *s, struct df_error *err);

/* Free everything (stops a decompressor still running). */
void stream_in_close(struct stream_in *s);

/*
 * What the head of a stream is, by its first bytes: a compression
 * filter ("gzip", "xz", "zstd", "bzip2", "lz4"), "tar", an image
 * format's name (image_probe_head), or NULL for raw content.  *filter
 * tells the first case from the others.
 */
const char *stream_sniff(const uint8_t *head, size_t len, bool *filter);

#endif
