// seal.c: main. Subcommands, flags, progress output.
//
// Results go to stdout; progress and messages to stderr. Errors read
// "seal: <file or flag>: <what was wrong>". Exit status: 0 success, 1 bad
// input or failed check, 2 usage.
#include "backend.h"
#include "kernels.h"
#include "demo.h"
#include "demo_knowledge.h"
#include "fewshot.h"
#include "chat.h"
#include "constrain.h"
#include "generate.h"
#include "knowledge.h"
#include "gguf.h"
#include "model.h"
#include "plot.h"
#include "ranks.h"
#include "run.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"
#include "verify.h"
#include "weights.h"
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

// The values every integer and float flag may take, whichever command reads
// it: lo..hi (lo excluded when open), and at most a property of the model
// when bound, checked once the model is loaded (check_model_bounds). Seeds
// (F_U64) take any 64-bit value.
typedef enum { B_NONE, B_WIDTH, B_CONTEXT, B_NEW_TOKENS, B_VOCAB } Bound;
static const char *const BOUND_NAME[] = {"", "the model's hidden size", "the model's context", "the model's context less one prompt token",
                                         "the model's vocabulary"};
#define MAX_N 10000000            // counts: passages, examples, steps
#define MAX_TOKENS (1 << 30)      // lengths (checkpoint.c's bound on max_position_embeddings)
static const struct Range {
    const char *flag;
    double lo, hi;
    int open;                     // lo itself is not allowed
    Bound bound;
} RANGES[] = {
#define IN(flag, lo, hi, bound) {flag, lo, hi, 0, bound}
#define ABOVE(flag, lo, hi) {flag, lo, hi, 1, B_NONE}
    // sampling
    IN("--max-new", 1, MAX_TOKENS, B_NEW_TOKENS),   IN("--max-edit-tokens", 1, MAX_TOKENS, B_NEW_TOKENS),
    IN("--max-answer-tokens", 1, MAX_TOKENS, B_NEW_TOKENS),   IN("--temperature", 0, 100, B_NONE),
    IN("--top-k", 0, MAX_TOKENS, B_VOCAB),   ABOVE("--top-p", 0, 1),
    // ReST^EM
    IN("--rounds", 0, 1000, B_NONE),   IN("--samples", 1, 10000, B_NONE),   IN("--eval-samples", 1, 10000, B_NONE),
    IN("--keep", 0, 10000, B_NONE),   IN("--attempts", 1, 100000, B_NONE),   IN("--threshold", 0, 1, B_NONE),
    IN("--max-retention-drop", 0, 1, B_NONE),   IN("--m-rank", 1, MAX_TOKENS, B_WIDTH),   ABOVE("--m-alpha", 0, 1e4),
    ABOVE("--m-lr", 0, 1),   IN("--m-epochs", 1, 1000, B_NONE),   IN("--m-batch", 1, 10000, B_NONE),
    // inner loops
    IN("--lora-r", 1, MAX_TOKENS, B_WIDTH),   ABOVE("--lora-alpha", 0, 1e4),   ABOVE("--lr", 0, 1),   IN("--epochs", 1, 1000, B_NONE),
    IN("--batch", 1, 10000, B_NONE),   IN("--warmup", 0, MAX_N, B_NONE),   IN("--max-examples", 1, MAX_N, B_NONE),
    IN("--max-steps", 1, MAX_N, B_NONE),   IN("--max-views", 0, 1000, B_NONE),   IN("--max-tokens", 2, MAX_TOKENS, B_CONTEXT),
    IN("--max-doc-tokens", 2, MAX_TOKENS, B_CONTEXT),   IN("--cpt-epochs", 1, 1000, B_NONE),   ABOVE("--cpt-lr", 0, 1),
    IN("--cpt-batch", 1, 10000, B_NONE),   IN("--ttt-runs", 1, 100, B_NONE),   IN("--adapters-at-once", 1, MAX_ADAPTERS, B_NONE),   IN("--cpt-completions", 0, 10000, B_NONE),
    IN("--stored-k", 0, 10000, B_NONE),   IN("--train-stride", 0, MAX_N, B_NONE),
    // data, runs, ranks
    IN("--repeat", 1, 10000, B_NONE),   IN("--train-entries", 1, MAX_N, B_NONE),   IN("--train-scored", 1, MAX_N, B_NONE),   IN("--eval-entries", 1, MAX_N, B_NONE),
    IN("--eval-scored", 1, MAX_N, B_NONE),   IN("--n-train", 1, MAX_N, B_NONE),   IN("--n-eval", 1, MAX_N, B_NONE),   IN("--n-probe", 0, MAX_N, B_NONE),
    IN("--max-context-tokens", 0, MAX_TOKENS, B_CONTEXT),   IN("--to", 0, 1000, B_NONE),   IN("--gpus-per-node", 0, 1024, B_NONE),
#undef IN
#undef ABOVE
};
#define N_RANGES (sizeof RANGES / sizeof RANGES[0])
static int GIVEN[N_RANGES];      // on this command line (parse_number)

static const struct Range *range_of(const char *flag) {
    for (size_t i = 0; i < N_RANGES; i++)
        if (!strcmp(RANGES[i].flag, flag)) return &RANGES[i];
    return NULL;
}

// "1..64", "more than 0 and at most 1"; hi: the model's bound when known (else -1).
static void range_text(const struct Range *r, int hi, char *buf, size_t size) {
    char top[96];
    if (hi >= 0) snprintf(top, sizeof top, "%d (%s)", hi, BOUND_NAME[r->bound]);
    else if (r->bound) snprintf(top, sizeof top, "%s", BOUND_NAME[r->bound]);
    else snprintf(top, sizeof top, "%.10g", r->hi);
    if (r->open) snprintf(buf, size, "more than %.10g and at most %s", r->lo, top);
    else snprintf(buf, size, "in %.10g..%s", r->lo, top);
}

static void print_flags(const Flag *f, int n) {
    for (int i = 0; i < n; i++) {
        char def[64] = "", range[200] = "";
        switch (f[i].kind) {
        case F_STR: if (*(char **)f[i].dst) snprintf(def, sizeof def, " (default %s)", *(char **)f[i].dst); break;
        case F_INT: snprintf(def, sizeof def, " (default %d", *(int *)f[i].dst); break;
        case F_FLOAT: snprintf(def, sizeof def, " (default %g", *(float *)f[i].dst); break;
        case F_U64: snprintf(def, sizeof def, " (default %llu)", (unsigned long long)*(uint64_t *)f[i].dst); break;
        default: break;
        }
        const struct Range *r = f[i].kind == F_INT || f[i].kind == F_FLOAT ? range_of(f[i].name) : NULL;
        if (r) {
            char text[160];
            range_text(r, -1, text, sizeof text);
            snprintf(range, sizeof range, "; %s)", text);
        } else if (f[i].kind == F_INT || f[i].kind == F_FLOAT) snprintf(range, sizeof range, ")");
        const char *arg = f[i].kind == F_BOOL ? "" : f[i].kind == F_STR || f[i].kind == F_LIST ? " TEXT" : " N";
        char left[64];
        snprintf(left, sizeof left, "%s%s", f[i].name, arg);
        printf("  %-22s %s%s%s\n", left, f[i].help, def, range);
    }
}

// A number for f: 0; 2 after a usage message when v is not a number; 1 after
// "seal: --flag V: must be in LO..HI" when it is one out of range.
static int parse_number(const char *cmd, const Flag *f, const char *v) {
    char *end;
    errno = 0;
    if (f->kind == F_U64) {   // seeds: any 64-bit value
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end) return usage_error(cmd, "expected a non-negative integer", f->name);
        if (errno || strchr(v, '-')) { fprintf(stderr, "seal: %s %s: must be in 0..%llu\n", f->name, v, (unsigned long long)UINT64_MAX); return 1; }
        *(uint64_t *)f->dst = x;
        return 0;
    }
    const struct Range *r = range_of(f->name);
    if (!r) { fprintf(stderr, "seal %s: %s: no range (seal.c RANGES)\n", cmd, f->name); return 2; }
    double d = f->kind == F_FLOAT ? (float)strtod(v, &end) : (double)strtoll(v, &end, 10);   // the float it will be
    if (end == v || *end || isnan(d)) return usage_error(cmd, f->kind == F_FLOAT ? "expected a number" : "expected an integer", f->name);
    if (errno || d < r->lo || (r->open && d == r->lo) || d > r->hi) {
        char text[160];
        range_text(r, -1, text, sizeof text);
        fprintf(stderr, "seal: %s %s: must be %s\n", f->name, v, text);
        return 1;
    }
    GIVEN[r - RANGES] = 1;
    if (f->kind == F_INT) *(int *)f->dst = (int)d;
    else *(float *)f->dst = (float)d;
    return 0;
}

// Parses argv[1..] into flags; other words go to pos (at most max_pos).
// Returns 0, 2 after a usage message, or 1 after a value out of range.
static int parse_flags(const char *cmd, int argc, char **argv, const Flag *f, int nf, const char **pos, int max_pos, int *npos) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-' || !argv[i][1]) {
            if (*npos == max_pos) return usage_error(cmd, "unexpected argument", argv[i]);
            pos[(*npos)++] = argv[i];
            continue;
        }
        int k = 0, rc;
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
        } else if ((rc = parse_number(cmd, &f[k], v))) return rc;
    }
    return 0;
}

