// restem.c: SEAL's outer loop (Singh et al.'s ReST^EM, as SEAL uses it).
//
//   for round k = 1..R:
//     E-step   for each training task, sample K self-edits from the policy;
//              apply each to the student (inner loop) and reward it
//     filter   keep the self-edits whose reward passes the threshold, at most
//              keep_per_task per task
//     M-step   a fresh LoRA on the base policy, trained on the kept
//              (prompt, self-edit) pairs with loss on the self-edit tokens only
//     evaluate the new policy on held-out tasks; promote it unless its probe
//              score dropped too far (retention guard)
//
// Every sampled self-edit is a line in RUN/edits.jsonl, keyed by (phase,
// round, task, sample), written as soon as it and the pairs before it in its
// batch are scored. Seeds derive from those keys, never from which process
// did the work, so a resumed run repeats exactly what an uninterrupted one
// would do, and under `mpirun -n K` (ranks.h: the pairs of each batch go to
// whichever rank is free; rank 0 records them in order, runs the filter and
// the M-step, and sends the new policy to every rank) the run directory is
// the same for any K.
#include "restem.h"
#include "ranks.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

RestemOpts restem_defaults(void) {
    return (RestemOpts){.rounds = 1, .samples = 15, .eval_samples = 5, .keep_per_task = 10, .max_attempts = 3,
                        .threshold = 1.0f,
                        .sampling = {.max_new = 160, .temperature = 1.0f, .top_k = 0, .top_p = 0.95f},
                        .m_rank = 16, .m_alpha = 16.0f, .m_lr = 5e-5f, .m_epochs = 8, .m_batch = 1,
                        .m_targets = (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN),
                        .replay = 0, .max_retention_drop = 0.1f, .seed = 0};
}

void restem_opts_json(const RestemOpts *o, cJSON *j) {
    cJSON_AddNumberToObject(j, "rounds", o->rounds);
    cJSON_AddNumberToObject(j, "samples", o->samples);
    cJSON_AddNumberToObject(j, "eval_samples", o->eval_samples);
    cJSON_AddNumberToObject(j, "keep_per_task", o->keep_per_task);
    cJSON_AddNumberToObject(j, "max_attempts", o->max_attempts);
    cJSON_AddNumberToObject(j, "threshold", o->threshold);
    if (o->best_per_task) cJSON_AddNumberToObject(j, "best_per_task", 1);   // absent when off: older run.json files still match
    cJSON_AddNumberToObject(j, "temperature", o->sampling.temperature);
    cJSON_AddNumberToObject(j, "top_k", o->sampling.top_k);
    cJSON_AddNumberToObject(j, "top_p", o->sampling.top_p);
    cJSON_AddNumberToObject(j, "max_new", o->sampling.max_new);
    cJSON_AddNumberToObject(j, "m_rank", o->m_rank);
    cJSON_AddNumberToObject(j, "m_alpha", o->m_alpha);
    cJSON_AddNumberToObject(j, "m_lr", o->m_lr);
    cJSON_AddNumberToObject(j, "m_epochs", o->m_epochs);
    cJSON_AddNumberToObject(j, "m_batch", o->m_batch);
    cJSON_AddNumberToObject(j, "m_targets", o->m_targets);
    cJSON_AddNumberToObject(j, "replay", o->replay);
    cJSON_AddNumberToObject(j, "max_retention_drop", o->max_retention_drop);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
}

// The state of one run: the models, what has been logged, the current policy adapter.
typedef struct {
    const Domain *d;
    Model *policy, *student;
    const Tokenizer *tok;
    Run *run;
    const RestemOpts *o;
    Lora *adapter;                // the policy's trained part; NULL = the base policy
    int policy_version;           // counts the adapter's changes
    int sent_version;             // the version the worker ranks hold (rank 0)
    uint64_t setup;               // setup_hash, with several ranks
    double t_start;
    int done, total;              // samples scored this session, for the ETA
} Seal;

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t text_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

static uint64_t key_seed(const Seal *s, const char *phase, int round, int task, int sample, int attempt) {
    uint64_t h = mix(s->o->seed, text_hash(phase));
    return mix(mix(mix(mix(h, round), task), sample), attempt);
}

static void add_hex(cJSON *j, const char *key, uint64_t v) {
    char buf[20];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
    cJSON_AddStringToObject(j, key, buf);
}

