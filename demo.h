// demo.h: `seal demo`: the whole SEAL few-shot loop on a built-in world of
// ARC-like tasks, with a tiny Llama pretrained on the spot, on a laptop CPU.
#pragma once
#include "backend.h"
#include <stdint.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include "run.h"
#include "tokenizer.h"
#include "train.h"

typedef struct {
    uint64_t seed;
    int quick;                    // a smaller world and model: CI's end-to-end check
    int fresh;                    // rebuild the cached base model
    const char *cache;            // base-model cache root (default ~/.cache/seal/demo)
    const char *out;              // run directory (default seal-runs/demo-SEED-TIME)
    const char *json;             // also write the report here
    Backend *be;                  // where the SEAL phase samples and trains (NULL: the CPU)
    int adapters_at_once;         // RestemOpts.adapters_at_once (0: 1)
} DemoOpts;

int demo_run(const DemoOpts *o, char *err);

// The demo's inner loop (LoRA, TTT and inference limits, oracle) on fs, whose
// tasks are kept; tok is the base's tokenizer (bench/demo_directives.c).
typedef struct FewShot FewShot;
void demo_fewshot(FewShot *fs, int quick, const Tokenizer *tok);

// Shared by the demos (demo.c, demo_knowledge.c).
// Pretraining texts: prompt and target pairs (malloc'd, owned) and a kind per
// pair that each demo reads its own way (demo.c: the loss covers every token;
// demo_knowledge.c: the target is a document titled by the prompt).
typedef struct { char **prompt, **target; int *kind, n, cap; } DemoTexts;
void demo_texts_add(DemoTexts *t, char *prompt, char *target, int kind);
void demo_texts_free(DemoTexts *t);
typedef struct { int epochs, batch; float lr; uint64_t seed; int first; } DemoPretrain;   // first: examples before it are only freed
int demo_pretrain_save(Model *m, Tokenizer *tok, Example *ex, int n_ex, const DemoPretrain *pt, const char *tmp, const char *dir,
                       double t0, int rc, char *err);
int demo_write_file(const char *dir, const char *name, const char *text, char *err);   // dir/name, atomically
// The tokenizer (tok_json, written to dir) and a random Llama on it, ready for full training.
// Makes DIR.tmp.PID (its name into tmp, n bytes), where a base is built
// before it is renamed to DIR: a half-built base is never taken for one.
int demo_tmp_dir(const char *dir, char *tmp, size_t n, char *err);
int demo_base_init(const char *dir, const char *tok_json, int dim, int hidden, int layers, int heads, int kv_heads, uint64_t seed,
                   Tokenizer **tok, Model *m, char *err);

// What a demo holds while it runs: its options, where its files go, and the
// base model, which is both the policy and the student.
typedef struct {
    const DemoOpts *o;
    double t0;                    // when it started: the report says how long it took
    char cache[4000];             // --cache, $XDG_CACHE_HOME/seal/demo or ~/.cache/seal/demo
    char base[4100];              // CACHE/BASE_NAME-SCALE-seedS
    char out[4100];               // the run directory: --out, or seal-runs/RUN_NAME-SCALE-seedS-TIME
    Model m;
    Tokenizer *tok;
    Run run;
} Demo;
void demo_init(Demo *d, const DemoOpts *o, const char *base_name, const char *run_name, const char *scale);
void demo_free(Demo *d);
// 1 when d->base is built and may be used, 0 when it must be built (--fresh
// first sets an existing one aside), -1 on error.
int demo_base_cached(const Demo *d, char *err);
int demo_load_base(Demo *d, char *err);   // d->m and d->tok from d->base
// A demo run's configuration (run.json): the command, scale, base folder and
// the hash of its weights; the caller adds its own.
cJSON *demo_config(const Demo *d, const char *command, const char *scale);
// A demo's report: the caller writes its title and tables into the stream
// demo_report_open returns; demo_report_save adds the time taken and how to
// inspect the run, and saves it (RUN/report.md, RUN/report.json, --json).
typedef struct { FILE *f; char *md; size_t len; } DemoReport;
FILE *demo_report_open(DemoReport *r);
int demo_report_save(const Demo *d, DemoReport *r, const cJSON *report, char *err);
