// gguf.c: see gguf.h. The file is mapped read-only and its header walked once
// with a bounds-checked cursor; after gguf_open succeeds every key, string and
// tensor it lists lies inside the file. Loading a model checks every tensor's
// name and shape before allocating the parameters, then dequantises straight
// into them.
#include "gguf.h"
#include "weights.h"
#include "safetensors.h"   // f16_to_f32, bf16_to_f32
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_COUNT (1u << 24)    // keys, tensors, array elements: far above any real file
#define MAX_KEY 65535           // bytes in a key or tensor name
#define MAX_ELEMS (1ull << 40)  // elements in one tensor

// Block size (elements) and bytes per block of every ggml type of the format,
// so that tensors of types this program cannot convert are still validated.
static const struct { const char *name; int block, bytes; } TYPES[] = {
    [0] = {"F32", 1, 4}, [1] = {"F16", 1, 2}, [2] = {"Q4_0", 32, 18}, [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22}, [7] = {"Q5_1", 32, 24}, [8] = {"Q8_0", 32, 34}, [9] = {"Q8_1", 32, 40},
    [10] = {"Q2_K", 256, 84}, [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82}, [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1}, [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4}, [27] = {"I64", 1, 8}, [28] = {"F64", 1, 8}, [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2}, [34] = {"TQ1_0", 256, 54}, [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const char *const VALUE_TYPE[GGUF_N_TYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const int VALUE_BYTES[GGUF_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};   // 0: variable

const char *gguf_type_name(uint32_t t) { return t < N_TYPES && TYPES[t].name ? TYPES[t].name : "?"; }

static int supported(uint32_t t) {
    return t == GGML_F32 || t == GGML_F16 || t == GGML_BF16 || t == GGML_Q8_0 || t == GGML_Q4_0 || t == GGML_Q4_1;
}

// ----------------------------------------------------------------------------
// The header, through a cursor that refuses to read past the end of the file

typedef struct { const uint8_t *p; uint64_t size, off; const char *path; char *err; } Cur;

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int need(Cur *c, uint64_t n, const char *what) {
    if (n <= c->size - c->off) return 0;
    return errf(c->err, "%s: truncated: %s needs %llu bytes at offset %llu, the file has %llu", c->path, what,
                (unsigned long long)n, (unsigned long long)c->off, (unsigned long long)c->size);
}

static int rd(Cur *c, int n, uint64_t *v, const char *what) {
    if (need(c, (uint64_t)n, what)) return -1;
    *v = le(c->p + c->off, n);
    c->off += (uint64_t)n;
    return 0;
}

static int rd_str(Cur *c, const uint8_t **s, uint64_t *len, uint64_t max, const char *what) {
    if (rd(c, 8, len, what)) return -1;
    if (*len > max) return errf(c->err, "%s: %s: length %llu exceeds the limit of %llu", c->path, what, (unsigned long long)*len, (unsigned long long)max);
    if (need(c, *len, what)) return -1;
    *s = c->p + c->off;
    c->off += *len;
    return 0;
}

// A key or tensor name (at most MAX_KEY bytes) as a NUL-terminated copy; NULL if s holds a NUL.
static char *dup_str(const uint8_t *s, uint64_t n) {
    if (memchr(s, 0, n)) return NULL;
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

// Skips one value of type `type`, checking that it fits in the file.
static int skip_value(Cur *c, GgufKV *kv, const char *key) {
    char what[160];
    snprintf(what, sizeof what, "metadata %.100s", key);
    if (kv->type >= GGUF_N_TYPES)
        return errf(c->err, "%s: metadata %s: unknown value type %u", c->path, key, kv->type);
    uint32_t t = kv->type;
    kv->n = 1;
    if (t == GGUF_ARRAY) {
        uint64_t elem, n;
        if (rd(c, 4, &elem, what) || rd(c, 8, &n, what)) return -1;
        if (elem == GGUF_ARRAY) return errf(c->err, "%s: metadata %s: arrays of arrays are not supported", c->path, key);
        if (elem >= GGUF_N_TYPES) return errf(c->err, "%s: metadata %s: unknown array element type %llu", c->path, key, (unsigned long long)elem);
        uint64_t min = VALUE_BYTES[elem] ? (uint64_t)VALUE_BYTES[elem] : 8;   // a string is at least its length
        if (n > MAX_COUNT || n > (c->size - c->off) / min)
            return errf(c->err, "%s: metadata %s: %llu array elements do not fit in the file", c->path, key, (unsigned long long)n);
        kv->elem = (uint32_t)elem;
        kv->n = n;
        t = (uint32_t)elem;
    }
    kv->data = c->p + c->off;
    if (VALUE_BYTES[t]) return need(c, kv->n * (uint64_t)VALUE_BYTES[t], what) ? -1 : (c->off += kv->n * (uint64_t)VALUE_BYTES[t], 0);
    for (uint64_t i = 0; i < kv->n; i++) {   // strings
        const uint8_t *s;
        uint64_t len;
        if (rd_str(c, &s, &len, c->size, what)) return -1;
    }
    return 0;
}

static int parse_kv(Cur *c, GgufKV *kv, int index) {
    const uint8_t *s;
    uint64_t len, type;
    char what[48];
    snprintf(what, sizeof what, "metadata key %d", index);
    if (rd_str(c, &s, &len, MAX_KEY, what)) return -1;
    if (!(kv->key = dup_str(s, len))) return errf(c->err, "%s: %s: contains a NUL byte", c->path, what);
    if (rd(c, 4, &type, kv->key)) return -1;
    kv->type = (uint32_t)type;
    return skip_value(c, kv, kv->key);
}

static int parse_tensor_info(Cur *c, GgufTensor *t, int index) {
    const uint8_t *s;
    uint64_t len, v;
    char what[48];
    snprintf(what, sizeof what, "tensor info %d", index);
    if (rd_str(c, &s, &len, MAX_KEY, what)) return -1;
    if (!(t->name = dup_str(s, len))) return errf(c->err, "%s: %s: name contains a NUL byte", c->path, what);
    const char *N = t->name, *P = c->path;
    if (rd(c, 4, &v, N)) return -1;
    if (v < 1 || v > 4) return errf(c->err, "%s: tensor %s: %llu dimensions, expected 1 to 4", P, N, (unsigned long long)v);
    t->ndim = (int)v;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (rd(c, 8, &v, N)) return -1;
        if (v > MAX_ELEMS) return errf(c->err, "%s: tensor %s: ne[%d] = %llu is not a valid size", P, N, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        numel *= v;
        if (numel > MAX_ELEMS) return errf(c->err, "%s: tensor %s: more than 2^40 elements", P, N);
    }
    for (int d = t->ndim; d < 4; d++) t->ne[d] = 1;
    t->numel = (int64_t)numel;
    if (rd(c, 4, &v, N)) return -1;
    t->type = (uint32_t)v;
    if (v >= N_TYPES || !TYPES[v].name) return errf(c->err, "%s: tensor %s: unknown ggml type %llu", P, N, (unsigned long long)v);
    if (t->ne[0] % TYPES[v].block)
        return errf(c->err, "%s: tensor %s: %s rows of %lld values are not whole %d-value blocks", P, N, TYPES[v].name,
                    (long long)t->ne[0], TYPES[v].block);
    t->nbytes = numel / (uint64_t)TYPES[v].block * (uint64_t)TYPES[v].bytes;
    return rd(c, 8, &t->offset, N);
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Two keys or two tensors of one name make the file ambiguous.
static int check_unique(const GgufFile *f, char *err) {
    int n = f->n_kv > f->n_tensors ? f->n_kv : f->n_tensors, rc = 0;
    const char **names = xcalloc((size_t)n + 1, sizeof *names);   // n: the tables already allocated
    for (int pass = 0; pass < 2 && !rc; pass++) {
        int m = pass ? f->n_tensors : f->n_kv;
        for (int i = 0; i < m; i++) names[i] = pass ? f->t[i].name : f->kv[i].key;
        qsort(names, (size_t)m, sizeof *names, cmp_str_ptr);
        for (int i = 1; i < m && !rc; i++)
            if (!strcmp(names[i], names[i - 1]))
                rc = errf(err, "%s: %s %s appears twice", f->path, pass ? "tensor" : "metadata key", names[i]);
    }
    free(names);
    return rc;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const GgufTensor *x = *(const GgufTensor *const *)a, *y = *(const GgufTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// Alignment, the start of the data region, and each tensor's range inside it.
static int place_tensors(GgufFile *f, uint64_t header_end, char *err) {
    int64_t align = 32;
    if (gguf_get_int(f, "general.alignment", &align, 0, err)) return -1;
    if (align < 1 || align > (1 << 20) || (align & (align - 1)))
        return errf(err, "%s: metadata general.alignment = %lld, expected a power of two up to 2^20", f->path, (long long)align);
    f->alignment = (uint64_t)align;
    f->data_offset = (header_end + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_offset > f->size && f->n_tensors)   // a file of metadata alone may end without padding
        return errf(err, "%s: truncated: the data region starts at byte %llu, the file has %zu", f->path, (unsigned long long)f->data_offset, f->size);
    uint64_t region = f->data_offset < f->size ? f->size - f->data_offset : 0;
    for (int i = 0; i < f->n_tensors; i++) {
        GgufTensor *t = &f->t[i];
        if (t->offset % f->alignment)
            return errf(err, "%s: tensor %s: offset %llu is not a multiple of the alignment %llu", f->path, t->name,
                        (unsigned long long)t->offset, (unsigned long long)f->alignment);
        if (t->offset > region || t->nbytes > region - t->offset)
            return errf(err, "%s: tensor %s: bytes [%llu, %llu) of the data region lie outside it (%llu bytes)", f->path, t->name,
                        (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), (unsigned long long)region);
        t->data = f->map + f->data_offset + t->offset;
    }
    const GgufTensor **by = xcalloc((size_t)f->n_tensors + 1, sizeof *by);
    for (int i = 0; i < f->n_tensors; i++) by[i] = &f->t[i];
    qsort(by, (size_t)f->n_tensors, sizeof *by, cmp_tensor_offset);
    int rc = 0;
    uint64_t end = 0;
    for (int i = 0; i < f->n_tensors && !rc; i++) {
        if (!by[i]->nbytes) continue;   // an empty tensor occupies nothing
        if (by[i]->offset < end) rc = errf(err, "%s: tensor %s: its bytes overlap those of another tensor", f->path, by[i]->name);
        end = by[i]->offset + by[i]->nbytes;
    }
    free(by);
    return rc;
}

static int parse_header(GgufFile *f, char *err) {
    Cur c = {f->map, f->size, 0, f->path, err};
    uint64_t magic, version, n_t, n_kv;
    if (rd(&c, 4, &magic, "the magic") || rd(&c, 4, &version, "the version")) return -1;
    if (memcmp(f->map, "GGUF", 4)) return errf(err, "%s: not a GGUF file (the first bytes are not \"GGUF\")", f->path);
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version >> 16)
            return errf(err, "%s: GGUF version %llu: looks big-endian, which is not supported", f->path, (unsigned long long)version);
        return errf(err, "%s: GGUF version %llu is not supported (expected 2 or 3)", f->path, (unsigned long long)version);
    }
    f->version = (uint32_t)version;
    if (rd(&c, 8, &n_t, "the tensor count") || rd(&c, 8, &n_kv, "the metadata count")) return -1;
    // Each tensor info takes at least 32 bytes and each key/value 13: counts the
    // file cannot hold are refused before anything is allocated for them.
    if (n_t > MAX_COUNT || n_t > (f->size - c.off) / 32)
        return errf(err, "%s: header claims %llu tensors, more than the file can hold", f->path, (unsigned long long)n_t);
    if (n_kv > MAX_COUNT || n_kv > (f->size - c.off) / 13)
        return errf(err, "%s: header claims %llu metadata keys, more than the file can hold", f->path, (unsigned long long)n_kv);
    f->kv = calloc((size_t)n_kv + 1, sizeof *f->kv);   // up to MAX_COUNT each, as the header says
    f->t = calloc((size_t)n_t + 1, sizeof *f->t);
    if (!f->kv || !f->t)
        return errf(err, "%s: out of memory (%zu bytes) for the tables of %llu keys and %llu tensors", f->path,
                    ((size_t)n_kv + 1) * sizeof *f->kv + ((size_t)n_t + 1) * sizeof *f->t, (unsigned long long)n_kv, (unsigned long long)n_t);
    for (uint64_t i = 0; i < n_kv; i++, f->n_kv++)
        if (parse_kv(&c, &f->kv[i], (int)i)) { f->n_kv++; return -1; }   // counted, so its key is freed
    for (uint64_t i = 0; i < n_t; i++, f->n_tensors++)
        if (parse_tensor_info(&c, &f->t[i], (int)i)) { f->n_tensors++; return -1; }
    if (check_unique(f, err)) return -1;
    return place_tensors(f, c.off, err);
}

int gguf_open(GgufFile *f, const char *path, char *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat s;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) { close(fd); return errf(err, "%s: not a regular file", path); }
    f->size = (size_t)s.st_size;
    if (f->size < 24) { close(fd); return errf(err, "%s: %zu bytes, too short for a GGUF header", path, f->size); }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) { f->map = NULL; return errf(err, "%s: cannot map: %s", path, strerror(errno)); }
    if (parse_header(f, err)) { gguf_close(f); return -1; }
    return 0;
}

void gguf_close(GgufFile *f) {
    for (int i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    for (int i = 0; i < f->n_tensors; i++) free(f->t[i].name);
    free(f->kv);
    free(f->t);
    if (f->map) munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key) {
    for (int i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const uint8_t *gguf_next_str(const uint8_t *p, const char **s, uint64_t *len) {
    *len = le(p, 8);
    *s = (const char *)p + 8;
    return p + 8 + *len;
}

// ----------------------------------------------------------------------------
// Typed metadata

static const GgufKV *lookup(const GgufFile *f, const char *key, int required, char *err) {
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv && required) errf(err, "%s: missing required metadata %s", f->path, key);
    return kv;
}

static int wrong_type(const GgufFile *f, const GgufKV *kv, const char *expected, char *err) {
    return errf(err, "%s: metadata %s: expected %s, found %s", f->path, kv->key, expected, VALUE_TYPE[kv->type]);
}

int gguf_get_int(const GgufFile *f, const char *key, int64_t *out, int required, char *err) {
    const GgufKV *kv = lookup(f, key, required, err);
    if (!kv) return required ? -1 : 0;
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case GGUF_U8: *out = p[0]; break;
    case GGUF_I8: *out = (int8_t)p[0]; break;
    case GGUF_U16: *out = (int64_t)le(p, 2); break;
    case GGUF_I16: *out = (int16_t)le(p, 2); break;
    case GGUF_U32: *out = (int64_t)le(p, 4); break;
    case GGUF_I32: *out = (int32_t)le(p, 4); break;
    case GGUF_I64: *out = (int64_t)le(p, 8); break;
    case GGUF_U64:
        if (le(p, 8) > INT64_MAX) return errf(err, "%s: metadata %s: %llu is too large", f->path, key, (unsigned long long)le(p, 8));
        *out = (int64_t)le(p, 8);
        break;
    default: return wrong_type(f, kv, "an integer", err);
    }
    return 0;
}

int gguf_get_float(const GgufFile *f, const char *key, double *out, int required, char *err) {
    const GgufKV *kv = lookup(f, key, required, err);
    if (!kv) return required ? -1 : 0;
    if (kv->type == GGUF_F32) {
        uint32_t u = (uint32_t)le(kv->data, 4);
        float x;
        memcpy(&x, &u, 4);
        *out = x;
    } else if (kv->type == GGUF_F64) {
        uint64_t u = le(kv->data, 8);
        memcpy(out, &u, 8);
    } else {
        int64_t i;
        if (kv->type == GGUF_STRING || kv->type == GGUF_ARRAY || kv->type == GGUF_BOOL) return wrong_type(f, kv, "a number", err);
        if (gguf_get_int(f, key, &i, 1, err)) return -1;
        *out = (double)i;
    }
    return 0;
}

int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len, int required, char *err) {
    const GgufKV *kv = lookup(f, key, required, err);
    *s = NULL;
    *len = 0;
    if (!kv) return required ? -1 : 0;
    if (kv->type != GGUF_STRING) return wrong_type(f, kv, "a string", err);
    uint64_t n;
    gguf_next_str(kv->data, s, &n);
    *len = (size_t)n;
    return 0;
}

int gguf_get_array(const GgufFile *f, const char *key, uint32_t elem, const GgufKV **out, int required, char *err) {
    const GgufKV *kv = lookup(f, key, required, err);
    *out = NULL;
    if (!kv) return required ? -1 : 0;
    if (kv->type != GGUF_ARRAY || kv->elem != elem) {
        char what[32];
        snprintf(what, sizeof what, "an array of %s", VALUE_TYPE[elem]);
        if (kv->type == GGUF_ARRAY)
            return errf(err, "%s: metadata %s: expected %s, found an array of %s", f->path, key, what, VALUE_TYPE[kv->elem]);
        return wrong_type(f, kv, what, err);
    }
    *out = kv;
    return 0;
}

// A string value as a NUL-terminated copy for messages and comparisons: one
// holding a NUL byte would compare equal to its first part ("llama\0x").
static int get_cstr(const GgufFile *f, const char *key, char *out, size_t cap, int required, char *err) {
    const char *s;
    size_t n;
    out[0] = 0;
    if (gguf_get_str(f, key, &s, &n, required, err)) return -1;
    if (s && memchr(s, 0, n)) return errf(err, "%s: metadata %s: contains a NUL byte", f->path, key);
    if (s) snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
    return 0;
}

// ----------------------------------------------------------------------------
// Dequantisation. Blocks of 32 values: Q8_0 is an f16 scale d and 32 int8 q
// (x = d q); Q4_0 is d and 16 bytes of 4-bit q, the low nibbles holding values
// 0..15 and the high nibbles 16..31 (x = d (q - 8)); Q4_1 adds an f16 minimum m
// after d (x = d q + m).

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void dequant_q8_0(const uint8_t *b, float *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32) {
        float d = f16_to_f32(u16_at(b));
        for (int j = 0; j < 32; j++) x[j] = d * (float)(int8_t)b[2 + j];
    }
}

static void dequant_q4_0(const uint8_t *b, float *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, x += 32) {
        float d = f16_to_f32(u16_at(b));
        for (int j = 0; j < 16; j++) {
            x[j] = d * (float)((b[2 + j] & 15) - 8);
            x[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const uint8_t *b, float *x, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, x += 32) {
        float d = f16_to_f32(u16_at(b)), m = f16_to_f32(u16_at(b + 2));
        for (int j = 0; j < 16; j++) {
            x[j] = d * (float)(b[4 + j] & 15) + m;
            x[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
    }
}

static void dequant(uint32_t type, const uint8_t *src, float *dst, int64_t n) {
    switch (type) {
    case GGML_F32: memcpy(dst, src, (size_t)n * 4); break;   // little-endian hosts, as the format
    case GGML_F16: for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(u16_at(src + 2 * i)); break;
    case GGML_BF16: for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(u16_at(src + 2 * i)); break;
    case GGML_Q8_0: dequant_q8_0(src, dst, n / 32); break;
    case GGML_Q4_0: dequant_q4_0(src, dst, n / 32); break;
    case GGML_Q4_1: dequant_q4_1(src, dst, n / 32); break;
    }
}

int gguf_dequantize(uint32_t type, const void *src, float *dst, int64_t n, char *err) {
    if (!supported(type))
        return errf(err, "tensor type %s is not supported (expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1)", gguf_type_name(type));
    if (n < 0 || n % TYPES[type].block) return errf(err, "%lld values are not whole %s blocks", (long long)n, TYPES[type].name);
    dequant(type, src, dst, n);
    return 0;
}

static int check_readable(const GgufFile *f, const GgufTensor *t, int64_t n, char *err) {
    if (!supported(t->type))
        return errf(err, "%s: tensor %s: type %s is not supported (expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1)", f->path,
                    t->name, gguf_type_name(t->type));
    if (n != t->numel) return errf(err, "%s: tensor %s: %lld elements, expected %lld", f->path, t->name, (long long)t->numel, (long long)n);
    return 0;
}

int gguf_read_f32(const GgufFile *f, const GgufTensor *t, float *out, int64_t n, char *err) {
    if (check_readable(f, t, n, err)) return -1;
    dequant(t->type, t->data, out, n);
    return 0;
}

int gguf_unpermute_row(int r, int n_head, int rows) {
    int hd = rows / n_head, h = r / hd, w = r % hd;
    int i = w / (hd / 2), j = w % (hd / 2);
    return h * hd + 2 * j + i;
}

// Tensor t (ne = {cols, rows}) into out (rows, cols); with n_head > 0 the rows
// are un-permuted (gguf_unpermute_row). Rows are whole blocks, so each is
// converted on its own.
static int read_rows(const GgufFile *f, const GgufTensor *t, float *out, int64_t rows, int64_t cols, int n_head, char *err) {
    if (check_readable(f, t, rows * cols, err)) return -1;
    uint64_t row_bytes = (uint64_t)cols / (uint64_t)TYPES[t->type].block * (uint64_t)TYPES[t->type].bytes;
    #pragma omp parallel for schedule(static) if (rows * cols >= (1 << 22))   // threads only where they pay
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = n_head > 0 ? gguf_unpermute_row((int)r, n_head, (int)rows) : r;
        dequant(t->type, t->data + (uint64_t)src * row_bytes, out + r * cols, cols);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// Llama: config and tensor names

// Per layer: llama.cpp's name, the Hugging Face one, and which projections'
// rows llama.cpp permuted (1: q, by head_count; 2: k, by head_count_kv).
static const struct { const char *gguf, *hf; int perm; } LAYER[] = {
    {"attn_norm", "input_layernorm", 0},     {"attn_q", "self_attn.q_proj", 1},   {"attn_k", "self_attn.k_proj", 2},
    {"attn_v", "self_attn.v_proj", 0},       {"attn_output", "self_attn.o_proj", 0}, {"ffn_norm", "post_attention_layernorm", 0},
    {"ffn_gate", "mlp.gate_proj", 0},        {"ffn_up", "mlp.up_proj", 0},          {"ffn_down", "mlp.down_proj", 0},
};
#define N_LAYER (int)(sizeof LAYER / sizeof LAYER[0])
static const char *const GLOBAL[] = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"};

// Is name a tensor this loader knows? Unknown ones (biases, other
// architectures' extras) are refused rather than silently dropped.
static int known_tensor(const char *name, int n_layers) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, GLOBAL[i])) return 1;
    if (strncmp(name, "blk.", 4)) return 0;
    const char *p = name + 4;
    long l = 0;
    for (; *p >= '0' && *p <= '9' && l < n_layers; p++) l = l * 10 + (*p - '0');
    if (p == name + 4 || *p != '.' || l >= n_layers || (name[4] == '0' && p > name + 5)) return 0;   // no "blk.01."
    for (int k = 0; k < N_LAYER; k++) {
        size_t n = strlen(LAYER[k].gguf);
        if (!strncmp(p + 1, LAYER[k].gguf, n) && !strcmp(p + 1 + n, ".weight")) return 1;
    }
    return 0;
}

#define BIG (1 << 24)

static int get_dim(const GgufFile *f, const char *key, int *out, int required, int lo, int hi, char *err) {
    int64_t v = *out;
    if (gguf_get_int(f, key, &v, required, err)) return -1;
    if (v < lo || v > hi) return errf(err, "%s: metadata %s = %lld, expected an integer in [%d, %d]", f->path, key, (long long)v, lo, hi);
    *out = (int)v;
    return 0;
}

// llama.cpp stores Llama-3 RoPE scaling as a per-frequency divisor tensor,
// rope_freqs.weight, made by its converter from rope_scaling. The config keeps
// the four numbers instead, so the tensor must be what those numbers give:
// factor = its largest entry, and the Llama-3.1/3.2 values otherwise.
static int rope_from_freqs(const GgufFile *f, const GgufTensor *t, Config *c, char *err) {
    int half = c->head_dim / 2;
    if (t->numel != half || t->type != GGML_F32)
        return errf(err, "%s: tensor rope_freqs.weight: expected %d F32 values (head_dim / 2), found %lld %s", f->path, half,
                    (long long)t->numel, gguf_type_name(t->type));
    float *fr = xcalloc((size_t)half, sizeof *fr), *inv = xcalloc((size_t)half, sizeof *inv);   // numel == half: checked
    dequant(GGML_F32, t->data, fr, half);
    float factor = 0;
    for (int j = 0; j < half; j++) {
        if (!(fr[j] >= 1.0f && fr[j] <= 1e6f)) {   // Llama-3's divisors run from 1 to factor; also refuses NaN
            errf(err, "%s: tensor rope_freqs.weight: entry %d = %g, expected a divisor in [1, 1e6]", f->path, j, fr[j]);
            free(fr);
            free(inv);
            return -1;
        }
        factor = fr[j] > factor ? fr[j] : factor;
    }
    int64_t orig = 8192;
    int rc = gguf_get_int(f, "llama.rope.scaling.original_context_length", &orig, 0, err);
    if (!rc && (orig < 1 || orig > (1 << 30))) rc = errf(err, "%s: metadata llama.rope.scaling.original_context_length = %lld is out of range", f->path, (long long)orig);
    int all_one = 1;
    for (int j = 0; j < half; j++) all_one &= fr[j] == 1.0f;
    if (!rc && !all_one) {
        c->rope_llama3 = 1;
        c->rope_factor = factor;
        c->rope_low_freq = 1.0f;
        c->rope_high_freq = 4.0f;
        c->rope_orig_max_pos = (int)orig;
        rope_inv_freq(c, inv);
        float *base = fr;   // reused: the unscaled frequencies divided by the file's factors
        for (int j = 0; j < half; j++) base[j] = 1.0f / (powf(c->rope_theta, (float)(2 * j) / (float)c->head_dim) * fr[j]);
        for (int j = 0; j < half && !rc; j++)
            if (fabsf(inv[j] - base[j]) > 1e-5f * fabsf(base[j]) + 1e-12f)
                rc = errf(err, "%s: tensor rope_freqs.weight: entry %d is not Llama-3 RoPE scaling (factor %g, low 1, high 4, "
                               "original context %lld); other per-frequency factors are not supported", f->path, j, factor, (long long)orig);
    }
    free(fr);
    free(inv);
    return rc;
}

static int rope_scaling(const GgufFile *f, Config *c, char *err) {
    char kind[32];
    if (get_cstr(f, "llama.rope.scaling.type", kind, sizeof kind, 0, err)) return -1;
    if (kind[0] && strcmp(kind, "none")) {
        double factor = 1;
        if (gguf_get_float(f, "llama.rope.scaling.factor", &factor, 0, err)) return -1;
        if (strcmp(kind, "linear") || factor != 1)
            return errf(err, "%s: metadata llama.rope.scaling.type = \"%s\": only \"none\" (and Llama-3 scaling through "
                             "rope_freqs.weight) is supported", f->path, kind);
    }
    const GgufTensor *t = gguf_find_tensor(f, "rope_freqs.weight");
    return t ? rope_from_freqs(f, t, c, err) : 0;
}

// bos, and as stop ids eos and (Llama-3.x) the end-of-turn and end-of-message tokens.
static int token_ids(const GgufFile *f, Config *c, char *err) {
    static const char *const keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                        "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
    int64_t ids[4] = {c->bos, c->eos[0], -1, -1};
    c->n_eos = 0;
    for (int i = 0; i < 4; i++) {
        if (gguf_get_int(f, keys[i], &ids[i], 0, err)) return -1;
        if (ids[i] < (i >= 2 ? -1 : 0) || ids[i] >= c->vocab)
            return errf(err, "%s: metadata %s = %lld is outside the vocabulary (%d tokens)", f->path, keys[i], (long long)ids[i], c->vocab);
        int seen = ids[i] < 0;
        for (int k = 0; k < c->n_eos; k++) seen |= c->eos[k] == ids[i];
        if (i > 0 && !seen) c->eos[c->n_eos++] = (int)ids[i];
    }
    c->bos = (int)ids[0];
    return 0;
}

int gguf_config(const GgufFile *f, Config *c, char *err) {
    memset(c, 0, sizeof *c);
    char arch[64];
    if (get_cstr(f, "general.architecture", arch, sizeof arch, 1, err)) return -1;
    if (strcmp(arch, "llama"))
        return errf(err, "%s: metadata general.architecture = \"%s\": only \"llama\" is supported", f->path, arch);
    c->norm_eps = 1e-5f; c->rope_theta = 10000.0f; c->max_pos = 2048; c->bos = 1; c->eos[0] = 2; c->n_eos = 1;
    if (get_dim(f, "llama.embedding_length", &c->dim, 1, 1, BIG, err) ||
        get_dim(f, "llama.feed_forward_length", &c->hidden, 1, 1, BIG, err) ||
        get_dim(f, "llama.block_count", &c->n_layers, 1, 1, 4096, err) ||
        get_dim(f, "llama.attention.head_count", &c->n_heads, 1, 1, 4096, err))
        return -1;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->dim / c->n_heads;
    int vdim = 0, rdim = 0;
    double eps = c->norm_eps, theta = c->rope_theta;
    if (get_dim(f, "llama.attention.head_count_kv", &c->n_kv_heads, 0, 1, 4096, err) ||
        get_dim(f, "llama.attention.key_length", &c->head_dim, 0, 1, 65536, err) ||
        get_dim(f, "llama.context_length", &c->max_pos, 0, 1, 1 << 30, err) ||
        gguf_get_float(f, "llama.attention.layer_norm_rms_epsilon", &eps, 0, err) ||
        gguf_get_float(f, "llama.rope.freq_base", &theta, 0, err))
        return -1;
    vdim = rdim = c->head_dim;
    if (get_dim(f, "llama.attention.value_length", &vdim, 0, 1, 65536, err) ||
        get_dim(f, "llama.rope.dimension_count", &rdim, 0, 1, 65536, err))
        return -1;
    if (!(eps > 0 && eps <= 1)) return errf(err, "%s: metadata llama.attention.layer_norm_rms_epsilon = %g, expected (0, 1]", f->path, eps);
    if (!(theta > 0 && theta <= 1e12)) return errf(err, "%s: metadata llama.rope.freq_base = %g, expected (0, 1e12]", f->path, theta);
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    if (c->head_dim < 2 || c->head_dim % 2)
        return errf(err, "%s: head_dim %d (llama.attention.key_length, or embedding_length / head_count) must be even", f->path, c->head_dim);
    if (vdim != c->head_dim)
        return errf(err, "%s: metadata llama.attention.value_length = %d differs from key_length %d (not supported)", f->path, vdim, c->head_dim);
    if (rdim != c->head_dim)
        return errf(err, "%s: metadata llama.rope.dimension_count = %d: RoPE on part of a %d-dimensional head is not supported", f->path, rdim, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return errf(err, "%s: metadata llama.attention.head_count (%d) must be a multiple of head_count_kv (%d)", f->path, c->n_heads, c->n_kv_heads);
    const GgufTensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd) return errf(err, "%s: tensor token_embd.weight is missing", f->path);
    if (embd->ndim != 2 || embd->ne[1] < 1 || embd->ne[1] > BIG)
        return errf(err, "%s: tensor token_embd.weight: expected 2 dimensions {embedding_length, vocab}", f->path);
    c->vocab = (int)embd->ne[1];
    int vocab = c->vocab;
    if (get_dim(f, "llama.vocab_size", &vocab, 0, 1, BIG, err)) return -1;
    if (vocab != c->vocab)
        return errf(err, "%s: metadata llama.vocab_size = %d but tensor token_embd.weight has %d rows", f->path, vocab, c->vocab);
    c->tied = gguf_find_tensor(f, "output.weight") == NULL;
    if (token_ids(f, c, err)) return -1;
    return rope_scaling(f, c, err);
}

// One parameter: its name in the file and in the model, its shape (rows 0: a
// vector), and the heads whose rows llama.cpp permuted (0: none).
typedef struct { char gguf[64], hf[112]; int rows, cols, perm; } Want;

// Every parameter a config implies, in no particular order; n set.
static Want *wanted(const Config *c, int *n) {
    Want *w = xcalloc((size_t)N_LAYER * (size_t)c->n_layers + 3, sizeof *w);   // n_layers: checked by gguf_config
    int k = 0, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    w[k++] = (Want){"token_embd.weight", "model.embed_tokens.weight", c->vocab, c->dim, 0};
    w[k++] = (Want){"output_norm.weight", "model.norm.weight", 0, c->dim, 0};
    if (!c->tied) w[k++] = (Want){"output.weight", "lm_head.weight", c->vocab, c->dim, 0};
    const int rows[N_LAYER] = {0, q, kv, kv, c->dim, 0, c->hidden, c->hidden, c->dim};
    const int cols[N_LAYER] = {c->dim, c->dim, c->dim, c->dim, q, c->dim, c->dim, c->dim, c->hidden};
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < N_LAYER; j++, k++) {
            snprintf(w[k].gguf, sizeof w[k].gguf, "blk.%d.%s.weight", l, LAYER[j].gguf);
            snprintf(w[k].hf, sizeof w[k].hf, "model.layers.%d.%s.weight", l, LAYER[j].hf);
            w[k].rows = rows[j];
            w[k].cols = cols[j];
            w[k].perm = LAYER[j].perm == 1 ? c->n_heads : LAYER[j].perm == 2 ? c->n_kv_heads : 0;
        }
    *n = k;
    return w;
}

// The file's tensor for each parameter, checked against its shape and type,
// before any memory is committed to the model; and no tensor the loader does
// not know.
static int check_tensors(const GgufFile *f, const Config *c, const Want *w, int n, const GgufTensor **src, char *err) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!known_tensor(f->t[i].name, c->n_layers))
            return errf(err, "%s: tensor %s: not a tensor of a llama model with %d blocks (not supported)", f->path, f->t[i].name, c->n_layers);
    for (int i = 0; i < n; i++) {
        const GgufTensor *t = gguf_find_tensor(f, w[i].gguf);
        if (!t) return errf(err, "%s: tensor %s is missing", f->path, w[i].gguf);
        int ok = w[i].rows ? t->ndim == 2 && t->ne[0] == w[i].cols && t->ne[1] == w[i].rows : t->ndim == 1 && t->ne[0] == w[i].cols;
        if (!ok && w[i].rows)
            return errf(err, "%s: tensor %s: ne {%lld, %lld}, expected {%d, %d}", f->path, w[i].gguf, (long long)t->ne[0],
                        (long long)t->ne[1], w[i].cols, w[i].rows);
        if (!ok) return errf(err, "%s: tensor %s: expected one dimension of %d", f->path, w[i].gguf, w[i].cols);
        if (!supported(t->type))
            return errf(err, "%s: tensor %s: type %s is not supported (expected F32, F16, BF16, Q8_0, Q4_0 or Q4_1)", f->path,
                        w[i].gguf, gguf_type_name(t->type));
        src[i] = t;
    }
    return 0;
}

