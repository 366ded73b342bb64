// checkpoint.c: a model and its adapters on disk, read and written at the
// edges so that model.c holds the math alone: config.json, tables of named
// tensors in safetensors files, Hugging Face model folders (one file or
// shards; a GGUF file goes to gguf.c), and PEFT adapter folders.
#include "model.h"
#include "gguf.h"
#include "safetensors.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// config.json

static int json_number(const cJSON *root, const char *key, double *out, int required, const char *path, char *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return errf(err, "%s: missing required key \"%s\"", path, key);
        return 1;   // absent: caller keeps its default
    }
    if (!cJSON_IsNumber(v)) return errf(err, "%s: \"%s\" must be a number", path, key);
    *out = v->valuedouble;
    return 0;
}

// An integer key in [lo, hi]; absent optional keys keep *out.
static int json_int(const cJSON *root, const char *key, int *out, int required, int lo, int hi, const char *path, char *err) {
    double d = 0;
    int rc = json_number(root, key, &d, required, path, err);
    if (rc) return rc < 0 ? -1 : 0;
    if (d != floor(d) || d < lo || d > hi) return errf(err, "%s: \"%s\" = %g, expected an integer in [%d, %d]", path, key, d, lo, hi);
    *out = (int)d;
    return 0;
}

static int json_float(const cJSON *root, const char *key, float *out, int required, double lo, double hi, const char *path, char *err) {
    double d = 0;
    int rc = json_number(root, key, &d, required, path, err);
    if (rc) return rc < 0 ? -1 : 0;
    if (!(d > lo && d <= hi && (float)d > lo))   // 1e-50 is above 0 but rounds to a float 0
        return errf(err, "%s: \"%s\" = %g, expected a number in (%g, %g]", path, key, d, lo, hi);
    *out = (float)d;
    return 0;
}

static int parse_rope_scaling(Config *c, const cJSON *rs, const char *path, char *err) {
    if (!rs || cJSON_IsNull(rs)) return 0;
    if (!cJSON_IsObject(rs)) return errf(err, "%s: \"rope_scaling\" must be null or an object", path);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!kind) kind = cJSON_GetObjectItemCaseSensitive(rs, "type");   // older spelling
    if (!cJSON_IsString(kind)) return errf(err, "%s: rope_scaling needs a \"rope_type\" string", path);
    if (!strcmp(kind->valuestring, "default")) return 0;
    if (strcmp(kind->valuestring, "llama3"))
        return errf(err, "%s: rope_scaling type \"%s\" is not supported (expected \"llama3\" or \"default\")", path, kind->valuestring);
    c->rope_llama3 = 1;
    char p[4200];
    snprintf(p, sizeof p, "%s: rope_scaling", path);
    if (json_float(rs, "factor", &c->rope_factor, 1, 0, 1e6, p, err) ||
        json_float(rs, "low_freq_factor", &c->rope_low_freq, 1, 0, 1e6, p, err) ||
        json_float(rs, "high_freq_factor", &c->rope_high_freq, 1, 0, 1e6, p, err) ||
        json_int(rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 1, 1, 1 << 30, p, err))
        return -1;
    if (c->rope_high_freq <= c->rope_low_freq) return errf(err, "%s: high_freq_factor must exceed low_freq_factor", p);
    return 0;
}

static int parse_eos(Config *c, const cJSON *e, const char *path, char *err) {
    if (!e || cJSON_IsNull(e)) return 0;
    const cJSON *one = e;
    int n = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : 1;
    if (n > 8) return errf(err, "%s: \"eos_token_id\" lists %d ids, at most 8 supported", path, n);
    c->n_eos = 0;
    for (int i = 0; i < n; i++) {
        if (cJSON_IsArray(e)) one = cJSON_GetArrayItem(e, i);
        if (!cJSON_IsNumber(one) || one->valuedouble < 0 || one->valuedouble > INT_MAX || one->valuedouble != floor(one->valuedouble))
            return errf(err, "%s: \"eos_token_id\" must be an id or a list of ids", path);
        c->eos[c->n_eos++] = (int)one->valuedouble;
    }
    return 0;
}