// Samples one self-edit for a prompt from the policy (with its adapter).
static char *draw_edit(Seal *s, const char *prompt, uint64_t seed, char *err) {
    int *ids, n = tok_encode(s->tok, prompt, strlen(prompt), 1, &ids, err);
    if (n < 0) return NULL;
    SampleOpts so = s->o->sampling;
    so.seed = seed;
    model_attach_lora(s->policy, s->adapter);
    int *out = NULL, out_len = 0;
    const int *prompts[1] = {ids};
    int rc = generate(s->policy, prompts, &n, 1, &so, s->policy->c.eos, s->policy->c.n_eos, NULL, NULL, &out, &out_len, err);
    model_attach_lora(s->policy, NULL);
    free(ids);
    if (rc) { free(out); return NULL; }
    if (out_len > 0) {   // the stop token is not part of the edit
        for (int i = 0; i < s->policy->c.n_eos; i++)
            if (out[out_len - 1] == s->policy->c.eos[i]) { out_len--; break; }
    }
    size_t len;
    char *text = tok_decode(s->tok, out, out_len, &len, err);
    free(out);
    return text;
}

static int accepted_so_far(const Run *r, int round, int task) {
    int n = 0;
    for (int i = 0; i < r->n_edits; i++) {
        const cJSON *e = r->edits[i];
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "phase");
        if (cJSON_IsString(ph) && !strcmp(ph->valuestring, "train") && cJSON_GetObjectItemCaseSensitive(e, "round")->valueint == round &&
            cJSON_GetObjectItemCaseSensitive(e, "task")->valueint == task && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "accepted")))
            n++;
    }
    return n;
}

static void progress(Seal *s, const char *phase, int round, int task, int sample, double reward) {
    s->done++;
    if (s->o->quiet) return;
    double el = now_seconds() - s->t_start, per = el / s->done;
    int left = s->total - s->done;
    fprintf(stderr, "\r[%s round %d] task %d sample %d reward %.2f | %.1f s/edit, ~%.0f s left   ", phase, round, task, sample,
            reward, per, left > 0 ? per * left : 0.0);
    fflush(stderr);
}

static double num_of(const cJSON *e, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(e, key)->valuedouble;
}

static int is_true(const cJSON *e, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, key));
}

// A batch: the pairs (task, sample) of one phase of one round that the log
// does not hold yet. Any rank may score a pair (score_pair); rank 0 records
// them in the batch's order (record_pair), so the log is the same for any
// number of ranks (ranks.h).
typedef struct {
    Seal *s;
    const char *phase;
    int round, split, no_edit;
    const char *fixed;            // the one edit every pair applies (the oracle), or NULL
} Batch;

// One self-edit, from attempt job->attempt until an attempt counts: sampled
// (or given, or none), applied and rewarded. *result gets its lines as a JSON
// array; whether it is accepted is decided when it is recorded.
static int score_pair(void *ctx, const RankJob *job, char **result, char *err) {
    const Batch *b = ctx;
    Seal *s = b->s;
    char *prompt = s->d->prompt(s->d, b->split, job->task);
    const int policy_edits = !b->fixed && !b->no_edit, probe = !strcmp(b->phase, "probe");
    cJSON *lines = cJSON_CreateArray();
    int final = 0, rc = 0;
    for (int attempt = job->attempt; !final && !rc; attempt++) {
        uint64_t seed = key_seed(s, b->phase, b->round, job->task, job->sample, attempt);
        double t0 = now_seconds();
        char *edit = policy_edits ? draw_edit(s, prompt, seed, err) : b->fixed ? strdup(b->fixed) : NULL;
        if (policy_edits && !edit) { rc = -1; break; }
        double t_sample = now_seconds() - t0;
        Outcome out = {0};
        // the probe scores the policy itself (with its adapter); the rest, the student
        Model *student = probe ? s->policy : s->student;
        if (probe) model_attach_lora(s->policy, s->adapter);
        rc = s->d->evaluate(s->d, student, b->split, job->task, edit, seed, &out, err);
        if (probe) model_attach_lora(s->policy, NULL);
        if (rc) { free(edit); cJSON_Delete(out.metrics); break; }
        final = out.valid || !policy_edits || attempt + 1 >= s->o->max_attempts;
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "phase", b->phase);
        cJSON_AddNumberToObject(line, "round", b->round);
        cJSON_AddNumberToObject(line, "task", job->task);
        cJSON_AddStringToObject(line, "task_id", s->d->task_name(s->d, b->split, job->task));
        cJSON_AddNumberToObject(line, "sample", job->sample);
        cJSON_AddNumberToObject(line, "attempt", attempt);
        cJSON_AddBoolToObject(line, "final", final);
        add_hex(line, "seed", seed);
        add_hex(line, "prompt_hash", text_hash(prompt));
        if (edit) {   // model output may hold invalid UTF-8; the log stays JSON
            char *clean = utf8_sanitize(edit);
            cJSON_AddStringToObject(line, "edit", clean);
            free(clean);
        } else cJSON_AddNullToObject(line, "edit");
        cJSON_AddBoolToObject(line, "valid", out.valid);
        cJSON_AddStringToObject(line, "why", out.why);
        cJSON_AddBoolToObject(line, "trained", out.trained);
        cJSON_AddNumberToObject(line, "reward", out.reward);
        cJSON_AddBoolToObject(line, "accepted", 0);   // record_pair decides
        cJSON_AddItemToObject(line, "metrics", out.metrics ? out.metrics : cJSON_CreateObject());
        add_hex(line, "policy_hash", s->adapter ? table_hash(&s->adapter->params) : 0);
        cJSON_AddNumberToObject(line, "seconds_sample", t_sample);
        cJSON_AddNumberToObject(line, "seconds_total", now_seconds() - t0);
        cJSON_AddItemToArray(lines, line);
        free(edit);
    }
    free(prompt);
    if (!rc) *result = cJSON_PrintUnformatted(lines);
    cJSON_Delete(lines);
    return rc;
}

