// test/test_model.c: the CPU model against finite differences, the committed
// PyTorch fixtures, and every kind of bad input file.
#include "test.h"
#include "safetensors.h"
#include "train.h"
#include "util.h"
#include "verify.h"
#include "weights.h"
#include "generate.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURES "test/fixtures"
#define FIXTURES_HF "test/fixtures_hf"

// A batch of 2 x 7 with a few ignored labels.
enum { TB = 2, TT = 7 };
static void tiny_batch(const Config *c, int *ids, int *labels) {
    for (int i = 0; i < TB * TT; i++) {
        ids[i] = (i * 7 + 3) % c->vocab;
        labels[i] = (i % 5 == 2) ? -100 : ids[i];
    }
}

static float loss_of(Model *m, Acts *a, const int *ids, const int *labels) {
    return model_forward(m, a, ids, labels);
}

// Directional finite difference on every trainable tensor: compares
// g . d with (L(p + h d) - L(p - h d)) / 2h for a random direction d.
static void check_gradients(Model *m, const char *what) {
    int ids[TB * TT], labels[TB * TT];
    tiny_batch(&m->c, ids, labels);
    Acts a;
    char err[ERR_MAX];
    ck_assert_msg(acts_init(&a, m, TB, TT, err) == 0, "%s", err);
    Table *params = trainable_params(m), *grads = trainable_grads(m);
    table_zero(grads);
    loss_of(m, &a, ids, labels);
    model_backward(m, &a);
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < params->n; i++) {
        Tensor *p = &params->t[i], *g = &grads->t[i];
        float *d = malloc(p->size * sizeof(float)), *save = malloc(p->size * sizeof(float));
        memcpy(save, p->data, p->size * sizeof(float));
        double gd = 0, dn = 0;
        for (size_t j = 0; j < p->size; j++) { d[j] = rng_normal(&r); gd += (double)g->data[j] * d[j]; dn += (double)d[j] * d[j]; }
        const float h = 1e-2f / sqrtf((float)dn);   // a step of norm 1e-2
        for (size_t j = 0; j < p->size; j++) p->data[j] = save[j] + h * d[j];
        double up = loss_of(m, &a, ids, labels);
        for (size_t j = 0; j < p->size; j++) p->data[j] = save[j] - h * d[j];
        double down = loss_of(m, &a, ids, labels);
        memcpy(p->data, save, p->size * sizeof(float));
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - gd) <= 2e-3 + 2e-2 * fabs(gd), "%s: %s: finite difference %.6g, backward %.6g", what, p->name, fd, gd);
        free(d);
        free(save);
    }
    acts_free(&a);
}

// arch ARCH_QWEN2: q, k and v projections with (random, non-zero) biases.
static void random_model_arch(Model *m, int tied, int group, int llama3, int arch) {
    Config c = tiny_config(tied, group, llama3);
    c.arch = arch;
    char err[ERR_MAX];
    ck_assert_msg(model_init(m, &c, err) == 0, "%s", err);
    model_random(m, 42, 0.2f);
}

static void random_model(Model *m, int tied, int group, int llama3) { random_model_arch(m, tied, group, llama3, ARCH_LLAMA); }

static void random_lora(Lora *l, const Model *m, unsigned targets) {
    ck_assert_int_eq(lora_init(l, &m->c, 4, 8.0f, targets), 0);
    Rng r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < l->params.total; i++) l->params.mem[i] = 0.3f * rng_normal(&r);   // B != 0
}

START_TEST(grad_full) {
    // _i: 0 tied, GQA 2, llama3 RoPE; 1 untied, GQA 1; 2 untied, GQA 4, llama3;
    // 3 Qwen2 (q/k/v biases, checked by finite differences like every tensor), untied, GQA 2
    const int tied[] = {1, 0, 0, 0}, group[] = {2, 1, 4, 2}, llama3[] = {1, 0, 1, 0}, arch[] = {0, 0, 0, ARCH_QWEN2};
    Model m;
    random_model_arch(&m, tied[_i], group[_i], llama3[_i], arch[_i]);
    ck_assert_int_eq(model_train_full(&m), 0);
    if (arch[_i] == ARCH_QWEN2) {
        ck_assert_ptr_nonnull(m.layers[1].proj[PROJ_V].dbias);
        ck_assert_ptr_null(m.layers[1].proj[PROJ_O].bias);
        ck_assert_ptr_nonnull(table_get(&m.grads, "model.layers.1.self_attn.k_proj.bias"));
    }
    check_gradients(&m, "full");
    model_free(&m);
}
END_TEST

START_TEST(grad_lora) {
    // _i: 0 all seven modules; 1 SEAL's set; 2 q_proj and v_proj on a Qwen2 base (biases frozen)
    const unsigned targets[] = {0x7f, (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN),
                                (1u << PROJ_Q) | (1u << PROJ_V)};
    Model m;
    Lora l;
    random_model_arch(&m, _i == 0, 2, _i < 2, _i == 2 ? ARCH_QWEN2 : ARCH_LLAMA);
    random_lora(&l, &m, targets[_i]);
    model_attach_lora(&m, &l);
    check_gradients(&m, "lora");
    ck_assert_ptr_null(m.grads.mem);   // a frozen base has no gradient buffers
    ck_assert_ptr_null(m.layers[0].proj[PROJ_Q].dbias);
    lora_free(&l);
    model_free(&m);
}
END_TEST

START_TEST(lora_merge_equals_adapter) {
    Model m;
    Lora l;
    random_model_arch(&m, 0, 2, 0, ARCH_QWEN2);   // the biases stay as they are through merge and unmerge
    random_lora(&l, &m, 0x7f);
    int ids[TB * TT], labels[TB * TT];
    tiny_batch(&m.c, ids, labels);
    char err[ERR_MAX];
    Acts a;
    model_attach_lora(&m, &l);
    ck_assert_int_eq(acts_init(&a, &m, TB, TT, err), 0);
    model_forward(&m, &a, ids, NULL);
    size_t n = (size_t)TB * TT * m.c.vocab;
    float *with_adapter = malloc(n * sizeof(float)), *base = malloc(m.params.total * sizeof(float));
    memcpy(with_adapter, a.logits, n * sizeof(float));
    acts_free(&a);
    memcpy(base, m.params.mem, m.params.total * sizeof(float));
    model_attach_lora(&m, NULL);
    lora_merge(&m, &l, 1.0f);
    ck_assert_int_eq(acts_init(&a, &m, TB, TT, err), 0);
    model_forward(&m, &a, ids, NULL);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq_tol(a.logits[i], with_adapter[i], 1e-4);
    lora_merge(&m, &l, -1.0f);   // unmerge restores the base
    for (size_t i = 0; i < m.params.total; i++) ck_assert_float_eq_tol(m.params.mem[i], base[i], 1e-5);
    free(with_adapter);
    free(base);
    acts_free(&a);
    lora_free(&l);
    model_free(&m);
}
END_TEST

START_TEST(save_load_roundtrip) {
    char dir[256], adir[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "roundtrip");
    Model m, m2;
    Lora l, l2;
    random_model_arch(&m, _i & 1, 2, 1, _i == 2 ? ARCH_QWEN2 : ARCH_LLAMA);   // 2: Qwen2, its biases and model_type
    random_lora(&l, &m, (1u << PROJ_Q) | (1u << PROJ_DOWN));
    ck_assert_msg(model_save(&m, dir, err) == 0, "%s", err);
    ck_assert_msg(model_load(&m2, dir, err) == 0, "%s", err);
    ck_assert_int_eq(memcmp(&m.c, &m2.c, sizeof m.c), 0);
    ck_assert_int_eq(m.params.total, m2.params.total);
    ck_assert_int_eq(memcmp(m.params.mem, m2.params.mem, m.params.total * sizeof(float)), 0);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    ck_assert_msg(lora_save(&l, adir, "tiny", err) == 0, "%s", err);
    ck_assert_msg(lora_load(&l2, &m.c, adir, err) == 0, "%s", err);
    ck_assert_int_eq(l2.r, l.r);
    ck_assert_int_eq(l2.targets, l.targets);
    ck_assert_float_eq(l2.alpha, l.alpha);
    ck_assert_int_eq(memcmp(l.params.mem, l2.params.mem, l.params.total * sizeof(float)), 0);
    lora_free(&l); lora_free(&l2);
    model_free(&m); model_free(&m2);
}
END_TEST

