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
// Every sampled self-edit is a line in RUN/edits.jsonl, written as soon as it
// is scored, keyed by (phase, round, task, sample). Seeds derive from those
// keys, so a resumed run repeats exactly what an uninterrupted one would do.
#include "restem.h"
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

static void progress(Seal *s, const char *phase, int round, int task, int sample, float reward) {
    s->done++;
    if (s->o->quiet) return;
    double el = now_seconds() - s->t_start, per = el / s->done;
    int left = s->total - s->done;
    fprintf(stderr, "\r[%s round %d] task %d sample %d reward %.2f | %.1f s/edit, ~%.0f s left   ", phase, round, task, sample,
            reward, per, left > 0 ? per * left : 0.0);
    fflush(stderr);
}

// One self-edit: sampled (or given, or none), applied, rewarded and logged.
// Returns the logged line (owned by the run), or NULL with err.
static const cJSON *score_sample(Seal *s, const char *phase, int round, int split, int task, int sample, const char *fixed, int no_edit, char *err) {
    const cJSON *done = run_find_edit(s->run, phase, round, task, sample);
    if (done) return done;   // resumed: already scored
    char *prompt = s->d->prompt(s->d, split, task);
    const int policy_edits = !fixed && !no_edit, probe = !strcmp(phase, "probe");
    for (int attempt = run_attempts(s->run, phase, round, task, sample);; attempt++) {
        uint64_t seed = key_seed(s, phase, round, task, sample, attempt);
        double t0 = now_seconds();
        char *edit = policy_edits ? draw_edit(s, prompt, seed, err) : fixed ? strdup(fixed) : NULL;
        if (policy_edits && !edit) { free(prompt); return NULL; }
        double t_sample = now_seconds() - t0;
        Outcome out = {0};
        // the probe scores the policy itself (with its adapter); the rest, the student
        Model *student = probe ? s->policy : s->student;
        if (probe) model_attach_lora(s->policy, s->adapter);
        int rc = s->d->evaluate(s->d, student, split, task, edit, seed, &out, err);
        if (probe) model_attach_lora(s->policy, NULL);
        if (rc) { free(edit); free(prompt); cJSON_Delete(out.metrics); return NULL; }
        int final = out.valid || !policy_edits || attempt + 1 >= s->o->max_attempts;
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "phase", phase);
        cJSON_AddNumberToObject(line, "round", round);
        cJSON_AddNumberToObject(line, "task", task);
        cJSON_AddStringToObject(line, "task_id", s->d->task_name(s->d, split, task));
        cJSON_AddNumberToObject(line, "sample", sample);
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
        int accepted = !s->o->best_per_task && final && !strcmp(phase, "train") && out.valid && out.trained && out.reward >= s->o->threshold &&
                       accepted_so_far(s->run, round, task) < s->o->keep_per_task;
        cJSON_AddBoolToObject(line, "accepted", accepted);
        cJSON_AddItemToObject(line, "metrics", out.metrics ? out.metrics : cJSON_CreateObject());
        add_hex(line, "policy_hash", s->adapter ? table_hash(&s->adapter->params) : 0);
        cJSON_AddNumberToObject(line, "seconds_sample", t_sample);
        cJSON_AddNumberToObject(line, "seconds_total", now_seconds() - t0);
        free(edit);
        if (run_append_edit(s->run, line, err)) { free(prompt); return NULL; }
        if (final) {
            free(prompt);
            progress(s, phase, round, task, sample, out.reward);
            return s->run->edits[s->run->n_edits - 1];
        }
    }
}

// Mean reward of `samples` self-edits per task of a split (fixed: one given
// edit; no_edit: the student as it is). NAN on error.
static double score_split(Seal *s, const char *phase, int round, int split, int n_tasks, int samples, const char *fixed, int no_edit, char *err) {
    double sum = 0;
    for (int t = 0; t < n_tasks; t++)
        for (int k = 0; k < samples; k++) {
            const cJSON *e = score_sample(s, phase, round, split, t, k, fixed, no_edit, err);
            if (!e) return NAN;
            sum += cJSON_GetObjectItemCaseSensitive(e, "reward")->valuedouble;
        }
    return n_tasks > 0 && samples > 0 ? sum / (n_tasks * samples) : 0.0;
}

static double num_of(const cJSON *e, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(e, key)->valuedouble;
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
    for (int t = 0; t < s->d->n_train && !rc; t++) {
        const cJSON *base = score_sample(s, "train-baseline", 0, SPLIT_TRAIN, t, 0, NULL, 1, err);
        if (!base) { rc = -1; break; }
        double base_reward = num_of(base, "reward");
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

int restem_run(const Domain *d, Model *policy, Model *student, const Tokenizer *tok, Run *run,
               const RestemOpts *o, cJSON *report, char *err) {
    Seal s = {.d = d, .policy = policy, .student = student, .tok = tok, .run = run, .o = o, .t_start = now_seconds()};
    s.total = d->n_eval * (2 + o->eval_samples) + d->n_probe +
              o->rounds * (d->n_train * o->samples + d->n_eval * o->eval_samples + d->n_probe) + (o->best_per_task ? d->n_train : 0);
    // Round 0: the base policy. No adaptation, untrained self-edits, the oracle.
    double none = score_split(&s, "baseline", 0, SPLIT_EVAL, d->n_eval, 1, NULL, 1, err);
    double untrained = isnan(none) ? NAN : score_split(&s, "eval", 0, SPLIT_EVAL, d->n_eval, o->eval_samples, NULL, 0, err);
    double oracle = isnan(untrained) || !d->oracle_edit ? untrained : score_split(&s, "oracle", 0, SPLIT_EVAL, d->n_eval, 1, d->oracle_edit, 0, err);
    double probe0 = isnan(oracle) ? NAN : score_split(&s, "probe", 0, SPLIT_PROBE, d->n_probe, 1, NULL, 1, err);
    if (isnan(probe0)) return -1;
    cJSON *rows = cJSON_AddArrayToObject(report, "rows");
    cJSON_AddStringToObject(report, "domain", d->name);
    report_row(rows, "in-context only, no adaptation", none, d->paper[0], d->n_eval);
    report_row(rows, "self-edits from the untrained policy", untrained, d->paper[1], d->n_eval * o->eval_samples);
    int rc = 0;
    for (int k = 1; k <= o->rounds && !rc; k++) {
        double eval;
        cJSON *done = run_round_metrics(run->dir, k);
        if (done) {   // resumed: this round is complete on disk
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(done, "eval_success");   // a hand-edited file may lack it
            rc = cJSON_IsNumber(ev) ? load_round_adapter(&s, k, done, err)
                                    : errf(err, "%s/rounds/%d/metrics.json: no \"eval_success\" number", run->dir, k);
            eval = cJSON_IsNumber(ev) ? ev->valuedouble : NAN;
            cJSON_Delete(done);
        } else rc = run_round(&s, k, probe0, &eval, err);
        char name[64];
        snprintf(name, sizeof name, "SEAL, round %d", k);
        if (!rc) report_row(rows, name, eval, k == 1 ? d->paper[2] : NAN, d->n_eval * o->eval_samples);
    }
    if (d->oracle_edit) report_row(rows, "oracle configuration", oracle, d->paper[3], d->n_eval);
    if (!o->quiet) fprintf(stderr, "\n");
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
