// fewshot.c: see fewshot.h.
#include "fewshot.h"
#include "generate.h"
#include "train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fewshot_defaults(FewShot *fs) {
    fs->chat = CHAT_LLAMA3;
    fs->lora_r = 128;
    fs->lora_alpha = 16.0f;
    fs->lora_targets = (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN);
    fs->batch = 2;
    fs->warmup = 11;
    fs->max_tokens = 8192;
    fs->max_views = 0;
    fs->max_answer_tokens = 1024;
    fs->max_examples = ARC_TTT_MAX;
    fs->max_steps = ARC_MAX_STEPS;
    fs->unused_colors = 1;
    fs->strict_edits = 0;
    // ttt.py's configuration: every augmentation group, output tokens, lr 1e-4, 2 epochs
    fs->oracle = "{\"data_generation\": {\"use_basic_augmentations\": true, \"use_size_augmentations\": true, "
                 "\"use_chain_augmentations\": true, \"use_repeat_augmentations\": true}, "
                 "\"training\": {\"strategy\": \"train_using_output_tokens\", \"learning_rate\": 0.0001, \"num_train_epochs\": 2}}";
}

RestemOpts fewshot_restem_defaults(void) {
    RestemOpts o = restem_defaults();
    o.keep_per_task = 0;          // BC-self-edit.py: every correct self-edit
    o.keep_untrained = 1;         // ... trained or not
    o.max_attempts = 1000;        // self-edit.py draws until the JSON parses; a cap, for a model that never writes JSON
    o.sampling.temperature = 0.8f; o.sampling.top_p = 1.0f; o.sampling.max_new = 128;   // self-edit.py's SamplingParams
    o.m_batch = 5;                // few-shot/README.md: --per_device_train_batch_size=5
    o.merge_policy = 1;           // BC-self-edit.py merges the LoRA; the next steps run on that model
    return o;
}

void fewshot_config_json(const FewShot *fs, cJSON *j) {
    cJSON *ids = cJSON_AddArrayToObject(j, "train_tasks");
    for (int i = 0; i < fs->n_train; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(fs->train[i].id));
    ids = cJSON_AddArrayToObject(j, "eval_tasks");
    for (int i = 0; i < fs->n_eval; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(fs->eval[i].id));
    cJSON_AddNumberToObject(j, "lora_r", fs->lora_r);
    cJSON_AddNumberToObject(j, "lora_alpha", fs->lora_alpha);
    cJSON_AddNumberToObject(j, "lora_targets", fs->lora_targets);
    cJSON_AddNumberToObject(j, "batch", fs->batch);
    cJSON_AddNumberToObject(j, "warmup", fs->warmup);
    cJSON_AddNumberToObject(j, "max_tokens", fs->max_tokens);
    cJSON_AddNumberToObject(j, "max_views", fs->max_views);
    cJSON_AddNumberToObject(j, "max_answer_tokens", fs->max_answer_tokens);
    cJSON_AddNumberToObject(j, "max_examples", fs->max_examples);
    cJSON_AddNumberToObject(j, "max_steps", fs->max_steps);
    cJSON_AddStringToObject(j, "oracle", fs->oracle ? fs->oracle : "");
    if (fs->chat != CHAT_LLAMA3) cJSON_AddStringToObject(j, "chat_format", chat_format_name(fs->chat));   // absent: older run.json files still match
    if (fs->constrain) cJSON_AddStringToObject(j, "constrain", fs->constrain);   // the same
    cJSON_AddNumberToObject(j, "colors", fs->unused_colors ? 1 : 0);   // new keys: an older run.json differs, and --resume says so
    cJSON_AddNumberToObject(j, "strict_edits", fs->strict_edits);
    if (fs->group_by_length) cJSON_AddTrueToObject(j, "group_by_length");   // absent: SEAL's order, older run.json files still match
    cJSON *sel = cJSON_AddArrayToObject(j, "selection");   // SEAL's entry counts, [] with --all-tasks
    for (int i = 0; fs->selected && i < 4; i++) cJSON_AddItemToArray(sel, cJSON_CreateNumber(fs->selection[i]));
    if (fs->eval_wrong) {
        cJSON *w = cJSON_AddArrayToObject(j, "eval_counted_wrong");
        for (int i = 0; i < fs->n_eval; i++)
            if (fs->eval_wrong[i]) cJSON_AddItemToArray(w, cJSON_CreateString(fs->eval[i].id));
    }
}