int gguf_load_model(Model *m, const char *path, char *err) {
    GgufFile f;
    Config c;
    if (gguf_open(&f, path, err)) return -1;
    int n = 0, rc = gguf_config(&f, &c, err);
    Want *w = rc ? NULL : wanted(&c, &n);
    const GgufTensor **src = w ? xcalloc((size_t)n, sizeof *src) : NULL;
    if (!rc) rc = check_tensors(&f, &c, w, n, src, err);
    int inited = 0;
    if (!rc) inited = (rc = model_init(m, &c, err)) == 0;
    for (int i = 0; !rc && i < n; i++) {
        Tensor *x = table_get(&m->params, w[i].hf);
        if (!x) rc = errf(err, "%s: no parameter %s in the model", path, w[i].hf);   // not reached: same config
        else rc = read_rows(&f, src[i], x->data, x->rows, x->cols, w[i].perm, err);
    }
    if (rc && inited) model_free(m);
    free(src);
    free(w);
    gguf_close(&f);
    return rc;
}

int gguf_read_blocks(const GgufFile *f, const Config *c, const char *hf_name, QMat *q, char *err) {
    memset(q, 0, sizeof *q);
    int n = 0, rc = 0;
    Want *w = wanted(c, &n), *x = NULL;
    for (int i = 0; i < n && !x; i++)
        if (w[i].rows && !strcmp(w[i].hf, hf_name)) x = &w[i];
    const GgufTensor *t = x ? gguf_find_tensor(f, x->gguf) : NULL;
    if (!t || t->ndim != 2 || t->ne[0] != x->cols || t->ne[1] != x->rows)
        rc = errf(err, "%s: no tensor of the shape of %s", f->path, hf_name);
    const int type = rc ? -1 : t->type == GGML_Q8_0 ? QT_Q8_0 : t->type == GGML_Q4_0 ? QT_Q4_0 : t->type == GGML_Q4_1 ? QT_Q4_1
                               : t->type == GGML_BF16 && x->cols % 32 == 0 ? QT_BF16 : -1;
    if (!rc && type >= 0) {
        if (qmat_alloc(q, type, x->rows, x->cols)) rc = errf(err, "out of memory for the blocks of %s", x->gguf);
        for (int r = 0; !rc && r < x->rows; r++) {   // a row of blocks is a row of the file's tensor
            int src = x->perm ? gguf_unpermute_row(r, x->perm, x->rows) : r;
            memcpy(q->data + (size_t)r * q->row_bytes, t->data + (size_t)src * q->row_bytes, q->row_bytes);
        }
    }
    free(w);
    return rc;
}