// ---------------------------------------------------------------------------
// Fixtures from test/reference.py

// The fixture folders of a directory (FIXTURES: test/reference.py's, FIXTURES_HF:
// the same models and batches run by Hugging Face transformers + peft in fp32).
static int list_fixtures_in(const char *dir, char names[][256], int max) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < max;)
        if (e->d_name[0] != '.') snprintf(names[n++], 256, "%s/%.200s", dir, e->d_name);
    if (d) closedir(d);
    return n;
}

static int list_fixtures(char names[][256], int max) { return list_fixtures_in(FIXTURES, names, max); }

START_TEST(fixtures_pass) {
    const char *dirs[] = {FIXTURES, FIXTURES_HF};
    char names[32][256], err[ERR_MAX] = "";
    int n = list_fixtures_in(dirs[_i], names, 32);
    ck_assert_msg(n >= 5, "expected the committed fixtures under %s, found %d", dirs[_i], n);
    for (int i = 0; i < n; i++) {
        char *buf;
        size_t len;
        FILE *out = open_memstream(&buf, &len);
        int rc = verify_fixture(names[i], out, err);
        fclose(out);
        ck_assert_msg(rc == 0, "%s: rc %d: %s\n%s", names[i], rc, err, buf);
        free(buf);
    }
}
END_TEST

// Copies fixture src to a temp dir, then rewrites expected.safetensors with
// one number of tensor `victim` changed by `delta`.
static void perturbed_copy(const char *src, char *dst, size_t n, const char *victim, float delta) {
    temp_dir(dst, n, "perturbed");
    char cmd[1024], path[512], err[ERR_MAX];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s/", src, dst);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/expected.safetensors", dst);
    StFile f;
    ck_assert_msg(st_open(&f, path, err) == 0, "%s", err);
    StOut *out = calloc(f.n, sizeof(StOut));
    void **bufs = calloc(f.n, sizeof(void *));
    for (int i = 0; i < f.n; i++) {
        const StTensor *t = &f.t[i];
        bufs[i] = malloc(t->numel * 4 + 4);
        if (t->dtype == DT_I32) st_read_i32(&f, t, bufs[i], t->numel, err);
        else st_read_f32(&f, t, bufs[i], t->numel, err);
        if (!strcmp(t->name, victim)) ((float *)bufs[i])[t->numel / 2] += delta;
        out[i] = (StOut){.name = t->name, .dtype = t->dtype == DT_I32 ? DT_I32 : DT_F32, .ndim = t->ndim, .data = bufs[i]};
        for (int d = 0; d < t->ndim; d++) out[i].shape[d] = t->shape[d];
    }
    const char **meta = calloc(2 * f.n_meta, sizeof(char *));
    for (int i = 0; i < f.n_meta; i++) { meta[2 * i] = f.meta_keys[i]; meta[2 * i + 1] = f.meta_vals[i]; }
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    ck_assert_msg(st_write(tmp, out, f.n, meta, f.n_meta, err) == 0, "%s", err);
    for (int i = 0; i < f.n; i++) free(bufs[i]);
    free(bufs); free(out); free(meta);
    st_close(&f);
    ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(perturbed_fixture_fails) {
    // each victim is a different stage: forward, backward, optimizer
    const char *victims[] = {"logits", "loss", "steps.loss"};
    char names[32][256], dir[256], err[ERR_MAX];
    ck_assert_int_ge(list_fixtures(names, 32), 1);
    perturbed_copy(names[0], dir, sizeof dir, victims[_i], 0.05f);
    FILE *out = fopen("/dev/null", "w");
    int rc = verify_fixture(dir, out, err);
    fclose(out);
    ck_assert_msg(rc == 1, "perturbing %s: verify returned %d, expected 1", victims[_i], rc);
}
END_TEST

START_TEST(perturbed_gradient_fails) {
    char names[32][256], dir[256], err[ERR_MAX], victim[200] = "";
    int n = list_fixtures(names, 32);
    ck_assert_int_ge(n, 1);
    StFile f;
    char path[400];
    snprintf(path, sizeof path, "%s/expected.safetensors", names[0]);
    ck_assert_msg(st_open(&f, path, err) == 0, "%s", err);
    for (int i = 0; i < f.n && !victim[0]; i++)
        if (!strncmp(f.t[i].name, "grad.", 5)) snprintf(victim, sizeof victim, "%s", f.t[i].name);
    st_close(&f);
    perturbed_copy(names[0], dir, sizeof dir, victim, 1.0f);
    FILE *out = fopen("/dev/null", "w");
    ck_assert_int_eq(verify_fixture(dir, out, err), 1);
    fclose(out);
}
END_TEST

// ---------------------------------------------------------------------------
// Optimizer and schedule

START_TEST(adamw_matches_formula) {
    Table p = {0}, g = {0};
    table_add(&p, "w", 1, 2);
    table_alloc(&p);
    table_like(&g, &p);
    p.mem[0] = 1.0f; p.mem[1] = -2.0f;
    AdamW o;
    adamw_init(&o, &p, 0.9f, 0.999f, 1e-8f, 0.1f);
    double w = 1.0, m = 0, v = 0;
    for (int t = 1; t <= 3; t++) {
        g.mem[0] = 0.5f * t; g.mem[1] = -0.25f;
        adamw_step(&o, &p, &g, 0.01f);
        double gr = 0.5 * t;   // torch.optim.AdamW, written out
        w *= 1 - 0.01 * 0.1;
        m = 0.9 * m + 0.1 * gr;
        v = 0.999 * v + 0.001 * gr * gr;
        w -= 0.01 * (m / (1 - pow(0.9, t))) / (sqrt(v / (1 - pow(0.999, t))) + 1e-8);
    }
    ck_assert_double_eq_tol(p.mem[0], w, 1e-6);
    adamw_free(&o);
    table_free(&p); table_free(&g);
}
END_TEST

START_TEST(schedule_and_clipping) {
    ck_assert_float_eq(lr_at(1.0f, 0, 10, 100), 0.0f);
    ck_assert_float_eq_tol(lr_at(1.0f, 5, 10, 100), 0.5f, 1e-6);
    ck_assert_float_eq_tol(lr_at(1.0f, 10, 10, 100), 1.0f, 1e-6);
    ck_assert_float_eq_tol(lr_at(1.0f, 55, 10, 100), 0.5f, 1e-6);
    ck_assert_float_eq_tol(lr_at(1.0f, 100, 10, 100), 0.0f, 1e-6);
    Table g = {0};
    table_add(&g, "g", 1, 2);
    table_alloc(&g);
    g.mem[0] = 3; g.mem[1] = 4;
    ck_assert_float_eq_tol(clip_grad_norm(&g, 1.0f), 5.0f, 1e-6);
    ck_assert_float_eq_tol(g.mem[0], 0.6f, 1e-5);
    ck_assert_float_eq_tol(clip_grad_norm(&g, 10.0f), 1.0f, 1e-5);
    ck_assert_float_eq_tol(g.mem[1], 0.8f, 1e-5);   // under the limit: untouched
    table_free(&g);
}
END_TEST

