// test_tokenizer.c: the tokenizer against HF-made expected ids (shared data),
// against a small tokenizer.json written here, and the Llama-3 chat template.
#include "test.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

// ---------------------------------------------------------------- helpers

// Reads data_dir(rel)/rel, or NULL (after printing SKIP) when it is not there.
static char *read_data(const char *rel, size_t *len) {
    char path[4096], err[ERR_MAX];
    const char *d = data_dir(rel);
    if (!d) return NULL;
    snprintf(path, sizeof path, "%s/%s", d, rel);
    char *text = read_file(path, len, err);
    if (!text) printf("SKIP: %s\n", err);
    return text;
}

static Tokenizer *load_llama3(void) {
    char path[4096], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.json", data_dir("llama3/tokenizer.json"));
    Tokenizer *t = tok_load(path, err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

// Encodes text (NUL-terminated) and checks the ids.
static void expect_ids(const Tokenizer *t, const char *text, int allow_special, const int *want, int n_want) {
    char err[ERR_MAX];
    int *ids, n = tok_encode(t, text, strlen(text), allow_special, &ids, err);
    ck_assert_msg(n >= 0, "encode \"%s\": %s", text, err);
    ck_assert_msg(n == n_want, "encode \"%s\": %d ids, want %d", text, n, n_want);
    for (int i = 0; i < n; i++) ck_assert_msg(ids[i] == want[i], "encode \"%s\": id %d is %d, want %d", text, i, ids[i], want[i]);
    free(ids);
}
#define EXPECT(t, text, special, ...) do { \
    int want_[] = {__VA_ARGS__}; \
    expect_ids(t, text, special, want_, (int)(sizeof want_ / sizeof *want_)); } while (0)

// ---------------------------------------------------------------- a small tokenizer.json

// GPT-2's bytes_to_unicode, written out here independently of tokenizer.c.
static int byte_cp(int b) {
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        if (c == b) return printable ? b : 256 + n;
        if (!printable) n++;
    }
    return -1;
}

// Raw bytes -> the token as tokenizer.json writes it (UTF-8 of mapped chars).
static void byte_level(const char *raw, char *out) {
    for (; *raw; raw++) {
        int cp = byte_cp((unsigned char)*raw);
        if (cp < 0x80) *out++ = (char)cp;
        else { *out++ = (char)(0xC0 | cp >> 6); *out++ = (char)(0x80 | (cp & 0x3F)); }
    }
    *out = 0;
}

typedef struct { int pair_merges, ignore_merges, swap_first, gpt2_pre; } SmallOpts;

// Ids 0-255 are the bytes; then these, made by the merges below in rank order.
static const char *small_extra[] = {"ab", "bc", "abc", "he", "ll", "hell", "hello", " w", "xyz", "34"};
static const char *small_merges[][2] = {{"a", "b"}, {"b", "c"}, {"ab", "c"}, {"h", "e"}, {"l", "l"},
                                        {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"3", "4"}};
enum { AB = 256, BC, ABC, HE, LL, HELL, HELLO, SP_W, XYZ, D34, EOT_ID = 300, EOT, X_TAG };

