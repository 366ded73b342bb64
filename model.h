// model.h: the one public interface of the model (Llama, and Qwen2, which is
// Llama with biases on the q, k and v projections): configuration, the tables
// of named tensors, and the backend-neutral entry points.
//
// Shapes use B = batch, T = sequence length, N = B*T rows, D = hidden size,
// H / KV = query / key-value heads, hd = head_dim, F = MLP size, V = vocab.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { ARCH_LLAMA, ARCH_QWEN2 };   // config.json "model_type": "llama" or "qwen2"

typedef struct {
    int arch;                     // ARCH_*: Qwen2 adds q/k/v projection biases
    int dim, hidden, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    float norm_eps, rope_theta;
    int rope_llama3;              // rope_scaling = {"rope_type": "llama3", ...}
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    int tied, max_pos, bos;
    int eos[8], n_eos;
} Config;

// ---------------------------------------------------------------------------
// Tables of named tensors: every tensor of a model or adapter lives in one
// allocation (mem) and is addressed by its Hugging Face / PEFT name. Loaders,
// savers, optimizers, gradient checks and fixture comparisons walk tables.
typedef struct {
    char name[112];
    int rows, cols;               // a vector has rows = 1
    size_t size;                  // rows * cols
    float *data;
} Tensor;

typedef struct {
    int n, cap;
    Tensor *t;
    float *mem;
    size_t total;                 // floats in mem
} Table;

void table_add(Table *t, const char *name, int rows, int cols);
int table_alloc(Table *t);                       // one zeroed allocation for all
int table_like(Table *dst, const Table *src);    // same names and shapes, zeroed; -1 when out of memory
void table_free(Table *t);
Tensor *table_get(const Table *t, const char *name);   // NULL when absent
void table_zero(Table *t);
const Tensor *table_nonfinite(const Table *t);   // the first tensor holding a NaN or Inf, or NULL

// ---------------------------------------------------------------------------
// A linear layer y = x W^T (+ b with a bias) (+ s * (x A^T) B^T with a LoRA
// adapter), W [out,in]. A LoRA adapter never trains the bias: like W it stays frozen.
enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, N_PROJ };
extern const char *const PROJ_NAME[N_PROJ];     // "q_proj", ... (PEFT names)
extern const char *const PROJ_BLOCK[N_PROJ];    // "self_attn" or "mlp"
// Whether projection p has a bias: Qwen2's q_proj, k_proj and v_proj.
int proj_has_bias(const Config *c, int p);
// Projection p's weight is [*out, *in].
void proj_shape(const Config *c, int p, int *out, int *in);

// The parameter table, in this order, Hugging Face names (PyTorch shapes):
//   model.embed_tokens.weight                         [V, D]
//   per layer i, prefix model.layers.{i}.:
//     input_layernorm.weight                          [D]
//     self_attn.q_proj.weight [H*hd, D]  (.bias [H*hd] with Qwen2)
//     self_attn.k_proj.weight [KV*hd, D] (.bias [KV*hd] with Qwen2)
//     self_attn.v_proj.weight [KV*hd, D] (.bias [KV*hd] with Qwen2)
//     self_attn.o_proj.weight [D, H*hd]
//     post_attention_layernorm.weight                 [D]
//     mlp.gate_proj.weight [F, D], mlp.up_proj.weight [F, D], mlp.down_proj.weight [D, F]
//   model.norm.weight                                 [D]
//   lm_head.weight                                    [V, D] (absent when tied)
// A vector is a Tensor with rows = 1.

typedef struct {
    int in, out;
    float *w, *dw;                // dw only when the base is trainable
    float *bias, *dbias;          // (out): Qwen2's q/k/v; NULL without one (dbias: full training only)
    int r;                        // 0: no adapter
    float scale;                  // lora_alpha / r
    float *a, *b, *da, *db;       // lora_A [r,in], lora_B [out,r]
    const struct QMat *qw;        // compact inference copy of w (weights.h), or NULL
    // An adapter merged into w after qw was made (lora_merge): the KV cache reads
    // qw + qscale qb qa, which is w. qr 0: none.
    int qr;
    float qscale;                 // sign * lora_alpha / r of the merge
    const float *qa, *qb;         // its lora_A [qr,in], lora_B [out,qr]: the merged Lora's own tables
} Linear;

typedef struct {
    float *attn_norm, *mlp_norm, *d_attn_norm, *d_mlp_norm;
    Linear proj[N_PROJ];
} Layer;

typedef struct {
    int r;
    float alpha;
    unsigned targets;             // bit p set: PROJ p is adapted
    Table params, grads;
} Lora;

