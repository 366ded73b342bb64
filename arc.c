// arc.c: the ARC domain (see arc.h). What SEAL does is taken from its few-shot
// code (Continual-Intelligence/SEAL few-shot/: self-edit.py, utils/prompts.py,
// arclib/augmenters.py, arclib/messagers.py, arclib/representers.py,
// arclib/voting.py, inference/preprocess.py, eval-self-edits.py; the arclib
// files are those of ekinakyurek/marc) and written here from scratch.
#include "arc.h"
#include "chat.h"
#include "tokenizer.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT(g, i, j) ((g)->c[(i) * (g)->w + (j)])

// ---------------------------------------------------------------- text buffer

// ---------------------------------------------------------------- grids

int grid_equal(const Grid *a, const Grid *b) {
    return a->h > 0 && a->h == b->h && a->w == b->w && memcmp(a->c, b->c, (size_t)(a->h * a->w)) == 0;
}

int grid_valid(const Grid *g) {
    if (g->h < 1 || g->w < 1 || g->h > GRID_MAX || g->w > GRID_MAX) return 0;
    for (int k = 0; k < g->h * g->w; k++)
        if (g->c[k] > 9) return 0;
    return 1;
}

static void grid_copy(Grid *dst, const Grid *src) {   // only the cells in use
    dst->h = src->h;
    dst->w = src->w;
    memcpy(dst->c, src->c, (size_t)(src->h * src->w));
}

// numpy's str() of an int array: "[[0 1 2]\n [3 4 5]]", as SEAL's
// PythonListGridRepresenter writes grids in prompts and answers.
static void put_grid_numpy(StrBuf *b, const Grid *g) {
    sb_str(b, "[");
    for (int i = 0; i < g->h; i++) {
        sb_str(b, i ? "\n [" : "[");
        for (int j = 0; j < g->w; j++) {
            char cell[3] = {(char)('0' + AT(g, i, j)), ' ', 0};
            sb_add(b, cell, j + 1 < g->w ? 2 : 1);
        }
        sb_str(b, "]");
    }
    sb_str(b, "]");
}

// "0 1 2\n3 4 5\n": the self-edit prompt's rows of digits (self-edit.py get_prompt).
static void put_grid_rows(StrBuf *b, const Grid *g) {
    for (int i = 0; i < g->h; i++)
        for (int j = 0; j < g->w; j++) {
            char cell[2] = {(char)('0' + AT(g, i, j)), j + 1 < g->w ? ' ' : '\n'};
            sb_add(b, cell, 2);
        }
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static int parse_numpy(const char *p, Grid *g) {
    p = skip_ws(p);
    if (*p++ != '[') return -1;
    int h = 0, w = -1;
    for (;;) {
        p = skip_ws(p);
        if (*p++ != '[' || h == GRID_MAX) return -1;
        int n = 0;
        for (;;) {
            while (*p == ' ') p++;   // SEAL collapses double spaces before decoding; accept runs
            if (*p == ']') break;
            if (*p < '0' || *p > '9') return -1;
            if (n == (w < 0 ? GRID_MAX : w)) return -1;   // row 0 fills from offset 0 before w is known
            g->c[h * (w < 0 ? 0 : w) + n++] = (uint8_t)(*p++ - '0');
            if (*p != ' ' && *p != ']') return -1;        // "12" is not a colour
        }
        p++;
        if (n == 0 || (w >= 0 && n != w)) return -1;
        w = n;
        h++;
        p = skip_ws(p);
        if (*p == ']') break;
    }
    p = skip_ws(p + 1);
    if (*p == '#') p = skip_ws(p + 1);
    if (*p) return -1;
    g->h = h;
    g->w = w;
    return 0;
}

int grid_parse(const char *text, Grid *g) {
    if (parse_numpy(text, g) == 0) return 0;
    g->h = g->w = 0;
    return -1;
}

// ---------------------------------------------------------------- loading

// Fills g from a JSON list of rows; where names the grid ("train[2].input").
static int json_grid(const cJSON *j, Grid *g, const char *file, const char *where, char *err) {
    if (!cJSON_IsArray(j)) return errf(err, "%s: %s: expected a grid (a list of rows)", file, where);
    int h = cJSON_GetArraySize(j), i = 0;
    if (h < 1 || h > GRID_MAX) return errf(err, "%s: %s: %d rows (expected 1..%d)", file, where, h, GRID_MAX);
    g->h = h;
    g->w = 0;
    for (const cJSON *row = j->child; row; row = row->next, i++) {
        if (!cJSON_IsArray(row)) return errf(err, "%s: %s: row %d is not a list", file, where, i);
        int w = cJSON_GetArraySize(row), k = 0;
        if (w < 1 || w > GRID_MAX)
            return errf(err, "%s: %s: row %d has %d cells (expected 1..%d)", file, where, i, w, GRID_MAX);
        if (i == 0) g->w = w;
        if (w != g->w)
            return errf(err, "%s: %s: row %d has %d cells, row 0 has %d (a grid must be rectangular)", file, where, i, w, g->w);
        for (const cJSON *v = row->child; v; v = v->next, k++) {
            if (!cJSON_IsNumber(v))
                return errf(err, "%s: %s: row %d, column %d: not a number (expected a colour 0..9)", file, where, i, k);
            double x = v->valuedouble;
            if (x != floor(x) || x < 0 || x > 9)
                return errf(err, "%s: %s: row %d, column %d: colour %g (expected 0..9)", file, where, i, k, x);
            AT(g, i, k) = (uint8_t)x;
        }
    }
    return 0;
}

static int json_pair(const cJSON *j, Pair *p, int need_output, const char *file, const char *where, char *err) {
    char sub[96];
    if (!cJSON_IsObject(j)) return errf(err, "%s: %s: expected an object with \"input\" and \"output\"", file, where);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(j, "output");
    if (!in) return errf(err, "%s: %s: missing \"input\"", file, where);
    snprintf(sub, sizeof sub, "%s.input", where);
    if (json_grid(in, &p->in, file, sub, err) < 0) return -1;
    p->out.h = p->out.w = 0;   // unknown
    if (!out && need_output) return errf(err, "%s: %s: missing \"output\"", file, where);
    snprintf(sub, sizeof sub, "%s.output", where);
    return out ? json_grid(out, &p->out, file, sub, err) : 0;
}

static int json_pairs(const cJSON *task, const char *key, int need_output, Pair **pairs, int *n,
                      const char *file, char *err) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(task, key);
    if (!arr) return errf(err, "%s: missing \"%s\" (a list of input/output pairs)", file, key);
    if (!cJSON_IsArray(arr)) return errf(err, "%s: \"%s\" is not a list", file, key);
    int m = cJSON_GetArraySize(arr), k = 0;
    if (m < 1) return errf(err, "%s: \"%s\" is empty", file, key);
    if (!(*pairs = calloc((size_t)m, sizeof **pairs)))   // a Pair is 7 KiB: sized by the file, so an error
        return errf(err, "%s: out of memory (%zu bytes)", file, size_mul((size_t)m, sizeof **pairs));
    *n = m;
    for (const cJSON *p = arr->child; p; p = p->next, k++) {
        char where[32];
        snprintf(where, sizeof where, "%s[%d]", key, k);
        if (json_pair(p, &(*pairs)[k], need_output, file, where, err) < 0) return -1;
    }
    return 0;
}

