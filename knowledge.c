// knowledge.c: see knowledge.h.
//
// Where this follows SEAL's code (knowledge-incorporation/src) and where not:
//   - prompts: make_squad_data.py's base-model templates and utils.py's
//     answering template ("Topic: TITLE" line included), each sent as one user
//     message in the model's chat format (squad_chat);
//   - documents: utils.py build_train_sequences with split_newlines (SEAL's
//     query_server.sh setting): "TITLE\nSTATEMENT" per line, the passage last;
//     loss on every token;
//   - inner loop: r=32, alpha=64 on q/v, 10 epochs, lr 1e-3, batch 1, AdamW
//     with clipping at 1.0; the schedule is this project's cosine (SEAL: HF's
//     linear decay), no warm-up;
//   - reward: greedy answers of at most 64 tokens, cut at their first line,
//     graded locally (SEAL: GPT-4.1 as a judge), mean over the questions;
//   - filter: the best self-edit of each passage when it beats the passage's
//     no-edit reward (restem's best_per_task). SEAL's build_SFT_dataset.py
//     keeps the top one without the baseline test.
#include "knowledge.h"
#include "generate.h"
#include "ranks.h"
#include "util.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const CPT_SOURCE_NAME[CPT_SOURCES] = {"passage", "base", "seal"};

void knowledge_defaults(Knowledge *k) {
    k->chat = CHAT_LLAMA3;
    k->style = STYLE_IMPLICATIONS;
    k->with_passage = 1;
    k->lora_r = 32;
    k->lora_alpha = 64.0f;
    k->lora_targets = (1u << PROJ_Q) | (1u << PROJ_V);
    k->epochs = 10;
    k->lr = 1e-3f;
    k->batch = 1;
    k->max_doc_tokens = 2048;
    k->max_answer_tokens = 64;
    k->grader = GRADE_EM_F1;
    k->cpt_sizes[0] = 1;
    k->cpt_sizes[1] = 200;
    k->n_cpt_sizes = 2;
    k->cpt_sources = (1u << CPT_PASSAGE) | (1u << CPT_BASE) | (1u << CPT_SEAL);
    k->cpt_epochs = 3;
    k->cpt_batch = 8;
    k->cpt_lr = 1e-3f;
}

void knowledge_config_json(const Knowledge *k, cJSON *j) {
    cJSON *ids = cJSON_AddArrayToObject(j, "train_passages");
    for (int i = 0; i < k->n_train; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(k->train[i].id));
    ids = cJSON_AddArrayToObject(j, "eval_passages");
    for (int i = 0; i < k->n_eval; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(k->eval[i].id));
    cJSON_AddNumberToObject(j, "n_probe", k->n_probe);
    cJSON_AddStringToObject(j, "chat_format", chat_format_name(k->chat));
    cJSON_AddStringToObject(j, "style", STYLE_NAME[k->style]);
    cJSON_AddBoolToObject(j, "with_passage", k->with_passage);
    cJSON_AddNumberToObject(j, "lora_r", k->lora_r);
    cJSON_AddNumberToObject(j, "lora_alpha", k->lora_alpha);
    cJSON_AddNumberToObject(j, "lora_targets", k->lora_targets);
    cJSON_AddNumberToObject(j, "epochs", k->epochs);
    cJSON_AddNumberToObject(j, "lr", k->lr);
    cJSON_AddNumberToObject(j, "batch", k->batch);
    cJSON_AddNumberToObject(j, "max_doc_tokens", k->max_doc_tokens);
    cJSON_AddNumberToObject(j, "max_answer_tokens", k->max_answer_tokens);
    cJSON_AddStringToObject(j, "grader", GRADER_NAME[k->grader]);
    cJSON *sizes = cJSON_AddArrayToObject(j, "cpt_sizes");
    for (int i = 0; i < k->n_cpt_sizes; i++) cJSON_AddItemToArray(sizes, cJSON_CreateNumber(k->cpt_sizes[i]));
    cJSON *src = cJSON_AddArrayToObject(j, "cpt_sources");
    for (int s = 0; s < CPT_SOURCES; s++)
        if (k->cpt_sources >> s & 1) cJSON_AddItemToArray(src, cJSON_CreateString(CPT_SOURCE_NAME[s]));
    cJSON_AddNumberToObject(j, "cpt_epochs", k->cpt_epochs);
    cJSON_AddNumberToObject(j, "cpt_batch", k->cpt_batch);
    cJSON_AddNumberToObject(j, "cpt_lr", k->cpt_lr);
}

