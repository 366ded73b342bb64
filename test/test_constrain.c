// test_constrain.c: grammar-constrained decoding (constrain.h): the automata
// accept and refuse what the validators do, every string they complete
// validates, the token mask is exactly the tokens that keep the text in the
// language, and constrained sampling from a random model always yields a
// valid self-edit (which unconstrained sampling does not).
#include "test.h"
#include "arc.h"
#include "constrain.h"
#include "fewshot.h"
#include "generate.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *oracle_edit(void) {
    static FewShot fs;
    fewshot_defaults(&fs);
    return fs.oracle;
}

static void expect_edit(const char *text, int accepted) {
    SelfEdit se;
    char why[ERR_MAX];
    ck_assert_msg(grammar_accepts(&GRAMMAR_ARC_EDIT, text) == accepted, "arc-edit %s: %s", accepted ? "refused" : "accepted", text);
    if (accepted) ck_assert_msg(selfedit_parse(text, &se, why) == 0, "accepted but invalid: %s: %s", text, why);
}

// The oracle edit with its first `from` replaced by `to`: never accepted.
static void expect_changed(const char *from, const char *to) {
    const char *o = oracle_edit(), *at = strstr(o, from);
    ck_assert_msg(at != NULL, "no %s in the oracle edit", from);
    char text[600];
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - o), o, to, at + strlen(from));
    expect_edit(text, 0);
}

// A self-edit with learning_rate and num_train_epochs written as given.
static void expect_numbers(const char *lr, const char *epochs, int accepted) {
    char text[512];
    snprintf(text, sizeof text, "{\"data_generation\": {\"use_basic_augmentations\": true, \"use_size_augmentations\": false, "
             "\"use_chain_augmentations\": false, \"use_repeat_augmentations\": true}, \"training\": {\"strategy\": "
             "\"train_using_all_tokens\", \"learning_rate\": %s, \"num_train_epochs\": %s}}", lr, epochs);
    expect_edit(text, accepted);
}

START_TEST(edit_grammar_accepts_and_refuses) {
    expect_edit(oracle_edit(), 1);
    for (int k = 0; k < 32; k++) {   // the prompt's layout, every flag combination
        SelfEdit se = {k & 1, k >> 1 & 1, k >> 2 & 1, k >> 3 & 1, k >> 4 & 1, 3e-4f, 1 + k * 31};
        char *j = selfedit_to_json(&se);
        expect_edit(j, 1);
        free(j);
    }
    // keys in another order, compact
    expect_edit("{\"training\":{\"num_train_epochs\":3,\"strategy\":\"train_using_output_tokens\",\"learning_rate\":1e-4},"
                "\"data_generation\":{\"use_repeat_augmentations\":false,\"use_chain_augmentations\":true,"
                "\"use_size_augmentations\":true,\"use_basic_augmentations\":false}}", 1);
    const char *good_lr[] = {"0.0001", "1e-4", "1E-4", "1e-04", "2.5e-05", "0.01", "0.010", "1e-2", "1.0e-2", "0.000001", "1e-6",
                             "9.999e-3", "0.00999", "0.0000015", "5e-3", "0.0012345678"};
    for (size_t i = 0; i < sizeof good_lr / sizeof *good_lr; i++) expect_numbers(good_lr[i], "2", 1);
    // out of range or not forms the grammar writes (the validator may take some: the grammar is a subset)
    const char *bad_lr[] = {"0.1", "0.02", "0.011", "1e-1", "2e-2", "1.1e-2", "1e-7", "9e-7", "0.0000009", "0.0000001", "0", "0.0",
                            "-1e-4", "1e-45", "1e+4", ".001", "00.001", "1e-", "1e", "0.", "\"1e-4\""};
    for (size_t i = 0; i < sizeof bad_lr / sizeof *bad_lr; i++) expect_numbers(bad_lr[i], "2", 0);
    const char *good_ep[] = {"1", "9", "10", "100", "999", "1000"}, *bad_ep[] = {"0", "01", "1001", "1500", "2000", "10000", "1.5", "-1", "2.0", "true"};
    for (size_t i = 0; i < sizeof good_ep / sizeof *good_ep; i++) expect_numbers("1e-4", good_ep[i], 1);
    for (size_t i = 0; i < sizeof bad_ep / sizeof *bad_ep; i++) expect_numbers("1e-4", bad_ep[i], 0);
    // what SmolLM2 writes, and other near misses
    char prose[600];
    snprintf(prose, sizeof prose, "Here is the JSON:\n%s", oracle_edit());
    expect_edit(prose, 0);
    snprintf(prose, sizeof prose, "%s\n", oracle_edit());   // complete at the '}': nothing may follow
    expect_edit(prose, 0);
    snprintf(prose, sizeof prose, "  \n%s", oracle_edit());
    expect_edit(prose, 1);
    expect_edit("{}", 0);
    expect_edit("{\"data_generation\": {}, \"training\": {}}", 0);
    expect_changed("\"use_basic_augmentations\": true", "\"use_basic_augmentations\": true, \"use_basic_augmentations\": true");   // a key twice
    expect_changed(", \"use_repeat_augmentations\": true", "");                                       // a key missing
    expect_changed("\"use_repeat_augmentations\": true", "\"use_repeat_augmentations\": true, \"use_all\": true");   // an invented field
    expect_changed("\"use_basic_augmentations\": true", "\"use_basic_augmentations\": 1");           // not a boolean
    expect_changed("train_using_output_tokens", "train_using_some_tokens");                           // no such strategy
    // a whitespace run of 16 bytes is fine, 17 is not
    ck_assert(grammar_walk(&GRAMMAR_ARC_EDIT, 0, "{                \"", 18) != GRAMMAR_DEAD);
    ck_assert(grammar_walk(&GRAMMAR_ARC_EDIT, 0, "{                 \"", 19) == GRAMMAR_DEAD);
}
END_TEST

