// bench/bench_train.c: CPU speed and memory of the training step.
//
//   bench_train train [--threads N] [--steps N] [--warmup N]
//       OpenBLAS sgemm rate on a 2048^3 matmul, then LoRA training steps on a
//       ~25M-parameter Llama (hidden 512, 8 layers, 8/4 heads, MLP 1536,
//       vocab 8192, tied) at batch 4 x 256: tokens/s and the model FLOP/s the
//       step reaches, as a fraction of the sgemm rate.
//   bench_train 1b DIR [--threads N]
//       A Llama-3.2-1B-shaped model with random weights, written once as BF16
//       safetensors into DIR (in a child process, so its memory is not
//       counted), then: load time (file evicted from the page cache, then
//       warm), peak resident memory, one LoRA step at 1 x 256.
//   bench_train many [--threads N] [--steps N] [--many K] [--seq T]
//       K test-time adapters on the ~25M Llama, each trained on its own N
//       examples of T tokens (batch 1, one epoch): one at a time (K sft runs)
//       against together (sft_many: one pass over the K adapters' rows a
//       step): seconds and their ratio.
//
// Output: one "key value" line per measure on stdout (bench/run.sh reads them).
#include "bench/bench_models.h"
#include "model.h"
#include "safetensors.h"
#include "train.h"
#include "util.h"
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>


static void die(const char *msg) {
    fprintf(stderr, "bench_train: %s\n", msg);
    exit(1);
}

static double cpu_seconds(void);

// ----------------------------------------------------------------------------
// sgemm: C (n,n) = A (n,n) B (n,n), best of `reps`, GFLOP/s.

static double sgemm_gflops(int n, int reps) {
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
          *c = malloc((size_t)n * n * sizeof(float));
    Rng r;
    rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = rng_normal(&r); b[i] = rng_normal(&r); }
    double best = 1e30;
    for (int i = 0; i < reps + 1; i++) {   // the first call warms up
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now_seconds() - t0;
        if (i && dt < best) best = dt;
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * n / best / 1e9;
}

// ----------------------------------------------------------------------------
// FLOPs of one LoRA training step, counting only the matrix products the step
// needs (a multiply-add is 2 FLOPs). Per token, for each projection W (out,in)
// of each layer, with rank r adapters A (r,in), B (out,r) where adapted:
//   forward   2 in out                      y = x W^T
//             + 2 r (in + out)              u = x A^T, y += s u B^T
//   backward  2 in out                      dx = dy W
//             + 2 r out + 2 r in + 2 r out  du = s dy B, dA = du^T x, dB = s dy^T u
//             + 2 r in                      dx += du A
// where the two dx terms are left out for layer 0's q, k, v: with a frozen
// embedding nothing needs the gradient of layer 0's input. No weight gradient
// for the frozen base, none for the embedding. The LM head: 2 D V forward
// (logits), 2 D V backward (d lnf). Attention, per layer, batch row and head,
// causal (query t sees keys s <= t), T (T + 1) / 2 score entries:
//   forward   T (T + 1) / 2 * 4 hd          Q K^T, P V
//   backward  T (T + 1) / 2 * 8 hd          dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q
// Elementwise work (norms, RoPE, softmax, SwiGLU, AdamW) is not counted.
static double lora_step_flops(const Model *m, int r, unsigned targets, int B, int T) {
    const Config *c = &m->c;
    double per_token = 4.0 * c->dim * c->vocab;   // LM head, forward and backward
    for (int l = 0; l < c->n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const double in = m->layers[l].proj[p].in, out = m->layers[l].proj[p].out;
            const int need_dx = l > 0 || !(p == PROJ_Q || p == PROJ_K || p == PROJ_V);
            per_token += 2 * in * out + (need_dx ? 2 * in * out : 0);
            if (targets >> p & 1) per_token += 2 * r * (in + out) + 2 * r * (2 * out + in) + (need_dx ? 2 * r * in : 0);
        }
    const double scores = (double)T * (T + 1) / 2;
    return (double)B * T * per_token + (double)c->n_layers * B * c->n_heads * scores * 12.0 * c->head_dim;
}

