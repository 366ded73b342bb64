// test/test_gguf.c: the GGUF reader against hand-computed blocks and files
// this test writes itself (a small GGUF writer below, for tests only), the
// loaded model against the same model in memory, bad files, the tokenizer
// from GGUF metadata, and the chat formats. With SMOLLM2_GGUF set, also the
// real SmolLM2-135M-Instruct against test/smollm2_expected.txt.
#include "test.h"
#include "chat.h"
#include "generate.h"
#include "gguf.h"
#include "weights.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- bytes

typedef struct { uint8_t *b; size_t n, cap; } Bytes;

static void put(Bytes *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
    }
    if (n) memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put_le(Bytes *o, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(o, b, (size_t)n);
}
static void put_gstr(Bytes *o, const char *s) { put_le(o, strlen(s), 8); put(o, s, strlen(s)); }
static void set_le(Bytes *o, size_t at, uint64_t v, int n) {
    for (int i = 0; i < n; i++) o->b[at + i] = (uint8_t)(v >> (8 * i));
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

// ---------------------------------------------------------------- a GGUF writer (tests only)

#define W_MAX_T 64
typedef struct { char name[96]; uint32_t type; int ndim; int64_t ne[4]; Bytes data; } WTensor;
typedef struct {
    Bytes kv;
    int n_kv;
    WTensor t[W_MAX_T];
    int n_t;
    uint32_t version, alignment;
    size_t off_pos[W_MAX_T];   // where each tensor's offset field landed in the image
    size_t header_end;         // end of the tensor infos
} W;

static void w_init(W *w) { memset(w, 0, sizeof *w); w->version = 3; w->alignment = 32; }
static void w_free(W *w) {
    free(w->kv.b);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].data.b);
}
static void w_key(W *w, const char *key, uint32_t type) { put_gstr(&w->kv, key); put_le(&w->kv, type, 4); w->n_kv++; }
static void w_u32(W *w, const char *key, uint32_t v) { w_key(w, key, GGUF_U32); put_le(&w->kv, v, 4); }
static void w_f32(W *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    w_key(w, key, GGUF_F32);
    put_le(&w->kv, u, 4);
}
static void w_str(W *w, const char *key, const char *v) { w_key(w, key, GGUF_STRING); put_gstr(&w->kv, v); }
static void w_arr_str(W *w, const char *key, const char *const *v, int n) {
    w_key(w, key, GGUF_ARRAY);
    put_le(&w->kv, GGUF_STRING, 4);
    put_le(&w->kv, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_gstr(&w->kv, v[i]);
}
static void w_arr_i32(W *w, const char *key, const int32_t *v, int n) {
    w_key(w, key, GGUF_ARRAY);
    put_le(&w->kv, GGUF_I32, 4);
    put_le(&w->kv, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_le(&w->kv, (uint32_t)v[i], 4);
}
// A tensor of ne {ne0, ne1} (ne1 = 0: one dimension) with its encoded bytes.
static void w_tensor(W *w, const char *name, uint32_t type, int64_t ne0, int64_t ne1, const void *data, size_t nbytes) {
    ck_assert_int_lt(w->n_t, W_MAX_T);
    WTensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->ndim = ne1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    put(&t->data, data, nbytes);
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// The file image: header, key/values, tensor infos, padding, data (each tensor
// aligned; the last one ends the file).
static Bytes w_image(W *w) {
    Bytes o = {0};
    put(&o, "GGUF", 4);
    put_le(&o, w->version, 4);
    put_le(&o, (uint64_t)w->n_t, 8);
    put_le(&o, (uint64_t)w->n_kv, 8);
    put(&o, w->kv.b, w->kv.n);
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        put_gstr(&o, w->t[i].name);
        put_le(&o, (uint64_t)w->t[i].ndim, 4);
        for (int d = 0; d < w->t[i].ndim; d++) put_le(&o, (uint64_t)w->t[i].ne[d], 8);
        put_le(&o, w->t[i].type, 4);
        w->off_pos[i] = o.n;
        put_le(&o, off, 8);
        off = align_up(off + w->t[i].data.n, w->alignment);
    }
    w->header_end = o.n;
    for (int i = 0; i < w->n_t; i++) {
        static const uint8_t zero[4096];
        put(&o, zero, align_up(o.n, w->alignment) - o.n);
        put(&o, w->t[i].data.b, w->t[i].data.n);
    }
    return o;
}

static void w_write(W *w, const char *path) {
    Bytes o = w_image(w);
    write_bytes(path, o.b, o.n);
    free(o.b);
}

// ---------------------------------------------------------------- quantisers (tests only)

static uint16_t f16_of(float f) {   // round to nearest even
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, man = u & 0x7fffff, h, rem, halfway;
    int e = (int)((u >> 23) & 0xff) - 127 + 15, shift;
    if (((u >> 23) & 0xff) == 0) return (uint16_t)sign;   // zero (and float subnormals)
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {                                          // a half subnormal
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        shift = 14 - e;
    } else {
        man |= (uint32_t)e << 23;                          // exponent rides along; carries round up into it
        shift = 13;
    }
    h = man >> shift;
    rem = man & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// Encodes one row of n values (n a multiple of 32 for the block types) into
// out, and overwrites x with exactly the values the encoding stands for.
static void encode_row(uint32_t type, float *x, int n, Bytes *out) {
    if (type == GGML_F32) { put(out, x, (size_t)n * 4); return; }
    if (type == GGML_F16 || type == GGML_BF16) {
        for (int i = 0; i < n; i++) {
            uint16_t h = type == GGML_F16 ? f16_of(x[i]) : f32_to_bf16(x[i]);
            put_le(out, h, 2);
            x[i] = type == GGML_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        return;
    }
    for (int b = 0; b < n; b += 32) {
        float *v = x + b, lo = v[0], hi = v[0], amax = 0, mx = 0;
        for (int j = 0; j < 32; j++) {
            lo = fminf(lo, v[j]);
            hi = fmaxf(hi, v[j]);
            if (fabsf(v[j]) > amax) { amax = fabsf(v[j]); mx = v[j]; }
        }
        uint8_t q[32];
        if (type == GGML_Q8_0) {
            uint16_t d = f16_of(amax / 127);
            float df = f16_to_f32(d), id = df ? 1 / df : 0;
            put_le(out, d, 2);
            for (int j = 0; j < 32; j++) {
                long r = lroundf(v[j] * id);
                q[j] = (uint8_t)(int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
                v[j] = df * (float)(int8_t)q[j];
            }
            put(out, q, 32);
        } else {   // Q4_0: x = d (q - 8), d from the value of largest magnitude; Q4_1: x = d q + m
            int one = type == GGML_Q4_1;
            uint16_t d = f16_of(one ? (hi - lo) / 15 : mx / -8), m = f16_of(lo);
            float df = f16_to_f32(d), mf = one ? f16_to_f32(m) : 0, id = df ? 1 / df : 0;
            put_le(out, d, 2);
            if (one) put_le(out, m, 2);
            for (int j = 0; j < 32; j++) {
                int k = one ? (int)((v[j] - mf) * id + 0.5f) : (int)(v[j] * id + 8.5f);
                q[j] = (uint8_t)(k < 0 ? 0 : k > 15 ? 15 : k);
                v[j] = one ? df * (float)q[j] + mf : df * (float)(q[j] - 8);
            }
            uint8_t packed[16];
            for (int j = 0; j < 16; j++) packed[j] = (uint8_t)(q[j] | q[j + 16] << 4);
            put(out, packed, 16);
        }
    }
}

// ---------------------------------------------------------------- dequantisation by hand

static void check_values(const float *got, const float *want, int n, const char *what) {
    for (int i = 0; i < n; i++) ck_assert_msg(got[i] == want[i], "%s[%d]: %.9g, expected %.9g", what, i, got[i], want[i]);
}

START_TEST(dequant_blocks) {
    char err[ERR_MAX];
    uint8_t b[2 * 34];
    float got[64], want[64];
    // Q8_0, two blocks: d = 0.5 (f16 0x3800), q = j - 16; then d = -1 (0xBC00), q = j + 1
    b[0] = 0x00; b[1] = 0x38;
    for (int j = 0; j < 32; j++) { b[2 + j] = (uint8_t)(int8_t)(j - 16); want[j] = 0.5f * (j - 16); }
    b[34] = 0x00; b[35] = 0xBC;
    for (int j = 0; j < 32; j++) { b[36 + j] = (uint8_t)(j + 1); want[32 + j] = -(float)(j + 1); }
    ck_assert_msg(gguf_dequantize(GGML_Q8_0, b, got, 64, err) == 0, "%s", err);
    check_values(got, want, 64, "Q8_0");
    // Q4_0: d = 0.25 (0x3400); byte j holds q = j (low nibble: value j) and 15 - j (high nibble: value j + 16)
    b[0] = 0x00; b[1] = 0x34;
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | (15 - j) << 4);
        want[j] = 0.25f * (j - 8);
        want[16 + j] = 0.25f * (7 - j);
    }
    ck_assert_msg(gguf_dequantize(GGML_Q4_0, b, got, 32, err) == 0, "%s", err);
    check_values(got, want, 32, "Q4_0");
    // Q4_1: d = 2 (0x4000), m = -1.5 (0xBE00); low nibble j, high nibble 3j mod 16
    b[0] = 0x00; b[1] = 0x40; b[2] = 0x00; b[3] = 0xBE;
    for (int j = 0; j < 16; j++) {
        b[4 + j] = (uint8_t)(j | ((3 * j) % 16) << 4);
        want[j] = 2.0f * j - 1.5f;
        want[16 + j] = 2.0f * ((3 * j) % 16) - 1.5f;
    }
    ck_assert_msg(gguf_dequantize(GGML_Q4_1, b, got, 32, err) == 0, "%s", err);
    check_values(got, want, 32, "Q4_1");
    // F16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 0x3555
    const uint8_t h[] = {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x55, 0x35};
    const float hw[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 0.333251953125f};
    ck_assert_msg(gguf_dequantize(GGML_F16, h, got, 5, err) == 0, "%s", err);
    check_values(got, hw, 5, "F16");
    // BF16: 1, -3, 3.140625
    const uint8_t bf[] = {0x80, 0x3F, 0x40, 0xC0, 0x49, 0x40};
    const float bw[] = {1.0f, -3.0f, 3.140625f};
    ck_assert_msg(gguf_dequantize(GGML_BF16, bf, got, 3, err) == 0, "%s", err);
    check_values(got, bw, 3, "BF16");
    const float f[] = {1.5f, -0.0f, 1e-30f};
    ck_assert_msg(gguf_dequantize(GGML_F32, f, got, 3, err) == 0, "%s", err);
    check_values(got, f, 3, "F32");
    // A partial block and a type this reader does not convert.
    ck_assert_int_ne(gguf_dequantize(GGML_Q8_0, b, got, 31, err), 0);
    ck_assert_int_ne(gguf_dequantize(12, b, got, 256, err), 0);
    ck_assert_msg(strstr(err, "Q4_K"), "%s", err);
}
END_TEST

// Each type through a file: one tensor of each, read back as fp32.
START_TEST(dequant_file) {
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/types.gguf", dir);
    const uint32_t types[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0, GGML_Q4_0, GGML_Q4_1};
    enum { NT = 6, COLS = 64, ROWS = 3 };
    float want[NT][ROWS * COLS];
    W w;
    w_init(&w);
    w_str(&w, "general.architecture", "llama");
    Rng r;
    rng_seed(&r, 5);
    for (int k = 0; k < NT; k++) {
        Bytes data = {0};
        for (int i = 0; i < ROWS * COLS; i++) want[k][i] = rng_normal(&r);
        for (int row = 0; row < ROWS; row++) encode_row(types[k], want[k] + row * COLS, COLS, &data);
        char name[32];
        snprintf(name, sizeof name, "t.%s", gguf_type_name(types[k]));
        w_tensor(&w, name, types[k], COLS, ROWS, data.b, data.n);
        free(data.b);
    }
    w_write(&w, path);
    GgufFile f;
    ck_assert_msg(gguf_open(&f, path, err) == 0, "%s", err);
    ck_assert_int_eq(f.n_tensors, NT);
    for (int k = 0; k < NT; k++) {
        const GgufTensor *t = &f.t[k];
        float got[ROWS * COLS];
        ck_assert_int_eq(t->type, types[k]);
        ck_assert_int_eq(t->ne[0], COLS);
        ck_assert_int_eq(t->ne[1], ROWS);
        ck_assert_int_eq(t->offset % 32, 0);
        ck_assert_msg(gguf_read_f32(&f, t, got, ROWS * COLS, err) == 0, "%s", err);
        check_values(got, want[k], ROWS * COLS, t->name);
    }
    float one;
    ck_assert_int_ne(gguf_read_f32(&f, &f.t[0], &one, 1, err), 0);   // wrong count
    ck_assert_msg(strstr(err, "t.F32"), "%s", err);
    gguf_close(&f);
    w_free(&w);
}
END_TEST

// ---------------------------------------------------------------- the q/k permutation

// llama.cpp's converter, as numpy writes it:
//   w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)
// Element [h][i][j] of the reshaped input lands at [h][j][i] of the output.
static void llamacpp_permute(const float *in, float *out, int n_head, int rows, int cols) {
    int half = rows / n_head / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < half; j++) {
                const float *src = in + ((size_t)(h * 2 + i) * half + j) * cols;       // index [h][i][j]
                float *dst = out + ((size_t)(h * half + j) * 2 + i) * cols;             // index [h][j][i]
                memcpy(dst, src, (size_t)cols * sizeof *dst);
            }
}

START_TEST(unpermute_round_trip) {
    const int heads[] = {1, 2, 4, 9, 3}, hds[] = {2, 8, 16, 64, 64}, cols = 5;
    for (int c = 0; c < 5; c++) {
        int rows = heads[c] * hds[c];
        float *hf = malloc((size_t)rows * cols * sizeof *hf), *file = malloc((size_t)rows * cols * sizeof *file);
        for (int i = 0; i < rows * cols; i++) hf[i] = (float)i;
        llamacpp_permute(hf, file, heads[c], rows, cols);
        for (int r = 0; r < rows; r++) {
            int s = gguf_unpermute_row(r, heads[c], rows);
            ck_assert_int_ge(s, 0);
            ck_assert_int_lt(s, rows);
            ck_assert_msg(!memcmp(file + (size_t)s * cols, hf + (size_t)r * cols, cols * sizeof *hf),
                          "heads %d, hd %d: row %d comes back from stored row %d wrongly", heads[c], hds[c], r, s);
        }
        free(hf);
        free(file);
    }
}
END_TEST

// ---------------------------------------------------------------- a tiny model as GGUF

// tiny_config's 4 heads over 2 KV heads, wider: with hd = 16 the 8 llama3
// frequencies span all three regimes too.
static Config gguf_config_tiny(int tied, int llama3) {
    Config c = tiny_config(tied, 2, llama3);
    c.dim = 64; c.hidden = 96; c.head_dim = 16;
    c.vocab = 40; c.max_pos = 256;
    return c;
}

// llama.cpp's rope_freqs.weight for Llama-3 scaling, as its converter computes it.
static void llama3_rope_factors(const Config *c, float *out) {
    for (int i = 0; i < c->head_dim / 2; i++) {
        double freq = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim), wavelen = 2 * M_PI / freq;
        double lo_wl = c->rope_orig_max_pos / c->rope_low_freq, hi_wl = c->rope_orig_max_pos / c->rope_high_freq;
        if (wavelen < hi_wl) out[i] = 1.0f;
        else if (wavelen > lo_wl) out[i] = c->rope_factor;
        else {
            double smooth = (c->rope_orig_max_pos / wavelen - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
            out[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
        }
    }
}

static const char *const LAYER_GGUF[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
static const char *const LAYER_HF[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
// Types per layer: every supported type lands on q and k somewhere.
static const uint32_t LAYER_TYPES[2][9] = {
    {GGML_F32, GGML_F16, GGML_Q4_0, GGML_BF16, GGML_Q8_0, GGML_F16, GGML_Q4_1, GGML_F32, GGML_Q4_0},
    {GGML_F32, GGML_Q8_0, GGML_Q4_1, GGML_Q4_0, GGML_F16, GGML_F32, GGML_BF16, GGML_Q8_0, GGML_F32},
};

// Puts one model tensor into the writer under its llama.cpp name, encoded as
// `type` (m's values become exactly what the encoding holds) with q/k rows
// permuted by n_head as llama.cpp's converter does.
static void add_model_tensor(W *w, Model *m, const char *hf, const char *gguf_name, uint32_t type, int n_head) {
    Tensor *x = table_get(&m->params, hf);
    ck_assert_msg(x != NULL, "%s", hf);
    Bytes data = {0};
    float *rows = malloc(x->size * sizeof *rows);
    for (int r = 0; r < x->rows; r++) {   // encode in Hugging Face order ...
        Bytes row = {0};
        encode_row(type, x->data + (size_t)r * x->cols, x->cols, &row);
        free(row.b);
    }
    if (n_head) llamacpp_permute(x->data, rows, n_head, x->rows, x->cols);   // ... store in llama.cpp's
    else memcpy(rows, x->data, x->size * sizeof *rows);
    for (int r = 0; r < x->rows; r++) {
        float tmp[256];
        memcpy(tmp, rows + (size_t)r * x->cols, (size_t)x->cols * sizeof *tmp);
        encode_row(type, tmp, x->cols, &data);   // already representable: encodes to the same values
    }
    w_tensor(w, gguf_name, type, x->cols, strstr(hf, "norm") ? 0 : x->rows, data.b, data.n);   // norms: one dimension
    free(data.b);
    free(rows);
}

// The metadata and tensors of model m, llama.cpp style; omit names one tensor to leave out.
static void model_writer(W *w, Model *m, const char *arch, const char *omit) {
    const Config *c = &m->c;
    w_init(w);
    w_str(w, "general.architecture", arch);
    w_str(w, "general.name", "tiny test model");
    w_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    w_u32(w, "llama.context_length", (uint32_t)c->max_pos);
    w_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    w_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden);
    w_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    w_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    w_f32(w, "llama.rope.freq_base", c->rope_theta);
    w_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    w_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    w_u32(w, "llama.vocab_size", (uint32_t)c->vocab);
    w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos);
    w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos[0]);
    char hf[160], gg[96];
    if (!omit || strcmp(omit, "token_embd.weight")) add_model_tensor(w, m, "model.embed_tokens.weight", "token_embd.weight", GGML_Q8_0, 0);
    if (c->rope_llama3) {
        float fr[64];
        llama3_rope_factors(c, fr);
        w_tensor(w, "rope_freqs.weight", GGML_F32, c->head_dim / 2, 0, fr, (size_t)c->head_dim / 2 * 4);
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < 9; k++) {
            snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, LAYER_HF[k]);
            snprintf(gg, sizeof gg, "blk.%d.%s.weight", l, LAYER_GGUF[k]);
            if (omit && !strcmp(omit, gg)) continue;
            int perm = k == 1 ? c->n_heads : k == 2 ? c->n_kv_heads : 0;
            add_model_tensor(w, m, hf, gg, LAYER_TYPES[l % 2][k], perm);
        }
    add_model_tensor(w, m, "model.norm.weight", "output_norm.weight", GGML_F32, 0);
    if (!c->tied) add_model_tensor(w, m, "lm_head.weight", "output.weight", GGML_Q4_1, 0);
}

static void make_model(Model *m, const Config *c) {
    char err[ERR_MAX];
    ck_assert_msg(model_init(m, c, err) == 0, "%s", err);
    model_random(m, 11, 0.2f);
}

static void assert_same_logits(Model *a, Model *b) {
    char err[ERR_MAX];
    enum { B = 2, T = 9 };
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 13 + 5) % a->c.vocab;
    Acts x, y;
    ck_assert_msg(acts_init(&x, a, B, T, err) == 0, "%s", err);
    ck_assert_msg(acts_init(&y, b, B, T, err) == 0, "%s", err);
    model_forward(a, &x, ids, NULL);
    model_forward(b, &y, ids, NULL);
    size_t n = (size_t)B * T * a->c.vocab;
    for (size_t i = 0; i < n; i++) ck_assert_msg(x.logits[i] == y.logits[i], "logit %zu: %.9g from GGUF, %.9g in memory", i, y.logits[i], x.logits[i]);
    acts_free(&x);
    acts_free(&y);
}

