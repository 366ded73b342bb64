// test/test_limits.c: inputs far past any real size (a 10 GB safetensors
// header, a 2^40-element tensor, JSON nested a million deep, a prompt of 10^9
// tokens) are refused with a message that says so, before any large
// allocation: each test runs with allocations over 256 MiB failing, so a
// refusal that came after one would read "out of memory" instead.
#include "test.h"
#include "arc.h"
#include "fewshot.h"
#include "generate.h"
#include "gguf.h"
#include "run.h"
#include "safetensors.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

// Check runs each test in a process of its own (CK_FORK), so the limit holds
// for that test alone. AddressSanitizer maps its shadow memory as data, so
// the sanitizer build goes without.
static void limit_memory(void) {
#ifndef __SANITIZE_ADDRESS__
    const char *fork = getenv("CK_FORK");
    if (fork && !strcmp(fork, "no")) return;
    struct rlimit r = {256u << 20, 256u << 20};
    ck_assert_int_eq(setrlimit(RLIMIT_DATA, &r), 0);
    void *p = malloc(512u << 20);
    ck_assert_msg(p == NULL, "RLIMIT_DATA does not hold here");
#endif
}

// limit_memory, and whether it holds: the out-of-memory tests below need it
// (without it their allocations would simply succeed).
static int memory_limited(void) {
    limit_memory();
#ifdef __SANITIZE_ADDRESS__
    return 0;
#else
    const char *fork = getenv("CK_FORK");
    return !(fork && !strcmp(fork, "no"));
#endif
}

static void expect(int failed, const char *err, const char *needle) {
    ck_assert_msg(failed, "accepted; expected an error about \"%s\"", needle);
    ck_assert_msg(strstr(err, needle), "error \"%s\" should say \"%s\"", err, needle);
}

// 8-byte little-endian length, the header, then `data` zero bytes.
static void write_st(const char *path, uint64_t hlen, const char *header, size_t data) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8; i++) fputc((int)(hlen >> (8 * i) & 0xff), f);
    fputs(header, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

START_TEST(safetensors_10gb_header) {
    limit_memory();
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "limits");
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    const uint64_t ten_gb = 10000000000ULL;
    write_st(path, ten_gb, "{}", 0);
    // A sparse file really 10 GB long: the length fits the file, not the format.
    int fd = open(path, O_WRONLY);
    int sparse = fd >= 0 && ftruncate(fd, (off_t)(ten_gb + 8)) == 0;
    if (fd >= 0) close(fd);
    StFile f;
    int rc = st_open(&f, path, err);
    expect(rc != 0, err, "header length 10000000000");
    if (sparse) expect(rc != 0, err, "limit of 104857600 bytes");
    unlink(path);
}
END_TEST

START_TEST(tensor_of_2_40_elements) {
    limit_memory();
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "limits");
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    StFile f;
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4398046511104]}}";
    write_st(path, strlen(h), h, 16);
    expect(st_open(&f, path, err) != 0, err, "outside the 16-byte data region");
    // 2^32 x 2^32 wraps to 0 in 64 bits: refused, not read as an empty tensor
    h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}";
    write_st(path, strlen(h), h, 0);
    expect(st_open(&f, path, err) != 0, err, "more than 2^40 elements");
    // A config.json whose embedding alone is 2^40 floats, beside a tiny checkpoint.
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"hidden_size\": 1048576, \"intermediate_size\": 1, \"num_hidden_layers\": 1, "
                      "\"num_attention_heads\": 16, \"vocab_size\": 1048576}";
    ck_assert_int_eq(write_file_atomic(path, cfg, strlen(cfg), err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, 2, "{}", 0);
    Model m;
    expect(model_load(&m, dir, err) != 0, err, "model.safetensors holds");
}
END_TEST

// "[[[[...]]]]" or {"a":{"a":...}}, depth levels deep (malloc'd).
static char *nest(int depth, int object) {
    const char *open = object ? "{\"a\":" : "[", *close = object ? "}" : "]";
    size_t no = strlen(open);
    char *s = malloc(depth * (no + 1) + 1), *p = s;
    for (int i = 0; i < depth; i++, p += no) memcpy(p, open, no);
    for (int i = 0; i < depth; i++) *p++ = *close;
    *p = 0;
    return s;
}

