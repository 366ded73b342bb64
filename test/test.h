// test/test.h: the suites and the helpers they share.
#pragma once
#include <check.h>
#include "model.h"
#include "tokenizer.h"

Suite *model_suite(void);
Suite *io_suite(void);
Suite *tokenizer_suite(void);
Suite *arc_suite(void);
Suite *restem_suite(void);
Suite *squad_suite(void);
Suite *demo_suite(void);
Suite *kernels_math_suite(void);
Suite *gguf_suite(void);
Suite *limits_suite(void);
Suite *plot_suite(void);
Suite *demo_knowledge_suite(void);
Suite *constrain_suite(void);

// Adds to s a test case called name with the tests listed, each run once;
// timeout in seconds, 0 keeps Check's default (4 s). Returns the case, for
// loop tests: add_case(s, "math", 120, test_a, test_b).
#define add_case(s, name, timeout, ...) add_case_tests(s, name, timeout, (const TTest *[]){__VA_ARGS__, NULL})
TCase *add_case_tests(Suite *s, const char *name, int timeout, const TTest **tests);

// A tiny random config: GQA ratio `group`, llama3 RoPE when llama3 is set.
Config tiny_config(int tied, int group, int llama3);
// The real data (data/fetch.sh): $SEAL_SHARED_DATA, else data/, else the
// mirror ../shared/data, the first that holds rel; NULL, after printing a SKIP
// line naming what the test needs, when none does.
const char *data_dir(const char *rel);
// Makes a fresh empty directory under /tmp and returns its path (static buffer per call site is the caller's).
void temp_dir(char *out, size_t n, const char *tag);
// A byte-level tokenizer with no merges and Llama 3's five chat specials.
Tokenizer *byte_tokenizer(void);
// Encodes text (specials allowed when allow_special is set), decodes the ids
// and checks that the same bytes come back.
void expect_roundtrip(const Tokenizer *t, const char *text, size_t len, int allow_special);