static cJSON *small_tree(SmallOpts o) {
    char key[64], a[32], b[32];
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddBoolToObject(model, "ignore_merges", o.ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < 256; i++) {
        char raw[2] = {(char)i, 0};
        if (i == 0) { cJSON_AddNumberToObject(vocab, "\xC4\x80", 0); continue; }   // byte 0 is U+0100
        byte_level(raw, key);
        cJSON_AddNumberToObject(vocab, key, i);
    }
    for (int i = 0; i < (int)(sizeof small_extra / sizeof *small_extra); i++) {
        byte_level(small_extra[i], key);
        cJSON_AddNumberToObject(vocab, key, 256 + i);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    int n_merges = (int)(sizeof small_merges / sizeof *small_merges);
    for (int r = 0; r < n_merges; r++) {
        int i = o.swap_first && r < 2 ? 1 - r : r;
        byte_level(small_merges[i][0], a);
        byte_level(small_merges[i][1], b);
        if (o.pair_merges) {
            const char *pair[2] = {a, b};
            cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
        } else {
            snprintf(key, sizeof key, "%s %s", a, b);
            cJSON_AddItemToArray(merges, cJSON_CreateString(key));
        }
    }
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const char *contents[] = {"<|eot_id|>", "<|eot", "<x>"};
    for (int i = 0; i < 3; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", EOT_ID + i);
        cJSON_AddStringToObject(t, "content", contents[i]);
        cJSON_AddBoolToObject(t, "special", i < 2);
        cJSON_AddItemToArray(added, t);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (o.gpt2_pre) {
        cJSON_AddStringToObject(pre, "type", "ByteLevel");
        cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
        cJSON_AddBoolToObject(pre, "use_regex", 1);
    } else {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers"), *split = cJSON_CreateObject(), *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", LLAMA_REGEX);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(list, split);
        cJSON_AddItemToArray(list, bl);
    }
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    return root;
}

// Loads a tree as "small.json"; frees the tree.
static Tokenizer *load_tree(cJSON *root, char *err) {
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    Tokenizer *t = tok_load_json(text, "small.json", err);
    free(text);
    return t;
}

static Tokenizer *small(SmallOpts o) {
    char err[ERR_MAX];
    Tokenizer *t = load_tree(small_tree(o), err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

// The error from loading a small tokenizer after `edit`, which must mention want.
static void expect_load_error(cJSON *root, const char *want) {
    char err[ERR_MAX] = "";
    Tokenizer *t = load_tree(root, err);
    ck_assert_msg(t == NULL, "loaded, but wanted an error with \"%s\"", want);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" does not mention \"%s\"", err, want);
}

// ---------------------------------------------------------------- small-tokenizer tests

START_TEST(test_merge_priority) {
    Tokenizer *t = small((SmallOpts){0});
    EXPECT(t, "abc", 1, ABC);                   // a+b (rank 0), then ab+c (rank 2)
    EXPECT(t, "lll", 1, LL, 'l');                // equal ranks: leftmost first
    EXPECT(t, "hello", 1, HELLO);
    EXPECT(t, "hello world", 1, HELLO, SP_W, 'o', 'r', 'l', 'd');
    tok_free(t);
    t = small((SmallOpts){.swap_first = 1});    // b+c now outranks a+b
    EXPECT(t, "abc", 1, 'a', BC);
    tok_free(t);
}
END_TEST

START_TEST(test_bytes_without_merges) {
    Tokenizer *t = small((SmallOpts){0});
    EXPECT(t, "\x01\xff q", 1, 1, 255, ' ', 'q');
    EXPECT(t, "zz", 1, 'z', 'z');
    tok_free(t);
}
END_TEST

START_TEST(test_added_tokens) {
    Tokenizer *t = small((SmallOpts){0});
    EXPECT(t, "ab<|eot_id|>c", 1, AB, EOT_ID, 'c');
    EXPECT(t, "<|eot_id|>", 1, EOT_ID);         // the longest of <|eot and <|eot_id|>
    EXPECT(t, "<|eot_i", 1, EOT, '_', 'i');
    EXPECT(t, "<<|eot>>", 1, '<', EOT, '>', '>');
    EXPECT(t, "<|eot<|eot_id|><x>", 1, EOT, EOT_ID, X_TAG);
    // Without allow_special the special ones are plain text; "<x>" is not special.
    EXPECT(t, "<|eot<x>", 0, '<', '|', 'e', 'o', 't', X_TAG);
    char err[ERR_MAX];
    int *ids, n = tok_encode(t, "<|eot_id|>", 10, 0, &ids, err);
    ck_assert_int_eq(n, 10);
    for (int i = 0; i < n; i++) ck_assert_int_lt(ids[i], 256);
    free(ids);
    expect_roundtrip(t, "<|eot_id|>", 10, 0);
    tok_free(t);
}
END_TEST

START_TEST(test_empty) {
    Tokenizer *t = small((SmallOpts){0});
    char err[ERR_MAX];
    int *ids = NULL, n = tok_encode(t, "", 0, 1, &ids, err);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_nonnull(ids);
    free(ids);
    size_t len = 99;
    char *s = tok_decode(t, NULL, 0, &len, err);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, 0);
    free(s);
    tok_free(t);
}
END_TEST

START_TEST(test_invalid_utf8) {
    Tokenizer *t = small((SmallOpts){0});
    EXPECT(t, "\xed\xa0\x80", 1, 0xed, 0xa0, 0x80);   // a lone surrogate's bytes
    const char *cases[] = {"\xed\xa0\x80", "\xff\xfe", "ab\xc3", "\xf0\x9f\x98", "x\x80y z", "\xc0\xaf", "hello\xe2\x28\xa1 world"};
    for (int i = 0; i < (int)(sizeof cases / sizeof *cases); i++) expect_roundtrip(t, cases[i], strlen(cases[i]), 1);
    expect_roundtrip(t, "a\0b<|eot_id|>\0", 14, 1);    // NULs are text too
    tok_free(t);
}
END_TEST

START_TEST(test_merge_forms_agree) {
    Tokenizer *s = small((SmallOpts){0}), *p = small((SmallOpts){.pair_merges = 1});
    const char *texts[] = {"abc", "hello world", "ab bc abc cab", "hellohello", "1234 34"};
    char err[ERR_MAX];
    for (int i = 0; i < (int)(sizeof texts / sizeof *texts); i++) {
        int *a, *b, na = tok_encode(s, texts[i], strlen(texts[i]), 1, &a, err), nb = tok_encode(p, texts[i], strlen(texts[i]), 1, &b, err);
        ck_assert_int_eq(na, nb);
        ck_assert_msg(memcmp(a, b, (size_t)na * sizeof *a) == 0, "forms differ on \"%s\"", texts[i]);
        free(a);
        free(b);
    }
    tok_free(s);
    tok_free(p);
}
END_TEST

START_TEST(test_ignore_merges) {
    Tokenizer *t = small((SmallOpts){.ignore_merges = 1});
    EXPECT(t, "xyz", 1, XYZ);                   // in the vocab, though no merge makes it
    EXPECT(t, "xyzx", 1, 'x', 'y', 'z', 'x');
    tok_free(t);
    t = small((SmallOpts){0});
    EXPECT(t, "xyz", 1, 'x', 'y', 'z');
    tok_free(t);
}
END_TEST

START_TEST(test_gpt2_pretokenizer) {
    // Llama's regex cuts digits in threes; GPT-2's keeps " ?\p{N}+" whole.
    Tokenizer *t = small((SmallOpts){0});
    EXPECT(t, "123456", 1, '1', '2', '3', '4', '5', '6');
    tok_free(t);
    t = small((SmallOpts){.gpt2_pre = 1});
    EXPECT(t, "123456", 1, '1', '2', D34, '5', '6');
    EXPECT(t, "hello world", 1, HELLO, SP_W, 'o', 'r', 'l', 'd');
    tok_free(t);
}
END_TEST

START_TEST(test_lookup_and_decode) {
    Tokenizer *t = small((SmallOpts){0});
    char err[ERR_MAX];
    ck_assert_int_eq(tok_vocab_size(t), X_TAG + 1);
    ck_assert_int_eq(tok_find(t, "<|eot_id|>"), EOT_ID);
    ck_assert_int_eq(tok_find(t, "\xC4\xA0w"), SP_W);   // "Ġw" as tokenizer.json writes it
    ck_assert_int_eq(tok_find(t, "hello"), HELLO);
    ck_assert_int_eq(tok_find(t, "nope"), -1);
    const char *b;
    ck_assert_int_eq(tok_token_bytes(t, SP_W, &b), 2);
    ck_assert(memcmp(b, " w", 2) == 0);
    ck_assert_int_eq(tok_token_bytes(t, EOT_ID, &b), 10);
    ck_assert(memcmp(b, "<|eot_id|>", 10) == 0);
    ck_assert_int_eq(tok_token_bytes(t, 299, &b), -1);   // a hole between ids
    ck_assert_int_eq(tok_token_bytes(t, 5000, &b), -1);
    int ids[] = {HELLO, SP_W, EOT_ID, 0};
    size_t len;
    char *s = tok_decode(t, ids, 4, &len, err);
    ck_assert_uint_eq(len, 18);
    ck_assert(memcmp(s, "hello w<|eot_id|>\0", 18) == 0);
    free(s);
    int bad[] = {HELLO, 5000};
    ck_assert_ptr_null(tok_decode(t, bad, 2, &len, err));
    ck_assert_msg(strstr(err, "5000") != NULL, "%s", err);
    int neg[] = {-1};
    ck_assert_ptr_null(tok_decode(t, neg, 1, &len, err));
    int hole[] = {299};
    ck_assert_ptr_null(tok_decode(t, hole, 1, &len, err));
    tok_free(t);
}
END_TEST

START_TEST(test_malformed_files) {
    char err[ERR_MAX];
    cJSON *r;
    ck_assert_ptr_null(tok_load_json("{\"model\": ", "small.json", err));
    ck_assert_msg(strstr(err, "small.json: not valid JSON") != NULL, "%s", err);
    ck_assert_ptr_null(tok_load("/nonexistent/tokenizer.json", err));
    ck_assert_msg(strstr(err, "/nonexistent/tokenizer.json") != NULL, "%s", err);

    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "merges"), 1, cJSON_CreateNumber(42));
    expect_load_error(r, "small.json: model.merges[1]: expected \"a b\" string or [a, b] pair");
    r = small_tree((SmallOpts){.pair_merges = 1});
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "merges"), 2, cJSON_CreateString("a b c"));
    expect_load_error(r, "model.merges[2]: expected");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "merges"), 3, cJSON_CreateString("a qq"));
    expect_load_error(r, "model.merges[3]: \"qq\" is not in model.vocab");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "merges"), 3, cJSON_CreateString("q q"));
    expect_load_error(r, "model.merges[3]: the merged token is not in model.vocab");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "model"), "vocab"), "ab", cJSON_CreateString("x"));
    expect_load_error(r, "model.vocab[\"ab\"]: expected an integer id");
    r = small_tree((SmallOpts){0});
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(r, "model"), "merges");
    cJSON_AddNumberToObject(cJSON_GetObjectItem(r, "model"), "merges", 1);
    expect_load_error(r, "model.merges: expected an array");
    r = small_tree((SmallOpts){0});
    cJSON_DeleteItemFromObject(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "added_tokens"), 1), "content");
    expect_load_error(r, "added_tokens[1].content: expected a string");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers", cJSON_CreateString("x"));
    expect_load_error(r, "pre_tokenizer.pretokenizers: expected an array");
    r = small_tree((SmallOpts){0});
    cJSON *split = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers"), 0);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(split, "pattern"), "Regex", cJSON_CreateString("(a"));
    expect_load_error(r, "pre_tokenizer.pretokenizers[0].pattern: regex does not compile");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(r, "model", cJSON_CreateArray());
    expect_load_error(r, "small.json: model: expected an object");
}
END_TEST