// The threshold filter on a pair's final line: a valid, trained self-edit of
// a training task whose reward reaches the threshold, while its task has room.
static int accepts(const Seal *s, const Batch *b, const cJSON *line) {
    return !s->o->best_per_task && !strcmp(b->phase, "train") && is_true(line, "final") && is_true(line, "valid") && is_true(line, "trained") &&
           num_of(line, "reward") >= s->o->threshold && accepted_so_far(s->run, b->round, (int)num_of(line, "task")) < s->o->keep_per_task;
}

// Rank 0: a pair's lines into the log, each appended (fsync'd) whole.
static int record_pair(void *ctx, const RankJob *job, const char *result, char *err) {
    const Batch *b = ctx;
    Seal *s = b->s;
    cJSON *lines = cJSON_Parse(result), *line;
    if (!cJSON_IsArray(lines) || !cJSON_GetArraySize(lines)) {
        cJSON_Delete(lines);
        return errf(err, "%s round %d task %d sample %d: a result that is not a list of log lines", b->phase, b->round, job->task, job->sample);
    }
    int rc = 0;
    while (!rc && (line = cJSON_DetachItemFromArray(lines, 0))) {
        if (accepts(s, b, line)) cJSON_ReplaceItemInObjectCaseSensitive(line, "accepted", cJSON_CreateTrue());
        int final = is_true(line, "final");
        double reward = num_of(line, "reward");
        rc = run_append_edit(s->run, line, err);
        if (!rc && final) progress(s, b->phase, b->round, job->task, job->sample, reward);
    }
    cJSON_Delete(lines);
    return rc;
}

static int share_batch(Seal *s, const Batch *b, char *err);

// Mean reward of `samples` self-edits per task of a split (fixed: one given
// edit; no_edit: the student as it is); the pairs the log lacks are scored
// first, over the ranks. NAN on error.
static double score_split(Seal *s, const char *phase, int round, int split, int n_tasks, int samples, const char *fixed, int no_edit, char *err) {
    Batch b = {s, phase, round, split, no_edit, fixed};
    RankJob *jobs = malloc((n_tasks * samples + 1) * sizeof(RankJob));
    int n = 0;
    for (int t = 0; t < n_tasks; t++)
        for (int k = 0; k < samples; k++)
            if (!run_find_edit(s->run, phase, round, t, k)) jobs[n++] = (RankJob){t, k, run_attempts(s->run, phase, round, t, k)};
    int rc = n ? share_batch(s, &b, err) || ranks_map(jobs, n, score_pair, record_pair, &b, err) : 0;
    free(jobs);
    if (rc) return NAN;
    double sum = 0;
    for (int t = 0; t < n_tasks; t++)
        for (int k = 0; k < samples; k++) sum += num_of(run_find_edit(s->run, phase, round, t, k), "reward");
    return n_tasks > 0 && samples > 0 ? sum / (n_tasks * samples) : 0.0;
}

