// weights.c: compact inference copies of frozen weights and their products
// with fp32 rows (weights.h). Two kernel shapes, each using a block of 32
// weights for up to 8 rows of x before the next block, accumulating in fp32:
// the exact one turns the block into fp32 and multiplies fp32 x; the default
// for Q8_0 / Q4 multiplies the block's integers with x quantised to 8 bits.
// Plain C versions are the reference; with AVX2 (-march=native on x86) the
// same steps run in 8-wide registers.
#include "weights.h"
#include "gguf.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

const char *const QT_NAME[QT_N] = {"bf16", "q8_0", "q4_0", "q4_1"};
static const int QT_BYTES[QT_N] = {64, 34, 18, 20};   // bytes of a block of 32 weights

size_t qt_row_bytes(int type, int cols) { return (size_t)cols / 32 * QT_BYTES[type]; }

int qmat_alloc(QMat *q, int type, int rows, int cols) {
    *q = (QMat){.type = type, .rows = rows, .cols = cols, .row_bytes = qt_row_bytes(type, cols)};
    q->data = malloc(rows > 0 ? q->row_bytes * rows : 1);
    return q->data ? 0 : -1;
}

void qmat_free(QMat *q) {
    free(q->data);
    memset(q, 0, sizeof *q);
}

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

// f32 to f16, round to nearest even (normal range; tiny values flush to 0): Q8_0's scale
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = x >> 16 & 0x8000, e = x >> 23 & 0xff, man = x & 0x7fffff;
    int ne = (int)e - 127 + 15;
    if (ne <= 0) return (uint16_t)sign;
    if (ne >= 31) return (uint16_t)(sign | 0x7c00);
    uint32_t h = (uint32_t)ne << 10 | man >> 13, rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;   // a carry into the exponent is still right
    return (uint16_t)(sign | h);
}

void qmat_from_f32(QMat *q, const float *w) {
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < q->rows; r++) {
        const float *x = w + (size_t)r * q->cols;
        uint8_t *b = q->data + (size_t)r * q->row_bytes;
        for (int k = 0; k < q->cols / 32; k++, x += 32) {
            if (q->type == QT_BF16) {
                for (int j = 0; j < 32; j++) { uint16_t h = f32_to_bf16(x[j]); memcpy(b + 2 * j, &h, 2); }
                b += 64;
                continue;
            }
            float amax = 0.0f;   // QT_Q8_0
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            uint16_t dh = f32_to_f16(amax / 127.0f);
            float d = f16_to_f32(dh), inv = d > 0.0f ? 1.0f / d : 0.0f;
            memcpy(b, &dh, 2);
            for (int j = 0; j < 32; j++) {
                float v = roundf(x[j] * inv);
                b[2 + j] = (uint8_t)(int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
            }
            b += 34;
        }
    }
}

// Block b (32 weights) of the given form as fp32: w = d * u + m, u returned
// unscaled in u[32] (bf16: d = 1, m = 0) so the kernels scale a dot product
// once per block instead of each weight.
static void block_ref(int type, const uint8_t *b, float *u, float *d, float *m) {
    *d = 1.0f;
    *m = 0.0f;
    switch (type) {
    case QT_BF16: for (int j = 0; j < 32; j++) u[j] = bf16_to_f32(u16_at(b + 2 * j)); break;
    case QT_Q8_0:
        *d = f16_to_f32(u16_at(b));
        for (int j = 0; j < 32; j++) u[j] = (float)(int8_t)b[2 + j];
        break;
    case QT_Q4_0:
        *d = f16_to_f32(u16_at(b));
        for (int j = 0; j < 16; j++) { u[j] = (float)((b[2 + j] & 15) - 8); u[j + 16] = (float)((b[2 + j] >> 4) - 8); }
        break;
    case QT_Q4_1:
        *d = f16_to_f32(u16_at(b));
        *m = f16_to_f32(u16_at(b + 2));
        for (int j = 0; j < 16; j++) { u[j] = (float)(b[4 + j] & 15); u[j + 16] = (float)(b[4 + j] >> 4); }
        break;
    }
}

void qmat_row_f32(const QMat *q, int r, float *out) {
    const uint8_t *b = q->data + (size_t)r * q->row_bytes;
    for (int k = 0; k < q->cols / 32; k++, b += QT_BYTES[q->type]) {
        float u[32], d, m;
        block_ref(q->type, b, u, &d, &m);
        for (int j = 0; j < 32; j++) out[32 * k + j] = d * u[j] + m;
    }
}