// ----------------------------------------------------------------------------
// SEAL's task selection. An entry is one test input of a task ("<id>-<k>"),
// in the order of SEAL's files (by id). self-edit.py --n_tasks N samples
// self-edits, and trains LoRAs, for the tasks whose entry 0 is among the
// first N entries (it skips "-1" entries); eval-self-edits.py --num_examples M
// scores the first M entries of numpy's seed-0 shuffle of all entries
// (np.random.seed(0); np.random.shuffle); a task without a LoRA submits
// [[0]]; evaluate() counts a task right only when each of its test inputs is
// submitted and right. SEAL's commands (few-shot/README.md): training
// N 12, M 11; held-out N 10, M 9.

typedef struct { int task, test; } Entry;

static int by_id(const void *a, const void *b) { return strcmp(((const Task *)a)->id, ((const Task *)b)->id); }

// One split: keeps the tasks the protocol uses (training: with a LoRA and all
// entries scored; held-out: with an entry scored) in id order; *wrong (held-out
// only) gets each kept task's reason to count as failed: 1 no LoRA, 2 some
// entry unscored.
static void select_split(Task **tasks, int *n, int lora_entries, int scored_entries, int held_out, unsigned char **wrong) {
    qsort(*tasks, (size_t)*n, sizeof(Task), by_id);
    int ne = 0;
    for (int i = 0; i < *n; i++) ne += (*tasks)[i].n_test;
    Entry *e = xcalloc((size_t)ne + 1, sizeof *e);
    int *perm = xcalloc((size_t)ne + 1, sizeof *perm), *scored = xcalloc((size_t)*n + 1, sizeof *scored);
    unsigned char *lora = xcalloc((size_t)*n + 1, 1);
    for (int i = 0, k = 0; i < *n; i++)
        for (int t = 0; t < (*tasks)[i].n_test; t++, k++) e[k] = (Entry){i, t};
    for (int k = 0; k < ne && k < lora_entries; k++)
        if (e[k].test == 0) lora[e[k].task] = 1;
    for (int k = 0; k < ne; k++) perm[k] = k;
    np_shuffle(0, perm, ne);
    for (int k = 0; k < ne && k < scored_entries; k++) scored[e[perm[k]].task]++;
    int m = 0;
    if (held_out) *wrong = xcalloc((size_t)*n + 1, 1);
    for (int i = 0; i < *n; i++) {
        Task *t = &(*tasks)[i];
        int keep = held_out ? scored[i] > 0 : lora[i] && scored[i] == t->n_test;
        if (!keep) { arc_free_task(t); continue; }
        if (held_out) (*wrong)[m] = !lora[i] ? 1 : scored[i] < t->n_test ? 2 : 0;
        (*tasks)[m++] = *t;
    }
    *n = m;
    free(e); free(perm); free(scored); free(lora);
}

void fewshot_select(FewShot *fs, const int counts[4]) {
    memcpy(fs->selection, counts, sizeof fs->selection);
    fs->selected = 1;
    select_split(&fs->train, &fs->n_train, counts[0], counts[1], 0, NULL);
    select_split(&fs->eval, &fs->n_eval, counts[2], counts[3], 1, &fs->eval_wrong);
}

static int fs_counted_wrong(const Domain *d, int split, int task, int oracle, char *why) {
    const FewShot *fs = d->ctx;
    if (split != SPLIT_EVAL || !fs->eval_wrong || !fs->eval_wrong[task] || (oracle && fs->eval_wrong[task] == 1)) return 0;
    if (why)
        snprintf(why, 256, fs->eval_wrong[task] == 1 ? "SEAL's protocol: no LoRA (entry 0 is not among the first %d entries); it submits [[0]], counted wrong"
                                                     : "SEAL's protocol: not all test inputs among the %d scored entries; counted wrong",
                 fs->eval_wrong[task] == 1 ? fs->selection[2] : fs->selection[3]);
    return 1;
}

