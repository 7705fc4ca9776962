/*
 * report.c: the reports of every subcommand (report.h) and the JSON
 * writer they share.
 */
#include "cli/report.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/info_fs.h"
#include "track/fs.h"
#include "track/qcow2_bitmap.h"
#include "util/size.h"

#define VERIFY_PRINT_RANGES 1000

/* The one spelling of a digest (report.h); dst NULL: not computed. */
static void report_digest(struct json *j, enum digest_alg alg,
                          const struct digest *src, const struct digest *dst,
                          const char *covers)
{
    char hex[2 * DIGEST_MAX_LEN + 1];
    json_obj(j, "digest");
    json_str(j, "algorithm", digest_alg_name(alg));
    json_str(j, "covers", covers);
    digest_hex(src, hex);
    json_str(j, "source", hex);
    if (dst) {
        digest_hex(dst, hex);
        json_str(j, "destination", hex);
    }
    json_close_obj(j);
}

static double report_ratio(const struct job_report *rep)
{
    return rep->payload_bytes_compressed
               ? (double)rep->payload_bytes /
                     (double)rep->payload_bytes_compressed
               : 1.0;
}

/* key: [{"offset": N, "length": N}, ...] */
static void report_ranges(struct json *j, const char *key,
                          const struct extent_list *l)
{
    json_arr(j, key);
    for (size_t i = 0; i < l->n; i++) {
        json_obj(j, NULL);
        json_u64(j, "offset", l->v[i].off);
        json_u64(j, "length", l->v[i].len);
        json_close_obj(j);
    }
    json_close_arr(j);
}

void report_copy_json(FILE *f, const struct job_spec *spec,
                      const struct job_report *rep)
{
    const struct job_stats *st = &rep->st;
    struct json j;
    json_begin(&j, f);
    json_str(&j, "command", spec->cmd);
    json_str(&j, "source", spec->src);
    json_str(&j, "destination", spec->dst);
    json_str(&j, "source_format", rep->src_format);
    json_str(&j, "destination_format", rep->dst_format);
    json_u64(&j, "disk_size", st->disk_size);
    json_u64(&j, "bytes_read", st->bytes_read);
    json_u64(&j, "bytes_read_for_digest", st->bytes_read_for_digest);
    json_u64(&j, "bytes_written", st->bytes_written);
    json_u64(&j, "bytes_sent", st->bytes_wire);
    json_u64(&j, "bytes_zeroed", st->bytes_zeroed);
    json_str(&j, "copy_method", st->copy_method);
    json_obj(&j, "skipped");
    json_u64(&j, "unallocated", st->skipped_unallocated);
    json_u64(&j, "zero", st->skipped_zero);
    json_u64(&j, "free", st->bytes_free);
    for (int k = FS_NONE + 1; k < FS_KINDS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "free_%s", fs_kind_name(k));
        json_u64(&j, key, st->bytes_free_by[k]);
    }
    if (rep->remote)
        json_u64(&j, "resumed", rep->skipped_resumed);
    json_close_obj(&j);
    json_bool(&j, "fs_aware", spec->fs_aware);
    if (!spec->fs_aware && spec->kind == JOB_COPY)
        json_u64(&j, "bytes_free_stale", st->bytes_free_stale);
    if (rep->remote) {
        json_obj(&j, "remote");
        json_str(&j, "transport", rep->transport);
        json_str(&j, "compression", rep->compression);
        json_u64(&j, "bytes_wire", st->bytes_wire);
        json_u64(&j, "payload_bytes", rep->payload_bytes);
        json_u64(&j, "payload_bytes_compressed",
                 rep->payload_bytes_compressed);
        json_dbl(&j, "compression_ratio", report_ratio(rep));
        if (rep->zstd_level_max)
            json_u64(&j, "zstd_level_max", (uint64_t)rep->zstd_level_max);
        json_close_obj(&j);
    }
    json_dbl(&j, "seconds", st->seconds);
    if (rep->predicted_seconds > 0) {
        json_dbl(&j, "predicted_seconds", rep->predicted_seconds);
        json_str(&j, "predicted_bottleneck", rep->predicted_bottleneck);
    } else {
        json_str(&j, "predicted_seconds", NULL);
    }
    json_dbl(&j, "verify_seconds", st->verify_seconds);
    json_bool(&j, "verified", st->verified);
    report_digest(&j, spec->jo.digest, &st->src_digest,
                  st->verified ? &st->dst_digest : NULL,
                  st->bytes_free ? "used blocks (free blocks as zeros)"
                                 : "all");
    if (spec->jo.salvaged)
        report_ranges(&j, "salvaged", spec->jo.salvaged);
    if (spec->kind == JOB_SYNC && rep->changes) {
        json_obj(&j, "sync");
        json_str(&j, "changes", rep->changes);
        json_u64(&j, "passes", rep->passes);
        json_u64(&j, "changed_bytes", rep->changed_bytes);
        json_u64(&j, "changed_ranges", rep->changed_blocks);
        json_dbl(&j, "last_pass_seconds", rep->last_pass_seconds);
        json_u64(&j, "bytes_unchanged", st->bytes_unchanged);
        json_u64(&j, "src_bytes_hashed", rep->src_bytes_hashed);
        json_u64(&j, "dst_bytes_read", rep->dst_bytes_read);
        json_u64(&j, "proof_leaves", rep->proof_leaves);
        if (rep->remote) {
            json_u64(&j, "hash_bytes_sent", rep->hash_bytes_sent);
            json_u64(&j, "hash_bytes_received", rep->hash_bytes_received);
            json_u64(&j, "rounds", rep->tree_rounds);
        }
        json_close_obj(&j);
    }
    json_end(&j);
}