// ---------------------------------------------------------------------------
// What the kernels read of x besides its floats, per block of 32 (qmat_prep):
// the block quantised to 8 bits (x = d q, s = d sum(q)) for the q8 kernels,
// and its exact sum for Q4_1's m times fp32 x.
typedef struct { float d, s, sum; int8_t q[32]; } XBlock;

// The kernel: out[r] = sum over blocks of d * (u . x_r) + m * sum(x_r), for
// nr <= 8 rows of x (row stride ldx); xb (nr, nb) holds the block sums of x
// (read by Q4_1 only). Inlined with constant type and nr, so the loops over r unroll.

#ifdef __AVX2__
static inline __m256 cvt8(__m128i bytes, int is_signed) {   // the low 8 bytes as 8 floats
    return _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes));
}

static inline __attribute__((always_inline)) void block_avx2(int type, const uint8_t *b, __m256 u[4], float *d, float *m) {
    if (type == QT_BF16) {
        for (int i = 0; i < 4; i++)
            u[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 16 * i))), 16));
        return;
    }
    *d = _cvtsh_ss(u16_at(b));
    if (type == QT_Q8_0) {
        for (int i = 0; i < 4; i++) u[i] = cvt8(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * i)), 1);
        return;
    }
    const __m128i raw = _mm_loadu_si128((const __m128i *)(b + (type == QT_Q4_1 ? 4 : 2))), low = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(raw, low), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
    if (type == QT_Q4_0) { lo = _mm_sub_epi8(lo, _mm_set1_epi8(8)); hi = _mm_sub_epi8(hi, _mm_set1_epi8(8)); }
    else *m = _cvtsh_ss(u16_at(b + 2));
    const int s = type == QT_Q4_0;
    u[0] = cvt8(lo, s);
    u[1] = cvt8(_mm_srli_si128(lo, 8), s);
    u[2] = cvt8(hi, s);
    u[3] = cvt8(_mm_srli_si128(hi, 8), s);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void rows_dot(int type, const uint8_t *w, int nb, const float *x, int ldx,
                                                           const XBlock *xb, int nr, float *out) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
    for (int k = 0; k < nb; k++, w += QT_BYTES[type]) {
        __m256 u[4];
        float d = 1.0f, m = 0.0f;
        block_avx2(type, w, u, &d, &m);
        const __m256 dv = _mm256_set1_ps(d);
        for (int r = 0; r < nr; r++) {
            const float *xr = x + (size_t)r * ldx + 32 * k;
            __m256 t = _mm256_mul_ps(u[0], _mm256_loadu_ps(xr));
            t = _mm256_fmadd_ps(u[1], _mm256_loadu_ps(xr + 8), t);
            t = _mm256_fmadd_ps(u[2], _mm256_loadu_ps(xr + 16), t);
            t = _mm256_fmadd_ps(u[3], _mm256_loadu_ps(xr + 24), t);
            acc[r] = type == QT_BF16 ? _mm256_add_ps(acc[r], t) : _mm256_fmadd_ps(dv, t, acc[r]);
            if (type == QT_Q4_1) macc[r] += m * xb[r * nb + k].sum;
        }
    }
    for (int r = 0; r < nr; r++) out[r] = hsum(acc[r]) + macc[r];
}
#else
static inline void rows_dot(int type, const uint8_t *w, int nb, const float *x, int ldx, const XBlock *xb, int nr, float *out) {
    float acc[8] = {0};
    for (int k = 0; k < nb; k++, w += QT_BYTES[type]) {
        float u[32], d, m;
        block_ref(type, w, u, &d, &m);
        for (int r = 0; r < nr; r++) {
            const float *xr = x + (size_t)r * ldx + 32 * k;
            float t = 0.0f;
            #pragma omp simd reduction(+ : t)
            for (int j = 0; j < 32; j++) t += u[j] * xr[j];
            acc[r] += d * t + (type == QT_Q4_1 ? m * xb[r * nb + k].sum : 0.0f);
        }
    }
    for (int r = 0; r < nr; r++) out[r] = acc[r];
}
#endif

// One specialised body per form: rows nr = 1..8 picked by a switch of constants,
// each run over nw weight rows (wb bytes apart) in turn: weight row i times x
// row r goes to y[r * ldy + i].
#define EACH_W_ROW(NR, DOT_ROW)                                                                 \
    for (int i = 0; i < nw; i++) {                                                              \
        float out[8];                                                                           \
        DOT_ROW;                                                                                \
        for (int r = 0; r < NR; r++) y[(size_t)r * ldy + i] = out[r];                           \
    }
