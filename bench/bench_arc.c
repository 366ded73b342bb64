// bench/bench_arc.c: one ARC self-edit evaluation as `seal fewshot` runs it
// (fewshot.c fs_evaluate_many, n = 1), timed: the test-time-training data a
// self-edit's directives build from one task, a fresh LoRA trained on it at
// SEAL's settings (r=128, alpha 16 on q, v, gate, up, down; batch 2; 11 warm-up
// steps, then cosine), then greedy answers to every augmented view of each test
// input in one batch, and the vote.
//
//   bench_arc --model DIR --task FILE.json [--backend cpu|cuda] [--edit JSON]
//             [--max-examples N] [--max-views N] [--max-answer-tokens N]
//             [--seed S] [--export DIR] [--data-only]
//
// --edit: the self-edit (default: fewshot.c's oracle, ttt.py's configuration:
// every augmentation, output tokens, lr 1e-4, 2 epochs). --export DIR writes
// what bench/peer_hf_arc.py needs to do the same work: DIR/adapter0 (the
// fresh adapter before training, a PEFT folder), DIR/arc.bin (every batch as
// sft_loop packs it, the views' prompts, our answers) and DIR/arc.json (the
// learning rate of each step, the optimizer, the stop ids), each written
// atomically. --data-only: the TTT data's size, then exit (to rank tasks).
//
// Output: one "key value" line per measure (data_s: building the TTT data;
// ttt_s, infer_s, and total_s: the two together), then "loss STEP VALUE" per
// step with --export (bench/run_gpu.sh and test/bench_arc.sh read them).
#include "backend.h"
#include "fewshot.h"
#include "kernels.h"
#include "model.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *msg) {
    fprintf(stderr, "bench_arc: %s\n", msg);
    exit(1);
}

// A growing buffer of int32s: arc.bin.
typedef struct { int *v; size_t n, cap; } Ints;

static void put(Ints *b, const int *x, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->v = xrealloc(b->v, b->cap, sizeof(int));
    }
    memcpy(b->v + b->n, x, n * sizeof(int));
    b->n += n;
}

typedef struct { Ints *bin; cJSON *lr; } Recorder;

// sft_loop's step, recording instead of training: the batches and learning
// rates the backend's step will get, in its order.
static int record_step(void *ctx, int k, const int *which, const int *rows, const int *ids, const int *labels, int T, const float *lr,
                       float *loss, char *err) {
    (void)err, (void)k, (void)which;   // one run
    Recorder *r = ctx;
    int shape[2] = {rows[0], T};
    put(r->bin, shape, 2);
    put(r->bin, ids, (size_t)rows[0] * T);
    put(r->bin, labels, (size_t)rows[0] * T);
    cJSON_AddItemToArray(r->lr, cJSON_CreateNumber(lr[0]));
    *loss = 0;
    return 0;
}

typedef struct { float *v; int n; } Losses;

