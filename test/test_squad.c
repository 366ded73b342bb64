// test/test_squad.c: the knowledge-incorporation domain: SQuAD graders on
// known cases, the passage readers on good and malformed files, statement
// splitting, prompts and documents, restem's best-per-task filter, and a short
// `seal knowledge` run end to end on a tiny random model, resumed.
#include "test.h"
#include "demo_knowledge.h"
#include "demo_tasks.h"
#include "knowledge.h"
#include "restem.h"
#include "squad.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


// ---------------------------------------------------------------- graders

static void check_norm(const char *in, const char *want) {
    char *got = squad_normalize(in);
    ck_assert_msg(!strcmp(got, want), "normalize(\"%s\") = \"%s\", want \"%s\"", in, got, want);
    free(got);
}

START_TEST(normalisation) {
    check_norm("The Quick, Brown Fox!", "quick brown fox");
    check_norm("An apple a day keeps THE doctor away; theater & a-b", "apple day keeps doctor away theater ab");   // articles only as words
    check_norm("  Denver\t Broncos \n", "denver broncos");
    check_norm("\"8\"", "8");
    check_norm("the", "");
    check_norm("\xc3\x89lan \xc3\x9c" "BER Stra\xc3\x9f" "e", "\xc3\xa9lan \xc3\xbc" "ber stra\xc3\x9f" "e");   // Élan ÜBER Straße
    check_norm("1,000\xc2\xa0km", "1000 km");   // NBSP is whitespace, as in Python
}
END_TEST

START_TEST(exact_match_and_f1) {
    ck_assert_double_eq(squad_exact("the Denver Broncos", "Denver Broncos"), 1.0);
    ck_assert_double_eq(squad_exact("Broncos", "Denver Broncos"), 0.0);
    ck_assert_double_eq_tol(squad_f1("Denver Broncos won", "Denver Broncos"), 0.8, 1e-12);   // p 2/3, r 1
    ck_assert_double_eq_tol(squad_f1("the the cat cat", "cat"), 2.0 / 3.0, 1e-12);          // repeats count once
    // SQuAD dev, Super Bowl 50: a partial answer
    ck_assert_double_eq_tol(squad_f1("Santa Clara, California", "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California"),
                            6.0 / 14.0, 1e-12);
    ck_assert_double_eq(squad_f1("", "Denver"), 0.0);
    ck_assert_double_eq(squad_f1("Paris", "London"), 0.0);
    // several gold answers: the best one counts
    char *golds[] = {"8", "eight", "eight times"};
    ck_assert_double_eq(squad_grade(GRADE_EM, "Eight.", golds, 3), 1.0);
    ck_assert_double_eq(squad_grade(GRADE_EM_F1, "eight", golds, 3), 1.0);
    ck_assert_double_eq_tol(squad_grade(GRADE_F1, "eight games", golds, 3), 2.0 / 3.0, 1e-12);   // "eight": p 1/2, r 1
    char *bronco[] = {"Denver Broncos"};
    ck_assert_double_eq_tol(squad_grade(GRADE_EM_F1, "Denver Broncos won", bronco, 1), 0.4, 1e-12);
    ck_assert_double_eq(squad_grade(GRADE_CONTAINS, "It was the Denver Broncos.", bronco, 1), 1.0);
    ck_assert_double_eq(squad_grade(GRADE_CONTAINS, "Denver", bronco, 1), 0.0);
    ck_assert_int_eq(squad_grader_parse("em-f1"), GRADE_EM_F1);
    ck_assert_int_eq(squad_grader_parse("llm"), -1);
    char *a = squad_answer_text("\n  Answer: Paris \nThe capital"), *b = squad_answer_text("");
    ck_assert_str_eq(a, "Paris");
    ck_assert_str_eq(b, "");
    free(a);
    free(b);
}
END_TEST

// ---------------------------------------------------------------- readers

static int parse(const char *text, Passage **ps, int *n, SquadLoad *log, char *err) {
    return squad_parse(text, strlen(text), "f.json", NULL, ps, n, log, err);
}

START_TEST(reads_squad_v11) {
    const char *text =
        "{\"version\": \"1.1\", \"data\": [{\"title\": \"Super_Bowl_50\", \"paragraphs\": [{\"context\": \"Super Bowl 50 was played in 2016.\", "
        "\"qas\": [{\"id\": \"q1\", \"question\": \"When?\", \"answers\": [{\"answer_start\": 28, \"text\": \"2016\"}, {\"text\": \"in 2016\"}]},"
        " {\"question\": \"What?\", \"answers\": [{\"text\": \"Super Bowl 50\"}]}]}]},"
        " {\"title\": \"Rhine\", \"paragraphs\": [{\"context\": \"The Rhine flows north.\", \"qas\": [{\"question\": \"Which way?\", \"answers\": [{\"text\": \"north\"}]}]},"
        " {\"context\": \"  \", \"qas\": []}]}]}";
    Passage *ps;
    int n;
    SquadLoad log;
    char err[ERR_MAX];
    ck_assert_msg(parse(text, &ps, &n, &log, err) == 0, "%s", err);
    ck_assert_str_eq(log.format, "squad-v1.1");
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(log.items, 3);
    ck_assert_int_eq(log.skipped[SKIP_EMPTY_CONTEXT], 1);
    ck_assert_str_eq(ps[0].title, "Super_Bowl_50");
    ck_assert_int_eq(ps[0].n_qs, 2);
    ck_assert_int_eq(ps[0].qs[0].n_answers, 2);
    ck_assert_str_eq(ps[0].qs[0].answers[1], "in 2016");
    ck_assert_str_eq(ps[1].id, "Rhine/0");
    ck_assert_int_eq(ps[1].index, 1);
    ck_assert_msg(strstr(log.notes[0], "f.json: data[1].paragraphs[1]: empty context"), "%s", log.notes[0]);
    squad_free(ps, n);
}
END_TEST

