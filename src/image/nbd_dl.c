/*
 * nbd_dl.c: the pointers of nbd_dl.h and their loader.
 */
#include "image/nbd_dl.h"

#include "util/dl.h"

__typeof__(nbd_add_meta_context) *dl_nbd_add_meta_context;
__typeof__(nbd_aio_block_status) *dl_nbd_aio_block_status;
__typeof__(nbd_aio_flush) *dl_nbd_aio_flush;
__typeof__(nbd_aio_get_direction) *dl_nbd_aio_get_direction;
__typeof__(nbd_aio_get_fd) *dl_nbd_aio_get_fd;
__typeof__(nbd_aio_is_closed) *dl_nbd_aio_is_closed;
__typeof__(nbd_aio_is_dead) *dl_nbd_aio_is_dead;
__typeof__(nbd_aio_notify_read) *dl_nbd_aio_notify_read;
__typeof__(nbd_aio_notify_write) *dl_nbd_aio_notify_write;
__typeof__(nbd_aio_pread) *dl_nbd_aio_pread;
__typeof__(nbd_aio_pwrite) *dl_nbd_aio_pwrite;
__typeof__(nbd_aio_zero) *dl_nbd_aio_zero;
__typeof__(nbd_block_status) *dl_nbd_block_status;
__typeof__(nbd_can_fast_zero) *dl_nbd_can_fast_zero;
__typeof__(nbd_can_flush) *dl_nbd_can_flush;
__typeof__(nbd_can_meta_context) *dl_nbd_can_meta_context;
__typeof__(nbd_can_multi_conn) *dl_nbd_can_multi_conn;
__typeof__(nbd_can_zero) *dl_nbd_can_zero;
__typeof__(nbd_close) *dl_nbd_close;
__typeof__(nbd_connect_uri) *dl_nbd_connect_uri;
__typeof__(nbd_create) *dl_nbd_create;
__typeof__(nbd_flush) *dl_nbd_flush;
__typeof__(nbd_get_error) *dl_nbd_get_error;
__typeof__(nbd_get_size) *dl_nbd_get_size;
__typeof__(nbd_is_read_only) *dl_nbd_is_read_only;
__typeof__(nbd_pread) *dl_nbd_pread;
__typeof__(nbd_pwrite) *dl_nbd_pwrite;
__typeof__(nbd_set_uri_allow_local_file) *dl_nbd_set_uri_allow_local_file;
__typeof__(nbd_shutdown) *dl_nbd_shutdown;
__typeof__(nbd_supports_tls) *dl_nbd_supports_tls;
__typeof__(nbd_supports_uri) *dl_nbd_supports_uri;
__typeof__(nbd_zero) *dl_nbd_zero;

static const char *const names[] = {
    "nbd_add_meta_context",
    "nbd_aio_block_status",
    "nbd_aio_flush",
    "nbd_aio_get_direction",
    "nbd_aio_get_fd",
    "nbd_aio_is_closed",
    "nbd_aio_is_dead",
    "nbd_aio_notify_read",
    "nbd_aio_notify_write",
    "nbd_aio_pread",
    "nbd_aio_pwrite",
    "nbd_aio_zero",
    "nbd_block_status",
    "nbd_can_fast_zero",
    "nbd_can_flush",
    "nbd_can_meta_context",
    "nbd_can_multi_conn",
    "nbd_can_zero",
    "nbd_close",
    "nbd_connect_uri",
    "nbd_create",
    "nbd_flush",
    "nbd_get_error",
    "nbd_get_size",
    "nbd_is_read_only",
    "nbd_pread",
    "nbd_pwrite",
    "nbd_set_uri_allow_local_file",
    "nbd_shutdown",
    "nbd_supports_tls",
    "nbd_supports_uri",
    "nbd_zero",
};

int nbd_dl_load(struct df_error *err)
{
    static int state;
    void *p[sizeof(names) / sizeof(names[0])];
    int r = dl_load("libnbd.so.0", "libnbd0", names, p,
                    sizeof(names) / sizeof(names[0]), &state, err);
    if (r == 0 && !dl_nbd_add_meta_context) {
        size_t i = 0;
        dl_nbd_add_meta_context = (__typeof__(dl_nbd_add_meta_context))p[i++];
        dl_nbd_aio_block_status = (__typeof__(dl_nbd_aio_block_status))p[i++];
        dl_nbd_aio_flush = (__typeof__(dl_nbd_aio_flush))p[i++];
        dl_nbd_aio_get_direction = (__typeof__(dl_nbd_aio_get_direction))p[i++];
        dl_nbd_aio_get_fd = (__typeof__(dl_nbd_aio_get_fd))p[i++];
        dl_nbd_aio_is_closed = (__typeof__(dl_nbd_aio_is_closed))p[i++];
        dl_nbd_aio_is_dead = (__typeof__(dl_nbd_aio_is_dead))p[i++];
        dl_nbd_aio_notify_read = (__typeof__(dl_nbd_aio_notify_read))p[i++];
        dl_nbd_aio_notify_write = (__typeof__(dl_nbd_aio_notify_write))p[i++];
        dl_nbd_aio_pread = (__typeof__(dl_nbd_aio_pread))p[i++];
        dl_nbd_aio_pwrite = (__typeof__(dl_nbd_aio_pwrite))p[i++];
        dl_nbd_aio_zero = (__typeof__(dl_nbd_aio_zero))p[i++];
        dl_nbd_block_status = (__typeof__(dl_nbd_block_status))p[i++];
        dl_nbd_can_fast_zero = (__typeof__(dl_nbd_can_fast_zero))p[i++];
        dl_nbd_can_flush = (__typeof__(dl_nbd_can_flush))p[i++];
        dl_nbd_can_meta_context = (__typeof__(dl_nbd_can_meta_context))p[i++];
        dl_nbd_can_multi_conn = (__typeof__(dl_nbd_can_multi_conn))p[i++];
        dl_nbd_can_zero = (__typeof__(dl_nbd_can_zero))p[i++];
        dl_nbd_close = (__typeof__(dl_nbd_close))p[i++];
        dl_nbd_connect_uri = (__typeof__(dl_nbd_connect_uri))p[i++];
        dl_nbd_create = (__typeof__(dl_nbd_create))p[i++];
        dl_nbd_flush = (__typeof__(dl_nbd_flush))p[i++];
        dl_nbd_get_error = (__typeof__(dl_nbd_get_error))p[i++];
        dl_nbd_get_size = (__typeof__(dl_nbd_get_size))p[i++];
        dl_nbd_is_read_only = (__typeof__(dl_nbd_is_read_only))p[i++];
        dl_nbd_pread = (__typeof__(dl_nbd_pread))p[i++];
        dl_nbd_pwrite = (__typeof__(dl_nbd_pwrite))p[i++];
        dl_nbd_set_uri_allow_local_file = (__typeof__(dl_nbd_set_uri_allow_local_file))p[i++];
        dl_nbd_shutdown = (__typeof__(dl_nbd_shutdown))p[i++];
        dl_nbd_supports_tls = (__typeof__(dl_nbd_supports_tls))p[i++];
        dl_nbd_supports_uri = (__typeof__(dl_nbd_supports_uri))p[i++];
        dl_nbd_zero = (__typeof__(dl_nbd_zero))p[i++];
    }
    return r;
}
