// test/cuda_emu.h: just enough of the CUDA runtime, cuBLAS and WMMA, on the
// CPU, for kernels.cu to compile as plain C++ (-DSEAL_CUDA_EMU) and run, so
// the CUDA backend's logic is tested on machines without a GPU
// (make test-cuda-emu). Not a simulator of timing or of the memory model:
//
// - every block runs its threads as fibers (ucontext) in one OS thread;
//   __syncthreads, warp shuffles, __syncwarp and the warp-wide WMMA calls are
//   barriers between the fibers that must all reach them (a divergent
//   barrier is reported as a deadlock). SEAL_EMU_ORDER=reverse runs the
//   fibers in the opposite order, which exposes a missing barrier;
// - dynamic shared memory and cudaMalloc'd memory start as NaN bytes, so a
//   read of memory never written shows up in the results;
// - launches are checked against the hardware's limits (threads per block,
//   grid sizes, the dynamic shared memory raised by cudaFuncSetAttribute),
//   copies and cuBLAS operands against the extents of the allocations, WMMA
//   pointers and leading dimensions against its alignment rules, cuBLAS
//   leading dimensions against its rules; stream capture records the work
//   and refuses synchronous calls, as the real one does;
// - cublasGemmEx is a column-major reference product (fp32 accumulation,
//   bf16 results rounded to nearest even);
// - built with -DSEAL_EMU_EXACT, a "bf16" value holds a whole float (the
//   kernels' f2bf and bf2f, WMMA and cuBLAS then round nothing), so the
//   CUDA path must equal model.c up to the order of fp32 sums: a check of
//   the logic that bf16 noise cannot hide;
// - SEAL_EMU_NO_DEVICE=1 makes cudaGetDeviceCount report no device and
//   SEAL_EMU_SMEM=BYTES sets the opt-in shared memory per block (default an
//   H100's 232448).
// Errors the real runtime would return come back the same way; misuse it
// would not catch (or would catch only as a crash) aborts with a message.
#pragma once
#include "kernels_math.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static   // blocks run one after another: one instance serves them all

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint4 { unsigned x, y, z, w; };
#ifdef SEAL_EMU_EXACT
struct __nv_bfloat16 { float v; };
inline float emu_bf_load(__nv_bfloat16 h) { return h.v; }
inline __nv_bfloat16 emu_bf_store(float f) { return __nv_bfloat16{f}; }
#else
struct __nv_bfloat16 { uint16_t bits; };
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16 h;
    h.bits = u;
    return h;
}
inline float emu_bf_load(__nv_bfloat16 h) { return seal_bf2f(h.bits); }
inline __nv_bfloat16 emu_bf_store(float f) { return __ushort_as_bfloat16(seal_f2bf(f)); }
#endif

// ----------------------------------------------------------------------------
// Runtime types

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorUnknown = 999,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr {
    cudaDevAttrClockRate = 13,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum { cudaStreamNonBlocking = 1 };

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlockOptin;
    int major, minor, multiProcessorCount;
};

namespace emu {
struct Op;
typedef std::vector<std::function<void()>> OpList;
struct Stream {
    bool capturing, invalidated;
    OpList ops;
};
struct Graph { OpList ops; };
}   // namespace emu
typedef emu::Stream *cudaStream_t;
typedef emu::Graph *cudaGraph_t;
typedef emu::Graph *cudaGraphExec_t;

namespace emu {

[[noreturn]] inline void die(const char *what) {
    fprintf(stderr, "cuda_emu: %s\n", what);
    abort();
}

inline cudaError_t g_last_error = cudaSuccess;
inline cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess && g_last_error == cudaSuccess) g_last_error = e;
    return e;
}

// Allocations: device (cudaMalloc) and pinned host (cudaMallocHost).
inline std::map<uintptr_t, size_t> g_dev, g_pinned;
inline size_t g_dev_bytes;

// The allocation of `m` that holds [p, p + n), or NULL.
inline bool within(const std::map<uintptr_t, size_t> &m, const void *p, size_t n) {
    const uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}
inline bool is_dev(const void *p, size_t n) { return within(g_dev, p, n); }

