/*
 * archive_dl.h: libarchive, loaded on first use (util/dl.h):
 * every call below goes through a pointer that archive_dl_load() fills.
 * Include this instead of <archive.h> and <archive_entry.h>, after nothing that
 * calls these functions directly.
 */
#ifndef DF_ARCHIVE_DL_H
#define DF_ARCHIVE_DL_H

#include <archive.h>
#include <archive_entry.h>

#include "util/error.h"

extern __typeof__(archive_entry_filetype) *dl_archive_entry_filetype;
extern __typeof__(archive_entry_pathname) *dl_archive_entry_pathname;
extern __typeof__(archive_entry_size) *dl_archive_entry_size;
extern __typeof__(archive_entry_size_is_set) *dl_archive_entry_size_is_set;
extern __typeof__(archive_error_string) *dl_archive_error_string;
extern __typeof__(archive_read_data_block) *dl_archive_read_data_block;
extern __typeof__(archive_read_free) *dl_archive_read_free;
extern __typeof__(archive_read_new) *dl_archive_read_new;
extern __typeof__(archive_read_next_header) *dl_archive_read_next_header;
extern __typeof__(archive_read_open) *dl_archive_read_open;
extern __typeof__(archive_read_support_filter_all) *dl_archive_read_support_filter_all;
extern __typeof__(archive_read_support_format_raw) *dl_archive_read_support_format_raw;
extern __typeof__(archive_read_support_format_tar) *dl_archive_read_support_format_tar;
extern __typeof__(archive_set_error) *dl_archive_set_error;

/* 0 once libarchive.so.13 is loaded, or -1 with err (DF_USAGE: install libarchive13). */
int archive_dl_load(struct df_error *err);

#define archive_entry_filetype (*dl_archive_entry_filetype)
#define archive_entry_pathname (*dl_archive_entry_pathname)
#define archive_entry_size (*dl_archive_entry_size)
#define archive_entry_size_is_set (*dl_archive_entry_size_is_set)
#define archive_error_string (*dl_archive_error_string)
#define archive_read_data_block (*dl_archive_read_data_block)
#define archive_read_free (*dl_archive_read_free)
#define archive_read_new (*dl_archive_read_new)
#define archive_read_next_header (*dl_archive_read_next_header)
#define archive_read_open (*dl_archive_read_open)
#define archive_read_support_filter_all (*dl_archive_read_support_filter_all)
#define archive_read_support_format_raw (*dl_archive_read_support_format_raw)
#define archive_read_support_format_tar (*dl_archive_read_support_format_tar)
#define archive_set_error (*dl_archive_set_error)

#endif
