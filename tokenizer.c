// tokenizer.c: byte-level BPE as Hugging Face `tokenizers` runs it (see tokenizer.h).
//
// Encoding has four stages, each doing what HF does with a tokenizer.json:
//   1. added tokens are found literally in the raw text (leftmost, then longest);
//   2. the text between them, NFC-normalized when the file's normalizer says so
//      (Qwen2), is cut by the pre-tokenizer regexes (Split, Digits, ByteLevel's
//      GPT-2 regex), each step cutting the pieces of the one before;
//   3. with ignore_merges, a piece that is itself a vocab entry is emitted whole;
//   4. otherwise its bytes are merged pair by pair, lowest merge rank first.
// Everything works on raw bytes: the GPT-2 byte->unicode map is undone once, when
// the vocab is loaded, so encode never builds mapped strings.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPLITS 8
// GPT-2's pre-tokenizer regex, used by a ByteLevel step with use_regex.
#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct { uint32_t off; int32_t len; } Span;   // bytes in Tokenizer.arena; len -1: none

// Open addressing, load factor <= 1/2, sized once at load time.
typedef struct { uint32_t hash, off; int32_t len, id; } StrSlot;     // id -1: empty
typedef struct { StrSlot *slot; uint32_t mask; } StrMap;             // bytes -> id
typedef struct { uint64_t key; int32_t rank, id; } PairSlot;         // key UINT64_MAX: empty
typedef struct { PairSlot *slot; uint32_t mask; } PairMap;           // (left, right) -> rank, id

typedef struct { int id, special, first, index; Span s; } Added;

struct Tokenizer {
    char *arena; size_t arena_n, arena_cap;   // the bytes of every token
    int n_ids;
    Span *tok;                 // per id: what decode writes
    StrMap vocab;              // model.vocab as bytes
    PairMap merges;
    int byte_id[256];          // token of each single byte, -1 if none
    int ignore_merges, unk_id;
    int bos_id;                // what the post-processor puts first (tok_bos), -1 if nothing
    Added *added; int n_added; // sorted by first byte, longest first
    int added_first[257];      // added[added_first[c] .. added_first[c+1]) start with byte c
    pcre2_code *split[MAX_SPLITS]; int n_splits;
    const UNormalizer2 *nfc;   // ICU's NFC when the normalizer is NFC, else NULL
    short byte_of_cp[324];     // GPT-2 byte-level char -> byte, -1 if not one
};

// ---------------------------------------------------------------- small helpers

static uint32_t hash_bytes(const char *s, size_t n) {   // FNV-1a
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t table_size(size_t n) {   // power of two >= 2n
    uint32_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    return cap;
}

// Makes room for `need` elements of `size` bytes in *buf, doubling; -1 when out of memory.
static int reserve(void *bufp, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void **buf = bufp, *p = realloc(*buf, size_mul(c, size));
    if (!p) return -1;
    *buf = p;
    *cap = c;
    return 0;
}

static int arena_add(Tokenizer *t, const char *s, size_t n, Span *out) {
    // + 1: the arena exists even for an empty token ("" as a vocab key)
    if (t->arena_n + n > UINT32_MAX || reserve(&t->arena, &t->arena_cap, t->arena_n + n + 1, 1)) return -1;
    memcpy(t->arena + t->arena_n, s, n);
    *out = (Span){(uint32_t)t->arena_n, (int32_t)n};
    t->arena_n += n;
    return 0;
}

// ---------------------------------------------------------------- hash maps

static int strmap_get(const Tokenizer *t, const char *s, size_t n) {
    const StrMap *m = &t->vocab;
    uint32_t h = hash_bytes(s, n);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const StrSlot *e = &m->slot[i];
        if (e->id < 0) return -1;
        if (e->hash == h && (size_t)e->len == n && memcmp(t->arena + e->off, s, n) == 0) return e->id;
    }
}

// Adds bytes span -> id; a repeated key takes the later id, as a JSON map does in HF.
static void strmap_put(Tokenizer *t, Span s, int id) {
    StrMap *m = &t->vocab;
    uint32_t h = hash_bytes(t->arena + s.off, (size_t)s.len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        StrSlot *e = &m->slot[i];
        if (e->id < 0 || (e->hash == h && e->len == s.len && memcmp(t->arena + e->off, t->arena + s.off, (size_t)s.len) == 0)) {
            *e = (StrSlot){h, s.off, s.len, id};
            return;
        }
    }
}

static uint32_t pair_hash(uint64_t key) { return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32); }

static const PairSlot *pairmap_get(const PairMap *m, int a, int b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const PairSlot *e = &m->slot[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
    }
}

static void pairmap_put(PairMap *m, int a, int b, int rank, int id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        PairSlot *e = &m->slot[i];
        if (e->key == key || e->key == UINT64_MAX) { *e = (PairSlot){key, rank, id}; return; }
    }
}

// ---------------------------------------------------------------- loading

// GPT-2's bytes_to_unicode: printable bytes stand for themselves; the other 68
// (controls, space, DEL, NBSP, soft hyphen, ...) take U+0100 upward in byte order.
static void init_byte_level(Tokenizer *t) {
    for (int c = 0; c < 324; c++) t->byte_of_cp[c] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        t->byte_of_cp[printable ? b : next++] = (short)b;
    }
}