// A task from its JSON object; file is the name errors start with.
static int task_from_json(const cJSON *j, const char *id, const char *file, Task *t, char *err) {
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(j)) return errf(err, "%s: expected an object with \"train\" and \"test\"", file);
    if (strlen(id) >= sizeof t->id) return errf(err, "%s: task id \"%s\" is longer than %zu characters", file, id, sizeof t->id - 1);
    strcpy(t->id, id);
    if (json_pairs(j, "train", 1, &t->train, &t->n_train, file, err) < 0 ||
        json_pairs(j, "test", 0, &t->test, &t->n_test, file, err) < 0) {
        arc_free_task(t);
        return -1;
    }
    return 0;
}

static cJSON *parse_json(const char *text, const char *file, char *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    char why[64];
    if (!root) errf(err, "%s: not valid JSON (%s)", file, json_why(text, end, why, sizeof why));
    return root;
}

int arc_parse_task(const char *json, const char *name, Task *t, char *err) {
    memset(t, 0, sizeof *t);
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    char id[256];
    snprintf(id, sizeof id, "%s", base);
    size_t len = strlen(id);
    if (len > 5 && strcmp(id + len - 5, ".json") == 0) id[len - 5] = 0;
    cJSON *root = parse_json(json, name, err);
    if (!root) return -1;
    int rc = task_from_json(root, id, name, t, err);
    cJSON_Delete(root);
    return rc;
}

int arc_load_task(const char *path, Task *t, char *err) {
    memset(t, 0, sizeof *t);
    char *text = read_file(path, NULL, err);
    if (!text) return -1;
    int rc = arc_parse_task(text, path, t, err);
    free(text);
    return rc;
}

void arc_free_task(Task *t) {
    free(t->train);
    free(t->test);
    memset(t, 0, sizeof *t);
}

void arc_free_tasks(Task *tasks, int n) {
    for (int i = 0; i < n && tasks; i++) arc_free_task(&tasks[i]);
    free(tasks);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The *.json names in dir, sorted, malloc'd.
static int json_names(const char *dir, char ***names, int *n, char *err) {
    DIR *d = opendir(dir);
    if (!d) return errf(err, "%s: cannot open directory", dir);
    *names = NULL;
    *n = 0;
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *names = xrealloc(*names, (size_t)cap, sizeof **names);
        }
        (*names)[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (*n > 1) qsort(*names, (size_t)*n, sizeof **names, cmp_names);
    return 0;
}

int arc_load_dir(const char *dir, const char *const *ids, int n_ids, Task **tasks, int *n, char *err) {
    char **names = NULL;
    int n_names = 0, rc = -1;
    *tasks = NULL;
    *n = 0;
    if (!ids && json_names(dir, &names, &n_names, err) < 0) goto done;
    int m = ids ? n_ids : n_names;
    *tasks = m > 0 ? xcalloc((size_t)m, sizeof **tasks) : NULL;   // one small Task per file
    for (int i = 0; i < m; i++) {
        char file[512], path[4096];
        snprintf(file, sizeof file, ids ? "%s.json" : "%s", ids ? ids[i] : names[i]);
        if (path_join(path, sizeof path, dir, file, err) < 0 || arc_load_task(path, &(*tasks)[i], err) < 0) goto done;
        (*n)++;
    }
    rc = 0;
done:
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    if (rc < 0) { arc_free_tasks(*tasks, *n); *tasks = NULL; *n = 0; }
    return rc;
}

// Fills the test outputs of t from solutions[t->id], a list of grids.
static int attach_solutions(const cJSON *sol, Task *t, const char *file, char *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(sol, t->id);
    if (!s) return errf(err, "%s: no solutions for task \"%s\"", file, t->id);
    if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) != t->n_test)
        return errf(err, "%s: %s: expected a list of %d grid(s), one per test input", file, t->id, t->n_test);
    int k = 0;
    for (const cJSON *g = s->child; g; g = g->next, k++) {
        char where[96];
        snprintf(where, sizeof where, "%s[%d]", t->id, k);
        if (json_grid(g, &t->test[k].out, file, where, err) < 0) return -1;
    }
    return 0;
}

int arc_load_kaggle(const char *challenges, const char *solutions, const char *const *ids, int n_ids,
                    Task **tasks, int *n, char *err) {
    char *ctext = NULL, *stext = NULL;
    cJSON *croot = NULL, *sroot = NULL;
    int rc = -1;
    *tasks = NULL;
    *n = 0;
    if (!(ctext = read_file(challenges, NULL, err)) || !(croot = parse_json(ctext, challenges, err))) goto done;
    if (solutions && (!(stext = read_file(solutions, NULL, err)) || !(sroot = parse_json(stext, solutions, err)))) goto done;
    if (!cJSON_IsObject(croot)) { errf(err, "%s: expected an object {task id: task}", challenges); goto done; }
    if (sroot && !cJSON_IsObject(sroot)) { errf(err, "%s: expected an object {task id: [grids]}", solutions); goto done; }
    int m = ids ? n_ids : cJSON_GetArraySize(croot);
    *tasks = m > 0 ? xcalloc((size_t)m, sizeof **tasks) : NULL;   // one small Task per JSON entry
    const cJSON *item = croot->child;
    for (int i = 0; i < m; i++, item = ids ? item : item->next) {
        if (ids && !(item = cJSON_GetObjectItemCaseSensitive(croot, ids[i]))) {
            errf(err, "%s: no task \"%s\"", challenges, ids[i]);
            goto done;
        }
        char file[4200];
        snprintf(file, sizeof file, "%s: %s", challenges, item->string);
        if (task_from_json(item, item->string, file, &(*tasks)[i], err) < 0) goto done;
        (*n)++;
        if (sroot && attach_solutions(sroot, &(*tasks)[i], solutions, err) < 0) goto done;
    }
    rc = 0;
done:
    if (rc < 0) { arc_free_tasks(*tasks, *n); *tasks = NULL; *n = 0; }
    cJSON_Delete(croot);
    cJSON_Delete(sroot);
    free(ctext);
    free(stext);
    return rc;
}

