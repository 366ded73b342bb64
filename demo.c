// demo.c: see demo.h. Three phases, each with progress and an ETA:
//   1. the world: procedural ARC-like tasks (demo_tasks.c), split into
//      pretraining, SEAL-training and held-out tasks;
//   2. the base model (cached): a tokenizer.json trained on the world's text
//      and a tiny Llama pretrained on (a) ARC-like prompts and answers and (b)
//      self-edit prompts followed by valid self-edits with random directives,
//      so that the untrained policy writes valid but undirected self-edits;
//   3. SEAL itself: the same fewshot domain and ReST^EM code as a real run.
#include "demo.h"
#include "demo_tasks.h"
#include "fewshot.h"
#include "generate.h"
#include "ranks.h"
#include "restem.h"
#include "train.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// Everything that sets the size of the miniature.
typedef struct {
    const char *name;
    int n_pretrain, n_train, n_eval;         // tasks per split
    int n_merges;                            // tokenizer merges learned from the world's text
    int dim, layers, heads, kv_heads, hidden;
    int copy_epochs, pre_epochs, pre_batch;  // most epochs of the query-only copies, then of the rest (see task_texts)
    float pre_lr, pre_lr2;                   // their learning rates
    float replay_share, selfedit_share;      // copies replayed in the second stage; pretraining tasks that also teach the self-edit format
    int rounds, samples, eval_samples;
    int lora_r, max_examples, max_steps, max_views, max_answer_tokens;
    int probes;                              // fresh grids that check the copy after each epoch
} Scale;

static const Scale FULL = {"full", 2000, 6, 6, 400, 128, 4, 4, 2, 352, 8, 8, 4, 3e-3f, 1e-3f, 0.2f, 0.5f,
                           1, 8, 3, 16, 16, 64, 6, 40, 20};
static const Scale QUICK = {"quick", 40, 2, 2, 200, 32, 1, 2, 1, 64, 1, 1, 4, 2e-3f, 2e-3f, 0.2f, 0.5f,
                            1, 2, 1, 4, 4, 8, 2, 40, 2};

static const char *SPECIALS[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};

// A valid self-edit with directives drawn at random, whatever the task: what
// the base policy learns to write. Each augmentation group is on one time in
// four (at one in two, a self-edit would enable none of them once in 16).
static SelfEdit random_selfedit(Rng *r) {
    static const float lrs[] = {1e-4f, 3e-4f, 1e-3f, 3e-3f, 1e-2f};
    SelfEdit se;
    se.basic = rng_next(r) % 4 == 0;
    se.size = rng_next(r) % 4 == 0;
    se.chain = rng_next(r) % 4 == 0;
    se.repeat = rng_next(r) % 4 == 0;
    se.output_only = rng_next(r) & 1;
    se.lr = lrs[rng_next(r) % 5];
    se.epochs = 1 + (int)(rng_next(r) % 8);
    return se;
}

void demo_texts_add(DemoTexts *t, char *prompt, char *target, int kind) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->prompt = xrealloc(t->prompt, (size_t)t->cap, sizeof(char *));
        t->target = xrealloc(t->target, (size_t)t->cap, sizeof(char *));
        t->kind = xrealloc(t->kind, (size_t)t->cap, sizeof(int));
    }
    t->prompt[t->n] = prompt;
    t->target[t->n] = target;
    t->kind[t->n++] = kind;
}

void demo_texts_free(DemoTexts *t) {
    for (int i = 0; i < t->n; i++) { free(t->prompt[i]); free(t->target[i]); }
    free(t->prompt);
    free(t->target);
    free(t->kind);
}

// A random 3x3 grid, the SEAL tasks' size, each cell coloured 1..9 with odds 0.6.
static void random_grid(Rng *r, Grid *g) {
    g->h = g->w = 3;
    for (int i = 0; i < 9; i++) g->c[i] = rng_uniform(r) < 0.6f ? (uint8_t)(1 + rng_next(r) % 9) : 0;
}