START_TEST(json_nested_a_million_deep) {
    limit_memory();
    const char *deep = "nested deeper than 1000 levels";
    char err[ERR_MAX] = "", dir[256], path[400];
    for (int object = 0; object < 2; object++) {
        char *s = nest(1000000, object);
        Config c;
        expect(config_parse(&c, s, "config.json", err) != 0, err, deep);
        expect(tok_load_json(s, "tokenizer.json", err) == NULL, err, deep);
        Task t;
        expect(arc_parse_task(s, "task.json", &t, err) != 0, err, deep);
        SelfEdit se;
        expect(selfedit_parse(s, &se, err) != 0, err, deep);
        size_t n;
        expect(json_string_member(s, "text", &n, err) == NULL, err, deep);
        temp_dir(dir, sizeof dir, "limits");
        snprintf(path, sizeof path, "%s/x.safetensors", dir);
        write_st(path, strlen(s), s, 0);
        StFile f;
        expect(st_open(&f, path, err) != 0, err, deep);
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        ck_assert_int_eq(write_file_atomic(path, s, strlen(s), err), 0);
        Config tiny = tiny_config(1, 1, 0);
        Lora l;
        expect(lora_load(&l, &tiny, dir, err) != 0, err, deep);
        // a run directory: a deep edits.jsonl line, then a deep run.json
        Run r;
        cJSON *config = cJSON_CreateObject();
        snprintf(path, sizeof path, "%s/run", dir);
        ck_assert_msg(run_open(&r, path, config, NULL, 0, err) == 0, "%s", err);
        run_close(&r);
        snprintf(path, sizeof path, "%s/run/edits.jsonl", dir);
        char *line = malloc(strlen(s) + 2);
        snprintf(line, strlen(s) + 2, "%s\n", s);
        ck_assert_int_eq(write_file_atomic(path, line, strlen(line), err), 0);
        free(line);
        snprintf(path, sizeof path, "%s/run", dir);
        expect(run_open(&r, path, config, NULL, 1, err) != 0, err, deep);
        run_close(&r);
        snprintf(path, sizeof path, "%s/run/run.json", dir);
        ck_assert_int_eq(write_file_atomic(path, s, strlen(s), err), 0);
        snprintf(path, sizeof path, "%s/run", dir);
        expect(run_open(&r, path, config, NULL, 1, err) != 0, err, deep);
        run_close(&r);
        cJSON_Delete(config);
        free(s);
    }
}
END_TEST

START_TEST(prompt_of_a_billion_tokens) {
    limit_memory();
    char err[ERR_MAX] = "";
    Config c = tiny_config(1, 2, 0);
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    int ids[4] = {1, 2, 3, 4}, len = 1000000000, *out[1] = {NULL}, out_len = 0;
    const int *prompts[1] = {ids};
    SampleOpts o = {.max_new = 16, .temperature = 0.0f, .top_p = 1.0f};
    expect(generate(&m, prompts, &len, 1, &o, NULL, 0, NULL, NULL, out, &out_len, err) != 0, err, "context");
    ck_assert_ptr_null(out[0]);
    KVCache kv;
    expect(kv_init(&kv, &m, 1, len, err) != 0, err, "too large");
    Acts a;
    expect(acts_init(&a, &m, 1, len, err) != 0, err, "too large");
    model_free(&m);
}
END_TEST

// ---------------------------------------------------------------- out of memory (util.h)

