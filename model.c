// model.c: Llama (and Qwen2) on the CPU, in fp32: the parameter tables,
// forward, backward, LoRA, KV-cache decoding. This file is the reference every
// other path is checked against, so it favours plain loops with shape comments
// over tricks. Files on disk are checkpoint.c's.
//
// The math is Hugging Face LlamaForCausalLM: pre-norm RMSNorm, RoPE in the
// rotate_half layout (dimension j pairs with j + hd/2) with optional llama3
// frequency scaling, grouped-query causal attention, SwiGLU MLP, final norm,
// tied or untied LM head, cross-entropy on labels shifted by one.
// Qwen2ForCausalLM is the same math plus a bias on the q, k and v projections.
#include "model.h"
#include "util.h"
#include "weights.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef _OPENMP
#include <omp.h>
#else   // built without OpenMP (the fuzz targets): one thread
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif
#ifdef USE_BLAS
#include <cblas.h>
#endif

const char *const PROJ_NAME[N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const char *const PROJ_BLOCK[N_PROJ] = {"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

int proj_has_bias(const Config *c, int p) { return c->arch == ARCH_QWEN2 && (p == PROJ_Q || p == PROJ_K || p == PROJ_V); }

// ----------------------------------------------------------------------------
// Tables of named tensors

void table_add(Table *t, const char *name, int rows, int cols) {
    if (strlen(name) >= sizeof t->t[0].name) abort();   // names are ours, never from input
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->t = xrealloc(t->t, (size_t)t->cap, sizeof(Tensor));
    }
    Tensor *x = &t->t[t->n++];
    memcpy(x->name, name, strlen(name) + 1);
    x->rows = rows;
    x->cols = cols;
    x->size = (size_t)rows * cols;
    x->data = NULL;
}

// Asks the kernel for 2 MiB pages over the whole 2 MiB blocks of [p, p + n),
// which only madvise gets where transparent huge pages are "madvise": the
// first touch of a block then costs one fault, not 512. A KV cache's scratch
// is touched first by the prefill that follows kv_init (an 8 x 128 prefill of
// the 25M model spent a fifth of its time in page faults); weights miss the
// TLB less in their products.
static void huge_pages(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b > a) madvise((void *)a, b - a, MADV_HUGEPAGE);   // a hint: failure leaves 4 KiB pages
#else
    (void)p, (void)n;
#endif
}

int table_alloc(Table *t) {
    t->total = 0;
    for (int i = 0; i < t->n; i++) t->total += t->t[i].size;
    t->mem = calloc(t->total ? t->total : 1, sizeof(float));
    if (!t->mem) return -1;
    huge_pages(t->mem, t->total * sizeof(float));
    float *p = t->mem;
    for (int i = 0; i < t->n; i++) { t->t[i].data = p; p += t->t[i].size; }
    return 0;
}

const Tensor *table_nonfinite(const Table *t) {
    for (int i = 0; i < t->n; i++)
        for (size_t j = 0; j < t->t[i].size; j++)
            if (!isfinite(t->t[i].data[j])) return &t->t[i];
    return NULL;
}

int table_like(Table *dst, const Table *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++) table_add(dst, src->t[i].name, src->t[i].rows, src->t[i].cols);
    return table_alloc(dst);
}

void table_free(Table *t) {
    free(t->t);
    free(t->mem);
    memset(t, 0, sizeof *t);
}

Tensor *table_get(const Table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->t[i].name, name)) return &t->t[i];
    return NULL;
}

void table_zero(Table *t) { memset(t->mem, 0, t->total * sizeof(float)); }

// ----------------------------------------------------------------------------
// The model's parameter table and the pointers into it

static void layer_name(char *s, size_t n, int l, const char *what) {
    snprintf(s, n, "model.layers.%d.%s", l, what);
}

// "model.layers.{l}.self_attn.q_proj.weight" (what = "weight") or ".bias"
static void proj_name(char *s, size_t n, int l, int p, const char *what) {
    snprintf(s, n, "model.layers.%d.%s.%s.%s", l, PROJ_BLOCK[p], PROJ_NAME[p], what);
}

void proj_shape(const Config *c, int p, int *out, int *in) {
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    const int outs[N_PROJ] = {q, kv, kv, c->dim, c->hidden, c->hidden, c->dim};
    const int ins[N_PROJ] = {c->dim, c->dim, c->dim, q, c->dim, c->dim, c->hidden};
    *out = outs[p];
    *in = ins[p];
}

static float *data_of(const Table *t, const char *name) {
    if (!t->mem) return NULL;
    Tensor *x = table_get(t, name);
    return x ? x->data : NULL;
}

// Point every Layer field at its tensor (and gradient, when allocated).
static void model_bind(Model *m) {
    const Config *c = &m->c;
    char s[160];
    m->embed = data_of(&m->params, "model.embed_tokens.weight");
    m->d_embed = data_of(&m->grads, "model.embed_tokens.weight");
    m->norm = data_of(&m->params, "model.norm.weight");
    m->d_norm = data_of(&m->grads, "model.norm.weight");
    m->lm_head = c->tied ? m->embed : data_of(&m->params, "lm_head.weight");
    m->d_lm_head = c->tied ? m->d_embed : data_of(&m->grads, "lm_head.weight");
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &m->layers[l];
        layer_name(s, sizeof s, l, "input_layernorm.weight");
        L->attn_norm = data_of(&m->params, s);
        L->d_attn_norm = data_of(&m->grads, s);
        layer_name(s, sizeof s, l, "post_attention_layernorm.weight");
        L->mlp_norm = data_of(&m->params, s);
        L->d_mlp_norm = data_of(&m->grads, s);
        for (int p = 0; p < N_PROJ; p++) {
            Linear *x = &L->proj[p];
            proj_shape(c, p, &x->out, &x->in);
            proj_name(s, sizeof s, l, p, "weight");
            x->w = data_of(&m->params, s);
            x->dw = data_of(&m->grads, s);
            proj_name(s, sizeof s, l, p, "bias");
            x->bias = data_of(&m->params, s);
            x->dbias = data_of(&m->grads, s);
        }
    }
}

int model_init(Model *m, const Config *c, char *err) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    char s[160];
    table_add(&m->params, "model.embed_tokens.weight", c->vocab, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        layer_name(s, sizeof s, l, "input_layernorm.weight");
        table_add(&m->params, s, 1, c->dim);
        for (int p = 0; p < N_PROJ; p++) {
            int out, in;
            proj_shape(c, p, &out, &in);
            proj_name(s, sizeof s, l, p, "weight");
            table_add(&m->params, s, out, in);
            if (proj_has_bias(c, p)) {
                proj_name(s, sizeof s, l, p, "bias");
                table_add(&m->params, s, 1, out);
            }
            if (p == PROJ_O) {   // Hugging Face order: norm, attention, norm, MLP
                layer_name(s, sizeof s, l, "post_attention_layernorm.weight");
                table_add(&m->params, s, 1, c->dim);
            }
        }
    }
    table_add(&m->params, "model.norm.weight", 1, c->dim);
    if (!c->tied) table_add(&m->params, "lm_head.weight", c->vocab, c->dim);
    if (table_alloc(&m->params)) {
        size_t gb = m->params.total * 4 >> 30;
        table_free(&m->params);
        return errf(err, "out of memory allocating %zu GiB of parameters", gb);
    }
    m->layers = xcalloc((size_t)c->n_layers, sizeof(Layer));
    model_bind(m);
    return 0;
}

int model_train_full(Model *m) {
    model_compact_free(m);   // the weights will change: a copy would go stale
    if (table_like(&m->grads, &m->params)) return -1;
    model_bind(m);
    return 0;
}

void model_free(Model *m) {
    model_compact_free(m);
    table_free(&m->params);
    table_free(&m->grads);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

void model_random(Model *m, uint64_t seed, float std) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->params.n; i++) {
        Tensor *x = &m->params.t[i];
        int is_norm = strstr(x->name, "norm.weight") != NULL;   // biases are random around 0 like weights
        for (size_t j = 0; j < x->size; j++) x->data[j] = is_norm ? 1.0f + 0.1f * rng_normal(&r) : std * rng_normal(&r);
    }
}

// ----------------------------------------------------------------------------
// LoRA adapters

unsigned lora_targets_parse(const char *list, char *err) {
    unsigned mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int p = 0;
        while (p < N_PROJ && strcmp(tok, PROJ_NAME[p])) p++;
        if (p == N_PROJ) { errf(err, "unknown LoRA target \"%s\" (expected q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)", tok); return 0; }
        mask |= 1u << p;
    }
    if (!mask) errf(err, "empty LoRA target list");
    return mask;
}

void lora_name(char *s, size_t n, int l, int p, char ab) {
    snprintf(s, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l, PROJ_BLOCK[p], PROJ_NAME[p], ab);
}

