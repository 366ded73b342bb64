// restem.c: SEAL's outer loop (Singh et al.'s ReST^EM, as SEAL uses it).
//
//   round 0  the base policy: held-out score with no adaptation, with its own
//            (untrained) self-edits, and with the domain's oracle self-edit;
//            the retention probe's score, the bar every later policy is held to
//   for round k = 1..R:
//     E-step   for each training task, sample K self-edits from the policy;
//              apply each to the student (inner loop) and reward it. An
//              invalid self-edit is drawn again, so K self-edits take up to
//              K x max_attempts draws; only the last attempt counts
//     filter   keep a task's self-edits that are valid, trained and rewarded
//              at least the threshold: its first keep_per_task by sample
//              index, or (best_per_task) its keep_per_task best that also beat
//              the task's no-edit reward
//     M-step   a fresh LoRA on the base policy (m_from_previous: round k-1's
//              adapter, trained further), trained on the kept (prompt,
//              self-edit) pairs of round k (with replay: of rounds 1..k), loss
//              on the self-edit tokens only; with nothing kept the policy
//              stays what it was. With train_stride each round's E-step
//              draws the next train_per_round training tasks
//     evaluate the new policy on held-out tasks, and on the retention probe
//     promote  when its probe score is at most max_retention_drop below the
//              base policy's, the new policy becomes RUN/current. Otherwise it
//              is held in shadow: it still writes round k+1's self-edits (it
//              is the policy being learned), but RUN/current stays at the last
//              promoted round until a later round's policy passes the probe
//
// The bar is the base policy's probe score, not the last promoted one's, so
// forgetting cannot creep in a little at a time over many rounds.
//
// Every sampled self-edit is a line in RUN/edits.jsonl, keyed by (phase,
// round, task, sample), written as soon as it and the pairs before it in its
// batch are scored. Seeds derive from those keys, never from which process
// did the work, and the filter and the M-step read the log by key, never by
// position, so a resumed run repeats exactly what an uninterrupted one would
// do, and under `mpirun -n K` (ranks.h: the pairs of each batch go to
// whichever rank is free; rank 0 records them in order, runs the filter and
// the M-step, and sends the new policy to every rank) the run directory is
// the same for any K.
//
// Reading order: score_pair (one self-edit: sample, apply, reward), the
// filter (passes_filter; select_best with best_per_task), score_phase (a
// phase's pairs, over the ranks), mstep, run_round, seal_rounds. A self-edit
// is an Edit (run.h); run.c keeps the log, ranks.c shares the work.
#include "restem.h"
#include "ranks.h"
#include "train.h"
#include "util.h"
#include "weights.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The state of one run: the models, what has been logged, the current policy adapter.
typedef struct {
    const Domain *d;
    Model *policy, *student;
    const Tokenizer *tok;
    Run *run;
    const RestemOpts *o;
    Lora *adapter;                // the policy's trained part; NULL = the base policy
    int merged;                   // merge_policy: the adapter is in the student's weights now
    float **saved;                // then: the base weights it replaced, per (layer, projection)
    int policy_version;           // counts the adapter's changes
    int sent_version;             // the version the worker ranks hold (rank 0)
    uint64_t setup;               // setup_hash, with several ranks
    double t_start;
    int done;                     // samples scored this session, for the ETA
    double total;                 // of all there are (a double: the flags' product may pass INT_MAX)
    struct {                      // a task's first draws, sampled as one batch (score_pair)
        int phase, round, task, policy_version, n;
        char **text;              // text[k]: sample k's attempt 0, until score_pair takes it
        double seconds;           // the batch's sampling time, per self-edit
    } drawn;
} Seal;

// What each phase scores: which of the domain's tasks, and what the student
// gets before it answers: nothing, a self-edit drawn from the policy, or the
// domain's oracle self-edit. The probe asks the policy itself (with its adapter).
enum { APPLY_NOTHING, APPLY_POLICY_EDIT, APPLY_ORACLE_EDIT };
static const struct { int split, apply; } PHASE_DOES[N_PHASES] = {   // the phases restem does not score: zeros, APPLY_NOTHING
    [PHASE_BASELINE] = {SPLIT_EVAL, APPLY_NOTHING},     [PHASE_EVAL] = {SPLIT_EVAL, APPLY_POLICY_EDIT},
    [PHASE_ORACLE] = {SPLIT_EVAL, APPLY_ORACLE_EDIT},   [PHASE_PROBE] = {SPLIT_PROBE, APPLY_NOTHING},
    [PHASE_TRAIN] = {SPLIT_TRAIN, APPLY_POLICY_EDIT},   [PHASE_TRAIN_BASELINE] = {SPLIT_TRAIN, APPLY_NOTHING},
};

static int n_tasks(const Seal *s, Phase p) {
    const int split = PHASE_DOES[p].split;
    if (split == SPLIT_TRAIN) return s->o->train_per_round > 0 && s->o->train_per_round < s->d->n_train ? s->o->train_per_round : s->d->n_train;
    return split == SPLIT_EVAL ? s->d->n_eval : s->d->n_probe;
}

// The domain's index of a phase's t-th task in round k: training tasks move on
// by train_stride a round (a fresh set, wrapping around n_train), others stay.
static int task_of(const Seal *s, Phase p, int round, int t) {
    if (PHASE_DOES[p].split != SPLIT_TRAIN || s->o->train_stride <= 0 || round < 1) return t;
    return (int)(((int64_t)(round - 1) * s->o->train_stride + t) % s->d->n_train);
}

