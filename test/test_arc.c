// test_arc.c: the ARC domain: transforms and their inverses, test-time-training
// data, prompts, self-edit parsing, augmented inference and voting, and
// loading real and malformed task files.
#include "test.h"
#include "arc.h"
#include "fewshot.h"
#include "tokenizer.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------- helpers

static const char *arc_data(void) {
    const char *d = data_dir("arc/training");
    static char path[1024];   // short, so the paths built from it always fit
    if (!d) return NULL;
    snprintf(path, sizeof path, "%s/arc", d);
    return path;
}

static void random_grid(Rng *r, int h, int w, Grid *g) {
    g->h = h;
    g->w = w;
    for (int k = 0; k < h * w; k++) g->c[k] = (uint8_t)(rng_next(r) % 10);
}

static Rng seeded(uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    return r;
}

static int rand_in(Rng *r, int lo, int hi) { return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1)); }

// A grid from numpy-style text; the test fails on a typo.
static Grid G(const char *text) {
    Grid g;
    ck_assert_msg(grid_parse(text, &g) == 0, "bad grid literal %s", text);
    return g;
}

// A task of n random pairs of size h x w (distinct with overwhelming odds).
static Task random_task(Rng *r, int n, int h, int w) {
    Task t = {.n_train = n, .n_test = 1};
    strcpy(t.id, "random");
    t.train = calloc((size_t)n, sizeof(Pair));
    t.test = calloc(1, sizeof(Pair));
    for (int i = 0; i < n; i++) {
        random_grid(r, h, w, &t.train[i].in);
        random_grid(r, h, w, &t.train[i].out);
    }
    random_grid(r, h, w, &t.test[0].in);
    random_grid(r, h, w, &t.test[0].out);
    return t;
}

static int pair_equal(const Pair *a, const Pair *b) { return grid_equal(&a->in, &b->in) && grid_equal(&a->out, &b->out); }

static int examples_equal(const TttExample *a, const TttExample *b) {
    if (a->n_demos != b->n_demos || !pair_equal(&a->query, &b->query)) return 0;
    for (int i = 0; i < a->n_demos; i++)
        if (!pair_equal(&a->demos[i], &b->demos[i])) return 0;
    return 1;
}

// arc_ttt_examples, which must succeed: the examples and their count in *n.
static TttExample *examples(const Task *t, const SelfEdit *se, Rng *r, int *n) {
    TttExample *ex;
    ck_assert_int_eq(arc_ttt_examples(t, se, r, &ex, n), 0);
    return ex;
}

static void assert_unique(const TttExample *ex, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) ck_assert_msg(!examples_equal(&ex[i], &ex[j]), "examples %d and %d are equal", i, j);
}

static void assert_fit(const TttExample *ex, int n) {
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < ex[i].n_demos; k++)
            ck_assert(grid_valid(&ex[i].demos[k].in) && grid_valid(&ex[i].demos[k].out));
        ck_assert(grid_valid(&ex[i].query.in) && grid_valid(&ex[i].query.out));
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

// ---------------------------------------------------------------- transforms

// Each transform of [[1 2 3] [4 5 6]], checked against numpy (rot90, flipud,
// concatenate, repeat) by hand.
START_TEST(transforms_match_numpy) {
    static const struct { Tf tf; const char *want; } cases[] = {
        {TF_IDENTITY, "[[1 2 3] [4 5 6]]"},
        {TF_ROT90, "[[3 6] [2 5] [1 4]]"},
        {TF_ROT180, "[[6 5 4] [3 2 1]]"},
        {TF_ROT270, "[[4 1] [5 2] [6 3]]"},
        {TF_FLIP_UD, "[[4 5 6] [1 2 3]]"},
        {TF_FLIP_LR, "[[3 2 1] [6 5 4]]"},
        {TF_TRANSPOSE, "[[1 4] [2 5] [3 6]]"},
        {TF_ANTI_TRANSPOSE, "[[6 3] [5 2] [4 1]]"},
        {TF_MIRROR_UP, "[[4 5 6] [1 2 3] [1 2 3] [4 5 6]]"},
        {TF_MIRROR_DOWN, "[[1 2 3] [4 5 6] [4 5 6] [1 2 3]]"},
        {TF_MIRROR_LEFT, "[[3 2 1 1 2 3] [6 5 4 4 5 6]]"},
        {TF_MIRROR_RIGHT, "[[1 2 3 3 2 1] [4 5 6 6 5 4]]"},
        {TF_UPSCALE2, "[[1 1 2 2 3 3] [1 1 2 2 3 3] [4 4 5 5 6 6] [4 4 5 5 6 6]]"},
        {TF_HEIGHT2, "[[1 2 3] [1 2 3] [4 5 6] [4 5 6]]"},
        {TF_WIDTH2, "[[1 1 2 2 3 3] [4 4 5 5 6 6]]"},
        {TF_TILE_V2, "[[1 2 3] [4 5 6] [1 2 3] [4 5 6]]"},
        {TF_TILE_H2, "[[1 2 3 1 2 3] [4 5 6 4 5 6]]"},
        {TF_TILE_2X2, "[[1 2 3 1 2 3] [4 5 6 4 5 6] [1 2 3 1 2 3] [4 5 6 4 5 6]]"},
    };
    ck_assert_int_eq(sizeof cases / sizeof *cases, TF_COUNT);
    Grid g = G("[[1 2 3]\n [4 5 6]]"), out;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_int_eq(grid_apply(&g, cases[i].tf, &out), 0);
        Grid want = G(cases[i].want);
        ck_assert_msg(grid_equal(&out, &want), "%s is wrong", tf_name(cases[i].tf));
    }
    Grid rolled, want = G("[[5 6 4] [2 3 1]]");   // np.roll(g, (1, 2), axis=(0, 1))
    grid_roll(&g, 1, 2, &rolled);
    ck_assert(grid_equal(&rolled, &want));
}
END_TEST

START_TEST(every_transform_inverts) {
    Rng r = seeded(7);
    for (int trial = 0; trial < 300; trial++) {
        Grid g, t, back;
        random_grid(&r, rand_in(&r, 1, GRID_MAX), rand_in(&r, 1, GRID_MAX), &g);
        for (int tf = 0; tf < TF_COUNT; tf++) {
            ck_assert_msg(grid_apply(&g, (Tf)tf, &t) == 0, "%s of %dx%d", tf_name((Tf)tf), g.h, g.w);
            ck_assert_msg(grid_invert(&t, (Tf)tf, &back) == 0 && grid_equal(&back, &g),
                          "%s does not invert on %dx%d", tf_name((Tf)tf), g.h, g.w);
        }
        int dy = rand_in(&r, -40, 40), dx = rand_in(&r, -40, 40);
        grid_roll(&g, dy, dx, &t);
        grid_roll(&t, -dy, -dx, &back);
        ck_assert_msg(grid_equal(&back, &g), "roll (%d, %d) does not invert", dy, dx);
    }
}
END_TEST

START_TEST(invert_refuses_non_images) {
    Grid g = G("[[1 2] [3 4]]"), out;
    ck_assert_int_eq(grid_invert(&g, TF_UPSCALE2, &out), -1);     // 2x2 blocks differ
    ck_assert_int_eq(grid_invert(&g, TF_MIRROR_DOWN, &out), -1);  // halves are not mirrors
    ck_assert_int_eq(grid_invert(&g, TF_TILE_H2, &out), -1);
    Grid odd = G("[[1 1] [1 1] [1 1]]");
    ck_assert_int_eq(grid_invert(&odd, TF_HEIGHT2, &out), -1);    // 3 rows cannot be doubled ones
    ck_assert_int_eq(grid_invert(&odd, TF_WIDTH2, &out), 0);
}
END_TEST