// A token as written in tokenizer.json (n bytes of UTF-8) -> its raw bytes in out
// (never longer). A token with a character outside the byte-level alphabet keeps
// its UTF-8 whole, as HF's ByteLevel decoder does.
static size_t token_bytes_of(const Tokenizer *t, const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int len, cp = utf8_next(s + i, n - i, &len);
        if (cp < 0 || cp >= 324 || t->byte_of_cp[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[k++] = (char)t->byte_of_cp[cp];
        i += (size_t)len;
    }
    return k;
}

static const cJSON *member(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

#define MAX_ID (1 << 24)   // far above any real vocab; keeps a typo from allocating gigabytes

static int is_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < MAX_ID && (double)(int)v->valuedouble == v->valuedouble;
}

// A member that must be true/false when present; absent or null gives def.
static int get_bool(const cJSON *obj, const char *key, int def, int *out, const char *name, const char *path, char *err) {
    const cJSON *v = member(obj, key);
    *out = def;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return errf(err, "%s: %s.%s: expected true or false", name, path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

// Refuses model kinds and options this tokenizer does not implement.
static int check_model(Tokenizer *t, const cJSON *m, const char *name, char *err) {
    if (!cJSON_IsObject(m)) return errf(err, "%s: model: expected an object", name);
    const cJSON *type = member(m, "type");
    if (type && !cJSON_IsNull(type)) {
        if (!cJSON_IsString(type)) return errf(err, "%s: model.type: expected a string", name);
        if (strcmp(type->valuestring, "BPE") != 0)
            return errf(err, "%s: model.type: \"%.64s\" is not supported (only byte-level BPE)", name, type->valuestring);
    } else if (!member(m, "merges")) {
        return errf(err, "%s: model.type: missing, and there is no model.merges (only BPE is supported)", name);
    }
    const cJSON *d = member(m, "dropout");
    if (d && !cJSON_IsNull(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0))
        return errf(err, "%s: model.dropout: BPE dropout is not supported", name);
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = member(m, affixes[i]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && a->valuestring[0] == 0))
            return errf(err, "%s: model.%s: not supported (byte-level BPE has none)", name, affixes[i]);
    }
    return get_bool(m, "ignore_merges", 0, &t->ignore_merges, name, "model", err);
}

static int is_type(const cJSON *o, const char *type) {
    const cJSON *ty = member(o, "type");
    return cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0;
}

// None, NFC (Qwen2's), or a Sequence of those. NFC is ICU's (unorm2), the
// Unicode standard's canonical composition, as HF's Rust normalizer computes it.
static int load_normalizer(Tokenizer *t, const cJSON *root, const char *name, char *err) {
    const cJSON *n = member(root, "normalizer"), *list = member(n, "normalizers"), *bad = NULL;
    if (!n || cJSON_IsNull(n)) return 0;
    int nfc = is_type(n, "NFC");
    if (is_type(n, "Sequence") && cJSON_IsArray(list))
        for (const cJSON *x = list->child; x && !bad; x = x->next) {
            if (is_type(x, "NFC")) nfc = 1;
            else bad = x;
        }
    else if (!nfc) bad = n;
    if (bad) {
        const cJSON *ty = member(bad, "type");
        return errf(err, "%s: normalizer%s: \"%.64s\" is not supported (only none or NFC)", name, bad == n ? "" : ".normalizers",
                    cJSON_IsString(ty) ? ty->valuestring : "?");
    }
    if (!nfc) return 0;
    UErrorCode st = U_ZERO_ERROR;
    t->nfc = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st)) return errf(err, "%s: normalizer: NFC: ICU fails to load its data (%s)", name, u_errorName(st));
    return 0;
}

static int check_decoder(const cJSON *root, const char *name, char *err) {
    const cJSON *d = member(root, "decoder");
    if (!d || cJSON_IsNull(d)) return 0;
    const cJSON *type = member(d, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "ByteLevel") == 0) return 0;
    return errf(err, "%s: decoder: \"%.64s\" is not supported (only ByteLevel)", name,
                cJSON_IsString(type) ? type->valuestring : "?");
}

static int add_split(Tokenizer *t, const char *pattern, int literal, const char *name, const char *path, char *err) {
    if (t->n_splits == MAX_SPLITS) return errf(err, "%s: %s: more than %d pre-tokenizer splits", name, path, MAX_SPLITS);
    // PCRE2_MATCH_INVALID_UTF: invalid UTF-8 in the text never matches, so it falls
    // into the gaps between matches and becomes byte tokens instead of an error.
    uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opt, &code, &at, NULL);
    if (!re) {
        char msg[256];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)msg, sizeof msg);
        return errf(err, "%s: %s: regex does not compile at offset %zu: %s", name, path, (size_t)at, msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   // without JIT, pcre2_match interprets
    t->split[t->n_splits++] = re;
    return 0;
}

static int add_pretokenizer(Tokenizer *t, const cJSON *p, const char *path, int *byte_level, const char *name, char *err) {
    char sub[160];
    const cJSON *type = member(p, "type");
    if (!cJSON_IsObject(p) || !cJSON_IsString(type)) return errf(err, "%s: %s: expected an object with a \"type\"", name, path);
    const char *ty = type->valuestring;
    if (*byte_level) return errf(err, "%s: %s: a \"%.64s\" step after ByteLevel is not supported", name, path, ty);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = member(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return errf(err, "%s: %s.pretokenizers: expected an array", name, path);
        int i = 0;
        for (const cJSON *q = list->child; q; q = q->next, i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i);
            if (add_pretokenizer(t, q, sub, byte_level, name, err)) return -1;
        }
        return 0;
    }
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = member(p, "pattern"), *beh = member(p, "behavior");
        const cJSON *re = member(pat, "Regex"), *lit = member(pat, "String");
        int invert = 0;
        if (!cJSON_IsString(re) && !cJSON_IsString(lit))
            return errf(err, "%s: %s.pattern: expected {\"Regex\": ...} or {\"String\": ...}", name, path);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return errf(err, "%s: %s.behavior: only \"Isolated\" is supported", name, path);
        if (get_bool(p, "invert", 0, &invert, name, path, err)) return -1;
        if (invert) return errf(err, "%s: %s.invert: true is not supported", name, path);
        snprintf(sub, sizeof sub, "%s.pattern", path);
        return add_split(t, cJSON_IsString(re) ? re->valuestring : lit->valuestring, !cJSON_IsString(re), name, sub, err);
    }
    if (strcmp(ty, "Digits") == 0) {   // HF splits on char::is_numeric, i.e. \p{N}
        int each = 0;
        if (get_bool(p, "individual_digits", 0, &each, name, path, err)) return -1;
        return add_split(t, each ? "\\p{N}" : "\\p{N}+", 0, name, path, err);
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        int prefix = 0, use_regex = 1;
        if (get_bool(p, "add_prefix_space", 0, &prefix, name, path, err)) return -1;
        if (prefix) return errf(err, "%s: %s.add_prefix_space: true is not supported", name, path);
        if (get_bool(p, "use_regex", 1, &use_regex, name, path, err)) return -1;
        *byte_level = 1;
        return use_regex ? add_split(t, GPT2_REGEX, 0, name, path, err) : 0;
    }
    return errf(err, "%s: %s: pre-tokenizer \"%.64s\" is not supported", name, path, ty);
}