// "model_type", and the keys by which a checkpoint's math would differ from
// what this file computes: those are refused rather than silently ignored.
static int parse_arch(Config *c, const cJSON *root, const char *path, char *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    c->arch = ARCH_LLAMA;   // no model_type: a Llama, as the configs this project wrote before Qwen2
    if (type && !cJSON_IsString(type)) return errf(err, "%s: \"model_type\" must be a string", path);
    if (type && !strcmp(type->valuestring, "qwen2")) c->arch = ARCH_QWEN2;
    else if (type && strcmp(type->valuestring, "llama"))
        return errf(err, "%s: model_type \"%.64s\" is not supported (expected \"llama\" or \"qwen2\")", path, type->valuestring);
    if (act && !cJSON_IsNull(act) && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
        return errf(err, "%s: \"hidden_act\" must be \"silu\" (the SwiGLU MLP computed here)", path);
    // Qwen2: biases on q/k/v always; sliding-window attention only when asked for.
    // Llama: biases only when attention_bias / mlp_bias say so, which is not supported.
    const char *const qwen2_keys[] = {"use_sliding_window"}, *const llama_keys[] = {"attention_bias", "mlp_bias"};
    const char *const *keys = c->arch == ARCH_QWEN2 ? qwen2_keys : llama_keys;
    const int n = c->arch == ARCH_QWEN2 ? 1 : 2;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v)) return errf(err, "%s: \"%s\" must be true or false", path, keys[i]);
        if (cJSON_IsTrue(v))
            return errf(err, c->arch == ARCH_QWEN2 ? "%s: \"%s\": true is not supported (sliding-window attention; every layer here attends to the whole context)"
                                                   : "%s: \"%s\": true is not supported (a Llama's projections have no biases here)",
                        path, keys[i]);
    }
    return 0;
}

#define HEAD_DIM_MAX 65536

static int config_check(const Config *c, const char *path, char *err) {
    if (c->n_heads % c->n_kv_heads)
        return errf(err, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", path, c->n_heads, c->n_kv_heads);
    if (c->head_dim > HEAD_DIM_MAX)   // hidden_size / num_attention_heads, when head_dim is not given
        return errf(err, "%s: head_dim %d (hidden_size / num_attention_heads) is over %d", path, c->head_dim, HEAD_DIM_MAX);
    if (c->head_dim % 2) return errf(err, "%s: head_dim (%d) must be even for RoPE", path, c->head_dim);
    if (c->bos >= c->vocab) return errf(err, "%s: bos_token_id %d outside the vocabulary (%d)", path, c->bos, c->vocab);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos[i] >= c->vocab) return errf(err, "%s: eos_token_id %d outside the vocabulary (%d)", path, c->eos[i], c->vocab);
    return 0;
}

int config_parse(Config *c, const char *json, const char *path, char *err) {
    memset(c, 0, sizeof *c);
    const char *end = NULL;
    char why[64];
    cJSON *root = cJSON_ParseWithOpts(json, &end, 0);
    if (!root) return errf(err, "%s: not valid JSON (%s)", path, json_why(json, end, why, sizeof why));
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return errf(err, "%s: not a JSON object", path); }
    const int BIG = 1 << 24;
    int rc = parse_arch(c, root, path, err);
    // Hugging Face LlamaConfig defaults for the optional keys (Qwen2Config's
    // differ in max_position_embeddings only).
    c->norm_eps = 1e-6f; c->rope_theta = 10000.0f; c->max_pos = c->arch == ARCH_QWEN2 ? 32768 : 2048;
    c->bos = 1; c->eos[0] = 2; c->n_eos = 1;
    rc = rc || json_int(root, "hidden_size", &c->dim, 1, 1, BIG, path, err) ||
             json_int(root, "intermediate_size", &c->hidden, 1, 1, BIG, path, err) ||
             json_int(root, "num_hidden_layers", &c->n_layers, 1, 1, 4096, path, err) ||
             json_int(root, "num_attention_heads", &c->n_heads, 1, 1, 4096, path, err) ||
             json_int(root, "vocab_size", &c->vocab, 1, 1, BIG, path, err);
    if (!rc) {
        c->n_kv_heads = c->n_heads;
        c->head_dim = c->dim / c->n_heads;
        rc = json_int(root, "num_key_value_heads", &c->n_kv_heads, 0, 1, 4096, path, err) ||
             json_int(root, "head_dim", &c->head_dim, 0, 1, HEAD_DIM_MAX, path, err) ||
             json_float(root, "rms_norm_eps", &c->norm_eps, 0, 0, 1, path, err) ||
             json_float(root, "rope_theta", &c->rope_theta, 0, 0, 1e12, path, err) ||
             json_int(root, "max_position_embeddings", &c->max_pos, 0, 1, 1 << 30, path, err) ||
             json_int(root, "bos_token_id", &c->bos, 0, 0, BIG, path, err) ||
             parse_eos(c, cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), path, err) ||
             parse_rope_scaling(c, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), path, err);
    }
    if (!rc) {
        const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
        if (tie && !cJSON_IsBool(tie)) rc = errf(err, "%s: \"tie_word_embeddings\" must be true or false", path);
        c->tied = cJSON_IsTrue(tie);
    }
    if (!rc && c->head_dim == 0) rc = errf(err, "%s: hidden_size %d is smaller than num_attention_heads %d; set head_dim", path, c->dim, c->n_heads);
    if (!rc) rc = config_check(c, path, err);
    cJSON_Delete(root);
    return rc ? -1 : 0;
}