START_TEST(grid_grammar_accepts_and_refuses) {
    Rng r;
    rng_seed(&r, 3);
    const int sizes[][2] = {{1, 1}, {1, 30}, {30, 1}, {3, 2}, {2, 3}, {30, 30}, {7, 13}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        Grid g = {.h = sizes[i][0], .w = sizes[i][1]}, back;
        for (int k = 0; k < g.h * g.w; k++) g.c[k] = (uint8_t)(rng_next(&r) % 10);
        char *a = arc_answer(&g);
        ck_assert_msg(grammar_accepts(&GRAMMAR_ARC_GRID, a), "refused %s", a);
        ck_assert(grid_parse(a, &back) == 0 && grid_equal(&g, &back));
        free(a);
    }
    const char *bad[] = {"[[1 2]\n [3]]#", "[[1 2]\n [3 4 5]]#", "[[1 2]]", "[[1 2] [3 4]]#", "[[1  2]]#", "[[12]]#", "[[]]#",
                         "The answer is [[1]]#", "[[1]]#\n", " [[1]]#", "[1 2]#", "[[1 2]\n[3 4]]#", "[[a]]#"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) ck_assert_msg(!grammar_accepts(&GRAMMAR_ARC_GRID, bad[i]), "accepted %s", bad[i]);
    char wide[200] = "[[0", tall[400] = "[[0]";   // 31 a side
    for (int k = 1; k < 31; k++) strcat(wide, " 0");
    strcat(wide, "]]#");
    ck_assert(!grammar_accepts(&GRAMMAR_ARC_GRID, wide));
    for (int k = 1; k < 31; k++) strcat(tall, "\n [0]");
    strcat(tall, "]#");
    ck_assert(!grammar_accepts(&GRAMMAR_ARC_GRID, tall));
    tall[strlen(tall) - 7] = 0;   // 30 rows
    strcat(tall, "]#");
    ck_assert_msg(grammar_accepts(&GRAMMAR_ARC_GRID, tall), "%s", tall);
}
END_TEST

