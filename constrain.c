// constrain.c: see constrain.h. Two hand-written automata (a self-edit's
// JSON, an answer grid), then the token-level constraint that caches, per
// automaton state, which tokens may come next.
#include "constrain.h"
#include "arc.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t grammar_walk(const Grammar *g, uint64_t s, const char *text, size_t len) {
    for (size_t i = 0; i < len && s != GRAMMAR_DEAD; i++) s = g->next(s, (unsigned char)text[i]);
    return s;
}

int grammar_accepts(const Grammar *g, const char *text) {
    uint64_t s = grammar_walk(g, g->start, text, strlen(text));
    return s != GRAMMAR_DEAD && g->complete(s);
}

// ----------------------------------------------------------------------------
// arc-edit: SEAL's self-edit JSON. The automaton follows selfedit_parse's
// rules rather than JSON's in general: only the schema's keys, each once, in
// any order; the object is complete when every key is given. Numbers are
// limited to forms whose every completion is in range, so a prefix is viable
// exactly when some in-range number extends it.

#define WS_MAX 16                 // bytes of one whitespace run: JSON allows any, a sampler would loop
#define LR_DIGITS 10              // digits after "0." in a learning rate

enum { OBJ_TOP, OBJ_DG, OBJ_TR };
static const char *const KEYS[3][4] = {
    {"data_generation", "training"},
    {"use_basic_augmentations", "use_size_augmentations", "use_chain_augmentations", "use_repeat_augmentations"},
    {"strategy", "learning_rate", "num_train_epochs"},
};
static const int N_KEYS[3] = {2, 4, 3}, SEEN_SHIFT[3] = {0, 2, 6};
static const char *const BOOLS[2] = {"true", "false"};
static const char *const STRATEGY_WORDS[2] = {"\"train_using_all_tokens\"", "\"train_using_output_tokens\""};

typedef enum {
    E_BEGIN,                      // before the outer '{'
    E_OPEN,                       // after '{' or ',': a key's opening quote
    E_KEY,                        // inside a key
    E_COLON, E_VALUE,
    E_WORD,                       // inside true / false / a strategy string
    E_LR, E_EPOCHS,               // inside a number (num: its phase)
    E_AFTER,                      // after a value: ',' or '}'
    E_DONE,
} EditMode;

typedef enum {
    L_ZERO,                       // "0"
    L_POINT,                      // "0."
    L_D1,                         // "0.0"
    L_HUNDREDTH,                  // "0.01", "0.010"...: 1e-2, the largest
    L_ZEROS,                      // "0.00", "0.000"...: below 1e-6 until a digit other than 0
    L_SMALL,                      // "0.00" and a digit other than 0 within the first 6: in range, more digits fine
    L_INT,                        // "d" of a mantissa d[.ddd]e-N
    L_FRAC0, L_FRAC,              // "d." and "d.d"...
    L_E, L_EMINUS, L_E0,          // "de", "de-", "de-0"
    L_EXP,                        // "de-N": N in 3..6 (2 only for a mantissa of 1)
} LrPhase;

typedef struct {
    uint8_t mode;                 // EditMode
    uint8_t where;                // the object (bits 0-1) and its key whose value comes (bits 2-4)
    uint8_t ws;                   // whitespace bytes in the current run
    uint8_t n;                    // bytes of the current key or word, digits of the current number
    uint8_t cand;                 // keys or words still possible (bit i: the i-th); numbers: "1" or "10.." so far
    uint8_t num;                  // LrPhase in a learning rate
    uint16_t seen;                // keys given: bits 0-1 top level, 2-5 data_generation, 6-8 training
} Edit;                           // 8 bytes, no padding: it is the state
_Static_assert(sizeof(Edit) == sizeof(uint64_t), "an Edit packs into a state");

static uint64_t edit_pack(Edit e) { uint64_t s; memcpy(&s, &e, sizeof s); return s; }
static Edit edit_unpack(uint64_t s) { Edit e; memcpy(&e, &s, sizeof e); return e; }