int gguf_is_path(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n >= 5 && !strcasecmp(path + n - 5, ".gguf");
}

// ----------------------------------------------------------------------------
// Tokenizer: the tokenizer.json that Hugging Face would have for these keys.
// GGUF keeps tokens and merges in tokenizer.json's byte-level spelling, so
// they go over unchanged; token types say which are added tokens (3 control:
// special; 4 user-defined: not special). The pre-tokenizer is named by
// tokenizer.ggml.pre, the name llama.cpp's converter gives each known one.

#define LLAMA3_SPLIT "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER = 4 };

static cJSON *pre_step(cJSON *list, const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddItemToArray(list, o);
    return o;
}

// pre_tokenizer for `pre`; *ignore_merges as Hugging Face's file has it.
static cJSON *pre_tokenizer(const GgufFile *f, const char *pre, int *ignore_merges, char *err) {
    cJSON *p = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(p, "pretokenizers");
    cJSON_AddStringToObject(p, "type", "Sequence");
    int use_regex = 1;
    *ignore_merges = 0;
    if (!strcmp(pre, "smollm")) {   // SmolLM/SmolLM2: each digit alone, then GPT-2's regex
        cJSON_AddTrueToObject(pre_step(list, "Digits"), "individual_digits");
    } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) {
        cJSON *s = pre_step(list, "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "pattern"), "Regex", LLAMA3_SPLIT);
        cJSON_AddStringToObject(s, "behavior", "Isolated");
        cJSON_AddFalseToObject(s, "invert");
        use_regex = 0;
        *ignore_merges = 1;
    } else if (strcmp(pre, "gpt-2") && strcmp(pre, "default")) {
        cJSON_Delete(p);
        errf(err, "%s: metadata tokenizer.ggml.pre = \"%s\": unknown pre-tokenizer (expected smollm, llama-bpe, gpt-2 or default)", f->path, pre);
        return NULL;
    }
    cJSON *bl = pre_step(list, "ByteLevel");
    cJSON_AddFalseToObject(bl, "add_prefix_space");
    cJSON_AddTrueToObject(bl, "trim_offsets");
    cJSON_AddBoolToObject(bl, "use_regex", use_regex);
    return p;
}