// Random walks over bytes: from every state reached, some byte goes on (no
// dead ends), every walk completes, and what it completes validates.
static void random_walks(const Grammar *g, int n, int max_len) {
    Rng r;
    rng_seed(&r, 7);
    char *text = xcalloc((size_t)max_len + 1, 1);
    for (int w = 0; w < n; w++) {
        uint64_t s = g->start;
        int len = 0;
        while (!g->complete(s)) {
            unsigned char ok[256];
            int n_ok = 0;
            for (int x = 0; x < 256; x++)
                if (g->next(s, (unsigned char)x) != GRAMMAR_DEAD) ok[n_ok++] = (unsigned char)x;
            text[len] = 0;
            ck_assert_msg(n_ok > 0, "%s: a dead end after \"%s\"", g->name, text);
            ck_assert_msg(len < max_len, "%s: no end after %d bytes: %s", g->name, len, text);
            text[len++] = (char)ok[rng_next(&r) % (uint64_t)n_ok];
            s = g->next(s, (unsigned char)text[len - 1]);
        }
        text[len] = 0;
        ck_assert_msg(grammar_accepts(g, text), "%s", text);
        SelfEdit se;
        Grid grid;
        char why[ERR_MAX] = "";
        int valid = g == &GRAMMAR_ARC_EDIT ? selfedit_parse(text, &se, why) == 0 : grid_parse(text, &grid) == 0;
        ck_assert_msg(valid, "%s completed an invalid string: %s (%s)", g->name, text, why);
    }
    free(text);
}

START_TEST(random_walks_complete_and_validate) {
    random_walks(&GRAMMAR_ARC_EDIT, 3000, 4000);
    random_walks(&GRAMMAR_ARC_GRID, 3000, 4000);
}
END_TEST

// A byte-level tokenizer with merges that make tokens spanning the grammars'
// boundaries ("[[", "]\n", "\": ", "0.", "e-0", "true", "},") and ones that
// never fit ("Here").
static Tokenizer *merge_tokenizer(void) {
    static const char *const merges[][2] = {
        {"[", "["}, {"]", "]"}, {"]", "\n"}, {" ", "["}, {"0", " "}, {"1", " "}, {"]]", "#"}, {"\"", ":"}, {"\":", " "},
        {"t", "r"}, {"u", "e"}, {"tr", "ue"}, {"f", "a"}, {"fa", "l"}, {"0", "."}, {"0.", "0"}, {"e", "-"}, {"e-", "0"},
        {"}", ","}, {"\"", ","}, {"_", "a"}, {"H", "e"}, {"He", "r"}, {"Her", "e"}, {"\n", " "}, {"\n ", " "}, {"{", "\n"},
        {"ue", ","}, {"e", ","}, {"\"", "t"}, {"\"t", "r"}, {"4", ","}, {",", " "}, {"2", "}"}, {"2}", "}"}};
    const char *specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    char *json = tok_bytelevel_json(merges, sizeof merges / sizeof *merges, specials, 5), err[ERR_MAX];
    ck_assert(json != NULL);
    Tokenizer *t = tok_load_json(json, "merges.json", err);
    ck_assert_msg(t != NULL, "%s", err);
    free(json);
    return t;
}

