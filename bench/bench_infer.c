// bench/bench_infer.c: CPU speed of the inference side: the tokenizer and
// KV-cache decoding.
//
//   bench_infer tokenize DATA_DIR OUT_DIR [--reps N]
//       The Llama-3 tokenizer (DATA_DIR/llama3/tokenizer.json) on two texts,
//       one thread: the SQuAD contexts of DATA_DIR/squad/squad_val.json joined
//       by blank lines, and ARC prompts built from DATA_DIR/arc/training (per
//       task: SEAL's leave-one-out test-time-training prompts with their
//       answers, the test prompt with its answer, the self-edit prompt; grids
//       numpy style and as rows of digits, Llama-3 chat special tokens in the
//       text). tok_encode with special tokens matched (as Hugging Face's
//       encode does), best of N. Writes OUT_DIR/NAME.txt and OUT_DIR/NAME.ids
//       (int32, little-endian) so the peer encodes the same bytes and compares.
//   bench_infer decode 25m|1b|FILE.gguf [--threads N] [--prompt P] [--gen G] [--reps N] [--dir DIR]
//                      [--weights fp32|bf16|q8_0|native] [--batches 1,8]
//       Random weights of bench_train's ~25M config or the Llama-3.2-1B shape,
//       built in memory, or loaded from DIR (the model `bench_train 1b`
//       writes) when given, or a GGUF file; --weights picks the compact copy
//       the KV cache reads (model_compact; default native). For each batch
//       (default 1 and 8): the sequences' P-token random prompts through one
//       kv_prefill (every prompt token of every sequence packed into passes),
//       then G greedy steps of kv_step + argmax over the logits of every
//       sequence (decode). Best of N. Also the weight bytes one step reads and
//       the bandwidth that makes at the decode rate.
//       (native+q8, q8_0+q8: activations rounded to 8 bits, llama.cpp's way).
//   bench_infer kernels [--threads N] [--reps N]
//       qmat_mul alone on a 1536 x 576 matrix (SmolLM2's MLP shape) of each
//       form, 1 and 8 rows of x, q8 and fp32 activations, and OpenBLAS sgemm
//       on the fp32 matrix: microseconds a call (best of N x 200 calls) and
//       the weight bytes a second that makes.
//   bench_infer bandwidth [--threads N]
//       The machine's memory read bandwidth: the best of 5 sums of a 1 GiB
//       array, the threads reading a share each (what decoding does).
//
// Output: one "key value" line per measure on stdout (bench/run.sh reads them).
#include "bench/bench_models.h"
#include "arc.h"
#include "generate.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"
#include "weights.h"
#include <cblas.h>
#include <cjson/cJSON.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void die(const char *msg) {
    fprintf(stderr, "bench_infer: %s\n", msg);
    exit(1);
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

// ----------------------------------------------------------------------------
// A growing byte buffer for the texts

typedef struct { char *p; size_t n, cap; } Buf;

static void buf_put(Buf *b, const char *s) {
    if (!s) die("out of memory");
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap))) die("out of memory");
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void buf_take(Buf *b, char *s) {   // appends and frees s
    buf_put(b, s);
    free(s);
}

// The SQuAD contexts, in file order, joined by blank lines.
static void squad_text(const char *path, Buf *out) {
    char err[ERR_MAX];
    char *json = read_file(path, NULL, err);
    if (!json) die(err);
    cJSON *root = cJSON_Parse(json);
    free(json);
    if (!cJSON_IsArray(root)) die("squad_val.json: not a JSON array");
    const cJSON *p;
    cJSON_ArrayForEach(p, root) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "context");
        if (!cJSON_IsString(c)) die("squad_val.json: a passage has no context string");
        if (out->n) buf_put(out, "\n\n");
        buf_put(out, c->valuestring);
    }
    cJSON_Delete(root);
}

