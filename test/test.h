// test/test.h: the suites and the helpers they share.
#pragma once
#include <check.h>
#include "model.h"

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

// A tiny random config: GQA ratio `group`, llama3 RoPE when llama3 is set.
Config tiny_config(int tied, int group, int llama3);
// Makes a fresh empty directory under /tmp and returns its path (static buffer per call site is the caller's).
void temp_dir(char *out, size_t n, const char *tag);