int lora_init(Lora *lo, const Config *c, int r, float alpha, unsigned targets) {
    memset(lo, 0, sizeof *lo);
    lo->r = r;
    lo->alpha = alpha;
    lo->targets = targets;
    char s[160];
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            if (!(targets >> p & 1)) continue;
            int out, in;
            proj_shape(c, p, &out, &in);
            lora_name(s, sizeof s, l, p, 'A');
            table_add(&lo->params, s, r, in);
            lora_name(s, sizeof s, l, p, 'B');
            table_add(&lo->params, s, out, r);
        }
    return table_alloc(&lo->params) || table_like(&lo->grads, &lo->params) ? -1 : 0;
}

void lora_reset(Lora *lo, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < lo->params.n; i++) {
        Tensor *x = &lo->params.t[i];
        int is_a = strstr(x->name, "lora_A") != NULL;
        float bound = 1.0f / sqrtf((float)x->cols);   // kaiming_uniform(a=sqrt(5)) on [r, in]
        for (size_t j = 0; j < x->size; j++) x->data[j] = is_a ? bound * (2 * rng_uniform(&r) - 1) : 0.0f;
    }
}

void lora_free(Lora *lo) {
    table_free(&lo->params);
    table_free(&lo->grads);
}

void model_attach_lora(Model *m, Lora *lo) {
    m->lora = lo;
    char s[160];
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            Linear *x = &m->layers[l].proj[p];
            x->r = 0;
            x->a = x->b = x->da = x->db = NULL;
            if (!lo || !(lo->targets >> p & 1)) continue;
            x->r = lo->r;
            x->scale = lo->alpha / lo->r;
            lora_name(s, sizeof s, l, p, 'A');
            x->a = data_of(&lo->params, s);
            x->da = data_of(&lo->grads, s);
            lora_name(s, sizeof s, l, p, 'B');
            x->b = data_of(&lo->params, s);
            x->db = data_of(&lo->grads, s);
        }
}

// Why the term and not a fresh copy of the merged W: the copy of a GGUF's own
// Q4_1 blocks is W exactly, and stays so beside an exact term, where a bf16
// copy of W + s B A would add bf16's rounding (~1e-2 of the largest logit) and
// read 3x Q4_1's bytes a step; the M-step's rank-16 term reads a fifth of
// Q4_1's. And the copy comes back as it was when the weights do.
void lora_merge(Model *m, const Lora *lo, float sign) {
    char s[160];
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            if (!(lo->targets >> p & 1)) continue;
            Linear *x = &m->layers[l].proj[p];
            lora_name(s, sizeof s, l, p, 'A');
            const float *a = data_of(&lo->params, s);
            lora_name(s, sizeof s, l, p, 'B');
            const float *b = data_of(&lo->params, s);
            // W (out,in) += sign * s * B (out,r) A (r,in)
            gemm(0, 0, x->out, x->in, lo->r, sign * lo->alpha / lo->r, b, lo->r, a, x->in, 1.0f, x->w, x->in);
            if (x->qw && !x->qr) {   // the copy stands for W as before plus this term
                x->qr = lo->r;
                x->qscale = sign * lo->alpha / lo->r;
                x->qa = a;
                x->qb = b;
            } else {                 // one term a copy: this one waits for model_compact_restore
                x->qw = NULL;
                x->qr = 0;
            }
        }
}

// ----------------------------------------------------------------------------
// Matrix multiply: OpenBLAS when built with it, else plain loops.

#ifdef USE_BLAS
#include <omp.h>
#include <pthread.h>

// One pool of threads, OpenMP's, runs both the matmuls and the elementwise
// loops: OpenBLAS is set to one thread and each OpenMP thread computes its own
// block of C (rows, or columns when C is short and wide). OpenBLAS's own
// threads would spin beside OpenMP's between calls and oversubscribe the
// cores. Called inside a parallel region (attention's per-head products), the
// product runs on the calling thread alone.
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single_threaded(void) { openblas_set_num_threads(1); }

static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (M > 0 && N > 0)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    pthread_once(&blas_once, blas_single_threaded);
    if (omp_in_parallel() || (double)M * N * K < 1 << 20) {
        sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    #pragma omp parallel
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        if (M >= N) {   // rows i0..i1 of C are rows i0..i1 of op(A)
            int i0 = (int)((long)M * t / nt), i1 = (int)((long)M * (t + 1) / nt);
            const float *a = ta ? A + i0 : A + (size_t)i0 * lda;
            sgemm(ta, tb, i1 - i0, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)i0 * ldc, ldc);
        } else {        // columns j0..j1 of C are columns j0..j1 of op(B)
            int j0 = (int)((long)N * t / nt), j1 = (int)((long)N * (t + 1) / nt);
            const float *b = tb ? B + (size_t)j0 * ldb : B + j0;
            sgemm(ta, tb, M, j1 - j0, K, alpha, A, lda, b, ldb, beta, C + j0, ldc);
        }
    }
}
const char *gemm_backend(void) { return "openblas"; }
#else
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    #pragma omp parallel for if ((long)M * N * K > 1L << 18)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++)
                acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            // beta == 0 ignores C entirely, as BLAS does (C may hold garbage)
            C[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
}
const char *gemm_backend(void) { return "reference loops"; }
#endif

// ----------------------------------------------------------------------------
// Activations

typedef struct {
    float *base;                  // NULL: only add up the sizes
    size_t off;                   // floats taken so far
} Arena;

static float *take(Arena *ar, size_t n) {
    float *p = ar->base ? ar->base + ar->off : NULL;
    ar->off += n;
    return p;
}

// The size table: every activation, in the order it lies in the one
// allocation. kernels.cu's carve_acts lays out its twin in the same order.
static void carve_acts(Acts *a, const Model *m, Arena *ar) {
    const Config *c = &m->c;
    const size_t N = (size_t)a->B * a->T, D = c->dim, F = c->hidden, V = c->vocab, half = c->head_dim / 2;
    const size_t Dq = (size_t)c->n_heads * c->head_dim, Dkv = (size_t)c->n_kv_heads * c->head_dim;
    const size_t att = (size_t)a->B * c->n_heads * a->T * a->T;
    int r = 0;   // the largest adapter rank
    a->rope_cos = take(ar, a->T * half);
    a->rope_sin = take(ar, a->T * half);
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *A = &a->layers[l];
        A->res = take(ar, N * D);
        A->ln1 = take(ar, N * D);
        A->rstd1 = take(ar, N);
        A->q = take(ar, N * Dq);
        A->k = take(ar, N * Dkv);
        A->v = take(ar, N * Dkv);
        A->att = take(ar, att);
        A->atty = take(ar, N * Dq);
        A->mid = take(ar, N * D);
        A->ln2 = take(ar, N * D);
        A->rstd2 = take(ar, N);
        A->gate = take(ar, N * F);
        A->up = take(ar, N * F);
        A->h = take(ar, N * F);
        for (int p = 0; p < N_PROJ; p++) {
            const int rp = m->layers[l].proj[p].r;
            A->u[p] = rp ? take(ar, N * rp) : NULL;
            r = rp > r ? rp : r;
        }
    }
    a->res_out = take(ar, N * D);
    a->lnf = take(ar, N * D);
    a->rstdf = take(ar, N);
    a->logits = take(ar, N * V);
    a->d_res = take(ar, N * D);
    a->d_mid = take(ar, N * D);
    a->d_ln = take(ar, N * D);
    a->d_q = take(ar, N * Dq);
    a->d_k = take(ar, N * Dkv);
    a->d_v = take(ar, N * Dkv);
    a->d_atty = take(ar, N * Dq);
    a->d_gate = take(ar, N * F);
    a->d_up = take(ar, N * F);
    a->d_h = take(ar, N * F);
    a->d_u = take(ar, N * r);
    a->d_lnf = take(ar, N * D);
    a->d_att = take(ar, att);
}

int acts_init(Acts *a, const Model *m, int B, int T, char *err) {
    memset(a, 0, sizeof *a);
    const Config *c = &m->c;
    if (B < 1 || T < 1 || (int64_t)B * c->n_heads * T * T > INT_MAX)   // the attention scores are one tensor
        return errf(err, "a batch of %d x %d tokens is too large for one pass (at most %d x %d scores)", B, T, c->n_heads, INT_MAX);
    a->B = B;
    a->T = T;
    a->n_layers = c->n_layers;
    a->layers = xcalloc((size_t)c->n_layers, sizeof(LayerActs));
    Arena ar = {NULL, 0};
    carve_acts(a, m, &ar);
    a->mem = calloc(ar.off ? ar.off : 1, sizeof(float));
    if (!a->mem) {
        acts_free(a);
        return errf(err, "out of memory allocating activations for batch %d x %d (%zu bytes)", B, T, size_mul(ar.off, sizeof(float)));
    }
    ar = (Arena){a->mem, 0};
    carve_acts(a, m, &ar);
    rope_table(c, T, a->rope_cos, a->rope_sin);
    return 0;
}