// gemm against a naive double-precision product, on sizes that take each of
// its paths (tiny, split by rows, split by columns) and every transpose.
START_TEST(gemm_matches_naive) {
    const int sizes[][3] = {{3, 5, 7}, {300, 200, 50}, {2, 3000, 64}, {1, 1, 1}};
    Rng r;
    rng_seed(&r, 3);
    for (int s = 0; s < 4; s++)
        for (int tr = 0; tr < 4; tr++) {
            const int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2], ta = tr & 1, tb = tr >> 1;
            float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)K * N * 4), *C = malloc((size_t)M * N * 4);
            for (int i = 0; i < M * K; i++) A[i] = rng_normal(&r);
            for (int i = 0; i < K * N; i++) B[i] = rng_normal(&r);
            for (int i = 0; i < M * N; i++) C[i] = rng_normal(&r);
            float *C0 = malloc((size_t)M * N * 4);
            memcpy(C0, C, (size_t)M * N * 4);
            const float beta = (s + tr) % 2 ? 0.5f : 0.0f;
            gemm(ta, tb, M, N, K, 1.5f, A, ta ? M : K, B, tb ? K : N, beta, C, N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0;
                    for (int k = 0; k < K; k++) acc += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    double want = 1.5 * acc + beta * C0[i * N + j];
                    ck_assert_msg(fabs(C[i * N + j] - want) <= 1e-4 * (1 + fabs(want)) + 1e-5 * sqrt(K),
                                  "M%d N%d K%d ta%d tb%d: C[%d,%d] = %g, want %g", M, N, K, ta, tb, i, j, C[i * N + j], want);
                }
            free(A); free(B); free(C); free(C0);
        }
}
END_TEST

START_TEST(rope_llama3_regimes) {
    Config c = tiny_config(0, 1, 1);
    float inv[4];
    rope_inv_freq(&c, inv);
    const float base[4] = {1.0f, powf(500000.0f, -0.25f), powf(500000.0f, -0.5f), powf(500000.0f, -0.75f)};
    ck_assert_float_eq_tol(inv[0], base[0], 1e-7);                  // high frequency: kept
    ck_assert_float_eq_tol(inv[1], base[1], 1e-7);
    ck_assert_float_eq_tol(inv[3], base[3] / 8.0f, 1e-10);          // low: divided by factor
    float wl = 2 * (float)M_PI / base[2], smooth = (8192.0f / wl - 1.0f) / 3.0f;
    ck_assert_float_eq_tol(inv[2], (1 - smooth) * base[2] / 8 + smooth * base[2], 1e-9);
    ck_assert(inv[2] < base[2] && inv[2] > base[2] / 8);
}
END_TEST

// ---------------------------------------------------------------------------
// KV-cache decoding and generation

// Logits of every position through the cache (a prompt, then one token at a
// time, two sequences interleaved in one cache) equal the full forward.
START_TEST(kv_cache_matches_forward) {
    Model m;
    Lora l;
    random_model_arch(&m, _i & 1, 2, 1, _i == 2 ? ARCH_QWEN2 : ARCH_LLAMA);   // 2: Qwen2's biases in the cache path
    random_lora(&l, &m, 0x7f);
    model_attach_lora(&m, &l);
    int ids[TB * TT], labels[TB * TT];
    tiny_batch(&m.c, ids, labels);
    char err[ERR_MAX];
    Acts a;
    ck_assert_int_eq(acts_init(&a, &m, TB, TT, err), 0);
    model_forward(&m, &a, ids, NULL);
    KVCache kv;
    ck_assert_int_eq(kv_init(&kv, &m, TB, TT, err), 0);
    const int V = m.c.vocab, prompt[TB] = {3, 1};
    float *logits = malloc(TB * V * sizeof(float));
    for (int b = 0; b < TB; b++) {
        ck_assert_msg(kv_append(&m, &kv, b, ids + b * TT, prompt[b], logits, err) == 0, "%s", err);
        for (int v = 0; v < V; v++) ck_assert_float_eq_tol(logits[v], a.logits[(b * TT + prompt[b] - 1) * V + v], 1e-4);
    }
    for (int t = 1; t < TT; t++) {   // both sequences step together while they have tokens left
        int seqs[TB], toks[TB], n = 0;
        for (int b = 0; b < TB; b++)
            if (kv.len[b] < TT) { seqs[n] = b; toks[n++] = ids[b * TT + kv.len[b]]; }
        if (!n) break;
        ck_assert_msg(kv_step(&m, &kv, n, seqs, toks, logits, err) == 0, "%s", err);
        for (int i = 0; i < n; i++)
            for (int v = 0; v < V; v++)
                ck_assert_float_eq_tol(logits[i * V + v], a.logits[(seqs[i] * TT + kv.len[seqs[i]] - 1) * V + v], 1e-4);
    }
    int bad = V;
    ck_assert_int_eq(kv_step(&m, &kv, 1, (int[]){0}, &bad, logits, err), -1);   // full, and a bad id
    free(logits);
    kv_free(&kv);
    acts_free(&a);
    lora_free(&l);
    model_free(&m);
}
END_TEST

// Prompt chunks (passes of more than QMAT_MAX_ROWS rows) take their own
// path through the cache: q, k, v and gate, up in one product each
// (linear_fused; Qwen2's biases lie between q, k and v, so _i == 1 checks the
// fallback) and attention in GEMM tiles of up to ATT_BLOCK rows. Two prompts
// of 598 and 560 tokens fill a pass of KV_ROWS (1024) rows and a second one,
// where sequence 1 resumes at position 426; then two decode steps. Every logit
// equals model_forward's on the same tokens (a LoRA attached) within 2e-5 of the
// largest (measured 1.8-8.2e-6: fp32 sums in another order over 600 tokens,
// exp_simd in place of expf).
START_TEST(kv_prefill_chunks_match_forward) {
    enum { T = 600, L1 = 560 };
    Config c = tiny_config(0, 2, 0);
    c.arch = _i ? ARCH_QWEN2 : ARCH_LLAMA;
    c.max_pos = T;
    char err[ERR_MAX];
    Model m;
    Lora l;
    ck_assert_msg(model_init(&m, &c, err) == 0, "%s", err);
    model_random(&m, 42, 0.2f);
    random_lora(&l, &m, 0x7f);
    model_attach_lora(&m, &l);
    const int V = c.vocab, lens[2] = {T - 2, L1};
    int ids[2 * T];
    for (int i = 0; i < 2 * T; i++) ids[i] = (i * 7 + i / 5 + 3) % V;
    Acts a;
    ck_assert_int_eq(acts_init(&a, &m, 2, T, err), 0);
    model_forward(&m, &a, ids, NULL);
    KVCache kv;
    ck_assert_int_eq(kv_init(&kv, &m, 2, T, err), 0);
    ck_assert_int_lt(kv.rows, lens[0] + lens[1]);   // two passes
    const int *prompts[2] = {ids, ids + T};
    float *got = malloc(2 * V * sizeof(float)), worst = 0.0f, top = 0.0f;
    ck_assert_msg(kv_prefill(&m, &kv, 2, prompts, lens, got, err) == 0, "%s", err);
    for (int s = 0; s < 3; s++) {   // s = 0: the prefill's logits; 1, 2: decode steps
        if (s) {
            int seqs[2] = {0, 1}, toks[2] = {ids[kv.len[0]], ids[T + kv.len[1]]};
            ck_assert_msg(kv_step(&m, &kv, 2, seqs, toks, got, err) == 0, "%s", err);
        }
        for (int b = 0; b < 2; b++)
            for (int v = 0; v < V; v++) {
                float e = a.logits[((size_t)b * T + kv.len[b] - 1) * V + v];
                worst = fmaxf(worst, fabsf(got[b * V + v] - e));
                top = fmaxf(top, fabsf(e));
            }
    }
    printf("kv prefill in chunks (%s): max |logit - model_forward logit| = %.2e of max |logit| %.2f (%.1e relative, tolerance 2e-5)\n",
           _i ? "Qwen2, separate q, k, v" : "Llama, fused", worst, top, worst / top);
    ck_assert_msg(worst <= 2e-5f * top, "logits %g from model_forward's (max %g)", worst, top);
    free(got);
    kv_free(&kv);
    acts_free(&a);
    lora_free(&l);
    model_free(&m);
}
END_TEST