START_TEST(color_permutations_keep_zero_and_invert) {
    Rng r = seeded(3);
    int moved = 0;
    for (int trial = 0; trial < 200; trial++) {
        uint8_t perm[10], inv[10], seen[10] = {0};
        color_perm_random(&r, perm);
        ck_assert_int_eq(perm[0], 0);
        for (int c = 0; c < 10; c++) { ck_assert(perm[c] <= 9); seen[perm[c]]++; moved += perm[c] != c; }
        for (int c = 0; c < 10; c++) ck_assert_int_eq(seen[c], 1);
        color_perm_invert(perm, inv);
        Grid g, p, back;
        random_grid(&r, rand_in(&r, 1, 30), rand_in(&r, 1, 30), &g);
        grid_recolor(&g, perm, &p);
        for (int k = 0; k < g.h * g.w; k++) ck_assert(g.c[k] != 0 || p.c[k] == 0);
        grid_recolor(&p, inv, &back);
        ck_assert(grid_equal(&back, &g));
    }
    ck_assert_int_gt(moved, 1000);   // they do permute
}
END_TEST

// ---------------------------------------------------------------- prompts and answers

START_TEST(answer_round_trips) {
    Rng r = seeded(11);
    for (int trial = 0; trial < 200; trial++) {
        Grid g, back;
        random_grid(&r, rand_in(&r, 1, 30), rand_in(&r, 1, 30), &g);
        char *text = arc_answer(&g);
        ck_assert_int_eq(grid_parse(text, &back), 0);
        ck_assert(grid_equal(&back, &g));
        free(text);
    }
    Grid g = G("[[1 2 3] [4 5 6]]");
    char *text = arc_answer(&g);
    ck_assert_str_eq(text, "[[1 2 3]\n [4 5 6]]#");
    free(text);
    ck_assert_int_eq(grid_parse("  [[7]]  \n", &g), 0);   // footer optional, whitespace around
    ck_assert(g.h == 1 && g.w == 1 && g.c[0] == 7);
    ck_assert_int_eq(grid_parse("[[1  2]\n [3 4]]#\n", &g), 0);   // SEAL collapses double spaces
}
END_TEST

