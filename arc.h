// arc.h: the ARC domain: tasks and grids, test-time-training data from the
// demonstrations (leave-out tasks, augmentations), prompts, self-edit
// configurations, and augmented inference with voting.
#pragma once
#include <stdint.h>
#include "chat.h"
#include "util.h"

#define GRID_MAX 30               // ARC's largest side; bigger grids are dropped
#define GRID_CAP 60               // storage per side: room for x2 transforms before the check

typedef struct {
    int h, w;
    uint8_t c[GRID_CAP * GRID_CAP];   // row-major, c[r * w + col], colours 0..9
} Grid;

typedef struct { Grid in, out; } Pair;

typedef struct {
    char id[64];
    int n_train, n_test;
    Pair *train, *test;           // malloc'd
} Task;

// The self-edit of SEAL's few-shot domain: which augmentations to generate and
// how to train on them.
typedef struct {
    int basic, size, chain, repeat;   // use_*_augmentations
    int output_only;                  // strategy "train_using_output_tokens"
    float lr;
    int epochs;
} SelfEdit;

// ---------------------------------------------------------------- tasks
// A task file is ARC's JSON: {"train": [{"input": grid, "output": grid}, ...],
// "test": [{"input": grid, "output": grid}, ...]}; a grid is a list of rows of
// integers 0..9, 1..30 per side, every row the same length. A test pair may
// lack "output" (then test[k].out.h == 0: the solution is unknown). Errors name
// the file and the pair: "x.json: train[2].input: row 3 has 4 cells, row 0 has 5".
int arc_parse_task(const char *json, const char *name, Task *t, char *err);  // id = basename of name without ".json"
int arc_load_task(const char *path, Task *t, char *err);
void arc_free_task(Task *t);
void arc_free_tasks(Task *tasks, int n);   // frees each task and the array
// DIR/<id>.json for each of ids, or (ids == NULL) every *.json in dir sorted by name.
int arc_load_dir(const char *dir, const char *const *ids, int n_ids, Task **tasks, int *n, char *err);
// The Kaggle layout SEAL reads: challenges {id: {"train", "test": [{"input"}]}} and
// solutions {id: [output grid per test input]} (solutions may be NULL). ids NULL:
// every task in the challenges file, in file order.
int arc_load_kaggle(const char *challenges, const char *solutions, const char *const *ids, int n_ids,
                    Task **tasks, int *n, char *err);

int grid_equal(const Grid *a, const Grid *b);   // same shape and cells (h == 0 grids are never equal)
int grid_valid(const Grid *g);                  // 1..GRID_MAX per side, colours 0..9

// ---------------------------------------------------------------- transforms
// The grid transforms of SEAL's augmenters (arclib/augmenters.py). Rotations
// follow numpy's rot90: TF_ROT90 turns counter-clockwise. The MIRROR ones are
// SEAL's Reflect: the grid and its mirror image side by side, the mirror on the
// named side. Every transform has an inverse; for the ones that grow the grid
// it is the inverse on their image (grid_invert refuses grids that are not).
typedef enum {
    TF_IDENTITY, TF_ROT90, TF_ROT180, TF_ROT270, TF_FLIP_UD, TF_FLIP_LR, TF_TRANSPOSE, TF_ANTI_TRANSPOSE,
    TF_MIRROR_UP, TF_MIRROR_DOWN, TF_MIRROR_LEFT, TF_MIRROR_RIGHT,   // Reflect(0|1, reverse=True|False)
    TF_UPSCALE2, TF_HEIGHT2, TF_WIDTH2,                               // IncreaseResolution/Height/Width(2)
    TF_TILE_V2, TF_TILE_H2, TF_TILE_2X2,                              // Repeat(0|1|2, 2)
    TF_COUNT
} Tf;
const char *tf_name(Tf tf);
int grid_apply(const Grid *g, Tf tf, Grid *out);    // -1 when g is empty or the result would exceed GRID_CAP
int grid_invert(const Grid *g, Tf tf, Grid *out);   // -1 when g is not an image of tf
void grid_roll(const Grid *g, int dy, int dx, Grid *out);   // cyclic shift (numpy roll); (-dy, -dx) undoes it
// Colour permutations keep 0 (the background) fixed: perm[0] == 0.
void color_perm_random(Rng *r, uint8_t perm[10]);
// SEAL's PermuteColors: the colours among cells[0..n) (0 aside) go to colours
// not among them while there are some, the rest are permuted among themselves.
void color_perm_unused_first(const uint8_t *cells, size_t n, Rng *r, uint8_t perm[10]);
void color_perm_invert(const uint8_t perm[10], uint8_t inv[10]);
void grid_recolor(const Grid *g, const uint8_t perm[10], Grid *out);

// ---------------------------------------------------------------- test-time training data
// One training example: demonstrations and a query whose output is the target.
typedef struct {
    int n_demos;
    Pair *demos;   // malloc'd
    Pair query;
} TttExample;