// How many of n fresh random grids the model copies exactly (greedy), each
// behind demos (0: none; else 2 or 3, alternately) identity demonstrations;
// -1 on error.
static int copies_exact(const Model *m, const Tokenizer *tok, int eot, uint64_t seed, int n, int demos, char *err) {
    Rng r;
    rng_seed(&r, seed ^ 0xc0b1);
    int good = 0;
    for (int i = 0; i < n; i++) {
        Pair id[4];
        int nd = demos ? 2 + i % 2 : 0;
        for (int k = 0; k <= nd; k++) { random_grid(&r, &id[k].in); id[k].out = id[k].in; }
        char *prompt = arc_prompt(id, nd, &id[nd].in, CHAT_LLAMA3), *want = arc_answer(&id[nd].in), *got = NULL;
        int *ids = NULL, *out = NULL, n_ids = prompt ? tok_encode(tok, prompt, strlen(prompt), 1, &ids, err) : -1, n_out = 0;
        SampleOpts so = {.max_new = 40};
        const int *p = ids;
        size_t len = 0;
        if (n_ids > 0 && !generate(m, &p, &n_ids, 1, &so, &eot, 1, NULL, NULL, &out, &n_out, err)) got = tok_decode(tok, out, n_out, &len, err);
        good += got && strncmp(got, want, strlen(want)) == 0;
        int failed = !got;
        free(prompt); free(want); free(got); free(ids); free(out);
        if (failed) return -1;
    }
    return good;
}

// What the base learns from a pretraining task: ARC's prompt format and its
// most basic prior, that an answer is built from the test grid's cells. First
// (kind 1) as many query-only identity tasks as the task has pairs, on random
// grids, the loss on the answer only: with the loss on the random prompt cells
// too, the copy came late or not at all in the budget. Then (kind 2) one
// identity task with two or three demonstrations, the loss on every token (the
// demonstrations' outputs are copies too), so that the copy survives a prompt
// that has some, and sometimes (kind 0) the task's self-edit prompt with a
// random self-edit, the loss on the self-edit only. Reading a task's own rule
// off its demonstrations in context takes far longer than the demo's budget
// (see README).
static void task_texts(const Task *t, Rng *r, float selfedit_share, DemoTexts *out) {
    Pair id[4];
    for (int i = 0; i <= t->n_train; i++) {
        random_grid(r, &id[0].in);
        demo_texts_add(out, arc_prompt(NULL, 0, &id[0].in, CHAT_LLAMA3), arc_answer(&id[0].in), 1);
    }
    int n = 2 + (int)(rng_next(r) % 2);
    for (int k = 0; k <= n; k++) {
        random_grid(r, &id[k].in);
        id[k].out = id[k].in;
    }
    demo_texts_add(out, arc_prompt(id, n, &id[n].in, CHAT_LLAMA3), arc_answer(&id[n].in), 2);
    if (rng_uniform(r) < selfedit_share) {
        SelfEdit se = random_selfedit(r);
        demo_texts_add(out, arc_selfedit_prompt(t, CHAT_LLAMA3), selfedit_to_json(&se), 0);
    }
}

typedef struct { double t0; const char *what; } Progress;

static void pretrain_progress(int step, int total, float loss, void *ctx) {
    Progress *p = ctx;
    double el = now_seconds() - p->t0;
    if (step % 10 && step != total) return;
    progress(step == total, "[2/3 %s] step %d/%d loss %.3f | %.0f s, ~%.0f s left", p->what, step, total, loss, el,
             step ? el / step * (total - step) : 0.0);
    if (step == total) progress_end();
}

int demo_write_file(const char *dir, const char *name, const char *text, char *err) {
    char path[4400];
    return path_join(path, sizeof path, dir, name, err) || write_file_atomic(path, text, strlen(text), err) ? -1 : 0;
}