int config_load(Config *c, const char *path, char *err) {
    char *json = read_file(path, NULL, err);
    if (!json) return -1;
    int rc = config_parse(c, json, path, err);
    free(json);
    return rc;
}

int config_save(const Config *c, const char *path, char *err) {
    cJSON *r = cJSON_CreateObject();
    const int qwen2 = c->arch == ARCH_QWEN2;
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(r, "model_type", qwen2 ? "qwen2" : "llama");
    if (qwen2) {
        cJSON_AddStringToObject(r, "hidden_act", "silu");
        cJSON_AddFalseToObject(r, "use_sliding_window");
    }
    cJSON_AddNumberToObject(r, "hidden_size", c->dim);
    cJSON_AddNumberToObject(r, "intermediate_size", c->hidden);
    cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(r, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(r, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(r, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(r, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
    if (c->rope_llama3) {
        cJSON *rs = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq);
        cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max_pos);
    } else cJSON_AddNullToObject(r, "rope_scaling");
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tied);
    cJSON_AddNumberToObject(r, "max_position_embeddings", c->max_pos);
    cJSON_AddNumberToObject(r, "bos_token_id", c->bos);
    cJSON *eos = cJSON_AddArrayToObject(r, "eos_token_id");
    for (int i = 0; i < c->n_eos; i++) cJSON_AddItemToArray(eos, cJSON_CreateNumber(c->eos[i]));
    cJSON_AddStringToObject(r, "torch_dtype", "float32");
    char *s = cJSON_Print(r);
    cJSON_Delete(r);
    int rc = write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

// ----------------------------------------------------------------------------
// Tables of named tensors in safetensors files

static void shape_str(char *s, size_t n, const Tensor *x) {
    if (x->rows == 1) snprintf(s, n, "[%d]", x->cols);
    else snprintf(s, n, "[%d, %d]", x->rows, x->cols);
}

static int shape_matches(const StTensor *f, const Tensor *x) {
    if (x->rows == 1 && f->ndim == 1) return f->shape[0] == x->cols;
    return f->ndim == 2 && f->shape[0] == x->rows && f->shape[1] == x->cols;
}

int table_load(Table *t, const char *const *files, const char *prefix, char *err) {
    int nf = 0;
    while (files[nf]) nf++;
    StFile *st = xcalloc((size_t)nf, sizeof(StFile));
    int rc = 0, opened = 0;
    for (; opened < nf && !rc; opened++) rc = st_open(&st[opened], files[opened], err);
    if (rc) opened--;
    for (int i = 0; i < t->n && !rc; i++) {
        Tensor *x = &t->t[i];
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, x->name);
        const StTensor *f = NULL;
        int k = 0;
        for (; k < nf && !f; k++) f = st_find(&st[k], key);
        char want[48], got[160] = "";
        shape_str(want, sizeof want, x);
        if (!f) { rc = errf(err, "%s: tensor %s is missing (expected shape %s)", files[0], key, want); break; }
        if (!shape_matches(f, x)) {
            for (int d = 0; d < f->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)f->shape[d]);
            rc = errf(err, "%s: tensor %s has shape [%s], expected %s from the config", st[k - 1].path, key, got, want);
            break;
        }
        rc = st_read_f32(&st[k - 1], f, x->data, (int64_t)x->size, err);
    }
    for (int k = 0; k < opened; k++) st_close(&st[k]);
    free(st);
    return rc;
}

