/*
 * fuzz_tables.h: a format-aware mutation shared by the image fuzz
 * targets.  Byte flips rarely make a table overlap another structure
 * while everything else still holds, and a checksum then rejects most of
 * them.  So the target lists where its file stores table positions and
 * lengths (header fields, the first entries of its tables) and one
 * mutation in three rewrites one of them:
 *
 *   - to another listed value, or that value's end (overlap: a table
 *     onto a header, onto another table, onto itself)
 *   - to such a value plus a small misalignment (1, 8, 512, 0x200001)
 *   - to the file's size or just past it (past EOF), 0, or all ones
 *   - with one bit flipped
 *
 * then recomputes the format's checksums so the input gets past them.
 * The other mutations are libFuzzer's own (checksums recomputed half of
 * the time).  Only fuzz_<format> executables define DF_FUZZ_MUTATOR; the
 * replay_<format> tests build without it.
 */
#ifndef DF_FUZZ_TABLES_H
#define DF_FUZZ_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/bytes.h"

#define FUZZ_TABLES_MAX 64

struct fuzz_field {
    size_t off;                 /* where the value is stored */
    unsigned width;             /* 2, 4 or 8 bytes */
    bool be;                    /* big endian */
    uint64_t unit;              /* the stored value counts units of this */
};

struct fuzz_fields {
    struct fuzz_field v[FUZZ_TABLES_MAX];
    size_t n;
    uint64_t marks[FUZZ_TABLES_MAX];  /* byte offsets worth aiming at */
    size_t nmarks;
};

static inline void fuzz_field_add(struct fuzz_fields *f, size_t off,
                                  unsigned width, bool be, uint64_t unit,
                                  size_t size)
{
    if (f->n < FUZZ_TABLES_MAX && off <= size && width <= size - off)
        f->v[f->n++] = (struct fuzz_field){ off, width, be, unit ? unit : 1 };
}

static inline void fuzz_mark_add(struct fuzz_fields *f, uint64_t off)
{
    if (f->nmarks < FUZZ_TABLES_MAX)
        f->marks[f->nmarks++] = off;
}

static inline uint64_t fuzz_field_get(const uint8_t *d,
                                      const struct fuzz_field *fl)
{
    const uint8_t *p = d + fl->off;

    switch (fl->width) {
    case 2: return fl->be ? get_be16(p) : get_le16(p);
    case 4: return fl->be ? get_be32(p) : get_le32(p);
    default: return fl->be ? get_be64(p) : get_le64(p);
    }
}

static inline void fuzz_field_put(uint8_t *p, const struct fuzz_field *fl,
                                  uint64_t v)
{
    switch (fl->width) {
    case 2:
        if (fl->be) put_be16(p, (uint16_t)v); else put_le16(p, (uint16_t)v);
        break;
    case 4:
        if (fl->be) put_be32(p, (uint32_t)v); else put_le32(p, (uint32_t)v);
        break;
    default:
        if (fl->be) put_be64(p, v); else put_le64(p, v);
    }
}

static inline uint64_t fuzz_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Pick one field of f and the value to store there (in the field's
 * units); false when f lists nothing.  file_size is the size the fields
 * point into.
 */
static inline bool fuzz_tables_pick(const uint8_t *d, uint64_t file_size,
                                    struct fuzz_fields *f, unsigned seed,
                                    size_t *which, uint64_t *value)
{
    static const uint64_t skew[] = { 1, 8, 512, 4096, 0x200001, 65536 };
    uint64_t r = seed * 2654435761u + 1;

    if (!f->n)
        return false;
    for (size_t i = 0; i < f->n; i++)
        fuzz_mark_add(f, fuzz_field_get(d, &f->v[i]) * f->v[i].unit);
    fuzz_mark_add(f, file_size);
    const struct fuzz_field *fl = &f->v[fuzz_rand(&r) % f->n];
    uint64_t mark = f->marks[fuzz_rand(&r) % f->nmarks];
    uint64_t cur = fuzz_field_get(d, fl);
    uint64_t v;

    switch (fuzz_rand(&r) % 6) {
    case 0:
        v = mark / fl->unit;
        break;
    case 1:
        v = mark / fl->unit + skew[fuzz_rand(&r) % 6] / fl->unit + 1;
        break;
    case 2:
        v = (file_size + fuzz_rand(&r) % 3 * 512) / fl->unit;
        break;
    case 3:
        v = fuzz_rand(&r) & 1 ? 0 : UINT64_MAX;
        break;
    case 4:
        v = cur ^ (1ull << (fuzz_rand(&r) % (fl->width * 8)));
        break;
    default:
        v = cur + skew[fuzz_rand(&r) % 6];
    }
    *which = (size_t)(fl - f->v);
    *value = v;
    return true;
}

#ifdef DF_FUZZ_MUTATOR
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed);

/*
 * The custom mutator of a target whose input is the file itself:
 * list(d, size, f) fills f, fix(d, size) recomputes checksums.
 */
static inline size_t fuzz_tables_mutate(
    uint8_t *data, size_t size, size_t max_size, unsigned int seed,
    void (*list)(const uint8_t *, size_t, struct fuzz_fields *),
    void (*fix)(uint8_t *, size_t))
{
    struct fuzz_fields f = { .n = 0 };
    size_t which;
    uint64_t v;

    if (seed % 3 == 0) {
        list(data, size, &f);
        if (fuzz_tables_pick(data, size, &f, seed, &which, &v)) {
            fuzz_field_put(data + f.v[which].off, &f.v[which], v);
            fix(data, size);
            return size;
        }
    }
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed & 4)
        fix(data, size);
    return size;
}

#define FUZZ_TABLES_MUTATOR(list, fix)                                      \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size,             \
                                   size_t max_size, unsigned int seed)     \
    {                                                                       \
        return fuzz_tables_mutate(data, size, max_size, seed, list, fix);  \
    }
#else
/* Without libFuzzer: keep the functions used, for -Wunused-function. */
#define FUZZ_TABLES_MUTATOR(list, fix)                                      \
    void fuzz_tables_unused(void);                                          \
    void fuzz_tables_unused(void) { (void)list; (void)fix; }
#endif

#endif