// Ids in model.vocab and added_tokens are checked here, before anything is stored.
static int scan_ids(const cJSON *vocab, const cJSON *added, int *max_id, const char *name, char *err) {
    if (!cJSON_IsObject(vocab)) return errf(err, "%s: model.vocab: expected an object of token: id", name);
    *max_id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!is_id(v)) return errf(err, "%s: model.vocab[\"%.64s\"]: expected an integer id in [0, %d)", name, v->string, MAX_ID);
        if (v->valueint > *max_id) *max_id = v->valueint;
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) return errf(err, "%s: added_tokens: expected an array", name);
    int i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++) {
        const cJSON *id = member(a, "id"), *content = member(a, "content"), *special = member(a, "special");
        if (!is_id(id)) return errf(err, "%s: added_tokens[%d].id: expected an integer in [0, %d)", name, i, MAX_ID);
        if (!cJSON_IsString(content)) return errf(err, "%s: added_tokens[%d].content: expected a string", name, i);
        if (special && !cJSON_IsBool(special)) return errf(err, "%s: added_tokens[%d].special: expected true or false", name, i);
        const char *flags[] = {"lstrip", "rstrip", "single_word"};   // whitespace rules HF applies around a match
        for (int f = 0; f < 3; f++)
            if (cJSON_IsTrue(member(a, flags[f]))) return errf(err, "%s: added_tokens[%d].%s: true is not supported", name, i, flags[f]);
        if (id->valueint > *max_id) *max_id = id->valueint;
    }
    return 0;
}

static int load_vocab(Tokenizer *t, const cJSON *vocab, const char *name, char *err) {
    t->vocab.mask = table_size((size_t)cJSON_GetArraySize(vocab)) - 1;
    t->vocab.slot = malloc(((size_t)t->vocab.mask + 1) * sizeof *t->vocab.slot);
    if (!t->vocab.slot) return errf(err, "%s: model.vocab: out of memory (%zu bytes)", name, ((size_t)t->vocab.mask + 1) * sizeof *t->vocab.slot);
    for (size_t i = 0; i <= t->vocab.mask; i++) t->vocab.slot[i].id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        size_t n = strlen(v->string);
        Span s;
        if (t->arena_n + n > UINT32_MAX || reserve(&t->arena, &t->arena_cap, t->arena_n + n + 1, 1))
            return errf(err, "%s: model.vocab: out of memory for the token text (%zu bytes)", name, t->arena_n + n + 1);
        s = (Span){(uint32_t)t->arena_n, (int32_t)token_bytes_of(t, v->string, n, t->arena + t->arena_n)};
        t->arena_n += (size_t)s.len;
        strmap_put(t, s, v->valueint);
        t->tok[v->valueint] = s;
    }
    return 0;
}

// Sort order for matching: by first byte, then longest first (so the first hit
// at a position is the longest), then file order.
static int cmp_added(const void *pa, const void *pb) {
    const Added *a = pa, *b = pb;
    if (a->first != b->first) return a->first - b->first;
    if (a->s.len != b->s.len) return b->s.len - a->s.len;
    return a->index - b->index;
}

// Added tokens keep their content as raw text; decode gives it back as is.
static int load_added(Tokenizer *t, const cJSON *added, const char *name, char *err) {
    int n = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return errf(err, "%s: added_tokens: out of memory (%zu bytes)", name, ((size_t)n + 1) * sizeof *t->added);
    for (const cJSON *a = n ? added->child : NULL; a; a = a->next) {
        const char *c = member(a, "content")->valuestring;
        Added *x = &t->added[t->n_added];
        x->id = member(a, "id")->valueint;
        x->special = cJSON_IsTrue(member(a, "special"));
        x->first = (unsigned char)c[0];
        x->index = t->n_added;
        if (arena_add(t, c, strlen(c), &x->s)) return errf(err, "%s: added_tokens: out of memory (%zu bytes)", name, t->arena_n + strlen(c) + 1);
        t->tok[x->id] = x->s;
        if (x->s.len > 0) t->n_added++;   // an empty token can never match
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    for (int c = 0, k = 0; c <= 256; c++) {
        while (k < t->n_added && t->added[k].first < c) k++;
        t->added_first[c] = k;
    }
    return 0;
}

// One entry of model.merges, in either form, as its two halves.
static int merge_halves(const cJSON *e, const char **a, size_t *na, const char **b, size_t *nb) {
    if (cJSON_IsString(e)) {
        const char *sp = strchr(e->valuestring, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = e->valuestring; *na = (size_t)(sp - *a);
        *b = sp + 1; *nb = strlen(*b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
        *a = e->child->valuestring; *na = strlen(*a);
        *b = e->child->next->valuestring; *nb = strlen(*b);
    } else {
        return -1;
    }
    return *na && *nb ? 0 : -1;
}

static int load_merges(Tokenizer *t, const cJSON *merges, const char *name, char *err) {
    if (!cJSON_IsArray(merges)) return errf(err, "%s: model.merges: expected an array", name);
    PairMap *m = &t->merges;
    m->mask = table_size((size_t)cJSON_GetArraySize(merges)) - 1;
    m->slot = malloc(((size_t)m->mask + 1) * sizeof *m->slot);
    if (!m->slot) return errf(err, "%s: model.merges: out of memory (%zu bytes)", name, ((size_t)m->mask + 1) * sizeof *m->slot);
    for (size_t i = 0; i <= m->mask; i++) m->slot[i].key = UINT64_MAX;
    char *buf = NULL;
    size_t cap = 0;
    int rank = 0, rc = 0;
    for (const cJSON *e = merges->child; e && rc == 0; e = e->next, rank++) {
        const char *a, *b;
        size_t na, nb;
        if (merge_halves(e, &a, &na, &b, &nb)) {
            rc = errf(err, "%s: model.merges[%d]: expected \"a b\" string or [a, b] pair", name, rank);
            break;
        }
        if (reserve(&buf, &cap, na + nb, 1)) { rc = errf(err, "%s: model.merges[%d]: out of memory (%zu bytes)", name, rank, na + nb); break; }
        size_t la = token_bytes_of(t, a, na, buf), lb = token_bytes_of(t, b, nb, buf + la);
        int ia = strmap_get(t, buf, la), ib = strmap_get(t, buf + la, lb), im = strmap_get(t, buf, la + lb);
        if (ia < 0 || ib < 0)
            rc = errf(err, "%s: model.merges[%d]: \"%.*s\" is not in model.vocab", name, rank,
                      (int)(ia < 0 ? na : nb) < 64 ? (int)(ia < 0 ? na : nb) : 64, ia < 0 ? a : b);
        else if (im < 0) rc = errf(err, "%s: model.merges[%d]: the merged token is not in model.vocab", name, rank);
        else pairmap_put(m, ia, ib, rank, im);   // a repeated pair takes the later rank, as in HF
    }
    free(buf);
    return rc;
}

// The special token a TemplateProcessing post-processor (alone or in a
// Sequence) puts before the text ("single": [{"SpecialToken": {"id": ..}}, ..]),
// or -1: Llama 3's adds <|begin_of_text|>, Qwen2's (ByteLevel only) nothing.
static int template_bos(const Tokenizer *t, const cJSON *pp) {
    if (!cJSON_IsObject(pp)) return -1;
    const cJSON *type = member(pp, "type"), *e;
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "Sequence")) {
        cJSON_ArrayForEach(e, member(pp, "processors")) {
            int id = template_bos(t, e);
            if (id >= 0) return id;
        }
        return -1;
    }
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "TemplateProcessing")) return -1;
    const cJSON *single = member(pp, "single"), *first = cJSON_IsArray(single) ? single->child : NULL;
    const cJSON *id = member(member(first, "SpecialToken"), "id");
    return cJSON_IsString(id) ? tok_find(t, id->valuestring) : -1;
}