int table_save(const Table *t, const char *path, const char *prefix, char *err) {
    StOut *out = xcalloc((size_t)t->n, sizeof(StOut));
    char (*names)[256] = xcalloc((size_t)t->n, sizeof *names);
    for (int i = 0; i < t->n; i++) {
        const Tensor *x = &t->t[i];
        snprintf(names[i], sizeof names[i], "%s%s", prefix, x->name);
        out[i] = (StOut){.name = names[i], .dtype = DT_F32, .data = x->data};
        if (x->rows == 1) { out[i].ndim = 1; out[i].shape[0] = x->cols; }
        else { out[i].ndim = 2; out[i].shape[0] = x->rows; out[i].shape[1] = x->cols; }
    }
    int rc = st_write(path, out, t->n, NULL, 0, err);
    free(out);
    free(names);
    return rc;
}

// ----------------------------------------------------------------------------
// Hugging Face model folders

// The safetensors files of a model directory: one file, or the shards that
// model.safetensors.index.json names. Returns a NULL-terminated list.
static char **model_files(const char *dir, char *err) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "model.safetensors", err)) return NULL;
    char **files = xcalloc(2, sizeof(char *));
    if (access(path, R_OK) == 0) { files[0] = xstrdup(path); return files; }
    free(files);
    if (path_join(path, sizeof path, dir, "model.safetensors.index.json", err)) return NULL;
    char *json = read_file(path, NULL, NULL);
    if (!json) { errf(err, "%s: no model.safetensors or model.safetensors.index.json", dir); return NULL; }
    cJSON *root = cJSON_Parse(json);
    free(json);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) { cJSON_Delete(root); errf(err, "%s: missing \"weight_map\" object", path); return NULL; }
    int n = 0;
    files = xcalloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(char *));
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            errf(err, "%s: weight_map.%s must name a shard file in the same folder", path, e->string);
            for (int i = 0; i < n; i++) free(files[i]);
            free(files);
            cJSON_Delete(root);
            return NULL;
        }
        char shard[4096];
        snprintf(shard, sizeof shard, "%s/%s", dir, e->valuestring);
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = !strcmp(files[i], shard);
        if (!seen) files[n++] = xstrdup(shard);
    }
    cJSON_Delete(root);
    return files;
}

static void free_list(char **list) {
    for (int i = 0; list && list[i]; i++) free(list[i]);
    free(list);
}

// Parameters the config implies, counted in 64 bits before anything is allocated.
static uint64_t config_params(const Config *c) {
    uint64_t n = (uint64_t)c->vocab * c->dim * (c->tied ? 1 : 2) + (uint64_t)c->dim * (2 * c->n_layers + 1);
    for (int p = 0; p < N_PROJ; p++) {
        int out, in;
        proj_shape(c, p, &out, &in);
        n += (uint64_t)c->n_layers * out * (in + proj_has_bias(c, p));
    }
    return n;
}

// A config.json whose model the safetensors files cannot hold (2 bytes a
// parameter at the least) is refused before its parameters are allocated.
static int check_size(const Config *c, char **files, const char *config_path, char *err) {
    uint64_t bytes = 0, params = config_params(c);
    int n = 0;
    for (; files[n]; n++) {
        struct stat s;
        if (stat(files[n], &s) != 0 || !S_ISREG(s.st_mode)) return 0;   // table_load names the file it cannot open
        bytes += (uint64_t)s.st_size;
    }
    if (bytes / 2 >= params) return 0;
    char held[4200];   // the file by name when there is one: a truncated download shows
    if (n == 1) snprintf(held, sizeof held, "%s holds", files[0]);
    else snprintf(held, sizeof held, "its %d safetensors files hold", n);
    return errf(err, "%s: describes %llu parameters (%.1f GiB in bf16), more than %s (%llu bytes)",
                config_path, (unsigned long long)params, params * 2.0 / (1 << 30), held, (unsigned long long)bytes);
}