START_TEST(test_unsupported_kinds) {
    cJSON *r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "model"), "type", cJSON_CreateString("WordPiece"));
    expect_load_error(r, "model.type: \"WordPiece\" is not supported");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "model"), "type", cJSON_CreateString("Unigram"));
    expect_load_error(r, "model.type: \"Unigram\" is not supported");
    r = small_tree((SmallOpts){0});
    cJSON *nfc = cJSON_CreateObject();
    cJSON_AddStringToObject(nfc, "type", "NFD");
    cJSON_ReplaceItemInObject(r, "normalizer", nfc);
    expect_load_error(r, "normalizer: \"NFD\" is not supported (only none or NFC)");
    r = small_tree((SmallOpts){0});
    cJSON *ws = cJSON_CreateObject();
    cJSON_AddStringToObject(ws, "type", "Whitespace");
    cJSON_ReplaceItemInObject(r, "pre_tokenizer", ws);
    expect_load_error(r, "pre_tokenizer: pre-tokenizer \"Whitespace\" is not supported");
    r = small_tree((SmallOpts){0});
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers"), 1);
    expect_load_error(r, "pre_tokenizer: no ByteLevel step");
    r = small_tree((SmallOpts){0});
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "model"), "dropout", cJSON_CreateNumber(0.1));
    expect_load_error(r, "model.dropout");
    r = small_tree((SmallOpts){0});
    cJSON_AddTrueToObject(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "added_tokens"), 2), "lstrip");
    expect_load_error(r, "added_tokens[2].lstrip: true is not supported");
}
END_TEST