// The i-th string of array `key` as a NUL-terminated copy in *buf. A string
// is as long as the file makes it, so running out of memory is an error too.
static int array_str(const GgufFile *f, const char *key, uint64_t i, const uint8_t **p, char **buf, size_t *cap, char *err) {
    const char *s;
    uint64_t n;
    *p = gguf_next_str(*p, &s, &n);
    if (memchr(s, 0, n)) return errf(err, "%s: metadata %s[%llu]: contains a NUL byte", f->path, key, (unsigned long long)i);
    if (n + 1 > *cap) {
        char *b = realloc(*buf, n + 1);
        if (!b) return errf(err, "%s: metadata %s[%llu]: out of memory (%llu bytes)", f->path, key, (unsigned long long)i, (unsigned long long)n + 1);
        *buf = b;
        *cap = n + 1;
    }
    memcpy(*buf, s, n);
    (*buf)[n] = 0;
    return 0;
}

static int add_vocab(const GgufFile *f, cJSON *vocab, cJSON *added, const GgufKV *tokens, const GgufKV *types, char *err) {
    const uint8_t *p = tokens->data;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < tokens->n && !rc; i++) {
        if ((rc = array_str(f, "tokenizer.ggml.tokens", i, &p, &buf, &cap, err))) break;
        int32_t type = types ? (int32_t)le(types->data + 4 * i, 4) : TOK_NORMAL;
        if (type == TOK_CONTROL || type == TOK_USER) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddItemToArray(added, a);
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", buf);
            cJSON_AddFalseToObject(a, "single_word");
            cJSON_AddFalseToObject(a, "lstrip");
            cJSON_AddFalseToObject(a, "rstrip");
            cJSON_AddFalseToObject(a, "normalized");
            cJSON_AddBoolToObject(a, "special", type == TOK_CONTROL);
        } else cJSON_AddNumberToObject(vocab, buf, (double)i);
    }
    free(buf);
    return rc;
}

