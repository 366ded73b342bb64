// bench/bench_models.h: the benchmark model shapes and a fast random fill,
// shared by the bench programs (each a program of its own, so the
// functions are static).
#pragma once
#include "model.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ~25M parameters: hidden 512, 8 layers, 8 / 4 heads, MLP 1536, vocab 8192, tied.
static Config config_25m(void) {
    Config c = {.dim = 512, .hidden = 1536, .n_layers = 8, .n_heads = 8, .n_kv_heads = 4, .head_dim = 64,
                .vocab = 8192, .norm_eps = 1e-5f, .rope_theta = 10000.0f, .tied = 1, .max_pos = 2048,
                .bos = 1, .eos = {2}, .n_eos = 1};
    return c;
}

// Llama-3.2-1B's shape (shared/data/llama3/config.json).
static Config config_1b(void) {
    Config c = {.dim = 2048, .hidden = 8192, .n_layers = 16, .n_heads = 32, .n_kv_heads = 8, .head_dim = 64,
                .vocab = 128256, .norm_eps = 1e-5f, .rope_theta = 500000.0f, .rope_llama3 = 1,
                .rope_factor = 32.0f, .rope_low_freq = 1.0f, .rope_high_freq = 4.0f, .rope_orig_max_pos = 8192,
                .tied = 1, .max_pos = 131072, .bos = 128000, .eos = {128001}, .n_eos = 1};
    return c;
}

// Random weights, faster than model_random for a billion of them: uniform
// with std 0.02, norms 1 (Qwen2 biases uniform in [-0.5, 0.5]), one RNG stream
// per tensor, tensors spread over threads.
static void fill_random(Table *t) {
    const float a = 0.02f * sqrtf(3.0f);
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < t->n; i++) {
        Tensor *x = &t->t[i];
        Rng r;
        rng_seed(&r, 1000 + i);
        const int norm = strstr(x->name, "norm.weight") != NULL, bias = strstr(x->name, ".bias") != NULL;   // Qwen2's q/k/v
        for (size_t j = 0; j < x->size; j++) x->data[j] = norm ? 1.0f : (bias ? 0.5f : a) * (2.0f * rng_uniform(&r) - 1.0f);
    }
}

// n random examples of T tokens, the loss on the second half (bench_many's
// test-time training data); free with examples_free.
static inline Example *random_examples(int n, int T, int vocab, uint64_t seed) {
    Example *ex = calloc((size_t)n, sizeof *ex);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        ex[i] = (Example){.ids = malloc(T * sizeof(int)), .loss = malloc(T), .len = T};
        for (int t = 0; t < T; t++) ex[i].ids[t] = (int)(rng_next(&r) % (uint64_t)vocab), ex[i].loss[t] = t >= T / 2;
    }
    return ex;
}