START_TEST(sampling) {
    float logits[6] = {0.1f, 2.0f, 1.9f, -1.0f, 2.0f, 0.0f};
    SampleOpts greedy = {.temperature = 0};
    Rng r;
    rng_seed(&r, 1);
    ck_assert_int_eq(sample_token(logits, 6, &greedy, &r), 1);   // ties go to the lowest id
    SampleOpts top2 = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f};
    SampleOpts nucleus = {.temperature = 1.0f, .top_p = 0.5f};
    int seen[6] = {0}, seen_p[6] = {0};
    for (int i = 0; i < 2000; i++) {
        float l1[6], l2[6];
        memcpy(l1, logits, sizeof l1);
        memcpy(l2, logits, sizeof l2);
        seen[sample_token(l1, 6, &top2, &r)]++;
        seen_p[sample_token(l2, 6, &nucleus, &r)]++;
    }
    ck_assert_int_eq(seen[0] + seen[2] + seen[3] + seen[5], 0);   // only the two best
    ck_assert(seen[1] > 800 && seen[4] > 800);
    // top-p 0.5: ids 1 and 4 hold 0.31 each, so 1 alone is < 0.5 and 4 joins; 2 does not
    ck_assert_int_eq(seen_p[0] + seen_p[2] + seen_p[3] + seen_p[5], 0);
    ck_assert(seen_p[1] > 800 && seen_p[4] > 800);
}
END_TEST

// The sampler before the cut (generate.c): the whole vocabulary sorted.
typedef struct { float logit; int id; } RefCand;
static int ref_desc(const void *a, const void *b) {
    const RefCand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}
static int sample_full_sort(const float *logits, int V, const SampleOpts *o, Rng *r) {
    RefCand *c = malloc((size_t)V * sizeof(RefCand));
    for (int i = 0; i < V; i++) c[i] = (RefCand){logits[i] / o->temperature, i};
    qsort(c, V, sizeof(RefCand), ref_desc);
    int keep = o->top_k > 0 && o->top_k < V ? o->top_k : V;
    double sum = 0.0;
    for (int i = 0; i < keep; i++) sum += exp((double)c[i].logit - c[0].logit);
    if (o->top_p < 1.0f) {
        double above = 0.0;
        int n = 0;
        while (n < keep && above < o->top_p) above += exp((double)c[n++].logit - c[0].logit) / sum;
        keep = n > 0 ? n : 1;
        sum = 0.0;
        for (int i = 0; i < keep; i++) sum += exp((double)c[i].logit - c[0].logit);
    }
    double u = rng_uniform(r) * sum, acc = 0.0;
    int pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        acc += exp((double)c[i].logit - c[0].logit);
        if (u < acc) { pick = c[i].id; break; }
    }
    free(c);
    return pick;
}

// sample_token sorts only the tokens within 37 nats of the best: it draws
// the same token as the full sort for the same generator state, over
// temperatures, top-k, top-p, logits spread far beyond the cut (std 12),
// ties, and tokens masked far below.
START_TEST(sampling_same_as_full_sort) {
    const int V = 3000;
    float *l = malloc(V * sizeof(float)), *l2 = malloc(V * sizeof(float));
    Rng g, r1, r2;
    rng_seed(&g, 11);
    const float temps[] = {0.5f, 1.0f, 2.0f}, tops_p[] = {1.0f, 0.95f, 0.5f};
    const int tops_k[] = {0, 1, 40, 2900};
    int draws = 0, distinct = 0, last = -1;
    for (int trial = 0; trial < 40; trial++) {
        const float spread = trial % 2 ? 12.0f : 1.5f;
        for (int i = 0; i < V; i++) l[i] = spread * rng_normal(&g);
        for (int i = 0; i < V; i += 97) l[i] = l[(i + 1) % V];   // ties
        if (trial % 3 == 0)
            for (int i = 0; i < V; i += 5) l[i] = -1e30f;   // far below, as a constraint's -inf (sample_token refuses non-finite logits)
        for (int t = 0; t < 3; t++)
            for (int p = 0; p < 3; p++)
                for (int k = 0; k < 4; k++) {
                    SampleOpts o = {.temperature = temps[t], .top_p = tops_p[p], .top_k = tops_k[k]};
                    rng_seed(&r1, 100 + trial);
                    rng_seed(&r2, 100 + trial);
                    for (int d = 0; d < 5; d++) {
                        memcpy(l2, l, V * sizeof(float));
                        const int want = sample_full_sort(l, V, &o, &r1), got = sample_token(l2, V, &o, &r2);
                        ck_assert_msg(got == want, "trial %d, temperature %g, top_p %g, top_k %d, draw %d: %d, full sort %d",
                                      trial, temps[t], tops_p[p], tops_k[k], d, got, want);
                        distinct += want != last;
                        last = want;
                        draws++;
                    }
                }
    }
    ck_assert_int_gt(distinct, draws / 4);   // the draws vary: the comparison covers more than the argmax
    free(l);
    free(l2);
}
END_TEST

// Greedy continuations through the KV cache equal the PyTorch reference's.
START_TEST(greedy_matches_reference) {
    char names[32][256], path[400], err[ERR_MAX];
    int n = list_fixtures(names, 32);
    ck_assert_int_ge(n, 4);
    for (int f = 0; f < n; f++) {
        Model m;
        Lora l = {0};
        ck_assert_msg(model_load(&m, names[f], err) == 0, "%s", err);
        snprintf(path, sizeof path, "%.300s/adapter", names[f]);
        if (lora_load(&l, &m.c, path, err) == 0) model_attach_lora(&m, &l);
        StFile st;
        snprintf(path, sizeof path, "%.300s/expected.safetensors", names[f]);
        ck_assert_msg(st_open(&st, path, err) == 0, "%s", err);
        const StTensor *p = st_find(&st, "generate.prompt"), *g = st_find(&st, "generate.greedy");
        ck_assert_msg(p && g, "%s: no generate.prompt / generate.greedy", path);
        int prompt[64], want[64], *out, out_len;
        ck_assert_int_eq(st_read_i32(&st, p, prompt, p->numel, err), 0);
        ck_assert_int_eq(st_read_i32(&st, g, want, g->numel, err), 0);
        SampleOpts o = {.max_new = (int)g->numel, .temperature = 0};
        const int *prompts[1] = {prompt}, lens[1] = {(int)p->numel};
        ck_assert_msg(generate(&m, prompts, lens, 1, &o, NULL, 0, NULL, NULL, &out, &out_len, err) == 0, "%s", err);
        ck_assert_int_eq(out_len, g->numel);
        for (int i = 0; i < out_len; i++) ck_assert_msg(out[i] == want[i], "%s: token %d: %d, reference %d", names[f], i, out[i], want[i]);
        free(out);
        st_close(&st);
        if (l.params.mem) lora_free(&l);
        model_free(&m);
    }
}
END_TEST