static int load_all(Tokenizer *t, const cJSON *root, const char *name, char *err) {
    if (!cJSON_IsObject(root)) return errf(err, "%s: expected a JSON object", name);
    const cJSON *model = member(root, "model"), *pre = member(root, "pre_tokenizer");
    const cJSON *added = member(root, "added_tokens");
    int byte_level = 0, max_id = -1;
    init_byte_level(t);
    if (check_model(t, model, name, err) || load_normalizer(t, root, name, err) || check_decoder(root, name, err)) return -1;
    if (!pre || cJSON_IsNull(pre)) return errf(err, "%s: pre_tokenizer: missing (only byte-level BPE is supported)", name);
    if (add_pretokenizer(t, pre, "pre_tokenizer", &byte_level, name, err)) return -1;
    if (!byte_level) return errf(err, "%s: pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)", name);
    if (scan_ids(member(model, "vocab"), added, &max_id, name, err)) return -1;
    t->n_ids = max_id + 1;
    t->tok = malloc(((size_t)t->n_ids + 1) * sizeof *t->tok);   // sized by the largest id the file names
    if (!t->tok) return errf(err, "%s: out of memory (%zu bytes) for ids up to %d", name, ((size_t)t->n_ids + 1) * sizeof *t->tok, max_id);
    for (int i = 0; i < t->n_ids; i++) t->tok[i] = (Span){0, -1};
    if (load_vocab(t, member(model, "vocab"), name, err) || load_added(t, added, name, err)) return -1;
    if (load_merges(t, member(model, "merges"), name, err)) return -1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = strmap_get(t, &c, 1);
    }
    const cJSON *unk = member(model, "unk_token");
    t->unk_id = cJSON_IsString(unk) ? tok_find(t, unk->valuestring) : -1;
    t->bos_id = template_bos(t, member(root, "post_processor"));
    if (t->bos_id < 0) t->bos_id = tok_find(t, "<|begin_of_text|>");
    return 0;
}

Tokenizer *tok_load_json(const char *json_text, const char *name, char *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 0);
    if (!root) {
        char why[64];
        errf(err, "%s: not valid JSON (%s)", name, json_why(json_text, end, why, sizeof why));
        return NULL;
    }
    Tokenizer *t = xcalloc(1, sizeof *t);
    int rc = load_all(t, root, name, err);
    cJSON_Delete(root);
    if (rc) { tok_free(t); return NULL; }
    return t;
}

Tokenizer *tok_load(const char *path, char *err) {
    size_t n;
    char *text = read_file(path, &n, err);
    if (!text) return NULL;
    Tokenizer *t = tok_load_json(text, path, err);
    free(text);
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_splits; i++) pcre2_code_free(t->split[i]);
    free(t->arena); free(t->tok); free(t->vocab.slot); free(t->merges.slot); free(t->added);
    free(t);
}

int tok_vocab_size(const Tokenizer *t) { return t->n_ids; }

int tok_bos(const Tokenizer *t) { return t->bos_id; }

int tok_token_bytes(const Tokenizer *t, int id, const char **bytes) {
    if (id < 0 || id >= t->n_ids || t->tok[id].len < 0) { *bytes = NULL; return -1; }
    *bytes = t->arena + t->tok[id].off;
    return t->tok[id].len;
}

int tok_find(const Tokenizer *t, const char *text) {
    size_t n = strlen(text);
    for (int i = 0; i < t->n_added; i++) {
        const Added *a = &t->added[i];
        if ((size_t)a->s.len == n && memcmp(t->arena + a->s.off, text, n) == 0) return a->id;
    }
    char *buf = xmalloc(n + 1);   // a name the caller holds
    int id = strmap_get(t, buf, token_bytes_of(t, text, n, buf));
    free(buf);
    return id;
}

// ---------------------------------------------------------------- encoding

typedef struct { int id, prev, next; } Sym;                // a symbol in the BPE list
typedef struct { int rank, pos, left, right, merged; } Cand;  // a possible merge at pos

typedef struct {   // per-call state, so one Tokenizer can serve many threads
    const Tokenizer *t;
    int *ids; size_t n, cap;
    Sym *sym; size_t sym_cap;
    Cand *heap; size_t heap_n, heap_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    UChar *u16, *n16; size_t u16_cap, n16_cap;   // NFC: UTF-16 in, normalized out
    char *norm; size_t norm_n, norm_cap;         // NFC: the normalized text (UTF-8)
    char *err;
} Enc;

static int push_id(Enc *e, int id) {
    if (e->n == INT_MAX || reserve(&e->ids, &e->cap, e->n + 1, sizeof *e->ids)) return errf(e->err, "encode: out of memory");
    e->ids[e->n++] = id;
    return 0;
}

static int cand_less(const Cand *a, const Cand *b) {   // lowest rank, then leftmost, as HF
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

// Pushes the merge of symbols i and j (j follows i) if the merges table has it.
static int heap_push(Enc *e, int i, int j) {
    const Sym *s = e->sym;
    const PairSlot *p = pairmap_get(&e->t->merges, s[i].id, s[j].id);
    if (!p) return 0;
    if (reserve(&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap)) return errf(e->err, "encode: out of memory");
    Cand c = {p->rank, i, s[i].id, s[j].id, p->id}, *h = e->heap;
    size_t k = e->heap_n++;
    for (; k > 0 && cand_less(&c, &h[(k - 1) / 2]); k = (k - 1) / 2) h[k] = h[(k - 1) / 2];
    h[k] = c;
    return 0;
}

static Cand heap_pop(Enc *e) {
    Cand *h = e->heap, top = h[0], last = h[--e->heap_n];
    size_t k = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[k] = h[c];
        k = c;
    }
    if (n) h[k] = last;
    return top;
}

