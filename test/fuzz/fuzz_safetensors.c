// test/fuzz/fuzz_safetensors.c: a .safetensors file: the 8-byte length, the
// JSON header, the data ranges, then the reads a loader does (every tensor
// converted, and a table of fixed names and shapes loaded from it).
#include "fuzz.h"
#include "model.h"
#include "safetensors.h"
#include <cjson/cJSON.h>

static int dtype_bytes(const char *name) {
    static const struct { const char *name; int bytes; } T[] = {
        {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"I64", 8}, {"F64", 8}, {"I8", 1},
        {"U8", 1}, {"I16", 2}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(name, T[i].name)) return T[i].bytes;
    return -1;
}

// What st_open promises of every tensor it accepts.
static void check_tensor(const StFile *f, const StTensor *t) {
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) overflow |= __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel);
    FUZZ_CHECK(!overflow && numel == (uint64_t)t->numel, "tensor %s: numel %lld is not the product of its shape", t->name, (long long)t->numel);
    int bytes = dtype_bytes(t->dtype_name);
    FUZZ_CHECK(bytes > 0, "tensor %s: dtype %s accepted", t->name, t->dtype_name);
    FUZZ_CHECK(t->data >= f->map + 8 && (uint64_t)(t->data - f->map) + numel * bytes <= f->size,
               "tensor %s: data outside the file", t->name);
    FUZZ_CHECK(st_find(f, t->name) == t, "tensor %s: another tensor has its name", t->name);
}

// The header's data_offsets, read here again: whole numbers, and the tensor's bytes.
static void check_offsets(const StFile *f, const uint8_t *data) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    char *json = fuzz_text(data + 8, hlen);
    cJSON *root = cJSON_Parse(json);
    for (int i = 0; i < f->n; i++) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, f->t[i].name), "data_offsets");
        const cJSON *b = cJSON_GetArrayItem(off, 0);
        FUZZ_CHECK(cJSON_IsNumber(b) && b->valuedouble == (double)(uint64_t)b->valuedouble &&
                   f->t[i].data == f->map + 8 + hlen + (uint64_t)b->valuedouble, "tensor %s: data_offsets misread", f->t[i].name);
    }
    cJSON_Delete(root);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[ERR_MAX];
    const char *path = fuzz_file("x.safetensors", data, size);
    StFile f;
    if (st_open(&f, path, err) == 0) {
        for (int i = 0; i < f.n; i++) {
            const StTensor *t = &f.t[i];
            check_tensor(&f, t);
            void *buf = malloc((size_t)t->numel * 4 + 4);
            if (st_read_f32(&f, t, buf, t->numel, err)) st_read_i32(&f, t, buf, t->numel, err);
            free(buf);
        }
        check_offsets(&f, data);
        st_meta(&f, "format");
        st_close(&f);
    }
    Table t = {0};   // the names and shapes test/fuzz/seeds.c writes
    table_add(&t, "a", 2, 3);
    table_add(&t, "b", 1, 4);
    if (table_alloc(&t)) abort();
    table_load(&t, (const char *const[]){path, NULL}, "", err);
    table_free(&t);
    return 0;
}