// ----------------------------------------------------------------------------
// One LoRA training setup: model, adapter, optimizer, activations, a batch.

typedef struct {
    Model m;
    Lora lora;
    AdamW opt;
    Acts acts;
    int B, T, *ids, *labels;
} Run;

static const unsigned TARGETS = 1u << PROJ_Q | 1u << PROJ_V | 1u << PROJ_GATE | 1u << PROJ_UP | 1u << PROJ_DOWN;

// The model must already hold its weights.
static void run_init(Run *s, int B, int T) {
    char err[ERR_MAX];
    if (lora_init(&s->lora, &s->m.c, 16, 32.0f, TARGETS)) die("out of memory (adapter)");
    lora_reset(&s->lora, 3);
    Rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < s->lora.params.n; i++) {   // B != 0, so every path carries gradient
        Tensor *x = &s->lora.params.t[i];
        if (strstr(x->name, "lora_B"))
            for (size_t j = 0; j < x->size; j++) x->data[j] = 0.02f * rng_normal(&r);
    }
    model_attach_lora(&s->m, &s->lora);
    adamw_init(&s->opt, &s->lora.params, 0.9f, 0.999f, 1e-8f, 0.01f);
    if (acts_init(&s->acts, &s->m, B, T, err)) die(err);
    s->B = B;
    s->T = T;
    s->ids = malloc((size_t)B * T * sizeof(int));
    s->labels = malloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) s->ids[i] = s->labels[i] = (int)(rng_next(&r) % (uint64_t)s->m.c.vocab);
}

static float run_step(Run *s) {
    table_zero(&s->lora.grads);
    float loss = model_forward(&s->m, &s->acts, s->ids, s->labels);
    model_backward(&s->m, &s->acts);
    adamw_step(&s->opt, &s->lora.params, &s->lora.grads, 1e-4f);
    return loss;
}

static void run_free(Run *s) {
    acts_free(&s->acts);
    adamw_free(&s->opt);
    model_attach_lora(&s->m, NULL);
    lora_free(&s->lora);
    model_free(&s->m);
    free(s->ids);
    free(s->labels);
}

// ----------------------------------------------------------------------------
// The ~25M training step

static int bench_train(int threads, int steps, int warmup) {
    printf("threads %d\n", threads);
    openblas_set_num_threads(threads);
    double gf = sgemm_gflops(2048, 5);
    printf("sgemm_gflops %.2f\n", gf);
    fflush(stdout);

    Run s;
    Config c = config_25m();
    char err[ERR_MAX];
    if (model_init(&s.m, &c, err)) die(err);
    model_random(&s.m, 1, 0.02f);
    printf("params_25m %zu\n", s.m.params.total);
    run_init(&s, 4, 256);
    printf("lora_params_25m %zu\n", s.lora.params.total);
    float loss = 0;
    for (int i = 0; i < warmup; i++) loss = run_step(&s);
    double t0 = now_seconds(), c0 = cpu_seconds();
    for (int i = 0; i < steps; i++) loss = run_step(&s);
    double dt = (now_seconds() - t0) / steps, cpu = (cpu_seconds() - c0) / steps;
    if (!isfinite(loss)) die("the loss is not finite");
    double flops = lora_step_flops(&s.m, 16, TARGETS, s.B, s.T);
    printf("train_loss %.4f\n", loss);
    printf("train_step_s %.4f\n", dt);
    printf("train_tokens_per_s %.1f\n", s.B * s.T / dt);
    printf("train_step_gflop %.2f\n", flops / 1e9);
    printf("train_gflops %.2f\n", flops / dt / 1e9);
    printf("train_sgemm_fraction %.3f\n", flops / dt / 1e9 / gf);
    // below 1: other processes took some of the cores while we measured
    printf("train_cpu_share %.2f\n", cpu / dt / threads);
    run_free(&s);
    return 0;
}