// ---------------------------------------------------------------- tokenizer_cases.jsonl

// One line of a tokenizer_cases.jsonl file: the text's exact bytes
// (json_string_member keeps NULs), the ids Hugging Face gives and the category.
typedef struct { char *text; size_t len; int *ids, n_ids; const char *category; cJSON *root; } TokCase;

// Parses the line at *at (lines split on "\n" only) into c and moves *at to
// the next; 0 at the end of the file. case_free frees c.
static int next_case(char **at, TokCase *c) {
    char *line = *at, err[ERR_MAX];
    if (!line || !*line) return 0;
    *at = strchr(line, '\n');
    if (*at) *(*at)++ = 0;
    c->text = json_string_member(line, "text", &c->len, err);
    ck_assert_msg(c->text != NULL, "%s in: %.80s", err, line);
    c->root = cJSON_Parse(line);
    const cJSON *ids = cJSON_GetObjectItem(c->root, "ids"), *category = cJSON_GetObjectItem(c->root, "category");
    c->n_ids = cJSON_GetArraySize(ids);
    c->ids = malloc(((size_t)c->n_ids + 1) * sizeof *c->ids);
    int i = 0;
    for (const cJSON *v = ids->child; v; v = v->next) c->ids[i++] = v->valueint;
    c->category = cJSON_IsString(category) ? category->valuestring : "?";
    return 1;
}

