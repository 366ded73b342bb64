// test/fuzz/seeds.c: writes the fuzz seed corpora with the project's own
// writers (st_write, config_save, the demo's tokenizer trainer and tasks,
// selfedit_to_json, the run directory) plus the committed test fixtures.
//
//   build/fuzz-seeds OUT [FIXTURES]   -> OUT/<target>/seed-*
#include "arc.h"
#include "demo_tasks.h"
#include "rundir.h"
#include "safetensors.h"
#include "tokenizer.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *out_root;
static int n_written;

static void seed(const char *target, const char *name, const void *data, size_t n) {
    char dir[4096], path[4200], err[ERR_MAX];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    snprintf(path, sizeof path, "%s/seed-%s", dir, name);
    if (make_dirs(dir, err) || write_file_atomic(path, data, n, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    n_written++;
}

static void seed_str(const char *target, const char *name, const char *s) { seed(target, name, s, strlen(s)); }

// A file's bytes as a seed; absent files are skipped.
static void seed_file(const char *target, const char *name, const char *path) {
    size_t n;
    char *s = read_file(path, &n, NULL);
    if (s) seed(target, name, s, n);
    free(s);
}

static void safetensors_seeds(const char *scratch) {
    char path[4200], err[ERR_MAX];
    float a[6] = {1, -2, 0.5f, 3, 1e-3f, -0.0f}, b[4] = {1, 2, 3, 4};
    int32_t ids[3] = {1, -7, 42};
    StOut ab[] = {{.name = "a", .dtype = DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
                  {.name = "b", .dtype = DT_F32, .ndim = 1, .shape = {4}, .data = b},
                  {.name = "ids", .dtype = DT_I32, .ndim = 1, .shape = {3}, .data = ids},
                  {.name = "scalar", .dtype = DT_F32, .ndim = 0, .data = a}};
    const char *meta[] = {"format", "pt", "note", "seed"};
    struct { const char *name; int n, n_meta; } files[] = {{"table", 2, 0}, {"meta", 4, 2}, {"empty", 0, 0}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", scratch, files[i].name);
        if (st_write(path, ab, files[i].n, meta, files[i].n_meta, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
        seed_file("safetensors", files[i].name, path);
    }
    // Half precision and I64, as Hugging Face checkpoints hold them (st_write makes only F32 and I32).
    const char header[] = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                          "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[12,20]},"
                          "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]}}";
    uint8_t buf[512] = {0};
    size_t hlen = sizeof header - 1, padded = (hlen + 7) / 8 * 8;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(padded >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    for (int i = 0; i < 32; i++) buf[8 + padded + i] = (uint8_t)(i * 37 + 60);
    seed("safetensors", "half", buf, 8 + padded + 32);
}

static void config_seeds(void) {
    seed_str("config", "minimal", "{\"hidden_size\": 8, \"intermediate_size\": 16, \"num_hidden_layers\": 1, "
                                  "\"num_attention_heads\": 2, \"vocab_size\": 32}");
    seed_str("config", "llama3", "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                                 "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                                 "\"vocab_size\": 300, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, "
                                 "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
                                 "\"tie_word_embeddings\": true, \"max_position_embeddings\": 131072, "
                                 "\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]}");
}

// The demo's kind of tokenizer: byte-level BPE trained on ARC-like prompts,
// and the same with GPT-2's ByteLevel regex and merges written as pairs.
static void tokenizer_seeds(void) {
    const char *specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    char *bytes = tok_bytelevel_json(NULL, 0, specials, 5), err[ERR_MAX];
    seed_str("tokenizer", "bytes", bytes);
    free(bytes);
    Task *tasks;
    if (demo_make_tasks(1, DEMO_PRETRAIN, 6, &tasks, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    char *texts[6];
    for (int i = 0; i < 6; i++) texts[i] = arc_prompt(tasks[i].train, tasks[i].n_train, &tasks[i].test[0].in, CHAT_LLAMA3);
    char *json = tok_train_bytelevel_ex((const char *const *)texts, 6, 40, specials, 5, TOK_TRAIN_SINGLE_DIGITS);
    for (int i = 0; i < 6; i++) free(texts[i]);
    demo_free_tasks(tasks, 6);
    if (!json) { fprintf(stderr, "seeds: training a tokenizer failed\n"); exit(1); }
    seed_str("tokenizer", "demo", json);
    cJSON *root = cJSON_Parse(json);
    free(json);
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddFalseToObject(pre, "add_prefix_space");
    cJSON_AddTrueToObject(pre, "use_regex");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "pre_tokenizer", pre);
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges"), *pairs = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        char *s = strdup(m->valuestring), *sp = strchr(s, ' ');
        *sp = 0;
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(s));
        cJSON_AddItemToArray(pair, cJSON_CreateString(sp + 1));
        cJSON_AddItemToArray(pairs, pair);
        free(s);
    }
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges", pairs);
    json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    seed_str("tokenizer", "gpt2-pairs", json);
    free(json);
    json = read_file("test/qwen2_tokenizer/tokenizer.json", NULL, err);   // NFC normalizer, Qwen2's regex
    if (!json) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    seed_str("tokenizer", "qwen2", json);
    free(json);
}

static void selfedit_seeds(void) {
    SelfEdit se[] = {{.basic = 1, .size = 1, .chain = 0, .repeat = 1, .output_only = 1, .lr = 1e-4f, .epochs = 3},
                     {.lr = 1e-2f, .epochs = 1000}, {.chain = 1, .lr = 3e-6f, .epochs = 1}};
    char name[32];
    for (size_t i = 0; i < sizeof se / sizeof se[0]; i++) {
        char *json = selfedit_to_json(&se[i]);
        snprintf(name, sizeof name, "edit%zu", i);
        seed_str("selfedit", name, json);
        free(json);
    }
    Grid g = {.h = 3, .w = 2, .c = {0, 1, 2, 3, 4, 9}};
    char *answer = arc_answer(&g);
    seed_str("selfedit", "answer", answer);
    free(answer);
    seed_str("selfedit", "answer-spaces", "  [[1  2]\n [3 4]] # ");
}

static void jsonline_seeds(void) {
    seed_str("jsonline", "plain", "{\"text\": \"Hello, world!\"}");
    seed_str("jsonline", "escapes", "{\"id\": 3, \"nested\": {\"text\": [1, \"}\"]}, \"text\": \"tab\\t \\\"q\\\" \\u00e9 \\ud83d\\ude00 \\\\ \\/\"}");
    seed_str("jsonline", "nul", "{\"text\": \"a\\u0000b\"}");
}

// An ARC task as its JSON file.
static cJSON *grid_json(const Grid *g) {
    cJSON *rows = cJSON_CreateArray();
    for (int i = 0; i < g->h; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < g->w; j++) cJSON_AddItemToArray(row, cJSON_CreateNumber(g->c[i * g->w + j]));
        cJSON_AddItemToArray(rows, row);
    }
    return rows;
}

static cJSON *pairs_json(const Pair *p, int n, int with_output) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "input", grid_json(&p[i].in));
        if (with_output) cJSON_AddItemToObject(o, "output", grid_json(&p[i].out));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *task_json(const Task *t, int with_test_output) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "train", pairs_json(t->train, t->n_train, 1));
    cJSON_AddItemToObject(o, "test", pairs_json(t->test, t->n_test, with_test_output));
    return o;
}

static void arc_seeds(void) {
    char err[ERR_MAX], name[32];
    Task *tasks;
    if (demo_make_tasks(2, DEMO_EVAL, 3, &tasks, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    cJSON *challenges = cJSON_CreateObject();
    for (int i = 0; i < 3; i++) {
        cJSON *t = task_json(&tasks[i], i != 1);
        char *s = cJSON_PrintUnformatted(t);
        snprintf(name, sizeof name, "task%d", i);
        seed_str("arc_task", name, s);
        free(s);
        cJSON_AddItemToObject(challenges, tasks[i].id, task_json(&tasks[i], 0));
        cJSON_Delete(t);
    }
    char *s = cJSON_Print(challenges);
    seed_str("arc_task", "kaggle", s);
    free(s);
    cJSON_Delete(challenges);
    demo_free_tasks(tasks, 3);
}

static void rundir_seeds(const char *scratch) {
    char dir[4200], path[4300], err[ERR_MAX], name[32];
    snprintf(dir, sizeof dir, "%s/run", scratch);
    if (rundir_make(dir, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    for (int k = 0; k < RUNDIR_N_FILES; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, RUNDIR_FILES[k]);
        size_t n;
        char *s = read_file(path, &n, err), *buf = malloc(n + 1);
        if (!s || !buf) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
        buf[0] = (char)k;   // the selector byte: which file the rest replaces
        memcpy(buf + 1, s, n);
        snprintf(name, sizeof name, "file%d", k);
        seed("rundir", name, buf, n + 1);
        free(s);
        free(buf);
    }
}

// A shard index naming every tensor of rundir_model_config's model, as
// Hugging Face writes it; fuzz_checkpoint.c has the one shard it names.
static void passage_seeds(void) {
    seed_str("passages", "squad", "{\"version\":\"1.1\",\"data\":[{\"title\":\"T\",\"paragraphs\":[{\"context\":\"Ada wrote notes.\","
                                  "\"qas\":[{\"id\":\"q1\",\"question\":\"Who wrote notes?\",\"answers\":[{\"text\":\"Ada\",\"answer_start\":0}]}]}]}]}");
    seed_str("passages", "seal-list", "[{\"title\":\"T\",\"context\":\"Ada wrote notes.\",\"questions\":[{\"question\":\"Who?\",\"answer\":\"Ada\"}]}]");
    seed_str("passages", "jsonl", "{\"id\":\"a\",\"context\":\"Release 2 adds X.\",\"questions\":[{\"question\":\"What does 2 add?\",\"answers\":[\"X\"]}]}\n"
                                  "{\"id\":\"b\",\"context\":\"\",\"questions\":[]}\n");
}

static void checkpoint_seeds(void) {
    Config c = rundir_model_config();
    Model m;
    char err[ERR_MAX];
    if (model_init(&m, &c, err)) { fprintf(stderr, "seeds: %s\n", err); exit(1); }
    cJSON *root = cJSON_CreateObject(), *map = cJSON_CreateObject();
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(root, "metadata"), "total_size", (double)m.params.total * 4);
    for (int i = 0; i < m.params.n; i++) cJSON_AddStringToObject(map, m.params.t[i].name, "shard.safetensors");
    cJSON_AddItemToObject(root, "weight_map", map);
    char *json = cJSON_Print(root);
    seed_str("checkpoint", "index", json);
    free(json);
    cJSON_Delete(root);
    model_free(&m);
}

// test/fixtures/*: config.json (config), adapter files (safetensors, rundir).
static void fixture_seeds(const char *fixtures) {
    DIR *d = opendir(fixtures);
    if (!d) return;
    char path[4200], name[300];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s/config.json", fixtures, e->d_name);
        snprintf(name, sizeof name, "fixture-%s", e->d_name);
        seed_file("config", name, path);
        snprintf(path, sizeof path, "%s/%s/adapter/adapter_model.safetensors", fixtures, e->d_name);
        seed_file("safetensors", name, path);
        snprintf(path, sizeof path, "%s/%s/adapter/adapter_config.json", fixtures, e->d_name);
        size_t n;
        char *s = read_file(path, &n, NULL), *buf = s ? malloc(n + 1) : NULL;
        if (buf) {
            buf[0] = 3;   // rundir: rounds/1/adapter_config.json
            memcpy(buf + 1, s, n);
            seed("rundir", name, buf, n + 1);
        }
        free(s);
        free(buf);
    }
    closedir(d);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s OUT [FIXTURES]\n", argv[0]); return 2; }
    out_root = argv[1];
    char scratch[] = "/tmp/seal-seeds-XXXXXX", cmd[64];
    if (!mkdtemp(scratch)) { perror("mkdtemp"); return 1; }
    safetensors_seeds(scratch);
    config_seeds();
    tokenizer_seeds();
    selfedit_seeds();
    jsonline_seeds();
    arc_seeds();
    rundir_seeds(scratch);
    checkpoint_seeds();
    passage_seeds();
    if (argc > 2) fixture_seeds(argv[2]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    if (system(cmd)) {}
    printf("fuzz seeds: %d files in %s\n", n_written, out_root);
    return 0;
}