// What SEAL's few-shot loop tokenizes for each ARC task.
static void arc_text(const char *dir, Buf *out) {
    char err[ERR_MAX];
    Task *tasks;
    int n;
    if (arc_load_dir(dir, NULL, 0, &tasks, &n, err)) die(err);
    for (int t = 0; t < n; t++) {
        const Task *k = &tasks[t];
        Pair *demos = malloc((size_t)k->n_train * sizeof(Pair));
        for (int q = 0; q < k->n_train; q++) {   // leave-one-out: train pair q is the query
            int m = 0;
            for (int i = 0; i < k->n_train; i++)
                if (i != q) demos[m++] = k->train[i];
            buf_take(out, arc_prompt(demos, m, &k->train[q].in, CHAT_LLAMA3));
            buf_take(out, arc_answer(&k->train[q].out));
            buf_put(out, "<|eot_id|>");
        }
        free(demos);
        for (int q = 0; q < k->n_test; q++) {
            buf_take(out, arc_prompt(k->train, k->n_train, &k->test[q].in, CHAT_LLAMA3));
            if (k->test[q].out.h) buf_take(out, arc_answer(&k->test[q].out));
            buf_put(out, "<|eot_id|>");
        }
        buf_take(out, arc_selfedit_prompt(k, CHAT_LLAMA3));
    }
    arc_free_tasks(tasks, n);
}

static void encode_text(const Tokenizer *tok, const char *name, const Buf *text, const char *out_dir, int reps) {
    char err[ERR_MAX], path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", out_dir, name);
    if (write_file_atomic(path, text->p, text->n, err)) die(err);
    int *ids = NULL, n = 0;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        free(ids);
        double t0 = now_seconds();
        n = tok_encode(tok, text->p, text->n, 1, &ids, err);
        double dt = now_seconds() - t0;
        if (n < 0) die(err);
        if (dt < best) best = dt;
    }
    snprintf(path, sizeof path, "%s/%s.ids", out_dir, name);
    if (write_file_atomic(path, ids, (size_t)n * sizeof(int), err)) die(err);   // int32 little-endian on x86
    free(ids);
    printf("%s_bytes %zu\n", name, text->n);
    printf("%s_tokens %d\n", name, n);
    printf("%s_bytes_per_token %.2f\n", name, (double)text->n / n);
    printf("%s_best_s %.4f\n", name, best);
    printf("%s_mb_per_s %.2f\n", name, text->n / best / 1e6);
    fflush(stdout);
}

static int bench_tokenize(const char *data, const char *out_dir, int reps) {
    char err[ERR_MAX], path[4096];
    if (make_dirs(out_dir, err)) die(err);
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", data);
    double t0 = now_seconds();
    Tokenizer *tok = tok_load(path, err);
    if (!tok) die(err);
    printf("load_s %.3f\n", now_seconds() - t0);
    printf("vocab %d\n", tok_vocab_size(tok));
    Buf squad = {0}, arc = {0};
    snprintf(path, sizeof path, "%s/squad/squad_val.json", data);
    squad_text(path, &squad);
    encode_text(tok, "squad", &squad, out_dir, reps);
    snprintf(path, sizeof path, "%s/arc/training", data);
    arc_text(path, &arc);
    encode_text(tok, "arc", &arc, out_dir, reps);
    free(squad.p);
    free(arc.p);
    tok_free(tok);
    return 0;
}

// ----------------------------------------------------------------------------
// KV-cache decoding

typedef struct { double prefill_s, decode_s, cpu_s; } Timing;

// B random prompts of P tokens, prefilled in one kv_prefill (as generate()
// does), then G greedy steps of all B at once.
static Timing decode_once(const Model *m, int B, int P, int G, uint64_t seed) {
    char err[ERR_MAX];
    const int V = m->c.vocab;
    KVCache kv;
    if (kv_init(&kv, m, B, P + G, err)) die(err);
    int *prompt = malloc((size_t)B * P * sizeof(int)), *seqs = malloc(B * sizeof(int)), *toks = malloc(B * sizeof(int));
    float *logits = malloc((size_t)B * V * sizeof(float));
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < B * P; i++) prompt[i] = (int)(rng_next(&r) % (uint64_t)V);
    SampleOpts greedy = {.max_new = G, .temperature = 0.0f, .top_p = 1.0f};
    Timing t;
    const int **prompts = malloc(B * sizeof(int *));
    int *lens = malloc(B * sizeof(int));
    for (int b = 0; b < B; b++) { prompts[b] = prompt + (size_t)b * P; lens[b] = P; }
    double t0 = now_seconds();
    if (kv_prefill(m, &kv, B, prompts, lens, logits, err)) die(err);
    free((void *)prompts);
    free(lens);
    t.prefill_s = now_seconds() - t0;
    for (int b = 0; b < B; b++) { seqs[b] = b; toks[b] = sample_token(logits + (size_t)b * V, V, &greedy, &r); }
    double c0 = cpu_seconds();
    t0 = now_seconds();
    for (int step = 0; step < G; step++) {
        if (kv_step(m, &kv, B, seqs, toks, logits, err)) die(err);
        for (int b = 0; b < B; b++) toks[b] = sample_token(logits + (size_t)b * V, V, &greedy, &r);
    }
    t.decode_s = now_seconds() - t0;
    t.cpu_s = cpu_seconds() - c0;
    free(prompt); free(seqs); free(toks); free(logits);
    kv_free(&kv);
    return t;
}