static const Passage *passage_of(const Knowledge *k, int split, int task) {
    return split == SPLIT_TRAIN ? &k->train[task] : &k->eval[task];   // the probe reuses the eval passages
}

// ----------------------------------------------------------------------------
// Documents

int knowledge_document(const Tokenizer *tok, const Passage *p, const char *text, int max_tokens, Example *e, char *err) {
    int bos = tok_find(tok, "<|begin_of_text|>");
    if (bos < 0) bos = 0;
    char *doc = squad_document(p, text);
    int *ids, n = doc ? tok_encode(tok, doc, strlen(doc), 0, &ids, err) : errf(err, "out of memory");
    free(doc);
    if (n < 0) return -1;
    if (n > max_tokens - 1) n = max_tokens - 1;
    e->len = n + 1;
    e->ids = xcalloc((size_t)e->len, sizeof(int));   // at most max_tokens
    e->loss = xmalloc((size_t)e->len);
    e->ids[0] = bos;
    memcpy(e->ids + 1, ids, n * sizeof(int));
    memset(e->loss, 1, e->len);
    e->loss[0] = 0;
    free(ids);
    return 0;
}

// Appends the documents of texts[0..n) to *ex.
static int add_documents(const Knowledge *k, const Passage *p, char *const *texts, int n, Example **ex, int *n_ex, char *err) {
    *ex = xrealloc(*ex, (size_t)*n_ex + n + 1, sizeof(Example));
    for (int i = 0; i < n; i++) {
        if (knowledge_document(k->tok, p, texts[i], k->max_doc_tokens, &(*ex)[*n_ex], err)) return -1;
        (*n_ex)++;
    }
    return 0;
}

int knowledge_documents(const Knowledge *k, const Passage *p, const char *edit, Example **ex, int *n, int *statements, char *err) {
    *ex = NULL;
    *n = *statements = 0;
    const int passage_only = !strcmp(edit, KNOWLEDGE_PASSAGE_ONLY);
    char **st = NULL;
    if (!passage_only) *statements = squad_split_edit(edit, &st);
    int rc = add_documents(k, p, st, *statements, ex, n, err);
    squad_free_strings(st, *statements);
    if (!rc && (passage_only || k->with_passage)) rc = add_documents(k, p, &p->context, 1, ex, n, err);
    if (rc) { examples_free(*ex, *n); *ex = NULL; *n = 0; }
    return rc;
}

// ----------------------------------------------------------------------------
// Answers

typedef struct {
    const Tokenizer *tok;
    int *seen;                    // per sequence: something other than whitespace was written
} AnswerState;

// An answer ends at the first line break after some text: only the first
// line is graded, so the rest need not be generated.
static int answer_token(int seq, int token, void *ctx) {
    AnswerState *a = ctx;
    const char *bytes;
    int n = tok_token_bytes(a->tok, token, &bytes);
    for (int i = 0; i < n; i++) {
        if (bytes[i] == '\n' && a->seen[seq]) return 1;
        if (!isspace((unsigned char)bytes[i])) a->seen[seq] = 1;
    }
    return 0;
}

#define ANSWER_BATCH 16   // questions answered in one generate call

