// kernels.cu: model.c's Llama on CUDA, behind kernels.h.
//
// Precision: bf16 weights and matrix-product inputs, fp32 accumulation
// (cublasGemmEx, CUBLAS_COMPUTE_32F), an fp32 residual stream, fp32 norms,
// fp32 master copies (with fp32 gradients and AdamW moments) of the LoRA
// tensors and bf16 copies of them for the products. Base weights are frozen:
// backward computes activation gradients and LoRA gradients only.
//
// Kernels: fused RMSNorm (+ bf16 cast), RoPE (+ cast, + KV-cache write),
// SwiGLU, causal GQA attention that never materialises the T x T matrix
// (flash style: tiles of queries and keys in shared memory, online softmax;
// tensor cores through WMMA when head_dim is a multiple of 16) forward and
// backward, the LM head and cross-entropy in chunks of rows (the logits of a
// 128k vocabulary never exist for the whole batch), AdamW, and a KV cache
// whose batched decode step is captured once per batch size in a CUDA graph.
// The per-element math is kernels_math.h, shared with the CPU tests.
//
// Names follow model.c: a step has the same name here as there, and the
// kernel it launches adds _kernel. Device structs add a G to model.h's
// (GLayer, GLayerActs, GActs for Layer, LayerActs, Acts).
//
//   model.c                   kernels.cu, host            kernel
//   embed                     embed                       embed_kernel
//   rmsnorm_forward           rmsnorm_forward             rmsnorm_forward_kernel
//   rmsnorm_backward          rmsnorm_backward            rmsnorm_backward_kernel
//   linear_forward            linear_forward, or          cuBLAS (gemm)
//                             base_forward + lora_forward
//                             for the fused q/k/v
//                             (qkv_forward) and gate/up
//                             (gate_up_forward) products
//   linear_backward           linear_backward, or         cuBLAS (gemm)
//                             base_backward + lora_backward
//   rope                      rope (backward), qkv_rope   rope_kernel, qkv_rope_kernel
//                             (forward: bias, RoPE, cache)
//   attention_forward         attention_forward           attention_forward_kernel
//   attention_backward        attention_backward          attention_dsum_kernel,
//                                                         attention_backward_kernel
//   swiglu_forward            swiglu_forward              swiglu_forward_kernel
//   swiglu_backward           swiglu_backward             swiglu_backward_kernel
//   cross_entropy and         (in cuda_forward)           cross_entropy_kernel, both
//   cross_entropy_backward                                in one pass
//   layer_forward             layer_forward
//   layer_backward            layer_backward
//   model_forward             cuda_forward
//   model_backward            cuda_backward
//   carve_acts                carve_acts
//   acts_init, acts_free      acts_ensure, acts_free
//   kv_rows                   kv_rows + kv_head
//   kv_attention              (in kv_rows)                kv_attention_kernel
//   train.c adamw_step        cuda_adamw_step             adamw_kernel
//   train.c clip_grad_norm    cuda_clip_grad_norm         sumsq_kernel
//   generate.c argmax         cuda_kv_step_greedy         argmax_kernel
//   (fp32 to bf16 copies)     to_bf16                     to_bf16_kernel
//
// Every CUDA and cuBLAS call is checked; failures come back as messages
// (util.h's errf) and -1, never abort. Built with -DSEAL_CUDA_EMU this file
// compiles as plain C++ against test/cuda_emu.h, which runs the kernels on the
// CPU (one fiber per GPU thread), so `make test-cuda-emu` checks all of the
// logic below against model.c without a GPU.
#ifdef SEAL_CUDA_EMU
#include "test/cuda_emu.h"
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <mma.h>
#endif
extern "C" {
#include "kernels.h"
#include "model.h"
#include "util.h"
}
#include "kernels_math.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>

typedef __nv_bfloat16 bf16;

// ----------------------------------------------------------------------------
// Checking every call

static int cuda_fail(char *err, cudaError_t e, const char *what, int line) {
    return errf(err, "CUDA error: %s (%s, kernels.cu:%d)", cudaGetErrorString(e), what, line);
}
// cuBLAS is opened (dlopen) when the first CudaModel is made, not linked:
// loading libcublasLt costs a process about 0.1 s, which every seal command
// would otherwise pay, GPU or not. Set once; with the memory peak, the only
// global state here.
typedef cublasStatus_t (*BlasGemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *, const void *,
                                     cudaDataType, int, const void *, cudaDataType, int, const void *, void *, cudaDataType, int,
                                     cublasComputeType_t, cublasGemmAlgo_t);
static struct {
    void *lib;
    cublasStatus_t (*create)(cublasHandle_t *);
    cublasStatus_t (*destroy)(cublasHandle_t);
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
    cublasStatus_t (*set_workspace)(cublasHandle_t, void *, size_t);
    BlasGemmEx gemm_ex;
    const char *(*status)(cublasStatus_t);
} blas;

static const char *blas_status(cublasStatus_t s) { return blas.status ? blas.status(s) : "unknown cuBLAS status"; }

#ifdef SEAL_CUDA_EMU
static int blas_load(char *err) {
    (void)err;
    blas.create = cublasCreate;
    blas.destroy = cublasDestroy;
    blas.set_stream = cublasSetStream;
    blas.set_workspace = cublasSetWorkspace;
    blas.gemm_ex = cublasGemmEx;
    blas.status = cublasGetStatusString;
    return 0;
}
#else
#define SEAL_STR2(x) #x
#define SEAL_STR(x) SEAL_STR2(x)
#ifndef SEAL_CUDA_LIB
#define SEAL_CUDA_LIB "/usr/local/cuda/lib64"
#endif
// libcublas.so.<the major version of the headers>: from the library path, else
// from the toolkit this was built with.
static int blas_load(char *err) {
    if (blas.lib) return 0;
    const char *names[2] = {"libcublas.so." SEAL_STR(CUBLAS_VER_MAJOR), SEAL_CUDA_LIB "/libcublas.so." SEAL_STR(CUBLAS_VER_MAJOR)};
    void *lib = NULL;
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) return errf(err, "cuBLAS: cannot load %s: %s", names[0], dlerror());
    const char *sym[6] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasGemmEx", "cublasGetStatusString"};
    void *f[6];
    for (int i = 0; i < 6; i++)
        if (!(f[i] = dlsym(lib, sym[i]))) {
            errf(err, "cuBLAS: %s has no %s", names[0], sym[i]);
            dlclose(lib);
            return -1;
        }
    blas.create = reinterpret_cast<decltype(blas.create)>(f[0]);
    blas.destroy = reinterpret_cast<decltype(blas.destroy)>(f[1]);
    blas.set_stream = reinterpret_cast<decltype(blas.set_stream)>(f[2]);
    blas.set_workspace = reinterpret_cast<decltype(blas.set_workspace)>(f[3]);
    blas.gemm_ex = reinterpret_cast<BlasGemmEx>(f[4]);
    blas.status = reinterpret_cast<decltype(blas.status)>(f[5]);
    blas.lib = lib;
    return 0;
}
#endif

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) return cuda_fail(err, e_, #x, __LINE__); } while (0)
#define CB(x) do { cublasStatus_t s_ = (x); \
    if (s_ != CUBLAS_STATUS_SUCCESS) return errf(err, "cuBLAS error: %s (%s, kernels.cu:%d)", blas_status(s_), #x, __LINE__); } while (0)

#ifdef SEAL_CUDA_EMU
#define LAUNCH(k, grid, block, smem, st, ...) do { \
    emu::launch((const void *)(k), grid, block, smem, st, k, __VA_ARGS__); CK(cudaGetLastError()); } while (0)
#else
#define LAUNCH(k, grid, block, smem, st, ...) do { k<<<grid, block, smem, st>>>(__VA_ARGS__); CK(cudaGetLastError()); } while (0)
#endif

// Blocks for a grid-stride loop over n elements.
static unsigned grid_for(size_t n, int threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 8192 ? 8192 : b);
}

// ----------------------------------------------------------------------------
// Device helpers

#define FULL_MASK 0xffffffffu

#ifdef SEAL_EMU_EXACT   // the emulator's exact mode: a "bf16" holds a float (test/cuda_emu.h)
static inline float bf2f(bf16 x) { return emu_bf_load(x); }
static inline bf16 f2bf(float f) { return emu_bf_store(f); }
#else
static __device__ __forceinline__ float bf2f(bf16 x) { return seal_bf2f(__bfloat16_as_ushort(x)); }
static __device__ __forceinline__ bf16 f2bf(float f) { return __ushort_as_bfloat16(seal_f2bf(f)); }
#endif
static __host__ __device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

#ifdef SEAL_CUDA_EMU
static unsigned char *dyn_smem() { return emu::dyn_smem(); }
#else
static __device__ __forceinline__ unsigned char *dyn_smem() {
    extern __shared__ __align__(128) unsigned char seal_smem[];
    return seal_smem;
}
#endif

// ----------------------------------------------------------------------------
// Elementwise kernels. Shapes: N rows, D hidden, F MLP, V vocab.

// y (n) = bf16(x (n))
__global__ void to_bf16_kernel(const float *x, bf16 *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] = f2bf(x[i]);
}

// x (R,D) fp32 = embedding rows ids[r] (bf16). One block per row.
__global__ void embed_kernel(const int *ids, const bf16 *emb, float *x, int D) {
    const int r = blockIdx.x;
    const bf16 *e = emb + (size_t)ids[r] * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) x[(size_t)r * D + i] = bf2f(e[i]);
}

// out (N,D) bf16 = x * rstd * w; rstd (N) kept when not NULL. One warp per row.
__global__ void rmsnorm_forward_kernel(const float *x, const float *w, bf16 *out, float *rstd, int N, int D, float eps) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + (size_t)row * D;
    float ss = 0.0f;
    for (int i = lane; i < D; i += 32) ss += xr[i] * xr[i];
    const float r = seal_rmsnorm_rstd(warp_sum(ss), D, eps);
    if (lane == 0 && rstd) rstd[row] = r;
    for (int i = lane; i < D; i += 32) out[(size_t)row * D + i] = f2bf(seal_rmsnorm_out(xr[i], r, w[i]));
}

// dx (N,D) = dres (0 when NULL) + the gradient of rmsnorm(x) given dout; its
// bf16 copy into dxb. One warp per row.
__global__ void rmsnorm_backward_kernel(float *dx, bf16 *dxb, const float *dres, const float *dout, const float *x,
                                   const float *w, const float *rstd, int N, int D) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const size_t o = (size_t)row * D;
    float dwx = 0.0f;
    for (int i = lane; i < D; i += 32) dwx += dout[o + i] * w[i] * x[o + i];
    const float r = rstd[row], k = seal_rmsnorm_k(warp_sum(dwx), r, D);
    for (int i = lane; i < D; i += 32) {
        const float v = (dres ? dres[o + i] : 0.0f) + seal_rmsnorm_dx(dout[o + i], w[i], x[o + i], r, k);
        dx[o + i] = v;
        dxb[o + i] = f2bf(v);
    }
}

// Where row n of a (rows, nh*hd) activation goes: y + n*row_stride, or, for
// the KV cache, y + seq[n]*seq_stride + pos[n]*row_stride. Its position is
// pos[n], or n % T when pos is NULL (a training batch of B sequences of T).
struct RowMap {
    const int *pos, *seq;
    int T;
    long seq_stride, row_stride;
};

static __device__ __forceinline__ bf16 *row_at(bf16 *y, const RowMap &map, int n, int p) {
    return y + (map.seq ? map.seq[n] * map.seq_stride + (long)p * map.row_stride : (long)n * map.row_stride);
}

// Rows of x (N, nh*hd; row stride x_rs) fp32 to bf16 rows of y, turned by
// RoPE (rotate_half pairs j, j + hd/2; sign -1 turns back) when cosv is not
// NULL. cosv, sinv are (positions, hd/2).
__global__ void rope_kernel(const float *x, long x_rs, bf16 *y, const float *cosv, const float *sinv, RowMap map, int N, int nh, int hd,
                            float sign) {
    const int half = hd / 2;
    const size_t total = (size_t)N * nh * half;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(e % half), h = (int)(e / half % nh), n = (int)(e / half / nh);
        const int p = map.pos ? map.pos[n] : n % map.T;
        const float *xv = x + n * x_rs + (long)h * hd;
        bf16 *yv = row_at(y, map, n, p) + (long)h * hd;
        float y1 = xv[j], y2 = xv[j + half];
        if (cosv) seal_rope(xv[j], xv[j + half], cosv[(size_t)p * half + j], sinv[(size_t)p * half + j], sign, &y1, &y2);
        yv[j] = f2bf(y1);
        yv[j + half] = f2bf(y2);
    }
}

// The fused projection x (N, (H + 2 KV) hd): per row the H query heads, the KV
// key heads, the KV value heads. Qwen2's biases (the same layout, one row) are
// added when bias is not NULL. Queries and keys turn by RoPE; all three go
// to bf16: queries through qmap into q, keys and values through kvmap into k
// and v (the KV cache when kvmap has seq). One launch for what decoding would
// otherwise launch three times.
__global__ void qkv_rope_kernel(const float *x, const float *bias, bf16 *q, bf16 *k, bf16 *v, const float *cosv, const float *sinv, RowMap qmap,
                           RowMap kvmap, int N, int H, int KV, int hd) {
    const int half = hd / 2, nh = H + 2 * KV;
    const size_t total = (size_t)N * nh * half;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(e % half), hh = (int)(e / half % nh), n = (int)(e / half / nh);
        const RowMap &map = hh < H ? qmap : kvmap;
        const int p = map.pos ? map.pos[n] : n % map.T;
        const float *xv = x + (size_t)n * nh * hd + (size_t)hh * hd;
        bf16 *yv = hh < H ? row_at(q, qmap, n, p) + (long)hh * hd
                 : hh < H + KV ? row_at(k, kvmap, n, p) + (long)(hh - H) * hd : row_at(v, kvmap, n, p) + (long)(hh - H - KV) * hd;
        float x1 = xv[j], x2 = xv[j + half];
        if (bias) {
            x1 += bias[(size_t)hh * hd + j];
            x2 += bias[(size_t)hh * hd + j + half];
        }
        float y1 = x1, y2 = x2;
        if (hh < H + KV) seal_rope(x1, x2, cosv[(size_t)p * half + j], sinv[(size_t)p * half + j], 1.0f, &y1, &y2);
        yv[j] = f2bf(y1);
        yv[j + half] = f2bf(y2);
    }
}