static int bench_decode(const char *which, const char *dir, int threads, int P, int G, int reps, int weights, const char *batch_list) {
    char err[ERR_MAX];
    Config c;
    const int gguf = gguf_is_path(which);
    if (!strcmp(which, "25m")) c = config_25m();
    else if (!strcmp(which, "1b")) c = config_1b();
    else if (gguf) dir = which;
    else die("decode: the model is 25m, 1b or a .gguf file");
    printf("threads %d\n", threads);
    Model m;
    double t0 = now_seconds();
    if (dir) {
        if (model_load(&m, dir, err)) die(err);
        if (!gguf && memcmp(&m.c, &c, offsetof(Config, tied))) die("decode: the model in --dir is not of the named shape");
    } else {
        if (model_init(&m, &c, err)) die(err);
        fill_random(&m.params);
    }
    if (model_compact(&m, weights, dir, err)) die(err);
    printf("params %zu\n", m.params.total);
    printf("weights %s\n", model_weights_name(&m));
    printf("weight_bytes_per_step %zu\n", model_weight_bytes(&m));
    printf("init_s %.2f\n", now_seconds() - t0);
    printf("prompt %d\ngen %d\n", P, G);
    fflush(stdout);
    int batches[8], nb = 0;
    for (const char *p = batch_list; *p && nb < 8; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) batches[nb++] = atoi(p);
    for (int i = 0; i < nb; i++) {
        int B = batches[i];
        if (B < 1) die("--batches: a batch below 1");
        Timing best = {1e30, 1e30, 0};
        for (int r = 0; r < reps; r++) {
            Timing t = decode_once(&m, B, P, G, 7 + r);
            if (t.prefill_s < best.prefill_s) best.prefill_s = t.prefill_s;
            if (t.decode_s < best.decode_s) { best.decode_s = t.decode_s; best.cpu_s = t.cpu_s; }
        }
        printf("b%d_prefill_s %.4f\n", B, best.prefill_s);
        printf("b%d_prefill_tokens_per_s %.1f\n", B, B * P / best.prefill_s);
        printf("b%d_decode_s %.4f\n", B, best.decode_s);
        printf("b%d_decode_ms_per_step %.2f\n", B, best.decode_s / G * 1e3);
        printf("b%d_decode_tokens_per_s %.1f\n", B, B * G / best.decode_s);
        printf("b%d_decode_weight_gb_per_s %.2f\n", B, model_weight_bytes(&m) * (double)G / best.decode_s / 1e9);
        // below 1: other processes took some of the cores while we measured
        printf("b%d_decode_cpu_share %.2f\n", B, best.cpu_s / best.decode_s / threads);
        fflush(stdout);
    }
    model_free(&m);
    return 0;
}