void acts_free(Acts *a) {
    free(a->layers);
    free(a->mem);
    memset(a, 0, sizeof *a);
}

// ----------------------------------------------------------------------------
// Layers, forward and backward. Each forward has its backward right below it.

void rope_inv_freq(const Config *c, float *inv) {
    const int hd = c->head_dim;
    for (int j = 0; j < hd / 2; j++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * j) / (float)hd);
        if (c->rope_llama3) {   // keep high frequencies, divide low ones, blend between
            float wavelen = 2.0f * (float)M_PI / f;
            float low_wl = c->rope_orig_max_pos / c->rope_low_freq, high_wl = c->rope_orig_max_pos / c->rope_high_freq;
            if (wavelen > low_wl) f = f / c->rope_factor;
            else if (wavelen >= high_wl) {
                float smooth = (c->rope_orig_max_pos / wavelen - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                f = (1.0f - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv[j] = f;
    }
}

void rope_table(const Config *c, int n, float *cosv, float *sinv) {
    const int half = c->head_dim / 2;
    float *inv = xcalloc((size_t)half, sizeof(float));
    rope_inv_freq(c, inv);
    for (int pos = 0; pos < n; pos++)
        for (int j = 0; j < half; j++) {
            float ang = (float)pos * inv[j];   // fp32 product, as Hugging Face computes it
            cosv[(size_t)pos * half + j] = cosf(ang);
            sinv[(size_t)pos * half + j] = sinf(ang);
        }
    free(inv);
}

// x (N,D) = rows ids (N) of the embedding emb (V,D)
static void embed(float *x, const float *emb, const int *ids, int N, int D) {
    for (int n = 0; n < N; n++) memcpy(x + (size_t)n * D, emb + (size_t)ids[n] * D, D * sizeof(float));
}

// out, x are (N, D); rstd is (N); w is (D)
// A decode step's few rows stay on one thread: waking the others costs more.
static void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps) {
    #pragma omp parallel for if ((long)N * D >= 1 << 14)
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * D;
        float ss = 0.0f;
        #pragma omp simd reduction(+ : ss)
        for (int i = 0; i < D; i++) ss += xn[i] * xn[i];
        float r = 1.0f / sqrtf(ss / D + eps);
        rstd[n] = r;
        for (int i = 0; i < D; i++) out[(size_t)n * D + i] = xn[i] * r * w[i];
    }
}

// dx (N,D) += d rmsnorm; dw (D) += when not NULL
static void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd, int N, int D) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * D, *dn = dout + (size_t)n * D;
        float r = rstd[n], dwx = 0.0f;
        #pragma omp simd reduction(+ : dwx)
        for (int i = 0; i < D; i++) dwx += dn[i] * w[i] * xn[i];
        float k = dwx * r * r * r / D;
        for (int i = 0; i < D; i++) dx[(size_t)n * D + i] += dn[i] * w[i] * r - xn[i] * k;
    }
    if (!dw) return;
    #pragma omp parallel for   // each thread owns a range of columns of dw
    for (int i = 0; i < D; i++) {
        float acc = 0.0f;
        for (int n = 0; n < N; n++) acc += dout[(size_t)n * D + i] * x[(size_t)n * D + i] * rstd[n];
        dw[i] += acc;
    }
}

// The adapter's term: y (N,out) += s * u B^T where u (N,r) = x A^T is kept for backward.
// y's rows lie ldy floats apart.
static void lora_forward(const Linear *l, const float *x, float *y, int ldy, float *u, int N) {
    gemm(0, 1, N, l->r, l->in, 1.0f, x, l->in, l->a, l->in, 0.0f, u, l->r);
    gemm(0, 1, N, l->out, l->r, l->scale, u, l->r, l->b, l->r, 1.0f, y, ldy);
}

// y (N,out), rows ldy floats apart, += b + s * u B^T: what a Linear adds to x W^T.
static void linear_extra(const Linear *l, const float *x, float *y, int ldy, float *u, int N) {
    if (l->bias) {
        #pragma omp parallel for if ((long)N * l->out > 1L << 16)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < l->out; o++) y[(size_t)n * ldy + o] += l->bias[o];
    }
    if (l->r) lora_forward(l, x, y, ldy, u, N);
}

// y (N,out), rows ldy floats apart, = x (N,in) W^T + b + s * u B^T where u (N,r) = x A^T is kept for
// backward. With xs, scratch for x's quantised form (qmat_mul), x W^T goes
// through W's compact copy when it has one and N is small (the KV cache's
// decode steps); training passes NULL and always reads the fp32 W.
// With an adapter merged since the copy was made, the copy adds its term: u (N,qr) = x qa^T, y += qscale u qb^T.
static void merged_term(const Linear *l, const float *x, float *y, int ldy, float *u, int N) {
    if (!l->qr) return;
    gemm(0, 1, N, l->qr, l->in, 1.0f, x, l->in, l->qa, l->in, 0.0f, u, l->qr);
    gemm(0, 1, N, l->out, l->qr, l->qscale, u, l->qr, l->qb, l->qr, 1.0f, y, ldy);
}

static void linear_apply(const Linear *l, const float *x, float *y, int ldy, float *u, int N, void *xs) {
    if (xs && l->qw && N <= QMAT_MAX_ROWS) {
        qmat_mul(l->qw, x, N, y, ldy, xs);
        merged_term(l, x, y, ldy, u, N);
    } else gemm(0, 1, N, l->out, l->in, 1.0f, x, l->in, l->w, l->in, 0.0f, y, ldy);
    linear_extra(l, x, y, ldy, u, N);
}

// n Linears of the same input in one product when their fp32 weights lie back
// to back in memory (q, k, v and gate, up do, as model_init lays out the
// table, Qwen2's biases aside): y (N, sum of outs) = x [W_0; ...; W_n-1]^T,
// Linear j in columns off_j.. (off_j = out_0 + ... + out_j-1), then each one's
// bias and adapter term. Returns 0, having done nothing, when they do not.
static int linear_fused(const Linear *l, int n, const float *x, float *y, float *u, int N) {
    int ld = l[0].out;
    for (int j = 1; j < n; j++) {
        if (l[j].in != l[0].in || l[j].w != l[j - 1].w + (size_t)l[j - 1].out * l[j - 1].in) return 0;
        ld += l[j].out;
    }
    gemm(0, 1, N, ld, l[0].in, 1.0f, x, l[0].in, l[0].w, l[0].in, 0.0f, y, ld);
    for (int j = 0, off = 0; j < n; off += l[j++].out) linear_extra(&l[j], x, y + off, ld, u, N);
    return 1;
}

// Batch rows [b0[k], b0[k+1]) of a training pass go through adapter k: the
// base product runs once over all N rows, each adapter's term over its rows.
// Its tables lie at the same offsets as the attached adapter's (at), which
// l points into.
static Linear adapter_of(const Linear *l, const Lora *at, const Lora *lo) {
    Linear x = *l;
    if (!l->r || !lo || lo == at) return x;
    x.a = lo->params.mem + (l->a - at->params.mem);
    x.b = lo->params.mem + (l->b - at->params.mem);
    x.da = l->da ? lo->grads.mem + (l->da - at->grads.mem) : NULL;
    x.db = l->db ? lo->grads.mem + (l->db - at->grads.mem) : NULL;
    return x;
}

static void linear_forward(const Model *m, const Acts *a, const Linear *l, const float *x, float *y, float *u) {
    Linear base = *l;
    base.r = 0;
    linear_apply(&base, x, y, l->out, NULL, a->B * a->T, NULL);
    for (int k = 0; l->r && k < a->K; k++) {
        const Linear lk = adapter_of(l, m->lora, a->adapter[k]);
        const size_t r0 = (size_t)a->b0[k] * a->T;
        lora_forward(&lk, x + r0 * l->in, y + r0 * l->out, l->out, u + r0 * l->r, (a->b0[k + 1] - a->b0[k]) * a->T);
    }
}

// The adapter's part: dx += (s dy B) A when dx is not NULL, dA += (s dy B)^T x,
// dB += s dy^T u. du (N,r) is scratch.
static void lora_backward(const Linear *l, const float *dy, const float *x, const float *u, float *dx, float *du, int N) {
    gemm(0, 0, N, l->r, l->out, l->scale, dy, l->out, l->b, l->r, 0.0f, du, l->r);
    if (dx) gemm(0, 0, N, l->in, l->r, 1.0f, du, l->r, l->a, l->in, 1.0f, dx, l->in);
    if (l->da) gemm(1, 0, l->r, l->in, N, 1.0f, du, l->r, x, l->in, 1.0f, l->da, l->in);
    if (l->db) gemm(1, 0, l->out, l->r, N, l->scale, dy, l->out, u, l->r, 1.0f, l->db, l->r);
}