// h (N,F) = silu(gate) * up from the fused fp32 product gu (N, 2F): per row
// F gate values, then F up values. bf16 copies of gate and up (N,F) kept for
// backward when g is not NULL.
__global__ void swiglu_forward_kernel(const float *gu, bf16 *g, bf16 *u, bf16 *h, int N, int F) {
    const size_t n = (size_t)N * F;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t at = i / F * 2 * F + i % F;
        const float gv = gu[at], uv = gu[at + F];
        if (g) {
            g[i] = f2bf(gv);
            u[i] = f2bf(uv);
        }
        h[i] = f2bf(seal_swiglu(gv, uv));
    }
}

// dgu (N, 2F) bf16: d gate then d up per row, from dh, gate, up (N,F).
__global__ void swiglu_backward_kernel(const float *dh, const bf16 *g, const bf16 *u, bf16 *dgu, int N, int F) {
    const size_t n = (size_t)N * F;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t at = i / F * 2 * F + i % F;
        float a, b;
        seal_swiglu_backward(dh[i], bf2f(g[i]), bf2f(u[i]), &a, &b);
        dgu[at] = f2bf(a);
        dgu[at + F] = f2bf(b);
    }
}

// One row of logits (V) per block: row_loss = its cross-entropy with target
// tgt (0 when tgt < 0); dlogits, when not NULL, gets d loss / d logits in
// bf16 (rows without a target: zeros). n_valid: the positions that carry loss.
__global__ void cross_entropy_kernel(const float *logits, const int *tgt, float *row_loss, bf16 *dlogits, int V, float n_valid) {
    __shared__ float sm[32], sl[32];
    const int r = blockIdx.x, y = tgt[r], warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    const float *x = logits + (size_t)r * V;
    float m = -INFINITY, l = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) seal_softmax_push(&m, &l, x[i]);
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(FULL_MASK, m, o), l2 = __shfl_xor_sync(FULL_MASK, l, o);
        seal_softmax_merge(&m, &l, m2, l2);
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    __syncthreads();
    m = -INFINITY;
    l = 0.0f;
    for (int w = 0; w < nw; w++) seal_softmax_merge(&m, &l, sm[w], sl[w]);
    if (threadIdx.x == 0) row_loss[r] = y >= 0 ? m + logf(l) - x[y] : 0.0f;
    if (!dlogits) return;
    bf16 *d = dlogits + (size_t)r * V;
    const float inv_l_n = 1.0f / (l * n_valid), inv_n = 1.0f / n_valid;
    for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = f2bf(y >= 0 ? seal_ce_grad(x[i], m, inv_l_n, i == y, inv_n) : 0.0f);
}

// torch.optim.AdamW on n fp32 masters p with moments m, v; pb gets bf16(p).
__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, bf16 *pb, size_t n, SealAdamW a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        seal_adamw(&pi, &mi, &vi, g[i], &a);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        pb[i] = f2bf(pi);
    }
}

// *out += sum x^2 over n values, in double.
__global__ void sumsq_kernel(const float *x, size_t n, double *out) {
    __shared__ double ws[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
    if (threadIdx.x % 32 == 0) ws[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) t += ws[w];
        atomicAdd(out, t);
    }
}

// out[r] = the index of the largest value of logits row r (V), the lowest
// index on ties (generate.c's argmax). One block per row.
__global__ void argmax_kernel(const float *logits, int V, int *out) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *x = logits + (size_t)blockIdx.x * V;
    float bv = -INFINITY;
    int bi = -1;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (bi < 0 || x[i] > bv) {
            bv = x[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(FULL_MASK, bv, o);
        const int i2 = __shfl_xor_sync(FULL_MASK, bi, o);
        if (bi < 0 || (i2 >= 0 && (v2 > bv || (v2 == bv && i2 < bi)))) {
            bv = v2;
            bi = i2;
        }
    }
    if (threadIdx.x % 32 == 0) {
        sv[threadIdx.x / 32] = bv;
        si[threadIdx.x / 32] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)blockDim.x / 32; w++)
            if (bi < 0 || (si[w] >= 0 && (sv[w] > bv || (sv[w] == bv && si[w] < bi)))) {
                bv = sv[w];
                bi = si[w];
            }
        out[blockIdx.x] = bi;
    }
}

// ----------------------------------------------------------------------------
// Attention. q (rows, H*hd), k and v (rows, KV*hd), query head h reads
// key/value head h / (H/KV); causal: query at position t sees keys 0..t.
//
// Flash style: a block owns a tile of BQ query rows of one head and walks
// over tiles of BK keys, keeping in shared memory the running max and sum of
// each row (online softmax) and its output accumulator; the scores of one
// tile pair are all that ever exists of the T x T matrix. The products of
// the tiles run on tensor cores (WMMA, bf16 in, fp32 out) when TC is set
// (head_dim a multiple of 16), else as plain loops.

enum { ATT_THREADS = 256 };

// C (M,N) fp32 = A (M,K) B^T, B (N,K); all row-major in shared memory.
template <bool TC>
static __device__ void mm_abt(float *C, int ldc, const bf16 *A, int lda, const bf16 *B, int ldb, int M, int N, int K) {
    if constexpr (TC) {
        using namespace nvcuda;
        const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / 16;
        for (int t = warp; t < M / 16 * tn; t += nw) {
            const int ti = t / tn, tj = t % tn;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
            for (int k = 0; k < K; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(a, A + ti * 16 * lda + k, lda);
                wmma::load_matrix_sync(b, B + tj * 16 * ldb + k, ldb);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(C + ti * 16 * ldc + tj * 16, c, ldc, wmma::mem_row_major);
        }
    } else {
        for (int e = threadIdx.x; e < M * N; e += blockDim.x) {
            const int i = e / N, j = e % N;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += bf2f(A[i * lda + k]) * bf2f(B[j * ldb + k]);
            C[i * ldc + j] = acc;
        }
    }
}

// C (M,N) fp32 = (accumulate ? C : 0) + A (M,K) B (K,N). A is Ab (bf16) on
// tensor cores, else Af (fp32).
template <bool TC>
static __device__ void mm_ab(float *C, int ldc, const float *Af, int ldaf, const bf16 *Ab, int ldab, const bf16 *B, int ldb,
                             int M, int N, int K, bool accumulate) {
    if constexpr (TC) {
        using namespace nvcuda;
        const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / 16;
        for (int t = warp; t < M / 16 * tn; t += nw) {
            const int ti = t / tn, tj = t % tn;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            if (accumulate) wmma::load_matrix_sync(c, C + ti * 16 * ldc + tj * 16, ldc, wmma::mem_row_major);
            else wmma::fill_fragment(c, 0.0f);
            for (int k = 0; k < K; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ab + ti * 16 * ldab + k, ldab);
                wmma::load_matrix_sync(b, B + k * ldb + tj * 16, ldb);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(C + ti * 16 * ldc + tj * 16, c, ldc, wmma::mem_row_major);
        }
    } else {
        for (int e = threadIdx.x; e < M * N; e += blockDim.x) {
            const int i = e / N, j = e % N;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += Af[i * ldaf + k] * bf2f(B[k * ldb + j]);
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc : acc;
        }
    }
}

// C (M,N) fp32 += A^T B, A (K,M), B (K,N). A is Ab (bf16) on tensor cores, else Af.
template <bool TC>
static __device__ void mm_atb(float *C, int ldc, const float *Af, int ldaf, const bf16 *Ab, int ldab, const bf16 *B, int ldb,
                              int M, int N, int K) {
    if constexpr (TC) {
        using namespace nvcuda;
        const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / 16;
        for (int t = warp; t < M / 16 * tn; t += nw) {
            const int ti = t / tn, tj = t % tn;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::load_matrix_sync(c, C + ti * 16 * ldc + tj * 16, ldc, wmma::mem_row_major);
            for (int k = 0; k < K; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> a;   // A^T: element (i,k) at A[k][i]
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ab + k * ldab + ti * 16, ldab);
                wmma::load_matrix_sync(b, B + k * ldb + tj * 16, ldb);
                wmma::mma_sync(c, a, b, c);
            }
            wmma::store_matrix_sync(C + ti * 16 * ldc + tj * 16, c, ldc, wmma::mem_row_major);
        }
    } else {
        for (int e = threadIdx.x; e < M * N; e += blockDim.x) {
            const int i = e / N, j = e % N;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += Af[k * ldaf + i] * bf2f(B[k * ldb + j]);
            C[i * ldc + j] += acc;
        }
    }
}

// Shared memory of the attention kernels: byte offsets, each 128-aligned.
// Row strides are padded (bf16 by 8, fp32 by 4: WMMA's 16-byte multiples)
// against bank conflicts.
static __host__ __device__ size_t take(size_t *off, size_t bytes) {
    const size_t at = *off;
    *off += (bytes + 127) / 128 * 128;
    return at;
}

struct FwdLayout { int ldq, lds, ldp, ldo; size_t q, k, v, s, p, o, m, l, total; };

static __host__ __device__ FwdLayout fwd_layout(int BQ, int BK, int hd) {
    FwdLayout L;
    size_t off = 0;
    L.ldq = hd + 8;
    L.lds = BK + 4;
    L.ldp = BK + 8;
    L.ldo = hd + 4;
    L.q = take(&off, (size_t)BQ * L.ldq * sizeof(bf16));
    L.k = take(&off, (size_t)BK * L.ldq * sizeof(bf16));
    L.v = take(&off, (size_t)BK * L.ldq * sizeof(bf16));
    L.s = take(&off, (size_t)BQ * L.lds * 4);
    L.p = take(&off, (size_t)BQ * L.ldp * sizeof(bf16));
    L.o = take(&off, (size_t)BQ * L.ldo * 4);
    L.m = take(&off, (size_t)BQ * 4);
    L.l = take(&off, (size_t)BQ * 4);
    L.total = off;
    return L;
}

// Element strides: entry b of the batch starts at b * *_bs, row i of it at
// i * *_rs. Query row i sits at position pos0 + i and sees keys 0..pos0+i
// (pos0 > 0: a prompt chunk attending to the KV cache).
struct AttnFwd {
    const bf16 *q, *k, *v;
    bf16 *o;                      // q's layout
    float *lse;                   // (nb, H, Tq) log-sum-exp of each row's scores, or NULL
    long q_bs, kv_bs;
    int q_rs, kv_rs, Tq, pos0, H, KV, hd;
    float scale;
};

// grid (ceil(Tq/BQ), H, nb), ATT_THREADS threads.
template <int BQ, int BK, bool TC>
__global__ void __launch_bounds__(ATT_THREADS) attention_forward_kernel(AttnFwd a) {
    const FwdLayout L = fwd_layout(BQ, BK, a.hd);
    unsigned char *sm = dyn_smem();
    bf16 *Qs = (bf16 *)(sm + L.q), *Ks = (bf16 *)(sm + L.k), *Vs = (bf16 *)(sm + L.v), *P = (bf16 *)(sm + L.p);
    float *S = (float *)(sm + L.s), *O = (float *)(sm + L.o), *M = (float *)(sm + L.m), *Lsum = (float *)(sm + L.l);
    const int tid = threadIdx.x, nt = blockDim.x, warp = tid / 32, lane = tid % 32, nw = nt / 32;
    const int hd = a.hd, b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ, kh = h / (a.H / a.KV);
    const int nq = imin(BQ, a.Tq - q0);
    const bf16 *qg = a.q + b * a.q_bs + (long)q0 * a.q_rs + h * hd;
    const bf16 *kg = a.k + b * a.kv_bs + kh * hd, *vg = a.v + b * a.kv_bs + kh * hd;
    const bf16 zero = f2bf(0.0f);
    for (int e = tid; e < BQ * hd; e += nt) {
        const int i = e / hd, d = e % hd;
        Qs[i * L.ldq + d] = i < nq ? qg[(long)i * a.q_rs + d] : zero;
        O[i * L.ldo + d] = 0.0f;
    }
    for (int i = tid; i < BQ; i += nt) {
        M[i] = -INFINITY;
        Lsum[i] = 0.0f;
    }
    const int n_keys = a.pos0 + q0 + nq;   // keys any row of this tile sees
    for (int k0 = 0; k0 < n_keys; k0 += BK) {
        const int nk = imin(BK, n_keys - k0);
        __syncthreads();   // the previous tile's products are done with Ks, Vs, P
        for (int e = tid; e < BK * hd; e += nt) {
            const int j = e / hd, d = e % hd;
            Ks[j * L.ldq + d] = j < nk ? kg[(long)(k0 + j) * a.kv_rs + d] : zero;
            Vs[j * L.ldq + d] = j < nk ? vg[(long)(k0 + j) * a.kv_rs + d] : zero;
        }
        __syncthreads();
        mm_abt<TC>(S, L.lds, Qs, L.ldq, Ks, L.ldq, BQ, BK, hd);   // S = Q K^T
        __syncthreads();
        for (int i = warp; i < BQ; i += nw) {   // a warp per row: online softmax over this tile
            const int last = a.pos0 + q0 + i - k0;   // the row's last visible key in this tile
            float mx = -INFINITY;
            for (int j = lane; j < BK; j += 32) {
                const float s = i < nq && j < nk && j <= last ? S[i * L.lds + j] * a.scale : -INFINITY;
                S[i * L.lds + j] = s;
                mx = fmaxf(mx, s);
            }
            mx = warp_max(mx);
            const float m_old = M[i], m_new = fmaxf(m_old, mx), alpha = seal_softmax_rescale(m_old, m_new);
            float sum = 0.0f;
            for (int j = lane; j < BK; j += 32) {
                const float p = seal_softmax_weight(S[i * L.lds + j], m_new);
                S[i * L.lds + j] = p;
                if (TC) P[i * L.ldp + j] = f2bf(p);
                sum += p;
            }
            sum = warp_sum(sum);
            for (int d = lane; d < hd; d += 32) O[i * L.ldo + d] *= alpha;
            if (lane == 0) {
                M[i] = m_new;
                Lsum[i] = Lsum[i] * alpha + sum;
            }
        }
        __syncthreads();
        mm_ab<TC>(O, L.ldo, S, L.lds, P, L.ldp, Vs, L.ldq, BQ, hd, BK, true);   // O += P V
    }
    __syncthreads();
    bf16 *og = a.o + b * a.q_bs + (long)q0 * a.q_rs + h * hd;
    for (int e = tid; e < nq * hd; e += nt) {
        const int i = e / hd, d = e % hd;
        og[(long)i * a.q_rs + d] = f2bf(O[i * L.ldo + d] / Lsum[i]);
    }
    if (a.lse)
        for (int i = tid; i < nq; i += nt) a.lse[((long)b * a.H + h) * a.Tq + q0 + i] = M[i] + logf(Lsum[i]);
}