int knowledge_answer(const Knowledge *k, const Model *m, const Passage *p, char ***answers, double *scores, char *err) {
    *answers = xcalloc((size_t)p->n_qs, sizeof(char *));
    int rc = 0;
    for (int q0 = 0; q0 < p->n_qs && !rc; q0 += ANSWER_BATCH) {
        int B = p->n_qs - q0 < ANSWER_BATCH ? p->n_qs - q0 : ANSWER_BATCH;
        int *ids[ANSWER_BATCH] = {0}, lens[ANSWER_BATCH], *out[ANSWER_BATCH] = {0}, out_lens[ANSWER_BATCH], seen[ANSWER_BATCH] = {0};
        for (int b = 0; b < B && !rc; b++) {
            char *prompt = squad_question_prompt(p, &p->qs[q0 + b], k->chat);
            lens[b] = prompt ? tok_encode(k->tok, prompt, strlen(prompt), 1, &ids[b], err) : errf(err, "out of memory");
            free(prompt);
            if (lens[b] < 0) rc = -1;
        }
        SampleOpts greedy = {.max_new = k->max_answer_tokens, .temperature = 0, .top_p = 1};
        AnswerState st = {k->tok, seen};
        if (!rc) rc = be_generate(k->be, m, (const int *const *)ids, lens, B, &greedy, m->c.eos, m->c.n_eos, answer_token, &st, out, out_lens, err);
        for (int b = 0; b < B && !rc; b++) {
            int n = out_lens[b];
            for (int i = 0; n > 0 && i < m->c.n_eos; i++)
                if (out[b][n - 1] == m->c.eos[i]) { n--; break; }
            size_t len;
            char *text = tok_decode(k->tok, out[b], n, &len, err);
            if (!text) { rc = -1; break; }
            (*answers)[q0 + b] = squad_answer_text(text);
            free(text);
        }
        for (int b = 0; b < B; b++) { free(ids[b]); free(out[b]); }
    }
    for (int q = 0; q < p->n_qs && !rc; q++)
        if (scores) scores[q] = squad_grade(k->grader, (*answers)[q], p->qs[q].answers, p->qs[q].n_answers);
    if (rc) { squad_free_strings(*answers, p->n_qs); *answers = NULL; }
    return rc;
}

// Answers and grades a passage's questions into out: reward = mean score,
// with exact match, F1 and the answers in the metrics.
static int answer_reward(const Knowledge *k, const Model *m, const Passage *p, Outcome *out, char *err) {
    double t0 = now_seconds(), *scores = xcalloc((size_t)p->n_qs, sizeof(double)), sum = 0, em = 0, f1 = 0;
    char **answers;
    if (knowledge_answer(k, m, p, &answers, scores, err)) { free(scores); return -1; }
    cJSON *list = cJSON_CreateArray();
    for (int q = 0; q < p->n_qs; q++) {
        sum += scores[q];
        em += squad_grade(GRADE_EM, answers[q], p->qs[q].answers, p->qs[q].n_answers);
        f1 += squad_grade(GRADE_F1, answers[q], p->qs[q].answers, p->qs[q].n_answers);
        char *clean = utf8_sanitize(answers[q]);
        cJSON_AddItemToArray(list, cJSON_CreateString(clean));
        free(clean);
    }
    out->reward = (float)(sum / p->n_qs);
    cJSON_AddNumberToObject(out->metrics, "questions", p->n_qs);
    cJSON_AddNumberToObject(out->metrics, "exact_match", em / p->n_qs);
    cJSON_AddNumberToObject(out->metrics, "f1", f1 / p->n_qs);
    cJSON_AddItemToObject(out->metrics, "answers", list);
    cJSON_AddNumberToObject(out->metrics, "seconds_infer", now_seconds() - t0);
    squad_free_strings(answers, p->n_qs);
    free(scores);
    return 0;
}

// ----------------------------------------------------------------------------
// The inner loop