typedef struct {
    Config c;
    Table params, grads;          // grads allocated only when training the full model
    Layer *layers;
    float *embed, *norm, *lm_head, *d_embed, *d_norm, *d_lm_head;
    Lora *lora;                   // attached adapter, or NULL
    // Compact inference copies of the frozen weights (weights.h, model_compact),
    // read by the KV cache: n_layers * N_PROJ projections, then the LM head.
    struct QMat *qmats;           // (n_layers * N_PROJ + 1), or NULL: fp32 only
    const struct QMat *q_lm_head; // the LM head's copy, or NULL
} Model;

// The parameter table for a config, with Hugging Face names, zeroed.
int model_init(Model *m, const Config *c, char *err);
void model_free(Model *m);
void model_random(Model *m, uint64_t seed, float std);   // for tests and benchmarks
int model_train_full(Model *m);     // allocate base gradients: every tensor trains, biases too

// LoRA adapters (PEFT layout). targets is a bitmask of PROJ_* values.
unsigned lora_targets_parse(const char *list, char *err);   // "q_proj,v_proj"; 0 on error
// The PEFT name of layer l's projection p's lora_A (ab = 'A') or lora_B ('B'):
// "base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight".
void lora_name(char *s, size_t n, int l, int p, char ab);
int lora_init(Lora *l, const Config *c, int r, float alpha, unsigned targets);
void lora_reset(Lora *l, uint64_t seed);       // PEFT init: A kaiming-uniform, B = 0
void lora_free(Lora *l);
void model_attach_lora(Model *m, Lora *l);     // NULL detaches
// W += sign * s * B A. The compact copies stay (model.c says why): an adapted
// projection's copy keeps W from before and the KV cache adds the adapter's
// term, so l must stay as it is until weights.h's model_compact_restore (the
// caller copied the weights from before back) or model_compact_free. A second
// merge into a projection sets its copy aside until then (fp32 meanwhile).
void lora_merge(Model *m, const Lora *l, float sign);

// Adapters one forward can train at once (model_forward_many).
#define MAX_ADAPTERS 64

// ---------------------------------------------------------------------------
// Activations for one (B, T) shape: everything backward needs, in one
// allocation laid out by one size table (model.c's carve_acts). N = B*T.

// What layer l's forward keeps for its backward.
typedef struct {
    float *res;                   // (N, D) the layer's input: the residual stream
    float *ln1, *rstd1;           // (N, D), (N): input_layernorm
    float *q, *k, *v;             // (N, H*hd), (N, KV*hd), (N, KV*hd); q and k turned by RoPE
    float *att;                   // (B, H, T, T) softmax probabilities
    float *atty;                  // (N, H*hd) attention output, o_proj's input
    float *mid;                   // (N, D) the residual stream after attention
    float *ln2, *rstd2;           // (N, D), (N): post_attention_layernorm
    float *gate, *up, *h;         // (N, F) each; h = silu(gate) * up, down_proj's input
    float *u[N_PROJ];             // (N, r) x A^T of each adapted projection, else NULL
} LayerActs;

typedef struct {
    int B, T, n_layers;
    float *mem;                   // the one allocation
    float *rope_cos, *rope_sin;   // (T, hd/2)
    LayerActs *layers;            // (n_layers)
    float *res_out;               // (N, D) the last layer's output
    float *lnf, *rstdf, *logits;  // final norm (N, D), (N); logits (N, V)
    // Gradients of one layer at a time: backward reuses them layer after layer.
    float *d_res, *d_mid, *d_ln;  // (N, D)
    float *d_q, *d_k, *d_v, *d_atty;   // (N, H*hd), (N, KV*hd), (N, KV*hd), (N, H*hd)
    float *d_gate, *d_up, *d_h;   // (N, F)
    float *d_u;                   // (N, r)
    float *d_lnf;                 // (N, D)
    float *d_att;                 // (B, H, T, T)
    const int *ids, *labels;      // the batch the last forward saw
    int n_valid;                  // positions that carry loss
    // The adapters of the last forward: batch rows [b0[k], b0[k+1]) go through
    // adapter[k] (NULL: the attached one, or none) and carry n_valid_of[k] targets.
    int K;
    Lora *adapter[MAX_ADAPTERS];
    int b0[MAX_ADAPTERS + 1], n_valid_of[MAX_ADAPTERS];
} Acts;

// RoPE inverse frequencies (hd/2 of them), llama3-scaled when the config says so.
void rope_inv_freq(const Config *c, float *inv);
// cos and sin (n, hd/2) of the RoPE angles of positions 0..n-1.
void rope_table(const Config *c, int n, float *cosv, float *sinv);

int acts_init(Acts *a, const Model *m, int B, int T, char *err);
void acts_free(Acts *a);