int fewshot_check(const FewShot *fs, char *err) {
    SelfEdit se;
    char why[256];
    if (fs->oracle && selfedit_parse(fs->oracle, &se, why)) return errf(err, "--oracle: not a valid self-edit: %s", why);
    for (int split = 0; split < 2; split++)
        for (int i = 0; i < (split ? fs->n_eval : fs->n_train); i++) {
            const Task *t = split ? &fs->eval[i] : &fs->train[i];
            for (int k = 0; k < t->n_test || k == 0; k++)
                if (k >= t->n_test || t->test[k].out.h < 1)   // arc.c leaves h = 0 when "output" is missing
                    return errf(err, "%s task %s (%s.json): test pair %d has no \"output\", which the reward compares answers with",
                                split ? "held-out" : "training", t->id, t->id, k);
        }
    return 0;
}

static const Task *task_of(const FewShot *fs, int split, int i) {
    return split == SPLIT_TRAIN ? &fs->train[i] : &fs->eval[i];
}

static char *fs_prompt(const Domain *d, int split, int task) {
    const FewShot *fs = d->ctx;
    return arc_selfedit_prompt(task_of(fs, split, task), fs->chat);
}

static const char *fs_name(const Domain *d, int split, int task) {
    return task_of(d->ctx, split, task)->id;
}

// The prompt (demos and query input), then the answer and the end-of-turn
// token; loss on the answer and its end, or on every token with
// "train_using_all_tokens".
static int tokenize_example(const FewShot *fs, const TttExample *x, int output_only, Example *e, char *err) {
    char *prompt = arc_prompt(x->demos, x->n_demos, &x->query.in, fs->chat), *answer = arc_answer(&x->query.out);
    int rc = example_from_text(fs->tok, prompt, answer, fs->eot, !output_only, e, err);
    free(prompt);
    free(answer);
    return rc;
}

int fewshot_examples(const FewShot *fs, const TttExample *ex, int n, int output_only, Example **out, char *err) {
    *out = xcalloc((size_t)n, sizeof(Example));
    for (int i = 0; i < n; i++)
        if (tokenize_example(fs, &ex[i], output_only, &(*out)[i], err)) return -1;
    return 0;
}

// SEAL drops training examples of max_tokens or more before the cap.
static int short_enough(const TttExample *x, void *ctx) {
    const FewShot *fs = ctx;
    Example e;
    char err[ERR_MAX];
    if (tokenize_example(fs, x, 0, &e, err)) return 0;
    int ok = e.len < fs->max_tokens;
    free(e.ids);
    free(e.loss);
    return ok;
}

void fewshot_ttt_data(const FewShot *fs, const Task *t, const SelfEdit *se, Rng *r, TttExample **tx, int *n) {
    arc_ttt_examples_filtered(t, se, fs->unused_colors, r, short_enough, (void *)fs, tx, n);
    while (*n > fs->max_examples) free((*tx)[--*n].demos);   // already shuffled: the first ones are a random subset
}

// A view's prompt tokens (into *ids) and, as SEAL counts it for its limit,
// the length of prompt and true answer together (into *total).
static int view_tokens(const FewShot *fs, const Task *t, int test, const View *v, int **ids, int *total, char *err) {
    char *prompt = arc_prompt(v->demos, v->n_demos, &v->query, fs->chat);
    int len = tok_encode(fs->tok, prompt, strlen(prompt), 1, ids, err);
    free(prompt);
    if (len < 0) return -1;
    Grid g;
    *total = len;
    if (grid_apply(&t->test[test].out, v->tf, &g) == 0) {
        char *a = arc_answer(&g);
        int *aid, al = tok_encode(fs->tok, a, strlen(a), 0, &aid, err);
        free(a);
        if (al < 0) { free(*ids); *ids = NULL; return -1; }
        free(aid);
        *total += al + 1;   // and the end of turn
    }
    return len;
}

// Builds test input `test`'s views (leave = 1: leave-one-out; 2: SEAL's
// fallback, leave-one-out and leave-two-out together), at most max_views.
static int build_views(const FewShot *fs, const Task *t, int test, int leave, Rng *r, View **views, int *nv, int *n_built) {
    View *a, *b = NULL;
    int na, nb = 0;
    if (arc_views_leave(t, test, 1, r, &a, &na)) return -1;
    if (leave == 2 && t->n_train >= 2 && arc_views_leave(t, test, 2, r, &b, &nb)) { arc_free_views(a, na); return -1; }
    if (nb) {
        a = xrealloc(a, (size_t)(na + nb), sizeof *a);
        memcpy(a + na, b, (size_t)nb * sizeof *b);
    }
    free(b);
    *views = a;
    *n_built = na + nb;
    *nv = fs->max_views > 0 && *n_built > fs->max_views ? fs->max_views : *n_built;
    return 0;
}