static int n_samples(const Seal *s, Phase p) {
    return p == PHASE_TRAIN ? s->o->samples : p == PHASE_EVAL ? s->o->eval_samples : 1;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

// Every random choice of a self-edit comes from its key, never from which
// process did the work or when.
static uint64_t key_seed(const Seal *s, const char *what, int round, int task, int sample, int attempt) {
    uint64_t h = mix(s->o->seed, hash_str(what));
    return mix(mix(mix(mix(h, round), task), sample), attempt);
}

// merge_policy, when the policy is the student: in the phases that adapt or
// probe the policy, the student is the policy with its adapter merged into the
// weights (W += s B A), as SEAL's BC-self-edit.py merges the M-step LoRA and
// the next step's test-time training runs on that model. The base weights are
// copied first and copied back (exactly) for the other phases and the M-step.
// The student's compact copies (weights.h) stay through it: while merged its
// KV cache reads each adapted copy plus the adapter's term (lora_merge), and
// once the weights are back each copy is exact for them again.
static void student_restore(Seal *s) {
    if (!s->merged) return;
    Model *m = s->student;
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const Linear *x = &m->layers[l].proj[p];
            if (s->saved[l * N_PROJ + p]) memcpy(x->w, s->saved[l * N_PROJ + p], (size_t)x->out * x->in * sizeof(float));
        }
    model_compact_restore(m);
    s->merged = 0;
    be_forget(s->d->be, s->student);
}

static void student_merge(Seal *s) {
    if (s->merged || !s->adapter) return;
    Model *m = s->student;
    if (!s->saved) s->saved = xcalloc((size_t)m->c.n_layers * N_PROJ, sizeof(float *));
    for (int l = 0; l < m->c.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const Linear *x = &m->layers[l].proj[p];
            float **keep = &s->saved[l * N_PROJ + p];
            if (!(s->adapter->targets >> p & 1)) continue;
            if (!*keep) *keep = xmalloc((size_t)x->out * x->in * sizeof(float));
            memcpy(*keep, x->w, (size_t)x->out * x->in * sizeof(float));
        }
    lora_merge(m, s->adapter, 1.0f);
    s->merged = 1;
    be_forget(s->d->be, s->student);
}

// The student as a phase needs it: merged in the phases that use the policy.
static void student_for(Seal *s, Phase p) {
    if (s->o->merge_policy && s->policy == s->student && (p == PHASE_TRAIN || p == PHASE_EVAL || p == PHASE_PROBE)) student_merge(s);
    else student_restore(s);
}

// What to attach to the policy to get it: nothing when it is merged in.
static Lora *policy_lora(const Seal *s) { return s->merged ? NULL : s->adapter; }

static void set_adapter(Seal *s, Lora *l) {
    student_restore(s);
    if (s->adapter) { lora_free(s->adapter); free(s->adapter); }
    s->adapter = l;
    s->policy_version++;
}

static void report_progress(Seal *s, const Edit *e) {
    s->done++;
    if (s->o->quiet) return;
    double el = now_seconds() - s->t_start, per = el / s->done;
    double left = s->total - s->done;
    progress(0, "[%s round %d] task %d sample %d reward %.2f | %.1f s/edit, ~%.0f s left", PHASE_NAME[e->phase], e->round, e->task,
             e->sample, e->reward, per, left > 0 ? per * left : 0.0);
}

// ----------------------------------------------------------------------------
// E-step: sample a self-edit, apply it, reward it.

// A batch: the (task, sample) pairs of one phase of one round that the log
// does not hold yet. Any rank may score a pair (score_pair); rank 0 records
// them in the batch's order (record_pair), so the log is the same for any
// number of ranks (ranks.h).
typedef struct {
    Seal *s;
    Phase phase;
    int round;
} Batch;

// Samples B self-edits for a prompt from the policy (with its adapter) as one
// batch, self-edit b from seeds[b], into texts[b] (malloc'd).
static int draw_edits(Seal *s, const char *prompt, const uint64_t *seeds, int B, char **texts, char *err) {
    int *ids, n = tok_encode(s->tok, prompt, strlen(prompt), 1, &ids, err);
    if (n < 0) return -1;
    SampleOpts so = s->o->sampling;
    so.seeds = seeds;
    const int **prompts = xcalloc((size_t)B, sizeof *prompts), **outs = xcalloc((size_t)B, sizeof *outs);
    int *lens = xcalloc((size_t)B, sizeof(int)), *out_lens = xcalloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++) prompts[b] = ids, lens[b] = n;
    int stop[9], n_stop = 0, has = 0;
    for (int i = 0; i < s->policy->c.n_eos && n_stop < 8; i++) stop[n_stop++] = s->policy->c.eos[i];
    const int eot = s->d->eot ? tok_find(s->tok, s->d->eot) : -1;   // the chat's end of turn, when the eos ids lack it
    for (int i = 0; i < n_stop; i++) has |= stop[i] == eot;
    if (eot >= 0 && !has) stop[n_stop++] = eot;
    model_attach_lora(s->policy, policy_lora(s));
    int rc = be_generate(s->d->be, s->policy, prompts, lens, B, &so, stop, n_stop, NULL, NULL, (int **)outs, out_lens, err);
    model_attach_lora(s->policy, NULL);
    for (int b = 0; b < B; b++) {
        int len = out_lens[b];
        for (int i = 0; len > 0 && i < n_stop; i++)   // the stop token is not part of the edit
            if (outs[b][len - 1] == stop[i]) { len--; break; }
        size_t bytes;
        texts[b] = rc ? NULL : tok_decode(s->tok, outs[b], len, &bytes, err);
        if (!texts[b]) rc = -1;
        free((int *)outs[b]);
    }
    free(ids); free(prompts); free(outs); free(lens); free(out_lens);
    return rc;
}