// best_per_task: a task's keep_per_task best self-edits of the round that
// reach the threshold and beat its no-edit reward (ties: the earlier sample)
// are copied into "select" lines, which the M-step reads as accepted pairs.
// The choice depends on the log alone, so resume repeats it.
static int select_best(Seal *s, int round, int *selected, char *err) {
    const int K = s->o->samples;
    const cJSON **line = calloc(K, sizeof(cJSON *));
    int rc = 0;
    *selected = 0;
    if (isnan(score_split(s, "train-baseline", 0, SPLIT_TRAIN, s->d->n_train, 1, NULL, 1, err))) rc = -1;   // each task's no-edit reward
    for (int t = 0; t < s->d->n_train && !rc; t++) {
        double base_reward = num_of(run_find_edit(s->run, "train-baseline", 0, t, 0), "reward");
        for (int k = 0; k < K; k++) line[k] = run_find_edit(s->run, "train", round, t, k);
        for (int rank = 0; rank < s->o->keep_per_task; rank++) {
            int best = -1;
            for (int k = 0; k < K; k++) {
                const cJSON *e = line[k];
                if (!e || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "valid")) || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "trained")) ||
                    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "edit")) || num_of(e, "reward") < s->o->threshold || num_of(e, "reward") <= base_reward)
                    continue;
                if (best < 0 || num_of(e, "reward") > num_of(line[best], "reward")) best = k;
            }
            if (best < 0) break;
            (*selected)++;
            if (!run_find_edit(s->run, "select", round, t, rank)) {
                cJSON *sel = cJSON_CreateObject();
                cJSON_AddStringToObject(sel, "phase", "select");
                cJSON_AddNumberToObject(sel, "round", round);
                cJSON_AddNumberToObject(sel, "task", t);
                cJSON_AddStringToObject(sel, "task_id", s->d->task_name(s->d, SPLIT_TRAIN, t));
                cJSON_AddNumberToObject(sel, "sample", rank);
                cJSON_AddNumberToObject(sel, "attempt", 0);
                cJSON_AddBoolToObject(sel, "final", 1);
                cJSON_AddNumberToObject(sel, "from_sample", best);
                cJSON_AddStringToObject(sel, "edit", cJSON_GetObjectItemCaseSensitive(line[best], "edit")->valuestring);
                cJSON_AddNumberToObject(sel, "reward", num_of(line[best], "reward"));
                cJSON_AddNumberToObject(sel, "baseline_reward", base_reward);
                cJSON_AddBoolToObject(sel, "accepted", 1);
                if (run_append_edit(s->run, sel, err)) { rc = -1; break; }
            }
            line[best] = NULL;
        }
    }
    free(line);
    return rc;
}

// The M-step data: accepted (prompt, edit) pairs of round k (and of earlier
// rounds with replay), loss on the edit and its end-of-turn token only (the
// domain's, else the policy's first eos).
static int mstep_examples(Seal *s, int round, Example **ex, int *n, char *err) {
    *ex = NULL;
    *n = 0;
    int eot = tok_find(s->tok, s->d->eot ? s->d->eot : "<|eot_id|>");
    if (eot < 0) eot = s->policy->c.eos[0];
    for (int i = 0; i < s->run->n_edits; i++) {
        const cJSON *e = s->run->edits[i];
        int r = cJSON_GetObjectItemCaseSensitive(e, "round")->valueint;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "accepted")) || (r != round && !(s->o->replay && r < round))) continue;
        int task = cJSON_GetObjectItemCaseSensitive(e, "task")->valueint;
        char *prompt = s->d->prompt(s->d, SPLIT_TRAIN, task);
        const char *edit = cJSON_GetObjectItemCaseSensitive(e, "edit")->valuestring;
        *ex = realloc(*ex, (*n + 1) * sizeof(Example));
        int rc = example_from_text(s->tok, prompt, edit, eot, 0, &(*ex)[*n], err);
        free(prompt);
        if (rc) return -1;
        (*n)++;
    }
    return 0;
}

