// knowledge.h: SEAL's knowledge-incorporation domain (SEAL.md "Domain 2") as
// a restem Domain. The policy reads a passage and writes a self-edit (by
// default a list of implications); each statement becomes a training
// document for a fresh LoRA on the student; the reward is the adapted
// student's greedy answers to the passage's questions asked without the
// passage, graded by SQuAD exact match / token F1.
#pragma once
#include "backend.h"
#include "restem.h"
#include "squad.h"
#include "train.h"

// The oracle edit of this domain: train on the passage alone. restem reports
// it as its "oracle" row, which the knowledge report names "train on the passage only".
#define KNOWLEDGE_PASSAGE_ONLY "(train on the passage only)"

// The row of the passage in the prompt with no training (seal demo knowledge's too).
#define KNOWLEDGE_IN_CONTEXT "in context (passage in the prompt, no training)"

enum { CPT_PASSAGE, CPT_BASE, CPT_SEAL, CPT_SOURCES };   // what continued pretraining trains on besides the passages
extern const char *const CPT_SOURCE_NAME[CPT_SOURCES];   // "passage", "base", "seal"

// Who graded the paper's numbers (SEAL's utils.py grade_with_gpt4): every knowledge table says so.
#define KNOWLEDGE_PAPER_GRADER "GPT-4.1 as a yes/no judge"

#define CPT_MAX_SIZES 8
typedef struct {
    Passage *train, *eval;        // eval passages also serve as the retention probe
    int n_train, n_eval, n_probe;
    Backend *be;                  // where training and answering run (NULL: the CPU)
    const Tokenizer *tok;
    ChatFormat chat;              // how prompts are rendered (CHAT_LLAMA3 by default)
    int style;                    // STYLE_*: the self-edit the policy is asked for
    int with_passage;             // the passage is a training document too (SEAL: always)
    // inner loop (SEAL's values by default)
    int lora_r, epochs, batch, max_doc_tokens;
    float lora_alpha, lr;
    unsigned lora_targets;
    int ttt_runs;                 // inner loops per training passage's self-edit, reward = their mean (SEAL: 3; held-out: always 1)
    // reward
    int max_answer_tokens, grader;
    const Model *judge;           // GRADE_JUDGE: the model that answers SEAL's grading prompt, its tokenizer and chat format
    const Tokenizer *judge_tok;
    ChatFormat judge_chat;
    const char *judge_name;       // for the report
    int in_context;               // the "in context" row: the passage in the prompt, no training (logged as "in-context" lines)
    int stored_k;                 // the "stored" row: the first stored_k completions stored with each held-out passage (0: no row)
    // continued pretraining: the held-out passages in groups of n, each group absorbed in one update
    int cpt_sizes[CPT_MAX_SIZES], n_cpt_sizes;
    unsigned cpt_sources;         // bits of CPT_*
    int cpt_epochs, cpt_batch;
    float cpt_lr;
    int cpt_completions;          // self-edits per passage at most (0: every logged one)
    int cpt_split_lines;          // 1: a statement a line, the passage once; 0: CPT.sh's documents (see cpt_group)
} Knowledge;

// SEAL's inner loop: LoRA r=32, alpha=64 on q_proj and v_proj, 10 epochs, lr
// 1e-3, batch 1, documents cut at 2048 tokens, answers of 64 tokens at most,
// grader em-f1; continued pretraining n = 1 and 200 from every source, 3
// epochs, lr 1e-3, batch 8 (CPT.sh: 4 x 2 accumulation). The rest as seal
// demo knowledge runs it: Llama-3 chat prompts, one inner loop per self-edit,
// CPT on every logged self-edit split into lines, no stored row.
// knowledge_official then sets what `seal knowledge` follows SEAL's code in
// (docs/FIDELITY.md): 3 inner loops per training self-edit, CPT.sh's
// documents (5 completions, no line split, n=200), the stored row's first completion.
void knowledge_defaults(Knowledge *k);
void knowledge_official(Knowledge *k);
void knowledge_domain(Domain *d, Knowledge *k);
void knowledge_config_json(const Knowledge *k, cJSON *into);

// The training documents of a self-edit for a passage: "TITLE\nSTATEMENT" for
// each statement, then the passage when with_passage is set (always for
// KNOWLEDGE_PASSAGE_ONLY); <|begin_of_text|> first, loss on every other token.
// *statements gets the statement count.
int knowledge_documents(const Knowledge *k, const Passage *p, const char *edit, Example **ex, int *n, int *statements, char *err);

// One training document: <|begin_of_text|>, then "TITLE\nTEXT" cut to max_tokens in all; loss on all but the first.
int knowledge_document(const Tokenizer *tok, const Passage *p, const char *text, int max_tokens, Example *e, char *err);

// The "in context" row's passage: a copy of p whose questions carry the
// passage before them ("CONTEXT\nQUESTION", knowledge_in_context_question),
// to be answered with no training; free with knowledge_in_context_free.
Passage knowledge_in_context(const Passage *p);
void knowledge_in_context_free(Passage *c);
char *knowledge_in_context_question(const char *context, const char *question);

// Each of the first `tasks` held-out passages' score in a run's logged
// lines of phase and round, samples 0..samples-1: the mean of its lines in
// out[t] (0 without one), their count in lines[t] (lines may be NULL).
// Returns the lines found.
int knowledge_logged_scores(const Run *run, Phase phase, int round, int tasks, int samples, double *out, int *lines);

// Greedy no-context answers of m to a passage's questions (malloc'd strings),
// and their scores under k->grader (scores may be NULL).
int knowledge_answer(const Knowledge *k, const Model *m, const Passage *p, char ***answers, double *scores, char *err);

// SEAL on knowledge incorporation end to end: restem_run over the domain,
// then the continued-pretraining rows (logged in the run, so resume skips
// them too; under mpirun rank 0 alone runs them), then the report table of the paper (rows: base model, train on
// the passage only, passage + base-model self-edits, SEAL per round, the stored
// row, in context, CPT), each row with a 95% bootstrap interval over passages.
// logs: how the train and eval files were read (their skips go in the report).
int knowledge_run(Knowledge *k, Model *policy, Model *student, Run *run, const RestemOpts *o,
                  const SquadLoad *train_log, const SquadLoad *eval_log, cJSON *report, char *err);
void knowledge_report_markdown(const cJSON *report, FILE *out);
