// gguf.h: read GGUF, llama.cpp's model file, and load a Llama model and its
// tokenizer from one.
//
// Byte layout (little-endian; versions 2 and 3):
//   "GGUF", u32 version, u64 n_tensors, u64 n_kv
//   n_kv times       str key, u32 value type, value
//   n_tensors times  str name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset
//   zero padding up to a multiple of `general.alignment` (default 32), then the
//   data region. Each tensor's offset is relative to the data region and a
//   multiple of the alignment.
// A str is a u64 byte count and the bytes (no NUL). An array value is a u32
// element type, a u64 count and the elements. ne[0] is the fastest-varying
// dimension, so a PyTorch [out, in] weight has ne = {in, out}.
//
// Every count, length and offset is checked against the file size before it is
// used or anything is allocated for it; a tensor's bytes must lie inside the data
// region and overlap no other tensor's.
#pragma once
#include "chat.h"
#include "model.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

enum {   // metadata value types
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_N_TYPES
};

enum {   // the ggml tensor types read here (the file may name others; they are refused on read)
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q8_0 = 8, GGML_BF16 = 30
};

typedef struct {
    char *key;
    uint32_t type;          // GGUF_*
    uint32_t elem;          // element type when type == GGUF_ARRAY
    uint64_t n;             // elements of an array (1 for a scalar)
    const uint8_t *data;    // the value (an array's first element) inside the mapped file
} GgufKV;

typedef struct {
    char *name;
    uint32_t type;          // ggml type
    int ndim;
    int64_t ne[4];
    int64_t numel;
    uint64_t offset, nbytes;   // inside the data region
    const uint8_t *data;
} GgufTensor;

typedef struct {
    char path[4096];
    uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t alignment, data_offset;
    int n_kv, n_tensors;
    GgufKV *kv;
    GgufTensor *t;
} GgufFile;

int gguf_open(GgufFile *f, const char *path, char *err);
void gguf_close(GgufFile *f);
const GgufKV *gguf_find_kv(const GgufFile *f, const char *key);          // NULL when absent
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);  // NULL when absent

// Typed metadata. A missing key is an error only when required (then *out is
// left as it was); a value of the wrong type always is. Errors name file and key.
int gguf_get_int(const GgufFile *f, const char *key, int64_t *out, int required, char *err);    // any integer type
int gguf_get_float(const GgufFile *f, const char *key, double *out, int required, char *err);   // F32, F64 or integer
int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len, int required, char *err);  // *s into the map; NULL when absent
int gguf_get_array(const GgufFile *f, const char *key, uint32_t elem, const GgufKV **kv, int required, char *err);
// Steps through the strings of a GGUF_STRING array (validated on open): *s, *len
// are the string at p, and the return value is the next one's position.
const uint8_t *gguf_next_str(const uint8_t *p, const char **s, uint64_t *len);

const char *gguf_type_name(uint32_t ggml_type);   // "Q4_1", ...; "?" when unknown
// Converts n values (a whole number of blocks) of a F32, F16, BF16, Q8_0, Q4_0 or
// Q4_1 tensor to fp32.
int gguf_dequantize(uint32_t ggml_type, const void *src, float *dst, int64_t n, char *err);
// A whole tensor as fp32; n must equal its element count.
int gguf_read_f32(const GgufFile *f, const GgufTensor *t, float *out, int64_t n, char *err);

// llama.cpp's converter reorders the rows of each head of q_proj and k_proj so
// that RoPE rotates adjacent pairs: Hugging Face row h*hd + i*hd/2 + j (i = 0, 1)
// is stored at row h*hd + 2j + i. This is the stored row of Hugging Face row r
// of a matrix of n_head heads and `rows` rows.
int gguf_unpermute_row(int r, int n_head, int rows);

// The Llama config from the `llama.*` and `tokenizer.ggml.*` keys and the tensor
// shapes; refuses other architectures and RoPE kinds, naming the key.
int gguf_config(const GgufFile *f, Config *c, char *err);
// A Llama model: config, then every tensor dequantised to fp32 under its
// Hugging Face name, q/k rows back in Hugging Face order.
int gguf_load_model(Model *m, const char *path, char *err);
// The parameter hf_name (a [out, in] weight, Hugging Face name) of the file f
// of config c in its own blocks, rows in Hugging Face order, into q (allocated
// here): Q8_0, Q4_0, Q4_1 and BF16 tensors. A tensor stored as F32 or F16
// leaves q empty (data NULL): it has no compact form. weights.c's model_compact.
struct QMat;
int gguf_read_blocks(const GgufFile *f, const Config *c, const char *hf_name, struct QMat *q, char *err);

// The tokenizer.json text (Hugging Face byte-level BPE) of the file's
// `tokenizer.ggml.*` keys (model "gpt2"), malloc'd; control tokens become
// special added tokens. NULL with err on a missing or malformed key.
char *gguf_tokenizer_json(const GgufFile *f, char *err);
Tokenizer *gguf_load_tokenizer(const char *path, char *err);
// Sets *fmt from `tokenizer.chat_template` when the file has a template this
// program knows; leaves it otherwise. -1 only when the file cannot be read.
int gguf_chat_format(const char *path, ChatFormat *fmt, char *err);

int gguf_is_path(const char *path);   // ends in ".gguf"