// A demo's base before pretraining: the tokenizer trained as tok_json (also
// written to dir/tokenizer.json) and a random Llama of the given shape on it,
// ready for full training. 0, or -1 with err (*tok and m set as far as they got).
int demo_base_init(const char *dir, const char *tok_json, int dim, int hidden, int layers, int heads, int kv_heads, uint64_t seed,
                   Tokenizer **tok, Model *m, char *err) {
    char why[ERR_MAX];
    *tok = tok_json ? tok_load_json(tok_json, "demo tokenizer.json", why) : NULL;
    if (!*tok) return tok_json ? errf(err, "%s", why) : errf(err, "demo: the tokenizer trainer failed");
    if (demo_write_file(dir, "tokenizer.json", tok_json, err)) return -1;
    const int eot = tok_find(*tok, "<|eot_id|>");
    Config c = {.dim = dim, .hidden = hidden, .n_layers = layers, .n_heads = heads, .n_kv_heads = kv_heads, .head_dim = dim / heads,
                .vocab = tok_vocab_size(*tok), .norm_eps = 1e-5f, .rope_theta = 10000.0f, .tied = 1, .max_pos = 4096,
                .bos = tok_find(*tok, "<|begin_of_text|>"), .eos = {eot}, .n_eos = 1};
    if (model_init(m, &c, err)) return -1;
    model_random(m, seed, 0.02f);
    return model_train_full(m) ? errf(err, "out of memory") : 0;
}


// The end of every demo base: pretrain m (the full model) on ex[pt->first..n_ex), save it into
// tmp beside its tokenizer.json, and move tmp into place as dir; rc is the
// builder's status so far (nonzero: only clean up). Frees ex, m and tok.
int demo_pretrain_save(Model *m, Tokenizer *tok, Example *ex, int n_ex, const DemoPretrain *pt, const char *tmp, const char *dir,
                       double t0, int rc, char *err) {
    if (!rc && pt->epochs > 0) {   // epochs 0: the caller trained it
        long tokens = 0;
        for (int i = pt->first; i < n_ex; i++) tokens += ex[i].len;
        fprintf(stderr, "[2/3 pretraining] %.2fM-parameter Llama, %d sequences, %.0f tokens on average, %d epochs\n",
                m->params.total / 1e6, n_ex - pt->first, (double)tokens / (n_ex - pt->first), pt->epochs);
        SftOpts so = sft_defaults();
        so.lr = pt->lr;
        so.epochs = pt->epochs;
        so.batch = pt->batch;
        so.warmup = 20;
        so.seed = pt->seed;
        Progress pr = {now_seconds(), "pretraining"};
        so.progress = pretrain_progress;
        so.progress_ctx = &pr;
        SftStats st;
        rc = sft(m, ex + pt->first, n_ex - pt->first, &so, &st, err);
        if (!rc && pt->epochs > 1)
            fprintf(stderr, "[2/3 pretraining] mean loss %.3f in the first epoch, %.3f in the last, %.0f s\n", st.first_loss, st.last_loss, st.seconds);
        else if (!rc)
            fprintf(stderr, "[2/3 pretraining] mean loss %.3f, %.0f s\n", st.last_loss, st.seconds);
    }
    examples_free(ex, n_ex);
    if (!rc) rc = model_save(m, tmp, err);
    if (!rc && rename(tmp, dir) != 0) rc = errf(err, "%s: cannot move the built base into place: %s", dir, strerror(errno));
    if (m->layers) model_free(m);
    tok_free(tok);
    if (!rc) fprintf(stderr, "[2/3 base model] built in %.0f s, cached in %s\n", now_seconds() - t0, dir);
    return rc;
}