static void drawn_clear(Seal *s) {
    for (int k = 0; k < s->drawn.n; k++) free(s->drawn.text[k]);
    free(s->drawn.text);
    s->drawn.text = NULL;
    s->drawn.n = 0;
}

// Attempt `attempt` of sample k's self-edit for a task. The first attempts of
// all the task's samples are drawn together, one batch that decodes them side
// by side, on the first call for the task; a redraw (attempt > 0) is drawn
// alone. Each sequence has its own seed and stream (generate.h), so a
// self-edit is the same whichever rank draws it, and however resumed.
static char *draw_edit(Seal *s, const Batch *b, int task, int k, int attempt, const char *prompt, uint64_t seed, double *seconds, char *err) {
    char *text = NULL;
    double t0 = now_seconds();
    if (attempt > 0) {
        if (draw_edits(s, prompt, &seed, 1, &text, err)) return NULL;
        *seconds = now_seconds() - t0;
        return text;
    }
    const int K = n_samples(s, b->phase);
    if (s->drawn.phase != (int)b->phase || s->drawn.round != b->round || s->drawn.task != task || s->drawn.policy_version != s->policy_version ||
        s->drawn.n != K || !s->drawn.text[k]) {
        drawn_clear(s);
        uint64_t *seeds = xcalloc((size_t)K, sizeof *seeds);
        for (int j = 0; j < K; j++) seeds[j] = key_seed(s, PHASE_NAME[b->phase], b->round, task, j, 0);
        s->drawn.text = xcalloc((size_t)K, sizeof(char *));
        int rc = draw_edits(s, prompt, seeds, K, s->drawn.text, err);
        free(seeds);
        if (rc) { drawn_clear(s); return NULL; }
        s->drawn.phase = b->phase, s->drawn.round = b->round, s->drawn.task = task, s->drawn.policy_version = s->policy_version, s->drawn.n = K;
        s->drawn.seconds = (now_seconds() - t0) / K;
    }
    text = s->drawn.text[k];
    s->drawn.text[k] = NULL;
    *seconds = s->drawn.seconds;
    return text;
}

void edit_take_outcome(Edit *e, const Outcome *o) {
    e->valid = o->valid;
    e->trained = o->trained;
    e->reward = o->reward;
    memcpy(e->why, o->why, sizeof e->why);
    e->metrics = o->metrics;
}

int domain_evaluate(const Domain *d, Model *student, int split, int task, const char *edit, uint64_t seed, Outcome *out, char *err) {
    return d->evaluate_many(d, student, split, 1, &task, &edit, &seed, out, err);
}

// The domain's inner loop and reward for n tasks (edit NULL: no adaptation), together.
static int rewards(Seal *s, Phase phase, int n, const int *task, char *const *edit, const uint64_t *seed, Outcome *out, char *err) {
    Model *m = phase == PHASE_PROBE ? s->policy : s->student;
    const int split = phase == PHASE_PROBE ? SPLIT_PROBE : PHASE_DOES[phase].split;
    if (phase == PHASE_PROBE) model_attach_lora(s->policy, policy_lora(s));
    int rc = s->d->evaluate_many(s->d, m, split, n, task, (const char *const *)edit, seed, out, err);
    if (phase == PHASE_PROBE) model_attach_lora(s->policy, NULL);
    return rc;
}