inline std::map<const void *, int> g_smem_limit;   // kernel -> raised dynamic shared memory

inline int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}
inline int smem_optin() { return env_int("SEAL_EMU_SMEM", 232448); }

// Work on a stream: now, or into the capture.
inline bool any_capturing();
inline void submit(cudaStream_t st, std::function<void()> op) {
    if (st && st->capturing) st->ops.push_back(std::move(op));
    else {
        if (!st && any_capturing()) die("work on the legacy stream during a capture (the real runtime invalidates the capture)");
        op();
    }
}

inline std::vector<Stream *> g_streams;
inline bool any_capturing() {
    for (Stream *s : g_streams)
        if (s->capturing) return true;
    return false;
}

// ----------------------------------------------------------------------------
// Threads as fibers

enum { FIBER_STACK = 256 << 10 };

struct Fiber {
    ucontext_t ctx;
    dim3 tid;
    int linear, done;
    char *stack;
};

inline dim3 g_block_idx, g_block_dim, g_grid_dim;
inline Fiber *g_cur;
inline std::vector<Fiber> g_pool;   // fibers with their stacks, reused by every block
inline int g_nthreads;              // threads of the running block
inline ucontext_t g_sched;
inline const std::function<void()> *g_body;
inline unsigned char *g_dyn_smem;
inline size_t g_dyn_smem_size;
inline long g_progress;   // arrivals and exits: a scheduler round without any is a deadlock

struct Barrier {
    int arrived;
    unsigned gen;
};
inline Barrier g_block_bar;
inline std::vector<Barrier> g_warp_bar;
inline std::vector<uint64_t> g_xchg;   // 32 slots per warp for shuffles

inline unsigned char *dyn_smem() { return g_dyn_smem; }

inline void fiber_main() {
    (*g_body)();
    g_cur->done = 1;
    g_progress++;
    swapcontext(&g_cur->ctx, &g_sched);
    die("a finished fiber resumed");
}

inline void barrier_wait(Barrier &b, int participants) {
    const unsigned gen = b.gen;
    g_progress++;
    if (++b.arrived == participants) {
        b.arrived = 0;
        b.gen++;
        return;
    }
    while (b.gen == gen) swapcontext(&g_cur->ctx, &g_sched);
}

inline int warp_size_of(int warp) {
    const int n = g_nthreads - warp * 32;
    return n < 32 ? n : 32;
}

inline void warp_barrier() {
    const int w = g_cur->linear / 32;
    barrier_wait(g_warp_bar[w], warp_size_of(w));
}

inline void check_mask(unsigned mask) {
    if (mask != 0xffffffffu) die("only full-warp masks are emulated");
}

inline void run_block(int nthreads, bool reverse) {
    while (g_pool.size() < (size_t)nthreads) {
        g_pool.emplace_back();
        g_pool.back().stack = (char *)malloc(FIBER_STACK);
    }
    g_nthreads = nthreads;
    for (int i = 0; i < nthreads; i++) {
        Fiber &f = g_pool[i];
        f.linear = i;
        f.done = 0;
        f.tid = dim3(i % g_block_dim.x, i / g_block_dim.x % g_block_dim.y, i / (g_block_dim.x * g_block_dim.y));
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = FIBER_STACK;
        f.ctx.uc_link = NULL;
        makecontext(&f.ctx, fiber_main, 0);
    }
    g_block_bar = Barrier{0, 0};
    g_warp_bar.assign((nthreads + 31) / 32, Barrier{0, 0});
    g_xchg.assign(((nthreads + 31) / 32) * 32, 0);
    for (;;) {
        const long before = g_progress;
        int live = 0;
        for (int k = 0; k < nthreads; k++) {
            Fiber &f = g_pool[reverse ? nthreads - 1 - k : k];
            if (f.done) continue;
            g_cur = &f;
            swapcontext(&g_sched, &f.ctx);
            live += !f.done;
        }
        if (!live) break;
        if (g_progress == before) die("deadlock: threads of a block wait at different barriers (divergent __syncthreads or warp op)");
    }
    g_cur = NULL;
}

