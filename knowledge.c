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
#include <limits.h>
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
    k->ttt_runs = 1;
    k->cpt_split_lines = 1;
}

void knowledge_official(Knowledge *k) {
    k->ttt_runs = 3;
    k->cpt_completions = 5;
    k->cpt_split_lines = 0;
    k->cpt_sizes[0] = 200;
    k->n_cpt_sizes = 1;
    k->stored_k = 1;
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
    // absent at the demo's values, so earlier run.json files still match
    if (k->ttt_runs != 1) cJSON_AddNumberToObject(j, "ttt_runs", k->ttt_runs);
    if (k->cpt_completions) cJSON_AddNumberToObject(j, "cpt_completions", k->cpt_completions);
    if (!k->cpt_split_lines) cJSON_AddBoolToObject(j, "cpt_split_lines", 0);
    if (k->stored_k) cJSON_AddNumberToObject(j, "stored_k", k->stored_k);
    if (k->grader == GRADE_JUDGE && k->judge_name) cJSON_AddStringToObject(j, "judge", k->judge_name);
}

static const Passage *passage_of(const Knowledge *k, int split, int task) {
    return split == SPLIT_TRAIN ? &k->train[task] : &k->eval[task];   // the probe reuses the eval passages
}

// ----------------------------------------------------------------------------
// Documents