// A fresh adapter l on m trained on ex; left attached (the caller restores).
// When its training diverges, why says so and l is no use.
static int train_adapter(const Knowledge *k, Model *m, Lora *l, const Example *ex, int n, int epochs, int batch, float lr,
                         uint64_t seed, cJSON *metrics, char *why, size_t why_n, char *err) {
    if (lora_init(l, &m->c, k->lora_r, k->lora_alpha, k->lora_targets)) return errf(err, "out of memory for the inner-loop adapter");
    lora_reset(l, seed);
    SftOpts so = sft_defaults();
    so.lr = lr;
    so.epochs = epochs;
    so.batch = batch;
    so.seed = seed;
    SftStats st;
    model_attach_lora(m, l);
    int rc = be_sft(k->be, m, ex, n, &so, &st, err);
    if (!rc && st.diverged) sft_diverged_why(&st, sft_steps(n, batch, epochs), why, why_n);
    else if (!rc) {
        cJSON_AddNumberToObject(metrics, "steps", st.steps);
        cJSON_AddNumberToObject(metrics, "first_loss", st.first_loss);
        cJSON_AddNumberToObject(metrics, "last_loss", st.last_loss);
        cJSON_AddNumberToObject(metrics, "seconds_train", st.seconds);
    }
    return rc;
}

static char *kn_prompt(const Domain *d, int split, int task) {
    const Knowledge *k = d->ctx;
    return squad_selfedit_prompt(passage_of(k, split, task), k->style, k->chat);
}

static const char *kn_name(const Domain *d, int split, int task) {
    return passage_of(d->ctx, split, task)->id;
}

static int kn_evaluate(const Domain *d, Model *m, int split, int task, const char *edit, uint64_t seed, Outcome *out, char *err) {
    const Knowledge *k = d->ctx;
    const Passage *p = passage_of(k, split, task);
    out->metrics = cJSON_CreateObject();
    if (!edit) { out->valid = 1; return answer_reward(k, m, p, out, err); }
    Example *ex;
    int n, statements;
    if (knowledge_documents(k, p, edit, &ex, &n, &statements, err)) return -1;
    cJSON_AddNumberToObject(out->metrics, "statements", statements);
    cJSON_AddNumberToObject(out->metrics, "documents", n);
    if (!statements && strcmp(edit, KNOWLEDGE_PASSAGE_ONLY)) {   // nothing to learn from: no training, the model as it is answers
        snprintf(out->why, sizeof out->why, "the self-edit has no statements");
        examples_free(ex, n);
        return answer_reward(k, m, p, out, err);
    }
    out->valid = 1;
    Lora *before = m->lora, l = {0};
    int rc = train_adapter(k, m, &l, ex, n, k->epochs, k->batch, k->lr, seed, out->metrics, out->why, sizeof out->why, err);
    examples_free(ex, n);
    if (!rc && !*out->why) {   // trained (a diverged one is not, and gets reward 0)
        out->trained = 1;
        rc = answer_reward(k, m, p, out, err);
    }
    model_attach_lora(m, before);
    lora_free(&l);
    return rc;
}

void knowledge_domain(Domain *d, Knowledge *k) {
    *d = (Domain){.name = "knowledge-squad", .n_train = k->n_train, .n_eval = k->n_eval, .n_probe = k->n_probe, .ctx = k,
                  .prompt = kn_prompt, .task_name = kn_name, .evaluate = kn_evaluate, .oracle_edit = KNOWLEDGE_PASSAGE_ONLY,
                  .eot = chat_eot(k->chat), .paper = {0.327, 0.397, NAN, 0.335}, .be = k->be};
}

// ----------------------------------------------------------------------------
// Continued pretraining: n held-out passages (and self-edits for them)
// absorbed in one update, then every question of the n answered (SEAL's CPT.py).

// The logged self-edits of a round's held-out evaluation for one passage.
static int add_logged_edits(const Knowledge *k, const Run *run, int round, int task, Example **ex, int *n, char *err) {
    const Passage *p = &k->eval[task];
    for (int s = 0;; s++) {
        const Edit *e = run_find(run, PHASE_EVAL, round, task, s);
        if (!e) return s ? 0 : errf(err, "%s: no logged self-edit of round %d for held-out passage %s", run->dir, round, p->id);
        if (!e->edit || !e->valid) continue;
        char **st;
        int m = squad_split_edit(e->edit, &st), rc = add_documents(k, p, st, m, ex, n, err);
        squad_free_strings(st, m);
        if (rc) return -1;
    }
}

