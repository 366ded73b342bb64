// generate.h: sampling and batched generation with the KV cache.
#pragma once
#include "constrain.h"
#include "model.h"
#include "util.h"

typedef struct {
    int max_new;                  // tokens to generate at most
    float temperature;            // 0: greedy (argmax)
    int top_k;                    // 0: off
    float top_p;                  // 1: off
    uint64_t seed;                // sequence b samples from stream (seed, b)...
    const uint64_t *seeds;        // ...or, when set, from stream (seeds[b], 0)
    Constraint *constraint;       // NULL: off; else only tokens its grammar allows, and a
                                  // sequence stops once its grammar is complete (constrain.h)
} SampleOpts;

// Picks a token from logits (V): temperature, then top-k, then top-p, as the
// Hugging Face logits warpers apply them. Greedy ties go to the lowest id.
// logits are modified. -1 when a logit is NaN or Inf: the model is broken
// (its weights, or an adapter that diverged), and no token means anything.
int sample_token(float *logits, int V, const SampleOpts *o, Rng *r);
// The error when sample_token finds non-finite logits for sequence b at a step: -1.
int nonfinite_logits(int b, int step, char *err);

// Called for each generated token; return nonzero to stop that sequence
// (a stop string was seen, say).
typedef int (*TokenFn)(int seq, int token, void *ctx);

// The room each prompt leaves for new tokens in the model's context
// (max_position_embeddings): room[b] = min(max_new, max_pos - prompt_lens[b]).
// A generation longer than the context stops there, with one warning on stderr
// a process (as vLLM stops at max_model_len); a prompt that fills the context
// is an error. Returns the longest sequence (prompt and new tokens), or -1.
int generate_room(const Config *c, const int *prompt_lens, int B, int max_new, int *room, char *err);

// Where generate()'s forward passes run: model.c's KV cache on the CPU
// (generate), kernels.cu's on CUDA (backend.c). open makes a cache for B
// sequences of up to max_T tokens; prefill gives the logits (B, V) of each
// prompt's last token; step appends one token to each of n sequences (seqs[i]
// gets tokens[i]) and gives their logits. step_greedy, when there is one, does
// step and the argmax where the logits are (next[i]); NULL: on the host.
typedef struct Decoder {
    int (*open)(struct Decoder *d, int B, int max_T, char *err);
    int (*prefill)(struct Decoder *d, int B, const int *const *prompts, const int *lens, float *logits, char *err);
    int (*step)(struct Decoder *d, int n, const int *seqs, const int *tokens, float *logits, char *err);
    int (*step_greedy)(struct Decoder *d, int n, const int *seqs, const int *tokens, int *next, char *err);
    void (*close)(struct Decoder *d);
} Decoder;

// Continues B prompts at once. Sequence b samples from its own RNG stream,
// seeded by (seed, b), so a prompt's continuation does not depend on the
// others in the batch. Stops at any of the stop ids (which are emitted),
// at max_new tokens (or the context: generate_room), when on_token asks, or
// when o->constraint's grammar is complete. out[b] (malloc'd) gets the new tokens.
int generate(const Model *m, const int *const *prompts, const int *prompt_lens, int B, const SampleOpts *o,
             const int *stop_ids, int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err);
// generate()'s loop on any decoder, for a model of config c.
int decode(Decoder *d, const Config *c, const int *const *prompts, const int *prompt_lens, int B, const SampleOpts *o,
           const int *stop_ids, int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err);
