// train.c: see train.h.
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int adamw_init(AdamW *o, const Table *params, float beta1, float beta2, float eps, float weight_decay) {
    *o = (AdamW){.beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay};
    int rc = table_like(&o->m, params);
    rc |= table_like(&o->v, params);   // both, so adamw_free frees what either got
    return rc ? -1 : 0;
}

void adamw_free(AdamW *o) {
    table_free(&o->m);
    table_free(&o->v);
}

void adamw_step(AdamW *o, Table *params, const Table *grads, float lr) {
    o->t++;
    const float b1 = o->beta1, b2 = o->beta2;
    const float bc1 = 1.0f - powf(b1, (float)o->t), bc2_sqrt = sqrtf(1.0f - powf(b2, (float)o->t));
    const float step = lr / bc1, decay = 1.0f - lr * o->weight_decay;
    float *p = params->mem, *m = o->m.mem, *v = o->v.mem;
    const float *g = grads->mem;
    #pragma omp parallel for
    for (size_t i = 0; i < params->total; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2_sqrt + o->eps);
    }
}

float clip_grad_norm(Table *grads, float max_norm) {
    double ss = 0.0;
    for (size_t i = 0; i < grads->total; i++) ss += (double)grads->mem[i] * grads->mem[i];
    float norm = (float)sqrt(ss), coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f)
        for (size_t i = 0; i < grads->total; i++) grads->mem[i] *= coef;
    return norm;
}

float lr_at(float lr, int step, int warmup, int total) {
    if (step < warmup) return lr * (float)step / (float)(warmup > 1 ? warmup : 1);
    int span = total - warmup > 1 ? total - warmup : 1;
    float progress = (float)(step - warmup) / (float)span;
    float f = 0.5f * (1.0f + cosf((float)M_PI * progress));
    return lr * (f > 0.0f ? f : 0.0f);
}

Table *trainable_params(Model *m) { return m->lora ? &m->lora->params : &m->params; }
Table *trainable_grads(Model *m) { return m->lora ? &m->lora->grads : &m->grads; }

// ----------------------------------------------------------------------------
// Supervised fine-tuning

int example_from_text(const Tokenizer *tok, const char *prompt, const char *target, int end, int loss_on_prompt, Example *e, char *err) {
    int *p, *q, np = tok_encode(tok, prompt, strlen(prompt), 1, &p, err);
    int nq = np < 0 ? -1 : tok_encode(tok, target, strlen(target), 0, &q, err);
    if (nq < 0) { if (np >= 0) free(p); return -1; }
    e->len = np + nq + 1;
    e->ids = xcalloc((size_t)e->len, sizeof(int));
    e->loss = xmalloc((size_t)e->len);
    memcpy(e->ids, p, np * sizeof(int));
    memcpy(e->ids + np, q, nq * sizeof(int));
    e->ids[np + nq] = end;
    memset(e->loss, loss_on_prompt != 0, np);
    memset(e->loss + np, 1, nq + 1);
    free(p);
    free(q);
    return 0;
}

void examples_free(Example *ex, int n) {
    for (int i = 0; ex && i < n; i++) { free(ex[i].ids); free(ex[i].loss); }
    free(ex);
}

SftOpts sft_defaults(void) {
    return (SftOpts){.lr = 1e-4f, .epochs = 1, .batch = 1, .warmup = 0, .weight_decay = 0.0f, .max_grad_norm = 1.0f,
                     .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .seed = 0};
}

int sft_steps(int n_examples, int batch, int epochs) {
    return (n_examples + batch - 1) / batch * epochs;
}

static void shuffle(int *order, int n, Rng *r) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(r) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

// Packs examples order[0..nb) into ids/labels (nb, T), right-padded.
static void pack_batch(const Example *ex, const int *order, int nb, int T, int *ids, int *labels) {
    for (int b = 0; b < nb; b++) {
        const Example *e = &ex[order[b]];
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = t < e->len ? e->ids[t] : 0;
            labels[b * T + t] = t < e->len && e->loss[t] ? e->ids[t] : -100;
        }
    }
}

void sft_diverged_why(const SftStats *st, int total, char *buf, size_t n) {
    if (isnan(st->bad_loss) && st->steps == total) snprintf(buf, n, SFT_DIVERGED ": the weights hold NaN or Inf after %d steps", total);
    else snprintf(buf, n, SFT_DIVERGED ": loss %s at step %d of %d", isnan(st->bad_loss) ? "NaN" : "Inf", st->steps + 1, total);
}