// A batch of prompts of different lengths (prefilled together, decoded
// together) continues each prompt exactly as generating it alone does.
START_TEST(batch_equals_single) {
    Model m;
    random_model(&m, 1, 2, 1);
    m.c.max_pos = 128;   // room in the context for p1 and its new tokens
    const int p0[] = {3, 5, 7}, p1[] = {9, 1, 4, 4, 2, 8, 6, 30, 31, 32, 33, 34, 35, 36, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                        17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    const int *prompts[2] = {p0, p1}, lens[2] = {3, (int)(sizeof p1 / sizeof *p1)};
    SampleOpts o = {.max_new = 6, .temperature = 0.8f, .top_p = 0.9f, .seed = 4};
    char err[ERR_MAX];
    int *both[2], both_len[2];
    ck_assert_msg(generate(&m, prompts, lens, 2, &o, NULL, 0, NULL, NULL, both, both_len, err) == 0, "%s", err);
    for (int b = 0; b < 2; b++) {   // alone, sequence b must use RNG stream b: shift the seed's stream by running it as the b-th of a batch of b+1
        int *one[2], one_len[2];
        const int *pp[2] = {prompts[b], prompts[b]}, ll[2] = {lens[b], lens[b]};
        ck_assert_int_eq(generate(&m, pp, ll, b + 1, &o, NULL, 0, NULL, NULL, one, one_len, err), 0);
        ck_assert_int_eq(one_len[b], both_len[b]);
        for (int i = 0; i < both_len[b]; i++) ck_assert_int_eq(one[b][i], both[b][i]);
        for (int k = 0; k <= b; k++) free(one[k]);
    }
    free(both[0]);
    free(both[1]);
    model_free(&m);
}
END_TEST

// NaN and Inf are never results: weights that hold one are refused when
// loaded, a training run whose loss becomes one says it diverged, and
// generation stops with an error instead of emitting tokens.
START_TEST(nonfinite_refused) {
    char dir[256], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "nonfinite");
    Model m, m2;
    random_model(&m, 1, 2, 0);
    table_get(&m.params, "model.layers.0.mlp.up_proj.weight")->data[5] = NAN;
    ck_assert_msg(model_save(&m, dir, err) == 0, "%s", err);
    ck_assert_int_eq(model_load(&m2, dir, err), -1);
    ck_assert_msg(strstr(err, "model.layers.0.mlp.up_proj.weight holds NaN or Inf"), "%s", err);
    table_get(&m.params, "model.layers.0.mlp.up_proj.weight")->data[5] = 0;
    // an absurd learning rate: the loss becomes NaN or Inf and training stops
    Lora l;
    ck_assert_int_eq(lora_init(&l, &m.c, 2, 4.0f, (1u << PROJ_Q) | (1u << PROJ_V)), 0);
    lora_reset(&l, 3);
    model_attach_lora(&m, &l);
    int ids[6] = {1, 2, 3, 4, 5, 6};
    uint8_t loss[6] = {0, 1, 1, 1, 1, 1};
    Example ex = {.ids = ids, .loss = loss, .len = 6};
    SftOpts so = sft_defaults();
    so.lr = 1e38f;
    so.epochs = 20;
    so.max_grad_norm = 0;
    SftStats st;
    ck_assert_msg(sft(&m, &ex, 1, &so, &st, err) == 0, "%s", err);
    ck_assert_int_eq(st.diverged, 1);
    ck_assert_int_lt(st.steps, 20);
    char why[128];
    sft_diverged_why(&st, 20, why, sizeof why);
    ck_assert_msg(!strncmp(why, SFT_DIVERGED ": loss NaN at step ", strlen(SFT_DIVERGED ": loss NaN at step ")) && strstr(why, "of 20"), "%s", why);
    // sampling from such a model: an error, not tokens
    float logits[4] = {0.5f, NAN, 1.0f, 0.0f}, inf[4] = {0, INFINITY, 0, 0};
    Rng r;
    rng_seed(&r, 1);
    ck_assert_int_eq(sample_token(logits, 4, &(SampleOpts){.temperature = 0}, &r), -1);
    ck_assert_int_eq(sample_token(inf, 4, &(SampleOpts){.temperature = 1, .top_p = 1}, &r), -1);
    int prompt[2] = {1, 2}, *out[1], out_len[1];
    const int *prompts[1] = {prompt};
    ck_assert_int_eq(generate(&m, prompts, (int[]){2}, 1, &(SampleOpts){.temperature = 0, .max_new = 4}, NULL, 0, NULL, NULL, out, out_len, err), -1);
    ck_assert_msg(strstr(err, "NaN or Inf"), "%s", err);
    free(out[0]);
    model_attach_lora(&m, NULL);
    lora_free(&l);
    model_free(&m);
}
END_TEST


// K adapters trained together (sft_many: one pass over every run's rows a
// step) end as K trained one at a time (sft): the same steps, losses and
// weights up to the order of float sums. The runs differ in examples, batch,
// epochs, learning rate, order and warm-up, so they take different numbers of
// steps and the lockstep goes on with fewer runs; the last one diverges (an
// absurd learning rate) and the others must not notice.
// A recording step for sft_loop: padded tokens, and each example's id (its
// first token) counted as it is trained.
typedef struct {
    long padded;
    int seen[64];
} Recorded;

static int record_step(void *ctx, int k, const int *which, const int *rows, const int *ids, const int *labels, int T, const float *lr,
                       float *loss, char *err) {
    (void)which; (void)labels; (void)lr; (void)err;
    Recorded *r = ctx;
    for (int j = 0, row = 0; j < k; row += rows[j++]) {
        for (int b = 0; b < rows[j]; b++) r->seen[ids[(size_t)(row + b) * T]]++;
        r->padded += (long)rows[j] * T;
        loss[j] = 1.0f;
    }
    return 0;
}

// --group-by-length: every example still trained once an epoch, with less padding.
START_TEST(group_by_length_pads_less) {
    enum { N = 64, EPOCHS = 3 };
    Example ex[N];
    int ids[N][40];
    uint8_t loss[N][40];
    Rng r;
    rng_seed(&r, 5);
    long tokens = 0;
    for (int i = 0; i < N; i++) {
        ex[i] = (Example){.ids = ids[i], .loss = loss[i], .len = 4 + (int)(rng_next(&r) % 36)};
        for (int t = 0; t < ex[i].len; t++) ids[i][t] = t ? 1 : i, loss[i][t] = 1;
        tokens += ex[i].len;
    }
    long padded[2];
    for (int g = 0; g < 2; g++) {
        SftRun run = {.ex = ex, .n = N, .o = sft_defaults()};
        run.o.batch = 4;
        run.o.epochs = EPOCHS;
        run.o.group_by_length = g;
        Recorded rec = {0};
        char err[ERR_MAX];
        ck_assert_int_eq(sft_loop(&run, 1, 64, record_step, &rec, err), 0);
        for (int i = 0; i < N; i++) ck_assert_int_eq(rec.seen[i], EPOCHS);
        padded[g] = rec.padded;
    }
    fprintf(stderr, "group_by_length: %ld tokens padded to %ld in shuffled batches, %ld grouped\n", tokens * EPOCHS, padded[0], padded[1]);
    ck_assert(padded[1] < padded[0] - (padded[0] - tokens * EPOCHS) / 2);   // at least half the padding gone
}
END_TEST