// ---------------------------------------------------------------- transforms

// swap: output is w x h; fy, fx: output is that many times taller/wider.
static const struct { const char *name; int swap, fy, fx; } TF_INFO[TF_COUNT] = {
    [TF_IDENTITY] = {"identity", 0, 1, 1},     [TF_ROT90] = {"rot90", 1, 1, 1},
    [TF_ROT180] = {"rot180", 0, 1, 1},         [TF_ROT270] = {"rot270", 1, 1, 1},
    [TF_FLIP_UD] = {"flip_ud", 0, 1, 1},       [TF_FLIP_LR] = {"flip_lr", 0, 1, 1},
    [TF_TRANSPOSE] = {"transpose", 1, 1, 1},   [TF_ANTI_TRANSPOSE] = {"anti_transpose", 1, 1, 1},
    [TF_MIRROR_UP] = {"mirror_up", 0, 2, 1},   [TF_MIRROR_DOWN] = {"mirror_down", 0, 2, 1},
    [TF_MIRROR_LEFT] = {"mirror_left", 0, 1, 2}, [TF_MIRROR_RIGHT] = {"mirror_right", 0, 1, 2},
    [TF_UPSCALE2] = {"upscale2", 0, 2, 2},     [TF_HEIGHT2] = {"height2", 0, 2, 1},
    [TF_WIDTH2] = {"width2", 0, 1, 2},         [TF_TILE_V2] = {"tile_v2", 0, 2, 1},
    [TF_TILE_H2] = {"tile_h2", 0, 1, 2},       [TF_TILE_2X2] = {"tile_2x2", 0, 2, 2},
};

const char *tf_name(Tf tf) { return tf >= 0 && tf < TF_COUNT ? TF_INFO[tf].name : "?"; }

// The input cell (r, c) that output cell (i, j) of tf comes from; the input is h x w.
static void tf_source(Tf tf, int h, int w, int i, int j, int *r, int *c) {
    *r = i;
    *c = j;
    switch (tf) {
    case TF_ROT90: *r = j; *c = w - 1 - i; break;   // numpy rot90: counter-clockwise
    case TF_ROT180: *r = h - 1 - i; *c = w - 1 - j; break;
    case TF_ROT270: *r = h - 1 - j; *c = i; break;
    case TF_FLIP_UD: *r = h - 1 - i; break;
    case TF_FLIP_LR: *c = w - 1 - j; break;
    case TF_TRANSPOSE: *r = j; *c = i; break;
    case TF_ANTI_TRANSPOSE: *r = h - 1 - j; *c = w - 1 - i; break;
    case TF_MIRROR_UP: *r = i < h ? h - 1 - i : i - h; break;
    case TF_MIRROR_DOWN: *r = i < h ? i : 2 * h - 1 - i; break;
    case TF_MIRROR_LEFT: *c = j < w ? w - 1 - j : j - w; break;
    case TF_MIRROR_RIGHT: *c = j < w ? j : 2 * w - 1 - j; break;
    case TF_UPSCALE2: *r = i / 2; *c = j / 2; break;
    case TF_HEIGHT2: *r = i / 2; break;
    case TF_WIDTH2: *c = j / 2; break;
    case TF_TILE_V2: *r = i % h; break;
    case TF_TILE_H2: *c = j % w; break;
    case TF_TILE_2X2: *r = i % h; *c = j % w; break;
    default: break;
    }
}

int grid_apply(const Grid *g, Tf tf, Grid *out) {
    if (tf < 0 || tf >= TF_COUNT || g->h < 1 || g->w < 1 || g->h > GRID_CAP || g->w > GRID_CAP) return -1;
    int swap = TF_INFO[tf].swap;
    int oh = (swap ? g->w : g->h) * TF_INFO[tf].fy, ow = (swap ? g->h : g->w) * TF_INFO[tf].fx;
    if (oh > GRID_CAP || ow > GRID_CAP) return -1;
    Grid o = {.h = oh, .w = ow};
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
            int r, c;
            tf_source(tf, g->h, g->w, i, j, &r, &c);
            AT(&o, i, j) = AT(g, r, c);
        }
    grid_copy(out, &o);
    return 0;
}

// Every output cell of tf names its source cell, so writing each one back
// reconstructs the input; two different values for one cell mean g is not
// an image of tf.
int grid_invert(const Grid *g, Tf tf, Grid *out) {
    if (tf < 0 || tf >= TF_COUNT || g->h < 1 || g->w < 1 || g->h > GRID_CAP || g->w > GRID_CAP) return -1;
    if (g->h % TF_INFO[tf].fy || g->w % TF_INFO[tf].fx) return -1;
    int h = g->h / TF_INFO[tf].fy, w = g->w / TF_INFO[tf].fx;
    Grid o;
    o.h = TF_INFO[tf].swap ? w : h;
    o.w = TF_INFO[tf].swap ? h : w;
    memset(o.c, 0xFF, (size_t)(o.h * o.w));
    for (int i = 0; i < g->h; i++)
        for (int j = 0; j < g->w; j++) {
            int r, c;
            tf_source(tf, o.h, o.w, i, j, &r, &c);
            uint8_t *cell = &AT(&o, r, c);
            if (*cell != 0xFF && *cell != AT(g, i, j)) return -1;
            *cell = AT(g, i, j);
        }
    grid_copy(out, &o);
    return 0;
}

void grid_roll(const Grid *g, int dy, int dx, Grid *out) {
    Grid o = {.h = g->h, .w = g->w};
    for (int i = 0; i < g->h; i++)
        for (int j = 0; j < g->w; j++)
            AT(&o, i, j) = AT(g, ((i - dy) % g->h + g->h) % g->h, ((j - dx) % g->w + g->w) % g->w);
    grid_copy(out, &o);
}

