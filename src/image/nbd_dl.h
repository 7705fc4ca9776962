/*
 * nbd_dl.h: libnbd, loaded on first use (util/dl.h):
 * every call below goes through a pointer that nbd_dl_load() fills.
 * Include this instead of <libnbd.h>, after nothing that
 * calls these functions directly.
 */
#ifndef DF_NBD_DL_H
#define DF_NBD_DL_H

#include <libnbd.h>

#include "util/error.h"

extern __typeof__(nbd_add_meta_context) *dl_nbd_add_meta_context;
extern __typeof__(nbd_aio_block_status) *dl_nbd_aio_block_status;
extern __typeof__(nbd_aio_flush) *dl_nbd_aio_flush;
extern __typeof__(nbd_aio_get_direction) *dl_nbd_aio_get_direction;
extern __typeof__(nbd_aio_get_fd) *dl_nbd_aio_get_fd;
extern __typeof__(nbd_aio_is_closed) *dl_nbd_aio_is_closed;
extern __typeof__(nbd_aio_is_dead) *dl_nbd_aio_is_dead;
extern __typeof__(nbd_aio_notify_read) *dl_nbd_aio_notify_read;
extern __typeof__(nbd_aio_notify_write) *dl_nbd_aio_notify_write;
extern __typeof__(nbd_aio_pread) *dl_nbd_aio_pread;
extern __typeof__(nbd_aio_pwrite) *dl_nbd_aio_pwrite;
extern __typeof__(nbd_aio_zero) *dl_nbd_aio_zero;
extern __typeof__(nbd_block_status) *dl_nbd_block_status;
extern __typeof__(nbd_can_fast_zero) *dl_nbd_can_fast_zero;
extern __typeof__(nbd_can_flush) *dl_nbd_can_flush;
extern __typeof__(nbd_can_meta_context) *dl_nbd_can_meta_context;
extern __typeof__(nbd_can_multi_conn) *dl_nbd_can_multi_conn;
extern __typeof__(nbd_can_zero) *dl_nbd_can_zero;
extern __typeof__(nbd_close) *dl_nbd_close;
extern __typeof__(nbd_connect_uri) *dl_nbd_connect_uri;
extern __typeof__(nbd_create) *dl_nbd_create;
extern __typeof__(nbd_flush) *dl_nbd_flush;
extern __typeof__(nbd_get_error) *dl_nbd_get_error;
extern __typeof__(nbd_get_size) *dl_nbd_get_size;
extern __typeof__(nbd_is_read_only) *dl_nbd_is_read_only;
extern __typeof__(nbd_pread) *dl_nbd_pread;
extern __typeof__(nbd_pwrite) *dl_nbd_pwrite;
extern __typeof__(nbd_set_uri_allow_local_file) *dl_nbd_set_uri_allow_local_file;
extern __typeof__(nbd_shutdown) *dl_nbd_shutdown;
extern __typeof__(nbd_supports_tls) *dl_nbd_supports_tls;
extern __typeof__(nbd_supports_uri) *dl_nbd_supports_uri;
extern __typeof__(nbd_zero) *dl_nbd_zero;

/* 0 once libnbd.so.0 is loaded, or -1 with err (DF_USAGE: install libnbd0). */
int nbd_dl_load(struct df_error *err);

#define nbd_add_meta_context (*dl_nbd_add_meta_context)
#define nbd_aio_block_status (*dl_nbd_aio_block_status)
#define nbd_aio_flush (*dl_nbd_aio_flush)
#define nbd_aio_get_direction (*dl_nbd_aio_get_direction)
#define nbd_aio_get_fd (*dl_nbd_aio_get_fd)
#define nbd_aio_is_closed (*dl_nbd_aio_is_closed)
#define nbd_aio_is_dead (*dl_nbd_aio_is_dead)
#define nbd_aio_notify_read (*dl_nbd_aio_notify_read)
#define nbd_aio_notify_write (*dl_nbd_aio_notify_write)
#define nbd_aio_pread (*dl_nbd_aio_pread)
#define nbd_aio_pwrite (*dl_nbd_aio_pwrite)
#define nbd_aio_zero (*dl_nbd_aio_zero)
#define nbd_block_status (*dl_nbd_block_status)
#define nbd_can_fast_zero (*dl_nbd_can_fast_zero)
#define nbd_can_flush (*dl_nbd_can_flush)
#define nbd_can_meta_context (*dl_nbd_can_meta_context)
#define nbd_can_multi_conn (*dl_nbd_can_multi_conn)
#define nbd_can_zero (*dl_nbd_can_zero)
#define nbd_close (*dl_nbd_close)
#define nbd_connect_uri (*dl_nbd_connect_uri)
#define nbd_create (*dl_nbd_create)
#define nbd_flush (*dl_nbd_flush)
#define nbd_get_error (*dl_nbd_get_error)
#define nbd_get_size (*dl_nbd_get_size)
#define nbd_is_read_only (*dl_nbd_is_read_only)
#define nbd_pread (*dl_nbd_pread)
#define nbd_pwrite (*dl_nbd_pwrite)
#define nbd_set_uri_allow_local_file (*dl_nbd_set_uri_allow_local_file)
#define nbd_shutdown (*dl_nbd_shutdown)
#define nbd_supports_tls (*dl_nbd_supports_tls)
#define nbd_supports_uri (*dl_nbd_supports_uri)
#define nbd_zero (*dl_nbd_zero)

#endif