static int load_folder(Model *m, const char *dir, char *err) {
    char path[4096];
    Config c;
    if (path_join(path, sizeof path, dir, "config.json", err) || config_load(&c, path, err)) return -1;
    char **files = model_files(dir, err);
    if (!files) return -1;
    memset(m, 0, sizeof *m);   // what model_free below sees when check_size refuses
    int rc = check_size(&c, files, path, err) || model_init(m, &c, err);
    if (!rc) rc = table_load(&m->params, (const char *const *)files, "", err);
    if (rc && m->layers) model_free(m);
    free_list(files);
    return rc;
}

// 0, or -1 naming the first tensor of t (read from `where`) that holds a NaN or Inf.
static int check_finite(const Table *t, const char *where, char *err) {
    const Tensor *bad = table_nonfinite(t);
    return bad ? errf(err, "%s: tensor %s holds NaN or Inf", where, bad->name) : 0;
}

// A model folder, or a llama.cpp .gguf file; weights that hold a NaN or Inf are refused.
int model_load(Model *m, const char *dir, char *err) {
    int rc = gguf_is_path(dir) ? gguf_load_model(m, dir, err) : load_folder(m, dir, err);
    if (rc || !check_finite(&m->params, dir, err)) return rc;
    model_free(m);
    return -1;
}

int model_config_load(Config *c, const char *path, char *err) {
    if (gguf_is_path(path)) {
        GgufFile f;
        if (gguf_open(&f, path, err)) return -1;
        int rc = gguf_config(&f, c, err);
        gguf_close(&f);
        return rc;
    }
    char p[4096];
    return path_join(p, sizeof p, path, "config.json", err) || config_load(c, p, err) ? -1 : 0;
}

int model_save(const Model *m, const char *dir, char *err) {
    char path[4096];
    if (make_dirs(dir, err)) return -1;
    if (path_join(path, sizeof path, dir, "config.json", err) || config_save(&m->c, path, err)) return -1;
    if (path_join(path, sizeof path, dir, "model.safetensors", err)) return -1;
    return table_save(&m->params, path, "", err);
}


// ----------------------------------------------------------------------------
// PEFT adapters

static int parse_targets(const cJSON *tm, const char *path, unsigned *mask, char *err) {
    if (!cJSON_IsArray(tm)) return errf(err, "%s: \"target_modules\" must be a list of module names", path);
    char list[256] = "";
    const cJSON *e;
    cJSON_ArrayForEach(e, tm) {
        if (!cJSON_IsString(e)) return errf(err, "%s: \"target_modules\" entries must be strings", path);
        const char *dot = strrchr(e->valuestring, '.');   // "self_attn.q_proj" means q_proj too
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s,", dot ? dot + 1 : e->valuestring);
    }
    char why[ERR_MAX];
    *mask = lora_targets_parse(list, why);
    return *mask ? 0 : errf(err, "%s: %s", path, why);
}

// adapter_config.json keys that do not change what the adapter computes at
// inference (its dropout, how it was initialised, bookkeeping). Any other key
// beyond the ones lora_load reads must hold its default (null, false, "", {}
// or []), or the adapter means something seal does not compute: DoRA, rank or
// alpha patterns, layers_to_transform, modules_to_save, ...
static const char *const LORA_HARMLESS[] = {"peft_type", "r", "lora_alpha", "target_modules", "bias", "task_type", "base_model_name_or_path",
                                            "revision", "inference_mode", "lora_dropout", "init_lora_weights", "peft_version",
                                            "auto_mapping", "runtime_config", "megatron_core", "layers_pattern"};

static int lora_check_keys(const cJSON *root, const char *path, char *err) {
    const cJSON *v;
    cJSON_ArrayForEach(v, root) {
        int harmless = 0;
        for (size_t i = 0; i < sizeof LORA_HARMLESS / sizeof *LORA_HARMLESS && !harmless; i++) harmless = !strcmp(v->string, LORA_HARMLESS[i]);
        int is_default = cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !*v->valuestring) ||
                         ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child);
        if (harmless || is_default) continue;
        char *s = cJSON_PrintUnformatted(v);
        errf(err, "%s: \"%s\": %.60s is a setting seal does not implement (it supports plain LoRA: r, lora_alpha, target_modules)", path, v->string, s ? s : "?");
        free(s);
        return -1;
    }
    return 0;
}