// Up to MAX_ADAPTERS self-edits (jobs), each from attempt job->attempt until an
// attempt counts: a policy self-edit that is invalid is drawn again, up to
// max_attempts draws. Each attempt becomes an Edit in out[j]. The self-edits
// pending at each attempt are rewarded together (adapters_at_once).
static int score_pairs(const Batch *b, const RankJob *jobs, int n, Edits *out, char *err) {
    Seal *s = b->s;
    const int apply = PHASE_DOES[b->phase].apply, split = PHASE_DOES[b->phase].split;
    const uint64_t policy_hash = s->adapter ? table_hash(&s->adapter->params) : 0;
    char *prompt[MAX_ADAPTERS], *edit[MAX_ADAPTERS];
    int attempt[MAX_ADAPTERS], done[MAX_ADAPTERS], task[MAX_ADAPTERS], which[MAX_ADAPTERS], rc = 0, left = n;
    uint64_t seed[MAX_ADAPTERS];
    Edit e[MAX_ADAPTERS];
    Outcome o[MAX_ADAPTERS];
    student_for(s, b->phase);
    for (int j = 0; j < n; j++) {
        prompt[j] = s->d->prompt(s->d, split, jobs[j].task);
        attempt[j] = jobs[j].attempt;
        done[j] = s->d->counted_wrong && b->phase != PHASE_PROBE && s->d->counted_wrong(s->d, split, jobs[j].task, apply == APPLY_ORACLE_EDIT, NULL);
        if (!done[j]) continue;
        left--;
        Edit w = {.phase = b->phase, .round = b->round, .task = jobs[j].task, .sample = jobs[j].sample, .attempt = attempt[j], .final = 1,
                  .seed = key_seed(s, PHASE_NAME[b->phase], b->round, jobs[j].task, jobs[j].sample, attempt[j]), .prompt_hash = hash_str(prompt[j]),
                  .policy_hash = policy_hash, .task_id = xstrdup(s->d->task_name(s->d, split, jobs[j].task))};
        s->d->counted_wrong(s->d, split, jobs[j].task, apply == APPLY_ORACLE_EDIT, w.why);   // no self-edit, no answer: reward 0
        edits_push(&out[j], &w);
    }
    while (left && !rc) {
        int m = 0;
        double t0 = now_seconds();
        for (int j = 0; j < n && !rc; j++) {   // this attempt's self-edit of each pair still open
            if (done[j]) continue;
            const RankJob *job = &jobs[j];
            e[m] = (Edit){.phase = b->phase, .round = b->round, .task = job->task, .sample = job->sample, .attempt = attempt[j],
                          .seed = key_seed(s, PHASE_NAME[b->phase], b->round, job->task, job->sample, attempt[j]), .prompt_hash = hash_str(prompt[j]),
                          .policy_hash = policy_hash};
            edit[m] = apply == APPLY_POLICY_EDIT ? draw_edit(s, b, job->task, job->sample, attempt[j], prompt[j], e[m].seed, &e[m].seconds_sample, err)
                    : apply == APPLY_ORACLE_EDIT ? xstrdup(s->d->oracle_edit) : NULL;
            if (apply == APPLY_POLICY_EDIT && !edit[m]) { rc = -1; break; }
            o[m] = (Outcome){0};
            task[m] = job->task, seed[m] = e[m].seed, which[m++] = j;
        }
        if (!rc) rc = rewards(s, b->phase, m, task, edit, seed, o, err);
        for (int i = 0; i < m; i++) {
            const int j = which[i];
            if (!rc) {
                e[i].final = done[j] = o[i].valid || apply != APPLY_POLICY_EDIT || attempt[j] + 1 >= s->o->max_attempts;
                e[i].task_id = xstrdup(s->d->task_name(s->d, split, jobs[j].task));
                e[i].edit = edit[i] ? utf8_sanitize(edit[i]) : NULL;   // model output may hold invalid UTF-8; the log stays JSON
                edit_take_outcome(&e[i], &o[i]);
                e[i].seconds_total = (now_seconds() - t0) / m;   // a share of the attempts scored together
                edits_push(&out[j], &e[i]);
                left -= done[j];
                attempt[j]++;
            } else cJSON_Delete(o[i].metrics);
            free(edit[i]);
        }
    }
    for (int j = 0; j < n; j++) free(prompt[j]);
    return rc;
}

// One self-edit (a RankWork: any rank).
static int score_pair(void *ctx, const RankJob *job, Edits *out, char *err) { return score_pairs(ctx, job, 1, out, err); }

static int record_pair(void *ctx, const RankJob *job, Edits *result, char *err);   // below

// A phase's pairs adapters_at_once at a time (one rank only), each group's
// recorded in job order as ranks_map records them.
static int score_groups(const Batch *b, const RankJob *jobs, int n, char *err) {
    const int K = b->s->o->adapters_at_once;
    int rc = 0;
    for (int i = 0; i < n && !rc; i += K) {
        const int g = n - i < K ? n - i : K;
        Edits out[MAX_ADAPTERS] = {0};
        rc = score_pairs(b, jobs + i, g, out, err);
        for (int j = 0; j < g; j++) {
            if (!rc) rc = record_pair((void *)b, &jobs[i + j], &out[j], err);
            edits_free(&out[j]);
        }
    }
    return rc;
}

// A self-edit worth learning from: valid, trained, rewarded at least the threshold.
// keep_untrained: trained or not (SEAL's BC-self-edit.py keeps every correct one).
static int rewarded(const Seal *s, const Edit *e) {
    return e && e->valid && (e->trained || s->o->keep_untrained) && e->edit && e->reward >= s->o->threshold;
}

// The threshold filter: a rewarded self-edit of a training task is kept when
// fewer than keep_per_task of its task's earlier samples (by sample index,
// whenever they were logged) were rewarded; keep_per_task 0: always.
static int passes_filter(const Seal *s, const Edit *e) {
    if (s->o->best_per_task || e->phase != PHASE_TRAIN || !e->final || !rewarded(s, e)) return 0;
    int before = 0;
    for (int k = 0; k < e->sample; k++) before += rewarded(s, run_find(s->run, PHASE_TRAIN, e->round, e->task, k));
    return s->o->keep_per_task <= 0 || before < s->o->keep_per_task;
}

// Rank 0: a pair's attempts into the log, each appended (fsync'd) whole.
static int record_pair(void *ctx, const RankJob *job, Edits *result, char *err) {
    const Batch *b = ctx;
    Seal *s = b->s;
    if (!result->n) return errf(err, "%s round %d task %d sample %d: no result", PHASE_NAME[b->phase], b->round, job->task, job->sample);
    for (int i = 0; i < result->n; i++) {
        Edit *e = &result->e[i];
        e->accepted = passes_filter(s, e);
        if (run_append(s->run, e, err)) return -1;
        const Edit *logged = s->run->edits[s->run->n_edits - 1];
        if (logged->final) report_progress(s, logged);
    }
    return 0;
}

static int share_batch(Seal *s, const Batch *b, char *err);   // with MPI workers, below