// The integer flags bounded by the models the command loaded (the smaller
// bound of the two when there is a teacher): a value given over its bound is
// an error; a default over it is lowered to it, with a note.
static int check_model_bounds(const Flag *f, int nf, const Config *a, const Config *b, char *err) {
    for (int i = 0; i < nf; i++) {
        const struct Range *r = f[i].kind == F_INT ? range_of(f[i].name) : NULL;
        if (!r || !r->bound) continue;
        int hi = INT32_MAX;
        for (const Config *c = a; c; c = c == a ? b : NULL) {
            const int v = r->bound == B_WIDTH ? c->dim : r->bound == B_CONTEXT ? c->max_pos : r->bound == B_NEW_TOKENS ? c->max_pos - 1 : c->vocab;
            if (v < hi) hi = v;
        }
        int *v = f[i].dst;
        if (*v <= hi) continue;
        if (GIVEN[r - RANGES]) {
            char text[160];
            range_text(r, hi, text, sizeof text);
            return errf(err, "%s %d: must be %s", f[i].name, *v, text);
        }
        if (ranks_root()) fprintf(stderr, "seal: note: %s is %d here, its default %d being more than %s\n", f[i].name, hi, *v, BOUND_NAME[r->bound]);
        *v = hi;
    }
    return 0;
}

// Where the command will write: a file (--json) or a directory made with its
// parents (--out, --cache). Checked before any work: an existing path must be
// of the right kind and writable; else a file's folder, or a directory's
// nearest existing ancestor, must be a directory this process can write in.
static int check_output(const char *flag, const char *path, int is_dir, char *err) {
    struct stat st;
    if (!path) return 0;
    if (!*path) return errf(err, "%s: an empty path", flag);
    if (stat(path, &st) == 0) {
        if (is_dir && !S_ISDIR(st.st_mode)) return errf(err, "%s %s: exists and is not a directory", flag, path);
        if (!is_dir && S_ISDIR(st.st_mode)) return errf(err, "%s %s: is a directory", flag, path);
        if (access(path, is_dir ? W_OK | X_OK : W_OK)) return errf(err, "%s %s: not writable: %s", flag, path, strerror(errno));
        return 0;
    }
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return errf(err, "%s: path too long", flag);
    for (;;) {
        char *slash = strrchr(dir, '/');
        while (slash && slash > dir && !slash[1]) { *slash = 0; slash = strrchr(dir, '/'); }   // trailing slashes
        if (!slash) { strcpy(dir, "."); break; }
        slash[slash == dir] = 0;   // "/x" -> "/"
        if (stat(dir, &st) == 0) break;
        if (!is_dir) return errf(err, "%s %s: no directory %s", flag, path, dir);
    }
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return errf(err, "%s %s: %s is not a directory", flag, path, dir);
    if (access(dir, W_OK | X_OK)) return errf(err, "%s %s: cannot write in %s: %s", flag, path, dir, strerror(errno));
    return 0;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

// --backend cpu|cuda|auto: auto is cuda when the binary has it and a device is
// present, else cpu. *cuda gets the choice. Returns 0, 1 (cuda asked for,
// none usable) or 2 (usage). has_cuda: the command runs on cuda at all.
static int pick_backend(const char *cmd, const char *backend, int has_cuda, int *cuda) {
    char why[ERR_MAX];
    *cuda = 0;
    if (!strcmp(backend, "cpu")) return 0;
    if (strcmp(backend, "cuda") && strcmp(backend, "auto")) return usage_error(cmd, "expected cpu, cuda or auto", backend);
    if (!strcmp(backend, "auto")) {
        *cuda = has_cuda && cuda_available(why);
        return 0;
    }
    if (!has_cuda) return usage_error(cmd, "this command runs on the cpu backend only so far", backend);
    if (!cuda_available(why)) {
        fprintf(stderr, "seal %s: --backend cuda: %s\n", cmd, why);
        return 1;
    }
    *cuda = 1;
    return 0;
}

// ----------------------------------------------------------------------------
// seal verify

static int cmd_verify(int argc, char **argv) {
    const char *backend = "auto", *dirs[256];
    Flag flags[] = {{"--backend", F_STR, &backend, "cpu, cuda (bf16, kernels.cu), or auto: cuda when built with it and a device is present"}};
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal verify FIXTURE... [flags]\n\n"
               "Reproduces verification fixtures written by a PyTorch reference (FORMATS.md):\n"
               "forward, backward and the fixture's AdamW steps, then prints one line per\n"
               "compared tensor with its max absolute and max relative error.\n\n");
        print_flags(flags, nf);
        printf("\nExit status: 0 when every tensor is within |ours-ref| <= %g + %g*max|ref| (cpu;\n"
               "cuda: %g + %g*max|ref|, trained tensors also 2*lr*steps), 1 when one is not, a fixture\n"
               "is malformed or --backend cuda finds no device, 2 on usage errors.\n",
               VERIFY_ATOL, VERIFY_RTOL, VERIFY_BF16_ATOL, VERIFY_BF16_RTOL);
        return 0;
    }
    int n, worst = 0, cuda, picked;
    if (parse_flags("verify", argc, argv, flags, nf, dirs, 256, &n)) return 2;
    if ((picked = pick_backend("verify", backend, 1, &cuda))) return picked;
    if (!n) return usage_error("verify", "give at least one fixture directory", NULL);
    for (int i = 0; i < n; i++) {
        char err[ERR_MAX];
        int rc = verify_fixture_on(dirs[i], cuda, stdout, err);
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
    g->text[seq] = xrealloc(g->text[seq], g->len[seq] + n + 1, 1);
    memcpy(g->text[seq] + g->len[seq], bytes, n);
    g->len[seq] += n;
    g->text[seq][g->len[seq]] = 0;
    if (g->stream) { fwrite(bytes, 1, n, stdout); fflush(stdout); }
    return g->stop && strstr(g->text[seq], g->stop) != NULL;
}

// Prompt ids: raw text gets <|begin_of_text|> in front (as Hugging Face's
// tokenizer does by default); a chat message goes through the chat template.
static int encode_prompt(const Tokenizer *tok, const Config *c, const char *text, int chat, ChatFormat fmt, int **ids, char *err) {
    if (chat) {
        ChatMsg msg = {"user", text};
        char *rendered = chat_render(fmt, &msg, 1, 1);
        int n = tok_encode(tok, rendered, strlen(rendered), 1, ids, err);
        free(rendered);
        return n;
    }
    int *body, n = tok_encode(tok, text, strlen(text), 0, &body, err);
    if (n < 0) return -1;
    *ids = xcalloc((size_t)n + 1, sizeof(int));
    (*ids)[0] = c->bos;
    memcpy(*ids + 1, body, n * sizeof(int));
    free(body);
    return n + 1;
}

// The tokenizer for model_dir: tok_path when given, else the .gguf's own or
// MODEL/tokenizer.json; and its chat format: detected from its special tokens,
// then the .gguf's template or MODEL/tokenizer_config.json's, then chat_name
// (--chat-format) when given. *templated (may be NULL): the model has a chat
// template of a format seal knows.
static Tokenizer *load_tokenizer(const char *model_dir, const char *tok_path, const char *chat_name, ChatFormat *fmt, int *templated, char *err) {
    char tpath[4096];
    int gguf = !tok_path && gguf_is_path(model_dir);
    if (!tok_path) { snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model_dir); tok_path = tpath; }
    Tokenizer *tok = gguf ? gguf_load_tokenizer(model_dir, err) : tok_load(tok_path, err);
    if (!tok) return NULL;
    *fmt = chat_detect(tok);
    ChatFormat found = CHAT_N_FORMATS;
    if (!gguf && !gguf_is_path(model_dir)) {   // a folder: its template, when it has one
        snprintf(tpath, sizeof tpath, "%s/tokenizer_config.json", model_dir);
        chat_detect_config(tpath, &found);
    }
    if (gguf && gguf_chat_format(model_dir, &found, err)) { tok_free(tok); return NULL; }
    if (found != CHAT_N_FORMATS) *fmt = found;
    if (templated) *templated = found != CHAT_N_FORMATS;
    if (chat_name && chat_format_parse(chat_name, fmt, err)) { tok_free(tok); return NULL; }
    return tok;
}

// The tokenizer's ids all have a row in the model's embedding; else an id past
// it would fail mid-run, naming neither file.
static int tok_fits(const Tokenizer *tok, const char *tok_path, const Model *m, const char *model_dir, char *err) {
    if (tok_vocab_size(tok) <= m->c.vocab) return 0;
    if (tok_path) return errf(err, "%s: the tokenizer has %d ids, more than the %d rows of %s's embedding", tok_path, tok_vocab_size(tok), m->c.vocab, model_dir);
    return errf(err, "%s: its tokenizer.json has %d ids, more than the %d rows of its embedding", model_dir, tok_vocab_size(tok), m->c.vocab);
}

// --weights: the copy of the frozen weights the CPU's KV cache reads (weights.h).
#define WEIGHTS_FLAG(w) {"--weights", F_STR, &(w), "CPU decoding reads fp32, bf16, q8_0, or native (default): a .gguf's own blocks, bf16 for a BF16 checkpoint, else fp32; q8_0+q8, native+q8: those weights times activations rounded to 8 bits (llama.cpp's way, faster, logits within ~2e-2)"}