// dx (N,in) = (or += when accumulate) dy W + (s dy B) A, skipped when dx is
// NULL (nothing needs it); the trainable gradients accumulate: dW += dy^T x,
// db += the column sums of dy, and each adapter's over its rows (lora_backward).
static void linear_backward(const Model *m, const Acts *a, const Linear *l, const float *dy, const float *x, const float *u, float *dx,
                            float *du, int accumulate) {
    const int N = a->B * a->T;
    if (dx) gemm(0, 0, N, l->in, l->out, 1.0f, dy, l->out, l->w, l->in, accumulate ? 1.0f : 0.0f, dx, l->in);
    if (l->dw) gemm(1, 0, l->out, l->in, N, 1.0f, dy, l->out, x, l->in, 1.0f, l->dw, l->in);
    if (l->dbias) {
        #pragma omp parallel for   // each thread owns a range of entries of db
        for (int o = 0; o < l->out; o++) {
            float acc = 0.0f;
            for (int n = 0; n < N; n++) acc += dy[(size_t)n * l->out + o];
            l->dbias[o] += acc;
        }
    }
    for (int k = 0; l->r && k < a->K; k++) {
        const Linear lk = adapter_of(l, m->lora, a->adapter[k]);
        const size_t r0 = (size_t)a->b0[k] * a->T;
        lora_backward(&lk, dy + r0 * l->out, x + r0 * l->in, u + r0 * l->r, dx ? dx + r0 * l->in : NULL, du + r0 * l->r,
                      (a->b0[k + 1] - a->b0[k]) * a->T);
    }
}

// x (B*T, nh*hd) rotated in place at positions 0..T-1: rotate_half layout,
// dimension j pairs with j + hd/2. sign = -1 applies the inverse (backward).
static void rope(float *x, const float *cosv, const float *sinv, int N, int T, int nh, int hd, float sign) {
    const int half = hd / 2;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *cs = cosv + (size_t)(n % T) * half, *sn = sinv + (size_t)(n % T) * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + ((size_t)n * nh + h) * hd;
            for (int j = 0; j < half; j++) {
                float x1 = v[j], x2 = v[j + half], s = sign * sn[j];
                v[j] = x1 * cs[j] - x2 * s;
                v[j + half] = x2 * cs[j] + x1 * s;
            }
        }
    }
}

// A float sum gcc vectorizes only when told it may reorder it (omp simd).
static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// e^x within 1 ulp for |x| < 87 (larger |x| taken as 87: e^-87 and e^87 are
// still normal floats; NaN stays NaN) in plain float arithmetic, which the
// compiler vectorizes in an omp simd loop where it calls expf once an element.
// Cephes' expf: x = n ln2 + r (ln2 in two parts, so r is exact), e^r by a
// polynomial, 2^n into the exponent bits. The tests compare the bits as
// integers: a float compare keeps gcc from vectorizing (-ftrapping-math).
static inline float exp_simd(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    const uint32_t a = b & 0x7fffffff;
    b = a < 0x42ae0000 ? b : (b & 0x80000000) | 0x42ae0000;   // |x| < 87.0f
    memcpy(&x, &b, 4);
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;        // round(x / ln2): 1.5 * 2^23 drops the fraction
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t e = a > 0x7f800000 ? 0x7fc00000 : (uint32_t)((int32_t)n + 127) << 23;   // 2^n, or NaN
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

// Attention runs as matrix products per (batch, head), on blocks of ATT_BLOCK
// query rows: the rows t0..t1 see keys 0..t1 only (causal), so the products
// skip the upper-right blocks of the T x T score matrix.
enum { ATT_BLOCK = 64 };

// p[0..t] = softmax(p[0..t]); p[t+1..T-1] = 0 (masked)
static void softmax_causal(float *p, int t, int T) {
    float mx = -INFINITY, sum = 0.0f;
    #pragma omp simd reduction(max : mx)
    for (int s = 0; s <= t; s++) mx = p[s] > mx ? p[s] : mx;
    for (int s = 0; s <= t; s++) { p[s] = expf(p[s] - mx); sum += p[s]; }
    for (int s = 0; s <= t; s++) p[s] /= sum;
    for (int s = t + 1; s < T; s++) p[s] = 0.0f;
}

// q (B,T,H,hd), k and v (B,T,KV,hd) -> out (B,T,H,hd); att (B,H,T,T) keeps the
// softmax probabilities. Query head h reads key/value head h / (H/KV).
static void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                              int B, int T, int H, int KV, int hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int g = H / KV, Dq = H * hd, Dkv = KV * hd;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)b * T * Dq + h * hd;           // (T,hd), row stride Dq
            const float *kh = k + (size_t)b * T * Dkv + (h / g) * hd;    // (T,hd), row stride Dkv
            const float *vh = v + (size_t)b * T * Dkv + (h / g) * hd;
            float *p = att + ((size_t)b * H + h) * T * T;                // (T,T)
            float *o = out + (size_t)b * T * Dq + h * hd;                // (T,hd), row stride Dq
            for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                const int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T;
                // p[t0:t1, 0:t1] = scale * q[t0:t1] k[0:t1]^T
                gemm(0, 1, t1 - t0, t1, hd, scale, qh + (size_t)t0 * Dq, Dq, kh, Dkv, 0.0f, p + (size_t)t0 * T, T);
                for (int t = t0; t < t1; t++) softmax_causal(p + (size_t)t * T, t, T);
                // o[t0:t1] = p[t0:t1, 0:t1] v[0:t1]
                gemm(0, 0, t1 - t0, hd, t1, 1.0f, p + (size_t)t0 * T, T, vh, Dkv, 0.0f, o + (size_t)t0 * Dq, Dq);
            }
        }
}

// Gradients of attention_forward: dq (B,T,H,hd); dk, dv (B,T,KV,hd) are
// overwritten. datt (B,H,T,T) is scratch. Work is split by (batch, kv head) so
// the query heads that share a kv head add into it from one thread.
static void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout, const float *q,
                               const float *k, const float *v, const float *att, int B, int T, int H, int KV, int hd) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int g = H / KV, Dq = H * hd, Dkv = KV * hd;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < KV; kh++) {
            const float *kk = k + (size_t)b * T * Dkv + kh * hd, *vv = v + (size_t)b * T * Dkv + kh * hd;
            float *dkk = dk + (size_t)b * T * Dkv + kh * hd, *dvv = dv + (size_t)b * T * Dkv + kh * hd;
            for (int t = 0; t < T; t++) {
                memset(dkk + (size_t)t * Dkv, 0, hd * sizeof(float));
                memset(dvv + (size_t)t * Dkv, 0, hd * sizeof(float));
            }
            for (int h = kh * g; h < (kh + 1) * g; h++) {
                const float *qh = q + (size_t)b * T * Dq + h * hd, *doh = dout + (size_t)b * T * Dq + h * hd;
                const float *p = att + ((size_t)b * H + h) * T * T;
                float *dp = datt + ((size_t)b * H + h) * T * T, *dqh = dq + (size_t)b * T * Dq + h * hd;
                for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                    const int t1 = t0 + ATT_BLOCK < T ? t0 + ATT_BLOCK : T, n = t1 - t0;
                    const float *pb = p + (size_t)t0 * T, *dob = doh + (size_t)t0 * Dq;
                    float *dpb = dp + (size_t)t0 * T;
                    // dp[t0:t1, 0:t1] = dout[t0:t1] v[0:t1]^T;  dv[0:t1] += p[t0:t1, 0:t1]^T dout[t0:t1]
                    gemm(0, 1, n, t1, hd, 1.0f, dob, Dq, vv, Dkv, 0.0f, dpb, T);
                    gemm(1, 0, t1, hd, n, 1.0f, pb, T, dob, Dq, 1.0f, dvv, Dkv);
                    // softmax backward, into dp: ds = p (dp - sum_s p dp) * scale
                    for (int t = t0; t < t1; t++) {
                        const float *pt = p + (size_t)t * T;
                        float *ds = dp + (size_t)t * T, sum = 0.0f;
                        #pragma omp simd reduction(+ : sum)
                        for (int s = 0; s <= t; s++) sum += pt[s] * ds[s];
                        for (int s = 0; s <= t; s++) ds[s] = pt[s] * (ds[s] - sum) * scale;
                        for (int s = t + 1; s < t1; s++) ds[s] = 0.0f;
                    }
                    // dq[t0:t1] = ds[t0:t1, 0:t1] k[0:t1];  dk[0:t1] += ds[t0:t1, 0:t1]^T q[t0:t1]
                    gemm(0, 0, n, hd, t1, 1.0f, dpb, T, kk, Dkv, 0.0f, dqh + (size_t)t0 * Dq, Dq);
                    gemm(1, 0, t1, hd, n, 1.0f, dpb, T, qh + (size_t)t0 * Dq, Dq, 1.0f, dkk, Dkv);
                }
            }
        }
}

// h (N,F) = silu(gate) * up
static void swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) h[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-gate[i]));
        dup[i] = dh[i] * gate[i] * sig;
        dgate[i] = dh[i] * up[i] * sig * (1.0f + gate[i] * (1.0f - sig));
    }
}