// Byte-pair merging of one piece: a linked list of symbols and a heap of candidate
// merges; a popped candidate whose symbols changed since it was pushed is stale.
static int bpe(Enc *e, const char *s, size_t n) {
    const Tokenizer *t = e->t;
    if (n > INT_MAX || reserve(&e->sym, &e->sym_cap, n, sizeof *e->sym)) return errf(e->err, "encode: out of memory");
    Sym *sym = e->sym;
    for (size_t i = 0; i < n; i++) {
        int id = t->byte_id[(unsigned char)s[i]];
        if (id < 0) id = t->unk_id;
        if (id < 0) return errf(e->err, "encode: byte 0x%02x has no token and there is no unk_token", (unsigned char)s[i]);
        sym[i] = (Sym){id, (int)i - 1, i + 1 < n ? (int)i + 1 : -1};
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (heap_push(e, (int)i, (int)i + 1)) return -1;
    while (e->heap_n) {
        Cand c = heap_pop(e);
        Sym *a = &sym[c.pos];
        if (a->id != c.left || a->next < 0 || sym[a->next].id != c.right) continue;
        Sym *b = &sym[a->next];
        a->id = c.merged;
        a->next = b->next;
        if (b->next >= 0) sym[b->next].prev = c.pos;
        b->id = -1;
        if (a->prev >= 0 && heap_push(e, a->prev, c.pos)) return -1;
        if (a->next >= 0 && heap_push(e, c.pos, a->next)) return -1;
    }
    for (int i = 0; i >= 0; i = sym[i].next)
        if (push_id(e, sym[i].id)) return -1;
    return 0;
}

static int encode_piece(Enc *e, const char *s, size_t n) {
    if (n == 1 || e->t->ignore_merges) {
        int id = strmap_get(e->t, s, n);
        if (id >= 0) return push_id(e, id);
    }
    return bpe(e, s, n);
}

static int regex_match(Enc *e, const pcre2_code *re, const char *s, size_t n, size_t off) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, e->md, e->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jit) {   // a huge piece: retry with a big stack
        e->jit = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!e->jit) return errf(e->err, "encode: out of memory");
        pcre2_jit_stack_assign(e->mctx, NULL, e->jit);
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, e->md, e->mctx);
    }
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        char msg[256];
        pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
        return errf(e->err, "encode: pre-tokenizer regex failed: %s", msg);
    }
    return rc == PCRE2_ERROR_NOMATCH ? 0 : 1;
}

// A pre-token's destination: BPE when encoding, a list when training merges.
typedef int (*Leaf)(Enc *e, const char *s, size_t n, void *ctx);

// Cuts s by split regex `step` into matches and the gaps between them (HF's
// "Isolated" behavior), handing each piece to the next step, the last to leaf.
static int split_walk(Enc *e, int step, const char *s, size_t n, Leaf leaf, void *ctx) {
    if (step == e->t->n_splits) return leaf(e, s, n, ctx);
    size_t last = 0, off = 0;
    while (off < n) {
        int rc = regex_match(e, e->t->split[step], s, n, off);
        if (rc < 0) return -1;
        if (rc == 0) break;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   // an empty match cuts nothing; step over one character
            int len;
            utf8_next(s + me, n - me, &len);
            off = me + (size_t)len;
            continue;
        }
        if (ms > last && split_walk(e, step + 1, s + last, ms - last, leaf, ctx)) return -1;
        if (split_walk(e, step + 1, s + ms, me - ms, leaf, ctx)) return -1;
        last = off = me;
    }
    return last < n ? split_walk(e, step + 1, s + last, n - last, leaf, ctx) : 0;
}

static int encode_leaf(Enc *e, const char *s, size_t n, void *ctx) {
    (void)ctx;
    return encode_piece(e, s, n);
}

// The leftmost, then longest, added token in s[from..n); returns where it starts
// (n if none). Without allow_special only non-special added tokens count.
static size_t find_added(const Tokenizer *t, const char *s, size_t n, size_t from, int allow_special, const Added **hit) {
    for (size_t i = from; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        for (int k = t->added_first[c]; k < t->added_first[c + 1]; k++) {
            const Added *a = &t->added[k];
            if ((a->special && !allow_special) || (size_t)a->s.len > n - i) continue;
            if (memcmp(t->arena + a->s.off, s + i, (size_t)a->s.len) == 0) { *hit = a; return i; }
        }
    }
    *hit = NULL;
    return n;
}

// Appends the NFC form of s (n bytes of valid UTF-8) to e->norm. ICU works in
// UTF-16: s goes there, is normalized, and comes back.
static int nfc_append(Enc *e, const char *s, size_t n) {
    UErrorCode st = U_ZERO_ERROR;
    int32_t n16 = 0, m = 0, out = 0;
    if (n > INT32_MAX / 4) return errf(e->err, "encode: %zu bytes are too many to NFC-normalize at once", n);
    if (reserve(&e->u16, &e->u16_cap, n + 1, sizeof *e->u16)) return errf(e->err, "encode: out of memory");
    u_strFromUTF8(e->u16, (int32_t)e->u16_cap, &n16, s, (int32_t)n, &st);
    // NFC may lengthen text (decomposed characters that do not recompose): when 3
    // units for one are not enough, ICU says how many and the loop asks again.
    for (size_t want = 3 * (size_t)n16 + 1; U_SUCCESS(st) || st == U_BUFFER_OVERFLOW_ERROR; want = (size_t)m + 1) {
        if (reserve(&e->n16, &e->n16_cap, want, sizeof *e->n16)) return errf(e->err, "encode: out of memory");
        st = U_ZERO_ERROR;
        m = unorm2_normalize(e->t->nfc, e->u16, n16, e->n16, (int32_t)e->n16_cap, &st);
        if (st != U_BUFFER_OVERFLOW_ERROR) break;
    }
    if (U_SUCCESS(st) && reserve(&e->norm, &e->norm_cap, e->norm_n + 3 * (size_t)m + 1, 1)) return errf(e->err, "encode: out of memory");
    if (U_SUCCESS(st)) u_strToUTF8(e->norm + e->norm_n, (int32_t)(e->norm_cap - e->norm_n), &out, e->n16, m, &st);
    if (U_FAILURE(st)) return errf(e->err, "encode: NFC normalization failed (ICU: %s)", u_errorName(st));
    e->norm_n += (size_t)out;
    return 0;
}