START_TEST(sft_many_equals_separate) {
    enum { K = 4, NEX = 5 };
    Model m;
    random_model(&m, 0, 2, 1);
    Lora sep[K], many[K];
    SftRun runs[K];
    Example ex[NEX];
    int ids[NEX][12];
    uint8_t loss[NEX][12];
    for (int i = 0; i < NEX; i++) {   // lengths 6..10, loss on the second half
        ex[i] = (Example){.ids = ids[i], .loss = loss[i], .len = 6 + i};
        for (int t = 0; t < ex[i].len; t++) ids[i][t] = (t * 5 + i * 3 + 1) % m.c.vocab, loss[i][t] = t >= ex[i].len / 2;
    }
    const int n[K] = {5, 3, 4, 2}, batch[K] = {2, 1, 3, 1}, epochs[K] = {2, 3, 1, 2};
    const float lr[K] = {1e-2f, 3e-3f, 2e-2f, 1e38f};
    char err[ERR_MAX];
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(lora_init(&sep[k], &m.c, 4, 8.0f, (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_DOWN)), 0);
        ck_assert_int_eq(lora_init(&many[k], &m.c, 4, 8.0f, (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_DOWN)), 0);
        lora_reset(&sep[k], 10 + k);
        for (size_t j = 0; j < sep[k].params.total; j++) sep[k].params.mem[j] += 0.01f * (float)((j * 7 + k) % 13);   // B != 0
        memcpy(many[k].params.mem, sep[k].params.mem, sep[k].params.total * sizeof(float));
        SftOpts o = sft_defaults();
        o.lr = lr[k], o.batch = batch[k], o.epochs = epochs[k], o.seed = 100 + k, o.warmup = k, o.weight_decay = 0.01f * k;
        o.max_grad_norm = k == 3 ? 0 : 1.0f;
        runs[k] = (SftRun){.ex = ex + k % 2, .n = n[k], .o = o, .lora = &many[k]};
    }
    model_attach_lora(&m, &many[0]);
    ck_assert_msg(sft_many(&m, runs, K, err) == 0, "%s", err);
    float dl = 0, dw = 0;
    for (int k = 0; k < K; k++) {
        SftStats st;
        model_attach_lora(&m, &sep[k]);
        ck_assert_msg(sft(&m, runs[k].ex, runs[k].n, &runs[k].o, &st, err) == 0, "%s", err);
        ck_assert_int_eq(runs[k].st.steps, st.steps);
        ck_assert_int_eq(runs[k].st.diverged, st.diverged);
        ck_assert_int_eq(st.diverged, k == 3);
        if (st.diverged) continue;
        ck_assert_int_eq(st.steps, sft_steps(n[k], batch[k], epochs[k]));
        dl = fmaxf(dl, fmaxf(fabsf(runs[k].st.first_loss - st.first_loss), fabsf(runs[k].st.last_loss - st.last_loss)));
        float moved = 0;
        for (size_t j = 0; j < sep[k].params.total; j++) {
            dw = fmaxf(dw, fabsf(many[k].params.mem[j] - sep[k].params.mem[j]));
            moved = fmaxf(moved, fabsf(many[k].params.mem[j] - many[(k + 1) % 3].params.mem[j]));
        }
        ck_assert_msg(moved > 1e-3f, "run %d ended where run %d did", k, (k + 1) % 3);
    }
    ck_assert_msg(dl < 1e-5f && dw < 1e-5f, "together vs apart: losses differ by %g, weights by %g", dl, dw);
    fprintf(stderr, "sft_many_equals_separate: %d adapters together vs apart: max loss diff %.3g, max weight diff %.3g\n", K, dl, dw);
    // several runs train adapters, not the model
    runs[1].lora = NULL;
    ck_assert_int_eq(sft_many(&m, runs, 2, err), -1);
    ck_assert_msg(strstr(err, "adapters"), "%s", err);
    model_attach_lora(&m, NULL);
    for (int k = 0; k < K; k++) lora_free(&sep[k]), lora_free(&many[k]);
    model_free(&m);
}
END_TEST

// qmat_mul of every compact form equals the plain dot products of its rows
// (qmat_row_f32, in double) for 1..11 rows of x: the 8-row groups and their
// remainders, Q4_1's block sums. Q4 blocks are random bytes with f16 scales.
// With fp32 activations within rounding; with q8 activations (Q8_0, Q4)
// within the bound their rounding allows: each x off by max|x| / 254 of its block.
START_TEST(qmat_kernels) {
    const int O = 37, I = 96;
    Rng r;
    rng_seed(&r, 3);
    float *w = malloc(O * I * sizeof(float)), *x = malloc(11 * I * sizeof(float)), *row = malloc(I * sizeof(float));
    float *y = malloc(11 * O * sizeof(float));
    for (int i = 0; i < O * I; i++) w[i] = 0.1f * rng_normal(&r);
    for (int i = 0; i < 11 * I; i++) x[i] = rng_normal(&r);
    for (int t = 0; t < QT_N; t++) {
        QMat q;
        ck_assert_int_eq(qmat_alloc(&q, t, O, I), 0);
        if (t == QT_BF16 || t == QT_Q8_0) qmat_from_f32(&q, w);
        else {
            for (size_t i = 0; i < q.row_bytes * O; i++) q.data[i] = (uint8_t)rng_next(&r);
            const int bytes = t == QT_Q4_0 ? 18 : 20;
            for (size_t b = 0; b < q.row_bytes * O; b += bytes) {
                q.data[b] = 0x00; q.data[b + 1] = 0x20;   // d = 2^-7 (f16 0x2000)
                if (t == QT_Q4_1) { q.data[b + 2] = 0x00; q.data[b + 3] = 0xa4; }   // m = -2^-6 (0xa400)
            }
        }
        for (int o = 0; o < O && t < QT_Q4_0; o++) {   // the conversions themselves: bf16 within 2^-8 relative, q8_0 within d/2
            qmat_row_f32(&q, o, row);
            for (int i = 0; i < I; i++) ck_assert_float_eq_tol(row[i], w[o * I + i], t == QT_BF16 ? fabsf(w[o * I + i]) / 256 : 0.5f * 0.1f * 5 / 127);
        }
        for (int q8 = 0; q8 <= 1; q8++) {
            double worst = 0;   // the q8 error as a share of its bound
            q.q8 = q8;
            for (int R = 1; R <= 11; R++) {
                qmat_mul(&q, x, R, y, q.rows, NULL);
                for (int o = 0; o < O; o++) {
                    qmat_row_f32(&q, o, row);
                    for (int i = 0; i < R; i++) {
                        double ref = 0, mag = 0, bound = 0;   // bound: each x off by at most its block's max|x| / 254
                        for (int j = 0; j < I; j++) { ref += (double)row[j] * x[i * I + j]; mag += fabs((double)row[j] * x[i * I + j]); }
                        for (int k = 0; k < I / 32; k++) {
                            double wabs = 0, xmax = 0;
                            for (int j = 32 * k; j < 32 * k + 32; j++) { wabs += fabs(row[j]); xmax = fmax(xmax, fabs(x[i * I + j])); }
                            bound += wabs * xmax / 254;
                        }
                        const double err = fabs(y[i * O + o] - ref), tol = (q8 && t != QT_BF16 ? bound : 0) + 1e-5 * mag + 1e-6;
                        ck_assert_msg(err <= tol, "%s, %s activations, %d rows: y[%d][%d] %g, expected %g (tolerance %g)",
                                      QT_NAME[t], q8 ? "q8" : "fp32", R, i, o, y[i * O + o], ref, tol);
                        if (q8 && bound > 0) worst = fmax(worst, err / bound);
                    }
                }
            }
            if (q8 && t != QT_BF16) printf("qmat %s, q8 activations: largest error %.2f of its bound\n", QT_NAME[t], worst);
        }
        qmat_free(&q);
    }
    free(w); free(x); free(row); free(y);
}
END_TEST

// qmat_mul_n over matrices of every form (different row counts, the same
// cols) writes, bit for bit, what qmat_mul writes for each one alone, with
// fp32 and with q8 activations, for 1..11 rows of x.
START_TEST(qmat_mul_n_matches_one_by_one) {
    const int I = 64, rows[QT_N] = {5, 40, 17, 33};
    int O = 0;
    for (int t = 0; t < QT_N; t++) O += rows[t];
    Rng r;
    rng_seed(&r, 5);
    QMat q[QT_N];
    const QMat *qs[QT_N];
    float *w = malloc((size_t)40 * I * sizeof(float)), *x = malloc(11 * I * sizeof(float));
    float *y = malloc((size_t)11 * O * sizeof(float)), *one = malloc((size_t)11 * O * sizeof(float));
    for (int i = 0; i < 40 * I; i++) w[i] = 0.1f * rng_normal(&r);
    for (int i = 0; i < 11 * I; i++) x[i] = rng_normal(&r);
    for (int t = 0; t < QT_N; t++) {
        ck_assert_int_eq(qmat_alloc(&q[t], t, rows[t], I), 0);
        if (t == QT_BF16 || t == QT_Q8_0) qmat_from_f32(&q[t], w);
        else
            for (size_t b = 0; b < q[t].row_bytes * rows[t]; b += t == QT_Q4_0 ? 18 : 20) {
                for (int j = 0; j < (t == QT_Q4_0 ? 18 : 20); j++) q[t].data[b + j] = (uint8_t)rng_next(&r);
                q[t].data[b + 1] = 0x20;   // d = 2^-7 and a little; Q4_1's m a small f16
                if (t == QT_Q4_1) q[t].data[b + 3] = 0xa4;
            }
        qs[t] = &q[t];
    }
    for (int q8 = 0; q8 <= 1; q8++)
        for (int R = 1; R <= 11; R++) {
            for (int t = 0; t < QT_N; t++) q[t].q8 = q8;
            qmat_mul_n(qs, QT_N, x, R, y, O, NULL);
            for (int t = 0, off = 0; t < QT_N; off += rows[t++]) qmat_mul(&q[t], x, R, one + off, O, NULL);
            ck_assert_msg(!memcmp(y, one, (size_t)R * O * sizeof(float)), "%s activations, %d rows: qmat_mul_n differs", q8 ? "q8" : "fp32", R);
        }
    for (int t = 0; t < QT_N; t++) qmat_free(&q[t]);
    free(w); free(x); free(y); free(one);
}
END_TEST