typedef struct { int views, valid, too_long, fallback; } InferStats;

// The views whose prompt and answer are under max_tokens (SEAL's filter; and
// whose prompt fits the model's context); when no leave-one-out view fits,
// SEAL's fallback: the leave-two-out views too.
int fewshot_views(const FewShot *fs, const Model *m, const Task *t, int test, Rng *r, FewViews *v, char *err) {
    *v = (FewViews){0};
    for (int leave = 1; leave <= 2 && !v->n_fit; leave++) {
        fewshot_views_free(v);
        if (build_views(fs, t, test, leave, r, &v->views, &v->nv, &v->n_built)) return errf(err, "%s: cannot build inference views", t->id);
        v->ids = xcalloc((size_t)v->nv + 1, sizeof(int *));
        v->fit = xcalloc((size_t)v->nv + 1, sizeof(int));
        v->lens = xcalloc((size_t)v->nv + 1, sizeof(int));
        v->fallback = leave == 2;
        for (int i = 0; i < v->nv; i++) {
            int total;
            v->lens[i] = view_tokens(fs, t, test, &v->views[i], &v->ids[i], &total, err);
            if (v->lens[i] < 0) { fewshot_views_free(v); return -1; }
            if (v->lens[i] < m->c.max_pos && total < fs->max_tokens) v->fit[v->n_fit++] = i;
        }
    }
    v->prompts = xcalloc((size_t)v->n_fit + 1, sizeof(int *));
    v->prompt_lens = xcalloc((size_t)v->n_fit + 1, sizeof(int));
    for (int j = 0; j < v->n_fit; j++) { v->prompts[j] = v->ids[v->fit[j]]; v->prompt_lens[j] = v->lens[v->fit[j]]; }
    return 0;
}

void fewshot_views_free(FewViews *v) {
    for (int i = 0; v->ids && i < v->nv; i++) free(v->ids[i]);
    free(v->ids); free(v->fit); free(v->lens); free(v->prompts); free(v->prompt_lens);
    if (v->views) arc_free_views(v->views, v->n_built);   // every view built, not only those used
    *v = (FewViews){0};
}

int fewshot_stops(const FewShot *fs, const Model *m, int stop[9]) {
    int n_stop = m->c.n_eos, has_eot = 0;   // the model's eos ids and the chat format's end of turn
    for (int i = 0; i < n_stop; i++) has_eot |= (stop[i] = m->c.eos[i]) == fs->eot;
    if (!has_eot) stop[n_stop++] = fs->eot;
    return n_stop;
}

int fewshot_vote(const FewShot *fs, const Task *t, int test, const FewViews *v, int *const *ans, const int *ans_len, int *valid) {
    Grid *answers = xcalloc((size_t)v->n_fit + 1, sizeof(Grid)), top[2];
    int *group = xcalloc((size_t)v->n_fit + 1, sizeof(int));
    for (int j = 0; j < v->n_fit; j++) {
        size_t len;
        char err[ERR_MAX];
        const int *a = ans[j];
        char *text = tok_decode(fs->tok, a, ans_len[j] > 0 && a[ans_len[j] - 1] == fs->eot ? ans_len[j] - 1 : ans_len[j], &len, err);
        Grid g;
        group[j] = v->views[v->fit[j]].tf;
        if (text && grid_parse(text, &g) == 0 && arc_unview(&v->views[v->fit[j]], &g, &answers[j]) == 0) (*valid)++;
        else answers[j].h = 0;   // h = 0 marks an invalid answer
        free(text);
    }
    int n_top = v->n_fit ? arc_vote(answers, group, v->n_fit, top) : 0;   // no view fits: no answer, as SEAL's invalid task
    int right = n_top > 0 && arc_pass2(top, n_top, &t->test[test].out);
    free(answers); free(group);
    return right;
}