// In each state reached by a prefix of text, the constraint allows exactly
// the tokens whose bytes the automaton reads on from there, and the mask
// leaves exactly those finite.
static void expect_exact_masks(Constraint *c, const Tokenizer *t, const char *text, int vocab) {
    const Grammar *g = constraint_grammar(c);
    float *logits = xcalloc((size_t)vocab, sizeof(float));
    for (size_t p = 0; p <= strlen(text); p++) {
        uint64_t s = grammar_walk(g, g->start, text, p);
        ck_assert(s != GRAMMAR_DEAD);
        if (g->complete(s)) break;
        const int *ids;
        int n = constraint_allowed(c, s, &ids), j = 0, count = 0;
        for (int k = 0; k < vocab; k++) {
            const char *bytes;
            int len = tok_token_bytes(t, k, &bytes);
            int fits = len > 0 && grammar_walk(g, s, bytes, (size_t)len) != GRAMMAR_DEAD;
            int listed = j < n && ids[j] == k;
            j += listed;
            count += fits;
            ck_assert_msg(fits == listed, "%s after %zu bytes: token %d (%.*s) %s", g->name, p, k, len > 0 ? len : 0, len > 0 ? bytes : "",
                          fits ? "left out" : "allowed");
        }
        ck_assert_int_eq(j, n);
        ck_assert_msg(count > 0, "nothing allowed after %zu bytes", p);
        // through the per-sequence API: the mask's -inf is exactly the rest
        constraint_begin(c, 1);
        char err[ERR_MAX];
        int *pre, np = tok_encode(t, text, p, 0, &pre, err);
        ck_assert_msg(np >= 0, "%s", err);
        for (int k = 0; k < np; k++) constraint_advance(c, 0, pre[k]);
        free(pre);
        for (int k = 0; k < vocab; k++) logits[k] = 0.5f;
        ck_assert_int_eq(constraint_mask(c, 0, logits), n);
        for (int k = 0, jj = 0; k < vocab; k++) {
            int listed = jj < n && ids[jj] == k;
            jj += listed;
            ck_assert(listed ? logits[k] == 0.5f : logits[k] == -INFINITY);
        }
    }
    free(logits);
}

START_TEST(mask_is_exact_on_a_tiny_tokenizer) {
    Tokenizer *t = merge_tokenizer();
    char err[ERR_MAX];
    const int vocab = tok_vocab_size(t) + 3;   // a model's rows past the tokenizer's ids: never allowed
    Constraint *ce = constraint_new(&GRAMMAR_ARC_EDIT, t, vocab, err), *cg = constraint_new(&GRAMMAR_ARC_GRID, t, vocab, err);
    ck_assert_msg(ce && cg, "%s", err);
    expect_exact_masks(ce, t, oracle_edit(), vocab);
    expect_exact_masks(ce, t, "{\"training\":{\"num_train_epochs\":1000,\"strategy\":\"train_using_output_tokens\",\"learning_rate\":0.00012},"
                              "\"data_generation\":{\"use_repeat_augmentations\":false,\"use_chain_augmentations\":true,"
                              "\"use_size_augmentations\":true,\"use_basic_augmentations\":false}}", vocab);
    expect_exact_masks(cg, t, "[[0 1 2]\n [3 4 5]\n [6 7 8]]#", vocab);
    const int *ids;
    int n = constraint_allowed(ce, GRAMMAR_ARC_EDIT.start, &ids);   // "{", "{\n" and whitespace
    for (int k = 0; k < n; k++) {
        const char *b;
        int len = tok_token_bytes(t, ids[k], &b);
        ck_assert(b[0] == '{' || b[0] == ' ' || b[0] == '\n' || b[0] == '\t' || b[0] == '\r');
        ck_assert(len > 0);
    }
    constraint_free(ce);
    constraint_free(cg);
    tok_free(t);
}
END_TEST

// A known answer, as a model would write it: token by token, each allowed,
// and the constraint is done exactly at its end.
static void expect_token_by_token(const Grammar *g, const Tokenizer *t, const char *text) {
    char err[ERR_MAX];
    const int vocab = tok_vocab_size(t);
    Constraint *c = constraint_new(g, t, vocab, err);
    ck_assert_msg(c != NULL, "%s", err);
    int *ids, n = tok_encode(t, text, strlen(text), 0, &ids, err);
    ck_assert(n > 0);
    float *logits = xcalloc((size_t)vocab, sizeof(float));
    constraint_begin(c, 2);
    for (int k = 0; k < n; k++) {
        ck_assert(!constraint_done(c, 1));
        for (int v = 0; v < vocab; v++) logits[v] = 0;
        ck_assert(constraint_mask(c, 1, logits) > 0);
        ck_assert_msg(isfinite(logits[ids[k]]), "%s: token %d of \"%s\" masked", g->name, k, text);
        constraint_advance(c, 1, ids[k]);
    }
    ck_assert(constraint_done(c, 1));
    ck_assert(!constraint_done(c, 0));   // the other sequence is where it started
    free(logits);
    free(ids);
    constraint_free(c);
}