#define QMAT_KERNEL(NAME, TYPE)                                                                             \
    static void NAME(const uint8_t *w, size_t wb, int nw, int nb, const float *x, int ldx, const XBlock *xb, \
                     int nr, float *y, int ldy) {                                                           \
        switch (nr) {                                                                                       \
        case 1: EACH_W_ROW(1, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 1, out)) break;                    \
        case 2: EACH_W_ROW(2, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 2, out)) break;                    \
        case 3: EACH_W_ROW(3, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 3, out)) break;                    \
        case 4: EACH_W_ROW(4, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 4, out)) break;                    \
        case 5: EACH_W_ROW(5, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 5, out)) break;                    \
        case 6: EACH_W_ROW(6, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 6, out)) break;                    \
        case 7: EACH_W_ROW(7, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 7, out)) break;                    \
        default: EACH_W_ROW(8, rows_dot(TYPE, w + i * wb, nb, x, ldx, xb, 8, out)) break;                   \
        }                                                                                                   \
    }
QMAT_KERNEL(dot_bf16, QT_BF16)
QMAT_KERNEL(dot_q8_0, QT_Q8_0)
QMAT_KERNEL(dot_q4_0, QT_Q4_0)
QMAT_KERNEL(dot_q4_1, QT_Q4_1)
typedef void (*DotFn)(const uint8_t *, size_t, int, int, const float *, int, const XBlock *, int, float *, int);
static const DotFn DOT[QT_N] = {dot_bf16, dot_q8_0, dot_q4_0, dot_q4_1};

// ---------------------------------------------------------------------------
// The same product with the rows of x quantised to 8 bits per block of 32
// (x = d q, d = max|x| / 127, as llama.cpp's q8_0 activations): a block's dot
// product is then 32 integer multiplies, which AVX2 does in 2 instructions
// (maddubs: u8 x i8 pairs into i16; madd: pairs into i32) where the fp32
// kernel converts 32 weights to floats first. The Q4 and Q8_0 kernels read
// the same bytes either way; the integer ones spend fewer cycles per block,
// which is what decides the speed here (the fp32 kernel reaches a fifth of
// the memory bandwidth). The error this adds, about 1/254 of each block's
// largest activation, is measured against fp32 in test_gguf and test_model.
// s = d * sum(q) is the block's sum, for Q4_0's -8 and Q4_1's m.

#ifdef __AVX2__
static void quantize_x(const float *x, int n, XBlock *out) {   // n blocks; the same bytes as the loop below
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int k = 0; k < n; k++, x += 32) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
        __m256i q[4], sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {   // cvtps rounds to nearest even, as lrintf does
            q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(inv)));
            sum = _mm256_add_epi32(sum, q[i]);
        }
        // packs work within 128-bit lanes: 4-byte groups come out in the order 0 4 1 5 2 6 3 7
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)out[k].q, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        out[k].d = d;
        out[k].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}
#else
static void quantize_x(const float *x, int n, XBlock *out) {   // n blocks
    for (int k = 0; k < n; k++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) { out[k].q[j] = (int8_t)lrintf(x[j] * inv); sum += out[k].q[j]; }
        out[k].d = d;
        out[k].s = d * (float)sum;
    }
}
#endif