// Mean reward of a phase of a round over its tasks and samples; the pairs the
// log lacks are scored first, over the ranks. NAN on error.
// The training tasks' no-edit rewards are logged under round 0 (they do not
// change), whichever round's tasks they are scored for.
static double score_phase(Seal *s, Phase phase, int round, char *err) {
    const int tasks = n_tasks(s, phase), samples = n_samples(s, phase), key = phase == PHASE_TRAIN_BASELINE ? 0 : round;
    Batch b = {s, phase, key};
    if ((int64_t)tasks * samples > INT_MAX) { errf(err, "%d tasks x %d samples: more pairs than a phase can hold", tasks, samples); return NAN; }
    RankJob *jobs = xcalloc((size_t)tasks * samples + 1, sizeof(RankJob));
    int n = 0;
    for (int i = 0; i < tasks; i++) {
        const int t = task_of(s, phase, round, i);
        for (int k = 0; k < samples; k++)
            if (!run_find(s->run, phase, key, t, k)) jobs[n++] = (RankJob){t, k, run_attempts(s->run, phase, key, t, k)};
    }
    int rc = !n                           ? 0
             : s->o->adapters_at_once > 1 ? score_groups(&b, jobs, n, err)
                                          : share_batch(s, &b, err) || ranks_map(jobs, n, score_pair, record_pair, &b, err);
    free(jobs);
    if (rc) return NAN;
    double sum = 0;
    for (int i = 0; i < tasks; i++)
        for (int k = 0; k < samples; k++) sum += run_find(s->run, phase, key, task_of(s, phase, round, i), k)->reward;
    return tasks > 0 && samples > 0 ? sum / ((double)tasks * samples) : 0.0;
}

// best_per_task, instead of the threshold filter: a task's keep_per_task best
// self-edits of the round that reach the threshold and beat its no-edit reward
// (best_any: whatever that reward) (ties: the earlier sample) are copied into
// "select" lines, which the M-step reads as accepted pairs. The choice depends
// on the log alone, so resume repeats it.
static int select_best(Seal *s, int round, int *selected, char *err) {
    const int K = s->o->samples;
    const Edit **cand = xcalloc((size_t)K, sizeof *cand);
    int rc = 0;
    *selected = 0;
    if (!rc && !s->o->best_any && isnan(score_phase(s, PHASE_TRAIN_BASELINE, round, err))) rc = -1;   // each task's no-edit reward
    for (int i = 0; i < n_tasks(s, PHASE_TRAIN) && !rc; i++) {
        const int t = task_of(s, PHASE_TRAIN, round, i);
        const double base = s->o->best_any ? NAN : run_find(s->run, PHASE_TRAIN_BASELINE, 0, t, 0)->reward;
        for (int k = 0; k < K; k++) {
            const Edit *e = run_find(s->run, PHASE_TRAIN, round, t, k);
            cand[k] = rewarded(s, e) && (s->o->best_any || e->reward > base) ? e : NULL;
        }
        for (int rank = 0; s->o->keep_per_task <= 0 || rank < s->o->keep_per_task; rank++) {
            int best = -1;
            for (int k = 0; k < K; k++)
                if (cand[k] && (best < 0 || cand[k]->reward > cand[best]->reward)) best = k;
            if (best < 0) break;
            (*selected)++;
            if (!run_find(s->run, PHASE_SELECT, round, t, rank)) {
                Edit sel = {.phase = PHASE_SELECT, .round = round, .task = t, .task_id = xstrdup(s->d->task_name(s->d, SPLIT_TRAIN, t)),
                            .sample = rank, .final = 1, .from_sample = best, .edit = xstrdup(cand[best]->edit),
                            .reward = cand[best]->reward, .baseline_reward = base, .accepted = 1};
                if (run_append(s->run, &sel, err)) { rc = -1; break; }
            }
            cand[best] = NULL;
        }
    }
    free(cand);
    return rc;
}

// ----------------------------------------------------------------------------
// M-step: a fresh LoRA on the base policy, trained on the accepted pairs.

// The M-step data: the accepted (prompt, edit) pairs of round k (and of
// earlier rounds with replay) in the order of their keys, loss on the edit and
// its end-of-turn token only (the domain's, else the policy's first eos).
static int mstep_examples(Seal *s, int round, Example **ex, int *n, char *err) {
    *ex = NULL;
    *n = 0;
    int eot = tok_find(s->tok, s->d->eot ? s->d->eot : "<|eot_id|>");
    if (eot < 0) eot = s->policy->c.eos[0];
    const Phase kept = s->o->best_per_task ? PHASE_SELECT : PHASE_TRAIN;
    for (int r = s->o->replay ? 1 : round; r <= round; r++)
        for (int i = 0; i < n_tasks(s, PHASE_TRAIN); i++)
            for (int k = 0, t = task_of(s, PHASE_TRAIN, r, i); k < s->o->samples; k++) {
                const Edit *e = run_find(s->run, kept, r, t, k);
                if (!e || !e->accepted) continue;
                char *prompt = s->d->prompt(s->d, SPLIT_TRAIN, t);
                *ex = xrealloc(*ex, (size_t)*n + 1, sizeof(Example));
                int rc = example_from_text(s->tok, prompt, e->edit, eot, 0, &(*ex)[*n], err);
                free(prompt);
                if (rc) return -1;
                (*n)++;
            }
    return 0;
}