// One stage of the base: epochs of the full model on ex[0..n) until the copy
// check on `probes` fresh grids (behind identity demonstrations when demos
// is set) passes for 9 in 10, or max_epochs run out. The copy is learnt abruptly, after a number of
// steps that varies a lot with the initialisation, the data order and the
// machine's rounding (-march=native, OpenBLAS's kernels, the thread count):
// seed 1's base passed after 2 + 2 epochs on one machine and had not after
// 3 + 3 on another (oracle 33% instead of 100%), so the full scale allows 8
// of each and stops as soon as the check passes.
static int train_stage(Model *m, const Tokenizer *tok, int eot, const Example *ex, int n, const char *what, int max_epochs, float lr,
                       int batch, int demos, int probes, uint64_t seed, char *err) {
    long tokens = 0;
    for (int i = 0; i < n; i++) tokens += ex[i].len;
    for (int e = 0; e < max_epochs; e++) {
        fprintf(stderr, "[2/3 %s] %.2fM-parameter Llama, %d sequences of %.0f tokens on average, epoch %d of at most %d\n", what,
                m->params.total / 1e6, n, (double)tokens / n, e + 1, max_epochs);
        SftOpts so = sft_defaults();
        so.lr = lr;
        so.batch = batch;
        so.warmup = 20;
        so.seed = seed + (uint64_t)e;
        Progress pr = {now_seconds(), what};
        so.progress = pretrain_progress;
        so.progress_ctx = &pr;
        SftStats st;
        if (sft(m, ex, n, &so, &st, err)) return -1;
        int plain = copies_exact(m, tok, eot, seed + (uint64_t)e, probes, 0, err);
        int behind = plain < 0 ? -1 : copies_exact(m, tok, eot, seed + (uint64_t)e, probes, 1, err);
        if (behind < 0) return -1;
        fprintf(stderr, "[2/3 %s] mean loss %.3f; fresh grids copied exactly: %d of %d alone, %d of %d behind demonstrations\n", what,
                st.last_loss, plain, probes, behind, probes);
        if ((demos ? behind : plain) >= probes * 9 / 10) break;
    }
    return 0;
}

int demo_tmp_dir(const char *dir, char *tmp, size_t n, char *err) {
    if (snprintf(tmp, n, "%s.tmp.%d", dir, (int)getpid()) >= (int)n) return errf(err, "%s: path too long", dir);
    return make_dirs(tmp, err);
}

// Builds the base model (tokenizer.json, config.json, model.safetensors) into
// dir, through a temporary folder renamed at the end: a half-built base is
// never mistaken for a finished one.
static int build_base(const Scale *sc, uint64_t seed, const char *dir, char *err) {
    double t0 = now_seconds();
    char tmp[4200];
    if (demo_tmp_dir(dir, tmp, sizeof tmp, err)) return -1;
    DemoTexts tx = {0};
    Rng r;
    rng_seed(&r, seed ^ 0x5eed);
    for (int i = 0; i < sc->n_pretrain; i++) {
        Task t;
        if (demo_make_task(seed, DEMO_PRETRAIN, i, &t, err)) { demo_texts_free(&tx); return -1; }
        task_texts(&t, &r, sc->selfedit_share, &tx);
        demo_free_task(&t);
    }
    fprintf(stderr, "[2/3 tokenizer] %d texts from %d pretraining tasks\n", tx.n, sc->n_pretrain);
    const char **corpus = xcalloc(2 * (size_t)tx.n, sizeof(char *));
    for (int i = 0; i < tx.n; i++) { corpus[2 * i] = tx.prompt[i]; corpus[2 * i + 1] = tx.target[i]; }
    char *tok_json = tok_train_bytelevel(corpus, 2 * tx.n, sc->n_merges, SPECIALS, 5);
    free(corpus);
    Tokenizer *tok = NULL;
    Model m = {0};
    Example *ex = NULL;
    int n_ex = 0, rc = demo_base_init(tmp, tok_json, sc->dim, sc->hidden, sc->layers, sc->heads, sc->kv_heads, seed, &tok, &m, err);
    const int eot = tok ? tok_find(tok, "<|eot_id|>") : -1;
    free(tok_json);
    // Query-only copies first (kind 1), alone; then the rest, after a replay
    // of some of the copies (kind 1 again).
    ex = xcalloc((size_t)tx.n, sizeof(Example));
    int n_copy = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < tx.n && !rc; i++)
            if ((tx.kind[i] == 1) == (pass == 0)) {
                rc = example_from_text(tok, tx.prompt[i], tx.target[i], eot, tx.kind[i] == 2, &ex[n_ex++], err);
                n_copy += pass == 0;
            }
    demo_texts_free(&tx);
    int n_replay = (int)(sc->replay_share * n_copy);
    if (!rc) rc = train_stage(&m, tok, eot, ex, n_copy, "copying", sc->copy_epochs, sc->pre_lr, sc->pre_batch, 0, sc->probes, seed, err);
    if (!rc) rc = train_stage(&m, tok, eot, ex + n_copy - n_replay, n_ex - n_copy + n_replay, "pretraining", sc->pre_epochs, sc->pre_lr2,
                              sc->pre_batch, 1, sc->probes, seed + 100, err);
    return demo_pretrain_save(&m, tok, ex, n_ex, &(DemoPretrain){0, sc->pre_batch, sc->pre_lr, seed, n_copy}, tmp, dir, t0, rc, err);
}

