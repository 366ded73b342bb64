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

// Where one run of sft_loop stands.
typedef struct {
    Rng r;
    int *order;                   // this epoch's order of the examples
    int epoch, i, step, total;    // i: the next batch's first place in order
    double sum;                   // this epoch's losses
    int done;
} Cursor;

// With --group-by-length: each window of 16 batches of the shuffled order is
// sorted by length, longest first (stable), so a batch pads little; which
// examples share a window is still the shuffle's.
static void group_lengths(int *order, int n, const Example *ex, int batch) {
    const int w = 16 * batch;
    for (int s = 0; s < n; s += w)
        for (int i = s + 1; i < n && i < s + w; i++)   // insertion sort: windows are small
            for (int j = i; j > s && ex[order[j]].len > ex[order[j - 1]].len; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
}

// The next epoch's order of run s.
static void epoch_order(const SftRun *s, Cursor *c) {
    shuffle(c->order, s->n, &c->r);
    if (s->o.group_by_length && s->o.batch > 1) group_lengths(c->order, s->n, s->ex, s->o.batch);
}

// Run s took its step with this loss: the next batch, epoch, or the end.
static void advance(SftRun *s, Cursor *c, float loss, double t0) {
    const SftOpts *o = &s->o;
    if (!isfinite(loss)) { s->st.diverged = 1; s->st.bad_loss = loss; c->done = 1; }   // the caller says so; the weights are no use
    else {
        c->sum += loss;
        if (o->progress) o->progress(c->step + 1, c->total, loss, o->progress_ctx);
        c->step++;
        c->i += o->batch;
    }
    if (!c->done && c->i >= s->n) {
        float mean = (float)(c->sum / ((s->n + o->batch - 1) / o->batch));
        if (c->epoch == 0) s->st.first_loss = mean;
        s->st.last_loss = mean;
        c->epoch++;
        c->i = 0;
        c->sum = 0.0;
        if (c->epoch == o->epochs) c->done = 1;
        else epoch_order(s, c);
    }
    s->st.steps = c->step;
    s->st.seconds = now_seconds() - t0;
}

int sft_loop(SftRun *runs, int K, int vocab, TrainStep step_fn, void *ctx, char *err) {
    for (int k = 0; k < K; k++) {
        const SftRun *s = &runs[k];
        runs[k].st = (SftStats){0};
        if (s->n <= 0 || s->o.batch <= 0 || s->o.epochs <= 0)
            return errf(err, "nothing to train: %d examples, batch %d, %d epochs", s->n, s->o.batch, s->o.epochs);
        for (int i = 0; i < s->n; i++)
            for (int t = 0; t < s->ex[i].len; t++)
                if (s->ex[i].ids[t] < 0 || s->ex[i].ids[t] >= vocab) return errf(err, "example %d: token id %d outside the vocabulary", i, s->ex[i].ids[t]);
    }
    const double t0 = now_seconds();
    Cursor *cur = xcalloc((size_t)K, sizeof *cur);
    int *which = xcalloc((size_t)K, sizeof(int)), *rows = xcalloc((size_t)K, sizeof(int)), *ids = NULL, *labels = NULL, rc = 0;
    float *lr = xcalloc((size_t)K, sizeof(float)), *loss = xcalloc((size_t)K, sizeof(float));
    size_t cap = 0;
    for (int k = 0; k < K; k++) {
        cur[k].order = xcalloc((size_t)runs[k].n, sizeof(int));
        cur[k].total = sft_steps(runs[k].n, runs[k].o.batch, runs[k].o.epochs);
        rng_seed(&cur[k].r, runs[k].o.seed);
        epoch_order(&runs[k], &cur[k]);
    }
    while (!rc) {
        int k_on = 0, B = 0, T = 0;   // the runs with a batch left, their rows, the longest example
        for (int k = 0; k < K; k++) {
            const SftRun *s = &runs[k];
            if (cur[k].done) continue;
            const int nb = s->n - cur[k].i < s->o.batch ? s->n - cur[k].i : s->o.batch;
            for (int b = 0; b < nb; b++) T = s->ex[cur[k].order[cur[k].i + b]].len > T ? s->ex[cur[k].order[cur[k].i + b]].len : T;
            which[k_on] = k;
            rows[k_on++] = nb;
            B += nb;
        }
        if (!k_on) break;
        if ((size_t)B * T > cap) {   // a batch: sized by the examples
            cap = (size_t)B * T;
            free(ids);
            free(labels);
            ids = malloc(cap * sizeof(int));
            labels = malloc(cap * sizeof(int));
            if (!ids || !labels) { rc = errf(err, "out of memory for a batch of %d x %d tokens (%zu bytes)", B, T, 2 * cap * sizeof(int)); break; }
        }
        for (int j = 0, row = 0; j < k_on; row += rows[j++]) {
            const SftRun *s = &runs[which[j]];
            const Cursor *c = &cur[which[j]];
            pack_batch(s->ex, c->order + c->i, rows[j], T, ids + (size_t)row * T, labels + (size_t)row * T);
            lr[j] = lr_at(s->o.lr, c->step, s->o.warmup, c->total);
        }
        if ((rc = step_fn(ctx, k_on, which, rows, ids, labels, T, lr, loss, err))) break;
        for (int j = 0; j < k_on; j++) advance(&runs[which[j]], &cur[which[j]], loss[j], t0);
    }
    for (int k = 0; k < K; k++) free(cur[k].order);
    free(cur); free(which); free(rows); free(ids); free(labels); free(lr); free(loss);
    return rc;
}

// The CPU step: model.c's forward and backward over every run's rows, then
// clipping and AdamW here, adapter by adapter.
typedef struct {
    Model *m;
    SftRun *runs;
    AdamW *opt;                   // (K)
    Lora **lora;                  // (K) the adapters of one step
    Acts a;
} CpuTrain;

static Table *params_of(Model *m, SftRun *s) { return s->lora ? &s->lora->params : &m->params; }
static Table *grads_of(Model *m, SftRun *s) { return s->lora ? &s->lora->grads : &m->grads; }

static int cpu_step(void *ctx, int k, const int *which, const int *rows, const int *ids, const int *labels, int T, const float *lr, float *loss,
                    char *err) {
    CpuTrain *c = ctx;
    int B = 0, finite = 0;
    for (int j = 0; j < k; j++) B += rows[j];
    if (c->a.B != B || c->a.T != T) {   // a new batch shape: new activations
        acts_free(&c->a);
        if (acts_init(&c->a, c->m, B, T, err)) return -1;
    }
    for (int j = 0; j < k; j++) {
        c->lora[j] = c->runs[which[j]].lora;
        table_zero(grads_of(c->m, &c->runs[which[j]]));
    }
    model_forward_many(c->m, &c->a, ids, labels, k, c->lora, rows, loss);
    for (int j = 0; j < k; j++) finite += isfinite(loss[j]) != 0;
    if (!finite) return 0;
    model_backward(c->m, &c->a);   // a run's rows reach only its own adapter's gradients
    for (int j = 0; j < k; j++) {
        SftRun *s = &c->runs[which[j]];
        if (!isfinite(loss[j])) continue;
        if (s->o.max_grad_norm > 0) clip_grad_norm(grads_of(c->m, s), s->o.max_grad_norm);
        adamw_step(&c->opt[which[j]], params_of(c->m, s), grads_of(c->m, s), lr[j]);
    }
    return 0;
}

int sft_many(Model *m, SftRun *runs, int K, char *err) {
    if (K < 1 || K > MAX_ADAPTERS) return errf(err, "%d runs at once: 1 to %d", K, MAX_ADAPTERS);
    for (int k = 0; k < K; k++)
        if (K > 1 && (!runs[k].lora || !m->lora || runs[k].lora->params.total != m->lora->params.total || runs[k].lora->r != m->lora->r))
            return errf(err, "run %d: several runs at once train adapters shaped as the attached one", k);
    CpuTrain c = {.m = m, .runs = runs, .opt = xcalloc((size_t)K, sizeof(AdamW)), .lora = xcalloc((size_t)K, sizeof(Lora *))};
    int rc = 0;
    for (int k = 0; k < K && !rc; k++) {
        const SftOpts *o = &runs[k].o;
        const Table *p = params_of(m, &runs[k]);
        if (adamw_init(&c.opt[k], p, o->beta1, o->beta2, o->eps, o->weight_decay)) {
            runs[k].st = (SftStats){0};
            rc = errf(err, "out of memory for the optimizer state (%zu bytes)", size_mul(2 * p->total, sizeof(float)));
        }
    }
    if (!rc) rc = sft_loop(runs, K, m->c.vocab, cpu_step, &c, err);
    for (int k = 0; k < K; k++) {
        if (!rc && !runs[k].st.diverged && table_nonfinite(params_of(m, &runs[k])))   // a step that overflowed last
            runs[k].st.diverged = 1, runs[k].st.bad_loss = NAN;
        adamw_free(&c.opt[k]);
    }
    acts_free(&c.a);
    free(c.opt);
    free(c.lora);
    return rc;
}

int sft(Model *m, const Example *ex, int n, const SftOpts *o, SftStats *stats, char *err) {
    SftRun run = {.ex = ex, .n = n, .o = *o, .lora = m->lora};
    int rc = sft_many(m, &run, 1, err);
    *stats = run.st;
    return rc;
}