void color_perm_random(Rng *r, uint8_t perm[10]) {
    for (int i = 0; i < 10; i++) perm[i] = (uint8_t)i;
    for (int i = 9; i > 1; i--) {   // Fisher-Yates over 1..9
        int j = 1 + (int)(rng_next(r) % (uint64_t)i);
        uint8_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void color_perm_invert(const uint8_t perm[10], uint8_t inv[10]) {
    for (int i = 0; i < 10; i++) inv[perm[i]] = (uint8_t)i;
}

void grid_recolor(const Grid *g, const uint8_t perm[10], Grid *out) {
    out->h = g->h;
    out->w = g->w;
    for (int k = 0; k < g->h * g->w; k++) out->c[k] = perm[g->c[k]];
}

// ---------------------------------------------------------------- test-time training data

// SEAL's augmentation groups (self-edit.py get_augmenters), in its order. A
// chain applies first then second; roll is RandomTranslateXY.
enum { G_BASIC, G_SIZE, G_CHAIN, G_REPEAT };
typedef struct { int group; Tf first, second; int roll; } Aug;
static const Aug AUGS[] = {
    {G_BASIC, TF_ROT90, TF_IDENTITY, 0},       {G_BASIC, TF_ROT270, TF_IDENTITY, 0},
    {G_BASIC, TF_ROT180, TF_IDENTITY, 0},      {G_BASIC, TF_FLIP_UD, TF_IDENTITY, 0},
    {G_BASIC, TF_FLIP_LR, TF_IDENTITY, 0},     {G_BASIC, TF_MIRROR_UP, TF_IDENTITY, 0},
    {G_BASIC, TF_MIRROR_LEFT, TF_IDENTITY, 0}, {G_BASIC, TF_MIRROR_DOWN, TF_IDENTITY, 0},
    {G_BASIC, TF_MIRROR_RIGHT, TF_IDENTITY, 0}, {G_BASIC, TF_IDENTITY, TF_IDENTITY, 1},
    {G_BASIC, TF_TRANSPOSE, TF_IDENTITY, 0},
    {G_SIZE, TF_UPSCALE2, TF_IDENTITY, 0},     {G_SIZE, TF_HEIGHT2, TF_IDENTITY, 0},
    {G_SIZE, TF_WIDTH2, TF_IDENTITY, 0},
    {G_CHAIN, TF_ROT90, TF_UPSCALE2, 0},       {G_CHAIN, TF_ROT270, TF_UPSCALE2, 0},
    {G_CHAIN, TF_ROT180, TF_UPSCALE2, 0},      {G_CHAIN, TF_FLIP_UD, TF_UPSCALE2, 0},
    {G_CHAIN, TF_FLIP_LR, TF_UPSCALE2, 0},     {G_CHAIN, TF_TRANSPOSE, TF_UPSCALE2, 0},
    {G_REPEAT, TF_TILE_V2, TF_IDENTITY, 0},    {G_REPEAT, TF_TILE_H2, TF_IDENTITY, 0},
    {G_REPEAT, TF_TILE_2X2, TF_IDENTITY, 0},
};
#define N_AUGS ((int)(sizeof AUGS / sizeof *AUGS))

// How to rebuild one candidate example from the task: query is the held-out
// train pair, skip a second left-out pair (-1: leave-one-out), aug an index
// into AUGS (-1: none), permuted whether colours and order are shuffled. The
// random choices come from seed, so a candidate is a few bytes until kept.
typedef struct { int query, skip, aug, permuted; uint64_t seed, hash; } Recipe;
enum { RECOLOR_ANY = 1, RECOLOR_UNUSED_FIRST };   // how a permuted candidate's colours change (0: they do not)

static int example_grids(const TttExample *ex) { return 2 * (ex->n_demos + 1); }

static Grid *example_grid(TttExample *ex, int k) {   // demos' in/out, then the query's
    Pair *p = k / 2 < ex->n_demos ? &ex->demos[k / 2] : &ex->query;
    return k % 2 ? &p->out : &p->in;
}

static int augment_grid(Grid *g, const Aug *a, int dy, int dx) {
    Grid t;
    if (grid_apply(g, a->first, &t) < 0 || grid_apply(&t, a->second, g) < 0) return -1;
    if (a->roll) {
        grid_roll(g, dy % g->h, dx % g->w, &t);
        grid_copy(g, &t);
    }
    return g->h <= GRID_MAX && g->w <= GRID_MAX ? 0 : -1;
}

// RandomTranslateXY: a cyclic shift of 0..3 rows and 0..3 columns; SEAL
// shares the draw across the task's examples, here across all its grids.
static int augment_example(TttExample *ex, const Aug *a, Rng *r) {
    int dy = a->roll ? (int)(rng_next(r) % 4) : 0, dx = a->roll ? (int)(rng_next(r) % 4) : 0;
    for (int k = 0; k < example_grids(ex); k++)
        if (augment_grid(example_grid(ex, k), a, dy, dx) < 0) return -1;
    return 0;
}

static void shuffle_pairs(Pair *p, int n, Rng *r) {   // Fisher-Yates
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(r) % (uint64_t)(i + 1));
        Pair t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

// SEAL's PermuteColors (arclib/augmenters.py): each colour the example uses
// (0 aside, in random order) goes to a colour it does not use while there are
// some; the used colours left over are permuted among themselves (SEAL swaps
// them pairwise). perm stays a permutation of 0..9 with perm[0] == 0.
void color_perm_unused_first(const uint8_t *cells, size_t n, Rng *r, uint8_t perm[10]) {
    int used[10] = {0}, u[9], f[9], nu = 0, nf = 0;
    for (size_t k = 0; k < n; k++) used[cells[k] % 10] = 1;
    for (int c = 1; c <= 9; c++) {
        if (used[c]) u[nu++] = c;
        else f[nf++] = c;
    }
    for (int i = nu - 1; i > 0; i--) { int j = (int)(rng_next(r) % (uint64_t)(i + 1)), t = u[i]; u[i] = u[j]; u[j] = t; }
    for (int i = nf - 1; i > 0; i--) { int j = (int)(rng_next(r) % (uint64_t)(i + 1)), t = f[i]; f[i] = f[j]; f[j] = t; }
    for (int i = 0; i < 10; i++) perm[i] = (uint8_t)i;
    int m = nu < nf ? nu : nf;
    for (int i = 0; i < m; i++) { perm[u[i]] = (uint8_t)f[i]; perm[f[i]] = (uint8_t)u[i]; }   // a swap keeps it a permutation
    int left = nu - m, *l = u + m, sh[9];   // the rest among themselves
    for (int i = 0; i < left; i++) sh[i] = l[i];
    for (int i = left - 1; i > 0; i--) { int j = (int)(rng_next(r) % (uint64_t)(i + 1)), t = sh[i]; sh[i] = sh[j]; sh[j] = t; }
    for (int i = 0; i < left; i++) perm[l[i]] = (uint8_t)sh[i];
}

static void example_perm(TttExample *ex, int unused_first, Rng *r, uint8_t perm[10]);

static void permute_example(TttExample *ex, int recolor, Rng *r) {
    if (recolor) {
        uint8_t perm[10];
        example_perm(ex, recolor == RECOLOR_UNUSED_FIRST, r, perm);
        for (int k = 0; k < example_grids(ex); k++) grid_recolor(example_grid(ex, k), perm, example_grid(ex, k));
    }
    shuffle_pairs(ex->demos, ex->n_demos, r);
}

// ex->demos must hold t->n_train pairs. -1 when a grid grows past GRID_MAX.
static void example_perm(TttExample *ex, int unused_first, Rng *r, uint8_t perm[10]) {
    if (!unused_first) { color_perm_random(r, perm); return; }
    uint8_t cells[GRID_MAX * GRID_MAX];
    int used[10] = {0};
    for (int k = 0; k < example_grids(ex); k++) {   // the colours of every grid, query output included (SEAL's use_test_output)
        const Grid *g = example_grid(ex, k);
        for (int i = 0; i < g->h * g->w; i++) used[g->c[i] % 10] = 1;
    }
    size_t n = 0;
    for (int c = 0; c < 10; c++)
        if (used[c]) cells[n++] = (uint8_t)c;
    color_perm_unused_first(cells, n, r, perm);
}

static int build_example(const Task *t, const Recipe *rc, int recolor, TttExample *ex) {
    Rng r;
    rng_seed(&r, rc->seed);
    ex->n_demos = 0;
    for (int k = 0; k < t->n_train; k++)
        if (k != rc->query && k != rc->skip) ex->demos[ex->n_demos++] = t->train[k];
    ex->query = t->train[rc->query];
    if (rc->aug >= 0 && augment_example(ex, &AUGS[rc->aug], &r) < 0) return -1;
    if (rc->permuted) permute_example(ex, recolor, &r);
    return 0;
}

static uint64_t example_hash(TttExample *ex) {
    uint64_t h = fnv1a(FNV1A_BASIS, &ex->n_demos, sizeof ex->n_demos);
    for (int k = 0; k < example_grids(ex); k++) {
        const Grid *g = example_grid(ex, k);
        h = fnv1a(h, &g->h, sizeof g->h);
        h = fnv1a(h, &g->w, sizeof g->w);
        h = fnv1a(h, g->c, (size_t)(g->h * g->w));
    }
    return h;
}

static int example_equal(TttExample *a, TttExample *b) {
    if (a->n_demos != b->n_demos) return 0;
    for (int k = 0; k < example_grids(a); k++)
        if (!grid_equal(example_grid(a, k), example_grid(b, k))) return 0;
    return 1;
}

typedef struct { Recipe *r; int n, cap; } Recipes;

// SEAL permutes colours only when some augmentation group is enabled.
static int recolors(const SelfEdit *se, int unused_first) {
    return !(se->basic || se->size || se->chain || se->repeat) ? 0 : unused_first ? RECOLOR_UNUSED_FIRST : RECOLOR_ANY;
}

// Keeps candidate c unless its grids grow too big or an equal example is
// already kept (same hash, then compared cell by cell). a, b: scratch examples.
static void keep_unique(const Task *t, Recipes *kept, Recipe c, int recolor, TttExample *a, TttExample *b) {
    if (build_example(t, &c, recolor, a) < 0) return;
    c.hash = example_hash(a);
    for (int k = 0; k < kept->n; k++)
        if (kept->r[k].hash == c.hash && build_example(t, &kept->r[k], recolor, b) == 0 && example_equal(a, b)) return;
    if (kept->n == kept->cap) {
        int cap = kept->cap ? kept->cap * 2 : 256;
        kept->r = xrealloc(kept->r, (size_t)cap, sizeof *kept->r);
        kept->cap = cap;
    }
    kept->r[kept->n++] = c;
}

// The unique candidates: every leave-one-out and leave-two-out task, plain and
// through each enabled augmentation; then each of those permuted.
static void ttt_candidates(const Task *t, const SelfEdit *se, int recolor, Rng *r, Recipes *kept, TttExample *a, TttExample *b) {
    const int on[4] = {[G_BASIC] = se->basic, [G_SIZE] = se->size, [G_CHAIN] = se->chain, [G_REPEAT] = se->repeat};
    for (int q = 0; q < t->n_train; q++)
        for (int skip = -1; skip < t->n_train; skip++) {
            if (skip == q) continue;
            for (int g = -1; g < N_AUGS; g++) {
                if (g >= 0 && !on[AUGS[g].group]) continue;
                Recipe c = {.query = q, .skip = skip, .aug = g, .seed = rng_next(r)};
                keep_unique(t, kept, c, recolor, a, b);
            }
        }
    for (int k = 0, n1 = kept->n; k < n1; k++) {
        Recipe c = kept->r[k];
        c.permuted = 1;
        keep_unique(t, kept, c, recolor, a, b);
    }
}

int arc_ttt_examples_filtered(const Task *t, const SelfEdit *se, int unused_colors, Rng *r, int (*keep)(const TttExample *ex, void *ctx),
                              void *ctx, TttExample **out, int *n) {
    *out = NULL;
    *n = 0;
    size_t demo_bytes = (size_t)(t->n_train > 0 ? t->n_train : 1) * sizeof(Pair);
    int recolor = recolors(se, unused_colors);
    Recipes kept = {0};
    TttExample a = {.demos = xmalloc(demo_bytes)}, b = {.demos = xmalloc(demo_bytes)};
    ttt_candidates(t, se, recolor, r, &kept, &a, &b);
    int m = 0;   // SEAL drops over-long examples before it caps
    for (int k = 0; k < kept.n; k++)
        if (!keep || (build_example(t, &kept.r[k], recolor, &a) == 0 && keep(&a, ctx))) kept.r[m++] = kept.r[k];
    kept.n = m;
    for (int i = kept.n - 1; i > 0; i--) {   // shuffle, then keep the first ARC_TTT_MAX
        int j = (int)(rng_next(r) % (uint64_t)(i + 1));
        Recipe x = kept.r[i];
        kept.r[i] = kept.r[j];
        kept.r[j] = x;
    }
    m = kept.n < ARC_TTT_MAX ? kept.n : ARC_TTT_MAX;
    *out = m > 0 ? xcalloc((size_t)m, sizeof **out) : NULL;
    for (int k = 0; k < m; k++) {
        (*out)[k].demos = xmalloc(demo_bytes);
        (*n)++;
        build_example(t, &kept.r[k], recolor, &(*out)[k]);
    }
    free(kept.r);
    free(a.demos);
    free(b.demos);
    return 0;
}

int arc_ttt_examples(const Task *t, const SelfEdit *se, Rng *r, TttExample **out, int *n) {
    return arc_ttt_examples_filtered(t, se, 1, r, NULL, NULL, out, n);
}

void arc_free_examples(TttExample *ex, int n) {
    for (int i = 0; i < n && ex; i++) free(ex[i].demos);
    free(ex);
}

// ---------------------------------------------------------------- prompts

// SEAL's test-time-training and inference formatter: GPTTextMessageRepresenterV2
// over TextExampleRepresenter(io_sep " -> ", output_footer "#",
// PythonListGridRepresenter) (self-edit.py main; eval-self-edits.py --new_format).
static const char TTT_SYSTEM[] =
    "Figure out the underlying transformation in the following examples and apply it to the test case. "
    "Here are some examples from this transformation, your answer must follow the format.\n"
    "The input-output grids are provided as python arrays:\n";

char *arc_prompt(const Pair *demos, int n, const Grid *query, ChatFormat f) {
    StrBuf sys = {0}, user = {0};
    sb_str(&sys, TTT_SYSTEM);
    for (int i = 0; i < n; i++) {
        put_grid_numpy(&sys, &demos[i].in);
        sb_str(&sys, " -> ");
        put_grid_numpy(&sys, &demos[i].out);
        sb_str(&sys, "#\n");
    }
    put_grid_numpy(&user, query);
    sb_str(&user, " -> ");
    char *s = sb_done(&sys), *u = sb_done(&user), *text = NULL;
    if (s && u) {
        ChatMsg m[2] = {{"system", s}, {"user", u}};
        text = chat_render(f, m, 2, 1);
    }
    free(s);
    free(u);
    return text;
}

char *arc_answer(const Grid *g) {
    StrBuf b = {0};
    put_grid_numpy(&b, g);
    sb_str(&b, "#");
    return sb_done(&b);
}

// ---------------------------------------------------------------- self-edits

// SEAL's self-edit system message and instructions (utils/prompts.py), kept
// byte for byte: the policy is conditioned on exactly this text.
static const char SE_SYSTEM[] =
    "You are a helpful assistant that provide the correct output for the given task immediately.";
static const char SE_INSTRUCTIONS[] =
    "\nYou are configuring a model training pipeline by selecting from predefined tools.\n\n"
    "You must make two decisions:\n\n"
    "1. **Data Generation Tools** \xe2\x80\x94 For each of the following, choose true or false:\n"
    "    - use_basic_augmentations\n    - use_size_augmentations\n"
    "    - use_chain_augmentations\n    - use_repeat_augmentations\n\n"
    "2. **Training Configuration** \xe2\x80\x94 Choose one of:\n"
    "    - \"train_using_all_tokens\"\n    - \"train_using_output_tokens\"\n\n"
    "Also specify:\n    - learning_rate (float)\n    - num_train_epochs (integer)\n\n"
    "### Output Format\n\n"
    "Respond with a valid JSON object. Do not include any explanation, markdown, or extra text. "
    "Use lowercase `true`/`false` for booleans and ensure correct JSON syntax.\n\n"
    "Example output:\n\n"
    "{\n  \"data_generation\": {\n    \"use_basic_augmentations\": ...,\n    \"use_size_augmentations\": ...,\n"
    "    \"use_chain_augmentations\": ...,\n    \"use_repeat_augmentations\": ...\n  },\n"
    "  \"training\": {\n    \"strategy\": ...,\n    \"learning_rate\": ...,\n    \"num_train_epochs\": ...\n  }\n}\n";

char *arc_selfedit_prompt(const Task *t, ChatFormat f) {
    StrBuf user = {0};
    for (int i = 0; i < t->n_train; i++) {
        sb_str(&user, "Input:\n");
        put_grid_rows(&user, &t->train[i].in);
        sb_str(&user, "\nOutput:\n");
        put_grid_rows(&user, &t->train[i].out);
        sb_str(&user, "\n");
    }
    sb_str(&user, "------\n\n");
    sb_str(&user, SE_INSTRUCTIONS);
    char *u = sb_done(&user), *text = NULL;
    if (u && f == CHAT_LLAMA3) {   // SEAL's own text: no date lines, nothing trimmed
        StrBuf b = {0};
        sb_str(&b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n");
        sb_str(&b, SE_SYSTEM);
        sb_str(&b, "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n");
        sb_str(&b, u);
        sb_str(&b, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        text = sb_done(&b);
    } else if (u) {
        ChatMsg m[2] = {{"system", SE_SYSTEM}, {"user", u}};
        text = chat_render(f, m, 2, 1);
    }
    free(u);
    return text;
}

static const char *const STRATEGIES[2] = {"train_using_all_tokens", "train_using_output_tokens"};

static const char *const SE_SECTIONS[2] = {"data_generation", "training"};
static const char *const SE_FLAGS[4] = {"use_basic_augmentations", "use_size_augmentations",
                                        "use_chain_augmentations", "use_repeat_augmentations"};
static const char *const SE_TRAINING[3] = {"strategy", "learning_rate", "num_train_epochs"};

// obj must be an object holding exactly the n names in keys, once each.
static int exact_members(const cJSON *obj, const char *where, const char *const *keys, int n, char *why) {
    if (!cJSON_IsObject(obj)) return errf(why, "self-edit: %s: expected a JSON object", where);
    int seen[4] = {0};
    for (const cJSON *m = obj->child; m; m = m->next) {
        int k = 0;
        while (k < n && strcmp(m->string, keys[k]) != 0) k++;
        if (k == n) return errf(why, "self-edit: %s: unknown field \"%s\"", where, m->string);
        if (seen[k]++) return errf(why, "self-edit: %s: field \"%s\" given twice", where, m->string);
    }
    for (int k = 0; k < n; k++)
        if (!seen[k]) return errf(why, "self-edit: %s: missing field \"%s\"", where, keys[k]);
    return 0;
}

static int parse_training(const cJSON *tr, SelfEdit *se, char *why) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(tr, "strategy");
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(tr, "learning_rate");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(tr, "num_train_epochs");
    if (!cJSON_IsString(s) || (strcmp(s->valuestring, STRATEGIES[0]) != 0 && strcmp(s->valuestring, STRATEGIES[1]) != 0))
        return errf(why, "self-edit: training.strategy: expected \"%s\" or \"%s\"", STRATEGIES[0], STRATEGIES[1]);
    se->output_only = strcmp(s->valuestring, STRATEGIES[1]) == 0;
    if (!cJSON_IsNumber(lr)) return errf(why, "self-edit: training.learning_rate: expected a number");
    if (!(lr->valuedouble >= ARC_LR_MIN && lr->valuedouble <= ARC_LR_MAX))
        return errf(why, "self-edit: training.learning_rate: %g is outside %g..%g", lr->valuedouble, ARC_LR_MIN, ARC_LR_MAX);
    se->lr = (float)lr->valuedouble;
    if (!cJSON_IsNumber(ep) || ep->valuedouble != floor(ep->valuedouble) || ep->valuedouble < 1 || ep->valuedouble > ARC_EPOCHS_MAX)
        return errf(why, "self-edit: training.num_train_epochs: expected an integer 1..%d", ARC_EPOCHS_MAX);
    se->epochs = (int)ep->valuedouble;
    return 0;
}

int selfedit_parse(const char *text, SelfEdit *se, char *why) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    char at[64];
    if (!root) return errf(why, "self-edit: not valid JSON (%s)", json_why(text, end, at, sizeof at));
    SelfEdit s = {0};
    const cJSON *dg = cJSON_GetObjectItemCaseSensitive(root, "data_generation");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "training");
    int *flags[4] = {&s.basic, &s.size, &s.chain, &s.repeat};
    int rc = exact_members(root, "top level", SE_SECTIONS, 2, why);
    if (rc == 0) rc = exact_members(dg, "data_generation", SE_FLAGS, 4, why);
    for (int k = 0; rc == 0 && k < 4; k++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(dg, SE_FLAGS[k]);
        if (!cJSON_IsBool(b)) rc = errf(why, "self-edit: data_generation.%s: expected true or false", SE_FLAGS[k]);
        else *flags[k] = cJSON_IsTrue(b);
    }
    if (rc == 0) rc = exact_members(tr, "training", SE_TRAINING, 3, why);
    if (rc == 0) rc = parse_training(tr, &s, why);
    cJSON_Delete(root);
    if (rc == 0) *se = s;
    return rc;
}

char *selfedit_to_json(const SelfEdit *se) {
    char lr[32];
    for (int p = 1; p <= 9; p++) {   // the shortest decimal that reads back as the same float
        snprintf(lr, sizeof lr, "%.*g", p, (double)se->lr);
        if ((float)strtod(lr, NULL) == se->lr) break;
    }
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\n  \"data_generation\": {\n    \"use_basic_augmentations\": %s,\n    \"use_size_augmentations\": %s,\n"
             "    \"use_chain_augmentations\": %s,\n    \"use_repeat_augmentations\": %s\n  },\n"
             "  \"training\": {\n    \"strategy\": \"%s\",\n    \"learning_rate\": %s,\n    \"num_train_epochs\": %d\n  }\n}",
             se->basic ? "true" : "false", se->size ? "true" : "false", se->chain ? "true" : "false",
             se->repeat ? "true" : "false", STRATEGIES[se->output_only ? 1 : 0], lr, se->epochs);
    return xstrdup(buf);
}

