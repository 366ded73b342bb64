// safetensors.h: read and write the Hugging Face safetensors format.
//
// Byte layout: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data region. Offsets are relative
// to the start of the data region. Every length and offset is validated on open.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum { DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64, DT_OTHER } Dtype;

typedef struct {
    char *name;
    Dtype dtype;
    char dtype_name[8];
    int ndim;
    int64_t shape[8];
    int64_t numel;
    const uint8_t *data;   // inside the mapped file
} StTensor;

typedef struct {
    char path[4096];
    uint8_t *map;
    size_t size;
    int n;
    StTensor *t;
    int n_meta;
    char **meta_keys, **meta_vals;
} StFile;

int st_open(StFile *f, const char *path, char *err);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key);   // NULL when absent
// Converts a float tensor (F32, F16 or BF16) to fp32; n must equal its numel.
int st_read_f32(const StFile *f, const StTensor *t, float *out, int64_t n, char *err);
int st_read_i32(const StFile *f, const StTensor *t, int32_t *out, int64_t n, char *err);

// A tensor to write (always little-endian F32 or I32).
typedef struct {
    const char *name;
    Dtype dtype;             // DT_F32 or DT_I32
    int ndim;
    int64_t shape[4];
    const void *data;
} StOut;

// Writes the tensors (and metadata, n_meta key/value pairs) atomically.
int st_write(const char *path, const StOut *t, int n, const char *const *meta, int n_meta, char *err);

float bf16_to_f32(uint16_t h);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);   // round to nearest even, as PyTorch does
