// seal.c: main. Subcommands, flags, progress output.
//
// Results go to stdout; progress and messages to stderr. Errors read
// "seal: <file or flag>: <what was wrong>". Exit status: 0 success, 1 bad
// input or failed check, 2 usage.
#include "demo.h"
#include "fewshot.h"
#include "generate.h"
#include "model.h"
#include "run.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"
#include "verify.h"
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} Command;

// ----------------------------------------------------------------------------
// Flags: one table per subcommand gives parsing, validation and --help.

typedef enum { F_STR, F_INT, F_FLOAT, F_U64, F_BOOL, F_LIST } FlagKind;
#define MAX_LIST 64
typedef struct { const char *items[MAX_LIST]; int n; } StrList;

typedef struct {
    const char *name;             // "--max-new"
    FlagKind kind;
    void *dst;                    // char **, int *, float *, uint64_t *, int *, StrList *
    const char *help;
} Flag;

static int usage_error(const char *cmd, const char *msg, const char *arg) {
    fprintf(stderr, "seal %s: %s%s%s (see seal %s --help)\n", cmd, msg, arg ? ": " : "", arg ? arg : "", cmd);
    return 2;
}

static void print_flags(const Flag *f, int n) {
    for (int i = 0; i < n; i++) {
        char def[64] = "";
        switch (f[i].kind) {
        case F_STR: if (*(char **)f[i].dst) snprintf(def, sizeof def, " (default %s)", *(char **)f[i].dst); break;
        case F_INT: snprintf(def, sizeof def, " (default %d)", *(int *)f[i].dst); break;
        case F_FLOAT: snprintf(def, sizeof def, " (default %g)", *(float *)f[i].dst); break;
        case F_U64: snprintf(def, sizeof def, " (default %llu)", (unsigned long long)*(uint64_t *)f[i].dst); break;
        default: break;
        }
        const char *arg = f[i].kind == F_BOOL ? "" : f[i].kind == F_STR || f[i].kind == F_LIST ? " TEXT" : " N";
        char left[64];
        snprintf(left, sizeof left, "%s%s", f[i].name, arg);
        printf("  %-22s %s%s\n", left, f[i].help, def);
    }
}

static int parse_number(const char *cmd, const Flag *f, const char *v) {
    char *end;
    errno = 0;
    if (f->kind == F_FLOAT) {
        double d = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(d)) return usage_error(cmd, "expected a number", f->name);
        *(float *)f->dst = (float)d;
        return 0;
    }
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < 0 || (f->kind == F_INT && x > INT32_MAX)) return usage_error(cmd, "expected a non-negative integer", f->name);
    if (f->kind == F_INT) *(int *)f->dst = (int)x;
    else *(uint64_t *)f->dst = (uint64_t)x;
    return 0;
}

// Parses argv[1..] into flags; other words go to pos (at most max_pos).
static int parse_flags(const char *cmd, int argc, char **argv, const Flag *f, int nf, const char **pos, int max_pos, int *npos) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-' || !argv[i][1]) {
            if (*npos == max_pos) return usage_error(cmd, "unexpected argument", argv[i]);
            pos[(*npos)++] = argv[i];
            continue;
        }
        int k = 0;
        while (k < nf && strcmp(argv[i], f[k].name)) k++;
        if (k == nf) return usage_error(cmd, "unknown flag", argv[i]);
        if (f[k].kind == F_BOOL) { *(int *)f[k].dst = 1; continue; }
        if (i + 1 >= argc) return usage_error(cmd, "missing value", argv[i]);
        const char *v = argv[++i];
        if (f[k].kind == F_STR) *(const char **)f[k].dst = v;
        else if (f[k].kind == F_LIST) {
            StrList *l = f[k].dst;
            if (l->n == MAX_LIST) return usage_error(cmd, "given too many times", f[k].name);
            l->items[l->n++] = v;
        } else if (parse_number(cmd, &f[k], v)) return 2;
    }
    return 0;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int check_backend(const char *cmd, const char *backend) {
    if (strcmp(backend, "cpu")) return usage_error(cmd, "only the cpu backend is built into this binary", backend);
    return 0;
}

// ----------------------------------------------------------------------------
// seal verify

