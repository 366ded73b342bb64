// bench_constrain.c: what --constrain costs in decode()'s sampling, apart from
// the model. A fake decoder gives random logits (vocabulary V, B sequences),
// so the time is the sampling loop's alone: sample_token's sort over the
// vocabulary, and with a constraint the mask (a cached lookup and one pass
// over the logits) and the state update.
//
//   build/bench_constrain TOKENIZER.gguf|tokenizer.json [arc-edit|arc-grid]
#include "constrain.h"
#include "generate.h"
#include "gguf.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { Decoder d; Rng r; int V; } Fake;

static void fill(Fake *f, int n, float *logits) {
    for (long i = 0; i < (long)n * f->V; i++) logits[i] = 3.0f * rng_normal(&f->r);
}
static int fake_open(Decoder *d, int B, int T, char *err) { (void)d; (void)B; (void)T; (void)err; return 0; }
static int fake_prefill(Decoder *d, int B, const int *const *p, const int *lens, float *logits, char *err) {
    (void)p; (void)lens; (void)err;
    fill((Fake *)d, B, logits);
    return 0;
}
static int fake_step(Decoder *d, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    (void)seqs; (void)tokens; (void)err;
    fill((Fake *)d, n, logits);
    return 0;
}
static void fake_close(Decoder *d) { (void)d; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_constrain TOKENIZER.gguf|tokenizer.json [arc-edit|arc-grid]\n"); return 2; }
    char err[ERR_MAX];
    Tokenizer *tok = strstr(argv[1], ".gguf") ? gguf_load_tokenizer(argv[1], err) : tok_load(argv[1], err);
    const Grammar *g = grammar_find(argc > 2 ? argv[2] : "arc-edit");
    if (!tok || !g) { fprintf(stderr, "seal: %s\n", tok ? "unknown grammar" : err); return 1; }
    enum { B = 8, NEW = 64 };
    const int V = tok_vocab_size(tok);
    Config c = {.vocab = V, .max_pos = NEW + 2};
    Constraint *con = constraint_new(g, tok, V, err);
    int prompt[1] = {0}, lens[B], *out[B], out_lens[B];
    const int *prompts[B];
    for (int b = 0; b < B; b++) prompts[b] = prompt, lens[b] = 1;
    printf("%s, vocabulary %d, %d sequences x %d tokens, temperature 0.8\n", g->name, V, B, NEW);
    for (int rep = 0; rep < 3; rep++)
        for (int on = 0; on < 2; on++) {
            Fake f = {.d = {fake_open, fake_prefill, fake_step, NULL, fake_close}, .V = V};
            rng_seed(&f.r, 5);
            SampleOpts o = {.max_new = NEW, .temperature = 0.8f, .top_p = 1.0f, .seed = 1, .constraint = on ? con : NULL};
            double t0 = now_seconds();
            if (decode(&f.d, &c, prompts, lens, B, &o, NULL, 0, NULL, NULL, out, out_lens, err)) { fprintf(stderr, "seal: %s\n", err); return 1; }
            double t = now_seconds() - t0;
            long n = 0;
            for (int b = 0; b < B; b++) { n += out_lens[b]; free(out[b]); }
            printf("  %-13s %4ld tokens  %6.2f ms a token\n", on ? "--constrain" : "unconstrained", n, 1e3 * t / n);
        }
    long masks;
    int states;
    double s = constraint_seconds(con, &masks, &states);
    printf("  in the constraint: %.2f ms a mask (%ld masks, %d states cached)\n", 1e3 * s / masks, masks, states);
    constraint_free(con);
    tok_free(tok);
    return 0;
}