// A decode step runs in one parallel region (kv_layers_decode) when every
// projection has a compact copy and no adapter (and heads are whole blocks of
// 32), else one product at a time. Both give the same logits bit for bit: an
// adapter with B = 0 (PEFT's init) adds zeros and sends the same model down
// the other path. Llama and Qwen2 (biases); bf16, q8_0, q8_0 with q8
// activations; steps of batch 3, then 2 tokens appended to one sequence (a
// 2-row tile in the attention).
START_TEST(kv_decode_region_same_as_per_product) {
    Config c = {.dim = 64, .hidden = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32, .vocab = 160, .arch = _i ? ARCH_QWEN2 : ARCH_LLAMA,
                .norm_eps = 1e-5f, .rope_theta = 10000.0f, .max_pos = 64, .bos = 1, .eos = {2}, .n_eos = 1};   // widths and heads of whole blocks of 32
    char err[ERR_MAX];
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    model_random(&m, 9, 0.15f);
    Lora l;
    ck_assert_int_eq(lora_init(&l, &m.c, 4, 8.0f, (1u << N_PROJ) - 1), 0);
    lora_reset(&l, 3);
    const int V = m.c.vocab, B = 3, G = 5, kinds[] = {WEIGHTS_BF16, WEIGHTS_Q8_0, WEIGHTS_Q8_0 | WEIGHTS_Q8_ACTS};
    int prompt[3][4] = {{3, 9, 27, 81}, {5, 7, 11, 13}, {2, 4, 8, 16}};
    const int *prompts[3] = {prompt[0], prompt[1], prompt[2]}, lens[3] = {4, 2, 3};
    float *out[2];
    for (int a = 0; a < 2; a++) out[a] = malloc((size_t)(G + 2) * B * V * sizeof(float));
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(model_compact(&m, kinds[k], NULL, err) == 0, "%s", err);
        for (int a = 0; a < 2; a++) {   // 0: one region; 1: the adapter of zeros, one product at a time
            model_attach_lora(&m, a ? &l : NULL);
            KVCache kv;
            ck_assert_int_eq(kv_init(&kv, &m, B, 16, err), 0);
            ck_assert_msg(kv_prefill(&m, &kv, B, prompts, lens, out[a], err) == 0, "%s", err);
            for (int s = 1; s <= G; s++) {
                int seqs[3] = {0, 1, 2}, toks[3] = {(s * 31 + 4) % V, (s * 17 + 2) % V, (s * 7 + 1) % V};
                ck_assert_msg(kv_step(&m, &kv, B, seqs, toks, out[a] + (size_t)s * B * V, err) == 0, "%s", err);
            }
            ck_assert_msg(kv_append(&m, &kv, 1, (int[]){6, 12}, 2, out[a] + (size_t)(G + 1) * B * V, err) == 0, "%s", err);
            kv_free(&kv);
        }
        ck_assert_msg(!memcmp(out[0], out[1], ((size_t)(G + 1) * B + 1) * V * sizeof(float)), "%s: the one-region step differs", model_weights_name(&m));
    }
    model_attach_lora(&m, NULL);
    free(out[0]); free(out[1]);
    lora_free(&l);
    model_free(&m);
}
END_TEST

// The KV cache through each compact copy against the fp32 reference: the
// logits of a prompt and of decode steps (batch 2, a LoRA attached) stay
// within the stated tolerance, relative to the largest logit: bf16 2e-2,
// q8_0 1e-1 (measured 9e-3 and 4.4e-2 on this random model, whose weights of
// std 0.15 amplify rounding more than a trained model's). native on fp32 weights makes no copy (exact).
START_TEST(kv_compact_within_tolerance) {
    Config c = {.dim = 64, .hidden = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16, .vocab = 160,
                .norm_eps = 1e-5f, .rope_theta = 10000.0f, .tied = _i == 0, .max_pos = 64, .bos = 1, .eos = {2}, .n_eos = 1};
    char err[ERR_MAX];
    Model m;
    Lora l;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    model_random(&m, 9, 0.15f);
    random_lora(&l, &m, 0x7f);
    model_attach_lora(&m, &l);
    const int V = c.vocab, P = 5, G = 6, B = 2;
    int prompt[2][5] = {{3, 9, 27, 81, 100}, {5, 7, 11, 13, 17}};
    const int *prompts[2] = {prompt[0], prompt[1]}, lens[2] = {P, P};
    float *ref = malloc((size_t)(G + 1) * B * V * sizeof(float)), *got = malloc((size_t)B * V * sizeof(float));
    const int kinds[] = {WEIGHTS_FP32, WEIGHTS_NATIVE, WEIGHTS_BF16, WEIGHTS_Q8_0};
    const float tol[] = {0.0f, 0.0f, 2e-2f, 1e-1f};
    for (int k = 0; k < 4; k++) {
        ck_assert_msg(model_compact(&m, kinds[k], NULL, err) == 0, "%s", err);
        ck_assert_int_eq(m.q_lm_head != NULL, kinds[k] == WEIGHTS_BF16 || kinds[k] == WEIGHTS_Q8_0);
        KVCache kv;
        ck_assert_int_eq(kv_init(&kv, &m, B, P + G, err), 0);
        float worst = 0.0f, top = 0.0f;
        for (int s = 0; s <= G; s++) {
            int seqs[2] = {0, 1}, toks[2] = {(s * 31 + 4) % V, (s * 17 + 2) % V};
            float *out = k ? got : ref + (size_t)s * B * V;
            if (!s) ck_assert_msg(kv_prefill(&m, &kv, B, prompts, lens, out, err) == 0, "%s", err);
            else ck_assert_msg(kv_step(&m, &kv, B, seqs, toks, out, err) == 0, "%s", err);
            for (int i = 0; k && i < B * V; i++) {
                float e = ref[(size_t)s * B * V + i];
                worst = fmaxf(worst, fabsf(out[i] - e));
                top = fmaxf(top, fabsf(e));
            }
        }
        if (k) printf("kv cache, %s weights: max |logit - fp32 logit| = %.2e of max |logit| %.2f (%.1e relative, tolerance %.0e)\n",
                      model_weights_name(&m), worst, top, worst / top, tol[k]);
        ck_assert_msg(worst <= tol[k] * top, "%s: logits %g from fp32 (max %g)", model_weights_name(&m), worst, top);
        ck_assert(k < 2 || worst > 0.0f);   // the copy was used
        kv_free(&kv);
    }
    free(ref); free(got);
    lora_free(&l);
    model_free(&m);
}
END_TEST

// The logits of positions P-1 .. T-1 of two sequences of T tokens (ids (2, T))
// through the KV cache: a prompt of P tokens, then a token a step. out (T-P+1, 2, V).
static void kv_logits(const Model *m, const int *ids, int T, int P, float *out) {
    char err[ERR_MAX];
    KVCache kv;
    ck_assert_int_eq(kv_init(&kv, m, 2, T, err), 0);
    const int *prompts[2] = {ids, ids + T}, lens[2] = {P, P};
    ck_assert_msg(kv_prefill(m, &kv, 2, prompts, lens, out, err) == 0, "%s", err);
    for (int t = P; t < T; t++) {
        int seqs[2] = {0, 1}, toks[2] = {ids[t], ids[T + t]};
        ck_assert_msg(kv_step(m, &kv, 2, seqs, toks, out + (size_t)(t - P + 1) * 2 * m->c.vocab, err) == 0, "%s", err);
    }
    kv_free(&kv);
}

