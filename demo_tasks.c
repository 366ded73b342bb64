// demo_tasks.c: the procedural ARC-like tasks of `seal demo` (see demo_tasks.h).
//
// A family is a table row: its parameter ranges, the transformation, how a step
// is written, which colours its inputs must have or avoid, how its inputs are
// drawn. A task is made in three moves: pick a slot (a family, or a pair of
// families from COMBO) from a seeded shuffle, so that a few tasks already cover
// many families; pick an instance of each step from the split; then draw random
// sparse inputs until every pair is valid and no other instance of the family
// (a composite: with one step changed) fits all the demonstrations, so the rule
// can be read off the demonstrations.
#include "demo_tasks.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIDE_OUT_MAX 12      // no output side above this: prompts stay short for a tiny model
#define TASK_TRIES 200       // whole-task draws before giving up (tests show a few suffice)
#define PAIR_TRIES 50
#define N_COLOURS 10

typedef struct {
    int side_lo, side_hi;    // input sides
    float dens_lo, dens_hi;  // share of non-zero cells in scattered inputs
    int pal[N_COLOURS], n_pal;
} Spec;

static int rnd(Rng *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }

static uint8_t at(const Grid *g, int r, int c) { return g->c[r * g->w + c]; }

static void blank(Grid *g, int h, int w) {
    g->h = h;
    g->w = w;
    memset(g->c, 0, (size_t)(h * w));
}

// ---------------------------------------------------------------- transformations
// Each maps in to out with the step's parameters p; -1 when there is no result.

// The dihedral group as (transpose, flip output rows, flip output columns).
static const char *const GEOM_NAME[8] = {"id", "rot90", "rot180", "rot270", "flipud", "fliplr", "transpose", "antitranspose"};
static const uint8_t GEOM_OP[8][3] = {{0, 0, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 0}, {0, 1, 0}, {0, 0, 1}, {1, 0, 0}, {1, 1, 1}};

static int apply_geom(const int *p, const Grid *in, Grid *out) {
    const uint8_t *op = GEOM_OP[p[0]];
    out->h = op[0] ? in->w : in->h;
    out->w = op[0] ? in->h : in->w;
    for (int r = 0; r < out->h; r++)
        for (int c = 0; c < out->w; c++) {
            int i = op[1] ? out->h - 1 - r : r, j = op[2] ? out->w - 1 - c : c;
            out->c[r * out->w + c] = op[0] ? at(in, j, i) : at(in, i, j);
        }
    return 0;
}

static int apply_cmap(const int *p, const Grid *in, Grid *out) {   // a>b, c>d at once
    *out = *in;
    for (int i = 0; i < in->h * in->w; i++)
        out->c[i] = in->c[i] == p[0] ? (uint8_t)p[1] : in->c[i] == p[2] ? (uint8_t)p[3] : in->c[i];
    return 0;
}

static int apply_shift(const int *p, const Grid *in, Grid *out) {   // p = dy, dx, wrap
    blank(out, in->h, in->w);
    for (int r = 0; r < in->h; r++)
        for (int c = 0; c < in->w; c++) {
            int y = r + p[0], x = c + p[1];
            if (p[2]) { y = (y + in->h) % in->h; x = (x + in->w) % in->w; }
            if (y >= 0 && y < in->h && x >= 0 && x < in->w) out->c[y * in->w + x] = at(in, r, c);
        }
    return 0;
}

static const char *const GRAVITY_NAME[4] = {"down", "up", "left", "right"};

// Cell i of a line, counted from the edge cells fall towards.
static int line_cell(int dir, const Grid *g, int line, int i) {
    int r = dir == 0 ? g->h - 1 - i : dir == 1 ? i : line, c = dir == 2 ? i : dir == 3 ? g->w - 1 - i : line;
    return r * g->w + c;
}

static int apply_gravity(const int *p, const Grid *in, Grid *out) {
    int vertical = p[0] < 2, lines = vertical ? in->w : in->h, len = vertical ? in->h : in->w;
    blank(out, in->h, in->w);
    for (int line = 0; line < lines; line++)
        for (int i = 0, k = 0; i < len; i++) {
            uint8_t v = in->c[line_cell(p[0], in, line, i)];
            if (v) out->c[line_cell(p[0], out, line, k++)] = v;
        }
    return 0;
}