// The KV cache reading the file's own blocks (model_compact native: Q8_0,
// Q4_0, Q4_1 and BF16 tensors, q/k rows un-permuted; F32 and F16 ones stay
// fp32) against the fp32 weights dequantised from the same file. With fp32
// activations the same values summed in another order: within 1e-5 of the
// largest logit. With q8 activations (each x rounded to 1/254 of
// its block's largest; --weights native+q8) within 3e-2 relative (measured 1.7-1.8e-2 on these random tiny models).
static void assert_native_logits(Model *m, const char *path) {
    char err[ERR_MAX];
    const int V = m->c.vocab, P = 6, G = 4;
    int prompt[6] = {1, 7, 3, 9, 4, 11};
    const int *prompts[1] = {prompt}, lens[1] = {P};
    float *ref = malloc((size_t)(G + 1) * V * sizeof(float)), *got = malloc((size_t)V * sizeof(float)), worst[3] = {0}, top = 0;
    const float tol[3] = {0, 1e-5f, 3e-2f};
    char names[3][64];
    for (int k = 0; k < 3; k++) {   // fp32 weights; native blocks with fp32 activations; with q8 activations
        const int kind = weights_parse(k == 0 ? "fp32" : k == 1 ? "native" : "native+q8", err);
        ck_assert_msg(model_compact(m, kind, path, err) == 0, "%s", err);
        snprintf(names[k], sizeof names[k], "%s", model_weights_name(m));
        KVCache kv;
        ck_assert_int_eq(kv_init(&kv, m, 1, P + G, err), 0);
        for (int s = 0; s <= G; s++) {
            float *out = k ? got : ref + (size_t)s * V;
            int seq = 0, tok = (5 * s + 2) % V;
            if (!s) ck_assert_msg(kv_prefill(m, &kv, 1, prompts, lens, out, err) == 0, "%s", err);
            else ck_assert_msg(kv_step(m, &kv, 1, &seq, &tok, out, err) == 0, "%s", err);
            for (int v = 0; k && v < V; v++) {
                worst[k] = fmaxf(worst[k], fabsf(out[v] - ref[(size_t)s * V + v]));
                top = fmaxf(top, fabsf(ref[(size_t)s * V + v]));
            }
        }
        kv_free(&kv);
    }
    ck_assert_ptr_nonnull(m->q_lm_head);   // the Q8_0 embedding (tied) or the Q4_1 output
    ck_assert_int_lt(weights_parse("bf16+q8", err), 0);   // bf16 has no 8-bit kernel
    for (int k = 1; k < 3; k++) {
        printf("GGUF native blocks (%s), %s activations: max |logit - fp32 logit| %.2e of max |logit| %.2f (%.1e relative, tolerance %.0e)\n",
               names[k], k == 1 ? "fp32" : "q8", worst[k], top, worst[k] / top, tol[k]);
        ck_assert_msg(worst[k] <= tol[k] * top, "native logits, %s activations: %g from fp32 (max %g)", k == 1 ? "fp32" : "q8", worst[k], top);
    }
    model_compact_free(m);
    free(ref);
    free(got);
}