// Trains round k's adapter (from the base policy) into *out. Returns 0 with
// *out NULL when there is nothing to train on.
static int mstep(Seal *s, int round, Lora **out, cJSON *metrics, char *err) {
    Example *ex;
    int n;
    *out = NULL;
    if (mstep_examples(s, round, &ex, &n, err)) return -1;
    cJSON_AddNumberToObject(metrics, "mstep_examples", n);
    if (!n) return 0;
    Lora *l = calloc(1, sizeof(Lora));
    if (lora_init(l, &s->policy->c, s->o->m_rank, s->o->m_alpha, s->o->m_targets)) { free(l); examples_free(ex, n); return errf(err, "out of memory for the M-step adapter"); }
    lora_reset(l, key_seed(s, "mstep", round, 0, 0, 0));
    SftOpts so = sft_defaults();
    so.lr = s->o->m_lr;
    so.epochs = s->o->m_epochs;
    so.batch = s->o->m_batch;
    so.seed = key_seed(s, "mstep-order", round, 0, 0, 0);
    SftStats st;
    model_attach_lora(s->policy, l);
    int rc = sft(s->policy, ex, n, &so, &st, err);
    model_attach_lora(s->policy, NULL);
    examples_free(ex, n);
    if (rc) { lora_free(l); free(l); return -1; }
    cJSON_AddNumberToObject(metrics, "mstep_steps", st.steps);
    cJSON_AddNumberToObject(metrics, "mstep_first_loss", st.first_loss);
    cJSON_AddNumberToObject(metrics, "mstep_last_loss", st.last_loss);
    cJSON_AddNumberToObject(metrics, "mstep_seconds", st.seconds);
    *out = l;
    return 0;
}

static void set_adapter(Seal *s, Lora *l) {
    if (s->adapter) { lora_free(s->adapter); free(s->adapter); }
    s->adapter = l;
    s->policy_version++;
}

// A completed round's policy: its adapter, or the base policy when it has none.
static int load_round_adapter(Seal *s, int k, const cJSON *metrics, char *err) {
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(metrics, "adapter"))) { set_adapter(s, NULL); return 0; }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rounds/%d", s->run->dir, k);
    Lora *l = calloc(1, sizeof(Lora));
    if (lora_load(l, &s->policy->c, dir, err)) { free(l); return -1; }
    set_adapter(s, l);
    return 0;
}

static cJSON *report_row(cJSON *rows, const char *method, double ours, double paper, int n) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "method", method);
    cJSON_AddNumberToObject(r, "ours", ours);
    if (isnan(paper)) cJSON_AddNullToObject(r, "paper"); else cJSON_AddNumberToObject(r, "paper", paper);
    cJSON_AddNumberToObject(r, "n", n);
    cJSON_AddItemToArray(rows, r);
    return r;
}

static int promote(Seal *s, int k, double probe, double probe0, char *err) {
    int ok = !(probe0 - probe > s->o->max_retention_drop);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", ok ? "promote" : "hold");
    cJSON_AddNumberToObject(ev, "round", k);
    cJSON_AddNumberToObject(ev, "probe", probe);
    cJSON_AddNumberToObject(ev, "probe_base", probe0);
    if (!ok && !s->o->quiet) fprintf(stderr, "\nround %d: probe score %.3f fell more than %.3f below the base policy's %.3f: not promoted (shadow)\n",
                     k, probe, s->o->max_retention_drop, probe0);
    if (run_log_event(s->run, ev, err)) return -1;
    return ok ? run_set_current(s->run, k, err) : 0;
}

// One round: E-step on the training tasks, M-step, held-out evaluation,
// retention check. Writes rounds/k/ and returns its eval score in *eval.
static int run_round(Seal *s, int k, double probe0, double *eval, char *err) {
    const Domain *d = s->d;
    const RestemOpts *o = s->o;
    double train = score_split(s, "train", k, SPLIT_TRAIN, d->n_train, o->samples, NULL, 0, err);
    if (isnan(train)) return -1;
    int selected = 0;
    if (o->best_per_task && select_best(s, k, &selected, err)) return -1;
    cJSON *metrics = cJSON_CreateObject();
    cJSON_AddNumberToObject(metrics, "round", k);
    cJSON_AddNumberToObject(metrics, "train_reward", train);
    if (o->best_per_task) cJSON_AddNumberToObject(metrics, "selected", selected);
    Lora *l;
    if (mstep(s, k, &l, metrics, err)) { cJSON_Delete(metrics); return -1; }
    if (l) set_adapter(s, l);
    else {   // nothing passed the filter: the previous policy carries over
        if (!o->quiet) fprintf(stderr, "\nround %d: no self-edit passed the filter; the policy is unchanged\n", k);
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "event", "mstep-skipped");
        cJSON_AddNumberToObject(ev, "round", k);
        if (run_log_event(s->run, ev, err)) { cJSON_Delete(metrics); return -1; }
    }
    *eval = score_split(s, "eval", k, SPLIT_EVAL, d->n_eval, o->eval_samples, NULL, 0, err);
    double probe = score_split(s, "probe", k, SPLIT_PROBE, d->n_probe, 1, NULL, 1, err);
    if (isnan(*eval) || isnan(probe)) { cJSON_Delete(metrics); return -1; }
    cJSON_AddNumberToObject(metrics, "eval_success", *eval);
    cJSON_AddNumberToObject(metrics, "probe", probe);
    cJSON_AddBoolToObject(metrics, "adapter", s->adapter != NULL);
    int rc = run_save_round(s->run, k, s->adapter, metrics, err);
    cJSON_Delete(metrics);
    return rc ? -1 : promote(s, k, probe, probe0, err);
}