START_TEST(size_mul_saturates) {
    ck_assert_uint_eq(size_mul(3, 5), 15);
    ck_assert_uint_eq(size_mul(0, SIZE_MAX), 0);
    ck_assert_uint_eq(size_mul(SIZE_MAX, 0), 0);
    ck_assert_uint_eq(size_mul(SIZE_MAX, 1), SIZE_MAX);
    ck_assert_uint_eq(size_mul(SIZE_MAX / 2, 2), SIZE_MAX - 1);   // the largest even product, exact
    ck_assert_uint_eq(size_mul(SIZE_MAX / 2 + 1, 2), SIZE_MAX);   // one more wraps: saturated
    ck_assert_uint_eq(size_mul((size_t)1 << 31, (size_t)1 << 32), (size_t)1 << 63);
    ck_assert_uint_eq(size_mul((size_t)1 << 32, (size_t)1 << 32), SIZE_MAX);
    ck_assert_uint_eq(size_mul(SIZE_MAX / 3, 3), SIZE_MAX / 3 * 3);
    ck_assert_uint_eq(size_mul(SIZE_MAX / 3 + 1, 3), SIZE_MAX);
}
END_TEST

// Bookkeeping that cannot be had ends the process with status 1 (exit tests).
START_TEST(xcalloc_overflow_exits) {
    void *p = xcalloc(SIZE_MAX / 2 + 1, 2);   // 2^64 bytes: no calloc is even tried
    ck_abort_msg("xcalloc returned %p for an overflowing product", p);
}
END_TEST

START_TEST(xrealloc_overflow_exits) {
    void *p = xrealloc(xmalloc(16), (size_t)1 << 33, (size_t)1 << 31);
    ck_abort_msg("xrealloc returned %p for an overflowing product", p);
}
END_TEST

START_TEST(xmalloc_refused_exits) {
    if (!memory_limited()) exit(1);   // nothing would refuse it: counts as the exit it tests
    void *p = xmalloc((size_t)1 << 30);
    ck_abort_msg("xmalloc(1 GiB) returned %p under a 256 MiB limit", p);
}
END_TEST

// Input-sized buffers that cannot be had are errors naming what they were for.
START_TEST(read_file_of_a_gigabyte) {
    if (!memory_limited()) return;
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "limits");
    snprintf(path, sizeof path, "%s/big.txt", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)1 << 30), 0);   // sparse: 1 GiB of zeros on no disk
    close(fd);
    size_t n;
    expect(read_file(path, &n, err) == NULL, err, "big.txt: out of memory (");
    unlink(path);
    rmdir(dir);
}
END_TEST

// A GGUF header that claims 2^23 tensors in a (sparse) file big enough for
// their infos: the table, 80 bytes each, is refused, not dereferenced.
START_TEST(gguf_tensor_table_too_big) {
    if (!memory_limited()) return;
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "limits");
    snprintf(path, sizeof path, "%s/big.gguf", dir);
    const uint64_t n_t = (uint64_t)1 << 23;
    uint8_t h[24] = {'G', 'G', 'U', 'F', 3};
    for (int i = 0; i < 8; i++) h[8 + i] = (uint8_t)(n_t >> (8 * i));   // tensors; then 0 metadata keys
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, h, sizeof h), (ssize_t)sizeof h);
    ck_assert_int_eq(ftruncate(fd, (off_t)(sizeof h + 32 * n_t)), 0);
    close(fd);
    GgufFile f;
    expect(gguf_open(&f, path, err) != 0, err, "big.gguf: out of memory (");
    expect(1, err, "8388608 tensors");
    unlink(path);
    rmdir(dir);
}
END_TEST

// Activations for 8192 tokens: 4 heads x 8192^2 attention scores are 1 GiB.
START_TEST(activations_too_big) {
    if (!memory_limited()) return;
    char err[ERR_MAX] = "";
    Config c = tiny_config(1, 1, 0);
    c.max_pos = 8192;
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    Acts a;
    expect(acts_init(&a, &m, 1, 8192, err) != 0, err, "out of memory allocating activations for batch 1 x 8192 (");
    model_free(&m);
}
END_TEST

