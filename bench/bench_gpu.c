// bench/bench_gpu.c: the CUDA backend's speed on a Llama-3.2-1B-shaped model
// with random weights made here (nothing is downloaded):
//
//   train   LoRA r=128 on q,v,gate,up,down, batch 2 x 1024: one step is
//           forward with the loss, backward, gradient clipping and AdamW;
//           tokens/s, model FLOP/s, MFU, GPU memory.
//   decode  batch 1 and 64: 1024-token prompts (prefill), then greedy
//           tokens (the argmax on the GPU); tokens/s of each, the share of
//           the GPU's memory bandwidth at batch 1, GPU memory.
//   sample  a task's self-edits (SEAL: 15) as one batch of G tokens after a
//           2048-token prompt each (greedy stands in for sampling: the same
//           work a step bar the draw); tokens/s.
//
//   many    test-time training of K self-edits' adapters (LoRA r=128, each
//           its own examples: N steps of 1 x T tokens) one at a time against
//           all K at once (be_sft_many: one pass over the K adapters' rows a
//           step, the base shared): self-edit trainings per minute of each.
//
//   bench_gpu [--steps N] [--prompt P] [--gen G] [--batches 1,64] [--shape 1b|small] [--seq T]
//             [--sample B] [--sample-prompt P]  (--sample 0: no sample rows)
//             [--many K] [--many-steps N] [--many-seq T]      (--many 0: no many rows)
//
// Output: one "key value" line per measure on stdout (bench/run_gpu.sh reads them).
#include "bench/bench_models.h"
#include "backend.h"
#include "kernels.h"
#include "model.h"
#include "train.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *msg) {
    fprintf(stderr, "bench_gpu: %s\n", msg);
    exit(1);
}

static const unsigned TARGETS = 1u << PROJ_Q | 1u << PROJ_V | 1u << PROJ_GATE | 1u << PROJ_UP | 1u << PROJ_DOWN;

// FLOPs of one LoRA training step, counted as bench/bench_train.c counts them:
// only the matrix products the step needs (no base-weight gradients; no dx
// into the frozen embedding), the LM head forward and backward, and causal
// attention (T (T + 1) / 2 scores, 4 hd FLOPs each forward, 8 backward).
static double lora_step_flops(const Config *c, int r, unsigned targets, int B, int T) {
    const int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    const double outs[N_PROJ] = {q, kv, kv, c->dim, c->hidden, c->hidden, c->dim};
    const double ins[N_PROJ] = {c->dim, c->dim, c->dim, q, c->dim, c->dim, c->hidden};
    double per_token = 4.0 * c->dim * c->vocab;
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const double in = ins[p], out = outs[p];
            const int need_dx = l > 0 || !(p == PROJ_Q || p == PROJ_K || p == PROJ_V);
            per_token += 2 * in * out + (need_dx ? 2 * in * out : 0);
            if (targets >> p & 1) per_token += 2 * r * (in + out) + 2 * r * (2 * out + in) + (need_dx ? 2 * r * in : 0);
        }
    const double scores = (double)T * (T + 1) / 2;
    return (double)B * T * per_token + (double)c->n_layers * B * c->n_heads * scores * 12.0 * c->head_dim;
}

static double gib(size_t bytes) { return bytes / 1073741824.0; }