// One group: passages [g*size, (g+1)*size) into one adapter, scored on all their questions.
static int cpt_group(const Knowledge *k, Model *m, const Run *run, int source, int round, int size, int g, uint64_t seed, Edit *line, char *err) {
    Example *ex = NULL;
    int n = 0, rc = 0;
    for (int t = g * size; t < (g + 1) * size && !rc; t++) {
        if (source != CPT_PASSAGE) rc = add_logged_edits(k, run, round, t, &ex, &n, err);
        if (!rc) rc = add_documents(k, &k->eval[t], &k->eval[t].context, 1, &ex, &n, err);
    }
    cJSON *metrics = line->metrics = cJSON_CreateObject();
    cJSON_AddNumberToObject(metrics, "passages", size);
    cJSON_AddNumberToObject(metrics, "documents", n);
    Lora *before = m->lora, l = {0};
    if (!rc) rc = train_adapter(k, m, &l, ex, n, k->cpt_epochs, k->cpt_batch, k->cpt_lr, seed, metrics, line->why, sizeof line->why, err);
    examples_free(ex, n);
    line->trained = !*line->why;   // diverged: its questions count, each scored 0
    double sum = 0, t0 = now_seconds();
    int questions = 0;
    for (int t = g * size; t < (g + 1) * size && !rc; t++) {
        const Passage *p = &k->eval[t];
        if (!line->trained) { questions += p->n_qs; continue; }
        char **answers;
        double *scores = xcalloc((size_t)p->n_qs, sizeof(double));
        rc = knowledge_answer(k, m, p, &answers, scores, err);
        for (int q = 0; q < p->n_qs && !rc; q++) sum += scores[q];
        if (!rc) squad_free_strings(answers, p->n_qs);
        questions += p->n_qs;
        free(scores);
    }
    model_attach_lora(m, before);
    lora_free(&l);
    if (rc) return -1;
    cJSON_AddNumberToObject(metrics, "questions", questions);
    cJSON_AddNumberToObject(metrics, "seconds_infer", now_seconds() - t0);
    line->reward = questions ? sum / questions : 0.0;
    return 0;
}

// The score of one CPT setting: the question-weighted mean over its groups;
// each group is logged as a line of edits.jsonl (phase "cpt-SOURCE-nN").
static int cpt_row(const Knowledge *k, Model *m, Run *run, const RestemOpts *o, int source, int round, int size, double *score, int *passages, char *err) {
    const Phase phase = PHASE_CPT_PASSAGE + source;
    const int groups = k->n_eval / size;
    double sum = 0;
    int questions = 0;
    for (int g = 0; g < groups; g++) {
        const Edit *done = run_find_group(run, phase, size, round, g, 0);
        if (!done) {
            char name[64];
            phase_name(phase, size, name, sizeof name);
            Edit line = {.phase = phase, .group = size, .round = round, .task = g, .final = 1, .valid = 1, .trained = 1};
            double t0 = now_seconds();
            if (cpt_group(k, m, run, source, round, size, g, fnv1a(o->seed ^ 0xc97ULL, name, strlen(name)) + (uint64_t)g, &line, err)) { edit_free(&line); return -1; }
            line.seconds_total = now_seconds() - t0;
            if (!o->quiet) progress(g + 1 == groups, "[%s] group %d/%d score %.3f", name, g + 1, groups, line.reward);
            if (run_append(run, &line, err)) return -1;
            done = run_find_group(run, phase, size, round, g, 0);
        }
        const int nq = (int)edit_metric(done, "questions");
        sum += done->reward * nq;
        questions += nq;
    }
    if (!o->quiet) progress_end();
    *score = questions ? sum / questions : 0.0;
    *passages = groups * size;
    return 0;
}