static void round_trip(int tied, int llama3) {
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    Config c = gguf_config_tiny(tied, llama3);
    Model mem, disk;
    make_model(&mem, &c);
    W w;
    model_writer(&w, &mem, "llama", NULL);
    if (llama3) w_u32(&w, "tokenizer.ggml.eot_token_id", 3);   // Llama-3.x: end of turn, a second stop id
    w_write(&w, path);
    w_free(&w);
    ck_assert_msg(model_load(&disk, path, err) == 0, "%s", err);   // through model_load's .gguf branch
    const Config *d = &disk.c;
    ck_assert_int_eq(d->dim, c.dim);
    ck_assert_int_eq(d->hidden, c.hidden);
    ck_assert_int_eq(d->n_layers, c.n_layers);
    ck_assert_int_eq(d->n_heads, c.n_heads);
    ck_assert_int_eq(d->n_kv_heads, c.n_kv_heads);
    ck_assert_int_eq(d->head_dim, c.head_dim);
    ck_assert_int_eq(d->vocab, c.vocab);
    ck_assert_int_eq(d->tied, tied);
    ck_assert_int_eq(d->max_pos, c.max_pos);
    ck_assert_int_eq(d->bos, 1);
    ck_assert_int_eq(d->n_eos, llama3 ? 2 : 1);
    ck_assert_int_eq(d->eos[0], 2);
    if (llama3) ck_assert_int_eq(d->eos[1], 3);
    ck_assert(d->norm_eps == c.norm_eps && d->rope_theta == c.rope_theta);
    ck_assert_int_eq(d->rope_llama3, llama3);
    if (llama3)
        ck_assert(d->rope_factor == 8.0f && d->rope_low_freq == 1.0f && d->rope_high_freq == 4.0f && d->rope_orig_max_pos == 8192);
    ck_assert_int_eq(disk.params.n, mem.params.n);
    for (int i = 0; i < mem.params.n; i++) {
        const Tensor *x = &mem.params.t[i], *y = table_get(&disk.params, x->name);
        ck_assert_msg(y && y->rows == x->rows && y->cols == x->cols, "%s", x->name);
        for (size_t j = 0; j < x->size; j++)
            ck_assert_msg(x->data[j] == y->data[j], "%s[%zu]: %.9g from GGUF, %.9g in memory", x->name, j, y->data[j], x->data[j]);
    }
    assert_same_logits(&mem, &disk);
    assert_native_logits(&disk, path);
    model_free(&mem);
    model_free(&disk);
}

