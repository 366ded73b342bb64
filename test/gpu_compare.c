// test/gpu_compare.c: the CPU model (model.c, fp32, the truth) and the CUDA
// backend (kernels.cu, bf16) on the same random Llama-shaped model, LoRA
// adapter and batch: logits, loss, every LoRA gradient, one AdamW step, and
// KV-cache prefill + decode (logits and greedy choices), each with its
// relative error.
//
//   gpu_compare [--shape 1b|small] [--batch B] [--seq T] [--rank R] [--seed S]
//               [--head-dim HD] [--kv-heads KV] [--tied] [--all-targets] [--qwen2] [--exact]
//               [--many K]
//
// --shape 1b is Llama-3.2-1B's (tied, GQA 32/8, llama3 RoPE, vocab 128256);
// small is a 2-layer model with head_dim 64 (the tensor-core attention path)
// that the CPU emulator of CUDA (make test-cuda-emu) runs in seconds;
// --head-dim, --kv-heads and --tied change it (head_dim 8: the attention
// kernels' plain-loop path; --kv-heads 4: no GQA; --all-targets: adapters on
// all seven projections; --qwen2: Qwen2's random q/k/v biases). Prints
// one line per comparison; exit status 0 when every error is inside its bound.
// --exact tightens the bounds for the emulator's exact build. --many K also
// trains K adapters at once on the device (be_sft_many: one pass over every
// adapter's rows a step) against the CPU's sft_many: each one's losses and
// the update it made.
#include "bench/bench_models.h"
#include "backend.h"
#include "kernels.h"
#include "model.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Bounds on the error of bf16 against fp32, relative to the reference's size;
// with --exact (the CPU emulator built with -DSEAL_EMU_EXACT, where "bf16"
// holds a float) only the order of fp32 sums differs, and the bounds shrink.
static double LOGITS_BOUND = 2e-2;   // max |ours - ref| / max |ref|
static double GRAD_BOUND = 5e-2;     // || ours - ref || / || ref || over a group of tensors
static double LOSS_BOUND = 1e-2;     // |ours - ref| / max(1, |ref|)

static int failures;

static void die(const char *msg) {
    fprintf(stderr, "gpu_compare: %s\n", msg);
    exit(1);
}

// max|a-b| / max|b| over n values; also the relative L2 error in *l2.
static double max_rel(const float *a, const float *b, size_t n, double *l2) {
    double mx = 0, mref = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx)) mx = d;   // NaN sticks
        if (fabs(b[i]) > mref) mref = fabs(b[i]);
        d2 += d * d;
        r2 += (double)b[i] * b[i];
    }
    if (l2) *l2 = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    return mref > 0 ? mx / mref : mx;
}

static void report(const char *what, double err, double bound) {
    const int ok = err <= bound;   // NaN fails
    printf("%-58s %.3e  (bound %.0e)  %s\n", what, err, bound, ok ? "ok" : "FAIL");
    failures += !ok;
}

static Config config_small(void) {
    Config c = {.dim = 256, .hidden = 512, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .vocab = 1000,
                .norm_eps = 1e-5f, .rope_theta = 500000.0f, .rope_llama3 = 1, .rope_factor = 8.0f, .rope_low_freq = 1.0f,
                .rope_high_freq = 4.0f, .rope_orig_max_pos = 64, .tied = 0, .max_pos = 4096, .bos = 1, .eos = {2}, .n_eos = 1};
    return c;
}