int sft_loop(const Example *ex, int n, int vocab, const SftOpts *o, TrainStep step_fn, void *ctx, SftStats *stats, char *err) {
    *stats = (SftStats){0};
    if (n <= 0 || o->batch <= 0 || o->epochs <= 0) return errf(err, "nothing to train: %d examples, batch %d, %d epochs", n, o->batch, o->epochs);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < ex[i].len; t++)
            if (ex[i].ids[t] < 0 || ex[i].ids[t] >= vocab) return errf(err, "example %d: token id %d outside the vocabulary", i, ex[i].ids[t]);
    double t0 = now_seconds();
    const int total = sft_steps(n, o->batch, o->epochs);
    int *order = xcalloc((size_t)n, sizeof(int)), *ids = NULL, *labels = NULL, step = 0, rc = 0;
    size_t cap = 0;
    Rng r;
    rng_seed(&r, o->seed);
    for (int e = 0; e < o->epochs && !rc && !stats->diverged; e++) {
        shuffle(order, n, &r);
        double sum = 0.0;
        for (int i = 0; i < n && !rc; i += o->batch, step++) {
            int nb = n - i < o->batch ? n - i : o->batch, T = 0;
            for (int b = 0; b < nb; b++) T = ex[order[i + b]].len > T ? ex[order[i + b]].len : T;
            if ((size_t)nb * T > cap) {   // a batch: sized by the examples
                cap = (size_t)nb * T;
                free(ids);
                free(labels);
                ids = malloc(cap * sizeof(int));
                labels = malloc(cap * sizeof(int));
                if (!ids || !labels) { rc = errf(err, "out of memory for a batch of %d x %d tokens (%zu bytes)", nb, T, 2 * cap * sizeof(int)); break; }
            }
            pack_batch(ex, order + i, nb, T, ids, labels);
            float loss;
            if ((rc = step_fn(ctx, ids, labels, nb, T, lr_at(o->lr, step, o->warmup, total), &loss, err))) break;
            if (!isfinite(loss)) { stats->diverged = 1; stats->bad_loss = loss; break; }   // the caller says so; the weights are no use
            sum += loss;
            if (o->progress) o->progress(step + 1, total, loss, o->progress_ctx);
        }
        if (rc || stats->diverged) break;
        float mean = (float)(sum / ((n + o->batch - 1) / o->batch));
        if (e == 0) stats->first_loss = mean;
        stats->last_loss = mean;
    }
    stats->steps = step;
    stats->seconds = now_seconds() - t0;
    free(order); free(ids); free(labels);
    return rc;
}

// The CPU step: model.c's forward and backward, then clipping and AdamW here.
typedef struct {
    Model *m;
    Table *params, *grads;
    AdamW opt;
    Acts a;
    float max_grad_norm;
} CpuTrain;

static int cpu_step(void *ctx, const int *ids, const int *labels, int B, int T, float lr, float *loss, char *err) {
    CpuTrain *c = ctx;
    if (c->a.B != B || c->a.T != T) {   // a new batch shape: new activations
        acts_free(&c->a);
        if (acts_init(&c->a, c->m, B, T, err)) return -1;
    }
    table_zero(c->grads);
    *loss = model_forward(c->m, &c->a, ids, labels);
    if (!isfinite(*loss)) return 0;
    model_backward(c->m, &c->a);
    if (c->max_grad_norm > 0) clip_grad_norm(c->grads, c->max_grad_norm);
    adamw_step(&c->opt, c->params, c->grads, lr);
    return 0;
}

int sft(Model *m, const Example *ex, int n, const SftOpts *o, SftStats *stats, char *err) {
    CpuTrain c = {.m = m, .params = trainable_params(m), .grads = trainable_grads(m), .max_grad_norm = o->max_grad_norm};
    if (adamw_init(&c.opt, c.params, o->beta1, o->beta2, o->eps, o->weight_decay)) {
        adamw_free(&c.opt);
        *stats = (SftStats){0};
        return errf(err, "out of memory for the optimizer state (%zu bytes)", size_mul(2 * c.params->total, sizeof(float)));
    }
    int rc = sft_loop(ex, n, m->c.vocab, o, cpu_step, &c, stats, err);
    if (!rc && !stats->diverged && table_nonfinite(c.params)) stats->diverged = 1, stats->bad_loss = NAN;   // a step that overflowed last
    acts_free(&c.a);
    adamw_free(&c.opt);
    return rc;
}