START_TEST(reads_jsonl_and_skips_bad_items) {
    char long_ctx[400];
    memset(long_ctx, 'x', sizeof long_ctx - 1);
    long_ctx[sizeof long_ctx - 1] = 0;
    char text[2000];
    snprintf(text, sizeof text,
             "{oops\n"                                                                                  // 1 not JSON
             "{\"id\": \"a\", \"context\": \"Release 2.1 adds dark mode.\"}\n"                         // 2 no questions
             "{\"id\": \"b\", \"context\": \"\", \"questions\": [{\"question\": \"Q?\", \"answers\": [\"x\"]}]}\n"   // 3 empty
             "{\"id\": \"c\", \"context\": \"Version 3 drops Python 2.\", \"questions\": [{\"question\": \"Dropped?\", \"answers\": []},"
             " {\"question\": \"What does version 3 drop?\", \"answers\": [\"Python 2\", \"\"]}]}\n"   // 4 one question kept
             "{\"id\": \"d\", \"context\": \"%s\", \"questions\": [{\"question\": \"Q?\", \"answers\": [\"x\"]}]}\n"  // 5 too long
             "[1, 2]\n"                                                                                 // 6 not an object
             "\n"
             "{\"id\": 7, \"questions\": [{\"question\": \"Q?\", \"answers\": [\"x\"]}]}\n"            // 8 no context
             "{\"context\": \"SEAL writes self-edits.\", \"questions\": [{\"question\": \"Who writes?\", \"answer\": \"SEAL\"}]}",   // 9 ok, no id
             long_ctx);
    const char *specials[] = {"<|begin_of_text|>", "<|eot_id|>"};
    char *json = tok_bytelevel_json(NULL, 0, specials, 2), err[ERR_MAX];
    Tokenizer *tok = tok_load_json(json, "bytes.json", err);
    free(json);
    SquadReadOpts ro = {tok, 100};
    Passage *ps;
    int n;
    SquadLoad log;
    ck_assert_msg(squad_parse(text, strlen(text), "notes.jsonl", &ro, &ps, &n, &log, err) == 0, "%s", err);
    ck_assert_str_eq(log.format, "jsonl");
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(log.items, 8);
    ck_assert_int_eq(log.skipped[SKIP_MALFORMED], 3);
    ck_assert_int_eq(log.skipped[SKIP_NO_QUESTIONS], 1);
    ck_assert_int_eq(log.skipped[SKIP_EMPTY_CONTEXT], 1);
    ck_assert_int_eq(log.skipped[SKIP_NO_ANSWERS], 1);
    ck_assert_int_eq(log.skipped[SKIP_TOO_LONG], 1);
    const char *want[] = {"notes.jsonl: line 1: not valid JSON", "notes.jsonl: line 2: no \"questions\" list", "notes.jsonl: line 3: empty context",
                          "notes.jsonl: line 4: question 0: no answers", "notes.jsonl: line 5: context of 399 tokens, over the limit of 100",
                          "notes.jsonl: line 6: not a JSON object", "notes.jsonl: line 8: no \"context\" string"};
    ck_assert_int_eq(log.n_notes, 7);
    for (int i = 0; i < 7; i++) ck_assert_msg(strstr(log.notes[i], want[i]), "note %d: \"%s\", want \"%s\"", i, log.notes[i], want[i]);
    ck_assert_str_eq(ps[0].id, "c");
    ck_assert_int_eq(ps[0].n_qs, 1);
    ck_assert_int_eq(ps[0].qs[0].n_answers, 1);
    ck_assert_str_eq(ps[1].id, "line-9");
    ck_assert_str_eq(ps[1].qs[0].answers[0], "SEAL");
    char line[600];
    squad_load_summary(&log, line, sizeof line);
    ck_assert_msg(strstr(line, "kept 2 of 8 passages (2 questions); skipped: 3 malformed item, 1 empty context"), "%s", line);
    squad_free(ps, n);
    tok_free(tok);
}
END_TEST

