// verify.c: see verify.h. Runs forward, backward and S AdamW steps on the
// fixture's batch and compares logits, loss, every gradient, every step's
// loss and every trained tensor with what the reference wrote.
#include "verify.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    StFile exp;
    int B, T, S, lora;
    float lr, beta1, beta2, eps, weight_decay;
    double atol, rtol, step_tol;   // step_tol: the extra tolerance of after.* tensors
    int *ids, *labels;
} Fixture;

static int meta_number(const StFile *f, const char *key, float *out, char *err) {
    const char *s = st_meta(f, key);
    if (!s) return errf(err, "%s: __metadata__ has no \"%s\"", f->path, key);
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || !isfinite(d)) return errf(err, "%s: __metadata__ \"%s\" = \"%s\" is not a number", f->path, key, s);
    *out = (float)d;
    return 0;
}

static int read_batch(Fixture *fx, int vocab, char *err) {
    const StTensor *ids = st_find(&fx->exp, "input_ids"), *labels = st_find(&fx->exp, "labels");
    if (!ids || !labels) return errf(err, "%s: needs tensors input_ids and labels", fx->exp.path);
    if (ids->ndim != 2 || labels->ndim != 2 || ids->shape[0] != labels->shape[0] || ids->shape[1] != labels->shape[1] ||
        ids->numel == 0 || ids->numel > (1 << 24))
        return errf(err, "%s: input_ids and labels must both be [B, T] with the same non-empty shape", fx->exp.path);
    fx->B = (int)ids->shape[0];
    fx->T = (int)ids->shape[1];
    fx->ids = xcalloc((size_t)ids->numel, sizeof(int));   // at most 2^24 each: checked above
    fx->labels = xcalloc((size_t)ids->numel, sizeof(int));
    if (st_read_i32(&fx->exp, ids, fx->ids, ids->numel, err) || st_read_i32(&fx->exp, labels, fx->labels, ids->numel, err)) return -1;
    for (int i = 0; i < fx->B * fx->T; i++) {
        if (fx->ids[i] < 0 || fx->ids[i] >= vocab)
            return errf(err, "%s: input_ids[%d] = %d outside the vocabulary [0, %d)", fx->exp.path, i, fx->ids[i], vocab);
        if (fx->labels[i] != -100 && (fx->labels[i] < 0 || fx->labels[i] >= vocab))
            return errf(err, "%s: labels[%d] = %d is neither -100 nor in [0, %d)", fx->exp.path, i, fx->labels[i], vocab);
    }
    return 0;
}

static int read_settings(Fixture *fx, char *err) {
    const StFile *f = &fx->exp;
    const char *tr = st_meta(f, "trainable"), *opt = st_meta(f, "optimizer");
    if (!tr || (strcmp(tr, "lora") && strcmp(tr, "full"))) return errf(err, "%s: __metadata__ \"trainable\" must be \"lora\" or \"full\"", f->path);
    if (!opt || strcmp(opt, "adamw")) return errf(err, "%s: __metadata__ \"optimizer\" must be \"adamw\"", f->path);
    fx->lora = !strcmp(tr, "lora");
    float steps = 0;
    if (meta_number(f, "lr", &fx->lr, err) || meta_number(f, "beta1", &fx->beta1, err) || meta_number(f, "beta2", &fx->beta2, err) ||
        meta_number(f, "eps", &fx->eps, err) || meta_number(f, "weight_decay", &fx->weight_decay, err) || meta_number(f, "steps", &steps, err))
        return -1;
    if (steps < 0 || steps > 10000 || steps != floorf(steps)) return errf(err, "%s: __metadata__ \"steps\" must be an integer in [0, 10000]", f->path);
    fx->S = (int)steps;
    return 0;
}

