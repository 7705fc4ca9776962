/*
 * archive_dl.c: the pointers of archive_dl.h and their loader.
 */
#include "engine/archive_dl.h"

#include "util/dl.h"

__typeof__(archive_entry_filetype) *dl_archive_entry_filetype;
__typeof__(archive_entry_pathname) *dl_archive_entry_pathname;
__typeof__(archive_entry_size) *dl_archive_entry_size;
__typeof__(archive_entry_size_is_set) *dl_archive_entry_size_is_set;
__typeof__(archive_error_string) *dl_archive_error_string;
__typeof__(archive_read_data_block) *dl_archive_read_data_block;
__typeof__(archive_read_free) *dl_archive_read_free;
__typeof__(archive_read_new) *dl_archive_read_new;
__typeof__(archive_read_next_header) *dl_archive_read_next_header;
__typeof__(archive_read_open) *dl_archive_read_open;
__typeof__(archive_read_support_filter_all) *dl_archive_read_support_filter_all;
__typeof__(archive_read_support_format_raw) *dl_archive_read_support_format_raw;
__typeof__(archive_read_support_format_tar) *dl_archive_read_support_format_tar;
__typeof__(archive_set_error) *dl_archive_set_error;

static const char *const names[] = {
    "archive_entry_filetype",
    "archive_entry_pathname",
    "archive_entry_size",
    "archive_entry_size_is_set",
    "archive_error_string",
    "archive_read_data_block",
    "archive_read_free",
    "archive_read_new",
    "archive_read_next_header",
    "archive_read_open",
    "archive_read_support_filter_all",
    "archive_read_support_format_raw",
    "archive_read_support_format_tar",
    "archive_set_error",
};

int archive_dl_load(struct df_error *err)
{
    static int state;
    void *p[sizeof(names) / sizeof(names[0])];
    int r = dl_load("libarchive.so.13", "libarchive13", names, p,
                    sizeof(names) / sizeof(names[0]), &state, err);
    if (r == 0 && !dl_archive_entry_filetype) {
        size_t i = 0;
        dl_archive_entry_filetype = (__typeof__(dl_archive_entry_filetype))p[i++];
        dl_archive_entry_pathname = (__typeof__(dl_archive_entry_pathname))p[i++];
        dl_archive_entry_size = (__typeof__(dl_archive_entry_size))p[i++];
        dl_archive_entry_size_is_set = (__typeof__(dl_archive_entry_size_is_set))p[i++];
        dl_archive_error_string = (__typeof__(dl_archive_error_string))p[i++];
        dl_archive_read_data_block = (__typeof__(dl_archive_read_data_block))p[i++];
        dl_archive_read_free = (__typeof__(dl_archive_read_free))p[i++];
        dl_archive_read_new = (__typeof__(dl_archive_read_new))p[i++];
        dl_archive_read_next_header = (__typeof__(dl_archive_read_next_header))p[i++];
        dl_archive_read_open = (__typeof__(dl_archive_read_open))p[i++];
        dl_archive_read_support_filter_all = (__typeof__(dl_archive_read_support_filter_all))p[i++];
        dl_archive_read_support_format_raw = (__typeof__(dl_archive_read_support_format_raw))p[i++];
        dl_archive_read_support_format_tar = (__typeof__(dl_archive_read_support_format_tar))p[i++];
        dl_archive_set_error = (__typeof__(dl_archive_set_error))p[i++];
    }
    return r;
}