static void keep_loss(int step, int total, float loss, void *ctx) {
    (void)total;
    Losses *l = ctx;
    l->v[step - 1] = loss;
    l->n = step;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *task_path = NULL, *backend = "cpu", *export = NULL, *edit = NULL;
    uint64_t seed = 1;
    int data_only = 0;
    FewShot fs = {0};
    fewshot_defaults(&fs);
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--model")) model_dir = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--task")) task_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--backend")) backend = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--edit")) edit = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--max-examples")) fs.max_examples = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--max-views")) fs.max_views = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--max-answer-tokens")) fs.max_answer_tokens = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--export")) export = argv[++i];
        else if (!strcmp(argv[i], "--data-only")) data_only = 1;
        else die("usage: bench_arc --model DIR --task FILE.json [--backend cpu|cuda] [--edit JSON] [--max-examples N] [--max-views N] "
                 "[--max-answer-tokens N] [--seed S] [--export DIR] [--data-only]");
    }
    if (!model_dir || !task_path) die("--model and --task are required");
    if (strcmp(backend, "cpu") && strcmp(backend, "cuda")) die("--backend: cpu or cuda");
    if (fs.max_examples < 1 || fs.max_views < 0 || fs.max_answer_tokens < 1) die("bad arguments");
    char err[ERR_MAX], path[4096];
    SelfEdit se;
    if (selfedit_parse(edit ? edit : fs.oracle, &se, err)) die(err);

    // The model, its tokenizer (MODEL/tokenizer.json, Llama-3's chat format), the task, the backend
    Model m;
    Task t;
    if (model_load(&m, model_dir, err) || arc_load_task(task_path, &t, err)) die(err);
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    Tokenizer *tok = tok_load(path, err);
    if (!tok) die(err);
    fs.tok = tok;
    fs.eot = tok_find(tok, chat_eot(fs.chat));
    if (fs.eot < 0) die("the tokenizer has no <|eot_id|>");
    if (!(fs.be = backend_new(!strcmp(backend, "cuda"), err))) die(err);
    char dev[256] = "cpu";
    if (backend_is_cuda(fs.be)) cuda_device_name(dev, sizeof dev);
    printf("backend %s\n", backend);
    printf("device %s\n", dev);
    printf("task %s\n", t.id);
    double t0 = now_seconds();
    {   // the base weights go up once per run (as in seal fewshot): a 1-token answer, not timed below
        int one = m.c.bos, len1 = 1, *out, out_len;
        const int *p = &one;
        SampleOpts o = {.max_new = 1};
        if (be_generate(fs.be, &m, &p, &len1, 1, &o, NULL, 0, NULL, NULL, &out, &out_len, err)) die(err);
        free(out);
    }
    printf("warm_s %.2f\n", now_seconds() - t0);

    // The TTT data, as fs_evaluate_many builds it (timed apart: the peer is given it)
    Rng r;
    rng_seed(&r, seed);
    t0 = now_seconds();
    TttExample *tx;
    Example *ex;
    int n;
    fewshot_ttt_data(&fs, &t, &se, &r, &tx, &n);
    if (n == 0) die("the self-edit builds no training examples from this task");
    if (fewshot_examples(&fs, tx, n, se.output_only, &ex, err)) die(err);
    arc_free_examples(tx, n);
    long tokens = 0;
    for (int i = 0; i < n; i++) tokens += ex[i].len;
    SftOpts so = sft_defaults();
    so.lr = se.lr;
    so.epochs = se.epochs;
    so.batch = fs.batch;
    so.warmup = fs.warmup;
    so.seed = seed;
    const int total = sft_steps(n, so.batch, so.epochs);
    printf("data_s %.3f\n", now_seconds() - t0);
    printf("examples %d\n", n);
    printf("example_tokens %ld\n", tokens);
    printf("epochs %d\n", se.epochs);
    printf("steps %d\n", total);
    if (data_only) return 0;
    if (selfedit_steps(n, fs.batch, se.epochs) > fs.max_steps) die("the self-edit takes more steps than SEAL's limit: it would not train");

    Lora l = {0};
    if (lora_init(&l, &m.c, fs.lora_r, fs.lora_alpha, fs.lora_targets)) die("out of memory for the adapter");
    lora_reset(&l, seed);
    Ints bin = {0};
    cJSON *meta = cJSON_CreateObject();
    if (export) {   // the work, for the peer: the fresh adapter, then the batches and learning rates
        if (make_dirs(export, err)) die(err);
        snprintf(path, sizeof path, "%s/adapter0", export);
        if (lora_save(&l, path, model_dir, err)) die(err);
        Recorder rec = {&bin, cJSON_AddArrayToObject(meta, "lr")};
        SftRun run = {.ex = ex, .n = n, .o = so, .lora = &l};
        if (sft_loop(&run, 1, m.c.vocab, record_step, &rec, err)) die(err);
        cJSON_AddNumberToObject(meta, "steps", total);
        cJSON_AddNumberToObject(meta, "max_grad_norm", so.max_grad_norm);
        cJSON_AddNumberToObject(meta, "beta1", so.beta1);
        cJSON_AddNumberToObject(meta, "beta2", so.beta2);
        cJSON_AddNumberToObject(meta, "eps", so.eps);
        cJSON_AddNumberToObject(meta, "weight_decay", so.weight_decay);
    }

    // Test-time training
    Losses losses = {xcalloc((size_t)total, sizeof(float)), 0};
    so.progress = keep_loss;
    so.progress_ctx = &losses;
    SftStats st;
    model_attach_lora(&m, &l);
    t0 = now_seconds();
    if (be_sft(fs.be, &m, ex, n, &so, &st, err)) die(err);
    const double ttt_s = now_seconds() - t0;
    if (st.diverged) die("training diverged");
    printf("ttt_s %.3f\n", ttt_s);
    printf("ttt_tokens_per_s %.0f\n", tokens * so.epochs / ttt_s);
    printf("first_loss %.6f\nlast_loss %.6f\n", st.first_loss, st.last_loss);
    fflush(stdout);

    // Voting inference, as answer_test: each test input's views in one batch
    SampleOpts greedy = {.max_new = fs.max_answer_tokens, .temperature = 0};
    int stop[9], n_stop = fewshot_stops(&fs, &m, stop), views = 0, valid = 0, all_right = 1;
    long answer_tokens = 0;
    cJSON *jv = cJSON_AddArrayToObject(meta, "views"), *js = cJSON_AddArrayToObject(meta, "stop");
    for (int i = 0; i < n_stop; i++) cJSON_AddItemToArray(js, cJSON_CreateNumber(stop[i]));
    cJSON_AddNumberToObject(meta, "max_new", greedy.max_new);
    t0 = now_seconds();
    for (int k = 0; k < t.n_test; k++) {
        FewViews v;
        if (fewshot_views(&fs, &m, &t, k, &r, &v, err)) die(err);
        int **ans = xcalloc((size_t)v.n_fit + 1, sizeof(int *)), *ans_len = xcalloc((size_t)v.n_fit + 1, sizeof(int));
        if (v.n_fit && be_generate(fs.be, &m, (const int *const *)v.prompts, v.prompt_lens, v.n_fit, &greedy, stop, n_stop, NULL, NULL, ans, ans_len, err))
            die(err);
        all_right &= fewshot_vote(&fs, &t, k, &v, ans, ans_len, &valid);
        views += v.n_fit;
        cJSON_AddItemToArray(jv, cJSON_CreateNumber(v.n_fit));
        for (int j = 0; j < v.n_fit; j++) {   // not timed apart: copying a few thousand ids
            answer_tokens += ans_len[j];
            put(&bin, &v.prompt_lens[j], 1);
            put(&bin, v.prompts[j], (size_t)v.prompt_lens[j]);
            put(&bin, &ans_len[j], 1);
            put(&bin, ans[j], (size_t)ans_len[j]);
            free(ans[j]);
        }
        free(ans); free(ans_len);
        fewshot_views_free(&v);
    }
    const double infer_s = now_seconds() - t0;
    printf("views %d\n", views);
    printf("max_answer_tokens %d\n", greedy.max_new);
    printf("answer_tokens %ld\n", answer_tokens);
    printf("valid_answers %d\n", valid);
    printf("reward %d\n", all_right);
    printf("infer_s %.3f\n", infer_s);
    printf("total_s %.3f\n", ttt_s + infer_s);
    if (backend_is_cuda(fs.be)) printf("peak_mem_gib %.2f\n", cuda_memory_peak() / 1073741824.0);
    for (int i = 0; export && i < losses.n; i++) printf("loss %d %.6f\n", i + 1, losses.v[i]);

    if (export) {
        char *json = cJSON_PrintUnformatted(meta);
        snprintf(path, sizeof path, "%s/arc.bin", export);
        if (write_file_atomic(path, bin.v, bin.n * sizeof(int), err)) die(err);
        snprintf(path, sizeof path, "%s/arc.json", export);
        if (write_file_atomic(path, json, strlen(json), err)) die(err);
        free(json);
    }
    cJSON_Delete(meta);
    free(bin.v);
    free(losses.v);
    examples_free(ex, n);
    model_attach_lora(&m, NULL);
    lora_free(&l);
    backend_close(fs.be);
    tok_free(tok);
    arc_free_task(&t);
    model_free(&m);
    return 0;
}