START_TEST(malformed_answers) {
    static const char *bad[] = {
        "", "#", "[[]]", "[[1 2]\n [3]]", "[[1 2]\n [3 4 5]]", "[[1 12]]", "[[1 a]]", "[[1 2]",
        "[[1 2]] extra", "[[1 2]]##", "[[1,2],[3,4]]", "1 2\n3 4", "[[1 -2]]", "[1 2]",
        "[[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0]]",   // 31 columns
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Grid g;
        ck_assert_msg(grid_parse(bad[i], &g) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(g.h, 0);
    }
    char tall[400] = "[";   // 31 rows
    for (int i = 0; i < 31; i++) strcat(tall, i ? " [1]" : "[1]");
    strcat(tall, "]");
    Grid g;
    ck_assert_int_eq(grid_parse(tall, &g), -1);
    tall[strlen(tall) - 5] = ']';   // 30 rows
    tall[strlen(tall) - 4] = 0;
    ck_assert_int_eq(grid_parse(tall, &g), 0);
    ck_assert_int_eq(g.h, 30);
}
END_TEST

START_TEST(prompt_format) {
    Pair demo = {G("[[1 2]]"), G("[[2 1]]")};
    Grid query = G("[[3 4] [5 6]]");
    char *p = arc_prompt(&demo, 1, &query, CHAT_LLAMA3);
    ck_assert_str_eq(p,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "Figure out the underlying transformation in the following examples and apply it to the test case. "
        "Here are some examples from this transformation, your answer must follow the format.\n"
        "The input-output grids are provided as python arrays:\n"
        "[[1 2]] -> [[2 1]]#<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n[[3 4]\n [5 6]] -><|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(p);
}
END_TEST

// The self-edit prompt of a two-pair task: SEAL's system message, and how the
// user turn starts and ends, in every chat format.
static Task selfedit_task(Pair train[2]) {
    train[0] = (Pair){G("[[1 2]]"), G("[[3]]")};
    train[1] = (Pair){G("[[4] [5]]"), G("[[6 7] [8 9]]")};
    return (Task){.id = "x", .n_train = 2, .train = train};
}
#define SE_SYSTEM "You are a helpful assistant that provide the correct output for the given task immediately."
#define SE_USER_HEAD "Input:\n1 2\n\nOutput:\n3\n\nInput:\n4\n5\n\nOutput:\n6 7\n8 9\n\n------\n\n\n" \
                     "You are configuring a model training pipeline by selecting from predefined tools.\n\n"
#define SE_USER_TAIL "    \"num_train_epochs\": ...\n  }\n}\n"

// p starts with head and ends with tail.
static void expect_ends(const char *p, const char *head, const char *tail) {
    ck_assert_msg(strncmp(p, head, strlen(head)) == 0, "head:\n%s", p);
    ck_assert_str_eq(p + strlen(p) - strlen(tail), tail);
}

START_TEST(selfedit_prompt_format) {
    Pair train[2];
    Task t = selfedit_task(train);
    char *p = arc_selfedit_prompt(&t, CHAT_LLAMA3);
    expect_ends(p,
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" SE_SYSTEM "<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n" SE_USER_HEAD,
                SE_USER_TAIL "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    ck_assert(strstr(p, "Today Date") == NULL);   // SEAL writes this prompt by hand, without dates
    ck_assert(strstr(p, "1. **Data Generation Tools** \xe2\x80\x94 For each") != NULL);
    free(p);
}
END_TEST

// ChatML (SmolLM2, Qwen): the same two messages, untrimmed, each closed by
// <|im_end|> and a newline, then the opening of the assistant turn; no
// Llama-3 token and no date lines. SmolLM2's default system turn is not added
// (the prompt has a system message of its own).
START_TEST(prompt_format_chatml) {
    Pair demo = {G("[[1 2]]"), G("[[2 1]]")};
    Grid query = G("[[3 4] [5 6]]");
    const char *want =
        "<|im_start|>system\n"
        "Figure out the underlying transformation in the following examples and apply it to the test case. "
        "Here are some examples from this transformation, your answer must follow the format.\n"
        "The input-output grids are provided as python arrays:\n"
        "[[1 2]] -> [[2 1]]#\n<|im_end|>\n"
        "<|im_start|>user\n[[3 4]\n [5 6]] -> <|im_end|>\n"
        "<|im_start|>assistant\n";
    for (ChatFormat f = CHAT_CHATML; f <= CHAT_SMOLLM2; f++) {
        char *p = arc_prompt(&demo, 1, &query, f);
        ck_assert_str_eq(p, want);
        free(p);
    }
}
END_TEST

// The body of the user turn: from after `open` to before `close`, malloc'd.
static char *between(const char *text, const char *open, const char *close) {
    const char *a = strstr(text, open);
    ck_assert_msg(a != NULL, "no %s in:\n%s", open, text);
    a += strlen(open);
    const char *b = strstr(a, close);
    ck_assert_msg(b != NULL, "no %s after %s in:\n%s", close, open, text);
    return strndup(a, (size_t)(b - a));
}

START_TEST(selfedit_prompt_format_chatml) {
    Pair train[2];
    Task t = selfedit_task(train);
    char *llama = arc_selfedit_prompt(&t, CHAT_LLAMA3);
    for (ChatFormat f = CHAT_CHATML; f <= CHAT_SMOLLM2; f++) {
        char *p = arc_selfedit_prompt(&t, f);
        expect_ends(p, "<|im_start|>system\n" SE_SYSTEM "<|im_end|>\n<|im_start|>user\n" SE_USER_HEAD,
                    SE_USER_TAIL "<|im_end|>\n<|im_start|>assistant\n");
        ck_assert(!strstr(p, "<|eot_id|>") && !strstr(p, "<|start_header_id|>") && !strstr(p, "Today Date"));
        int turns = 0;
        for (const char *q = p; (q = strstr(q, "<|im_start|>")); q++) turns++;
        ck_assert_int_eq(turns, 3);   // system, user, and the assistant's opening
        // The user's text is the same in every format: only the wrapping differs.
        char *a = between(llama, "user<|end_header_id|>\n\n", "<|eot_id|>"), *b = between(p, "<|im_start|>user\n", "<|im_end|>");
        ck_assert_str_eq(a, b);
        free(a);
        free(b);
        free(p);
    }
    free(llama);
}
END_TEST

// A TTT example in ChatML ends with <|im_end|>, and with output-only training
// the loss is on the answer and that token alone.
START_TEST(fewshot_example_chatml) {
    const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    char *json = tok_bytelevel_json(NULL, 0, specials, 3), err[ERR_MAX];
    Tokenizer *tok = tok_load_json(json, "chatml.json", err);
    ck_assert_msg(tok != NULL, "%s", err);
    free(json);
    FewShot fs;
    fewshot_defaults(&fs);
    fs.tok = tok;
    fs.chat = CHAT_CHATML;
    fs.eot = tok_find(tok, chat_eot(fs.chat));
    ck_assert_int_eq(fs.eot, tok_find(tok, "<|im_end|>"));
    Pair demo = {G("[[1 2]]"), G("[[2 1]]")};
    TttExample x = {.n_demos = 1, .demos = &demo, .query = {G("[[3 4]]"), G("[[4 3]]")}};
    Example *e;
    ck_assert_msg(fewshot_examples(&fs, &x, 1, 1, &e, err) == 0, "%s", err);
    const char answer[] = "[[4 3]]#";
    const int n_answer = (int)strlen(answer) + 1;   // one byte token each, then <|im_end|>
    ck_assert_int_eq(e->ids[0], tok_find(tok, "<|im_start|>"));
    ck_assert_int_eq(e->ids[e->len - 1], fs.eot);
    for (int i = 0; i < e->len; i++) ck_assert_int_eq(e->loss[i], i >= e->len - n_answer);
    size_t len;
    char *text = tok_decode(tok, e->ids, e->len, &len, err);
    ck_assert_msg(strstr(text, "<|im_start|>assistant\n[[4 3]]#<|im_end|>") && text[len - 1] == '>', "%s", text);
    free(text);
    examples_free(e, 1);
    tok_free(tok);
}
END_TEST

// ---------------------------------------------------------------- self-edits

#define SE_OK "{\"data_generation\": {\"use_basic_augmentations\": true, \"use_size_augmentations\": false, " \
              "\"use_chain_augmentations\": true, \"use_repeat_augmentations\": false}, " \
              "\"training\": {\"strategy\": \"train_using_output_tokens\", \"learning_rate\": 0.0001, \"num_train_epochs\": 3}}"

START_TEST(selfedit_parses_valid) {
    SelfEdit se;
    char why[ERR_MAX];
    ck_assert_msg(selfedit_parse(SE_OK, &se, why) == 0, "%s", why);
    ck_assert(se.basic && !se.size && se.chain && !se.repeat && se.output_only && se.epochs == 3);
    ck_assert(se.lr == 1e-4f);
    ck_assert_int_eq(selfedit_parse("\n  " SE_OK "\n", &se, why), 0);   // whitespace around is fine
    char *j = selfedit_to_json(&se);
    SelfEdit back;
    ck_assert_msg(selfedit_parse(j, &back, why) == 0, "%s", why);
    ck_assert(memcmp(&back, &se, sizeof se) == 0);
    ck_assert(strstr(j, "\"learning_rate\": 0.0001,") != NULL);
    free(j);
    static const float lrs[] = {1e-6f, 5e-5f, 1e-4f, 3e-4f, 2.5e-3f, 1e-2f};
    for (int k = 0; k < 64; k++) {   // every combination round-trips through the canonical JSON
        SelfEdit s = {k & 1, k >> 1 & 1, k >> 2 & 1, k >> 3 & 1, k >> 4 & 1, lrs[k % 6], 1 + k % 9};
        char *t = selfedit_to_json(&s);
        ck_assert_msg(selfedit_parse(t, &back, why) == 0, "%s: %s", t, why);
        ck_assert_msg(memcmp(&back, &s, sizeof s) == 0, "%s", t);
        free(t);
    }
}
END_TEST

// Replaces the first occurrence of from in SE_OK by to.
static void mutate(char *out, const char *from, const char *to) {
    const char *at = strstr(SE_OK, from);
    ck_assert_msg(at != NULL, "%s not in SE_OK", from);
    sprintf(out, "%.*s%s%s", (int)(at - SE_OK), SE_OK, to, at + strlen(from));
}

START_TEST(selfedit_rejects_invalid) {
    static const struct { const char *from, *to, *why; } cases[] = {
        {"{", "{{", "not valid JSON"},
        {"}}", "}} trailing", "not valid JSON"},
        {"\"num_train_epochs\": 3}", "\"num_train_epochs\": 3", "not valid JSON"},
        {"true, \"use_size", "1, \"use_size", "use_basic_augmentations: expected true or false"},
        {"false, \"use_chain", "\"false\", \"use_chain", "use_size_augmentations: expected true or false"},
        {"false}", "null}", "use_repeat_augmentations: expected true or false"},
        {"\"train_using_output_tokens\"", "\"train_using_some_tokens\"", "training.strategy"},
        {"\"train_using_output_tokens\"", "1", "training.strategy"},
        {"0.0001", "\"0.0001\"", "learning_rate: expected a number"},
        {"0.0001", "0", "learning_rate: 0 is outside"},
        {"0.0001", "-0.0001", "is outside"},
        {"0.0001", "0.5", "is outside"},
        {"0.0001", "1e-9", "is outside"},
        {": 3}", ": 0}", "num_train_epochs: expected an integer"},
        {": 3}", ": -2}", "num_train_epochs: expected an integer"},
        {": 3}", ": 2.5}", "num_train_epochs: expected an integer"},
        {": 3}", ": \"3\"}", "num_train_epochs: expected an integer"},
        {": 3}", ": 100000}", "num_train_epochs: expected an integer"},
        {"{\"data_generation\"", "{\"note\": 1, \"data_generation\"", "top level: unknown field \"note\""},
        {"\"strategy\"", "\"batch_size\": 2, \"strategy\"", "training: unknown field \"batch_size\""},
        {"\"use_basic_augmentations\": true, ", "", "data_generation: missing field \"use_basic_augmentations\""},
        {", \"learning_rate\": 0.0001", "", "training: missing field \"learning_rate\""},
        {"\"use_size_augmentations\": false", "\"use_basic_augmentations\": false", "given twice"},
        {"{\"use_basic", "[{\"use_basic", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1024], why[ERR_MAX] = "";
        SelfEdit se = {0};
        mutate(text, cases[i].from, cases[i].to);
        ck_assert_msg(selfedit_parse(text, &se, why) == -1, "accepted %s", text);
        ck_assert_msg(strstr(why, cases[i].why) != NULL, "case %zu: why \"%s\", want \"%s\"", i, why, cases[i].why);
    }
    static const struct { const char *text, *why; } whole[] = {
        {"", "not valid JSON"},
        {"[1, 2]", "top level: expected a JSON object"},
        {"{\"data_generation\": {}, \"training\": {}}", "data_generation: missing field"},
        {"{\"data_generation\": [], \"training\": {}}", "data_generation: expected a JSON object"},
        {"{\"training\": {}}", "top level: missing field \"data_generation\""},
    };
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        char why[ERR_MAX] = "";
        SelfEdit se;
        ck_assert_int_eq(selfedit_parse(whole[i].text, &se, why), -1);
        ck_assert_msg(strstr(why, whole[i].why) != NULL, "%s: why \"%s\"", whole[i].text, why);
    }
}
END_TEST

START_TEST(step_limit) {
    ck_assert_int_eq(selfedit_steps(250, 2, 3), 375);   // allowed: the limit is "more than 375"
    ck_assert(selfedit_steps(250, 2, 4) > ARC_MAX_STEPS);
    ck_assert_int_eq(selfedit_steps(7, 2, 1), 3);       // SEAL rounds down
    ck_assert_int_eq(selfedit_steps(125, 2, 6), 375);
}
END_TEST

// ---------------------------------------------------------------- test-time training data

// Which train pairs ex uses (no augmentation, no recolouring): the query's
// index and a bit set of the demonstrations'.
static void identify(const Task *t, const TttExample *ex, int *query, unsigned *demos) {
    *query = -1;
    *demos = 0;
    for (int k = 0; k < t->n_train; k++) {
        if (pair_equal(&ex->query, &t->train[k])) *query = k;
        for (int i = 0; i < ex->n_demos; i++)
            if (pair_equal(&ex->demos[i], &t->train[k])) *demos |= 1u << k;
    }
}

START_TEST(leave_out_tasks) {
    Rng r = seeded(5);
    Task t = random_task(&r, 4, 3, 3);
    SelfEdit none = {0};
    int n;
    TttExample *ex = examples(&t, &none, &r, &n);
    int seen[4][5] = {{0}}, in_order = 0;   // [query][second left out, 4 = none]
    for (int i = 0; i < n; i++) {
        int q;
        unsigned d;
        identify(&t, &ex[i], &q, &d);
        ck_assert(q >= 0 && !(d >> q & 1));
        ck_assert(ex[i].n_demos == 3 || ex[i].n_demos == 2);
        ck_assert_int_eq(__builtin_popcount(d), ex[i].n_demos);
        int left = 4;
        for (int k = 0; k < 4; k++)
            if (k != q && !(d >> k & 1)) left = k;
        seen[q][left] = 1;
        int sorted = 1, prev = -1;   // demonstrations in train order: not reordered
        for (int k = 0; k < ex[i].n_demos; k++) {
            int idx = 0;
            while (!pair_equal(&ex[i].demos[k], &t.train[idx])) idx++;
            sorted &= idx > prev;
            prev = idx;
        }
        in_order += sorted;
    }
    for (int q = 0; q < 4; q++)
        for (int left = 0; left < 5; left++)
            ck_assert_msg(seen[q][left] == (left != q), "query %d, also left out %d", q, left);
    // 4 leave-one-out + 12 leave-two-out tasks, plus their reorderings that differ
    ck_assert_int_eq(in_order, 16);
    ck_assert(n > 16 && n <= 32);
    assert_unique(ex, n);
    arc_free_examples(ex, n);
    arc_free_task(&t);
}
END_TEST

START_TEST(cap_and_determinism) {
    Rng r = seeded(9), r1 = seeded(42), r2 = seeded(42);
    Task t = random_task(&r, 5, 5, 4);
    SelfEdit all = {1, 1, 1, 1, 0, 1e-4f, 2};
    int na, nb;
    TttExample *a = examples(&t, &all, &r1, &na), *b = examples(&t, &all, &r2, &nb);
    ck_assert_int_eq(na, ARC_TTT_MAX);
    ck_assert_int_eq(nb, na);
    for (int i = 0; i < na; i++) ck_assert(examples_equal(&a[i], &b[i]));
    assert_fit(a, na);
    assert_unique(a, na);
    int sizes[4] = {0};   // shapes seen: 5x4, 4x5, doubled, other
    for (int i = 0; i < na; i++) {
        const Grid *g = &a[i].query.in;
        sizes[g->h == 5 && g->w == 4 ? 0 : g->h == 4 && g->w == 5 ? 1 : g->h * g->w == 40 || g->h * g->w == 80 ? 2 : 3]++;
    }
    ck_assert(sizes[0] && sizes[1] && sizes[2]);   // the shuffle mixes augmentations
    arc_free_examples(a, na);
    arc_free_examples(b, nb);
    arc_free_task(&t);
}
END_TEST

// One family of augmentations each, at a learning rate and epochs these tests do not look at.
static const SelfEdit BASIC = {.basic = 1, .lr = 1e-4f, .epochs = 1}, SIZE = {.size = 1, .lr = 1e-4f, .epochs = 1};

static int upright(const TttExample *ex, void *ctx) { return ex->query.in.h == *(int *)ctx; }
static int nothing(const TttExample *ex, void *ctx) { (void)ex; (void)ctx; return 0; }

START_TEST(filter_before_cap) {
    Rng r = seeded(19);
    Task t = random_task(&r, 5, 5, 4);   // 25 leave-out tasks x 7 upright basic views x 2 > 250
    TttExample *ex;
    int n, h = 5;
    ck_assert_int_eq(arc_ttt_examples_filtered(&t, &BASIC, 1, &r, upright, &h, &ex, &n), 0);
    ck_assert_int_eq(n, ARC_TTT_MAX);   // the cap counts kept examples only
    for (int i = 0; i < n; i++) ck_assert_int_eq(ex[i].query.in.h, 5);
    arc_free_examples(ex, n);
    ck_assert_int_eq(arc_ttt_examples_filtered(&t, &BASIC, 1, &r, nothing, NULL, &ex, &n), 0);
    ck_assert(n == 0 && ex == NULL);
    arc_free_task(&t);
}
END_TEST

START_TEST(oversized_grids_dropped) {
    Rng r = seeded(13);
    Task big = random_task(&r, 3, 20, 20), small = random_task(&r, 3, 12, 12);
    int n, n_small;
    TttExample *ex = examples(&big, &SIZE, &r, &n);
    for (int i = 0; i < n; i++) {   // every x2 augmentation makes a 40-cell side: all dropped
        ck_assert(ex[i].query.in.h == 20 && ex[i].query.in.w == 20);
        for (int k = 0; k < ex[i].n_demos; k++) ck_assert(ex[i].demos[k].out.h == 20 && ex[i].demos[k].out.w == 20);
    }
    ck_assert_int_eq(n, 18);   // 3 + 6 leave-out tasks, each also recoloured and reordered
    arc_free_examples(ex, n);
    ex = examples(&small, &SIZE, &r, &n_small);
    ck_assert_int_eq(n_small, 4 * 18);   // 12x12 doubles to 24: all three size augmentations kept
    assert_fit(ex, n_small);
    arc_free_examples(ex, n_small);
    arc_free_task(&big);
    arc_free_task(&small);
}
END_TEST

START_TEST(symmetric_task_deduplicates) {
    Rng r = seeded(17);
    Task asym = random_task(&r, 3, 3, 3), sym = random_task(&r, 3, 3, 3);
    for (int i = 0; i < 4; i++) {   // grids symmetric under every rotation and flip
        Grid *gs[2] = {i < 3 ? &sym.train[i].in : &sym.test[0].in, i < 3 ? &sym.train[i].out : &sym.test[0].out};
        for (int k = 0; k < 2; k++) {
            uint8_t a = (uint8_t)(1 + i + k), b = (uint8_t)(5 + i), c = (uint8_t)k;
            uint8_t cells[9] = {a, b, a, b, c, b, a, b, a};
            memcpy(gs[k]->c, cells, 9);
        }
    }
    int n_asym, n_sym;
    TttExample *ex = examples(&asym, &BASIC, &r, &n_asym);
    assert_unique(ex, n_asym);
    arc_free_examples(ex, n_asym);
    ex = examples(&sym, &BASIC, &r, &n_sym);
    assert_unique(ex, n_sym);
    arc_free_examples(ex, n_sym);
    // 9 leave-out tasks x (1 + 11 basic augmentations) x 2, less the few
    // translations by (0, 0); the symmetric task loses the 6 rotations/flips
    // and the mirrors collapse to 2 distinct ones
    ck_assert_msg(n_asym > 200 && n_asym <= 216, "asymmetric: %d", n_asym);
    ck_assert_msg(n_sym <= 9 * 5 * 2 && n_sym < n_asym, "symmetric: %d", n_sym);
    arc_free_task(&asym);
    arc_free_task(&sym);
}
END_TEST

// ---------------------------------------------------------------- augmented inference and voting

START_TEST(views_and_perfect_model) {
    Rng r = seeded(23);
    Task t = random_task(&r, 3, 4, 6);
    View *v;
    int n, tfs[TF_COUNT] = {0};
    ck_assert_int_eq(arc_views(&t, 0, &r, &v, &n), 0);
    ck_assert(n >= 3 + 5 && n <= 3 * 3 + 5);
    Grid *answers = calloc((size_t)n, sizeof *answers), back;
    int *groups = calloc((size_t)n, sizeof *groups);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(v[i].n_demos, 2);
        tfs[v[i].tf]++;
        Grid want;
        grid_apply(&t.test[0].in, v[i].tf, &want);
        ck_assert(grid_equal(&v[i].query, &want));
        grid_apply(&t.test[0].out, v[i].tf, &answers[i]);   // a model that is always right
        ck_assert_int_eq(arc_unview(&v[i], &answers[i], &back), 0);
        ck_assert(grid_equal(&back, &t.test[0].out));
        answers[i] = back;
        groups[i] = v[i].tf;
        for (int j = 0; j < i; j++) {
            int same = v[i].tf == v[j].tf && grid_equal(&v[i].query, &v[j].query);
            for (int k = 0; k < 2 && same; k++) same = grid_equal(&v[i].demos[k].in, &v[j].demos[k].in);
            ck_assert_msg(!same, "views %d and %d are equal", i, j);
        }
    }
    ck_assert(tfs[TF_IDENTITY] >= 3 && tfs[TF_TRANSPOSE] == 1 && tfs[TF_FLIP_UD] == 1 && tfs[TF_FLIP_LR] == 1 &&
              tfs[TF_ROT90] == 1 && tfs[TF_ROT180] == 1);
    Grid top[2];
    int k = arc_vote(answers, groups, n, top);
    ck_assert_int_ge(k, 1);
    ck_assert(grid_equal(&top[0], &t.test[0].out));
    ck_assert_int_eq(arc_pass2(top, k, &t.test[0].out), 1);
    ck_assert_int_eq(arc_pass2(top, k, &t.test[0].in), 0);
    Grid bad = {0};
    ck_assert_int_eq(arc_unview(&v[0], &bad, &back), -1);
    free(answers);
    free(groups);
    arc_free_views(v, n);
    arc_free_task(&t);
}
END_TEST

START_TEST(vote_majority_and_ties) {
    Grid a = G("[[1 1] [1 1]]"), b = G("[[2 2] [2 2]]"), c = G("[[3 3] [3 3]]"), top[2];
    Grid five[5] = {a, b, a, c, a};
    int zeros[5] = {0};
    ck_assert_int_eq(arc_vote(five, zeros, 5, top), 2);
    ck_assert(grid_equal(&top[0], &a));
    // b and c tie everywhere; SEAL's rule gives the second attempt to the third
    // candidate unless the second has more untransformed votes
    ck_assert(grid_equal(&top[1], &c));
    Grid four[4] = {a, b, c, b};
    ck_assert_int_eq(arc_vote(four, zeros, 4, top), 2);
    ck_assert(grid_equal(&top[0], &b));
    Grid two[2] = {c, a};   // a tie: the first seen comes first
    ck_assert_int_eq(arc_vote(two, zeros, 2, top), 2);
    ck_assert(grid_equal(&top[0], &c) && grid_equal(&top[1], &a));
    ck_assert_int_eq(arc_vote(two, zeros, 2, top), 2);   // and again the same
    ck_assert(grid_equal(&top[0], &c));
    Grid one[1] = {a};
    ck_assert_int_eq(arc_vote(one, NULL, 1, top), 1);
    ck_assert(grid_equal(&top[0], &a));
}
END_TEST

START_TEST(vote_ignores_invalid) {
    Grid a = G("[[1 2]]"), b = G("[[3] [4]]"), none = {0}, colour = a, huge = {.h = 31, .w = 1}, top[2];
    colour.c[1] = 12;
    Grid answers[7] = {a, none, colour, huge, b, b, none};
    int groups[7] = {0, 0, 0, 0, 1, 2, 0};
    ck_assert_int_eq(arc_vote(answers, groups, 7, top), 2);
    ck_assert(grid_equal(&top[0], &b) && grid_equal(&top[1], &a));
    Grid nothing[3] = {none, colour, huge};
    ck_assert_int_eq(arc_vote(nothing, groups, 3, top), 0);
    ck_assert_int_eq(arc_vote(NULL, NULL, 0, top), 0);
    ck_assert_int_eq(arc_pass2(top, 0, &a), 0);
}
END_TEST

// An answer given by several kinds of view beats one repeated by one kind:
// votes are counted within each group first.
START_TEST(vote_is_hierarchical) {
    Grid a = G("[[1 2 3]]"), b = G("[[4] [5]]"), top[2];
    Grid answers[7] = {a, a, a, a, b, b, b};
    int groups[7] = {TF_IDENTITY, TF_IDENTITY, TF_IDENTITY, TF_IDENTITY, TF_TRANSPOSE, TF_FLIP_UD, TF_ROT90};
    ck_assert_int_eq(arc_vote(answers, groups, 7, top), 2);
    ck_assert(grid_equal(&top[0], &b) && grid_equal(&top[1], &a));
    int flat[7] = {0};   // all in one group: plain majority
    ck_assert_int_eq(arc_vote(answers, flat, 7, top), 2);
    ck_assert(grid_equal(&top[0], &a) && grid_equal(&top[1], &b));
    ck_assert_int_eq(arc_pass2(top, 2, &b), 1);
}
END_TEST

// Three answers, one per group, tie everywhere; the second attempt goes to
// the one an untransformed view gave (SEAL's identity-count rule).
START_TEST(vote_tie_prefers_untransformed) {
    Grid x = G("[[1]]"), y = G("[[2]]"), z = G("[[3]]"), top[2];
    Grid answers[3] = {x, y, z};
    int groups[3] = {TF_ROT90, TF_IDENTITY, TF_ROT180};
    ck_assert_int_eq(arc_vote(answers, groups, 3, top), 2);
    ck_assert(grid_equal(&top[0], &x) && grid_equal(&top[1], &y));
    int no_identity[3] = {TF_ROT90, TF_FLIP_UD, TF_ROT180};   // no untransformed votes: the 2nd stays
    ck_assert_int_eq(arc_vote(answers, no_identity, 3, top), 2);
    ck_assert(grid_equal(&top[0], &x) && grid_equal(&top[1], &y));
    int flipped[3] = {TF_ROT90, TF_ROT180, TF_IDENTITY};      // z untransformed: z wins the tie
    ck_assert_int_eq(arc_vote(answers, flipped, 3, top), 2);
    ck_assert(grid_equal(&top[0], &x) && grid_equal(&top[1], &z));
}
END_TEST

// ---------------------------------------------------------------- loading

// The ids under key ("train" or "eval") of seal_tasks.json.
static int seal_ids(const char *dir, const char *key, char ids[][16], int max) {
    char path[4096], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/seal_tasks.json", dir);
    char *text = read_file(path, NULL, err);
    ck_assert_msg(text != NULL, "%s", err);
    cJSON *root = cJSON_Parse(text), *list = cJSON_GetObjectItem(root, key), *id;
    int n = 0;
    cJSON_ArrayForEach(id, list) if (n < max) snprintf(ids[n++], 16, "%s", id->valuestring);
    cJSON_Delete(root);
    free(text);
    return n;
}

static void assert_task_sane(const Task *t, int need_solution) {
    ck_assert(t->n_train >= 1 && t->n_test >= 1);
    for (int i = 0; i < t->n_train; i++) ck_assert(grid_valid(&t->train[i].in) && grid_valid(&t->train[i].out));
    for (int i = 0; i < t->n_test; i++) {
        ck_assert(grid_valid(&t->test[i].in));
        ck_assert(need_solution ? grid_valid(&t->test[i].out) : t->test[i].out.h == 0);
    }
}

static int tasks_equal(const Task *a, const Task *b) {
    if (strcmp(a->id, b->id) || a->n_train != b->n_train || a->n_test != b->n_test) return 0;
    for (int i = 0; i < a->n_train; i++)
        if (!pair_equal(&a->train[i], &b->train[i])) return 0;
    for (int i = 0; i < a->n_test; i++)
        if (!pair_equal(&a->test[i], &b->test[i])) return 0;
    return 1;
}

START_TEST(load_seal_tasks) {
    const char *data = arc_data();
    if (!data) return;
    static const struct { const char *key, *folder, *challenges, *solutions; int count; } sets[2] = {
        {"train", "training", "arc-agi_training_challenges_filtered_1B_training_set.json",
         "arc-agi_training_solutions_filtered_1B_training_set.json", 12},
        {"eval", "evaluation", "arc-agi_evaluation_challenges_filtered_1B_eval_set.json",
         "arc-agi_evaluation_solutions_filtered_1B_eval_set.json", 10},
    };
    for (int s = 0; s < 2; s++) {
        char ids[16][16], dir[4096], ch[4096], so[4096], err[ERR_MAX];
        const char *idp[16];
        int n_ids = seal_ids(data, sets[s].key, ids, 16);
        ck_assert_int_eq(n_ids, sets[s].count);
        for (int i = 0; i < n_ids; i++) idp[i] = ids[i];
        snprintf(dir, sizeof dir, "%s/%s", data, sets[s].folder);
        snprintf(ch, sizeof ch, "%s/seal/%s", data, sets[s].challenges);
        snprintf(so, sizeof so, "%s/seal/%s", data, sets[s].solutions);
        Task *files, *kaggle;
        int n_files, n_kaggle;
        ck_assert_msg(arc_load_dir(dir, idp, n_ids, &files, &n_files, err) == 0, "%s", err);
        ck_assert_msg(arc_load_kaggle(ch, so, idp, n_ids, &kaggle, &n_kaggle, err) == 0, "%s", err);
        ck_assert_int_eq(n_files, n_ids);
        ck_assert_int_eq(n_kaggle, n_ids);
        for (int i = 0; i < n_ids; i++) {
            ck_assert_str_eq(files[i].id, ids[i]);
            assert_task_sane(&files[i], 1);
            ck_assert_msg(tasks_equal(&files[i], &kaggle[i]), "%s differs between layouts", ids[i]);
            char *p = arc_selfedit_prompt(&files[i], CHAT_LLAMA3);
            ck_assert(p && strstr(p, "------\n\n\nYou are configuring"));
            free(p);
        }
        arc_free_tasks(files, n_files);
        arc_free_tasks(kaggle, n_kaggle);
        ck_assert_msg(arc_load_kaggle(ch, NULL, NULL, 0, &kaggle, &n_kaggle, err) == 0, "%s", err);
        ck_assert_int_eq(n_kaggle, sets[s].count);   // whole file, no solutions
        for (int i = 0; i < n_kaggle; i++) assert_task_sane(&kaggle[i], 0);
        arc_free_tasks(kaggle, n_kaggle);
    }
}
END_TEST

START_TEST(load_whole_folders) {
    const char *data = arc_data();
    if (!data) return;
    char dir[4096], ch[4096], so[4096], err[ERR_MAX];
    snprintf(dir, sizeof dir, "%s/training", data);
    Task *tasks, *kaggle;
    int n, nk;
    ck_assert_msg(arc_load_dir(dir, NULL, 0, &tasks, &n, err) == 0, "%s", err);
    ck_assert_int_eq(n, 400);
    ck_assert_str_eq(tasks[0].id, "007bbfb7");
    for (int i = 0; i < n; i++) {
        assert_task_sane(&tasks[i], 1);
        if (i) ck_assert(strcmp(tasks[i - 1].id, tasks[i].id) < 0);
    }
    snprintf(ch, sizeof ch, "%s/seal/arc-agi_training_challenges.json", data);
    snprintf(so, sizeof so, "%s/seal/arc-agi_training_solutions.json", data);
    ck_assert_msg(arc_load_kaggle(ch, so, NULL, 0, &kaggle, &nk, err) == 0, "%s", err);
    ck_assert_int_eq(nk, 400);
    for (int i = 0; i < nk; i++) {   // the same tasks in both layouts
        int j = 0;
        while (j < n && strcmp(tasks[j].id, kaggle[i].id)) j++;
        ck_assert_msg(j < n && tasks_equal(&tasks[j], &kaggle[i]), "%s", kaggle[i].id);
    }
    arc_free_tasks(kaggle, nk);
    arc_free_tasks(tasks, n);
    const char *missing[1] = {"not_a_task"};
    ck_assert_int_eq(arc_load_kaggle(ch, so, missing, 1, &kaggle, &nk, err), -1);
    ck_assert(strstr(err, "no task \"not_a_task\"") && kaggle == NULL && nk == 0);
    ck_assert_int_eq(arc_load_dir(dir, missing, 1, &tasks, &n, err), -1);
    ck_assert(strstr(err, "not_a_task.json: cannot open") && tasks == NULL && n == 0);
}
END_TEST

START_TEST(malformed_task_files) {
    static const struct { const char *name, *json, *why; } cases[] = {
        {"ragged.json", "{\"train\": [{\"input\": [[1, 2], [3]], \"output\": [[1]]}], \"test\": [{\"input\": [[1]]}]}",
         "ragged.json: train[0].input: row 1 has 1 cells, row 0 has 2"},
        {"colour.json", "{\"train\": [{\"input\": [[1]], \"output\": [[1]]}, {\"input\": [[1]], \"output\": [[0, 10]]}], "
                        "\"test\": [{\"input\": [[1]]}]}",
         "colour.json: train[1].output: row 0, column 1: colour 10"},
        {"big.json", NULL, "big.json: test[0].input: 31 rows (expected 1..30)"},
        {"wide.json", "{\"train\": [{\"input\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]], \"output\": [[1]]}], "
                      "\"test\": [{\"input\": [[1]]}]}",
         "wide.json: train[0].input: row 0 has 31 cells"},
        {"notrain.json", "{\"test\": [{\"input\": [[1]]}]}", "notrain.json: missing \"train\""},
        {"noout.json", "{\"train\": [{\"input\": [[1]]}], \"test\": [{\"input\": [[1]]}]}", "noout.json: train[0]: missing \"output\""},
        {"text.json", "{\"train\": [{\"input\": [[\"1\"]], \"output\": [[1]]}], \"test\": [{\"input\": [[1]]}]}",
         "text.json: train[0].input: row 0, column 0: not a number"},
        {"broken.json", "{\"train\": [", "broken.json: not valid JSON"},
        {"empty.json", "{\"train\": [], \"test\": [{\"input\": [[1]]}]}", "empty.json: \"train\" is empty"},
    };
    char dir[] = "/tmp/seal-test-arc-XXXXXX";
    ck_assert(mkdtemp(dir) != NULL);
    char big[8192] = "{\"train\": [{\"input\": [[1]], \"output\": [[1]]}], \"test\": [{\"input\": [";
    for (int i = 0; i < 31; i++) {
        strcat(big, i ? ", [" : "[");
        for (int j = 0; j < 31; j++) strcat(big, j ? ",0" : "0");
        strcat(big, "]");
    }
    strcat(big, "]}]}");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[4200], err[ERR_MAX] = "";
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        write_text(path, cases[i].json ? cases[i].json : big);
        Task t;
        ck_assert_int_eq(arc_load_task(path, &t, err), -1);
        ck_assert_msg(strstr(err, cases[i].why) != NULL, "%s: got \"%s\"", cases[i].name, err);
        ck_assert(strstr(err, dir) != NULL);   // the full path names the file
        ck_assert(t.train == NULL && t.test == NULL);
    }
    char err[ERR_MAX], path[4200];
    Task *tasks, t;
    int n;
    ck_assert_int_eq(arc_load_dir(dir, NULL, 0, &tasks, &n, err), -1);   // the first bad file by name
    ck_assert_msg(strstr(err, "big.json") != NULL, "%s", err);
    ck_assert(tasks == NULL && n == 0);
    snprintf(path, sizeof path, "%s/ok.json", dir);
    write_text(path, "{\"train\": [{\"input\": [[1, 2]], \"output\": [[3], [4]]}], \"test\": [{\"input\": [[5]], \"output\": [[6]]}, {\"input\": [[7]]}]}");
    ck_assert_msg(arc_load_task(path, &t, err) == 0, "%s", err);
    ck_assert_str_eq(t.id, "ok");
    ck_assert(t.n_train == 1 && t.n_test == 2 && t.train[0].out.h == 2 && t.test[0].out.c[0] == 6 && t.test[1].out.h == 0);
    arc_free_task(&t);
    ck_assert_int_eq(arc_parse_task("{\"train\": [{\"input\": [[1]], \"output\": [[1]]}], \"test\": [{\"input\": [[1]]}]}", "mem", &t, err), 0);
    ck_assert_str_eq(t.id, "mem");
    arc_free_task(&t);
    ck_assert_int_eq(arc_load_task("/nonexistent/x.json", &t, err), -1);
    ck_assert(strstr(err, "/nonexistent/x.json: cannot open"));
    // Kaggle files: a solution list of the wrong length names the task
    char ch[4200], so[4200];
    snprintf(ch, sizeof ch, "%s/ch.json", dir);
    snprintf(so, sizeof so, "%s/so.json", dir);
    write_text(ch, "{\"abc\": {\"train\": [{\"input\": [[1]], \"output\": [[2]]}], \"test\": [{\"input\": [[3]]}]}}");
    write_text(so, "{\"abc\": [[[4]], [[5]]]}");
    ck_assert_int_eq(arc_load_kaggle(ch, so, NULL, 0, &tasks, &n, err), -1);
    ck_assert_msg(strstr(err, "so.json: abc: expected a list of 1 grid(s)") != NULL, "%s", err);
    write_text(so, "{\"abc\": [[[4, 10]]]}");
    ck_assert_int_eq(arc_load_kaggle(ch, so, NULL, 0, &tasks, &n, err), -1);
    ck_assert_msg(strstr(err, "so.json: abc[0]: row 0, column 1: colour 10") != NULL, "%s", err);
    write_text(so, "{\"abc\": [[[4]]]}");
    ck_assert_msg(arc_load_kaggle(ch, so, NULL, 0, &tasks, &n, err) == 0, "%s", err);
    ck_assert(n == 1 && tasks[0].test[0].out.c[0] == 4);
    arc_free_tasks(tasks, n);
    write_text(ch, "{\"abc\": {\"train\": [{\"input\": [[1]], \"output\": [[2, 2], [3]]}], \"test\": [{\"input\": [[3]]}]}}");
    ck_assert_int_eq(arc_load_kaggle(ch, NULL, NULL, 0, &tasks, &n, err), -1);
    ck_assert_msg(strstr(err, "ch.json: abc: train[0].output: row 1 has 1 cells") != NULL, "%s", err);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        unlink(path);
    }
    const char *rest[3] = {"ok.json", "ch.json", "so.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, rest[i]);
        unlink(path);
    }
    rmdir(dir);
}
END_TEST