static int apply_tile(const int *p, const Grid *in, Grid *out) {   // p = copies down, across, mirrored
    out->h = in->h * p[0];
    out->w = in->w * p[1];
    for (int r = 0; r < out->h; r++)
        for (int c = 0; c < out->w; c++) {
            int i = r % in->h, j = c % in->w;
            if (p[2] && (r / in->h) % 2) i = in->h - 1 - i;
            if (p[2] && (c / in->w) % 2) j = in->w - 1 - j;
            out->c[r * out->w + c] = at(in, i, j);
        }
    return 0;
}

static int apply_crop(const int *p, const Grid *in, Grid *out) {   // p[0] = 0: any colour
    int r0 = in->h, r1 = -1, c0 = in->w, c1 = -1;
    for (int r = 0; r < in->h; r++)
        for (int c = 0; c < in->w; c++) {
            uint8_t v = at(in, r, c);
            if (p[0] ? v != p[0] : v == 0) continue;
            if (r < r0) r0 = r;
            if (r > r1) r1 = r;
            if (c < c0) c0 = c;
            if (c > c1) c1 = c;
        }
    if (r1 < 0) return -1;
    out->h = r1 - r0 + 1;
    out->w = c1 - c0 + 1;
    for (int r = 0; r < out->h; r++)
        for (int c = 0; c < out->w; c++) out->c[r * out->w + c] = at(in, r0 + r, c0 + c);
    return 0;
}

static int apply_outline(const int *p, const Grid *in, Grid *out) {   // p = colour, 8-neighbourhood
    *out = *in;
    for (int r = 0; r < in->h; r++)
        for (int c = 0; c < in->w; c++) {
            if (at(in, r, c)) continue;
            int touch = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int y = r + dy, x = c + dx;
                    if ((dy && dx && !p[1]) || y < 0 || y >= in->h || x < 0 || x >= in->w) continue;
                    touch |= at(in, y, x) != 0;
                }
            if (touch) out->c[r * in->w + c] = (uint8_t)p[0];
        }
    return 0;
}

static int apply_scale(const int *p, const Grid *in, Grid *out) {
    out->h = in->h * p[0];
    out->w = in->w * p[1];
    for (int r = 0; r < out->h; r++)
        for (int c = 0; c < out->w; c++) out->c[r * out->w + c] = at(in, r / p[0], c / p[1]);
    return 0;
}

// ---------------------------------------------------------------- how steps are written

static int fmt_geom(const int *p, char *s, size_t n) { return snprintf(s, n, "%s", GEOM_NAME[p[0]]); }
static int fmt_cmap(const int *p, char *s, size_t n) { return snprintf(s, n, "cmap(%d>%d,%d>%d)", p[0], p[1], p[2], p[3]); }
static int fmt_shift(const int *p, char *s, size_t n) { return snprintf(s, n, "%s(%d,%d)", p[2] ? "roll" : "shift", p[0], p[1]); }
static int fmt_gravity(const int *p, char *s, size_t n) { return snprintf(s, n, "gravity(%s)", GRAVITY_NAME[p[0]]); }
static int fmt_tile(const int *p, char *s, size_t n) { return snprintf(s, n, "tile%dx%d%s", p[0], p[1], p[2] ? "m" : ""); }
static int fmt_crop(const int *p, char *s, size_t n) { return p[0] ? snprintf(s, n, "crop(%d)", p[0]) : snprintf(s, n, "crop"); }
static int fmt_outline(const int *p, char *s, size_t n) { return snprintf(s, n, "outline%d(%d)", p[1] ? 8 : 4, p[0]); }
static int fmt_scale(const int *p, char *s, size_t n) { return snprintf(s, n, "scale%dx%d", p[0], p[1]); }

// ---------------------------------------------------------------- which parameters are instances

static int ok_cmap(const int *p) { return p[0] < p[2] && p[1] != p[0] && p[3] != p[2]; }   // a < c: one text per map
static int ok_shift(const int *p) { return p[0] || p[1]; }
static int ok_grow(const int *p) { return p[0] * p[1] > 1; }   // tile, scale: not the identity