static void add(float *y, const float *x, size_t n) {
    #pragma omp parallel for if (n >= 1 << 14)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void layer_forward(const Model *m, Acts *a, int l) {
    const Config *c = &m->c;
    const Layer *W = &m->layers[l];
    LayerActs *A = &a->layers[l];
    const int N = a->B * a->T, D = c->dim;
    float *res_out = l + 1 < c->n_layers ? a->layers[l + 1].res : a->res_out;   // the next layer's input
    rmsnorm_forward(A->ln1, A->rstd1, A->res, W->attn_norm, N, D, c->norm_eps);
    linear_forward(m, a, &W->proj[PROJ_Q], A->ln1, A->q, A->u[PROJ_Q]);
    linear_forward(m, a, &W->proj[PROJ_K], A->ln1, A->k, A->u[PROJ_K]);
    linear_forward(m, a, &W->proj[PROJ_V], A->ln1, A->v, A->u[PROJ_V]);
    rope(A->q, a->rope_cos, a->rope_sin, N, a->T, c->n_heads, c->head_dim, 1.0f);
    rope(A->k, a->rope_cos, a->rope_sin, N, a->T, c->n_kv_heads, c->head_dim, 1.0f);
    attention_forward(A->atty, A->att, A->q, A->k, A->v, a->B, a->T, c->n_heads, c->n_kv_heads, c->head_dim);
    linear_forward(m, a, &W->proj[PROJ_O], A->atty, A->mid, A->u[PROJ_O]);
    add(A->mid, A->res, (size_t)N * D);
    rmsnorm_forward(A->ln2, A->rstd2, A->mid, W->mlp_norm, N, D, c->norm_eps);
    linear_forward(m, a, &W->proj[PROJ_GATE], A->ln2, A->gate, A->u[PROJ_GATE]);
    linear_forward(m, a, &W->proj[PROJ_UP], A->ln2, A->up, A->u[PROJ_UP]);
    swiglu_forward(A->h, A->gate, A->up, (size_t)N * c->hidden);
    linear_forward(m, a, &W->proj[PROJ_DOWN], A->h, res_out, A->u[PROJ_DOWN]);
    add(res_out, A->mid, (size_t)N * D);
}

// d_res holds d loss / d (layer l's output) on entry and d loss / A->res on
// return, except that layer 0 leaves it alone when nothing trains below it
// (LoRA over a frozen embedding): then layer 0 computes only its own weights' gradients.
static void layer_backward(Model *m, Acts *a, int l) {
    const Config *c = &m->c;
    Layer *W = &m->layers[l];
    const LayerActs *A = &a->layers[l];
    const int N = a->B * a->T, D = c->dim;
    const size_t ND = (size_t)N * D;
    linear_backward(m, a, &W->proj[PROJ_DOWN], a->d_res, A->h, A->u[PROJ_DOWN], a->d_h, a->d_u, 0);
    swiglu_backward(a->d_gate, a->d_up, a->d_h, A->gate, A->up, (size_t)N * c->hidden);
    linear_backward(m, a, &W->proj[PROJ_GATE], a->d_gate, A->ln2, A->u[PROJ_GATE], a->d_ln, a->d_u, 0);
    linear_backward(m, a, &W->proj[PROJ_UP], a->d_up, A->ln2, A->u[PROJ_UP], a->d_ln, a->d_u, 1);
    memcpy(a->d_mid, a->d_res, ND * sizeof(float));
    rmsnorm_backward(a->d_mid, W->d_mlp_norm, a->d_ln, A->mid, W->mlp_norm, A->rstd2, N, D);
    linear_backward(m, a, &W->proj[PROJ_O], a->d_mid, A->atty, A->u[PROJ_O], a->d_atty, a->d_u, 0);
    attention_backward(a->d_q, a->d_k, a->d_v, a->d_att, a->d_atty, A->q, A->k, A->v, A->att,
                       a->B, a->T, c->n_heads, c->n_kv_heads, c->head_dim);
    rope(a->d_q, a->rope_cos, a->rope_sin, N, a->T, c->n_heads, c->head_dim, -1.0f);
    rope(a->d_k, a->rope_cos, a->rope_sin, N, a->T, c->n_kv_heads, c->head_dim, -1.0f);
    float *d_ln = l > 0 || m->d_embed || W->d_attn_norm ? a->d_ln : NULL;
    linear_backward(m, a, &W->proj[PROJ_Q], a->d_q, A->ln1, A->u[PROJ_Q], d_ln, a->d_u, 0);
    linear_backward(m, a, &W->proj[PROJ_K], a->d_k, A->ln1, A->u[PROJ_K], d_ln, a->d_u, 1);
    linear_backward(m, a, &W->proj[PROJ_V], a->d_v, A->ln1, A->u[PROJ_V], d_ln, a->d_u, 1);
    if (!d_ln) return;
    memcpy(a->d_res, a->d_mid, ND * sizeof(float));
    rmsnorm_backward(a->d_res, W->d_attn_norm, a->d_ln, A->res, W->attn_norm, A->rstd1, N, D);
}

// Mean cross-entropy of logits (B,T,V) against labels shifted by one: position
// t is scored on labels[t+1]; -100 is ignored.
static float cross_entropy(const float *logits, const int *labels, int B, int T, int V, int *n_valid) {
    double total = 0.0;
    int count = 0;
    #pragma omp parallel for collapse(2) reduction(+ : total, count)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T - 1; t++) {
            int y = labels[b * T + t + 1];
            if (y == -100) continue;
            const float *x = logits + ((size_t)b * T + t) * V;
            float mx = -INFINITY;
            #pragma omp simd reduction(max : mx)
            for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
            double sum = 0.0;
            for (int i = 0; i < V; i++) sum += expf(x[i] - mx);
            total += mx + log(sum) - x[y];
            count++;
        }
    *n_valid = count;
    return count ? (float)(total / count) : 0.0f;
}

// logits (B,T,V) become d loss / d logits, in place.
static void cross_entropy_backward(float *logits, const int *labels, int B, int T, int V, int n_valid) {
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *x = logits + ((size_t)b * T + t) * V;
            int y = t < T - 1 ? labels[b * T + t + 1] : -100;
            if (y == -100) { memset(x, 0, V * sizeof(float)); continue; }
            float mx = -INFINITY, sum = 0.0f;
            #pragma omp simd reduction(max : mx)
            for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
            for (int i = 0; i < V; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
            const float inv = 1.0f / (sum * n_valid);
            for (int i = 0; i < V; i++) x[i] *= inv;
            x[y] -= 1.0f / n_valid;
        }
}

void model_forward_many(const Model *m, Acts *a, const int *ids, const int *labels, int K, Lora *const *adapter, const int *rows, float *loss) {
    const Config *c = &m->c;
    const int N = a->B * a->T, D = c->dim, V = c->vocab;
    a->ids = ids;
    a->labels = labels;
    a->K = K;
    a->b0[0] = 0;
    for (int k = 0; k < K; k++) a->adapter[k] = adapter[k], a->b0[k + 1] = a->b0[k] + rows[k];
    embed(a->layers[0].res, m->embed, ids, N, D);
    for (int l = 0; l < c->n_layers; l++) layer_forward(m, a, l);
    rmsnorm_forward(a->lnf, a->rstdf, a->res_out, m->norm, N, D, c->norm_eps);
    gemm(0, 1, N, V, D, 1.0f, a->lnf, D, m->lm_head, D, 0.0f, a->logits, V);
    a->n_valid = 0;
    for (int k = 0; k < K; k++) {   // each adapter's mean over its own rows
        const size_t r0 = (size_t)a->b0[k] * a->T;
        a->n_valid_of[k] = 0;
        loss[k] = labels ? cross_entropy(a->logits + r0 * V, labels + r0, rows[k], a->T, V, &a->n_valid_of[k]) : 0.0f;
        a->n_valid += a->n_valid_of[k];
    }
}

float model_forward(const Model *m, Acts *a, const int *ids, const int *labels) {
    float loss;
    model_forward_many(m, a, ids, labels, 1, &m->lora, &a->B, &loss);
    return loss;
}

// Overwrites a->logits with their gradient.
void model_backward(Model *m, Acts *a) {
    const Config *c = &m->c;
    const int N = a->B * a->T, D = c->dim, V = c->vocab;
    if (!a->labels || !a->n_valid) return;   // nothing carries loss: every gradient is zero
    for (int k = 0; k < a->K; k++) {
        const size_t r0 = (size_t)a->b0[k] * a->T;
        cross_entropy_backward(a->logits + r0 * V, a->labels + r0, a->b0[k + 1] - a->b0[k], a->T, V, a->n_valid_of[k]);
    }
    gemm(0, 0, N, D, V, 1.0f, a->logits, V, m->lm_head, D, 0.0f, a->d_lnf, D);
    if (m->d_lm_head) gemm(1, 0, V, D, N, 1.0f, a->logits, V, a->lnf, D, 1.0f, m->d_lm_head, D);
    memset(a->d_res, 0, (size_t)N * D * sizeof(float));
    rmsnorm_backward(a->d_res, m->d_norm, a->d_lnf, a->res_out, m->norm, a->rstdf, N, D);
    for (int l = c->n_layers - 1; l >= 0; l--) layer_backward(m, a, l);
    if (m->d_embed)
        for (int n = 0; n < N; n++) axpy(m->d_embed + (size_t)a->ids[n] * D, 1.0f, a->d_res + (size_t)n * D, D);
}