// Forward on ids (B,T); with labels (B,T, -100 ignored, shifted inside as in
// Hugging Face) it returns the mean cross-entropy, else 0. Logits land in a->logits.
float model_forward(const Model *m, Acts *a, const int *ids, const int *labels);
// K adapters over one frozen base in one pass: batch rows [0, rows[0]) go
// through adapter[0], the next rows[1] through adapter[1], and so on (rows
// sum to a->B). The base's products run once over all rows; each adapter's
// LoRA terms only over its own. Every adapter is shaped as the attached one
// (m->lora, which need not be among them); loss[k] is adapter k's mean
// cross-entropy over its rows, and model_backward adds each adapter's
// gradients into its own grads table. K = 1 with m->lora is model_forward.
void model_forward_many(const Model *m, Acts *a, const int *ids, const int *labels, int K, Lora *const *adapter, const int *rows, float *loss);
// Backward of the last forward's loss: accumulates into every trainable
// gradient (model grads when training full, the adapter's grads with LoRA;
// after model_forward_many, the sum of the K losses into the K adapters').
void model_backward(Model *m, Acts *a);

// Matrix multiply in row-major storage, BLAS sgemm semantics:
// C (M,N) = alpha * op(A) op(B) + beta * C, op(X) = X or X^T.
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);
const char *gemm_backend(void);   // "openblas" or "reference loops"

// ---------------------------------------------------------------------------
// KV cache: incremental decoding of up to B sequences of up to max_T tokens.
// Logits equal those of model_forward on the whole sequence.
#define KV_ROWS 1024              // tokens per pass at most; longer prompts go in chunks
typedef struct {
    int B, max_T;
    int rows;                     // tokens per pass: KV_ROWS, or B * max_T when smaller
    int threads;                  // OpenMP threads the scores are sized for
    int *len;                     // tokens cached per sequence (set to 0 to reuse a slot)
    Table mem;
    float *k, *v;                 // (L, B, max_T, KV*hd)
    float *cosv, *sinv;           // (max_T, hd/2) RoPE at every position the cache holds (rope_table)
    float *x, *xn, *qkv, *atty, *tmp, *gu, *h, *u;   // (rows, ...) scratch: qkv a row's q, k, v; gu its gate, up
    float *xt;                    // (threads, QMAT_MAX_ROWS, dim) each thread's xn in a decode step
    float *xtq;                   // (threads, ...) its quantised form (qmat_prep), qmat_scratch_bytes(QMAT_MAX_ROWS, dim) each
    float *xq;                    // the quantised form of a compact product's x: qmat_scratch_bytes(QMAT_MAX_ROWS, widest x)
    float *scores;                // (threads, ATT_BLOCK * max_T) a tile of attention rows per thread
    float *logits;                // (min(B, rows), V): a pass wants at most one row per sequence
} KVCache;

int kv_init(KVCache *c, const Model *m, int B, int max_T, char *err);
void kv_free(KVCache *c);
// Appends n tokens to sequence b (a prompt, or one generated token); the
// logits (V) of the last one are written to logits when it is not NULL.
int kv_append(const Model *m, KVCache *c, int b, const int *tokens, int n, float *logits, char *err);
// The prompts of sequences 0..n-1 at once, rows of several sequences packed
// into each pass; logits (n, V) of each prompt's last token.
int kv_prefill(const Model *m, KVCache *c, int n, const int *const *prompts, const int *lens, float *logits, char *err);
// One token for each of n sequences at once (batched decode): logits (n, V).
int kv_step(const Model *m, KVCache *c, int n, const int *seqs, const int *tokens, float *logits, char *err);

// ---------------------------------------------------------------------------
// On disk (checkpoint.c)

// config.json of a Hugging Face Llama or Qwen2 checkpoint; a missing required
// key or a value of the wrong kind is an error naming the key, and so is a
// feature the math here lacks (sliding-window attention, attention_bias on a
// Llama, an activation other than silu, another model_type).
int config_load(Config *c, const char *path, char *err);
int config_parse(Config *c, const char *json, const char *path, char *err);
int config_save(const Config *c, const char *path, char *err);

// Load / save a table from / to safetensors. `prefix` is prepended to each
// name in the file (the PEFT adapter prefix, or ""). Loading fills every tensor
// and fails, naming the tensor, if one is missing or has the wrong shape.
// `files` is a NULL-terminated list: a model sharded over several files.
int table_load(Table *t, const char *const *files, const char *prefix, char *err);
int table_save(const Table *t, const char *path, const char *prefix, char *err);

// A Hugging Face model directory: config.json + model.safetensors or
// model.safetensors.index.json with shards; F32, BF16 or F16 on disk. A GGUF
// file path instead of a directory loads through gguf.c.
int model_load(Model *m, const char *dir, char *err);
int model_save(const Model *m, const char *dir, char *err);

// PEFT adapter folder: adapter_config.json + adapter_model.safetensors.
int lora_load(Lora *l, const Config *c, const char *dir, char *err);
// The config of a model folder (its config.json) or of a .gguf file.
int model_config_load(Config *c, const char *path, char *err);
int lora_save(const Lora *l, const char *dir, const char *base_model, char *err);