// s (n bytes) in NFC, into e->norm: each run of valid UTF-8 normalized, the
// bytes of invalid sequences kept as they are (they become byte tokens later).
// ASCII is its own NFC, and most text is ASCII: it skips ICU.
static int nfc_text(Enc *e, const char *s, size_t n) {
    e->norm_n = 0;
    size_t run = 0, i = 0;
    while (i < n) {
        int len;
        if ((unsigned char)s[i] < 0x80 || utf8_next(s + i, n - i, &len) >= 0) {
            i += (unsigned char)s[i] < 0x80 ? 1 : (size_t)len;
            continue;
        }
        if (i > run && nfc_append(e, s + run, i - run)) return -1;
        if (reserve(&e->norm, &e->norm_cap, e->norm_n + (size_t)len, 1)) return errf(e->err, "encode: out of memory");
        memcpy(e->norm + e->norm_n, s + i, (size_t)len);
        e->norm_n += (size_t)len;
        run = i += (size_t)len;
    }
    return run < n ? nfc_append(e, s + run, n - run) : 0;
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

// The text between two added tokens: normalized (NFC tokenizers), then pre-tokenized and merged.
static int encode_span(Enc *e, const char *s, size_t n) {
    if (!e->t->nfc || is_ascii(s, n)) return split_walk(e, 0, s, n, encode_leaf, NULL);
    return nfc_text(e, s, n) || split_walk(e, 0, e->norm, e->norm_n, encode_leaf, NULL) ? -1 : 0;
}

static int encode_text(Enc *e, const char *text, size_t len, int allow_special) {
    size_t pos = 0;
    while (pos < len) {
        const Added *a = NULL;
        size_t at = find_added(e->t, text, len, pos, allow_special, &a);
        if (at > pos && encode_span(e, text + pos, at - pos)) return -1;
        if (!a) break;
        if (push_id(e, a->id)) return -1;
        pos = at + (size_t)a->s.len;
    }
    return 0;
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int allow_special, int **ids, char *err) {
    Enc e = {.t = t, .err = err};
    *ids = NULL;
    e.md = pcre2_match_data_create(1, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    int rc = e.md && e.mctx ? encode_text(&e, text, len, allow_special) : errf(err, "encode: out of memory");
    if (rc == 0 && !e.ids) e.ids = xmalloc(sizeof *e.ids);   // no tokens: still a buffer to free
    pcre2_match_data_free(e.md);
    pcre2_match_context_free(e.mctx);
    pcre2_jit_stack_free(e.jit);
    free(e.sym);
    free(e.heap);
    free(e.u16);
    free(e.n16);
    free(e.norm);
    if (rc) { free(e.ids); return -1; }
    *ids = e.ids;
    return (int)e.n;
}

char *tok_decode(const Tokenizer *t, const int *ids, int n, size_t *len, char *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *b;
        int k = tok_token_bytes(t, ids[i], &b);
        if (k < 0) { errf(err, "decode: id %d (position %d) is not a token (vocab size %d)", ids[i], i, t->n_ids); return NULL; }
        total += (size_t)k;
    }
    char *out = malloc(total + 1);
    if (!out) { errf(err, "decode: out of memory (%zu bytes)", total + 1); return NULL; }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const Span *s = &t->tok[ids[i]];
        memcpy(out + k, t->arena + s->off, (size_t)s->len);
        k += (size_t)s->len;
    }
    out[total] = 0;
    if (len) *len = total;
    return out;
}

// ---------------------------------------------------------------- chat template