// The compact copies through restem's merge_policy: lora_merge keeps them,
// each adapted projection's copy adding the merged adapter's term; the weights
// copied back and model_compact_restore, they are what they were. _i: bf16,
// q8_0, native on weights that are all bf16 (an exact copy). Merged (a second
// adapter attached, as in TTT), the KV cache's logits stay within the
// tolerance of kv_compact_within_tolerance of model_forward's on the merged
// fp32 weights, an exact copy within fp32's summation order (2e-5): the term
// adds no error of its own. Restored, they equal the logits from before the
// merge bit for bit. A second merge sets the adapted copies aside (fp32) until
// the restore.
START_TEST(kv_compact_across_merge) {
    Config c = {.dim = 64, .hidden = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16, .vocab = 160,
                .norm_eps = 1e-5f, .rope_theta = 10000.0f, .tied = 1, .max_pos = 64, .bos = 1, .eos = {2}, .n_eos = 1};
    const int kinds[] = {WEIGHTS_BF16, WEIGHTS_Q8_0, WEIGHTS_NATIVE};
    const float tol[] = {2e-2f, 1e-1f, 2e-5f};
    char err[ERR_MAX];
    Model m;
    Lora ttt, policy;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    model_random(&m, 9, 0.15f);
    for (size_t i = 0; _i == 2 && i < m.params.total; i++) {   // every weight a bf16: native copies them exactly
        uint32_t u;
        memcpy(&u, &m.params.mem[i], 4);
        u &= 0xffff0000u;
        memcpy(&m.params.mem[i], &u, 4);
    }
    random_lora(&ttt, &m, 0x7f);
    random_lora(&policy, &m, 1u << PROJ_Q | 1u << PROJ_V | 1u << PROJ_GATE | 1u << PROJ_UP | 1u << PROJ_DOWN);   // restem's m_targets
    model_attach_lora(&m, &ttt);
    ck_assert_msg(model_compact(&m, kinds[_i], NULL, err) == 0, "%s", err);
    ck_assert_ptr_nonnull(m.layers[0].proj[PROJ_Q].qw);
    enum { T = 11, P = 5, S = T - P + 1 };
    const int V = c.vocab;
    int ids[2 * T];
    for (int i = 0; i < 2 * T; i++) ids[i] = (i * 31 + 4) % V;
    float *before = malloc((size_t)S * 2 * V * sizeof(float)), *got = malloc((size_t)S * 2 * V * sizeof(float));
    float *base = malloc(m.params.total * sizeof(float));
    kv_logits(&m, ids, T, P, before);
    memcpy(base, m.params.mem, m.params.total * sizeof(float));

    lora_merge(&m, &policy, 1.0f);
    for (int p = 0; p < N_PROJ; p++) {   // every copy stays; the adapted ones carry the adapter's term
        ck_assert_ptr_nonnull(m.layers[1].proj[p].qw);
        ck_assert_int_eq(m.layers[1].proj[p].qr, policy.targets >> p & 1 ? policy.r : 0);
    }
    ck_assert_ptr_nonnull(m.q_lm_head);
    kv_logits(&m, ids, T, P, got);
    Acts a;
    ck_assert_int_eq(acts_init(&a, &m, 2, T, err), 0);
    model_forward(&m, &a, ids, NULL);
    float worst = 0.0f, top = 0.0f, moved = 0.0f;
    for (int s = 0; s < S; s++)
        for (int b = 0; b < 2; b++)
            for (int v = 0; v < V; v++) {
                const float e = a.logits[((size_t)b * T + P - 1 + s) * V + v], g = got[((size_t)s * 2 + b) * V + v];
                worst = fmaxf(worst, fabsf(g - e));
                top = fmaxf(top, fabsf(e));
                moved = fmaxf(moved, fabsf(g - before[((size_t)s * 2 + b) * V + v]));
            }
    const char *name[] = {"bf16", "q8_0", "native (exact bf16)"};
    printf("kv cache, %s weights, an adapter merged: max |logit - fp32 merged logit| = %.2e of max |logit| %.2f (%.1e relative, tolerance %.0e)\n",
           name[_i], worst, top, worst / top, tol[_i]);
    ck_assert_msg(worst <= tol[_i] * top, "merged: logits %g from model_forward's (max %g)", worst, top);
    ck_assert(moved > 0.1f * top);   // the merge moved the logits: an exact copy without the term would fail above
    acts_free(&a);

    model_attach_lora(&m, NULL);   // merged, nothing attached (sampling from the merged policy): the same within tolerance
    kv_logits(&m, ids, T, P, got);
    ck_assert_int_eq(acts_init(&a, &m, 2, T, err), 0);
    model_forward(&m, &a, ids, NULL);
    worst = top = 0.0f;
    for (int s = 0; s < S; s++)
        for (int b = 0; b < 2; b++)
            for (int v = 0; v < V; v++) {
                const float e = a.logits[((size_t)b * T + P - 1 + s) * V + v];
                worst = fmaxf(worst, fabsf(got[((size_t)s * 2 + b) * V + v] - e));
                top = fmaxf(top, fabsf(e));
            }
    printf("kv cache, %s weights, an adapter merged, none attached: %.1e relative (tolerance %.0e)\n", name[_i], worst / top, tol[_i]);
    ck_assert_msg(worst <= tol[_i] * top, "merged, nothing attached: logits %g from model_forward's (max %g)", worst, top);
    acts_free(&a);
    model_attach_lora(&m, &ttt);

    lora_merge(&m, &policy, -1.0f);   // a second term on the same copies: those wait, fp32 meanwhile
    ck_assert_ptr_null(m.layers[1].proj[PROJ_Q].qw);
    ck_assert_ptr_nonnull(m.layers[1].proj[PROJ_K].qw);
    ck_assert_ptr_nonnull(m.q_lm_head);

    memcpy(m.params.mem, base, m.params.total * sizeof(float));   // restem's student_restore
    model_compact_restore(&m);
    for (int p = 0; p < N_PROJ; p++) ck_assert(m.layers[1].proj[p].qw && !m.layers[1].proj[p].qr);
    kv_logits(&m, ids, T, P, got);
    ck_assert_msg(!memcmp(got, before, (size_t)S * 2 * V * sizeof(float)), "restored: the logits differ from those before the merge");
    free(before); free(got); free(base);
    lora_free(&ttt);
    lora_free(&policy);
    model_free(&m);
}
END_TEST

Suite *model_suite(void) {
    Suite *s = suite_create("model");
    TCase *t = add_case(s, "math", 120, lora_merge_equals_adapter, adamw_matches_formula, schedule_and_clipping,
                        rope_llama3_regimes, gemm_matches_naive);
    tcase_add_loop_test(t, grad_full, 0, 4);
    tcase_add_loop_test(t, grad_lora, 0, 3);
    tcase_add_loop_test(t, save_load_roundtrip, 0, 3);
    TCase *f = add_case(s, "fixtures", 120, perturbed_gradient_fails, greedy_matches_reference);
    tcase_add_loop_test(f, fixtures_pass, 0, 2);
    tcase_add_loop_test(f, perturbed_fixture_fails, 0, 3);
    // the default 4 s is short on two busy cores
    TCase *g = add_case(s, "generation", 60, sampling, batch_equals_single, nonfinite_refused, sft_many_equals_separate, group_by_length_pads_less);
    tcase_add_test(g, sampling_same_as_full_sort);
    tcase_add_loop_test(g, kv_cache_matches_forward, 0, 3);
    tcase_add_loop_test(g, kv_prefill_chunks_match_forward, 0, 2);
    tcase_add_test(g, qmat_kernels);
    tcase_add_test(g, qmat_mul_n_matches_one_by_one);
    tcase_add_loop_test(g, kv_decode_region_same_as_per_product, 0, 2);
    tcase_add_loop_test(g, kv_compact_within_tolerance, 0, 2);
    tcase_add_loop_test(g, kv_compact_across_merge, 0, 3);
    return s;
}