inline void run_kernel(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    const int nthreads = (int)(block.x * block.y * block.z);
    const bool reverse = getenv("SEAL_EMU_ORDER") && !strcmp(getenv("SEAL_EMU_ORDER"), "reverse");
    // aligned as kernels.cu declares it (__align__(128)); malloc's 16 would fail WMMA's checks
    unsigned char *dyn = (unsigned char *)aligned_alloc(128, (smem + 127) / 128 * 128 + 128);
    g_body = &body;
    g_block_dim = block;
    g_grid_dim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                memset(dyn, 0xff, smem);   // NaN: reads before writes show
                g_dyn_smem = dyn;
                g_dyn_smem_size = smem;
                g_block_idx = dim3(x, y, z);
                run_block(nthreads, reverse);
            }
    free(dyn);
    g_body = NULL;
}

template <class K, class... A>
void launch(const void *id, dim3 grid, dim3 block, size_t smem, cudaStream_t st, K kernel, A... args) {
    const unsigned long threads = (unsigned long)block.x * block.y * block.z;
    const auto lim = g_smem_limit.find(id);
    const size_t smem_max = lim == g_smem_limit.end() ? 48 * 1024 : (size_t)lim->second;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (threads % 32) die("block size not a multiple of 32 (the kernels assume full warps)");
    if (smem > smem_max) {
        set_error(cudaErrorInvalidValue);
        return;
    }
    auto t = std::make_tuple(args...);
    submit(st, [=]() { run_kernel(grid, block, smem, [&]() { std::apply(kernel, t); }); });
}

}   // namespace emu

#define threadIdx (emu::g_cur->tid)
#define blockIdx (emu::g_block_idx)
#define blockDim (emu::g_block_dim)
#define gridDim (emu::g_grid_dim)

// ----------------------------------------------------------------------------
// Device functions

inline void __syncthreads() { emu::barrier_wait(emu::g_block_bar, emu::g_nthreads); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    emu::check_mask(mask);
    emu::warp_barrier();
}

template <class T>
T emu_shfl(T v, int src_of_lane_xor, bool is_xor) {
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    const int lane = emu::g_cur->linear % 32, w = emu::g_cur->linear / 32;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    emu::g_xchg[w * 32 + lane] = bits;
    emu::warp_barrier();
    const int src = is_xor ? lane ^ src_of_lane_xor : src_of_lane_xor;
    if (src < 0 || src >= emu::warp_size_of(w)) emu::die("shuffle from a lane outside the warp");
    T r;
    bits = emu::g_xchg[w * 32 + src];
    memcpy(&r, &bits, sizeof r);
    emu::warp_barrier();   // nobody overwrites a slot before all have read
    return r;
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    emu::check_mask(mask);
    return emu_shfl(v, lane_mask, true);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src) {
    emu::check_mask(mask);
    return emu_shfl(v, src, false);
}

inline float atomicAdd(float *p, float v) {
    const float old = *p;
    *p = old + v;
    return old;
}
inline double atomicAdd(double *p, double v) {
    const double old = *p;
    *p = old + v;
    return old;
}

// ----------------------------------------------------------------------------
// WMMA: a fragment holds its whole 16x16 tile (row-major, as float) in every
// lane; each call is warp-wide (a barrier of the warp) and checks the
// alignment rules of the real one: 256-bit aligned pointers, leading
// dimensions a multiple of 16 bytes.

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16 fragments are emulated");
    float x[256];
};

inline void check_ptr(const void *p, unsigned ldm, size_t elem) {
    if ((uintptr_t)p % 32) emu::die("wmma: pointer not 256-bit aligned");
    if (ldm * elem % 16) emu::die("wmma: leading dimension not a multiple of 16 bytes");
}

template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout> &f, const __nv_bfloat16 *p, unsigned ldm) {
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value, "a layout is needed");
    check_ptr(p, ldm, 2);
    emu::warp_barrier();
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) {
            f.x[r * 16 + c] = emu_bf_load(std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[c * ldm + r]);
        }
    emu::warp_barrier();
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    emu::warp_barrier();
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    emu::warp_barrier();
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    check_ptr(p, ldm, 4);
    emu::warp_barrier();
    if (emu::g_cur->linear % 32 == 0)   // one lane writes; the others wait
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
    emu::warp_barrier();
}