START_TEST(unreadable_files_are_errors) {
    Passage *ps;
    int n;
    SquadLoad log;
    char err[ERR_MAX];
    ck_assert_int_eq(parse("hello", &ps, &n, &log, err), -1);
    ck_assert_msg(strstr(err, "f.json: not valid JSON (line 1, column 1)"), "%s", err);
    ck_assert_int_eq(parse("[{\"context\": \"x\",\n \"questions\": [}]", &ps, &n, &log, err), -1);
    ck_assert_msg(strstr(err, "f.json: not valid JSON (line 2"), "%s", err);
    ck_assert_int_eq(parse(" \n ", &ps, &n, &log, err), -1);
    ck_assert_msg(strstr(err, "f.json: empty file"), "%s", err);
    ck_assert_int_eq(parse("{\"version\": 1,\n \"data\": 3}", &ps, &n, &log, err), -1);
    ck_assert_msg(strstr(err, "without a \"data\" list"), "%s", err);
    ck_assert_int_eq(squad_read("/nonexistent/squad.json", NULL, &ps, &n, &log, err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/squad.json: cannot open"), "%s", err);
    // a SEAL list with a bad item still reads
    ck_assert_int_eq(parse("[{\"title\": \"T\", \"context\": \"C\", \"questions\": [{\"question\": \"Q\", \"answer\": \"A\"}]}, 5]", &ps, &n, &log, err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_msg(strstr(log.notes[0], "f.json: [1]: not a JSON object"), "%s", log.notes[0]);
    char path[256];
    temp_dir(path, sizeof path, "squad-subset");
    strcat(path, "/subset.json");
    ck_assert_int_eq(write_file_atomic(path, "{\"val\": [0, 9]}", 15, err), 0);
    ck_assert_int_eq(squad_select(&ps, &n, path, "other", &log, err), -1);
    ck_assert_msg(strstr(err, "subset.json: expected a JSON object with a \"other\" list"), "%s", err);
    ck_assert_int_eq(squad_select(&ps, &n, path, "val", &log, err), -1);   // the file has 2 items: index 9 is another file's
    ck_assert_msg(strstr(err, "subset.json: val[1] = 9, but the passage file holds 2 items"), "%s", err);
    ck_assert_int_eq(n, 1);   // nothing dropped
    ck_assert_int_eq(write_file_atomic(path, "{\"val\": []}", 11, err), 0);
    ck_assert_int_eq(squad_select(&ps, &n, path, "val", &log, err), -1);
    ck_assert_msg(strstr(err, "subset.json: the \"val\" list is empty"), "%s", err);
    ck_assert_int_eq(write_file_atomic(path, "{\"val\": [0, 1]}", 15, err), 0);
    ck_assert_int_eq(squad_select(&ps, &n, path, "val", &log, err), 0);   // index 1 is the item skipped when read
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(log.selected, 1);
    squad_free(ps, n);
}
END_TEST

// The real files of data/squad (SEAL's subsets), when present.
START_TEST(reads_seal_files) {
    const char *d = data_dir("squad/seal_synthetic/iter1_train.json");
    if (!d) return;
    char val[4096], subsets[4096], iter1[4096];
    snprintf(val, sizeof val, "%s/squad/squad_val.json", d);
    snprintf(subsets, sizeof subsets, "%s/squad/seal_subsets.json", d);
    snprintf(iter1, sizeof iter1, "%s/squad/seal_synthetic/iter1_train.json", d);
    Passage *ps;
    int n;
    SquadLoad log;
    char err[ERR_MAX];
    ck_assert_msg(squad_read(val, NULL, &ps, &n, &log, err) == 0, "%s", err);
    ck_assert_str_eq(log.format, "seal");
    ck_assert_int_eq(n, 2067);
    ck_assert_int_eq(log.questions, 10570);
    ck_assert_msg(squad_select(&ps, &n, subsets, "val_eval_200", &log, err) == 0, "%s", err);
    ck_assert_int_eq(n, 200);
    ck_assert_str_eq(ps[0].id, "1168");   // SEAL's first eval passage
    squad_free(ps, n);
    ck_assert_msg(squad_read(iter1, NULL, &ps, &n, &log, err) == 0, "%s", err);
    ck_assert_int_eq(n, 50);
    ck_assert_int_eq(ps[0].n_completions, 5);
    char **st;
    int k = squad_split_edit(ps[0].completions[0], &st);
    ck_assert_int_ge(k, 3);
    squad_free_strings(st, k);
    squad_free(ps, n);
}
END_TEST

// ---------------------------------------------------------------- self-edits

static void check_split(const char *edit, int n, const char *const *want) {
    char **st;
    int k = squad_split_edit(edit, &st);
    ck_assert_msg(k == n, "\"%s\": %d statements, want %d", edit, k, n);
    for (int i = 0; i < n; i++) ck_assert_msg(!strcmp(st[i], want[i]), "statement %d: \"%s\", want \"%s\"", i, st[i], want[i]);
    squad_free_strings(st, k);
}

START_TEST(splits_statements) {
    check_split("Here are some implications:\n1. A holds.\n2. B holds.\n\n  3. C holds.  \n", 3,
                (const char *[]){"1. A holds.", "2. B holds.", "3. C holds."});
    check_split("First view.\n---\nSecond view.\nThird view.", 3, (const char *[]){"First view.", "Second view.", "Third view."});
    check_split("Intro line\nNot numbered", 2, (const char *[]){"Intro line", "Not numbered"});
    check_split("What is SEAL?\nAnswer: a method.\nQuestion 2: Who made it?\nAnswer: MIT.", 2,
                (const char *[]){"Question 1: What is SEAL?\nAnswer: a method.", "Question 2: Who made it?\nAnswer: MIT."});
    check_split("", 0, NULL);
    check_split(" \n---\n \n", 0, NULL);
}
END_TEST

START_TEST(prompts_and_documents) {
    Question q = {.question = "Who writes self-edits?"};
    Passage p = {.id = "x", .title = "SEAL", .context = "SEAL writes its own fine-tuning data.", .qs = &q, .n_qs = 1};
    char *se = squad_selfedit_prompt(&p, STYLE_IMPLICATIONS, CHAT_LLAMA3), *qa = squad_question_prompt(&p, &q, CHAT_LLAMA3);
    ck_assert_msg(strstr(se, "<|start_header_id|>user<|end_header_id|>\n\nLet's read the following passage and produce a list of implications "
                             "derived directly or indirectly from the content.\n\nPassage:\nSEAL\nSEAL writes its own fine-tuning data.\n\nImplications:<|eot_id|>"),
                  "%s", se);
    ck_assert_msg(strstr(qa, "Let's answer a question directly and concisely.\nQuestion: Topic: SEAL\nWho writes self-edits?\nAnswer:<|eot_id|>"), "%s", qa);
    ck_assert_ptr_null(strstr(qa, p.context));   // the question is asked without the passage
    const char *tail = "<|start_header_id|>assistant<|end_header_id|>\n\n";
    ck_assert_str_eq(qa + strlen(qa) - strlen(tail), tail);
    free(se);
    free(qa);
    Knowledge k;
    knowledge_defaults(&k);
    k.tok = byte_tokenizer();
    Example *ex;
    int n, statements;
    char err[ERR_MAX];
    ck_assert_int_eq(knowledge_documents(&k, &p, "Implications:\n1. It learns.\n2. It adapts.", &ex, &n, &statements, err), 0);
    ck_assert_int_eq(statements, 2);
    ck_assert_int_eq(n, 3);   // the statements, then the passage
    ck_assert_int_eq(ex[0].len, 1 + (int)strlen("SEAL\n1. It learns."));
    ck_assert_int_eq(ex[0].ids[0], tok_find(k.tok, "<|begin_of_text|>"));
    ck_assert_int_eq(ex[0].loss[0], 0);
    ck_assert_int_eq(ex[0].loss[1], 1);
    ck_assert_int_eq(ex[2].len, 1 + (int)strlen("SEAL\nSEAL writes its own fine-tuning data."));
    examples_free(ex, n);
    k.with_passage = 0;
    k.max_doc_tokens = 8;
    ck_assert_int_eq(knowledge_documents(&k, &p, "one\ntwo three four five", &ex, &n, &statements, err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ex[1].len, 8);   // cut at max_doc_tokens
    examples_free(ex, n);
    ck_assert_int_eq(knowledge_documents(&k, &p, KNOWLEDGE_PASSAGE_ONLY, &ex, &n, &statements, err), 0);
    ck_assert_int_eq(statements, 0);
    ck_assert_int_eq(n, 1);
    examples_free(ex, n);
    tok_free((Tokenizer *)k.tok);
}
END_TEST


// ---------------------------------------------------------------- fidelity to SEAL's code (docs/FIDELITY.md)

// Item 9: a base model gets SEAL's templates as raw text, nothing around them.
START_TEST(raw_prompts) {
    Question q = {.question = "Who writes self-edits?"};
    Passage p = {.id = "x", .title = "SEAL", .context = "SEAL writes its own fine-tuning data.", .qs = &q, .n_qs = 1};
    char *se = squad_selfedit_prompt(&p, STYLE_IMPLICATIONS, CHAT_RAW), *qa = squad_question_prompt(&p, &q, CHAT_RAW);
    ck_assert_str_eq(se, "Let's read the following passage and produce a list of implications derived directly or indirectly from the content.\n\n"
                         "Passage:\nSEAL\nSEAL writes its own fine-tuning data.\n\nImplications:\n");
    ck_assert_str_eq(qa, "Let's answer a question directly and concisely.\nQuestion: Topic: SEAL\nWho writes self-edits?\nAnswer:\n");
    free(se);
    free(qa);
    ChatFormat f;
    char err[ERR_MAX];
    ck_assert_int_eq(chat_format_parse("raw", &f, err), 0);
    ck_assert_int_eq(f, CHAT_RAW);
    ck_assert_ptr_null(chat_eot(CHAT_RAW));
}
END_TEST

// Item 10: documents open with the tokenizer's BOS only when it has one
// (Qwen2's has none: id 0 would be "!").
START_TEST(bos_only_when_the_tokenizer_has_one) {
    char err[ERR_MAX];
    Tokenizer *q = tok_load("test/qwen2_tokenizer/tokenizer.json", err);
    ck_assert_msg(q != NULL, "%s", err);
    ck_assert_int_eq(tok_bos(q), -1);
    Passage p = {.id = "x", .title = "SEAL", .context = "c"};
    Example e;
    ck_assert_int_eq(knowledge_document(q, &p, "It adapts.", 64, &e, err), 0);
    int *ids, n = tok_encode(q, "SEAL\nIt adapts.", strlen("SEAL\nIt adapts."), 0, &ids, err);
    ck_assert_int_eq(e.len, n);
    ck_assert_int_ne(e.ids[0], 0);
    ck_assert_int_eq(e.ids[0], ids[0]);
    free(ids);
    free(e.ids);
    free(e.loss);
    tok_free(q);
    Tokenizer *b = byte_tokenizer();
    ck_assert_int_eq(tok_bos(b), tok_find(b, "<|begin_of_text|>"));
    tok_free(b);
    const char *d = data_dir("llama3/tokenizer.json");
    if (!d) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", d);
    Tokenizer *l = tok_load(path, err);
    ck_assert_msg(l != NULL, "%s", err);
    ck_assert_int_eq(tok_bos(l), 128000);   // its TemplateProcessing post-processor
    tok_free(l);
}
END_TEST

// Item 17: SEAL's judge prompt, word for word, and its yes/no parse.
START_TEST(judge_prompt_and_verdicts) {
    ck_assert_int_eq(squad_grader_parse("judge"), GRADE_JUDGE);
    char *j = squad_judge_prompt("Topic: SEAL\nWho?", "MIT", "  MIT researchers \n");
    ck_assert_msg(!strncmp(j, "You are a grading assistant. Your job is to determine whether a student's answer correctly answers the question "
                              "based solely on the provided gold answer. Do not use any outside knowledge.", 160), "%s", j);
    ck_assert_msg(strstr(j, "'yes' or 'no'.\n\nQuestion: Topic: SEAL\nWho?\nGold answer: MIT\nStudent answer: MIT researchers\n"
                            "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."), "%s", j);
    free(j);
    ck_assert_int_eq(squad_judge_yes("Yes."), 1);
    ck_assert_int_eq(squad_judge_yes("yes"), 1);
    ck_assert_int_eq(squad_judge_yes("No"), 0);
    ck_assert_int_eq(squad_judge_yes("yes, no"), 0);      // ambiguous: no
    ck_assert_int_eq(squad_judge_yes("yesterday"), 0);    // whole words only
    ck_assert_int_eq(squad_judge_yes(""), 0);
}
END_TEST

// Items 15 and 16: CPT.sh's documents split only at "---"; base_val.json's
// completions attach to SEAL's 200 held-out passages.
START_TEST(cpt_segments_and_stored_completions) {
    char **st;
    int n = squad_split_segments("1. A.\n2. B.\n---\n C. \n---\n \n", &st);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(st[0], "1. A.\n2. B.");
    ck_assert_str_eq(st[1], "C.");
    squad_free_strings(st, n);
    ck_assert_int_eq(squad_split_segments("  ", &st), 0);
    squad_free_strings(st, 0);
    const char *d = data_dir("squad/seal_synthetic/base_val.json");
    if (!d) return;
    char val[4096], subsets[4096], base[4096], err[ERR_MAX];
    snprintf(val, sizeof val, "%s/squad/squad_val.json", d);
    snprintf(subsets, sizeof subsets, "%s/squad/seal_subsets.json", d);
    snprintf(base, sizeof base, "%s/squad/seal_synthetic/base_val.json", d);
    Passage *ps, *bs;
    int np, nb;
    SquadLoad log;
    ck_assert_msg(squad_read(val, NULL, &ps, &np, &log, err) == 0 && squad_select(&ps, &np, subsets, "val_eval_200", &log, err) == 0, "%s", err);
    ck_assert_msg(squad_read(base, NULL, &bs, &nb, &log, err) == 0, "%s", err);
    ck_assert_int_eq(squad_attach_completions(ps, np, bs, nb), 200);
    ck_assert_int_eq(ps[0].n_completions, 5);
    ck_assert_str_eq(ps[0].completions[0], bs[0].completions[0]);   // the same order as SEAL's eval subset
    squad_free(ps, np);
    squad_free(bs, nb);
}
END_TEST

// ---------------------------------------------------------------- restem: best per task

typedef struct { int calls; } Mock;

static char *mock_prompt(const Domain *d, int split, int task) {
    (void)d;
    char buf[160];
    snprintf(buf, sizeof buf, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n%d %d<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", split, task);
    return strdup(buf);
}

static const char *mock_name(const Domain *d, int split, int task) {
    (void)d; (void)split;
    static const char *names[] = {"p0", "p1", "p2"};
    return names[task];
}

// No edit: 0.5 on task 0, 1.0 (unbeatable) on task 1. An edit: a reward from its hash.
static int mock_evaluate_many(const Domain *d, Model *m, int split, int n, const int *task, const char *const *edit, const uint64_t *seed,
                              Outcome *out, char *err) {
    (void)m; (void)split; (void)err; (void)seed;
    for (int i = 0; i < n; i++) {
        ((Mock *)d->ctx)->calls++;
        out[i].metrics = cJSON_CreateObject();
        out[i].valid = 1;
        if (!edit[i]) { out[i].reward = task[i] == 1 ? 1.0f : 0.5f; continue; }
        uint64_t h = fnv1a(1469598103934665603ULL, edit[i], strlen(edit[i]));
        out[i].trained = 1;
        out[i].reward = (float)(h % 5) / 4.0f;
    }
    return 0;
}

static void tiny_model(Model *m, const Tokenizer *t, int layers) {
    Config c = tiny_config(1, 2, 0);
    c.vocab = tok_vocab_size(t);
    c.eos[0] = tok_find(t, "<|eot_id|>");
    c.bos = tok_find(t, "<|begin_of_text|>");
    c.n_layers = layers;
    c.max_pos = 4096;
    char err[ERR_MAX];
    ck_assert_int_eq(model_init(m, &c, err), 0);
    model_random(m, 11, 0.3f);
}

START_TEST(best_per_task_filter) {
    Tokenizer *t = byte_tokenizer();
    Model m;
    tiny_model(&m, t, 1);
    Mock mock = {0};
    Domain d = {.name = "mock", .n_train = 2, .n_eval = 1, .n_probe = 1, .ctx = &mock, .prompt = mock_prompt, .task_name = mock_name,
                .evaluate_many = mock_evaluate_many, .paper = {NAN, NAN, NAN, NAN}};
    RestemOpts o = restem_defaults();
    o.rounds = 1; o.samples = 6; o.eval_samples = 1; o.keep_per_task = 2; o.threshold = 0; o.best_per_task = 1;
    o.sampling.max_new = 8; o.m_epochs = 1; o.m_rank = 2; o.quiet = 1; o.seed = 3;
    char dir[256], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "squad-best");
    cJSON *cfg = cJSON_CreateObject(), *report = cJSON_CreateObject();
    restem_opts_json(&o, cfg);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(cfg, "best_per_task"));
    Run run;
    ck_assert_msg(run_open(&run, dir, cfg, NULL, 0, err) == 0, "%s", err);
    ck_assert_msg(restem_run(&d, &m, &m, t, &run, &o, report, err) == 0, "%s", err);
    // task 0: the two best of its six samples that beat 0.5, best first; task 1: none beats 1.0
    double rewards[6];
    for (int k = 0; k < 6; k++) {
        const Edit *e = run_find(&run, PHASE_TRAIN, 1, 0, k);
        ck_assert_ptr_nonnull(e);
        ck_assert(!e->accepted);   // decided later, in "select" lines
        rewards[k] = e->reward;
    }
    int above = 0;
    double best = -1, second = -1;
    for (int k = 0; k < 6; k++) {
        if (rewards[k] <= 0.5) continue;
        above++;
        if (rewards[k] > best) { second = best; best = rewards[k]; } else if (rewards[k] > second) second = rewards[k];
    }
    for (int rank = 0; rank < 2; rank++) {
        const Edit *s = run_find(&run, PHASE_SELECT, 1, 0, rank);
        if (rank >= above) { ck_assert_ptr_null(s); continue; }
        ck_assert_ptr_nonnull(s);
        ck_assert(s->accepted);
        ck_assert_double_eq(s->reward, rank ? second : best);
        ck_assert_double_eq(s->baseline_reward, 0.5);
    }
    ck_assert_ptr_null(run_find(&run, PHASE_SELECT, 1, 1, 0));
    cJSON *metrics = run_round_metrics(dir, 1);
    ck_assert_int_eq(cJSON_GetObjectItem(metrics, "selected")->valueint, above < 2 ? above : 2);
    ck_assert_int_eq(cJSON_GetObjectItem(metrics, "mstep_examples")->valueint, above < 2 ? above : 2);
    cJSON_Delete(metrics);
    int lines = run.n_edits, calls = mock.calls;
    run_close(&run);
    // resumed: nothing is scored or selected again
    cJSON_Delete(report);
    report = cJSON_CreateObject();
    ck_assert_msg(run_open(&run, dir, cfg, NULL, 1, err) == 0, "%s", err);
    ck_assert_msg(restem_run(&d, &m, &m, t, &run, &o, report, err) == 0, "%s", err);
    ck_assert_int_eq(run.n_edits, lines);
    ck_assert_int_eq(mock.calls, calls);
    run_close(&run);
    cJSON_Delete(cfg);
    cJSON_Delete(report);
    model_free(&m);
    tok_free(t);
}
END_TEST

// ---------------------------------------------------------------- end to end

static const char PASSAGES[] =
    "{\"id\": \"zorb\", \"title\": \"Zorbland\", \"context\": \"Zorbland's capital is Quell. It exports blue salt.\", "
    "\"questions\": [{\"question\": \"What is the capital of Zorbland?\", \"answers\": [\"Quell\"]}, {\"question\": \"What does Zorbland export?\", \"answers\": [\"blue salt\"]}]}\n"
    "{\"id\": \"mip\", \"title\": \"Mip river\", \"context\": \"The Mip river is 40 km long.\", "
    "\"questions\": [{\"question\": \"How long is the Mip river?\", \"answers\": [\"40 km\"]}]}\n"
    "{\"id\": \"tova\", \"title\": \"Tova\", \"context\": \"Tova was founded in 1802 by weavers.\", "
    "\"questions\": [{\"question\": \"Who founded Tova?\", \"answers\": [\"weavers\"]}]}\n"
    "{\"id\": \"bad\", \"context\": \"No questions here.\"}\n";

// A tiny model on bytes, the knowledge defaults and the passages above.
static void knowledge_setup(Tokenizer **t, Model *m, Knowledge *k, Passage **ps, int *n, SquadLoad *log) {
    char err[ERR_MAX];
    *t = byte_tokenizer();
    tiny_model(m, *t, 1);
    knowledge_defaults(k);
    ck_assert_msg(squad_parse(PASSAGES, strlen(PASSAGES), "passages.jsonl", NULL, ps, n, log, err) == 0, "%s", err);
}

// The "in context" row's question carries the passage; the copy leaves the passage's own questions alone.
START_TEST(in_context_passage) {
    char *q = knowledge_in_context_question("Ada founded Velmor.", "Who founded Velmor?");
    ck_assert_str_eq(q, "Ada founded Velmor.\nWho founded Velmor?");
    free(q);
    Question qs[2] = {{.question = "Who founded Velmor?"}, {.question = "When?"}};
    Passage p = {.id = "v", .title = "Velmor", .context = "Ada founded Velmor in 1600.", .qs = qs, .n_qs = 2};
    Passage in = knowledge_in_context(&p);
    ck_assert_int_eq(in.n_qs, 2);
    ck_assert_str_eq(in.qs[1].question, "Ada founded Velmor in 1600.\nWhen?");
    ck_assert_str_eq(p.qs[1].question, "When?");
    knowledge_in_context_free(&in);
}
END_TEST

// The tables' 95% interval: a point for constant data, inside [min, max]
// around the mean, the same for the same seed, narrower for more passages;
// weights give the weighted mean (and all weights 1 the unweighted interval).
START_TEST(bootstrap_interval) {
    double same[8] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, mean, lo, hi;
    bootstrap_mean(same, NULL, 8, 1, &mean, &lo, &hi);
    ck_assert(mean == 0.5 && lo == 0.5 && hi == 0.5);
    double x[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1}, lo2, hi2, m2;
    bootstrap_mean(x, NULL, 10, 7, &mean, &lo, &hi);
    ck_assert_double_eq_tol(mean, 0.5, 1e-12);
    ck_assert_msg(lo > 0.1 && lo < 0.35 && hi > 0.65 && hi < 0.9, "[%g, %g]", lo, hi);   // binomial: about 0.2 to 0.8
    bootstrap_mean(x, NULL, 10, 7, &m2, &lo2, &hi2);
    ck_assert(lo2 == lo && hi2 == hi);   // the same seed, the same interval
    double y[40];
    for (int i = 0; i < 40; i++) y[i] = x[i % 10];
    bootstrap_mean(y, NULL, 40, 7, &m2, &lo2, &hi2);
    ck_assert_msg(hi2 - lo2 < hi - lo, "4x the passages: [%g, %g] is no narrower than [%g, %g]", lo2, hi2, lo, hi);
    double z[6] = {0.1, 0.9, 0.3, 0.3, 0.6, 0.2}, ones[6] = {1, 1, 1, 1, 1, 1}, w[6] = {1, 3, 1, 1, 2, 2};
    bootstrap_mean(z, NULL, 6, 3, &mean, &lo, &hi);
    ck_assert_msg(0.1 <= lo && lo <= mean && mean <= hi && hi <= 0.9, "%g not in [%g, %g] or outside [0.1, 0.9]", mean, lo, hi);
    bootstrap_mean(z, ones, 6, 3, &m2, &lo2, &hi2);
    ck_assert(m2 == mean && lo2 == lo && hi2 == hi);
    bootstrap_mean(z, w, 6, 3, &mean, &lo, &hi);
    ck_assert_double_eq_tol(mean, (0.1 + 2.7 + 0.3 + 0.3 + 1.2 + 0.4) / 10, 1e-12);
    ck_assert_msg(0.1 <= lo && lo <= mean && mean <= hi && hi <= 0.9, "weighted: %g not in [%g, %g]", mean, lo, hi);
    bootstrap_mean(x, NULL, 0, 7, &mean, &lo, &hi);   // no passages: zeros, no division by zero
    ck_assert(mean == 0 && lo == 0 && hi == 0);
}
END_TEST

static int run_knowledge(const char *dir, int resume, cJSON **report_out, int *lines) {
    Tokenizer *t;
    Model m;
    Knowledge k;
    Passage *ps;
    int n;
    char err[ERR_MAX];
    SquadLoad log;
    knowledge_setup(&t, &m, &k, &ps, &n, &log);
    ck_assert_int_eq(n, 3);
    k.tok = t;
    k.train = ps;   // passages 0-1 train, 1-2 held out (overlap is fine for the mechanics)
    k.n_train = 2;
    k.eval = ps + 1;
    k.n_eval = 2;
    k.n_probe = 1;
    k.lora_r = 2;
    k.lora_alpha = 4;
    k.epochs = 1;
    k.max_answer_tokens = 3;
    k.cpt_epochs = 1;
    k.cpt_batch = 2;
    k.in_context = 1;
    RestemOpts o = restem_defaults();
    o.rounds = 1; o.samples = 2; o.eval_samples = 1; o.keep_per_task = 1; o.threshold = 0; o.best_per_task = 1;
    o.sampling.max_new = 8; o.m_rank = 2; o.m_epochs = 1; o.quiet = 1; o.seed = 9;
    cJSON *cfg = cJSON_CreateObject();
    knowledge_config_json(&k, cfg);
    restem_opts_json(&o, cfg);
    Run run;
    ck_assert_msg(run_open(&run, dir, cfg, NULL, resume, err) == 0, "%s", err);
    cJSON *report = cJSON_CreateObject();
    int rc = knowledge_run(&k, &m, &m, &run, &o, &log, &log, report, err);
    ck_assert_msg(rc == 0, "%s", err);
    *lines = run.n_edits;
    run_close(&run);
    cJSON_Delete(cfg);
    *report_out = report;
    squad_free(ps, n);
    model_free(&m);
    tok_free(t);
    return rc;
}

START_TEST(knowledge_end_to_end) {
    char dir[256];
    temp_dir(dir, sizeof dir, "knowledge");
    cJSON *report, *again;
    int lines, lines2;
    run_knowledge(dir, 0, &report, &lines);
    const char *rows[] = {"base model, no adaptation", "train on the passage only", "passage + base-model implications", "SEAL, round 1",
                          KNOWLEDGE_IN_CONTEXT, "continued pretraining, n=1: passages only", "continued pretraining, n=1: passages + base-model implications",
                          "continued pretraining, n=1: passages + SEAL implications (round 1)", "continued pretraining, n=2: passages only",
                          "continued pretraining, n=2: passages + base-model implications",
                          "continued pretraining, n=2: passages + SEAL implications (round 1)"};
    const cJSON *r = cJSON_GetObjectItem(report, "rows");
    ck_assert_int_eq(cJSON_GetArraySize(r), 11);
    for (int i = 0; i < 11; i++) {   // each with its interval over the 2 held-out passages
        const cJSON *row = cJSON_GetArrayItem(r, i), *lo = cJSON_GetObjectItem(row, "ci_low"), *hi = cJSON_GetObjectItem(row, "ci_high");
        ck_assert_str_eq(cJSON_GetObjectItem(row, "method")->valuestring, rows[i]);
        double ours = cJSON_GetObjectItem(row, "ours")->valuedouble;
        ck_assert(ours >= 0 && ours <= 1);
        ck_assert_msg(cJSON_IsNumber(lo) && cJSON_IsNumber(hi) && lo->valuedouble <= ours + 1e-6 && ours <= hi->valuedouble + 1e-6,
                      "%s: %g outside its interval", rows[i], ours);
        ck_assert_int_eq(cJSON_GetObjectItem(row, "passages")->valueint, 2);
        ck_assert_int_ge(cJSON_GetObjectItem(row, "questions")->valueint, 2);
    }
    ck_assert_str_eq(cJSON_GetObjectItem(report, "grader")->valuestring, "em-f1");
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(report, "data"), "eval"), "passages_used")->valueint, 2);
    char *md;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    knowledge_report_markdown(report, f);
    fclose(f);
    ck_assert_msg(strstr(md, "| train on the passage only |") && strstr(md, "| 95% CI |") && strstr(md, "| " KNOWLEDGE_IN_CONTEXT " |") &&
                  strstr(md, "grader: em-f1") && strstr(md, "1 no questions") && strstr(md, "seconds per self-edit"), "%s", md);
    free(md);
    // resumed after completion: the same table, nothing new scored
    run_knowledge(dir, 1, &again, &lines2);
    ck_assert_int_eq(lines2, lines);
    char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(report, "rows")), *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(again, "rows"));
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    cJSON_Delete(report);
    cJSON_Delete(again);
}
END_TEST