void report_dry_plan(FILE *f, const struct job_spec *spec,
                     const struct job_report *rep)
{
    char b[32];
    size_format(rep->predicted_bytes, b, sizeof(b));
    fprintf(f, "dry run: plan: the %s would take about %.1f s, %s %s, "
            "bottleneck: %s (diskferry plan %s %s measures each stage)\n",
            spec->kind == JOB_SYNC ? "sync" : "copy",
            rep->predicted_seconds,
            rep->remote ? "sending" : "writing", b,
            rep->predicted_bottleneck, spec->src, spec->dst);
}

void report_fs_hint(FILE *f, const struct job_spec *spec,
                    const struct job_report *rep)
{
    char b[32];
    if (!rep->st.bytes_free_stale)
        return;
    size_format(rep->st.bytes_free_stale, b, sizeof(b));
    fprintf(f, "diskferry: %s: hint: %s of what was read and sent is free "
            "space holding stale data; --fs-aware would neither read nor "
            "send it\n", spec->cmd, b);
}

void report_salvaged_text(FILE *f, const char *cmd,
                          const struct extent_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        fprintf(f, "diskferry: %s: unreadable, written as zeros: offset "
                "%llu, %llu bytes\n", cmd, (unsigned long long)l->v[i].off,
                (unsigned long long)l->v[i].len);
    if (l->n == l->cap)
        fprintf(f, "diskferry: %s: (the list stops at %zu ranges)\n", cmd,
                l->cap);
}

void report_copy_line(const struct job_spec *spec,
                      const struct job_report *rep)
{
    const struct job_stats *st = &rep->st;
    char size[32], written[32], skipped[32];
    size_format(st->disk_size, size, sizeof(size));
    size_format(st->bytes_written, written, sizeof(written));
    size_format(st->skipped_unallocated + st->skipped_zero, skipped,
                sizeof(skipped));
    const char *done = st->verified ? st->bytes_free
                       ? ", verified (used blocks)" : ", verified"
                       : rep->verify ? "" : ", not verified (--no-verify)";
    if (spec->kind == JOB_SYNC && rep->changes &&
        strcmp(rep->changes, "copy")) {
        char changed[32];
        size_format(rep->changed_bytes, changed, sizeof(changed));
        fprintf(stderr, "diskferry: %s: %s disk, %s changed (%s), %s "
                "written, %.2f s%s\n", spec->cmd, size, changed,
                rep->changes, written, st->seconds, done);
    } else {
        fprintf(stderr, "diskferry: %s: %s disk, %s written, %s of zeros "
                "and holes skipped, %.2f s%s\n", spec->cmd, size, written,
                skipped, st->seconds, done);
    }
    if (st->bytes_free) {
        char b[32];
        size_format(st->bytes_free, b, sizeof(b));
        fprintf(stderr, "diskferry: %s: %s free in filesystems neither read "
                "nor sent:", spec->cmd, b);
        for (int k = FS_NONE + 1; k < FS_KINDS; k++) {
            if (!st->bytes_free_by[k])
                continue;
            size_format(st->bytes_free_by[k], b, sizeof(b));
            fprintf(stderr, " %s %s", fs_kind_name(k), b);
        }
        fputc('\n', stderr);
    }
    if (!rep->remote)
        return;
    fprintf(stderr, "diskferry: %s: %llu bytes on the wire, compression "
            "%.2fx%s\n", spec->cmd, (unsigned long long)st->bytes_wire,
            report_ratio(rep), rep->skipped_resumed ? ", resumed" : "");
}