START_TEST(known_answers_token_by_token) {
    Tokenizer *tm = merge_tokenizer(), *tb = byte_tokenizer();
    expect_token_by_token(&GRAMMAR_ARC_EDIT, tm, oracle_edit());
    expect_token_by_token(&GRAMMAR_ARC_EDIT, tb, oracle_edit());
    SelfEdit se = {1, 0, 1, 0, 1, 2.5e-5f, 7};
    char *j = selfedit_to_json(&se);
    expect_token_by_token(&GRAMMAR_ARC_EDIT, tm, j);
    free(j);
    expect_token_by_token(&GRAMMAR_ARC_GRID, tm, "[[0 1]\n [2 3]\n [9 9]]#");
    expect_token_by_token(&GRAMMAR_ARC_GRID, tb, "[[7]]#");
    tok_free(tm);
    tok_free(tb);
}
END_TEST

// A random tiny model's samples for a prompt: texts[b] (malloc'd).
static void sample_tiny(const Model *m, const Tokenizer *t, Constraint *c, float temperature, int B, char **texts) {
    char err[ERR_MAX];
    int *prompt, n = tok_encode(t, "Write the self-edit:", 20, 0, &prompt, err);
    const int **prompts = xcalloc((size_t)B, sizeof *prompts), eot = tok_find(t, "<|eot_id|>");
    int *lens = xcalloc((size_t)B, sizeof(int)), **out = xcalloc((size_t)B, sizeof(int *)), *out_lens = xcalloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++) prompts[b] = prompt, lens[b] = n;
    SampleOpts o = {.max_new = 2000, .temperature = temperature, .top_p = 1.0f, .seed = 9, .constraint = c};
    ck_assert_msg(generate(m, prompts, lens, B, &o, &eot, 1, NULL, NULL, out, out_lens, err) == 0, "%s", err);
    for (int b = 0; b < B; b++) {
        size_t len;
        int l = out_lens[b] > 0 && out[b][out_lens[b] - 1] == eot ? out_lens[b] - 1 : out_lens[b];
        texts[b] = tok_decode(t, out[b], l, &len, err);
        free(out[b]);
    }
    free(prompt); free(prompts); free(lens); free(out); free(out_lens);
}

START_TEST(constrained_sampling_gives_valid_edits) {
    Tokenizer *t = merge_tokenizer();
    Config cfg = tiny_config(1, 2, 0);
    cfg.vocab = tok_vocab_size(t);
    cfg.max_pos = 2100;   // the longest grid the grammar allows is 1,891 bytes
    cfg.n_layers = 1;
    Model m;
    char err[ERR_MAX], why[ERR_MAX];
    ck_assert_msg(model_init(&m, &cfg, err) == 0, "%s", err);
    model_random(&m, 11, 0.3f);
    Constraint *ce = constraint_new(&GRAMMAR_ARC_EDIT, t, cfg.vocab, err), *cg = constraint_new(&GRAMMAR_ARC_GRID, t, cfg.vocab, err);
    enum { B = 12 };
    char *texts[B];
    SelfEdit se;
    Grid g;
    int valid = 0;
    sample_tiny(&m, t, NULL, 1.0f, B, texts);   // off: the test below could fail
    for (int b = 0; b < B; b++) { valid += selfedit_parse(texts[b], &se, why) == 0 || grid_parse(texts[b], &g) == 0; free(texts[b]); }
    ck_assert_int_eq(valid, 0);
    for (int pass = 0; pass < 2; pass++) {   // sampled, then greedy
        sample_tiny(&m, t, ce, pass ? 0.0f : 1.0f, B, texts);
        for (int b = 0; b < B; b++) {
            ck_assert_msg(selfedit_parse(texts[b], &se, why) == 0, "constrained sample %d invalid: %s\n%s", b, why, texts[b]);
            free(texts[b]);
        }
        sample_tiny(&m, t, cg, pass ? 0.0f : 1.0f, B, texts);
        for (int b = 0; b < B; b++) {
            ck_assert_msg(grid_parse(texts[b], &g) == 0, "constrained grid %d invalid: %s", b, texts[b]);
            free(texts[b]);
        }
    }
    constraint_free(ce);
    constraint_free(cg);
    model_free(&m);
    tok_free(t);
}
END_TEST