// Compares ours (n floats) with the reference tensor `name`; prints one line.
// Returns 0 inside tolerance, 1 outside, -1 when the reference is missing.
static int compare(const Fixture *fx, const char *name, const float *ours, size_t n, FILE *out, char *err) {
    const StTensor *t = st_find(&fx->exp, name);
    if (!t) return errf(err, "%s: missing tensor %s", fx->exp.path, name);
    if ((size_t)t->numel != n) return errf(err, "%s: tensor %s has %lld elements, expected %zu", fx->exp.path, name, (long long)t->numel, n);
    float *ref = malloc(size_mul(n, sizeof(float)));   // up to B x T x vocab logits
    if (!ref) return errf(err, "%s: %s: out of memory (%zu bytes)", fx->exp.path, name, size_mul(n, sizeof(float)));
    if (st_read_f32(&fx->exp, t, ref, (int64_t)n, err)) { free(ref); return -1; }
    double max_abs = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= max_abs)) max_abs = d;   // NaN sticks
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    free(ref);
    int ok = max_abs <= fx->atol + fx->rtol * max_ref + (strncmp(name, "after.", 6) ? 0.0 : fx->step_tol);
    fprintf(out, "%-72s max_abs %.3e  max_rel %.3e  %s\n", name, max_abs, max_ref > 0 ? max_abs / max_ref : max_abs, ok ? "ok" : "FAIL");
    return !ok;
}

// Every grad.* / after.* tensor in the fixture must name a trainable tensor.
static int check_names(const Fixture *fx, const Table *tr, char *err) {
    for (int i = 0; i < fx->exp.n; i++) {
        const char *nm = fx->exp.t[i].name;
        const char *base = !strncmp(nm, "grad.", 5) ? nm + 5 : !strncmp(nm, "after.", 6) ? nm + 6 : NULL;
        if (base && !table_get(tr, base)) return errf(err, "%s: %s names no trainable tensor of this model", fx->exp.path, nm);
    }
    return 0;
}

static int compare_table(const Fixture *fx, const Table *t, const char *prefix, FILE *out, char *err) {
    int bad = 0;
    for (int i = 0; i < t->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, t->t[i].name);
        int rc = compare(fx, name, t->t[i].data, t->t[i].size, out, err);
        if (rc < 0) return -1;
        bad |= rc;
    }
    return bad;
}

static int run(Fixture *fx, Model *m, FILE *out, char *err) {
    Table *params = trainable_params(m), *grads = trainable_grads(m);
    if (check_names(fx, params, err)) return -1;
    Acts a;
    if (acts_init(&a, m, fx->B, fx->T, err)) return -1;
    int bad = 0, rc;
    float loss = model_forward(m, &a, fx->ids, fx->labels);
    bad |= rc = compare(fx, "logits", a.logits, (size_t)fx->B * fx->T * m->c.vocab, out, err);
    if (rc >= 0) bad |= rc = compare(fx, "loss", &loss, 1, out, err);
    if (rc >= 0) {
        table_zero(grads);
        model_backward(m, &a);
        bad |= rc = compare_table(fx, grads, "grad.", out, err);
    }
    if (rc >= 0 && fx->S > 0) {
        AdamW opt;
        if (adamw_init(&opt, params, fx->beta1, fx->beta2, fx->eps, fx->weight_decay)) {
            adamw_free(&opt);
            acts_free(&a);
            return errf(err, "out of memory for the optimizer state");
        }
        float *losses = xcalloc((size_t)fx->S, sizeof(float));   // S <= 10000
        for (int s = 0; s < fx->S; s++) {
            table_zero(grads);
            losses[s] = model_forward(m, &a, fx->ids, fx->labels);
            model_backward(m, &a);
            adamw_step(&opt, params, grads, fx->lr);
        }
        bad |= rc = compare(fx, "steps.loss", losses, fx->S, out, err);
        if (rc >= 0) bad |= rc = compare_table(fx, params, "after.", out, err);
        free(losses);
        adamw_free(&opt);
    }
    acts_free(&a);
    return rc < 0 ? -1 : bad ? 1 : 0;
}