// Python's str.isspace(), which Jinja's trim filter (str.strip) goes by.
static int py_space(int cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static void buf_trimmed(StrBuf *b, const char *s) {
    size_t n = strlen(s), i = 0;
    int len;
    while (i < n && py_space(utf8_next(s + i, n - i, &len))) i += (size_t)len;
    while (n > i) {   // step back to the start of the last character
        size_t j = n - 1;
        while (j > i && n - j < 4 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
        if (!py_space(utf8_next(s + j, n - j, &len)) || j + (size_t)len != n) break;
        n = j;
    }
    sb_add(b, s + i, n - i);
}

char *chat_render_llama3(const ChatMsg *msgs, int n, int add_generation_prompt) {
    StrBuf b = {0};
    int i = 0;
    sb_str(&b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (n > 0 && msgs[0].role && strcmp(msgs[0].role, "system") == 0) {   // only a leading one
        buf_trimmed(&b, msgs[0].content ? msgs[0].content : "");
        i = 1;
    }
    sb_str(&b, "<|eot_id|>");
    for (; i < n; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "", *content = msgs[i].content ? msgs[i].content : "";
        if (strcmp(role, "ipython") == 0 || strcmp(role, "tool") == 0) {   // tool output, untrimmed
            sb_str(&b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            sb_str(&b, content);
        } else {
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, role);
            sb_str(&b, "<|end_header_id|>\n\n");
            buf_trimmed(&b, content);
        }
        sb_str(&b, "<|eot_id|>");
    }
    if (add_generation_prompt) sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return sb_done(&b);
}

// ---------------------------------------------------------------- making tokenizers
// What `seal demo` uses to write its own tokenizer.json (see tokenizer.h).

#define LLAMA3_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

// GPT-2's bytes_to_unicode, the inverse of init_byte_level's table.
static unsigned byte_level_cp(unsigned char b) {
    unsigned next = 256;
    for (unsigned c = 0; c < 256; c++) {
        int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        if (c == b) return printable ? c : next;
        if (!printable) next++;
    }
    return 0;   // not reached
}

// na raw bytes a, then sep as is, then nb raw bytes b, with a and b written as
// tokenizer.json writes tokens (GPT-2's byte-level form). malloc'd.
static char *byte_level_join(const char *a, size_t na, const char *sep, const char *b, size_t nb) {
    StrBuf out = {0};
    char u[4];
    for (size_t i = 0; i < na; i++) sb_add(&out, u, (size_t)utf8_put(u, byte_level_cp((unsigned char)a[i])));
    sb_str(&out, sep);
    for (size_t i = 0; i < nb; i++) sb_add(&out, u, (size_t)utf8_put(u, byte_level_cp((unsigned char)b[i])));
    sb_add(&out, "", 1);
    return sb_done(&out);
}

static cJSON *add_object_to_array(cJSON *array) {   // NULL (nothing leaked) when out of memory
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddItemToArray(array, o)) { cJSON_Delete(o); o = NULL; }
    return o;
}

// Everything of a Llama-3-style tokenizer.json but the vocab, merges and added
// tokens. Built from the root down, so running out of memory leaks nothing:
// calls on a NULL parent do nothing, and the result then fails to load.
static cJSON *tokenizer_skeleton(void) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers"), *split = add_object_to_array(list);
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", LLAMA3_REGEX);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON *bl = add_object_to_array(list);
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddFalseToObject(bl, "add_prefix_space");
    cJSON_AddTrueToObject(bl, "trim_offsets");
    cJSON_AddFalseToObject(bl, "use_regex");
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddTrueToObject(dec, "add_prefix_space");
    cJSON_AddTrueToObject(dec, "trim_offsets");
    cJSON_AddTrueToObject(dec, "use_regex");
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddTrueToObject(model, "ignore_merges");
    cJSON_AddObjectToObject(model, "vocab");
    cJSON_AddArrayToObject(model, "merges");
    return root;
}

char *tok_bytelevel_json(const char *const (*merges)[2], int n_merges, const char *const *specials, int n_special) {
    cJSON *root = tokenizer_skeleton(), *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *mlist = cJSON_GetObjectItemCaseSensitive(model, "merges");
    cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int n_ids = 0, ok = vocab && mlist && added;
    for (int c = 0; ok && c < 256; c++) {
        char byte = (char)c, *tok = byte_level_join(&byte, 1, "", "", 0);
        ok = tok && cJSON_AddNumberToObject(vocab, tok, n_ids++) != NULL;
        free(tok);
    }
    for (int i = 0; ok && i < n_merges; i++) {
        const char *a = merges[i][0], *b = merges[i][1];
        size_t na = strlen(a), nb = strlen(b);
        char *ta = byte_level_join(a, na, "", "", 0), *tb = byte_level_join(b, nb, "", "", 0);
        char *pair = byte_level_join(a, na, " ", b, nb), *ab = byte_level_join(a, na, "", b, nb);
        ok = ta && tb && pair && ab && na && nb && member(vocab, ta) && member(vocab, tb);   // halves are tokens
        if (ok && !member(vocab, ab)) ok = cJSON_AddNumberToObject(vocab, ab, n_ids++) != NULL;
        if (ok) ok = cJSON_AddItemToArray(mlist, cJSON_CreateString(pair));
        free(ta); free(tb); free(pair); free(ab);
    }
    for (int i = 0; ok && i < n_special; i++) {
        cJSON *t = cJSON_CreateObject();
        ok = t && cJSON_AddItemToArray(added, t);
        if (!ok) { cJSON_Delete(t); break; }
        cJSON_AddNumberToObject(t, "id", n_ids++);
        cJSON_AddStringToObject(t, "content", specials[i]);
        cJSON_AddFalseToObject(t, "single_word");
        cJSON_AddFalseToObject(t, "lstrip");
        cJSON_AddFalseToObject(t, "rstrip");
        cJSON_AddFalseToObject(t, "normalized");
        ok = cJSON_AddTrueToObject(t, "special") != NULL;
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    // What it promises is that the loader takes it; a member lost to a failed
    // allocation on the way would show here.
    char err[ERR_MAX];
    Tokenizer *t = text ? tok_load_json(text, "tokenizer.json", err) : NULL;
    if (!t) { free(text); return NULL; }
    tok_free(t);
    return text;
}

// ---------------------------------------------------------------- training

typedef struct { const char *s; size_t n; } Piece;      // a pre-token, inside the caller's text
typedef struct { Piece *p; size_t n, cap; int skip_digits, oom; } Pieces;
typedef struct { int *sym, n; long count; } Word;         // a distinct pre-token as token ids
typedef struct { uint64_t key; long count; } PairCount;  // key UINT64_MAX: empty

static void add_piece(Pieces *ps, const char *s, size_t n) {
    if (ps->skip_digits && *s >= '0' && *s <= '9') return;   // a \p{N}{1,3} piece: keep its digits apart
    if (ps->oom || reserve(&ps->p, &ps->cap, ps->n + 1, sizeof *ps->p)) { ps->oom = 1; return; }
    ps->p[ps->n++] = (Piece){s, n};
}

// Collects the pieces split_walk cuts, exactly those BPE would see.
static int piece_leaf(Enc *e, const char *s, size_t n, void *ctx) {
    (void)e;
    add_piece(ctx, s, n);
    return 0;
}

// Every piece of every text, special tokens cut out first as encode_text does.
static int collect_pieces(const Tokenizer *t, const char *const *texts, int n_texts, Pieces *ps) {
    char err[ERR_MAX];
    Enc e = {.t = t, .err = err};
    e.md = pcre2_match_data_create(1, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    int rc = e.md && e.mctx ? 0 : -1;
    for (int i = 0; rc == 0 && i < n_texts; i++) {
        size_t len = strlen(texts[i]), pos = 0;
        while (rc == 0 && pos < len) {
            const Added *a = NULL;
            size_t at = find_added(t, texts[i], len, pos, 1, &a);
            if (at > pos) rc = split_walk(&e, 0, texts[i] + pos, at - pos, piece_leaf, ps);
            if (!a) break;
            pos = at + (size_t)a->s.len;
        }
    }
    pcre2_match_data_free(e.md);
    pcre2_match_context_free(e.mctx);
    pcre2_jit_stack_free(e.jit);
    return rc || ps->oom ? -1 : 0;
}

static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

static int cmp_piece(const void *pa, const void *pb) {
    const Piece *a = pa, *b = pb;
    return cmp_bytes(a->s, a->n, b->s, b->n);
}

// The tokens being built: bytes in one buffer, each token a span of it.
typedef struct { StrBuf bytes; Span *tok; size_t n, cap; } Vocab;

static int vocab_add(Vocab *v, const char *s, size_t n) {   // the id of s, added when new
    for (size_t i = 0; i < v->n; i++)
        if ((size_t)v->tok[i].len == n && memcmp(v->bytes.s + v->tok[i].off, s, n) == 0) return (int)i;
    size_t off = v->bytes.n;
    sb_add(&v->bytes, s, n);
    if (v->bytes.oom || reserve(&v->tok, &v->cap, v->n + 1, sizeof *v->tok)) return -1;
    v->tok[v->n] = (Span){(uint32_t)off, (int32_t)n};
    return (int)v->n++;
}

static int cmp_pair(const Vocab *v, int a1, int b1, int a2, int b2) {   // by the halves' bytes
    const Span *x = &v->tok[a1], *y = &v->tok[a2];
    int c = cmp_bytes(v->bytes.s + x->off, (size_t)x->len, v->bytes.s + y->off, (size_t)y->len);
    if (c) return c;
    x = &v->tok[b1];
    y = &v->tok[b2];
    return cmp_bytes(v->bytes.s + x->off, (size_t)x->len, v->bytes.s + y->off, (size_t)y->len);
}

// Counts adjacent pairs over all words into table (mask + 1 slots); returns the
// best: most frequent, ties to the smaller halves. count 0: no pair at all.
static PairCount best_pair(const Vocab *v, const Word *w, size_t n_words, PairCount *table, uint32_t mask) {
    for (uint32_t i = 0; i <= mask; i++) table[i] = (PairCount){UINT64_MAX, 0};
    for (size_t k = 0; k < n_words; k++)
        for (int i = 0; i + 1 < w[k].n; i++) {
            uint64_t key = (uint64_t)(uint32_t)w[k].sym[i] << 32 | (uint32_t)w[k].sym[i + 1];
            uint32_t j = pair_hash(key) & mask;
            while (table[j].key != key && table[j].key != UINT64_MAX) j = (j + 1) & mask;
            table[j].key = key;
            table[j].count += w[k].count;
        }
    PairCount best = {UINT64_MAX, 0};
    for (uint32_t i = 0; i <= mask; i++) {
        const PairCount *p = &table[i];
        if (p->key == UINT64_MAX || p->count < best.count) continue;
        if (p->count > best.count ||
            cmp_pair(v, (int)(p->key >> 32), (int)(uint32_t)p->key, (int)(best.key >> 32), (int)(uint32_t)best.key) < 0)
            best = *p;
    }
    return best;
}

// Replaces each (a, b) in the word, left to right, by ab.
static void merge_word(Word *w, int a, int b, int ab) {
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        if (i + 1 < w->n && w->sym[i] == a && w->sym[i + 1] == b) { w->sym[k++] = ab; i++; }
        else w->sym[k++] = w->sym[i];
    }
    w->n = k;
}

// The distinct pieces as words of byte tokens, with how often each occurs.
static Word *make_words(Pieces *ps, size_t *n_words, int **syms) {
    size_t total = 0, n = 0;
    qsort(ps->p, ps->n, sizeof *ps->p, cmp_piece);
    for (size_t i = 0; i < ps->n; i++) total += ps->p[i].n;
    Word *w = malloc((ps->n + 1) * sizeof *w);
    int *sym = *syms = malloc((total + 1) * sizeof *sym);
    if (!w || !sym) { free(w); free(sym); *syms = NULL; return NULL; }
    for (size_t i = 0; i < ps->n; i++) {
        if (n && cmp_piece(&ps->p[i], &ps->p[i - 1]) == 0) { w[n - 1].count++; continue; }
        w[n] = (Word){sym, (int)ps->p[i].n, 1};
        for (size_t k = 0; k < ps->p[i].n; k++) *sym++ = (unsigned char)ps->p[i].s[k];
        n++;
    }
    *n_words = n;
    return w;
}

// Runs the merges; fills *merges (pairs of token ids), returns how many, -1 when out of memory.
static int learn_merges(Vocab *v, Word *w, size_t n_words, int n_merges, int (*merges)[2]) {
    size_t syms = 0;
    for (size_t k = 0; k < n_words; k++) syms += (size_t)w[k].n;
    uint32_t mask = table_size(syms) - 1;
    PairCount *table = malloc(((size_t)mask + 1) * sizeof *table);
    if (!table) return -1;
    int m = 0;
    char *ab = NULL;
    size_t ab_cap = 0;
    for (; m < n_merges; m++) {
        PairCount best = best_pair(v, w, n_words, table, mask);
        if (best.count < 2) break;   // a pair seen once teaches nothing
        int a = (int)(best.key >> 32), b = (int)(uint32_t)best.key;
        size_t na = (size_t)v->tok[a].len, nb = (size_t)v->tok[b].len;
        if (reserve(&ab, &ab_cap, na + nb, 1)) { m = -1; break; }
        memcpy(ab, v->bytes.s + v->tok[a].off, na);
        memcpy(ab + na, v->bytes.s + v->tok[b].off, nb);
        int id = vocab_add(v, ab, na + nb);
        if (id < 0) { m = -1; break; }
        merges[m][0] = a;
        merges[m][1] = b;
        for (size_t k = 0; k < n_words; k++) merge_word(&w[k], a, b, id);
    }
    free(ab);
    free(table);
    return m;
}

// The learned merges as NUL-terminated byte strings, then tok_bytelevel_json.
static char *merges_json(const Vocab *v, int (*ids)[2], int n, const char *const *specials, int n_special) {
    StrBuf b = {0};
    size_t (*off)[2] = malloc(((size_t)n + 1) * sizeof *off);
    const char *(*m)[2] = malloc(((size_t)n + 1) * sizeof *m);
    for (int i = 0; off && m && i < n; i++)
        for (int h = 0; h < 2; h++) {
            off[i][h] = b.n;
            sb_add(&b, v->bytes.s + v->tok[ids[i][h]].off, (size_t)v->tok[ids[i][h]].len);
            sb_add(&b, "", 1);
        }
    char *json = NULL;
    if (off && m && !b.oom) {
        for (int i = 0; i < n; i++) { m[i][0] = b.s + off[i][0]; m[i][1] = b.s + off[i][1]; }
        json = tok_bytelevel_json((const char *const (*)[2])m, n, specials, n_special);
    }
    free(off);
    free(m);
    free(b.s);
    return json;
}

char *tok_train_bytelevel_ex(const char *const *texts, int n_texts, int n_merges, const char *const *specials,
                             int n_special, int flags) {
    // A tokenizer with no merges gives the exact pre-tokenizer and special-token
    // matching that encoding will use, so training sees the pieces encode sees.
    char err[ERR_MAX], *json = tok_bytelevel_json(NULL, 0, specials, n_special), *out = NULL;
    Tokenizer *t = json ? tok_load_json(json, "trainer", err) : NULL;
    free(json);
    Pieces ps = {.skip_digits = flags & TOK_TRAIN_SINGLE_DIGITS};
    Vocab v = {0};
    Word *w = NULL;
    int *syms = NULL, (*merges)[2] = malloc(((size_t)(n_merges > 0 ? n_merges : 0) + 1) * sizeof *merges), n = -1;
    size_t n_words = 0;
    if (t && merges && collect_pieces(t, texts, n_texts, &ps) == 0 && (w = make_words(&ps, &n_words, &syms))) {
        n = 0;
        for (int c = 0; c < 256 && n == 0; c++) {   // ids 0..255: the bytes
            char byte = (char)c;
            if (vocab_add(&v, &byte, 1) < 0) n = -1;
        }
        if (n == 0) n = learn_merges(&v, w, n_words, n_merges, merges);
    }
    if (n >= 0) out = merges_json(&v, merges, n, specials, n_special);
    tok_free(t);
    free(ps.p);
    free(w);
    free(syms);
    free(merges);
    free(v.bytes.s);
    free(v.tok);
    return out;
}

char *tok_train_bytelevel(const char *const *texts, int n_texts, int n_merges, const char *const *specials, int n_special) {
    return tok_train_bytelevel_ex(texts, n_texts, n_merges, specials, n_special, 0);
}