// ---------------------------------------------------------------- colours and inputs

// Colours every input must show (bit c) and colours inputs must not use.
static void col_cmap(const int *p, int *need, int *avoid) { (void)avoid; *need |= 1 << p[0] | 1 << p[2]; }
static void col_crop(const int *p, int *need, int *avoid) { (void)avoid; if (p[0]) *need |= 1 << p[0]; }
static void col_outline(const int *p, int *need, int *avoid) { (void)need; *avoid |= 1 << p[0]; }

static void draw_size(Rng *r, const Spec *s, int *h, int *w) {
    *h = s->side_lo + rnd(r, s->side_hi - s->side_lo + 1);
    *w = s->side_lo + rnd(r, s->side_hi - s->side_lo + 1);
}

// Random sparse cells: the default input, where every cell tells something.
static void in_scatter(const int *p, Rng *r, const Spec *s, Grid *g) {
    (void)p;
    int h, w;
    draw_size(r, s, &h, &w);
    blank(g, h, w);
    float d = s->dens_lo + (s->dens_hi - s->dens_lo) * rng_uniform(r);
    for (int i = 0; i < h * w; i++)
        if (rng_uniform(r) < d) g->c[i] = (uint8_t)s->pal[rnd(r, s->n_pal)];
}

// crop: one object in an otherwise empty grid; crop(c): a patch of colour c
// among scattered cells of the other colours, so only c's box explains the output.
static void in_crop(const int *p, Rng *r, const Spec *s, Grid *g) {
    int h, w;
    draw_size(r, s, &h, &w);
    blank(g, h, w);
    int oh = 2 + rnd(r, (h - 1 < 4 ? h - 1 : 4) - 1), ow = 2 + rnd(r, (w - 1 < 4 ? w - 1 : 4) - 1);
    int y0 = rnd(r, h - oh + 1), x0 = rnd(r, w - ow + 1);
    if (p[0]) {
        float d = s->dens_lo + (s->dens_hi - s->dens_lo) * rng_uniform(r);
        for (int i = 0; i < h * w; i++) {
            int c = s->pal[rnd(r, s->n_pal)];
            if (c != p[0] && rng_uniform(r) < d) g->c[i] = (uint8_t)c;
        }
    }
    for (int y = y0; y < y0 + oh; y++)
        for (int x = x0; x < x0 + ow; x++)
            if (rng_uniform(r) < 0.6f) g->c[y * w + x] = (uint8_t)(p[0] ? p[0] : s->pal[rnd(r, s->n_pal)]);
}

// ---------------------------------------------------------------- the families

typedef struct {
    const char *name;
    int n_par, lo[4], hi[4];                              // p[i] runs over lo[i]..hi[i]
    int (*valid)(const int *p);                           // NULL: every combination
    int (*apply)(const int *p, const Grid *in, Grid *out);
    int (*format)(const int *p, char *s, size_t n);
    void (*colours)(const int *p, int *need, int *avoid); // NULL: any colours
    void (*input)(const int *p, Rng *r, const Spec *s, Grid *g);
    int side_lo, side_hi;
    float dens_lo, dens_hi;
} Family;

static const Family FAM[DEMO_N_FAMILIES] = {
    [DEMO_GEOM]    = {"geom", 1, {1}, {7}, NULL, apply_geom, fmt_geom, NULL, in_scatter, 2, 3, 0.25f, 0.5f},
    [DEMO_CMAP]    = {"cmap", 4, {1, 1, 1, 1}, {9, 9, 9, 9}, ok_cmap, apply_cmap, fmt_cmap, col_cmap, in_scatter, 3, 3, 0.3f, 0.6f},
    [DEMO_SHIFT]   = {"shift", 3, {-1, -1, 0}, {1, 1, 1}, ok_shift, apply_shift, fmt_shift, NULL, in_scatter, 3, 3, 0.2f, 0.4f},
    [DEMO_GRAVITY] = {"gravity", 1, {0}, {3}, NULL, apply_gravity, fmt_gravity, NULL, in_scatter, 3, 3, 0.2f, 0.45f},
    [DEMO_TILE]    = {"tile", 3, {1, 1, 0}, {2, 2, 1}, ok_grow, apply_tile, fmt_tile, NULL, in_scatter, 2, 3, 0.3f, 0.6f},
    [DEMO_CROP]    = {"crop", 1, {0}, {9}, NULL, apply_crop, fmt_crop, col_crop, in_crop, 4, 5, 0.1f, 0.25f},
    [DEMO_OUTLINE] = {"outline", 2, {1, 0}, {9, 1}, NULL, apply_outline, fmt_outline, col_outline, in_scatter, 3, 3, 0.08f, 0.2f},
    [DEMO_SCALE]   = {"scale", 2, {1, 1}, {2, 2}, ok_grow, apply_scale, fmt_scale, NULL, in_scatter, 2, 3, 0.3f, 0.6f},
};