// numpy's legacy shuffle (np.random.seed(s); np.random.shuffle(list(range(n)))).
// The references were printed by numpy 2.4.6 (a venv, `pip install numpy`):
//   python3 -c "import numpy as np; l=list(range(N)); np.random.seed(S); np.random.shuffle(l); print(l)"
// When python3 has numpy here, it is asked too.
START_TEST(numpy_shuffle_matches) {
    static const int n11[] = {4, 9, 2, 10, 6, 1, 7, 8, 3, 0, 5}, n13[] = {6, 11, 4, 10, 2, 8, 1, 7, 9, 3, 0, 5, 12},
                     n10[] = {2, 8, 4, 9, 1, 6, 7, 3, 0, 5}, s7n20[] = {1, 17, 2, 5, 11, 0, 18, 6, 13, 19, 10, 14, 8, 16, 9, 12, 7, 3, 4, 15};
    const struct { uint32_t seed; int n; const int *want; } refs[] = {{0, 11, n11}, {0, 13, n13}, {0, 10, n10}, {7, 20, s7n20}};
    for (size_t r = 0; r < sizeof refs / sizeof *refs; r++) {
        int a[20];
        for (int i = 0; i < refs[r].n; i++) a[i] = i;
        np_shuffle(refs[r].seed, a, refs[r].n);
        for (int i = 0; i < refs[r].n; i++) ck_assert_msg(a[i] == refs[r].want[i], "seed %u n %d: item %d", refs[r].seed, refs[r].n, i);
    }
    FILE *p = popen("python3 -c 'import numpy as np\nfor n in (2, 5, 100, 1000):\n l=list(range(n)); np.random.seed(12345); np.random.shuffle(l); print(*l)' 2>/dev/null", "r");
    if (!p) return;
    const int sizes[] = {2, 5, 100, 1000};
    static int a[1000];
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < sizes[s]; i++) a[i] = i;
        np_shuffle(12345, a, sizes[s]);
        for (int i = 0, x; i < sizes[s]; i++) {
            if (fscanf(p, "%d", &x) != 1) {   // no numpy here: the references above stand
                ck_assert_msg(s == 0 && i == 0, "python3's numpy stopped after %d numbers", i);
                pclose(p);
                return;
            }
            ck_assert_msg(x == a[i], "n %d item %d: numpy %d, ours %d", sizes[s], i, x, a[i]);
        }
    }
    pclose(p);
}
END_TEST