// Augmented greedy inference on one test input: the views that fit answered
// in one batch, mapped back, voted to two attempts. *right: one of the
// attempts is the solution.
static int answer_test(const FewShot *fs, Model *m, const Task *t, int test, Rng *r, int *right, InferStats *st, char *err) {
    FewViews v;
    *right = 0;
    if (fewshot_views(fs, m, t, test, r, &v, err)) return -1;
    st->fallback += v.fallback;
    SampleOpts greedy = {.max_new = fs->max_answer_tokens, .temperature = 0, .constraint = fs->answer_constraint};
    int stop[9], n_stop = fewshot_stops(fs, m, stop), rc = 0;
    int **ans = xcalloc((size_t)v.n_fit + 1, sizeof(int *)), *ans_len = xcalloc((size_t)v.n_fit + 1, sizeof(int));
    if (v.n_fit) rc = be_generate(fs->be, m, (const int *const *)v.prompts, v.prompt_lens, v.n_fit, &greedy, stop, n_stop, NULL, NULL, ans, ans_len, err);
    if (!rc) {
        *right = fewshot_vote(fs, t, test, &v, ans, ans_len, &st->valid);
        st->views += v.n_fit;
        if (v.n_fit < v.nv) st->too_long += v.nv - v.n_fit;
    }
    for (int j = 0; j < v.n_fit; j++) free(ans[j]);
    free(ans); free(ans_len);
    fewshot_views_free(&v);
    return rc;
}

// SEAL's scoring of a task: right when every test input is (eval.py evaluate).
static int infer_reward(const FewShot *fs, Model *m, const Task *t, Rng *r, Outcome *out, char *err) {
    InferStats st = {0};
    int all = 1, rc = 0;
    for (int k = 0; k < t->n_test && !rc; k++) {
        int right;
        rc = answer_test(fs, m, t, k, r, &right, &st, err);
        all &= right;
    }
    if (rc) return rc;
    out->reward = (float)all;
    cJSON_AddNumberToObject(out->metrics, "views", st.views);
    cJSON_AddNumberToObject(out->metrics, "valid_answers", st.valid);
    if (t->n_test > 1) cJSON_AddNumberToObject(out->metrics, "tests", t->n_test);
    if (st.too_long) cJSON_AddNumberToObject(out->metrics, "views_too_long", st.too_long);
    if (st.fallback) cJSON_AddNumberToObject(out->metrics, "views_fallback", st.fallback);
    return 0;
}

// What SEAL's self-edit.py needs to get as far as training: JSON (it draws
// again when json.loads fails) whose "data_generation" and "training" are
// objects (it reads their items before anything else).
static int json_sections(const char *edit) {
    cJSON *j = cJSON_ParseWithOpts(edit, NULL, 1);
    int ok = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "data_generation")) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "training"));
    cJSON_Delete(j);
    return ok;
}

// One self-edit's evaluation, in the stages that let several train together:
// fs_prepare (parse, TTT data), the inner loops (be_sft_many), fs_finish (answers).
typedef struct {
    const Task *t;
    Rng r;
    Example *ex;                  // the TTT data; NULL: nothing to train (scored, or answered unadapted)
    int n;
    SftRun run;                   // its inner loop
    Lora l;                       // a fresh LoRA on the student
} Eval;

// Parses the edit and builds its TTT data in v; a self-edit with nothing to
// train is scored here (the unadapted model answers, as in SEAL).
static int fs_prepare(const FewShot *fs, Model *m, int split, int task, const char *edit, uint64_t seed, Eval *v, Outcome *out, char *err) {
    const Task *t = v->t = task_of(fs, split, task);
    rng_seed(&v->r, seed);
    out->metrics = cJSON_CreateObject();
    SelfEdit se;
    if (!edit) { out->valid = 1; return infer_reward(fs, m, t, &v->r, out, err); }
    if (selfedit_parse(edit, &se, out->why)) {
        if (fs->strict_edits || !json_sections(edit)) return 0;   // invalid: drawn again; else reward 0
        // SEAL's fallback (self-edit.py): a JSON self-edit with a field it cannot
        // use trains 0 epochs; the unadapted model answers, and it is scored.
        out->valid = 1;
        size_t l = strlen(out->why);
        snprintf(out->why + l, sizeof out->why - l, "; trained 0 epochs, as SEAL does");
        return infer_reward(fs, m, t, &v->r, out, err);
    }
    out->valid = 1;
    TttExample *tx;
    int n;
    fewshot_ttt_data(fs, t, &se, &v->r, &tx, &n);
    cJSON_AddNumberToObject(out->metrics, "examples", n);
    long steps = selfedit_steps(n, fs->batch, se.epochs);
    if (n == 0 || steps > fs->max_steps) {   // as in SEAL: no training; the unadapted model answers
        snprintf(out->why, sizeof out->why, n ? "%ld optimizer steps, more than %d: not trained" : "no training examples", steps, fs->max_steps);
        arc_free_examples(tx, n);
        return infer_reward(fs, m, t, &v->r, out, err);
    }
    int rc = fewshot_examples(fs, tx, n, se.output_only, &v->ex, err);
    arc_free_examples(tx, n);
    if (rc) return rc;
    v->n = n;
    if (lora_init(&v->l, &m->c, fs->lora_r, fs->lora_alpha, fs->lora_targets)) return errf(err, "out of memory for the TTT adapter");
    lora_reset(&v->l, seed);
    SftOpts so = sft_defaults();
    so.lr = se.lr;
    so.epochs = se.epochs;
    so.batch = fs->batch;
    so.group_by_length = fs->group_by_length;
    so.warmup = fs->warmup;
    so.seed = seed;
    v->run = (SftRun){.ex = v->ex, .n = n, .o = so, .lora = &v->l};
    return 0;
}

