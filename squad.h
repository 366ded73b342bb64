// squad.h: passages with questions for SEAL's knowledge incorporation
// (SEAL.md "Domain 2"): readers for three formats, the official SQuAD answer
// normalisation and graders, the self-edit and question prompts, and a
// self-edit split into training documents.
#pragma once
#include <stddef.h>
#include "chat.h"
#include "tokenizer.h"

typedef struct {
    char *question;
    char **answers;               // gold answers, at least one, none empty
    int n_answers;
} Question;

typedef struct {
    char *id, *title, *context;   // title may be ""
    Question *qs;                 // at least one
    int n_qs;
    char **completions;           // self-edits stored with the passage (SEAL's synthetic files), often none
    int n_completions;
    int index;                    // the item's place in its file, counting skipped items (squad_select)
} Passage;

// ----------------------------------------------------------------------------
// Readers. squad_read recognises the format from the text:
//   SQuAD v1.1   {"data": [{"title", "paragraphs": [{"context", "qas": [{"question", "answers": [{"text"}]}]}]}]}
//   SEAL         [{"title", "context", "questions": [{"question", "answer"}], "completions"?: [str]}]
//                (data/squad, from data/fetch.sh: squad_val.json, squad_train_seal_subset.json, seal_synthetic/*.json)
//   JSON Lines   one {"id", "title"?, "context", "questions": [{"question", "answers": [str]}]} per line
// Every item form accepts "answers" (strings or {"text"} objects) or "answer" (a string).
// A bad item is skipped, counted under its reason, and described in the first
// notes; only an unreadable file or one that is not JSON at all is an error.

enum { SKIP_MALFORMED, SKIP_EMPTY_CONTEXT, SKIP_NO_QUESTIONS, SKIP_NO_ANSWERS, SKIP_TOO_LONG, SKIP_KINDS };
extern const char *const SKIP_NAME[SKIP_KINDS];   // "malformed item", "empty context", ...

#define SQUAD_NOTES 8
typedef struct {
    const char *format;           // "squad-v1.1", "seal", "jsonl"
    int items, kept, questions;   // passages seen, passages kept, questions kept
    int skipped[SKIP_KINDS];      // questions for SKIP_NO_ANSWERS, else passages
    int selected;                 // passages left by squad_select, -1 when there was no selection
    int n_notes;                  // the first SQUAD_NOTES messages, "FILE: line 3: no questions"
    char notes[SQUAD_NOTES][300];
} SquadLoad;

typedef struct {
    const Tokenizer *tok;         // with max_context_tokens > 0: longer contexts are skipped
    int max_context_tokens;
} SquadReadOpts;

// Reads path into *out (*n passages, malloc'd), log filled. opts may be NULL.
int squad_read(const char *path, const SquadReadOpts *opts, Passage **out, int *n, SquadLoad *log, char *err);
// The same from text in memory; name stands for the file in messages.
int squad_parse(const char *text, size_t len, const char *name, const SquadReadOpts *opts, Passage **out, int *n, SquadLoad *log, char *err);
void squad_free(Passage *p, int n);
void squad_keep(Passage *p, int *n, int max);       // frees the passages past the first max
// Keeps the passages listed, in order, by the index array `key` of a JSON
// object file (SEAL's seal_subsets.json, key "val_eval_200"); indices of
// skipped items are left out. An index beyond the file's items (log->items,
// from its squad_read) or an empty list is an error. Sets log->selected.
int squad_select(Passage **ps, int *n, const char *subset_file, const char *key, SquadLoad *log, char *err);
// One line: "kept 198 of 200 passages (954 questions); skipped: 2 context over the token limit"
void squad_load_summary(const SquadLoad *log, char *out, size_t n);

// ----------------------------------------------------------------------------
// Grading: SQuAD v1.1's evaluate script. normalize = lower case, drop ASCII
// punctuation, drop the articles a/an/the, collapse whitespace. Lower-casing
// covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.

char *squad_normalize(const char *s);                            // malloc'd
double squad_exact(const char *pred, const char *gold);          // 1 or 0
double squad_f1(const char *pred, const char *gold);             // token F1
// GRADE_JUDGE is not squad_grade's: knowledge.c asks a judge model with
// squad_judge_prompt and reads its verdict with squad_judge_yes.
enum { GRADE_EM, GRADE_F1, GRADE_EM_F1, GRADE_CONTAINS, GRADE_JUDGE, GRADERS };
extern const char *const GRADER_NAME[GRADERS];      // "em", "f1", "em-f1", "contains", "judge"
extern const char *const GRADER_ABOUT[GRADERS];     // one line for the report
int squad_grader_parse(const char *name);           // -1 when unknown
// The score of a prediction: max over the gold answers. "contains": the
// normalised gold appears as whole tokens in the normalised prediction (a
// local stand-in for SEAL's lenient judge).
double squad_grade(int grader, const char *pred, char *const *golds, int n_golds);
// SEAL's judge prompt (utils.py SQUAD_GRADE_TEMPLATE, quoted exactly) for a
// question, its gold answer and a prediction (stripped), malloc'd.
char *squad_judge_prompt(const char *question, const char *gold, const char *pred);
// SEAL's parse_yes_no: 1 when the verdict has the word "yes" and not the word
// "no" (whole words, any case), else 0 (ambiguous counts as no).
int squad_judge_yes(const char *verdict);
// The answer in a greedy generation: its first non-empty line, trimmed,
// without a leading "Answer:" (malloc'd).
char *squad_answer_text(const char *generation);

// ----------------------------------------------------------------------------
// Prompts (SEAL's knowledge-incorporation wording, make_squad_data.py and
// utils.py), each rendered as one user message in the model's chat format.

enum { STYLE_IMPLICATIONS, STYLE_IMPLICATIONS_LONG, STYLE_IMPLICATIONS_VERY_LONG, STYLE_REWRITE, STYLE_SELF_QA, STYLES };
extern const char *const STYLE_NAME[STYLES];        // "implications", ..., "rewrite", "self-qa"
extern const char *const STYLE_NOUN[STYLES];        // "implications", ..., "rewrites", "question-answer pairs"
int squad_style_parse(const char *name);            // -1 when unknown

char *squad_chat(ChatFormat f, const char *user);             // the one place prompts meet the chat template
char *squad_selfedit_prompt(const Passage *p, int style, ChatFormat f);        // the passage and the request for a self-edit
char *squad_question_prompt(const Passage *p, const Question *q, ChatFormat f);   // the question, without the passage

// The statements of a self-edit, as SEAL splits them: "---" separates
// segments, each non-empty line is a statement, a first line before a line
// starting "1." is a preamble and dropped; question-answer text splits at each
// "Question N:". Returns the count; *out (malloc'd strings) may be empty.
int squad_split_edit(const char *edit, char ***out);
// The same without the line split (SEAL's build_train_sequences with
// split_newlines off, as CPT.sh runs it): the stripped, non-empty segments between "---".
int squad_split_segments(const char *edit, char ***out);
void squad_free_strings(char **s, int n);
// Copies the stored completions of the passage in from with the same title and
// context into each of ps (SEAL's base_val.json onto squad_val.json's
// passages); returns how many of ps got some.
int squad_attach_completions(Passage *ps, int n, const Passage *from, int n_from);
// A training document: "TITLE\nTEXT" (SEAL's sequence template), or TEXT without a title.
char *squad_document(const Passage *p, const char *text);