START_TEST(model_round_trip_untied) { round_trip(0, 0); }
END_TEST
START_TEST(model_round_trip_tied_llama3) { round_trip(1, 1); }
END_TEST

// Without the un-permutation the loaded q/k would differ: the test above
// would catch a loader that skipped it. Here the other way: a file whose q/k
// were NOT permuted loads to a different model.
START_TEST(model_unpermuted_file_differs) {
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/plain.gguf", dir);
    Config c = gguf_config_tiny(1, 0);
    Model mem, disk;
    make_model(&mem, &c);
    W w;
    w_init(&w);
    model_writer(&w, &mem, "llama", NULL);
    // Replace blk.0.attn_q.weight by the Hugging Face row order.
    for (int i = 0; i < w.n_t; i++)
        if (!strcmp(w.t[i].name, "blk.0.attn_q.weight")) {
            Tensor *x = table_get(&mem.params, "model.layers.0.self_attn.q_proj.weight");
            w.t[i].data.n = 0;
            for (int r = 0; r < x->rows; r++) encode_row(GGML_F16, x->data + (size_t)r * x->cols, x->cols, &w.t[i].data);
        }
    w_write(&w, path);
    w_free(&w);
    ck_assert_msg(gguf_load_model(&disk, path, err) == 0, "%s", err);
    const Tensor *a = table_get(&mem.params, "model.layers.0.self_attn.q_proj.weight"), *b = table_get(&disk.params, a->name);
    ck_assert(memcmp(a->data, b->data, a->size * sizeof(float)) != 0);
    model_free(&mem);
    model_free(&disk);
}
END_TEST