long selfedit_steps(int n_examples, int batch, int epochs) {
    return batch > 0 ? (long)epochs * n_examples / batch : 0;
}

// ---------------------------------------------------------------- augmented inference

static void view_init(View *v, int cap) {
    memset(v, 0, sizeof *v);
    v->demos = xcalloc((size_t)(cap > 0 ? cap : 1), sizeof(Pair));
}

static int view_equal(const View *a, const View *b) {
    if (a->n_demos != b->n_demos || !grid_equal(&a->query, &b->query)) return 0;
    for (int i = 0; i < a->n_demos; i++)
        if (!grid_equal(&a->demos[i].in, &b->demos[i].in) || !grid_equal(&a->demos[i].out, &b->demos[i].out)) return 0;
    return 1;
}

// Appends *v to vs[*n] unless one of vs[from..*n) equals it (then it is freed).
static void add_view(View *vs, int *n, int from, View *v) {
    for (int i = from; i < *n; i++)
        if (view_equal(&vs[i], v)) { free(v->demos); return; }
    vs[(*n)++] = *v;
}

static void transform_view(const View *src, Tf tf, View *v) {
    view_init(v, src->n_demos);
    v->n_demos = src->n_demos;
    v->tf = tf;
    for (int i = 0; i < src->n_demos; i++) {
        grid_apply(&src->demos[i].in, tf, &v->demos[i].in);
        grid_apply(&src->demos[i].out, tf, &v->demos[i].out);
    }
    grid_apply(&src->query, tf, &v->query);
}