// ----------------------------------------------------------------------------
// KV-cache decoding: the same layers, one new row per token, keys and values
// of earlier tokens read from the cache instead of recomputed.

// Floats that hold the quantised form of QMAT_MAX_ROWS rows of cols (qmat_prep): the KV cache's scratch.
static int xq_floats(int cols) { return (int)((qmat_scratch_bytes(QMAT_MAX_ROWS, cols) + sizeof(float) - 1) / sizeof(float)); }

int kv_init(KVCache *c, const Model *m, int B, int max_T, char *err) {
    memset(c, 0, sizeof *c);
    const Config *cf = &m->c;
    if (B < 1 || max_T < 1 || (int64_t)max_T * cf->n_kv_heads * cf->head_dim > INT_MAX ||
        (int64_t)cf->n_heads * max_T > INT_MAX || (int64_t)ATT_BLOCK * max_T > INT_MAX || (int64_t)cf->n_layers * B > INT_MAX)   // before any size is computed in int
        return errf(err, "a KV cache of %d sequences of %d tokens is too large (more than %d floats a layer)", B, max_T, INT_MAX);
    // scratch for a pass of up to KV_ROWS rows, fewer when the cache holds fewer tokens
    const int R = (int64_t)B * max_T < KV_ROWS ? B * max_T : KV_ROWS, D = cf->dim, F = cf->hidden, hd = cf->head_dim;
    const int Dq = cf->n_heads * hd, Dkv = cf->n_kv_heads * hd;
    int r = 0;
    for (int l = 0; l < cf->n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {   // u holds an adapter's x A^T, attached or merged since the copy (qr)
            const Linear *x = &m->layers[l].proj[p];
            r = x->r > r ? x->r : r;
            r = x->qr > r ? x->qr : r;
        }
    c->B = B;
    c->rows = R;
    c->max_T = max_T;
    Table *t = &c->mem;
    table_add(t, "k", cf->n_layers * B, max_T * Dkv);
    table_add(t, "v", cf->n_layers * B, max_T * Dkv);
    table_add(t, "cos", max_T, hd / 2);
    table_add(t, "sin", max_T, hd / 2);
    const char *names[] = {"x", "xn", "qkv", "atty", "tmp", "gu", "h", "u"};
    const int cols[] = {D, D, Dq + 2 * Dkv, Dq, D, 2 * F, F, r ? r : 1};
    for (int i = 0; i < 8; i++) table_add(t, names[i], R, cols[i]);
    c->threads = omp_get_max_threads();
    table_add(t, "xt", c->threads * QMAT_MAX_ROWS, D);
    table_add(t, "xtq", c->threads, xq_floats(D));
    const int widest = D > Dq ? (D > F ? D : F) : (Dq > F ? Dq : F);   // of a compact product's x: xn, atty or h
    table_add(t, "xq", 1, xq_floats(widest));
    table_add(t, "scores", c->threads, ATT_BLOCK * max_T);
    table_add(t, "logits", B < R ? B : R, cf->vocab);
    if (table_alloc(t)) { table_free(t); return errf(err, "out of memory for a KV cache of %d x %d tokens", B, max_T); }
    float **slots[] = {&c->k, &c->v, &c->cosv, &c->sinv, &c->x, &c->xn, &c->qkv, &c->atty, &c->tmp,
                       &c->gu, &c->h, &c->u, &c->xt, &c->xtq, &c->xq, &c->scores, &c->logits};
    for (int i = 0; i < t->n; i++) *slots[i] = t->t[i].data;
    c->len = xcalloc((size_t)B, sizeof(int));
    rope_table(cf, max_T, c->cosv, c->sinv);
    return 0;
}

void kv_free(KVCache *c) {
    table_free(&c->mem);
    free(c->len);
    memset(c, 0, sizeof *c);
}

// x (R, nh*hd), rows ld floats apart, rotated in place, row i at position
// pos[i]: the angles' cos and sin come from the cache's table, computed once
// (not again for every head, layer and step).
static void rope_at(const KVCache *c, float *x, int ld, const int *pos, int R, int nh, int hd) {
    const int half = hd / 2;
    for (int i = 0; i < R; i++) {
        const float *cs = c->cosv + (size_t)pos[i] * half, *sn = c->sinv + (size_t)pos[i] * half;
        for (int j = 0; j < half; j++)
            for (int h = 0; h < nh; h++) {
                float *v = x + (size_t)i * ld + h * hd;
                float x1 = v[j], x2 = v[j + half];
                v[j] = x1 * cs[j] - x2 * sn[j];
                v[j + half] = x2 * cs[j] + x1 * sn[j];
            }
    }
}

// p[0..n-1] = softmax(p[0..n-1]), p[n..len-1] = 0 (masked): softmax_causal
// through exp_simd, the sums in simd order (a prompt chunk's rows).
static void softmax_kv(float *p, int n, int len) {
    float mx = -INFINITY, sum = 0.0f;
    #pragma omp simd reduction(max : mx)
    for (int s = 0; s < n; s++) mx = p[s] > mx ? p[s] : mx;
    #pragma omp simd reduction(+ : sum)
    for (int s = 0; s < n; s++) { p[s] = exp_simd(p[s] - mx); sum += p[s]; }
    for (int s = 0; s < n; s++) p[s] /= sum;
    memset(p + n, 0, (size_t)(len - n) * sizeof(float));
}

// Row i (sequence seq[i], position pos[i]) attends to cached positions
// 0..pos[i]; its query is q + i * ldq (H heads), its output goes to c->atty.
// Rows that are consecutive positions of one sequence (a prompt chunk) go in
// tiles of up to ATT_BLOCK rows, as matrix products per head like
// attention_forward's: S = scale Q K^T over the keys the tile's last row sees,
// a causal softmax per row, O = S V. A lone row (a decode step) is a loop of
// dot products. Called by every thread of a parallel region (at most
// c->threads), which share the (tile, head) tasks; returns after all are done.
// With o (a decode step's region; hd whole blocks of 32), each task also
// quantises its part of atty for o's compact copy into c->xq (qmat_prep),
// so o's product finds all of it ready after the barrier that ends this.
static void kv_attention(const Model *m, KVCache *c, int l, int R, const int *seq, const int *pos, const float *q, int ldq, const QMat *o) {
    const Config *cf = &m->c;
    const int H = cf->n_heads, hd = cf->head_dim, Dkv = cf->n_kv_heads * hd, g = H / cf->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    int t0[KV_ROWS], tn[KV_ROWS], n_tiles = 0;   // tile j: rows t0[j] .. t0[j] + tn[j] - 1
    for (int i = 0; i < R; i++) {
        if (n_tiles && tn[n_tiles - 1] < ATT_BLOCK && seq[i] == seq[i - 1] && pos[i] == pos[i - 1] + 1) tn[n_tiles - 1]++;
        else { t0[n_tiles] = i; tn[n_tiles++] = 1; }
    }
    #pragma omp for schedule(dynamic)
    for (int task = 0; task < n_tiles * H; task++) {
        const int i = t0[task / H], n = tn[task / H], h = task % H, keys = pos[i + n - 1] + 1;
        const size_t base = ((size_t)l * c->B + seq[i]) * c->max_T * Dkv + (h / g) * hd;
        const float *qi = q + (size_t)i * ldq + h * hd, *k = c->k + base, *v = c->v + base;
        float *p = c->scores + (size_t)omp_get_thread_num() * ATT_BLOCK * c->max_T;
        float *y = c->atty + ((size_t)i * H + h) * hd;
        if (n > 1) {
            gemm(0, 1, n, keys, hd, scale, qi, ldq, k, Dkv, 0.0f, p, keys);
            for (int r = 0; r < n; r++) softmax_kv(p + (size_t)r * keys, keys - n + r + 1, keys);
            gemm(0, 0, n, hd, keys, 1.0f, p, keys, v, Dkv, 0.0f, y, H * hd);
        } else {
            float mx = -INFINITY, sum = 0.0f;
            for (int s = 0; s < keys; s++) {
                p[s] = dot(qi, k + (size_t)s * Dkv, hd) * scale;
                if (p[s] > mx) mx = p[s];
            }
            for (int s = 0; s < keys; s++) { p[s] = expf(p[s] - mx); sum += p[s]; }
            memset(y, 0, hd * sizeof(float));
            for (int s = 0; s < keys; s++) axpy(y, p[s] / sum, v + (size_t)s * Dkv, hd);
        }
        if (o) qmat_prep(&o, 1, c->atty + (size_t)i * H * hd, n, (char *)c->xq + qmat_scratch_bytes(i, H * hd), h * hd / 32, (h + 1) * hd / 32);
    }
}

// The threads a parallel region over the cache may use: scores has room for c->threads
// (inline: a build without OpenMP reads it nowhere).
static inline int kv_threads(const KVCache *c) { return omp_get_max_threads() < c->threads ? omp_get_max_threads() : c->threads; }

// h (R,F) = silu(gate) * up in columns f0..f1-1, gate and up of row i at gu + i * 2F and gu + i * 2F + F.
// exp_simd, not expf: a prompt chunk spent a twelfth of its time here on expf's calls.
static void kv_swiglu(float *h, const float *gu, int R, int F, int f0, int f1) {
    #pragma omp parallel for if ((long)R * (f1 - f0) >= 1 << 13)
    for (int i = 0; i < R; i++) {
        const float *gate = gu + (size_t)i * 2 * F, *up = gate + F;
        #pragma omp simd
        for (int f = f0; f < f1; f++) h[(size_t)i * F + f] = gate[f] / (1.0f + exp_simd(-gate[f])) * up[f];
    }
}

// The compact copies of n Linears side by side (q, k, v; gate, up).
static void copies(const Linear *l, int n, const QMat **q) {
    for (int j = 0; j < n; j++) q[j] = l[j].qw;
}

// Blocks k0..k1-1 of x (R rows) quantised into xs for the compact copies of l[0..n), on this thread.
static void part_prep(const Linear *l, int n, const float *x, int R, void *xs, int k0, int k1) {
    const QMat *q[N_PROJ];
    copies(l, n, q);
    qmat_prep(q, n, x, R, xs, k0, k1);
}

// y (R, l->out) columns o0..o1-1 = x l^T + bias through l's compact copy, x's quantised form in xs, on this thread.
static void part_apply(const Linear *l, int n, const float *x, const void *xs, int R, float *y, int ldy, int o0, int o1) {
    const QMat *q[N_PROJ];
    copies(l, n, q);
    qmat_mul_part(q, n, x, xs, R, y, ldy, o0, o1);
    for (int j = 0, off = 0; j < n; off += l[j++].out)
        for (int i = 0; l[j].bias && i < R; i++)
            for (int o = o0 > off ? o0 : off; o < o1 && o < off + l[j].out; o++) y[(size_t)i * ldy + o] += l[j].bias[o - off];
}

// x (R,D) += y (R,D) in columns d0..d1-1, on this thread: a thread's share of a residual add.
static void add_part(float *x, const float *y, int R, int D, int d0, int d1) {
    for (int i = 0; i < R; i++)
        for (int o = d0; o < d1; o++) x[(size_t)i * D + o] += y[(size_t)i * D + o];
}

// kv_rows' layers for a decode step (R <= QMAT_MAX_ROWS rows, every
// projection compact, no adapter) in one parallel region instead of one per
// product: the threads split each product's outputs (q, k, v by whole heads,
// so each thread rotates and caches its own; gate and up by the same whole
// blocks of 32 columns, so each computes and quantises its part of h; o and
// down add their part into x) and meet at a barrier only where a step reads
// what others wrote, five a layer. Each thread normalises and quantises x
// into its own xn: dim / 32 blocks done on every thread cost less than the
// barrier that sharing them would need. atty and h are quantised once, each
// thread its part (kv_attention's heads, h's blocks), before the barrier
// that precedes their product. The same arithmetic as kv_rows.
static void kv_layers_decode(const Model *m, KVCache *c, int R, const int *seq, const int *pos) {
    const Config *cf = &m->c;
    const int D = cf->dim, F = cf->hidden, hd = cf->head_dim, H = cf->n_heads, KV = cf->n_kv_heads;
    const int Dkv = KV * hd, W3 = (H + 2 * KV) * hd;
    #pragma omp parallel num_threads(kv_threads(c))
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *xn = c->xt + (size_t)t * QMAT_MAX_ROWS * D, rstd[QMAT_MAX_ROWS];
        float *xnq = c->xtq + (size_t)t * xq_floats(D);
        int h0, h1, d0, d1, f0, f1;
        share(H + 2 * KV, t, nt, &h0, &h1);   // heads of [q; k; v]
        share(D, t, nt, &d0, &d1);
        share(F / 32, t, nt, &f0, &f1);       // blocks of h
        for (int l = 0; l < cf->n_layers; l++) {
            const Layer *W = &m->layers[l];
            const Linear *P = W->proj;
            rmsnorm_forward(xn, rstd, c->x, W->attn_norm, R, D, cf->norm_eps);
            part_prep(&P[PROJ_Q], 3, xn, R, xnq, 0, D / 32);
            part_apply(&P[PROJ_Q], 3, xn, xnq, R, c->qkv, W3, h0 * hd, h1 * hd);
            for (int h = h0; h < h1; h++) {   // q heads, k heads, v heads
                float *x = c->qkv + (size_t)h * hd;
                if (h < H + KV) rope_at(c, x, W3, pos, R, 1, hd);
                if (h < H) continue;
                const int kv = h < H + KV ? h - H : h - H - KV;
                for (int i = 0; i < R; i++) {
                    size_t at = (((size_t)l * c->B + seq[i]) * c->max_T + pos[i]) * Dkv + kv * hd;
                    memcpy((h < H + KV ? c->k : c->v) + at, x + (size_t)i * W3, hd * sizeof(float));
                }
            }
            #pragma omp barrier
            kv_attention(m, c, l, R, seq, pos, c->qkv, W3, P[PROJ_O].qw);   // ends in a barrier
            part_apply(&P[PROJ_O], 1, c->atty, c->xq, R, c->tmp, D, d0, d1);
            add_part(c->x, c->tmp, R, D, d0, d1);
            #pragma omp barrier
            rmsnorm_forward(xn, rstd, c->x, W->mlp_norm, R, D, cf->norm_eps);
            part_prep(&P[PROJ_GATE], 2, xn, R, xnq, 0, D / 32);
            part_apply(&P[PROJ_GATE], 1, xn, xnq, R, c->gu, 2 * F, 32 * f0, 32 * f1);
            part_apply(&P[PROJ_UP], 1, xn, xnq, R, c->gu + F, 2 * F, 32 * f0, 32 * f1);
            kv_swiglu(c->h, c->gu, R, F, 32 * f0, 32 * f1);
            part_prep(&P[PROJ_DOWN], 1, c->h, R, c->xq, f0, f1);
            #pragma omp barrier
            part_apply(&P[PROJ_DOWN], 1, c->h, c->xq, R, c->tmp, D, d0, d1);
            add_part(c->x, c->tmp, R, D, d0, d1);
            #pragma omp barrier
        }
    }
}