// out[r] = sum over blocks of dw dx (w . q) + c, with w the block's integers
// (Q8_0 signed, Q4 the unsigned nibbles 0..15) and c = -8 dw s (Q4_0) or m s
// (Q4_1); nr <= 8 rows of x, row r at x + r * nb.
#ifdef __AVX2__
static inline __attribute__((always_inline)) void rows_dot_q8(int type, const uint8_t *w, int nb, const XBlock *x, int nr, float *out) {
    __m256 acc[8];
    float corr[8] = {0};
    for (int r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int k = 0; k < nb; k++, w += QT_BYTES[type]) {
        const float dw = _cvtsh_ss(u16_at(w));
        __m256i wq;
        if (type == QT_Q8_0) wq = _mm256_loadu_si256((const __m256i *)(w + 2));
        else {   // low nibbles are weights 0..15, high 16..31
            const __m128i raw = _mm_loadu_si128((const __m128i *)(w + (type == QT_Q4_1 ? 4 : 2)));
            wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15));
        }
        // maddubs multiplies unsigned by signed bytes: Q8_0 moves w's sign onto x
        const __m256i wu = type == QT_Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
        const float c = type == QT_Q4_0 ? -8.0f * dw : type == QT_Q4_1 ? _cvtsh_ss(u16_at(w + 2)) : 0.0f;
        for (int r = 0; r < nr; r++) {
            const XBlock *xb = x + (size_t)r * nb + k;
            __m256i xq = _mm256_loadu_si256((const __m256i *)xb->q);
            if (type == QT_Q8_0) xq = _mm256_sign_epi8(xq, wq);
            const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, xq), ones);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * xb->d), acc[r]);
            if (type != QT_Q8_0) corr[r] += c * xb->s;
        }
    }
    for (int r = 0; r < nr; r++) out[r] = hsum(acc[r]) + corr[r];
}
#else
static inline void rows_dot_q8(int type, const uint8_t *w, int nb, const XBlock *x, int nr, float *out) {
    float acc[8] = {0};
    for (int k = 0; k < nb; k++, w += QT_BYTES[type]) {
        const float dw = f16_to_f32(u16_at(w));
        int wi[32];
        for (int j = 0; j < 32; j++)
            wi[j] = type == QT_Q8_0 ? (int8_t)w[2 + j] : (w[(type == QT_Q4_1 ? 4 : 2) + j % 16] >> (j < 16 ? 0 : 4)) & 15;
        const float c = type == QT_Q4_0 ? -8.0f * dw : type == QT_Q4_1 ? f16_to_f32(u16_at(w + 2)) : 0.0f;
        for (int r = 0; r < nr; r++) {
            const XBlock *xb = x + (size_t)r * nb + k;
            int dot = 0;
            for (int j = 0; j < 32; j++) dot += wi[j] * xb->q[j];
            acc[r] += dw * xb->d * (float)dot + c * xb->s;
        }
    }
    for (int r = 0; r < nr; r++) out[r] = acc[r];
}
#endif

#define QMAT_KERNEL_Q8(NAME, TYPE)                                                                                  \
    static void NAME(const uint8_t *w, size_t wb, int nw, int nb, const XBlock *x, int nr, float *y, int ldy) {          \
        switch (nr) {                                                                                                   \
        case 1: EACH_W_ROW(1, rows_dot_q8(TYPE, w + i * wb, nb, x, 1, out)) break;                                       \
        case 2: EACH_W_ROW(2, rows_dot_q8(TYPE, w + i * wb, nb, x, 2, out)) break;                                       \
        case 3: EACH_W_ROW(3, rows_dot_q8(TYPE, w + i * wb, nb, x, 3, out)) break;                                       \
        case 4: EACH_W_ROW(4, rows_dot_q8(TYPE, w + i * wb, nb, x, 4, out)) break;                                       \
        case 5: EACH_W_ROW(5, rows_dot_q8(TYPE, w + i * wb, nb, x, 5, out)) break;                                       \
        case 6: EACH_W_ROW(6, rows_dot_q8(TYPE, w + i * wb, nb, x, 6, out)) break;                                       \
        case 7: EACH_W_ROW(7, rows_dot_q8(TYPE, w + i * wb, nb, x, 7, out)) break;                                       \
        default: EACH_W_ROW(8, rows_dot_q8(TYPE, w + i * wb, nb, x, 8, out)) break;                                      \
        }                                                                                                               \
    }
QMAT_KERNEL_Q8(dot_q8_0_q8, QT_Q8_0)
QMAT_KERNEL_Q8(dot_q4_0_q8, QT_Q4_0)
QMAT_KERNEL_Q8(dot_q4_1_q8, QT_Q4_1)
typedef void (*DotQ8Fn)(const uint8_t *, size_t, int, int, const XBlock *, int, float *, int);
static const DotQ8Fn DOT_Q8[QT_N] = {NULL, dot_q8_0_q8, dot_q4_0_q8, dot_q4_1_q8};   // bf16 keeps fp32 activations

static int reads_q8(const QMat *q) { return q->q8 && DOT_Q8[q->type]; }

size_t qmat_scratch_bytes(int R, int cols) { return (size_t)R * (cols / 32) * sizeof(XBlock); }