int arc_views_leave(const Task *t, int test_index, int leave, Rng *r, View **views, int *n) {
    static const Tf VIEW_TFS[5] = {TF_TRANSPOSE, TF_FLIP_UD, TF_FLIP_LR, TF_ROT90, TF_ROT180};
    *views = NULL;
    *n = 0;
    if (test_index < 0 || test_index >= t->n_test || t->n_train < leave || leave < 1 || leave > 2) return -1;
    const int subsets = leave == 1 ? t->n_train : t->n_train * (t->n_train - 1) / 2;
    View *vs = xcalloc((size_t)(3 * subsets + 5), sizeof *vs);
    for (int a = 0; a < t->n_train; a++)   // each subset left out (a; or a and b), then 2 reorderings of it
        for (int b = leave == 1 ? a : a + 1; b < t->n_train; b += leave == 1 ? t->n_train : 1)
            for (int p = 0; p < 3; p++) {
                View v;
                view_init(&v, t->n_train);
                for (int k = 0; k < t->n_train; k++)
                    if (k != a && k != b) v.demos[v.n_demos++] = t->train[k];
                grid_copy(&v.query, &t->test[test_index].in);
                if (p > 0) shuffle_pairs(v.demos, v.n_demos, r);
                add_view(vs, n, 0, &v);
            }
    int n_plain = *n;
    for (int k = 0; k < 5 && n_plain; k++) {   // each transform applied to one random plain view
        View v;
        transform_view(&vs[rng_next(r) % (uint64_t)n_plain], VIEW_TFS[k], &v);
        int dup = 0;
        for (int i = 0; i < n_plain && !dup; i++) dup = view_equal(&vs[i], &v);
        if (dup) free(v.demos);
        else add_view(vs, n, n_plain, &v);
    }
    *views = vs;
    return 0;
}