static int cmd_verify(int argc, char **argv) {
    const char *backend = "cpu", *dirs[256];
    Flag flags[] = {{"--backend", F_STR, &backend, "backend to check: cpu"}};
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal verify FIXTURE... [flags]\n\n"
               "Reproduces verification fixtures written by a PyTorch reference (FORMATS.md):\n"
               "forward, backward and the fixture's AdamW steps, then prints one line per\n"
               "compared tensor with its max absolute and max relative error.\n\n");
        print_flags(flags, nf);
        printf("\nExit status: 0 when every tensor is within |ours-ref| <= %g + %g*max|ref|,\n"
               "1 when one is not or a fixture is malformed, 2 on usage errors.\n", VERIFY_ATOL, VERIFY_RTOL);
        return 0;
    }
    int n, worst = 0;
    if (parse_flags("verify", argc, argv, flags, nf, dirs, 256, &n) || check_backend("verify", backend)) return 2;
    if (!n) return usage_error("verify", "give at least one fixture directory", NULL);
    for (int i = 0; i < n; i++) {
        char err[ERR_MAX];
        int rc = verify_fixture(dirs[i], stdout, err);
        if (rc < 0) fprintf(stderr, "seal: %s\n", err);
        if (rc) worst = 1;
    }
    return worst;
}

// ----------------------------------------------------------------------------
// seal generate

typedef struct {
    const Tokenizer *tok;
    const char *stop;             // stop string, or NULL
    int stream;                   // print tokens as they come (one prompt)
    char **text;                  // per sequence: decoded so far
    size_t *len;
} GenState;

static int on_token(int seq, int token, void *ctx) {
    GenState *g = ctx;
    const char *bytes;
    int n = tok_token_bytes(g->tok, token, &bytes);
    if (n < 0) return 1;
    g->text[seq] = realloc(g->text[seq], g->len[seq] + n + 1);
    memcpy(g->text[seq] + g->len[seq], bytes, n);
    g->len[seq] += n;
    g->text[seq][g->len[seq]] = 0;
    if (g->stream) { fwrite(bytes, 1, n, stdout); fflush(stdout); }
    return g->stop && strstr(g->text[seq], g->stop) != NULL;
}

// Prompt ids: raw text gets <|begin_of_text|> in front (as Hugging Face's
// tokenizer does by default); a chat message goes through the chat template.
static int encode_prompt(const Tokenizer *tok, const Config *c, const char *text, int chat, int **ids, char *err) {
    if (chat) {
        ChatMsg msg = {"user", text};
        char *rendered = chat_render_llama3(&msg, 1, 1);
        int n = tok_encode(tok, rendered, strlen(rendered), 1, ids, err);
        free(rendered);
        return n;
    }
    int *body, n = tok_encode(tok, text, strlen(text), 0, &body, err);
    if (n < 0) return -1;
    *ids = malloc((n + 1) * sizeof(int));
    (*ids)[0] = c->bos;
    memcpy(*ids + 1, body, n * sizeof(int));
    free(body);
    return n + 1;
}