// ----------------------------------------------------------------------------
// Several ranks (mpirun, ranks.h). Rank 0 runs seal_rounds; every batch it
// scores begins with a header to the workers and, when the policy changed,
// the new adapter. The workers serve batch after batch.

// What every rank must hold alike: the models, the tasks and the options.
static uint64_t setup_hash(const Seal *s) {
    uint64_t h = mix(table_hash(&s->policy->params), table_hash(&s->student->params));
    const int n[3] = {s->d->n_train, s->d->n_eval, s->d->n_probe};
    for (int split = 0; split < 3; split++)
        for (int t = 0; t < n[split]; t++) {
            char *p = s->d->prompt(s->d, split, t);
            h = mix(h, text_hash(p));
            free(p);
        }
    cJSON *o = cJSON_CreateObject();
    restem_opts_json(s->o, o);
    char *text = cJSON_PrintUnformatted(o);
    h = mix(h, text_hash(text));
    free(text);
    cJSON_Delete(o);
    return h;
}

// Rank 0, when there are workers: the batch's header to every rank, then the
// policy when it changed since they last got it.
static int share_batch(Seal *s, const Batch *b, char *err) {
    if (ranks_size() == 1) return 0;
    const int send_policy = s->policy_version != s->sent_version;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "phase", b->phase);
    cJSON_AddNumberToObject(h, "round", b->round);
    cJSON_AddNumberToObject(h, "split", b->split);
    cJSON_AddBoolToObject(h, "no_edit", b->no_edit);
    if (b->fixed) cJSON_AddStringToObject(h, "fixed", b->fixed);
    add_hex(h, "setup", s->setup);
    cJSON_AddBoolToObject(h, "policy", send_policy);
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    int rc = ranks_bcast_text(&text, err) || (send_policy && ranks_bcast_lora(&s->adapter, &s->policy->c, err));
    free(text);
    if (!rc) s->sent_version = s->policy_version;
    return rc;
}

// A worker rank: scores the pairs rank 0 hands out, batch after batch, with
// the policy rank 0 sends, until rank 0 sends an empty header.
static int serve(Seal *s, char *err) {
    for (;;) {
        char *text = NULL;
        if (ranks_bcast_text(&text, err)) return -1;
        cJSON *h = cJSON_Parse(text);
        free(text);
        const cJSON *phase = cJSON_GetObjectItemCaseSensitive(h, "phase"), *setup = cJSON_GetObjectItemCaseSensitive(h, "setup"),
                    *fixed = cJSON_GetObjectItemCaseSensitive(h, "fixed");
        if (!cJSON_IsString(phase)) { cJSON_Delete(h); return 0; }   // rank 0 is done
        char mine[20];
        snprintf(mine, sizeof mine, "%016llx", (unsigned long long)s->setup);
        if (!cJSON_IsString(setup) || strcmp(setup->valuestring, mine)) {
            cJSON_Delete(h);
            return errf(err, "rank %d: its models, tasks or options differ from rank 0's (every rank must read the same files and flags)", ranks_rank());
        }
        int rc = 0;
        if (is_true(h, "policy")) {
            Lora *l = NULL;
            if (!(rc = ranks_bcast_lora(&l, &s->policy->c, err))) set_adapter(s, l);
        }
        Batch b = {s, phase->valuestring, (int)num_of(h, "round"), (int)num_of(h, "split"), is_true(h, "no_edit"),
                   cJSON_IsString(fixed) ? fixed->valuestring : NULL};
        if (!rc) rc = ranks_serve(score_pair, &b, err);
        cJSON_Delete(h);
        if (rc) return -1;
    }
}