int arc_views(const Task *t, int test_index, Rng *r, View **views, int *n) {
    return arc_views_leave(t, test_index, 1, r, views, n);
}

void arc_free_views(View *v, int n) {
    for (int i = 0; i < n && v; i++) free(v[i].demos);
    free(v);
}

int arc_unview(const View *v, const Grid *answer, Grid *out) {
    if (!grid_valid(answer) || grid_invert(answer, v->tf, out) < 0 || !grid_valid(out)) {
        out->h = out->w = 0;
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- voting

static int count_equal(const Grid *const *items, int n, const Grid *g) {
    int c = 0;
    for (int k = 0; k < n; k++) c += grid_equal(items[k], g);
    return c;
}

// SEAL's get_all_type_of_votingsv2: the three most common answers, ties to the
// first seen. SEAL fills the places of missing 2nd/3rd distinct answers with
// a row-by-row (then column-by-column) majority answer; with fewer than three
// distinct answers and ties broken by first sight that is always the most
// common answer, so the gaps are filled with it directly.
static void top3(const Grid *const *items, int n, Grid out[3]) {
    const Grid *pick[3] = {NULL, NULL, NULL};
    int count[3] = {0, 0, 0};
    for (int k = 0; k < n; k++) {
        int seen = 0;
        for (int m = 0; m < k && !seen; m++) seen = grid_equal(items[m], items[k]);
        if (seen) continue;
        int c = count_equal(items, n, items[k]);
        for (int r = 0; r < 3; r++)   // strict >: an equal count stays behind the first seen
            if (c > count[r]) {
                for (int s = 2; s > r; s--) { pick[s] = pick[s - 1]; count[s] = count[s - 1]; }
                pick[r] = items[k];
                count[r] = c;
                break;
            }
    }
    for (int r = 0; r < 3; r++) grid_copy(&out[r], pick[r] ? pick[r] : pick[0]);
}

// The distinct values of v[0..n) in ascending order, into out; returns how many.
static int distinct_sorted(const int *v, int n, int *out) {
    int m = 0;
    for (int k = 0; k < n; k++) {
        int i = 0;
        while (i < m && out[i] < v[k]) i++;
        if (i < m && out[i] == v[k]) continue;
        memmove(&out[i + 1], &out[i], (size_t)(m - i) * sizeof *out);
        out[i] = v[k];
        m++;
    }
    return m;
}

// The valid answers of group g (all of them when all is set), into sub.
static int select_group(const Grid *const *valid, const int *group, int nv, int g, int all, const Grid **sub) {
    int ns = 0;
    for (int k = 0; k < nv; k++)
        if (all || group[k] == g) sub[ns++] = valid[k];
    return ns;
}

int arc_vote(const Grid *answers, const int *view_group, int n, Grid top[2]) {
    size_t m = (size_t)(n > 0 ? n : 1);
    const Grid **valid = xcalloc(m, sizeof *valid), **sub = xcalloc(m, sizeof *sub);
    const Grid **cp = xcalloc(3 * (m + 1), sizeof *cp);
    int *group = xcalloc(m, sizeof *group), *groups = xcalloc(m, sizeof *groups), nv = 0, result = 0;
    Grid *cand = xcalloc(3 * (m + 1), sizeof *cand), c[3];
    for (int k = 0; k < n; k++)
        if (grid_valid(&answers[k])) { valid[nv] = &answers[k]; group[nv++] = view_group ? view_group[k] : 0; }
    if (nv == 0) goto done;
    // the candidates: the top 3 of all answers, then of each group in ascending id
    int n_groups = distinct_sorted(group, nv, groups), nc = 0;
    for (int i = -1; i < n_groups; i++, nc += 3)
        top3(sub, select_group(valid, group, nv, i < 0 ? 0 : groups[i], i < 0, sub), &cand[nc]);
    for (int k = 0; k < nc; k++) cp[k] = &cand[k];
    top3(cp, nc, c);
    // SEAL's tie rule for the second attempt: when the 2nd and 3rd candidates
    // are equally common, the one more untransformed views gave, else the 3rd.
    // (Applied only to a real 3rd candidate, so a tie never costs an attempt.)
    int ni = select_group(valid, group, nv, TF_IDENTITY, 0, sub);
    if (ni > 0 && !grid_equal(&c[2], &c[0]) &&
        count_equal(cp, nc, &c[1]) == count_equal(cp, nc, &c[2]) &&
        !(count_equal(sub, ni, &c[1]) > count_equal(sub, ni, &c[2])))
        grid_copy(&c[1], &c[2]);
    grid_copy(&top[0], &c[0]);
    result = 1;
    if (!grid_equal(&c[1], &c[0])) { grid_copy(&top[1], &c[1]); result = 2; }
done:
    free(valid);
    free(sub);
    free(cp);
    free(group);
    free(groups);
    free(cand);
    return result;
}

int arc_pass2(const Grid top[2], int n_top, const Grid *solution) {
    for (int k = 0; k < n_top && k < 2; k++)
        if (grid_equal(&top[k], solution)) return 1;
    return 0;
}