// --constrain NAME for seal generate: its grammar; 1 after "seal: --constrain NAME: ..." when unknown.
static int parse_grammar(const char *name, const Grammar **g) {
    if (!name || (*g = grammar_find(name))) return 0;
    fprintf(stderr, "seal: --constrain %s: expected %s (%s) or %s (%s)\n", name, GRAMMAR_ARC_EDIT.name, GRAMMAR_ARC_EDIT.what,
            GRAMMAR_ARC_GRID.name, GRAMMAR_ARC_GRID.what);
    return 1;
}

// --arc-task FILE's prompt: SEAL's self-edit prompt (edit), or the answer
// prompt of its first test input with every demonstration (answer), in chat format f.
static int arc_task_prompt(const char *path, int answer, ChatFormat f, const Tokenizer *tok, int **ids, char *err) {
    Task t;
    if (arc_load_task(path, &t, err)) return -1;
    char *text = answer ? arc_prompt(t.train, t.n_train, &t.test[0].in, f) : arc_selfedit_prompt(&t, f);
    arc_free_task(&t);
    int n = text ? tok_encode(tok, text, strlen(text), 1, ids, err) : errf(err, "%s: out of memory for the prompt", path);
    free(text);
    return n;
}

// When decoding started (the first token of the batch) and the last token's time: decode's rate.
typedef struct { GenState *g; double first, last; long tokens; } GenClock;

static int on_token_timed(int seq, int token, void *ctx) {
    GenClock *k = ctx;
    double t = now_seconds();
    if (!k->tokens++) k->first = t;
    k->last = t;
    return on_token(seq, token, k->g);
}

static int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *tok_path = NULL, *stop = NULL, *backend = "auto", *weights = "native", *pos[1];
    const char *constrain = NULL, *arc_kind = "edit";
    StrList prompts = {0}, chats = {0}, arc_tasks = {0};
    int repeat = 1;
    SampleOpts o = {.max_new = 128, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    Flag flags[] = {
        {"--model", F_STR, &model_dir, "Hugging Face model folder (config.json, safetensors) or a .gguf file"},
        {"--adapter", F_STR, &adapter, "PEFT LoRA adapter folder to apply"},
        {"--tokenizer", F_STR, &tok_path, "tokenizer.json (default: MODEL/tokenizer.json, or the .gguf's own)"},
        {"--prompt", F_LIST, &prompts, "raw text to continue (repeat for a batch)"},
        {"--chat", F_LIST, &chats, "a user message, rendered with the model's chat template (repeatable)"},
        {"--arc-task", F_LIST, &arc_tasks, "an ARC task file: the prompt seal fewshot gives it (--arc-prompt), in the model's chat format (repeatable)"},
        {"--arc-prompt", F_STR, &arc_kind, "edit: SEAL's self-edit prompt; answer: the first test input after every demonstration; "
                                           "stderr then says how many outputs are valid"},
        {"--repeat", F_INT, &repeat, "each prompt this many times in the batch, each sampled on its own stream"},
        {"--constrain", F_STR, &constrain, "arc-edit: only a JSON self-edit of SEAL's schema; arc-grid: only an answer grid (default: off)"},
        {"--max-new", F_INT, &o.max_new, "tokens to generate at most"},
        {"--temperature", F_FLOAT, &o.temperature, "0 is greedy"},
        {"--top-k", F_INT, &o.top_k, "keep the k most likely tokens, 0 = off"},
        {"--top-p", F_FLOAT, &o.top_p, "nucleus sampling mass, 1 = off"},
        {"--seed", F_U64, &o.seed, "sampling seed"},
        {"--stop", F_STR, &stop, "stop a sequence when its text contains this string"},
        {"--backend", F_STR, &backend, "cpu, cuda (bf16), or auto: cuda when built with it and a device is present"},
        WEIGHTS_FLAG(weights),
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal generate --model DIR (--prompt TEXT | --chat TEXT | --arc-task FILE)... [flags]\n\n"
               "Continues prompts with the KV cache. One prompt streams its text to stdout as it\n"
               "is produced; several are generated as one batch and printed in order. Stops at any\n"
               "eos id of config.json, a --stop string, or --max-new tokens.\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos, cuda, picked;
    const Grammar *grammar = NULL;
    if ((picked = parse_flags("generate", argc, argv, flags, nf, pos, 0, &npos))) return picked;
    if ((picked = parse_grammar(constrain, &grammar))) return picked;
    if (strcmp(arc_kind, "edit") && strcmp(arc_kind, "answer")) { fprintf(stderr, "seal: --arc-prompt %s: expected edit or answer\n", arc_kind); return 1; }
    if ((picked = pick_backend("generate", backend, 1, &cuda))) return picked;
    if (!model_dir) return usage_error("generate", "--model is required", NULL);
    const int P = prompts.n + chats.n + arc_tasks.n, B = P * repeat, answer = !strcmp(arc_kind, "answer");
    if (!P) return usage_error("generate", "give --prompt, --chat or --arc-task", NULL);
    char err[ERR_MAX];
    Model m;
    Lora lora = {0};
    Tokenizer *tok = NULL;
    int rc = 1;
    int wkind = weights_parse(weights, err);
    if (wkind < 0) return usage_error("generate", err, NULL);
    if (model_load(&m, model_dir, err)) { fprintf(stderr, "seal: %s\n", err); return 1; }
    if (check_model_bounds(flags, nf, &m.c, NULL, err) || model_compact(&m, wkind, model_dir, err)) goto done;
    if (adapter && lora_load(&lora, &m.c, adapter, err)) goto done;
    if (adapter) model_attach_lora(&m, &lora);
    ChatFormat fmt;
    if (!(tok = load_tokenizer(model_dir, tok_path, NULL, &fmt, NULL, err)) || tok_fits(tok, tok_path, &m, model_dir, err)) goto done;
    if (grammar && !(o.constraint = constraint_new(grammar, tok, m.c.vocab, err))) goto done;
    int **ids = xcalloc(B, sizeof(int *)), *lens = xcalloc(B, sizeof(int)), **out = xcalloc(B, sizeof(int *)), *out_lens = xcalloc(B, sizeof(int));
    GenState g = {.tok = tok, .stop = stop, .stream = B == 1, .text = xcalloc(B, sizeof(char *)), .len = xcalloc(B, sizeof(size_t))};
    int ok = 1;
    for (int p = 0; p < P && ok; p++) {
        int chat = p >= prompts.n && p < prompts.n + chats.n, arc = p >= prompts.n + chats.n;
        lens[p] = arc ? arc_task_prompt(arc_tasks.items[p - prompts.n - chats.n], answer, fmt, tok, &ids[p], err)
                      : encode_prompt(tok, &m.c, chat ? chats.items[p - prompts.n] : prompts.items[p], chat, fmt, &ids[p], err);
        ok = lens[p] > 0;
        for (int r = 1; r < repeat && ok; r++) {   // copy r of prompt p is sequence r * P + p
            ids[r * P + p] = xcalloc((size_t)lens[p], sizeof(int));
            memcpy(ids[r * P + p], ids[p], (size_t)lens[p] * sizeof(int));
            lens[r * P + p] = lens[p];
        }
    }
    int stops[9], n_stop = 0, eot = tok_find(tok, chat_eot(fmt)), has = 0;   // eos ids, and the chat's end of turn
    for (int i = 0; i < m.c.n_eos && n_stop < 8; i++) has |= (stops[n_stop++] = m.c.eos[i]) == eot;
    if (arc_tasks.n && eot >= 0 && !has) stops[n_stop++] = eot;
    Backend *be = ok ? backend_new(cuda, err) : NULL;
    GenClock clock = {.g = &g};
    double t0 = now_seconds();
    if (be && be_generate(be, &m, (const int *const *)ids, lens, B, &o, stops, n_stop, on_token_timed, &clock, out, out_lens, err) == 0) {
        double t1 = now_seconds();
        for (int b = 0; B > 1 && b < B; b++) printf("=== %d ===\n%s\n", b, g.text[b] ? g.text[b] : "");
        if (B == 1) printf("\n");
        long tokens = 0;
        for (int b = 0; b < B; b++) tokens += out_lens[b];
        int valid = 0, n_arc = 0;
        for (int r = 0; r < repeat; r++)
            for (int p = prompts.n + chats.n; p < P; p++, n_arc++) {
                const char *text = g.text[r * P + p] ? g.text[r * P + p] : "";
                SelfEdit se;
                Grid grid;
                char why[ERR_MAX];
                valid += answer ? grid_parse(text, &grid) == 0 : selfedit_parse(text, &se, why) == 0;
            }
        if (n_arc) fprintf(stderr, "seal generate: %d of %d outputs are valid %s%s\n", valid, n_arc, answer ? "answer grids (grid_parse)" : "self-edits (selfedit_parse)",
                           o.constraint ? " (--constrain)" : "");
        fprintf(stderr, "seal generate: %ld new tokens in %.2f s (%.1f tokens/s); after the first token %.1f tokens/s\n", tokens, t1 - t0,
                tokens / (t1 - t0), clock.last > clock.first ? (clock.tokens - B) / (clock.last - clock.first) : 0.0);
        long masks;
        int states;
        if (o.constraint) {
            double cs = constraint_seconds(o.constraint, &masks, &states);
            fprintf(stderr, "seal generate: --constrain took %.3f s of the %.2f s (%.2f%%): %ld masks, %d automaton states cached\n", cs, t1 - t0,
                    100.0 * cs / (t1 - t0), masks, states);
        }
        rc = 0;
    }
    for (int b = 0; b < B; b++) { free(ids[b]); free(out[b]); free(g.text[b]); }
    free(ids); free(lens); free(out); free(out_lens); free(g.text); free(g.len);
    backend_close(be);
done:
    if (rc) fprintf(stderr, "seal: %s\n", err);
    constraint_free(o.constraint);
    tok_free(tok);
    if (lora.params.mem) lora_free(&lora);
    model_free(&m);
    return rc;
}

// ----------------------------------------------------------------------------
// seal fewshot

// "a,b,c" -> up to max items (pointers into a copy the caller frees).
static int split_list(const char *text, char **copy, const char **items, int max) {
    *copy = xstrdup(text);
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
    if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr)) { cJSON_Delete(j); return errf(err, "%s: expected a non-empty \"%s\" list of task ids", seal_file, key); }
    size_t cap = 0;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e)) cap += strlen(e->valuestring) + 1;
    char *p = *copy = xmalloc(cap + 1);   // copies of strings cJSON holds
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e) || !*e->valuestring || n == max) {   // a list that names no task would select every one
            free(*copy);
            *copy = NULL;
            cJSON_Delete(j);
            return errf(err, "%s: \"%s\" must list at most %d task ids (non-empty strings)", seal_file, key, max);
        }
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
    // the copy decoding reads (--weights): absent for fp32, as in run.json files from before it
    if (strcmp(model_weights_name(m), "fp32")) cJSON_AddStringToObject(j, "weights", model_weights_name(m));
}