// ----------------------------------------------------------------------------
// The Llama-3.2-1B shape

// A table as one BF16 safetensors file (the project's writer does F32 only).
static int save_bf16(const Table *t, const char *path, char *err) {
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = 0; i < t->n; i++) {
        const Tensor *x = &t->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, x->name);
        cJSON_AddStringToObject(e, "dtype", "BF16");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (x->rows > 1) cJSON_AddItemToArray(shape, cJSON_CreateNumber(x->rows));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber(x->cols));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += x->size * 2;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    AtomicFile f;
    if (af_open(&f, path, err)) { free(json); return -1; }
    uint64_t len = padded;   // little-endian on x86
    int rc = af_write(&f, &len, 8, err) || af_write(&f, json, n, err) || af_write(&f, "        ", padded - n, err);
    free(json);
    uint16_t *buf = malloc(1 << 21);
    for (int i = 0; i < t->n && !rc; i++) {
        const Tensor *x = &t->t[i];
        for (size_t j = 0; j < x->size && !rc; j += 1 << 20) {
            size_t k = x->size - j < (1 << 20) ? x->size - j : (1 << 20);
            for (size_t q = 0; q < k; q++) buf[q] = f32_to_bf16(x->data[j + q]);
            rc = af_write(&f, buf, k * 2, err);
        }
    }
    free(buf);
    if (rc) { af_abort(&f); return -1; }
    return af_commit(&f, err);
}

// Writes DIR/config.json and DIR/model.safetensors (random BF16 weights).
static int gen_1b(const char *dir, char *err) {
    Model m;
    Config c = config_1b();
    if (model_init(&m, &c, err)) return -1;
    fill_random(&m.params);
    char path[4096];
    int rc = make_dirs(dir, err) || path_join(path, sizeof path, dir, "config.json", err) ||
             config_save(&m.c, path, err) || path_join(path, sizeof path, dir, "model.safetensors", err) ||
             save_bf16(&m.params, path, err);
    model_free(&m);
    return rc ? -1 : 0;
}

// Drops the file's pages from the page cache, so the next read comes from disk.
static void evict(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

static double rss_now_gib(void) {   // VmRSS of /proc/self/status
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atof(line + 6);
    if (f) fclose(f);
    return kib / 1048576.0;
}

static double peak_rss_gib(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1048576.0;   // ru_maxrss is in KiB
}

static int bench_1b(const char *dir, int threads) {
    printf("threads %d\n", threads);
    char err[ERR_MAX], path[4096];
    if (path_join(path, sizeof path, dir, "model.safetensors", err)) die(err);
    double t0 = now_seconds();
    fflush(stdout);
    pid_t pid = fork();   // generate in a child: its memory is not ours
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        if (gen_1b(dir, err)) { fprintf(stderr, "bench_train: %s\n", err); _exit(1); }
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) die("generating the 1B model failed");
    printf("1b_generate_s %.2f\n", now_seconds() - t0);

    Run s;
    evict(path);
    t0 = now_seconds();
    if (model_load(&s.m, dir, err)) die(err);
    printf("1b_load_cold_s %.2f\n", now_seconds() - t0);
    printf("1b_params %zu\n", s.m.params.total);
    printf("1b_peak_rss_load_gib %.3f\n", peak_rss_gib());
    printf("1b_rss_after_load_gib %.3f\n", rss_now_gib());
    model_free(&s.m);
    t0 = now_seconds();
    if (model_load(&s.m, dir, err)) die(err);
    printf("1b_load_warm_s %.2f\n", now_seconds() - t0);
    fflush(stdout);

    run_init(&s, 1, 256);
    double flops = lora_step_flops(&s.m, 16, TARGETS, 1, 256);
    for (int i = 1; i <= 2; i++) {   // the first step also faults in activations and optimizer state
        t0 = now_seconds();
        float loss = run_step(&s);
        double dt = now_seconds() - t0;
        if (!isfinite(loss)) die("the 1B loss is not finite");
        printf("1b_step%d_loss %.4f\n", i, loss);
        printf("1b_step%d_s %.3f\n", i, dt);
        printf("1b_step%d_gflops %.2f\n", i, flops / dt / 1e9);
    }
    printf("1b_peak_rss_gib %.3f\n", peak_rss_gib());
    printf("1b_rss_after_step_gib %.3f\n", rss_now_gib());
    run_free(&s);
    return 0;
}

