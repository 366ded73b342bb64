// run.h: the run directory, SEAL's provenance record (SEAL.md "Provenance").
//
//   RUN/run.json      configuration, seeds, model and data hashes, program version
//   RUN/edits.jsonl   one line per sampled self-edit (append-only, fsync'd)
//   RUN/events.jsonl  promotions, retention checks, rollbacks (append-only)
//   RUN/rounds/K/     policy adapter after round K (PEFT) + metrics.json
//   RUN/current       the promoted round (0 = the base model)
//
// Every file is written atomically or appended with fsync, so a run killed at
// any moment leaves at worst a torn last line, which reopening removes.
#pragma once
#include <cjson/cJSON.h>
#include <stdio.h>
#include "model.h"

#define SEAL_VERSION "0.1.0"

// The phases of a run: what a logged self-edit was for. Each is a name in
// edits.jsonl; the continued-pretraining phases of knowledge add the group size
// ("cpt-passage-n5").
typedef enum {
    PHASE_BASELINE,               // held-out tasks, no adaptation
    PHASE_EVAL,                   // held-out tasks, self-edits of the current policy
    PHASE_ORACLE,                 // held-out tasks, the domain's best fixed self-edit
    PHASE_PROBE,                  // retention probe: the policy itself answers
    PHASE_TRAIN,                  // the E-step: self-edits for the training tasks
    PHASE_TRAIN_BASELINE,         // training tasks, no adaptation (best_per_task)
    PHASE_SELECT,                 // best_per_task's choice, copied from a train line
    PHASE_CPT_PASSAGE, PHASE_CPT_BASE, PHASE_CPT_SEAL,   // knowledge's continued pretraining
    PHASE_STORED,                 // knowledge: held-out tasks, a self-edit stored with the passage (SEAL's base_val.json)
    PHASE_IN_CONTEXT,             // knowledge: held-out tasks, the passage in the prompt, no training
    N_PHASES
} Phase;
extern const char *const PHASE_NAME[N_PHASES];
// A phase's name in the log, the group size included ("cpt-passage-n5").
void phase_name(Phase phase, int group, char *buf, size_t n);

// One line of edits.jsonl: one attempt at one self-edit, and what came of it.
typedef struct {
    Phase phase;
    int group;                    // the cpt phases: passages per group, else 0
    int round, task, sample, attempt;
    int final;                    // the attempt that counts (earlier ones were invalid and drawn again)
    char *task_id;                // the task's name, or NULL
    uint64_t seed, prompt_hash, policy_hash;
    char *edit;                   // the self-edit (valid UTF-8), or NULL: none
    int valid, trained, accepted;
    char why[256];                // why invalid or untrained, else ""
    double reward;
    cJSON *metrics;               // the domain's own numbers, or NULL
    double seconds_sample, seconds_total;
    int from_sample;              // select lines: the train sample chosen
    double baseline_reward;       // select lines: the task's no-edit reward
} Edit;

typedef struct { Edit *e; int n; } Edits;
void edit_free(Edit *e);
void edits_free(Edits *es);
void edits_push(Edits *es, Edit *e);   // takes *e's memory
// An Edit as a JSON line (malloc'd, no newline), and back; from_line checks
// every field it needs (where names the file and line for the message).
char *edit_to_line(const Edit *e);
int edit_from_line(const char *line, Edit *e, const char *where, char *err);
// A number from e's domain metrics; 0 when absent.
double edit_metric(const Edit *e, const char *key);

typedef struct {
    char dir[3800];
    int lock_fd;                  // RUN/lock, flock'd while the run is open (0: none)
    int n_edits;
    Edit **edits;                 // the lines of edits.jsonl, in order (each stays where it is)
    struct EditSlot *index;       // (phase, group, round, task, sample) -> its lines
    int index_cap;
} Run;

// How a run directory is opened.
typedef enum {
    RUN_NEW,              // create it: a new or empty directory
    RUN_RESUME,           // continue it: same configuration, unchanged inputs, parts that agree
    RUN_RESUME_CHANGED,   // the same, over inputs that changed (logged: "inputs-changed")
    RUN_READ              // read the log only (seal runs show): no lock, nothing checked or cut
} RunMode;

// Opens RUN. RUN_NEW writes run.json = {"config", "inputs", "version", "created"}
// into a new or empty directory; the resumes check that the stored config
// equals `config` (naming the first key that differs), that every input file
// (inputs: {"path": "hash"} from fingerprints_take, or NULL) hashes as it did,
// and that current, rounds/ and the log agree. All but RUN_READ hold RUN/lock
// until run_close: a second writer is refused at once, naming the holder's pid.
int run_open(Run *r, const char *dir, const cJSON *config, const cJSON *inputs, RunMode mode, char *err);
void run_close(Run *r);

// Appends one line to edits.jsonl (fsync'd) and keeps it in r->edits; the run
// owns *e's memory afterwards (also on failure).
int run_append(Run *r, Edit *e, char *err);
// The final line of this sample, or NULL: resume skips work already done.
// run_attempts counts every line of the sample (its earlier, invalid attempts too).
const Edit *run_find(const Run *r, Phase phase, int round, int task, int sample);
const Edit *run_find_group(const Run *r, Phase phase, int group, int round, int task, int sample);
int run_attempts(const Run *r, Phase phase, int round, int task, int sample);
// A round's record, RUN/rounds/K/metrics.json.
typedef struct {
    int round;
    double train_reward;          // mean reward of the E-step's self-edits
    int selected;                 // best_per_task: the pairs it chose; -1: off
    int mstep_examples, mstep_steps;   // steps 0: no M-step
    double mstep_first_loss, mstep_last_loss, mstep_seconds;
    int mstep_diverged;           // its loss became NaN or Inf: no adapter, the policy carried over
    double eval_success, probe;   // held-out score and retention probe of the round's policy
    int adapter;                  // rounds/K holds the policy adapter (else: the base policy)
} Round;

// An event of the loop in events.jsonl: "promote" or "hold" (with the probe
// scores), "mstep-skipped" or "mstep-diverged" (probe NaN: none).
int run_log_event(const Run *r, const char *event, int round, double probe, double probe_base, char *err);

int run_save_round(const Run *r, const Round *m, const Lora *adapter, char *err);
// 1 with *m when round k is complete on disk, 0 when not, -1 when its record is unreadable.
int run_load_round(const Run *r, int k, Round *m, char *err);
cJSON *run_round_metrics(const char *dir, int k); // NULL when absent
int run_set_current(const Run *r, int k, char *err);
int run_get_current(const char *dir);             // -1 when absent or unreadable

// Prints the report's Markdown and writes RUN/report.md, RUN/report.json and,
// when json_path is set, the JSON there too (each atomically).
int run_write_report(const char *dir, const char *md, const cJSON *report, const char *json_path, char *err);
// A report row's 95% interval as "lo–hi%" (its ci_low, ci_high), or "-".
void report_row_interval(const cJSON *row, char *s, size_t size);

// `seal runs show` and `seal runs rollback`.
int run_show(const char *dir, FILE *out, char *err);
// Rollback takes the lock too, and loads round k's adapter (against the
// run's model config) and checks that it is finite before making k current.
int run_rollback(const char *dir, int k, char *err);

// 64-bit hash of a table's floats (model and adapter hashes in the record).
uint64_t table_hash(const Table *t);