// x (N, l->out) += y (N, l->out) = in (N, l->in) l^T + b + adapter: the
// residual add after o and down. A prompt chunk (fuse) adds inside the sgemm
// (beta 1), which saves zeroing y and a pass over both; a decode step takes
// linear_apply, as kv_layers_decode's arithmetic must match it.
static void linear_residual(const Linear *l, const float *in, float *x, float *y, float *u, int N, int fuse, void *xs) {
    if (fuse) {
        gemm(0, 1, N, l->out, l->in, 1.0f, in, l->in, l->w, l->in, 1.0f, x, l->out);
        linear_extra(l, in, x, l->out, u, N);
        return;
    }
    linear_apply(l, in, y, l->out, u, N, xs);
    add(x, y, (size_t)N * l->out);
}

// Each row of c->qkv (R rows) rotated to its position, q in place, and its k
// and v into layer l's cache, rows spread over the threads: q and k lie side
// by side, so one rope_at turns both with the same angles.
static void kv_rope_store(const Model *m, KVCache *c, int l, int R, const int *seq, const int *pos) {
    const Config *cf = &m->c;
    const int hd = cf->head_dim, Dq = cf->n_heads * hd, Dkv = cf->n_kv_heads * hd, W3 = Dq + 2 * Dkv;
    #pragma omp parallel for if (R > QMAT_MAX_ROWS) num_threads(kv_threads(c))
    for (int i = 0; i < R; i++) {
        float *x = c->qkv + (size_t)i * W3;
        rope_at(c, x, W3, pos + i, 1, cf->n_heads + cf->n_kv_heads, hd);
        const size_t at = (((size_t)l * c->B + seq[i]) * c->max_T + pos[i]) * Dkv;
        memcpy(c->k + at, x + Dq, Dkv * sizeof(float));
        memcpy(c->v + at, x + Dq + Dkv, Dkv * sizeof(float));
    }
}