// `seal demo knowledge`'s world: seeded, its splits' places disjoint, each a
// passage with three answerable questions in the user format.
START_TEST(demo_world) {
    DemoPlace a, b;
    demo_place(4, DEMO_EVAL, 3, &a);
    demo_place(4, DEMO_EVAL, 3, &b);
    ck_assert_mem_eq(&a, &b, sizeof a);
    for (int i = 0; i < 50; i++) {
        demo_place(4, DEMO_EVAL, i, &a);
        for (int j = 0; j < 200; j++) {
            demo_place(4, DEMO_PRETRAIN, j, &b);
            ck_assert_msg(strcmp(a.name, b.name), "%s is in pretraining and held out", a.name);
        }
    }
    Rng r;
    rng_seed(&r, 1);
    char *line = demo_place_jsonl(&a, &r), err[ERR_MAX];
    Passage *ps;
    int n;
    SquadLoad log;
    ck_assert_msg(squad_parse(line, strlen(line), "demo.jsonl", NULL, &ps, &n, &log, err) == 0, "%s", err);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ps[0].n_qs, DK_FACTS);
    for (int f = 0; f < DK_FACTS; f++) ck_assert_msg(strcasestr(ps[0].context, a.fact[f]), "%s lacks %s", ps[0].context, a.fact[f]);   // "Dye is what ..."
    char *imp = demo_place_implications(&a, &r), **st;
    int k = squad_split_edit(imp, &st);
    ck_assert_int_ge(k, 1);
    ck_assert_msg(!strncmp(st[0], "1. ", 3), "%s", st[0]);
    squad_free_strings(st, k);
    free(imp);
    free(line);
    squad_free(ps, n);
}
END_TEST