static int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *tok_path = NULL, *stop = NULL, *backend = "cpu", *pos[1];
    StrList prompts = {0}, chats = {0};
    SampleOpts o = {.max_new = 128, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    Flag flags[] = {
        {"--model", F_STR, &model_dir, "Hugging Face model folder (config.json, safetensors)"},
        {"--adapter", F_STR, &adapter, "PEFT LoRA adapter folder to apply"},
        {"--tokenizer", F_STR, &tok_path, "tokenizer.json (default: MODEL/tokenizer.json)"},
        {"--prompt", F_LIST, &prompts, "raw text to continue (repeat for a batch)"},
        {"--chat", F_LIST, &chats, "a user message, rendered with the Llama-3 chat template (repeatable)"},
        {"--max-new", F_INT, &o.max_new, "tokens to generate at most"},
        {"--temperature", F_FLOAT, &o.temperature, "0 is greedy"},
        {"--top-k", F_INT, &o.top_k, "keep the k most likely tokens, 0 = off"},
        {"--top-p", F_FLOAT, &o.top_p, "nucleus sampling mass, 1 = off"},
        {"--seed", F_U64, &o.seed, "sampling seed"},
        {"--stop", F_STR, &stop, "stop a sequence when its text contains this string"},
        {"--backend", F_STR, &backend, "cpu"},
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal generate --model DIR (--prompt TEXT | --chat TEXT)... [flags]\n\n"
               "Continues prompts with the KV cache. One prompt streams its text to stdout as it\n"
               "is produced; several are generated as one batch and printed in order. Stops at any\n"
               "eos id of config.json, a --stop string, or --max-new tokens.\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos;
    if (parse_flags("generate", argc, argv, flags, nf, pos, 0, &npos) || check_backend("generate", backend)) return 2;
    if (!model_dir) return usage_error("generate", "--model is required", NULL);
    const int B = prompts.n + chats.n;
    if (!B) return usage_error("generate", "give --prompt or --chat", NULL);
    if (o.temperature < 0 || o.top_p <= 0 || o.top_p > 1) return usage_error("generate", "need --temperature >= 0 and 0 < --top-p <= 1", NULL);
    char err[ERR_MAX], tpath[4096];
    Model m;
    Lora lora = {0};
    Tokenizer *tok = NULL;
    int rc = 1;
    if (!tok_path) { snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model_dir); tok_path = tpath; }
    if (model_load(&m, model_dir, err)) { fprintf(stderr, "seal: %s\n", err); return 1; }
    if (adapter && lora_load(&lora, &m.c, adapter, err)) goto done;
    if (adapter) model_attach_lora(&m, &lora);
    if (!(tok = tok_load(tok_path, err))) goto done;
    int **ids = calloc(B, sizeof(int *)), *lens = calloc(B, sizeof(int)), **out = calloc(B, sizeof(int *)), *out_lens = calloc(B, sizeof(int));
    GenState g = {.tok = tok, .stop = stop, .stream = B == 1, .text = calloc(B, sizeof(char *)), .len = calloc(B, sizeof(size_t))};
    int ok = 1;
    for (int b = 0; b < B && ok; b++) {
        int chat = b >= prompts.n;
        lens[b] = encode_prompt(tok, &m.c, chat ? chats.items[b - prompts.n] : prompts.items[b], chat, &ids[b], err);
        ok = lens[b] > 0;
    }
    if (ok && generate(&m, (const int *const *)ids, lens, B, &o, m.c.eos, m.c.n_eos, on_token, &g, out, out_lens, err) == 0) {
        for (int b = 0; B > 1 && b < B; b++) printf("=== %d ===\n%s\n", b, g.text[b] ? g.text[b] : "");
        if (B == 1) printf("\n");
        rc = 0;
    }
    for (int b = 0; b < B; b++) { free(ids[b]); free(out[b]); free(g.text[b]); }
    free(ids); free(lens); free(out); free(out_lens); free(g.text); free(g.len);
done:
    if (rc) fprintf(stderr, "seal: %s\n", err);
    tok_free(tok);
    if (lora.params.mem) lora_free(&lora);
    model_free(&m);
    return rc;
}

static int cmd_tokenize(int argc, char **argv) { return tokenize_cmd(argc, argv); }

// ----------------------------------------------------------------------------
// seal fewshot

// "a,b,c" -> up to max items (pointers into a copy the caller frees).
static int split_list(const char *text, char **copy, const char **items, int max) {
    *copy = strdup(text);
    int n = 0;
    for (char *save, *tok = strtok_r(*copy, ", ", &save); tok && n < max; tok = strtok_r(NULL, ", ", &save)) items[n++] = tok;
    return n;
}

// Task ids for one split: --*-ids, else the "train"/"eval" list of a SEAL task file.
static int task_ids(const char *list, const char *seal_file, const char *key, char **copy, const char **ids, int max, char *err) {
    *copy = NULL;
    if (list) return split_list(list, copy, ids, max);
    if (!seal_file) return 0;   // every task in the folder
    char *text = read_file(seal_file, NULL, err);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text), *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    free(text);
    if (!cJSON_IsArray(arr)) { cJSON_Delete(j); return errf(err, "%s: expected a \"%s\" list of task ids", seal_file, key); }
    size_t cap = 0;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e)) cap += strlen(e->valuestring) + 1;
    char *p = *copy = malloc(cap + 1);
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e) || n == max) continue;
        strcpy(p, e->valuestring);
        ids[n++] = p;
        p += strlen(p) + 1;
    }
    cJSON_Delete(j);
    return n;
}