// n Linears of the same input x (N rows), their outputs side by side in y (N,
// sum of outs): fused (a prompt chunk), in one sgemm of their fp32 weights
// when linear_fused can; else, with compact copies of the same width and few
// rows (a decode step), in one qmat_mul_n, x quantised into xs; else one product each.
static void linear_group(const Linear *l, int n, const float *x, float *y, float *u, int N, int fuse, void *xs) {
    if (fuse && linear_fused(l, n, x, y, u, N)) return;
    int ld = 0, compact = N <= QMAT_MAX_ROWS;
    const QMat *q[N_PROJ];
    for (int j = 0; j < n; j++) {
        ld += l[j].out;
        q[j] = l[j].qw;
        compact &= q[0] && q[j] && q[j]->cols == q[0]->cols;
    }
    if (compact) {
        qmat_mul_n(q, n, x, N, y, ld, xs);
        for (int j = 0, off = 0; j < n; off += l[j++].out) {
            merged_term(&l[j], x, y + off, ld, u, N);
            linear_extra(&l[j], x, y + off, ld, u, N);
        }
        return;
    }
    for (int j = 0, off = 0; j < n; off += l[j++].out) linear_apply(&l[j], x, y + off, ld, u, N, xs);
}

// Whether a decode step may take kv_layers_decode: every projection reads its
// compact copy alone (no adapter attached or merged) and heads are whole
// blocks of 32 (kv_attention quantises o's input head by head). Asked each
// pass: 7 loads a layer, where a flag would have to follow model_attach_lora,
// lora_merge and the compact copies' binding, and a stale one would compute
// the wrong sum.
static int one_region(const Model *m) {
    int ok = m->c.head_dim % 32 == 0;
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const Linear *x = &m->layers[l].proj[p];
            ok &= x->qw && !x->r && !x->qr;
        }
    return ok;
}

// R rows (R <= c->rows): token tok[i] of sequence seq[i] at position pos[i].
// Their keys and values enter the cache; the logits of the rows with want[i]
// set land in c->logits, in row order. Prompt rows need none but their last.
// Row i's q, k, v lie side by side in c->qkv, its gate and up in c->gu: a
// prompt chunk (more than QMAT_MAX_ROWS rows) computes each trio or pair in
// one sgemm, a decode step in one pass over the compact weights (linear_group).
static void kv_rows(const Model *m, KVCache *c, int R, const int *tok, const int *seq, const int *pos, const uint8_t *want) {
    const Config *cf = &m->c;
    const int D = cf->dim, F = cf->hidden, hd = cf->head_dim, Dq = cf->n_heads * hd, Dkv = cf->n_kv_heads * hd;
    const int W3 = Dq + 2 * Dkv, fuse = R > QMAT_MAX_ROWS;
    float *q = c->qkv;
    embed(c->x, m->embed, tok, R, D);
    float rstd[KV_ROWS];
    const int decode = R <= QMAT_MAX_ROWS && one_region(m);
    if (decode) kv_layers_decode(m, c, R, seq, pos);
    for (int l = 0; !decode && l < cf->n_layers; l++) {
        const Layer *W = &m->layers[l];
        const Linear *P = W->proj;
        rmsnorm_forward(c->xn, rstd, c->x, W->attn_norm, R, D, cf->norm_eps);
        linear_group(&P[PROJ_Q], 3, c->xn, c->qkv, c->u, R, fuse, c->xq);
        kv_rope_store(m, c, l, R, seq, pos);
        #pragma omp parallel num_threads(kv_threads(c))
        kv_attention(m, c, l, R, seq, pos, q, W3, NULL);
        linear_residual(&P[PROJ_O], c->atty, c->x, c->tmp, c->u, R, fuse, c->xq);
        rmsnorm_forward(c->xn, rstd, c->x, W->mlp_norm, R, D, cf->norm_eps);
        linear_group(&P[PROJ_GATE], 2, c->xn, c->gu, c->u, R, fuse, c->xq);
        kv_swiglu(c->h, c->gu, R, F, 0, F);
        linear_residual(&P[PROJ_DOWN], c->h, c->x, c->tmp, c->u, R, fuse, c->xq);
    }
    int nw = 0;
    for (int i = 0; i < R; i++)
        if (want[i]) memcpy(c->tmp + (size_t)nw++ * D, c->x + (size_t)i * D, D * sizeof(float));
    if (!nw) return;
    rmsnorm_forward(c->xn, rstd, c->tmp, m->norm, nw, D, cf->norm_eps);
    if (m->q_lm_head && nw <= QMAT_MAX_ROWS) qmat_mul(m->q_lm_head, c->xn, nw, c->logits, cf->vocab, c->xq);
    else gemm(0, 1, nw, cf->vocab, D, 1.0f, c->xn, D, m->lm_head, D, 0.0f, c->logits, cf->vocab);
}

// Prompts of n sequences (prompts[b] appended to sequence b), rows of several
// sequences packed into each pass; the logits of each prompt's last token go
// to logits (n, V).
int kv_prefill(const Model *m, KVCache *c, int n, const int *const *prompts, const int *lens, float *logits, char *err) {
    if (n > c->B) return errf(err, "%d sequences, the cache holds %d", n, c->B);
    for (int b = 0; b < n; b++) {
        if (lens[b] < 1 || c->len[b] + lens[b] > c->max_T) return errf(err, "prompt %d: %d tokens do not fit the cache (%d)", b, lens[b], c->max_T - c->len[b]);
        for (int i = 0; i < lens[b]; i++)
            if (prompts[b][i] < 0 || prompts[b][i] >= m->c.vocab) return errf(err, "token id %d outside the vocabulary (%d)", prompts[b][i], m->c.vocab);
    }
    int tok[KV_ROWS], seq[KV_ROWS], pos[KV_ROWS], R = 0, done = 0;   // done: logits rows written
    uint8_t want[KV_ROWS];
    for (int b = 0; b < n; b++)
        for (int i = 0; i < lens[b]; i++) {
            tok[R] = prompts[b][i];
            seq[R] = b;
            pos[R] = c->len[b] + i;
            want[R++] = i == lens[b] - 1;
            if (R == c->rows || (b == n - 1 && i == lens[b] - 1)) {
                kv_rows(m, c, R, tok, seq, pos, want);
                int nw = 0;
                for (int r = 0; r < R; r++) nw += want[r];
                memcpy(logits + (size_t)done * m->c.vocab, c->logits, (size_t)nw * m->c.vocab * sizeof(float));
                done += nw;
                R = 0;
            }
        }
    for (int b = 0; b < n; b++) c->len[b] += lens[b];
    return 0;
}

int kv_append(const Model *m, KVCache *c, int b, const int *tokens, int n, float *logits, char *err) {
    if (b < 0 || b >= c->B) return errf(err, "sequence %d outside the cache's batch of %d", b, c->B);
    if (c->len[b] + n > c->max_T) return errf(err, "sequence %d would reach %d tokens, more than the cache holds (%d)", b, c->len[b] + n, c->max_T);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->c.vocab) return errf(err, "token id %d outside the vocabulary (%d)", tokens[i], m->c.vocab);
    int seq[KV_ROWS], pos[KV_ROWS], R = 0;
    uint8_t want[KV_ROWS];
    for (int done = 0; done < n; done += R) {
        R = n - done < KV_ROWS ? n - done : KV_ROWS;
        for (int i = 0; i < R; i++) { seq[i] = b; pos[i] = c->len[b] + i; want[i] = logits && done + i == n - 1; }
        kv_rows(m, c, R, tokens + done, seq, pos, want);
        c->len[b] += R;
    }
    if (logits && n) memcpy(logits, c->logits, m->c.vocab * sizeof(float));
    return 0;
}

int kv_step(const Model *m, KVCache *c, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    if (n > c->B) return errf(err, "%d sequences, the cache holds %d", n, c->B);
    for (int i = 0; i < n; i++) {   // check everything before touching the cache
        if (seqs[i] < 0 || seqs[i] >= c->B) return errf(err, "sequence %d outside the cache's batch of %d", seqs[i], c->B);
        if (c->len[seqs[i]] >= c->max_T) return errf(err, "sequence %d is full (%d tokens)", seqs[i], c->max_T);
        if (tokens[i] < 0 || tokens[i] >= m->c.vocab) return errf(err, "token id %d outside the vocabulary (%d)", tokens[i], m->c.vocab);
    }
    int pos[KV_ROWS];
    uint8_t want[KV_ROWS];
    memset(want, 1, sizeof want);
    for (int done = 0; done < n; done += KV_ROWS) {
        int R = n - done < KV_ROWS ? n - done : KV_ROWS;
        for (int i = 0; i < R; i++) pos[i] = c->len[seqs[done + i]];
        kv_rows(m, c, R, tokens + done, seqs + done, pos, want);
        for (int i = 0; i < R; i++) c->len[seqs[done + i]]++;
        memcpy(logits + (size_t)done * m->c.vocab, c->logits, (size_t)R * m->c.vocab * sizeof(float));
    }
    return 0;
}
