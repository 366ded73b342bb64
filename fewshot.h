// fewshot.h: SEAL's few-shot domain (ARC) as a restem Domain: a self-edit's
// directives build test-time-training data, a fresh LoRA trains on it, and
// the reward is augmented greedy inference with voting (pass@2).
#pragma once
#include "backend.h"
#include "arc.h"
#include "chat.h"
#include "constrain.h"
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
    int unused_colors;            // TTT colour permutations onto unused colours first (SEAL's PermuteColors); 0: any
    int group_by_length;          // TTT batches of similar lengths (beyond SEAL; SftOpts.group_by_length)
    int strict_edits;             // a self-edit with a bad field is invalid (drawn again); 0: SEAL's 0 epochs, scored
    int selected;                 // fewshot_select ran: SEAL's task selection
    int selection[4];             // its entry counts: training LoRAs, training scored, held-out LoRAs, held-out scored
    unsigned char *eval_wrong;    // per held-out task: 0, or why SEAL counts it failed (1 no LoRA, 2 an entry unscored)
    const char *constrain;        // --constrain: "edits", "answers" or "both"; NULL: off, as SEAL (beyond its code)
    Constraint *answer_constraint;   // answers only as grids (arc-grid), or NULL
} FewShot;

// SEAL's defaults: r=128, alpha=16 on q, v, gate, up, down; batch 2; 11
// warm-up steps; examples and views of 8192 tokens or more dropped; colour
// permutations onto unused colours; SEAL's 0-epoch fallback for bad fields;
// the oracle is ttt.py's configuration (all groups, lr 1e-4, 2 epochs).
void fewshot_defaults(FewShot *fs);
void fewshot_domain(Domain *d, FewShot *fs);
// SEAL's few-shot ReST^EM values where they differ from restem_defaults:
// sampling 0.8 / top-p 1 / 128 tokens, up to 1000 draws until the JSON parses,
// every correct self-edit kept (no cap, trained or not), M-step batch 5, the
// M-step adapter merged into the student (docs/FIDELITY.md).
RestemOpts fewshot_restem_defaults(void);
// What the run needs before it starts: an oracle that is a valid self-edit,
// and every task's first test pair with its output (the reward's answer key).
int fewshot_check(const FewShot *fs, char *err);
void fewshot_config_json(const FewShot *fs, cJSON *into);
// SEAL's selection of tasks (fewshot.c: entries, self-edit.py --n_tasks,
// eval-self-edits.py --num_examples) with counts {training N, training M,
// held-out N, held-out M}; SEAL's: {12, 11, 10, 9}. Reorders both splits by id
// and frees the tasks left out.
#define SEAL_SELECTION {12, 11, 10, 9}
void fewshot_select(FewShot *fs, const int counts[4]);

// The training sequences of a self-edit's TTT data (exposed for tests).
int fewshot_examples(const FewShot *fs, const TttExample *ex, int n, int output_only, Example **out, char *err);

// The pieces of one self-edit's evaluation, in fs_evaluate_many's order
// (exposed for bench/bench_arc.c, which times them): the TTT data a self-edit's
// directives build from task t (SEAL's augmentations, examples of max_tokens or
// more dropped, at most max_examples; r continues into the views), then, per
// test input, the views answered, the stop tokens and the vote.
void fewshot_ttt_data(const FewShot *fs, const Task *t, const SelfEdit *se, Rng *r, TttExample **tx, int *n);
typedef struct {
    View *views;                  // every view built (n_built), the first nv considered (max_views)
    int n_built, nv;
    int **ids, *lens;             // (nv) each considered view's prompt tokens
    int n_fit, *fit;              // the views answered: indices into views
    int **prompts, *prompt_lens;  // (n_fit) their prompts, for be_generate
    int fallback;                 // no leave-one-out view fit: the leave-two-out views were added
} FewViews;
int fewshot_views(const FewShot *fs, const Model *m, const Task *t, int test, Rng *r, FewViews *v, char *err);
void fewshot_views_free(FewViews *v);
int fewshot_stops(const FewShot *fs, const Model *m, int stop[9]);   // the model's eos ids and the end of turn; returns how many
// Counts the valid answers into *valid; returns 1 when one of the two voted attempts is the solution.
int fewshot_vote(const FewShot *fs, const Task *t, int test, const FewViews *v, int *const *ans, const int *ans_len, int *valid);
