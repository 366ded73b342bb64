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

int sft(Model *m, const Example *ex, int n, const SftOpts *o, SftStats *stats, char *err) {
    if (n <= 0 || o->batch <= 0 || o->epochs <= 0) return errf(err, "nothing to train: %d examples, batch %d, %d epochs", n, o->batch, o->epochs);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < ex[i].len; t++)
            if (ex[i].ids[t] < 0 || ex[i].ids[t] >= m->c.vocab) return errf(err, "example %d: token id %d outside the vocabulary", i, ex[i].ids[t]);
    double t0 = now_seconds();
    Table *params = trainable_params(m), *grads = trainable_grads(m);
    AdamW opt;
    if (adamw_init(&opt, params, o->beta1, o->beta2, o->eps, o->weight_decay)) {
        adamw_free(&opt);
        return errf(err, "out of memory for the optimizer state (%zu bytes)", size_mul(2 * params->total, sizeof(float)));
    }
    const int total = sft_steps(n, o->batch, o->epochs);
    int *order = xcalloc((size_t)n, sizeof(int)), *ids = NULL, *labels = NULL, step = 0, rc = 0;
    Acts a = {0};
    Rng r;
    rng_seed(&r, o->seed);
    *stats = (SftStats){0};
    for (int e = 0; e < o->epochs && !rc; e++) {
        shuffle(order, n, &r);
        double sum = 0.0;
        for (int i = 0; i < n && !rc; i += o->batch, step++) {
            int nb = n - i < o->batch ? n - i : o->batch, T = 0;
            for (int b = 0; b < nb; b++) T = ex[order[i + b]].len > T ? ex[order[i + b]].len : T;
            if (a.B != nb || a.T != T) {   // a new batch shape: new activations
                acts_free(&a);
                if ((rc = acts_init(&a, m, nb, T, err))) break;
                free(ids);
                free(labels);
                ids = malloc((size_t)nb * T * sizeof(int));   // a batch: sized by the examples
                labels = malloc((size_t)nb * T * sizeof(int));
                if (!ids || !labels) { rc = errf(err, "out of memory for a batch of %d x %d tokens (%zu bytes)", nb, T, 2 * (size_t)nb * T * sizeof(int)); break; }
            }
            pack_batch(ex, order + i, nb, T, ids, labels);
            table_zero(grads);
            float loss = model_forward(m, &a, ids, labels);
            if (!isfinite(loss)) { stats->diverged = 1; stats->bad_loss = loss; break; }
            sum += loss;
            model_backward(m, &a);
            if (o->max_grad_norm > 0) clip_grad_norm(grads, o->max_grad_norm);
            adamw_step(&opt, params, grads, lr_at(o->lr, step, o->warmup, total));
            if (o->progress) o->progress(step + 1, total, loss, o->progress_ctx);
        }
        if (stats->diverged) break;
        float mean = (float)(sum / ((n + o->batch - 1) / o->batch));
        if (e == 0) stats->first_loss = mean;
        stats->last_loss = mean;
    }
    if (!rc && !stats->diverged && table_nonfinite(params)) stats->diverged = 1, stats->bad_loss = NAN;   // a step that overflowed last
    stats->steps = step;
    stats->seconds = now_seconds() - t0;
    acts_free(&a);
    adamw_free(&opt);
    free(order); free(ids); free(labels);
    return rc;
}
