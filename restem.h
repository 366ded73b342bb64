// restem.h: SEAL's outer loop, ReST^EM, over any domain.
#pragma once
#include <cjson/cJSON.h>
#include "backend.h"
#include "generate.h"
#include "model.h"
#include "run.h"
#include "tokenizer.h"

// What the inner loop made of one self-edit.
typedef struct {
    int valid;                    // the self-edit parsed and passed every check
    int trained;                  // the inner loop ran (a valid edit can still be refused: too many steps)
    float reward;                 // downstream score after the update, in [0, 1]
    char why[256];                // why the edit is invalid or untrained, else ""
    cJSON *metrics;               // anything else worth logging (owned by the caller after return)
} Outcome;
// An evaluated self-edit's outcome into its log line (e takes o->metrics).
void edit_take_outcome(Edit *e, const Outcome *o);

// A domain: its tasks, the policy's prompt for each, and how a self-edit is
// applied to the student and rewarded on the task's held-out queries.
typedef struct Domain Domain;
struct Domain {
    const char *name;
    int n_train, n_eval, n_probe;
    void *ctx;
    char *(*prompt)(const Domain *d, int split, int task);   // malloc'd chat text ending at the assistant header
    // (a self-edit's sampling stops at the policy's eos ids and at eot below)
    const char *(*task_name)(const Domain *d, int split, int task);
    // Applies edit[i] (inner loop) to student and scores it on task[i] into out[i],
    // for n self-edits (1..MAX_ADAPTERS; their inner loops may train together on
    // the student's frozen base: be_sft_many). edit[i] NULL scores the student as
    // it is (no adaptation). seed[i] drives every random choice of edit i.
    int (*evaluate_many)(const Domain *d, Model *student, int split, int n, const int *task, const char *const *edit, const uint64_t *seed,
                         Outcome *out, char *err);
    const char *oracle_edit;      // the best fixed configuration, or NULL
    const char *eot;              // the token closing a turn in the prompt's chat format (chat_eot), which
                                  // ends each self-edit of the M-step data; NULL: "<|eot_id|>"
    double paper[4];              // the paper's numbers: no adaptation, untrained, SEAL, oracle (NaN: none)
    // Optional: nonzero when the protocol counts the task as failed without
    // running it (oracle: in the oracle phase), writing why (256 bytes) when
    // why is not NULL. Such a pair is logged with reward 0 and no self-edit.
    int (*counted_wrong)(const Domain *d, int split, int task, int oracle, char *why);
    Backend *be;                  // where sampling and training run (backend.h; NULL: the CPU)
};
enum { SPLIT_TRAIN, SPLIT_EVAL, SPLIT_PROBE };

// One self-edit's outcome: d->evaluate_many with n = 1.
int domain_evaluate(const Domain *d, Model *student, int split, int task, const char *edit, uint64_t seed, Outcome *out, char *err);

typedef struct {
    int rounds, samples, eval_samples, keep_per_task, max_attempts;   // keep_per_task 0: no cap
    float threshold;              // accept rewards >= threshold (binary reward: 1)
    int best_per_task;            // instead, once a task's samples are scored, accept its keep_per_task best
                                  // that reach threshold and beat the task's no-edit reward (logged as "select" lines)
    int best_any;                 // with best_per_task: keep the best whatever the no-edit reward (SEAL's
                                  // build_SFT_dataset.py); the training tasks' baselines are then not scored
    int train_per_round;          // training tasks a round's E-step samples (0: all n_train) ...
    int train_stride;             // ... round k's start at (k-1) x train_stride, modulo n_train (0: the same every round)
    int m_from_previous;          // round k's M-step continues round k-1's adapter (SEAL's train_SFT.sh
                                  // fine-tunes the n-1'th checkpoint), else a fresh one on the base policy
    SampleOpts sampling;          // how self-edits are drawn from the policy
    int keep_untrained;           // the filter also keeps rewarded self-edits that got no training
    int merge_policy;             // with no teacher: the policy's adapter is merged into the student for the
                                  // phases that use the policy (TTT and answers on the trained model), not
                                  // only attached while sampling
    int m_rank, m_epochs, m_batch;
    float m_alpha, m_lr;
    unsigned m_targets;
    int replay;                   // M-step also trains on earlier rounds' accepted pairs
    float max_retention_drop;     // a policy whose probe score drops more is not promoted
    uint64_t seed;
    int quiet;                    // no progress lines on stderr
    int adapters_at_once;         // self-edits whose inner loops train together (Domain.evaluate_many;
                                  // 1..MAX_ADAPTERS, one rank only)
} RestemOpts;

RestemOpts restem_defaults(void);
void restem_opts_json(const RestemOpts *o, cJSON *into);   // recorded in run.json

// Runs (or resumes) SEAL: baseline, untrained-policy and oracle evaluations,
// then R rounds of E-step, filter, M-step, held-out evaluation and retention
// check. policy writes self-edits (its adapter is the trained part); student
// receives them. They may be the same model. Writes the report table to report.
// Under mpirun every rank calls it with the same models, domain and options:
// rank 0 runs the loop and owns run and report; the others (their run and
// report unused) score the self-edits rank 0 hands them and return 0 when it
// is done (ranks.h).
int restem_run(const Domain *d, Model *policy, Model *student, const Tokenizer *tok, Run *run,
               const RestemOpts *o, cJSON *report, char *err);

// Every task's self-edit prompt leaves room in the policy's context
// (max_position_embeddings) for at least one token: else an error naming the
// task, before the run starts (a self-edit too long stops at the context: generate_room).
int restem_check_prompts(const Domain *d, const Model *policy, const Tokenizer *tok, char *err);

// A row of a report's table: {"method", "ours", "paper" (null when NaN), "n"}.
cJSON *report_row(cJSON *rows, const char *method, double ours, double paper, int n);
// The report's rows as Markdown table rows: method, ours, paper, n.
void restem_report_rows(const cJSON *report, FILE *out);
// The report as a Markdown table beside the paper's numbers.
void restem_report_markdown(const cJSON *report, FILE *out);