static int is_ws(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int all_seen(const Edit *e, int obj) {
    const int mask = (1 << N_KEYS[obj]) - 1;
    return ((e->seen >> SEEN_SHIFT[obj]) & mask) == mask;
}

// The bits of cand whose word (of w[0..n)) has byte c at position at.
static int match_words(const char *const *w, int n, int cand, int at, unsigned char c) {
    int out = 0;
    for (int k = 0; k < n; k++)
        if ((cand >> k & 1) && (int)strlen(w[k]) > at && (unsigned char)w[k][at] == c) out |= 1 << k;
    return out;
}

static uint64_t edit_next(uint64_t state, unsigned char c);

// A number ended at byte c (not one of its own): c is read after the value.
static uint64_t end_value(Edit e, unsigned char c) {
    e.mode = E_AFTER;
    e.ws = 0;
    return edit_next(edit_pack(e), c);
}

static uint64_t lr_next(Edit e, unsigned char c) {
    const int one = e.cand & 1, d = c - '0';
    switch ((LrPhase)e.num) {
    case L_ZERO: if (c != '.') return GRAMMAR_DEAD; e.num = L_POINT; break;
    case L_POINT: if (c != '0') return GRAMMAR_DEAD; e.num = L_D1; e.n = 1; break;
    case L_D1:
        if (c == '0') e.num = L_ZEROS;
        else if (c == '1') e.num = L_HUNDREDTH;
        else return GRAMMAR_DEAD;
        e.n = 2;
        break;
    case L_HUNDREDTH:
        if (c == '0' && e.n < LR_DIGITS) { e.n++; break; }
        return is_digit(c) ? GRAMMAR_DEAD : end_value(e, c);
    case L_ZEROS:   // "0.00" then zeros: 1e-6 needs a digit other than 0 by the 6th
        if (!is_digit(c) || (c == '0' && e.n >= 5)) return GRAMMAR_DEAD;
        e.num = c == '0' ? L_ZEROS : L_SMALL;
        e.n++;
        break;
    case L_SMALL:
        if (is_digit(c) && e.n < LR_DIGITS) { e.n++; break; }
        return is_digit(c) ? GRAMMAR_DEAD : end_value(e, c);
    case L_INT:
        if (c == '.') e.num = L_FRAC0;
        else if (c == 'e' || c == 'E') e.num = L_E;
        else return GRAMMAR_DEAD;
        break;
    case L_FRAC0: case L_FRAC:
        if (is_digit(c) && e.n < 3) { e.n++; e.num = L_FRAC; e.cand = (uint8_t)(one && c == '0'); break; }
        if (e.num == L_FRAC && (c == 'e' || c == 'E')) { e.num = L_E; break; }
        return GRAMMAR_DEAD;
    case L_E: if (c != '-') return GRAMMAR_DEAD; e.num = L_EMINUS; break;
    case L_EMINUS: case L_E0:   // 1e-2 is the largest; m e-6 with m >= 1 the smallest
        if (c == '0' && e.num == L_EMINUS) { e.num = L_E0; break; }
        if ((d >= 3 && d <= 6) || (d == 2 && one)) { e.num = L_EXP; break; }
        return GRAMMAR_DEAD;
    case L_EXP: return is_digit(c) ? GRAMMAR_DEAD : end_value(e, c);
    }
    return edit_pack(e);
}

static uint64_t epochs_next(Edit e, unsigned char c) {
    if (!is_digit(c)) return end_value(e, c);
    if (e.n < 3) { e.cand &= c == '0'; e.n++; return edit_pack(e); }   // 1..999
    if (e.n == 3 && e.cand && c == '0') { e.n++; return edit_pack(e); }   // 1000
    return GRAMMAR_DEAD;
}

// The first byte of a value.
static uint64_t value_start(Edit e, unsigned char c) {
    const int obj = e.where & 3, key = e.where >> 2;
    e.ws = 0;
    e.n = 0;
    if (obj == OBJ_TOP) {
        if (c != '{') return GRAMMAR_DEAD;
        e.where = (uint8_t)(key == 0 ? OBJ_DG : OBJ_TR);
        e.mode = E_OPEN;
        return edit_pack(e);
    }
    if (obj == OBJ_DG || key == 0) {   // a boolean, or the strategy
        e.mode = E_WORD;
        e.cand = 3;
        return edit_next(edit_pack(e), c);
    }
    if (key == 1) {
        if (c == '0') e.num = L_ZERO;
        else if (c >= '1' && c <= '9') e.num = L_INT;
        else return GRAMMAR_DEAD;
        e.mode = E_LR;
        e.cand = c == '1';
        return edit_pack(e);
    }
    if (c < '1' || c > '9') return GRAMMAR_DEAD;
    e.mode = E_EPOCHS;
    e.n = 1;
    e.cand = c == '1';
    return edit_pack(e);
}

static uint64_t edit_next(uint64_t state, unsigned char c) {
    Edit e = edit_unpack(state);
    const int obj = e.where & 3;
    switch ((EditMode)e.mode) {
    case E_BEGIN: case E_OPEN: case E_COLON: case E_VALUE: case E_AFTER:
        if (is_ws(c)) {
            if (e.ws >= WS_MAX) return GRAMMAR_DEAD;
            e.ws++;
            return edit_pack(e);
        }
        e.ws = 0;
        break;
    default: break;
    }
    switch ((EditMode)e.mode) {
    case E_BEGIN:
        if (c != '{') return GRAMMAR_DEAD;
        e.mode = E_OPEN;
        e.where = OBJ_TOP;
        return edit_pack(e);
    case E_OPEN:   // an object has no empty form: every key is required
        if (c != '"') return GRAMMAR_DEAD;
        e.mode = E_KEY;
        e.n = 0;
        e.cand = (uint8_t)(((1 << N_KEYS[obj]) - 1) & ~(e.seen >> SEEN_SHIFT[obj]));
        return edit_pack(e);
    case E_KEY:
        if (c == '"') {
            for (int k = 0; k < N_KEYS[obj]; k++)
                if ((e.cand >> k & 1) && strlen(KEYS[obj][k]) == e.n) {
                    e.seen |= (uint16_t)(1 << (SEEN_SHIFT[obj] + k));
                    e.where = (uint8_t)(obj | k << 2);
                    e.mode = E_COLON;
                    return edit_pack(e);
                }
            return GRAMMAR_DEAD;
        }
        if (!(e.cand = (uint8_t)match_words(KEYS[obj], N_KEYS[obj], e.cand, e.n, c))) return GRAMMAR_DEAD;
        e.n++;
        return edit_pack(e);
    case E_COLON:
        if (c != ':') return GRAMMAR_DEAD;
        e.mode = E_VALUE;
        return edit_pack(e);
    case E_VALUE: return value_start(e, c);
    case E_WORD: {
        const char *const *w = obj == OBJ_DG ? BOOLS : STRATEGY_WORDS;
        if (!(e.cand = (uint8_t)match_words(w, 2, e.cand, e.n, c))) return GRAMMAR_DEAD;
        e.n++;
        for (int k = 0; k < 2; k++)   // no word is a prefix of the other: the first to end is the value
            if ((e.cand >> k & 1) && strlen(w[k]) == e.n) { e.mode = E_AFTER; e.n = 0; }
        return edit_pack(e);
    }
    case E_LR: return lr_next(e, c);
    case E_EPOCHS: return epochs_next(e, c);
    case E_AFTER:
        if (c == ',' && !all_seen(&e, obj)) { e.mode = E_OPEN; return edit_pack(e); }
        if (c != '}' || !all_seen(&e, obj)) return GRAMMAR_DEAD;
        if (obj == OBJ_TOP) e.mode = E_DONE;
        else e.where = OBJ_TOP;   // the top level's value ended: E_AFTER there
        return edit_pack(e);
    case E_DONE: return GRAMMAR_DEAD;
    }
    return GRAMMAR_DEAD;
}

static int edit_complete(uint64_t s) { return edit_unpack(s).mode == E_DONE; }

const Grammar GRAMMAR_ARC_EDIT = {"arc-edit", "a JSON object of SEAL's ARC self-edit schema", 0, edit_next, edit_complete};

// ----------------------------------------------------------------------------
// arc-grid: "[[0 1]\n [2 3]]#", exactly as arc_answer writes it. The state
// counts rows and cells, and remembers the first row's width, so a grid can
// only be rectangular and at most GRID_MAX a side.

typedef enum { G_START, G_OPEN, G_CELL, G_AFTER_CELL, G_ROW_END, G_NEWLINE, G_ROW_OPEN, G_HASH, G_DONE } GridMode;
typedef struct { uint8_t mode, rows, width, cols; } GridState;   // width 0: the first row is not closed yet
_Static_assert(sizeof(GridState) < sizeof(uint64_t), "a GridState packs into a state, never GRAMMAR_DEAD");

static uint64_t grid_pack(GridState g) { uint64_t s = 0; memcpy(&s, &g, sizeof g); return s; }

static uint64_t grid_next(uint64_t state, unsigned char c) {
    GridState g;
    memcpy(&g, &state, sizeof g);
    const int max_cols = g.width ? g.width : GRID_MAX;
    switch ((GridMode)g.mode) {
    case G_START: if (c != '[') return GRAMMAR_DEAD; g.mode = G_OPEN; break;
    case G_OPEN: case G_ROW_OPEN: if (c != '[') return GRAMMAR_DEAD; g.mode = G_CELL; g.cols = 0; break;
    case G_CELL: if (!is_digit(c)) return GRAMMAR_DEAD; g.cols++; g.mode = G_AFTER_CELL; break;
    case G_AFTER_CELL:
        if (c == ' ' && g.cols < max_cols) { g.mode = G_CELL; break; }
        if (c != ']' || (g.width && g.cols != g.width)) return GRAMMAR_DEAD;
        g.width = g.cols;
        g.rows++;
        g.mode = G_ROW_END;
        break;
    case G_ROW_END:
        if (c == ']') g.mode = G_HASH;
        else if (c == '\n' && g.rows < GRID_MAX) g.mode = G_NEWLINE;
        else return GRAMMAR_DEAD;
        break;
    case G_NEWLINE: if (c != ' ') return GRAMMAR_DEAD; g.mode = G_ROW_OPEN; break;
    case G_HASH: if (c != '#') return GRAMMAR_DEAD; g.mode = G_DONE; break;
    case G_DONE: return GRAMMAR_DEAD;
    }
    return grid_pack(g);
}

static int grid_complete(uint64_t s) {
    GridState g;
    memcpy(&g, &s, sizeof g);
    return g.mode == G_DONE;
}

const Grammar GRAMMAR_ARC_GRID = {"arc-grid", "an ARC answer grid as the prompt writes them: [[0 1]\\n [2 3]]#", 0, grid_next, grid_complete};

const Grammar *grammar_find(const char *name) {
    if (!strcmp(name, GRAMMAR_ARC_EDIT.name)) return &GRAMMAR_ARC_EDIT;
    if (!strcmp(name, GRAMMAR_ARC_GRID.name)) return &GRAMMAR_ARC_GRID;
    return NULL;
}

// ----------------------------------------------------------------------------
// The token-level constraint.

typedef struct {
    uint64_t state;
    int *ids, n;                  // the tokens allowed in state, ascending
    int used;
} Entry;

struct Constraint {
    const Grammar *g;
    int vocab;                    // ids per row of logits (the model's)
    int n_tok;                    // the tokenizer's ids (<= vocab)
    const char **bytes;           // (n_tok) each token's bytes, in the tokenizer
    int *len;                     // (n_tok) their lengths; 0: not a token
    int *by_first, first[257];    // token ids grouped by first byte: by_first[first[x] .. first[x+1])
    Entry *cache;                 // open addressing on the state
    size_t cap, used;
    int B;
    uint64_t *state;              // (B) each sequence's automaton state
    double seconds;               // spent masking and advancing, for the speed report
    long steps;                   // masks applied
};

Constraint *constraint_new(const Grammar *g, const Tokenizer *tok, int vocab, char *err) {
    const int n_tok = tok_vocab_size(tok) < vocab ? tok_vocab_size(tok) : vocab;
    if (n_tok < 1) { errf(err, "--constrain %s: the tokenizer has no tokens", g->name); return NULL; }
    Constraint *c = xcalloc(1, sizeof *c);
    c->g = g;
    c->vocab = vocab;
    c->n_tok = n_tok;
    c->bytes = xcalloc((size_t)n_tok, sizeof *c->bytes);
    c->len = xcalloc((size_t)n_tok, sizeof *c->len);
    c->by_first = xcalloc((size_t)n_tok, sizeof *c->by_first);
    int count[256] = {0};
    for (int t = 0; t < n_tok; t++) {
        int l = tok_token_bytes(tok, t, &c->bytes[t]);
        c->len[t] = l > 0 ? l : 0;
        if (l > 0) count[(unsigned char)c->bytes[t][0]]++;
    }
    for (int x = 0; x < 256; x++) c->first[x + 1] = c->first[x] + count[x];
    int fill[256];
    memcpy(fill, c->first, sizeof fill);
    for (int t = 0; t < n_tok; t++)   // ascending ids within each group
        if (c->len[t]) c->by_first[fill[(unsigned char)c->bytes[t][0]]++] = t;
    c->cap = 64;
    c->cache = xcalloc(c->cap, sizeof *c->cache);
    return c;
}

void constraint_free(Constraint *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) free(c->cache[i].ids);
    free(c->cache); free(c->bytes); free(c->len); free(c->by_first); free(c->state);
    free(c);
}