// The model's context (max_position_embeddings) bounds generation: a prompt
// that fills it is refused; a continuation stops where it is full (as vLLM
// stops at max_model_len), each sequence of a batch at its own length.
START_TEST(generation_stops_at_the_context) {
    char err[ERR_MAX] = "";
    Config c = tiny_config(1, 1, 0);   // a context of 64 tokens
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    model_random(&m, 3, 0.2f);
    int ids[64], *out[2] = {NULL, NULL}, out_len[2] = {0, 0}, room[2];
    for (int i = 0; i < 64; i++) ids[i] = 3 + i % 30;
    const int *prompts[2] = {ids, ids}, lens[2] = {60, 50}, full = 64;
    SampleOpts o = {.max_new = 16, .temperature = 0.0f, .top_p = 1.0f};
    ck_assert_int_eq(generate_room(&m.c, lens, 2, 16, room, err), 64);
    ck_assert_int_eq(room[0], 4);
    ck_assert_int_eq(room[1], 14);
    ck_assert_msg(generate(&m, prompts, lens, 2, &o, NULL, 0, NULL, NULL, out, out_len, err) == 0, "%s", err);
    ck_assert_int_eq(out_len[0], 4);
    ck_assert_int_eq(out_len[1], 14);
    free(out[0]);
    free(out[1]);
    o.max_new = 3;   // room enough: max_new as asked
    ck_assert_msg(generate(&m, prompts, lens, 1, &o, NULL, 0, NULL, NULL, out, out_len, err) == 0, "%s", err);
    ck_assert_int_eq(out_len[0], 3);
    free(out[0]);
    out[0] = NULL;
    expect(generate(&m, prompts, &full, 1, &o, NULL, 0, NULL, NULL, out, out_len, err) != 0, err, "context of 64 tokens");
    ck_assert_ptr_null(out[0]);
    model_free(&m);
}
END_TEST

// Before any work: the oracle is a valid self-edit, and every task has the
// test output its reward compares answers with.
START_TEST(fewshot_checks_oracle_and_outputs) {
    char err[ERR_MAX] = "";
    Task t[2];
    ck_assert_msg(arc_parse_task("{\"train\": [{\"input\": [[1]], \"output\": [[2]]}], \"test\": [{\"input\": [[3]], \"output\": [[4]]}]}",
                                 "dir/full.json", &t[0], err) == 0, "%s", err);
    ck_assert_msg(arc_parse_task("{\"train\": [{\"input\": [[1]], \"output\": [[2]]}], \"test\": [{\"input\": [[3]]}]}", "dir/open.json",
                                 &t[1], err) == 0, "%s", err);
    FewShot fs;
    fewshot_defaults(&fs);
    fs.train = fs.eval = &t[0];
    fs.n_train = fs.n_eval = 1;
    ck_assert_msg(fewshot_check(&fs, err) == 0, "%s", err);
    fs.oracle = "{\"data_generation\": {}}";
    expect(fewshot_check(&fs, err) != 0, err, "--oracle: not a valid self-edit");
    fs.oracle = "not json";
    expect(fewshot_check(&fs, err) != 0, err, "--oracle");
    fewshot_defaults(&fs);
    fs.train = &t[0];
    fs.eval = &t[1];
    fs.n_train = fs.n_eval = 1;
    expect(fewshot_check(&fs, err) != 0, err, "held-out task open (open.json)");
    fs.train = &t[1];
    expect(fewshot_check(&fs, err) != 0, err, "training task open");
    arc_free_task(&t[0]);
    arc_free_task(&t[1]);
}
END_TEST

Suite *limits_suite(void) {
    Suite *s = suite_create("limits");
    add_case(s, "huge inputs", 60, safetensors_10gb_header, tensor_of_2_40_elements, json_nested_a_million_deep,
             prompt_of_a_billion_tokens);
    TCase *o = add_case(s, "out of memory", 60, size_mul_saturates, read_file_of_a_gigabyte, gguf_tensor_table_too_big, activations_too_big);
    const char *fork = getenv("CK_FORK");
    if (!(fork && !strcmp(fork, "no"))) {   // exiting is the pass; without fork it would end the run
        tcase_add_exit_test(o, xcalloc_overflow_exits, 1);
        tcase_add_exit_test(o, xrealloc_overflow_exits, 1);
        tcase_add_exit_test(o, xmalloc_refused_exits, 1);
    }
    add_case(s, "bounds", 60, generation_stops_at_the_context, fewshot_checks_oracle_and_outputs);
    return s;
}