// ----------------------------------------------------------------------------

// Rank 0's part (all of it without workers): round 0, then the rounds.
static int seal_rounds(Seal *s, cJSON *report, char *err) {
    const Domain *d = s->d;
    const RestemOpts *o = s->o;
    // Round 0: the base policy. No adaptation, untrained self-edits, the oracle.
    double none = score_split(s, "baseline", 0, SPLIT_EVAL, d->n_eval, 1, NULL, 1, err);
    double untrained = isnan(none) ? NAN : score_split(s, "eval", 0, SPLIT_EVAL, d->n_eval, o->eval_samples, NULL, 0, err);
    double oracle = isnan(untrained) || !d->oracle_edit ? untrained : score_split(s, "oracle", 0, SPLIT_EVAL, d->n_eval, 1, d->oracle_edit, 0, err);
    double probe0 = isnan(oracle) ? NAN : score_split(s, "probe", 0, SPLIT_PROBE, d->n_probe, 1, NULL, 1, err);
    if (isnan(probe0)) return -1;
    cJSON *rows = cJSON_AddArrayToObject(report, "rows");
    cJSON_AddStringToObject(report, "domain", d->name);
    report_row(rows, "in-context only, no adaptation", none, d->paper[0], d->n_eval);
    report_row(rows, "self-edits from the untrained policy", untrained, d->paper[1], d->n_eval * o->eval_samples);
    int rc = 0;
    for (int k = 1; k <= o->rounds && !rc; k++) {
        double eval;
        cJSON *done = run_round_metrics(s->run->dir, k);
        if (done) {   // resumed: this round is complete on disk
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(done, "eval_success");   // a hand-edited file may lack it
            rc = cJSON_IsNumber(ev) ? load_round_adapter(s, k, done, err)
                                    : errf(err, "%s/rounds/%d/metrics.json: no \"eval_success\" number", s->run->dir, k);
            eval = cJSON_IsNumber(ev) ? ev->valuedouble : NAN;
            cJSON_Delete(done);
        } else rc = run_round(s, k, probe0, &eval, err);
        char name[64];
        snprintf(name, sizeof name, "SEAL, round %d", k);
        if (!rc) report_row(rows, name, eval, k == 1 ? d->paper[2] : NAN, d->n_eval * o->eval_samples);
    }
    if (d->oracle_edit) report_row(rows, "oracle configuration", oracle, d->paper[3], d->n_eval);
    if (!o->quiet) fprintf(stderr, "\n");
    return rc;
}

int restem_run(const Domain *d, Model *policy, Model *student, const Tokenizer *tok, Run *run,
               const RestemOpts *o, cJSON *report, char *err) {
    Seal s = {.d = d, .policy = policy, .student = student, .tok = tok, .run = run, .o = o, .t_start = now_seconds()};
    s.total = d->n_eval * (2 + o->eval_samples) + d->n_probe +
              o->rounds * (d->n_train * o->samples + d->n_eval * o->eval_samples + d->n_probe) + (o->best_per_task ? d->n_train : 0);
    if (ranks_size() > 1) s.setup = setup_hash(&s);
    int rc = ranks_root() ? seal_rounds(&s, report, err) : serve(&s, err);
    if (ranks_root() && ranks_size() > 1) {   // an empty header: the workers are done
        char none[1] = "", *bye = none, why[ERR_MAX];
        ranks_bcast_text(&bye, why);
    }
    set_adapter(&s, NULL);
    return rc;
}

void restem_report_markdown(const cJSON *report, FILE *out) {
    fprintf(out, "| method | ours | paper | n |\n|---|---|---|---|\n");
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(report, "rows")) {
        const cJSON *paper = cJSON_GetObjectItemCaseSensitive(r, "paper");
        char p[32] = "-";
        if (cJSON_IsNumber(paper)) snprintf(p, sizeof p, "%.1f%%", 100 * paper->valuedouble);
        fprintf(out, "| %s | %.1f%% | %s | %d |\n", cJSON_GetObjectItemCaseSensitive(r, "method")->valuestring,
                100 * cJSON_GetObjectItemCaseSensitive(r, "ours")->valuedouble, p, cJSON_GetObjectItemCaseSensitive(r, "n")->valueint);
    }
}