static Task seal_task(const char *id, int n_test) {
    Task t = {.n_train = 1, .n_test = n_test, .train = xcalloc(1, sizeof(Pair)), .test = xcalloc((size_t)n_test, sizeof(Pair))};
    snprintf(t.id, sizeof t.id, "%s", id);
    return t;
}

// SEAL's selection on its own task lists (few-shot/data/*_filtered_1B_*.json,
// in derive.py's order, not by id): training, 13 entries (44f52bb0 has two
// test inputs): 8e1813be gets no self-edits (entry 12), 5bd6f4ac is not scored
// (entry 5 is past the shuffle's 11th); held-out, 11 entries (b1fc8b8e has
// two): 358ba94e and af24b4cc are not scored, ce8d95cc is scored without a
// LoRA: the 8 tasks of SEAL's final_results.json.
START_TEST(seal_selection) {
    static const char *train[] = {"44f52bb0", "4be741c5", "5582e5ca", "5614dbcf", "5bd6f4ac", "6150a2bd",
                                  "67e8384a", "6d0aefbc", "6e02f1e3", "8be77c9e", "8d5021e8", "8e1813be"};
    static const char *eval[] = {"59341089", "68b67ca3", "903d1b4a", "af24b4cc", "b1fc8b8e", "bc4146bd", "c7d4e6ad", "ce8d95cc", "358ba94e", "66e6c45b"};
    FewShot fs;
    fewshot_defaults(&fs);
    fs.n_train = 12;
    fs.n_eval = 10;
    fs.train = xcalloc(12, sizeof(Task));
    fs.eval = xcalloc(10, sizeof(Task));
    for (int i = 0; i < 12; i++) fs.train[i] = seal_task(train[i], strcmp(train[i], "44f52bb0") ? 1 : 2);
    for (int i = 0; i < 10; i++) fs.eval[i] = seal_task(eval[i], strcmp(eval[i], "b1fc8b8e") ? 1 : 2);
    const int counts[4] = SEAL_SELECTION;
    fewshot_select(&fs, counts);
    ck_assert_int_eq(fs.n_train, 10);
    for (int i = 0; i < fs.n_train; i++) ck_assert(strcmp(fs.train[i].id, "8e1813be") && strcmp(fs.train[i].id, "5bd6f4ac"));
    static const char *scored[] = {"59341089", "66e6c45b", "68b67ca3", "903d1b4a", "b1fc8b8e", "bc4146bd", "c7d4e6ad", "ce8d95cc"};
    ck_assert_int_eq(fs.n_eval, 8);
    Domain d;
    fewshot_domain(&d, &fs);
    ck_assert_int_eq(d.n_eval, 8);
    for (int i = 0; i < 8; i++) {
        char why[256] = "";
        ck_assert_str_eq(fs.eval[i].id, scored[i]);
        int none = !strcmp(scored[i], "ce8d95cc");
        ck_assert_int_eq(d.counted_wrong(&d, SPLIT_EVAL, i, 0, why), none);
        ck_assert_int_eq(d.counted_wrong(&d, SPLIT_EVAL, i, 1, NULL), 0);   // the oracle trains every scored task
        if (none) ck_assert_msg(strstr(why, "no LoRA"), "%s", why);
    }
    ck_assert_int_eq(d.counted_wrong(&d, SPLIT_TRAIN, 0, 0, NULL), 0);
    arc_free_tasks(fs.train, fs.n_train);
    arc_free_tasks(fs.eval, fs.n_eval);
    free(fs.eval_wrong);
}
END_TEST