static void case_free(TokCase *c) { free(c->text); free(c->ids); cJSON_Delete(c->root); }

// ---------------------------------------------------------------- the real Llama-3 tokenizer

START_TEST(test_llama3_cases) {
    size_t n;
    char *file = read_data("llama3/tokenizer_cases.jsonl", &n);
    if (!file) return;
    Tokenizer *t = load_llama3();
    char err[ERR_MAX];
    int lines = 0, enc_ok = 0, dec_ok = 0;
    TokCase cs;
    for (char *at = file; next_case(&at, &cs); case_free(&cs)) {
        lines++;
        int *ids, k = tok_encode(t, cs.text, cs.len, 1, &ids, err);
        ck_assert_msg(k >= 0, "line %d: %s", lines, err);
        if (k == cs.n_ids && memcmp(ids, cs.ids, (size_t)k * sizeof *ids) == 0) enc_ok++;
        else printf("tokenizer case line %d (%s): encode gives other ids\n", lines, cs.category);
        size_t back_len;
        char *back = tok_decode(t, cs.ids, cs.n_ids, &back_len, err);
        ck_assert_msg(back != NULL, "line %d: %s", lines, err);
        if (back_len == cs.len && memcmp(back, cs.text, cs.len) == 0) dec_ok++;
        else printf("tokenizer case line %d: decode differs\n", lines);
        free(back);
        free(ids);
    }
    printf("tokenizer cases: %d lines, encode %d ok, decode %d ok\n", lines, enc_ok, dec_ok);
    ck_assert_int_eq(lines, 144);
    ck_assert_int_eq(enc_ok, lines);
    ck_assert_int_eq(dec_ok, lines);
    tok_free(t);
    free(file);
}
END_TEST

