// safetensors.c: see safetensors.h. The file is mapped read-only; every
// tensor's byte range is checked against the file size and against every other
// tensor (no overlaps) before anything is read.
#include "safetensors.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20)   // the format's own limit on the JSON header

static const struct { const char *name; Dtype dt; int bytes; } DTYPES[] = {
    {"F32", DT_F32, 4}, {"F16", DT_F16, 2}, {"BF16", DT_BF16, 2},
    {"I32", DT_I32, 4}, {"I64", DT_I64, 8}, {"F64", DT_OTHER, 8},
    {"I8", DT_OTHER, 1}, {"U8", DT_OTHER, 1}, {"I16", DT_OTHER, 2},
    {"BOOL", DT_OTHER, 1}, {"F8_E4M3", DT_OTHER, 1}, {"F8_E5M2", DT_OTHER, 1},
};

static int dtype_lookup(const char *s, Dtype *dt, int *bytes) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (!strcmp(s, DTYPES[i].name)) { *dt = DTYPES[i].dt; *bytes = DTYPES[i].bytes; return 0; }
    return -1;
}

static int parse_entry(StFile *f, const cJSON *e, StTensor *t, uint64_t data_len, uint64_t *range, char *err) {
    const char *P = f->path, *N = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int bytes;
    if (!cJSON_IsString(dt) || dtype_lookup(dt->valuestring, &t->dtype, &bytes))
        return errf(err, "%s: tensor %s: unknown or missing dtype", P, N);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > 8)
        return errf(err, "%s: tensor %s: shape must be a list of at most 8 sizes", P, N);
    t->ndim = cJSON_GetArraySize(sh);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)(1ULL << 40) || d->valuedouble != (double)(int64_t)d->valuedouble)
            return errf(err, "%s: tensor %s: shape[%d] is not a valid size", P, N, i);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && numel > (1ULL << 40) / (uint64_t)t->shape[i])   // before the product can wrap
            return errf(err, "%s: tensor %s: more than 2^40 elements", P, N);
        numel *= (uint64_t)t->shape[i];
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return errf(err, "%s: tensor %s: data_offsets must be [begin, end]", P, N);
    const cJSON *ob = cJSON_GetArrayItem(off, 0), *oe = cJSON_GetArrayItem(off, 1);
    if (!cJSON_IsNumber(ob) || !cJSON_IsNumber(oe))
        return errf(err, "%s: tensor %s: data_offsets must be [begin, end], two numbers", P, N);
    double b = ob->valuedouble, en = oe->valuedouble;
    if (!(b >= 0 && en >= b && en <= (double)data_len))
        return errf(err, "%s: tensor %s: data_offsets [%.0f, %.0f] outside the %llu-byte data region", P, N, b, en, (unsigned long long)data_len);
    if (b != (double)(uint64_t)b || en != (double)(uint64_t)en)
        return errf(err, "%s: tensor %s: data_offsets [%g, %g] must be whole numbers", P, N, b, en);
    range[0] = (uint64_t)b;
    range[1] = (uint64_t)en;
    if (range[1] - range[0] != numel * (uint64_t)bytes)
        return errf(err, "%s: tensor %s: %llu bytes for %llu elements of %s (expected %llu)", P, N,
                    (unsigned long long)(range[1] - range[0]), (unsigned long long)numel, t->dtype_name,
                    (unsigned long long)(numel * bytes));
    return 0;
}

static int cmp_range(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static int parse_metadata(StFile *f, const cJSON *m, char *err) {
    if (!cJSON_IsObject(m)) return errf(err, "%s: __metadata__ must be an object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = xcalloc((size_t)n + 1, sizeof(char *));   // small beside the parsed header
    f->meta_vals = xcalloc((size_t)n + 1, sizeof(char *));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, m) {
        if (!cJSON_IsString(kv)) return errf(err, "%s: __metadata__.%s must be a string", f->path, kv->string);
        f->meta_keys[f->n_meta] = xstrdup(kv->string);
        f->meta_vals[f->n_meta++] = xstrdup(kv->valuestring);
    }
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// A name given twice would leave st_find's answer to the order of the header.
static int check_names(const StFile *f, char *err) {
    char **names = xcalloc((size_t)f->n + 1, sizeof *names);   // a pointer per StTensor already held
    int rc = 0;
    for (int i = 0; i < f->n; i++) names[i] = f->t[i].name;
    qsort(names, f->n, sizeof *names, cmp_name);
    for (int i = 1; i < f->n && !rc; i++)
        if (!strcmp(names[i - 1], names[i])) rc = errf(err, "%s: tensor %s appears twice in the header", f->path, names[i]);
    free(names);
    return rc;
}

static int parse_header(StFile *f, const char *json, uint64_t data_len, char *err) {
    const char *stop = NULL;
    char why[64];
    cJSON *root = cJSON_ParseWithOpts(json, &stop, 0);
    if (!root) return errf(err, "%s: header is not a JSON object (%s)", f->path, json_why(json, stop, why, sizeof why));
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return errf(err, "%s: header is not a JSON object", f->path); }
    int n = cJSON_GetArraySize(root), rc = 0;
    f->t = calloc((size_t)n + 1, sizeof(StTensor));   // as many as the header lists
    uint64_t (*ranges)[2] = calloc((size_t)n + 1, sizeof *ranges);
    if (!f->t || !ranges) {   // st_open's st_close frees f->t
        free(ranges);
        cJSON_Delete(root);
        return errf(err, "%s: out of memory (%zu bytes) for %d header entries", f->path, ((size_t)n + 1) * (sizeof(StTensor) + sizeof *ranges), n);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (f->meta_keys) { rc = errf(err, "%s: __metadata__ appears twice", f->path); break; }
            if ((rc = parse_metadata(f, e, err))) break;
            continue;
        }
        if (!cJSON_IsObject(e)) { rc = errf(err, "%s: tensor %s: entry is not an object", f->path, e->string); break; }
        StTensor *t = &f->t[f->n];
        if ((rc = parse_entry(f, e, t, data_len, ranges[f->n], err))) break;
        t->name = xstrdup(e->string);
        t->data = f->map + 8 + (f->size - 8 - data_len) + ranges[f->n][0];
        f->n++;
    }
    if (!rc) {   // sorted by begin, each range must end before the next begins
        qsort(ranges, f->n, sizeof *ranges, cmp_range);
        uint64_t end = 0;
        for (int i = 0; i < f->n; i++) {
            if (ranges[i][1] == ranges[i][0]) continue;   // empty tensors occupy nothing
            if (ranges[i][0] < end) {
                rc = errf(err, "%s: tensor data ranges overlap at byte %llu", f->path, (unsigned long long)ranges[i][0]);
                break;
            }
            end = ranges[i][1];
        }
    }
    if (!rc) rc = check_names(f, err);
    free(ranges);
    cJSON_Delete(root);
    return rc;
}