// Trains round k's adapter (from the base policy) into *out. Returns 0 with
// *out NULL when there is nothing to train on.
static int mstep(Seal *s, int round, Lora **out, Round *m, char *err) {
    Example *ex;
    int n;
    *out = NULL;
    student_restore(s);   // the M-step trains from the base policy
    if (mstep_examples(s, round, &ex, &n, err)) return -1;
    m->mstep_examples = n;
    if (!n) return 0;
    Lora *l = xcalloc(1, sizeof(Lora));
    if (lora_init(l, &s->policy->c, s->o->m_rank, s->o->m_alpha, s->o->m_targets)) {
        lora_free(l);
        free(l);
        examples_free(ex, n);
        return errf(err, "out of memory for the M-step adapter");
    }
    lora_reset(l, key_seed(s, "mstep", round, 0, 0, 0));
    if (s->o->m_from_previous && s->adapter && s->adapter->params.total == l->params.total)   // round k-1's policy, trained on
        memcpy(l->params.mem, s->adapter->params.mem, l->params.total * sizeof(float));
    SftOpts so = sft_defaults();
    so.lr = s->o->m_lr;
    so.epochs = s->o->m_epochs;
    so.batch = s->o->m_batch;
    so.seed = key_seed(s, "mstep-order", round, 0, 0, 0);
    SftStats st;
    model_attach_lora(s->policy, l);
    int rc = be_sft(s->d->be, s->policy, ex, n, &so, &st, err);
    model_attach_lora(s->policy, NULL);
    examples_free(ex, n);
    if (rc || st.diverged) { lora_free(l); free(l); l = NULL; }
    if (rc) return -1;
    m->mstep_steps = st.steps;
    m->mstep_first_loss = st.first_loss;
    m->mstep_last_loss = st.last_loss;
    m->mstep_seconds = st.seconds;
    m->mstep_diverged = st.diverged;
    *out = l;
    return 0;
}

// ----------------------------------------------------------------------------
// A round: E-step, filter, M-step, held-out evaluation, promotion.

// The retention guard: a policy whose probe score fell more than
// max_retention_drop below the base policy's is not promoted (shadow).
static int promote(Seal *s, int k, double probe, double probe0, char *err) {
    int ok = !(probe0 - probe > s->o->max_retention_drop);
    if (!ok && !s->o->quiet) progress_end(), fprintf(stderr, "round %d: probe score %.3f fell more than %.3f below the base policy's %.3f: not promoted; in shadow, "
                                     "it writes the next round's self-edits\n",
                     k, probe, s->o->max_retention_drop, probe0);
    if (run_log_event(s->run, ok ? "promote" : "hold", k, probe, probe0, err)) return -1;
    return ok ? run_set_current(s->run, k, err) : 0;
}

// Writes rounds/k/ and returns the round's held-out score in *eval.
static int run_round(Seal *s, int k, double probe0, double *eval, char *err) {
    const RestemOpts *o = s->o;
    Round m = {.round = k, .selected = -1};
    m.train_reward = score_phase(s, PHASE_TRAIN, k, err);   // E-step (and the threshold filter, as each is logged)
    if (isnan(m.train_reward)) return -1;
    if (o->best_per_task && select_best(s, k, &m.selected, err)) return -1;
    Lora *l;
    if (mstep(s, k, &l, &m, err)) return -1;
    if (l) set_adapter(s, l);
    else {   // nothing passed the filter, or the M-step diverged: the previous policy carries over
        if (!o->quiet) progress_end(), fprintf(stderr, "round %d: %s; the policy is unchanged\n", k,
                               m.mstep_diverged ? "the M-step's loss became NaN or Inf" : "no self-edit passed the filter");
        if (run_log_event(s->run, m.mstep_diverged ? "mstep-diverged" : "mstep-skipped", k, NAN, NAN, err)) return -1;
    }
    *eval = m.eval_success = score_phase(s, PHASE_EVAL, k, err);
    m.probe = score_phase(s, PHASE_PROBE, k, err);
    if (isnan(m.eval_success) || isnan(m.probe)) return -1;
    m.adapter = s->adapter != NULL;
    return run_save_round(s->run, &m, s->adapter, err) ? -1 : promote(s, k, m.probe, probe0, err);
}

// A round complete on disk (resume): its policy is its adapter, or the base
// policy when it has none.
static int load_round(Seal *s, const Round *m, char *err) {
    if (!m->adapter) { set_adapter(s, NULL); return 0; }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rounds/%d", s->run->dir, m->round);
    Lora *l = xcalloc(1, sizeof(Lora));
    if (lora_load(l, &s->policy->c, dir, err)) { free(l); return -1; }
    set_adapter(s, l);
    return 0;
}

static uint64_t setup_hash(const Seal *s);   // MPI workers, below
static int serve(Seal *s, char *err);
static void end_workers(void);

// ----------------------------------------------------------------------------
// How many draws the policy's self-edits took (an invalid one is drawn again,
// up to max_attempts draws): report "draws" {"self_edits", "draws", "most"}.
static void report_draws(const Seal *s, cJSON *report) {
    int edits = 0, draws = 0, most = 0;
    for (int i = 0; i < s->run->n_edits; i++) {
        const Edit *e = s->run->edits[i];
        if (PHASE_DOES[e->phase].apply != APPLY_POLICY_EDIT || !e->edit) continue;
        draws++;
        if (e->final) edits++, most = e->attempt + 1 > most ? e->attempt + 1 : most;
    }
    cJSON *j = cJSON_AddObjectToObject(report, "draws");
    cJSON_AddNumberToObject(j, "self_edits", edits);
    cJSON_AddNumberToObject(j, "draws", draws);
    cJSON_AddNumberToObject(j, "most", most);
    cJSON_AddNumberToObject(j, "max_attempts", s->o->max_attempts);
}

