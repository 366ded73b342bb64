// generate.c: see generate.h.
#include "generate.h"
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float logit; int id; } Cand;

// The order a radix sort on this key gives: highest logit first (-0 as +0).
static uint32_t desc_key(float f) {
    uint32_t u;
    f += 0.0f;
    memcpy(&u, &f, 4);
    return u >> 31 ? u : ~u & 0x7fffffff;   // negatives above every positive, larger magnitude later
}

// c (n) sorted by logit, highest first, ties by id (c arrives in id order and
// each pass is stable): four byte passes of a radix sort, O(n), where qsort
// of SmolLM2's 49,152 tokens took milliseconds a token. Returns c or tmp (n),
// whichever holds the result.
static Cand *sort_desc(Cand *c, Cand *tmp, int n) {
    for (int shift = 0; shift < 32; shift += 8) {
        int at[257] = {0};
        for (int i = 0; i < n; i++) at[(desc_key(c[i].logit) >> shift & 255) + 1]++;
        int same = 0;   // every key has the same byte here: the pass would change nothing
        for (int b = 1; b <= 256; b++) same |= at[b] == n;
        if (same) continue;
        for (int b = 1; b <= 256; b++) at[b] += at[b - 1];
        for (int i = 0; i < n; i++) tmp[at[desc_key(c[i].logit) >> shift & 255]++] = c[i];
        Cand *t = c;
        c = tmp;
        tmp = t;
    }
    return c;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

// Below this many nats under the best logit a token's weight exp(l - best)
// is under 2^-53 (e^-37 = 8.5e-17 < 1.1e-16), and adding it to a running sum
// that is already at least 1 (the best token's weight, summed first) rounds
// back to the same double: such tokens change no sum and can never be drawn,
// so they are left out of the sort.
#define SAMPLE_CUT 37.0

// sample_token on logits known to be finite, or -inf where a constraint
// masked them. The weights are summed in the order of the sorted logits, as
// the full qsort of the vocabulary did, so a seed draws the same tokens.
static int pick_token(float *logits, int V, const SampleOpts *o, Rng *r) {
    if (o->temperature <= 0.0f) return argmax(logits, V);
    float best = -INFINITY;
    for (int i = 0; i < V; i++) best = fmaxf(best, logits[i] / o->temperature);
    // every token when best is not finite (all masked, or a logit / temperature overflowing): as before
    const double cut = isfinite(best) ? (double)best - SAMPLE_CUT : -INFINITY;
    Cand *buf = xmalloc(2 * (size_t)V * sizeof(Cand));   // small beside the model's V x dim embedding
    int n = 0;   // the candidates above the cut
    for (int i = 0; i < V; i++) {
        const float l = logits[i] / o->temperature;
        if (!((double)l < cut)) buf[n++] = (Cand){l, i};
    }
    const Cand *c = sort_desc(buf, buf + V, n);
    int keep = o->top_k > 0 && o->top_k < n ? o->top_k : n;
    double *w = xmalloc((size_t)keep * sizeof(double)), sum = 0.0;   // each weight computed once
    for (int i = 0; i < keep; i++) sum += w[i] = exp((double)c[i].logit - c[0].logit);
    if (o->top_p < 1.0f) {   // keep a token while the tokens above it hold less than top_p
        double above = 0.0;
        int k = 0;
        while (k < keep && above < o->top_p) above += w[k++] / sum;
        keep = k > 0 ? k : 1;
        sum = 0.0;
        for (int i = 0; i < keep; i++) sum += w[i];
    }
    double u = rng_uniform(r) * sum, acc = 0.0;
    int pick = c[keep - 1].id;   // not reached: u < sum, and acc ends at sum
    for (int i = 0; i < keep; i++) {
        acc += w[i];
        if (u < acc) { pick = c[i].id; break; }
    }
    free(buf);
    free(w);
    return pick;
}

int sample_token(float *logits, int V, const SampleOpts *o, Rng *r) {
    return all_finite(logits, V) ? pick_token(logits, V, o, r) : -1;
}

static int is_stop(int tok, const int *stop, int n) {
    for (int i = 0; i < n; i++)
        if (stop[i] == tok) return 1;
    return 0;
}

int nonfinite_logits(int b, int step, char *err) {
    return errf(err, "sequence %d, token %d: the model's logits are NaN or Inf (broken weights, or an adapter whose training diverged)", b, step);
}

int generate_room(const Config *c, const int *prompt_lens, int B, int max_new, int *room, char *err) {
    int max_T = 0;
    if (max_new < 0) return errf(err, "%d new tokens asked for", max_new);
    for (int b = 0; b < B; b++) {
        const int len = prompt_lens[b];
        if (len < 1) return errf(err, "prompt %d is empty", b);
        if (len >= c->max_pos)
            return errf(err, "a prompt of %d tokens leaves no room in the model's context of %d tokens (max_position_embeddings)", len, c->max_pos);
        room[b] = max_new < c->max_pos - len ? max_new : c->max_pos - len;
        if (room[b] < max_new) {
            static int warned;   // once a process: a run asks for the same length again and again
            if (!warned++)
                fprintf(stderr, "seal: warning: a prompt of %d tokens leaves room for %d of the %d new tokens asked for in the model's context "
                        "of %d tokens; generation stops at the context, as vLLM's does (said once)\n", len, room[b], max_new, c->max_pos);
        }
        if (len + room[b] > max_T) max_T = len + room[b];
    }
    return max_T;
}

// The CPU decoder: model.c's KV cache.
typedef struct {
    Decoder d;   // first: a Decoder * is a CpuDecoder *
    const Model *m;
    KVCache kv;
} CpuDecoder;

static int cpu_open(Decoder *d, int B, int max_T, char *err) {
    CpuDecoder *c = (CpuDecoder *)d;
    return kv_init(&c->kv, c->m, B, max_T, err);
}
static int cpu_prefill(Decoder *d, int B, const int *const *prompts, const int *lens, float *logits, char *err) {
    CpuDecoder *c = (CpuDecoder *)d;
    return kv_prefill(c->m, &c->kv, B, prompts, lens, logits, err);
}
static int cpu_step(Decoder *d, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    CpuDecoder *c = (CpuDecoder *)d;
    return kv_step(c->m, &c->kv, n, seqs, tokens, logits, err);
}
static void cpu_close(Decoder *d) { kv_free(&((CpuDecoder *)d)->kv); }

int generate(const Model *m, const int *const *prompts, const int *prompt_lens, int B, const SampleOpts *o,
             const int *stop_ids, int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err) {
    CpuDecoder c = {.d = {.open = cpu_open, .prefill = cpu_prefill, .step = cpu_step, .close = cpu_close}, .m = m};
    return decode(&c.d, &m->c, prompts, prompt_lens, B, o, stop_ids, n_stop, on_token, ctx, out, out_lens, err);
}

// Samples row i of logits into next[i] for sequence seqs[i] (at its token
// number step); -1 on non-finite logits. With a constraint, the model's own
// logits are checked before the mask adds its -inf, and the token chosen
// advances the sequence's grammar.
static int sample_rows(float *logits, int V, int n, const int *seqs, const SampleOpts *o, Rng *rng, int step, int *next, char *err) {
    Constraint *c = o->constraint;
    for (int i = 0; i < n; i++) {
        float *row = logits + (size_t)i * V;
        if (!all_finite(row, V)) return nonfinite_logits(seqs[i], step, err);
        if (c) constraint_mask(c, seqs[i], row);
        next[i] = pick_token(row, V, o, &rng[seqs[i]]);
        if (c) constraint_advance(c, seqs[i], next[i]);
    }
    return 0;
}

int decode(Decoder *d, const Config *c, const int *const *prompts, const int *prompt_lens, int B, const SampleOpts *o,
           const int *stop_ids, int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err) {
    // the device's argmax never shows the host the logits a constraint masks
    const int V = c->vocab, greedy = o->temperature <= 0.0f && d->step_greedy && !o->constraint;
    int *room = xcalloc((size_t)(B > 0 ? B : 1), sizeof(int)), max_T = generate_room(c, prompt_lens, B, o->max_new, room, err);
    if (max_T < 0 || d->open(d, B, max_T, err)) { free(room); return -1; }
    float *logits = malloc(size_mul((size_t)B * V, sizeof(float)));
    if (!logits) {
        d->close(d);
        free(room);
        return errf(err, "out of memory for %d x %d logits (%zu bytes)", B, V, size_mul((size_t)B * V, sizeof(float)));
    }
    int *seqs = xcalloc((size_t)B, sizeof(int)), *toks = xcalloc((size_t)B, sizeof(int)), *next = xcalloc((size_t)B, sizeof(int));
    Rng *rng = xcalloc((size_t)B, sizeof(Rng));
    for (int b = 0; b < B; b++) {
        rng_seed(&rng[b], o->seeds ? o->seeds[b] * 1000003ULL : o->seed * 1000003ULL + (uint64_t)b);
        out[b] = xcalloc((size_t)room[b] + 1, sizeof(int));   // the KV cache already holds more per token
        out_lens[b] = 0;
        seqs[b] = b;
    }
    if (o->constraint) constraint_begin(o->constraint, B);
    int rc = d->prefill(d, B, prompts, prompt_lens, logits, err) || sample_rows(logits, V, B, seqs, o, rng, 0, next, err);
    int n = rc ? 0 : B;   // seqs[0..n): the sequences still going; next[i]: the token row i chose
    for (int step = 0; step < o->max_new && n > 0 && !rc; step++) {
        int kept = 0;
        for (int i = 0; i < n; i++) {
            const int b = seqs[i], tok = next[i];
            out[b][out_lens[b]++] = tok;
            // a stop id is emitted but not passed to on_token
            if (!is_stop(tok, stop_ids, n_stop) && !(on_token && on_token(b, tok, ctx)) && out_lens[b] < room[b] &&
                !(o->constraint && constraint_done(o->constraint, b))) {
                seqs[kept] = b;
                toks[kept++] = tok;
            }
        }
        if (!(n = kept)) break;
        if (greedy) rc = d->step_greedy(d, n, seqs, toks, next, err);
        else rc = d->step(d, n, seqs, toks, logits, err) || sample_rows(logits, V, n, seqs, o, rng, step + 1, next, err);
    }
    free(logits); free(seqs); free(toks); free(next); free(rng); free(room);
    d->close(d);
    return rc ? -1 : 0;
}