// ----------------------------------------------------------------------------
// Several adapters at once against one at a time.

static int bench_many(int threads, int steps, int K, int T) {
    printf("threads %d\n", threads);
    Model m;
    Config c = config_25m();
    char err[ERR_MAX];
    if (model_init(&m, &c, err)) die(err);
    model_random(&m, 1, 0.02f);
    Example *ex = random_examples(K * steps, T, c.vocab, 5);
    Lora *lo = calloc((size_t)K, sizeof *lo);
    SftRun *runs = calloc((size_t)K, sizeof *runs);
    for (int k = 0; k < K; k++) {
        if (lora_init(&lo[k], &c, 16, 32.0f, TARGETS)) die("out of memory (adapters)");
        runs[k] = (SftRun){.ex = ex + (size_t)k * steps, .n = steps, .o = sft_defaults(), .lora = &lo[k]};
        runs[k].o.seed = k;
    }
    double sep = 0, tog = 0;
    for (int rep = 0; rep < 2; rep++) {   // alternating, so that load on a shared machine falls on both
        double t0 = now_seconds();
        for (int k = 0; k < K; k++) {
            SftStats st;
            lora_reset(&lo[k], 10 + k);
            model_attach_lora(&m, &lo[k]);
            if (sft(&m, runs[k].ex, steps, &runs[k].o, &st, err)) die(err);
        }
        sep += now_seconds() - t0;
        for (int k = 0; k < K; k++) lora_reset(&lo[k], 10 + k);
        model_attach_lora(&m, &lo[0]);
        t0 = now_seconds();
        if (sft_many(&m, runs, K, err)) die(err);
        tog += now_seconds() - t0;
    }
    printf("many_adapters %d\nmany_steps %d\nmany_seq %d\n", K, steps, T);
    printf("many_separate_s %.3f\nmany_together_s %.3f\nmany_speedup %.3f\n", sep / 2, tog / 2, sep / tog);
    model_attach_lora(&m, NULL);
    for (int k = 0; k < K; k++) lora_free(&lo[k]);
    examples_free(ex, K * steps);
    free(lo); free(runs);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: bench_train train [--threads N] [--steps N] [--warmup N] | 1b DIR [--threads N] | many [--threads N] [--steps N] [--many K] [--seq T]");
    int threads = omp_get_num_procs(), steps = 5, warmup = 2, a = 2, many = 0, seq = 64;
    const char *dir = NULL;
    if (!strcmp(argv[1], "1b")) {
        if (argc < 3) die("1b needs a directory");
        dir = argv[a++];
    } else if (!strcmp(argv[1], "many")) many = 4;
    else if (strcmp(argv[1], "train")) die("unknown mode (expected train, 1b or many)");
    for (; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--steps")) steps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--warmup")) warmup = atoi(argv[a + 1]);
        else if (many && !strcmp(argv[a], "--many")) many = atoi(argv[a + 1]);
        else if (many && !strcmp(argv[a], "--seq")) seq = atoi(argv[a + 1]);
        else die("unknown option");
    }
    if (a != argc) die("an option lacks its value");
    if (threads < 1 || steps < 1 || warmup < 0 || (argv[1][0] == 'm' && (many < 1 || many > MAX_ADAPTERS || seq < 2))) die("bad option value");
    omp_set_num_threads(threads);
    if (many) return bench_many(threads, steps, many, seq);
    return dir ? bench_1b(dir, threads) : bench_train(threads, steps, warmup);
}