// The cache root, the base in it and the run directory (see demo_init).
static void demo_paths(Demo *d, const char *base_name, const char *run_name, const char *scale) {
    const DemoOpts *o = d->o;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (o->cache) snprintf(d->cache, sizeof d->cache, "%s", o->cache);
    else if (xdg && *xdg) snprintf(d->cache, sizeof d->cache, "%s/seal/demo", xdg);
    else snprintf(d->cache, sizeof d->cache, "%s/.cache/seal/demo", home && *home ? home : "/tmp");
    snprintf(d->base, sizeof d->base, "%s/%s-%s-seed%llu", d->cache, base_name, scale, (unsigned long long)o->seed);
    if (o->out) snprintf(d->out, sizeof d->out, "%s", o->out);
    else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(d->out, sizeof d->out, "seal-runs/%s-%s-seed%llu-%s", run_name, scale, (unsigned long long)o->seed, stamp);
    }
}

void demo_init(Demo *d, const DemoOpts *o, const char *base_name, const char *run_name, const char *scale) {
    memset(d, 0, sizeof *d);
    d->o = o;
    d->t0 = now_seconds();
    demo_paths(d, base_name, run_name, scale);
}

void demo_free(Demo *d) {
    run_close(&d->run);
    tok_free(d->tok);
    if (d->m.layers) model_free(&d->m);
}

cJSON *demo_config(const Demo *d, const char *command, const char *scale) {
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "command", command);
    cJSON_AddStringToObject(config, "scale", scale);
    cJSON_AddStringToObject(config, "base", d->base);
    char h[20];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)table_hash(&d->m.params));
    cJSON_AddStringToObject(config, "base_hash", h);
    if (backend_is_cuda(d->o->be)) cJSON_AddStringToObject(config, "backend", "cuda");   // bf16 numbers
    return config;
}

int demo_base_cached(const Demo *d, char *err) {
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", d->base);
    int cached = !d->o->fresh && access(cfg_path, F_OK) == 0;
    if (!cached && make_dirs(d->cache, err)) return -1;
    if (d->o->fresh && access(cfg_path, F_OK) == 0) {
        char old[4200];
        snprintf(old, sizeof old, "%s.old.%ld", d->base, (long)time(NULL));
        if (rename(d->base, old) != 0) return errf(err, "%s: cannot set the old base aside: %s", d->base, strerror(errno));
    }
    return cached;
}

int demo_load_base(Demo *d, char *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", d->base);
    if (model_load(&d->m, d->base, err)) return -1;
    return (d->tok = tok_load(path, err)) ? 0 : -1;
}