// The loop. Rank 0's part (all of it without workers): round 0, then the rounds.
static int seal_rounds(Seal *s, cJSON *report, char *err) {
    const Domain *d = s->d;
    const RestemOpts *o = s->o;
    // Round 0: the base policy. No adaptation, untrained self-edits, the oracle.
    double none = score_phase(s, PHASE_BASELINE, 0, err);
    double untrained = isnan(none) ? NAN : score_phase(s, PHASE_EVAL, 0, err);
    double oracle = isnan(untrained) || !d->oracle_edit ? untrained : score_phase(s, PHASE_ORACLE, 0, err);
    double probe0 = isnan(oracle) ? NAN : score_phase(s, PHASE_PROBE, 0, err);
    if (isnan(probe0)) return -1;
    cJSON *rows = cJSON_AddArrayToObject(report, "rows");
    cJSON_AddStringToObject(report, "domain", d->name);
    report_row(rows, "in-context only, no adaptation", none, d->paper[0], d->n_eval);
    report_row(rows, "self-edits from the untrained policy", untrained, d->paper[1], d->n_eval * o->eval_samples);
    int rc = 0;
    for (int k = 1; k <= o->rounds && !rc; k++) {
        double eval = NAN;
        Round done;
        int on_disk = run_load_round(s->run, k, &done, err);
        rc = on_disk < 0 ? -1 : on_disk ? (eval = done.eval_success, load_round(s, &done, err)) : run_round(s, k, probe0, &eval, err);
        char name[64];
        snprintf(name, sizeof name, "SEAL, round %d", k);
        if (!rc) report_row(rows, name, eval, k == 1 ? d->paper[2] : NAN, d->n_eval * o->eval_samples);
    }
    if (d->oracle_edit) report_row(rows, "oracle configuration", oracle, d->paper[3], d->n_eval);
    int diverged = 0;   // self-edits whose training diverged: not trained, reward 0
    for (int i = 0; i < s->run->n_edits; i++) diverged += s->run->edits[i]->final && !strncmp(s->run->edits[i]->why, SFT_DIVERGED, strlen(SFT_DIVERGED));
    if (diverged) cJSON_AddNumberToObject(report, "diverged", diverged);
    report_draws(s, report);
    if (!o->quiet) progress_end();
    return rc;
}

int restem_run(const Domain *d, Model *policy, Model *student, const Tokenizer *tok, Run *run,
               const RestemOpts *o, cJSON *report, char *err) {
    Seal s = {.d = d, .policy = policy, .student = student, .tok = tok, .run = run, .o = o, .t_start = now_seconds()};
    s.total = (double)d->n_eval * (2 + o->eval_samples) + d->n_probe +
              (double)o->rounds * ((double)n_tasks(&s, PHASE_TRAIN) * o->samples + (double)d->n_eval * o->eval_samples + d->n_probe) +
              (o->best_per_task && !o->best_any ? d->n_train : 0);
    if (ranks_size() > 1) s.setup = setup_hash(&s);
    int rc = ranks_root() ? seal_rounds(&s, report, err) : serve(&s, err);
    if (ranks_root()) end_workers();
    set_adapter(&s, NULL);   // the student's base weights back, when they were merged
    for (int i = 0; s.saved && i < student->c.n_layers * N_PROJ; i++) free(s.saved[i]);
    free(s.saved);
    drawn_clear(&s);
    return rc;
}

// ----------------------------------------------------------------------------
// Several ranks (mpirun, ranks.h). Rank 0 runs seal_rounds; every batch it
// scores begins with a header to the workers and, when the policy changed,
// the new adapter. The workers serve batch after batch.

typedef struct { int phase, round, send_policy; uint64_t setup; } BatchHead;   // phase -1: the run is over

// What every rank must hold alike: the models, the tasks and the options.
static uint64_t setup_hash(const Seal *s) {
    uint64_t h = mix(table_hash(&s->policy->params), table_hash(&s->student->params));
    const int n[3] = {s->d->n_train, s->d->n_eval, s->d->n_probe};
    for (int split = 0; split < 3; split++)
        for (int t = 0; t < n[split]; t++) {
            char *p = s->d->prompt(s->d, split, t);
            h = mix(h, hash_str(p));
            free(p);
        }
    if (s->d->oracle_edit) h = mix(h, hash_str(s->d->oracle_edit));
    cJSON *o = cJSON_CreateObject();
    restem_opts_json(s->o, o);
    char *text = cJSON_PrintUnformatted(o);
    h = mix(h, hash_str(text));
    free(text);
    cJSON_Delete(o);
    return h;
}

// Rank 0, when there are workers: the batch's header to every rank, then the
// policy when it changed since they last got it.
static int share_batch(Seal *s, const Batch *b, char *err) {
    if (ranks_size() == 1) return 0;
    BatchHead h = {b->phase, b->round, s->policy_version != s->sent_version, s->setup};
    ranks_bcast(&h, sizeof h);
    if (h.send_policy && ranks_bcast_lora(&s->adapter, &s->policy->c, err)) return -1;
    s->sent_version = s->policy_version;
    return 0;
}

// Rank 0: the run is over.
static void end_workers(void) {
    BatchHead end = {.phase = -1};
    if (ranks_size() > 1) ranks_bcast(&end, sizeof end);
}

// A worker rank: scores the pairs rank 0 hands out, batch after batch, with
// the policy rank 0 sends, until rank 0 says the run is over.
static int serve(Seal *s, char *err) {
    for (;;) {
        BatchHead h;
        ranks_bcast(&h, sizeof h);
        if (h.phase < 0) return 0;
        if (h.setup != s->setup)
            return errf(err, "rank %d: its models, tasks or options differ from rank 0's (every rank must read the same files and flags)", ranks_rank());
        if (h.send_policy) {
            Lora *l = NULL;
            if (ranks_bcast_lora(&l, &s->policy->c, err)) return -1;
            set_adapter(s, l);
        }
        Batch b = {s, h.phase, h.round};
        if (ranks_serve(score_pair, &b, err)) return -1;
    }
}

