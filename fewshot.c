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
    fs->oracle = "{\"data_generation\": {\"use_basic_augmentations\": true, \"use_size_augmentations\": true, "
                 "\"use_chain_augmentations\": true, \"use_repeat_augmentations\": true}, "
                 "\"training\": {\"strategy\": \"train_using_output_tokens\", \"learning_rate\": 0.0001, \"num_train_epochs\": 1}}";
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
}

int fewshot_check(const FewShot *fs, char *err) {
    SelfEdit se;
    char why[256];
    if (fs->oracle && selfedit_parse(fs->oracle, &se, why)) return errf(err, "--oracle: not a valid self-edit: %s", why);
    for (int split = 0; split < 2; split++)
        for (int i = 0; i < (split ? fs->n_eval : fs->n_train); i++) {
            const Task *t = split ? &fs->eval[i] : &fs->train[i];
            if (t->n_test < 1 || t->test[0].out.h < 1)   // arc.c leaves h = 0 when "output" is missing
                return errf(err, "%s task %s (%s.json): its first test pair has no \"output\", which the reward compares answers with",
                            split ? "held-out" : "training", t->id, t->id);
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

// Augmented greedy inference on the task's first test input: every view
// answered in one batch, answers mapped back, voted to two attempts.
static int infer_reward(const FewShot *fs, Model *m, const Task *t, Rng *r, Outcome *out, char *err) {
    View *views;
    int nv, n_built;
    if (arc_views(t, 0, r, &views, &n_built)) return errf(err, "%s: cannot build inference views", t->id);
    nv = fs->max_views > 0 && n_built > fs->max_views ? fs->max_views : n_built;
    int **ids = xcalloc(nv, sizeof(int *)), *lens = xcalloc(nv, sizeof(int)), **ans = xcalloc(nv, sizeof(int *)), *ans_len = xcalloc(nv, sizeof(int));
    int *group = xcalloc(nv, sizeof(int)), rc = 0;
    for (int i = 0; i < nv && !rc; i++) {
        char *prompt = arc_prompt(views[i].demos, views[i].n_demos, &views[i].query, fs->chat);
        lens[i] = tok_encode(fs->tok, prompt, strlen(prompt), 1, &ids[i], err);
        free(prompt);
        if (lens[i] < 0) rc = -1;
        group[i] = views[i].tf;
    }
    SampleOpts greedy = {.max_new = fs->max_answer_tokens, .temperature = 0};
    int stop[9], n_stop = m->c.n_eos, has_eot = 0;   // the model's eos ids and the chat format's end of turn
    for (int i = 0; i < n_stop; i++) has_eot |= (stop[i] = m->c.eos[i]) == fs->eot;
    if (!has_eot) stop[n_stop++] = fs->eot;
    // A view whose prompt fills the model's context is dropped, as SEAL drops
    // queries of max_tokens or more: it gets no answer. The others go in one batch.
    int n_fit = 0, *fit = xcalloc(nv, sizeof(int)), **fit_ans = xcalloc(nv, sizeof(int *)), *fit_len = xcalloc(nv, sizeof(int));
    const int **fit_ids = xcalloc(nv, sizeof(int *));
    int *fit_prompt = xcalloc(nv, sizeof(int));
    for (int i = 0; i < nv && !rc; i++)
        if (lens[i] < m->c.max_pos) { fit_ids[n_fit] = ids[i]; fit_prompt[n_fit] = lens[i]; fit[n_fit++] = i; }
    if (!rc && n_fit) rc = be_generate(fs->be, m, fit_ids, fit_prompt, n_fit, &greedy, stop, n_stop, NULL, NULL, fit_ans, fit_len, err);
    for (int j = 0; j < n_fit; j++) { ans[fit[j]] = fit_ans[j]; ans_len[fit[j]] = fit_len[j]; }
    free(fit); free(fit_ans); free(fit_len); free(fit_ids); free(fit_prompt);
    Grid *answers = xcalloc(nv, sizeof(Grid)), top[2];
    int valid = 0;
    for (int i = 0; i < nv && !rc; i++) {
        if (!ans[i]) { answers[i].h = 0; continue; }   // dropped: too long
        size_t len;
        char *text = tok_decode(fs->tok, ans[i], ans_len[i] > 0 && ans[i][ans_len[i] - 1] == fs->eot ? ans_len[i] - 1 : ans_len[i], &len, err);
        Grid g;
        if (text && grid_parse(text, &g) == 0 && arc_unview(&views[i], &g, &answers[i]) == 0) valid++;
        else answers[i].h = 0;   // h = 0 marks an invalid answer
        free(text);
    }
    if (!rc) {
        int n_top = arc_vote(answers, group, nv, top);
        out->reward = (float)arc_pass2(top, n_top, &t->test[0].out);
        cJSON_AddNumberToObject(out->metrics, "views", nv);
        cJSON_AddNumberToObject(out->metrics, "valid_answers", valid);
        if (n_fit < nv) cJSON_AddNumberToObject(out->metrics, "views_too_long", nv - n_fit);
    }
    for (int i = 0; i < nv; i++) { free(ids[i]); free(ans[i]); }
    free(ids); free(lens); free(ans); free(ans_len); free(group); free(answers);
    arc_free_views(views, n_built);   // every view built, not only those used
    return rc;
}

// The inner loop: a fresh LoRA l on the student, trained on the self-edit's
// data. It stays attached for the reward; the caller detaches and frees it.
// When training diverges, out->why says so and l is no use.
static int ttt(const FewShot *fs, Model *m, Lora *l, const SelfEdit *se, Example *ex, int n, uint64_t seed, Outcome *out, char *err) {
    if (lora_init(l, &m->c, fs->lora_r, fs->lora_alpha, fs->lora_targets)) return errf(err, "out of memory for the TTT adapter");
    lora_reset(l, seed);
    SftOpts so = sft_defaults();
    so.lr = se->lr;
    so.epochs = se->epochs;
    so.batch = fs->batch;
    so.warmup = fs->warmup;
    so.seed = seed;
    SftStats st;
    model_attach_lora(m, l);
    int rc = be_sft(fs->be, m, ex, n, &so, &st, err);
    if (!rc && st.diverged) sft_diverged_why(&st, sft_steps(n, so.batch, so.epochs), out->why, sizeof out->why);
    else if (!rc) {
        cJSON_AddNumberToObject(out->metrics, "steps", st.steps);
        cJSON_AddNumberToObject(out->metrics, "first_loss", st.first_loss);
        cJSON_AddNumberToObject(out->metrics, "last_loss", st.last_loss);
        cJSON_AddNumberToObject(out->metrics, "seconds_train", st.seconds);
    }
    return rc;
}

static int fs_evaluate(const Domain *d, Model *m, int split, int task, const char *edit, uint64_t seed, Outcome *out, char *err) {
    const FewShot *fs = d->ctx;
    const Task *t = task_of(fs, split, task);
    Rng r;
    rng_seed(&r, seed);
    out->metrics = cJSON_CreateObject();
    SelfEdit se;
    if (!edit) { out->valid = 1; return infer_reward(fs, m, t, &r, out, err); }
    if (selfedit_parse(edit, &se, out->why)) return 0;   // invalid: no training, reward 0
    out->valid = 1;
    TttExample *tx;
    int n;
    arc_ttt_examples_filtered(t, &se, &r, short_enough, (void *)fs, &tx, &n);
    if (n > fs->max_examples) {   // already shuffled: the first ones are a random subset
        while (n > fs->max_examples) free(tx[--n].demos);
    }
    cJSON_AddNumberToObject(out->metrics, "examples", n);
    long steps = selfedit_steps(n, fs->batch, se.epochs);
    if (n == 0 || steps > fs->max_steps) {   // as in SEAL: no training; the unadapted model answers
        snprintf(out->why, sizeof out->why, n ? "%ld optimizer steps, more than %d: not trained" : "no training examples", steps, fs->max_steps);
        arc_free_examples(tx, n);
        return infer_reward(fs, m, t, &r, out, err);
    }
    Example *ex;
    int rc = fewshot_examples(fs, tx, n, se.output_only, &ex, err);
    arc_free_examples(tx, n);
    Lora *before = m->lora, l = {0};
    if (!rc) rc = ttt(fs, m, &l, &se, ex, n, seed, out, err);
    examples_free(ex, n);
    if (!rc && !*out->why) {   // trained (a diverged one is not, and gets reward 0)
        out->trained = 1;
        double t0 = now_seconds();
        rc = infer_reward(fs, m, t, &r, out, err);
        cJSON_AddNumberToObject(out->metrics, "seconds_infer", now_seconds() - t0);
    }
    model_attach_lora(m, before);
    lora_free(&l);
    return rc;
}

void fewshot_domain(Domain *d, FewShot *fs) {
    *d = (Domain){.name = "fewshot-arc", .n_train = fs->n_train, .n_eval = fs->n_eval, .n_probe = fs->n_eval, .ctx = fs,
                  .prompt = fs_prompt, .task_name = fs_name, .evaluate = fs_evaluate, .oracle_edit = fs->oracle, .eot = chat_eot(fs->chat),
                  .paper = {0.0, 0.20, 0.725, 1.0}, .be = fs->be};
}