// dsum[b,h,t] = sum_d dO * O over one row and head; dob = bf16(dO). One warp
// per (row, head). dout fp32 and o bf16 are (N, H*hd); N = nb * T.
__global__ void attention_dsum_kernel(const float *dout, const bf16 *o, bf16 *dob, float *dsum, int N, int T, int H, int hd) {
    const int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * H) return;
    const int n = w / H, h = w % H;
    const size_t base = (size_t)n * H * hd + (size_t)h * hd;
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) {
        s += dout[base + d] * bf2f(o[base + d]);
        dob[base + d] = f2bf(dout[base + d]);
    }
    s = warp_sum(s);
    if (lane == 0) dsum[((size_t)(n / T) * H + h) * T + n % T] = s;
}

struct BwdLayout { int ldq, lds, ldp, ldo; size_t k, v, dk, dv, q, dout, s, dp, pb, dsb, lse, dsum, total; };

static __host__ __device__ BwdLayout bwd_layout(int BQ, int BK, int hd) {
    BwdLayout L;
    size_t off = 0, sp;
    L.ldq = hd + 8;
    L.lds = BK + 4;
    L.ldp = BK + 8;
    L.ldo = hd + 4;
    L.k = take(&off, (size_t)BK * L.ldq * sizeof(bf16));
    L.v = take(&off, (size_t)BK * L.ldq * sizeof(bf16));
    L.dk = take(&off, (size_t)BK * L.ldo * 4);
    L.dv = take(&off, (size_t)BK * L.ldo * 4);
    L.q = take(&off, (size_t)BQ * L.ldq * sizeof(bf16));
    L.dout = take(&off, (size_t)BQ * L.ldq * sizeof(bf16));
    // S and dP side by side; on tensor cores the same bytes later hold the
    // (BQ, hd) fp32 tile of dQ.
    sp = 2 * (size_t)BQ * L.lds * 4;
    if ((size_t)BQ * L.ldo * 4 > sp) sp = (size_t)BQ * L.ldo * 4;
    L.s = take(&off, sp);
    L.dp = L.s + (size_t)BQ * L.lds * 4;
    L.pb = take(&off, (size_t)BQ * L.ldp * sizeof(bf16));
    L.dsb = take(&off, (size_t)BQ * L.ldp * sizeof(bf16));
    L.lse = take(&off, (size_t)BQ * 4);
    L.dsum = take(&off, (size_t)BQ * 4);
    L.total = off;
    return L;
}

struct AttnBwd {
    const bf16 *q, *k, *v, *dout;   // dout: bf16, q's layout
    const float *lse, *dsum;        // (nb, H, T)
    float *dq, *dk, *dv;            // fp32; dq zeroed before (atomics), dk and dv overwritten
    long q_bs, kv_bs;
    int q_rs, kv_rs, T, H, KV, hd;
    float scale;
};

// FlashAttention-2's backward: a block owns a tile of BK keys of one
// key/value head and walks over the query tiles that see them, for each of
// the H/KV query heads that share the head, so dK and dV accumulate in shared
// memory and are written once; dQ accumulates in global memory by atomics.
// grid (ceil(T/BK), KV, nb), ATT_THREADS threads.
template <int BQ, int BK, bool TC>
__global__ void __launch_bounds__(ATT_THREADS) attention_backward_kernel(AttnBwd a) {
    const BwdLayout L = bwd_layout(BQ, BK, a.hd);
    unsigned char *sm = dyn_smem();
    bf16 *Ks = (bf16 *)(sm + L.k), *Vs = (bf16 *)(sm + L.v), *Qs = (bf16 *)(sm + L.q), *dOs = (bf16 *)(sm + L.dout);
    bf16 *Pb = (bf16 *)(sm + L.pb), *dSb = (bf16 *)(sm + L.dsb);
    float *dKs = (float *)(sm + L.dk), *dVs = (float *)(sm + L.dv), *S = (float *)(sm + L.s), *dP = (float *)(sm + L.dp);
    float *Ls = (float *)(sm + L.lse), *Ds = (float *)(sm + L.dsum);
    const int tid = threadIdx.x, nt = blockDim.x;
    const int hd = a.hd, b = blockIdx.z, kh = blockIdx.y, k0 = blockIdx.x * BK, g = a.H / a.KV;
    const int nk = imin(BK, a.T - k0);
    const bf16 zero = f2bf(0.0f);
    const bf16 *kg = a.k + b * a.kv_bs + (long)k0 * a.kv_rs + kh * hd, *vg = a.v + b * a.kv_bs + (long)k0 * a.kv_rs + kh * hd;
    for (int e = tid; e < BK * hd; e += nt) {
        const int j = e / hd, d = e % hd;
        Ks[j * L.ldq + d] = j < nk ? kg[(long)j * a.kv_rs + d] : zero;
        Vs[j * L.ldq + d] = j < nk ? vg[(long)j * a.kv_rs + d] : zero;
        dKs[j * L.ldo + d] = 0.0f;
        dVs[j * L.ldo + d] = 0.0f;
    }
    for (int h = kh * g; h < (kh + 1) * g; h++) {
        const bf16 *qg = a.q + b * a.q_bs + h * hd, *og = a.dout + b * a.q_bs + h * hd;
        const float *lse = a.lse + ((long)b * a.H + h) * a.T, *dsum = a.dsum + ((long)b * a.H + h) * a.T;
        float *dqg = a.dq + b * a.q_bs + h * hd;
        for (int q0 = k0 / BQ * BQ; q0 < a.T; q0 += BQ) {
            const int nq = imin(BQ, a.T - q0);
            __syncthreads();   // the previous tile is done with Qs, dOs, S, dP
            for (int e = tid; e < BQ * hd; e += nt) {
                const int i = e / hd, d = e % hd;
                Qs[i * L.ldq + d] = i < nq ? qg[(long)(q0 + i) * a.q_rs + d] : zero;
                dOs[i * L.ldq + d] = i < nq ? og[(long)(q0 + i) * a.q_rs + d] : zero;
            }
            for (int i = tid; i < BQ; i += nt) {
                Ls[i] = i < nq ? lse[q0 + i] : 0.0f;
                Ds[i] = i < nq ? dsum[q0 + i] : 0.0f;
            }
            __syncthreads();
            mm_abt<TC>(S, L.lds, Qs, L.ldq, Ks, L.ldq, BQ, BK, hd);     // S = Q K^T
            mm_abt<TC>(dP, L.lds, dOs, L.ldq, Vs, L.ldq, BQ, BK, hd);   // dP = dO V^T
            __syncthreads();
            for (int e = tid; e < BQ * BK; e += nt) {   // P = softmax rows again from lse; dS = P (dP - D) * scale
                const int i = e / BK, j = e % BK;
                const bool seen = i < nq && j < nk && k0 + j <= q0 + i;
                const float p = seen ? expf(S[i * L.lds + j] * a.scale - Ls[i]) : 0.0f;
                const float ds = p * (dP[i * L.lds + j] - Ds[i]) * a.scale;
                S[i * L.lds + j] = p;
                dP[i * L.lds + j] = ds;
                if (TC) {
                    Pb[i * L.ldp + j] = f2bf(p);
                    dSb[i * L.ldp + j] = f2bf(ds);
                }
            }
            __syncthreads();
            mm_atb<TC>(dVs, L.ldo, S, L.lds, Pb, L.ldp, dOs, L.ldq, BK, hd, BQ);    // dV += P^T dO
            mm_atb<TC>(dKs, L.ldo, dP, L.lds, dSb, L.ldp, Qs, L.ldq, BK, hd, BQ);   // dK += dS^T Q
            if constexpr (TC) {
                float *dQs = S;   // S and dP are free: the products read their bf16 copies
                mm_ab<TC>(dQs, L.ldo, S, L.lds, dSb, L.ldp, Ks, L.ldq, BQ, hd, BK, false);   // dQ tile = dS K
                __syncthreads();
                for (int e = tid; e < nq * hd; e += nt) {
                    const int i = e / hd, d = e % hd;
                    atomicAdd(&dqg[(long)(q0 + i) * a.q_rs + d], dQs[i * L.ldo + d]);
                }
            } else {
                for (int e = tid; e < nq * hd; e += nt) {
                    const int i = e / hd, d = e % hd;
                    float acc = 0.0f;
                    for (int j = 0; j < BK; j++) acc += dP[i * L.lds + j] * bf2f(Ks[j * L.ldq + d]);
                    atomicAdd(&dqg[(long)(q0 + i) * a.q_rs + d], acc);
                }
            }
        }
    }
    __syncthreads();
    float *dkg = a.dk + b * a.kv_bs + (long)k0 * a.kv_rs + kh * hd, *dvg = a.dv + b * a.kv_bs + (long)k0 * a.kv_rs + kh * hd;
    for (int e = tid; e < nk * hd; e += nt) {
        const int j = e / hd, d = e % hd;
        dkg[(long)j * a.kv_rs + d] = dKs[j * L.ldo + d];
        dvg[(long)j * a.kv_rs + d] = dVs[j * L.ldo + d];
    }
}

// Decode: row i of q (R, H*hd) is sequence seq[i] at position pos[i] and
// attends to that sequence's cached keys 0..pos[i]. grid (H, R), DEC_WARPS
// warps: each warp takes 32 keys at a time, a lane per key for the scores,
// then a lane per dimension for the weighted values; the warps' online
// softmax states merge at the end.
enum { DEC_WARPS = 4, DEC_MAX_HD = 256 };

// q (hd, fp32 in shared memory) . k (hd, bf16)
static __device__ __forceinline__ float dot_q_k(const float *q, const bf16 *k, int hd) {
    float s = 0.0f;
    if (hd % 8 == 0 && sizeof(bf16) == 2) {   // 16-byte loads: the cache rows are 16-byte aligned then
        const uint4 *k4 = (const uint4 *)k;
        for (int c = 0; c < hd / 8; c++) {
            const uint4 w = k4[c];
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int t = 0; t < 4; t++) {
                s += q[c * 8 + 2 * t] * seal_f32_from_bits(u[t] << 16);
                s += q[c * 8 + 2 * t + 1] * seal_f32_from_bits(u[t] & 0xffff0000u);
            }
        }
    } else {
        for (int d = 0; d < hd; d++) s += q[d] * bf2f(k[d]);
    }
    return s;
}

__global__ void __launch_bounds__(DEC_WARPS * 32) kv_attention_kernel(const bf16 *q, const bf16 *kc, const bf16 *vc, bf16 *o, const int *seq,
                                                                const int *pos, long seq_stride, int H, int KV, int hd, float scale) {
    __shared__ float qs[DEC_MAX_HD], wm[DEC_WARPS], wl[DEC_WARPS], wo[DEC_WARPS][DEC_MAX_HD];
    const int h = blockIdx.x, i = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int Dq = H * hd, Dkv = KV * hd, kh = h / (H / KV), n_keys = pos[i] + 1;
    const bf16 *K = kc + seq[i] * seq_stride + kh * hd, *V = vc + seq[i] * seq_stride + kh * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = bf2f(q[(size_t)i * Dq + h * hd + d]);
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc[DEC_MAX_HD / 32];
#pragma unroll
    for (int c = 0; c < DEC_MAX_HD / 32; c++) acc[c] = 0.0f;
    for (int s0 = warp * 32; s0 < n_keys; s0 += DEC_WARPS * 32) {
        const int s = s0 + lane;
        const float score = s < n_keys ? dot_q_k(qs, K + (long)s * Dkv, hd) * scale : -INFINITY;
        const float m_new = fmaxf(m, warp_max(score)), alpha = seal_softmax_rescale(m, m_new);
        const float p = seal_softmax_weight(score, m_new);
        l = l * alpha + warp_sum(p);
#pragma unroll
        for (int c = 0; c < DEC_MAX_HD / 32; c++) acc[c] *= alpha;
        const int nj = imin(32, n_keys - s0);
        for (int j = 0; j < nj; j++) {
            const float pj = __shfl_sync(FULL_MASK, p, j);
            const bf16 *vr = V + (long)(s0 + j) * Dkv;
#pragma unroll
            for (int c = 0; c < DEC_MAX_HD / 32; c++)
                if (lane + 32 * c < hd) acc[c] += pj * bf2f(vr[lane + 32 * c]);
        }
        m = m_new;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int c = 0; c < DEC_MAX_HD / 32; c++)
        if (lane + 32 * c < hd) wo[warp][lane + 32 * c] = acc[c];
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float mx = -INFINITY, sum = 0.0f, out = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) mx = fmaxf(mx, wm[w]);
        for (int w = 0; w < DEC_WARPS; w++) {
            const float f = seal_softmax_weight(wm[w], mx);
            sum += wl[w] * f;
            out += wo[w][d] * f;
        }
        o[(size_t)i * Dq + h * hd + d] = f2bf(out / sum);
    }
}