// SEAL's PermuteColors: used colours go to unused ones first; 0 stays.
START_TEST(color_permutation_prefers_unused) {
    Rng r;
    rng_seed(&r, 3);
    for (int trial = 0; trial < 200; trial++) {
        const uint8_t few[] = {0, 1, 2, 3}, many[] = {0, 1, 2, 3, 4, 5, 6};
        uint8_t perm[10];
        color_perm_unused_first(few, 4, &r, perm);
        ck_assert_int_eq(perm[0], 0);
        for (int c = 1; c <= 3; c++) ck_assert_int_ge(perm[c], 4);   // every used colour onto an unused one
        int seen[10] = {0};
        for (int c = 0; c < 10; c++) seen[perm[c]]++;
        for (int c = 0; c < 10; c++) ck_assert_int_eq(seen[c], 1);
        color_perm_unused_first(many, 7, &r, perm);   // 6 used, 3 unused: 3 go there, 3 among the used
        int out = 0;
        for (int c = 1; c <= 6; c++) out += perm[c] >= 7;
        ck_assert_int_eq(out, 3);
        memset(seen, 0, sizeof seen);
        for (int c = 0; c < 10; c++) seen[perm[c]]++;
        for (int c = 0; c < 10; c++) ck_assert_int_eq(seen[c], 1);
    }
}
END_TEST

