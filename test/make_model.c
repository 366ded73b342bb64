// test/make_model.c: a model of a given shape with random weights, saved as a
// Hugging Face folder (config.json, model.safetensors), so that a whole SEAL
// run can be timed at a real model's size without its weights (make
// gpu-check runs one few-shot round on Llama-3.2-1B's shape this way).
//
//   build/make_model --config data/llama3/config.json --out DIR [--tokenizer FILE]
//
// The weights are bench/bench_models.h's fill: uniform, std 0.02, norms 1.
// A random model writes random text; what it measures is time and memory.
#include "bench/bench_models.h"
#include "model.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *tok = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config")) config = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--tokenizer")) tok = argv[i + 1];
        else config = out = NULL, i = argc;
    }
    if (!config || !out) {
        fprintf(stderr, "usage: make_model --config CONFIG.json --out DIR [--tokenizer tokenizer.json]\n");
        return 2;
    }
    (void)config_25m, (void)config_1b;
    char err[ERR_MAX], path[4096];
    Config c;
    Model m;
    if (config_load(&c, config, err) || model_init(&m, &c, err)) goto fail;
    fill_random(&m.params);
    if (model_save(&m, out, err)) goto fail;
    if (tok) {   // the tokenizer beside the weights, where seal looks for it
        size_t n;
        char *text = read_file(tok, &n, err);
        if (!text || path_join(path, sizeof path, out, "tokenizer.json", err) || write_file_atomic(path, text, n, err)) { free(text); goto fail; }
        free(text);
    }
    printf("make_model: %s: %.2fB parameters (dim %d, %d layers, vocab %d), random\n", out, m.params.total / 1e9, c.dim, c.n_layers, c.vocab);
    model_free(&m);
    return 0;
fail:
    fprintf(stderr, "make_model: %s\n", err);
    return 1;
}