inline void fill_fragment(fragment<accumulator, 16, 16, 16, float> &f, float v) {
    emu::warp_barrier();
    for (int i = 0; i < 256; i++) f.x[i] = v;
}

template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    emu::warp_barrier();
    float t[256];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[i * 16 + j];
            for (int k = 0; k < 16; k++) s += a.x[i * 16 + k] * b.x[k * 16 + j];
            t[i * 16 + j] = s;
        }
    memcpy(d.x, t, sizeof t);
}
}   // namespace wmma
}   // namespace nvcuda

// ----------------------------------------------------------------------------
// Runtime API

inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    default: return "unknown error";
    }
}

inline cudaError_t cudaGetLastError() {
    const cudaError_t e = emu::g_last_error;
    emu::g_last_error = cudaSuccess;
    return e;
}

inline cudaError_t cudaGetDeviceCount(int *n) {
    if (emu::env_int("SEAL_EMU_NO_DEVICE", 0)) {
        *n = 0;
        return emu::set_error(cudaErrorNoDevice);
    }
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : emu::set_error(cudaErrorInvalidValue); }

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return emu::set_error(cudaErrorInvalidValue);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "SEAL CPU emulator of CUDA");
    p->totalGlobalMem = (size_t)8 << 30;
    p->sharedMemPerBlockOptin = emu::smem_optin();
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 4;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (d != 0) return emu::set_error(cudaErrorInvalidValue);
    switch (a) {
    case cudaDevAttrClockRate: *v = 1000000; break;
    case cudaDevAttrMemoryClockRate: *v = 1000000; break;
    case cudaDevAttrGlobalMemoryBusWidth: *v = 64; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = emu::smem_optin(); break;
    default: return emu::set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

inline cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > emu::smem_optin()) return emu::set_error(cudaErrorInvalidValue);
    emu::g_smem_limit[f] = v;
    return cudaSuccess;
}

inline cudaError_t cudaMalloc(void **p, size_t n) {
    if (emu::any_capturing()) emu::die("cudaMalloc during a capture");
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return emu::set_error(cudaErrorMemoryAllocation);
    memset(*p, 0xff, n);   // NaN
    emu::g_dev[(uintptr_t)*p] = n;
    emu::g_dev_bytes += n;
    return cudaSuccess;
}
template <class T>
cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
template <class T>
cudaError_t cudaMallocHost(T **p, size_t n);
inline cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto it = emu::g_dev.find((uintptr_t)p);
    if (it == emu::g_dev.end()) emu::die("cudaFree of a pointer cudaMalloc did not return");
    emu::g_dev_bytes -= it->second;
    emu::g_dev.erase(it);
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return emu::set_error(cudaErrorMemoryAllocation);
    emu::g_pinned[(uintptr_t)*p] = n;
    return cudaSuccess;
}
template <class T>
cudaError_t cudaMallocHost(T **p, size_t n) { return cudaMallocHost((void **)p, n); }
inline cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    if (!emu::g_pinned.erase((uintptr_t)p)) emu::die("cudaFreeHost of a pointer cudaMallocHost did not return");
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    *total = (size_t)8 << 30;
    *free_b = *total - emu::g_dev_bytes;
    return cudaSuccess;
}