static int argmax_row(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void bench_train(CudaModel *g, const Config *c, int r, int B, int T, int steps) {
    char err[ERR_MAX];
    const int N = B * T;
    int *ids = malloc(N * sizeof(int));
    Rng rng;
    rng_seed(&rng, 7);
    for (int n = 0; n < N; n++) ids[n] = (int)(rng_next(&rng) % (uint64_t)c->vocab);
    double t0 = 0, loss_sum = 0;
    float loss = 0, norm = 0;
    for (int s = 0; s < steps + 2; s++) {   // two warm-up steps
        if (s == 2) t0 = now_seconds();
        if (cuda_zero_grads(g, err) || cuda_forward(g, ids, ids, B, T, 1, NULL, &loss, err) || cuda_backward(g, err) ||
            cuda_clip_grad_norm(g, 0, 1.0f, &norm, err) || cuda_adamw_step(g, 0, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, err))
            die(err);
        if (s >= 2) loss_sum += loss;
    }
    const double step_s = (now_seconds() - t0) / steps, flops = lora_step_flops(c, r, TARGETS, B, T);
    double peak_flops, peak_bw;
    cuda_device_peaks(&peak_flops, &peak_bw);
    printf("train_batch %dx%d\n", B, T);
    printf("train_rank %d\n", r);
    printf("train_step_s %.4f\n", step_s);
    printf("train_tokens_per_s %.0f\n", N / step_s);
    printf("train_step_gflop %.1f\n", flops / 1e9);
    printf("train_tflops %.1f\n", flops / step_s / 1e12);
    if (peak_flops > 0) printf("train_mfu %.3f\n", flops / step_s / peak_flops);
    printf("train_mean_loss %.4f\n", loss_sum / steps);
    printf("train_mem_gib %.2f\n", gib(cuda_memory_peak()));
    fflush(stdout);
    free(ids);
}

// Base-model bytes a decode step reads: every weight once (bf16; a tied LM
// head is the embedding), the norms (fp32), and the KV cache up to `len`.
static double decode_bytes(const Config *c, double len) {
    const double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double w = (double)c->n_layers * (c->dim * (q + 2 * kv) + q * c->dim + 3.0 * c->dim * c->hidden);
    w += (c->tied ? 1.0 : 2.0) * c->vocab * c->dim;
    return 2.0 * w + 4.0 * (2 * c->n_layers + 1) * c->dim + (double)c->n_layers * len * 2 * kv * 2;
}

// Prefill B prompts of P tokens, then G greedy steps; keys start with `key`.
static void bench_decode(CudaModel *g, const Config *c, const char *key, int B, int P, int G) {
    char err[ERR_MAX];
    const int V = c->vocab, WARM = 3;
    CudaKV *kv = cuda_kv_new(g, B, P + WARM + G + 1, err);
    if (!kv) die(err);
    int **prompts = malloc(B * sizeof(int *)), *lens = malloc(B * sizeof(int)), *seqs = malloc(B * sizeof(int));
    int *tok = malloc(B * sizeof(int)), *next = malloc(B * sizeof(int));
    float *logits = malloc((size_t)B * V * sizeof(float));
    Rng rng;
    rng_seed(&rng, 11);
    for (int b = 0; b < B; b++) {
        prompts[b] = malloc(P * sizeof(int));
        for (int i = 0; i < P; i++) prompts[b][i] = (int)(rng_next(&rng) % (uint64_t)V);
        lens[b] = P;
        seqs[b] = b;
    }
    double t0 = now_seconds();
    if (cuda_kv_prefill(kv, B, (const int *const *)prompts, lens, logits, err)) die(err);
    const double prefill_s = now_seconds() - t0;
    for (int b = 0; b < B; b++) tok[b] = argmax_row(logits + (size_t)b * V, V);
    double t1 = 0;
    for (int s = 0; s < WARM + G; s++) {   // warm-up: an eager step, the capture, a replay
        if (s == WARM) t1 = now_seconds();
        if (cuda_kv_step_greedy(kv, B, seqs, tok, next, err)) die(err);
        memcpy(tok, next, B * sizeof(int));
    }
    const double decode_s = now_seconds() - t1;
    double peak_flops, peak_bw;
    cuda_device_peaks(&peak_flops, &peak_bw);
    printf("%s_prefill_tokens_per_s %.0f\n", key, (double)B * P / prefill_s);
    printf("%s_decode_tokens_per_s %.1f\n", key, (double)B * G / decode_s);
    printf("%s_decode_step_ms %.3f\n", key, 1e3 * decode_s / G);
    if (B == 1 && peak_bw > 0) printf("%s_decode_bandwidth_share %.3f\n", key, decode_bytes(c, P + WARM + G / 2.0) * G / decode_s / peak_bw);
    printf("%s_graphs %d\n", key, cuda_kv_graphs(kv));
    printf("%s_mem_gib %.2f\n", key, gib(cuda_memory_used()));
    fflush(stdout);
    cuda_kv_free(kv);
    for (int b = 0; b < B; b++) free(prompts[b]);
    free(prompts); free(lens); free(seqs); free(tok); free(next); free(logits);
}

// K adapters' test-time training, one at a time and then all at once, on a
// backend of its own (the base uploaded once for both).
static void bench_many(Model *m, const Lora *shape, int K, int steps, int T) {
    char err[ERR_MAX];
    Backend *be = backend_new(1, err);
    if (!be) die(err);
    Example *ex = random_examples(K * steps, T, m->c.vocab, 13);
    Lora *lo = calloc((size_t)K, sizeof *lo);
    SftRun *runs = calloc((size_t)K, sizeof *runs);
    for (int k = 0; k < K; k++) {
        if (lora_init(&lo[k], &m->c, shape->r, shape->alpha, shape->targets)) die("out of memory (adapters)");
        lora_reset(&lo[k], 20 + k);
        runs[k] = (SftRun){.ex = ex + (size_t)k * steps, .n = steps, .o = sft_defaults(), .lora = &lo[k]};
        runs[k].o.seed = k;
    }
    model_attach_lora(m, &lo[0]);
    if (be_sft_many(be, m, runs, 1, err)) die(err);   // warm-up: upload, kernels, cuBLAS
    double t0 = now_seconds();
    for (int k = 0; k < K; k++)
        if (be_sft_many(be, m, &runs[k], 1, err)) die(err);
    const double one = now_seconds() - t0;
    t0 = now_seconds();
    if (be_sft_many(be, m, runs, K, err)) die(err);
    const double all = now_seconds() - t0;
    printf("many_adapters %d\nmany_steps %d\nmany_seq %d\n", K, steps, T);
    printf("many_one_at_a_time_per_min %.1f\n", 60.0 * K / one);
    printf("many_at_once_per_min %.1f\n", 60.0 * K / all);
    printf("many_mem_gib %.2f\n", gib(cuda_memory_peak()));
    fflush(stdout);
    backend_close(be);
    model_attach_lora(m, NULL);
    for (int k = 0; k < K; k++) lora_free(&lo[k]);
    examples_free(ex, K * steps);
    free(lo); free(runs);
}

static Config config_small(void) {
    Config c = config_25m();
    c.n_layers = 2;
    return c;
}

int main(int argc, char **argv) {
    int steps = 10, P = 1024, G = 128, R = 128, B = 2, T = 1024, many = 8, many_steps = 4, many_seq = 512, sample_b = 15, sample_p = 2048;
    const char *batches = "1,64", *shape = "1b";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--prompt")) P = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--gen")) G = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batches")) batches = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seq")) T = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--many")) many = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--many-steps")) many_steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--many-seq")) many_seq = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--sample")) sample_b = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--sample-prompt")) sample_p = atoi(argv[++i]);
        else die("usage: bench_gpu [--steps N] [--prompt P] [--gen G] [--batches 1,64] [--sample B] [--sample-prompt P] [--shape 1b|small] [--seq T] [--many K] [--many-steps N] [--many-seq T]");
    }
    if (steps < 1 || P < 1 || G < 1 || T < 2 || many < 0 || many > MAX_ADAPTERS || many_steps < 1 || many_seq < 2 || sample_b < 0 || sample_p < 1) die("bad arguments");
    char err[ERR_MAX], dev[256];
    if (!cuda_available(err)) {
        printf("gpu_missing %s\n", err);
        return 1;
    }
    cuda_device_name(dev, sizeof dev);
    double peak_flops, peak_bw;
    cuda_device_peaks(&peak_flops, &peak_bw);
    printf("gpu %s\n", dev);
    printf("gpu_peak_bf16_tflops %.1f\n", peak_flops / 1e12);
    printf("gpu_peak_bandwidth_gbs %.0f\n", peak_bw / 1e9);
    const Config c = !strcmp(shape, "small") ? config_small() : config_1b();

    double t0 = now_seconds();
    Model m;
    if (model_init(&m, &c, err)) die(err);
    fill_random(&m.params);
    Lora lo;
    if (lora_init(&lo, &c, R, 2.0f * R, TARGETS)) die("out of memory (adapter)");
    lora_reset(&lo, 3);
    model_attach_lora(&m, &lo);
    printf("params %zu\n", m.params.total);
    printf("make_model_s %.2f\n", now_seconds() - t0);
    t0 = now_seconds();
    CudaModel *g = cuda_model_new(&m, err);
    if (!g) die(err);
    printf("upload_s %.2f\n", now_seconds() - t0);
    fflush(stdout);
    bench_train(g, &c, R, B, T, steps);
    if (cuda_lora_set(g, NULL, err)) die(err);   // decode the base model; frees the training activations
    for (const char *p = batches; *p;) {
        const int b = atoi(p);
        char key[32];
        snprintf(key, sizeof key, "b%d", b);
        if (b > 0) bench_decode(g, &c, key, b, P, G);
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
    }
    if (sample_b) bench_decode(g, &c, "sample", sample_b, sample_p, G);   // a task's self-edits: one prompt's length, sampled as one batch
    cuda_model_free(g);
    if (many) bench_many(&m, &lo, many, many_steps, many_seq);
    model_attach_lora(&m, NULL);
    lora_free(&lo);
    model_free(&m);
    return 0;
}