int st_open(StFile *f, const char *path, char *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat s;
    if (fstat(fd, &s) != 0) { close(fd); return errf(err, "%s: cannot stat", path); }
    if (!S_ISREG(s.st_mode)) { close(fd); return errf(err, "%s: not a regular file", path); }
    f->size = (size_t)s.st_size;
    if (f->size < 8) { close(fd); return errf(err, "%s: %zu bytes, too short for a safetensors header", path, f->size); }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) { f->map = NULL; return errf(err, "%s: cannot map: %s", path, strerror(errno)); }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
    if (hlen > ST_MAX_HEADER || hlen > f->size - 8) {   // checked before the header is copied
        int rc = hlen > ST_MAX_HEADER
                     ? errf(err, "%s: header length %llu is over the format's limit of %u bytes (100 MiB)", path, (unsigned long long)hlen, ST_MAX_HEADER)
                     : errf(err, "%s: header length %llu exceeds the file (%zu bytes)", path, (unsigned long long)hlen, f->size);
        st_close(f);
        return rc;
    }
    char *json = malloc(hlen + 1);   // at most ST_MAX_HEADER + 1
    if (!json) { st_close(f); return errf(err, "%s: header: out of memory (%llu bytes)", path, (unsigned long long)hlen + 1); }
    memcpy(json, f->map + 8, hlen);
    json[hlen] = 0;
    int rc = parse_header(f, json, f->size - 8 - hlen, err);
    free(json);
    if (rc) st_close(f);
    return rc;
}

void st_close(StFile *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) { free(f->meta_keys[i]); free(f->meta_vals[i]); }
    free(f->t); free(f->meta_keys); free(f->meta_vals);
    if (f->map) munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);   // NaN stays NaN
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) u = sign | 0x7f800000 | (man << 13);           // inf / NaN
    else if (exp) u = sign | ((exp + 112) << 23) | (man << 13);     // normal
    else if (!man) u = sign;                                        // zero
    else {                                                          // subnormal: normalise
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int st_read_f32(const StFile *f, const StTensor *t, float *out, int64_t n, char *err) {
    if (n != t->numel) return errf(err, "%s: tensor %s: %lld elements, expected %lld", f->path, t->name, (long long)t->numel, (long long)n);
    switch (t->dtype) {
    case DT_F32: memcpy(out, t->data, (size_t)n * 4); break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(load_u16(t->data + 2 * i)); break;
    case DT_F16: for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(load_u16(t->data + 2 * i)); break;
    default: return errf(err, "%s: tensor %s: dtype %s, expected F32, BF16 or F16", f->path, t->name, t->dtype_name);
    }
    return 0;
}

int st_read_i32(const StFile *f, const StTensor *t, int32_t *out, int64_t n, char *err) {
    if (n != t->numel) return errf(err, "%s: tensor %s: %lld elements, expected %lld", f->path, t->name, (long long)t->numel, (long long)n);
    if (t->dtype == DT_I32) memcpy(out, t->data, (size_t)n * 4);
    else if (t->dtype == DT_I64) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, t->data + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX) return errf(err, "%s: tensor %s: value %lld does not fit in int32", f->path, t->name, (long long)v);
            out[i] = (int32_t)v;
        }
    } else return errf(err, "%s: tensor %s: dtype %s, expected I32 or I64", f->path, t->name, t->dtype_name);
    return 0;
}

static char *header_json(const StOut *t, int n, const char *const *meta, int n_meta, uint64_t *total) {
    cJSON *root = cJSON_CreateObject();
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", t[i].dtype == DT_I32 ? "I32" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += numel * 4;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    *total = off;
    return s;
}

int st_write(const char *path, const StOut *t, int n, const char *const *meta, int n_meta, char *err) {
    uint64_t total;
    char *json = header_json(t, n, meta, n_meta, &total);
    size_t jlen = strlen(json), padded = (jlen + 7) / 8 * 8;   // data starts 8-aligned
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    AtomicFile af;
    int rc = af_open(&af, path, err);
    if (!rc) rc = af_write(&af, len8, 8, err);
    if (!rc) rc = af_write(&af, json, jlen, err);
    if (!rc) rc = af_write(&af, "        ", padded - jlen, err);
    for (int i = 0; i < n && !rc; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (uint64_t)t[i].shape[d];
        rc = af_write(&af, t[i].data, numel * 4, err);   // both dtypes are 4 bytes, little-endian hosts
    }
    free(json);
    if (rc) { af_abort(&af); return -1; }
    return af_commit(&af, err);
}
