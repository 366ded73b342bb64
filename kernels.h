// kernels.h: the CUDA backend's host interface, plain C. kernels.cu implements
// it when the binary is built with nvcc (-DSEAL_CUDA); in a CPU-only build the
// functions below are stubs that report "built without CUDA", so callers need
// no #ifdefs.
//
// A CudaModel is a Model on the GPU: base weights in bf16 (frozen: no base
// gradients are ever computed), norms and Qwen2's q/k/v biases in fp32 (frozen
// too), and the attached LoRA adapter
// as fp32 master tensors (plus their gradients and AdamW moments, all in the
// order of the adapter's Table, so one copy moves a whole table) with bf16
// copies for the matrix products. The math is model.c's; only the bf16
// roundings and the order of long sums differ.
#pragma once
#include "model.h"

typedef struct CudaModel CudaModel;
typedef struct CudaKV CudaKV;

#ifdef SEAL_CUDA
#ifdef __cplusplus
extern "C" {
#endif

// 1 when a usable CUDA device (compute capability 8.0 or newer) is present;
// else 0 with the reason in why ("no CUDA device (...)").
int cuda_available(char *why);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, 132 SMs" into buf.
void cuda_device_name(char *buf, size_t n);

// Uploads m (and the adapter attached to it, if any). NULL with err on failure.
CudaModel *cuda_model_new(const Model *m, char *err);
void cuda_model_free(CudaModel *g);
// Replaces the adapter with l (same shapes or new ones; NULL detaches) and
// zeroes its gradients and AdamW state.
int cuda_lora_set(CudaModel *g, const Lora *l, char *err);
// The same with K adapters of one shape (K <= MAX_ADAPTERS), adapter k
// (0..K-1) with its own gradients and AdamW state: cuda_forward_many trains
// them together. Adapter 0 is the one decoding reads.
int cuda_lora_set_many(CudaModel *g, const Lora *const *l, int K, char *err);
// Copies adapter k's parameters (what = 0) or gradients (what = 1) into the
// host table of the same adapter.
int cuda_lora_get(CudaModel *g, int k, Table *dst, int what, char *err);

// Forward on ids (B,T); with labels (B,T, -100 ignored, shifted inside as in
// Hugging Face) *loss gets the mean cross-entropy, else 0. logits (B,T,V),
// when not NULL, receives the logits. train = 1 also keeps what cuda_backward
// needs (the LM head's gradient is computed here, chunk by chunk, so the
// logits of the whole batch never exist on the GPU at once).
int cuda_forward(CudaModel *g, const int *ids, const int *labels, int B, int T, int train, float *logits, float *loss, char *err);
// model_forward_many's twin: batch rows (sum of rows, T), the first rows[0]
// through adapter which[0], the next rows[1] through which[1], ...; loss[j]
// the mean over entry j's rows. The base products run once over every row.
// cuda_forward is this with one entry, adapter 0.
int cuda_forward_many(CudaModel *g, const int *ids, const int *labels, int K, const int *which, const int *rows, int T, int train,
                      float *logits, float *loss, char *err);
// Backward of the last train = 1 forward: adds into the adapters' gradients.
int cuda_backward(CudaModel *g, char *err);
int cuda_zero_grads(CudaModel *g, char *err);   // every adapter's
// torch.nn.utils.clip_grad_norm_ on adapter k: *norm gets the norm before
// clipping; the clipping itself happens inside its next cuda_adamw_step.
int cuda_clip_grad_norm(CudaModel *g, int k, float max_norm, float *norm, char *err);
// One torch.optim.AdamW step on adapter k (its moments live on the GPU).
int cuda_adamw_step(CudaModel *g, int k, float lr, float beta1, float beta2, float eps, float weight_decay, char *err);

// KV cache for up to B sequences of up to max_T tokens (kv_init's twin).
CudaKV *cuda_kv_new(CudaModel *g, int B, int max_T, char *err);
void cuda_kv_free(CudaKV *c);
int cuda_kv_len(const CudaKV *c, int b);
void cuda_kv_reset(CudaKV *c, int b);     // sequence b starts over
// kv_prefill's and kv_step's twins: logits (n, V) of each prompt's last
// token / of each sequence's new token. Prompts go through in passes of up to
// 1024 rows (SEAL_CUDA_PREFILL_ROWS); decode steps of each batch size are
// replayed from CUDA graphs (SEAL_CUDA_GRAPHS=0 turns them off).
int cuda_kv_prefill(CudaKV *c, int n, const int *const *prompts, const int *lens, float *logits, char *err);
int cuda_kv_step(CudaKV *c, int n, const int *seqs, const int *tokens, float *logits, char *err);
// cuda_kv_step followed by the greedy choice on the GPU: next[i] is the argmax
// of row i's logits (the lowest id on ties, as generate.c's), and the logits
// never travel to the host.
int cuda_kv_step_greedy(CudaKV *c, int n, const int *seqs, const int *tokens, int *next, char *err);

// 1 while decode steps replay CUDA graphs (0: turned off, or capture failed
// and the cache fell back to launching the kernels one by one).
int cuda_kv_graphs(const CudaKV *c);

// Bytes of device memory in use now (cudaMemGetInfo), and the largest amount
// seen by any cuda_* call so far.
size_t cuda_memory_used(void);
size_t cuda_memory_peak(void);
// Device 0's peak dense bf16 tensor-core FLOP/s and memory bandwidth in
// bytes/s (NVIDIA's figures for known parts, else from its attributes).
void cuda_device_peaks(double *flops, double *bytes_per_s);

#ifdef __cplusplus
}
#endif