// Each qmat_mul form against sgemm on one matrix (SmolLM2's up projection).
static int bench_kernels(int reps) {
    const int NO = 1536, NI = 576, calls = 200;
    Rng r;
    rng_seed(&r, 5);
    float *w = malloc((size_t)NO * NI * sizeof(float)), *x = malloc(64 * NI * sizeof(float)), *y = malloc(64 * NO * sizeof(float));
    for (int i = 0; i < NO * NI; i++) w[i] = 0.05f * rng_normal(&r);
    for (int i = 0; i < 64 * NI; i++) x[i] = rng_normal(&r);
    for (int t = -1; t < QT_N; t++) {   // -1: sgemm on fp32
        QMat q = {0};
        if (t >= 0) {
            if (qmat_alloc(&q, t, NO, NI)) die("out of memory");
            if (t <= QT_Q8_0) qmat_from_f32(&q, w);
            else
                for (size_t b = 0; b < q.row_bytes * NO; b++) q.data[b] = (uint8_t)rng_next(&r);   // any bytes: speed only
        }
        const size_t bytes = t < 0 ? (size_t)NO * NI * 4 : q.row_bytes * NO;
        for (int R = 1; R <= 64; R *= 8)
            for (int q8 = 0; q8 <= (t == QT_Q8_0 || t == QT_Q4_0 || t == QT_Q4_1); q8++) {
                q.q8 = q8;
                double best = 1e30;
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = now_seconds();
                    for (int c = 0; c < calls; c++)
                        if (t < 0) gemm(0, 1, R, NO, NI, 1.0f, x, NI, w, NI, 0.0f, y, NO);
                        else qmat_mul(&q, x, R, y, q.rows, NULL);
                    double dt = (now_seconds() - t0) / calls;
                    if (dt < best) best = dt;
                }
                const char *name = t < 0 ? "sgemm_fp32" : QT_NAME[t];
                printf("kernel_%s_%s_r%d_us %.2f\n", name, t < 0 || t == QT_BF16 ? "fp32" : q8 ? "q8" : "fp32", R, best * 1e6);
                printf("kernel_%s_%s_r%d_weight_gb_per_s %.2f\n", name, t < 0 || t == QT_BF16 ? "fp32" : q8 ? "q8" : "fp32", R, bytes / best / 1e9);
                fflush(stdout);
            }
        qmat_free(&q);
    }
    free(w); free(x); free(y);
    return 0;
}

// Memory read bandwidth: sums of a 1 GiB array, each thread its share.
static int bench_bandwidth(int threads) {
    const size_t n = (size_t)1 << 28;
    float *a = malloc(n * sizeof(float));
    if (!a) die("out of memory");
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 1e30, sink = 0.0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds(), s = 0.0;
        #pragma omp parallel for reduction(+ : s)
        for (size_t i = 0; i < n; i += 1024) {
            float acc = 0.0f;
            #pragma omp simd reduction(+ : acc)
            for (int j = 0; j < 1024; j++) acc += a[i + j];
            s += acc;
        }
        double dt = now_seconds() - t0;
        sink += s;
        if (dt < best) best = dt;
    }
    printf("threads %d\nread_gb_per_s %.2f\n", threads, n * sizeof(float) / best / 1e9 + 0 * sink);
    free(a);
    return 0;
}

int main(int argc, char **argv) {
    const char *usage = "usage: bench_infer tokenize DATA_DIR OUT_DIR [--reps N] | "
                        "decode 25m|1b|FILE.gguf [--threads N] [--prompt P] [--gen G] [--reps N] [--dir DIR] "
                        "[--weights fp32|bf16|q8_0|native|q8_0+q8|native+q8] [--batches 1,8] | kernels [--threads N] [--reps N] | "
                        "bandwidth [--threads N]";
    if (argc < 2) die(usage);
    int tokenize = !strcmp(argv[1], "tokenize"), bandwidth = !strcmp(argv[1], "bandwidth"), kernels = !strcmp(argv[1], "kernels");
    int a = tokenize ? 4 : bandwidth || kernels ? 2 : 3;
    if (!tokenize && !bandwidth && !kernels && strcmp(argv[1], "decode")) die(usage);
    if (argc < a) die(usage);
    int threads = omp_get_num_procs(), P = 128, G = 64, reps = 3;
    const char *dir = NULL, *batches = "1,8";
    int weights = WEIGHTS_NATIVE;
    char err[ERR_MAX];
    for (; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--prompt")) P = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--gen")) G = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--reps")) reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--dir") && !tokenize) dir = argv[a + 1];
        else if (!strcmp(argv[a], "--batches") && !tokenize) batches = argv[a + 1];
        else if (!strcmp(argv[a], "--weights") && !tokenize) { if ((weights = weights_parse(argv[a + 1], err)) < 0) die(err); }
        else die("unknown option");
    }
    if (a != argc) die("an option lacks its value");
    if (threads < 1 || P < 1 || G < 1 || reps < 1) die("bad option value");
    if (tokenize) return bench_tokenize(argv[2], argv[3], reps);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    if (bandwidth) return bench_bandwidth(threads);
    if (kernels) return bench_kernels(reps);
    return bench_decode(argv[2], dir, threads, P, G, reps, weights, batches);
}