// Prints the report and saves it as RUN/report.json, RUN/report.md (and --json
// FILE); markdown writes the table, and with inspect a line on `seal runs show` follows.
static int save_report(const cJSON *report, void (*markdown)(const cJSON *, FILE *), int inspect, const char *run_dir,
                       const char *json_path, char *err) {
    char *md;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    markdown(report, f);
    if (inspect) fprintf(f, "\ninspect with: seal runs show %s\n", run_dir);
    fclose(f);
    int rc = run_write_report(run_dir, md, report, json_path, err);
    free(md);
    return rc;
}

// Flags every ReST^EM command shares (o: its RestemOpts): how self-edits are
// sampled, and the M-step with its retention guard.
#define SAMPLING_FLAGS(o)                                                                   \
    {"--temperature", F_FLOAT, &(o).sampling.temperature, "self-edit sampling temperature"}, \
    {"--top-k", F_INT, &(o).sampling.top_k, "self-edit top-k, 0 = off"},                    \
    {"--top-p", F_FLOAT, &(o).sampling.top_p, "self-edit top-p"},                            \
    {"--max-edit-tokens", F_INT, &(o).sampling.max_new, "longest self-edit"}
#define MSTEP_FLAGS(o)                                                                                              \
    {"--m-rank", F_INT, &(o).m_rank, "M-step LoRA rank"},                                                          \
    {"--m-alpha", F_FLOAT, &(o).m_alpha, "M-step LoRA alpha"},                                                     \
    {"--m-lr", F_FLOAT, &(o).m_lr, "M-step learning rate"},                                                        \
    {"--m-epochs", F_INT, &(o).m_epochs, "M-step epochs"},                                                         \
    {"--replay", F_BOOL, &(o).replay, "M-step also trains on earlier rounds' accepted self-edits"},                \
    {"--max-retention-drop", F_FLOAT, &(o).max_retention_drop, "largest probe-score drop a promoted policy may show"}, \
    {"--seed", F_U64, &(o).seed, "seed of every sample, shuffle and initialisation"}

// What fewshot and knowledge share: the student and an optional teacher, the
// tokenizer and its chat format, the run directory and where the report goes.
typedef struct {
    const char *model_dir, *teacher_dir, *tok_path, *chat_name, *out, *json_path, *backend, *weights;
    int resume, accept_changed, gpus, cuda;
    int templated;                // the model has a chat template (load_tokenizer)
    Backend *be;                  // from --backend (cuda), made when the models load
    Model student, teacher;
    Tokenizer *tok;
    ChatFormat chat;
    Run run;
} Experiment;

// x: an Experiment, o: its RestemOpts, TASK: what a task is called ("task", "passage").
#define MODEL_FLAGS(x)                                                                                                   \
    {"--model", F_STR, &(x).model_dir, "the student: Hugging Face model folder or .gguf file (required)"},              \
    {"--teacher", F_STR, &(x).teacher_dir, "a model that proposes the self-edits (the RL policy); default: the student"}, \
    {"--tokenizer", F_STR, &(x).tok_path, "tokenizer.json (default: MODEL/tokenizer.json, or the .gguf's own)"},        \
    {"--chat-format", F_STR, &(x).chat_name, "llama3, chatml, smollm2, qwen2, qwen2.5 or raw (default: the model's)"}, \
    WEIGHTS_FLAG((x).weights)
#define RUN_FLAGS(x, o, TASK)                                                                      \
    {"--out", F_STR, &(x).out, "run directory (required)"},                                       \
    {"--resume", F_BOOL, &(x).resume, "continue the run in --out"},                               \
    {"--accept-changed-inputs", F_BOOL, &(x).accept_changed, "--resume even though an input file changed (logged)"}, \
    {"--rounds", F_INT, &(o).rounds, "ReST^EM rounds"},                                           \
    {"--samples", F_INT, &(o).samples, "self-edits per training " TASK " per round"},             \
    {"--eval-samples", F_INT, &(o).eval_samples, "self-edits per held-out " TASK}
// Under mpirun (a `make MPI=1` build): which GPU each rank takes.
#define GPU_FLAG(n) {"--gpus-per-node", F_INT, &(n), "under mpirun: each rank uses GPU (its rank on the node % N) with the cuda backend, 0 = all"}
#define BACKEND_FLAG(b) {"--backend", F_STR, &(b), "cpu, cuda (bf16, kernels.cu), or auto: cuda when built with it and a device is present"}
#define OUTPUT_FLAGS(x)                                                     \
    {"--json", F_STR, &(x).json_path, "also write the report here"},       \
    BACKEND_FLAG((x).backend), \
    GPU_FLAG((x).gpus)

// --gpus-per-node, then --backend: 0 when both are usable, 1 when cuda is asked
// for and none is usable. From here on every file read is an input of the
// run: run.json keeps its hash (fingerprints_start).
static int experiment_begin(const char *cmd, Experiment *x) {
    char err[ERR_MAX];
    if (x->accept_changed && !x->resume) return usage_error(cmd, "--accept-changed-inputs goes with --resume", NULL);
    if (ranks_use_gpus(x->gpus, err)) return usage_error(cmd, err, NULL);
    int picked = pick_backend(cmd, x->backend, 1, &x->cuda);
    if (picked) return picked;
    fingerprints_start();
    return 0;
}

// The student, the teacher (with --teacher) and the tokenizer with its chat format.
static int experiment_load(Experiment *x, char *err) {
    if (!(x->be = backend_new(x->cuda, err))) return -1;
    int kind = weights_parse(x->weights ? x->weights : "native", err);
    if (kind < 0 || model_load(&x->student, x->model_dir, err) || (x->teacher_dir && model_load(&x->teacher, x->teacher_dir, err)) ||
        model_compact(&x->student, kind, x->model_dir, err) || (x->teacher_dir && model_compact(&x->teacher, kind, x->teacher_dir, err))) return -1;
    x->tok = load_tokenizer(x->model_dir, x->tok_path, x->chat_name, &x->chat, &x->templated, err);
    return !x->tok || tok_fits(x->tok, x->tok_path, &x->student, x->model_dir, err) ||
           (x->teacher_dir && tok_fits(x->tok, x->tok_path, &x->teacher, x->teacher_dir, err)) ? -1 : 0;
}

// --out and --json, before anything is loaded: 0, or 1 after the message.
static int experiment_outputs(const Experiment *x) {
    char err[ERR_MAX];
    if (!check_output("--out", x->out, 1, err) && !check_output("--json", x->json_path, 0, err)) return 0;
    fprintf(stderr, "seal: %s\n", err);
    return 1;
}

// The flags bounded by the models (rank by width, lengths by context), once they are loaded.
static int experiment_bounds(const Experiment *x, const Flag *flags, int nf, char *err) {
    return check_model_bounds(flags, nf, &x->student.c, x->teacher_dir ? &x->teacher.c : NULL, err);
}

static Model *experiment_policy(Experiment *x) { return x->teacher_dir ? &x->teacher : &x->student; }

// A run's configuration: the command and the models; the caller adds its own.
static cJSON *experiment_config(const Experiment *x, const char *command) {
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "command", command);
    if (backend_is_cuda(x->be)) cJSON_AddStringToObject(config, "backend", "cuda");   // bf16 numbers: a resume stays on it
    model_config_json(&x->student, x->model_dir, config, "model");
    if (x->teacher_dir) model_config_json(&x->teacher, x->teacher_dir, config, "teacher");
    return config;
}

// Adds o to config (then freed) and opens or resumes the run in --out, over
// the input files read since experiment_begin.
static int experiment_open(Experiment *x, cJSON *config, const RestemOpts *o, char *err) {
    restem_opts_json(o, config);
    cJSON *inputs = fingerprints_take();
    RunMode mode = !x->resume ? RUN_NEW : x->accept_changed ? RUN_RESUME_CHANGED : RUN_RESUME;
    int rc = ranks_root() ? run_open(&x->run, x->out, config, inputs, mode, err) : 0;   // rank 0 owns the run directory
    cJSON_Delete(inputs);
    cJSON_Delete(config);
    return rc;
}