// A small tokenizer.json in Qwen2's layout (NFC normalizer, single-digit Split
// regex, ChatML specials) trained by Hugging Face `tokenizers`, and the ids HF
// gives for texts that NFC leaves alone and texts it changes (test/qwen2_tokenizer.py).
START_TEST(test_qwen2_cases) {
    char err[ERR_MAX];
    char *file = read_file("test/qwen2_tokenizer/cases.jsonl", NULL, err);
    ck_assert_msg(file != NULL, "%s", err);
    Tokenizer *t = tok_load("test/qwen2_tokenizer/tokenizer.json", err);
    ck_assert_msg(t != NULL, "%s", err);
    int lines = 0;
    TokCase cs;
    for (char *at = file; next_case(&at, &cs); case_free(&cs)) {
        lines++;
        int *ids, k = tok_encode(t, cs.text, cs.len, 1, &ids, err);
        ck_assert_msg(k >= 0, "%s: %s", cs.category, err);
        ck_assert_msg(k == cs.n_ids, "%s: %d ids, HF gives %d", cs.category, k, cs.n_ids);
        for (int i = 0; i < k; i++)
            ck_assert_msg(ids[i] == cs.ids[i], "%s: id %d is %d, HF gives %d", cs.category, i, ids[i], cs.ids[i]);
        free(ids);
    }
    ck_assert_int_eq(lines, 14);
    // Decomposed text encodes as its composed form; invalid UTF-8 around it stays bytes.
    const char composed[] = "caf\xc3\xa9", decomposed[] = "cafe\xcc\x81", broken[] = "\xff" "cafe\xcc\x81" "\xc3";
    int *a, *b, *c;
    int na = tok_encode(t, composed, strlen(composed), 0, &a, err), nb = tok_encode(t, decomposed, strlen(decomposed), 0, &b, err);
    int nc = tok_encode(t, broken, strlen(broken), 0, &c, err);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, (size_t)na * sizeof *a), 0);
    ck_assert_int_eq(nc, na + 2);
    ck_assert_int_eq(memcmp(c + 1, a, (size_t)na * sizeof *a), 0);
    free(a); free(b); free(c);
    tok_free(t);
    free(file);
}
END_TEST

START_TEST(test_llama3_specials) {
    size_t n;
    char *file = read_data("llama3/tokenizer.json", &n);
    if (!file) return;
    free(file);
    Tokenizer *t = load_llama3();
    ck_assert_int_eq(tok_vocab_size(t), 128256);
    ck_assert_int_eq(tok_find(t, "<|begin_of_text|>"), 128000);
    ck_assert_int_eq(tok_find(t, "<|eot_id|>"), 128009);
    ck_assert_int_eq(tok_find(t, "<|reserved_special_token_247|>"), 128255);
    EXPECT(t, "This is a test sentence.", 1, 2028, 374, 264, 1296, 11914, 13);   // Meta's unit test
    EXPECT(t, " việc", 1, 100769);                                              // ignore_merges
    EXPECT(t, "<<|eot_id|>>", 1, 27, 128009, 29);
    EXPECT(t, "<|eot_id|>", 0, 27, 91, 68, 354, 851, 91, 29);
    expect_roundtrip(t, "caf\xc3\xa9 \xed\xa0\x80 \xff end", 15, 1);
    tok_free(t);
}
END_TEST