// Compositions (a first, then b), with the input sides that keep outputs small.
// One order per pair: a colour map commutes with geometry, so "cmap+rot90"
// would be "rot90+cmap" under another name.
static const struct { int a, b, side_lo, side_hi; } COMBO[] = {
    {DEMO_GEOM, DEMO_CMAP, 2, 3},    {DEMO_GEOM, DEMO_GRAVITY, 3, 3}, {DEMO_GEOM, DEMO_TILE, 2, 3},
    {DEMO_GEOM, DEMO_SCALE, 2, 3},   {DEMO_CROP, DEMO_GEOM, 4, 5},    {DEMO_CROP, DEMO_SCALE, 4, 5},
    {DEMO_GRAVITY, DEMO_CMAP, 3, 3}, {DEMO_SHIFT, DEMO_CMAP, 3, 3},   {DEMO_OUTLINE, DEMO_GEOM, 3, 3},
};
#define N_COMBO ((int)(sizeof COMBO / sizeof *COMBO))
#define SINGLE_WEIGHT 2   // each family appears this often per shuffled cycle of slots, each combo once

// Parameter combinations (valid or not) of a family, and the idx-th of them.
static int n_combinations(const Family *f) {
    int n = 1;
    for (int i = 0; i < f->n_par; i++) n *= f->hi[i] - f->lo[i] + 1;
    return n;
}

// Fills s with combination idx of family fam; 0 when it is not an instance.
static int decode_step(int fam, int idx, DemoStep *s) {
    const Family *f = &FAM[fam];
    memset(s, 0, sizeof *s);
    s->fam = fam;
    for (int i = f->n_par - 1; i >= 0; i--) {
        int span = f->hi[i] - f->lo[i] + 1;
        s->p[i] = f->lo[i] + idx % span;
        idx /= span;
    }
    return !f->valid || f->valid(s->p);
}

// A step the tables know: a family, and parameters that make an instance of it.
static int step_ok(const DemoStep *s) {
    if (s->fam < 0 || s->fam >= DEMO_N_FAMILIES) return 0;
    const Family *f = &FAM[s->fam];
    for (int i = 0; i < f->n_par; i++)
        if (s->p[i] < f->lo[i] || s->p[i] > f->hi[i]) return 0;
    return !f->valid || f->valid(s->p);
}

static int rule_ok(const DemoRule *r) {
    if (r->n < 1 || r->n > DEMO_MAX_STEPS) return 0;
    for (int k = 0; k < r->n; k++)
        if (!step_ok(&r->step[k])) return 0;
    return 1;
}

static int same_step(const DemoStep *a, const DemoStep *b) {
    return a->fam == b->fam && memcmp(a->p, b->p, sizeof a->p) == 0;
}

// ---------------------------------------------------------------- splits