// Every tensor of an adapter file must be one the adapter has: another
// (DoRA's lora_magnitude_vector, a modules_to_save copy) would be ignored.
static int lora_check_tensors(const Lora *l, const char *path, char *err) {
    StFile f;
    if (st_open(&f, path, err)) return -1;
    int rc = 0;
    for (int i = 0; i < f.n && !rc; i++)
        if (!table_get(&l->params, f.t[i].name)) rc = errf(err, "%s: tensor %s is not part of a LoRA adapter seal implements", path, f.t[i].name);
    st_close(&f);
    return rc;
}

#define LORA_ALPHA_MAX 1e4   // as --lora-alpha and --m-alpha allow

int lora_load(Lora *l, const Config *c, const char *dir, char *err) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "adapter_config.json", err)) return -1;
    char *json = read_file(path, NULL, err);
    if (!json) return -1;
    const char *end = NULL;
    char why[80] = "", at[48];
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) snprintf(why, sizeof why, " (not valid JSON, %s)", json_why(json, end, at, sizeof at));
    free(json);
    int rc = 0;
    unsigned mask = 0;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r"), *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type"), *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (!cJSON_IsObject(root)) rc = errf(err, "%s: not a JSON object%s", path, why);
    else if (cJSON_IsString(type) && strcmp(type->valuestring, "LORA")) rc = errf(err, "%s: peft_type \"%s\", expected \"LORA\"", path, type->valuestring);
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536 || r->valuedouble != floor(r->valuedouble))
        rc = errf(err, "%s: \"r\" must be a positive integer", path);
    else if (!cJSON_IsNumber(alpha)) rc = errf(err, "%s: \"lora_alpha\" must be a number", path);
    else if (!(alpha->valuedouble > 0 && alpha->valuedouble <= LORA_ALPHA_MAX))   // a huge scale overflows every output it touches
        rc = errf(err, "%s: \"lora_alpha\" = %g, expected a number in (0, %g]", path, alpha->valuedouble, LORA_ALPHA_MAX);
    else if (bias && cJSON_IsString(bias) && strcmp(bias->valuestring, "none")) rc = errf(err, "%s: bias \"%s\" is not supported (expected \"none\")", path, bias->valuestring);
    else rc = lora_check_keys(root, path, err) || parse_targets(cJSON_GetObjectItemCaseSensitive(root, "target_modules"), path, &mask, err);
    if (!rc && lora_init(l, c, r->valueint, (float)alpha->valuedouble, mask)) rc = errf(err, "%s: out of memory", dir);
    cJSON_Delete(root);
    if (rc) return -1;
    if (path_join(path, sizeof path, dir, "adapter_model.safetensors", err) ||
        table_load(&l->params, (const char *const[]){path, NULL}, "", err) || lora_check_tensors(l, path, err) ||
        check_finite(&l->params, path, err)) {
        lora_free(l);
        return -1;
    }
    return 0;
}

int lora_save(const Lora *l, const char *dir, const char *base_model, char *err) {
    char path[4096];
    if (make_dirs(dir, err) || path_join(path, sizeof path, dir, "adapter_model.safetensors", err)) return -1;
    if (table_save(&l->params, path, "", err)) return -1;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddNumberToObject(root, "r", l->r);
    cJSON_AddNumberToObject(root, "lora_alpha", l->alpha);
    cJSON *tm = cJSON_AddArrayToObject(root, "target_modules");
    for (int p = 0; p < N_PROJ; p++)
        if (l->targets >> p & 1) cJSON_AddItemToArray(tm, cJSON_CreateString(PROJ_NAME[p]));
    cJSON_AddNumberToObject(root, "lora_dropout", 0.0);
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddBoolToObject(root, "use_rslora", 0);
    cJSON_AddBoolToObject(root, "fan_in_fan_out", 0);
    cJSON_AddStringToObject(root, "base_model_name_or_path", base_model ? base_model : "");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = path_join(path, sizeof path, dir, "adapter_config.json", err) || write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc ? -1 : 0;
}