// ----------------------------------------------------------------------------
// The report

static const cJSON *find_row(const cJSON *rows, const char *method) {
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(r, "method")->valuestring, method)) return r;
    return NULL;
}

static void copy_row(cJSON *rows, const cJSON *from, const char *method, double paper) {
    if (from) report_row(rows, method, cJSON_GetObjectItemCaseSensitive(from, "ours")->valuedouble, paper, cJSON_GetObjectItemCaseSensitive(from, "n")->valueint);
}

static void add_load(cJSON *report, const char *key, const SquadLoad *log, int used) {
    cJSON *j = cJSON_AddObjectToObject(cJSON_GetObjectItemCaseSensitive(report, "data"), key);
    cJSON_AddNumberToObject(j, "passages_used", used);
    if (!log) return;
    char line[600];
    squad_load_summary(log, line, sizeof line);
    cJSON_AddStringToObject(j, "summary", line);
    cJSON_AddNumberToObject(j, "passages_read", log->kept);
    if (log->selected >= 0) cJSON_AddNumberToObject(j, "passages_selected", log->selected);
    cJSON_AddNumberToObject(j, "questions", log->questions);
    cJSON *sk = cJSON_AddObjectToObject(j, "skipped");
    for (int r = 0; r < SKIP_KINDS; r++) cJSON_AddNumberToObject(sk, SKIP_NAME[r], log->skipped[r]);
    cJSON *notes = cJSON_AddArrayToObject(j, "notes");
    for (int i = 0; i < log->n_notes; i++) cJSON_AddItemToArray(notes, cJSON_CreateString(log->notes[i]));
}

// Mean seconds per sampled self-edit (train and eval phases), and its parts.
static void add_timing(cJSON *report, const Run *run) {
    double n = 0, all = 0, sample = 0, train = 0, infer = 0;
    for (int i = 0; i < run->n_edits; i++) {
        const Edit *e = run->edits[i];
        if ((e->phase != PHASE_TRAIN && e->phase != PHASE_EVAL) || !e->edit) continue;
        n++;
        all += e->seconds_total;
        sample += e->seconds_sample;
        train += edit_metric(e, "seconds_train");
        infer += edit_metric(e, "seconds_infer");
    }
    cJSON *j = cJSON_AddObjectToObject(report, "seconds_per_self_edit");
    cJSON_AddNumberToObject(j, "self_edits", n);
    cJSON_AddNumberToObject(j, "total", n ? all / n : 0);
    cJSON_AddNumberToObject(j, "sampling", n ? sample / n : 0);
    cJSON_AddNumberToObject(j, "training", n ? train / n : 0);
    cJSON_AddNumberToObject(j, "inference", n ? infer / n : 0);
}