// ---------------------------------------------------------------- chat template

static void expect_render(const ChatMsg *m, int n, int gen, const char *want) {
    char *got = chat_render_llama3(m, n, gen);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strcmp(got, want) == 0, "rendered:\n%s\nwant:\n%s", got, want);
    free(got);
}

// The two chat-template renderings in tokenizer_cases.jsonl (made by HF's
// apply_chat_template): decode their ids, then render the same messages here.
START_TEST(test_chat_template_cases) {
    size_t n;
    char *file = read_data("llama3/tokenizer_cases.jsonl", &n);
    if (!file) return;
    Tokenizer *t = load_llama3();
    const ChatMsg conv1[] = {{"system", "You are a helpful assistant."},
                             {"user", "What is the capital of France?"},
                             {"assistant", "The capital of France is Paris."}};
    const ChatMsg conv2[] = {{"system", "You are a helpful assistant that provide the correct output for the given task immediately."},
                             {"user", "Solve: 2+2"}};
    char *want[2] = {chat_render_llama3(conv1, 3, 0), chat_render_llama3(conv2, 2, 1)};
    int found = 0;
    char err[ERR_MAX];
    TokCase cs;
    for (char *at = file; next_case(&at, &cs); case_free(&cs)) {
        if (strncmp(cs.text, "<|begin_of_text|><|start_header_id|>system", 41) == 0) {
            size_t len;
            char *dec = tok_decode(t, cs.ids, cs.n_ids, &len, err);
            ck_assert_ptr_nonnull(dec);
            ck_assert_int_lt(found, 2);
            ck_assert_msg(strcmp(dec, want[found]) == 0, "rendering %d differs:\n%s\nthe ids decode to:\n%s", found, want[found], dec);
            int *mine, km = tok_encode(t, want[found], strlen(want[found]), 1, &mine, err);
            ck_assert(km == cs.n_ids && memcmp(mine, cs.ids, (size_t)km * sizeof *mine) == 0);
            found++;
            free(dec);
            free(mine);
        }
    }
    ck_assert_int_eq(found, 2);
    free(want[0]); free(want[1]);
    tok_free(t);
    free(file);
}
END_TEST

#define SYS_HEAD "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

START_TEST(test_chat_template_multi_turn) {
    const ChatMsg conv[] = {{"system", "  Be brief.\n"},
                            {"user", "\tHi there!  "},
                            {"assistant", "Hello.\xe3\x80\x80"},   // U+3000 is whitespace to str.strip()
                            {"user", "What is 2+2?\n\n"}};
    expect_render(conv, 4, 1,
                  SYS_HEAD "Be brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    // No system message: the system block is still there, empty after the dates.
    const ChatMsg user_only[] = {{"user", "Hi"}};
    expect_render(user_only, 1, 0, SYS_HEAD "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    expect_render(NULL, 0, 1, SYS_HEAD "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    // A later system message is an ordinary turn; whitespace-only content trims to "".
    const ChatMsg late[] = {{"user", " \n "}, {"system", " x "}};
    expect_render(late, 2, 0, SYS_HEAD "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
                              "<|start_header_id|>system<|end_header_id|>\n\nx<|eot_id|>");
}
END_TEST

Suite *tokenizer_suite(void) {
    Suite *s = suite_create("tokenizer");
    add_case(s, "small", 0, test_qwen2_cases, test_merge_priority, test_bytes_without_merges, test_added_tokens,
             test_empty, test_invalid_utf8, test_merge_forms_agree, test_ignore_merges, test_gpt2_pretokenizer,
             test_lookup_and_decode, test_malformed_files, test_unsupported_kinds);
    // loading the 9 MB tokenizer.json, slower under sanitizers
    add_case(s, "llama3", 120, test_llama3_cases, test_llama3_specials, test_chat_template_cases);
    add_case(s, "chat", 0, test_chat_template_multi_turn);
    return s;
}