// ---------------------------------------------------------------- bad files

// A valid tiny-model image, and what opening variants of it says.
typedef struct { W w; Bytes img; Model m; char dir[256], path[300]; } Bad;

static void bad_init(Bad *b, const char *arch, const char *omit) {
    Config c = gguf_config_tiny(0, 0);
    c.n_layers = 1;
    make_model(&b->m, &c);
    model_writer(&b->w, &b->m, arch, omit);
    b->img = w_image(&b->w);
    temp_dir(b->dir, sizeof b->dir, "gguf-bad");
    snprintf(b->path, sizeof b->path, "%s/bad.gguf", b->dir);
}
static void bad_free(Bad *b) { w_free(&b->w); free(b->img.b); model_free(&b->m); }

// Loads the first n bytes of img as a model; returns the message (which must name the file).
static const char *load_err(Bad *b, const Bytes *img, size_t n) {
    static char err[ERR_MAX];
    Model m;
    write_bytes(b->path, img->b, n);
    err[0] = 0;
    int rc = gguf_load_model(&m, b->path, err);
    if (rc == 0) { model_free(&m); return NULL; }
    ck_assert_msg(strstr(err, b->path), "message does not name the file: %s", err);
    return err;
}

// load_err of the valid image with the n-byte little-endian field at `at` set to v.
static const char *load_patched(Bad *b, size_t at, uint64_t v, int n) {
    Bytes img = {0};
    put(&img, b->img.b, b->img.n);
    set_le(&img, at, v, n);
    const char *err = load_err(b, &img, img.n);
    free(img.b);
    return err;
}

static void expect(const char *err, const char *a, const char *bb) {
    ck_assert_msg(err != NULL, "loaded, expected an error with \"%s\"", a);
    ck_assert_msg(strstr(err, a) && (!bb || strstr(err, bb)), "expected \"%s\"%s%s in: %s", a, bb ? " and " : "", bb ? bb : "", err);
}

START_TEST(bad_truncated) {
    Bad b;
    bad_init(&b, "llama", NULL);
    ck_assert_ptr_null(load_err(&b, &b.img, b.img.n));   // whole: loads
    // Every cut inside the header and the first tensor, then some in the data.
    for (size_t n = 0; n < b.img.n; n += n < b.w.header_end + 200 ? 1 : 997)
        ck_assert_msg(load_err(&b, &b.img, n) != NULL, "a file cut to %zu of %zu bytes loaded", n, b.img.n);
    expect(load_err(&b, &b.img, b.w.header_end - 3), "truncated", NULL);
    expect(load_err(&b, &b.img, b.img.n - 1), "output.weight", "outside");   // the last tensor ends the file
    bad_free(&b);
}
END_TEST

START_TEST(bad_offsets) {
    Bad b;
    bad_init(&b, "llama", NULL);
    size_t at = b.w.off_pos[0];   // token_embd.weight's offset field
    const uint64_t lies[] = {1ull << 62, UINT64_MAX & ~31ull, align_up(b.img.n, 32)};
    for (int i = 0; i < 3; i++) expect(load_patched(&b, at, lies[i], 8), "token_embd.weight", "outside");
    expect(load_patched(&b, at, 32 + 1, 8), "token_embd.weight", "alignment");
    expect(load_patched(&b, b.w.off_pos[1], 0, 8), "overlap", NULL);   // the second tensor on top of the first
    // a count of dimensions and a size that cannot be
    expect(load_patched(&b, at - 4 - 2 * 8 - 4, 9, 4), "token_embd.weight", "dimensions");
    expect(load_patched(&b, at - 4 - 8, 1ull << 50, 8), "token_embd.weight", NULL);
    bad_free(&b);
}
END_TEST

START_TEST(bad_counts) {
    Bad b;
    bad_init(&b, "llama", NULL);
    struct { size_t at; uint64_t v; int n; const char *msg; } cases[] = {
        {8, 1ull << 40, 8, "tensors"},               // tensor count
        {8, UINT64_MAX, 8, "tensors"},
        {16, 1ull << 40, 8, "metadata keys"},         // key/value count
        {24, 1ull << 50, 8, "length"},                // first key's length
        {0, 0x46554748, 4, "not a GGUF file"},        // magic "HGUF"
        {4, 1, 4, "version 1"},
        {4, 0x03000000, 4, "big-endian"},
        {24 + 8 + strlen("general.architecture"), 99, 4, "unknown value type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect(load_patched(&b, cases[i].at, cases[i].v, cases[i].n), cases[i].msg, NULL);
    // An array that claims more elements than the file holds, and an array of arrays.
    W w;
    w_init(&w);
    w_key(&w, "tokenizer.ggml.tokens", GGUF_ARRAY);
    put_le(&w.kv, GGUF_STRING, 4);
    put_le(&w.kv, 1ull << 60, 8);
    Bytes o = w_image(&w);
    expect(load_err(&b, &o, o.n), "tokenizer.ggml.tokens", "do not fit");
    free(o.b);
    w_free(&w);
    w_init(&w);
    w_key(&w, "nested", GGUF_ARRAY);
    put_le(&w.kv, GGUF_ARRAY, 4);
    put_le(&w.kv, 1, 8);
    o = w_image(&w);
    expect(load_err(&b, &o, o.n), "nested", "arrays of arrays");
    free(o.b);
    w_free(&w);
    bad_free(&b);
}
END_TEST

START_TEST(bad_model) {
    Bad b;
    bad_init(&b, "qwen2", NULL);   // another architecture
    expect(load_err(&b, &b.img, b.img.n), "general.architecture", "qwen2");
    bad_free(&b);
    bad_init(&b, "llama", "blk.0.ffn_down.weight");
    expect(load_err(&b, &b.img, b.img.n), "blk.0.ffn_down.weight", "missing");
    bad_free(&b);
    // Types: a known one this reader does not convert, and an unknown id.
    bad_init(&b, "llama", NULL);
    Bytes img = {0};
    put(&img, b.img.b, b.img.n);
    int up = -1;
    for (int i = 0; i < b.w.n_t; i++) if (!strcmp(b.w.t[i].name, "blk.0.ffn_up.weight")) up = i;
    ck_assert_int_ge(up, 0);
    set_le(&img, b.w.off_pos[up] - 4, 6, 4);   // Q5_0: 22-byte blocks, fewer bytes than the F32 data: still inside
    expect(load_err(&b, &img, img.n), "blk.0.ffn_up.weight", "Q5_0 is not supported");
    set_le(&img, b.w.off_pos[up] - 4, 99, 4);
    expect(load_err(&b, &img, img.n), "blk.0.ffn_up.weight", "unknown ggml type 99");
    free(img.b);
    bad_free(&b);
    // Metadata of the wrong kind, a wrong shape, a tensor of another model, a duplicate.
    Config c = gguf_config_tiny(0, 0);
    c.n_layers = 1;
    Model m;
    make_model(&m, &c);
    W w;
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "gguf-bad");
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    Model out;
    model_writer(&w, &m, "llama", NULL);
    w_str(&w, "llama.block_count", "one");   // duplicate key, and a string
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "llama.block_count") && strstr(err, "twice"), "%s", err);
    w_free(&w);
    model_writer(&w, &m, "llama", NULL);
    float bias[64] = {0};
    w_tensor(&w, "blk.0.attn_q.bias", GGML_F32, 64, 0, bias, sizeof bias);
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "blk.0.attn_q.bias") && strstr(err, "not supported"), "%s", err);
    w_free(&w);
    model_writer(&w, &m, "llama", NULL);
    w.t[0].ne[1] = 20;   // token_embd with half the rows (and llama.vocab_size then disagrees)
    w.t[0].data.n /= 2;
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "token_embd.weight") && strstr(err, "llama.vocab_size"), "%s", err);
    w_free(&w);
    model_writer(&w, &m, "llama", NULL);
    for (int i = 0; i < w.n_t; i++)
        if (!strcmp(w.t[i].name, "blk.0.attn_k.weight")) { w.t[i].ne[1] = 16; w.t[i].data.n /= 2; }
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "blk.0.attn_k.weight") && strstr(err, "expected {64, 32}"), "%s", err);
    w_free(&w);
    // Llama-3 RoPE factors that are not Llama-3's.
    model_writer(&w, &m, "llama", NULL);
    float fr[8];
    for (int i = 0; i < 8; i++) fr[i] = 2.0f;
    w_tensor(&w, "rope_freqs.weight", GGML_F32, 8, 0, fr, sizeof fr);
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "rope_freqs.weight"), "%s", err);
    w_free(&w);
    // Scaling kinds the config cannot hold.
    model_writer(&w, &m, "llama", NULL);
    w_str(&w, "llama.rope.scaling.type", "yarn");
    w_write(&w, path);
    ck_assert_int_ne(gguf_load_model(&out, path, err), 0);
    ck_assert_msg(strstr(err, "llama.rope.scaling.type") && strstr(err, "yarn"), "%s", err);
    w_free(&w);
    model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- tokenizer