// After its inner loop: the training's stats, then (unless it diverged: reward
// 0) the answers of the student with the trained adapter attached.
static int fs_finish(const FewShot *fs, Model *m, Eval *v, Outcome *out, char *err) {
    const SftStats *st = &v->run.st;
    if (st->diverged) { sft_diverged_why(st, sft_steps(v->n, v->run.o.batch, v->run.o.epochs), out->why, sizeof out->why); return 0; }
    cJSON_AddNumberToObject(out->metrics, "steps", st->steps);
    cJSON_AddNumberToObject(out->metrics, "first_loss", st->first_loss);
    cJSON_AddNumberToObject(out->metrics, "last_loss", st->last_loss);
    cJSON_AddNumberToObject(out->metrics, "seconds_train", st->seconds);
    out->trained = 1;
    model_attach_lora(m, &v->l);
    double t0 = now_seconds();
    int rc = infer_reward(fs, m, v->t, &v->r, out, err);
    cJSON_AddNumberToObject(out->metrics, "seconds_infer", now_seconds() - t0);
    return rc;
}

// n self-edits (of any tasks) at once: their test-time adapters train
// together over the student's frozen base, a pass over all their rows a step
// (be_sft_many), then each answers with its own. out[i] is what edit i alone
// (n = 1) gives, up to the order of float sums in training.
static int fs_evaluate_many(const Domain *d, Model *m, int split, int n, const int *task, const char *const *edit, const uint64_t *seed,
                            Outcome *out, char *err) {
    const FewShot *fs = d->ctx;
    Eval *v = xcalloc((size_t)n, sizeof *v);
    SftRun *runs = xcalloc((size_t)n, sizeof *runs);
    Lora *before = m->lora;
    int rc = 0, k = 0;
    for (int i = 0; i < n && !rc; i++) rc = fs_prepare(fs, m, split, task[i], edit[i], seed[i], &v[i], &out[i], err);
    for (int i = 0; i < n && !rc; i++)
        if (v[i].ex) runs[k++] = v[i].run;
    if (!rc && k) {
        model_attach_lora(m, runs[0].lora);   // the adapters' shape
        rc = be_sft_many(fs->be, m, runs, k, err);
    }
    for (int i = 0, j = 0; i < n; i++) {
        if (!v[i].ex) continue;
        v[i].run.st = runs[j++].st;
        examples_free(v[i].ex, v[i].n);
        if (!rc) rc = fs_finish(fs, m, &v[i], &out[i], err);
        lora_free(&v[i].l);
    }
    model_attach_lora(m, before);
    free(runs);
    free(v);
    return rc;
}

void fewshot_domain(Domain *d, FewShot *fs) {
    *d = (Domain){.name = "fewshot-arc", .n_train = fs->n_train, .n_eval = fs->n_eval, .n_probe = fs->n_eval, .ctx = fs,
                  .prompt = fs_prompt, .task_name = fs_name, .evaluate_many = fs_evaluate_many, .oracle_edit = fs->oracle, .eot = chat_eot(fs->chat),
                  .paper = {0.0, 0.20, 0.725, 1.0}, .be = fs->be, .counted_wrong = fs_counted_wrong};
}