// ----------------------------------------------------------------------------
// Host side: the model on the device

enum { STAGE_FLOATS = 16 << 20, CE_THREADS = 512, NORM_WARPS = 8, PREFILL_ROWS = 1024 };
static const size_t CE_CHUNK_ELEMS = (size_t)64 << 20;   // logits per chunk of rows
static const size_t BLAS_WORKSPACE = (size_t)32 << 20;

typedef struct {
    bf16 *w;                      // (out, in)
    int in, out, r;               // r = 0: no adapter
    float scale;
    float *a, *b, *da, *db;       // fp32 masters and gradients: A (r,in), B (out,r)
    bf16 *ab, *bb;                // their bf16 copies
} GLinear;

// q, k, v weights lie back to back (one (Dq + 2 Dkv, D) matrix, one product)
// and so do gate and up ((2F, D)); p[].w point into them. Qwen2's q, k, v
// biases, fp32 like the norms, lie back to back too (bqkv, Dq + 2 Dkv; NULL
// for a Llama). Nothing trains them on the GPU: the base is frozen.
typedef struct {
    float *attn_norm, *mlp_norm, *bqkv;
    bf16 *wqkv, *wgu;
    GLinear p[N_PROJ];
} GLayer;

// What layer l's forward keeps for its backward: model.h's LayerActs, in bf16
// where only a product reads it, and with the log-sum-exp of each row of
// scores (flash attention recomputes the probabilities from it) in place of att.
typedef struct {
    float *res;                   // (N, D) the layer's input: the residual stream
    bf16 *ln1;                    // (N, D)
    float *rstd1;                 // (N)
    bf16 *q, *k, *v;              // (N, H*hd), (N, KV*hd), (N, KV*hd); q and k turned by RoPE
    float *lse;                   // (B, H, T)
    bf16 *atty;                   // (N, H*hd)
    float *mid;                   // (N, D)
    bf16 *ln2;                    // (N, D)
    float *rstd2;                 // (N)
    bf16 *gate, *up, *h;          // (N, F) each
    bf16 *u[N_PROJ];              // (N, r) x A^T of each adapted projection, else NULL
} GLayerActs;

// model.h's Acts on the device, N = B*T.
typedef struct {
    int B, T, N, CH, ready;       // CH: rows per LM-head chunk; ready: backward may run
    void *mem;                    // the one allocation
    float *rope_cos, *rope_sin;   // (T, hd/2) each, back to back
    GLayerActs *layers;           // (n_layers)
    float *res_out;               // (N, D) the last layer's output
    bf16 *lnf;                    // (N, D)
    float *rstdf;                 // (N)
    float *logits;                // (CH, V): one chunk of rows at a time
    bf16 *d_logits;               // (CH, V)
    float *row_loss;              // (N)
    int *ids, *tgt;               // (N) each; tgt: labels shifted by one, -1 ignored
    float *s32;                   // (N, max(Dq + 2 Dkv, 2F)) fp32 products: qkv, gu, d_h, d_atty
    // Gradients of one layer at a time, with bf16 copies for the products.
    float *d_res, *d_mid, *d_ln;  // (N, D)
    bf16 *d_res_b, *d_mid_b;      // (N, D)
    float *d_q, *d_k, *d_v;       // (N, H*hd), (N, KV*hd), (N, KV*hd)
    bf16 *d_qkv, *d_atty_b;       // (N, Dq + 2 Dkv) as the fused weights, (N, H*hd)
    float *dsum;                  // (B, H, T) sum over hd of d_atty * atty
    bf16 *d_gu, *d_u;             // (N, 2F) as the fused weights, (N, r)
    float *d_lnf;                 // (N, D)
    // The adapters of the last forward (model.h's Acts): batch rows [b0[j],
    // b0[j+1]) go through adapter which[j] of the K on the device.
    int K, which[MAX_ADAPTERS], b0[MAX_ADAPTERS + 1];
} GActs;

typedef void (*FwdKernel)(AttnFwd);
typedef void (*BwdKernel)(AttnBwd);

struct CudaModel {
    Config c;
    cudaStream_t st;
    cublasHandle_t blas;
    void *blas_ws;
    void *wmem;                   // base weights (bf16) and norms (fp32)
    bf16 *embed, *lm_head;
    float *norm, *stage;
    GLayer *layers;
    // LoRA: every tensor of the adapter's Table, in its order; K adapters of
    // the same shapes back to back (cuda_lora_set_many), adapter k at k * ln
    int r, K;
    size_t ln;                    // floats of one adapter
    float *lp, *lg, *lm, *lv;     // params, grads, AdamW moments (K * ln each)
    bf16 *lb;                     // (K * ln)
    double *sumsq;
    int adam_t[MAX_ADAPTERS], lora_gen;
    float grad_scale[MAX_ADAPTERS];
    // attention kernels for this head_dim
    FwdKernel fwd;
    BwdKernel bwd;
    int tile;
    size_t fwd_smem, bwd_smem;
    GActs acts;
};

static size_t g_mem_peak;

static void note_memory(void) {
    size_t used = cuda_memory_used();
    if (used > g_mem_peak) g_mem_peak = used;
}

extern "C" size_t cuda_memory_used(void) {
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return total - free_b;
}

extern "C" size_t cuda_memory_peak(void) { return g_mem_peak; }

extern "C" int cuda_available(char *why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return errf(why, "no CUDA device (%s)", cudaGetErrorString(e)), 0;
    }
    if (n < 1) return errf(why, "no CUDA device"), 0;
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) return errf(why, "no CUDA device (%s)", cudaGetErrorString(e)), 0;
    if (p.major < 8) return errf(why, "no usable CUDA device: %s is sm_%d%d, bf16 kernels need sm_80 or newer", p.name, p.major, p.minor), 0;
    return 1;
}

extern "C" void cuda_device_name(char *buf, size_t n) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, n, "unknown CUDA device");
        return;
    }
    snprintf(buf, n, "%s, sm_%d%d, %.1f GiB, %d SMs", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0, p.multiProcessorCount);
}

extern "C" void cuda_device_peaks(double *flops, double *bytes_per_s) {
    cudaDeviceProp p;
    int clock_khz = 0, mem_khz = 0, bus = 0;
    *flops = *bytes_per_s = 0.0;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess || cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    *bytes_per_s = 2.0 * mem_khz * 1e3 * bus / 8.0;   // double data rate
    // Dense bf16 tensor-core peaks as NVIDIA states them; else per-SM rates.
    if (strstr(p.name, "H100") && strstr(p.name, "PCIe")) *flops = 756e12;
    else if (strstr(p.name, "H100") || strstr(p.name, "H200") || strstr(p.name, "H800") || strstr(p.name, "GH200")) *flops = 989.4e12;
    else if (strstr(p.name, "A100") || strstr(p.name, "A800")) *flops = 312e12;
    else *flops = (double)p.multiProcessorCount * clock_khz * 1e3 * (p.major >= 9 ? 4096 : p.major == 8 && p.minor == 0 ? 2048 : 1024);
}

// ----------------------------------------------------------------------------
// Products: row-major C (M,N) = alpha op(A) op(B) + beta C as model.c's gemm,
// on cuBLAS. Row-major C is column-major C^T = op(B)^T op(A)^T, so the
// operands trade places. A and B are bf16; C is fp32 or (c_bf16) bf16.