static int argmax_row(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Gradient errors grouped by projection and A/B, summed over layers.
static void compare_grads(const Lora *lo, const Table *ours, const char *phase) {
    for (int p = 0; p < N_PROJ; p++) {
        if (!(lo->targets >> p & 1)) continue;
        for (int ab = 0; ab < 2; ab++) {
            double d2 = 0, r2 = 0, worst = 0;
            char tag[32], what[128];
            snprintf(tag, sizeof tag, "%s.lora_%c", PROJ_NAME[p], ab ? 'B' : 'A');
            for (int i = 0; i < lo->grads.n; i++) {
                const Tensor *ref = &lo->grads.t[i], *x = &ours->t[i];
                if (!strstr(ref->name, tag)) continue;
                double l2;
                max_rel(x->data, ref->data, ref->size, &l2);
                if (!(l2 <= worst)) worst = l2;
                for (size_t j = 0; j < ref->size; j++) {
                    const double d = (double)x->data[j] - ref->data[j];
                    d2 += d * d;
                    r2 += (double)ref->data[j] * ref->data[j];
                }
            }
            snprintf(what, sizeof what, "%s %s, rel L2 over layers (worst layer %.1e)", phase, tag, worst);
            report(what, r2 > 0 ? sqrt(d2 / r2) : sqrt(d2), GRAD_BOUND);
        }
    }
}

// K adapters, each from lo moved a little, trained together on both sides:
// each run its own examples (rows of ids, of different lengths), batch,
// epochs, learning rate and order, so the runs take different numbers of steps.
static void compare_many(Model *m, const Lora *lo, const int *ids, int B, int T, int K, char *err) {
    Example *ex = calloc(B, sizeof *ex);
    uint8_t *mask = malloc((size_t)B * T);
    for (int b = 0; b < B; b++) {
        ex[b] = (Example){.ids = (int *)ids + (size_t)b * T, .loss = mask + (size_t)b * T, .len = T - 3 * b > 4 ? T - 3 * b : 4};
        for (int t = 0; t < T; t++) mask[(size_t)b * T + t] = t >= T / 3;
    }
    Lora *cpu = calloc(K, sizeof *cpu), *gpu = calloc(K, sizeof *gpu);
    SftRun *rc = calloc(K, sizeof *rc), *rg = calloc(K, sizeof *rg);
    for (int k = 0; k < K; k++) {
        if (lora_init(&cpu[k], &m->c, lo->r, lo->alpha, lo->targets) || lora_init(&gpu[k], &m->c, lo->r, lo->alpha, lo->targets))
            die("out of memory (adapters)");
        for (size_t j = 0; j < lo->params.total; j++) cpu[k].params.mem[j] = lo->params.mem[j] * (1.0f + 0.05f * k);
        memcpy(gpu[k].params.mem, cpu[k].params.mem, lo->params.total * sizeof(float));
        SftOpts o = sft_defaults();
        o.lr = 1e-3f * (1 + k % 3), o.batch = 1 + k % 2, o.epochs = 1 + k % 2, o.seed = 7 + k, o.warmup = k % 2, o.weight_decay = 0.01f;
        const int first = k % B;
        rc[k] = (SftRun){.ex = ex + first, .n = B - first, .o = o, .lora = &cpu[k]};
        rg[k] = rc[k];
        rg[k].lora = &gpu[k];
    }
    double t0 = now_seconds();
    if (sft_many(m, rc, K, err)) die(err);
    printf("sft_many, %d adapters: cpu %.2f s", K, now_seconds() - t0);
    Backend *be = backend_new(1, err);
    t0 = now_seconds();
    if (!be || be_sft_many(be, m, rg, K, err)) die(err);
    printf(", gpu %.3f s\n", now_seconds() - t0);
    double dl = 0, d2 = 0, r2 = 0;
    int steps_same = 1;
    for (int k = 0; k < K; k++) {
        dl = fmax(dl, fabs(rg[k].st.last_loss - rc[k].st.last_loss) / fmax(1.0, fabs(rc[k].st.last_loss)));
        dl = fmax(dl, fabs(rg[k].st.first_loss - rc[k].st.first_loss) / fmax(1.0, fabs(rc[k].st.first_loss)));
        steps_same &= rg[k].st.steps == rc[k].st.steps && rc[k].st.steps == sft_steps(rc[k].n, rc[k].o.batch, rc[k].o.epochs);
        for (size_t j = 0; j < lo->params.total; j++) {   // the updates: trained minus where each started
            const double start = lo->params.mem[j] * (1.0f + 0.05f * k), ref = cpu[k].params.mem[j] - start, ours = gpu[k].params.mem[j] - start;
            d2 += (ours - ref) * (ours - ref);
            r2 += ref * ref;
        }
    }
    char what[128];
    snprintf(what, sizeof what, "%d adapters at once: losses, |diff| / max(1, |ref|)", K);
    report(what, dl, LOSS_BOUND);
    snprintf(what, sizeof what, "%d adapters at once: updates, rel L2", K);
    report(what, r2 > 0 ? sqrt(d2 / r2) : sqrt(d2), GRAD_BOUND);
    printf("%-58s %s\n", "every run took its own number of steps", steps_same ? "ok" : "FAIL");
    failures += !steps_same;
    backend_close(be);
    for (int k = 0; k < K; k++) lora_free(&cpu[k]), lora_free(&gpu[k]);
    free(cpu); free(gpu); free(rc); free(rg); free(ex); free(mask);
}

int main(int argc, char **argv) {
    const char *shape = "1b";
    int B = 2, T = 200, R = 16, hd = 0, kv_heads = 0, tied = 0, all_targets = 0, qwen2 = 0, many = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) B = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seq")) T = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rank")) R = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--head-dim")) hd = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--kv-heads")) kv_heads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--many")) many = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tied")) tied = 1;
        else if (!strcmp(argv[i], "--all-targets")) all_targets = 1;
        else if (!strcmp(argv[i], "--qwen2")) qwen2 = 1;
        else if (!strcmp(argv[i], "--exact")) {
            LOGITS_BOUND = 1e-4;
            GRAD_BOUND = 1e-4;
            LOSS_BOUND = 1e-5;
        } else die("usage: gpu_compare [--shape 1b|small] [--batch B] [--seq T] [--rank R] [--seed S] [--head-dim HD] [--kv-heads KV] [--tied] [--all-targets] [--qwen2] [--exact] [--many K]");
    }
    if (B < 1 || T < 8 || R < 1 || many < 0 || many > MAX_ADAPTERS || (strcmp(shape, "1b") && strcmp(shape, "small"))) die("bad arguments");
    (void)config_25m;
    char err[ERR_MAX], dev[256];
    if (!cuda_available(err)) die(err);
    cuda_device_name(dev, sizeof dev);
    Config c = !strcmp(shape, "1b") ? config_1b() : config_small();
    if (hd > 0) c.head_dim = hd;
    if (kv_heads > 0) c.n_kv_heads = kv_heads;
    if (tied) c.tied = 1;
    if (qwen2) c.arch = ARCH_QWEN2;
    if (c.head_dim % 2 || c.n_heads % c.n_kv_heads) die("head_dim must be even and kv heads divide the heads");
    const int V = c.vocab, N = B * T;
    printf("gpu_compare: %s shape (dim %d, %d layers, %d/%d heads, head_dim %d, vocab %d%s%s), batch %d x %d, LoRA r=%d on %s\n", shape,
           c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, V, c.tied ? ", tied" : "", qwen2 ? ", Qwen2 q/k/v biases" : "", B, T, R,
           all_targets ? "all projections" : "q,v,gate,up,down");
    printf("device: %s\n", dev);

    // Model, adapter (B != 0 so that every gradient is non-trivial), batch
    Model m;
    if (model_init(&m, &c, err)) die(err);
    fill_random(&m.params);
    Lora lo;
    const unsigned targets = all_targets ? (1u << N_PROJ) - 1 : 1u << PROJ_Q | 1u << PROJ_V | 1u << PROJ_GATE | 1u << PROJ_UP | 1u << PROJ_DOWN;
    if (lora_init(&lo, &c, R, 2.0f * R, targets)) die("out of memory (adapter)");
    lora_reset(&lo, seed);
    Rng r;
    rng_seed(&r, seed + 1);
    for (int i = 0; i < lo.params.n; i++)
        if (strstr(lo.params.t[i].name, "lora_B"))
            for (size_t j = 0; j < lo.params.t[i].size; j++) lo.params.t[i].data[j] = 0.02f * rng_normal(&r);
    model_attach_lora(&m, &lo);
    int *ids = malloc(N * sizeof(int)), *labels = malloc(N * sizeof(int));
    for (int n = 0; n < N; n++) {
        ids[n] = (int)(rng_next(&r) % (uint64_t)V);
        labels[n] = rng_uniform(&r) < 0.15f ? -100 : ids[n];
    }

    // CPU: forward, backward, one AdamW step
    double t0 = now_seconds();
    Acts a;
    if (acts_init(&a, &m, B, T, err)) die(err);
    const float loss_cpu = model_forward(&m, &a, ids, labels);
    float *logits_cpu = malloc((size_t)N * V * sizeof(float));
    memcpy(logits_cpu, a.logits, (size_t)N * V * sizeof(float));
    table_zero(&lo.grads);
    model_backward(&m, &a);
    Table grads_cpu, params0, gpu_t;
    table_like(&grads_cpu, &lo.grads);
    memcpy(grads_cpu.mem, lo.grads.mem, lo.grads.total * sizeof(float));
    table_like(&params0, &lo.params);
    memcpy(params0.mem, lo.params.mem, lo.params.total * sizeof(float));
    table_like(&gpu_t, &lo.params);
    acts_free(&a);
    printf("cpu forward + backward: %.2f s, loss %.6f\n", now_seconds() - t0, loss_cpu);

    // GPU: the same
    t0 = now_seconds();
    CudaModel *g = cuda_model_new(&m, err);
    if (!g) die(err);
    printf("gpu upload: %.2f s\n", now_seconds() - t0);
    float *logits_gpu = malloc((size_t)N * V * sizeof(float)), loss_gpu;
    t0 = now_seconds();
    if (cuda_forward(g, ids, labels, B, T, 1, logits_gpu, &loss_gpu, err) || cuda_zero_grads(g, err) || cuda_backward(g, err) ||
        cuda_lora_get(g, 0, &gpu_t, 1, err))
        die(err);
    printf("gpu forward + backward: %.3f s, loss %.6f\n", now_seconds() - t0, loss_gpu);
    double l2;
    char what[128];
    const double lr_max = max_rel(logits_gpu, logits_cpu, (size_t)N * V, &l2);
    snprintf(what, sizeof what, "logits, max|diff| / max|ref| (rel L2 %.1e)", l2);
    report(what, lr_max, LOGITS_BOUND);
    report("loss, |diff| / max(1, |ref|)", fabs(loss_gpu - loss_cpu) / fmax(1.0, fabs(loss_cpu)), LOSS_BOUND);
    compare_grads(&lo, &gpu_t, "grad");

    // One AdamW step from the CPU's gradients on both sides
    AdamW opt;
    adamw_init(&opt, &lo.params, 0.9f, 0.999f, 1e-8f, 0.01f);
    const float lr = 1e-3f;
    adamw_step(&opt, &lo.params, &lo.grads, lr);
    if (cuda_adamw_step(g, 0, lr, 0.9f, 0.999f, 1e-8f, 0.01f, err) || cuda_lora_get(g, 0, &gpu_t, 0, err)) die(err);
    {   // the step taken: compare params - params0 where gradients are not within noise of zero
        double d2 = 0, r2 = 0, g2 = 0;
        for (size_t i = 0; i < grads_cpu.total; i++) g2 += (double)grads_cpu.mem[i] * grads_cpu.mem[i];
        const double small = 0.1 * sqrt(g2 / grads_cpu.total);   // Adam normalises: gradients near zero flip sign with noise
        for (size_t i = 0; i < gpu_t.total; i++) {
            const double ref = lo.params.mem[i] - params0.mem[i], ours = gpu_t.mem[i] - params0.mem[i];
            if (fabs(grads_cpu.mem[i]) < small) continue;
            d2 += (ours - ref) * (ours - ref);
            r2 += ref * ref;
        }
        report("AdamW update, rel L2 (elements with non-tiny gradients)", r2 > 0 ? sqrt(d2 / r2) : sqrt(d2), GRAD_BOUND);
    }
    adamw_free(&opt);
    // Back to the starting adapter for decoding, on both sides
    memcpy(lo.params.mem, params0.mem, lo.params.total * sizeof(float));
    if (cuda_lora_set(g, &lo, err)) die(err);

    // KV cache: prompts of different lengths, then decode steps
    const int STEPS = 4, max_T = T + STEPS + 1;
    int *lens = malloc(B * sizeof(int));
    const int **prompts = malloc(B * sizeof(int *));
    for (int b = 0; b < B; b++) {
        lens[b] = T - 3 * b > 1 ? T - 3 * b : 1;
        prompts[b] = ids + (size_t)b * T;
    }
    KVCache kv;
    if (kv_init(&kv, &m, B, max_T, err)) die(err);
    CudaKV *ckv = cuda_kv_new(g, B, max_T, err), *ckv2 = cuda_kv_new(g, B, max_T, err);
    if (!ckv || !ckv2) die(err);
    float *lc = malloc((size_t)B * V * sizeof(float)), *lg = malloc((size_t)B * V * sizeof(float));
    int *seqs = malloc(B * sizeof(int)), *toks = malloc(B * sizeof(int)), *next = malloc(B * sizeof(int));
    t0 = now_seconds();
    if (kv_prefill(&m, &kv, B, prompts, lens, lc, err)) die(err);
    const double cpu_prefill = now_seconds() - t0;
    t0 = now_seconds();
    if (cuda_kv_prefill(ckv, B, prompts, lens, lg, err) || cuda_kv_prefill(ckv2, B, prompts, lens, lg, err)) die(err);
    printf("kv prefill of %d prompts: cpu %.2f s, gpu (two caches) %.3f s\n", B, cpu_prefill, now_seconds() - t0);
    double worst = max_rel(lg, lc, (size_t)B * V, NULL);
    int greedy_same = 1;
    for (int s = 0; s < STEPS; s++) {
        for (int b = 0; b < B; b++) {
            seqs[b] = b;
            toks[b] = argmax_row(lc + (size_t)b * V, V);   // follow the CPU's greedy path on every side
        }
        if (kv_step(&m, &kv, B, seqs, toks, lc, err) || cuda_kv_step(ckv, B, seqs, toks, lg, err) ||
            cuda_kv_step_greedy(ckv2, B, seqs, toks, next, err))
            die(err);
        const double e = max_rel(lg, lc, (size_t)B * V, NULL);
        if (!(e <= worst)) worst = e;
        for (int b = 0; b < B; b++) greedy_same &= next[b] == argmax_row(lg + (size_t)b * V, V);
    }
    snprintf(what, sizeof what, "kv prefill + %d decode steps, logits max|diff| / max|ref|", STEPS);
    report(what, worst, LOGITS_BOUND);
    printf("%-58s %s\n", "greedy on the GPU = argmax of the GPU's logits", greedy_same ? "ok" : "FAIL");
    failures += !greedy_same;
    printf("decode graphs: %s\n", cuda_kv_graphs(ckv) ? "on" : "off (SEAL_CUDA_GRAPHS=0, or capture failed)");
    if (many) compare_many(&m, &lo, ids, B, T, many, err);
    printf("peak GPU memory: %.2f GiB\n", cuda_memory_peak() / 1073741824.0);
    printf("%s\n", failures ? "FAIL" : "PASS");

    cuda_kv_free(ckv);
    cuda_kv_free(ckv2);
    cuda_model_free(g);
    kv_free(&kv);
    free(lc); free(lg); free(seqs); free(toks); free(next); free(lens); free(prompts);
    free(logits_cpu); free(logits_gpu); free(ids); free(labels);
    table_free(&grads_cpu);
    table_free(&params0);
    table_free(&gpu_t);
    model_attach_lora(&m, NULL);
    lora_free(&lo);
    model_free(&m);
    return failures ? 1 : 0;
}
