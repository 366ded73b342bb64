// test/test_main.c: runs every Check suite. Tests run from the project root.
#include "test.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TCase *add_case_tests(Suite *s, const char *name, int timeout, const TTest **tests) {
    TCase *tc = tcase_create(name);
    if (timeout) tcase_set_timeout(tc, timeout);
    for (; *tests; tests++) tcase_add_test(tc, *tests);
    suite_add_tcase(s, tc);
    return tc;
}

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

Tokenizer *byte_tokenizer(void) {
    const char *specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    char *json = tok_bytelevel_json(NULL, 0, specials, 5), err[ERR_MAX];
    Tokenizer *t = tok_load_json(json, "bytes.json", err);
    ck_assert_msg(t != NULL, "%s", err);
    free(json);
    return t;
}

void expect_roundtrip(const Tokenizer *t, const char *text, size_t len, int allow_special) {
    char err[ERR_MAX];
    int *ids, n = tok_encode(t, text, len, allow_special, &ids, err);
    ck_assert_msg(n >= 0, "%s", err);
    size_t back_len;
    char *back = tok_decode(t, ids, n, &back_len, err);
    ck_assert_msg(back != NULL, "%s", err);
    ck_assert_msg(back_len == len && memcmp(back, text, len) == 0, "roundtrip of %zu bytes gave %zu", len, back_len);
    free(back);
    free(ids);
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
    srunner_add_suite(sr, plot_suite());
    srunner_add_suite(sr, demo_knowledge_suite());
    srunner_add_suite(sr, constrain_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

const char *data_dir(const char *rel) {
    const char *env = getenv("SEAL_SHARED_DATA"), *dirs[] = {env && *env ? env : NULL, "data", "../shared/data"};
    char path[4096];
    for (int i = 0; i < 3; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof path, "%s/%s", dirs[i], rel);
        if (access(path, R_OK) == 0) return dirs[i];
    }
    printf("SKIP: %s is in neither data/ nor ../shared/data (data/fetch.sh fetches it)\n", rel);
    return NULL;
}