void qmat_prep(const QMat *const *q, int n, const float *x, int R, void *s, int k0, int k1) {
    const int cols = q[0]->cols, nb = cols / 32;
    int q8 = 0, sums = 0;   // what the kernels of q[0..n) read
    for (int j = 0; j < n; j++) {
        q8 |= reads_q8(q[j]);
        sums |= !reads_q8(q[j]) && q[j]->type == QT_Q4_1;
    }
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * cols;
        XBlock *xb = (XBlock *)s + (size_t)r * nb;
        if (q8) quantize_x(xr + 32 * k0, k1 - k0, xb + k0);
        for (int k = k0; sums && k < k1; k++) {
            float t = 0.0f;
            for (int j = 0; j < 32; j++) t += xr[32 * k + j];
            xb[k].sum = t;
        }
    }
}

void qmat_mul_part(const QMat *const *q, int n, const float *x, const void *s, int R, float *y, int ldy, int o0, int o1) {
    const int cols = q[0]->cols, nb = cols / 32;
    const XBlock *xb = s;
    for (int j = 0, off = 0; j < n; off += q[j++]->rows) {   // matrix j's outputs are columns off..
        const QMat *m = q[j];
        const int mq8 = reads_q8(m), a = o0 > off ? o0 - off : 0, b = o1 - off < m->rows ? o1 - off : m->rows;
        for (int i0 = a; i0 < b; i0 += 16) {   // 16 weight rows stay in L1 through the groups of 8 rows of x
            const uint8_t *w = m->data + (size_t)i0 * m->row_bytes;
            const int nw = b - i0 < 16 ? b - i0 : 16;
            for (int r0 = 0; r0 < R; r0 += 8) {
                const int nr = R - r0 < 8 ? R - r0 : 8;
                float *yr = y + (size_t)r0 * ldy + off + i0;
                if (mq8) DOT_Q8[m->type](w, m->row_bytes, nw, nb, xb + (size_t)r0 * nb, nr, yr, ldy);
                else DOT[m->type](w, m->row_bytes, nw, nb, x + (size_t)r0 * cols, cols, xb + (size_t)r0 * nb, nr, yr, ldy);
            }
        }
    }
}

void qmat_mul_n(const QMat *const *q, int n, const float *x, int R, float *y, int ldy, void *s) {
    void *own = s ? NULL : xmalloc(qmat_scratch_bytes(R, q[0]->cols));
    if (own) s = own;
    qmat_prep(q, n, x, R, s, 0, q[0]->cols / 32);   // once, before the threads share it
    int O = 0;   // the output columns of all n
    for (int j = 0; j < n; j++) O += q[j]->rows;
    #pragma omp parallel if ((long)O * q[0]->cols * (R < 8 ? R : 8) > 1L << 15)
    {
        int o0, o1;
        share(O, omp_get_thread_num(), omp_get_num_threads(), &o0, &o1);
        qmat_mul_part(q, n, x, s, R, y, ldy, o0, o1);
    }
    free(own);
}

void qmat_mul(const QMat *q, const float *x, int R, float *y, int ldy, void *s) { qmat_mul_n(&q, 1, x, R, y, ldy, s); }

// ---------------------------------------------------------------------------
// A model's compact copies

int weights_parse(const char *s, char *err) {
    const char *names[] = {"fp32", "bf16", "q8_0", "native", "q8_0+q8", "native+q8"};
    const int kinds[] = {WEIGHTS_FP32, WEIGHTS_BF16, WEIGHTS_Q8_0, WEIGHTS_NATIVE, WEIGHTS_Q8_0 | WEIGHTS_Q8_ACTS, WEIGHTS_NATIVE | WEIGHTS_Q8_ACTS};
    for (int i = 0; i < 6; i++)
        if (!strcmp(s, names[i])) return kinds[i];
    return errf(err, "--weights %s: expected fp32, bf16, q8_0, native, q8_0+q8 or native+q8", s);
}

void model_compact_free(Model *m) {
    if (m->qmats)
        for (int i = 0; i <= m->c.n_layers * N_PROJ; i++) qmat_free(&m->qmats[i]);
    free(m->qmats);
    m->qmats = NULL;
    m->q_lm_head = NULL;
    for (int l = 0; m->layers && l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) m->layers[l].proj[p].qw = NULL, m->layers[l].proj[p].qr = 0;
}