static void experiment_free(Experiment *x) {
    if (backend_is_cuda(x->be) && ranks_root())   // the device's whole use (weights, activations, the CUDA context), at its highest
        fprintf(stderr, "seal: peak device memory %.2f GiB\n", cuda_memory_peak() / 1073741824.0);
    run_close(&x->run);
    backend_close(x->be);
    tok_free(x->tok);
    if (x->teacher.layers) model_free(&x->teacher);
    if (x->student.layers) model_free(&x->student);
}

// seal fewshot's flags that name what to load.
// --adapters-at-once under mpirun: one at a time, as the ranks share out the
// self-edits one at a time.
static void adapters_one_rank(int *k) {
    if (*k <= 1 || ranks_size() <= 1) return;
    fprintf(stderr, "seal: --adapters-at-once %d: one at a time under mpirun (the ranks share the self-edits)\n", *k);
    *k = 1;
}

typedef struct {
    const char *train_dir, *eval_dir, *train_ids, *eval_ids, *seal_tasks, *targets;
    int all_tasks, attach_policy, trained_only, any_colors, selection[4];
} FewShotArgs;

// Checks the flags and sets what they choose in fs: 0, 2 after a usage
// message, or 1 after an error (an output path that cannot be written).
static int fewshot_configure(const FewShotArgs *a, const Experiment *x, FewShot *fs, RestemOpts *o) {
    if (!x->model_dir || !a->train_dir || !a->eval_dir || !x->out) return usage_error("fewshot", "--model, --train-dir, --eval-dir and --out are required", NULL);
    char err[ERR_MAX];
    if (!(fs->lora_targets = lora_targets_parse(a->targets, err))) return usage_error("fewshot", err, "--lora-targets");
    o->merge_policy = !a->attach_policy;
    o->keep_untrained = !a->trained_only;
    adapters_one_rank(&o->adapters_at_once);
    fs->unused_colors = !a->any_colors;
    if (fs->constrain && strcmp(fs->constrain, "edits") && strcmp(fs->constrain, "answers") && strcmp(fs->constrain, "both")) {
        fprintf(stderr, "seal: --constrain %s: expected edits, answers or both\n", fs->constrain);
        return 1;
    }
    return experiment_outputs(x);
}

// --constrain, once the tokenizer and models are loaded: the self-edits' grammar
// for the policy's sampling, the answers' for the student's.
static int fewshot_constrain(Experiment *x, FewShot *fs, RestemOpts *o, char *err) {
    if (!fs->constrain) return 0;
    const int edits = strcmp(fs->constrain, "answers") != 0, answers = strcmp(fs->constrain, "edits") != 0;
    if (edits && !(o->sampling.constraint = constraint_new(&GRAMMAR_ARC_EDIT, x->tok, experiment_policy(x)->c.vocab, err))) return -1;
    if (answers && !(fs->answer_constraint = constraint_new(&GRAMMAR_ARC_GRID, x->tok, x->student.c.vocab, err))) return -1;
    return 0;
}

// Both splits' tasks, the models and the tokenizer, whose chat format must have a token that ends a turn.
static int fewshot_load(const FewShotArgs *a, Experiment *x, FewShot *fs, char *err) {
    if (load_split(a->train_dir, a->train_ids, a->seal_tasks, "train", &fs->train, &fs->n_train, err) ||
        load_split(a->eval_dir, a->eval_ids, a->seal_tasks, "eval", &fs->eval, &fs->n_eval, err) || fewshot_check(fs, err))
        return -1;
    if (!a->all_tasks) {
        int n_train = fs->n_train, n_eval = fs->n_eval;
        fewshot_select(fs, a->selection);
        if (!fs->n_train || !fs->n_eval)
            return errf(err, "SEAL's task selection (--train-entries %d --train-scored %d --eval-entries %d --eval-scored %d) leaves no %s task; "
                        "--all-tasks uses every task", a->selection[0], a->selection[1], a->selection[2], a->selection[3], fs->n_train ? "held-out" : "training");
        if (ranks_root()) {
            int wrong = 0;
            for (int i = 0; i < fs->n_eval; i++) wrong += fs->eval_wrong[i] != 0;
            fprintf(stderr, "seal fewshot: SEAL's task selection: %d of %d training tasks get self-edits and are scored, %d of %d held-out tasks are "
                    "scored (%d of them counted wrong: no LoRA or an unscored test input); --all-tasks uses every task\n",
                    fs->n_train, n_train, fs->n_eval, n_eval, wrong);
        }
    }
    if (experiment_load(x, err)) return -1;
    fs->tok = x->tok;
    fs->chat = x->chat;
    fs->be = x->be;
    if (fs->chat == CHAT_RAW) return errf(err, "--chat-format raw: few-shot prompts need a chat format with a token that ends a turn");
    fs->eot = tok_find(x->tok, chat_eot(fs->chat));
    if (fs->eot < 0)
        return errf(err, "%s: the tokenizer has no %s token, which ends a turn in the %s chat format (see --chat-format)",
                    x->tok_path ? x->tok_path : x->model_dir, chat_eot(fs->chat), chat_format_name(fs->chat));
    return 0;
}

// Opens (or resumes) the run and runs ReST^EM on the tasks; rank 0 writes the report.
static int fewshot_run(Experiment *x, FewShot *fs, const RestemOpts *o, char *err) {
    Domain d;
    fewshot_domain(&d, fs);
    if (restem_check_prompts(&d, experiment_policy(x), x->tok, err)) return -1;
    cJSON *config = experiment_config(x, "fewshot");
    fewshot_config_json(fs, config);
    if (experiment_open(x, config, o, err)) return -1;
    if (ranks_root())
        fprintf(stderr, "seal fewshot: %d training tasks, %d held-out tasks, %d rounds, %s chat format, run %s%s%s\n", fs->n_train, fs->n_eval,
                o->rounds, chat_format_name(fs->chat), x->out, x->resume ? " (resumed)" : "", ranks_note());
    cJSON *report = cJSON_CreateObject();
    int rc = restem_run(&d, experiment_policy(x), &x->student, x->tok, &x->run, o, report, err) ||
             (ranks_root() && save_report(report, restem_report_markdown, 0, x->out, x->json_path, err));
    cJSON_Delete(report);
    return rc;
}

