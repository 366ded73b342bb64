// backend.c: see backend.h.
#include "backend.h"
#include "kernels.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEVICE_MODELS 4   // the student, the policy (a teacher), a spare

struct Backend {
    int cuda;
    int n;
    const Model *host[MAX_DEVICE_MODELS];   // host[i]'s weights live in dev[i]
    CudaModel *dev[MAX_DEVICE_MODELS];
};

Backend *backend_new(int cuda, char *err) {
    char why[ERR_MAX];
    if (cuda && !cuda_available(why)) { errf(err, "--backend cuda: %s", why); return NULL; }
    Backend *b = xcalloc(1, sizeof *b);
    b->cuda = cuda;
    return b;
}

void backend_close(Backend *b) {
    for (int i = 0; b && i < b->n; i++) cuda_model_free(b->dev[i]);
    free(b);
}

int backend_is_cuda(const Backend *b) { return b && b->cuda; }

void be_forget(Backend *b, const Model *m) {
    for (int i = 0; b && i < b->n; i++)
        if (b->host[i] == m) {
            cuda_model_free(b->dev[i]);
            for (int k = i + 1; k < b->n; k++) b->host[k - 1] = b->host[k], b->dev[k - 1] = b->dev[k];
            b->n--;
            return;
        }
}
const char *backend_name(const Backend *b) { return backend_is_cuda(b) ? "cuda" : "cpu"; }

// m on the device, its base weights uploaded the first time.
static CudaModel *model_on_device(Backend *b, const Model *m, char *err) {
    int i = 0;
    while (i < b->n && b->host[i] != m) i++;
    if (i == b->n) {
        if (b->n == MAX_DEVICE_MODELS) { errf(err, "the cuda backend holds %d models at most", MAX_DEVICE_MODELS); return NULL; }
        if (!(b->dev[i] = cuda_model_new(m, err))) return NULL;
        b->host[b->n++] = m;
    }
    return b->dev[i];
}

// The same with m's adapter (or none) as the attached one.
static CudaModel *on_device(Backend *b, const Model *m, char *err) {
    CudaModel *g = model_on_device(b, m, err);
    return g && !cuda_lora_set(g, m->lora, err) ? g : NULL;
}

// ----------------------------------------------------------------------------
// Training: train.c's loop, each step on the device over every run's rows.

typedef struct {
    CudaModel *g;
    const SftRun *runs;
} CudaTrain;

static int cuda_train_step(void *ctx, int k, const int *which, const int *rows, const int *ids, const int *labels, int T, const float *lr,
                           float *loss, char *err) {
    const CudaTrain *c = ctx;
    int finite = 0;
    if (cuda_zero_grads(c->g, err) || cuda_forward_many(c->g, ids, labels, k, which, rows, T, 1, NULL, loss, err)) return -1;
    for (int j = 0; j < k; j++) finite += isfinite(loss[j]) != 0;
    if (!finite) return 0;   // sft_loop stops these runs
    if (cuda_backward(c->g, err)) return -1;
    for (int j = 0; j < k; j++) {
        const SftOpts *o = &c->runs[which[j]].o;
        float norm;
        if (!isfinite(loss[j])) continue;
        if ((o->max_grad_norm > 0 && cuda_clip_grad_norm(c->g, which[j], o->max_grad_norm, &norm, err)) ||
            cuda_adamw_step(c->g, which[j], lr[j], o->beta1, o->beta2, o->eps, o->weight_decay, err))
            return -1;
    }
    return 0;
}

int be_sft_many(Backend *b, Model *m, SftRun *runs, int K, char *err) {
    if (!backend_is_cuda(b)) return sft_many(m, runs, K, err);
    const Lora *lo[MAX_ADAPTERS];
    if (K < 1 || K > MAX_ADAPTERS) return errf(err, "%d runs at once: 1 to %d", K, MAX_ADAPTERS);
    for (int k = 0; k < K; k++) {
        runs[k].st = (SftStats){0};
        if (!(lo[k] = runs[k].lora)) return errf(err, "the cuda backend trains adapters only: attach one first");
    }
    CudaTrain c = {.g = model_on_device(b, m, err), .runs = runs};   // fresh AdamW states come with the adapters
    if (!c.g || cuda_lora_set_many(c.g, lo, K, err)) return -1;
    int rc = sft_loop(runs, K, m->c.vocab, cuda_train_step, &c, err);
    for (int k = 0; k < K && !rc; k++) {
        SftStats *st = &runs[k].st;
        if (cuda_lora_get(c.g, k, &runs[k].lora->params, 0, err)) rc = -1;
        else if (!st->diverged && table_nonfinite(&runs[k].lora->params)) st->diverged = 1, st->bad_loss = NAN;
    }
    return rc;
}

int be_sft(Backend *b, Model *m, const Example *ex, int n, const SftOpts *o, SftStats *st, char *err) {
    if (!backend_is_cuda(b)) return sft(m, ex, n, o, st, err);
    SftRun run = {.ex = ex, .n = n, .o = *o, .lora = m->lora};
    int rc = be_sft_many(b, m, &run, 1, err);
    *st = run.st;
    return rc;
}

// ----------------------------------------------------------------------------
// Generation: generate.c's contract on the device.

typedef struct {
    Decoder d;   // first: a Decoder * is a CudaDecoder *
    CudaModel *g;
    CudaKV *kv;
} CudaDecoder;

static int cuda_open(Decoder *d, int B, int max_T, char *err) {
    CudaDecoder *c = (CudaDecoder *)d;
    return (c->kv = cuda_kv_new(c->g, B, max_T, err)) ? 0 : -1;
}
static int cuda_prefill(Decoder *d, int B, const int *const *prompts, const int *lens, float *logits, char *err) {
    return cuda_kv_prefill(((CudaDecoder *)d)->kv, B, prompts, lens, logits, err);
}
static int cuda_step(Decoder *d, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    return cuda_kv_step(((CudaDecoder *)d)->kv, n, seqs, tokens, logits, err);
}
static int cuda_step_greedy(Decoder *d, int n, const int *seqs, const int *tokens, int *next, char *err) {
    return cuda_kv_step_greedy(((CudaDecoder *)d)->kv, n, seqs, tokens, next, err);
}
static void cuda_close(Decoder *d) { cuda_kv_free(((CudaDecoder *)d)->kv); }

int be_generate(Backend *b, const Model *m, const int *const *prompts, const int *lens, int B, const SampleOpts *o, const int *stop_ids,
                int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err) {
    if (!backend_is_cuda(b)) return generate(m, prompts, lens, B, o, stop_ids, n_stop, on_token, ctx, out, out_lens, err);
    CudaDecoder c = {.d = {.open = cuda_open, .prefill = cuda_prefill, .step = cuda_step, .step_greedy = cuda_step_greedy, .close = cuda_close},
                     .g = on_device(b, m, err)};
    return c.g ? decode(&c.d, &m->c, prompts, lens, B, o, stop_ids, n_stop, on_token, ctx, out, out_lens, err) : -1;
}