FILE *demo_report_open(DemoReport *r) { return r->f = open_memstream(&r->md, &r->len); }

int demo_report_save(const Demo *d, DemoReport *r, const cJSON *report, char *err) {
    fprintf(r->f, "\nmeasured in %.0f s; inspect with: seal runs show %s\n", now_seconds() - d->t0, d->out);
    fclose(r->f);
    int rc = run_write_report(d->out, r->md, report, d->o->json, err);
    free(r->md);
    return rc;
}

// Mean directives of the valid self-edits the policy wrote in a round's evaluation.
static void directive_row(const Run *run, int round, FILE *out) {
    double n = 0, b = 0, s = 0, c = 0, rp = 0, oo = 0, lr = 0, ep = 0, total = 0;   // n: valid edits
    for (int i = 0; i < run->n_edits; i++) {
        const Edit *e = run->edits[i];
        if (e->phase != PHASE_EVAL || e->round != round) continue;
        total++;
        SelfEdit se;
        char why[ERR_MAX];
        if (!e->edit || selfedit_parse(e->edit, &se, why)) continue;
        n++;
        b += se.basic; s += se.size; c += se.chain; rp += se.repeat; oo += se.output_only; lr += log10(se.lr); ep += se.epochs;
    }
    if (!n) { fprintf(out, "| %d | 0/%.0f | - | - | - | - | - | - | - |\n", round, total); return; }
    fprintf(out, "| %d | %.0f/%.0f | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %.1e | %.1f |\n", round, n, total,
            100 * b / n, 100 * s / n, 100 * c / n, 100 * rp / n, 100 * oo / n, pow(10, lr / n), ep / n);
}

