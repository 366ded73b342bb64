// test/test_io.c: every bad input file ends in one clear error naming the
// file and the tensor or key, never a crash or a partly loaded model.
#include "test.h"
#include "safetensors.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Writes a safetensors file from a raw header and `data_len` bytes of data.
static void write_raw(const char *path, const char *header, size_t data_len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fputs(header, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

static void expect_st_error(const char *header, size_t data_len, const char *needle) {
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    write_raw(path, header, data_len);
    StFile f;
    ck_assert_int_eq(st_open(&f, path, err), -1);
    ck_assert_msg(strstr(err, needle) && strstr(err, "x.safetensors"), "error \"%s\" should mention \"%s\" and the file", err, needle);
}

START_TEST(st_bad_headers) {
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_st_error("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "expected 12");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048577],\"data_offsets\":[0,8]}}", 8, "2^40");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8, "data_offsets");
    expect_st_error("[1, 2]", 0, "not a JSON object");
    expect_st_error("{\"a\": 1", 0, "not a JSON object");
}
END_TEST

START_TEST(st_header_longer_than_file) {
    char dir[256], path[300], err[ERR_MAX] = "";
    temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t n = 10ULL << 30;   // a 10 GB header in a 12-byte file
    fwrite(&n, 8, 1, f);
    fputs("{}  ", f);
    fclose(f);
    StFile st;
    ck_assert_int_eq(st_open(&st, path, err), -1);
    ck_assert_msg(strstr(err, "header length"), "%s", err);
    f = fopen(path, "wb");
    fputs("abc", f);   // shorter than the length field itself
    fclose(f);
    ck_assert_int_eq(st_open(&st, path, err), -1);
    ck_assert_msg(strstr(err, "too short"), "%s", err);
}
END_TEST

START_TEST(fp_conversions) {
    ck_assert_float_eq(bf16_to_f32(0x3f80), 1.0f);
    ck_assert_float_eq(bf16_to_f32(0xc040), -3.0f);
    ck_assert_float_eq(f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(f16_to_f32(0xc500), -5.0f);
    ck_assert_float_eq(f16_to_f32(0x0001), 5.9604644775390625e-08f);   // smallest subnormal
    ck_assert_float_eq(f16_to_f32(0x7bff), 65504.0f);
    ck_assert(isinf(f16_to_f32(0x7c00)));
    ck_assert_int_eq(f32_to_bf16(1.0f), 0x3f80);
    ck_assert_int_eq(f32_to_bf16(1.00390625f), 0x3f80);   // tie rounds to even
    ck_assert_int_eq(f32_to_bf16(1.01171875f), 0x3f82);
}
END_TEST

// A tiny model saved to a fresh folder; returns the config.
static Config saved_model(char *dir, size_t n, Model *m) {
    char err[ERR_MAX];
    temp_dir(dir, n, "model");
    Config c = tiny_config(0, 2, 1);
    ck_assert_int_eq(model_init(m, &c, err), 0);
    model_random(m, 3, 0.1f);
    ck_assert_msg(model_save(m, dir, err) == 0, "%s", err);
    return c;
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2) {
    Model m;
    char err[ERR_MAX] = "";
    ck_assert_int_eq(model_load(&m, dir, err), -1);
    ck_assert_msg(strstr(err, needle1) && strstr(err, needle2), "error \"%s\" should mention \"%s\" and \"%s\"", err, needle1, needle2);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[400], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_int_eq(write_file_atomic(path, text, strlen(text), err), 0);
}

// Rewrites the saved model's config.json with one key's value replaced.
static void edit_config(const char *dir, const char *key, const char *value) {
    char path[400], err[ERR_MAX], *json, out[8192];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_ptr_nonnull(json = read_file(path, NULL, err));
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *at = strstr(json, pat);
    ck_assert_ptr_nonnull(at);
    char *end = strpbrk(at + strlen(pat), ",}");
    if (*end == '}') {   // an object value (rope_scaling): skip to its close
        for (char *p = at + strlen(pat); *p; p++)
            if (*p == '}') { end = p + 1; break; }
    }
    snprintf(out, sizeof out, "%.*s%s%s%s", (int)(at - json), json, value ? pat : "", value ? value : "", value ? end : end + (*end == ','));
    free(json);
    write_text(dir, "config.json", out);
}

START_TEST(config_errors) {
    const char *keys[] = {"hidden_size", "num_attention_heads", "rms_norm_eps", "num_hidden_layers", "hidden_size", "num_key_value_heads", "rope_scaling", "tie_word_embeddings"};
    const char *values[] = {"\"big\"", "3.5", "\"x\"", NULL, "-4", "3", "{\"rope_type\": \"yarn\", \"factor\": 2}", "1"};
    const char *needles[] = {"\"hidden_size\" must be a number", "num_attention_heads", "rms_norm_eps", "missing required key \"num_hidden_layers\"",
                             "hidden_size", "multiple of num_key_value_heads", "yarn", "tie_word_embeddings"};
    char dir[256];
    Model m;
    saved_model(dir, sizeof dir, &m);
    model_free(&m);
    edit_config(dir, keys[_i], values[_i]);
    expect_load_error(dir, "config.json", needles[_i]);
}
END_TEST

// model_type and the keys that would change the math: Qwen2 loads, what is not
// computed here is refused by name.
START_TEST(config_arch) {
    const char *base = "{\"hidden_size\": 24, \"intermediate_size\": 40, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"vocab_size\": 37";
    const char *tails[] = {"}", ", \"model_type\": \"qwen2\", \"use_sliding_window\": false, \"hidden_act\": \"silu\"}",
                           ", \"model_type\": \"qwen2\", \"use_sliding_window\": true}", ", \"model_type\": \"mistral\"}",
                           ", \"hidden_act\": \"gelu\"}", ", \"attention_bias\": true}", ", \"model_type\": \"llama\", \"mlp_bias\": true}",
                           ", \"model_type\": \"qwen2\", \"use_sliding_window\": 1}", ", \"model_type\": 2}"};
    const char *needles[] = {NULL, NULL, "\"use_sliding_window\": true is not supported", "model_type \"mistral\" is not supported",
                             "\"hidden_act\" must be \"silu\"", "\"attention_bias\": true is not supported",
                             "\"mlp_bias\": true is not supported", "\"use_sliding_window\" must be true or false", "\"model_type\" must be a string"};
    char json[512], err[ERR_MAX] = "";
    snprintf(json, sizeof json, "%s%s", base, tails[_i]);
    Config c;
    int rc = config_parse(&c, json, "q/config.json", err);
    if (!needles[_i]) {
        ck_assert_msg(rc == 0, "%s", err);
        ck_assert_int_eq(c.arch, _i == 1 ? ARCH_QWEN2 : ARCH_LLAMA);
        ck_assert_int_eq(c.max_pos, _i == 1 ? 32768 : 2048);   // Qwen2Config's default
        return;
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "q/config.json") && strstr(err, needles[_i]), "error \"%s\" should mention \"%s\"", err, needles[_i]);
}
END_TEST

START_TEST(weights_disagree_with_config) {
    char dir[256];
    Model m;
    saved_model(dir, sizeof dir, &m);
    model_free(&m);
    edit_config(dir, "intermediate_size", "48");
    expect_load_error(dir, "model.layers.0.mlp.gate_proj.weight", "expected [48, 24]");
    edit_config(dir, "intermediate_size", "40");
    edit_config(dir, "model_type", "\"qwen2\"");   // a Llama file read as Qwen2: its biases are missing
    expect_load_error(dir, "model.layers.0.self_attn.q_proj.bias", "missing (expected shape [32])");
}
END_TEST

START_TEST(missing_tensor_and_truncation) {
    char dir[256], path[400], err[ERR_MAX];
    Model m;
    saved_model(dir, sizeof dir, &m);
    model_free(&m);
    edit_config(dir, "tie_word_embeddings", "true");   // tied file has no lm_head: fine
    ck_assert_msg(model_load(&m, dir, err) == 0, "%s", err);
    model_free(&m);
    edit_config(dir, "num_hidden_layers", "3");          // layer 2 is not in the file
    expect_load_error(dir, "model.layers.2.input_layernorm.weight", "missing");
    edit_config(dir, "num_hidden_layers", "2");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t len;
    char *bytes = read_file(path, &len, err);
    ck_assert_int_eq(write_file_atomic(path, bytes, len / 2, err), 0);   // cut the data in half
    free(bytes);
    expect_load_error(dir, "model.safetensors", "outside");
    unlink(path);
    expect_load_error(dir, dir, "no model.safetensors");
}
END_TEST

// F16 bits of v = k/64 with |k| < 256 (exact in F16), built by hand.
static uint16_t f16_bits(float v) {
    float a = fabsf(v);
    int e = 0;
    if (a == 0) return (uint16_t)((v < 0) << 15);
    while (a >= 2) { a /= 2; e++; }
    while (a < 1) { a *= 2; e--; }
    return (uint16_t)((v < 0) << 15 | (e + 15) << 10 | (int)((a - 1) * 1024));
}

// Writes tensors s, s+2, s+4, ... of the table as one BF16 (s = 0) or F16 shard.
static void write_half_shard(const char *path, const Table *t, int s) {
    char header[16384];
    int hl = snprintf(header, sizeof header, "{");
    size_t off = 0;
    for (int i = s; i < t->n; i += 2) {
        const Tensor *x = &t->t[i];
        hl += snprintf(header + hl, sizeof header - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                       i > 1 ? "," : "", x->name, s ? "F16" : "BF16", x->rows, x->cols, off, off + x->size * 2);
        off += x->size * 2;
    }
    snprintf(header + hl, sizeof header - hl, "}");
    FILE *f = fopen(path, "wb");
    uint64_t hn = strlen(header);
    fwrite(&hn, 8, 1, f);
    fputs(header, f);
    for (int i = s; i < t->n; i += 2)
        for (size_t j = 0; j < t->t[i].size; j++) {
            uint16_t h = s ? f16_bits(t->t[i].data[j]) : f32_to_bf16(t->t[i].data[j]);
            fwrite(&h, 2, 1, f);
        }
    fclose(f);
}

START_TEST(sharded_and_half_precision) {
    // A model split over a BF16 shard and an F16 shard with an index file.
    char dir[256], err[ERR_MAX], path[400];
    temp_dir(dir, sizeof dir, "shards");
    Config c = tiny_config(1, 1, 0);
    c.n_layers = 1;
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    Rng r;
    rng_seed(&r, 9);
    for (size_t j = 0; j < m.params.total; j++) m.params.mem[j] = (float)(int)(rng_normal(&r) * 64) / 64;
    char *index = malloc(65536);
    int ilen = snprintf(index, 65536, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < m.params.n; i++)
        ilen += snprintf(index + ilen, 65536 - ilen, "%s\"%s\": \"part-%d.safetensors\"", i ? ", " : "", m.params.t[i].name, i % 2);
    snprintf(index + ilen, 65536 - ilen, "}}");
    write_text(dir, "model.safetensors.index.json", index);
    free(index);
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/part-%d.safetensors", dir, s);
        write_half_shard(path, &m.params, s);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_int_eq(config_save(&c, path, err), 0);
    Model m2;
    ck_assert_msg(model_load(&m2, dir, err) == 0, "%s", err);
    for (size_t j = 0; j < m.params.total; j++) ck_assert_float_eq(m2.params.mem[j], m.params.mem[j]);
    model_free(&m2);
    snprintf(path, sizeof path, "%s/part-1.safetensors", dir);
    unlink(path);
    expect_load_error(dir, "part-1.safetensors", "cannot open");
    model_free(&m);
}
END_TEST

START_TEST(llama3_config) {
    const char *d = data_dir("llama3/config.json");
    if (!d) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/llama3/config.json", d);
    Config c;
    char err[ERR_MAX];
    ck_assert_msg(config_load(&c, path, err) == 0, "%s", err);
    struct { const char *name; int got, want; } fields[] = {
        {"dim", c.dim, 2048}, {"n_layers", c.n_layers, 16}, {"n_heads", c.n_heads, 32},
        {"n_kv_heads", c.n_kv_heads, 8}, {"head_dim", c.head_dim, 64}, {"hidden", c.hidden, 8192},
        {"vocab", c.vocab, 128256}, {"tied", c.tied, 1}, {"rope_llama3", c.rope_llama3, 1},
        {"rope_orig_max_pos", c.rope_orig_max_pos, 8192}, {"n_eos", c.n_eos, 3}, {"eos[2]", c.eos[2], 128009},
        {"bos", c.bos, 128000},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        ck_assert_msg(fields[i].got == fields[i].want, "%s: %d, want %d", fields[i].name, fields[i].got, fields[i].want);
    ck_assert_float_eq(c.rope_factor, 32.0f);
}
END_TEST

START_TEST(adapter_config_errors) {
    Model m;
    Lora l;
    char dir[256], adir[300], err[ERR_MAX];
    saved_model(dir, sizeof dir, &m);
    ck_assert_int_eq(lora_init(&l, &m.c, 2, 4.0f, (1u << PROJ_Q) | (1u << PROJ_V)), 0);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    ck_assert_int_eq(lora_save(&l, adir, "x", err), 0);
    lora_free(&l);
    const char *bad[] = {"{\"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\", \"w_proj\"]}",
                         "{\"r\": 0, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"use_rslora\": true, \"target_modules\": [\"q_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\", \"k_proj\"]}",
                         // PEFT settings that change what the adapter computes, which seal does not implement
                         "{\"r\": 2, \"lora_alpha\": 4, \"use_dora\": true, \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"rank_pattern\": {\"q_proj\": 8}, \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"alpha_pattern\": {\"v_proj\": 1}, \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"layers_to_transform\": [0], \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"modules_to_save\": [\"lm_head\"], \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"fan_in_fan_out\": true, \"target_modules\": [\"q_proj\", \"v_proj\"]}",
                         "{\"r\": 2, \"lora_alpha\": 4, \"some_future_option\": 3, \"target_modules\": [\"q_proj\", \"v_proj\"]}"};
    const char *needle[] = {"w_proj", "\"r\"", "use_rslora", "k_proj.lora_A.weight is missing", "use_dora", "rank_pattern",
                            "alpha_pattern", "layers_to_transform", "modules_to_save", "fan_in_fan_out", "some_future_option"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(adir, "adapter_config.json", bad[i]);
        ck_assert_int_eq(lora_load(&l, &m.c, adir, err), -1);
        ck_assert_msg(strstr(err, needle[i]), "case %zu: \"%s\" should mention %s", i, err, needle[i]);
    }
    // settings at their defaults, or ones that do not change the adapter's output, load
    write_text(adir, "adapter_config.json", "{\"r\": 2, \"lora_alpha\": 4, \"use_dora\": false, \"rank_pattern\": {}, \"layers_to_transform\": null, "
                                           "\"lora_dropout\": 0.1, \"init_lora_weights\": \"gaussian\", \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    ck_assert_msg(lora_load(&l, &m.c, adir, err) == 0, "%s", err);
    lora_free(&l);
    // a tensor the adapter does not have (DoRA's magnitude vector) is refused, by name
    Lora dora;
    ck_assert_int_eq(lora_init(&dora, &m.c, 2, 4.0f, (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_K)), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adir);
    ck_assert_int_eq(table_save(&dora.params, path, "", err), 0);
    ck_assert_int_eq(lora_load(&l, &m.c, adir, err), -1);
    ck_assert_msg(strstr(err, "k_proj") && strstr(err, "not part of a LoRA adapter"), "%s", err);
    lora_free(&dora);
    model_free(&m);
}
END_TEST

START_TEST(utf8_sanitize_replaces_invalid) {
    // "\xf7\xab\x9b" came from a demo policy's self-edit: F5..FF lead no sequence
    const char *in[] = {"plain", "caf\xc3\xa9", "a\xc3", "\xed\xa0\x80x", "\xff\xfe", "\xf0\x9f\x98\x80!", "\xf7\xab\x9b"};
    const char *want[] = {"plain", "caf\xc3\xa9", "a\xef\xbf\xbd", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx",
                          "\xef\xbf\xbd\xef\xbf\xbd", "\xf0\x9f\x98\x80!", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"};
    for (int i = 0; i < 7; i++) {
        char *out = utf8_sanitize(in[i]);
        ck_assert_str_eq(out, want[i]);
        free(out);
    }
}
END_TEST

Suite *io_suite(void) {
    Suite *s = suite_create("io");
    TCase *t = add_case(s, "bad input", 0, st_bad_headers, st_header_longer_than_file, fp_conversions,
                        weights_disagree_with_config, missing_tensor_and_truncation, sharded_and_half_precision,
                        llama3_config, adapter_config_errors, utf8_sanitize_replaces_invalid);
    tcase_add_loop_test(t, config_errors, 0, 8);
    tcase_add_loop_test(t, config_arch, 0, 9);
    return s;
}