// run() on the CUDA backend: forward on the GPU; with a LoRA fixture also
// backward, the adapter's gradients and the AdamW steps there.
static int run_cuda(Fixture *fx, Model *m, FILE *out, char *err) {
    Table *params = trainable_params(m), *grads = trainable_grads(m);
    if (check_names(fx, params, err)) return -1;
    CudaModel *g = cuda_model_new(m, err);
    if (!g) return -1;
    const size_t nl = (size_t)fx->B * fx->T * m->c.vocab;
    float *logits = malloc(size_mul(nl, sizeof(float))), loss = 0;
    if (!logits) { cuda_model_free(g); return errf(err, "out of memory for the logits (%zu bytes)", size_mul(nl, sizeof(float))); }
    int bad = 0, rc = cuda_forward(g, fx->ids, fx->labels, fx->B, fx->T, fx->lora, logits, &loss, err) ? -1 : 0;
    if (rc >= 0) bad |= rc = compare(fx, "logits", logits, nl, out, err);
    if (rc >= 0) bad |= rc = compare(fx, "loss", &loss, 1, out, err);
    if (rc >= 0 && !fx->lora) fprintf(out, "%-72s skipped: the CUDA backend trains LoRA adapters only\n", "grad.*, steps.loss, after.*");
    if (rc >= 0 && fx->lora) {
        rc = cuda_zero_grads(g, err) || cuda_backward(g, err) || cuda_lora_get(g, 0, grads, 1, err) ? -1 : 0;
        if (rc >= 0) bad |= rc = compare_table(fx, grads, "grad.", out, err);
    }
    if (rc >= 0 && fx->lora && fx->S > 0) {
        float *losses = xcalloc((size_t)fx->S, sizeof(float));
        for (int s = 0; s < fx->S && rc >= 0; s++)
            if (cuda_zero_grads(g, err) || cuda_forward(g, fx->ids, fx->labels, fx->B, fx->T, 1, NULL, &losses[s], err) ||
                cuda_backward(g, err) || cuda_adamw_step(g, 0, fx->lr, fx->beta1, fx->beta2, fx->eps, fx->weight_decay, err))
                rc = -1;
        if (rc >= 0) bad |= rc = compare(fx, "steps.loss", losses, fx->S, out, err);
        if (rc >= 0) rc = cuda_lora_get(g, 0, params, 0, err) ? -1 : 0;
        if (rc >= 0) bad |= rc = compare_table(fx, params, "after.", out, err);
        free(losses);
    }
    free(logits);
    cuda_model_free(g);
    return rc < 0 ? -1 : bad ? 1 : 0;
}

int verify_fixture(const char *dir, FILE *out, char *err) { return verify_fixture_on(dir, 0, out, err); }

int verify_fixture_on(const char *dir, int cuda, FILE *out, char *err) {
    char path[4096];
    Fixture fx = {.atol = VERIFY_ATOL, .rtol = VERIFY_RTOL};
    Model m = {0};
    Lora lora = {0};
    int rc = path_join(path, sizeof path, dir, "expected.safetensors", err);
    if (!rc) rc = st_open(&fx.exp, path, err);
    if (!rc) rc = read_settings(&fx, err);
    if (!rc) rc = model_load(&m, dir, err);
    if (!rc) rc = read_batch(&fx, m.c.vocab, err);
    if (!rc && fx.lora) {
        rc = path_join(path, sizeof path, dir, "adapter", err) || lora_load(&lora, &m.c, path, err) ? -1 : 0;   // -1: a message in err
        if (!rc) model_attach_lora(&m, &lora);
    } else if (!rc && model_train_full(&m)) rc = errf(err, "%s: out of memory for gradients", dir);
    if (!rc && cuda) {
        char dev[256];
        cuda_device_name(dev, sizeof dev);
        fx.atol = VERIFY_BF16_ATOL;
        fx.rtol = VERIFY_BF16_RTOL;
        fx.step_tol = 2.0 * fx.lr * fx.S;
        fprintf(out, "fixture %s: B=%d T=%d, trainable %s, %d AdamW steps, backend: cuda, bf16 (%s)\n", dir, fx.B, fx.T,
                fx.lora ? "lora" : "full", fx.S, dev);
        rc = run_cuda(&fx, &m, out, err);
        if (rc >= 0)
            fprintf(out, "%s (bf16 tolerance |ours-ref| <= %g + %g * max|ref| per tensor, + 2*lr*steps = %g for after.*)\n",
                    rc ? "FAIL" : "PASS", fx.atol, fx.rtol, fx.step_tol);
    } else if (!rc) {
        fprintf(out, "fixture %s: B=%d T=%d, trainable %s, %d AdamW steps, gemm: %s\n", dir, fx.B, fx.T,
                fx.lora ? "lora" : "full", fx.S, gemm_backend());
        rc = run(&fx, &m, out, err);
        if (rc >= 0) fprintf(out, "%s (tolerance |ours-ref| <= %g + %g * max|ref| per tensor)\n", rc ? "FAIL" : "PASS", VERIFY_ATOL, VERIFY_RTOL);
    }
    if (fx.lora && lora.params.mem) lora_free(&lora);
    if (m.layers) model_free(&m);
    free(fx.ids);
    free(fx.labels);
    if (fx.exp.map) st_close(&fx.exp);
    return rc;
}