// Every weight exactly a bf16 (the low 16 bits of each fp32 zero): a checkpoint stored in BF16.
static int all_bf16(const Model *m) {
    const float *mats[] = {m->lm_head};
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const Linear *x = &m->layers[l].proj[p];
            for (size_t i = 0; i < (size_t)x->out * x->in; i++) {
                uint32_t u;
                memcpy(&u, &x->w[i], 4);
                if (u & 0xffff) return 0;
            }
        }
    for (size_t i = 0; i < (size_t)m->c.vocab * m->c.dim; i++) {
        uint32_t u;
        memcpy(&u, &mats[0][i], 4);
        if (u & 0xffff) return 0;
    }
    return 1;
}

// Points each Linear and the LM head at its copy (a QMat with no data: none),
// with no merged adapter's term.
static void compact_bind(Model *m) {
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const QMat *q = &m->qmats[l * N_PROJ + p];
            m->layers[l].proj[p].qw = q->data ? q : NULL;
            m->layers[l].proj[p].qr = 0;
        }
    const QMat *h = &m->qmats[m->c.n_layers * N_PROJ];
    m->q_lm_head = h->data ? h : NULL;
}

void model_compact_restore(Model *m) {
    if (m->qmats) compact_bind(m);
}

int model_compact(Model *m, int kind, const char *path, char *err) {
    model_compact_free(m);
    const int q8 = !!(kind & WEIGHTS_Q8_ACTS);
    kind &= ~WEIGHTS_Q8_ACTS;
    if (kind == WEIGHTS_FP32) return 0;
    const int n = m->c.n_layers * N_PROJ + 1;
    if (kind == WEIGHTS_NATIVE && path && gguf_is_path(path)) {
        GgufFile f;
        if (gguf_open(&f, path, err)) return -1;
        m->qmats = xcalloc((size_t)n, sizeof(QMat));
        char s[160];
        int rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            if (i < n - 1) snprintf(s, sizeof s, "model.layers.%d.%s.%s.weight", i / N_PROJ, PROJ_BLOCK[i % N_PROJ], PROJ_NAME[i % N_PROJ]);
            else snprintf(s, sizeof s, "%s", m->c.tied ? "model.embed_tokens.weight" : "lm_head.weight");
            rc = gguf_read_blocks(&f, &m->c, s, &m->qmats[i], err);
        }
        gguf_close(&f);
        if (rc) { model_compact_free(m); return -1; }
        for (int i = 0; i < n; i++) m->qmats[i].q8 = q8;
        compact_bind(m);
        return 0;
    }
    if (kind == WEIGHTS_NATIVE && !all_bf16(m)) return 0;   // fp32 (or F16) on disk: nothing smaller is exact
    const int type = kind == WEIGHTS_Q8_0 ? QT_Q8_0 : QT_BF16;
    m->qmats = xcalloc((size_t)n, sizeof(QMat));
    for (int i = 0; i < n; i++) {
        const Linear *x = i < n - 1 ? &m->layers[i / N_PROJ].proj[i % N_PROJ] : NULL;
        const int rows = x ? x->out : m->c.vocab, cols = x ? x->in : m->c.dim;
        if (cols % 32) continue;   // not whole blocks: this one stays fp32
        if (qmat_alloc(&m->qmats[i], type, rows, cols)) {
            model_compact_free(m);
            return errf(err, "out of memory for the %s copy of the weights", QT_NAME[type]);
        }
        qmat_from_f32(&m->qmats[i], x ? x->w : m->lm_head);
        m->qmats[i].q8 = q8;
    }
    compact_bind(m);
    return 0;
}

const char *model_weights_name(const Model *m) {
    static __thread char s[64];
    const QMat *p = m->c.n_layers ? m->layers[0].proj[PROJ_Q].qw : NULL, *h = m->q_lm_head;
    const char *pn = p ? QT_NAME[p->type] : "fp32", *hn = h ? QT_NAME[h->type] : "fp32";
    const char *acts = (p && p->q8 && p->type != QT_BF16) || (h && h->q8 && h->type != QT_BF16) ? "+q8" : "";
    if (!strcmp(pn, hn)) snprintf(s, sizeof s, "%s%s", pn, acts);
    else snprintf(s, sizeof s, "%s (lm head %s)%s", pn, hn, acts);
    return s;
}

size_t model_weight_bytes(const Model *m) {
    size_t b = 0;
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const Linear *x = &m->layers[l].proj[p];
            b += x->qw ? x->qw->row_bytes * x->qw->rows + (size_t)x->qr * (x->in + x->out) * 4 : (size_t)x->out * x->in * 4;
        }
    return b + (m->q_lm_head ? m->q_lm_head->row_bytes * m->q_lm_head->rows : (size_t)m->c.vocab * m->c.dim * 4);
}