// Leave-two-out views (SEAL's fallback): every pair of demonstrations left out.
START_TEST(views_leave_two_out) {
    Task t = seal_task("x", 1);
    free(t.train);
    t.n_train = 4;
    t.train = xcalloc(4, sizeof(Pair));
    for (int k = 0; k < 4; k++) t.train[k] = (Pair){G(k == 0 ? "[[1 2]]" : k == 1 ? "[[3 4]]" : k == 2 ? "[[5 6]]" : "[[7 8]]"), G("[[1 1]]")};
    t.test[0] = (Pair){G("[[9 9]]"), G("[[1 1]]")};
    Rng r;
    rng_seed(&r, 1);
    View *v;
    int n, plain = 0;
    ck_assert_int_eq(arc_views_leave(&t, 0, 2, &r, &v, &n), 0);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(v[i].n_demos, 2);
        plain += v[i].tf == TF_IDENTITY;
    }
    ck_assert_int_ge(plain, 6);   // the 6 pairs, some also reordered
    arc_free_views(v, n);
    arc_free_task(&t);
}
END_TEST

// A self-edit whose JSON parses but whose field is out of range: SEAL trains it
// 0 epochs and scores the unadapted model (valid, not trained); --strict-edits
// draws it again (invalid). Text that is not JSON is invalid either way. With
// a context of 64 tokens no view fits: SEAL's leave-two-out fallback is tried,
// and the task gets no answer.
START_TEST(fewshot_zero_epoch_fallback) {
    const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    char *json = tok_bytelevel_json(NULL, 0, specials, 3), err[ERR_MAX];
    Tokenizer *tok = tok_load_json(json, "chatml.json", err);
    ck_assert_msg(tok != NULL, "%s", err);
    free(json);
    Config c = tiny_config(1, 1, 0);
    c.vocab = tok_vocab_size(tok);
    c.eos[0] = tok_find(tok, "<|im_end|>");
    Model m;
    ck_assert_int_eq(model_init(&m, &c, err), 0);
    model_random(&m, 3, 0.1f);
    FewShot fs;
    fewshot_defaults(&fs);
    fs.tok = tok;
    fs.chat = CHAT_CHATML;
    fs.eot = tok_find(tok, "<|im_end|>");
    Task t = seal_task("x", 1);
    free(t.train);
    t.n_train = 3;
    t.train = xcalloc(3, sizeof(Pair));
    for (int k = 0; k < 3; k++) t.train[k] = (Pair){G("[[1 2]]"), G("[[2 1]]")};
    t.test[0] = (Pair){G("[[3 4]]"), G("[[4 3]]")};
    fs.eval = &t;
    fs.n_eval = 1;
    Domain d;
    fewshot_domain(&d, &fs);
    const char *bad_lr = "{\"data_generation\": {\"use_basic_augmentations\": true, \"use_size_augmentations\": false, "
                         "\"use_chain_augmentations\": false, \"use_repeat_augmentations\": false}, \"training\": "
                         "{\"strategy\": \"train_using_output_tokens\", \"learning_rate\": 0.5, \"num_train_epochs\": 2}}";
    for (int strict = 0; strict < 2; strict++) {
        fs.strict_edits = strict;
        Outcome o = {0};
        ck_assert_msg(domain_evaluate(&d, &m, SPLIT_EVAL, 0, bad_lr, 1, &o, err) == 0, "%s", err);
        ck_assert_int_eq(o.valid, !strict);
        ck_assert_int_eq(o.trained, 0);
        ck_assert_msg(strstr(o.why, "learning_rate"), "%s", o.why);
        if (!strict) {
            ck_assert_msg(strstr(o.why, "0 epochs"), "%s", o.why);
            ck_assert_int_eq(cJSON_GetObjectItem(o.metrics, "views_fallback")->valueint, 1);
            ck_assert_int_eq(cJSON_GetObjectItem(o.metrics, "views")->valueint, 0);
        }
        cJSON_Delete(o.metrics);
        Outcome junk = {0};
        ck_assert_msg(domain_evaluate(&d, &m, SPLIT_EVAL, 0, "{\"data_generation\": tru", 1, &junk, err) == 0, "%s", err);
        ck_assert_int_eq(junk.valid, 0);
        cJSON_Delete(junk.metrics);
    }
    RestemOpts ro = fewshot_restem_defaults();   // self-edit.py's sampling; BC-self-edit.py's filter, batch and merge
    ck_assert(ro.sampling.temperature == 0.8f && ro.sampling.top_p == 1.0f && ro.sampling.max_new == 128 && ro.max_attempts == 1000);
    ck_assert(ro.keep_per_task == 0 && ro.keep_untrained && ro.m_batch == 5 && ro.merge_policy);
    SelfEdit se;
    char why[ERR_MAX];
    ck_assert_int_eq(selfedit_parse(fs.oracle, &se, why), 0);   // ttt.py's oracle: 2 epochs
    ck_assert_int_eq(se.epochs, 2);
    ck_assert(se.basic && se.size && se.chain && se.repeat && se.output_only && se.lr == 1e-4f);
    arc_free_task(&t);
    model_free(&m);
    tok_free(tok);
}
END_TEST

Suite *arc_suite(void) {
    Suite *s = suite_create("arc");
    add_case(s, "arc", 120, transforms_match_numpy, every_transform_inverts, invert_refuses_non_images,
             color_permutations_keep_zero_and_invert, answer_round_trips, malformed_answers, prompt_format,
             selfedit_prompt_format, prompt_format_chatml, selfedit_prompt_format_chatml, fewshot_example_chatml,
             selfedit_parses_valid, selfedit_rejects_invalid, step_limit, leave_out_tasks, cap_and_determinism,
             filter_before_cap, oversized_grids_dropped, symmetric_task_deduplicates, views_and_perfect_model,
             vote_majority_and_ties, vote_ignores_invalid, vote_is_hierarchical, vote_tie_prefers_untransformed,
             load_seal_tasks, load_whole_folders, malformed_task_files, numpy_shuffle_matches, seal_selection,
             color_permutation_prefers_unused, views_leave_two_out, fewshot_zero_epoch_fallback);
    return s;
}