static uint64_t mix(uint64_t a, uint64_t b) {   // splitmix64's finaliser of a combined key
    uint64_t z = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A fixed hash of a step's text: the split must not move with the seed or with
// the order of this file's tables.
static uint64_t step_hash(const DemoStep *s) {
    char name[64];
    FAM[s->fam].format(s->p, name, sizeof name);
    // A digit short of FNV1A_BASIS: the splits were dealt with this one.
    return mix(fnv1a(1469598103934665603ull, name, strlen(name)), 0);
}

static int deal(uint64_t x) {   // 3:1:1
    static const int SPLIT_OF[5] = {DEMO_PRETRAIN, DEMO_TRAIN, DEMO_EVAL, DEMO_PRETRAIN, DEMO_PRETRAIN};
    return SPLIT_OF[x % 5];
}

// Colour maps are dealt to the splits: a held-out task's map is new knowledge
// that no prior explains. Every other step is a prior, in every split (PRIOR):
// the base model meets it in pretraining, as a real model has met geometry.
#define PRIOR (-2)
static int step_split(const DemoStep *s) {
    return s->fam == DEMO_CMAP ? deal(step_hash(s)) : PRIOR;
}

// A rule with a colour map belongs to its map's split; one without, made of
// priors only, to pretraining.
int demo_rule_split(const DemoRule *r) {
    if (!rule_ok(r)) return -1;
    for (int k = 0; k < r->n; k++)
        if (r->step[k].fam == DEMO_CMAP) return step_split(&r->step[k]);
    return DEMO_PRETRAIN;
}

// ---------------------------------------------------------------- rules

int demo_apply(const DemoRule *r, const Grid *in, Grid *out) {
    if (!rule_ok(r) || in->h < 1 || in->w < 1 || in->h > GRID_MAX || in->w > GRID_MAX) return -1;
    Grid tmp;
    const Grid *src = in;
    for (int k = 0; k < r->n; k++) {
        const DemoStep *s = &r->step[k];
        Grid *dst = k == r->n - 1 ? out : &tmp;
        if (FAM[s->fam].apply(s->p, src, dst) || dst->h > GRID_MAX || dst->w > GRID_MAX) return -1;
        src = dst;
    }
    return 0;
}

int demo_rule_name(const DemoRule *r, char *out, size_t n) {
    if (!rule_ok(r)) return -1;
    size_t k = 0;
    for (int i = 0; i < r->n; i++) {
        if (i && k + 1 < n) out[k++] = '+';
        int m = FAM[r->step[i].fam].format(r->step[i].p, out + k, n > k ? n - k : 0);
        if (m < 0 || k + (size_t)m >= n) return -1;
        k += (size_t)m;
    }
    return 0;
}

// The step written as text[0..len): every instance is written once, so the one
// whose text matches is the step.
static int parse_step(const char *text, size_t len, DemoStep *s) {
    char name[64];
    for (int f = 0; f < DEMO_N_FAMILIES; f++)
        for (int i = 0; i < n_combinations(&FAM[f]); i++) {
            if (!decode_step(f, i, s)) continue;
            FAM[f].format(s->p, name, sizeof name);
            if (strlen(name) == len && memcmp(name, text, len) == 0) return 0;
        }
    return -1;
}

int demo_rule_parse(const char *text, DemoRule *r) {
    if (strncmp(text, "demo-", 5) == 0)   // a task id: demo-SPLIT-INDEX-RULE
        for (int dashes = 0; dashes < 3 && *text; text++) dashes += *text == '-';
    memset(r, 0, sizeof *r);
    while (r->n < DEMO_MAX_STEPS) {
        const char *plus = strchr(text, '+');
        size_t len = plus ? (size_t)(plus - text) : strlen(text);
        if (parse_step(text, len, &r->step[r->n++])) return -1;
        if (!plus) return 0;
        text = plus + 1;
    }
    return -1;
}

const char *demo_family_name(int fam) { return fam >= 0 && fam < DEMO_N_FAMILIES ? FAM[fam].name : NULL; }

const char *demo_split_name(int split) {
    static const char *const NAME[DEMO_N_SPLITS] = {"pretrain", "train", "eval"};
    return split >= 0 && split < DEMO_N_SPLITS ? NAME[split] : NULL;
}

// ---------------------------------------------------------------- making tasks

// A random instance of family fam for the split: a prior, or a colour map
// dealt to it (rejection: each split holds a fifth or more of the maps).
static int draw_step(Rng *r, int fam, int split, DemoStep *s) {
    for (int tries = 0; tries < 100000; tries++)
        if (decode_step(fam, rnd(r, n_combinations(&FAM[fam])), s) && (step_split(s) == split || step_split(s) == PRIOR)) return 0;
    return -1;
}

// Slot of task `index`: cycles of SINGLE_WEIGHT x each family + each combo,
// every cycle in its own seeded order; SEAL-training and held-out tasks are
// all colour maps alone (see demo_tasks.h). Slots below DEMO_N_FAMILIES are
// single families, the others COMBO rows.
static int pick_slot(uint64_t seed, int split, int index) {
    if (split != DEMO_PRETRAIN) return DEMO_CMAP;
    enum { N = SINGLE_WEIGHT * DEMO_N_FAMILIES + N_COMBO };
    int slot[N], n = 0;
    for (int w = 0; w < SINGLE_WEIGHT; w++)
        for (int f = 0; f < DEMO_N_FAMILIES; f++) slot[n++] = f;
    for (int k = 0; k < N_COMBO; k++) slot[n++] = DEMO_N_FAMILIES + k;
    Rng r;
    rng_seed(&r, mix(mix(seed, (uint64_t)split), mix((uint64_t)(index / n), 1)));
    for (int i = n - 1; i > 0; i--) {
        int j = rnd(&r, i + 1), t = slot[i];
        slot[i] = slot[j];
        slot[j] = t;
    }
    return slot[index % n];
}

static int colours_of(const Grid *g) {
    int m = 0;
    for (int i = 0; i < g->h * g->w; i++) m |= 1 << g->c[i];
    return m;
}

static int same_grid(const Grid *a, const Grid *b) {
    return a->h == b->h && a->w == b->w && memcmp(a->c, b->c, (size_t)(a->h * a->w)) == 0;
}

// Draws one pair; 0 when it is usable: a result that fits, differs from the
// input, and an input with at least two cells and every needed colour.
static int draw_pair(const DemoRule *rule, Rng *r, const Spec *s, int need, Pair *p) {
    const DemoStep *first = &rule->step[0];
    FAM[first->fam].input(first->p, r, s, &p->in);
    int cells = 0;
    for (int i = 0; i < p->in.h * p->in.w; i++) cells += p->in.c[i] != 0;
    return cells < 2 || (colours_of(&p->in) & need) != need || demo_apply(rule, &p->in, &p->out) ||
           p->out.h > SIDE_OUT_MAX || p->out.w > SIDE_OUT_MAX || same_grid(&p->in, &p->out) ? -1 : 0;
}

static int fits_demos(const DemoRule *rule, const Task *t) {
    Grid out;
    for (int i = 0; i < t->n_train; i++)
        if (demo_apply(rule, &t->train[i].in, &out) || !same_grid(&out, &t->train[i].out)) return 0;
    return 1;
}

// 1 when no other instance of the rule's family, or for a composite no rule
// with one step changed, explains every demonstration.
static int identifiable(const DemoRule *rule, const Task *t) {
    for (int k = 0; k < rule->n; k++) {
        DemoRule alt = *rule;
        for (int i = 0; i < n_combinations(&FAM[rule->step[k].fam]); i++) {
            if (!decode_step(rule->step[k].fam, i, &alt.step[k]) || same_step(&alt.step[k], &rule->step[k])) continue;
            if (fits_demos(&alt, t)) return 0;
        }
    }
    return 1;
}

// One attempt at the pairs of a task: 0 when they make a good task.
static int draw_pairs(const DemoRule *rule, Rng *r, Spec s, Task *t) {
    int need = 0, avoid = 1;   // colours every input shows; colours none uses (0 is the background)
    for (int k = 0; k < rule->n; k++)
        if (FAM[rule->step[k].fam].colours) FAM[rule->step[k].fam].colours(rule->step[k].p, &need, &avoid);
    int used = need | avoid;
    s.n_pal = 0;
    for (int c = 1; c < N_COLOURS; c++)
        if (need >> c & 1) s.pal[s.n_pal++] = c;
    for (int want = 2 + rnd(r, 2); s.n_pal < want;) {   // 2 or 3 colours
        int c = 1 + rnd(r, N_COLOURS - 1);
        if (!(used >> c & 1)) { s.pal[s.n_pal++] = c; used |= 1 << c; }
    }
    int seen = 0;   // colours of the demonstration inputs
    for (int i = 0; i <= t->n_train; i++) {
        Pair *p = i < t->n_train ? &t->train[i] : &t->test[0];
        int ok = 0;
        for (int tries = 0; tries < PAIR_TRIES && !ok; tries++) {
            ok = draw_pair(rule, r, &s, need, p) == 0;
            if (!ok || i < t->n_train) continue;
            // The test input is new and shows no colour the demonstrations did not.
            for (int j = 0; j < t->n_train; j++) ok &= !same_grid(&p->in, &t->train[j].in);
            ok &= (colours_of(&p->in) & ~seen) == 0;
        }
        if (!ok) return -1;
        seen |= colours_of(&p->in);
    }
    return identifiable(rule, t) ? 0 : -1;
}

int demo_make_task(uint64_t seed, int split, int index, Task *t, char *err) {
    memset(t, 0, sizeof *t);
    if (split < 0 || split >= DEMO_N_SPLITS) return errf(err, "demo: split %d: expected 0..%d", split, DEMO_N_SPLITS - 1);
    if (index < 0) return errf(err, "demo: task index %d: expected >= 0", index);
    Rng r;
    rng_seed(&r, mix(mix(seed, (uint64_t)split), mix((uint64_t)index, 2)));
    int slot = pick_slot(seed, split, index);
    DemoRule rule = {0};
    Spec s = {0};
    if (slot < DEMO_N_FAMILIES) {
        rule.n = 1;
        rule.step[0].fam = slot;
        s.side_lo = FAM[slot].side_lo;
        s.side_hi = FAM[slot].side_hi;
    } else {
        rule.n = 2;
        rule.step[0].fam = COMBO[slot - DEMO_N_FAMILIES].a;
        rule.step[1].fam = COMBO[slot - DEMO_N_FAMILIES].b;
        s.side_lo = COMBO[slot - DEMO_N_FAMILIES].side_lo;
        s.side_hi = COMBO[slot - DEMO_N_FAMILIES].side_hi;
    }
    s.dens_lo = FAM[rule.step[0].fam].dens_lo;
    s.dens_hi = FAM[rule.step[0].fam].dens_hi;
    for (int k = 0; k < rule.n; k++)
        if (draw_step(&r, rule.step[k].fam, split, &rule.step[k]))
            return errf(err, "demo: no %s instance in split %s", FAM[rule.step[k].fam].name, demo_split_name(split));
    char name[48];
    if (demo_rule_name(&rule, name, sizeof name)) return errf(err, "demo: rule text too long");
    int n_id = snprintf(t->id, sizeof t->id, "demo-%s-%04d-%s", demo_split_name(split), index, name);
    if (n_id < 0 || (size_t)n_id >= sizeof t->id) return errf(err, "demo: task id of %s #%d too long", name, index);
    t->n_train = 3 + rnd(&r, 2);
    t->n_test = 1;
    t->train = xcalloc((size_t)t->n_train, sizeof *t->train);
    t->test = xcalloc(1, sizeof *t->test);
    for (int tries = 0; tries < TASK_TRIES; tries++)
        if (draw_pairs(&rule, &r, s, t) == 0) return 0;
    errf(err, "demo: could not draw a task for rule %s in %d tries", name, TASK_TRIES);
    demo_free_task(t);
    return -1;
}

int demo_make_tasks(uint64_t seed, int split, int n, Task **tasks, char *err) {
    *tasks = NULL;
    if (n < 0) return errf(err, "demo: task count %d: expected >= 0", n);
    Task *ts = xcalloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < n; i++)
        if (demo_make_task(seed, split, i, &ts[i], err)) {
            demo_free_tasks(ts, i);
            return -1;
        }
    *tasks = ts;
    return 0;
}

void demo_free_task(Task *t) {
    free(t->train);
    free(t->test);
    t->train = t->test = NULL;
    t->n_train = t->n_test = 0;
}

void demo_free_tasks(Task *tasks, int n) {
    for (int i = 0; tasks && i < n; i++) demo_free_task(&tasks[i]);
    free(tasks);
}