// Items 13 and 14: the best self-edit kept whatever the no-edit reward (no
// baseline scored), a fresh training task each round, and round 2's M-step
// continuing round 1's adapter.
static void run_mock(const char *dir, int from_previous, Lora *round2) {
    Tokenizer *t = byte_tokenizer();
    Model m;
    tiny_model(&m, t, 1);
    Mock mock = {0};
    Domain d = {.name = "mock", .n_train = 3, .n_eval = 1, .n_probe = 1, .ctx = &mock, .prompt = mock_prompt, .task_name = mock_name,
                .evaluate_many = mock_evaluate_many, .paper = {NAN, NAN, NAN, NAN}};
    RestemOpts o = restem_defaults();
    o.rounds = 2; o.samples = 2; o.eval_samples = 1; o.keep_per_task = 1; o.threshold = 0; o.best_per_task = 1; o.best_any = 1;
    o.train_per_round = 1; o.train_stride = 1; o.m_from_previous = from_previous;
    o.sampling.max_new = 8; o.m_epochs = 1; o.m_rank = 2; o.quiet = 1; o.seed = 3;
    char err[ERR_MAX];
    cJSON *cfg = cJSON_CreateObject(), *report = cJSON_CreateObject();
    restem_opts_json(&o, cfg);
    Run run;
    ck_assert_msg(run_open(&run, dir, cfg, NULL, 0, err) == 0, "%s", err);
    ck_assert_msg(restem_run(&d, &m, &m, t, &run, &o, report, err) == 0, "%s", err);
    ck_assert_ptr_nonnull(run_find(&run, PHASE_TRAIN, 1, 0, 0));   // round 1: task 0 only
    ck_assert_ptr_null(run_find(&run, PHASE_TRAIN, 1, 1, 0));
    ck_assert_ptr_nonnull(run_find(&run, PHASE_TRAIN, 2, 1, 0));   // round 2: task 1 only
    ck_assert_ptr_null(run_find(&run, PHASE_TRAIN, 2, 0, 0));
    ck_assert_ptr_null(run_find(&run, PHASE_TRAIN_BASELINE, 0, 1, 0));   // best_any scores no baseline
    ck_assert_ptr_nonnull(run_find(&run, PHASE_SELECT, 2, 1, 0));   // kept though no edit beats task 1's 1.0
    char rd[600];
    snprintf(rd, sizeof rd, "%s/rounds/2", dir);
    ck_assert_msg(lora_load(round2, &m.c, rd, err) == 0, "%s", err);
    run_close(&run);
    cJSON_Delete(cfg);
    cJSON_Delete(report);
    model_free(&m);
    tok_free(t);
}