// ----------------------------------------------------------------------------
// Before a run

int restem_check_prompts(const Domain *d, const Model *policy, const Tokenizer *tok, char *err) {
    const int n[2] = {d->n_train, d->n_eval}, ctx = policy->c.max_pos;
    for (int split = 0; split < 2; split++)
        for (int t = 0; t < n[split]; t++) {
            char *p = d->prompt(d, split, t);
            int *ids, len = tok_encode(tok, p, strlen(p), 1, &ids, err);
            free(p);
            if (len < 0) return -1;
            free(ids);
            if (len >= ctx)
                return errf(err, "%s %s: its self-edit prompt of %d tokens leaves no room in the policy's context of %d tokens",
                            split == SPLIT_TRAIN ? "training task" : "held-out task", d->task_name(d, split, t), len, ctx);
        }
    return 0;
}

// ----------------------------------------------------------------------------
// Options and the report

RestemOpts restem_defaults(void) {
    return (RestemOpts){.rounds = 1, .samples = 15, .eval_samples = 5, .keep_per_task = 10, .max_attempts = 3,
                        .threshold = 1.0f,
                        .sampling = {.max_new = 160, .temperature = 1.0f, .top_k = 0, .top_p = 0.95f},
                        .m_rank = 16, .m_alpha = 16.0f, .m_lr = 5e-5f, .m_epochs = 8, .m_batch = 1,
                        .m_targets = (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN),
                        .replay = 0, .max_retention_drop = 0.1f, .seed = 0, .adapters_at_once = 1};
}

void restem_opts_json(const RestemOpts *o, cJSON *j) {
    cJSON_AddNumberToObject(j, "rounds", o->rounds);
    cJSON_AddNumberToObject(j, "samples", o->samples);
    cJSON_AddNumberToObject(j, "eval_samples", o->eval_samples);
    cJSON_AddNumberToObject(j, "keep_per_task", o->keep_per_task);
    cJSON_AddNumberToObject(j, "max_attempts", o->max_attempts);
    cJSON_AddNumberToObject(j, "threshold", o->threshold);
    if (o->best_per_task) cJSON_AddNumberToObject(j, "best_per_task", 1);   // absent when off: older run.json files still match
    if (o->keep_untrained) cJSON_AddNumberToObject(j, "keep_untrained", 1);   // the same for these
    if (o->merge_policy) cJSON_AddNumberToObject(j, "merge_policy", 1);
    if (o->best_any) cJSON_AddNumberToObject(j, "best_any", 1);
    if (o->train_per_round) cJSON_AddNumberToObject(j, "train_per_round", o->train_per_round);
    if (o->train_stride) cJSON_AddNumberToObject(j, "train_stride", o->train_stride);
    if (o->m_from_previous) cJSON_AddNumberToObject(j, "m_from_previous", 1);
    if (o->adapters_at_once > 1) cJSON_AddNumberToObject(j, "adapters_at_once", o->adapters_at_once);
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

cJSON *report_row(cJSON *rows, const char *method, double ours, double paper, int n) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "method", method);
    cJSON_AddNumberToObject(r, "ours", ours);
    if (isnan(paper)) cJSON_AddNullToObject(r, "paper"); else cJSON_AddNumberToObject(r, "paper", paper);
    cJSON_AddNumberToObject(r, "n", n);
    cJSON_AddItemToArray(rows, r);
    return r;
}

void restem_report_rows(const cJSON *report, FILE *out) {
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(report, "rows")) {
        const cJSON *paper = cJSON_GetObjectItemCaseSensitive(r, "paper");
        char p[32] = "-";
        if (cJSON_IsNumber(paper)) snprintf(p, sizeof p, "%.1f%%", 100 * paper->valuedouble);
        fprintf(out, "| %s | %.1f%% | %s | %d |\n", cJSON_GetObjectItemCaseSensitive(r, "method")->valuestring,
                100 * cJSON_GetObjectItemCaseSensitive(r, "ours")->valuedouble, p, cJSON_GetObjectItemCaseSensitive(r, "n")->valueint);
    }
}

void restem_report_markdown(const cJSON *report, FILE *out) {
    fprintf(out, "| method | ours | paper | n |\n|---|---|---|---|\n");
    restem_report_rows(report, out);
    const cJSON *draws = cJSON_GetObjectItemCaseSensitive(report, "draws"), *de = cJSON_GetObjectItemCaseSensitive(draws, "self_edits");
    if (cJSON_IsNumber(de) && de->valueint > 0)
        fprintf(out, "\n%d self-edits took %d draws (at most %d for one; an invalid one is drawn again, up to %d draws)\n", de->valueint,
                cJSON_GetObjectItemCaseSensitive(draws, "draws")->valueint, cJSON_GetObjectItemCaseSensitive(draws, "most")->valueint,
                cJSON_GetObjectItemCaseSensitive(draws, "max_attempts")->valueint);
    const cJSON *diverged = cJSON_GetObjectItemCaseSensitive(report, "diverged");
    if (cJSON_IsNumber(diverged))
        fprintf(out, "\n%d self-edits' training diverged (a NaN or Inf loss): counted as not trained, reward 0 (edits.jsonl \"why\")\n", diverged->valueint);
}