void report_verify_json(FILE *f, const struct job_spec *spec,
                        const struct job_report *rep)
{
    const char *a = spec->src, *b = spec->dst;
    const struct job_stats *st = &rep->st;
    const struct extent_list *differ = &rep->differ;
    bool identical = rep->identical;
    struct json j;
    json_begin(&j, f);
    json_str(&j, "command", "verify");
    json_str(&j, "a", a);
    json_str(&j, "b", b);
    json_bool(&j, "identical", identical);
    json_u64(&j, "disk_size", st->disk_size);
    json_u64(&j, "bytes_read", st->bytes_read);
    json_dbl(&j, "seconds", st->seconds);
    report_digest(&j, st->src_digest.alg, &st->src_digest,
                  identical ? &st->dst_digest : NULL, "all");
    report_ranges(&j, "differ", differ);
    if (rep->remote) {      /* a hash-tree comparison with another host */
        json_u64(&j, "hash_bytes_sent", rep->hash_bytes_sent);
        json_u64(&j, "hash_bytes_received", rep->hash_bytes_received);
        json_u64(&j, "rounds", rep->tree_rounds);
    }
    json_end(&j);
}

void report_verify_text(FILE *f, const struct job_spec *spec,
                        const struct job_report *rep)
{
    const char *a = spec->src, *b = spec->dst;
    uint64_t size_a = rep->src_size, size_b = rep->dst_size;
    const struct job_stats *st = &rep->st;
    const struct extent_list *differ = &rep->differ;
    if (rep->identical) {
        char hex[2 * DIGEST_MAX_LEN + 1];
        digest_hex(&st->src_digest, hex);
        fprintf(f, "identical (%s %s)\n", digest_alg_name(st->src_digest.alg),
                hex);
        return;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < differ->n; i++)
        bytes += differ->v[i].len;
    if (size_a != size_b)
        fprintf(f, "sizes differ: %s is %" PRIu64 " bytes, %s is %" PRIu64
                " bytes\n", a, size_a, b, size_b);
    fprintf(f, "differ: %zu range%s, %" PRIu64 " bytes%s\n", differ->n,
            differ->n == 1 ? "" : "s", bytes,
            differ->n == differ->cap ? " (list truncated)" : "");
    for (size_t i = 0; i < differ->n && i < VERIFY_PRINT_RANGES; i++)
        fprintf(f, "  offset %" PRIu64 ", %" PRIu64 " bytes\n",
                differ->v[i].off, differ->v[i].len);
    if (differ->n > VERIFY_PRINT_RANGES)
        fprintf(f, "  ... (%zu more; --json lists all)\n",
                differ->n - VERIFY_PRINT_RANGES);
}

static void report_props(struct json *j, const struct image *img)
{
    json_obj(j, "properties");
    for (unsigned i = 0; i < img->nprops; i++)
        json_str(j, img->props[i].key, img->props[i].val);
    json_close_obj(j);
}

/* The layer's identities (image.h), each only when it has one. */
static void report_ids(struct json *j, const struct image *img)
{
    if (img->layer_id[0])
        json_str(j, "layer_id", img->layer_id);
    if (img->parent_id[0])
        json_str(j, "parent_id", img->parent_id);
}