// decode() with a constraint must not take the device's greedy shortcut (it
// would never show the host the logits to mask).
typedef struct { Decoder d; const Model *m; KVCache kv; int greedy_calls; } SpyDecoder;
static int spy_open(Decoder *d, int B, int max_T, char *err) { SpyDecoder *s = (SpyDecoder *)d; return kv_init(&s->kv, s->m, B, max_T, err); }
static int spy_prefill(Decoder *d, int B, const int *const *p, const int *lens, float *logits, char *err) {
    SpyDecoder *s = (SpyDecoder *)d;
    return kv_prefill(s->m, &s->kv, B, p, lens, logits, err);
}
static int spy_step(Decoder *d, int n, const int *seqs, const int *tokens, float *logits, char *err) {
    SpyDecoder *s = (SpyDecoder *)d;
    return kv_step(s->m, &s->kv, n, seqs, tokens, logits, err);
}
static int spy_greedy(Decoder *d, int n, const int *seqs, const int *tokens, int *next, char *err) {
    (void)n; (void)seqs; (void)tokens; (void)next;
    ((SpyDecoder *)d)->greedy_calls++;
    return errf(err, "step_greedy called");
}
static void spy_close(Decoder *d) { kv_free(&((SpyDecoder *)d)->kv); }

START_TEST(constraint_skips_device_greedy) {
    Tokenizer *t = byte_tokenizer();
    Config cfg = tiny_config(1, 2, 0);
    cfg.vocab = tok_vocab_size(t);
    cfg.max_pos = 2100;
    Model m;
    char err[ERR_MAX];
    ck_assert_msg(model_init(&m, &cfg, err) == 0, "%s", err);
    model_random(&m, 5, 0.3f);
    Constraint *c = constraint_new(&GRAMMAR_ARC_GRID, t, cfg.vocab, err);
    SpyDecoder s = {.d = {spy_open, spy_prefill, spy_step, spy_greedy, spy_close}, .m = &m};
    int prompt[3] = {65, 66, 67}, *out, out_len, len = 3;
    const int *prompts[1] = {prompt};
    SampleOpts o = {.max_new = 2000, .temperature = 0, .top_p = 1, .constraint = c};
    ck_assert_msg(decode(&s.d, &m.c, prompts, &len, 1, &o, NULL, 0, NULL, NULL, &out, &out_len, err) == 0, "%s", err);
    ck_assert_int_eq(s.greedy_calls, 0);
    size_t n;
    char *text = tok_decode(t, out, out_len, &n, err);
    Grid g;
    ck_assert_msg(grid_parse(text, &g) == 0, "%s", text);
    free(text);
    free(out);
    o.constraint = NULL;   // and without one it does take it
    ck_assert(decode(&s.d, &m.c, prompts, &len, 1, &o, NULL, 0, NULL, NULL, &out, &out_len, err) != 0);
    ck_assert_int_eq(s.greedy_calls, 1);
    free(out);
    constraint_free(c);
    model_free(&m);
    tok_free(t);
}
END_TEST

Suite *constrain_suite(void) {
    Suite *s = suite_create("constrain");
    add_case(s, "constrain", 120, edit_grammar_accepts_and_refuses, grid_grammar_accepts_and_refuses, random_walks_complete_and_validate,
             mask_is_exact_on_a_tiny_tokenizer, known_answers_token_by_token, constrained_sampling_gives_valid_edits,
             constraint_skips_device_greedy);
    return s;
}