int knowledge_document(const Tokenizer *tok, const Passage *p, const char *text, int max_tokens, Example *e, char *err) {
    const int bos = tok_bos(tok), head = bos >= 0;   // as the tokenizer encodes a text: Qwen2's puts nothing first
    char *doc = squad_document(p, text);
    int *ids, n = doc ? tok_encode(tok, doc, strlen(doc), 0, &ids, err) : errf(err, "out of memory");
    free(doc);
    if (n < 0) return -1;
    if (n > max_tokens - head) n = max_tokens - head;
    e->len = n + head;
    e->ids = xcalloc((size_t)e->len + 1, sizeof(int));   // at most max_tokens
    e->loss = xmalloc((size_t)e->len + 1);
    if (head) e->ids[0] = bos;
    memcpy(e->ids + head, ids, n * sizeof(int));
    memset(e->loss, 1, e->len);
    e->loss[0] = 0;   // the first token has nothing before it to be predicted from
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
#define JUDGE_MAX_TOKENS 16   // a verdict is "yes" or "no"; a little room for "Yes." and the like

// Where greedy generation stops: the model's eos ids, and the chat format's
// end-of-turn token when the tokenizer has it and they lack it. *n set.
static void stop_ids(const Tokenizer *tok, const Model *m, ChatFormat chat, int stop[9], int *n) {
    *n = 0;
    for (int i = 0; i < m->c.n_eos && *n < 8; i++) stop[(*n)++] = m->c.eos[i];
    const char *eot = chat_eot(chat);
    const int id = eot ? tok_find(tok, eot) : -1;
    for (int i = 0; i < *n; i++)
        if (stop[i] == id) return;
    if (id >= 0) stop[(*n)++] = id;
}

// A prompt's ids: BOS first when the text is raw (a chat template writes its own).
static int encode_prompt(const Tokenizer *tok, ChatFormat chat, const char *text, int **ids, char *err) {
    int *body, n = tok_encode(tok, text, strlen(text), 1, &body, err), bos = chat == CHAT_RAW ? tok_bos(tok) : -1;
    if (n < 0 || bos < 0) { *ids = n < 0 ? NULL : body; return n; }
    *ids = xcalloc((size_t)n + 1, sizeof(int));
    (*ids)[0] = bos;
    memcpy(*ids + 1, body, n * sizeof(int));
    free(body);
    return n + 1;
}

// Greedy generations of m for B prompts (user messages rendered in chat),
// each cut at a stop token and, with stop_line, at its first line; malloc'd.
static int generate_texts(const Knowledge *k, const Model *m, const Tokenizer *tok, ChatFormat chat, char **prompts, int B, int max_new,
                          int stop_line, char **texts, char *err) {
    int *ids[ANSWER_BATCH] = {0}, lens[ANSWER_BATCH], *out[ANSWER_BATCH] = {0}, out_lens[ANSWER_BATCH], seen[ANSWER_BATCH] = {0}, stop[9], n_stop, rc = 0;
    stop_ids(tok, m, chat, stop, &n_stop);
    for (int b = 0; b < B && !rc; b++)
        if ((lens[b] = prompts[b] ? encode_prompt(tok, chat, prompts[b], &ids[b], err) : errf(err, "out of memory")) < 0) rc = -1;
    SampleOpts greedy = {.max_new = max_new, .temperature = 0, .top_p = 1};
    AnswerState st = {tok, seen};
    if (!rc) rc = be_generate(k->be, m, (const int *const *)ids, lens, B, &greedy, stop, n_stop, stop_line ? answer_token : NULL, &st, out, out_lens, err);
    for (int b = 0; b < B && !rc; b++) {
        int n = out_lens[b];
        for (int i = 0; n > 0 && i < n_stop; i++)
            if (out[b][n - 1] == stop[i]) { n--; break; }
        size_t len;
        if (!(texts[b] = tok_decode(tok, out[b], n, &len, err))) rc = -1;
    }
    for (int b = 0; b < B; b++) { free(ids[b]); free(out[b]); }
    if (rc)
        for (int b = 0; b < B; b++) { free(texts[b]); texts[b] = NULL; }
    return rc;
}

// The judge's verdicts (1 yes, 0 no) on a passage's answers, as SEAL's
// TTT_server.py asks them: an empty answer is wrong without asking; the
// question carries its "Topic: TITLE" line and the first gold answer stands for all.
static int judge_scores(const Knowledge *k, const Passage *p, char **answers, double *scores, char *err) {
    int rc = 0;
    for (int q0 = 0; q0 < p->n_qs && !rc; q0 += ANSWER_BATCH) {
        int B = 0, which[ANSWER_BATCH];
        char *prompts[ANSWER_BATCH] = {0}, *verdicts[ANSWER_BATCH] = {0};
        for (int q = q0; q < p->n_qs && q < q0 + ANSWER_BATCH; q++) {
            scores[q] = 0;
            const char *a = answers[q];
            while (isspace((unsigned char)*a)) a++;
            if (!*a) continue;
            char *question, *judge = NULL;
            if (asprintf(&question, "%s%s%s%s", *p->title ? "Topic: " : "", p->title, *p->title ? "\n" : "", p->qs[q].question) < 0) question = NULL;
            if (question) judge = squad_judge_prompt(question, p->qs[q].answers[0], answers[q]);
            free(question);
            prompts[B] = judge ? squad_chat(k->judge_chat, judge) : NULL;
            free(judge);
            which[B++] = q;
        }
        if (B) rc = generate_texts(k, k->judge, k->judge_tok, k->judge_chat, prompts, B, JUDGE_MAX_TOKENS, 0, verdicts, err);
        for (int b = 0; b < B; b++) {
            if (!rc) scores[which[b]] = squad_judge_yes(verdicts[b]);
            free(prompts[b]);
            free(verdicts[b]);
        }
    }
    return rc;
}

int knowledge_answer(const Knowledge *k, const Model *m, const Passage *p, char ***answers, double *scores, char *err) {
    *answers = xcalloc((size_t)p->n_qs, sizeof(char *));
    int rc = 0;
    for (int q0 = 0; q0 < p->n_qs && !rc; q0 += ANSWER_BATCH) {
        int B = p->n_qs - q0 < ANSWER_BATCH ? p->n_qs - q0 : ANSWER_BATCH;
        char *prompts[ANSWER_BATCH] = {0}, *texts[ANSWER_BATCH] = {0};
        for (int b = 0; b < B; b++) prompts[b] = squad_question_prompt(p, &p->qs[q0 + b], k->chat);
        rc = generate_texts(k, m, k->tok, k->chat, prompts, B, k->max_answer_tokens, 1, texts, err);
        for (int b = 0; b < B; b++) {
            if (!rc) (*answers)[q0 + b] = squad_answer_text(texts[b]);
            free(prompts[b]);
            free(texts[b]);
        }
    }
    if (!rc && scores && k->grader == GRADE_JUDGE) rc = k->judge ? judge_scores(k, p, *answers, scores, err) : errf(err, "--grader judge needs --judge MODEL");
    else
        for (int q = 0; q < p->n_qs && !rc; q++)
            if (scores) scores[q] = squad_grade(k->grader, (*answers)[q], p->qs[q].answers, p->qs[q].n_answers);
    if (rc) { squad_free_strings(*answers, p->n_qs); *answers = NULL; }
    return rc;
}

char *knowledge_in_context_question(const char *context, const char *question) {
    char *out;
    return asprintf(&out, "%s\n%s", context, question) < 0 ? NULL : out;
}

Passage knowledge_in_context(const Passage *p) {
    Passage c = *p;
    c.qs = xcalloc((size_t)p->n_qs, sizeof(Question));
    for (int q = 0; q < p->n_qs; q++) {
        c.qs[q] = p->qs[q];
        c.qs[q].question = knowledge_in_context_question(p->context, p->qs[q].question);
    }
    return c;
}

void knowledge_in_context_free(Passage *c) {
    for (int q = 0; q < c->n_qs; q++) free(c->qs[q].question);
    free(c->qs);
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

// The self-edit prompt; a raw one opens with the tokenizer's BOS, written as
// its special token's text (restem encodes prompts with special tokens on).
static char *kn_prompt(const Domain *d, int split, int task) {
    const Knowledge *k = d->ctx;
    char *prompt = squad_selfedit_prompt(passage_of(k, split, task), k->style, k->chat), *out;
    const char *bos;
    const int bos_id = k->chat == CHAT_RAW ? tok_bos(k->tok) : -1, n = bos_id >= 0 ? tok_token_bytes(k->tok, bos_id, &bos) : -1;
    if (!prompt || n <= 0) return prompt;
    if (asprintf(&out, "%.*s%s", n, bos, prompt) < 0) out = NULL;
    free(prompt);
    return out;
}

static const char *kn_name(const Domain *d, int split, int task) {
    return passage_of(d->ctx, split, task)->id;
}

// One self-edit's evaluation, in the stages that let several train together:
// kn_prepare (statements, documents, fresh adapters), the inner loops
// (be_sft_many), kn_finish (answers).
typedef struct {
    const Passage *p;
    Example *ex;                  // the documents
    int n;
    int runs;                     // its inner loops (0: nothing to train: scored, or answered unadapted)
    Lora *l;                      // runs fresh adapters on the student
    SftRun *run;                  // runs inner loops, run[r] training l[r]
} KnEval;

// Parses the edit and builds its documents and inner loops in v; a self-edit
// with nothing to train is scored here (the model as it is answers).
static int kn_prepare(const Knowledge *k, Model *m, int split, int task, const char *edit, uint64_t seed, KnEval *v, Outcome *out, char *err) {
    const Passage *p = v->p = passage_of(k, split, task);
    out->metrics = cJSON_CreateObject();
    if (!edit) { out->valid = 1; return answer_reward(k, m, p, out, err); }
    int statements;
    if (knowledge_documents(k, p, edit, &v->ex, &v->n, &statements, err)) return -1;
    cJSON_AddNumberToObject(out->metrics, "statements", statements);
    cJSON_AddNumberToObject(out->metrics, "documents", v->n);
    if (!statements && strcmp(edit, KNOWLEDGE_PASSAGE_ONLY)) {   // nothing to learn from: no training, the model as it is answers
        snprintf(out->why, sizeof out->why, "the self-edit has no statements");
        return answer_reward(k, m, p, out, err);
    }
    out->valid = 1;
    // SEAL's query_server.sh: a training passage's self-edit is rewarded by the
    // mean of eval_times (3) fresh inner loops; a held-out one by one.
    v->runs = split == SPLIT_TRAIN && k->ttt_runs > 1 ? k->ttt_runs : 1;
    v->l = xcalloc((size_t)v->runs, sizeof *v->l);
    v->run = xcalloc((size_t)v->runs, sizeof *v->run);
    for (int r = 0; r < v->runs; r++) {
        const uint64_t s = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)r;
        if (lora_init(&v->l[r], &m->c, k->lora_r, k->lora_alpha, k->lora_targets)) return errf(err, "out of memory for the inner-loop adapter");
        lora_reset(&v->l[r], s);
        SftOpts so = sft_defaults();
        so.lr = k->lr;
        so.epochs = k->epochs;
        so.batch = k->batch;
        so.seed = s;
        v->run[r] = (SftRun){.ex = v->ex, .n = v->n, .o = so, .lora = &v->l[r]};
    }
    return 0;
}

// After its inner loops: each one's stats, then the answers of the student
// with its adapter attached; the reward is their mean. The first that
// diverged ends it: reward 0, not trained (the later ones count for nothing).
static int kn_finish(const Knowledge *k, Model *m, KnEval *v, Outcome *out, char *err) {
    cJSON *each = v->runs > 1 ? cJSON_CreateArray() : NULL;
    double sum = 0;
    int rc = 0;
    for (int r = 0; r < v->runs && !rc; r++) {
        const SftStats *st = &v->run[r].st;
        if (st->diverged) { sft_diverged_why(st, sft_steps(v->n, k->batch, k->epochs), out->why, sizeof out->why); break; }
        Outcome again = {.metrics = cJSON_CreateObject()}, *into = r ? &again : out;
        cJSON_AddNumberToObject(into->metrics, "steps", st->steps);
        cJSON_AddNumberToObject(into->metrics, "first_loss", st->first_loss);
        cJSON_AddNumberToObject(into->metrics, "last_loss", st->last_loss);
        cJSON_AddNumberToObject(into->metrics, "seconds_train", st->seconds);
        out->trained = 1;
        model_attach_lora(m, &v->l[r]);
        rc = answer_reward(k, m, v->p, into, err);
        sum += into->reward;
        if (each) cJSON_AddItemToArray(each, cJSON_CreateNumber(into->reward));
        cJSON_Delete(again.metrics);
    }
    if (*out->why) out->trained = 0, out->reward = 0;
    else out->reward = (float)(sum / v->runs);
    if (each) cJSON_AddItemToObject(out->metrics, "ttt_rewards", each);
    return rc;
}

// n self-edits (of any passages) at once: every inner loop of each (--ttt-runs
// of a training passage's) trains together over the student's frozen base, a
// pass over all their rows a step (be_sft_many, MAX_ADAPTERS loops a call),
// then each answers with its own adapters. out[i] is what edit i alone (n =
// 1) gives, up to the order of float sums in training.
static int kn_evaluate_many(const Domain *d, Model *m, int split, int n, const int *task, const char *const *edit, const uint64_t *seed,
                            Outcome *out, char *err) {
    const Knowledge *k = d->ctx;
    KnEval *v = xcalloc((size_t)n, sizeof *v);
    Lora *before = m->lora;
    int rc = 0, total = 0;
    for (int i = 0; i < n && !rc; i++) rc = kn_prepare(k, m, split, task[i], edit[i], seed[i], &v[i], &out[i], err);
    for (int i = 0; i < n; i++) total += v[i].runs;
    SftRun *runs = xcalloc((size_t)total + 1, sizeof *runs);
    for (int i = 0, j = 0; i < n; i++)
        for (int r = 0; r < v[i].runs; r++) runs[j++] = v[i].run[r];
    for (int j = 0; j < total && !rc; j += MAX_ADAPTERS) {
        model_attach_lora(m, runs[j].lora);   // the adapters' shape
        rc = be_sft_many(k->be, m, runs + j, total - j < MAX_ADAPTERS ? total - j : MAX_ADAPTERS, err);
    }
    for (int i = 0, j = 0; i < n; i++) {
        for (int r = 0; r < v[i].runs; r++) v[i].run[r].st = runs[j++].st;
        if (!rc && v[i].runs) rc = kn_finish(k, m, &v[i], &out[i], err);
        for (int r = 0; r < v[i].runs; r++) lora_free(&v[i].l[r]);
        examples_free(v[i].ex, v[i].n);
        free(v[i].l);
        free(v[i].run);
    }
    model_attach_lora(m, before);
    free(runs);
    free(v);
    return rc;
}

void knowledge_domain(Domain *d, Knowledge *k) {
    *d = (Domain){.name = "knowledge-squad", .n_train = k->n_train, .n_eval = k->n_eval, .n_probe = k->n_probe, .ctx = k,
                  .prompt = kn_prompt, .task_name = kn_name, .evaluate_many = kn_evaluate_many, .oracle_edit = KNOWLEDGE_PASSAGE_ONLY,
                  .eot = chat_eot(k->chat), .paper = {0.327, 0.397, NAN, 0.335}, .be = k->be};
}

// ----------------------------------------------------------------------------
// Continued pretraining: n held-out passages (and self-edits for them)
// absorbed in one update, then every question of the n answered (SEAL's CPT.py).

// One self-edit's CPT documents: with cpt_split_lines a statement a line (the
// passage follows once per passage, in cpt_group); else as SEAL's CPT.sh
// builds them (build_train_sequences, split_newlines off): each "---" segment
// whole, then the passage.
static int add_cpt_edit(const Knowledge *k, const Passage *p, const char *edit, Example **ex, int *n, char *err) {
    char **st;
    int m = k->cpt_split_lines ? squad_split_edit(edit, &st) : squad_split_segments(edit, &st), rc = add_documents(k, p, st, m, ex, n, err);
    squad_free_strings(st, m);
    if (!rc && !k->cpt_split_lines) rc = add_documents(k, p, &p->context, 1, ex, n, err);
    return rc;
}

// A held-out passage's self-edits for CPT, at most cpt_completions (0: all):
// for "base", the completions stored with the passage (SEAL's base_val.json)
// when it has some, else the base policy's logged ones; for "seal" the logged
// self-edits of the round's held-out evaluation. *used gets their count.
static int add_cpt_edits(const Knowledge *k, const Run *run, int source, int round, int task, Example **ex, int *n, int *used, char *err) {
    const Passage *p = &k->eval[task];
    const int most = k->cpt_completions > 0 ? k->cpt_completions : INT_MAX;
    *used = 0;
    if (source == CPT_BASE && p->n_completions) {
        for (int c = 0; c < p->n_completions && *used < most; c++)
            if (strspn(p->completions[c], " \t\r\n") < strlen(p->completions[c])) {   // SEAL drops empty ones
                if (add_cpt_edit(k, p, p->completions[c], ex, n, err)) return -1;
                (*used)++;
            }
        return 0;
    }
    for (int s = 0; *used < most; s++) {
        const Edit *e = run_find(run, PHASE_EVAL, round, task, s);
        if (!e) return s ? 0 : errf(err, "%s: no logged self-edit of round %d for held-out passage %s", run->dir, round, p->id);
        if (!e->edit || !e->valid) continue;
        if (add_cpt_edit(k, p, e->edit, ex, n, err)) return -1;
        (*used)++;
    }
    return 0;
}

// One group: passages [g*size, (g+1)*size) into one adapter, scored on all their questions.
static int cpt_group(const Knowledge *k, Model *m, const Run *run, int source, int round, int size, int g, uint64_t seed, Edit *line, char *err) {
    Example *ex = NULL;
    int n = 0, rc = 0, completions = 0;
    for (int t = g * size; t < (g + 1) * size && !rc; t++) {
        int used = 0;
        if (source != CPT_PASSAGE) rc = add_cpt_edits(k, run, source, round, t, &ex, &n, &used, err);
        completions += used;
        if (!rc && (k->cpt_split_lines || !used)) rc = add_documents(k, &k->eval[t], &k->eval[t].context, 1, &ex, &n, err);
    }
    cJSON *metrics = line->metrics = cJSON_CreateObject();
    cJSON_AddNumberToObject(metrics, "passages", size);
    cJSON_AddNumberToObject(metrics, "completions", completions);
    cJSON_AddNumberToObject(metrics, "documents", n);
    Lora *before = m->lora, l = {0};
    if (!rc) rc = train_adapter(k, m, &l, ex, n, k->cpt_epochs, k->cpt_batch, k->cpt_lr, seed, metrics, line->why, sizeof line->why, err);
    examples_free(ex, n);
    line->trained = !*line->why;   // diverged: its questions count, each scored 0
    double sum = 0, t0 = now_seconds();
    int questions = 0;
    cJSON *each = cJSON_AddArrayToObject(metrics, "passage_scores");   // for the row's interval over passages
    for (int t = g * size; t < (g + 1) * size && !rc; t++) {
        const Passage *p = &k->eval[t];
        double passage = 0;
        questions += p->n_qs;
        if (line->trained) {
            char **answers;
            double *scores = xcalloc((size_t)p->n_qs, sizeof(double));
            rc = knowledge_answer(k, m, p, &answers, scores, err);
            for (int q = 0; q < p->n_qs && !rc; q++) sum += scores[q], passage += scores[q];
            if (!rc) squad_free_strings(answers, p->n_qs);
            free(scores);
        }
        cJSON_AddItemToArray(each, cJSON_CreateNumber(passage / p->n_qs));
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

static cJSON *copy_row(cJSON *rows, const cJSON *from, const char *method, double paper) {
    if (!from) return NULL;
    return report_row(rows, method, cJSON_GetObjectItemCaseSensitive(from, "ours")->valuedouble, paper, cJSON_GetObjectItemCaseSensitive(from, "n")->valueint);
}

// A row's 95% bootstrap interval over its n passages (x: each one's score, w:
// its weight or NULL), seeded by the row's name: ci_low, ci_high, passages and
// questions (the answers graded: a passage's questions once for each of its lines).
static void add_interval(cJSON *row, const double *x, const double *w, int n, int questions) {
    if (!row || n < 1) return;
    double mean, lo, hi;
    bootstrap_mean(x, w, n, hash_str(cJSON_GetObjectItemCaseSensitive(row, "method")->valuestring), &mean, &lo, &hi);
    cJSON_AddNumberToObject(row, "ci_low", lo);
    cJSON_AddNumberToObject(row, "ci_high", hi);
    cJSON_AddNumberToObject(row, "passages", n);
    cJSON_AddNumberToObject(row, "questions", questions);
}

int knowledge_logged_scores(const Run *run, Phase phase, int round, int tasks, int samples, double *out, int *lines) {
    int found = 0;
    for (int t = 0; t < tasks; t++) {
        double sum = 0;
        int n = 0;
        for (int s = 0; s < samples; s++) {
            const Edit *e = run_find(run, phase, round, t, s);
            if (e) sum += e->reward, n++;
        }
        out[t] = n ? sum / n : 0;
        if (lines) lines[t] = n;
        found += n;
    }
    return found;
}

// The interval of a row made of held-out lines (phase, round, samples
// 0..samples-1): a passage's score is the mean of its lines, as restem and
// stored_row average them; passages without a line are left out.
static void logged_interval(const Knowledge *k, const Run *run, cJSON *row, Phase phase, int round, int samples) {
    double *x = xcalloc((size_t)k->n_eval + 1, sizeof(double));
    int *lines = xcalloc((size_t)k->n_eval + 1, sizeof(int)), n = 0, questions = 0;
    knowledge_logged_scores(run, phase, round, k->n_eval, samples, x, lines);
    for (int t = 0; t < k->n_eval; t++) {
        if (!lines[t]) continue;
        x[n++] = x[t];
        questions += k->eval[t].n_qs * lines[t];
    }
    add_interval(row, x, NULL, n, questions);
    free(lines);
    free(x);
}

// The interval of a continued-pretraining row: its groups' per-passage scores,
// each passage weighted by its questions, as the row's score is. None when a
// group's line lacks them (logged before they were).
static void cpt_interval(const Knowledge *k, const Run *run, cJSON *row, Phase phase, int round, int size) {
    const int groups = k->n_eval / size;
    double *x = xcalloc((size_t)groups * size + 1, sizeof(double)), *w = xcalloc((size_t)groups * size + 1, sizeof(double));
    int n = 0, questions = 0;
    for (int g = 0; g < groups; g++) {
        const Edit *e = run_find_group(run, phase, size, round, g, 0);
        const cJSON *each = e ? cJSON_GetObjectItemCaseSensitive(e->metrics, "passage_scores") : NULL;
        if (cJSON_GetArraySize(each) != size) { n = 0; break; }
        for (int i = 0; i < size; i++, n++) {
            x[n] = cJSON_GetArrayItem(each, i)->valuedouble;
            w[n] = k->eval[g * size + i].n_qs;
            questions += k->eval[g * size + i].n_qs;
        }
    }
    add_interval(row, x, w, n, questions);
    free(x);
    free(w);
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

// "passage + SEAL's stored base-model implications": each held-out passage's
// first stored_k stored completions (SEAL's base_val.json, Qwen2.5-7B's),
// each through the inner loop once, as SEAL's eval_baseline (query_server.sh:
// k 1, eval_times 1). Logged as "stored" lines, so resume skips them. The
// mean over passages of each passage's mean; *passages: those with completions.
static int stored_row(const Knowledge *k, const Domain *d, Model *m, Run *run, const RestemOpts *o, double *score, int *passages, char *err) {
    double sum = 0;
    *passages = 0;
    for (int t = 0; t < k->n_eval; t++) {
        const Passage *p = &k->eval[t];
        const int K = p->n_completions < k->stored_k ? p->n_completions : k->stored_k;
        if (K < 1) continue;
        double mean = 0;
        for (int c = 0; c < K; c++) {
            const Edit *done = run_find(run, PHASE_STORED, 0, t, c);
            if (!done) {
                Edit e = {.phase = PHASE_STORED, .task = t, .sample = c, .final = 1, .task_id = xstrdup(p->id),
                          .seed = fnv1a(o->seed ^ 0x5703edULL, p->id, strlen(p->id)) + (uint64_t)c, .edit = utf8_sanitize(p->completions[c])};
                Outcome out = {0};
                double t0 = now_seconds();
                if (domain_evaluate(d, m, SPLIT_EVAL, t, p->completions[c], e.seed, &out, err)) { cJSON_Delete(out.metrics); edit_free(&e); return -1; }
                edit_take_outcome(&e, &out);
                e.seconds_total = now_seconds() - t0;
                if (!o->quiet) progress(0, "[stored] passage %d/%d completion %d reward %.3f", t + 1, k->n_eval, c + 1, e.reward);
                if (run_append(run, &e, err)) return -1;
                done = run_find(run, PHASE_STORED, 0, t, c);
            }
            mean += done->reward / K;
        }
        sum += mean;
        (*passages)++;
    }
    if (!o->quiet && *passages) progress_end();
    *score = *passages ? sum / *passages : 0.0;
    return 0;
}

// "in context": each held-out passage's questions asked with the passage
// before them (knowledge_in_context), answered by the student with no
// training. Logged as "in-context" lines, so resume skips them; the mean over passages.
static int in_context_row(const Knowledge *k, const Model *m, Run *run, const RestemOpts *o, double *score, char *err) {
    double sum = 0;
    for (int t = 0; t < k->n_eval; t++) {
        const Passage *p = &k->eval[t];
        const Edit *done = run_find(run, PHASE_IN_CONTEXT, 0, t, 0);
        if (!done) {
            Edit e = {.phase = PHASE_IN_CONTEXT, .task = t, .final = 1, .task_id = xstrdup(p->id)};
            Outcome out = {.valid = 1, .metrics = cJSON_CreateObject()};
            Passage in = knowledge_in_context(p);
            double t0 = now_seconds();
            int rc = answer_reward(k, m, &in, &out, err);
            knowledge_in_context_free(&in);
            edit_take_outcome(&e, &out);
            if (rc) { edit_free(&e); return -1; }
            e.seconds_total = now_seconds() - t0;
            if (!o->quiet) progress(0, "[in-context] passage %d/%d reward %.3f", t + 1, k->n_eval, e.reward);
            if (run_append(run, &e, err)) return -1;
            done = run_find(run, PHASE_IN_CONTEXT, 0, t, 0);
        }
        sum += done->reward;
    }
    if (!o->quiet && k->n_eval) progress_end();
    *score = k->n_eval ? sum / k->n_eval : 0.0;
    return 0;
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
    if (k->grader == GRADE_JUDGE && k->judge_name) cJSON_AddStringToObject(report, "judge", k->judge_name);
    cJSON_AddStringToObject(report, "paper_grader", KNOWLEDGE_PAPER_GRADER);
    cJSON_AddStringToObject(report, "style", STYLE_NAME[k->style]);
    cJSON_AddStringToObject(report, "interval", "percentile bootstrap over held-out passages, 2000 resamples");
    cJSON *rows = cJSON_AddArrayToObject(report, "rows");
    cJSON *row = copy_row(rows, find_row(raw_rows, "in-context only, no adaptation"), "base model, no adaptation", d.paper[0]);
    logged_interval(k, run, row, PHASE_BASELINE, 0, 1);
    row = copy_row(rows, find_row(raw_rows, "oracle configuration"), "train on the passage only", d.paper[3]);
    logged_interval(k, run, row, PHASE_ORACLE, 0, 1);
    snprintf(name, sizeof name, "passage + base-model %s", noun);
    row = copy_row(rows, find_row(raw_rows, "self-edits from the untrained policy"), name, d.paper[1]);
    logged_interval(k, run, row, PHASE_EVAL, 0, o->eval_samples);
    for (int r = 1; r <= o->rounds; r++) {   // the paper's 47.0% is after its two rounds
        snprintf(name, sizeof name, "SEAL, round %d", r);
        row = copy_row(rows, find_row(raw_rows, name), name, r == 2 ? 0.47 : NAN);
        logged_interval(k, run, row, PHASE_EVAL, r, o->eval_samples);
    }
    cJSON_Delete(raw);
    int rc = 0, stored;
    double score;
    if (k->stored_k > 0 && !(rc = stored_row(k, &d, student, run, o, &score, &stored, err)) && stored) {
        snprintf(name, sizeof name, "passage + SEAL's stored base-model %s (Qwen2.5-7B, first %d a passage)", noun, k->stored_k);
        logged_interval(k, run, report_row(rows, name, score, d.paper[1], stored), PHASE_STORED, 0, k->stored_k);
    }
    if (!rc && k->in_context && !(rc = in_context_row(k, student, run, o, &score, err)))
        logged_interval(k, run, report_row(rows, KNOWLEDGE_IN_CONTEXT, score, NAN, k->n_eval), PHASE_IN_CONTEXT, 0, 1);
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
            cpt_interval(k, run, report_row(rows, name, score, s == CPT_SEAL && size == 200 ? 0.582 : NAN, passages), PHASE_CPT_PASSAGE + s, round, size);
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
    const char *grader = cJSON_GetObjectItemCaseSensitive(report, "grader")->valuestring;
    const cJSON *judge = cJSON_GetObjectItemCaseSensitive(report, "judge"), *pg = cJSON_GetObjectItemCaseSensitive(report, "paper_grader");
    const char *paper_grader = cJSON_IsString(pg) ? pg->valuestring : KNOWLEDGE_PAPER_GRADER;
    char ours[400];
    if (cJSON_IsString(judge)) snprintf(ours, sizeof ours, "ours (grader: judge %s)", judge->valuestring);
    else snprintf(ours, sizeof ours, "ours (grader: %s)", grader);
    fprintf(out, "SEAL knowledge incorporation: no-context question answering after each update.\n"
                 "grader: %s (%s)\n",
            grader, cJSON_GetObjectItemCaseSensitive(report, "grader_about")->valuestring);
    if (strcmp(grader, "judge"))
        fprintf(out, "the paper's column was graded by %s, ours by %s: different graders, not the same measure\n", paper_grader, grader);
    else fprintf(out, "the paper's column was graded by %s, ours by a local judge model with the same prompt\n", paper_grader);
    const cJSON *interval = cJSON_GetObjectItemCaseSensitive(report, "interval");
    if (cJSON_IsString(interval)) fprintf(out, "95%% CI: %s; questions: the answers graded (a passage's questions once a self-edit)\n", interval->valuestring);
    fprintf(out, "\n| method | %s | 95%% CI | paper (grader: %s) | n | passages | questions |\n|---|---|---|---|---|---|---|\n", ours, paper_grader);
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(report, "rows")) {
        const cJSON *paper = cJSON_GetObjectItemCaseSensitive(r, "paper"), *passages = cJSON_GetObjectItemCaseSensitive(r, "passages"),
                    *questions = cJSON_GetObjectItemCaseSensitive(r, "questions");
        char p[32] = "-", ci[48], np[16] = "-", nq[16] = "-";
        if (cJSON_IsNumber(paper)) snprintf(p, sizeof p, "%.1f%%", 100 * paper->valuedouble);
        report_row_interval(r, ci, sizeof ci);
        if (cJSON_IsNumber(passages)) snprintf(np, sizeof np, "%d", passages->valueint);
        if (cJSON_IsNumber(questions)) snprintf(nq, sizeof nq, "%d", questions->valueint);
        fprintf(out, "| %s | %.1f%% | %s | %s | %d | %s | %s |\n", cJSON_GetObjectItemCaseSensitive(r, "method")->valuestring,
                100 * cJSON_GetObjectItemCaseSensitive(r, "ours")->valuedouble, ci, p, cJSON_GetObjectItemCaseSensitive(r, "n")->valueint, np, nq);
    }
    const cJSON *diverged = cJSON_GetObjectItemCaseSensitive(report, "diverged");
    if (cJSON_IsNumber(diverged))
        fprintf(out, "\n%d self-edits' training diverged (a NaN or Inf loss): counted as not trained, reward 0 (edits.jsonl \"why\")\n", diverged->valueint);
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