void report_info_json(FILE *f, const struct image *img,
                      const struct info_counts *c)
{
    struct json j;
    json_begin(&j, f);
    json_str(&j, "filename", img->name);
    json_str(&j, "format", image_format_name(img));
    json_u64(&j, "virtual_size", img->size);
    json_u64(&j, "allocated_bytes", image_allocated_bytes(img));
    json_u64(&j, "data_bytes", c->data);
    json_u64(&j, "zero_bytes", c->zero);
    json_u64(&j, "hole_bytes", c->hole);
    if (img->probe_note[0])
        json_str(&j, "probe_note", img->probe_note);
    if (img->has_parent_ref && !img->parent && img->parent_name[0])
        json_str(&j, "recorded_parent", img->parent_name);
    report_ids(&j, img);
    report_props(&j, img);
    if (c->has_bitmaps) {
        json_arr(&j, "bitmaps");
        for (size_t i = 0; i < c->nbitmaps; i++) {
            const struct qcow2_bitmap_info *b = &c->bitmaps[i];
            json_obj(&j, NULL);
            json_str(&j, "name", b->name);
            json_u64(&j, "granularity", 1ull << b->granularity_bits);
            json_bool(&j, "enabled", b->enabled);
            json_bool(&j, "in_use", b->in_use);
            json_bool(&j, "consistent", b->consistent);
            json_str(&j, "state", qcow2_bitmap_state(b));
            json_bool(&j, "usable", b->usable);
            json_close_obj(&j);
        }
        json_close_arr(&j);
    }
    if (c->layout)
        info_fs_json(&j, c->layout);
    json_arr(&j, "chain");
    const struct image *child = NULL;
    for (const struct image *m = img; m; child = m, m = m->parent) {
        json_obj(&j, NULL);
        json_u64(&j, "depth", m->depth);
        json_str(&j, "path", m->name);
        json_str(&j, "format", image_format_name(m));
        json_u64(&j, "virtual_size", m->size);
        json_u64(&j, "allocated_bytes", image_allocated_bytes(m));
        if (child) {
            json_str(&j, "recorded_as",
                     child->parent_name[0] ? child->parent_name : NULL);
            json_str(&j, "found_by", child->parent_how);
        }
        report_ids(&j, m);
        report_props(&j, m);
        json_close_obj(&j);
    }
    json_close_arr(&j);
    json_end(&j);
}

void report_undo_line(const struct job_spec *spec,
                      const struct job_report *rep)
{
    char sz[32];
    size_format(rep->undo_bytes, sz, sizeof(sz));
    fprintf(stderr, "diskferry: %s: %s%" PRIu64 " ranges, %s put back%s%s\n",
            spec->cmd, spec->dry_run ? "dry run: " : "", rep->undo_records,
            sz, rep->undo_truncated ? ", cut back to its old size" : "",
            rep->undo_complete ? "" : " (the copy had been interrupted)");
}

/* ---- JSON ---- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_key(struct json *j, const char *key)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = false;
    if (key) {
        json_string(j->f, key);
        fputc(':', j->f);
    }
}

void json_begin(struct json *j, FILE *f)
{
    memset(j, 0, sizeof(*j));
    j->f = f;
    fputc('{', f);
    j->first[0] = true;
}

void json_end(struct json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

void json_obj(struct json *j, const char *key)
{
    json_key(j, key);
    fputc('{', j->f);
    j->first[++j->depth] = true;
}

void json_arr(struct json *j, const char *key)
{
    json_key(j, key);
    fputc('[', j->f);
    j->first[++j->depth] = true;
}

void json_close_obj(struct json *j)
{
    fputc('}', j->f);
    j->depth--;
}

void json_close_arr(struct json *j)
{
    fputc(']', j->f);
    j->depth--;
}

void json_str(struct json *j, const char *key, const char *val)
{
    json_key(j, key);
    if (val)
        json_string(j->f, val);
    else
        fputs("null", j->f);
}

void json_u64(struct json *j, const char *key, uint64_t val)
{
    json_key(j, key);
    fprintf(j->f, "%llu", (unsigned long long)val);
}

void json_dbl(struct json *j, const char *key, double val)
{
    json_key(j, key);
    fprintf(j->f, "%.3f", val);
}

void json_bool(struct json *j, const char *key, bool val)
{
    json_key(j, key);
    fputs(val ? "true" : "false", j->f);
}