static int load_split(const char *dir, const char *list, const char *seal_file, const char *key, Task **tasks, int *n, char *err) {
    const char *ids[512];
    char *copy;
    int k = task_ids(list, seal_file, key, &copy, ids, 512, err);
    int rc = k < 0 ? -1 : arc_load_dir(dir, k ? ids : NULL, k, tasks, n, err);
    free(copy);
    if (!rc && *n == 0) rc = errf(err, "%s: no tasks selected", dir);
    return rc;
}

static void model_config_json(const Model *m, const char *path, cJSON *into, const char *key) {
    cJSON *j = cJSON_AddObjectToObject(into, key);
    cJSON_AddStringToObject(j, "path", path);
    char h[20];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)table_hash(&m->params));
    cJSON_AddStringToObject(j, "hash", h);
}

// Prints the report and saves it as RUN/report.json, RUN/report.md (and --json FILE).
static int save_report(const cJSON *report, const char *run_dir, const char *json_path, char *err) {
    char *md;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    restem_report_markdown(report, f);
    fclose(f);
    int rc = run_write_report(run_dir, md, report, json_path, err);
    free(md);
    return rc;
}

static int cmd_fewshot(int argc, char **argv) {
    const char *model_dir = NULL, *teacher_dir = NULL, *tok_path = NULL, *train_dir = NULL, *eval_dir = NULL, *train_ids = NULL,
               *eval_ids = NULL, *seal_tasks = NULL, *out = NULL, *json_path = NULL, *targets = "q_proj,v_proj,gate_proj,up_proj,down_proj",
               *backend = "cpu", *pos[1];
    int resume = 0;
    RestemOpts o = restem_defaults();
    FewShot fs = {0};
    fewshot_defaults(&fs);
    Flag flags[] = {
        {"--model", F_STR, &model_dir, "the student: Hugging Face model folder (required)"},
        {"--teacher", F_STR, &teacher_dir, "a model that proposes the self-edits (the RL policy); default: the student"},
        {"--tokenizer", F_STR, &tok_path, "tokenizer.json (default: MODEL/tokenizer.json)"},
        {"--train-dir", F_STR, &train_dir, "folder of ARC task JSON files for the E-step (required)"},
        {"--eval-dir", F_STR, &eval_dir, "folder of held-out ARC tasks (required)"},
        {"--train-ids", F_STR, &train_ids, "comma-separated task ids (default: --seal-tasks, else every task)"},
        {"--eval-ids", F_STR, &eval_ids, "comma-separated task ids (default: --seal-tasks, else every task)"},
        {"--seal-tasks", F_STR, &seal_tasks, "a JSON file with \"train\" and \"eval\" id lists (SEAL's selection)"},
        {"--out", F_STR, &out, "run directory (required)"},
        {"--resume", F_BOOL, &resume, "continue the run in --out"},
        {"--rounds", F_INT, &o.rounds, "ReST^EM rounds"},
        {"--samples", F_INT, &o.samples, "self-edits per training task per round"},
        {"--eval-samples", F_INT, &o.eval_samples, "self-edits per held-out task"},
        {"--keep", F_INT, &o.keep_per_task, "accepted self-edits per task at most"},
        {"--attempts", F_INT, &o.max_attempts, "samples per self-edit when earlier ones are invalid"},
        {"--temperature", F_FLOAT, &o.sampling.temperature, "self-edit sampling temperature"},
        {"--top-k", F_INT, &o.sampling.top_k, "self-edit top-k, 0 = off"},
        {"--top-p", F_FLOAT, &o.sampling.top_p, "self-edit top-p"},
        {"--max-edit-tokens", F_INT, &o.sampling.max_new, "longest self-edit"},
        {"--lora-r", F_INT, &fs.lora_r, "inner-loop LoRA rank"},
        {"--lora-alpha", F_FLOAT, &fs.lora_alpha, "inner-loop LoRA alpha"},
        {"--lora-targets", F_STR, &targets, "inner-loop LoRA modules"},
        {"--batch", F_INT, &fs.batch, "inner-loop batch size"},
        {"--warmup", F_INT, &fs.warmup, "inner-loop warm-up steps"},
        {"--max-tokens", F_INT, &fs.max_tokens, "drop TTT examples this long or longer"},
        {"--max-examples", F_INT, &fs.max_examples, "TTT examples per self-edit at most (SEAL: 250)"},
        {"--max-steps", F_INT, &fs.max_steps, "a self-edit over this many optimizer steps gets no training (SEAL: 375)"},
        {"--max-views", F_INT, &fs.max_views, "inference views per reward, 0 = all"},
        {"--max-answer-tokens", F_INT, &fs.max_answer_tokens, "longest greedy answer"},
        {"--oracle", F_STR, &fs.oracle, "the fixed self-edit reported as the oracle"},
        {"--m-rank", F_INT, &o.m_rank, "M-step LoRA rank"},
        {"--m-alpha", F_FLOAT, &o.m_alpha, "M-step LoRA alpha"},
        {"--m-lr", F_FLOAT, &o.m_lr, "M-step learning rate"},
        {"--m-epochs", F_INT, &o.m_epochs, "M-step epochs"},
        {"--replay", F_BOOL, &o.replay, "M-step also trains on earlier rounds' accepted self-edits"},
        {"--max-retention-drop", F_FLOAT, &o.max_retention_drop, "largest probe-score drop a promoted policy may show"},
        {"--seed", F_U64, &o.seed, "seed of every sample, shuffle and initialisation"},
        {"--json", F_STR, &json_path, "also write the report here"},
        {"--backend", F_STR, &backend, "cpu"},
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal fewshot --model DIR --train-dir DIR --eval-dir DIR --out RUN [flags]\n\n"
               "SEAL's few-shot experiment on ARC tasks: self-edits choose test-time-training data and\n"
               "settings, a fresh LoRA applies each, augmented voting rewards it, ReST^EM trains the\n"
               "policy. Writes RUN/ (run.json, edits.jsonl, rounds/K/, current, report.md).\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos;
    if (parse_flags("fewshot", argc, argv, flags, nf, pos, 0, &npos) || check_backend("fewshot", backend)) return 2;
    if (!model_dir || !train_dir || !eval_dir || !out) return usage_error("fewshot", "--model, --train-dir, --eval-dir and --out are required", NULL);
    char err[ERR_MAX], tpath[4096];
    if (!(fs.lora_targets = lora_targets_parse(targets, err))) return usage_error("fewshot", err, "--lora-targets");
    if (fs.lora_r < 1 || fs.batch < 1 || o.samples < 1 || o.rounds < 0) return usage_error("fewshot", "ranks, batch and samples must be positive", NULL);
    Model student = {0}, teacher = {0};
    Tokenizer *tok = NULL;
    Run run = {0};
    int rc = 1;
    if (!tok_path) { snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model_dir); tok_path = tpath; }
    if (load_split(train_dir, train_ids, seal_tasks, "train", &fs.train, &fs.n_train, err) ||
        load_split(eval_dir, eval_ids, seal_tasks, "eval", &fs.eval, &fs.n_eval, err) ||
        model_load(&student, model_dir, err) || (teacher_dir && model_load(&teacher, teacher_dir, err)) ||
        !(tok = tok_load(tok_path, err)))
        goto done;
    fs.tok = tok;
    fs.eot = tok_find(tok, "<|eot_id|>");
    if (fs.eot < 0) { errf(err, "%s: no <|eot_id|> token", tok_path); goto done; }
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "command", "fewshot");
    model_config_json(&student, model_dir, config, "model");
    if (teacher_dir) model_config_json(&teacher, teacher_dir, config, "teacher");
    fewshot_config_json(&fs, config);
    restem_opts_json(&o, config);
    rc = run_open(&run, out, config, resume, err);
    cJSON_Delete(config);
    if (rc) { rc = 1; goto done; }
    fprintf(stderr, "seal fewshot: %d training tasks, %d held-out tasks, %d rounds, run %s%s\n", fs.n_train, fs.n_eval, o.rounds, out, resume ? " (resumed)" : "");
    Domain d;
    fewshot_domain(&d, &fs);
    cJSON *report = cJSON_CreateObject();
    rc = restem_run(&d, teacher_dir ? &teacher : &student, &student, tok, &run, &o, report, err) || save_report(report, out, json_path, err);
    cJSON_Delete(report);