static int cmd_fewshot(int argc, char **argv) {
    FewShotArgs a = {.targets = "q_proj,v_proj,gate_proj,up_proj,down_proj", .selection = SEAL_SELECTION};
    const char *pos[1];
    Experiment x = {.backend = "auto"};
    RestemOpts o = fewshot_restem_defaults();   // fewshot.c
    FewShot fs = {0};
    fewshot_defaults(&fs);
    Flag flags[] = {
        MODEL_FLAGS(x),
        {"--train-dir", F_STR, &a.train_dir, "folder of ARC task JSON files for the E-step (required)"},
        {"--eval-dir", F_STR, &a.eval_dir, "folder of held-out ARC tasks (required)"},
        {"--train-ids", F_STR, &a.train_ids, "comma-separated task ids (default: --seal-tasks, else every task)"},
        {"--eval-ids", F_STR, &a.eval_ids, "comma-separated task ids (default: --seal-tasks, else every task)"},
        {"--seal-tasks", F_STR, &a.seal_tasks, "a JSON file with \"train\" and \"eval\" id lists (SEAL's selection)"},
        {"--train-entries", F_INT, &a.selection[0], "SEAL's selection: training tasks whose entry 0 is among the first N entries (by id) get self-edits"},
        {"--train-scored", F_INT, &a.selection[1], "SEAL's selection: ... and are scored when all their entries are among numpy's seed-0 shuffle's first N"},
        {"--eval-entries", F_INT, &a.selection[2], "SEAL's selection: held-out tasks that get self-edit LoRAs (the others count wrong)"},
        {"--eval-scored", F_INT, &a.selection[3], "SEAL's selection: held-out entries scored (seed-0 shuffle); the report's n"},
        {"--all-tasks", F_BOOL, &a.all_tasks, "no SEAL selection: every task gets self-edits and is scored"},
        RUN_FLAGS(x, o, "task"),
        {"--keep", F_INT, &o.keep_per_task, "accepted self-edits per task at most, 0 = all (SEAL)"},
        {"--threshold", F_FLOAT, &o.threshold, "lowest reward an accepted self-edit may have (SEAL: 1, a correct answer; 0 times the M-step on any model)"},
        {"--keep-trained-only", F_BOOL, &a.trained_only, "the filter keeps only self-edits that trained (SEAL keeps every correct one)"},
        {"--attempts", F_INT, &o.max_attempts, "draws per self-edit while its JSON does not parse"},
        {"--constrain", F_STR, &fs.constrain, "edits, answers or both: self-edits only JSON of SEAL's schema, answers only grids (beyond SEAL; default: off)"},
        {"--strict-edits", F_BOOL, &fs.strict_edits, "a self-edit with a missing or out-of-range field is drawn again (SEAL: 0 epochs, scored)"},
        {"--attach-policy", F_BOOL, &a.attach_policy, "the M-step adapter only attached while sampling; TTT and answers on the base (SEAL merges it)"},
        {"--any-colors", F_BOOL, &a.any_colors, "TTT colour permutations: any of 1..9 (SEAL: unused colours first)"},
        SAMPLING_FLAGS(o),
        {"--lora-r", F_INT, &fs.lora_r, "inner-loop LoRA rank"},
        {"--lora-alpha", F_FLOAT, &fs.lora_alpha, "inner-loop LoRA alpha"},
        {"--lora-targets", F_STR, &a.targets, "inner-loop LoRA modules"},
        {"--batch", F_INT, &fs.batch, "inner-loop batch size"},
        {"--group-by-length", F_BOOL, &fs.group_by_length, "inner-loop batches of similar lengths: the shuffled order sorted by length in windows of 16 batches, less padding (beyond SEAL)"},
        {"--warmup", F_INT, &fs.warmup, "inner-loop warm-up steps"},
        {"--max-tokens", F_INT, &fs.max_tokens, "drop TTT examples and inference views (prompt and answer) this long or longer"},
        {"--max-examples", F_INT, &fs.max_examples, "TTT examples per self-edit at most (SEAL: 250)"},
        {"--max-steps", F_INT, &fs.max_steps, "a self-edit over this many optimizer steps gets no training (SEAL: 375)"},
        {"--max-views", F_INT, &fs.max_views, "inference views per reward, 0 = all"},
        {"--max-answer-tokens", F_INT, &fs.max_answer_tokens, "longest greedy answer"},
        {"--adapters-at-once", F_INT, &o.adapters_at_once, "self-edits whose test-time adapters train together on the frozen base, a pass over all their rows a step (beyond SEAL; 1 under mpirun)"},
        {"--oracle", F_STR, &fs.oracle, "the fixed self-edit reported as the oracle"},
        MSTEP_FLAGS(o),
        {"--m-batch", F_INT, &o.m_batch, "M-step batch size"},
        OUTPUT_FLAGS(x),
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal fewshot --model DIR|FILE.gguf --train-dir DIR --eval-dir DIR --out RUN [flags]\n\n"
               "SEAL's few-shot experiment on ARC tasks: self-edits choose test-time-training data and\n"
               "settings, a fresh LoRA applies each, augmented voting rewards it, ReST^EM trains the\n"
               "policy. Writes RUN/ (run.json, edits.jsonl, rounds/K/, current, report.md).\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos, rc;
    if ((rc = parse_flags("fewshot", argc, argv, flags, nf, pos, 0, &npos)) || (rc = experiment_begin("fewshot", &x))) return rc;
    if ((rc = fewshot_configure(&a, &x, &fs, &o))) return rc;
    char err[ERR_MAX];
    rc = fewshot_load(&a, &x, &fs, err) || experiment_bounds(&x, flags, nf, err) || fewshot_constrain(&x, &fs, &o, err) || fewshot_run(&x, &fs, &o, err);
    if (rc) fprintf(stderr, "seal: %s\n", err);
    constraint_free(o.sampling.constraint);
    constraint_free(fs.answer_constraint);
    experiment_free(&x);
    arc_free_tasks(fs.train, fs.n_train);
    arc_free_tasks(fs.eval, fs.n_eval);
    free(fs.eval_wrong);
    return rc ? 1 : 0;
}

// ----------------------------------------------------------------------------
// seal knowledge

// Reads one passage file (SQuAD v1.1, SEAL's list, or JSON Lines), optionally
// picked by a subset file's index list, at most max passages; prints its summary.
static int load_passages(const char *what, const char *path, const char *subset, const char *key, int max, const SquadReadOpts *ro,
                         Passage **ps, int *n, SquadLoad *log, char *err) {
    if (squad_read(path, ro, ps, n, log, err) || (subset && squad_select(ps, n, subset, key, log, err))) return -1;
    char line[600];
    squad_load_summary(log, line, sizeof line);
    if (ranks_root()) {   // under mpirun, once
        fprintf(stderr, "seal knowledge: %s passages %s: %s", what, path, line);
        if (*n > max) fprintf(stderr, "; using the first %d", max);
        fprintf(stderr, "\n");
        for (int i = 0; i < log->n_notes; i++) fprintf(stderr, "  %s\n", log->notes[i]);
    }
    squad_keep(*ps, n, max);
    if (!*n) return errf(err, "%s: no usable passages", path);
    return 0;
}

// seal knowledge's flags that name what to load, or choose what is parsed into Knowledge and RestemOpts.
typedef struct {
    const char *train_path, *eval_path, *eval_subset, *subset_key, *targets, *m_targets, *style, *grader, *cpt_sizes, *cpt_sources, *filter;
    const char *judge_dir, *base_completions, *m_from;
    int n_train, n_eval, n_probe, no_passage, max_context, train_stride, same_passages, cpt_split_lines, no_in_context;
    Model judge;                  // --judge, with its tokenizer
    Tokenizer *judge_tok;
} KnowledgeArgs;

// --cpt-sizes: up to CPT_MAX_SIZES passage counts in 1..MAX_N; 0, 2 after a
// usage message (not a list of integers), or 1 (out of range, too many).
static int parse_cpt_sizes(const char *list, Knowledge *k) {
    char *copy;
    const char *items[CPT_MAX_SIZES + 1];
    int n = split_list(list, &copy, items, CPT_MAX_SIZES + 1), rc = 0;
    for (k->n_cpt_sizes = 0; k->n_cpt_sizes < n && !rc; k->n_cpt_sizes++) {
        char *end;
        errno = 0;
        long long v = strtoll(items[k->n_cpt_sizes], &end, 10);
        if (end == items[k->n_cpt_sizes] || *end) rc = usage_error("knowledge", "--cpt-sizes: expected comma-separated integers", list);
        else if (errno || v < 1 || v > MAX_N || k->n_cpt_sizes == CPT_MAX_SIZES) {
            fprintf(stderr, "seal: --cpt-sizes %s: expected up to %d sizes, each in 1..%d\n", list, CPT_MAX_SIZES, MAX_N);
            rc = 1;
        } else k->cpt_sizes[k->n_cpt_sizes] = (int)v;
    }
    free(copy);
    return rc;
}

// --cpt-sources: names of CPT_SOURCE_NAME; 0, or 2 after a usage message.
static int parse_cpt_sources(const char *list, Knowledge *k) {
    char *copy;
    const char *items[CPT_MAX_SIZES];
    int n = split_list(list, &copy, items, CPT_MAX_SIZES);
    k->cpt_sources = 0;
    for (int i = 0; i < n; i++) {
        int s = 0;
        while (s < CPT_SOURCES && strcmp(items[i], CPT_SOURCE_NAME[s])) s++;
        if (s == CPT_SOURCES) { free(copy); return usage_error("knowledge", "--cpt-sources: expected passage, base or seal", list); }
        k->cpt_sources |= 1u << s;
    }
    free(copy);
    return 0;
}

// Checks the flags and sets what they choose in k and o: 0, 2 after a usage
// message, or 1 after an error (an output path that cannot be written).
static int knowledge_configure(const KnowledgeArgs *a, const Experiment *x, Knowledge *k, RestemOpts *o) {
    if (!x->model_dir || !a->eval_path || !x->out || (o->rounds > 0 && !a->train_path))
        return usage_error("knowledge", "--model, --eval, --out (and --train when --rounds > 0) are required", NULL);
    char err[ERR_MAX];
    if ((k->style = squad_style_parse(a->style)) < 0) return usage_error("knowledge", "unknown self-edit style", a->style);
    if ((k->grader = squad_grader_parse(a->grader)) < 0) return usage_error("knowledge", "unknown grader (em, f1, em-f1, contains, judge)", a->grader);
    if ((k->grader == GRADE_JUDGE) != !!a->judge_dir) return usage_error("knowledge", "--grader judge and --judge MODEL go together", NULL);
    if (strcmp(a->filter, "best") && strcmp(a->filter, "best-gain") && strcmp(a->filter, "threshold"))
        return usage_error("knowledge", "--filter is best, best-gain or threshold", a->filter);
    o->best_per_task = strcmp(a->filter, "threshold") != 0;
    o->best_any = !strcmp(a->filter, "best");
    if (strcmp(a->m_from, "previous") && strcmp(a->m_from, "base")) return usage_error("knowledge", "--m-from is previous or base", a->m_from);
    o->m_from_previous = !strcmp(a->m_from, "previous");
    if (!a->same_passages) { o->train_per_round = a->n_train; o->train_stride = a->train_stride ? a->train_stride : a->n_train; }
    k->cpt_split_lines = a->cpt_split_lines;
    k->with_passage = !a->no_passage;
    k->in_context = !a->no_in_context;
    adapters_one_rank(&o->adapters_at_once);
    if (!(k->lora_targets = lora_targets_parse(a->targets, err))) return usage_error("knowledge", err, "--lora-targets");
    if (!(o->m_targets = lora_targets_parse(a->m_targets, err))) return usage_error("knowledge", err, "--m-targets");
    int rc;
    if ((rc = parse_cpt_sizes(a->cpt_sizes, k)) || (rc = parse_cpt_sources(a->cpt_sources, k))) return rc;
    return experiment_outputs(x);
}

// The models, the tokenizer and the passages: the held-out ones, and the
// training ones when there are rounds; the logs say how each file was read.
static int knowledge_load(KnowledgeArgs *a, Experiment *x, const RestemOpts *o, Knowledge *k, SquadLoad *train_log, SquadLoad *eval_log,
                          char *err) {
    k->tok = x->tok;
    k->chat = x->chat;
    k->be = x->be;
    const Config *c = &experiment_policy(x)->c;
    int has_eot = 0, eot = chat_eot(x->chat) ? tok_find(x->tok, chat_eot(x->chat)) : -1;
    for (int i = 0; i < c->n_eos; i++) has_eot |= c->eos[i] == eot;
    if (!x->chat_name && (!x->templated || !has_eot)) {   // a base model: SEAL prompts Qwen2.5-7B with raw text
        k->chat = CHAT_RAW;
        if (ranks_root())
            fprintf(stderr, "seal knowledge: %s %s: prompts are raw text, as SEAL prompts its base model (--chat-format to change)\n", x->model_dir,
                    x->templated ? "ends its text with no chat end token (a base model)" : "has no chat template");
    }
    // a self-edit may take up to --max-edit-tokens (SEAL: 8192), at most half the context; the passage fits beside it
    const int max_pos = x->student.c.max_pos < c->max_pos ? x->student.c.max_pos : c->max_pos;
    int reserve = o->sampling.max_new < max_pos / 2 ? o->sampling.max_new : max_pos / 2;
    int max_context = a->max_context ? a->max_context : max_pos - reserve - 256;
    SquadReadOpts ro = {x->tok, max_context > 0 ? max_context : 1};
    if (load_passages("held-out", a->eval_path, a->eval_subset, a->subset_key, a->n_eval, &ro, &k->eval, &k->n_eval, eval_log, err)) return -1;
    // each round a fresh set of --n-train passages (SEAL: 50 a round), unless --same-passages
    const int64_t want = o->train_stride ? (int64_t)o->train_stride * (o->rounds - 1) + a->n_train : a->n_train;
    if (o->rounds > 0 && load_passages("training", a->train_path, NULL, NULL, want < MAX_N ? (int)want : MAX_N, &ro, &k->train, &k->n_train, train_log, err))
        return -1;
    if (o->rounds > 1 && o->train_stride && k->n_train < want && ranks_root())
        fprintf(stderr, "seal knowledge: %d training passages, fewer than the %lld that %d rounds of fresh ones take: later rounds wrap around to the first\n",
                k->n_train, (long long)want, o->rounds);
    k->n_probe = a->n_probe < k->n_eval ? a->n_probe : k->n_eval;
    if (a->base_completions) {   // SEAL's stored completions (base_val.json) for the held-out passages
        Passage *stored;
        int n_stored;
        SquadLoad log = {0};
        if (squad_read(a->base_completions, NULL, &stored, &n_stored, &log, err)) return -1;
        int matched = squad_attach_completions(k->eval, k->n_eval, stored, n_stored);
        squad_free(stored, n_stored);
        if (ranks_root()) fprintf(stderr, "seal knowledge: --base-completions %s: completions for %d of %d held-out passages\n", a->base_completions, matched, k->n_eval);
        if (!matched) return errf(err, "%s: no passage with completions matches a held-out passage (same title and context)", a->base_completions);
    }
    if (a->judge_dir) {   // the judge grader's model: any model seal loads, in its own chat format
        int templated;
        ChatFormat jf;
        if (model_load(&a->judge, a->judge_dir, err) || !(a->judge_tok = load_tokenizer(a->judge_dir, NULL, NULL, &jf, &templated, err)) ||
            tok_fits(a->judge_tok, NULL, &a->judge, a->judge_dir, err))
            return -1;
        const char *jeot = chat_eot(jf);
        int judge_eot = jeot ? tok_find(a->judge_tok, jeot) : -1, ok = 0;
        for (int i = 0; i < a->judge.c.n_eos; i++) ok |= a->judge.c.eos[i] == judge_eot;
        k->judge = &a->judge;
        k->judge_tok = a->judge_tok;
        k->judge_chat = templated && ok ? jf : CHAT_RAW;
        k->judge_name = a->judge_dir;
    }
    return 0;
}

// Opens (or resumes) the run and runs ReST^EM and the evaluations; rank 0 writes the report.
static int knowledge_seal(const KnowledgeArgs *a, Experiment *x, Knowledge *k, const RestemOpts *o, const SquadLoad *train_log,
                          const SquadLoad *eval_log, char *err) {
    Domain d;
    knowledge_domain(&d, k);
    if (restem_check_prompts(&d, experiment_policy(x), x->tok, err)) return -1;
    cJSON *config = experiment_config(x, "knowledge");
    cJSON_AddStringToObject(config, "train_file", a->train_path ? a->train_path : "");
    cJSON_AddStringToObject(config, "eval_file", a->eval_path);
    knowledge_config_json(k, config);
    if (experiment_open(x, config, o, err)) return -1;
    if (ranks_root())
        fprintf(stderr, "seal knowledge: %d training passages, %d held-out passages, %d rounds, run %s%s%s\n", k->n_train, k->n_eval, o->rounds,
                x->out, x->resume ? " (resumed)" : "", ranks_note());
    cJSON *report = cJSON_CreateObject();
    int rc = knowledge_run(k, experiment_policy(x), &x->student, &x->run, o, o->rounds > 0 ? train_log : NULL, eval_log, report, err);
    if (!rc && ranks_root()) rc = save_report(report, knowledge_report_markdown, 1, x->out, x->json_path, err);
    cJSON_Delete(report);
    return rc;
}

// SEAL's knowledge values where they differ from restem_defaults.
static RestemOpts knowledge_restem_defaults(void) {
    RestemOpts o = restem_defaults();
    o.rounds = 2; o.samples = 5; o.eval_samples = 1; o.keep_per_task = 1; o.threshold = 0;
    o.sampling.max_new = 8192; o.sampling.temperature = 1.0f; o.sampling.top_p = 0.95f;   // make_squad_data.sh
    o.m_rank = 64; o.m_alpha = 128; o.m_lr = 3e-4f; o.m_epochs = 2; o.m_batch = 5;
    return o;
}

static int cmd_knowledge(int argc, char **argv) {
    KnowledgeArgs a = {.subset_key = "val_eval_200", .targets = "q_proj,v_proj", .m_targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                       .style = "implications", .grader = "em-f1", .cpt_sizes = "200", .cpt_sources = "passage,base,seal", .filter = "best",
                       .m_from = "previous", .n_train = 50, .n_eval = 200, .n_probe = 20};
    const char *pos[1];
    Experiment x = {.backend = "auto"};
    RestemOpts o = knowledge_restem_defaults();
    Knowledge k = {0};
    knowledge_defaults(&k);
    knowledge_official(&k);
    Flag flags[] = {
        MODEL_FLAGS(x),
        {"--train", F_STR, &a.train_path, "passages for the E-step: SQuAD v1.1, SEAL's list or JSON Lines (required with --rounds > 0)"},
        {"--eval", F_STR, &a.eval_path, "held-out passages, same formats (required)"},
        {"--eval-subset", F_STR, &a.eval_subset, "a JSON object whose --subset-key list picks --eval passages by index (SEAL's seal_subsets.json)"},
        {"--subset-key", F_STR, &a.subset_key, "the list in --eval-subset"},
        {"--n-train", F_INT, &a.n_train, "training passages a round (SEAL: 50)"},
        {"--train-stride", F_INT, &a.train_stride, "round k's passages start at (k-1) x N in --train, 0 = --n-train (a fresh set each round)"},
        {"--same-passages", F_BOOL, &a.same_passages, "every round samples the first --n-train passages again"},
        {"--n-eval", F_INT, &a.n_eval, "held-out passages at most (SEAL: 200)"},
        {"--n-probe", F_INT, &a.n_probe, "held-out passages the retention probe answers with the policy itself"},
        {"--max-context-tokens", F_INT, &a.max_context, "skip passages longer than this, 0 = the model's context less the self-edit and prompt"},
        RUN_FLAGS(x, o, "passage"),
        {"--filter", F_STR, &a.filter, "best: each passage's best self-edit (SEAL); best-gain: the same when it beats no edit; threshold: every one >= --threshold"},
        {"--keep", F_INT, &o.keep_per_task, "accepted self-edits per passage at most"},
        {"--threshold", F_FLOAT, &o.threshold, "lowest reward an accepted self-edit may have"},
        {"--attempts", F_INT, &o.max_attempts, "samples per self-edit when earlier ones have no statements"},
        {"--style", F_STR, &a.style, "self-edit: implications, implications-long, implications-very-long, rewrite, self-qa"},
        {"--no-passage", F_BOOL, &a.no_passage, "train on the statements alone (SEAL adds the passage as a document)"},
        SAMPLING_FLAGS(o),
        {"--lora-r", F_INT, &k.lora_r, "inner-loop LoRA rank"},
        {"--lora-alpha", F_FLOAT, &k.lora_alpha, "inner-loop LoRA alpha"},
        {"--lora-targets", F_STR, &a.targets, "inner-loop LoRA modules"},
        {"--epochs", F_INT, &k.epochs, "inner-loop epochs"},
        {"--lr", F_FLOAT, &k.lr, "inner-loop learning rate"},
        {"--batch", F_INT, &k.batch, "inner-loop batch size"},
        {"--max-doc-tokens", F_INT, &k.max_doc_tokens, "training documents are cut at this many tokens"},
        {"--max-answer-tokens", F_INT, &k.max_answer_tokens, "longest greedy answer"},
        {"--ttt-runs", F_INT, &k.ttt_runs, "inner loops per training self-edit, rewarded by their mean (SEAL: 3; held-out: 1)"},
        {"--adapters-at-once", F_INT, &o.adapters_at_once, "self-edits whose inner loops (each --ttt-runs) train together on the frozen base, a pass over all their rows a step (beyond SEAL; 1 under mpirun)"},
        {"--grader", F_STR, &a.grader, "em, f1, em-f1 (their mean), contains, or judge (with --judge)"},
        {"--judge", F_STR, &a.judge_dir, "--grader judge: a model (folder or .gguf) that answers SEAL's yes/no grading prompt"},
        {"--base-completions", F_STR, &a.base_completions, "SEAL's stored self-edits for the held-out passages (base_val.json): a row, and CPT's base data"},
        {"--stored-k", F_INT, &k.stored_k, "stored completions per passage the stored row trains on, one inner loop each"},
        {"--no-in-context", F_BOOL, &a.no_in_context, "leave out the in-context row (each held-out passage's questions asked behind it, no training)"},
        {"--cpt-sizes", F_STR, &a.cpt_sizes, "continued pretraining: passages per update, comma-separated (capped at --n-eval; empty: none)"},
        {"--cpt-sources", F_STR, &a.cpt_sources, "continued pretraining trains on the passages plus: passage (nothing), base, seal"},
        {"--cpt-epochs", F_INT, &k.cpt_epochs, "continued-pretraining epochs"},
        {"--cpt-lr", F_FLOAT, &k.cpt_lr, "continued-pretraining learning rate"},
        {"--cpt-batch", F_INT, &k.cpt_batch, "continued-pretraining batch size"},
        {"--cpt-completions", F_INT, &k.cpt_completions, "continued pretraining: self-edits per passage at most, 0 = all logged"},
        {"--cpt-split-lines", F_BOOL, &a.cpt_split_lines, "continued pretraining: a statement a line, the passage once (SEAL's CPT.sh: each self-edit whole, then the passage)"},
        MSTEP_FLAGS(o),
        {"--m-targets", F_STR, &a.m_targets, "M-step LoRA modules"},
        {"--m-batch", F_INT, &o.m_batch, "M-step batch size"},
        {"--m-from", F_STR, &a.m_from, "previous: round k's M-step trains round k-1's policy further (SEAL); base: a fresh adapter each round"},
        OUTPUT_FLAGS(x),
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal knowledge --model DIR|FILE.gguf --train FILE --eval FILE --out RUN [flags]\n\n"
               "SEAL's knowledge incorporation: the policy reads a passage and writes implications, a\n"
               "fresh LoRA trains on them, and the reward is the updated model's answers to the\n"
               "passage's questions asked without it (SQuAD exact match / F1). ReST^EM keeps each\n"
               "passage's best self-edit and trains the policy on them. Passage files: SQuAD v1.1,\n"
               "SEAL's data/squad lists, or JSON Lines of {\"id\", \"context\", \"questions\":\n"
               "[{\"question\", \"answers\": [..]}]}. Writes RUN/ and the table of the paper (report.md).\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos, rc;
    if ((rc = parse_flags("knowledge", argc, argv, flags, nf, pos, 0, &npos)) || (rc = experiment_begin("knowledge", &x))) return rc;
    if ((rc = knowledge_configure(&a, &x, &k, &o))) return rc;
    char err[ERR_MAX];
    SquadLoad train_log = {0}, eval_log = {0};
    rc = experiment_load(&x, err) || experiment_bounds(&x, flags, nf, err) || knowledge_load(&a, &x, &o, &k, &train_log, &eval_log, err) ||
         knowledge_seal(&a, &x, &k, &o, &train_log, &eval_log, err);
    if (rc) fprintf(stderr, "seal: %s\n", err);
    experiment_free(&x);
    tok_free(a.judge_tok);
    if (a.judge.layers) model_free(&a.judge);
    squad_free(k.train, k.n_train);
    squad_free(k.eval, k.n_eval);
    return rc ? 1 : 0;
}

// ----------------------------------------------------------------------------
// seal demo

static int cmd_demo(int argc, char **argv) {
    DemoOpts o = {.seed = 1, .adapters_at_once = 1};
    const char *pos[1];
    int gpus = 0;
    const char *backend = "auto";
    Flag flags[] = {
        {"--seed", F_U64, &o.seed, "the world, the model and every sample; the same seed gives the same table"},
        {"--quick", F_BOOL, &o.quick, "a much smaller world and model (well under a minute): an end-to-end check"},
        {"--fresh", F_BOOL, &o.fresh, "rebuild the cached base model"},
        {"--cache", F_STR, &o.cache, "base-model cache (default $XDG_CACHE_HOME/seal/demo or ~/.cache/seal/demo)"},
        {"--out", F_STR, &o.out, "run directory (default seal-runs/demo-SCALE-seedS-TIME)"},
        {"--json", F_STR, &o.json, "also write the report here"},
        {"--adapters-at-once", F_INT, &o.adapters_at_once, "self-edits whose test-time adapters train together (seal fewshot's and seal knowledge's flag)"},
        BACKEND_FLAG(backend),
        GPU_FLAG(gpus),
    };
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal demo [knowledge] [flags]\n\n"
               "SEAL's few-shot loop end to end with nothing to download: generates ARC-like tasks,\n"
               "trains a tokenizer and pretrains a tiny Llama (cached), then runs self-edits, test-time\n"
               "training, voting rewards and ReST^EM, and prints the table of the paper beside ours.\n"
               "`seal demo knowledge` does the same for knowledge incorporation, on passages about\n"
               "fictional places: implications as self-edits, no-context questions as the reward.\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int npos, rc;
    if ((rc = parse_flags("demo", argc, argv, flags, nf, pos, 1, &npos))) return rc;
    if (npos && strcmp(pos[0], "knowledge")) return usage_error("demo", "unknown demo (knowledge is the other one)", pos[0]);
    adapters_one_rank(&o.adapters_at_once);
    char err[ERR_MAX];
    if (ranks_use_gpus(gpus, err)) return usage_error("demo", err, NULL);
    if (check_output("--out", o.out, 1, err) || check_output("--json", o.json, 0, err) || check_output("--cache", o.cache, 1, err)) {
        fprintf(stderr, "seal: %s\n", err);
        return 1;
    }
    int cuda, picked = pick_backend("demo", backend, 1, &cuda);
    if (picked) return picked;
    if (!(o.be = backend_new(cuda, err)) || (npos ? demo_knowledge_run(&o, err) : demo_run(&o, err))) {
        fprintf(stderr, "seal: %s\n", err);
        backend_close(o.be);
        return 1;
    }
    backend_close(o.be);
    return 0;
}

// ----------------------------------------------------------------------------
// seal runs show RUN | seal runs rollback RUN --to K | seal runs plot RUN [-o FILE.svg]

static int cmd_runs(int argc, char **argv) {
    int to = -1;
    const char *pos[2], *svg = NULL;
    Flag flags[] = {{"--to", F_INT, &to, "rollback: the round to make current (0 = the base policy)"},
                    {"-o", F_STR, &svg, "plot: the SVG file to write (default RUN/plot.svg)"}};
    const int nf = sizeof flags / sizeof flags[0];
    if (wants_help(argc, argv)) {
        printf("usage: seal runs show RUN\n       seal runs rollback RUN --to K\n       seal runs plot RUN [-o FILE.svg]\n\n"
               "show: rounds, self-edits sampled/valid/trained/accepted, rewards, metrics, the current round.\n"
               "rollback: make round K's policy current again (the later rounds stay on disk).\n"
               "plot: one SVG of the run: held-out success per round beside the baseline and the oracle, self-edits\n"
               "accepted, the directive mix, the retention probe, seconds per phase.\n\n");
        print_flags(flags, nf);
        return 0;
    }
    int n, rc;
    if ((rc = parse_flags("runs", argc, argv, flags, nf, pos, 2, &n))) return rc;
    if (n != 2) return usage_error("runs", "expected show RUN, plot RUN or rollback RUN --to K", NULL);
    char err[ERR_MAX];
    if (!strcmp(pos[0], "show")) rc = run_show(pos[1], stdout, err);
    else if (!strcmp(pos[0], "plot")) {
        if (!(rc = plot_run(pos[1], svg, err))) printf("%s%s written\n", svg ? svg : pos[1], svg ? "" : "/plot.svg");
    } else if (!strcmp(pos[0], "rollback")) {
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
    {"tokenize", "encode JSON lines of text to token ids, or decode them back", tokenize_cmd},
    {"demo", "the whole SEAL few-shot loop on a built-in world, in minutes on a CPU", cmd_demo},
    {"fewshot", "SEAL's few-shot ARC experiment: self-edits, TTT, voting reward, ReST^EM", cmd_fewshot},
    {"knowledge", "SEAL's knowledge incorporation: passages, implications, no-context QA reward, ReST^EM", cmd_knowledge},
    {"runs", "show or plot a run directory, or roll its policy back to an earlier round", cmd_runs},
};

static void print_help(void) {
    printf("seal: SEAL (Self-Adapting Language Models) in C\n\nusage: seal COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    printf("\n`seal COMMAND --help` lists every flag of COMMAND with its default.\n");
}

static int run_command(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "seal: unknown command \"%s\" (see seal --help)\n", argv[1]);
    return 2;
}

// Under mpirun every rank runs the same command: rank 0 the loop and the run
// directory, the others the self-edits it hands them (ranks.h).
int main(int argc, char **argv) {
    // Activations are allocated per step; served from the heap rather than
    // fresh mmaps, they cost a memset instead of page faults (a sixth of the
    // demo's test-time training was the kernel zeroing pages).
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    if (ranks_init(&argc, &argv)) return 1;
    return ranks_finish(run_command(argc, argv));
}
