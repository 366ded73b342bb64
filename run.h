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

typedef struct {
    char dir[3800];
    int n_edits;
    cJSON **edits;                // parsed lines of edits.jsonl, in order
} Run;

// Creates RUN (which must not hold a run yet) with run.json = {"config": config,
// "version", "created"} or, with resume, reopens it: its stored config must
// equal `config` (else "a run directory from another configuration").
int run_open(Run *r, const char *dir, const cJSON *config, int resume, char *err);
void run_close(Run *r);

// Appends one line to edits.jsonl (fsync'd) and keeps it in r->edits.
int run_append_edit(Run *r, cJSON *line, char *err);   // takes ownership of line
// The final logged line of this sample, or NULL: resume skips work already
// done. Lines of earlier attempts (invalid edits that were resampled) carry
// "final": false; run_attempts counts every line of the sample.
const cJSON *run_find_edit(const Run *r, const char *phase, int round, int task, int sample);
int run_attempts(const Run *r, const char *phase, int round, int task, int sample);
int run_log_event(const Run *r, cJSON *event, char *err);   // events.jsonl; frees event

int run_save_round(const Run *r, int k, const Lora *adapter, const cJSON *metrics, char *err);
int run_round_done(const Run *r, int k);          // metrics.json is there
cJSON *run_round_metrics(const char *dir, int k); // NULL when absent
int run_set_current(const Run *r, int k, char *err);
int run_get_current(const char *dir);             // -1 when absent or unreadable

// Prints the report's Markdown and writes RUN/report.md, RUN/report.json and,
// when json_path is set, the JSON there too (each atomically).
int run_write_report(const char *dir, const char *md, const cJSON *report, const char *json_path, char *err);

// `seal runs show` and `seal runs rollback`.
int run_show(const char *dir, FILE *out, char *err);
int run_rollback(const char *dir, int k, char *err);

// 64-bit hash of a table's floats (model and adapter hashes in the record).
uint64_t table_hash(const Table *t);