static int add_merges(const GgufFile *f, cJSON *list, const GgufKV *merges, char *err) {
    const uint8_t *p = merges->data;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < merges->n && !rc; i++) {
        if (!(rc = array_str(f, "tokenizer.ggml.merges", i, &p, &buf, &cap, err))) cJSON_AddItemToArray(list, cJSON_CreateString(buf));
    }
    free(buf);
    return rc;
}

char *gguf_tokenizer_json(const GgufFile *f, char *err) {
    char model[32], pre[64];
    const GgufKV *tokens, *types, *merges;
    if (get_cstr(f, "tokenizer.ggml.model", model, sizeof model, 1, err)) return NULL;
    if (strcmp(model, "gpt2")) {
        errf(err, "%s: metadata tokenizer.ggml.model = \"%s\": only \"gpt2\" (byte-level BPE) is supported", f->path, model);
        return NULL;
    }
    if (get_cstr(f, "tokenizer.ggml.pre", pre, sizeof pre, 0, err) ||
        gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_STRING, &tokens, 1, err) ||
        gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_I32, &types, 0, err) ||
        gguf_get_array(f, "tokenizer.ggml.merges", GGUF_STRING, &merges, 1, err))
        return NULL;
    if (types && types->n != tokens->n) {
        errf(err, "%s: metadata tokenizer.ggml.token_type has %llu entries, tokenizer.ggml.tokens %llu", f->path,
             (unsigned long long)types->n, (unsigned long long)tokens->n);
        return NULL;
    }
    int ignore_merges;
    cJSON *pt = pre_tokenizer(f, pre[0] ? pre : "default", &ignore_merges, err);
    if (!pt) return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pt);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddBoolToObject(m, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *mlist = cJSON_AddArrayToObject(m, "merges");
    char *text = NULL;
    if (!add_vocab(f, vocab, added, tokens, types, err) && !add_merges(f, mlist, merges, err)) {
        text = cJSON_PrintUnformatted(root);
        if (!text) errf(err, "%s: out of memory building the tokenizer", f->path);
    }
    cJSON_Delete(root);
    return text;
}