const Grammar *constraint_grammar(const Constraint *c) { return c->g; }

static size_t slot_of(uint64_t s, size_t cap) {   // splitmix64's finaliser spreads packed states
    s ^= s >> 30; s *= 0xbf58476d1ce4e5b9ULL;
    s ^= s >> 27; s *= 0x94d049bb133111ebULL;
    s ^= s >> 31;
    return (size_t)s & (cap - 1);
}

static int by_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

// The tokens allowed in state s: each byte the state accepts, then the tokens
// starting with it whose remaining bytes stay in the language.
static Entry compute(const Constraint *c, uint64_t s) {
    Entry e = {.state = s, .used = 1};
    size_t cap = 0;
    for (int x = 0; x < 256; x++) {
        uint64_t s1 = c->g->next(s, (unsigned char)x);
        if (s1 == GRAMMAR_DEAD) continue;
        for (int i = c->first[x]; i < c->first[x + 1]; i++) {
            const int t = c->by_first[i];
            if (grammar_walk(c->g, s1, c->bytes[t] + 1, (size_t)c->len[t] - 1) == GRAMMAR_DEAD) continue;
            if ((size_t)e.n == cap) e.ids = xrealloc(e.ids, cap = cap ? 2 * cap : 16, sizeof(int));
            e.ids[e.n++] = t;
        }
    }
    qsort(e.ids, (size_t)e.n, sizeof(int), by_int);
    return e;
}