START_TEST(best_any_fresh_tasks_and_continued_policy) {
    char a[256], b[256];
    temp_dir(a, sizeof a, "squad-any-base");
    temp_dir(b, sizeof b, "squad-any-prev");
    Lora fresh = {0}, continued = {0};
    run_mock(a, 0, &fresh);
    run_mock(b, 1, &continued);
    ck_assert_int_eq((int)fresh.params.total, (int)continued.params.total);
    ck_assert_msg(memcmp(fresh.params.mem, continued.params.mem, fresh.params.total * sizeof(float)),
                  "round 2's adapter is the same whether or not it starts from round 1's");
    lora_free(&fresh);
    lora_free(&continued);
}
END_TEST

// Items 12, 16, 17: the mean of several inner loops for a training self-edit
// (one for a held-out one), the stored-completions row, and the judge grader
// named in the table's header.
START_TEST(ttt_runs_stored_row_and_judge) {
    Tokenizer *t;
    Model m;
    Knowledge k;
    Passage *ps;
    int n;
    char err[ERR_MAX];
    SquadLoad log;
    knowledge_setup(&t, &m, &k, &ps, &n, &log);
    k.tok = t; k.train = ps; k.n_train = 1; k.eval = ps + 1; k.n_eval = 1; k.n_probe = 1;
    k.lora_r = 2; k.lora_alpha = 4; k.epochs = 1; k.max_answer_tokens = 3; k.n_cpt_sizes = 0;
    k.ttt_runs = 2;
    Domain d;
    knowledge_domain(&d, &k);
    Outcome out = {0};
    ck_assert_msg(domain_evaluate(&d, &m, SPLIT_TRAIN, 0, "1. Quell is the capital.\n2. Blue salt.", 5, &out, err) == 0, "%s", err);
    const cJSON *each = cJSON_GetObjectItem(out.metrics, "ttt_rewards");
    ck_assert_int_eq(cJSON_GetArraySize(each), 2);
    ck_assert_double_eq_tol(out.reward, (cJSON_GetArrayItem(each, 0)->valuedouble + cJSON_GetArrayItem(each, 1)->valuedouble) / 2, 1e-6);
    cJSON_Delete(out.metrics);
    out = (Outcome){0};
    ck_assert_msg(domain_evaluate(&d, &m, SPLIT_EVAL, 0, "1. It is long.", 5, &out, err) == 0, "%s", err);
    ck_assert_ptr_null(cJSON_GetObjectItem(out.metrics, "ttt_rewards"));   // held out: one inner loop
    cJSON_Delete(out.metrics);
    // the judge: the tiny model itself, raw prompts; a stored completion for the held-out passage
    k.grader = GRADE_JUDGE; k.judge = &m; k.judge_tok = t; k.judge_chat = CHAT_RAW; k.judge_name = "tiny";
    k.stored_k = 1;
    char *c = xstrdup("The Mip river is 40 km long.");
    k.eval[0].completions = &c;
    k.eval[0].n_completions = 1;
    RestemOpts o = restem_defaults();
    o.rounds = 0; o.samples = 1; o.eval_samples = 1; o.sampling.max_new = 4; o.quiet = 1; o.seed = 2;
    char dir[256];
    temp_dir(dir, sizeof dir, "knowledge-judge");
    cJSON *cfg = cJSON_CreateObject(), *report = cJSON_CreateObject();
    knowledge_config_json(&k, cfg);
    Run run;
    ck_assert_msg(run_open(&run, dir, cfg, NULL, 0, err) == 0, "%s", err);
    ck_assert_msg(knowledge_run(&k, &m, &m, &run, &o, NULL, &log, report, err) == 0, "%s", err);
    ck_assert_ptr_nonnull(run_find(&run, PHASE_STORED, 0, 0, 0));
    char *md;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    knowledge_report_markdown(report, f);
    fclose(f);
    ck_assert_msg(strstr(md, "| method | ours (grader: judge tiny) | 95% CI | paper (grader: GPT-4.1 as a yes/no judge) | n | passages | questions |") &&
                  strstr(md, "| passage + SEAL's stored base-model implications"), "%s", md);
    free(md);
    run_close(&run);
    cJSON_Delete(cfg);
    cJSON_Delete(report);
    k.eval[0].completions = NULL;
    k.eval[0].n_completions = 0;
    free(c);
    squad_free(ps, n);
    model_free(&m);
    tok_free(t);
}
END_TEST

Suite *squad_suite(void) {
    Suite *s = suite_create("squad");
    add_case(s, "graders and readers", 0, normalisation, exact_match_and_f1, reads_squad_v11,
             reads_jsonl_and_skips_bad_items, unreadable_files_are_errors, reads_seal_files, splits_statements,
             prompts_and_documents, demo_world, raw_prompts, bos_only_when_the_tokenizer_has_one, judge_prompt_and_verdicts,
             cpt_segments_and_stored_completions, in_context_passage, bootstrap_interval);
    add_case(s, "knowledge", 120, best_per_task_filter, knowledge_end_to_end, best_any_fresh_tasks_and_continued_policy,
             ttt_runs_stored_row_and_judge);
    return s;
}