#define ARC_TTT_MAX 250   // SEAL's cap on examples per self-edit
// SEAL's recipe (self-edit.py get_test_time_train_data/process_task): from the
// train pairs, every leave-one-out and leave-two-out task; the augmentation
// groups the self-edit enables applied to each (tasks with a grid over 30x30
// dropped); de-duplicated; then each task again with its colours permuted (0
// fixed; only when a group is enabled; as SEAL's PermuteColors, onto colours
// the example does not use first) and its demonstrations shuffled;
// de-duplicated, shuffled, at most ARC_TTT_MAX kept. Returns 0.
int arc_ttt_examples(const Task *t, const SelfEdit *se, Rng *r, TttExample **out, int *n);
// The same, keeping only the candidates for which keep(ex, ctx) is nonzero,
// before the cap: SEAL drops examples of 8192 tokens or more this way.
// unused_colors 0: any permutation of 1..9 (color_perm_random; the demo's).
int arc_ttt_examples_filtered(const Task *t, const SelfEdit *se, int unused_colors, Rng *r, int (*keep)(const TttExample *ex, void *ctx),
                              void *ctx, TttExample **out, int *n);
void arc_free_examples(TttExample *ex, int n);

// ---------------------------------------------------------------- prompts
// Grids are written as numpy prints them, "[[0 1 2]\n [3 4 5]]". The prompt is
// the chat text of format f (system: instruction + demonstrations "IN -> OUT#",
// user: "QUERY ->") up to and including the opening of the assistant turn; the
// answer is "OUT#", after which the caller appends the format's end-of-turn
// token (chat_eot). malloc'd; NULL when out of memory.
char *arc_prompt(const Pair *demos, int n, const Grid *query, ChatFormat f);
char *arc_answer(const Grid *g);
// Reads an answer back: "[[..] [..]]" rows of single digits, an optional "#",
// surrounding whitespace. 0 ok; -1 when malformed, ragged, over 30 or not 0..9.
int grid_parse(const char *text, Grid *g);

// ---------------------------------------------------------------- self-edits
// SEAL's self-edit prompt (self-edit.py get_prompt): a system message and the
// user's demonstrations ("Input:\n" / "Output:\n" rows of digits) with the
// instructions. Llama-3's is written by hand as SEAL does (no date lines); other
// formats render the same two messages through chat_render.
char *arc_selfedit_prompt(const Task *t, ChatFormat f);
#define ARC_LR_MIN 1e-6
#define ARC_LR_MAX 1e-2
#define ARC_EPOCHS_MAX 1000
// Strict JSON with exactly SEAL's fields (see SEAL.md): booleans, the strategy
// enum, learning_rate in [ARC_LR_MIN, ARC_LR_MAX], num_train_epochs an integer
// in 1..ARC_EPOCHS_MAX. -1 with the reason in why (ERR_MAX) otherwise.
int selfedit_parse(const char *text, SelfEdit *se, char *why);
char *selfedit_to_json(const SelfEdit *se);   // the layout of the prompt's example; parses back equal
#define ARC_MAX_STEPS 375
// Optimizer steps as SEAL counts them for its limit: epochs * examples / batch,
// rounded down. A self-edit over ARC_MAX_STEPS gets no training (SEAL sets its
// epochs to 0 and evaluates the unadapted model).
long selfedit_steps(int n_examples, int batch, int epochs);

// ---------------------------------------------------------------- augmented inference and voting
// One prompt of SEAL's augmented inference (inference/preprocess.py): a
// leave-one-out subset of the demonstrations, maybe reordered, with tf applied
// to every grid. Group answers by tf for arc_vote (TF_IDENTITY = untransformed).
typedef struct {
    int n_demos;
    Pair *demos;   // malloc'd
    Grid query;
    Tf tf;
} View;
// Every leave-one-out subset, each also in 2 random demonstration orders
// (duplicates removed), then transpose, flip up-down, flip left-right, rot90,
// rot180 each applied to one random view of those (skipped when it equals one).
int arc_views(const Task *t, int test_index, Rng *r, View **views, int *n);
// The same with leave (1 or 2) demonstrations left out of each view: SEAL's
// fallback adds the leave-two-out views when no leave-one-out view fits.
int arc_views_leave(const Task *t, int test_index, int leave, Rng *r, View **views, int *n);
void arc_free_views(View *v, int n);
int arc_unview(const View *v, const Grid *answer, Grid *out);   // answer in the original frame; -1 if invalid
// SEAL's hierarchical vote (arclib/voting.py): the 3 best answers of all
// answers and of each group (view_group[i], e.g. views[i].tf; NULL: one
// group), then the 2 best of those candidates; group TF_IDENTITY counts as the
// untransformed views in SEAL's tie rule. Invalid answers (h == 0) are ignored;
// ties go to the answer seen first. Returns the number of distinct attempts
// written to top (0..2).
int arc_vote(const Grid *answers, const int *view_group, int n, Grid top[2]);
int arc_pass2(const Grid top[2], int n_top, const Grid *solution);   // 1 when an attempt equals the solution
