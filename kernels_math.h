// kernels_math.h: the per-element math of the CUDA kernels (kernels.cu) as
// functions that compile both for the GPU and for the CPU, so that the Check
// suite (test/test_kernels_math.c) runs the very code the kernels run and
// compares it with model.c and train.c. Plain C99 as well as CUDA C++.
//
// Each function mirrors one expression of the CPU reference, in the same
// order of operations, so the only differences between the two paths are the
// bf16 roundings and the order of the long sums.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define SEAL_HD __host__ __device__
#else
#define SEAL_HD
#endif

// ----------------------------------------------------------------------------
// bf16: the upper 16 bits of an IEEE float.

static inline SEAL_HD uint32_t seal_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

static inline SEAL_HD float seal_f32_from_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// float -> bf16 bits, rounded to nearest with ties to even, as PyTorch's
// .bfloat16() and CUDA's __float2bfloat16_rn: overflow becomes infinity,
// subnormals stay subnormal, a NaN stays a (quiet) NaN with its sign.
static inline SEAL_HD uint16_t seal_f2bf(float f) {
    uint32_t u = seal_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline SEAL_HD float seal_bf2f(uint16_t h) { return seal_f32_from_bits((uint32_t)h << 16); }

// ----------------------------------------------------------------------------
// RMSNorm (model.c rmsnorm_forward / rmsnorm_backward), per row of D values:
//   out_i = x_i * rstd * w_i,  rstd = 1 / sqrt(sum x^2 / D + eps)
//   dx_i += dout_i w_i rstd - x_i k,  k = (sum_i dout_i w_i x_i) rstd^3 / D

static inline SEAL_HD float seal_rmsnorm_rstd(float sumsq, int D, float eps) { return 1.0f / sqrtf(sumsq / D + eps); }
static inline SEAL_HD float seal_rmsnorm_out(float x, float rstd, float w) { return x * rstd * w; }
static inline SEAL_HD float seal_rmsnorm_k(float dwx, float rstd, int D) { return dwx * rstd * rstd * rstd / D; }
static inline SEAL_HD float seal_rmsnorm_dx(float dout, float w, float x, float rstd, float k) { return dout * w * rstd - x * k; }

// ----------------------------------------------------------------------------
// RoPE, rotate_half layout: the pair (x1, x2) = (v[j], v[j + hd/2]) turns by
// the angle whose cosine and sine are c and s; sign = -1 turns it back (the
// backward pass, as model.c's rope(..., -1)).

static inline SEAL_HD void seal_rope(float x1, float x2, float c, float s, float sign, float *y1, float *y2) {
    const float ss = sign * s;
    *y1 = x1 * c - x2 * ss;
    *y2 = x2 * c + x1 * ss;
}

// ----------------------------------------------------------------------------
// SwiGLU: h = silu(gate) * up and its derivatives (model.c swiglu_*).

static inline SEAL_HD float seal_swiglu(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

static inline SEAL_HD void seal_swiglu_backward(float dh, float gate, float up, float *dgate, float *dup) {
    const float sig = 1.0f / (1.0f + expf(-gate));
    *dup = dh * gate * sig;
    *dgate = dh * up * sig * (1.0f + gate * (1.0f - sig));
}

// ----------------------------------------------------------------------------
// Online softmax: a running maximum m and a running sum l of exp(x - m) over
// scores seen one at a time or one block at a time, so that softmax over a
// row never needs the whole row at once (flash attention, the chunked
// cross-entropy). A masked score is -INFINITY; a state that has seen only
// masked scores is (m, l) = (-INFINITY, 0).

// exp(x - m), 0 for a masked score.
static inline SEAL_HD float seal_softmax_weight(float x, float m) { return x == -INFINITY ? 0.0f : expf(x - m); }

// The factor that rescales sums and accumulators kept relative to m_old when
// the maximum becomes m_new (>= m_old).
static inline SEAL_HD float seal_softmax_rescale(float m_old, float m_new) {
    return m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
}

// One more score.
static inline SEAL_HD void seal_softmax_push(float *m, float *l, float x) {
    if (x > *m) {
        *l = *l * seal_softmax_rescale(*m, x) + 1.0f;
        *m = x;
    } else {
        *l += seal_softmax_weight(x, *m);
    }
}

// Merges the state (m2, l2) of other scores into (m, l).
static inline SEAL_HD void seal_softmax_merge(float *m, float *l, float m2, float l2) {
    const float mx = *m > m2 ? *m : m2;
    if (mx == -INFINITY) return;
    *l = *l * seal_softmax_rescale(*m, mx) + l2 * seal_softmax_rescale(m2, mx);
    *m = mx;
}

// ----------------------------------------------------------------------------
// Cross-entropy of one row of logits with its target (model.c cross_entropy):
// loss = m + log(l) - x_y, and d loss / d x_i over n_valid positions =
// (softmax_i - [i == y]) / n_valid, computed as model.c does it:
// exp(x_i - m) * (1 / (l * n_valid)), then 1 / n_valid off the target.

static inline SEAL_HD float seal_ce_grad(float x, float m, float inv_l_n, int is_target, float inv_n) {
    const float g = expf(x - m) * inv_l_n;
    return is_target ? g - inv_n : g;
}

// ----------------------------------------------------------------------------
// AdamW with torch.optim.AdamW semantics, the element update of train.c's
// adamw_step: decoupled weight decay, bias-corrected moments.

typedef struct {
    float beta1, beta2, eps;
    float decay;                  // 1 - lr * weight_decay
    float step;                   // lr / (1 - beta1^t)
    float bc2_sqrt;               // sqrt(1 - beta2^t)
    float grad_scale;             // gradient clipping's factor (1: none)
} SealAdamW;

static inline SealAdamW seal_adamw_consts(float lr, float beta1, float beta2, float eps, float weight_decay, int t, float grad_scale) {
    SealAdamW a;
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.eps = eps;
    a.decay = 1.0f - lr * weight_decay;
    a.step = lr / (1.0f - powf(beta1, (float)t));
    a.bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)t));
    a.grad_scale = grad_scale;
    return a;
}

static inline SEAL_HD void seal_adamw(float *p, float *m, float *v, float g, const SealAdamW *a) {
    if (a->grad_scale != 1.0f) g *= a->grad_scale;
    *p *= a->decay;
    *m = a->beta1 * *m + (1.0f - a->beta1) * g;
    *v = a->beta2 * *v + (1.0f - a->beta2) * g * g;
    *p -= a->step * *m / (sqrtf(*v) / a->bc2_sqrt + a->eps);
}