Tokenizer *gguf_load_tokenizer(const char *path, char *err) {
    GgufFile f;
    if (gguf_open(&f, path, err)) return NULL;
    char *json = gguf_tokenizer_json(&f, err), name[4200];
    Tokenizer *t = NULL;
    if (json) {   // the loader's messages then read "x.gguf (tokenizer.ggml.*): model.merges[3]: ..."
        snprintf(name, sizeof name, "%s (tokenizer.ggml.*)", path);
        t = tok_load_json(json, name, err);
    }
    free(json);
    gguf_close(&f);
    return t;
}

int gguf_chat_format(const char *path, ChatFormat *fmt, char *err) {
    GgufFile f;
    if (gguf_open(&f, path, err)) return -1;
    const char *s;
    size_t n;
    int rc = gguf_get_str(&f, "tokenizer.chat_template", &s, &n, 0, err);
    char *tmpl = NULL;   // as long as the file makes it: an error when it cannot be had
    if (!rc && s && !memchr(s, 0, n) && !(tmpl = malloc(n + 1)))
        rc = errf(err, "%s: tokenizer.chat_template: out of memory (%zu bytes)", path, n + 1);
    if (tmpl) {
        memcpy(tmpl, s, n);
        tmpl[n] = 0;
        chat_detect_template(tmpl, fmt);
    }
    free(tmpl);
    gguf_close(&f);
    return rc;
}