static const Entry *lookup(Constraint *c, uint64_t s) {
    size_t i = slot_of(s, c->cap);
    while (c->cache[i].used && c->cache[i].state != s) i = (i + 1) & (c->cap - 1);
    if (c->cache[i].used) return &c->cache[i];
    if (2 * (c->used + 1) > c->cap) {   // grow at half full, then look again
        Entry *old = c->cache;
        size_t old_cap = c->cap;
        c->cap *= 2;
        c->cache = xcalloc(c->cap, sizeof *c->cache);
        for (size_t k = 0; k < old_cap; k++)
            if (old[k].used) {
                size_t j = slot_of(old[k].state, c->cap);
                while (c->cache[j].used) j = (j + 1) & (c->cap - 1);
                c->cache[j] = old[k];
            }
        free(old);
        i = slot_of(s, c->cap);
        while (c->cache[i].used) i = (i + 1) & (c->cap - 1);
    }
    c->cache[i] = compute(c, s);
    c->used++;
    return &c->cache[i];
}

int constraint_allowed(Constraint *c, uint64_t state, const int **ids) {
    const Entry *e = lookup(c, state);
    *ids = e->ids;
    return e->n;
}

void constraint_begin(Constraint *c, int B) {
    if (B > c->B) c->state = xrealloc(c->state, (size_t)B, sizeof *c->state);
    c->B = B > c->B ? B : c->B;
    for (int b = 0; b < B; b++) c->state[b] = c->g->start;
}

int constraint_mask(Constraint *c, int b, float *logits) {
    if (c->state[b] == GRAMMAR_DEAD) return 0;
    const double t0 = now_seconds();
    const Entry *e = lookup(c, c->state[b]);
    for (int t = 0, j = 0; t < c->vocab && e->n; t++) {
        if (j < e->n && e->ids[j] == t) j++;
        else logits[t] = -INFINITY;
    }
    c->seconds += now_seconds() - t0;
    c->steps++;
    return e->n;
}

void constraint_advance(Constraint *c, int b, int token) {
    const double t0 = now_seconds();
    if (token < 0 || token >= c->n_tok || !c->len[token]) c->state[b] = GRAMMAR_DEAD;
    else c->state[b] = grammar_walk(c->g, c->state[b], c->bytes[token], (size_t)c->len[token]);
    c->seconds += now_seconds() - t0;
}

double constraint_seconds(const Constraint *c, long *steps, int *states) {
    if (steps) *steps = c->steps;
    if (states) *states = (int)c->used;
    return c->seconds;
}

int constraint_done(const Constraint *c, int b) {
    return c->state[b] == GRAMMAR_DEAD || c->g->complete(c->state[b]);
}
