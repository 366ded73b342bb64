// test/test_main.c: runs every Check suite. Tests run from the project root.
#include "test.h"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

Config tiny_config(int tied, int group, int llama3) {
    Config c = {.dim = 24, .hidden = 40, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4 / group, .head_dim = 8,
                .vocab = 37, .norm_eps = 1e-5f, .rope_theta = 500000.0f, .tied = tied, .max_pos = 64,
                .bos = 1, .eos = {2}, .n_eos = 1};
    if (llama3) {   // with hd = 8 and these values the 4 frequencies span all three regimes
        c.rope_llama3 = 1;
        c.rope_factor = 8.0f;
        c.rope_low_freq = 1.0f;
        c.rope_high_freq = 4.0f;
        c.rope_orig_max_pos = 8192;
    }
    return c;
}

void temp_dir(char *out, size_t n, const char *tag) {
    snprintf(out, n, "/tmp/seal-test-%s-XXXXXX", tag);
    if (!mkdtemp(out)) { perror("mkdtemp"); exit(1); }
}

int main(void) {
    SRunner *sr = srunner_create(model_suite());
    srunner_add_suite(sr, io_suite());
    srunner_add_suite(sr, tokenizer_suite());
    srunner_add_suite(sr, arc_suite());
    srunner_add_suite(sr, demo_suite());
    srunner_add_suite(sr, restem_suite());
    srunner_add_suite(sr, kernels_math_suite());
    srunner_add_suite(sr, gguf_suite());
    srunner_add_suite(sr, squad_suite());
    srunner_add_suite(sr, limits_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
