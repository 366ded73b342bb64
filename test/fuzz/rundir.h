// test/fuzz/rundir.h: the run directory that fuzz_rundir.c corrupts one file
// at a time, and test/fuzz/seeds.c writes seeds from: made by the project's
// own writers (run_open, run_append, lora_save, run_save_round), with
// the edit lines restem.c logs.
#pragma once
#include "arc.h"
#include "run.h"
#include "train.h"
#include <stdlib.h>

// The files --resume reads, in the order of the selector byte of an input.
static const char *const RUNDIR_FILES[] = {"edits.jsonl", "run.json", "rounds/1/metrics.json",
                                           "rounds/1/adapter_config.json", "rounds/1/adapter_model.safetensors", "current"};
#define RUNDIR_N_FILES 6

static inline Config rundir_model_config(void) {
    return (Config){.dim = 8, .hidden = 12, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4, .vocab = 16,
                    .norm_eps = 1e-5f, .rope_theta = 10000.0f, .max_pos = 64, .bos = 1, .eos = {2}, .n_eos = 1};
}

static inline cJSON *rundir_config(void) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "command", "fuzz");
    cJSON_AddNumberToObject(c, "seed", 7);
    return c;
}

static inline cJSON *rundir_edit_line(const char *phase, int round, int task, int sample, int attempt, int final, const char *edit,
                               float reward, int accepted) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "phase", phase);
    cJSON_AddNumberToObject(l, "round", round);
    cJSON_AddNumberToObject(l, "task", task);
    cJSON_AddStringToObject(l, "task_id", "demo-train-0001-rot90");
    cJSON_AddNumberToObject(l, "sample", sample);
    cJSON_AddNumberToObject(l, "attempt", attempt);
    cJSON_AddBoolToObject(l, "final", final);
    cJSON_AddStringToObject(l, "seed", "0x1f2e3d4c5b6a7988");
    cJSON_AddStringToObject(l, "prompt_hash", "0x0123456789abcdef");
    if (edit) cJSON_AddStringToObject(l, "edit", edit); else cJSON_AddNullToObject(l, "edit");
    cJSON_AddBoolToObject(l, "valid", edit != NULL);
    cJSON_AddStringToObject(l, "why", edit ? "" : "no edit");
    cJSON_AddBoolToObject(l, "trained", edit != NULL);
    cJSON_AddNumberToObject(l, "reward", reward);
    cJSON_AddBoolToObject(l, "accepted", accepted);
    cJSON *m = cJSON_AddObjectToObject(l, "metrics");
    cJSON_AddNumberToObject(m, "seconds_train", 0.25);
    cJSON_AddNumberToObject(m, "seconds_infer", 0.5);
    cJSON_AddStringToObject(l, "policy_hash", "0x0");
    cJSON_AddNumberToObject(l, "seconds_sample", 0.125);
    cJSON_AddNumberToObject(l, "seconds_total", 1.0);
    return l;
}

// A complete one-round run in dir; 0 on success.
static inline int rundir_make(const char *dir, char *err) {
    Run r;
    cJSON *config = rundir_config();
    int rc = run_open(&r, dir, config, NULL, RUN_NEW, err);
    cJSON_Delete(config);
    SelfEdit se = {.basic = 1, .chain = 1, .lr = 1e-4f, .epochs = 2};
    char *edit = selfedit_to_json(&se);
    cJSON *lines[] = {rundir_edit_line("baseline", 0, 0, 0, 0, 1, NULL, 0.5f, 0),
                      rundir_edit_line("train", 1, 0, 0, 0, 0, "{\"data_generation\": {", 0, 0),
                      rundir_edit_line("train", 1, 0, 0, 1, 1, edit, 1, 1),
                      rundir_edit_line("eval", 1, 0, 1, 0, 1, edit, 0, 0)};
    free(edit);
    for (int i = 0; i < 4; i++) {   // each line as the loop writes it: an Edit
        char *text = cJSON_PrintUnformatted(lines[i]);
        Edit e;
        if (!rc) rc = edit_from_line(text, &e, "rundir_make", err) || run_append(&r, &e, err);
        free(text);
        cJSON_Delete(lines[i]);
    }
    Config c = rundir_model_config();
    Lora l;
    if (!rc && lora_init(&l, &c, 2, 4.0f, 1u << PROJ_Q | 1u << PROJ_V)) rc = errf(err, "out of memory");
    if (!rc) {
        lora_reset(&l, 3);
        Round m = {.round = 1, .train_reward = 0.5, .selected = -1, .eval_success = 0.25, .probe = 1, .adapter = 1};
        rc = run_save_round(&r, &m, &l, err) || run_set_current(&r, 1, err);
        lora_free(&l);
    }
    run_close(&r);
    return rc ? -1 : 0;
}