static void print_directives(const Run *run, int rounds, FILE *out) {
    fprintf(out, "\nDirectives in the self-edits the policy wrote for held-out tasks (valid ones):\n\n"
                 "| round | valid | basic | size | chain | repeat | output tokens only | learning rate (geo. mean) | epochs |\n"
                 "|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k <= rounds; k++) directive_row(run, k, out);
}

void demo_fewshot(FewShot *fs, int quick, const Tokenizer *tok) {
    const Scale *sc = quick ? &QUICK : &FULL;
    fewshot_defaults(fs);   // leaves the tasks as they are
    fs->tok = tok;
    fs->eot = tok_find(tok, chat_eot(fs->chat));
    fs->lora_r = sc->lora_r;
    fs->lora_alpha = 2.0f * sc->lora_r;
    fs->max_examples = sc->max_examples;
    fs->max_steps = sc->max_steps;
    fs->max_views = sc->max_views;
    fs->max_answer_tokens = sc->max_answer_tokens;
    fs->warmup = 2;
    // The demo keeps its own settings, not SEAL's protocol (docs/FIDELITY.md):
    // any colour permutation, and a self-edit with a bad field drawn again.
    fs->unused_colors = 0;
    fs->strict_edits = 1;
    fs->oracle = "{\"data_generation\": {\"use_basic_augmentations\": false, \"use_size_augmentations\": false, "
                 "\"use_chain_augmentations\": false, \"use_repeat_augmentations\": false}, "
                 "\"training\": {\"strategy\": \"train_using_output_tokens\", \"learning_rate\": 0.003, \"num_train_epochs\": 8}}";
}

// 1. The world: the SEAL-training and held-out tasks (the base makes its
// pretraining tasks from the seed when it is built).
static int make_world(uint64_t seed, const Scale *sc, FewShot *fs, char *err) {
    if (demo_make_tasks(seed, DEMO_TRAIN, sc->n_train, &fs->train, err)) return -1;
    fs->n_train = sc->n_train;
    if (demo_make_tasks(seed, DEMO_EVAL, sc->n_eval, &fs->eval, err)) return -1;
    fs->n_eval = sc->n_eval;
    if (ranks_root())
        fprintf(stderr, "[1/3 world] seed %llu: %d pretraining, %d SEAL-training and %d held-out ARC-like tasks (%s scale)\n",
                (unsigned long long)seed, sc->n_pretrain, sc->n_train, sc->n_eval, sc->name);
    return 0;
}

// 2. The base model: under mpirun, rank 0 makes sure of it; the others then load it.
static int base_model(const Demo *d, const Scale *sc, char *err) {
    int cached = ranks_root() ? demo_base_cached(d, err) : 1;
    if (cached < 0) return -1;
    if (ranks_root()) {
        if (cached) fprintf(stderr, "[2/3 base model] cached: %s (--fresh rebuilds it)\n", d->base);
        else if (build_base(sc, d->o->seed, d->base, err)) return -1;
    }
    ranks_barrier();
    return 0;
}

static RestemOpts restem_opts(const Scale *sc, uint64_t seed) {
    RestemOpts ro = restem_defaults();
    ro.rounds = sc->rounds;
    ro.samples = sc->samples;
    ro.eval_samples = sc->eval_samples;
    ro.keep_per_task = sc->samples;
    ro.sampling.max_new = 120;
    ro.m_rank = sc->lora_r;
    ro.m_alpha = 2.0f * sc->lora_r;
    ro.m_lr = 3e-3f;    // a handful of rewarded self-edits (3-12 of 48 at seeds 1-6) must move the policy in one M-step
    ro.m_epochs = 8;
    ro.seed = seed;
    return ro;
}

// The table beside the paper's, then the directives the policy chose.
static int save_report(const Demo *d, const Scale *sc, const cJSON *report, char *err) {
    DemoReport r;
    FILE *f = demo_report_open(&r);
    fprintf(f, "SEAL few-shot demo, seed %llu (%s scale): success on %d held-out tasks\n\n", (unsigned long long)d->o->seed, sc->name, sc->n_eval);
    restem_report_markdown(report, f);
    print_directives(&d->run, sc->rounds, f);
    return demo_report_save(d, &r, report, err);
}

// 3. SEAL: the fewshot domain and ReST^EM of a real run, the base both policy and student.
static int run_seal(Demo *d, const Scale *sc, FewShot *fs, const RestemOpts *ro, char *err) {
    cJSON *config = demo_config(d, "demo", sc->name);
    fewshot_config_json(fs, config);
    restem_opts_json(ro, config);
    int rc = ranks_root() ? run_open(&d->run, d->out, config, NULL, RUN_NEW, err) : 0;   // rank 0 owns the run directory
    cJSON_Delete(config);
    if (rc) return rc;
    if (ranks_root()) fprintf(stderr, "[3/3 SEAL] run directory %s%s\n", d->out, ranks_note());
    Domain dom;
    fs->be = d->o->be;
    fewshot_domain(&dom, fs);
    cJSON *report = cJSON_CreateObject();
    rc = restem_run(&dom, &d->m, &d->m, d->tok, &d->run, ro, report, err);
    if (!rc && ranks_root()) rc = save_report(d, sc, report, err);
    cJSON_Delete(report);
    return rc;
}

int demo_run(const DemoOpts *o, char *err) {
    const Scale *sc = o->quick ? &QUICK : &FULL;
    Demo d;
    demo_init(&d, o, "base-v14", "demo", sc->name);
    FewShot fs = {0};
    int rc = make_world(o->seed, sc, &fs, err) || base_model(&d, sc, err) || demo_load_base(&d, err) ? -1 : 0;
    if (!rc) {
        demo_fewshot(&fs, o->quick, d.tok);
        RestemOpts ro = restem_opts(sc, o->seed);
        ro.adapters_at_once = o->adapters_at_once > 1 ? o->adapters_at_once : 1;
        rc = run_seal(&d, sc, &fs, &ro, err);
    }
    demo_free(&d);
    demo_free_tasks(fs.train, fs.n_train);
    demo_free_tasks(fs.eval, fs.n_eval);
    return rc;
}
