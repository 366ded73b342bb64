// test_demo.c: the demo's world: procedural tasks (determinism, disjoint
// splits, valid grids, demonstrations that follow their rule, what each
// transformation does) and the tokenizer.json the demo writes and trains.
#include "test.h"
#include "demo_tasks.h"
#include "tokenizer.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CHECK 300   // tasks per split in the sweeps: every slot comes up a dozen times

static const char *const SPECIALS[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
#define N_SPECIALS 5

static Task *make_split(uint64_t seed, int split, int n) {
    char err[ERR_MAX];
    Task *t;
    ck_assert_msg(demo_make_tasks(seed, split, n, &t, err) == 0, "%s", err);
    return t;
}

static int same_grid(const Grid *a, const Grid *b) {
    return a->h == b->h && a->w == b->w && memcmp(a->c, b->c, (size_t)(a->h * a->w)) == 0;
}

static const Pair *pair_of(const Task *t, int i) { return i < t->n_train ? &t->train[i] : &t->test[i - t->n_train]; }

// "12/34" -> a 2x2 grid; rows separated by '/'.
static Grid grid_of(const char *s) {
    Grid g = {0};
    g.w = (int)strcspn(s, "/");
    for (int k = 0; *s; s++)
        if (*s == '/') g.h++;
        else g.c[k++] = (uint8_t)(*s - '0');
    g.h++;
    return g;
}

static void grid_str(const Grid *g, char *out) {
    for (int r = 0; r < g->h; r++) {
        if (r) *out++ = '/';
        for (int c = 0; c < g->w; c++) *out++ = (char)('0' + g->c[r * g->w + c]);
    }
    *out = 0;
}

// ---------------------------------------------------------------- tasks

START_TEST(test_same_seed_same_tasks) {
    for (int s = 0; s < DEMO_N_SPLITS; s++) {
        Task *a = make_split(11, s, 40), *b = make_split(11, s, 40), *c = make_split(12, s, 40);
        int differs = 0;
        for (int i = 0; i < 40; i++) {
            ck_assert_str_eq(a[i].id, b[i].id);
            ck_assert_int_eq(a[i].n_train, b[i].n_train);
            for (int k = 0; k < a[i].n_train + a[i].n_test; k++) {
                ck_assert(same_grid(&pair_of(&a[i], k)->in, &pair_of(&b[i], k)->in));
                ck_assert(same_grid(&pair_of(&a[i], k)->out, &pair_of(&b[i], k)->out));
            }
            differs += strcmp(a[i].id, c[i].id) != 0;
        }
        ck_assert_msg(differs > 20, "seed 12 gives mostly the same rules as seed 11 (%d of 40 differ)", differs);
        // One task alone is the same as the task in the list.
        char err[ERR_MAX];
        Task one;
        ck_assert_msg(demo_make_task(11, s, 37, &one, err) == 0, "%s", err);
        ck_assert_str_eq(one.id, a[37].id);
        ck_assert(same_grid(&one.test[0].in, &a[37].test[0].in));
        demo_free_task(&one);
        demo_free_tasks(a, 40);
        demo_free_tasks(b, 40);
        demo_free_tasks(c, 40);
    }
}
END_TEST

// Colour maps are dealt to the splits, no map in two of them; every other step
// is a prior that pretraining shows in every family, and every SEAL-training
// and held-out rule carries a map of its own split.
START_TEST(test_splits_disjoint) {
    enum { MAX_NAMES = 2 * N_CHECK };
    static char names[DEMO_N_SPLITS][MAX_NAMES][48];
    int n_names[DEMO_N_SPLITS] = {0};
    for (int s = 0; s < DEMO_N_SPLITS; s++) {
        Task *t = make_split(5, s, N_CHECK);
        int fams = 0;
        for (int i = 0; i < N_CHECK; i++) {
            DemoRule r;
            ck_assert_msg(demo_rule_parse(t[i].id, &r) == 0, "%s: rule does not parse", t[i].id);
            ck_assert_msg(demo_rule_split(&r) == s, "%s: rule belongs to split %d", t[i].id, demo_rule_split(&r));
            char prefix[32];
            snprintf(prefix, sizeof prefix, "demo-%s-%04d-", demo_split_name(s), i);
            ck_assert_msg(strncmp(t[i].id, prefix, strlen(prefix)) == 0, "%s: expected prefix %s", t[i].id, prefix);
            int maps = 0;
            for (int k = 0; k < r.n; k++) {
                fams |= 1 << r.step[k].fam;
                if (r.step[k].fam != DEMO_CMAP) continue;
                DemoRule one = {1, {r.step[k]}};
                ck_assert(demo_rule_name(&one, names[s][n_names[s]++], 48) == 0);
                maps++;
            }
            ck_assert_msg(s == DEMO_PRETRAIN || maps == 1, "%s: a %s rule without a colour map", t[i].id, demo_split_name(s));
        }
        int want = s == DEMO_PRETRAIN ? (1 << DEMO_N_FAMILIES) - 1
                                      : 1 << DEMO_CMAP;
        ck_assert_msg(fams == want, "split %s: families %x, expected %x", demo_split_name(s), fams, want);
        demo_free_tasks(t, N_CHECK);
    }
    for (int s = 0; s < DEMO_N_SPLITS; s++)
        for (int o = s + 1; o < DEMO_N_SPLITS; o++)
            for (int i = 0; i < n_names[s]; i++)
                for (int j = 0; j < n_names[o]; j++)
                    ck_assert_msg(strcmp(names[s][i], names[o][j]) != 0, "map %s is in splits %s and %s", names[s][i],
                                  demo_split_name(s), demo_split_name(o));
}
END_TEST

START_TEST(test_grids_valid_and_follow_rule) {
    for (int s = 0; s < DEMO_N_SPLITS; s++) {
        Task *t = make_split(9, s, N_CHECK);
        for (int i = 0; i < N_CHECK; i++) {
            ck_assert_msg(t[i].n_train >= 3 && t[i].n_train <= 5 && t[i].n_test == 1, "%s: %d demos, %d tests", t[i].id,
                          t[i].n_train, t[i].n_test);
            DemoRule r;
            ck_assert(demo_rule_parse(t[i].id, &r) == 0);
            for (int k = 0; k < t[i].n_train + t[i].n_test; k++) {
                const Pair *p = pair_of(&t[i], k);
                const Grid *g[2] = {&p->in, &p->out};
                for (int j = 0; j < 2; j++) {
                    ck_assert_msg(g[j]->h >= 1 && g[j]->h <= GRID_MAX && g[j]->w >= 1 && g[j]->w <= GRID_MAX,
                                  "%s pair %d: %dx%d", t[i].id, k, g[j]->h, g[j]->w);
                    for (int c = 0; c < g[j]->h * g[j]->w; c++) ck_assert_int_le(g[j]->c[c], 9);
                }
                Grid out;
                ck_assert_msg(demo_apply(&r, &p->in, &out) == 0, "%s pair %d: the rule gives no result", t[i].id, k);
                ck_assert_msg(same_grid(&out, &p->out), "%s pair %d: output is not the rule's", t[i].id, k);
                ck_assert_msg(!same_grid(&p->in, &p->out), "%s pair %d: output equals input", t[i].id, k);
            }
        }
        demo_free_tasks(t, N_CHECK);
    }
}
END_TEST

// What each step does, on grids small enough to check by eye.
START_TEST(test_transformations) {
    static const struct { const char *rule, *in, *out; } CASES[] = {
        {"rot90", "123/456", "41/52/63"},
        {"rot180", "123/456", "654/321"},
        {"rot270", "123/456", "36/25/14"},
        {"flipud", "123/456", "456/123"},
        {"fliplr", "123/456", "321/654"},
        {"transpose", "123/456", "14/25/36"},
        {"antitranspose", "123/456", "63/52/41"},
        {"cmap(1>2,2>1)", "120/300", "210/300"},
        {"cmap(1>5,3>1)", "130/013", "510/051"},
        {"shift(1,0)", "120/003/400", "000/120/003"},
        {"roll(1,0)", "120/003/400", "400/120/003"},
        {"shift(-1,1)", "120/003/400", "000/040/000"},
        {"roll(0,-1)", "120/003", "201/030"},
        {"gravity(down)", "120/003/400", "000/100/423"},
        {"gravity(up)", "120/003/400", "123/400/000"},
        {"gravity(left)", "102/030/004", "120/300/400"},
        {"gravity(right)", "102/030/004", "012/003/004"},
        {"tile1x2", "12/30", "1212/3030"},
        {"tile2x1m", "12/30", "12/30/30/12"},
        {"tile2x2m", "12/30", "1221/3003/3003/1221"},
        {"crop", "0000/0120/0000/0030", "12/00/03"},
        {"crop(3)", "1000/0300/0030/0001", "30/03"},
        {"outline4(5)", "000/010/000", "050/515/050"},
        {"outline8(5)", "0000/0100/0000", "5550/5150/5550"},
        {"scale2x1", "12", "12/12"},
        {"scale2x2", "12/30", "1122/1122/3300/3300"},
        {"rot90+cmap(1>2,4>1)", "12/40", "12/02"},   // rot90 gives 41/02
        {"crop+scale1x2", "000/020/000", "22"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        DemoRule r;
        ck_assert_msg(demo_rule_parse(CASES[i].rule, &r) == 0, "%s does not parse", CASES[i].rule);
        char name[64], got[256];
        ck_assert(demo_rule_name(&r, name, sizeof name) == 0);
        ck_assert_str_eq(name, CASES[i].rule);
        Grid in = grid_of(CASES[i].in), out;
        ck_assert_msg(demo_apply(&r, &in, &out) == 0, "%s gives no result", CASES[i].rule);
        grid_str(&out, got);
        ck_assert_msg(strcmp(got, CASES[i].out) == 0, "%s of %s: got %s, want %s", CASES[i].rule, CASES[i].in, got, CASES[i].out);
    }
    // No result: crop of an empty grid, a grid past GRID_MAX.
    DemoRule r;
    Grid empty = grid_of("00/00"), big = {0}, out;
    ck_assert(demo_rule_parse("crop", &r) == 0 && demo_apply(&r, &empty, &out) == -1);
    big.h = big.w = 20;
    ck_assert(demo_rule_parse("scale2x2", &r) == 0 && demo_apply(&r, &big, &out) == -1);
    DemoRule junk = {1, {{DEMO_TILE, {0, 2, 0, 0}}}};   // 0 copies: not an instance
    char name[64];
    ck_assert(demo_apply(&junk, &empty, &out) == -1 && demo_rule_name(&junk, name, sizeof name) == -1);
    junk.step[0].fam = DEMO_N_FAMILIES;
    ck_assert(demo_apply(&junk, &empty, &out) == -1 && demo_rule_split(&junk) == -1);
    const char *bad[] = {"", "rot45", "rot90+", "+rot90", "rot90+rot90+rot90", "cmap(1>1,2>3)", "tile1x1", "crop(0)"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(demo_rule_parse(bad[i], &r) == -1, "\"%s\" parsed", bad[i]);
}
END_TEST

START_TEST(test_bad_arguments) {
    char err[ERR_MAX];
    Task *t = (Task *)1;
    ck_assert(demo_make_tasks(1, 3, 5, &t, err) == -1 && t == NULL);
    ck_assert_msg(strstr(err, "split") != NULL, "%s", err);
    ck_assert(demo_make_tasks(1, DEMO_EVAL, -1, &t, err) == -1);
    ck_assert(demo_make_tasks(1, DEMO_EVAL, 0, &t, err) == 0);
    demo_free_tasks(t, 0);
}
END_TEST

// ---------------------------------------------------------------- tokenizer

// A task as the few-shot prompt writes it: grids as rows of digits.
static char *task_text(const Task *t) {
    char *s = malloc(16384), *p = s;
    for (int k = 0; k < t->n_train + t->n_test; k++) {
        const Pair *q = pair_of(t, k);
        const Grid *g[2] = {&q->in, &q->out};
        for (int j = 0; j < 2; j++) {
            p += sprintf(p, j ? "output:\n" : "input:\n");
            for (int r = 0; r < g[j]->h; r++) {
                for (int c = 0; c < g[j]->w; c++) *p++ = (char)('0' + g[j]->c[r * g[j]->w + c]);
                *p++ = '\n';
            }
        }
    }
    *p = 0;
    ChatMsg m[2] = {{"user", s}, {"assistant", "{\"training\": {\"learning_rate\": 1e-4}}"}};
    char *chat = chat_render_llama3(m, 2, 0);
    free(s);
    return chat;
}

static int encode_count(const Tokenizer *tk, const char *s, size_t n, int **ids) {
    char err[ERR_MAX];
    int k = tok_encode(tk, s, n, 1, ids, err);
    ck_assert_msg(k >= 0, "%s", err);
    return k;
}

static Tokenizer *load(const char *json) {
    char err[ERR_MAX];
    ck_assert(json != NULL);
    Tokenizer *tk = tok_load_json(json, "made.json", err);
    ck_assert_msg(tk != NULL, "%s", err);
    return tk;
}

START_TEST(test_trained_tokenizer) {
    enum { N = 200 };
    Task *t = make_split(3, DEMO_PRETRAIN, N);
    char *texts[N];
    for (int i = 0; i < N; i++) texts[i] = task_text(&t[i]);
    char *json = tok_train_bytelevel((const char *const *)texts, N, 400, SPECIALS, N_SPECIALS);
    char *again = tok_train_bytelevel((const char *const *)texts, N, 400, SPECIALS, N_SPECIALS);
    ck_assert(json && again && strcmp(json, again) == 0);   // deterministic
    Tokenizer *tk = load(json);
    int vocab = tok_vocab_size(tk);   // a merge whose result exists adds no token
    ck_assert_int_gt(vocab, 256 + 350 + N_SPECIALS);
    ck_assert_int_le(vocab, 256 + 400 + N_SPECIALS);
    for (int i = 0; i < N_SPECIALS; i++) {   // specials: single ids after the vocab
        int *ids, id = tok_find(tk, SPECIALS[i]);
        ck_assert_int_eq(id, vocab - N_SPECIALS + i);
        ck_assert_int_eq(encode_count(tk, SPECIALS[i], strlen(SPECIALS[i]), &ids), 1);
        ck_assert_int_eq(ids[0], id);
        free(ids);
    }
    Task *held = make_split(3, DEMO_EVAL, 20);   // text the tokenizer never saw
    for (int i = 0; i < 20; i++) {
        char *s = task_text(&held[i]);
        int *ids, n = encode_count(tk, s, strlen(s), &ids);
        ck_assert_msg(n < (int)strlen(s) / 2, "%d tokens for %zu bytes", n, strlen(s));
        expect_roundtrip(tk, s, strlen(s), 1);
        free(ids);
        free(s);
    }
    // Grid rows cut in runs of three digits, then merged.
    int *ids, n = encode_count(tk, "000000\n", 7, &ids);
    ck_assert_int_eq(n, 3);
    free(ids);
    tok_free(tk);
    free(json);
    free(again);

    // Single digits: one token per cell, one per row end.
    json = tok_train_bytelevel_ex((const char *const *)texts, N, 400, SPECIALS, N_SPECIALS, TOK_TRAIN_SINGLE_DIGITS);
    tk = load(json);
    const char *grid = "000120\n003400\n";
    n = encode_count(tk, grid, strlen(grid), &ids);
    ck_assert_int_eq(n, 14);
    for (int i = 0; i < n; i++) {
        const char *b;
        ck_assert_int_eq(tok_token_bytes(tk, ids[i], &b), 1);
    }
    free(ids);
    n = encode_count(tk, "input:\n", 7, &ids);
    ck_assert_int_le(n, 2);   // words still merge
    free(ids);
    tok_free(tk);
    free(json);
    for (int i = 0; i < N; i++) free(texts[i]);
    demo_free_tasks(t, N);
    demo_free_tasks(held, 20);
}
END_TEST

START_TEST(test_bytelevel_json) {
    // No merges: every byte string comes back, invalid UTF-8 and NUL included.
    char *json = tok_bytelevel_json(NULL, 0, SPECIALS, N_SPECIALS);
    Tokenizer *tk = load(json);
    ck_assert_int_eq(tok_vocab_size(tk), 256 + N_SPECIALS);
    for (int b = 0; b < 256; b++) {   // id = byte
        const char *bytes;
        ck_assert_int_eq(tok_token_bytes(tk, b, &bytes), 1);
        ck_assert_int_eq((unsigned char)bytes[0], b);
    }
    Rng r;
    rng_seed(&r, 77);
    char buf[600];
    for (int rep = 0; rep < 50; rep++) {
        size_t n = (size_t)(rng_next(&r) % sizeof buf);
        for (size_t i = 0; i < n; i++) buf[i] = (char)(rng_next(&r) & 0xFF);
        expect_roundtrip(tk, buf, n, 1);
    }
    const char odd[] = "\xff\xfe caf\xc3\xa9 \xe2\x82 \xf0\x9f\x98\x80 \x00x <|eot_id|>\r\n";
    expect_roundtrip(tk, odd, sizeof odd - 1, 1);
    tok_free(tk);
    free(json);

    // Merges are raw bytes; results are tokens in merge order; a result that
    // exists already adds no token.
    const char *const merges[][2] = {{"a", "b"}, {"ab", "c"}, {" ", "\xc3"}, {"b", "c"}, {"a", "bc"}};
    json = tok_bytelevel_json(merges, 5, SPECIALS, 1);
    tk = load(json);
    ck_assert_int_eq(tok_vocab_size(tk), 256 + 4 + 1);
    ck_assert_int_eq(tok_find(tk, "ab"), 256);
    ck_assert_int_eq(tok_find(tk, "abc"), 257);
    ck_assert_int_eq(tok_find(tk, "\xc4\xa0\xc3\x83"), 258);   // " \xc3" as tokenizer.json writes it
    ck_assert_int_eq(tok_find(tk, "bc"), 259);
    int *ids, n = encode_count(tk, "abc", 3, &ids);
    ck_assert(n == 1 && ids[0] == 257);
    free(ids);
    tok_free(tk);
    free(json);

    const char *const bad[][2] = {{"a", "b"}, {"abc", "d"}};   // "abc" is not a token
    ck_assert(tok_bytelevel_json(bad, 2, NULL, 0) == NULL);
    const char *const empty[][2] = {{"", "b"}};
    ck_assert(tok_bytelevel_json(empty, 1, NULL, 0) == NULL);
}
END_TEST

Suite *demo_suite(void) {
    Suite *s = suite_create("demo");
    add_case(s, "tasks", 60, test_same_seed_same_tasks, test_splits_disjoint, test_grids_valid_and_follow_rule,
             test_transformations, test_bad_arguments);
    add_case(s, "tokenizer", 60, test_trained_tokenizer, test_bytelevel_json);
    return s;
}