// GPT-2's byte-level spelling of one byte, as UTF-8.
static void byte_level(unsigned char b, char *out) {
    unsigned next = 256, cp = 0;
    for (unsigned c = 0; c < 256; c++) {
        int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        if (c == b) { cp = printable ? c : next; break; }
        if (!printable) next++;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

enum { N_TOK = 256 + 6 + 3 };
static char tok_text[N_TOK][16];

// 256 byte tokens, merges he, ll, hell, hello, "Ġw", 12, and three control
// tokens (ids 262..264), as metadata added to w.
static void tokenizer_keys(W *w, const char *model, const char *pre, int bad_types) {
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "Ġ w", "1 2"};
    static const char *const merged[] = {"he", "ll", "hell", "hello", "Ġw", "12"};
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const char *toks[N_TOK];
    int32_t types[N_TOK];
    int n = 0;
    for (int b = 0; b < 256; b++, n++) byte_level((unsigned char)b, tok_text[n]);
    for (int i = 0; i < 6; i++, n++) snprintf(tok_text[n], sizeof tok_text[n], "%s", merged[i]);
    for (int i = 0; i < 3; i++, n++) snprintf(tok_text[n], sizeof tok_text[n], "%s", specials[i]);
    for (int i = 0; i < N_TOK; i++) { toks[i] = tok_text[i]; types[i] = i < 262 ? 1 : 3; }
    w_str(w, "tokenizer.ggml.model", model);
    if (pre) w_str(w, "tokenizer.ggml.pre", pre);
    w_arr_str(w, "tokenizer.ggml.tokens", toks, N_TOK);
    w_arr_i32(w, "tokenizer.ggml.token_type", types, bad_types ? N_TOK - 1 : N_TOK);
    w_arr_str(w, "tokenizer.ggml.merges", merges, 6);
}

// A file of the tokenizer metadata alone.
static void tokenizer_writer(W *w, const char *model, const char *pre, int bad_types) {
    w_init(w);
    tokenizer_keys(w, model, pre, bad_types);
}

static Tokenizer *tokenizer_of(W *w, char *err) {
    char dir[256], path[300];
    temp_dir(dir, sizeof dir, "gguf-tok");
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    w_write(w, path);
    w_free(w);
    return gguf_load_tokenizer(path, err);
}

static void expect_ids(const Tokenizer *t, const char *text, const int *want, int n) {
    char err[ERR_MAX];
    int *ids, got = tok_encode(t, text, strlen(text), 1, &ids, err);
    ck_assert_msg(got == n, "\"%s\": %d ids, expected %d", text, got, n);
    for (int i = 0; i < n; i++) ck_assert_msg(ids[i] == want[i], "\"%s\": id %d is %d, expected %d", text, i, ids[i], want[i]);
    size_t len;
    char *back = tok_decode(t, ids, n, &len, err);
    ck_assert_str_eq(back, text);
    free(back);
    free(ids);
}

START_TEST(tokenizer_from_gguf) {
    char err[ERR_MAX];
    W w;
    // smollm: each digit alone, then GPT-2's regex; control tokens are special.
    tokenizer_writer(&w, "gpt2", "smollm", 0);
    Tokenizer *t = tokenizer_of(&w, err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_int_eq(tok_vocab_size(t), N_TOK);
    ck_assert_int_eq(tok_find(t, "<|im_end|>"), 264);
    const int want1[] = {259, ' ', '1', '2', '3', 264, 260, 'o', 'r', 'l', 'd'};   // hello ␠ 1 2 3 <|im_end|> Ġw o r l d
    expect_ids(t, "hello 123<|im_end|> world", want1, 11);
    ck_assert_int_eq(chat_detect(t), CHAT_CHATML);
    tok_free(t);
    // llama-bpe: digits in threes, so the merge 1 2 applies.
    tokenizer_writer(&w, "gpt2", "llama-bpe", 0);
    t = tokenizer_of(&w, err);
    ck_assert_msg(t != NULL, "%s", err);
    const int want2[] = {259, ' ', 261, '3'};
    expect_ids(t, "hello 123", want2, 4);
    tok_free(t);
    // Refused: another tokenizer kind, an unknown pre-tokenizer, a short token_type.
    tokenizer_writer(&w, "llama", "smollm", 0);
    ck_assert_ptr_null(tokenizer_of(&w, err));
    ck_assert_msg(strstr(err, "tokenizer.ggml.model") && strstr(err, "\"llama\""), "%s", err);
    tokenizer_writer(&w, "gpt2", "qwen9", 0);
    ck_assert_ptr_null(tokenizer_of(&w, err));
    ck_assert_msg(strstr(err, "tokenizer.ggml.pre") && strstr(err, "qwen9"), "%s", err);
    tokenizer_writer(&w, "gpt2", "smollm", 1);
    ck_assert_ptr_null(tokenizer_of(&w, err));
    ck_assert_msg(strstr(err, "tokenizer.ggml.token_type"), "%s", err);
    w_init(&w);
    w_str(&w, "tokenizer.ggml.model", "gpt2");
    ck_assert_ptr_null(tokenizer_of(&w, err));
    ck_assert_msg(strstr(err, "tokenizer.ggml.tokens") && strstr(err, "missing"), "%s", err);
}
END_TEST

START_TEST(chat_template_from_gguf) {
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "gguf-chat");
    snprintf(path, sizeof path, "%s/c.gguf", dir);
    const char *tmpl[] = {
        "{{'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>'}}{{'<|im_start|>' + m['role']}}<|im_end|>",
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}",
        "{{'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}<|eot_id|>",
        "{{ something else }}"};
    const ChatFormat want[] = {CHAT_SMOLLM2, CHAT_CHATML, CHAT_LLAMA3, CHAT_CHATML};
    for (int i = 0; i < 4; i++) {
        W w;
        w_init(&w);
        w_str(&w, "tokenizer.chat_template", tmpl[i]);
        w_write(&w, path);
        w_free(&w);
        ChatFormat f = CHAT_CHATML;   // what chat_detect gave; an unknown template leaves it
        ck_assert_msg(gguf_chat_format(path, &f, err) == 0, "%s", err);
        ck_assert_int_eq(f, want[i]);
    }
}
END_TEST