done:
    if (rc) fprintf(stderr, "seal: %s\n", err);
    run_close(&run);
    tok_free(tok);
    if (teacher.layers) model_free(&teacher);
    if (student.layers) model_free(&student);
    arc_free_tasks(fs.train, fs.n_train);
    arc_free_tasks(fs.eval, fs.n_eval);
    return rc ? 1 : 0;
}

// ----------------------------------------------------------------------------
// seal demo

static int cmd_demo(int argc, char **argv) {
    DemoOpts o = {.seed = 1};
    const char *pos[1];
    Flag flags[] = {
        {"--seed", F_U64, &o.seed, "the world, the model and every sample; the same seed gives the same table"},
        {"--quick", F_BOOL, &o.quick, "a much smaller world and model (well under a minute): an end-to-end check"},
        {"--fresh", F_BOOL, &o.fresh, "rebuild the cached base model"},
        {"--cache", F_STR, &o.cache, "base-model cache (default $XDG_CACHE_HOME/seal/demo or ~/.cache/seal/demo)"},
        {"--out", F_STR, &o.out, "run directory (default seal-runs/demo-SCALE-seedS-TIME)"},
        {"--json", F_STR, &o.json, "also write the report here"},
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal demo [flags]\n\n"
               "SEAL's few-shot loop end to end with nothing to download: generates ARC-like tasks,\n"
               "trains a tokenizer and pretrains a tiny Llama (cached), then runs self-edits, test-time\n"
               "training, voting rewards and ReST^EM, and prints the table of the paper beside ours.\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos;
    if (parse_flags("demo", argc, argv, flags, nf, pos, 0, &npos)) return 2;
    char err[ERR_MAX];
    if (demo_run(&o, err)) { fprintf(stderr, "seal: %s\n", err); return 1; }
    return 0;
}

// ----------------------------------------------------------------------------
// seal runs show RUN | seal runs rollback RUN --to K

static int cmd_runs(int argc, char **argv) {
    int to = -1;
    const char *pos[2];
    Flag flags[] = {{"--to", F_INT, &to, "rollback: the round to make current (0 = the base policy)"}};
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal runs show RUN\n       seal runs rollback RUN --to K\n\n"
               "show: rounds, self-edits sampled/valid/trained/accepted, rewards, metrics, the current round.\n"
               "rollback: make round K's policy current again (the later rounds stay on disk).\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int n;
    if (parse_flags("runs", argc, argv, flags, nf, pos, 2, &n)) return 2;
    if (n != 2) return usage_error("runs", "expected show RUN or rollback RUN --to K", NULL);
    char err[ERR_MAX];
    int rc;
    if (!strcmp(pos[0], "show")) rc = run_show(pos[1], stdout, err);
    else if (!strcmp(pos[0], "rollback")) {
        if (to < 0) return usage_error("runs", "rollback needs --to K", NULL);
        rc = run_rollback(pos[1], to, err);
        if (!rc) printf("%s: round %d is current\n", pos[1], to);
    } else return usage_error("runs", "unknown action", pos[0]);
    if (rc) fprintf(stderr, "seal: %s\n", err);
    return rc ? 1 : 0;
}

static const Command COMMANDS[] = {
    {"verify", "check forward, backward and AdamW against PyTorch fixtures", cmd_verify},
    {"generate", "continue prompts or chat messages with a model (KV cache, sampling)", cmd_generate},
    {"tokenize", "encode JSON lines of text to token ids, or decode them back", cmd_tokenize},
    {"demo", "the whole SEAL few-shot loop on a built-in world, in minutes on a CPU", cmd_demo},
    {"fewshot", "SEAL's few-shot ARC experiment: self-edits, TTT, voting reward, ReST^EM", cmd_fewshot},
    {"runs", "show a run directory, or roll its policy back to an earlier round", cmd_runs},
};

static void print_help(void) {
    printf("seal: SEAL (Self-Adapting Language Models) in C\n\nusage: seal COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    printf("\n`seal COMMAND --help` lists every flag of COMMAND with its default.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "seal: unknown command \"%s\" (see seal --help)\n", argv[1]);
    return 2;
}