int knowledge_run(Knowledge *k, Model *policy, Model *student, Run *run, const RestemOpts *o,
                  const SquadLoad *train_log, const SquadLoad *eval_log, cJSON *report, char *err) {
    Domain d;
    knowledge_domain(&d, k);
    cJSON *raw = cJSON_CreateObject();
    if (restem_run(&d, policy, student, k->tok, run, o, raw, err)) { cJSON_Delete(raw); return -1; }
    if (!ranks_root()) { cJSON_Delete(raw); return 0; }   // a worker rank: its part is done
    const cJSON *raw_rows = cJSON_GetObjectItemCaseSensitive(raw, "rows");
    const char *noun = STYLE_NOUN[k->style];
    char name[160];
    cJSON_AddStringToObject(report, "domain", d.name);
    cJSON_AddStringToObject(report, "grader", GRADER_NAME[k->grader]);
    cJSON_AddStringToObject(report, "grader_about", GRADER_ABOUT[k->grader]);
    cJSON_AddStringToObject(report, "style", STYLE_NAME[k->style]);
    cJSON *rows = cJSON_AddArrayToObject(report, "rows");
    copy_row(rows, find_row(raw_rows, "in-context only, no adaptation"), "base model, no adaptation", d.paper[0]);
    copy_row(rows, find_row(raw_rows, "oracle configuration"), "train on the passage only", d.paper[3]);
    snprintf(name, sizeof name, "passage + base-model %s", noun);
    copy_row(rows, find_row(raw_rows, "self-edits from the untrained policy"), name, d.paper[1]);
    for (int r = 1; r <= o->rounds; r++) {   // the paper's 47.0% is after its two rounds
        snprintf(name, sizeof name, "SEAL, round %d", r);
        copy_row(rows, find_row(raw_rows, name), name, r == 2 ? 0.47 : NAN);
    }
    cJSON_Delete(raw);
    int rc = 0;
    for (int i = 0; i < k->n_cpt_sizes && !rc; i++) {
        int size = k->cpt_sizes[i] < k->n_eval ? k->cpt_sizes[i] : k->n_eval, again = 0;
        for (int j = 0; j < i; j++) again |= size == (k->cpt_sizes[j] < k->n_eval ? k->cpt_sizes[j] : k->n_eval);
        if (again) continue;   // capped to a size already reported
        for (int s = 0; s < CPT_SOURCES && !rc && size > 0; s++) {
            if (!(k->cpt_sources >> s & 1) || (s == CPT_SEAL && o->rounds < 1)) continue;
            int round = s == CPT_SEAL ? o->rounds : 0, passages;
            double score;
            if ((rc = cpt_row(k, student, run, o, s, round, size, &score, &passages, err))) break;
            if (s == CPT_PASSAGE) snprintf(name, sizeof name, "continued pretraining, n=%d: passages only", size);
            else if (s == CPT_BASE) snprintf(name, sizeof name, "continued pretraining, n=%d: passages + base-model %s", size, noun);
            else snprintf(name, sizeof name, "continued pretraining, n=%d: passages + SEAL %s (round %d)", size, noun, round);
            report_row(rows, name, score, s == CPT_SEAL && size == 200 ? 0.582 : NAN, passages);
        }
    }
    cJSON_AddObjectToObject(report, "data");
    add_load(report, "train", train_log, k->n_train);
    add_load(report, "eval", eval_log, k->n_eval);
    add_timing(report, run);
    return rc;
}

void knowledge_report_markdown(const cJSON *report, FILE *out) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(report, "data"), *timing = cJSON_GetObjectItemCaseSensitive(report, "seconds_per_self_edit");
    fprintf(out, "SEAL knowledge incorporation: no-context question answering after each update.\n"
                 "grader: %s (%s)\n\n",
            cJSON_GetObjectItemCaseSensitive(report, "grader")->valuestring, cJSON_GetObjectItemCaseSensitive(report, "grader_about")->valuestring);
    restem_report_markdown(report, out);
    fprintf(out, "\n");
    const char *keys[] = {"train", "eval"};
    for (int i = 0; i < 2; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(data, keys[i]), *s = cJSON_GetObjectItemCaseSensitive(j, "summary"), *note;
        if (!cJSON_IsString(s)) continue;
        fprintf(out, "%s passages: %d used; %s\n", keys[i], cJSON_GetObjectItemCaseSensitive(j, "passages_used")->valueint, s->valuestring);
        cJSON_ArrayForEach(note, cJSON_GetObjectItemCaseSensitive(j, "notes")) fprintf(out, "  %s\n", note->valuestring);
    }
    if (timing && cJSON_GetObjectItemCaseSensitive(timing, "self_edits")->valuedouble > 0)
        fprintf(out, "seconds per self-edit: %.2f (sampling %.2f, training %.2f, answering %.2f) over %.0f self-edits\n",
                cJSON_GetObjectItemCaseSensitive(timing, "total")->valuedouble, cJSON_GetObjectItemCaseSensitive(timing, "sampling")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(timing, "training")->valuedouble, cJSON_GetObjectItemCaseSensitive(timing, "inference")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(timing, "self_edits")->valuedouble);
}
