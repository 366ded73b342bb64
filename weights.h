// weights.h: compact inference copies of frozen weights (bf16, or GGUF's
// Q8_0 / Q4_0 / Q4_1 blocks) and their matrix products with fp32 rows.
//
// Decoding reads every weight once per token, so its speed is the bytes of
// weights read per second: fp32 reads 4 bytes a weight, bf16 2, Q8_0 1.06,
// Q4_1 0.63. The fp32 table stays the reference and what training and
// model_forward use; KV-cache decoding (kv_step, kv_prefill) goes through the
// compact copy when the model has one (model_compact) and the pass has few rows.
#pragma once
#include "model.h"
#include <stddef.h>
#include <stdint.h>

// The forms a weight can take. Blocks of 32 weights along a row (ggml's):
// Q8_0 = f16 d, 32 int8 q: w = d q;  Q4_0 = f16 d, 16 bytes of nibbles (low
// nibbles weights 0..15, high 16..31): w = d (q - 8);  Q4_1 = f16 d, f16 m,
// the nibbles: w = d q + m. BF16 is the top half of an fp32, 32 to a "block".
enum { QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_N };
extern const char *const QT_NAME[QT_N];   // "bf16", "q8_0", "q4_0", "q4_1"

typedef struct QMat {
    int type;                     // QT_*
    int rows, cols;               // [out, in] like the fp32 weight; cols a multiple of 32
    size_t row_bytes;             // bytes of one row of blocks
    uint8_t *data;                // (rows, row_bytes)
    int q8;                       // Q8_0 / Q4: multiply x quantised to 8 bits (qmat_mul); 0: exact fp32 x
} QMat;

size_t qt_row_bytes(int type, int cols);
int qmat_alloc(QMat *q, int type, int rows, int cols);   // -1 when out of memory
void qmat_free(QMat *q);
// Rounds (bf16: to nearest even) or quantises (q8_0: d = max|w| / 127 per
// block, q = round(w / d)) the fp32 matrix w (rows, cols) into q (allocated).
void qmat_from_f32(QMat *q, const float *w);
// Row r of q as fp32: out (cols).
void qmat_row_f32(const QMat *q, int r, float *out);

// Passes of more rows than this multiply by the fp32 weights (sgemm): they are
// compute-bound, and OpenBLAS's sgemm beats this kernel there.
#define QMAT_MAX_ROWS 16

// y (R, rows), rows ldy floats apart, = x (R, cols) q^T, fp32 accumulation, each block dequantised
// once inside the kernel and used for up to 8 rows of x: a batch of R rows
// reads the weights once. OpenMP threads split the output columns. With q->q8
// set, Q8_0 and Q4 weights multiply x quantised to 8 bits per block of 32
// (integer dot products, llama.cpp's way: faster, and each x off by up to
// 1/254 of its block's largest); bf16 always multiplies fp32 x. s: scratch
// of qmat_scratch_bytes(R, cols) for x's quantised form (qmat_prep, done
// once before the threads start), or NULL to allocate it for the call.
void qmat_mul(const QMat *q, const float *x, int R, float *y, int ldy, void *s);
// The same for n matrices of the same x and cols (q, k, v; gate, up) in one
// parallel region, their rows split among the threads together: matrix j's
// outputs go to columns off_j.. of y (off_j = q[0]->rows + ... + q[j-1]->rows).
void qmat_mul_n(const QMat *const *q, int n, const float *x, int R, float *y, int ldy, void *s);

// The two halves of qmat_mul_n, for a parallel region of the caller's own
// (model.c's decode step), so that x is quantised once per pass, not once
// per product and thread. qmat_prep writes into s (qmat_scratch_bytes(R,
// cols) bytes) what the products with q[0..n) read of x besides its floats
// (the 8-bit blocks; Q4_1's block sums with fp32 x), for blocks k0..k1-1 of
// every row: threads may each prepare a share of the blocks. Row r's part
// starts qmat_scratch_bytes(r, cols) bytes into s. qmat_mul_part then
// computes output columns o0..o1-1 of qmat_mul_n's y on the calling thread
// (each of a region's threads its own share), reading x and s.
size_t qmat_scratch_bytes(int R, int cols);
void qmat_prep(const QMat *const *q, int n, const float *x, int R, void *s, int k0, int k1);
void qmat_mul_part(const QMat *const *q, int n, const float *x, const void *s, int R, float *y, int ldy, int o0, int o1);

// ---------------------------------------------------------------------------
// A model's compact copies: which form the KV-cache path reads.
enum { WEIGHTS_FP32, WEIGHTS_BF16, WEIGHTS_Q8_0, WEIGHTS_NATIVE };
#define WEIGHTS_Q8_ACTS 8   // or'd into q8_0 or native ("q8_0+q8", "native+q8"): the copies' q8 set
// "fp32", "bf16", "q8_0", "native", "q8_0+q8" or "native+q8": -1 with err for anything else.
int weights_parse(const char *s, char *err);
// Builds the copies of every projection and of the LM head: fp32 drops them;
// bf16 and q8_0 convert the fp32 weights; native takes a .gguf file's own
// blocks (path: the file the model came from; tensors stored as F32 or F16
// stay fp32) and, for a Hugging Face folder, bf16 when its safetensors hold
// BF16, else fp32: native never changes a weight. Memory: the copy is held
// beside the fp32 table (training needs it), so bf16 adds half the fp32
// size, Q4_1 a sixth.
int model_compact(Model *m, int kind, const char *path, char *err);
void model_compact_free(Model *m);
// After lora_merge, which keeps the copies and gives each adapted one the
// adapter's term (model.h): the caller has copied back the weights from before
// the merges, bit for bit, so every projection reads its own copy again, alone
// (restem.c's student_restore). The copies belong to the model throughout.
void model_compact_restore(Model *m);
const char *model_weights_name(const Model *m);   // e.g. "q4_1 (lm head q8_0)", "q4_1+q8", "bf16", "fp32"
size_t model_weight_bytes(const Model *m);        // weight bytes one decode step reads (projections, merged terms, LM head)
