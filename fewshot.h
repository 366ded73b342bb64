// fewshot.h: SEAL's few-shot domain (ARC) as a restem Domain: a self-edit's
// directives build test-time-training data, a fresh LoRA trains on it, and
// the reward is augmented greedy inference with voting (pass@2).
#pragma once
#include "backend.h"
#include "arc.h"
#include "chat.h"
#include "restem.h"
#include "tokenizer.h"
#include "train.h"

typedef struct FewShot {
    Task *train, *eval;           // eval tasks also serve as the retention probe
    int n_train, n_eval;
    Backend *be;                  // where TTT and answering run (NULL: the CPU)
    const Tokenizer *tok;
    ChatFormat chat;              // how prompts are rendered (CHAT_LLAMA3 by default)
    int eot;                      // its end-of-turn token (chat_eot), closing each answer
    // inner loop (SEAL's values by default)
    int lora_r, batch, warmup, max_tokens, max_views, max_answer_tokens;
    int max_examples, max_steps;  // SEAL: 250 examples, 375 optimizer steps
    float lora_alpha;
    unsigned lora_targets;
    const char *oracle;           // the fixed configuration reported as the oracle
} FewShot;

// SEAL's defaults: r=128, alpha=16 on q, v, gate, up, down; batch 2; 11
// warm-up steps; examples of 8192 tokens or more dropped.
void fewshot_defaults(FewShot *fs);
void fewshot_domain(Domain *d, FewShot *fs);
// What the run needs before it starts: an oracle that is a valid self-edit,
// and every task's first test pair with its output (the reward's answer key).
int fewshot_check(const FewShot *fs, char *err);
void fewshot_config_json(const FewShot *fs, cJSON *into);

// The training sequences of a self-edit's TTT data (exposed for tests).
int fewshot_examples(const FewShot *fs, const TttExample *ex, int n, int output_only, Example **out, char *err);