static int gemm(CudaModel *g, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, int lda, const bf16 *B, int ldb,
                float beta, void *C, int c_bf16, int ldc, char *err) {
    if (M <= 0 || N <= 0) return 0;
    CB(blas.gemm_ex(g->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, ldb, A,
                    CUDA_R_16BF, lda, &beta, C, c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

// model.c's linear_forward, split so that the base products of q, k, v (and
// of gate, up) run as one: y = x W^T + s (x A^T) B^T.
//
// y (N, n_out; row stride ldy) fp32 = beta y + x W^T, W (n_out, in), x (N, in) bf16.
static int base_forward(CudaModel *g, const bf16 *W, int n_out, int in, const bf16 *x, float *y, int ldy, float beta, int N, char *err) {
    return gemm(g, 0, 1, N, n_out, in, 1.0f, x, in, W, in, beta, y, 0, ldy, err);
}

// The adapter's term: y (N, out; row stride ldy) += s u B^T, where u (N,r) =
// x A^T (bf16) is kept for backward. Nothing without an adapter.
static int lora_forward(CudaModel *g, const GLinear *L, const bf16 *x, float *y, int ldy, bf16 *u, int N, char *err) {
    if (!L->r) return 0;
    if (gemm(g, 0, 1, N, L->r, L->in, 1.0f, x, L->in, L->ab, L->in, 0.0f, u, 1, L->r, err)) return -1;
    return gemm(g, 0, 1, N, L->out, L->r, L->scale, u, L->r, L->bb, L->r, 1.0f, y, 0, ldy, err);
}

// L with its tables those of adapter k (they lie k adapters after adapter 0's).
static GLinear adapter_of(const CudaModel *g, const GLinear *L, int k) {
    GLinear x = *L;
    const size_t off = (size_t)k * g->ln;
    if (!L->r || !k) return x;
    x.a += off, x.b += off, x.da += off, x.db += off, x.ab += off, x.bb += off;
    return x;
}

// The adapters' terms over a pass's N rows: a training batch's rows through
// their run's adapter (a's segments, model.c's linear_forward); a NULL a (the
// KV cache) sends all N through adapter 0.
static int lora_forward_rows(CudaModel *g, const GActs *a, const GLinear *L, const bf16 *x, float *y, int ldy, bf16 *u, int N, char *err) {
    if (!a) return lora_forward(g, L, x, y, ldy, u, N, err);
    for (int j = 0; L->r && j < a->K; j++) {
        const GLinear Lk = adapter_of(g, L, a->which[j]);
        const size_t r0 = (size_t)a->b0[j] * a->T;
        if (lora_forward(g, &Lk, x + r0 * L->in, y + r0 * ldy, ldy, u + r0 * L->r, (a->b0[j + 1] - a->b0[j]) * a->T, err)) return -1;
    }
    return 0;
}

static int linear_forward(CudaModel *g, const GActs *a, const GLinear *L, const bf16 *x, float *y, float beta, bf16 *u, int N, char *err) {
    return base_forward(g, L->w, L->out, L->in, x, y, L->out, beta, N, err) || lora_forward_rows(g, a, L, x, y, L->out, u, N, err) ? -1 : 0;
}

// model.c's linear_backward with a frozen base, split the same way.
//
// dx (N, in) fp32 = (accumulate ? dx : 0) + dy W, W (n_out, in), dy (N, n_out) bf16.
static int base_backward(CudaModel *g, const bf16 *W, int n_out, int in, const bf16 *dy, float *dx, int accumulate, int N, char *err) {
    return gemm(g, 0, 0, N, in, n_out, 1.0f, dy, n_out, W, in, accumulate ? 1.0f : 0.0f, dx, 0, in, err);
}

// The adapter's part, dy (N, out; row stride ldy) bf16: dx += (s dy B) A
// when dx is not NULL, dA += (s dy B)^T x, dB += s dy^T u. du (N,r) scratch.
static int lora_backward(CudaModel *g, const GLinear *L, const bf16 *dy, int ldy, const bf16 *x, const bf16 *u, float *dx, bf16 *du, int N,
                    char *err) {
    if (!L->r) return 0;
    if (gemm(g, 0, 0, N, L->r, L->out, L->scale, dy, ldy, L->bb, L->r, 0.0f, du, 1, L->r, err)) return -1;
    if (dx && gemm(g, 0, 0, N, L->in, L->r, 1.0f, du, L->r, L->ab, L->in, 1.0f, dx, 0, L->in, err)) return -1;
    if (gemm(g, 1, 0, L->r, L->in, N, 1.0f, du, L->r, x, L->in, 1.0f, L->da, 0, L->in, err)) return -1;
    return gemm(g, 1, 0, L->out, L->r, N, L->scale, dy, ldy, u, L->r, 1.0f, L->db, 0, L->r, err);
}

// lora_backward over a training batch's rows, each through its run's adapter.
static int lora_backward_rows(CudaModel *g, const GActs *a, const GLinear *L, const bf16 *dy, int ldy, const bf16 *x, const bf16 *u, float *dx,
                              bf16 *du, char *err) {
    for (int j = 0; L->r && j < a->K; j++) {
        const GLinear Lk = adapter_of(g, L, a->which[j]);
        const size_t r0 = (size_t)a->b0[j] * a->T;
        if (lora_backward(g, &Lk, dy + r0 * ldy, ldy, x + r0 * L->in, u + r0 * L->r, dx ? dx + r0 * L->in : NULL, du + r0 * L->r,
                          (a->b0[j + 1] - a->b0[j]) * a->T, err))
            return -1;
    }
    return 0;
}

static int linear_backward(CudaModel *g, const GActs *a, const GLinear *L, const bf16 *dy, const bf16 *x, const bf16 *u, float *dx, int accumulate,
                           bf16 *du, char *err) {
    if (dx && base_backward(g, L->w, L->out, L->in, dy, dx, accumulate, a->N, err)) return -1;
    return lora_backward_rows(g, a, L, dy, L->out, x, u, dx, du, err);
}

// q, k, v of N rows of x (bf16, N x D) into qkv (N, Dq + 2 Dkv) fp32.
static int qkv_forward(CudaModel *g, const GActs *a, const GLayer *W, const bf16 *x, float *qkv, bf16 *const *u, int N, char *err) {
    const int D = g->c.dim, nq = W->p[PROJ_Q].out, nk = W->p[PROJ_K].out, n = nq + 2 * nk;
    return base_forward(g, W->wqkv, n, D, x, qkv, n, 0.0f, N, err) || lora_forward_rows(g, a, &W->p[PROJ_Q], x, qkv, n, u[PROJ_Q], N, err) ||
                   lora_forward_rows(g, a, &W->p[PROJ_K], x, qkv + nq, n, u[PROJ_K], N, err) ||
                   lora_forward_rows(g, a, &W->p[PROJ_V], x, qkv + nq + nk, n, u[PROJ_V], N, err)
               ? -1
               : 0;
}

// gate, up of N rows of x into gu (N, 2F) fp32.
static int gate_up_forward(CudaModel *g, const GActs *a, const GLayer *W, const bf16 *x, float *gu, bf16 *const *u, int N, char *err) {
    const int D = g->c.dim, F = g->c.hidden;
    return base_forward(g, W->wgu, 2 * F, D, x, gu, 2 * F, 0.0f, N, err) ||
                   lora_forward_rows(g, a, &W->p[PROJ_GATE], x, gu, 2 * F, u[PROJ_GATE], N, err) ||
                   lora_forward_rows(g, a, &W->p[PROJ_UP], x, gu + F, 2 * F, u[PROJ_UP], N, err)
               ? -1
               : 0;
}

static int rmsnorm_forward(CudaModel *g, const float *x, const float *w, bf16 *out, float *rstd, int N, char *err) {
    LAUNCH(rmsnorm_forward_kernel, (N + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * 32, 0, g->st, x, w, out, rstd, N, g->c.dim, g->c.norm_eps);
    return 0;
}

static int rmsnorm_backward(CudaModel *g, float *dx, bf16 *dxb, const float *dres, const float *dout, const float *x, const float *w,
                            const float *rstd, int N, char *err) {
    LAUNCH(rmsnorm_backward_kernel, (N + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * 32, 0, g->st, dx, dxb, dres, dout, x, w, rstd, N, g->c.dim);
    return 0;
}

// Rows of x (N, nh*hd, contiguous) to bf16 through map, turned back by RoPE (backward) when cosv is given.
static int rope(CudaModel *g, const float *x, bf16 *y, const float *cosv, const float *sinv, RowMap map, int N, int nh, float sign,
                char *err) {
    const size_t n = (size_t)N * nh * (g->c.head_dim / 2);
    LAUNCH(rope_kernel, grid_for(n, 256), 256, 0, g->st, x, (long)nh * g->c.head_dim, y, cosv, sinv, map, N, nh, g->c.head_dim, sign);
    return 0;
}

static int qkv_rope(CudaModel *g, const float *qkv, const float *bias, bf16 *q, bf16 *k, bf16 *v, const float *cosv, const float *sinv,
                    RowMap qmap, RowMap kvmap, int N, char *err) {
    const Config *c = &g->c;
    const size_t n = (size_t)N * (c->n_heads + 2 * c->n_kv_heads) * (c->head_dim / 2);
    LAUNCH(qkv_rope_kernel, grid_for(n, 256), 256, 0, g->st, qkv, bias, q, k, v, cosv, sinv, qmap, kvmap, N, c->n_heads, c->n_kv_heads,
           c->head_dim);
    return 0;
}

static int to_bf16(CudaModel *g, const float *x, bf16 *y, size_t n, char *err) {
    if (n) LAUNCH(to_bf16_kernel, grid_for(n, 256), 256, 0, g->st, x, y, n);
    return 0;
}

// x (N,D) fp32 = the embedding rows of the N ids (on the device).
static int embed(CudaModel *g, const int *ids, float *x, int N, char *err) {
    LAUNCH(embed_kernel, N, 256, 0, g->st, ids, g->embed, x, g->c.dim);
    return 0;
}

// h (N,F) = silu(gate) * up from gu (N, 2F); bf16 gate and up kept when gate is not NULL.
static int swiglu_forward(CudaModel *g, bf16 *h, bf16 *gate, bf16 *up, const float *gu, int N, char *err) {
    LAUNCH(swiglu_forward_kernel, grid_for((size_t)N * g->c.hidden, 256), 256, 0, g->st, gu, gate, up, h, N, g->c.hidden);
    return 0;
}

static int swiglu_backward(CudaModel *g, bf16 *dgu, const float *dh, const bf16 *gate, const bf16 *up, int N, char *err) {
    LAUNCH(swiglu_backward_kernel, grid_for((size_t)N * g->c.hidden, 256), 256, 0, g->st, dh, gate, up, dgu, N, g->c.hidden);
    return 0;
}

// Causal attention of nb entries of Tq query rows (positions pos0..).
static int attention_forward(CudaModel *g, const AttnFwd &a, int nb, char *err) {
    dim3 grid((a.Tq + g->tile - 1) / g->tile, a.H, nb);
    FwdKernel k = g->fwd;
    LAUNCH(k, grid, ATT_THREADS, g->fwd_smem, g->st, a);
    return 0;
}

// Gradients of layer A's attention over a training batch: d_q, d_k, d_v from
// d_atty (N, H*hd) fp32. The row sums D = sum dO * O come first, as
// FlashAttention-2 needs them; d_q is zeroed since the kernel adds into it.
static int attention_backward(CudaModel *g, GActs *a, const GLayerActs *A, const float *d_atty, char *err) {
    const Config *c = &g->c;
    const int N = a->N, T = a->T, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, Dq = H * hd, Dkv = KV * hd;
    LAUNCH(attention_dsum_kernel, (N * H + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * 32, 0, g->st, d_atty, A->atty, a->d_atty_b, a->dsum, N, T,
           H, hd);
    CK(cudaMemsetAsync(a->d_q, 0, (size_t)N * Dq * sizeof(float), g->st));
    const AttnBwd ab = {.q = A->q, .k = A->k, .v = A->v, .dout = a->d_atty_b, .lse = A->lse, .dsum = a->dsum, .dq = a->d_q, .dk = a->d_k,
                        .dv = a->d_v, .q_bs = (long)T * Dq, .kv_bs = (long)T * Dkv, .q_rs = Dq, .kv_rs = Dkv, .T = T, .H = H, .KV = KV, .hd = hd,
                        .scale = 1.0f / sqrtf((float)hd)};
    dim3 grid((T + g->tile - 1) / g->tile, KV, a->B);
    BwdKernel k = g->bwd;
    LAUNCH(k, grid, ATT_THREADS, g->bwd_smem, g->st, ab);
    return 0;
}

// Picks the attention kernels for this head_dim: tiles of 64 (else 32) rows,
// tensor cores when head_dim is a multiple of 16 (SEAL_CUDA_ATTN=loops turns
// them off), and raises their shared-memory limit.
static int attention_choose(CudaModel *g, char *err) {
    const int hd = g->c.head_dim;
    const char *env = getenv("SEAL_CUDA_ATTN");
    const int tc = hd % 16 == 0 && !(env && !strcmp(env, "loops"));
    int optin = 0;
    CK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    if (hd > DEC_MAX_HD) return errf(err, "head_dim %d: the CUDA kernels support head_dim up to %d", hd, DEC_MAX_HD);
    g->tile = 0;
    for (int tile = 64; tile >= 32 && !g->tile; tile /= 2) {
        const size_t f = fwd_layout(tile, tile, hd).total, b = bwd_layout(tile, tile, hd).total;
        if (f <= (size_t)optin && b <= (size_t)optin) {
            g->tile = tile;
            g->fwd_smem = f;
            g->bwd_smem = b;
        }
    }
    if (!g->tile)
        return errf(err, "head_dim %d needs %zu bytes of shared memory per block, the device allows %d", hd, bwd_layout(32, 32, hd).total, optin);
    if (g->tile == 64) {
        g->fwd = tc ? attention_forward_kernel<64, 64, true> : attention_forward_kernel<64, 64, false>;
        g->bwd = tc ? attention_backward_kernel<64, 64, true> : attention_backward_kernel<64, 64, false>;
    } else {
        g->fwd = tc ? attention_forward_kernel<32, 32, true> : attention_forward_kernel<32, 32, false>;
        g->bwd = tc ? attention_backward_kernel<32, 32, true> : attention_backward_kernel<32, 32, false>;
    }
    CK(cudaFuncSetAttribute((const void *)g->fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->fwd_smem));
    CK(cudaFuncSetAttribute((const void *)g->bwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->bwd_smem));
    return 0;
}

// ----------------------------------------------------------------------------
// Memory: one allocation per kind of object, carved by a bump allocator that
// first runs with base = NULL to add up the sizes.

typedef struct {
    char *base;
    size_t off;
} Arena;

static void *arena_take(Arena *a, size_t bytes) {
    void *p = a->base ? a->base + a->off : NULL;
    a->off += (bytes + 255) / 256 * 256;
    return p;
}
#define TAKE(ar, ptr, count) ((ptr) = (std::remove_reference<decltype(ptr)>::type)arena_take((ar), (size_t)(count) * sizeof *(ptr)))

static void carve_weights(CudaModel *g, Arena *ar) {
    const Config *c = &g->c;
    TAKE(ar, g->embed, (size_t)c->vocab * c->dim);
    if (c->tied) g->lm_head = g->embed;
    else TAKE(ar, g->lm_head, (size_t)c->vocab * c->dim);
    TAKE(ar, g->norm, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        GLayer *L = &g->layers[l];
        TAKE(ar, L->attn_norm, c->dim);
        TAKE(ar, L->mlp_norm, c->dim);
        if (proj_has_bias(c, PROJ_Q)) TAKE(ar, L->bqkv, L->p[PROJ_Q].out + L->p[PROJ_K].out + L->p[PROJ_V].out);
        TAKE(ar, L->wqkv, (size_t)c->dim * (L->p[PROJ_Q].out + L->p[PROJ_K].out + L->p[PROJ_V].out));
        TAKE(ar, L->p[PROJ_O].w, (size_t)L->p[PROJ_O].in * L->p[PROJ_O].out);
        TAKE(ar, L->wgu, (size_t)c->dim * 2 * c->hidden);
        TAKE(ar, L->p[PROJ_DOWN].w, (size_t)L->p[PROJ_DOWN].in * L->p[PROJ_DOWN].out);
        L->p[PROJ_Q].w = L->wqkv;
        L->p[PROJ_K].w = L->wqkv ? L->wqkv + (size_t)c->dim * L->p[PROJ_Q].out : NULL;
        L->p[PROJ_V].w = L->wqkv ? L->p[PROJ_K].w + (size_t)c->dim * L->p[PROJ_K].out : NULL;
        L->p[PROJ_GATE].w = L->wgu;
        L->p[PROJ_UP].w = L->wgu ? L->wgu + (size_t)c->dim * c->hidden : NULL;
    }
}

// fp32 host values to bf16 on the device, through the staging buffer.
static int upload_bf16(CudaModel *g, bf16 *dst, const float *src, size_t n, char *err) {
    for (size_t off = 0; off < n; off += STAGE_FLOATS) {
        const size_t k = n - off < (size_t)STAGE_FLOATS ? n - off : (size_t)STAGE_FLOATS;
        CK(cudaMemcpyAsync(g->stage, src + off, k * sizeof(float), cudaMemcpyHostToDevice, g->st));
        if (to_bf16(g, g->stage, dst + off, k, err)) return -1;
    }
    return 0;
}

static int upload_weights(CudaModel *g, const Model *m, char *err) {
    const Config *c = &g->c;
    Arena ar = {NULL, 0};
    carve_weights(g, &ar);
    CK(cudaMalloc(&g->wmem, ar.off));
    ar = (Arena){(char *)g->wmem, 0};
    carve_weights(g, &ar);
    CK(cudaMalloc(&g->stage, (size_t)STAGE_FLOATS * sizeof(float)));
    if (upload_bf16(g, g->embed, m->embed, (size_t)c->vocab * c->dim, err)) return -1;
    if (!c->tied && upload_bf16(g, g->lm_head, m->lm_head, (size_t)c->vocab * c->dim, err)) return -1;
    CK(cudaMemcpyAsync(g->norm, m->norm, c->dim * sizeof(float), cudaMemcpyHostToDevice, g->st));
    for (int l = 0; l < c->n_layers; l++) {
        const Layer *H = &m->layers[l];
        GLayer *L = &g->layers[l];
        CK(cudaMemcpyAsync(L->attn_norm, H->attn_norm, c->dim * sizeof(float), cudaMemcpyHostToDevice, g->st));
        CK(cudaMemcpyAsync(L->mlp_norm, H->mlp_norm, c->dim * sizeof(float), cudaMemcpyHostToDevice, g->st));
        for (int p = 0; p < N_PROJ; p++)
            if (upload_bf16(g, L->p[p].w, H->proj[p].w, (size_t)L->p[p].in * L->p[p].out, err)) return -1;
        for (int p = PROJ_Q, at = 0; L->bqkv && p <= PROJ_V; p++) {   // Qwen2's biases, back to back
            CK(cudaMemcpyAsync(L->bqkv + at, H->proj[p].bias, L->p[p].out * sizeof(float), cudaMemcpyHostToDevice, g->st));
            at += L->p[p].out;
        }
    }
    CK(cudaStreamSynchronize(g->st));
    return 0;
}

static void acts_free(GActs *a) {
    if (a->mem) cudaFree(a->mem);
    free(a->layers);
    memset(a, 0, sizeof *a);
}

extern "C" void cuda_model_free(CudaModel *g) {
    if (!g) return;
    cudaStreamSynchronize(g->st);
    acts_free(&g->acts);
    cudaFree(g->wmem);
    cudaFree(g->stage);
    cudaFree(g->lp);
    cudaFree(g->sumsq);
    cudaFree(g->blas_ws);
    if (g->blas) blas.destroy(g->blas);
    if (g->st) cudaStreamDestroy(g->st);
    cudaGetLastError();
    free(g->layers);
    free(g);
}

extern "C" CudaModel *cuda_model_new(const Model *m, char *err) {
    char why[ERR_MAX];
    if (!cuda_available(why)) {
        errf(err, "%s", why);
        return NULL;
    }
    CudaModel *g = (CudaModel *)xcalloc(1, sizeof *g);
    g->c = m->c;
    g->layers = (GLayer *)xcalloc((size_t)m->c.n_layers, sizeof(GLayer));
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) proj_shape(&m->c, p, &g->layers[l].p[p].out, &g->layers[l].p[p].in);
    int rc = 0;
#define TRY(x) do { cudaError_t e_ = (x); if (!rc && e_ != cudaSuccess) rc = cuda_fail(err, e_, #x, __LINE__); } while (0)
    TRY(cudaSetDevice(0));
    TRY(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking));
    TRY(cudaMalloc(&g->blas_ws, BLAS_WORKSPACE));
    TRY(cudaMalloc((void **)&g->sumsq, sizeof(double)));
#undef TRY
    if (!rc) rc = blas_load(err);
    if (!rc) {
        cublasStatus_t s = blas.create(&g->blas);
        if (s == CUBLAS_STATUS_SUCCESS) s = blas.set_stream(g->blas, g->st);
        if (s == CUBLAS_STATUS_SUCCESS) s = blas.set_workspace(g->blas, g->blas_ws, BLAS_WORKSPACE);
        if (s != CUBLAS_STATUS_SUCCESS) rc = errf(err, "cuBLAS error: %s (creating the handle)", blas_status(s));
    }
    if (!rc) rc = attention_choose(g, err);
    if (!rc) rc = upload_weights(g, m, err);
    if (!rc && m->lora) rc = cuda_lora_set(g, m->lora, err);
    note_memory();
    if (rc) {
        cuda_model_free(g);
        return NULL;
    }
    return g;
}

// ----------------------------------------------------------------------------
// LoRA: the adapter's whole Table in one fp32 block (params, grads, AdamW
// moments) and its bf16 copy.

static void lora_release(CudaModel *g) {
    cudaFree(g->lp);
    g->lp = g->lg = g->lm = g->lv = NULL;
    g->lb = NULL;
    g->r = 0;
    g->ln = 0;
    g->K = 0;
    for (int l = 0; l < g->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            GLinear *L = &g->layers[l].p[p];
            L->r = 0;
            L->a = L->b = L->da = L->db = NULL;
            L->ab = L->bb = NULL;
        }
}

extern "C" int cuda_lora_set_many(CudaModel *g, const Lora *const *lo, int K, char *err) {
    CK(cudaStreamSynchronize(g->st));
    lora_release(g);
    acts_free(&g->acts);   // the u buffers depend on the adapter
    g->lora_gen++;
    g->K = 0;
    if (K < 0 || K > MAX_ADAPTERS) return errf(err, "%d adapters at once: 0 to %d", K, MAX_ADAPTERS);
    if (!K || !lo[0]) return 0;
    for (int k = 0; k < K; k++) {
        g->adam_t[k] = 0;
        g->grad_scale[k] = 1.0f;
        if (!lo[k] || lo[k]->params.total != lo[0]->params.total || lo[k]->r != lo[0]->r || lo[k]->targets != lo[0]->targets)
            return errf(err, "adapter %d is not shaped as adapter 0", k);
    }
    const size_t n = lo[0]->params.total, Kn = (size_t)K * n;
    char *mem;
    CK(cudaMalloc((void **)&mem, Kn * (4 * sizeof(float) + sizeof(bf16))));
    g->lp = (float *)mem;
    g->lg = g->lp + Kn;
    g->lm = g->lg + Kn;
    g->lv = g->lm + Kn;
    g->lb = (bf16 *)(g->lv + Kn);
    g->ln = n;
    g->K = K;
    g->r = lo[0]->r;
    for (int k = 0; k < K; k++) CK(cudaMemcpyAsync(g->lp + k * n, lo[k]->params.mem, n * sizeof(float), cudaMemcpyHostToDevice, g->st));
    CK(cudaMemsetAsync(g->lg, 0, 3 * Kn * sizeof(float), g->st));
    if (to_bf16(g, g->lp, g->lb, Kn, err)) return -1;
    char key[160];
    for (int l = 0; l < g->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            if (!(lo[0]->targets >> p & 1)) continue;
            GLinear *L = &g->layers[l].p[p];
            lora_name(key, sizeof key, l, p, 'A');
            const Tensor *A = table_get(&lo[0]->params, key);
            lora_name(key, sizeof key, l, p, 'B');
            const Tensor *B = table_get(&lo[0]->params, key);
            if (!A || !B || A->rows != g->r || A->cols != L->in || B->rows != L->out || B->cols != g->r)
                return errf(err, "adapter: %s is missing or has the wrong shape for this model", key);
            const size_t oa = A->data - lo[0]->params.mem, ob = B->data - lo[0]->params.mem;
            L->r = g->r;
            L->scale = lo[0]->alpha / g->r;
            L->a = g->lp + oa;
            L->b = g->lp + ob;
            L->da = g->lg + oa;
            L->db = g->lg + ob;
            L->ab = g->lb + oa;
            L->bb = g->lb + ob;
        }
    CK(cudaStreamSynchronize(g->st));
    note_memory();
    return 0;
}

extern "C" int cuda_lora_set(CudaModel *g, const Lora *lo, char *err) { return cuda_lora_set_many(g, &lo, 1, err); }

extern "C" int cuda_lora_get(CudaModel *g, int k, Table *dst, int what, char *err) {
    if (!g->lp) return errf(err, "no adapter on the GPU");
    if (k < 0 || k >= g->K) return errf(err, "adapter %d: the GPU holds %d", k, g->K);
    if (dst->total != g->ln) return errf(err, "adapter table of %zu floats, the GPU holds %zu", dst->total, g->ln);
    CK(cudaMemcpyAsync(dst->mem, (what ? g->lg : g->lp) + k * g->ln, g->ln * sizeof(float), cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
    return 0;
}

extern "C" int cuda_zero_grads(CudaModel *g, char *err) {
    if (g->ln) CK(cudaMemsetAsync(g->lg, 0, g->K * g->ln * sizeof(float), g->st));
    for (int k = 0; k < g->K; k++) g->grad_scale[k] = 1.0f;
    return 0;
}

extern "C" int cuda_clip_grad_norm(CudaModel *g, int k, float max_norm, float *norm, char *err) {
    double ss = 0.0;
    *norm = 0.0f;
    if (!g->ln) return 0;
    if (k < 0 || k >= g->K) return errf(err, "adapter %d: the GPU holds %d", k, g->K);
    CK(cudaMemsetAsync(g->sumsq, 0, sizeof(double), g->st));
    LAUNCH(sumsq_kernel, grid_for(g->ln, 256) < 1024 ? grid_for(g->ln, 256) : 1024, 256, 0, g->st, g->lg + k * g->ln, g->ln, g->sumsq);
    CK(cudaMemcpyAsync(&ss, g->sumsq, sizeof(double), cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
    *norm = (float)sqrt(ss);
    const float coef = max_norm / (*norm + 1e-6f);   // train.c's clip_grad_norm
    g->grad_scale[k] = coef < 1.0f ? coef : 1.0f;
    return 0;
}

extern "C" int cuda_adamw_step(CudaModel *g, int k, float lr, float beta1, float beta2, float eps, float weight_decay, char *err) {
    if (!g->ln) return errf(err, "no adapter on the GPU to train");
    if (k < 0 || k >= g->K) return errf(err, "adapter %d: the GPU holds %d", k, g->K);
    g->adam_t[k]++;
    SealAdamW a = seal_adamw_consts(lr, beta1, beta2, eps, weight_decay, g->adam_t[k], g->grad_scale[k]);
    const size_t o = k * g->ln;
    LAUNCH(adamw_kernel, grid_for(g->ln, 256), 256, 0, g->st, g->lp + o, g->lm + o, g->lv + o, g->lg + o, g->lb + o, g->ln, a);
    g->grad_scale[k] = 1.0f;
    CK(cudaStreamSynchronize(g->st));
    return 0;
}

// ----------------------------------------------------------------------------
// Training forward and backward

// The size table: every activation, in model.c's carve_acts order.
static void carve_acts(CudaModel *g, GActs *a, Arena *ar) {
    const Config *c = &g->c;
    const size_t N = a->N, D = c->dim, F = c->hidden, V = c->vocab, hd = c->head_dim;
    const size_t Dq = (size_t)c->n_heads * hd, Dkv = (size_t)c->n_kv_heads * hd, BHT = (size_t)a->B * c->n_heads * a->T;
    const size_t s32 = N * (Dq + 2 * Dkv > 2 * F ? Dq + 2 * Dkv : 2 * F), r = g->r ? g->r : 1;
    TAKE(ar, a->rope_cos, a->T * hd);   // cos, then sin
    a->rope_sin = a->rope_cos ? a->rope_cos + a->T * hd / 2 : NULL;
    for (int l = 0; l < c->n_layers; l++) {
        GLayerActs *A = &a->layers[l];
        TAKE(ar, A->res, N * D);
        TAKE(ar, A->ln1, N * D);
        TAKE(ar, A->rstd1, N);
        TAKE(ar, A->q, N * Dq);
        TAKE(ar, A->k, N * Dkv);
        TAKE(ar, A->v, N * Dkv);
        TAKE(ar, A->lse, BHT);
        TAKE(ar, A->atty, N * Dq);
        TAKE(ar, A->mid, N * D);
        TAKE(ar, A->ln2, N * D);
        TAKE(ar, A->rstd2, N);
        TAKE(ar, A->gate, N * F);
        TAKE(ar, A->up, N * F);
        TAKE(ar, A->h, N * F);
        for (int p = 0; p < N_PROJ; p++) {
            A->u[p] = NULL;
            if (g->layers[l].p[p].r) TAKE(ar, A->u[p], N * r);
        }
    }
    TAKE(ar, a->res_out, N * D);
    TAKE(ar, a->lnf, N * D);
    TAKE(ar, a->rstdf, N);
    TAKE(ar, a->logits, a->CH * V);
    TAKE(ar, a->d_logits, a->CH * V);
    TAKE(ar, a->row_loss, N);
    TAKE(ar, a->ids, N);
    TAKE(ar, a->tgt, N);
    TAKE(ar, a->s32, s32);
    TAKE(ar, a->d_res, N * D);
    TAKE(ar, a->d_res_b, N * D);
    TAKE(ar, a->d_mid, N * D);
    TAKE(ar, a->d_mid_b, N * D);
    TAKE(ar, a->d_ln, N * D);
    TAKE(ar, a->d_q, N * Dq);
    TAKE(ar, a->d_k, N * Dkv);
    TAKE(ar, a->d_v, N * Dkv);
    TAKE(ar, a->d_qkv, N * (Dq + 2 * Dkv));
    TAKE(ar, a->d_atty_b, N * Dq);
    TAKE(ar, a->dsum, BHT);
    TAKE(ar, a->d_gu, N * 2 * F);
    TAKE(ar, a->d_u, N * r);
    TAKE(ar, a->d_lnf, N * D);
}

// Activations for a (B, T) batch, reallocated when the shape changes.
static int acts_ensure(CudaModel *g, int B, int T, char *err) {
    GActs *a = &g->acts;
    if (a->mem && a->B == B && a->T == T) return 0;
    CK(cudaStreamSynchronize(g->st));
    acts_free(a);
    a->B = B;
    a->T = T;
    a->N = B * T;
    size_t ch = CE_CHUNK_ELEMS / (size_t)g->c.vocab;
    a->CH = (int)(ch < 1 ? 1 : ch > (size_t)a->N ? (size_t)a->N : ch);
    a->layers = (GLayerActs *)xcalloc((size_t)g->c.n_layers, sizeof(GLayerActs));
    Arena ar = {NULL, 0};
    carve_acts(g, a, &ar);
    const size_t bytes = ar.off;
    cudaError_t e = cudaMalloc(&a->mem, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        a->mem = NULL;
        acts_free(a);
        return errf(err, "out of GPU memory for the activations of a %d x %d batch (%.2f GiB)", B, T, bytes / 1073741824.0);
    }
    ar = (Arena){(char *)a->mem, 0};
    carve_acts(g, a, &ar);
    const size_t half = (size_t)g->c.head_dim / 2;
    float *cs = (float *)xcalloc(2 * (size_t)T * half, sizeof(float));   // T x head_dim: small beside the batch's ids
    rope_table(&g->c, T, cs, cs + T * half);
    e = cudaMemcpyAsync(a->rope_cos, cs, 2 * T * half * sizeof(float), cudaMemcpyHostToDevice, g->st);   // rope_sin follows rope_cos
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
    free(cs);
    CK(e);
    note_memory();
    return 0;
}

static int layer_forward(CudaModel *g, GActs *a, int l, char *err) {
    const Config *c = &g->c;
    const GLayer *W = &g->layers[l];
    GLayerActs *A = &a->layers[l];
    const int N = a->N, T = a->T, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, Dq = H * hd, Dkv = KV * hd;
    float *res_out = l + 1 < c->n_layers ? a->layers[l + 1].res : a->res_out;
    float *qkv32 = a->s32, *gu32 = a->s32;   // (N, Dq + 2 Dkv), later (N, 2F)
    const RowMap qmap = {NULL, NULL, T, 0, Dq}, kmap = {NULL, NULL, T, 0, Dkv};
    const AttnFwd at = {.q = A->q, .k = A->k, .v = A->v, .o = A->atty, .lse = A->lse, .q_bs = (long)T * Dq, .kv_bs = (long)T * Dkv,
                        .q_rs = Dq, .kv_rs = Dkv, .Tq = T, .pos0 = 0, .H = H, .KV = KV, .hd = hd, .scale = 1.0f / sqrtf((float)hd)};
    if (rmsnorm_forward(g, A->res, W->attn_norm, A->ln1, A->rstd1, N, err) || qkv_forward(g, a, W, A->ln1, qkv32, A->u, N, err) ||
        qkv_rope(g, qkv32, W->bqkv, A->q, A->k, A->v, a->rope_cos, a->rope_sin, qmap, kmap, N, err) || attention_forward(g, at, a->B, err))
        return -1;
    CK(cudaMemcpyAsync(A->mid, A->res, (size_t)N * c->dim * sizeof(float), cudaMemcpyDeviceToDevice, g->st));
    if (linear_forward(g, a, &W->p[PROJ_O], A->atty, A->mid, 1.0f, A->u[PROJ_O], N, err) ||
        rmsnorm_forward(g, A->mid, W->mlp_norm, A->ln2, A->rstd2, N, err) || gate_up_forward(g, a, W, A->ln2, gu32, A->u, N, err))
        return -1;
    if (swiglu_forward(g, A->h, A->gate, A->up, gu32, N, err)) return -1;
    CK(cudaMemcpyAsync(res_out, A->mid, (size_t)N * c->dim * sizeof(float), cudaMemcpyDeviceToDevice, g->st));
    return linear_forward(g, a, &W->p[PROJ_DOWN], A->h, res_out, 1.0f, A->u[PROJ_DOWN], N, err);
}

extern "C" int cuda_forward_many(CudaModel *g, const int *ids, const int *labels, int K, const int *which, const int *rows, int T, int train,
                                 float *logits, float *loss, char *err) {
    const Config *c = &g->c;
    const int D = c->dim, V = c->vocab;
    int B = 0;
    if (K < 1 || K > MAX_ADAPTERS) return errf(err, "%d adapters in one pass: 1 to %d", K, MAX_ADAPTERS);
    for (int j = 0; j < K; j++) {
        loss[j] = 0.0f;
        if (rows[j] < 1 || (g->K ? which[j] < 0 || which[j] >= g->K : which[j] != 0))
            return errf(err, "pass entry %d: %d rows through adapter %d (the GPU holds %d)", j, rows[j], which[j], g->K);
        B += rows[j];
    }
    const int N = B * T;
    if (B < 1 || T < 1) return errf(err, "empty batch (%d x %d)", B, T);
    for (int n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= V) return errf(err, "token id %d outside the vocabulary (%d)", ids[n], V);
        if (labels && labels[n] != -100 && (labels[n] < 0 || labels[n] >= V)) return errf(err, "label %d is neither -100 nor a token id", labels[n]);
    }
    if (acts_ensure(g, B, T, err)) return -1;
    GActs *a = &g->acts;
    a->ready = 0;
    a->K = K;
    a->b0[0] = 0;
    for (int j = 0; j < K; j++) a->which[j] = which[j], a->b0[j + 1] = a->b0[j] + rows[j];
    // Targets shifted as in Hugging Face: row (b, t) is scored on labels[b, t+1].
    int *tgt = (int *)xcalloc((size_t)N, sizeof(int)), n_valid = 0, nv[MAX_ADAPTERS] = {0};   // as many as the caller's ids
    for (int j = 0; j < K; j++)
        for (int n = a->b0[j] * T; n < a->b0[j + 1] * T; n++) {
            const int y = labels && n % T < T - 1 ? labels[n + 1] : -100;
            tgt[n] = y == -100 ? -1 : y;
            nv[j] += y != -100;
        }
    for (int j = 0; j < K; j++) n_valid += nv[j];
    cudaError_t e = cudaMemcpyAsync(a->ids, ids, N * sizeof(int), cudaMemcpyHostToDevice, g->st);
    if (e == cudaSuccess) e = cudaMemcpyAsync(a->tgt, tgt, N * sizeof(int), cudaMemcpyHostToDevice, g->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);   // tgt is freed next
    free(tgt);
    CK(e);
    if (embed(g, a->ids, a->layers[0].res, N, err)) return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (layer_forward(g, a, l, err)) return -1;
    if (rmsnorm_forward(g, a->res_out, g->norm, a->lnf, a->rstdf, N, err)) return -1;
    const int grads = train && n_valid > 0;
    for (int j = 0; j < K; j++)   // each adapter's rows: its loss is the mean over its own targets
        for (int r0 = a->b0[j] * T, end = a->b0[j + 1] * T; r0 < end; r0 += a->CH) {   // the LM head and the loss, a chunk of rows at a time
            const int nr = imin(a->CH, end - r0);
            if (gemm(g, 0, 1, nr, V, D, 1.0f, a->lnf + (size_t)r0 * D, D, g->lm_head, D, 0.0f, a->logits, 0, V, err)) return -1;
            if (logits) CK(cudaMemcpyAsync(logits + (size_t)r0 * V, a->logits, (size_t)nr * V * sizeof(float), cudaMemcpyDeviceToHost, g->st));
            if (!n_valid) continue;
            LAUNCH(cross_entropy_kernel, nr, CE_THREADS, 0, g->st, a->logits, a->tgt + r0, a->row_loss + r0, grads ? a->d_logits : NULL, V,
                   (float)(nv[j] ? nv[j] : 1));   // no targets: zero rows, whatever it divides by
            if (grads && gemm(g, 0, 0, nr, D, V, 1.0f, a->d_logits, V, g->lm_head, D, 0.0f, a->d_lnf + (size_t)r0 * D, 0, D, err)) return -1;
        }
    if (n_valid) {
        float *rl = (float *)xcalloc((size_t)N, sizeof(float));
        e = cudaMemcpyAsync(rl, a->row_loss, N * sizeof(float), cudaMemcpyDeviceToHost, g->st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
        for (int j = 0; j < K && e == cudaSuccess; j++) {
            double total = 0.0;
            for (int n = a->b0[j] * T; n < a->b0[j + 1] * T; n++) total += rl[n];
            loss[j] = nv[j] ? (float)(total / nv[j]) : 0.0f;
        }
        free(rl);
        CK(e);
    }
    CK(cudaStreamSynchronize(g->st));
    a->ready = grads;
    note_memory();
    return 0;
}

extern "C" int cuda_forward(CudaModel *g, const int *ids, const int *labels, int B, int T, int train, float *logits, float *loss, char *err) {
    const int which = 0;
    return cuda_forward_many(g, ids, labels, 1, &which, &B, T, train, logits, loss, err);
}

static int layer_backward(CudaModel *g, GActs *a, int l, char *err) {
    const Config *c = &g->c;
    const GLayer *W = &g->layers[l];
    const GLayerActs *A = &a->layers[l];
    const int N = a->N, T = a->T, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, Dq = H * hd, Dkv = KV * hd, F = c->hidden;
    const int Dqkv = Dq + 2 * Dkv;
    float *d_h = a->s32, *d_atty = a->s32;
    const RowMap qkv_map = {NULL, NULL, T, 0, Dqkv};
    // MLP: d_res holds d loss / d res[l+1]
    if (linear_backward(g, a, &W->p[PROJ_DOWN], a->d_res_b, A->h, A->u[PROJ_DOWN], d_h, 0, a->d_u, err)) return -1;
    if (swiglu_backward(g, a->d_gu, d_h, A->gate, A->up, N, err) ||
        base_backward(g, W->wgu, 2 * F, c->dim, a->d_gu, a->d_ln, 0, N, err) ||
        lora_backward_rows(g, a, &W->p[PROJ_GATE], a->d_gu, 2 * F, A->ln2, A->u[PROJ_GATE], a->d_ln, a->d_u, err) ||
        lora_backward_rows(g, a, &W->p[PROJ_UP], a->d_gu + F, 2 * F, A->ln2, A->u[PROJ_UP], a->d_ln, a->d_u, err) ||
        rmsnorm_backward(g, a->d_mid, a->d_mid_b, a->d_res, a->d_ln, A->mid, W->mlp_norm, A->rstd2, N, err) ||
        linear_backward(g, a, &W->p[PROJ_O], a->d_mid_b, A->atty, A->u[PROJ_O], d_atty, 0, a->d_u, err))
        return -1;
    if (attention_backward(g, a, A, d_atty, err)) return -1;
    // d q, d k, d v (turned back by RoPE) side by side in d_qkv, as the fused weights are
    if (rope(g, a->d_q, a->d_qkv, a->rope_cos, a->rope_sin, qkv_map, N, H, -1.0f, err) ||
        rope(g, a->d_k, a->d_qkv + Dq, a->rope_cos, a->rope_sin, qkv_map, N, KV, -1.0f, err) ||
        rope(g, a->d_v, a->d_qkv + Dq + Dkv, NULL, NULL, qkv_map, N, KV, 1.0f, err))
        return -1;
    // Layer 0's input is the frozen embedding: only its adapters' gradients.
    float *d_ln = l > 0 ? a->d_ln : NULL;
    if ((d_ln && base_backward(g, W->wqkv, Dqkv, c->dim, a->d_qkv, d_ln, 0, N, err)) ||
        lora_backward_rows(g, a, &W->p[PROJ_Q], a->d_qkv, Dqkv, A->ln1, A->u[PROJ_Q], d_ln, a->d_u, err) ||
        lora_backward_rows(g, a, &W->p[PROJ_K], a->d_qkv + Dq, Dqkv, A->ln1, A->u[PROJ_K], d_ln, a->d_u, err) ||
        lora_backward_rows(g, a, &W->p[PROJ_V], a->d_qkv + Dq + Dkv, Dqkv, A->ln1, A->u[PROJ_V], d_ln, a->d_u, err))
        return -1;
    if (!d_ln) return 0;
    return rmsnorm_backward(g, a->d_res, a->d_res_b, a->d_mid, a->d_ln, A->res, W->attn_norm, A->rstd1, N, err);
}

extern "C" int cuda_backward(CudaModel *g, char *err) {
    GActs *a = &g->acts;
    if (!a->ready || !g->ln) return 0;   // nothing carries loss, or nothing trains
    if (rmsnorm_backward(g, a->d_res, a->d_res_b, NULL, a->d_lnf, a->res_out, g->norm, a->rstdf, a->N, err)) return -1;
    for (int l = g->c.n_layers - 1; l >= 0; l--)
        if (layer_backward(g, a, l, err)) return -1;
    a->ready = 0;
    CK(cudaStreamSynchronize(g->st));
    note_memory();
    return 0;
}

// ----------------------------------------------------------------------------
// KV cache and decoding

struct CudaKV {
    CudaModel *g;
    int B, max_T, R;              // R: rows per pass
    int *len;
    void *mem;
    bf16 *k, *v;                  // (L, B, max_T, KV*hd)
    float *x, *qkv32, *gu32, *logits, *rope_cos, *rope_sin;   // qkv32 (R, Dq + 2 Dkv), gu32 (R, 2F)
    bf16 *xn, *qb, *atty, *h, *u;
    int *tok, *seq, *pos;         // device, R each
    int *next;                    // device (B): greedy choices
    int *h_rows;                  // pinned: tok, seq, pos (R each), then next (B)
    float *h_logits;              // pinned (B, V)
    cudaGraphExec_t *graphs;      // [greedy * (B+1) + n]: the decode step of n rows
    unsigned char *warm;          // the same: that step ran once eagerly
    int use_graphs, lora_gen, r_cap;   // r_cap: the largest LoRA rank the row scratch holds
};

static void carve_kv(CudaKV *c, Arena *ar) {
    const Config *cf = &c->g->c;
    const size_t R = c->R, D = cf->dim, F = cf->hidden, Dq = (size_t)cf->n_heads * cf->head_dim, Dkv = (size_t)cf->n_kv_heads * cf->head_dim;
    const size_t cache = (size_t)cf->n_layers * c->B * c->max_T * Dkv, r = c->r_cap;
    TAKE(ar, c->k, cache);
    TAKE(ar, c->v, cache);
    TAKE(ar, c->x, R * D);
    TAKE(ar, c->qkv32, R * (Dq + 2 * Dkv));
    TAKE(ar, c->gu32, R * 2 * F);
    TAKE(ar, c->logits, (size_t)c->B * cf->vocab);
    TAKE(ar, c->rope_cos, (size_t)c->max_T * cf->head_dim);   // cos, then sin, back to back
    c->rope_sin = c->rope_cos ? c->rope_cos + (size_t)c->max_T * cf->head_dim / 2 : NULL;
    TAKE(ar, c->xn, R * D);
    TAKE(ar, c->qb, R * Dq);
    TAKE(ar, c->atty, R * Dq);
    TAKE(ar, c->h, R * F);
    TAKE(ar, c->u, R * r);
    TAKE(ar, c->next, c->B);
    TAKE(ar, c->tok, 3 * R);   // tok, seq, pos back to back, as in h_rows
    c->seq = c->tok ? c->tok + R : NULL;
    c->pos = c->tok ? c->seq + R : NULL;
}

static void kv_drop_graphs(CudaKV *c) {
    for (int n = 0; n < 2 * (c->B + 1); n++) {
        if (c->graphs[n]) cudaGraphExecDestroy(c->graphs[n]);
        c->graphs[n] = NULL;
        c->warm[n] = 0;
    }
}

extern "C" void cuda_kv_free(CudaKV *c) {
    if (!c) return;
    cudaStreamSynchronize(c->g->st);
    kv_drop_graphs(c);
    cudaFree(c->mem);
    cudaFreeHost(c->h_rows);
    cudaFreeHost(c->h_logits);
    cudaGetLastError();
    free(c->graphs);
    free(c->warm);
    free(c->len);
    free(c);
}

extern "C" CudaKV *cuda_kv_new(CudaModel *g, int B, int max_T, char *err) {
    if (B < 1 || max_T < 1) {
        errf(err, "KV cache of %d x %d tokens", B, max_T);
        return NULL;
    }
    CudaKV *c = (CudaKV *)xcalloc(1, sizeof *c);
    c->g = g;
    c->B = B;
    c->max_T = max_T;
    const char *rows = getenv("SEAL_CUDA_PREFILL_ROWS");   // prompt rows per pass (tests use small ones)
    const int prefill = rows && atoi(rows) > 0 ? atoi(rows) : PREFILL_ROWS;
    c->R = B > prefill ? B : prefill;
    c->len = (int *)xcalloc((size_t)B, sizeof(int));
    c->graphs = (cudaGraphExec_t *)xcalloc(2 * ((size_t)B + 1), sizeof(cudaGraphExec_t));
    c->warm = (unsigned char *)xcalloc(2 * ((size_t)B + 1), 1);
    const char *env = getenv("SEAL_CUDA_GRAPHS");
    c->use_graphs = !(env && !strcmp(env, "0"));
    c->lora_gen = g->lora_gen;
    c->r_cap = g->r > 256 ? g->r : 256;
    Arena ar = {NULL, 0};
    carve_kv(c, &ar);
    const size_t bytes = ar.off;
    cudaError_t e = cudaMalloc(&c->mem, bytes);
    if (e == cudaSuccess) e = cudaMallocHost((void **)&c->h_rows, (3 * (size_t)c->R + B) * sizeof(int));
    if (e == cudaSuccess) e = cudaMallocHost((void **)&c->h_logits, (size_t)B * g->c.vocab * sizeof(float));
    if (e != cudaSuccess) {
        cudaGetLastError();
        errf(err, "out of GPU memory for a KV cache of %d x %d tokens (%.2f GiB): %s", B, max_T, bytes / 1073741824.0, cudaGetErrorString(e));
        cuda_kv_free(c);
        return NULL;
    }
    ar = (Arena){(char *)c->mem, 0};
    carve_kv(c, &ar);
    const size_t half = (size_t)g->c.head_dim / 2;
    float *cs = (float *)xcalloc(2 * (size_t)max_T * half, sizeof(float));
    rope_table(&g->c, max_T, cs, cs + max_T * half);
    e = cudaMemcpyAsync(c->rope_cos, cs, 2 * (size_t)max_T * half * sizeof(float), cudaMemcpyHostToDevice, g->st);   // rope_sin follows
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
    free(cs);
    if (e != cudaSuccess) {
        cuda_fail(err, e, "cudaMemcpy(rope table)", __LINE__);
        cuda_kv_free(c);
        return NULL;
    }
    note_memory();
    return c;
}

extern "C" int cuda_kv_len(const CudaKV *c, int b) { return b >= 0 && b < c->B ? c->len[b] : 0; }
extern "C" void cuda_kv_reset(CudaKV *c, int b) {
    if (b >= 0 && b < c->B) c->len[b] = 0;
}

// The layers on R rows whose tok, seq, pos are on the device: keys and values
// enter the cache; c->x ends as the last residual stream. prefill_seq >= 0:
// the rows are consecutive positions pos0.. of that one sequence and attend
// through the flash kernel; else one row per sequence, through the decode
// kernel. Nothing here synchronizes: the decode step is captured in a graph.
static int kv_rows(CudaKV *c, int R, int prefill_seq, int pos0, char *err) {
    CudaModel *g = c->g;
    const Config *cf = &g->c;
    const int H = cf->n_heads, KV = cf->n_kv_heads, hd = cf->head_dim, Dq = H * hd, Dkv = KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const long seq_stride = (long)c->max_T * Dkv;
    const RowMap qmap = {c->pos, NULL, 0, 0, Dq}, cmap = {c->pos, c->seq, 0, seq_stride, Dkv};
    bf16 *const us[N_PROJ] = {c->u, c->u, c->u, c->u, c->u, c->u, c->u};   // x A^T: scratch, nothing to keep
    if (embed(g, c->tok, c->x, R, err)) return -1;
    for (int l = 0; l < cf->n_layers; l++) {
        const GLayer *W = &g->layers[l];
        bf16 *kc = c->k + (size_t)l * c->B * seq_stride, *vc = c->v + (size_t)l * c->B * seq_stride;
        if (rmsnorm_forward(g, c->x, W->attn_norm, c->xn, NULL, R, err) || qkv_forward(g, NULL, W, c->xn, c->qkv32, us, R, err) ||
            qkv_rope(g, c->qkv32, W->bqkv, c->qb, kc, vc, c->rope_cos, c->rope_sin, qmap, cmap, R, err))
            return -1;
        if (prefill_seq >= 0) {
            const AttnFwd at = {.q = c->qb, .k = kc + prefill_seq * seq_stride, .v = vc + prefill_seq * seq_stride, .o = c->atty,
                                .lse = NULL, .q_bs = 0, .kv_bs = 0, .q_rs = Dq, .kv_rs = Dkv, .Tq = R, .pos0 = pos0, .H = H, .KV = KV, .hd = hd,
                                .scale = scale};
            if (attention_forward(g, at, 1, err)) return -1;
        } else {
            LAUNCH(kv_attention_kernel, dim3(H, R), DEC_WARPS * 32, 0, g->st, c->qb, kc, vc, c->atty, c->seq, c->pos, seq_stride, H, KV, hd,
                   scale);
        }
        if (linear_forward(g, NULL, &W->p[PROJ_O], c->atty, c->x, 1.0f, c->u, R, err) || rmsnorm_forward(g, c->x, W->mlp_norm, c->xn, NULL, R, err) ||
            gate_up_forward(g, NULL, W, c->xn, c->gu32, us, R, err))
            return -1;
        if (swiglu_forward(g, c->h, NULL, NULL, c->gu32, R, err) || linear_forward(g, NULL, &W->p[PROJ_DOWN], c->h, c->x, 1.0f, c->u, R, err))
            return -1;
    }
    return 0;
}

// Final norm and LM head of n rows of c->x starting at row r0, into logits rows at0..
static int kv_head(CudaKV *c, int r0, int n, int at0, char *err) {
    CudaModel *g = c->g;
    const int D = g->c.dim, V = g->c.vocab;
    if (rmsnorm_forward(g, c->x + (size_t)r0 * D, g->norm, c->xn, NULL, n, err)) return -1;
    return gemm(g, 0, 1, n, V, D, 1.0f, c->xn, D, g->lm_head, D, 0.0f, c->logits + (size_t)at0 * V, 0, V, err);
}

// tok, seq, pos (pinned h_rows) to the device; tok, seq, pos lie back to back there too.
static int kv_upload_rows(CudaKV *c, char *err) {
    CK(cudaMemcpyAsync(c->tok, c->h_rows, 3 * (size_t)c->R * sizeof(int), cudaMemcpyHostToDevice, c->g->st));
    return 0;
}

// A new adapter moved the buffers the captured graphs point at.
static int kv_check_lora(CudaKV *c, char *err) {
    if (c->lora_gen == c->g->lora_gen) return 0;
    kv_drop_graphs(c);
    c->lora_gen = c->g->lora_gen;
    if (c->g->r > c->r_cap) return errf(err, "adapter rank %d: this KV cache was made for rank %d at most; make a new one", c->g->r, c->r_cap);
    return 0;
}

extern "C" int cuda_kv_prefill(CudaKV *c, int n, const int *const *prompts, const int *lens, float *logits, char *err) {
    CudaModel *g = c->g;
    const int V = g->c.vocab;
    if (n > c->B) return errf(err, "%d sequences, the cache holds %d", n, c->B);
    if (kv_check_lora(c, err)) return -1;
    for (int b = 0; b < n; b++) {
        if (lens[b] < 1 || c->len[b] + lens[b] > c->max_T) return errf(err, "prompt %d: %d tokens do not fit the cache (%d)", b, lens[b], c->max_T - c->len[b]);
        for (int i = 0; i < lens[b]; i++)
            if (prompts[b][i] < 0 || prompts[b][i] >= V) return errf(err, "token id %d outside the vocabulary (%d)", prompts[b][i], V);
    }
    int *tok = c->h_rows, *seq = tok + c->R, *pos = seq + c->R;
    for (int b = 0; b < n; b++)
        for (int i0 = 0; i0 < lens[b]; i0 += c->R) {
            const int R = imin(c->R, lens[b] - i0), pos0 = c->len[b] + i0;
            CK(cudaStreamSynchronize(g->st));   // the previous chunk's copy of h_rows is done
            for (int i = 0; i < R; i++) {
                tok[i] = prompts[b][i0 + i];
                seq[i] = b;
                pos[i] = pos0 + i;
            }
            if (kv_upload_rows(c, err) || kv_rows(c, R, b, pos0, err)) return -1;
            if (i0 + R == lens[b] && kv_head(c, R - 1, 1, b, err)) return -1;
        }
    CK(cudaMemcpyAsync(c->h_logits, c->logits, (size_t)n * V * sizeof(float), cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
    memcpy(logits, c->h_logits, (size_t)n * V * sizeof(float));
    for (int b = 0; b < n; b++) c->len[b] += lens[b];
    note_memory();
    return 0;
}

static int kv_step_body(CudaKV *c, int n, int greedy, char *err) {
    if (kv_rows(c, n, -1, 0, err) || kv_head(c, 0, n, 0, err)) return -1;
    if (greedy) LAUNCH(argmax_kernel, n, 256, 0, c->g->st, c->logits, c->g->c.vocab, c->next);
    return 0;
}

// The decode step of n rows: eager the first time (it loads kernels and
// warms cuBLAS), then captured once into a graph and replayed.
static int kv_step_run(CudaKV *c, int n, int greedy, char *err) {
    CudaModel *g = c->g;
    const int at = greedy * (c->B + 1) + n;
    if (!c->use_graphs || !c->warm[at]) {
        c->warm[at] = 1;
        return kv_step_body(c, n, greedy, err);
    }
    if (!c->graphs[at]) {
        cudaGraph_t graph = NULL;
        CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
        char why[ERR_MAX];
        const int rc = kv_step_body(c, n, greedy, why);
        const cudaError_t e = cudaStreamEndCapture(g->st, &graph);
        cudaError_t ei = cudaErrorUnknown;
        if (!rc && e == cudaSuccess) ei = cudaGraphInstantiate(&c->graphs[at], graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (rc || e != cudaSuccess || ei != cudaSuccess) {   // not capturable here: decode eagerly from now on
            cudaGetLastError();
            c->graphs[at] = NULL;
            c->use_graphs = 0;
            return kv_step_body(c, n, greedy, err);
        }
    }
    CK(cudaGraphLaunch(c->graphs[at], g->st));
    return 0;
}

// One token for each of n sequences; logits (n, V) back, or (next != NULL)
// only the greedy choice of each row.
static int kv_step(CudaKV *c, int n, const int *seqs, const int *tokens, float *logits, int *next, char *err) {
    CudaModel *g = c->g;
    const int V = g->c.vocab;
    if (n < 1 || n > c->B) return errf(err, "%d rows for a cache of %d sequences", n, c->B);
    if (kv_check_lora(c, err)) return -1;
    for (int i = 0; i < n; i++) {   // check everything before touching the cache
        if (seqs[i] < 0 || seqs[i] >= c->B) return errf(err, "sequence %d outside the cache's batch of %d", seqs[i], c->B);
        if (c->len[seqs[i]] >= c->max_T) return errf(err, "sequence %d is full (%d tokens)", seqs[i], c->max_T);
        if (tokens[i] < 0 || tokens[i] >= V) return errf(err, "token id %d outside the vocabulary (%d)", tokens[i], V);
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return errf(err, "sequence %d appears twice in one step", seqs[i]);
    }
    int *tok = c->h_rows, *seq = tok + c->R, *pos = seq + c->R;
    CK(cudaStreamSynchronize(g->st));
    for (int i = 0; i < n; i++) {
        tok[i] = tokens[i];
        seq[i] = seqs[i];
        pos[i] = c->len[seqs[i]];
    }
    if (kv_upload_rows(c, err) || kv_step_run(c, n, next != NULL, err)) return -1;
    if (next) {
        int *h_next = c->h_rows + 3 * c->R;
        CK(cudaMemcpyAsync(h_next, c->next, n * sizeof(int), cudaMemcpyDeviceToHost, g->st));
        CK(cudaStreamSynchronize(g->st));
        memcpy(next, h_next, n * sizeof(int));
    } else {
        CK(cudaMemcpyAsync(c->h_logits, c->logits, (size_t)n * V * sizeof(float), cudaMemcpyDeviceToHost, g->st));
        CK(cudaStreamSynchronize(g->st));
        memcpy(logits, c->h_logits, (size_t)n * V * sizeof(float));
    }
    for (int i = 0; i < n; i++) c->len[seqs[i]]++;
    return 0;
}

extern "C" int cuda_kv_step(CudaKV *c, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    return kv_step(c, n, seqs, tokens, logits, NULL, err);
}

extern "C" int cuda_kv_step_greedy(CudaKV *c, int n, const int *seqs, const int *tokens, int *next, char *err) {
    return kv_step(c, n, seqs, tokens, NULL, next, err);
}

extern "C" int cuda_kv_graphs(const CudaKV *c) { return c->use_graphs; }