#else
// A CPU-only build: every entry point says so.
#include "util.h"
#define SEAL_NO_CUDA "built without CUDA (make with nvcc on the PATH)"
static inline int cuda_available(char *why) { errf(why, "no CUDA device (this binary was " SEAL_NO_CUDA ")"); return 0; }
static inline void cuda_device_name(char *buf, size_t n) { if (n) buf[0] = 0; }
static inline CudaModel *cuda_model_new(const Model *m, char *err) { (void)m; errf(err, "no CUDA device (this binary was " SEAL_NO_CUDA ")"); return 0; }
static inline void cuda_model_free(CudaModel *g) { (void)g; }
static inline int cuda_lora_set(CudaModel *g, const Lora *l, char *err) { (void)g; (void)l; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_lora_set_many(CudaModel *g, const Lora *const *l, int K, char *err) { (void)g; (void)l; (void)K; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_lora_get(CudaModel *g, int k, Table *d, int w, char *err) { (void)g; (void)k; (void)d; (void)w; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_forward(CudaModel *g, const int *i, const int *l, int B, int T, int t, float *lg, float *ls, char *err) {
    (void)g; (void)i; (void)l; (void)B; (void)T; (void)t; (void)lg; (void)ls;
    return errf(err, SEAL_NO_CUDA);
}
static inline int cuda_forward_many(CudaModel *g, const int *i, const int *l, int K, const int *w, const int *r, int T, int t, float *lg, float *ls,
                                    char *err) {
    (void)g; (void)i; (void)l; (void)K; (void)w; (void)r; (void)T; (void)t; (void)lg; (void)ls;
    return errf(err, SEAL_NO_CUDA);
}
static inline int cuda_backward(CudaModel *g, char *err) { (void)g; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_zero_grads(CudaModel *g, char *err) { (void)g; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_clip_grad_norm(CudaModel *g, int k, float mx, float *nm, char *err) { (void)g; (void)k; (void)mx; (void)nm; return errf(err, SEAL_NO_CUDA); }
static inline int cuda_adamw_step(CudaModel *g, int k, float lr, float b1, float b2, float e, float wd, char *err) {
    (void)g; (void)k; (void)lr; (void)b1; (void)b2; (void)e; (void)wd;
    return errf(err, SEAL_NO_CUDA);
}
static inline CudaKV *cuda_kv_new(CudaModel *g, int B, int T, char *err) { (void)g; (void)B; (void)T; errf(err, SEAL_NO_CUDA); return 0; }
static inline void cuda_kv_free(CudaKV *c) { (void)c; }
static inline int cuda_kv_len(const CudaKV *c, int b) { (void)c; (void)b; return 0; }
static inline void cuda_kv_reset(CudaKV *c, int b) { (void)c; (void)b; }
static inline int cuda_kv_prefill(CudaKV *c, int n, const int *const *p, const int *l, float *lg, char *err) {
    (void)c; (void)n; (void)p; (void)l; (void)lg;
    return errf(err, SEAL_NO_CUDA);
}
static inline int cuda_kv_step(CudaKV *c, int n, const int *s, const int *t, float *lg, char *err) {
    (void)c; (void)n; (void)s; (void)t; (void)lg;
    return errf(err, SEAL_NO_CUDA);
}
static inline int cuda_kv_step_greedy(CudaKV *c, int n, const int *s, const int *t, int *nx, char *err) {
    (void)c; (void)n; (void)s; (void)t; (void)nx;
    return errf(err, SEAL_NO_CUDA);
}
static inline int cuda_kv_graphs(const CudaKV *c) { (void)c; return 0; }
static inline size_t cuda_memory_used(void) { return 0; }
static inline void cuda_device_peaks(double *f, double *b) { *f = *b = 0.0; }
static inline size_t cuda_memory_peak(void) { return 0; }
#endif