// A tiny ChatML model and its tokenizer in one GGUF, as SmolLM2's file holds
// them (bos <|im_start|>, eos <|im_end|>, a ChatML template). test/cli.sh runs
// `seal fewshot` on it: with SEAL_TINY_GGUF set the file goes there. Here it
// loads back as a ChatML model that stops at <|im_end|>.
START_TEST(tiny_chatml_model) {
    char dir[256], path[300], err[ERR_MAX];
    const char *to = getenv("SEAL_TINY_GGUF");
    if (to && *to) snprintf(path, sizeof path, "%s", to);
    else {
        temp_dir(dir, sizeof dir, "gguf-chatml");
        snprintf(path, sizeof path, "%s/tiny-chatml.gguf", dir);
    }
    Config c = gguf_config_tiny(1, 0);
    c.vocab = N_TOK;
    c.max_pos = 2048;   // room for the ARC self-edit prompt in byte tokens
    c.bos = 263;
    c.eos[0] = 264;
    Model mem, disk;
    make_model(&mem, &c);
    W w;
    model_writer(&w, &mem, "llama", NULL);
    tokenizer_keys(&w, "gpt2", "smollm", 0);
    w_str(&w, "tokenizer.chat_template",
          "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}");
    w_write(&w, path);
    w_free(&w);
    model_free(&mem);
    ck_assert_msg(model_load(&disk, path, err) == 0, "%s", err);
    ck_assert_int_eq(disk.c.vocab, N_TOK);
    ck_assert_int_eq(disk.c.n_eos, 1);
    ck_assert_int_eq(disk.c.eos[0], 264);
    Tokenizer *t = gguf_load_tokenizer(path, err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_int_eq(tok_find(t, chat_eot(CHAT_CHATML)), 264);
    ChatFormat f = chat_detect(t);
    ck_assert_msg(gguf_chat_format(path, &f, err) == 0, "%s", err);
    ck_assert_int_eq(f, CHAT_CHATML);
    tok_free(t);
    model_free(&disk);
}
END_TEST

// ---------------------------------------------------------------- chat formats

START_TEST(chat_formats) {
    const ChatMsg conv[] = {{"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello."}, {"user", "2+2?"}};
    char *s = chat_render(CHAT_CHATML, conv, 4, 1);
    ck_assert_str_eq(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = chat_render(CHAT_SMOLLM2, conv, 4, 0);   // a system message of its own: no default
    ck_assert_str_eq(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n");
    free(s);
    s = chat_render(CHAT_SMOLLM2, conv + 1, 1, 1);
    ck_assert_str_eq(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                        "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = chat_render(CHAT_CHATML, NULL, 0, 1);
    ck_assert_str_eq(s, "<|im_start|>assistant\n");
    free(s);
    char *a = chat_render(CHAT_LLAMA3, conv, 4, 1), *b = chat_render_llama3(conv, 4, 1);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    ck_assert_str_eq(chat_eot(CHAT_LLAMA3), "<|eot_id|>");
    ck_assert_str_eq(chat_eot(CHAT_CHATML), "<|im_end|>");
    ck_assert_str_eq(chat_eot(CHAT_SMOLLM2), "<|im_end|>");
    char err[ERR_MAX];
    ChatFormat f;
    for (int i = 0; i < CHAT_N_FORMATS; i++) {
        ck_assert_int_eq(chat_format_parse(chat_format_name((ChatFormat)i), &f, err), 0);
        ck_assert_int_eq(f, i);
    }
    ck_assert_int_ne(chat_format_parse("alpaca", &f, err), 0);
    ck_assert_msg(strstr(err, "alpaca") && strstr(err, "chatml"), "%s", err);
    ck_assert_int_ne(chat_detect_template("plain", &f), 0);
}
END_TEST

// Qwen2-Instruct and Qwen2.5 open with a default system turn of their own; their
// templates (as tokenizer_config.json holds them, shortened) are told apart.
START_TEST(chat_qwen) {
    const ChatMsg conv[] = {{"user", "Hi"}};
    char *s = chat_render(CHAT_QWEN25, conv, 1, 1);
    ck_assert_str_eq(s, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = chat_render(CHAT_QWEN2, conv, 1, 0);
    ck_assert_str_eq(s, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    free(s);
    const char *qwen25 = "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                         "<|im_end|>\\n' }}{%- endif %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}";
    const char *qwen2 = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant."
                        "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}";
    ChatFormat f = CHAT_CHATML;
    ck_assert_int_eq(chat_detect_template(qwen25, &f), 0);
    ck_assert_int_eq(f, CHAT_QWEN25);
    ck_assert_int_eq(chat_detect_template(qwen2, &f), 0);
    ck_assert_int_eq(f, CHAT_QWEN2);
    // A folder's tokenizer_config.json, as seal generate and knowledge read it.
    char dir[256], path[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "chat-config");
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "chat_template", qwen25);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    ck_assert_int_eq(write_file_atomic(path, json, strlen(json), err), 0);
    free(json);
    f = CHAT_CHATML;
    chat_detect_config(path, &f);
    ck_assert_int_eq(f, CHAT_QWEN25);
    f = CHAT_CHATML;
    snprintf(path, sizeof path, "%s/absent.json", dir);
    chat_detect_config(path, &f);
    ck_assert_int_eq(f, CHAT_CHATML);
}
END_TEST

// ---------------------------------------------------------------- the real SmolLM2 (optional)

// test/smollm2_expected.txt: "prompt<TAB>prompt ids<TAB>greedy ids" lines made
// by test/gguf_reference.py. SMOLLM2_REF_LOGITS may name the reference's
// logits of the first prompt (int32 T, int32 V, then T*V float32);
// SMOLLM2_TEXT_DIR a folder for the reference continuations as text (0.txt, ...).
static int parse_ids(char *s, int *ids, int max) {
    int n = 0;
    for (char *tok = strtok(s, " "); tok && n < max; tok = strtok(NULL, " ")) ids[n++] = atoi(tok);
    return n;
}

static void compare_logits(const Model *m, const int *ids, int n, const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open", path);
    int32_t tv[2];
    ck_assert_int_eq(fread(tv, 4, 2, f), 2);
    ck_assert_msg(tv[0] == n && tv[1] == m->c.vocab, "%s: %d x %d logits, expected %d x %d", path, tv[0], tv[1], n, m->c.vocab);
    size_t total = (size_t)tv[0] * (size_t)tv[1];
    float *ref = malloc(total * sizeof *ref);
    ck_assert_uint_eq(fread(ref, 4, total, f), total);
    fclose(f);
    char err[ERR_MAX];
    Acts a;
    ck_assert_msg(acts_init(&a, m, 1, n, err) == 0, "%s", err);
    model_forward(m, &a, ids, NULL);
    double max_abs = 0, max_ref = 0;
    int argmax_same = 1;
    for (int t = 0; t < n; t++) {
        int am = 0, ar = 0;
        for (int v = 0; v < tv[1]; v++) {
            size_t i = (size_t)t * tv[1] + v;
            max_abs = fmax(max_abs, fabs((double)a.logits[i] - ref[i]));
            max_ref = fmax(max_ref, fabs(ref[i]));
            if (a.logits[i] > a.logits[(size_t)t * tv[1] + am]) am = v;
            if (ref[i] > ref[(size_t)t * tv[1] + ar]) ar = v;
        }
        argmax_same &= am == ar;
    }
    fprintf(stderr, "smollm2: logits of %d prompt tokens x %d: max |ours - reference| = %.3g, relative to max |reference| (%.3g) = %.3g, "
                    "argmax equal at every position: %s\n", n, tv[1], max_abs, max_ref, max_abs / max_ref, argmax_same ? "yes" : "no");
    ck_assert_msg(max_abs <= 1e-3 * max_ref, "logits differ from the reference by %.3g", max_abs);
    ck_assert(argmax_same);
    acts_free(&a);
    free(ref);
}

START_TEST(smollm2_greedy) {
    const char *path = getenv("SMOLLM2_GGUF");
    if (!path || !*path) { fprintf(stderr, "SKIP smollm2_greedy: SMOLLM2_GGUF is not set\n"); return; }
    char err[ERR_MAX];
    Model m;
    double t0 = now_seconds();
    ck_assert_msg(gguf_load_model(&m, path, err) == 0, "%s", err);
    fprintf(stderr, "smollm2: model loaded and dequantised in %.2f s\n", now_seconds() - t0);
    t0 = now_seconds();
    Tokenizer *tok = gguf_load_tokenizer(path, err);
    ck_assert_msg(tok != NULL, "%s", err);
    fprintf(stderr, "smollm2: tokenizer built from the metadata and loaded in %.2f s\n", now_seconds() - t0);
    ChatFormat fmt = chat_detect(tok);
    ck_assert_int_eq(gguf_chat_format(path, &fmt, err), 0);
    ck_assert_int_eq(fmt, CHAT_SMOLLM2);
    FILE *f = fopen("test/smollm2_expected.txt", "r");
    ck_assert_msg(f != NULL, "test/smollm2_expected.txt: cannot open");
    char line[65536];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *p1 = strchr(line, '\t'), *p2 = p1 ? strchr(p1 + 1, '\t') : NULL;
        ck_assert_msg(p1 && p2, "test/smollm2_expected.txt: a line without two tabs");
        *p1 = *p2 = 0;
        int want_prompt[4096], want_out[4096], *ids, n_prompt = parse_ids(p1 + 1, want_prompt, 4096), n_out = parse_ids(p2 + 1, want_out, 4096);
        ChatMsg msg = {"user", line};
        char *text = chat_render(fmt, &msg, 1, 1);
        int n = tok_encode(tok, text, strlen(text), 1, &ids, err);
        free(text);
        ck_assert_int_eq(n, n_prompt);
        for (int i = 0; i < n; i++) ck_assert_msg(ids[i] == want_prompt[i], "\"%s\": prompt id %d is %d, reference %d", line, i, ids[i], want_prompt[i]);
        if (lines == 0 && getenv("SMOLLM2_REF_LOGITS")) compare_logits(&m, ids, n, getenv("SMOLLM2_REF_LOGITS"));
        SampleOpts o = {.max_new = n_out, .temperature = 0, .top_p = 1};
        int *out, out_len;
        const int *prompts[1] = {ids};
        t0 = now_seconds();
        ck_assert_msg(generate(&m, prompts, &n, 1, &o, m.c.eos, m.c.n_eos, NULL, NULL, &out, &out_len, err) == 0, "%s", err);
        double dt = now_seconds() - t0;
        size_t len;
        char *said = tok_decode(tok, out, out_len, &len, err);
        fprintf(stderr, "smollm2: \"%s\" -> \"%s\" (%d tokens, %.1f tokens/s)\n", line, said, out_len, out_len / dt);
        free(said);
        ck_assert_int_eq(out_len, n_out);
        for (int i = 0; i < n_out; i++) ck_assert_msg(out[i] == want_out[i], "\"%s\": generated id %d is %d, reference %d", line, i, out[i], want_out[i]);
        const char *dir = getenv("SMOLLM2_TEXT_DIR");   // test/smollm2.sh compares `seal generate` with these
        if (dir) {
            char file[4096];
            snprintf(file, sizeof file, "%s/%d.txt", dir, lines);
            int shown = n_out > 0 && want_out[n_out - 1] == m.c.eos[0] ? n_out - 1 : n_out;   // seal generate prints no eos
            char *ref = tok_decode(tok, want_out, shown, &len, err);
            write_bytes(file, ref, len);
            free(ref);
        }
        free(out);
        free(ids);
        lines++;
    }
    fclose(f);
    ck_assert_int_gt(lines, 0);
    tok_free(tok);
    model_free(&m);
}
END_TEST

Suite *gguf_suite(void) {
    Suite *s = suite_create("gguf");
    add_case(s, "gguf", 600, dequant_blocks, dequant_file, unpermute_round_trip, model_round_trip_untied,
             model_round_trip_tied_llama3, model_unpermuted_file_differs, bad_truncated, bad_offsets, bad_counts,
             bad_model, tokenizer_from_gguf, chat_template_from_gguf, chat_formats, chat_qwen);
    add_case(s, "tiny_chatml", 0, tiny_chatml_model);   // CK_RUN_CASE=tiny_chatml: test/cli.sh writes its model this way
    add_case(s, "smollm2", 1200, smollm2_greedy);       // CK_RUN_CASE=smollm2 runs only this
    return s;
}