inline cudaError_t emu_copy(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t st, bool sync) {
    const bool dd = emu::is_dev(dst, n), sd = emu::is_dev(src, n);
    const bool ok = k == cudaMemcpyHostToDevice ? dd && !emu::is_dev(src, 1)
                  : k == cudaMemcpyDeviceToHost ? sd && !emu::is_dev(dst, 1)
                  : k == cudaMemcpyDeviceToDevice ? dd && sd : false;
    if (!ok) emu::die("cudaMemcpy: a device operand is not inside one allocation, or the kind is wrong");
    if (sync && emu::any_capturing()) return emu::set_error(cudaErrorStreamCaptureUnsupported);
    if (st && st->capturing && k != cudaMemcpyDeviceToDevice) {
        const void *host = k == cudaMemcpyHostToDevice ? src : dst;
        if (!emu::within(emu::g_pinned, host, n)) emu::die("a captured copy to or from pageable host memory");
    }
    emu::submit(st, [=]() { memcpy(dst, src, n); });
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) { return emu_copy(d, s, n, k, NULL, true); }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st) { return emu_copy(d, s, n, k, st, false); }
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
    if (!emu::is_dev(d, n)) emu::die("cudaMemset outside an allocation");
    emu::submit(st, [=]() { memset(d, v, n); });
    return cudaSuccess;
}

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned) {
    *st = new emu::Stream{false, false, {}};
    emu::g_streams.push_back(*st);
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t st) {
    for (size_t i = 0; i < emu::g_streams.size(); i++)
        if (emu::g_streams[i] == st) emu::g_streams.erase(emu::g_streams.begin() + i);
    delete st;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t st) {
    if (emu::any_capturing()) {
        if (st && st->capturing) st->invalidated = true;
        return emu::set_error(cudaErrorStreamCaptureUnsupported);
    }
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaStreamSynchronize(NULL); }

inline cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode) {
    if (!st || st->capturing) return emu::set_error(cudaErrorInvalidValue);
    st->capturing = true;
    st->invalidated = false;
    st->ops.clear();
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *g) {
    if (!st || !st->capturing) return emu::set_error(cudaErrorInvalidValue);
    st->capturing = false;
    *g = NULL;
    if (st->invalidated) return emu::set_error(cudaErrorStreamCaptureInvalidated);
    *g = new emu::Graph{std::move(st->ops)};
    st->ops.clear();
    return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = new emu::Graph{g->ops};
    return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}
inline long g_emu_graph_launches;
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t st) {
    g_emu_graph_launches++;
    for (auto &op : e->ops) emu::submit(st, op);
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// cuBLAS: cublasGemmEx, column-major, host pointer mode

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
struct cublasContext {
    cudaStream_t st;
    void *ws;
};
typedef cublasContext *cublasHandle_t;

inline const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cublasContext{NULL, NULL};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st) {
    h->st = st;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t n) {
    if (!emu::is_dev(ws, n)) return CUBLAS_STATUS_INVALID_VALUE;
    h->ws = ws;
    return CUBLAS_STATUS_SUCCESS;
}

inline float emu_load(const void *p, cudaDataType t, size_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : emu_bf_load(((const __nv_bfloat16 *)p)[i]);
}

// A column-major operand of rows x cols with leading dimension ld lies within one allocation.
inline bool emu_operand_ok(const void *p, cudaDataType t, int rows, int cols, int ld) {
    if (rows == 0 || cols == 0) return true;
    const size_t elem = t == CUDA_R_32F ? 4 : sizeof(__nv_bfloat16);
    return emu::is_dev(p, ((size_t)(cols - 1) * ld + rows) * elem);
}

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha,
                                   const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, const void *beta, void *C,
                                   cudaDataType ct, int ldc, cublasComputeType_t comp, cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    if (at != CUDA_R_16BF || bt != CUDA_R_16BF || (ct != CUDA_R_16BF && ct != CUDA_R_32F) || comp != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!emu_operand_ok(A, at, a_rows, a_cols, lda) || !emu_operand_ok(B, bt, b_rows, b_cols, ldb) || !emu_operand_ok(C, ct, m, n, ldc))
        emu::die("cublasGemmEx: an operand reaches outside its allocation");
    const float al = *(const float *)alpha, be = *(const float *)beta;
    emu::submit(h->st, [=]() {
        std::vector<float> acc(m);
        for (int j = 0; j < n; j++) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int l = 0; l < k; l++) {
                const float b = emu_load(B, bt, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb);
                for (int i = 0; i < m; i++) acc[i] += emu_load(A, at, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda) * b;
            }
            for (int i = 0; i < m; i++) {
                const size_t at_c = i + (size_t)j * ldc;
                const float v = al * acc[i] + (be == 0.0f ? 0.0f : be * emu_load(C, ct, at_c));
                if (ct == CUDA_R_32F) ((float *)C)[at_c] = v;
                else ((__nv_bfloat16 *)C)[at_c] = emu_bf_store(v);
            }
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}
